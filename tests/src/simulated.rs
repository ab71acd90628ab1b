//! A simulated fleet for benchmarks: an in-process relay, a send-only caller, and N full nodes
//! (each with identity, journal, WebSocket, Noise sessions, policy gate and executors) shared
//! out over a few `sim-nodes` processes.
//!
//! Why several processes and not one: a process that spawns copies its whole file-descriptor
//! table into the child, which then closes it again on exec. With a thousand nodes in one
//! process (a socket and a store file each, plus the relay's end of every socket) that was
//! ~4,000 descriptors per `exec true`, a third of the benchmark's CPU, and a cost no real node
//! pays: a real node is a process of its own with a few dozen descriptors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use remote_agents_node::config::{NodeFlags, Settings};
use remote_agents_node::fleet::connection::Connection;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Nodes per `sim-nodes` process: a thousand nodes make four processes, each with a
/// descriptor table of a few hundred entries.
pub const NODES_PER_PROCESS: usize = 250;
/// Nodes join in waves of this many, each wave handshaking with the caller before the next
/// starts: a caller joining a full room starts a thousand handshakes at once, and on a loaded
/// machine their 2-s retries overtake the answers.
const WAVE: usize = 100;
/// The room key every simulated node and the caller share.
const ROOM_KEY_BYTE: &str = "7e";

