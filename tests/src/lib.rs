//! Helpers for end-to-end tests that run the real binaries on 127.0.0.1.

pub mod relay;
pub mod node;
pub mod net;
