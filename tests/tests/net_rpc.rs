//! The node's secure channel and RPC (`remote_agents_node::net`) through the real Rust relay:
//! handshakes and presence, calls with streamed chunks, large payloads, cancellation,
//! deadlines, broadcast, relay restarts and eviction.

use std::sync::atomic::Ordering;
use std::time::Duration;

use remote_agents_node::net::{CallError, ConnectionState};
use remote_agents_protocol::frame::PeerId;
use remote_agents_protocol::message::{MAX_PART, RemoteFailure};
use remote_agents_relay::RelayConfig;
use remote_agents_tests::net::{DEADLINE, RestartableRelay, TestNode, wait_until};

async fn pair(relay: &RestartableRelay, dirs: &tempfile::TempDir) -> (TestNode, TestNode) {
    let a = TestNode::start(&relay.url(), "lab", &dirs.path().join("a"), "node-a")
        .await
        .unwrap();
    let b = TestNode::start(&relay.url(), "lab", &dirs.path().join("b"), "node-b")
        .await
        .unwrap();
    a.net.wait_for_peers(1, DEADLINE).await.unwrap();
    b.net.wait_for_peers(1, DEADLINE).await.unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stream_chunks_and_large_payloads_between_two_nodes() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (a, b) = pair(&relay, &dirs).await;

    let peers = a.net.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, b.peer_id());
    assert_eq!(peers[0].agent_id, b.identity.agent_id());
    assert_eq!(peers[0].announcement.name, "node-b");
    assert_eq!(peers[0].public_key, b.identity.public_key());

    let mut call = a
        .net
        .call(b.peer_id(), b"hello".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(call.collect().await.unwrap(), (vec![], b"hello".to_vec()));

    let mut call = a
        .net
        .call(b.peer_id(), b"stream:5".to_vec(), DEADLINE)
        .await
        .unwrap();
    let (chunks, response) = call.collect().await.unwrap();
    let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("chunk {i}").into_bytes()).collect();
    assert_eq!(chunks, expected);
    assert_eq!(response, b"done");

    // Larger than three frames each way: split into parts and reassembled.
    let large: Vec<u8> = (0..(3 * MAX_PART + 12345))
        .map(|i| (i % 251) as u8)
        .collect();
    let mut call = b
        .net
        .call(a.peer_id(), large.clone(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(call.collect().await.unwrap().1, large);

    let mut call = a
        .net
        .call(b.peer_id(), b"fail".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        call.collect().await,
        Err(CallError::Remote(RemoteFailure::Handler(
            "asked to fail".into()
        )))
    );

    assert_eq!(a.net.broadcast(b"to everyone".to_vec()).await, 1);
    wait_until("the broadcast to arrive", || {
        b.handler.notifications.lock().unwrap().as_slice() == [b"to everyone".to_vec()]
    })
    .await
    .unwrap();
    assert_eq!(a.net.rejected() + b.net.rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_fires_the_callee_s_token() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (a, b) = pair(&relay, &dirs).await;
    let call = a
        .net
        .call(b.peer_id(), b"wait-for-cancel".to_vec(), DEADLINE)
        .await
        .unwrap();
    wait_until("the request to reach the handler", || {
        b.handler.requests.load(Ordering::SeqCst) == 1
    })
    .await
    .unwrap();
    call.cancel();
    wait_until("the handler to see the cancellation", || {
        b.handler.cancelled.load(Ordering::SeqCst) == 1
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fails_the_call_and_cancels_the_callee() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (a, b) = pair(&relay, &dirs).await;
    let mut call = a
        .net
        .call(
            b.peer_id(),
            b"wait-for-cancel".to_vec(),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert_eq!(call.next().await, Some(Err(CallError::DeadlineExceeded)));
    assert_eq!(call.next().await, None);
    wait_until("the callee to be cancelled", || {
        b.handler.cancelled.load(Ordering::SeqCst) == 1
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_in_the_room_is_unreachable() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (a, _b) = pair(&relay, &dirs).await;
    let mut call = a
        .net
        .call(PeerId([7; 16]), b"hello".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert!(matches!(
        call.next().await,
        Some(Err(CallError::Unreachable(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relay_restart_in_flight_calls_fail_clearly_and_sessions_come_back() {
    let mut relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (a, b) = pair(&relay, &dirs).await;
    let mut in_flight = a
        .net
        .call(b.peer_id(), b"wait-for-cancel".to_vec(), DEADLINE)
        .await
        .unwrap();
    wait_until("the request to reach the handler", || {
        b.handler.requests.load(Ordering::SeqCst) == 1
    })
    .await
    .unwrap();
    let connections_before = a.net.counters().connections.load(Ordering::SeqCst);
    relay.restart().await.unwrap();
    // The request was delivered: the caller cannot know whether it ran.
    assert!(
        matches!(
            in_flight.next().await,
            Some(Err(CallError::OutcomeUnknown(_)))
        ),
        "in-flight call must fail with outcome_unknown"
    );
    wait_until("both nodes to reconnect", || {
        a.net.counters().connections.load(Ordering::SeqCst) > connections_before
            && b.net.counters().connections.load(Ordering::SeqCst) > 0
    })
    .await
    .unwrap();
    a.net.wait_for_peers(1, DEADLINE).await.unwrap();
    let mut call = a
        .net
        .call(b.peer_id(), b"again".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(call.collect().await.unwrap().1, b"again");

    // While the relay is down, new calls fail at once as unreachable instead of hanging.
    relay.stop().await;
    a.net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connecting)
        .await
        .unwrap();
    let mut call = a
        .net
        .call(b.peer_id(), b"nobody".to_vec(), DEADLINE)
        .await
        .unwrap();
    assert!(matches!(
        call.next().await,
        Some(Err(CallError::Unreachable(_)))
    ));
    assert_eq!(a.net.rejected() + b.net.rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_node_does_not_reconnect() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let first = TestNode::start(&relay.url(), "lab", &dirs.path().join("same"), "first")
        .await
        .unwrap();
    first
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await
        .unwrap();
    // The same identity connects again: the relay evicts the first connection with 4001.
    let second = TestNode::start(&relay.url(), "lab", &dirs.path().join("same"), "second")
        .await
        .unwrap();
    first
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Evicted)
        .await
        .unwrap();
    second
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await
        .unwrap();
    assert_eq!(
        first.net.counters().connect_attempts.load(Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_different_room_keys_never_see_each_other() {
    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let a = TestNode::start(&relay.url(), "lab", &dirs.path().join("a"), "a")
        .await
        .unwrap();
    let outsider = TestNode::start_with_psk(
        &relay.url(),
        "lab",
        &dirs.path().join("outsider"),
        "outsider",
        remote_agents_protocol::psk::Psk::from_bytes(&[0x11; 32]).unwrap(),
    )
    .await
    .unwrap();
    // The outsider's handshake frames reach `a` and fail there (counted), and nothing else.
    wait_until("a to reject the outsider's handshake", || {
        a.net.rejected() + outsider.net.rejected() > 0
    })
    .await
    .unwrap();
    assert!(a.net.peers().is_empty());
    assert!(outsider.net.peers().is_empty());
    let mut call = outsider
        .net
        .call(a.peer_id(), b"let me in".to_vec(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(
        call.next().await,
        Some(Err(CallError::DeadlineExceeded | CallError::Unreachable(_)))
    ));
    assert_eq!(a.handler.requests.load(Ordering::SeqCst), 0);
}

/// A callee that speaks the node's RPC (`ops::Envelope` in, `ops::Reply` out): it lists an
/// empty folder after streaming one chunk, refuses everything else, and keeps the envelopes.
#[derive(Default)]
struct OpsHandler {
    seen: std::sync::Mutex<Vec<remote_agents_ops::Envelope>>,
}

impl remote_agents_node::net::Handler for OpsHandler {
    fn handle(
        &self,
        _from: remote_agents_node::net::PeerInfo,
        request: Vec<u8>,
        mut responder: remote_agents_node::net::Responder,
        _cancel: tokio_util::sync::CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        use remote_agents_ops::{Envelope, ListDirResult, Outcome, Reply, Request};
        let envelope: Envelope = serde_json::from_slice(&request).expect("an envelope");
        self.seen.lock().unwrap().push(envelope.clone());
        Box::pin(async move {
            let outcome = match &envelope.request {
                Request::ListDir(args) => {
                    let _ = responder.chunk(b"listing").await;
                    Outcome::ok(&ListDirResult {
                        path: args.path.clone(),
                        entries: vec![],
                    })
                }
                _ => Outcome::Refused {
                    reason: "plan mode".into(),
                },
            };
            let reply = Reply {
                id: envelope.id,
                outcome,
            };
            responder
                .respond(&serde_json::to_vec(&reply).unwrap())
                .await;
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_calls_a_peer_and_maps_each_failure_to_one_status() {
    use remote_agents_node::client::{CallError, Client};
    use remote_agents_ops::operation::{GetInfo, ListDir};
    use remote_agents_ops::{AgentArgs, Caller, HostStatus, PathArgs, Request};

    let relay = RestartableRelay::start(RelayConfig::default())
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let a = TestNode::start(&relay.url(), "lab", &dirs.path().join("a"), "node-a")
        .await
        .unwrap();
    let identity =
        remote_agents_node::identity::Identity::load_or_create(&dirs.path().join("b")).unwrap();
    let mut config = remote_agents_node::net::NetConfig::new(
        relay.url(),
        "lab",
        remote_agents_tests::net::test_psk(),
    );
    config.announcement.name = "node-b".into();
    config.announcement.accepts_commands = true;
    let handler = std::sync::Arc::new(OpsHandler::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let b = remote_agents_node::net::Net::start(&identity, config, Some(handler.clone()), shutdown);
    a.net.wait_for_peers(1, DEADLINE).await.unwrap();
    b.wait_for_peers(1, DEADLINE).await.unwrap();

    let client = Client::new(
        a.net.clone(),
        Caller::Fleet {
            caller: "tester".into(),
        },
    );
    let path = PathArgs {
        agent_id: None,
        path: "/srv".into(),
    };
    // Typed: the output is the operation's result struct; the envelope carries the given id
    // and the client's caller.
    let listing = client
        .call_with::<ListDir>(b.local_id(), "job/1/0".into(), path.clone(), DEADLINE)
        .await
        .unwrap();
    assert_eq!(listing.path, "/srv");
    {
        let seen = handler.seen.lock().unwrap();
        assert_eq!(seen[0].id, "job/1/0");
        assert_eq!(
            seen[0].caller,
            Caller::Fleet {
                caller: "tester".into()
            }
        );
    }
    // Untyped: streamed chunks reach the sink before the outcome.
    let chunks = std::sync::Mutex::new(Vec::new());
    let sink = |chunk: &[u8]| chunks.lock().unwrap().push(chunk.to_vec());
    let envelope = client.envelope("op/node-b".into(), Request::ListDir(path));
    let outcome = client
        .send(b.local_id(), &envelope, DEADLINE, Some(&sink))
        .await
        .unwrap();
    assert_eq!(outcome.label(), "ok");
    assert_eq!(chunks.into_inner().unwrap(), vec![b"listing".to_vec()]);
    // A refusal is the host's answer: denied, with its reason.
    let refused = client
        .call::<GetInfo>(b.local_id(), AgentArgs { agent_id: None })
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        CallError::Refused {
            reason: "plan mode".into()
        }
    );
    assert_eq!(
        refused.host_failure(),
        (HostStatus::Denied, "plan mode".to_string())
    );
    // A peer that is not in the room is unreachable, and nothing was sent.
    let absent = client
        .call::<GetInfo>(PeerId([7; 16]), AgentArgs { agent_id: None })
        .await
        .unwrap_err();
    assert_eq!(absent.host_failure().0, HostStatus::Unreachable, "{absent}");
    assert_eq!(handler.seen.lock().unwrap().len(), 3);
}
