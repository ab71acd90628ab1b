//! The desired-state operations: offer a signed bundle, get a kept one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredOfferArgs {
    pub bundle: crate::bundle::SignedBundle,
    /// Also remove imperative changes the spec does not hold (schedules added by hand).
    #[serde(default)]
    pub prune: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredGetArgs {
    /// Generation number, revision or hash prefix; the applied bundle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The answer to a `DesiredOffer`: what the node decided and its status after reconciling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredOfferResult {
    /// `new`, `current`, `outside-wave` (a rollout wave that leaves this host out: it keeps
    /// its generation) or `refused`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: crate::status::ObservedStatus,
}

impl Summary for DesiredOfferArgs {
    /// The claim only: verifying (signature + spec load) happens once, in the offer.
    fn summary(&self, op: &str) -> String {
        match self.bundle.peek() {
            Some(c) => format!(
                "{op} generation {} revision {} by {}",
                c.generation, c.revision, c.issuer
            ),
            None => format!("{op} (unreadable bundle)"),
        }
    }
}

impl Summary for DesiredGetArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.revision.as_deref().unwrap_or("(applied)"))
    }
}
