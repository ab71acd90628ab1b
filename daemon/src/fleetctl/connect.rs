//! fleetctl's connection flags: how it reaches the room and where it keeps its own identity and
//! job history. Its own set, not the node's: a send-only caller has no name, tags, mode or
//! trusted operators to set. Each flag also reads its `REMOTE_AGENTS_*` variable or the config
//! file, through the node library's layering (flag > env > file > default).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use remote_agents_node::config::{NodeFlags, ProcessEnv, Settings};
use remote_agents_ops::parse_duration;

use crate::room::RoomArgs;

/// How fleetctl reaches the fleet, plus a named context that picks a config file.
#[derive(Debug, Clone, Args)]
pub struct ConnectFlags {
    #[command(flatten)]
    pub room: RoomArgs,
    /// The operator key fleetctl signs bundles with and binds to its peer identity (file from
    /// `fleetctl keygen`).
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateFlags,
    /// Named context: reads `~/.config/remote-agents/contexts/NAME.toml` as the config file
    /// (unless --config is given).
    #[arg(long, env = "REMOTE_AGENTS_CONTEXT")]
    pub context: Option<String>,
    /// How long to wait for the relay and the peers' handshakes before acting.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

/// Where fleetctl's state lives: its identity and job history are kept in `<data dir>/fleetctl`.
#[derive(Debug, Clone, Args)]
pub struct StateFlags {
    /// Data directory (fleetctl uses its `fleetctl` subfolder).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl StateFlags {
    /// The settings these flags, the environment and the config file give.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings::resolve(&self.flags(), &ProcessEnv)?)
    }

    fn flags(&self) -> NodeFlags {
        NodeFlags {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            ..NodeFlags::default()
        }
    }
}

/// The settings fleetctl connects with: its flags, then the environment, then the config file
/// (the named context's when no --config is given).
pub fn resolve_settings(flags: &ConnectFlags) -> anyhow::Result<Settings> {
    let mut node = NodeFlags {
        relay: flags.room.relay.clone(),
        room: flags.room.room.clone(),
        token: flags.room.token.clone(),
        encryption_key: flags.room.encryption_key.clone(),
        relay_key: flags.room.relay_key.clone(),
        operator_key: flags.operator_key.clone(),
        ..flags.state.flags()
    };
    if node.config.is_none()
        && let Some(context) = &flags.context
    {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let path = PathBuf::from(home)
            .join(".config/remote-agents/contexts")
            .join(format!("{context}.toml"));
        anyhow::ensure!(
            path.exists(),
            "context `{context}`: no file {}",
            path.display()
        );
        node.config = Some(path);
    }
    Ok(Settings::resolve(&node, &ProcessEnv)?)
}
