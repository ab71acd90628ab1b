//! A fleet in a few lines: an in-process relay, real `remote-agents run` node processes with
//! names, tags and modes, an observer that waits until they are all present, and `fleetctl`
//! invocations wired to the same room.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use remote_agents_node::identity::Identity;
use remote_agents_node::net::{Net, NetConfig};
use remote_agents_relay::RelayConfig;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::net::{DEADLINE, RestartableRelay, test_psk};
use crate::node::node_binary;

/// The explicit end-to-end key every node of a test fleet uses (hex of `test_psk`), so tests
/// skip the deliberately slow Argon2id stretching of a room token.
pub const ENCRYPTION_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// One node to start: name, tags and mode.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// Empty: no `--tags` flag.
    pub tags: Vec<String>,
    /// Empty: no `--mode` flag.
    pub mode: String,
    /// More arguments for `remote-agents run`.
    pub args: Vec<String>,
    /// Environment variables for the node's process (e.g. the user's git config): set to the
    /// value, or removed when `None`.
    pub envs: Vec<(String, Option<String>)>,
}

impl NodeSpec {
    pub fn new(name: &str, tags: &[&str], mode: &str) -> Self {
        NodeSpec {
            name: name.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            mode: mode.to_string(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// A node started with only a name: the spec gives it its tags and mode.
    pub fn bare(name: &str) -> Self {
        NodeSpec::new(name, &[], "")
    }

    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.envs.push((name.to_string(), Some(value.to_string())));
        self
    }

    pub fn without_env(mut self, name: &str) -> Self {
        self.envs.push((name.to_string(), None));
        self
    }
}

pub struct TestFleet {
    /// The relay every node and fleetctl use: `REMOTE_AGENTS_TEST_FLEET_RELAY_URL` (e.g. the
    /// Worker under workerd) or an in-process Rust relay.
    pub relay_url: String,
    _relay: Option<RestartableRelay>,
    pub room: String,
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<String, Child>,
    observer: Net,
    _observer_shutdown: tokio_util::sync::DropGuard,
}

impl TestFleet {
    /// Starts a relay and the nodes, and waits until every node is present and authenticated.
    pub async fn start(nodes: &[NodeSpec]) -> anyhow::Result<Self> {
        Self::start_in(&std::env::temp_dir(), nodes).await
    }

    /// `start`, with the fleet's directory (the nodes' homes) made beneath `parent`: a benchmark
    /// whose many nodes each store a copy puts them on a RAM file system.
    pub async fn start_in(parent: &std::path::Path, nodes: &[NodeSpec]) -> anyhow::Result<Self> {
        let (relay_url, relay) = match std::env::var("REMOTE_AGENTS_TEST_FLEET_RELAY_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let relay = RestartableRelay::start(RelayConfig::default()).await?;
                (relay.url(), Some(relay))
            }
        };
        let room = format!("fleet-{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir_in(parent)?;
        let shutdown = CancellationToken::new();
        let observer_identity = Identity::ephemeral()?;
        let mut config = NetConfig::new(relay_url.clone(), room.clone(), test_psk());
        config.announcement.name = "observer".into();
        let observer = Net::start(&observer_identity, config, None, shutdown.clone());
        let mut fleet = TestFleet {
            relay_url,
            _relay: relay,
            room,
            dir,
            nodes: BTreeMap::new(),
            observer,
            _observer_shutdown: shutdown.drop_guard(),
        };
        for node in nodes {
            fleet.spawn(node)?;
        }
        fleet
            .wait_for_hosts(nodes.iter().map(|n| n.name.as_str()))
            .await?;
        Ok(fleet)
    }

    /// Starts (or restarts, with the same data) one node; does not wait for it.
    pub fn start_node(&mut self, node: &NodeSpec) -> anyhow::Result<()> {
        self.spawn(node)
    }

    /// Sends one request (an `ops::Request` as JSON) to the named host from the observer (a
    /// peer with no operator key) and returns the outcome as JSON.
    pub async fn call(
        &self,
        host: &str,
        request: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        // A node may be between sessions (a re-handshake after a relay hiccup): wait for it.
        self.wait_for_hosts([host]).await?;
        let peer = self
            .observer
            .peers()
            .into_iter()
            .find(|p| p.announcement.name == host)
            .with_context(|| format!("{host} is not connected"))?;
        let envelope = serde_json::json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "caller": "test",
            "request": request,
        });
        let mut call = self
            .observer
            .call(peer.peer_id, serde_json::to_vec(&envelope)?, DEADLINE)
            .await?;
        let (_, response) = call.collect().await?;
        let reply: serde_json::Value = serde_json::from_slice(&response)?;
        Ok(reply["outcome"].clone())
    }

