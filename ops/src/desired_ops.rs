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

/// Spec files to plan against the generation a node applied (`desired_plan`): what a caller
/// without the spec parser (the browser panel) shows before it signs and offers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredPlanArgs {
    /// The spec files as a bundle carries them: a path (for diagnostics) and the text.
    pub files: Vec<crate::bundle::SpecFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The plan of `desired_plan`: the spec checked as a node checks a bundle, then compared with
/// the model of the generation this node applied (none: an empty fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredPlanResult {
    /// The Fleet document's `metadata.name` (a bundle's `fleet`).
    pub fleet: String,
    /// The generation this node applied; 0 for none.
    pub generation: u64,
    /// The applied generation's revision, if any.
    pub revision: Option<String>,
    /// `spec_hash` of the files (equal to the applied one's: nothing would change).
    pub spec_hash: String,
    /// Whether the files are the applied generation's, byte for byte.
    pub unchanged: bool,
    /// Terraform-style text: `+ ~ -` items, the effects on declared hosts, the `Plan:` line.
    pub text: String,
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub unknown: usize,
    /// Warnings of the spec check, `file:line:col: message` each.
    pub warnings: Vec<String>,
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

impl Summary for DesiredPlanArgs {
    fn summary(&self, op: &str) -> String {
        let bytes: usize = self.files.iter().map(|f| f.text.len()).sum();
        format!("{op} of {} file(s), {bytes} bytes", self.files.len())
    }
}

impl Summary for DesiredGetArgs {
    fn summary(&self, op: &str) -> String {
        format!("{op} {}", self.revision.as_deref().unwrap_or("(applied)"))
    }
}
