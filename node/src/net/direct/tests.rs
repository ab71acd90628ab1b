//! The pinning of the direct path's QUIC handshake, between endpoints on 127.0.0.1: only the
//! certificate a peer offered inside its Noise session gets in, in either direction. (Punching
//! and transfers through real NATs are the end-to-end tests' `direct_nat`.)

use std::time::Duration;

use super::*;

fn loopback() -> DirectConfig {
    DirectConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..DirectConfig::default()
    }
}

async fn endpoint() -> (Arc<Endpoint>, mpsc::Receiver<DirectConnection>) {
    let (accepted_tx, accepted_rx) = mpsc::channel(4);
    let endpoint = Endpoint::open(&loopback(), accepted_tx).await.unwrap();
    (endpoint, accepted_rx)
}

fn peer(byte: u8) -> PeerId {
    PeerId([byte; 16])
}

async fn handshake(
    client: &Endpoint,
    server: &Endpoint,
    pinned: [u8; 32],
) -> Result<quinn::Connection, ConnectionError> {
    let address = server.socket_address().unwrap();
    let config = client.client_config(pinned, address).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        client
            .quinn
            .connect_with(config, address, "remote-agents")
            .unwrap(),
    )
    .await
    .expect("the handshake ends either way")
}

/// Whether the handshake was refused. In TLS 1.3 the client finishes before the server checks
/// its certificate, so a client the server refuses may see the handshake succeed and then the
/// connection closed.
async fn refused(handshake: Result<quinn::Connection, ConnectionError>) -> bool {
    match handshake {
        Err(_) => true,
        Ok(connection) => tokio::time::timeout(Duration::from_secs(10), connection.closed())
            .await
            .is_ok(),
    }
}

#[tokio::test]
async fn only_the_offered_certificate_connects_and_names_its_peer() {
    let (server, mut accepted) = endpoint().await;
    let (client, _) = endpoint().await;
    let (stranger, _) = endpoint().await;
    let until = std::time::Instant::now() + Duration::from_secs(30);
    server
        .expected
        .insert(client.certificate.fingerprint, peer(1), until);

    // The expected client, pinning the server's real certificate: in, named as peer 1, and the
    // bytes arrive.
    let connection = handshake(&client, &server, server.certificate.fingerprint)
        .await
        .expect("the expected client connects");
    let direct = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(direct.peer, peer(1));
    let mut send = connection.open_uni().await.unwrap();
    send.write_all(b"pinned").await.unwrap();
    send.finish().unwrap();
    let mut receive = direct.connection.accept_uni().await.unwrap();
    assert_eq!(receive.read_to_end(1024).await.unwrap(), b"pinned");

    // A client whose certificate nobody offered is refused by the server.
    let stranger_handshake = handshake(&stranger, &server, server.certificate.fingerprint).await;
    assert!(refused(stranger_handshake).await, "a stranger got in");

    // A client pinning another fingerprint refuses the server (someone on the path answering
    // in the peer's place).
    let wrong_pin = handshake(&client, &server, stranger.certificate.fingerprint).await;
    assert!(
        wrong_pin.is_err(),
        "a wrong pin was accepted: {wrong_pin:?}"
    );
    // Neither reached the server's accept queue.
    assert!(accepted.try_recv().is_err());
}

#[tokio::test]
async fn an_expectation_ends_with_its_window() {
    let (server, mut accepted) = endpoint().await;
    let (client, _) = endpoint().await;
    server.expected.insert(
        client.certificate.fingerprint,
        peer(2),
        std::time::Instant::now(),
    );
    let late = handshake(&client, &server, server.certificate.fingerprint).await;
    assert!(refused(late).await, "a closed window let a client in");
    assert!(accepted.try_recv().is_err());
}

#[tokio::test]
async fn candidates_carry_the_socket_port_and_the_reflexive_address() {
    let reflector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let reflector_address = reflector.local_addr().unwrap();
    // A one-shot reflector: answers the first request with a made-up public address, as a
    // NAT's outside address would be.
    let public: SocketAddr = "203.0.113.9:41000".parse().unwrap();
    let answering = crate::runtime::spawn(async move {
        let mut buffer = [0u8; 64];
        let (length, from) = reflector.recv_from(&mut buffer).await.unwrap();
        let transaction =
            remote_agents_protocol::direct::parse_reflect_request(&buffer[..length]).unwrap();
        let answer = remote_agents_protocol::direct::reflect_response(transaction, public);
        reflector.send_to(&answer, from).await.unwrap();
    });
    let (endpoint, _) = endpoint().await;
    let config = DirectConfig {
        reflector: Some(reflector_address.to_string()),
        ..loopback()
    };
    let candidates = endpoint.candidates(&config).await;
    answering.await.unwrap();
    assert_eq!(
        candidates,
        vec![endpoint.socket_address().unwrap(), public],
        "the bound address, then what the reflector saw"
    );
}

#[tokio::test]
async fn a_stopping_node_closes_its_direct_connections_at_once() {
    let state = DirectState::new(loopback());
    let server = state.endpoint().await.unwrap();
    let (client, _) = endpoint().await;
    server.expected.insert(
        client.certificate.fingerprint,
        peer(3),
        std::time::Instant::now() + Duration::from_secs(30),
    );
    let connection = handshake(&client, &server, server.certificate.fingerprint)
        .await
        .unwrap();
    let accepted = state.accepted_rx.lock().await.recv().await.unwrap();
    assert_eq!(accepted.peer, peer(3));
    state.close();
    // Well before the 5 s idle timeout: the peer is told, not left to time out.
    let closed = tokio::time::timeout(Duration::from_secs(2), connection.closed()).await;
    assert!(
        matches!(closed, Ok(ConnectionError::ApplicationClosed(_))),
        "{closed:?}"
    );
}

/// On loopback (a 64 KiB route MTU) path MTU discovery goes past Ethernet's 1,500 bytes, up to
/// what the route carries and no further, and the batches quinn sends through the socket in
/// pieces arrive: the bytes of a stream all get there.
#[tokio::test]
async fn loopback_paths_discover_the_routes_large_mtu() {
    let limit = route_payload_limit(SocketAddr::from((Ipv4Addr::LOCALHOST, 9))).unwrap();
    assert_eq!(limit, 65_535 - 28, "loopback's MTU is 64 KiB");
    let (client, _) = endpoint().await;
    let (server, mut accepted) = endpoint().await;
    server.expected.insert(
        client.certificate.fingerprint,
        peer(1),
        std::time::Instant::now() + Duration::from_secs(60),
    );
    let connection = handshake(&client, &server, server.certificate.fingerprint)
        .await
        .unwrap();
    let accepted = accepted.recv().await.unwrap().connection;
    let payload: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sender = {
        let payload = payload.clone();
        crate::runtime::spawn(async move {
            let mut stream = accepted.open_uni().await.unwrap();
            stream.write_all(&payload).await.unwrap();
            stream.finish().unwrap();
            stream.stopped().await.unwrap();
            accepted
        })
    };
    let mut stream = connection.accept_uni().await.unwrap();
    let received = stream.read_to_end(payload.len()).await.unwrap();
    assert!(received == payload, "the stream's bytes differ");
    let accepted = sender.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while accepted.stats().path.current_mtu <= 1500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery stayed at {}",
            accepted.stats().path.current_mtu
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(accepted.stats().path.current_mtu <= limit);
}
