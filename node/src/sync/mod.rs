//! How desired state reaches nodes: bundles left sealed at the relay's retained store and
//! fetched from it or from peers (`distribute`), published by a caller and followed until the
//! hosts report them (`publish`), and watch mode's local sources, a folder or a git repository
//! (`watch`).

pub mod distribute;
pub mod publish;
pub mod rollout;
pub mod watch;
