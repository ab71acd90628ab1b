//! One node of the direct-path tests (`e2e direct_nat`), run inside a network namespace: a real
//! `Net` through the relay, and `node::net::direct` for the data channel.
//!
//! `--role receive` keeps what it is sent (over direct connections it accepts, or in relay
//! calls at an offset) and answers status and finish calls through the relay. `--role send`
//! tries the direct path, streams `--bytes` of seeded data over it, and when there is no direct
//! path or it dies mid-transfer, sends the rest through the relay from the receiver's offset —
//! the way the transfer engine falls back without restarting the file. It prints one JSON line
//! per event on stdout; with `--pause-after N` it stops after N bytes, prints `paused` and waits
//! for a line on stdin (the test cuts UDP there).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::future::BoxFuture;
use remote_agents_node::identity::Identity;
use remote_agents_node::net::{Handler, Net, NetConfig, PeerInfo, Responder, direct};
use remote_agents_protocol::frame::PeerId;
use remote_agents_protocol::psk::Psk;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    relay: String,
    #[arg(long)]
    room: String,
    #[arg(long)]
    data_dir: std::path::PathBuf,
    #[arg(long)]
    role: String,
    #[arg(long)]
    reflector: Option<String>,
    #[arg(long, default_value_t = 16 << 20)]
    bytes: usize,
    #[arg(long)]
    pause_after: Option<usize>,
}

/// Relay calls the receiver answers: `C` + offset + bytes (append at offset), `S` (how many
/// bytes held; the direct stream's part ends there), `H` (how many bytes held, nothing else),
/// `F` + length (wait for that many, answer their SHA-256 in hex).
const CHUNK: u8 = b'C';
const STATUS: u8 = b'S';
const HELD: u8 = b'H';
const FINISH: u8 = b'F';
/// Relay fallback chunk: well under the relay's frame cap once split into parts by `Net`.
const RELAY_CHUNK: usize = 512 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Received {
    state: Mutex<ReceivedState>,
    grew: Notify,
}

#[derive(Default)]
struct ReceivedState {
    data: Vec<u8>,
    /// Set by the first status call, which the sender makes only when it falls back: from
    /// then on the receiver's offset is what counts, and late bytes still buffered from the
    /// dead direct path are dropped rather than appended after the relay's.
    relay_only: bool,
}

impl Received {
    fn append_at(&self, offset: usize, bytes: &[u8]) -> bool {
        let mut state = self.state.lock().unwrap();
        if offset != state.data.len() {
            return false;
        }
        state.data.extend_from_slice(bytes);
        self.grew.notify_waiters();
        true
    }

    /// Appends bytes from the direct stream, unless the transfer moved to the relay.
    fn append_direct(&self, bytes: &[u8]) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.relay_only {
            return false;
        }
        state.data.extend_from_slice(bytes);
        self.grew.notify_waiters();
        true
    }

    /// The offset the relay continues from; the direct stream is done from here on.
    fn switch_to_relay(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        state.relay_only = true;
        state.data.len()
    }

    fn len(&self) -> usize {
        self.state.lock().unwrap().data.len()
    }
}

struct Receiver(Arc<Received>);

impl Handler for Receiver {
    fn handle(
        &self,
        _from: PeerInfo,
        request: Vec<u8>,
        responder: Responder,
        _cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let received = self.0.clone();
        Box::pin(async move {
            match request.split_first() {
                Some((&CHUNK, rest)) if rest.len() >= 8 => {
                    let offset = u64::from_be_bytes(rest[..8].try_into().unwrap()) as usize;
                    if received.append_at(offset, &rest[8..]) {
                        responder.respond(b"ok").await;
                    } else {
                        responder
                            .fail(format!("offset {offset} but {} held", received.len()))
                            .await;
                    }
                }
                Some((&STATUS, _)) => {
                    let offset = received.switch_to_relay() as u64;
                    responder.respond(&offset.to_be_bytes()).await
                }
                Some((&HELD, _)) => {
                    let held = received.len() as u64;
                    responder.respond(&held.to_be_bytes()).await
                }
                Some((&FINISH, rest)) if rest.len() == 8 => {
                    let length = u64::from_be_bytes(rest.try_into().unwrap()) as usize;
                    loop {
                        let grew = received.grew.notified();
                        if received.len() >= length {
                            break;
                        }
                        grew.await;
                    }
                    let digest = ring::digest::digest(
                        &ring::digest::SHA256,
                        &received.state.lock().unwrap().data[..length],
                    );
                    responder.respond(hex::encode(digest).as_bytes()).await;
                }
                _ => responder.fail("unknown request").await,
            }
        })
    }
}

