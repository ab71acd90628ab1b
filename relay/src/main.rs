//! `remote-agents-relay`: parses flags, sets up logging to stderr, binds, prints the readiness
//! line and serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use remote_agents_relay::RelayConfig;

/// The self-hosted relay for remote-agents.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8787")]
    bind: SocketAddr,
    /// Largest frame (header + body) in bytes; larger messages close with 1009.
    #[arg(long, default_value_t = remote_agents_protocol::frame::MAX_FRAME_DEFAULT)]
    max_frame: usize,
    /// Peers per room.
    #[arg(long, default_value_t = remote_agents_protocol::frame::MAX_PEERS_DEFAULT)]
    max_peers: usize,
    /// Frames per second per connection (0 = no limit).
    #[arg(long, default_value_t = remote_agents_protocol::frame::RATE_PER_SECOND_DEFAULT)]
    rate: u32,
    /// Burst above the rate (default: twice the rate).
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Access key peers must present as `Authorization: Bearer <key>`.
    #[arg(long, env = "REMOTE_AGENTS_RELAY_KEY", hide_env_values = true)]
    relay_key: Option<String>,
    /// Seconds without any frame or pong before a connection is closed with 4008.
    #[arg(long, default_value_t = remote_agents_protocol::frame::IDLE_TIMEOUT_SECS_DEFAULT)]
    idle_timeout: u64,
    /// tungstenite read chunk per connection in bytes (allocated up front: idle memory).
    #[arg(long, default_value_t = RelayConfig::default().read_buffer_size, hide = true)]
    read_buffer: usize,
    /// Bytes collected before a socket write (0 = write every frame at once).
    #[arg(long, default_value_t = RelayConfig::default().write_buffer_size, hide = true)]
    write_buffer: usize,
    /// Bytes of retained blobs one room may keep (puts beyond get ERROR 507).
    #[arg(long, default_value_t = remote_agents_protocol::frame::RETAINED_BYTES_PER_ROOM_DEFAULT)]
    retained_bytes_per_room: usize,
    /// Bytes of retained blobs the whole relay may keep (puts beyond get ERROR 507).
    #[arg(long, default_value_t = remote_agents_relay::RETAINED_BYTES_TOTAL_DEFAULT)]
    retained_bytes_total: usize,
    /// Seconds a room's retained blobs are kept after its last peer left.
    #[arg(long, default_value_t = remote_agents_protocol::frame::RETAINED_TTL_SECS_DEFAULT)]
    retained_ttl: u64,
    /// Bytes of replies and presence frames queued for one connection before it is closed with
    /// 4009 as a reader that does not read (default: 8 frames).
    #[arg(long)]
    max_queued_bytes: Option<usize>,
    /// Seconds a sender waits on a receiver that reads nothing before the receiver is closed
    /// with 4009.
    #[arg(long, default_value_t = 20)]
    slow_reader_timeout: u64,
    /// WebSocket connections served at once; more are refused with HTTP 503.
    #[arg(long, default_value_t = remote_agents_relay::MAX_CONNECTIONS_DEFAULT)]
    max_connections: usize,
    /// Seconds a client has to send its whole HTTP request head.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a new connection has to prove its peer id's key before it is closed with 4004.
    #[arg(long, default_value_t = remote_agents_protocol::frame::PROOF_TIMEOUT_SECS_DEFAULT)]
    proof_timeout: u64,
    /// Seconds between pings.
    #[arg(long, default_value_t = remote_agents_protocol::frame::PING_INTERVAL_SECS_DEFAULT)]
    ping_interval: u64,
    /// Also answer UDP reflector requests on this address (port 0 picks one; printed), so
    /// nodes learn the address their NAT gives them and can punch direct paths to each other.
    #[arg(long)]
    udp_reflector: Option<SocketAddr>,
    /// Run as one instance of a relay cluster sharing rooms through this NATS server
    /// (`nats://host:4222`; several separated by commas), which must have JetStream on
    /// (`nats-server -js`): peers on different instances reach each other, and retained blobs
    /// live in JetStream so they outlive every instance. Without it the relay is on its own.
    #[arg(long, value_name = "NATS_URL")]
    cluster: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // tungstenite prints whole frames at debug/trace level; payload bytes never go to logs,
        // whatever RUST_LOG asks for.
        .add_directive("tungstenite=info".parse()?)
        .add_directive("tokio_tungstenite=info".parse()?);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let args = Args::parse();
    let config = RelayConfig {
        max_frame: args.max_frame,
        max_peers: args.max_peers,
        rate_per_second: args.rate,
        rate_burst: args
            .rate_burst
            .unwrap_or_else(|| args.rate.saturating_mul(2)),
        relay_key: args.relay_key.filter(|key| !key.is_empty()),
        ping_interval: Duration::from_secs(args.ping_interval.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        queue_budget: 4 * args.max_frame,
        proof_timeout: Duration::from_secs(args.proof_timeout.max(1)),
        retained_bytes_per_room: args.retained_bytes_per_room,
        retained_bytes_total: args.retained_bytes_total,
        retained_ttl: Duration::from_secs(args.retained_ttl),
        // Never below one full RETAIN_GET answer (four blobs at the frame cap), or an honest
        // reader would be cut off by a single reply.
        max_queued_bytes: args
            .max_queued_bytes
            .unwrap_or(8 * args.max_frame)
            .max((remote_agents_protocol::frame::RETAINED_PER_KEY + 1) * args.max_frame),
        slow_reader_timeout: Duration::from_secs(args.slow_reader_timeout.max(1)),
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_timeout.max(1)),
        read_buffer_size: args.read_buffer,
        write_buffer_size: args.write_buffer,
        cluster: args.cluster.filter(|url| !url.is_empty()),
    };
    if let Some(bind) = args.udp_reflector {
        let socket = tokio::net::UdpSocket::bind(bind)
            .await
            .with_context(|| format!("binding the UDP reflector on {bind}"))?;
        let address = socket
            .local_addr()
            .context("reading the reflector's address")?;
        // Printed before the readiness line (which comes last), for tests that bind port 0.
        println!("udp reflector on {address}");
        eprintln!("udp reflector on {address}");
        tokio::spawn(remote_agents_relay::serve_reflector(socket));
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let address = listener.local_addr().context("reading the bound address")?;
    // What this configuration can hold at most, so an operator sizes the machine (or the
    // limits) before an attacker does.
    eprintln!("{}", config.memory_ceiling());
    // The readiness line, once the relay takes connections (in cluster mode: once it has
    // joined the other instances): tests that bind port 0 read the address from here.
    let ready = move || {
        println!("listening on {address}");
        eprintln!("listening on {address}");
    };
    remote_agents_relay::serve_when_ready(listener, config, shutdown_signal(), ready)
        .await
        .context("relay stopped")?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
