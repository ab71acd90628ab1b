//! The one end-to-end test binary: real binaries on 127.0.0.1. Each capability is a module.

mod relay_binary;
mod relay_conformance;
mod node;
mod net_rpc;
