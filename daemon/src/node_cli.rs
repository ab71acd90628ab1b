//! The `remote-agents` binary's argument grammar: its commands (`run`, `mcp`/`hybrid`,
//! `config show`, `demo`, `audit`) and the node's flags, mapped onto the node library's
//! `NodeFlags` (flag > env > file > default is decided there).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use remote_agents_node::config::{NodeFlags, WatchFlags};

use crate::output::Output;
use crate::room::RoomArgs;

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
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every effective setting with its source (secrets redacted).
    Show(NodeArgs),
}

/// Flags shared by every node command. Environment variables are read by `Settings::resolve`
/// rather than by clap so that `config show` can tell a flag from an environment variable.
#[derive(Debug, Args, Clone, Default)]
pub struct NodeArgs {
    #[command(flatten)]
    pub room: RoomArgs,
    /// Agent name shown to peers.
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated tags.
    #[arg(long)]
    pub tags: Option<String>,
    /// Send-only: join the fleet but accept no commands.
    #[arg(long)]
    pub no_agent: bool,
    /// Directory for identity, store and backups.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// plan | edit | bypass | disabled.
    #[arg(long)]
    pub mode: Option<String>,
    /// Comma-separated operator public keys (`ed25519:...`) this node trusts to sign desired
    /// state, whatever a bundle says (the local trust anchor; best kept in a root-owned config
    /// file as `operators = [...]`).
    #[arg(long)]
    pub operators: Option<String>,
    /// The operator key this process acts for (file from `fleetctl keygen`): fleetctl signs
    /// bundles with it and binds it to its peer identity so nodes know who commands them.
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
}

/// Watch mode (GitOps) flags of `run`, `mcp` and `hybrid`.
#[derive(Debug, Args, Clone, Default)]
pub struct WatchArgs {
    /// Watch mode: reconcile from this local spec folder and re-apply when its files change.
    #[arg(long, value_name = "DIR")]
    pub spec: Option<PathBuf>,
    /// Watch mode (GitOps): follow this git repository (local path or URL) and apply new
    /// commits that pass validation.
    #[arg(long, value_name = "PATH|URL")]
    pub spec_repo: Option<String>,
    /// The branch --spec-repo follows (default: the remote's default branch / HEAD).
    #[arg(long = "branch", value_name = "B")]
    pub spec_branch: Option<String>,
    /// How often --spec-repo is fetched (it is also fetched on SIGHUP and, for a local
    /// repository, when its refs change).
    #[arg(long, value_name = "D", value_parser = remote_agents_ops::parse_duration)]
    pub spec_interval: Option<std::time::Duration>,
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
    #[command(flatten)]
    pub watch: WatchArgs,
}

impl McpFlags {
    /// The node's flags with the watch flags folded in.
    pub fn node_flags(&self) -> NodeFlags {
        NodeFlags {
            watch: self.watch.flags(),
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

impl NodeArgs {
    /// The flag layer of the node's settings.
    pub fn flags(&self) -> NodeFlags {
        NodeFlags {
            relay: self.room.relay.clone(),
            room: self.room.room.clone(),
            token: self.room.token.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            no_agent: self.no_agent,
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            mode: self.mode.clone(),
            encryption_key: self.room.encryption_key.clone(),
            relay_key: self.room.relay_key.clone(),
            operators: self.operators.clone(),
            operator_key: self.operator_key.clone(),
            watch: WatchFlags::default(),
        }
    }
}

impl WatchArgs {
    pub fn flags(&self) -> WatchFlags {
        WatchFlags {
            spec: self.spec.clone(),
            spec_repo: self.spec_repo.clone(),
            spec_branch: self.spec_branch.clone(),
            spec_interval: self.spec_interval,
        }
    }
}
