//! Relay conformance: every behaviour of schemas/frame.md checked over real WebSockets. Runs
//! against `REMOTE_AGENTS_TEST_RELAY_URL` when set (the Worker runs this same suite), otherwise
//! against the Rust relay started in-process on 127.0.0.1:0. Each test uses a fresh random room,
//! so all of them can run at once against one relay; none looks inside the relay.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use remote_agents_protocol::frame::PresenceChange;
use remote_agents_protocol::frame::{
    self, Body, Frame, FrameKind, HEADER_LEN, Header, PeerId, close_code, error_code,
};
use remote_agents_protocol::key_proof;
use remote_agents_relay::RelayConfig;
use remote_agents_tests::relay::{Event, TestRelay, keypair_of, random_peer, random_room};

type TestResult = anyhow::Result<()>;

#[tokio::test]
async fn healthz_answers_ok() -> TestResult {
    let relay = TestRelay::start().await?;
    let (status, body) = relay.http_get("/healthz").await?;
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
    Ok(())
}

#[tokio::test]
async fn welcome_counts_the_peers_present_and_a_subscriber_reads_them_and_their_joins() -> TestResult
{
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut first = relay.connect(&room, random_peer()).await?;
    assert_eq!(first.welcome_count().await?, 0);
    // An empty snapshot, subscribing.
    assert_eq!(first.snapshot(true).await?, Vec::<PeerId>::new());

    let mut second = relay.connect(&room, random_peer()).await?;
    assert_eq!(second.welcome_count().await?, 1);
    assert_eq!(second.snapshot(true).await?, vec![first.peer]);
    assert_eq!(first.recv_join().await?, second.peer);

    let mut third = relay.connect(&room, random_peer()).await?;
    assert_eq!(third.welcome_count().await?, 2);
    let mut expected = vec![first.peer, second.peer];
    expected.sort();
    // Snapshot pages come in ascending peer id order.
    assert_eq!(third.welcome_snapshot_unsubscribed().await?, expected);
    assert_eq!(first.recv_join().await?, third.peer);
    assert_eq!(second.recv_join().await?, third.peer);
    Ok(())
}

/// Issue 19: a headless peer (one that never sends `PRESENCE_GET` with the subscribe flag)
/// hears nothing of the room after its WELCOME, however many peers join and leave; only
/// subscribers get the changes, in batches. A mass reconnect of N headless peers is O(N) frames.
#[tokio::test]
async fn headless_peers_hear_no_joins_or_leaves_and_subscribers_hear_all() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut subscriber = relay.connect(&room, random_peer()).await?;
    subscriber.welcome().await?;
    // Twenty peers, or as many as an external relay's room admits.
    let count = relay.limits().max_peers.min(21) - 1;
    let mut headless = Vec::new();
    for present in 1..=count as u32 {
        let mut peer = relay.connect(&room, random_peer()).await?;
        assert_eq!(peer.welcome_count().await?, present);
        headless.push(peer);
    }
    let leaving = headless.pop().context("a headless peer")?;
    let gone = leaving.peer;
    leaving.close().await?;
    let mut joined = Vec::new();
    let mut left = Vec::new();
    while left.is_empty() {
        match subscriber.recv_change().await? {
            PresenceChange::Joined(peer) => joined.push(peer),
            PresenceChange::Left(peer) => left.push(peer),
        }
    }
    assert_eq!(joined.len(), count);
    assert_eq!(left, vec![gone]);
    // The next frame each headless peer sees is the subscriber's DATA: no JOIN or LEAVE of
    // anyone came before it.
    for peer in &mut headless {
        subscriber.send_data(peer.peer, 77, b"marker").await?;
        let next = peer.next_event().await?;
        let Event::Frame(frame) = next else {
            anyhow::bail!("headless peer closed: {next:?}");
        };
        assert_eq!(
            (frame.header.kind, frame.header.id),
            (FrameKind::Data, 77),
            "a headless peer got {frame:?}"
        );
    }
    // A headless peer may still list the room once, without subscribing.
    let listed = headless[0].snapshot(false).await?;
    assert_eq!(
        listed.len(),
        count - 1,
        "the subscriber and the other headless peers"
    );
    Ok(())
}

/// Issue 19: a peer of another protocol version is told both versions in the close reason.
#[tokio::test]
async fn a_peer_of_another_protocol_version_is_closed_with_4005_naming_both() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let peer = random_peer();
    let (mut old, challenge) = relay.connect_unproven(&room, peer).await?;
    let challenge = challenge.context("the relay challenges every connection")?;
    let mut proof = Frame::proof(
        peer,
        key_proof::prove(&keypair_of(&peer)?, &room, &challenge)?,
    )
    .encode()
    .to_vec();
    proof[0] = 1;
    old.send_bytes(Bytes::from(proof)).await?;
    let (code, reason) = old.closed_with_reason().await?;
    assert_eq!(code, Some(close_code::VERSION_MISMATCH), "{reason}");
    assert!(
        reason.contains("1") && reason.contains(&frame::FRAME_VERSION.to_string()),
        "{reason}"
    );
    Ok(())
}