    fn spawn(&mut self, node: &NodeSpec) -> anyhow::Result<()> {
        // The node's state and its user's home are separate: a node never lets requests write
        // into its own data dir.
        let home = self.dir.path().join("nodes").join(&node.name);
        let data_dir = self.dir.path().join("data").join(&node.name);
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(home.with_extension("log"))?;
        let mut command = Command::new(node_binary()?);
        command
            .args(["run", "--relay", &self.relay_url, "--room", &self.room])
            .args(["--encryption-key", ENCRYPTION_KEY, "--name", &node.name]);
        if !node.tags.is_empty() {
            command.args(["--tags", &node.tags.join(",")]);
        }
        if !node.mode.is_empty() {
            command.args(["--mode", &node.mode]);
        }
        for (name, value) in &node.envs {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let child = command
            .args(&node.args)
            .arg("--data-dir")
            .arg(&data_dir)
            // Commands on the node see which node they run on, so tests can make hosts differ.
            .env("TEST_NODE_NAME", &node.name)
            .env("HOME", &home)
            .env_remove("REMOTE_AGENTS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", node.name))?;
        self.nodes.insert(node.name.clone(), child);
        Ok(())
    }

    /// Waits until the observer sees every named host.
    pub async fn wait_for_hosts<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> anyhow::Result<()> {
        let wanted: Vec<String> = names.into_iter().map(str::to_string).collect();
        let mut presence = self.observer.watch_peers();
        let all_present = |peers: &BTreeMap<_, remote_agents_node::net::PeerInfo>| {
            wanted
                .iter()
                .all(|name| peers.values().any(|p| &p.announcement.name == name))
        };
        tokio::time::timeout(DEADLINE * 3, presence.wait_for(all_present))
            .await
            .with_context(|| {
                format!(
                    "nodes not all present within {:?}: {wanted:?}",
                    DEADLINE * 3
                )
            })??;
        Ok(())
    }

    /// Restarts the relay on the same address: the in-process one directly; an external one
    /// (`REMOTE_AGENTS_TEST_FLEET_RELAY_URL`) with the shell command in
    /// `REMOTE_AGENTS_TEST_FLEET_RELAY_RESTART`.
    pub async fn restart_relay(&mut self) -> anyhow::Result<()> {
        if let Some(relay) = &mut self._relay {
            return relay.restart().await;
        }
        let command = std::env::var("REMOTE_AGENTS_TEST_FLEET_RELAY_RESTART").context(
            "an external relay is in use: set REMOTE_AGENTS_TEST_FLEET_RELAY_RESTART to a command \
             that restarts it on the same address",
        )?;
        let status = Command::new("sh").args(["-c", &command]).status().await?;
        anyhow::ensure!(status.success(), "relay restart command failed: {command}");
        Ok(())
    }

    /// Leaves `bundle` in the relay's retained store, sealed to the room, as any room member
    /// can (the observer proves no operator key); nodes fetch it when they (re)connect.
    pub async fn retain_bundle(
        &self,
        bundle: &remote_agents_node::desired::SignedBundle,
    ) -> anyhow::Result<()> {
        remote_agents_node::sync::distribute::publish_retained(&self.observer, &test_psk(), bundle)
            .await?;
        Ok(())
    }

