//! The `remote-agents` binary's argument grammar: its commands (`run`, `mcp`/`hybrid`,
//! `config show`, `demo`, `audit`, the installers) and the node's flags, mapped onto the node library's
//! `NodeFlags` (flag > env > file > default is decided there).

use clap::{Args, Parser, Subcommand};
use remote_agents_node::config::NodeFlags;

pub use crate::node_args::{NodeArgs, WatchArgs};
use crate::output::Output;

/// `remote-agents`: one node of the fleet.
#[derive(Debug, Parser)]
#[command(
    name = "remote-agents",
    version,
    about = "A node of the remote-agents fleet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Headless full peer.
    Run(RunFlags),
    /// Full peer plus an MCP server (stdio by default, or Streamable HTTP with --http).
    Mcp(McpFlags),
    /// Alias of `mcp`.
    Hybrid(McpFlags),
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// A whole fleet on loopback: embedded relay, one node per host of the example fleet, two
    /// fan-outs, then teardown. No account, no internet.
    Demo(crate::demo::DemoArgs),
    /// Print the audit log: who asked what, the policy decision and the result.
    Audit {
        #[command(flatten)]
        flags: NodeArgs,
        /// Show at most this many of the newest records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// `text` (a table), `json` (JSON lines, one record a line) or `yaml`.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
        /// The same as `-o json`.
        #[arg(long, conflicts_with = "output")]
        json: bool,
    },
    /// Install this node as a service that starts at login (a systemd user unit or a launchd
    /// LaunchAgent; `--system`: a system service) and runs `run` with the given settings.
    Install(crate::install::service::InstallArgs),
    /// Stop the service `install` set up and remove what it wrote, and only that.
    Uninstall(crate::install::service::UninstallArgs),
    /// Register this node as an MCP server in an AI client's config file (without --client: list
    /// the clients and which have a config here).
    InstallMcp(crate::install::mcp_clients::InstallMcpArgs),
    /// Remove the entry `install-mcp` wrote from the client's config file.
    UninstallMcp(crate::install::mcp_clients::UninstallMcpArgs),
    /// Serve the browser panel on a loopback address, print its URL (the room in its fragment)
    /// and open the browser: the page joins the room itself, as a send-only peer.
    Panel(crate::panel::PanelArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every effective setting with its source (secrets redacted).
    Show(NodeArgs),
}

/// Flags of `run`: the node's flags plus watch mode.
#[derive(Debug, Args, Clone, Default)]
pub struct RunFlags {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub watch: WatchArgs,
}

impl RunFlags {
    /// The node's flags with the watch flags folded in.
    pub fn node_flags(&self) -> NodeFlags {
        NodeFlags {
            watch: self.watch.flags(),
            ..self.node.flags()
        }
    }
}

/// Flags of `mcp` / `hybrid`: the node's flags plus the MCP transport.
#[derive(Debug, Args, Clone, Default)]
pub struct McpFlags {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Serve MCP over Streamable HTTP at http://ADDR/mcp instead of stdio (loopback only, e.g.
    /// 127.0.0.1:8765; port 0 picks a free one, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// FOR TESTS ONLY: serve --http without the bearer token, so that any local user controls
    /// this node. Exists for test suites whose clients cannot send an Authorization header.
    #[arg(long, requires = "http")]
    pub http_insecure_no_auth: bool,
    /// The MCP toolsets offered to the model, comma-separated: core, files, git, fleet, spec,
    /// schedule, mapreduce, transfer, tasks, or all (default core,files,git,fleet; also
    /// REMOTE_AGENTS_TOOLSETS or `toolsets` in config.toml). A spec's McpSurface for this host
    /// narrows them further.
    #[arg(long, value_name = "LIST")]
    pub toolsets: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

impl McpFlags {
    /// The node's flags with the watch flags and the toolsets folded in.
    pub fn node_flags(&self) -> NodeFlags {
        NodeFlags {
            watch: self.watch.flags(),
            toolsets: self.toolsets.clone(),
            ..self.node.flags()
        }
    }

    /// The chosen transport; refuses a non-loopback HTTP address before anything starts.
    pub fn transport(
        &self,
    ) -> Result<remote_agents_mcp::Transport, remote_agents_mcp::http::HttpError> {
        match self.http {
            None => Ok(remote_agents_mcp::Transport::Stdio),
            Some(addr) => {
                let auth = if self.http_insecure_no_auth {
                    remote_agents_mcp::http::Auth::InsecureNone
                } else {
                    remote_agents_mcp::http::Auth::BearerToken
                };
                remote_agents_mcp::http::check_address(addr)
                    .map(|addr| remote_agents_mcp::Transport::Http(addr, auth))
            }
        }
    }
}