#[tokio::test]
async fn leave_is_announced_when_a_peer_disconnects() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut stays = relay.connect(&room, random_peer()).await?;
    stays.welcome().await?;
    let mut goes = relay.connect(&room, random_peer()).await?;
    goes.welcome().await?;
    assert_eq!(stays.recv_join().await?, goes.peer);
    let gone = goes.peer;
    goes.close().await?;
    assert_eq!(stays.recv_leave().await?, gone);
    // A newcomer no longer sees the peer that left.
    let mut late = relay.connect(&room, random_peer()).await?;
    assert_eq!(late.welcome().await?, vec![stays.peer]);
    Ok(())
}

#[tokio::test]
async fn unicast_reaches_only_its_destination_with_body_and_id_intact() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let mut receiver = relay.connect(&room, random_peer()).await?;
    receiver.welcome().await?;
    let mut bystander = relay.connect(&room, random_peer()).await?;
    bystander.welcome().await?;
    sender.recv_join().await?;
    sender.recv_join().await?;
    receiver.recv_join().await?;

    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    sender
        .send_data(receiver.peer, 0xdead_beef_0000_0001, &body)
        .await?;
    sender.send_broadcast(2, b"marker").await?;

    let data = receiver.recv_kind(FrameKind::Data).await?;
    assert_eq!(data.header.from, sender.peer);
    assert_eq!(data.header.to, receiver.peer);
    assert_eq!(data.header.id, 0xdead_beef_0000_0001);
    assert_eq!(&data.body[..], &body[..]);
    // The bystander's next frame is the later broadcast: the unicast never reached it.
    let next = bystander.recv().await?;
    assert_eq!(next.header.kind, FrameKind::Broadcast);
    assert_eq!(&next.body[..], b"marker");
    Ok(())
}

#[tokio::test]
async fn broadcast_reaches_every_other_peer_but_not_the_sender() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let mut receivers = Vec::new();
    for _ in 0..3 {
        let mut receiver = relay.connect(&room, random_peer()).await?;
        receiver.welcome().await?;
        receivers.push(receiver);
    }
    for _ in 0..3 {
        sender.recv_join().await?;
    }
    // `to` is ignored on a broadcast and forwarded as zero.
    let header = Header::new(FrameKind::Broadcast, sender.peer, random_peer(), 42);
    sender
        .send(&Frame::new(header, Bytes::from_static(b"to everyone")))
        .await?;
    for receiver in &mut receivers {
        let frame = loop {
            let frame = receiver.recv().await?;
            if frame.header.kind != FrameKind::Presence {
                break frame;
            }
        };
        assert_eq!(frame.header.kind, FrameKind::Broadcast);
        assert_eq!(frame.header.from, sender.peer);
        assert_eq!(frame.header.to, PeerId::ZERO);
        assert_eq!(frame.header.id, 42);
        assert_eq!(&frame.body[..], b"to everyone");
    }
    // The sender's next frame answers its later request: no echo of its own broadcast.
    sender.send(&Frame::retain_get(43, b"nothing")?).await?;
    let ack = sender.recv_kind(FrameKind::Ack).await?;
    assert_eq!(ack.header.id, 43);
    Ok(())
}

#[tokio::test]
async fn unicast_to_an_absent_peer_gets_error_404_with_the_same_id() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    sender.send_data(random_peer(), 77, b"lost").await?;
    let (id, code, _) = sender.recv_error().await?;
    assert_eq!((id, code), (77, error_code::NOT_FOUND));
    // A peer in another room is just as absent.
    let mut elsewhere = relay.connect(&random_room(), random_peer()).await?;
    elsewhere.welcome().await?;
    sender.send_data(elsewhere.peer, 78, b"lost").await?;
    assert_eq!(sender.recv_error().await?.1, error_code::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn the_relay_overwrites_from_so_a_peer_cannot_spoof_another() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut liar = relay.connect(&room, random_peer()).await?;
    liar.welcome().await?;
    let mut victim = relay.connect(&room, random_peer()).await?;
    victim.welcome().await?;
    let mut receiver = relay.connect(&room, random_peer()).await?;
    receiver.welcome().await?;
    victim.recv_join().await?;

    let spoofed = Header::new(FrameKind::Data, victim.peer, receiver.peer, 5);
    liar.send(&Frame::new(spoofed, Bytes::from_static(b"i am the victim")))
        .await?;
    let data = receiver.recv_kind(FrameKind::Data).await?;
    assert_eq!(data.header.from, liar.peer);
    assert_eq!(&data.body[..], b"i am the victim");

    let spoofed = Header::new(FrameKind::Broadcast, victim.peer, PeerId::ZERO, 6);
    liar.send(&Frame::new(spoofed, Bytes::from_static(b"also me")))
        .await?;
    let broadcast = receiver.recv_kind(FrameKind::Broadcast).await?;
    assert_eq!(broadcast.header.from, liar.peer);
    let broadcast = victim.recv_kind(FrameKind::Broadcast).await?;
    assert_eq!(broadcast.header.from, liar.peer);
    Ok(())
}

