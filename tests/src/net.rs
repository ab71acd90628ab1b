//! Helpers for the secure-channel tests: in-process nodes built on `remote_agents_node::net`, a relay
//! that can be stopped and restarted on the same port, and a tampering man-in-the-middle proxy
//! that sits between nodes and the real relay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use remote_agents_node::identity::Identity;
use remote_agents_node::net::{Handler, Net, NetConfig, PeerInfo, Responder};
use remote_agents_protocol::frame::{FrameKind, Header, PeerId};
use remote_agents_protocol::message::Announcement;
use remote_agents_protocol::psk::Psk;
use remote_agents_relay::RelayConfig;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_util::sync::CancellationToken;

/// How long a test waits for one expected condition.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` every 10 ms until it holds; fails after `DEADLINE`.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A Rust relay served in-process that can be stopped and started again on the same port.
pub struct RestartableRelay {
    pub address: SocketAddr,
    config: RelayConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RestartableRelay {
    pub async fn start(config: RelayConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut relay = Self {
            address,
            config,
            stop: None,
            task: None,
        };
        relay.serve(listener);
        Ok(relay)
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.address)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = self.config.clone();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = remote_agents_relay::serve(listener, config, shutdown).await;
        }));
    }

    /// Stops the relay (every connection closes) and waits until it has returned.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        // The port was free a moment ago, but a socket of another test in this process (an
        // outgoing connection's ephemeral port, or a connection of the old relay still closing)
        // can hold it for a while: CI once failed here with "address in use". Retry until the
        // deadline rather than fail on the first try.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(error)
                    if error.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("rebinding {}", self.address));
                }
            }
        };
        self.serve(listener);
        Ok(())
    }
}

/// An echo handler that also streams, sleeps until cancelled, and counts what it saw.
#[derive(Default)]
pub struct TestHandler {
    pub requests: AtomicU64,
    /// Handlers that saw their cancellation token fire (shared with the running handlers).
    pub cancelled: Arc<AtomicU64>,
    pub notifications: Mutex<Vec<Vec<u8>>>,
}

