//! The relay cluster (`remote-agents-relay --cluster nats://…`): a real `nats-server` with
//! JetStream on 127.0.0.1 and three relay instances as processes. Peers on different instances
//! see each other and exchange frames and requests; a duplicate peer id on another instance
//! evicts the older connection; killing an instance under load loses no acknowledged request
//! and its nodes come back through another instance; retained desired state outlives every
//! instance.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use remote_agents_node::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
use remote_agents_node::net::{CallError, ConnectionState};
use remote_agents_node::sync::distribute;
use remote_agents_protocol::frame::{FrameKind, PeerId, PresenceChange, close_code, error_code};
use remote_agents_tests::cluster::RelayCluster;
use remote_agents_tests::net::{DEADLINE, TestNode, test_psk, wait_until};
use remote_agents_tests::relay::{RelayClient, random_peer, random_room};

/// Reads the `WELCOME` and follows presence (the snapshot, then batches of joins) until every
/// peer of `expected` is known present.
async fn await_presence(client: &mut RelayClient, expected: &[PeerId]) -> anyhow::Result<()> {
    let mut present: BTreeSet<PeerId> = client.welcome().await?.into_iter().collect();
    while !expected.iter().all(|peer| present.contains(peer)) {
        present.insert(client.recv_join().await?);
    }
    Ok(())
}

/// Presence changes other than `unwanted` only, for `within`.
async fn hears_none_within(
    client: &mut RelayClient,
    unwanted: PresenceChange,
    within: Duration,
) -> anyhow::Result<()> {
    while let Ok(change) = tokio::time::timeout(within, client.recv_change()).await {
        anyhow::ensure!(change? != unwanted, "heard {unwanted:?}");
    }
    Ok(())
}

/// How fast the nodes of a dead instance must be back through another one (the bound).
const FAILOVER_BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_different_instances_see_each_other_and_exchange_64_kib_frames()
-> anyhow::Result<()> {
    let cluster = RelayCluster::start(3, &[]).await?;
    let room = random_room();
    let (a_id, b_id, c_id) = (random_peer(), random_peer(), random_peer());
    let mut a = cluster.handle(0)?.connect(&room, a_id).await?;
    assert!(a.welcome().await?.is_empty());
    // B on another instance learns A is in the room (in its snapshot, or in a presence batch
    // should B's instance hear of A a moment later), and A hears B join.
    let mut b = cluster.handle(1)?.connect(&room, b_id).await?;
    await_presence(&mut b, &[a_id]).await?;
    assert_eq!(a.recv_join().await?, b_id);
    let mut c = cluster.handle(2)?.connect(&room, c_id).await?;
    await_presence(&mut c, &[a_id, b_id]).await?;
    for earlier in [&mut a, &mut b] {
        loop {
            if earlier.recv_join().await? == c_id {
                break;
            }
        }
    }
    // Every instance now knows the others' peers: a newcomer on instance 0 counts and lists all
    // three in its WELCOME and snapshot, local and remote merged in peer-id order.
    let d_id = random_peer();
    let mut d = cluster.handle(0)?.connect(&room, d_id).await?;
    assert_eq!(d.welcome_count().await?, 3);
    let mut everyone = vec![a_id, b_id, c_id];
    everyone.sort();
    assert_eq!(d.snapshot(false).await?, everyone);
    d.close().await?;
    for earlier in [&mut a, &mut b, &mut c] {
        assert_eq!(earlier.recv_join().await?, d_id);
        assert_eq!(earlier.recv_leave().await?, d_id);
    }

    // 64 KiB DATA frames both ways across instances, in order and intact.
    for index in 0..32u64 {
        let body: Vec<u8> = (0..64 * 1024)
            .map(|at| (at as u64 * 7 + index) as u8)
            .collect();
        a.send_data(b_id, index, &body).await?;
        let frame = b.recv_kind(FrameKind::Data).await?;
        assert_eq!((frame.header.from, frame.header.id), (a_id, index));
        assert_eq!(frame.body, Bytes::from(body.clone()));
        c.send_data(a_id, 1000 + index, &body).await?;
        let frame = a.recv_kind(FrameKind::Data).await?;
        assert_eq!((frame.header.from, frame.header.id), (c_id, 1000 + index));
        assert_eq!(frame.body.len(), 64 * 1024);
    }
    // A broadcast reaches the peers of every instance, stamped by the relay.
    a.send_broadcast(77, b"to everyone").await?;
    for receiver in [&mut b, &mut c] {
        let frame = receiver.recv_kind(FrameKind::Broadcast).await?;
        assert_eq!((frame.header.from, frame.header.id), (a_id, 77));
        assert_eq!(frame.body, Bytes::from_static(b"to everyone"));
    }
    // A peer in no instance is still not found.
    a.send_data(random_peer(), 5, b"nobody").await?;
    let (id, code, _) = a.recv_error().await?;
    assert_eq!((id, code), (5, error_code::NOT_FOUND));
    // Leaving on one instance is a leave for the presence subscribers on the others.
    b.close().await?;
    for receiver in [&mut a, &mut c] {
        assert_eq!(receiver.recv_leave().await?, b_id);
    }
    Ok(())
}

