//! The direct data channel between two nodes: candidates exchanged inside the Noise session,
//! UDP hole punching, and QUIC (quinn) on the punched socket with each side's certificate pinned
//! to the fingerprint its peer sent inside that session.
//!
//! One UDP socket and one quinn `Endpoint` per node, created on first use, serve both roles: the
//! node that calls [`connect`] is the QUIC client, the peer that answers is the server and hands
//! the connection to whoever waits in [`accept`]. An attempt goes:
//!
//! 1. **Candidates**: the socket's port on every local interface address, and the address the
//!    relay's UDP reflector saw (`DirectConfig::reflector`; the Cloudflare Worker relay cannot
//!    do UDP, so behind it nodes offer local candidates only). No port mapping (UPnP, NAT-PMP,
//!    PCP): a NAT that needs one leaves the transfer on the relay.
//! 2. **Exchange**: the initiator sends a [`DirectOffer`] (a fresh token, its certificate's
//!    fingerprint, its candidates) as an `Envelope::Direct` call inside the Noise session; the
//!    answer is the peer's offer with the same token.
//! 3. **Punching**: both sides send token-carrying probes to every candidate of the other every
//!    100 ms; a probe is answered with an ack. The first probe or ack with the token tells the
//!    initiator a working address (the source address, so a NAT's mapping the reflector did not
//!    see still counts), and it runs the QUIC handshake there. No answer within
//!    `punch_timeout` (symmetric NAT, UDP blocked) → [`DirectError::Unreachable`], promptly, so
//!    the caller moves the bytes through the relay.
//! 4. **A path that dies** later (UDP cut): QUIC keep-alives every `keep_alive` and an idle
//!    timeout of `idle_timeout` make every stream operation fail within seconds; the transfer
//!    engine then continues from the receiver's offset through the relay.

mod pinning;
mod socket;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_agents_protocol::direct::{DirectOffer, Probe, parse_reflect_response, reflect_request};
use remote_agents_protocol::frame::PeerId;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use quinn::{Connection, ConnectionError, RecvStream, SendStream};

use super::{CallError, Net, PeerInfo, Responder};
use socket::DemuxSocket;

/// How the node's direct path behaves.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// Whether this node takes part at all: when off, it refuses peers' offers (so they move to
    /// the relay at once instead of connecting to a node that serves nothing on the path) and
    /// makes none.
    pub enabled: bool,
    /// Where the node's one UDP socket binds (default `0.0.0.0:0`: every interface, any port).
    pub bind: SocketAddr,
    /// The relay's UDP reflector (`host:port`), which tells the node its address as seen from
    /// outside its NAT. `None`: local candidates only.
    pub reflector: Option<String>,
    /// How long punching may take before the attempt gives up (the exchange inside the Noise
    /// session comes on top, bounded by the same amount).
    pub punch_timeout: Duration,
    /// A connection with nothing heard for this long is dead: what bounds the time a UDP cut
    /// takes to surface as an error.
    pub idle_timeout: Duration,
    /// QUIC keep-alive (PING) interval; well below `idle_timeout`.
    pub keep_alive: Duration,
}

impl Default for DirectConfig {
    fn default() -> Self {
        DirectConfig {
            enabled: true,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            reflector: None,
            punch_timeout: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
        }
    }
}

/// Why no direct connection (or why one stopped).
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("cannot open the direct-path UDP socket on {bind}")]
    Socket {
        bind: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the direct path's TLS: {0}")]
    Tls(String),
    #[error("peer {peer} has no secure session with us")]
    NoSession { peer: PeerId },
    #[error("peer {peer} did not answer the direct-path offer")]
    Exchange {
        peer: PeerId,
        #[source]
        source: CallError,
    },
    #[error("peer {peer} answered the direct-path offer with something else: {reason}")]
    BadAnswer { peer: PeerId, reason: String },
    /// Punching found no working address in time: use the relay.
    #[error("no direct UDP path to peer {peer} within {waited:?} (tried {candidates:?})")]
    Unreachable {
        peer: PeerId,
        waited: Duration,
        candidates: Vec<SocketAddr>,
    },
    #[error("the QUIC handshake with peer {peer} at {address} failed")]
    Handshake {
        peer: PeerId,
        address: SocketAddr,
        #[source]
        source: ConnectionError,
    },
    #[error("the direct path is off on this node (setting `direct`)")]
    Disabled,
    #[error("the node is shutting down")]
    Shutdown,
}

