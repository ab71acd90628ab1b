//! The one end-to-end test binary: real binaries on 127.0.0.1. Each capability is a module.

mod adversarial;
mod fleet_fanout;
mod net_rpc;
mod node;
mod relay_binary;
mod relay_conformance;
