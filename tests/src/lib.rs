//! Helpers for end-to-end tests that run the real binaries on 127.0.0.1.

pub mod cluster;
pub mod fleet;
pub mod git_servers;
pub mod net;
pub mod node;
pub mod relay;
pub mod simulated;