/// An authenticated QUIC connection to one peer over a direct UDP path.
#[derive(Debug, Clone)]
pub struct DirectConnection {
    /// The peer, as authenticated by the Noise session the certificate was pinned in.
    pub peer: PeerId,
    /// The address the connection runs to (the punched path).
    pub remote: SocketAddr,
    /// The QUIC connection: open or accept streams (`open_uni`, `open_bi`, `accept_uni`, …).
    pub connection: Connection,
}

/// Gathers candidates, exchanges offers with `peer` inside the Noise session, punches, and runs
/// the QUIC handshake as the client. Fails within about twice `punch_timeout` when no direct
/// path works; the caller then uses the relay.
pub async fn connect(net: &Net, peer: PeerId) -> Result<DirectConnection, DirectError> {
    if !net.shared.direct.config.enabled {
        return Err(DirectError::Disabled);
    }
    if net.peer(&peer).is_none() {
        return Err(DirectError::NoSession { peer });
    }
    let state = &net.shared.direct;
    let endpoint = state.endpoint().await?;
    let token = random_token();
    let mut probes = endpoint.register_attempt(token);
    let offer = DirectOffer {
        token,
        fingerprint: endpoint.certificate.fingerprint,
        candidates: endpoint.candidates(&state.config).await,
    };
    let timeout = state.config.punch_timeout;
    let answer = net
        .direct_call(peer, offer.encode(), timeout)
        .await
        .map_err(|source| DirectError::Exchange { peer, source })?;
    let answer = DirectOffer::decode(&answer).map_err(|error| DirectError::BadAnswer {
        peer,
        reason: error.to_string(),
    })?;
    if answer.token != token {
        return Err(DirectError::BadAnswer {
            peer,
            reason: "the answer carries another attempt's token".into(),
        });
    }
    let deadline = Instant::now() + timeout;
    let prober = endpoint
        .clone()
        .probe(token, answer.candidates.clone(), deadline);
    let result = endpoint
        .handshake_first_working(peer, &answer, &mut probes, deadline, &state.config)
        .await;
    prober.abort();
    endpoint.forget_attempt(&token);
    result
}

/// The next direct connection a peer opened to this node (the answering side of [`connect`]).
pub async fn accept(net: &Net) -> Result<DirectConnection, DirectError> {
    let state = &net.shared.direct;
    // The endpoint must exist for anyone to connect; creating it here lets a node that only
    // receives answer offers from the first one on.
    state.endpoint().await?;
    let mut accepted = state.accepted_rx.lock().await;
    accepted.recv().await.ok_or(DirectError::Shutdown)
}

/// Answers one peer's offer (called by the connection manager for `Envelope::Direct`): our own
/// candidates and fingerprint back, the peer's certificate expected for the punching window, and
/// probes towards its candidates so that our NAT lets its handshake in.
pub(crate) async fn answer(net: Net, from: PeerInfo, offer: Vec<u8>, responder: Responder) {
    let state = &net.shared.direct;
    if !state.config.enabled {
        return responder
            .fail("the direct path is off on this host (setting `direct`)")
            .await;
    }
    let offer = match DirectOffer::decode(&offer) {
        Ok(offer) => offer,
        Err(error) => {
            return responder
                .fail(format!("malformed direct offer: {error}"))
                .await;
        }
    };
    let endpoint = match state.endpoint().await {
        Ok(endpoint) => endpoint,
        Err(error) => return responder.fail(error.to_string()).await,
    };
    let window = state.config.punch_timeout + state.config.idle_timeout;
    endpoint.expected.insert(
        offer.fingerprint,
        from.peer_id,
        std::time::Instant::now() + window,
    );
    // Probes of this attempt are acked; where they come from matters only to the initiator.
    drop(endpoint.register_attempt(offer.token));
    let reply = DirectOffer {
        token: offer.token,
        fingerprint: endpoint.certificate.fingerprint,
        candidates: endpoint.candidates(&state.config).await,
    };
    responder.respond(&reply.encode()).await;
    let deadline = Instant::now() + state.config.punch_timeout;
    let prober = endpoint
        .clone()
        .probe(offer.token, offer.candidates, deadline);
    let _ = prober.await;
    endpoint.forget_attempt(&offer.token);
}

/// The node's direct-path state, inside the connection manager's shared state.
pub(crate) struct DirectState {
    config: DirectConfig,
    endpoint: tokio::sync::OnceCell<Arc<Endpoint>>,
    accepted_tx: mpsc::Sender<DirectConnection>,
    accepted_rx: tokio::sync::Mutex<mpsc::Receiver<DirectConnection>>,
}

