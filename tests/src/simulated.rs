//! A simulated fleet for benchmarks: an in-process relay, N full nodes in this process (each
//! with identity, journal, WebSocket, Noise sessions, policy gate) and a send-only caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use remote_agents::config::{NodeFlags, Settings};
use remote_agents::fleet::cli::Connection;
use tokio_util::sync::CancellationToken;

/// Where simulated nodes keep their data unless told: /dev/shm when it exists. On a real fleet
/// every host commits its journal to its own disk, while here a thousand nodes would queue
/// their fsyncs on one; tmpfs makes those commits free so the figures show the relay, crypto
/// and executors. A disk folder passed instead includes them.
pub fn default_data_base(chosen: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(chosen) = chosen {
        return chosen.to_path_buf();
    }
    let shm = std::path::PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

pub struct SimulatedFleet {
    pub connection: Connection,
    _nodes: Vec<Arc<remote_agents::node::Node>>,
    _shutdown: tokio_util::sync::DropGuard,
}

impl SimulatedFleet {
    /// Starts an in-process relay, `n` nodes (`sim-1`..`sim-N`, mode bypass, tagged
    /// `first-200`/`first-1000` by position) and a send-only caller, joined in waves.
    pub async fn start(n: usize, work: &std::path::Path) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let relay_url = format!("ws://{}", listener.local_addr()?);
        let config = remote_agents_relay::RelayConfig {
            // One connection (the caller) sends a frame per node per fan-out.
            rate_per_second: 0,
            ..Default::default()
        };
        {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _ = remote_agents_relay::serve(listener, config, async move {
                    shutdown.cancelled().await
                })
                .await;
            });
        }
        let key = "7e".repeat(32);
        let flags = |name: &str, tags: String, no_agent: bool| NodeFlags {
            relay: Some(relay_url.clone()),
            room: Some("bench".into()),
            name: Some(name.to_string()),
            tags: Some(tags),
            data_dir: Some(work.join("nodes").join(name)),
            mode: Some("bypass".into()),
            encryption_key: Some(key.clone()),
            no_agent,
            ..NodeFlags::default()
        };
        // The caller joins first and nodes join in waves of 100, each wave handshaking with the
        // caller before the next starts: a caller joining a full room starts a thousand
        // handshakes at once, and on a loaded machine their 2-s retries overtake the answers.
        let caller_settings =
            Settings::resolve(&flags("caller", String::new(), true), &BTreeMap::new())?;
        let caller_dir = work.join("caller");
        std::fs::create_dir_all(&caller_dir)?;
        let connection =
            Connection::open(&caller_settings, &caller_dir, Duration::from_secs(120)).await?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            // Tags let a run target the first 200 of 1,000: `first-200` is on nodes 1..=200.
            let tags: Vec<String> = [200usize, 1000]
                .iter()
                .filter(|limit| i <= **limit)
                .map(|limit| format!("first-{limit}"))
                .collect();
            let settings = Settings::resolve(
                &flags(&format!("sim-{i}"), tags.join(","), false),
                &BTreeMap::new(),
            )?;
            nodes.push(remote_agents::node::start(settings, shutdown.clone())?);
            if i % 100 == 0 || i == n {
                let mut presence = connection.net.watch_peers();
                while connection.net.peer_count() < i {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "only {} of {i} nodes connected",
                        connection.net.peer_count()
                    );
                    let _ = tokio::time::timeout(Duration::from_secs(1), presence.changed()).await;
                }
                eprintln!(
                    "  {i} of {n} nodes connected after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(SimulatedFleet {
            connection,
            _nodes: nodes,
            _shutdown: shutdown.drop_guard(),
        })
    }
}
