//! The node's flags shared by its commands (`NodeArgs`) and watch mode's (`WatchArgs`), mapped
//! onto the node library's `NodeFlags`: their own module so that `node_cli` and the installers
//! (`install::service` carries them into the service) both use them without a module cycle.

use std::path::PathBuf;

use clap::Args;
use remote_agents_node::config::{NodeFlags, WatchFlags};

use crate::room::RoomArgs;

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
    /// Whether transfers try a direct UDP path to the other host before the relay (default
    /// true; `--direct=false` where UDP between the hosts is known not to pass).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub direct: Option<bool>,
    /// The relay's UDP reflector (`HOST:PORT`, the relay's `--udp-reflector`), which tells the
    /// direct path the address this host's NAT gives it.
    #[arg(long, value_name = "HOST:PORT")]
    pub udp_reflector: Option<String>,
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
            direct: self.direct,
            udp_reflector: self.udp_reflector.clone(),
            toolsets: None,
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