#[tokio::test]
async fn a_second_connection_with_the_same_peer_id_evicts_the_first_with_4001() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut observer = relay.connect(&room, random_peer()).await?;
    observer.welcome().await?;
    let peer = random_peer();
    let mut old = relay.connect(&room, peer).await?;
    old.welcome().await?;
    assert_eq!(observer.recv_join().await?, peer);

    let mut new = relay.connect(&room, peer).await?;
    assert_eq!(new.welcome().await?, vec![observer.peer]);
    assert_eq!(old.closed().await?, Some(close_code::EVICTED));
    // The others see the peer (re)join, and no LEAVE for the evicted connection.
    assert_eq!(observer.recv_join().await?, peer);

    observer.send_data(peer, 9, b"to the new one").await?;
    let data = new.recv_kind(FrameKind::Data).await?;
    assert_eq!(
        (data.header.from, &data.body[..]),
        (observer.peer, &b"to the new one"[..])
    );
    // Still present: a later newcomer's WELCOME lists it.
    let mut late = relay.connect(&room, random_peer()).await?;
    let mut present = late.welcome().await?;
    present.sort();
    let mut expected = vec![observer.peer, peer];
    expected.sort();
    assert_eq!(present, expected);
    Ok(())
}

/// What an intruder sends back for a `CHALLENGE` key.
type AnswerToChallenge<'a> = dyn Fn(&[u8; 32]) -> anyhow::Result<Bytes> + 'a;

/// The attack of issue 12: anyone who reads a peer id from WELCOME connects with it. Without
/// the peer's private key the connection is refused with 4004, never joins, and the peer it
/// claimed stays connected and reachable (it is not evicted, and nobody sees it rejoin).
#[tokio::test]
async fn an_unproven_connection_claiming_a_present_peer_is_refused_and_the_peer_stays() -> TestResult
{
    let relay = TestRelay::start().await?;
    let room = random_room();
    let victim = random_peer();
    let mut present = relay.connect(&room, victim).await?;
    present.welcome().await?;
    let mut friend = relay.connect(&room, random_peer()).await?;
    assert_eq!(friend.welcome().await?, vec![victim]);
    assert_eq!(present.recv_join().await?, friend.peer);

    let attacker = keypair_of(&random_peer())?;
    let victim_public = keypair_of(&victim)?.public;
    let friend_id = friend.peer;
    // Each attempt: what the attacker sends in answer to the CHALLENGE.
    let attempts: Vec<(&str, Box<AnswerToChallenge<'_>>)> = vec![
        (
            "a proof by its own key (which does not hash to the claimed id)",
            Box::new(|challenge| {
                Ok(Frame::proof(victim, key_proof::prove(&attacker, &room, challenge)?).encode())
            }),
        ),
        (
            "the victim's public key with a tag it cannot make",
            Box::new(|challenge| {
                let mut proof = key_proof::prove(&attacker, &room, challenge)?;
                proof[..32].copy_from_slice(&victim_public);
                Ok(Frame::proof(victim, proof).encode())
            }),
        ),
        (
            "a DATA frame instead of a proof",
            Box::new(|_| {
                Ok(Frame::new(
                    Header::new(FrameKind::Data, victim, friend_id, 1),
                    Bytes::from_static(b"hi"),
                )
                .encode())
            }),
        ),
    ];
    for (what, answer) in attempts {
        let (mut intruder, challenge) = relay.connect_unproven(&room, victim).await?;
        let challenge = challenge.expect("the relay challenges every connection");
        intruder.send_bytes(answer(&challenge)?).await?;
        assert_eq!(
            intruder.closed().await?,
            Some(close_code::KEY_PROOF_FAILED),
            "{what}"
        );
    }
    // A proof recorded from the victim's own connection does not open another one.
    let (mut replay, challenge) = relay.connect_unproven(&room, victim).await?;
    let recorded = key_proof::prove(&keypair_of(&victim)?, &room, &[9; 32])?;
    assert_ne!(challenge, Some([9; 32]));
    replay.send(&Frame::proof(victim, recorded)).await?;
    assert_eq!(replay.closed().await?, Some(close_code::KEY_PROOF_FAILED));

    // The victim was neither evicted nor announced again: the next thing either side sees is
    // the other's DATA.
    friend.send_data(victim, 5, b"still there?").await?;
    let data = present.recv_kind(FrameKind::Data).await?;
    assert_eq!((data.header.from, data.header.id), (friend.peer, 5));
    present.send_data(friend.peer, 6, b"yes").await?;
    let reply = friend.recv_kind(FrameKind::Data).await?;
    assert_eq!((reply.header.from, &reply.body[..]), (victim, &b"yes"[..]));
    Ok(())
}

