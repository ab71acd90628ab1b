//! relay-bench: the relay's figures, each measured against a peer or a limit in the same run.
//! (a) throughput A → relay → B with 64 KiB frames sealed by `protocol::session` (Noise,
//!     AES-256-GCM via ring) vs a bare tokio-tungstenite forwarder without crypto, and 256 B
//!     messages per second; (b) relay memory per idle connection at 10,000 connections, read from
//!     the relay process's RSS; (c) 10,000 nodes reconnecting after a relay restart, run by
//!     `reconnect-bench` (the nodes' own connection code in several processes) and printed here;
//! (d) with `--cluster`: throughput of 64 KiB sealed frames between peers on two instances of a
//!     relay cluster (`--cluster nats://…`, a real `nats-server -js` on 127.0.0.1) next to one
//!     relay instance's, both relay processes of the same binary, in the same run.
//!
//! Run: `cargo build --release -p remote-agents-relay -p remote-agents-tests --bins &&
//!       $CARGO_TARGET_DIR/release/relay-bench`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use futures_util::{FutureExt, SinkExt, StreamExt};
use remote_agents_protocol::frame::{self, FrameKind, RoomId};
use remote_agents_protocol::key_proof;
use remote_agents_protocol::psk::Psk;
use remote_agents_protocol::session::{SessionConfig, Sessions, StaticKeypair};
use remote_agents_relay::RelayConfig;
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser, Debug)]
#[command(about = "relay throughput and memory figures")]
struct Args {
    /// MiB of 64 KiB frames sent in each throughput run.
    #[arg(long, default_value_t = 512)]
    mib: usize,
    /// Runs of each path in the 64 KiB comparison (the medians are compared).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Number of 256-byte messages in the message-rate run.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Peers per room in the memory run.
    #[arg(long, default_value_t = 100)]
    room_size: usize,
    /// The relay binary for the memory run (default: next to this binary).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Extra flags for the relay process in the memory run (e.g. "--write-buffer 0").
    #[arg(long, allow_hyphen_values = true)]
    relay_args: Option<String>,
    /// Skip (b), the memory run.
    #[arg(long)]
    no_memory: bool,
    /// Skip (a), the throughput runs.
    #[arg(long)]
    no_throughput: bool,
    /// Nodes in (c), the reconnect run.
    #[arg(long, default_value_t = 10_000)]
    reconnect_nodes: usize,
    /// Skip (c), the reconnect run.
    #[arg(long)]
    no_reconnect: bool,
    /// Run (d), the cluster comparison, and only it: starts `nats-server` (NATS_SERVER_BIN or
    /// /usr/sbin/nats-server) and relay processes.
    #[arg(long)]
    cluster: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if args.cluster {
            return cluster_throughput(&args).await;
        }
        if !args.no_throughput {
            throughput(&args).await?;
        }
        if !args.no_memory {
            memory(&args).await?;
        }
        if !args.no_reconnect {
            reconnect(&args)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// (a) throughput

const FRAME_PLAINTEXT: usize = 64 * 1024 - 42 - 64;
const SMALL_PLAINTEXT: usize = 256;

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20))
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true).await?;
    Ok(client)
}

/// A bare forwarder: the first connection's messages go to the second, batched the same way the
/// relay batches (feed while more are ready, then flush). No frame parsing, no crypto, default
/// tungstenite settings: the ceiling a relay on this machine could reach.
async fn bare_forwarder() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let accept = async |listener: &TcpListener| -> anyhow::Result<WebSocketStream<TcpStream>> {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok(tokio_tungstenite::accept_async_with_config(tcp, Some(client_config())).await?)
        };
        let (Ok(source), Ok(destination)) = (accept(&listener).await, accept(&listener).await)
        else {
            return;
        };
        let (_, mut source) = source.split();
        let (mut destination, _) = destination.split();
        while let Some(Ok(message)) = source.next().await {
            if destination.feed(message).await.is_err() {
                return;
            }
            while let Some(Some(Ok(message))) = source.next().now_or_never() {
                if destination.feed(message).await.is_err() {
                    return;
                }
            }
            if destination.flush().await.is_err() {
                return;
            }
        }
    });
    Ok(address)
}