impl Handler for TestHandler {
    fn handle(
        &self,
        _from: PeerInfo,
        request: Vec<u8>,
        mut responder: Responder,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let cancelled = self.cancelled.clone();
        Box::pin(async move {
            if let Some(count) = request.strip_prefix(b"stream:") {
                let count: usize = String::from_utf8_lossy(count).parse().unwrap_or(0);
                for index in 0..count {
                    if responder
                        .chunk(format!("chunk {index}").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                responder.respond(b"done").await;
            } else if request == b"wait-for-cancel" {
                cancel.cancelled().await;
                cancelled.fetch_add(1, Ordering::SeqCst);
            } else if request == b"fail" {
                responder.fail("asked to fail").await;
            } else {
                responder.respond(&request).await;
            }
        })
    }

    fn notify(&self, _from: &PeerInfo, message: Vec<u8>) {
        self.notifications
            .lock()
            .expect("notifications lock")
            .push(message);
    }
}

/// A node of the tests: the net layer with a test handler.
pub struct TestNode {
    pub net: Net,
    pub handler: Arc<TestHandler>,
    pub identity: Identity,
    shutdown: CancellationToken,
}

impl TestNode {
    /// Starts a node whose identity lives in `data_dir` (reused across restarts).
    pub async fn start(
        relay_url: &str,
        room: &str,
        data_dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_psk(relay_url, room, data_dir, name, test_psk()).await
    }

    /// Like [`TestNode::start`] with another room key.
    pub async fn start_with_psk(
        relay_url: &str,
        room: &str,
        data_dir: &Path,
        name: &str,
        psk: Psk,
    ) -> anyhow::Result<Self> {
        let identity = Identity::load_or_create(data_dir)?;
        let mut config = NetConfig::new(relay_url, room, psk);
        config.announcement = Announcement {
            name: name.to_owned(),
            tags: vec!["test".into()],
            mode: "plan".into(),
            accepts_commands: true,
            operator: None,
            ..Announcement::default()
        };
        config.reconnect_min = Duration::from_millis(50);
        config.reconnect_max = Duration::from_millis(500);
        let handler = Arc::new(TestHandler::default());
        let shutdown = CancellationToken::new();
        let net = Net::start(&identity, config, Some(handler.clone()), shutdown.clone());
        Ok(Self {
            net,
            handler,
            identity,
            shutdown,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The room key every test node shares.
pub fn test_psk() -> Psk {
    Psk::from_bytes(&[0x5a; 32]).expect("32 bytes")
}

/// A DATA frame the proxy delivered to a node.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub to: PeerId,
    pub frame: Vec<u8>,
}

#[derive(Default)]
struct ProxyState {
    /// Per node: the sender that writes into its downstream WebSocket.
    downstream: HashMap<PeerId, mpsc::UnboundedSender<Message>>,
    recorded: Vec<Recorded>,
}

/// A man-in-the-middle between nodes and the real relay: it records every DATA frame it
/// delivers and can inject arbitrary bytes into any node's connection, as a malicious relay
/// could.
pub struct MitmProxy {
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
    _task: tokio::task::JoinHandle<()>,
}

impl MitmProxy {
    pub async fn start(relay_url: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let relay_url = relay_url.trim_end_matches('/').to_owned();
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = accept_state.clone();
                let relay_url = relay_url.clone();
                tokio::spawn(async move {
                    let _ = proxy_connection(tcp, &relay_url, state).await;
                });
            }
        });
        Ok(Self {
            url: format!("ws://{address}"),
            state,
            _task: task,
        })
    }

    /// Every DATA frame delivered so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.lock().expect("proxy lock").recorded.clone()
    }

    /// Sends `frame` to the node with id `to`, as if the relay had forwarded it.
    pub fn inject(&self, to: PeerId, frame: Vec<u8>) -> anyhow::Result<()> {
        let state = self.state.lock().expect("proxy lock");
        let sender = state
            .downstream
            .get(&to)
            .with_context(|| format!("no connection for {to}"))?;
        sender
            .send(Message::Binary(frame.into()))
            .map_err(|_| anyhow::anyhow!("connection for {to} is closed"))
    }
}

// tungstenite's header callback must return its large `ErrorResponse` type.
#[allow(clippy::result_large_err)]
async fn proxy_connection(
    tcp: tokio::net::TcpStream,
    relay_url: &str,
    state: Arc<Mutex<ProxyState>>,
) -> anyhow::Result<()> {
    let mut path = String::new();
    let mut authorization = None;
    let downstream =
        tokio_tungstenite::accept_hdr_async(tcp, |request: &Request, response: Response| {
            path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            authorization = request.headers().get("authorization").cloned();
            Ok(response)
        })
        .await?;
    let peer: PeerId = path
        .split("peer=")
        .nth(1)
        .context("no peer in the path")?
        .parse()
        .context("bad peer id")?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{relay_url}{path}"
        ))?;
    if let Some(value) = authorization {
        request.headers_mut().insert("authorization", value);
    }
    let (upstream, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut down_sink, mut down_stream) = downstream.split();
    let (mut up_sink, mut up_stream) = upstream.split();
    let (inject_tx, mut inject_rx) = mpsc::unbounded_channel::<Message>();
    state
        .lock()
        .expect("proxy lock")
        .downstream
        .insert(peer, inject_tx.clone());
    // Node -> relay, untouched.
    let upward = tokio::spawn(async move {
        while let Some(Ok(message)) = down_stream.next().await {
            if up_sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = up_sink.close().await;
    });
    // Relay -> node: recorded, then queued behind injected frames on the same writer.
    let record_state = state.clone();
    let downward = tokio::spawn(async move {
        while let Some(Ok(message)) = up_stream.next().await {
            if let Message::Binary(bytes) = &message
                && let Ok(header) = Header::decode(bytes)
                && header.kind == FrameKind::Data
            {
                record_state
                    .lock()
                    .expect("proxy lock")
                    .recorded
                    .push(Recorded {
                        to: peer,
                        frame: bytes.to_vec(),
                    });
            }
            let closing = matches!(message, Message::Close(_));
            if inject_tx.send(message).is_err() || closing {
                break;
            }
        }
    });
    while let Some(message) = inject_rx.recv().await {
        let closing = matches!(message, Message::Close(_));
        if down_sink.send(message).await.is_err() || closing {
            break;
        }
    }
    upward.abort();
    downward.abort();
    let mut state = state.lock().expect("proxy lock");
    if state
        .downstream
        .get(&peer)
        .is_some_and(|sender| sender.is_closed())
    {
        state.downstream.remove(&peer);
    }
    Ok(())
}