/// A peer that asks (`remote-agents-challenge: header`) takes its challenge in the upgrade's
/// answer, as the encoded CHALLENGE frame in hex, and no CHALLENGE frame follows: its PROOF is
/// answered by WELCOME. The challenge is as binding as the frame's: a proof made for another
/// key is refused with 4004, and the peer claimed stays.
#[tokio::test]
async fn a_peer_that_asks_takes_its_challenge_in_the_upgrade_answer() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let peer = random_peer();
    let (mut client, challenge) = relay.connect_with_header_challenge(&room, peer).await?;
    let challenge = challenge.context("the answer carries the challenge")?;
    assert_eq!(challenge.header.to, peer);
    let Body::Challenge(key) = challenge.body()? else {
        anyhow::bail!("the header held {challenge:?}, not a CHALLENGE");
    };
    client
        .send(&Frame::proof(
            peer,
            key_proof::prove(&keypair_of(&peer)?, &room, &key)?,
        ))
        .await?;
    // The first frame after the proof is WELCOME: no CHALLENGE frame was sent.
    let first = client.recv().await?;
    assert_eq!(first.header.kind, FrameKind::Welcome, "{first:?}");

    let (mut intruder, challenge) = relay.connect_with_header_challenge(&room, peer).await?;
    assert!(challenge.is_some());
    let forged = key_proof::prove(&keypair_of(&peer)?, &room, &[7; 32])?;
    intruder.send(&Frame::proof(peer, forged)).await?;
    assert_eq!(intruder.closed().await?, Some(close_code::KEY_PROOF_FAILED));
    client.send_data(peer, 3, b"still here").await?;
    assert_eq!(client.recv_kind(FrameKind::Data).await?.header.id, 3);
    Ok(())
}

#[tokio::test]
async fn a_connection_that_sends_no_proof_is_closed_with_4004() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        proof_timeout: Duration::from_secs(1),
        ..RelayConfig::default()
    })
    .await?;
    if relay.is_external() {
        // An external relay's proof timeout is its own; the refusals above cover it.
        return Ok(());
    }
    let room = random_room();
    let mut member = relay.connect(&room, random_peer()).await?;
    member.welcome().await?;
    let (mut silent, challenge) = relay.connect_unproven(&room, member.peer).await?;
    assert!(challenge.is_some());
    assert_eq!(silent.closed().await?, Some(close_code::KEY_PROOF_FAILED));
    member.send_data(member.peer, 1, b"self").await?;
    assert_eq!(member.recv_kind(FrameKind::Data).await?.header.id, 1);
    Ok(())
}

#[tokio::test]
async fn retained_blobs_keep_the_newest_four_per_key_for_late_joiners() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut writer = relay.connect(&room, random_peer()).await?;
    writer.welcome().await?;
    for index in 1..=6u64 {
        let blob = format!("desired state #{index}");
        writer
            .send(&Frame::retain_put(
                100 + index,
                b"desired",
                blob.as_bytes(),
            )?)
            .await?;
        let ack = writer.recv_kind(FrameKind::Ack).await?;
        assert_eq!(ack.header.id, 100 + index);
        assert!(ack.body.is_empty());
    }
    writer
        .send(&Frame::retain_put(200, b"other", b"x")?)
        .await?;
    writer.recv_kind(FrameKind::Ack).await?;
    writer.close().await?;

    let mut late = relay.connect(&room, random_peer()).await?;
    assert!(late.welcome().await?.is_empty());
    late.send(&Frame::retain_get(300, b"desired")?).await?;
    let mut seqs = Vec::new();
    for index in 3..=6u64 {
        let frame = late.recv_kind(FrameKind::Retained).await?;
        assert_eq!(frame.header.id, 300);
        let Body::Retained { key, seq, blob } = frame.body()? else {
            anyhow::bail!("RETAINED with another body");
        };
        assert_eq!(&key[..], b"desired");
        assert_eq!(blob, format!("desired state #{index}").as_bytes());
        seqs.push(seq);
    }
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seq increases: {seqs:?}"
    );
    let ack = late.recv_kind(FrameKind::Ack).await?;
    assert_eq!(ack.header.id, 300);
    assert_eq!(frame::parse_retain_get_ack(&ack.body)?, 4);

    late.send(&Frame::retain_get(301, b"never written")?)
        .await?;
    let ack = late.recv_kind(FrameKind::Ack).await?;
    assert_eq!(
        (ack.header.id, frame::parse_retain_get_ack(&ack.body)?),
        (301, 0)
    );
    Ok(())
}