fn event(value: serde_json::Value) {
    println!("{value}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let identity = Identity::load_or_create(&args.data_dir)?;
    let psk = Psk::from_room_token("direct-path test room token", &args.room)?;
    let mut config = NetConfig::new(args.relay.clone(), args.room.clone(), psk);
    config.direct.reflector = args.reflector.clone();
    let shutdown = CancellationToken::new();
    match args.role.as_str() {
        "receive" => receive(&identity, config, shutdown).await,
        "send" => send(&identity, config, &args, shutdown).await,
        other => bail!("unknown role {other}"),
    }
}

async fn receive(
    identity: &Identity,
    config: NetConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let received = Arc::new(Received::default());
    let handler: Arc<dyn Handler> = Arc::new(Receiver(received.clone()));
    let net = Net::start(identity, config, Some(handler), shutdown);
    event(json!({"event": "ready", "peer": net.local_id().to_string()}));
    loop {
        let connection = direct::accept(&net).await?;
        event(json!({"event": "accepted", "remote": connection.remote.to_string()}));
        let received = received.clone();
        tokio::spawn(async move {
            // The stream's bytes land at the end of what is held, until the sender falls back
            // to the relay (its status call ends the direct stream's part).
            if let Ok(mut stream) = connection.connection.accept_uni().await {
                while let Ok(Some(chunk)) = stream.read_chunk(1 << 20, true).await {
                    if !received.append_direct(&chunk.bytes) {
                        break;
                    }
                }
            }
        });
    }
}

async fn send(
    identity: &Identity,
    config: NetConfig,
    args: &Args,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let net = Net::start(identity, config, None, shutdown);
    let peer = net
        .wait_for_peers(1, Duration::from_secs(20))
        .await
        .context("the receiver never joined")?[0]
        .peer_id;
    let mut rng = fastrand::Rng::with_seed(15);
    let data: Vec<u8> = (0..args.bytes).map(|_| rng.u8(..)).collect();
    let expected = hex::encode(ring::digest::digest(&ring::digest::SHA256, &data));

    let started = Instant::now();
    let mut direct_error = None;
    let mut direct_bytes = 0usize;
    match direct::connect(&net, peer).await {
        Ok(connection) => {
            event(json!({
                "event": "path",
                "path": "direct",
                "remote": connection.remote.to_string(),
                "connect_ms": started.elapsed().as_millis() as u64,
            }));
            let streaming = Instant::now();
            let receiver = (&net, peer);
            match stream_direct(
                &connection,
                &data,
                args.pause_after,
                receiver,
                &mut direct_bytes,
            )
            .await
            {
                Ok(()) => {
                    let seconds = streaming.elapsed().as_secs_f64();
                    event(json!({
                        "event": "direct_done",
                        "mib_per_second": data.len() as f64 / (1 << 20) as f64 / seconds,
                    }));
                }
                Err((error, after)) => direct_error = Some((error, after)),
            }
        }
        Err(error) => event(json!({
            "event": "path",
            "path": "relay",
            "reason": error.to_string(),
            "connect_ms": started.elapsed().as_millis() as u64,
        })),
    }

    // Whatever the direct path did not deliver goes through the relay, from the receiver's
    // offset: the file is not restarted. (After a complete direct stream there is nothing
    // left: the finish call below waits until the receiver has read it all.)
    if direct_bytes < data.len() || direct_error.is_some() {
        let mut offset = receiver_offset(&net, peer).await? as usize;
        if let Some((error, after)) = &direct_error {
            event(json!({
                "event": "direct_failed",
                "error": error,
                "error_after_resume_ms": after.as_millis() as u64,
                "fell_back_at": offset,
            }));
        }
        while offset < data.len() {
            let end = (offset + RELAY_CHUNK).min(data.len());
            let mut request = vec![CHUNK];
            request.extend_from_slice(&(offset as u64).to_be_bytes());
            request.extend_from_slice(&data[offset..end]);
            net.call(peer, request, CALL_TIMEOUT)
                .await?
                .collect()
                .await?;
            offset = end;
        }
    }
    let mut finish = vec![FINISH];
    finish.extend_from_slice(&(data.len() as u64).to_be_bytes());
    let digest = net
        .call(peer, finish, CALL_TIMEOUT)
        .await?
        .collect()
        .await?
        .1;
    event(json!({
        "event": "done",
        "sha256": String::from_utf8(digest)?,
        "expected_sha256": expected,
        "direct_bytes": direct_bytes,
        "seconds": started.elapsed().as_secs_f64(),
    }));
    Ok(())
}

/// How many bytes the receiver holds, asked through the relay; from then on the receiver takes
/// the rest through the relay only (what the fallback continues from).
async fn receiver_offset(net: &Net, peer: PeerId) -> anyhow::Result<u64> {
    ask_receiver(net, peer, STATUS).await
}

/// How many bytes the receiver holds so far, changing nothing there (the pause waits on it: a
/// `STATUS` before the first byte arrived would end the direct stream's part at 0).
async fn receiver_held(net: &Net, peer: PeerId) -> anyhow::Result<u64> {
    ask_receiver(net, peer, HELD).await
}

async fn ask_receiver(net: &Net, peer: PeerId, what: u8) -> anyhow::Result<u64> {
    let answer = net
        .call(peer, vec![what], CALL_TIMEOUT)
        .await?
        .collect()
        .await?
        .1;
    Ok(u64::from_be_bytes(answer.as_slice().try_into()?))
}

/// Streams `data` over one unidirectional stream; on failure, the error and how long after the
/// resume (or the start) it surfaced.
async fn stream_direct(
    connection: &direct::DirectConnection,
    data: &[u8],
    pause_after: Option<usize>,
    (net, peer): (&Net, PeerId),
    sent: &mut usize,
) -> Result<(), (String, Duration)> {
    let mut resumed = Instant::now();
    let fail = |error: String, resumed: Instant| (error, resumed.elapsed());
    let mut stream = connection
        .connection
        .open_uni()
        .await
        .map_err(|error| fail(error.to_string(), resumed))?;
    let mut paused = false;
    for piece in data.chunks(64 * 1024) {
        if let Some(limit) = pause_after
            && !paused
            && *sent >= limit
        {
            paused = true;
            // Paused once the receiver has some of it, so a cut now is mid-transfer (the
            // stream's send buffer would otherwise hold everything written so far).
            let deadline = Instant::now() + Duration::from_secs(20);
            while receiver_held(net, peer).await.unwrap_or(0) == 0 {
                if Instant::now() > deadline {
                    return Err(fail(
                        "the receiver got nothing before the pause".into(),
                        resumed,
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            event(json!({"event": "paused", "sent": *sent}));
            let mut line = String::new();
            let _ = tokio::io::BufReader::new(tokio::io::stdin())
                .read_line(&mut line)
                .await;
            resumed = Instant::now();
        }
        stream
            .write_all(piece)
            .await
            .map_err(|error| fail(error.to_string(), resumed))?;
        *sent += piece.len();
    }
    stream
        .finish()
        .map_err(|error| fail(error.to_string(), resumed))?;
    // Delivered once the receiver acknowledged every byte; a path that dies first fails here.
    match stream.stopped().await {
        Ok(None) => Ok(()),
        Ok(Some(code)) => Err(fail(
            format!("receiver stopped the stream ({code})"),
            resumed,
        )),
        Err(error) => Err(fail(error.to_string(), resumed)),
    }
}
