//! The `remote-agents-relay` binary as its own process: flags, the readiness line, `/metrics`,
//! the relay key from the environment, logs without payload bytes, and shutdown on SIGTERM.
//! (Relay behaviour itself is covered by relay_conformance, which runs in-process.)

use std::time::Duration;

use remote_agents_protocol::frame::{FrameKind, close_code};
use remote_agents_tests::relay::{RelayLimits, RelayProcess, random_peer, random_room};

type TestResult = anyhow::Result<()>;

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_count_rooms_peers_frames_and_rejections() -> TestResult {
    let process = RelayProcess::start(&["--max-peers", "2"], &[]).await?;
    let relay = process.handle(RelayLimits {
        max_peers: 2,
        ..RelayLimits::defaults()
    });
    let room = random_room();
    let mut first = relay.connect(&room, random_peer()).await?;
    first.welcome().await?;
    let mut second = relay.connect(&room, random_peer()).await?;
    second.welcome().await?;
    first
        .send_data(second.peer, 1, b"counted, never logged")
        .await?;
    second.recv_kind(FrameKind::Data).await?;
    first.send_data(random_peer(), 2, b"nobody").await?;
    first.recv_error().await?;
    first.recv_join().await?;
    let mut third = relay.connect(&room, random_peer()).await?;
    assert_eq!(third.closed().await?, Some(close_code::ROOM_FULL));

    let (status, text) = relay.http_get("/metrics").await?;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "relay_rooms"), Some(1.0));
    assert_eq!(metric(&text, "relay_peers"), Some(2.0));
    // Two PRESENCE_GETs (each `welcome` subscribes) and two DATA.
    assert_eq!(metric(&text, "relay_frames_in_total"), Some(4.0));
    // At least the two WELCOMEs, two snapshot pages and first's batch with second's join.
    assert!(metric(&text, "relay_presence_frames_total").is_some_and(|count| count >= 5.0));
    assert_eq!(metric(&text, "relay_frames_forwarded_total"), Some(1.0));
    assert_eq!(
        metric(&text, "relay_rejections_total{reason=\"not_found\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "relay_rejections_total{reason=\"room_full\"}"),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test]
async fn the_relay_key_comes_from_the_environment() -> TestResult {
    let process =
        RelayProcess::start(&[], &[("REMOTE_AGENTS_RELAY_KEY", "from-the-environment")]).await?;
    let relay = process.handle(RelayLimits {
        relay_key: Some("from-the-environment".into()),
        ..RelayLimits::defaults()
    });
    let room = random_room();
    assert_eq!(relay.refused_status(&room, random_peer(), None).await?, 401);
    let mut admitted = relay.connect(&room, random_peer()).await?;
    admitted.welcome().await?;
    Ok(())
}

#[tokio::test]
async fn logs_at_trace_level_never_contain_payload_bytes() -> TestResult {
    let process = RelayProcess::start(&[], &[("RUST_LOG", "trace")]).await?;
    let relay = process.handle(RelayLimits::defaults());
    let room = random_room();
    let mut sender = relay.connect(&room, random_peer()).await?;
    sender.welcome().await?;
    let mut receiver = relay.connect(&room, random_peer()).await?;
    receiver.welcome().await?;
    let canary = b"CANARY-5f1d2c-payload";
    sender.send_data(receiver.peer, 1, canary).await?;
    sender.send_broadcast(2, canary).await?;
    sender
        .send(&remote_agents_protocol::frame::Frame::retain_put(
            3, b"k", canary,
        )?)
        .await?;
    receiver.recv_kind(FrameKind::Data).await?;
    receiver.recv_kind(FrameKind::Broadcast).await?;
    sender.close().await?;
    // The LEAVE proves the relay handled everything above (and logged whatever it logs).
    receiver.recv_leave().await?;
    let logs = process.logs();
    assert!(!logs.is_empty(), "trace logging produced nothing");
    let hex_canary: String = canary.iter().map(|byte| format!("{byte:02x}")).collect();
    assert!(!logs.contains("CANARY"), "payload in logs:\n{logs}");
    assert!(
        !logs.contains(&hex_canary),
        "payload (hex) in logs:\n{logs}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_closes_connections_with_1001_and_exits_cleanly() -> TestResult {
    let mut process = RelayProcess::start(&[], &[]).await?;
    let relay = process.handle(RelayLimits::defaults());
    let mut client = relay.connect(&random_room(), random_peer()).await?;
    client.welcome().await?;
    let pid = process.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    assert_eq!(client.closed().await?, Some(1001));
    let exit = tokio::time::timeout(Duration::from_secs(10), process.child.wait()).await??;
    assert!(exit.success(), "{exit}");
    Ok(())
}

/// Issue 12: the relay's memory had no ceiling. It now has one for its configuration and says
/// so at start, so an operator sizes the machine (or the limits) before an attacker does.
#[tokio::test]
async fn the_relay_prints_its_memory_ceiling_at_start() -> TestResult {
    let process = RelayProcess::start(
        &[
            "--max-connections",
            "100",
            "--retained-bytes-total",
            "1048576",
        ],
        &[],
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(line) = process
            .logs()
            .lines()
            .find(|line| line.starts_with("memory ceiling: "))
            .map(str::to_owned)
        {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no memory ceiling line in: {}",
            process.logs()
        );
        tokio::task::yield_now().await;
    };
    assert!(line.contains("for 100 connections"), "{line}");
    assert!(line.contains("1.0 MiB retained"), "{line}");
    Ok(())
}