/// Where simulated nodes keep their data unless told: /dev/shm when it exists. On a real fleet
/// every host commits its journal to its own disk, while here a thousand nodes would queue
/// their fsyncs on one; tmpfs makes those commits free so the figures show the relay, crypto
/// and executors. A disk folder passed instead includes them.
pub fn default_data_base(chosen: Option<&Path>) -> PathBuf {
    if let Some(chosen) = chosen {
        return chosen.to_path_buf();
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// The settings of simulated node `index` (1-based): `sim-INDEX`, mode bypass, tagged
/// `first-200`/`first-1000` by position so a run can target the first 200 of 1,000.
pub fn node_settings(relay_url: &str, work: &Path, index: usize) -> anyhow::Result<Settings> {
    let tags: Vec<String> = [200usize, 1000]
        .iter()
        .filter(|limit| index <= **limit)
        .map(|limit| format!("first-{limit}"))
        .collect();
    let name = format!("sim-{index}");
    Ok(Settings::resolve(
        &flags(relay_url, work, &name, tags.join(","), false),
        &BTreeMap::new(),
    )?)
}

fn flags(relay_url: &str, work: &Path, name: &str, tags: String, no_agent: bool) -> NodeFlags {
    NodeFlags {
        relay: Some(relay_url.to_string()),
        room: Some("bench".into()),
        name: Some(name.to_string()),
        tags: Some(tags),
        data_dir: Some(work.join("nodes").join(name)),
        mode: Some("bypass".into()),
        encryption_key: Some(ROOM_KEY_BYTE.repeat(32)),
        no_agent,
        ..NodeFlags::default()
    }
}

/// One `sim-nodes` process and the pipe that tells it which nodes to start.
struct NodeProcess {
    child: tokio::process::Child,
    commands: tokio::process::ChildStdin,
}

pub struct SimulatedFleet {
    pub connection: Connection,
    processes: Vec<NodeProcess>,
    _shutdown: tokio_util::sync::DropGuard,
}

impl SimulatedFleet {
    /// Starts an in-process relay, a send-only caller and `n` nodes (see [`node_settings`]) in
    /// `sim-nodes` processes of at most [`NODES_PER_PROCESS`], joined in waves.
    pub async fn start(n: usize, work: &Path) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let relay_url = format!("ws://{}", listener.local_addr()?);
        let config = remote_agents_relay::RelayConfig {
            // One connection (the caller) sends a frame per node per fan-out.
            rate_per_second: 0,
            // The N nodes and the caller: a room of exactly the default cap would turn one away.
            max_peers: remote_agents_protocol::frame::MAX_PEERS_DEFAULT.max(n + 1),
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
        let caller_settings = Settings::resolve(
            &flags(&relay_url, work, "caller", String::new(), true),
            &BTreeMap::new(),
        )?;
        let caller_dir = work.join("caller");
        std::fs::create_dir_all(&caller_dir)?;
        let connection =
            Connection::open(&caller_settings, &caller_dir, Duration::from_secs(120)).await?;

        let binary = sim_nodes_binary()?;
        let mut processes = Vec::new();
        let count = n.div_ceil(NODES_PER_PROCESS);
        for process in 0..count {
            let mut child = tokio::process::Command::new(&binary)
                .arg(&relay_url)
                .arg(work)
                .arg(format!("{process}/{count}"))
                .stdin(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let commands = child.stdin.take().context("sim-nodes stdin")?;
            processes.push(NodeProcess { child, commands });
        }
        let mut fleet = SimulatedFleet {
            connection,
            processes,
            _shutdown: shutdown.drop_guard(),
        };

        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        let mut first = 1;
        while first <= n {
            let last = n.min(first + WAVE - 1);
            for process in &mut fleet.processes {
                process
                    .commands
                    .write_all(format!("{first} {last}\n").as_bytes())
                    .await
                    .context("sim-nodes took no command (did it exit?)")?;
            }
            let mut presence = fleet.connection.net.watch_peers();
            while fleet.connection.net.peer_count() < last {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "only {} of {last} nodes connected",
                    fleet.connection.net.peer_count()
                );
                for node_process in &mut fleet.processes {
                    if let Some(status) = node_process.child.try_wait()? {
                        anyhow::bail!("a sim-nodes process exited: {status}");
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), presence.changed()).await;
            }
            eprintln!(
                "  {last} of {n} nodes connected after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            first = last + 1;
        }
        Ok(fleet)
    }

    /// CPU time (user + system) so far of the node processes, and of this one (relay, caller).
    pub fn cpu_time(&self) -> anyhow::Result<(Duration, Duration)> {
        let mut nodes = Duration::ZERO;
        for process in &self.processes {
            let pid = process.child.id().context("a sim-nodes process exited")?;
            nodes += process_cpu_time(&pid.to_string())?;
        }
        Ok((nodes, process_cpu_time("self")?))
    }

    /// Fans `request` out to the nodes `selector` picks, all at once, through the caller (the
    /// path `fleetctl` takes), and returns the finished job.
    pub async fn fan_out(
        &self,
        selector: &remote_agents_spec::Selector,
        request: remote_agents_ops::Request,
        summary: &str,
    ) -> remote_agents_node::fleet::jobs::Job {
        let options = remote_agents_node::fleet::FanoutOptions {
            per_host_timeout: Duration::from_secs(60),
            concurrency: self.connection.net.peer_count().max(1),
            ..remote_agents_node::fleet::FanoutOptions::default()
        };
        remote_agents_node::fleet::connection::fan_out(
            &self.connection.net,
            &self.connection.agent_id,
            remote_agents_node::fleet::connection::FanoutPlan {
                selector,
                expected: &[],
                request,
                per_os: BTreeMap::new(),
                options: &options,
                summary: summary.to_string(),
                on_behalf_of_model: false,
                window_override: None,
            },
        )
        .await
    }

    /// [`SimulatedFleet::fan_out`], timed: the seconds it took, once every one of the
    /// `expected` hosts answered ok (an error names the first that did not).
    pub async fn timed_fan_out(
        &self,
        selector: &remote_agents_spec::Selector,
        request: remote_agents_ops::Request,
        summary: &str,
        expected: usize,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let job = self.fan_out(selector, request, summary).await;
        let seconds = started.elapsed().as_secs_f64();
        let records = &job.report.records;
        let ok = records
            .iter()
            .filter(|r| r.status == remote_agents_node::fleet::HostStatus::Ok)
            .count();
        anyhow::ensure!(
            ok == expected && records.len() == expected,
            "{summary}: {ok} of {expected} hosts ok ({} records): {:?}",
            records.len(),
            records
                .iter()
                .find(|r| r.status != remote_agents_node::fleet::HostStatus::Ok)
        );
        Ok(seconds)
    }

    /// How many processes the nodes run in.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }
}

/// A process's CPU time from /proc/PID/stat (clock ticks of 1/100 s).
fn process_cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// The `sim-nodes` binary cargo built next to the running benchmark.
fn sim_nodes_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe.with_file_name("sim-nodes");
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it with `cargo build --release -p remote-agents-tests --bins`",
        binary.display()
    );
    Ok(binary)
}

/// The body of the `sim-nodes` binary number `process` of `count`: of the nodes named on each
/// stdin line `FIRST LAST` it starts every `count`-th (`sim-I` with `(I - 1) % count ==
/// process`), so the first 200 of a thousand are spread over every process as they would be
/// over hosts; it runs them until stdin closes.
pub async fn serve_nodes(
    relay_url: String,
    work: PathBuf,
    process: usize,
    count: usize,
) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let shutdown = CancellationToken::new();
    let mut nodes = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (first, last) = line
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .with_context(|| format!("sim-nodes: expected `FIRST LAST`, got {line:?}"))?;
        for index in (first..=last).filter(|index| (index - 1) % count == process) {
            let settings = node_settings(&relay_url, &work, index)?;
            nodes.push(remote_agents_node::service::start(
                settings,
                shutdown.clone(),
            )?);
        }
    }
    shutdown.cancel();
    drop(nodes);
    Ok(())
}
