//! `reconnect-bench`: relay-bench part (c). N lightweight nodes (the node's own relay connection
//! code and full-jitter backoff, no handshakes, and like headless nodes no presence
//! subscription) connect to an in-process relay from several worker processes, one room of
//! 10,000 by default; one subscriber (what fleetctl does: a paged snapshot, then batched joins
//! and leaves) follows the room from this process. The relay restarts; the bench measures how
//! long until every node is back, until the subscriber sees them all, how many frames the relay
//! handled per reconnected node (its `/metrics`), and how the attempts spread over time.
//!
//! `cargo run --release -p remote-agents-tests --bin reconnect-bench -- --nodes 10000`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use remote_agents_node::net::{ReconnectBackoff, connect_relay};
use remote_agents_protocol::frame::{FrameKind, Header};
use remote_agents_protocol::session::StaticKeypair;
use remote_agents_relay::RelayConfig;
use remote_agents_tests::net::RestartableRelay;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Nodes in total.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Worker processes the nodes are split over (each holds nodes/processes sockets).
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Nodes per room. With protocol version 1 every JOIN went to the whole room (~50 M
    /// presence frames per mass reconnect of one 10,000-node room); now only subscribers hear
    /// joins, in batches.
    #[arg(long, default_value_t = 10_000)]
    room_size: usize,
    /// First backoff step: the first reconnect waits uniform in [0, this).
    #[arg(long, default_value_t = 4000)]
    reconnect_min_ms: u64,
    /// Ceiling of the backoff steps. Equal to the first step, a node whose first attempt hit
    /// the relay while it was still restarting waits at most another 4 s, so every node is back
    /// within ~4.5 s; with 8 s the last ones come back after ~8 s.
    #[arg(long, default_value_t = 4000)]
    reconnect_max_ms: u64,
    /// Give up waiting for the nodes after this long.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Internal: run as a worker against this relay URL.
    #[arg(long, hide = true)]
    worker: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    first: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    count: usize,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = args.worker.clone() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        return runtime.block_on(worker(url, args));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(parent(args))
}