/// A newcomer's first frame to a subscriber on another instance reaches it after the batch
/// that announces the newcomer, as on a single relay: the join travels on the control subject
/// and the frame on the subscriber's own, handled apart, and the join would otherwise sit in the
/// 50 ms batch while the frame went straight through (a session made on that frame is torn down
/// by the late join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_hears_a_newcomer_on_another_instance_join_before_its_first_frame()
-> anyhow::Result<()> {
    const NEWCOMERS: u64 = 20;
    let cluster = RelayCluster::start(2, &[]).await?;
    let room = random_room();
    let subscriber_id = random_peer();
    let mut subscriber = cluster.handle(1)?.connect(&room, subscriber_id).await?;
    assert!(subscriber.welcome().await?.is_empty());
    // Instance 0 knows the subscriber before anyone there sends to it.
    let mut probe = cluster.handle(0)?.connect(&room, random_peer()).await?;
    await_presence(&mut probe, &[subscriber_id]).await?;
    let mut newcomers = Vec::new();
    for index in 0..NEWCOMERS {
        let mut newcomer = cluster.handle(0)?.connect(&room, random_peer()).await?;
        newcomer.welcome_count().await?;
        newcomer.send_data(subscriber_id, index, b"hello").await?;
        newcomers.push(newcomer);
    }
    let mut joined = BTreeSet::new();
    for _ in 0..NEWCOMERS {
        let frame = subscriber.recv().await?;
        for change in subscriber.take_changes() {
            if let PresenceChange::Joined(peer) = change {
                joined.insert(peer);
            }
        }
        assert_eq!(frame.header.kind, FrameKind::Data);
        assert!(
            joined.contains(&frame.header.from),
            "DATA {} from {} came before its join",
            frame.header.id,
            frame.header.from
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_different_instances_exchange_requests_and_large_payloads() -> anyhow::Result<()> {
    let cluster = RelayCluster::start(3, &[]).await?;
    let dirs = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for index in 0..3 {
        let node = TestNode::start(
            &cluster.urls_from(index)?,
            "lab",
            &dirs.path().join(format!("n{index}")),
            &format!("node-{index}"),
        )
        .await?;
        nodes.push(node);
    }
    for node in &nodes {
        node.net.wait_for_peers(2, DEADLINE).await?;
    }
    let payload: Vec<u8> = (0..(256 * 1024 + 17)).map(|at| (at % 253) as u8).collect();
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let mut call = nodes[from]
            .net
            .call(nodes[to].peer_id(), b"hello".to_vec(), DEADLINE)
            .await?;
        assert_eq!(call.collect().await?.1, b"hello");
        let mut call = nodes[from]
            .net
            .call(nodes[to].peer_id(), payload.clone(), DEADLINE)
            .await?;
        assert_eq!(call.collect().await?.1, payload);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_peer_id_on_another_instance_evicts_the_older_connection() -> anyhow::Result<()>
{
    let cluster = RelayCluster::start(3, &[]).await?;
    let room = random_room();
    let (watcher_id, twin_id) = (random_peer(), random_peer());
    let mut watcher = cluster.handle(2)?.connect(&room, watcher_id).await?;
    watcher.welcome().await?;
    let mut first = cluster.handle(0)?.connect(&room, twin_id).await?;
    first.welcome().await?;
    assert_eq!(watcher.recv_join().await?, twin_id);
    let mut second = cluster.handle(1)?.connect(&room, twin_id).await?;
    await_presence(&mut second, &[watcher_id]).await?;
    assert_eq!(first.closed().await?, Some(close_code::EVICTED));
    // The twin never left the room: the watcher hears no leave (a rejoin, which tells it to
    // forget the old connection's sessions), and frames reach the new connection.
    watcher.send_data(twin_id, 9, b"still there?").await?;
    let frame = second.recv_kind(FrameKind::Data).await?;
    assert_eq!((frame.header.from, frame.header.id), (watcher_id, 9));
    hears_none_within(
        &mut watcher,
        PresenceChange::Left(twin_id),
        Duration::from_millis(300),
    )
    .await?;

    // The same with nodes: the first node is evicted and stays away.
    let dirs = tempfile::tempdir()?;
    let node_first =
        TestNode::start(&cluster.url(0)?, "lab", &dirs.path().join("same"), "first").await?;
    node_first
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await?;
    let node_second =
        TestNode::start(&cluster.url(1)?, "lab", &dirs.path().join("same"), "second").await?;
    node_first
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Evicted)
        .await?;
    node_second
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_of_a_stopped_instance_leave_at_once_and_of_a_killed_one_soon_after()
-> anyhow::Result<()> {
    let mut cluster = RelayCluster::start(3, &[]).await?;
    let room = random_room();
    let (stays_id, stopped_id, killed_id) = (random_peer(), random_peer(), random_peer());
    let mut stays = cluster.handle(0)?.connect(&room, stays_id).await?;
    stays.welcome().await?;
    let mut on_stopped = cluster.handle(1)?.connect(&room, stopped_id).await?;
    on_stopped.welcome().await?;
    let mut on_killed = cluster.handle(2)?.connect(&room, killed_id).await?;
    on_killed.welcome().await?;
    await_joins(&mut stays, &[stopped_id, killed_id]).await?;
    // SIGTERM: the instance closes its connections with 1001 and says goodbye, so its peers
    // leave the others' rooms well before the heartbeat timeout (3 s) would tell.
    cluster.stop(1).await?;
    assert_eq!(on_stopped.closed().await?, Some(1001));
    let leave = tokio::time::timeout(Duration::from_secs(2), stays.recv_change()).await;
    assert!(
        matches!(&leave, Ok(Ok(PresenceChange::Left(peer))) if *peer == stopped_id),
        "expected the stopped instance's peer to leave, got {leave:?}"
    );
    // SIGKILL: nothing is said; the instance's heartbeats stop and its peers leave after the
    // timeout.
    cluster.kill(2).await?;
    let leave = tokio::time::timeout(Duration::from_secs(10), stays.recv_change()).await;
    assert!(
        matches!(&leave, Ok(Ok(PresenceChange::Left(peer))) if *peer == killed_id),
        "expected the killed instance's peer to leave, got {leave:?}"
    );
    Ok(())
}

/// Follows presence until a join of each of `peers` has come.
async fn await_joins(client: &mut RelayClient, peers: &[PeerId]) -> anyhow::Result<()> {
    let mut waiting: BTreeSet<PeerId> = peers.iter().copied().collect();
    while !waiting.is_empty() {
        waiting.remove(&client.recv_join().await?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_under_load_loses_no_acknowledged_request() -> anyhow::Result<()> {
    let mut cluster = RelayCluster::start(3, &[]).await?;
    let dirs = tempfile::tempdir()?;
    // The caller on instance 0; two targets on instance 2, which is killed. Each node's relay
    // list starts with its own instance and goes on round the others.
    let caller = TestNode::start(
        &cluster.urls_from(0)?,
        "lab",
        &dirs.path().join("caller"),
        "caller",
    )
    .await?;
    let mut targets = Vec::new();
    for name in ["target-a", "target-b"] {
        targets.push(
            TestNode::start(&cluster.urls_from(2)?, "lab", &dirs.path().join(name), name).await?,
        );
    }
    caller.net.wait_for_peers(2, DEADLINE).await?;
    for target in &targets {
        target.net.wait_for_peers(2, DEADLINE).await?;
    }
    let connections_before: Vec<u64> = targets
        .iter()
        .map(|target| target.net.counters().connections.load(Ordering::SeqCst))
        .collect();

    // Load: four workers send numbered requests round the two targets. A request counts as
    // acknowledged when its echo came back; a failed one (in flight at the kill, or sent while
    // its target was away) is sent again until acknowledged. Requests are idempotent echoes.
    let caller = Arc::new(caller);
    let target_ids: Vec<_> = targets.iter().map(TestNode::peer_id).collect();
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let next_request = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (caller, target_ids, acknowledged, failures, next_request, stop) = (
            caller.clone(),
            target_ids.clone(),
            acknowledged.clone(),
            failures.clone(),
            next_request.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let number = next_request.fetch_add(1, Ordering::SeqCst);
                let target = target_ids[(number % 2) as usize];
                let request = format!("request-{number}").into_bytes();
                loop {
                    let answer = match caller
                        .net
                        .call(target, request.clone(), Duration::from_secs(3))
                        .await
                    {
                        Ok(mut call) => call.collect().await,
                        Err(error) => Err(error),
                    };
                    match answer {
                        Ok((_, echo)) => {
                            assert_eq!(echo, request, "a response to another request");
                            acknowledged.lock().unwrap().insert(number);
                            break;
                        }
                        Err(
                            CallError::Unreachable(_)
                            | CallError::OutcomeUnknown(_)
                            | CallError::DeadlineExceeded,
                        ) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(other) => panic!("request {number} failed unexpectedly: {other:?}"),
                    }
                }
            }
        }));
    }
    wait_until("load to be flowing", || {
        acknowledged.lock().unwrap().len() >= 200
    })
    .await?;
    let handled_before: u64 = targets
        .iter()
        .map(|target| target.handler.requests.load(Ordering::SeqCst))
        .sum();
    assert!(handled_before >= 200);

    cluster.kill(2).await?;
    let killed_at = Instant::now();
    // The targets reconnect through another instance, and the caller reaches them again.
    let deadline = killed_at + FAILOVER_BOUND;
    for (target, before) in targets.iter().zip(&connections_before) {
        while target.net.counters().connections.load(Ordering::SeqCst) <= *before
            || *target.net.watch_state().borrow() != ConnectionState::Connected
        {
            assert!(
                Instant::now() < deadline,
                "a node of the killed instance was not back within {FAILOVER_BOUND:?}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let acknowledged_at_kill = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < acknowledged_at_kill + 200 {
        assert!(
            Instant::now() < deadline,
            "requests to the moved nodes did not flow again within {FAILOVER_BOUND:?} of the kill \
             ({} acknowledged since)\n{}",
            acknowledged.lock().unwrap().len() - acknowledged_at_kill,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back_after = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await?;
    }
    // Every request number handed out was acknowledged (none lost, none answered for another),
    // and each acknowledged request was handled by a target at least once.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let issued = next_request.load(Ordering::SeqCst);
    assert_eq!(acknowledged, (0..issued).collect::<BTreeSet<u64>>());
    let handled: u64 = targets
        .iter()
        .map(|target| target.handler.requests.load(Ordering::SeqCst))
        .sum();
    assert!(
        handled >= issued,
        "{handled} requests handled for {issued} acknowledged"
    );
    eprintln!(
        "failover: {issued} requests acknowledged, {} retried after failures, nodes back and \
         requests flowing {back_after:?} after the kill",
        failures.load(Ordering::SeqCst)
    );
    Ok(())
}

fn bundle(key: &OperatorKey, generation: u64) -> SignedBundle {
    SignedBundle::sign(
        &BundleContent {
            fleet: "cluster".into(),
            generation,
            revision: format!("test-{generation}"),
            issued_at_ms: 1,
            issuer: key.public(),
            files: vec![SpecFile {
                path: "fleet.yaml".into(),
                text: format!("# generation {generation}\n"),
            }],
            window_override: None,
            rollout: None,
        },
        key,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_desired_state_survives_restarting_every_instance() -> anyhow::Result<()> {
    let mut cluster = RelayCluster::start(3, &[]).await?;
    let dirs = tempfile::tempdir()?;
    let operator = OperatorKey::generate();
    let publisher = TestNode::start(
        &cluster.url(0)?,
        "lab",
        &dirs.path().join("publisher"),
        "publisher",
    )
    .await?;
    publisher
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await?;
    for generation in 1..=5 {
        distribute::publish_retained(&publisher.net, &test_psk(), &bundle(&operator, generation))
            .await?;
    }
    // Another instance serves the same retained state.
    let reader = TestNode::start(
        &cluster.url(1)?,
        "lab",
        &dirs.path().join("reader"),
        "reader",
    )
    .await?;
    reader
        .net
        .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
        .await?;
    let generations = |bundles: Vec<SignedBundle>| -> Vec<u64> {
        bundles.iter().map(SignedBundle::peek_generation).collect()
    };
    assert_eq!(
        generations(distribute::fetch_retained(&reader.net, &test_psk()).await?),
        vec![2, 3, 4, 5]
    );
    publisher.stop();
    reader.stop();

    // Every instance is restarted (killed, then started afresh on new ports).
    for index in 0..3 {
        cluster.restart(index).await?;
    }
    assert!(cluster.nats.is_running());
    for index in 0..3 {
        let node = TestNode::start(
            &cluster.url(index)?,
            "lab",
            &dirs.path().join(format!("after-{index}")),
            "after",
        )
        .await?;
        node.net
            .wait_for_state(DEADLINE, |state| *state == ConnectionState::Connected)
            .await?;
        assert_eq!(
            generations(distribute::fetch_retained(&node.net, &test_psk()).await?),
            vec![2, 3, 4, 5],
            "instance {index} after the restart"
        );
    }
    Ok(())
}