/// Accepted connections nobody has taken yet; beyond this many, new ones are refused (closed).
const ACCEPT_QUEUE: usize = 16;
/// How often probes go out to each candidate while punching.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long one reflector query waits for its answer (it is sent three times within it).
const REFLECT_TIMEOUT: Duration = Duration::from_millis(900);
/// QUIC application close code when no one accepts a connection.
const CLOSE_NOT_ACCEPTED: u32 = 1;
/// QUIC application close code when the node stops.
const CLOSE_SHUTDOWN: u32 = 2;

impl DirectState {
    pub(crate) fn new(config: DirectConfig) -> Self {
        let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPT_QUEUE);
        DirectState {
            config,
            endpoint: tokio::sync::OnceCell::new(),
            accepted_tx,
            accepted_rx: tokio::sync::Mutex::new(accepted_rx),
        }
    }

    /// Closes every direct connection and the endpoint (the node is stopping): peers see the
    /// close at once rather than after their idle timeout, and the socket and its tasks go.
    pub(crate) fn close(&self) {
        if let Some(endpoint) = self.endpoint.get() {
            endpoint
                .quinn
                .close(CLOSE_SHUTDOWN.into(), b"node stopping");
        }
    }

    async fn endpoint(&self) -> Result<Arc<Endpoint>, DirectError> {
        self.endpoint
            .get_or_try_init(|| Endpoint::open(&self.config, self.accepted_tx.clone()))
            .await
            .cloned()
    }
}

type AttemptSender = mpsc::UnboundedSender<SocketAddr>;

/// The socket, the quinn endpoint and the punching bookkeeping.
struct Endpoint {
    quinn: quinn::Endpoint,
    socket: Arc<DemuxSocket>,
    certificate: pinning::LocalCertificate,
    expected: Arc<pinning::Expected>,
    /// Attempts in progress by token: probes of these are acked, and where a probe or ack came
    /// from goes to the attempt's receiver (the initiator's; the answerer drops its receiver).
    attempts: Mutex<HashMap<[u8; 16], AttemptSender>>,
    reflections: Mutex<HashMap<u64, oneshot::Sender<SocketAddr>>>,
    transport: TransportSettings,
}