#[tokio::test]
async fn a_frame_over_the_cap_closes_with_1009_and_one_at_the_cap_passes() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        max_frame: 64 * 1024,
        queue_budget: 256 * 1024,
        ..RelayConfig::default()
    })
    .await?;
    let max_frame = relay.limits().max_frame;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let mut receiver = relay.connect(&room, random_peer()).await?;
    receiver.welcome().await?;

    let at_cap = vec![7u8; max_frame - HEADER_LEN];
    sender.send_data(receiver.peer, 1, &at_cap).await?;
    let data = receiver.recv_kind(FrameKind::Data).await?;
    assert_eq!(data.encoded_len(), max_frame);

    let over_cap = vec![7u8; max_frame + 1 - HEADER_LEN];
    sender.send_data(receiver.peer, 2, &over_cap).await?;
    assert_eq!(sender.closed().await?, Some(close_code::TOO_BIG));
    Ok(())
}

#[tokio::test]
async fn garbage_gets_error_400_and_the_connection_survives() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let mut receiver = relay.connect(&room, random_peer()).await?;
    receiver.welcome().await?;
    sender.recv_join().await?;

    let valid = |kind: u8, id: u64| {
        let mut bytes = Header::new(FrameKind::Data, sender.peer, receiver.peer, id).to_bytes();
        bytes[1] = kind;
        bytes.to_vec()
    };
    let mut wrong_version = valid(0x01, 11);
    wrong_version[0] = 9;
    let mut bad_retain = valid(0x03, 14);
    bad_retain.extend_from_slice(&[200, b'k']);
    // (bytes, expected id in the ERROR)
    let garbage: Vec<(Vec<u8>, u64)> = vec![
        (b"not a frame".to_vec(), 0),
        (Vec::new(), 0),
        (wrong_version, 11),
        (valid(0x09, 12), 12),
        (valid(0x10, 13), 13), // WELCOME is relay → peer only
        (bad_retain, 14),
    ];
    for (bytes, expected_id) in garbage {
        sender.send_bytes(Bytes::from(bytes)).await?;
        let (id, code, _) = sender.recv_error().await?;
        assert_eq!((id, code), (expected_id, error_code::MALFORMED));
    }
    sender.send_text("hello?").await?;
    let (id, code, _) = sender.recv_error().await?;
    assert_eq!((id, code), (0, error_code::MALFORMED));

    // Still connected and routed.
    sender.send_data(receiver.peer, 15, b"still here").await?;
    let data = receiver.recv_kind(FrameKind::Data).await?;
    assert_eq!((data.header.id, &data.body[..]), (15, &b"still here"[..]));
    Ok(())
}

/// Sends broadcasts into a room where the sender is alone (nothing is forwarded) in bursts
/// until the relay answers `ERROR 429`. Returns the number of frames sent.
async fn flood_until_rate_limited(
    client: &mut remote_agents_tests::relay::RelayClient,
    burst: usize,
) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut id = 0u64;
    loop {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no ERROR 429 after {id} frames"
        );
        for _ in 0..burst {
            id += 1;
            let header = Header::new(FrameKind::Broadcast, client.peer, PeerId::ZERO, id);
            client
                .feed_bytes(Frame::new(header, Bytes::new()).encode())
                .await?;
        }
        client.flush().await?;
        // The first thing that came back, if any (a lone peer gets nothing but 429s).
        if let Ok(event) = client.next_event_within(Duration::from_millis(1)).await {
            match event {
                Event::Frame(frame) if frame.header.kind == FrameKind::Error => {
                    let Body::Error { code, .. } = frame.body()? else {
                        anyhow::bail!("ERROR without an error body");
                    };
                    assert_eq!(code, error_code::RATE_LIMITED);
                    assert!(frame.header.id >= 1 && frame.header.id <= id);
                    return Ok(id);
                }
                Event::Frame(frame) => anyhow::bail!("unexpected frame {frame:?}"),
                Event::Closed(code) => anyhow::bail!("closed with {code:?} before any 429"),
            }
        }
    }
}