async fn parent(args: Args) -> anyhow::Result<()> {
    let config = RelayConfig {
        // The room's nodes and the subscriber.
        max_peers: args.room_size.max(1) + 1,
        ..RelayConfig::default()
    };
    let mut relay = RestartableRelay::start(config).await?;
    let url = relay.url();
    let exe = std::env::current_exe()?;
    let per_process = args.nodes.div_ceil(args.processes);
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let mut children = Vec::new();
    for process in 0..args.processes {
        let first = process * per_process;
        let count = per_process.min(args.nodes.saturating_sub(first));
        if count == 0 {
            break;
        }
        let mut child = Command::new(&exe)
            .args(["--worker", &url])
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--room-size", &args.room_size.to_string()])
            .args(["--reconnect-min-ms", &args.reconnect_min_ms.to_string()])
            .args(["--reconnect-max-ms", &args.reconnect_max_ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("start a worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        children.push(child);
    }
    drop(lines_tx);
    let workers = children.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut ready = 0;
    while ready < workers {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) if line == "ready" => ready += 1,
            Ok(Some(_)) => {}
            Ok(None) => bail!("a worker exited before its nodes connected"),
            Err(_) => bail!("nodes did not all connect initially"),
        }
    }
    // The subscriber follows the first room (all of it, by default).
    let first_room_size = args.room_size.min(args.nodes);
    let subscriber = Subscriber::start(url.clone(), "bench-room-0".into());
    subscriber.wait_for(first_room_size, 1, deadline).await?;
    println!(
        "{} nodes connected from {workers} processes in rooms of {}, one subscriber following \
         the first room; restarting the relay",
        args.nodes, args.room_size
    );
    let restart_started = unix_nanos();
    relay.restart().await?;
    let relay_back = unix_nanos();

    let mut attempts = Vec::new();
    let mut back = Vec::new();
    while back.len() < args.nodes {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => {
                let mut fields = line.split(' ');
                let (Some(kind), Some(time)) = (fields.next(), fields.next()) else {
                    continue;
                };
                let Ok(time) = time.parse::<u64>() else {
                    continue;
                };
                match kind {
                    "A" => attempts.push(time),
                    "C" => back.push(time),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    // Its second connection: the one after the restart.
    let seen_all = subscriber.wait_for(first_room_size, 2, deadline).await;
    let subscriber_saw_all = unix_nanos();
    // The relay's own count of what the reconnect cost, read once the last batch went out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = relay_metrics(&relay.address.to_string()).await;
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    relay.stop().await;
    report(&args, restart_started, relay_back, &mut attempts, &back);
    match seen_all {
        Ok(()) => println!(
            "subscriber: saw all {first_room_size} of its room present {:.2} s after the relay \
             was back (snapshot pages + batched changes)",
            (subscriber_saw_all - relay_back) as f64 / 1e9
        ),
        Err(error) => println!("subscriber: {error}"),
    }
    match metrics {
        Ok(metrics) => {
            let reconnected = back.len().max(1) as f64;
            let value = |name: &str| metrics.get(name).copied().unwrap_or(0);
            let out = value("relay_frames_out_total");
            let into = value("relay_frames_in_total");
            let presence = value("relay_presence_frames_total");
            // The key proof's frames come before the connection is in a room, so the relay
            // counts them apart: a PROOF per connection, and a CHALLENGE for each peer that
            // did not take its challenge in the upgrade's answer (nodes do).
            let proofs = value("relay_key_proof_frames_total");
            let total = out + into + proofs;
            println!(
                "relay frames since the restart: {out} sent + {into} received after the key \
                 proofs + {proofs} CHALLENGE/PROOF = {total}, {:.3} per reconnected node \
                 (target <= 3); {presence} WELCOME/PRESENCE ({:.2} per node), {} of them the \
                 subscriber's snapshot pages and batches",
                total as f64 / reconnected,
                presence as f64 / reconnected,
                presence.saturating_sub(back.len() as u64 + 1),
            );
        }
        Err(error) => println!("relay metrics unavailable: {error:#}"),
    }
    Ok(())
}

/// A peer in this process that follows one room's presence as fleetctl does: after each
/// (re)connect, the snapshot page by page with the subscribe flag, then the batches.
struct Subscriber {
    present:
        Arc<std::sync::Mutex<std::collections::HashSet<remote_agents_protocol::frame::PeerId>>>,
    changed: Arc<tokio::sync::Notify>,
    /// Connections that got their WELCOME so far.
    connections: Arc<AtomicUsize>,
}

impl Subscriber {
    fn start(url: String, room: String) -> Subscriber {
        let present = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let connections = Arc::new(AtomicUsize::new(0));
        let subscriber = Subscriber {
            present: present.clone(),
            changed: changed.clone(),
            connections: connections.clone(),
        };
        tokio::spawn(async move {
            let keypair = StaticKeypair::generate().expect("x25519 key generation");
            let mut backoff =
                ReconnectBackoff::new(Duration::from_millis(200), Duration::from_secs(1));
            loop {
                if let Ok(socket) =
                    connect_relay(&url, &room, &keypair, None, 1 << 20, 64 * 1024).await
                {
                    backoff.reset();
                    let _ = follow(socket, &present, &changed, &connections).await;
                    present.lock().expect("present").clear();
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        });
        subscriber
    }

    /// Waits until the subscriber's `connection`-th connection sees `count` peers present.
    async fn wait_for(
        &self,
        count: usize,
        connection: usize,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<()> {
        loop {
            let notified = self.changed.notified();
            let seen = self.present.lock().expect("present").len();
            if seen >= count && self.connections.load(Ordering::SeqCst) >= connection {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("the subscriber saw {seen} of {count} present before the deadline");
            }
        }
    }
}

async fn follow(
    socket: remote_agents_node::net::RelaySocket,
    present: &std::sync::Mutex<std::collections::HashSet<remote_agents_protocol::frame::PeerId>>,
    changed: &tokio::sync::Notify,
    connections: &AtomicUsize,
) -> anyhow::Result<()> {
    use futures_util::SinkExt;
    use remote_agents_protocol::frame::{Body, Frame, PeerId, PresenceChange};
    let (mut sink, mut stream) = socket.split();
    let mut request = 1u64;
    while let Some(message) = stream.next().await {
        let Message::Binary(bytes) = message? else {
            continue;
        };
        let frame = Frame::decode(bytes)?;
        match frame.body()? {
            Body::Welcome { .. } => {
                present.lock().expect("present").clear();
                connections.fetch_add(1, Ordering::SeqCst);
                let get = Frame::presence_get(request, true, PeerId::ZERO);
                sink.send(Message::Binary(get.encode())).await?;
            }
            Body::Presence(page) => {
                let mut last = None;
                {
                    let mut present = present.lock().expect("present");
                    for change in page.changes {
                        match change {
                            PresenceChange::Joined(peer) => {
                                last = Some(peer);
                                present.insert(peer);
                            }
                            PresenceChange::Left(peer) => {
                                present.remove(&peer);
                            }
                        }
                    }
                }
                changed.notify_waiters();
                if page.snapshot
                    && page.more
                    && let Some(last) = last
                {
                    request += 1;
                    let get = Frame::presence_get(request, true, last);
                    sink.send(Message::Binary(get.encode())).await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The relay's counters from `GET /metrics`.
async fn relay_metrics(address: &str) -> anyhow::Result<std::collections::HashMap<String, u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect())
}

fn max_share(sorted: &[u64], window: u64) -> (usize, f64) {
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    (best, best as f64 / sorted.len().max(1) as f64)
}

fn report(args: &Args, restart_started: u64, relay_back: u64, attempts: &mut [u64], back: &[u64]) {
    attempts.sort_unstable();
    let seconds = |nanos: u64| nanos as f64 / 1e9;
    let last_back = back.iter().copied().max().unwrap_or(relay_back);
    let all_back = back.len() == args.nodes;
    let back_after = seconds(last_back.saturating_sub(relay_back));
    let (one_second, one_second_share) = max_share(attempts, 1_000_000_000);
    let (tenth, tenth_share) = max_share(attempts, 100_000_000);
    println!(
        "relay restart took {:.3} s (stop + rebind)",
        seconds(relay_back - restart_started)
    );
    println!(
        "back: {}/{} nodes; last one {:.2} s after the relay was back (target 5 s: ratio {:.2}){}",
        back.len(),
        args.nodes,
        back_after,
        back_after / 5.0,
        if all_back { "" } else { "  NOT ALL BACK" }
    );
    println!(
        "attempts: {} ({:.2} per node), first reconnect wait uniform in [0, {} ms)",
        attempts.len(),
        attempts.len() as f64 / args.nodes.max(1) as f64,
        args.reconnect_min_ms
    );
    println!(
        "busiest 1 s window: {one_second} attempts = {:.1}% of all (target 10%: ratio {:.2})",
        one_second_share * 100.0,
        one_second_share / 0.10
    );
    println!(
        "busiest 100 ms window: {tenth} attempts = {:.1}% of all",
        tenth_share * 100.0
    );
    println!(
        "note: with one attempt per node and all back within T s, some 1 s window holds at \
         least 1/T of the attempts (pigeonhole): 20% for T = 5"
    );
}

async fn worker(url: String, args: Args) -> anyhow::Result<()> {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let connected = Arc::new(AtomicUsize::new(0));
    // Initial connections are paced so the start-up is not itself the herd being measured.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for index in args.first..args.first + args.count {
        let url = url.clone();
        let out = out_tx.clone();
        let connected = connected.clone();
        let gate = gate.clone();
        let args = args.clone();
        tokio::spawn(async move {
            let room = format!("bench-room-{}", index / args.room_size.max(1));
            let keypair = StaticKeypair::generate().expect("x25519 key generation");
            let mut backoff = ReconnectBackoff::new(
                Duration::from_millis(args.reconnect_min_ms),
                Duration::from_millis(args.reconnect_max_ms),
            );
            let mut initial = true;
            loop {
                let mut permit = if initial {
                    Some(gate.acquire().await.expect("gate open"))
                } else {
                    let _ = out.send(format!("A {}", unix_nanos()));
                    None
                };
                if let Ok(socket) = connect_relay(&url, &room, &keypair, None, 1 << 20, 4096).await
                {
                    let (_sink, mut stream) = socket.split();
                    let mut welcomed = false;
                    while let Some(Ok(message)) = stream.next().await {
                        if let Message::Binary(bytes) = message
                            && !welcomed
                            && Header::decode(&bytes).is_ok_and(|h| h.kind == FrameKind::Welcome)
                        {
                            welcomed = true;
                            if initial {
                                initial = false;
                                permit = None;
                                connected.fetch_add(1, Ordering::SeqCst);
                            } else {
                                let _ = out.send(format!("C {}", unix_nanos()));
                            }
                            backoff.reset();
                        }
                    }
                }
                drop(permit);
                let delay = if initial {
                    Duration::from_millis(50)
                } else {
                    backoff.next_delay()
                };
                tokio::time::sleep(delay).await;
            }
        });
    }
    drop(out_tx);
    let mut stdout = std::io::stdout().lock();
    let mut announced = false;
    loop {
        if !announced && connected.load(Ordering::SeqCst) == args.count {
            writeln!(stdout, "ready")?;
            stdout.flush()?;
            announced = true;
        }
        match tokio::time::timeout(Duration::from_millis(50), out_rx.recv()).await {
            Ok(Some(line)) => {
                writeln!(stdout, "{line}")?;
                while let Ok(line) = out_rx.try_recv() {
                    writeln!(stdout, "{line}")?;
                }
                stdout.flush()?;
            }
            Ok(None) => return Ok(()),
            Err(_) => {}
        }
    }
}