impl Endpoint {
    async fn open(
        config: &DirectConfig,
        accepted: mpsc::Sender<DirectConnection>,
    ) -> Result<Arc<Endpoint>, DirectError> {
        let bind = config.bind;
        let socket_error = |source| DirectError::Socket { bind, source };
        let std_socket = std::net::UdpSocket::bind(bind).map_err(socket_error)?;
        std_socket.set_nonblocking(true).map_err(socket_error)?;
        // The default receive buffer (about 200 KiB) holds three 64 KiB datagrams: a burst
        // overflows it and QUIC reads the drops as congestion. Ask for more (the kernel grants
        // up to `net.core.rmem_max`/`wmem_max`; a refusal leaves the default).
        for (what, set) in [
            (
                "receive",
                rustix::net::sockopt::set_socket_recv_buffer_size as fn(_, _) -> _,
            ),
            ("send", rustix::net::sockopt::set_socket_send_buffer_size),
        ] {
            if let Err(error) = set(&std_socket, SOCKET_BUFFER) {
                tracing::debug!(%error, "cannot enlarge the direct socket's {what} buffer");
            }
        }
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let inner = runtime.wrap_udp_socket(std_socket).map_err(socket_error)?;
        let (plain_tx, plain_rx) = mpsc::channel(socket::PLAIN_QUEUE);
        let socket = Arc::new(DemuxSocket::new(inner, plain_tx));

        let certificate = pinning::LocalCertificate::generate()
            .map_err(|error| DirectError::Tls(error.to_string()))?;
        let provider = pinning::provider();
        let expected = Arc::new(pinning::Expected::default());
        let transport = TransportSettings {
            idle_timeout: config
                .idle_timeout
                .try_into()
                .map_err(|_| DirectError::Tls("idle timeout out of range".into()))?,
            keep_alive: config.keep_alive,
        };

        let (chain, key) = certificate.chain_and_key();
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| DirectError::Tls(error.to_string()))?
            .with_client_cert_verifier(Arc::new(pinning::ExpectedClients {
                expected: expected.clone(),
                provider: provider.clone(),
            }))
            .with_single_cert(chain, key)
            .map_err(|error| DirectError::Tls(error.to_string()))?;
        server_tls.alpn_protocols = vec![pinning::ALPN.to_vec()];
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|error| DirectError::Tls(error.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(Arc::new(transport.build(None)));

        // Peers may send us datagrams up to UDP's limit; each connection's own discovery
        // stays within its route's MTU (`TransportSettings::build`).
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config
            .max_udp_payload_size(MAX_UDP_PAYLOAD)
            .map_err(|error| DirectError::Tls(format!("max UDP payload: {error}")))?;
        let quinn = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server.clone()),
            socket.clone(),
            runtime,
        )
        .map_err(|source| DirectError::Socket { bind, source })?;
        let endpoint = Arc::new(Endpoint {
            quinn,
            socket,
            certificate,
            expected,
            attempts: Mutex::new(HashMap::new()),
            reflections: Mutex::new(HashMap::new()),
            transport,
        });
        // Both tasks hold the endpoint weakly: they end when the node drops it.
        crate::runtime::spawn(dispatch_plain(Arc::downgrade(&endpoint), plain_rx));
        crate::runtime::spawn(accept_loop(
            endpoint.quinn.clone(),
            server,
            transport,
            endpoint.expected.clone(),
            accepted,
        ));
        Ok(endpoint)
    }

    fn register_attempt(&self, token: [u8; 16]) -> mpsc::UnboundedReceiver<SocketAddr> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.attempts
            .lock()
            .expect("not poisoned")
            .insert(token, sender);
        receiver
    }

    fn forget_attempt(&self, token: &[u8; 16]) {
        self.attempts.lock().expect("not poisoned").remove(token);
    }

    /// Every local interface address with our port (loopback left out unless we are bound to
    /// it), then the reflexive address when a reflector answers.
    async fn candidates(&self, config: &DirectConfig) -> Vec<SocketAddr> {
        let local = match self.socket_address() {
            Some(local) => local,
            None => return Vec::new(),
        };
        let mut candidates = Vec::new();
        if local.ip().is_unspecified() {
            let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
            for interface in interfaces {
                let ip = interface.ip();
                if ip.is_loopback() || ip.is_ipv6() != local.is_ipv6() {
                    continue;
                }
                if let IpAddr::V6(v6) = ip
                    && (v6.segments()[0] & 0xffc0) == 0xfe80
                {
                    // Link-local addresses need a scope id the peer cannot know.
                    continue;
                }
                candidates.push(SocketAddr::new(ip, local.port()));
            }
        } else {
            candidates.push(local);
        }
        if let Some(reflector) = &config.reflector
            && let Some(reflexive) = self.reflect(reflector).await
            && !candidates.contains(&reflexive)
        {
            candidates.push(reflexive);
        }
        candidates.truncate(remote_agents_protocol::direct::MAX_CANDIDATES);
        candidates
    }

    fn socket_address(&self) -> Option<SocketAddr> {
        self.quinn.local_addr().ok()
    }

    /// Asks the reflector which address it sees us from (sent three times: UDP may drop one).
    async fn reflect(&self, reflector: &str) -> Option<SocketAddr> {
        let address = match tokio::net::lookup_host(reflector).await {
            Ok(mut addresses) => addresses.next()?,
            Err(error) => {
                tracing::warn!(reflector, %error, "cannot resolve the UDP reflector");
                return None;
            }
        };
        let transaction = fastrand::u64(..);
        let (sender, mut receiver) = oneshot::channel();
        self.reflections
            .lock()
            .expect("not poisoned")
            .insert(transaction, sender);
        let request = reflect_request(transaction);
        let deadline = Instant::now() + REFLECT_TIMEOUT;
        let mut tick = tokio::time::interval(REFLECT_TIMEOUT / 3);
        let observed = loop {
            tokio::select! {
                _ = tick.tick() => self.socket.send_plain(address, &request),
                observed = &mut receiver => break observed.ok(),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(%address, "the UDP reflector did not answer");
                    break None;
                }
            }
        };
        self.reflections
            .lock()
            .expect("not poisoned")
            .remove(&transaction);
        observed
    }

    /// Sends probes of `token` to every candidate until `deadline`.
    fn probe(
        self: Arc<Self>,
        token: [u8; 16],
        candidates: Vec<SocketAddr>,
        deadline: Instant,
    ) -> tokio::task::JoinHandle<()> {
        crate::runtime::spawn(async move {
            let probe = Probe::Probe(token).encode();
            let local_v6 = self.socket_address().is_some_and(|a| a.is_ipv6());
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            while Instant::now() < deadline {
                tick.tick().await;
                for candidate in candidates.iter().filter(|c| c.is_ipv6() == local_v6) {
                    self.socket.send_plain(*candidate, &probe);
                }
            }
        })
    }

    /// Runs the QUIC handshake to each address a probe or ack of this attempt came from, first
    /// success wins, until `deadline`.
    async fn handshake_first_working(
        &self,
        peer: PeerId,
        answer: &DirectOffer,
        probes: &mut mpsc::UnboundedReceiver<SocketAddr>,
        deadline: Instant,
        config: &DirectConfig,
    ) -> Result<DirectConnection, DirectError> {
        let mut tried = Vec::new();
        let mut last_error = None;
        loop {
            let address = tokio::select! {
                address = probes.recv() => match address {
                    Some(address) => address,
                    None => return Err(DirectError::Shutdown),
                },
                _ = tokio::time::sleep_until(deadline) => break,
            };
            if tried.contains(&address) {
                continue;
            }
            tried.push(address);
            let client_config = self.client_config(answer.fingerprint, address)?;
            let connecting = match self
                .quinn
                .connect_with(client_config, address, "remote-agents")
            {
                Ok(connecting) => connecting,
                Err(error) => {
                    tracing::debug!(%peer, %address, %error, "cannot start a QUIC handshake");
                    continue;
                }
            };
            // The handshake gets the rest of the punching window, but at least a second: the
            // path just answered a probe.
            let limit = deadline.max(Instant::now() + Duration::from_secs(1));
            match tokio::time::timeout_at(limit, connecting).await {
                Ok(Ok(connection)) => {
                    tracing::info!(%peer, %address, "direct QUIC path up");
                    return Ok(DirectConnection {
                        peer,
                        remote: address,
                        connection,
                    });
                }
                Ok(Err(source)) => {
                    tracing::debug!(%peer, %address, %source, "QUIC handshake failed");
                    last_error = Some((address, source));
                }
                Err(_) => {
                    last_error = Some((address, ConnectionError::TimedOut));
                }
            }
        }
        match last_error {
            Some((address, source)) => Err(DirectError::Handshake {
                peer,
                address,
                source,
            }),
            None => Err(DirectError::Unreachable {
                peer,
                waited: config.punch_timeout,
                candidates: answer.candidates.clone(),
            }),
        }
    }

    fn client_config(
        &self,
        pinned: [u8; 32],
        remote: SocketAddr,
    ) -> Result<quinn::ClientConfig, DirectError> {
        let provider = pinning::provider();
        let (chain, key) = self.certificate.chain_and_key();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| DirectError::Tls(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinning::PinnedServer {
                fingerprint: pinned,
                provider,
            }))
            .with_client_auth_cert(chain, key)
            .map_err(|error| DirectError::Tls(error.to_string()))?;
        tls.alpn_protocols = vec![pinning::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|error| DirectError::Tls(error.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(self.transport.build(route_payload_limit(remote))));
        Ok(config)
    }
}

