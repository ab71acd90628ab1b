//! The node library: everything a node does and everything a caller does to a fleet, with no
//! argument grammar (the binaries' crate) and no MCP (the MCP adapter crate). Stdout belongs to
//! the MCP channel of the process that embeds this library, so nothing here prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The node (issue 4): settings, facts, the policy gate, executors, journal and audit, the node
// wiring and authorization.
pub mod audit;
pub mod config;
pub mod exec;
pub mod facts;
pub mod fs;
pub mod git;
pub mod journal;
pub mod node;
pub mod policy;
pub mod preview;
pub mod sandbox;
pub mod search;

// Tasks and the node as a service: the one place tasks start (`runtime`); opening, connecting
// and running a node with what runs beside its requests until it is told to stop (`service`).
pub mod runtime;
pub mod service;

// The secure channel (issue 3): the persistent identity and the connection manager + RPC over
// the relay.
pub mod identity;
pub mod net;
// The one RPC client over `net`: typed calls, and one mapping of every failure to a host status.
pub mod client;

// Desired state (issue 6): trust and kept generations, the per-host target, the node's operator
// key files (`desired`); spec sources read from files, folders and git trees (`sources`); how
// bundles reach nodes: distribution, publishing and watch mode (`sync`).
pub mod desired;
pub mod sources;
pub mod sync;

// The fleet as one computer (issue 5): fan-out engine, per-host records, folding, the caller's
// connection.
pub mod fleet;

// MapReduce across the fleet (issue 7): a coordinator on the caller (fleetctl or an MCP node).
pub mod mapreduce;

// Host→host transfer (issue 15): the engine (sources by ticket, verified resumable receive, the
// byte paths, the coordinator's records).
pub mod transfer;
// Autonomous tasks: prompts run by the host's own AI CLI.
pub mod task;
// The host's local AI-chat history, read-only through the policy gate.
pub mod chat;

// Schedules (issue 7): cron lines, the per-node runner, imperative schedules and run history.
pub mod schedule;
