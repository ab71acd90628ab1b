//! Who asks: the typed caller of a request. It travels and is journaled in its text form
//! (`mcp:local`, `cli`, `spec:<generation>`, `peer:<id>[;operator=<key>]`, `fleet:<id>`,
//! `mapreduce:<id>`), which
//! the audit log shows. A node never trusts the caller a peer's envelope claims: it replaces it
//! with the authenticated [`Caller::Peer`] before anything runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// This machine's MCP client (stdio, or HTTP with the node's bearer token).
    McpLocal,
    /// This machine's command line acting on its own node (e.g. applying a local spec).
    Cli,
    /// A schedule the applied spec declares, as of spec generation `generation`.
    Spec { generation: u64 },
    /// A peer of the room, authenticated by its Noise static key (`peer` is its id), with the
    /// operator key it proved, if any (`ed25519:<base64>`).
    Peer {
        peer: String,
        operator: Option<String>,
    },
    /// How a caller labels the requests it fans out (`fleet:<its agent id>`); the receiving node
    /// replaces it with [`Caller::Peer`].
    Fleet { caller: String },
    /// How a MapReduce coordinator labels its map and glob requests (`mapreduce:<its agent
    /// id>`); the receiving node replaces it with [`Caller::Peer`].
    MapReduce { caller: String },
    /// No caller stated: a request built only to be sent (the receiver names its caller).
    Unstated,
    /// Text that is none of the above, as a peer's envelope may claim it: never trusted.
    Unknown(String),
}

impl Caller {
    /// An authenticated peer, with the operator key it proved (already formatted).
    pub fn peer(peer: impl Into<String>, operator: Option<String>) -> Self {
        Caller::Peer {
            peer: peer.into(),
            operator,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::McpLocal => f.write_str("mcp:local"),
            Caller::Cli => f.write_str("cli"),
            Caller::Spec { generation } => write!(f, "spec:{generation}"),
            Caller::Peer {
                peer,
                operator: None,
            } => write!(f, "peer:{peer}"),
            Caller::Peer {
                peer,
                operator: Some(key),
            } => write!(f, "peer:{peer};operator={key}"),
            Caller::Fleet { caller } => write!(f, "fleet:{caller}"),
            Caller::MapReduce { caller } => write!(f, "mapreduce:{caller}"),
            Caller::Unstated => Ok(()),
            Caller::Unknown(text) => f.write_str(text),
        }
    }
}

impl FromStr for Caller {
    type Err = std::convert::Infallible;

    /// Every text is a caller: what no variant spells is [`Caller::Unknown`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unknown = || Caller::Unknown(text.to_string());
        Ok(match text {
            "" => Caller::Unstated,
            "mcp:local" => Caller::McpLocal,
            "cli" => Caller::Cli,
            _ => {
                if let Some(generation) = text.strip_prefix("spec:") {
                    generation
                        .parse()
                        .map_or_else(|_| unknown(), |generation| Caller::Spec { generation })
                } else if let Some(rest) = text.strip_prefix("peer:") {
                    match rest.split_once(";operator=") {
                        Some((peer, key)) => Caller::peer(peer, Some(key.to_string())),
                        None => Caller::peer(rest, None),
                    }
                } else if let Some(caller) = text.strip_prefix("fleet:") {
                    Caller::Fleet {
                        caller: caller.to_string(),
                    }
                } else if let Some(caller) = text.strip_prefix("mapreduce:") {
                    Caller::MapReduce {
                        caller: caller.to_string(),
                    }
                } else {
                    unknown()
                }
            }
        })
    }
}

impl From<&str> for Caller {
    fn from(text: &str) -> Self {
        text.parse().unwrap_or_else(|never| match never {})
    }
}

impl Serialize for Caller {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Caller {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Caller::from(String::deserialize(deserializer)?.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caller_survives_its_text_form() {
        let callers = [
            Caller::McpLocal,
            Caller::Cli,
            Caller::Spec { generation: 7 },
            Caller::peer("ab12", None),
            Caller::peer("ab12", Some("ed25519:AAAA".into())),
            Caller::Fleet {
                caller: "cd34".into(),
            },
            Caller::MapReduce {
                caller: "cd34".into(),
            },
            Caller::Unstated,
            Caller::Unknown("who knows".into()),
        ];
        for caller in callers {
            let text = caller.to_string();
            assert_eq!(text.parse::<Caller>().unwrap(), caller, "{text}");
            let json = serde_json::to_string(&caller).unwrap();
            assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), caller);
        }
        assert_eq!(
            "peer:ab12;operator=ed25519:AAAA".parse::<Caller>().unwrap(),
            Caller::peer("ab12", Some("ed25519:AAAA".into()))
        );
        assert_eq!(
            "spec:x".parse::<Caller>().unwrap(),
            Caller::Unknown("spec:x".into())
        );
    }
}