#[tokio::test]
async fn frames_over_the_rate_get_error_429_and_the_connection_survives() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        rate_per_second: 50,
        rate_burst: 50,
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let burst = (relay.limits().rate_per_second as usize / 10).clamp(10, 5000);
    flood_until_rate_limited(&mut sender, burst).await?;

    // Once the bucket refills the same connection is served again: retry a request until its
    // ACK comes back (429s for earlier frames may still be in flight).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut request = 1_000_000_000u64;
    'retry: loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never served again");
        request += 1;
        sender.send(&Frame::retain_get(request, b"k")?).await?;
        loop {
            let frame = sender.recv().await?;
            match frame.header.kind {
                FrameKind::Ack if frame.header.id == request => break 'retry,
                FrameKind::Error if frame.header.id == request => continue 'retry,
                FrameKind::Error | FrameKind::Ack => continue,
                other => anyhow::bail!("unexpected {other}"),
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn persistent_flooding_closes_with_4029() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        rate_per_second: 50,
        rate_burst: 50,
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    // The contract: more than max(rate, 1000) drops within one second closes with 4029.
    let burst = (relay.limits().rate_per_second as usize).max(1000) * 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut id = 0u64;
    let code = 'flood: loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never closed");
        for _ in 0..burst {
            id += 1;
            let header = Header::new(FrameKind::Broadcast, sender.peer, PeerId::ZERO, id);
            if sender
                .feed_bytes(Frame::new(header, Bytes::new()).encode())
                .await
                .is_err()
            {
                break 'flood sender.closed().await?;
            }
        }
        if sender.flush().await.is_err() {
            break 'flood sender.closed().await?;
        }
        while let Ok(event) = sender.next_event_within(Duration::from_millis(1)).await {
            if let Event::Closed(code) = event {
                break 'flood code;
            }
        }
    };
    assert_eq!(code, Some(close_code::RATE_LIMITED));
    Ok(())
}

#[tokio::test]
async fn a_full_room_refuses_one_more_peer_with_4002() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        max_peers: 3,
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    let mut members = Vec::new();
    for _ in 0..relay.limits().max_peers {
        let mut member = relay.connect(&room, random_peer()).await?;
        member.welcome().await?;
        members.push(member);
    }
    let mut refused = relay.connect(&room, random_peer()).await?;
    assert_eq!(refused.closed().await?, Some(close_code::ROOM_FULL));
    // Another room is unaffected.
    let mut elsewhere = relay.connect(&random_room(), random_peer()).await?;
    elsewhere.welcome().await?;
    Ok(())
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed_with_4008() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        idle_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(500),
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    let started = tokio::time::Instant::now();
    let mut silent = relay.connect_raw(&room, random_peer()).await?;
    if relay.limits().idle_timeout.is_zero() {
        // A relay that declares no idle limit (REMOTE_AGENTS_TEST_RELAY_IDLE_SECS=0: the Worker,
        // whose Durable Object cannot send pings, leaves dead connections to the platform) must
        // not close a silent peer on its own.
        match silent.close_code(Duration::from_secs(3)).await {
            // Nothing at all arrived within the wait: the connection is still open.
            Err(error) if error.to_string().contains("no websocket frame within") => {
                return Ok(());
            }
            Ok(Some(code)) => panic!("a relay without an idle limit closed a silent peer ({code})"),
            other => panic!("a relay without an idle limit dropped a silent peer: {other:?}"),
        }
    }
    let within = relay.limits().idle_timeout + Duration::from_secs(15);
    assert_eq!(
        silent.close_code(within).await?,
        Some(close_code::IDLE_TIMEOUT)
    );
    assert!(started.elapsed() >= relay.limits().idle_timeout);
    Ok(())
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_connected_past_the_idle_limit() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        idle_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(500),
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    let mut quiet = relay.connect(&room, random_peer()).await?;
    quiet.welcome().await?;
    // Reading answers the relay's pings; nothing else arrives in a room of one, so the read
    // must time out rather than see a close.
    let stay = relay.limits().idle_timeout + Duration::from_secs(2);
    let outcome = quiet.next_event_within(stay).await;
    assert!(outcome.is_err(), "expected silence, got {outcome:?}");
    quiet.send(&Frame::retain_get(1, b"k")?).await?;
    assert_eq!(quiet.recv_kind(FrameKind::Ack).await?.header.id, 1);
    Ok(())
}