/// What every connection's QUIC transport shares; [`TransportSettings::build`] adds the path
/// MTU bound of the connection's own route.
#[derive(Debug, Clone, Copy)]
struct TransportSettings {
    idle_timeout: quinn::IdleTimeout,
    keep_alive: Duration,
}

impl TransportSettings {
    /// The transport of one connection. Path MTU discovery searches up to `payload_limit` (the
    /// route's MTU less the IP and UDP headers, as TCP takes its MSS from the interface): on
    /// loopback or a jumbo-frame link a packet then carries up to 64 KiB and the per-packet
    /// cost (a seal, an ack, a syscall's share) shrinks by as much, while an Ethernet path keeps
    /// quinn's default bound, and no probe larger than the interface is ever sent. `None` (the
    /// route unknown): quinn's default.
    fn build(&self, payload_limit: Option<u16>) -> quinn::TransportConfig {
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(self.idle_timeout))
            .keep_alive_interval(Some(self.keep_alive))
            // Larger windows than quinn's defaults, so one stream fills a fast path.
            .stream_receive_window(quinn::VarInt::from_u32(8 * 1024 * 1024))
            .receive_window(quinn::VarInt::from_u32(16 * 1024 * 1024))
            .send_window(16 * 1024 * 1024);
        if let Some(limit) = payload_limit.filter(|limit| *limit > DEFAULT_MTU_BOUND) {
            let mut mtu = quinn::MtuDiscoveryConfig::default();
            mtu.upper_bound(limit);
            transport.mtu_discovery_config(Some(mtu));
        }
        transport
    }
}

