//! The binaries' crate: the argument grammar of `remote-agents` (`node_cli`) and `fleetctl`
//! (`fleetctl`), one output-format type (`output`), the rendering of results, the loopback demo
//! (`demo`) and the audit report (`audit_report`). Everything they do is in the node library
//! and the MCP adapter; nothing depends on this crate. Later: the installers.

pub mod audit_report;
pub mod demo;
pub mod fleetctl;
pub mod node_cli;
pub mod output;
pub mod room;