#[tokio::test]
async fn malformed_room_or_peer_ids_close_with_4003() -> TestResult {
    let relay = TestRelay::start().await?;
    let room = random_room();
    let peer = random_peer();
    let key = relay.limits().relay_key.clone();
    let paths = [
        format!("/v1/rooms/{}?peer={}", room, peer.to_hex().to_uppercase()),
        format!("/v1/rooms/{}", room),
        format!("/v1/rooms/{}?peer={}", &room.to_hex()[..10], peer),
        format!("/v1/rooms/{}?peer=zz{}", room, &peer.to_hex()[2..]),
    ];
    for path in paths {
        let mut client = relay.connect_path(&path, peer, key.as_deref()).await?;
        assert_eq!(
            client.closed().await?,
            Some(close_code::BAD_REQUEST),
            "{path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_relay_key_admits_only_peers_that_present_it() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        relay_key: Some("conformance-key".into()),
        ..RelayConfig::default()
    })
    .await?;
    let room = random_room();
    match relay.limits().relay_key.clone() {
        Some(key) => {
            let status = relay.refused_status(&room, random_peer(), None).await?;
            assert_eq!(status, 401);
            let wrong = format!("{key}-wrong");
            let status = relay
                .refused_status(&room, random_peer(), Some(&wrong))
                .await?;
            assert_eq!(status, 401);
            let mut admitted = relay.connect(&room, random_peer()).await?;
            admitted.welcome().await?;
        }
        None => {
            // An external relay started without a key (REMOTE_AGENTS_TEST_RELAY_KEY unset)
            // admits everyone: assert that, so this test still checks something real.
            eprintln!("external relay has no key: checking that it admits peers without one");
            let mut admitted = relay.connect(&room, random_peer()).await?;
            admitted.welcome().await?;
        }
    }
    Ok(())
}

/// A blob as large as the frame cap allows under a key of `key_len` bytes (its `RETAINED` frame,
/// 8 bytes longer than the put, must fit the cap too).
fn largest_blob(max_frame: usize, key_len: usize) -> Vec<u8> {
    vec![0x5a; max_frame - HEADER_LEN - 1 - key_len - 8]
}

/// Puts one blob per new key (`{prefix}{nn}`, two digits) until the relay refuses; returns how many it kept
/// and the refusal's code.
async fn fill_retained_store(
    client: &mut remote_agents_tests::relay::RelayClient,
    prefix: &str,
    blob: &[u8],
    most: usize,
) -> anyhow::Result<(usize, u16)> {
    for index in 0..most {
        let key = format!("{prefix}{index:02}");
        client
            .send(&Frame::retain_put(index as u64 + 1, key.as_bytes(), blob)?)
            .await?;
        let reply = client.recv().await?;
        match (reply.header.kind, reply.body()?) {
            (FrameKind::Ack, _) => {}
            (FrameKind::Error, Body::Error { code, .. }) => return Ok((index, code)),
            other => anyhow::bail!("unexpected answer to RETAIN_PUT: {other:?}"),
        }
    }
    anyhow::bail!("the relay kept {most} blobs without refusing one")
}

/// Issue 12: retained blobs were capped only by keys per room (256 MB a room, no total). A put
/// that would take the room past its retained-bytes cap gets `ERROR 507`; what was kept stays.
#[tokio::test]
async fn retained_bytes_over_the_room_cap_are_refused_with_507() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        max_frame: 64 * 1024,
        retained_bytes_per_room: 256 * 1024,
        ..RelayConfig::default()
    })
    .await?;
    let limits = relay.limits().clone();
    let room = random_room();
    let mut writer = relay.connect(&room, random_peer()).await?;
    writer.welcome().await?;
    let blob = largest_blob(limits.max_frame, 3);
    let fit = limits.retained_bytes_per_room / (blob.len() + 3);
    let (kept, code) = fill_retained_store(&mut writer, "b", &blob, fit + 1).await?;
    assert_eq!((kept, code), (fit, error_code::RETAINED_FULL));
    // The kept blobs are still served.
    writer.send(&Frame::retain_get(100, b"b00")?).await?;
    assert_eq!(writer.recv_kind(FrameKind::Retained).await?.header.id, 100);
    Ok(())
}

#[tokio::test]
async fn retained_bytes_over_the_relay_wide_cap_are_refused_with_507() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        max_frame: 64 * 1024,
        retained_bytes_per_room: 256 * 1024,
        retained_bytes_total: 384 * 1024,
        ..RelayConfig::default()
    })
    .await?;
    if relay.is_external() {
        // Durable Objects share no memory: the Worker caps each room, the platform the rest.
        return Ok(());
    }
    let blob = largest_blob(64 * 1024, 3);
    let per_room = 256 * 1024 / (blob.len() + 3);
    let mut first = relay.connect(&random_room(), random_peer()).await?;
    first.welcome().await?;
    assert_eq!(
        fill_retained_store(&mut first, "b", &blob, per_room + 1).await?,
        (per_room, error_code::RETAINED_FULL)
    );
    let mut second = relay.connect(&random_room(), random_peer()).await?;
    second.welcome().await?;
    let total_fit = 384 * 1024 / (blob.len() + 3);
    assert_eq!(
        fill_retained_store(&mut second, "b", &blob, per_room).await?,
        (total_fit - per_room, error_code::RETAINED_FULL)
    );
    Ok(())
}