/// Sends `count` messages of `size` bytes through the bare forwarder; returns the elapsed time.
async fn run_bare(count: usize, size: usize) -> anyhow::Result<Duration> {
    let address = bare_forwarder().await?;
    let url = format!("ws://{address}/");
    let sender = connect(&url).await?;
    let receiver = connect(&url).await?;
    let payload = Bytes::from(vec![0x5au8; size]);
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let (_, mut stream) = receiver.split();
        let mut received = 0usize;
        while received < count {
            match stream.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    anyhow::ensure!(bytes.len() == size, "short message");
                    received += 1;
                }
                Some(Ok(_)) => {}
                other => bail!("bare receiver ended early: {other:?}"),
            }
        }
        Ok(started.elapsed())
    });
    let (mut sink, _stream) = sender.split();
    for index in 0..count {
        sink.feed(Message::Binary(payload.clone())).await?;
        if index % 16 == 15 {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    receiving.await?
}

/// Two session endpoints with an established Noise session, handshaken in memory.
/// Two sessions with an established handshake, and their static keys (to prove at the relay).
fn session_pair() -> anyhow::Result<(Sessions, Sessions, StaticKeypair, StaticKeypair)> {
    let psk = Psk::from_bytes(&[7u8; 32])?;
    let now = Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let config = SessionConfig::default();
    let (a_keys, b_keys) = (StaticKeypair::generate()?, StaticKeypair::generate()?);
    let mut a = Sessions::new(
        a_keys.clone(),
        psk.clone(),
        Vec::new(),
        config.clone(),
        now,
        unix,
    );
    let mut b = Sessions::new(b_keys.clone(), psk, Vec::new(), config, now, unix);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    a.peer_present(b_id, now);
    for _ in 0..16 {
        while let Some(out) = a.poll_transmit() {
            let _ = b.receive(&out.frame, now);
        }
        while let Some(out) = b.poll_transmit() {
            let _ = a.receive(&out.frame, now);
        }
        if a.is_established(&b_id, now) && b.is_established(&a_id, now) {
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
            return Ok((a, b, a_keys, b_keys));
        }
    }
    bail!("the in-memory handshake did not complete")
}

/// Sends `count` sealed messages of `plaintext` bytes A → relay → B and opens them at B;
/// returns the elapsed time and the size of one sealed frame.
async fn run_relay_sealed(
    relay: SocketAddr,
    count: usize,
    plaintext: usize,
) -> anyhow::Result<(Duration, usize)> {
    run_sealed_between(relay, relay, count, plaintext).await
}

/// Like [`run_relay_sealed`] with A on `sender_relay` and B on `receiver_relay` (two instances
/// of a cluster).
async fn run_sealed_between(
    sender_relay: SocketAddr,
    receiver_relay: SocketAddr,
    count: usize,
    plaintext: usize,
) -> anyhow::Result<(Duration, usize)> {
    let (mut a, mut b, a_keys, b_keys) = session_pair()?;
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let room = frame::room_id_from_name(&format!("bench-{}", uuid::Uuid::new_v4()));
    let sender = join(&sender_relay.to_string(), &room, &a_keys, client_config()).await?;
    let receiver = join(&receiver_relay.to_string(), &room, &b_keys, client_config()).await?;
    let mut sender = sender;
    if sender_relay != receiver_relay {
        // B joined on another instance: wait until A's instance has heard of it (A follows
        // presence and sees B in the snapshot or in a later batch).
        sender
            .send(Message::Binary(
                frame::Frame::presence_get(1, true, frame::PeerId::ZERO).encode(),
            ))
            .await?;
        'heard: loop {
            match tokio::time::timeout(Duration::from_secs(10), sender.next()).await? {
                Some(Ok(Message::Binary(bytes))) => {
                    let frame = frame::Frame::decode(bytes)?;
                    if let Ok(frame::Body::Presence(page)) = frame.body()
                        && page.changes.contains(&frame::PresenceChange::Joined(b_id))
                    {
                        break 'heard;
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("sender's relay ended before B joined: {other:?}"),
            }
        }
    }
    let payload = vec![0x5au8; plaintext];
    // Size of one sealed frame, to compare with bare messages of the same length.
    a.send(b_id, &payload, Instant::now())?;
    let probe = a.poll_transmit().context("no sealed frame")?;
    let frame_len = probe.frame.len();
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let (_, mut stream) = receiver.split();
        let mut received = 0usize;
        while received < count {
            match stream.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    let kind = frame::Header::decode(&bytes)?.kind;
                    if kind != FrameKind::Data {
                        continue;
                    }
                    match b.receive(&bytes, Instant::now()) {
                        Ok(Some((from, opened))) => {
                            anyhow::ensure!(from == a_id && opened.len() == plaintext);
                            received += 1;
                        }
                        Ok(None) => {}
                        Err(rejection) => bail!("B rejected a frame: {rejection:?}"),
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("relay receiver ended early: {other:?}"),
            }
        }
        Ok(started.elapsed())
    });
    let (mut sink, mut incoming) = sender.split();
    // A gets nothing but presence; drain it so nothing backs up.
    tokio::spawn(async move { while let Some(Ok(_)) = incoming.next().await {} });
    sink.feed(Message::Binary(probe.frame.into())).await?;
    for index in 1..count {
        a.send(b_id, &payload, Instant::now())?;
        while let Some(out) = a.poll_transmit() {
            sink.feed(Message::Binary(out.frame.into())).await?;
        }
        if index % 16 == 15 {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    Ok((receiving.await??, frame_len))
}

/// Connects `keypair`'s peer to `room`, answers the relay's key challenge and waits for WELCOME.
async fn join(
    relay: &str,
    room: &RoomId,
    keypair: &StaticKeypair,
    config: WebSocketConfig,
) -> anyhow::Result<Client> {
    let peer = keypair.peer_id();
    let url = format!("ws://{relay}{}", frame::connect_path(room, &peer));
    let (mut client, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let challenge = match tokio::time::timeout(Duration::from_secs(10), client.next()).await? {
        Some(Ok(Message::Binary(bytes))) => frame::Frame::decode(bytes)?.body()?,
        other => bail!("expected CHALLENGE, got {other:?}"),
    };
    let frame::Body::Challenge(challenge) = challenge else {
        bail!("expected CHALLENGE, got {challenge:?}");
    };
    let proof = key_proof::prove(keypair, room, &challenge)?;
    client
        .send(Message::Binary(frame::Frame::proof(peer, proof).encode()))
        .await?;
    expect_welcome(&mut client).await?;
    Ok(client)
}

async fn expect_welcome(client: &mut Client) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(10), client.next()).await? {
        Some(Ok(Message::Binary(bytes)))
            if frame::Header::decode(&bytes)?.kind == FrameKind::Welcome =>
        {
            Ok(())
        }
        other => bail!("expected WELCOME, got {other:?}"),
    }
}

async fn in_process_relay() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let config = RelayConfig {
        rate_per_second: 0,
        ..RelayConfig::default()
    };
    tokio::spawn(remote_agents_relay::serve(
        listener,
        config,
        std::future::pending(),
    ));
    Ok(address)
}

