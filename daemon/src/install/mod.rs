//! The installers: the node as a service of the machine (`service`: a systemd unit or a launchd
//! job) and the node as an MCP server of an AI client (`mcp_clients`: the client's own config file
//! edited in place). The npm packages are in `npm/` at the top of the repository.

pub mod mcp_clients;
pub mod service;
