//! Desired state on the node: signed bundles (`bundle`), operator keys (`operator`), which
//! bundles a node trusts and keeps (`state`), what this host should look like under a bundle
//! (`reconcile`), what it reports (`status`), and how bundles travel between the relay's
//! retained store, peers and fleetctl (`distribute`), and watch mode's local sources (`watch`).

pub mod bundle;
pub mod distribute;
pub mod operator;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod watch;

pub use bundle::{BundleContent, BundleError, SignedBundle, SpecFile, VerifiedBundle};
pub use operator::OperatorKey;
pub use state::{Accepted, DesiredState, HistoryEntry, Refusal};
pub use status::{Condition, Drift, Health, ObservedStatus, SyncState};
