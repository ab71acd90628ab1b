//! The binaries' crate: the argument grammar of `remote-agents` (`node_cli`) and `fleetctl`
//! (`fleetctl`), one output-format type (`output`), the rendering of results, the loopback demo
//! (`demo`), the audit report (`audit_report`), the browser panel's server (`panel`), and the
//! installers (`install`: the service and the AI clients' MCP configs). Everything else they do
//! is in the node library and the MCP adapter; nothing depends on this crate.

pub mod audit_report;
pub mod demo;
pub mod fleetctl;
pub mod install;
pub mod node_args;
pub mod node_cli;
pub mod output;
pub mod panel;
pub mod room;
