//! One operation as a value: the `Envelope` that carries a `Request` (the enum the net RPC
//! carries and the MCP tools build, written by `operation`'s table) with its id and caller, and
//! the `Outcome`.

use serde::{Deserialize, Serialize};

use crate::operation::Effect;
pub use crate::operation::Request;
use crate::*;

/// The journaling properties, from each operation's `Effect` (the rest of `Request`'s matches
/// are written by the `operations!` table in `operation`).
impl Request {
    /// What the caller must also be allowed beyond the operation's own capability and
    /// toolset, and what about the request asks for it: a `file_search` with `ai_fallback` may
    /// start a task on the host, so it needs what `task_dispatch` needs.
    pub fn also_needs(
        &self,
    ) -> Option<(
        remote_agents_spec::Capability,
        remote_agents_spec::Toolset,
        &'static str,
    )> {
        match self {
            Request::FileSearch(args) if args.ai_fallback => Some((
                remote_agents_spec::Capability::Task,
                remote_agents_spec::Toolset::Tasks,
                "file_search with ai_fallback",
            )),
            _ => None,
        }
    }

    /// Whether the operation only reads: running it twice changes nothing, so it needs no
    /// crash-safe "started" record before it runs (only its audit record after).
    pub fn is_read_only(&self) -> bool {
        self.effect() == Effect::ReadOnly
    }

    /// Whether running this request twice has the effect of running it once: reads, and a
    /// desired-state offer (offering a generation the node holds answers `current`). Such a
    /// request is audited but not journaled; a retried id simply runs again.
    pub fn is_idempotent(&self) -> bool {
        self.effect() != Effect::Changes
    }

    /// Whether a crash while this request runs must be reported as `outcome_unknown`, which
    /// takes a durable `started` record before it runs. Not for idempotent requests (rerunning
    /// is harmless; adopting a bundle is one atomic commit of its own, so after a crash the
    /// node's generation says exactly whether it took effect).
    pub fn needs_started_record(&self) -> bool {
        !self.is_idempotent()
    }
}

/// A request with its identity and its caller, as journaled and as sent over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per request; a repeated id returns the stored outcome instead of running again.
    pub id: String,
    /// Who asked. A node replaces what a peer's envelope claims with the authenticated peer.
    pub caller: Caller,
    pub request: Request,
    /// Made on behalf of a model: this node's MCP client asked for it, here or through the
    /// node that forwarded it (an MCP tool naming another agent, a fan-out, a MapReduce job, a
    /// transfer's steps). The receiving node applies its own `McpSurface` to such requests. A
    /// peer that leaves it out is an ordinary peer, governed by operators and policy as any.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_behalf_of_model: bool,
    /// Why this request may run inside a closed change window (a `Window` of the applied spec);
    /// the node records it in the audit log. Absent: a closed window refuses the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The operation ran; `result` is its result struct as JSON.
    Ok { result: serde_json::Value },
    /// The policy gate refused it; nothing ran.
    Refused { reason: String },
    /// It ran (or tried to) and failed.
    Failed { error: String },
    /// A crash interrupted it after it started: it may or may not have taken effect, and it is
    /// not run again.
    OutcomeUnknown { reason: String },
}

impl Outcome {
    pub fn ok<T: Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(result) => Outcome::Ok { result },
            Err(e) => Outcome::Failed {
                error: format!("cannot encode result: {e}"),
            },
        }
    }

    pub fn failed(error: impl std::fmt::Display) -> Self {
        Outcome::Failed {
            error: error.to_string(),
        }
    }

    /// One word for the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
            Outcome::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }
}

/// The reply to an `Envelope` over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let request = Request::Exec(ExecArgs {
            agent_id: Some("peer".into()),
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1.5),
            max_output_bytes: None,
        });
        let envelope = Envelope {
            id: "r1".into(),
            caller: "mcp:local".into(),
            request: request.clone(),
            on_behalf_of_model: false,
            window_override: None,
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert!(text.contains("\"op\":\"exec\""), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(request.without_agent_id().agent_id(), None);
    }

    /// `timeout_secs=1e300` panicked in `Duration::from_secs_f64`; NaN, infinities, negative
    /// numbers and zero are refused too, each naming the field and the range.
    #[test]
    fn timeouts_out_of_range_are_errors_naming_the_field() {
        for bad in [
            1e300,
            f64::NAN,
            f64::INFINITY,
            -1.0,
            0.0,
            MAX_TIMEOUT_SECS + 1.0,
        ] {
            let err = timeout_from_secs("timeout_secs", bad).unwrap_err();
            assert!(
                err.contains("timeout_secs") && err.contains("86400"),
                "{err}"
            );
        }
        assert_eq!(
            timeout_from_secs("timeout_secs", 1.5),
            Ok(std::time::Duration::from_millis(1500))
        );
        let args = ExecArgs {
            agent_id: None,
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1e300),
            max_output_bytes: Some(usize::MAX),
        };
        assert!(args.timeout().is_err());
        assert!(args.max_output().unwrap_err().contains("max_output_bytes"));
    }

    /// `set_mode ttl_secs=2^64-1` wrapped around to an override that expired at once.
    #[test]
    fn ttls_beyond_a_year_are_errors_naming_the_field() {
        let err = ttl_from_secs("ttl_secs", u64::MAX).unwrap_err();
        assert!(err.contains("ttl_secs"), "{err}");
        assert!(ttl_from_secs("ttl_secs", MAX_TTL_SECS).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES + 1).is_err());
    }

    #[test]
    fn unknown_argument_fields_are_rejected() {
        let text = r#"{"op":"read_file","args":{"path":"/tmp/x","bogus":1}}"#;
        let err = serde_json::from_str::<Request>(text).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let schema = serde_json::to_value(schemars::schema_for!(ReadFileArgs)).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    }
}