/// The socket buffers the direct socket asks for.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// The largest UDP payload a datagram can carry (over IPv6; IPv4's is 65,507).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 65_527;
/// quinn's own upper bound of path MTU discovery (an Ethernet path less the headers).
const DEFAULT_MTU_BOUND: u16 = 1452;

/// The largest UDP payload the route to `remote` carries in one packet, as the kernel knows it:
/// the MTU (`IP_MTU`) of a UDP socket connected to it (a connect sends nothing), less the IP
/// and UDP headers.
fn route_payload_limit(remote: SocketAddr) -> Option<u16> {
    let unspecified: SocketAddr = match remote {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(unspecified).ok()?;
    socket.connect(remote).ok()?;
    let (mtu, headers) = match remote {
        SocketAddr::V4(_) => (rustix::net::sockopt::ip_mtu(&socket).ok()?, 20 + 8),
        SocketAddr::V6(_) => (rustix::net::sockopt::ipv6_mtu(&socket).ok()?, 40 + 8),
    };
    // An IP packet's length field ends at 65,535 (loopback's MTU is 65,536).
    u16::try_from(mtu.min(65_535).checked_sub(headers)?).ok()
}

fn random_token() -> [u8; 16] {
    let mut token = [0u8; 16];
    fastrand::fill(&mut token);
    token
}

/// Routes the plain datagrams the socket took out: reflector answers to their query, probes of
/// a known attempt acked and reported, acks reported.
async fn dispatch_plain(
    endpoint: std::sync::Weak<Endpoint>,
    mut plain: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
) {
    while let Some((datagram, from)) = plain.recv().await {
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        if let Some((transaction, observed)) = parse_reflect_response(&datagram) {
            if let Some(waiter) = endpoint
                .reflections
                .lock()
                .expect("not poisoned")
                .remove(&transaction)
            {
                let _ = waiter.send(observed);
            }
            continue;
        }
        let Some(probe) = Probe::decode(&datagram) else {
            continue;
        };
        let token = match probe {
            Probe::Probe(token) | Probe::Ack(token) => token,
        };
        let known = {
            let attempts = endpoint.attempts.lock().expect("not poisoned");
            match attempts.get(&token) {
                Some(sender) => {
                    let _ = sender.send(from);
                    true
                }
                None => false,
            }
        };
        // Only probes of an attempt in progress are answered: the socket is no reflector for
        // strangers.
        if known && matches!(probe, Probe::Probe(_)) {
            endpoint
                .socket
                .send_plain(from, &Probe::Ack(token).encode());
        }
    }
}

/// Accepts QUIC connections; a connection counts once its client certificate (already checked
/// against the expected list by the TLS verifier) names the peer that offered it.
async fn accept_loop(
    quinn: quinn::Endpoint,
    server: quinn::ServerConfig,
    transport: TransportSettings,
    expected: Arc<pinning::Expected>,
    accepted: mpsc::Sender<DirectConnection>,
) {
    while let Some(incoming) = quinn.accept().await {
        let expected = expected.clone();
        let server = server.clone();
        let accepted = accepted.clone();
        crate::runtime::spawn(async move {
            let remote = incoming.remote_address();
            let mut server = server;
            server.transport_config(Arc::new(transport.build(route_payload_limit(remote))));
            let accepting = match incoming.accept_with(Arc::new(server)) {
                Ok(accepting) => accepting,
                Err(error) => {
                    tracing::debug!(%remote, %error, "incoming direct connection refused");
                    return;
                }
            };
            let connection = match accepting.await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::debug!(%remote, %error, "incoming direct connection failed");
                    return;
                }
            };
            let peer = connection
                .peer_identity()
                .and_then(|identity| {
                    identity
                        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .and_then(|chain| chain.first().map(pinning::fingerprint))
                .and_then(|fingerprint| expected.peer(&fingerprint));
            let Some(peer) = peer else {
                connection.close(CLOSE_NOT_ACCEPTED.into(), b"unexpected certificate");
                return;
            };
            let direct = DirectConnection {
                peer,
                remote,
                connection,
            };
            if let Err(mpsc::error::TrySendError::Full(direct)) = accepted.try_send(direct) {
                tracing::warn!(%peer, %remote, "direct connection refused: nobody accepts them");
                direct
                    .connection
                    .close(CLOSE_NOT_ACCEPTED.into(), b"not accepted");
            }
        });
    }
}

#[cfg(test)]
mod tests;
