//! The node and the fleet CLI. One module per capability; the binaries in `src/bin` only parse
//! arguments, set up tracing to stderr and call into this library.

// The node (issue 4): settings, facts, the policy gate, executors, journal and audit, the
// operation types shared by MCP and the net RPC, the node wiring and the MCP server.
pub mod audit;
pub mod config;
pub mod desired;
pub mod exec;
pub mod facts;
pub mod fs;
pub mod git;
pub mod journal;
pub mod mcp;
pub mod node;
pub mod ops;
pub mod policy;
pub mod sandbox;
pub mod search;

// The secure channel (issue 3): the persistent identity and the connection manager + RPC over
// the relay.
pub mod identity;
pub mod net;

// The fleet CLI (issue 2): offline commands over spec files (validate, diff/plan, explain,
// convert); online commands (apply, exec, status, ...) are added as further subcommands.
pub mod fleetctl;

// The fleet as one computer (issue 5): fan-out engine, per-host records, folding.
pub mod fleet;

// MapReduce across the fleet (issue 7): a coordinator on the caller (fleetctl or an MCP node).
pub mod mapreduce;

// `remote-agents demo`: a local fleet on loopback (embedded relay, nodes, fan-outs).
pub mod demo;

// Schedules (issue 7): cron lines, the per-node runner, imperative schedules and run history.
pub mod schedule;
