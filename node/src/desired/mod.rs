//! Desired state on the node: operator key files (`operator`), which bundles a node trusts and
//! keeps (`state`), what this host should look like under a bundle and one pass converging to it
//! (`reconcile`), and the loop that runs the passes (`controller`). The values
//! (signed bundles, statuses) are `remote_agents_ops::{bundle, status}`; how bundles travel is
//! `crate::sync`.

pub mod controller;
pub mod operator;
pub mod reconcile;
pub mod state;

pub use operator::OperatorKey;
pub use remote_agents_ops::bundle::{
    AuthenticBundle, BundleContent, BundleError, SignedBundle, SpecFile, VerifiedBundle,
};
pub use remote_agents_ops::status::{Condition, Drift, Health, ObservedStatus, SyncState};
pub use state::{Accepted, DesiredState, HistoryEntry, Refusal};