/// The value of an unlabelled line of the relay's `/metrics`.
async fn metric(relay: &TestRelay, name: &str) -> anyhow::Result<i64> {
    let (_, text) = relay.http_get("/metrics").await?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
}

/// Issue 12: rooms with blobs never expired (1 GB kept after the attacker left). A room's
/// retained blobs go `retained_ttl` after its last peer left.
#[tokio::test]
async fn a_room_s_retained_blobs_expire_after_its_last_peer_left() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        retained_ttl: Duration::from_millis(500),
        ..RelayConfig::default()
    })
    .await?;
    if relay.is_external() {
        return Ok(());
    }
    let room = random_room();
    let mut writer = relay.connect(&room, random_peer()).await?;
    writer.welcome().await?;
    writer
        .send(&Frame::retain_put(1, b"k", &[7; 1000])?)
        .await?;
    writer.recv_kind(FrameKind::Ack).await?;
    assert_eq!(metric(&relay, "relay_retained_bytes").await?, 1001);
    writer.close().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&relay, "relay_retained_bytes").await? != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle room's blobs were never dropped"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(metric(&relay, "relay_rooms").await?, 0);
    let mut late = relay.connect(&room, random_peer()).await?;
    late.welcome().await?;
    late.send(&Frame::retain_get(2, b"k")?).await?;
    let ack = late.recv_kind(FrameKind::Ack).await?;
    assert_eq!(frame::parse_retain_get_ack(&ack.body)?, 0);
    Ok(())
}

/// Issue 12: replies to RETAIN_GET on a socket that never reads were queued without bound
/// (15.9 KB of requests took the relay 1.2 GB up). The connection is cut off instead, and
/// what reaches the socket before the end is bounded by the queue, not by the requests.
#[tokio::test]
async fn a_socket_that_floods_retain_get_without_reading_is_closed() -> TestResult {
    let relay = TestRelay::start_with(RelayConfig {
        max_frame: 64 * 1024,
        max_queued_bytes: 512 * 1024,
        ..RelayConfig::default()
    })
    .await?;
    if relay.is_external() {
        // A Durable Object cannot see a peer's unread bytes; the platform bounds its memory.
        return Ok(());
    }
    let room = random_room();
    let mut writer = relay.connect(&room, random_peer()).await?;
    writer.welcome().await?;
    let blob = largest_blob(64 * 1024, 1);
    for id in 1..=4 {
        writer.send(&Frame::retain_put(id, b"k", &blob)?).await?;
        writer.recv_kind(FrameKind::Ack).await?;
    }
    // 2,000 requests of 44 bytes ask for ~500 MB of answers.
    let mut flooder = relay.connect_raw(&room, random_peer()).await?;
    let requests = 2000;
    for id in 0..requests {
        let request = Frame::retain_get(id, b"k")?.encode();
        if flooder.write_binary(&request).await.is_err() {
            // Reset: the relay already dropped the connection.
            break;
        }
    }
    let mut received = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match flooder.read_frame(left).await {
            Ok(None) => break,
            Ok(Some(frame)) if frame.opcode == 0x8 => break,
            Ok(Some(frame)) => received += frame.payload.len(),
            Err(error) if error.to_string().contains("no websocket frame within") => {
                panic!("the relay kept the flooding connection open: {error}")
            }
            // Reset by the relay mid-frame: closed too.
            Err(_) => break,
        }
    }
    let asked = requests as usize * 4 * blob.len();
    assert!(
        received < asked / 10,
        "the relay sent {received} of the {asked} bytes asked for before closing"
    );
    // The relay and the room go on (past the flooder's JOIN and LEAVE).
    writer.send(&Frame::retain_get(9, b"k")?).await?;
    let answer = loop {
        let frame = writer.recv().await?;
        if frame.header.kind != FrameKind::Presence {
            break frame;
        }
    };
    assert_eq!(
        (answer.header.kind, answer.header.id),
        (FrameKind::Retained, 9)
    );
    Ok(())
}

/// Issue 12: 200 slowloris sockets were still held after 65 s. A request head that never ends
/// (and a connection that never sends one) is dropped after the header timeout.
#[tokio::test]
async fn an_http_request_head_that_never_ends_is_dropped() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = TestRelay::start_with(RelayConfig {
        header_read_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    })
    .await?;
    if relay.is_external() {
        return Ok(());
    }
    let address = relay.socket_address()?;
    let mut partial = tokio::net::TcpStream::connect(&address).await?;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
        .await?;
    let mut silent = tokio::net::TcpStream::connect(&address).await?;
    for (what, stream) in [("partial head", &mut partial), ("no head", &mut silent)] {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .map_err(|_| anyhow::anyhow!("{what}: the relay still holds the socket"))??;
    }
    // The relay still serves everyone else.
    assert_eq!(relay.http_get("/healthz").await?.0, 200);
    Ok(())
}