    /// Whether the named node's process is still running (it did not crash).
    pub fn is_running(&mut self, name: &str) -> bool {
        self.nodes
            .get_mut(name)
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills a node process at once (SIGKILL) and waits until the relay reports it gone.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut child = self.nodes.remove(name).context("no such node")?;
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// `remote-agents mcp` joined to this fleet's room as a send-only operator (no agent of its
    /// own), with its data in `mcp-node` beneath the fleet's folder.
    pub async fn start_mcp_operator(&self) -> anyhow::Result<crate::node::McpProcess> {
        let data_dir = self.dir.path().join("mcp-node");
        let data_dir = data_dir.to_string_lossy();
        crate::node::McpProcess::start(
            &[
                "--relay",
                &self.relay_url,
                "--room",
                &self.room,
                "--name",
                "operator",
                "--no-agent",
                "--data-dir",
                &data_dir,
            ],
            &[("REMOTE_AGENTS_ENCRYPTION_KEY", ENCRYPTION_KEY)],
        )
        .await
    }

    /// The data folder fleetctl uses in this fleet.
    pub fn fleetctl_data_dir(&self) -> PathBuf {
        self.dir.path().join("fleetctl")
    }

    /// `fleetctl ARGS` connected to this fleet's room, not started yet (stdout piped).
    pub fn fleetctl_command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut command = Command::new(fleetctl_binary()?);
        command
            .args(args)
            .env("REMOTE_AGENTS_RELAY", &self.relay_url)
            .env("REMOTE_AGENTS_ROOM", &self.room)
            .env("REMOTE_AGENTS_ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("REMOTE_AGENTS_DATA_DIR", self.fleetctl_data_dir())
            // Never the operator key of whoever runs the tests (~/.config/remote-agents).
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("REMOTE_AGENTS_OPERATOR_KEY")
            .env_remove("REMOTE_AGENTS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        Ok(command)
    }

    /// Runs `fleetctl ARGS` connected to this fleet's room; returns (exit code, stdout, stderr).
    pub async fn fleetctl(&self, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
        let output = self.fleetctl_command(args)?.output();
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .context("fleetctl did not finish within 120 s")??;
        Ok((
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Runs `fleetctl ARGS -o json` and parses the per-host records into host → record.
    pub async fn fleetctl_json(
        &self,
        args: &[&str],
    ) -> anyhow::Result<(i32, BTreeMap<String, serde_json::Value>)> {
        let mut all: Vec<&str> = args.to_vec();
        // Options go before `--` (the command's own arguments follow it).
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.splice(at..at, ["-o", "json"]);
        let (code, stdout, stderr) = self.fleetctl(&all).await?;
        let value: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
            format!("fleetctl printed no JSON (exit {code}): {stdout}\n{stderr}")
        })?;
        let records = value["records"]
            .as_array()
            .context("no records")?
            .iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap_or_default().to_string(),
                    r.clone(),
                )
            })
            .collect();
        Ok((code, records))
    }

    pub fn node_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("nodes").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

/// The `fleetctl` binary beside the `remote-agents` one.
pub fn fleetctl_binary() -> anyhow::Result<PathBuf> {
    let node = node_binary()?;
    let binary = node.with_file_name("fleetctl");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "remote-agents", "--bin", "fleetctl"])
            .status()?;
        anyhow::ensure!(status.success(), "cargo build of fleetctl failed");
    }
    Ok(binary)
}

/// Status of each host in a record map.
pub fn statuses(records: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    records
        .iter()
        .map(|(host, r)| {
            (
                host.clone(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A node's home folder (its user's files, where relative paths land).
pub fn node_dir(fleet: &TestFleet, name: &str) -> PathBuf {
    fleet.dir.path().join("nodes").join(name)
}
