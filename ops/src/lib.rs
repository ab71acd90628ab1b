//! The operations a node performs, as values: the request enum that travels over the net RPC
//! (and that the MCP tools build), each operation's arguments and results, the caller, and the
//! outcome a node returns. Local and remote execution share this one shape: MCP tool →
//! `Request` → either this node's `Node::handle` or the same call on the peer named by
//! `agent_id`. Pure: no files, sockets, processes, clocks or runtimes (the tidy test checks that
//! no I/O crate is reachable from here).
//!
//! Argument structs double as MCP input schemas, so each rejects unknown fields
//! (`deny_unknown_fields`, which schemars renders as `additionalProperties: false`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod agent;
pub mod bundle;
pub mod caller;
pub mod chat;
pub mod desired_ops;
pub mod exec;
pub mod facts;
pub mod files;
pub mod git;
pub mod host_status;
pub mod limits;
pub mod operation;
pub mod operator;
pub mod preview;
pub mod request;
pub mod schedule;
pub mod status;
pub mod task;
pub mod transfer;

pub use agent::*;
pub use caller::Caller;
pub use chat::*;
pub use desired_ops::*;
pub use exec::*;
pub use facts::Facts;
pub use files::*;
pub use git::*;
pub use host_status::HostStatus;
pub use limits::*;
pub use preview::*;
pub use remote_agents_spec::Mode;
pub use request::*;
pub use schedule::*;
pub use task::*;
pub use transfer::*;