async fn throughput(args: &Args) -> anyhow::Result<()> {
    let relay = in_process_relay().await?;
    let count = args.mib * 1024 * 1024 / (64 * 1024);
    println!(
        "(a) throughput, {count} frames of 64 KiB each way ({} MiB)",
        args.mib
    );
    // Two cores shared by sender, relay and receiver make single runs noisy (0.5-0.9 for the
    // same build): alternate the two paths `--repeat` times and compare the medians.
    let mut sealed_runs = Vec::new();
    let mut bare_runs = Vec::new();
    let mut frame_len = 0;
    for _ in 0..args.repeat.max(1) {
        let (sealed_time, sealed_len) = run_relay_sealed(relay, count, FRAME_PLAINTEXT).await?;
        frame_len = sealed_len;
        sealed_runs.push(sealed_time);
        bare_runs.push(run_bare(count, frame_len).await?);
    }
    let gbit = |time: Duration| (count * frame_len * 8) as f64 / time.as_secs_f64() / 1e9;
    let show = |runs: &[Duration]| {
        runs.iter()
            .map(|time| format!("{:.1}", gbit(*time)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (sealed, bare) = (gbit(median(&mut sealed_runs)), gbit(median(&mut bare_runs)));
    println!("    frame size on the wire: {frame_len} bytes (plaintext {FRAME_PLAINTEXT})");
    println!(
        "    bare tokio-tungstenite forwarder, no crypto: {bare:.2} Gbit/s median (runs: {})",
        show(&bare_runs)
    );
    println!(
        "    relay, sealed with protocol::session (AES-256-GCM): {sealed:.2} Gbit/s median (runs: {})",
        show(&sealed_runs)
    );
    println!(
        "    ratio relay/bare: {:.2} (target >= 0.70)",
        sealed / bare
    );

    let messages = args.messages;
    let (small_time, small_len) = run_relay_sealed(relay, messages, SMALL_PLAINTEXT).await?;
    let bare_small = run_bare(messages, small_len).await?;
    let rate = |time: Duration| messages as f64 / time.as_secs_f64();
    println!(
        "    {SMALL_PLAINTEXT} B messages ({small_len} B sealed frames): relay {:.0} msg/s sealed (target >= 300000), bare forwarder {:.0} msg/s",
        rate(small_time),
        rate(bare_small)
    );
    Ok(())
}

/// The middle run (sorts `runs`).
fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// (b) memory per idle connection

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

fn relay_binary(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.relay_bin {
        Some(path) => Ok(path.clone()),
        None => sibling_binary("remote-agents-relay", "-p remote-agents-relay"),
    }
}

/// A binary built next to this one.
fn sibling_binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let sibling = std::env::current_exe()?
        .parent()
        .context("no parent directory")?
        .join(name);
    anyhow::ensure!(
        sibling.exists(),
        "{} not found: build it with `cargo build --release {package}`",
        sibling.display()
    );
    Ok(sibling)
}

// ---------------------------------------------------------------------------------------------
// (c) reconnect after a relay restart

/// Runs `reconnect-bench`: its nodes are the node's own connection code spread over several
/// processes (one process holds at most ~20k sockets here), which this process cannot host
/// next to the throughput runs.
fn reconnect(args: &Args) -> anyhow::Result<()> {
    let binary = sibling_binary("reconnect-bench", "-p remote-agents-tests --bins")?;
    println!(
        "(c) reconnect of {} nodes after a relay restart:",
        args.reconnect_nodes
    );
    let output = std::process::Command::new(&binary)
        .args(["--nodes", &args.reconnect_nodes.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("    {line}");
    }
    anyhow::ensure!(
        output.status.success(),
        "reconnect-bench failed: {}",
        output.status
    );
    Ok(())
}

async fn memory(args: &Args) -> anyhow::Result<()> {
    let binary = relay_binary(args)?;
    let mut child = tokio::process::Command::new(&binary)
        .args(["--bind", "127.0.0.1:0", "--idle-timeout", "3600"])
        .args(
            args.relay_args
                .iter()
                .flat_map(|extra| extra.split_whitespace()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("relay has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("relay readiness line deadline")??
            .context("relay exited before listening")?;
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.trim().to_owned();
        }
    };
    let before = rss_kib(pid)?;
    let rooms: Vec<RoomId> = (0..args.connections.div_ceil(args.room_size))
        .map(|index| frame::room_id_from_name(&format!("bench-memory-{index}")))
        .collect();
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let started = Instant::now();
    let clients: Vec<Client> = futures_util::stream::iter(0..args.connections)
        .map(|index| {
            let room = rooms[index / args.room_size];
            let address = &address;
            async move {
                let keypair = StaticKeypair::generate()?;
                join(address, &room, &keypair, config).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connect_time = started.elapsed();
    // Let the relay finish writing the JOINs the late joiners caused before reading its RSS.
    let mut after = rss_kib(pid)?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_kib(pid)?;
        if now == after {
            break;
        }
        after = now;
    }
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / clients.len() as f64;
    println!(
        "(b) memory: {} idle connections in {} rooms of {} (connected in {:.1} s): relay RSS {} KiB -> {} KiB",
        clients.len(),
        rooms.len(),
        args.room_size,
        connect_time.as_secs_f64(),
        before,
        after
    );
    println!(
        "    {:.2} KB per idle connection (target <= 10 KB)",
        per_connection / 1000.0
    );
    drop(clients);
    child.kill().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (d) a relay cluster next to one instance

/// Starts the relay binary on 127.0.0.1:0 with `extra` flags; returns the process and address.
async fn relay_process(
    binary: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<(tokio::process::Child, SocketAddr)> {
    let mut child = tokio::process::Command::new(binary)
        .args(["--bind", "127.0.0.1:0", "--rate", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("relay readiness line deadline")??
            .context("relay exited before listening")?;
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.trim().parse()?;
        }
    };
    Ok((child, address))
}

async fn cluster_throughput(args: &Args) -> anyhow::Result<()> {
    let binary = relay_binary(args)?;
    let nats = remote_agents_tests::cluster::NatsServer::start().await?;
    let (_single, single) = relay_process(&binary, &[]).await?;
    let (_first, first) = relay_process(&binary, &["--cluster", &nats.url]).await?;
    let (_second, second) = relay_process(&binary, &["--cluster", &nats.url]).await?;
    let count = args.mib * 1024 * 1024 / (64 * 1024);
    let gc: Vec<String> = remote_agents_tests::cluster::NATS_GC_ENV
        .iter()
        .map(|(name, value)| {
            let value = std::env::var(name).unwrap_or_else(|_| value.to_string());
            format!("{name}={value}")
        })
        .collect();
    println!(
        "(d) cluster throughput, {count} frames of 64 KiB A -> B ({} MiB), relay processes of one binary; nats-server with {}",
        args.mib,
        gc.join(" ")
    );
    let mut single_runs = Vec::new();
    let mut cluster_runs = Vec::new();
    let mut frame_len = 0;
    for _ in 0..args.repeat.max(1) {
        let (time, length) = run_sealed_between(single, single, count, FRAME_PLAINTEXT).await?;
        frame_len = length;
        single_runs.push(time);
        cluster_runs.push(
            run_sealed_between(first, second, count, FRAME_PLAINTEXT)
                .await?
                .0,
        );
    }
    let gbit = |time: Duration| (count * frame_len * 8) as f64 / time.as_secs_f64() / 1e9;
    let show = |runs: &[Duration]| {
        runs.iter()
            .map(|time| format!("{:.1}", gbit(*time)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut nats_runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        // Plain NATS core has no flow control: a subscriber that falls behind (this host is
        // shared) loses messages to the server's slow-consumer limit. Such a run measures
        // nothing, so it is run again (the relays' own traffic is credit-windowed and never
        // drops; a loss there fails the run above).
        let mut attempt = 1;
        let run = loop {
            match nats_alone(&nats.url, count, frame_len).await {
                Ok(run) => break run,
                Err(error) if attempt < 3 => {
                    println!("    nats-server alone, attempt {attempt}: {error:#}; again");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        nats_runs.push(run);
    }
    let (one, cluster, nats_only) = (
        gbit(median(&mut single_runs)),
        gbit(median(&mut cluster_runs)),
        gbit(median(&mut nats_runs)),
    );
    println!(
        "    one relay instance: {one:.2} Gbit/s median (runs: {})",
        show(&single_runs)
    );
    println!(
        "    cluster, A and B on two instances through nats-server: {cluster:.2} Gbit/s median (runs: {})",
        show(&cluster_runs)
    );
    println!(
        "    ratio cluster/one instance: {:.2} (target >= 0.50)",
        cluster / one
    );
    println!(
        "    nats-server alone, the same frames publisher -> nats-server -> subscriber (no relay): \
         {nats_only:.2} Gbit/s median (runs: {})",
        show(&nats_runs)
    );
    // The cluster path is the one-instance path plus the NATS hop, all on the same cores, so
    // its time per byte is at least the sum of the two: the most it can reach here.
    let bound = 1.0 / (1.0 / one + 1.0 / nats_only);
    println!(
        "    the sum-of-costs bound 1/(1/one + 1/nats) = {bound:.2} Gbit/s = {:.2}x one instance; \
         cluster / bound: {:.2}",
        bound / one,
        cluster / bound
    );
    Ok(())
}

/// `count` messages of `length` bytes from one NATS client to another through `nats_url` (the
/// subscription buffers the whole run, so no flow control slows it), timed from the first
/// publish to the last message received.
async fn nats_alone(nats_url: &str, count: usize, length: usize) -> anyhow::Result<Duration> {
    let publisher = async_nats::connect(nats_url).await?;
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(count + 16)
        .connect(nats_url)
        .await?;
    let subject = format!("bench.{}", uuid::Uuid::new_v4().simple());
    let mut subscription = subscriber.subscribe(subject.clone()).await?;
    subscriber.flush().await?;
    let payload = Bytes::from(vec![7u8; length]);
    let receiving = tokio::spawn(async move {
        let mut received = 0;
        while received < count {
            match tokio::time::timeout(Duration::from_secs(30), subscription.next()).await {
                Ok(Some(_)) => received += 1,
                _ => break,
            }
        }
        received
    });
    let started = Instant::now();
    for _ in 0..count {
        publisher.publish(subject.clone(), payload.clone()).await?;
    }
    publisher.flush().await?;
    let received = receiving.await?;
    ensure!(
        received == count,
        "nats-server delivered {received} of {count}"
    );
    Ok(started.elapsed())
}
