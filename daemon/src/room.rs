//! The flags that name a room and reach it, shared by the node's commands and fleetctl's. Each
//! also reads its `REMOTE_AGENTS_*` variable or the config file (flag > env > file > default).

use clap::Args;

#[derive(Debug, Args, Clone, Default)]
pub struct RoomArgs {
    /// Relay WebSocket URL (none: the node runs local-only); several separated by commas (the
    /// instances of a relay cluster) are tried in turn when a connection dies.
    #[arg(long)]
    pub relay: Option<String>,
    /// Room name on the relay.
    #[arg(long)]
    pub room: Option<String>,
    /// Room token (shared secret).
    #[arg(long)]
    pub token: Option<String>,
    /// Explicit 32-byte end-to-end key (hex or base64) instead of one derived from the token.
    #[arg(long)]
    pub encryption_key: Option<String>,
    /// Credential presented to the relay itself (never derived from the room token).
    #[arg(long)]
    pub relay_key: Option<String>,
}
