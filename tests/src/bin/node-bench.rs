//! Round trip of `exec true` on a peer through the relay (MCP client → node A → relay → node B →
//! process → back), next to `ssh HOST true` over a reused ControlMaster connection when an ssh
//! target is given, printed as a ratio (target ≤ 0.3×).
//!
//! Usage: node-bench [--calls N] [--ssh "user@127.0.0.1 -p PORT"]

// The allocator of the remote-agents and fleetctl binaries, so the simulated nodes and the
// caller in this process allocate the way the real ones do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use remote_agents_tests::node::{McpProcess, node_binary};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Sequential calls to time (after 20 warm-up calls).
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// ssh destination and options for the baseline, e.g. "bench@127.0.0.1 -p 2222".
    #[arg(long)]
    ssh: Option<String>,
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (median, p99)
}

fn ssh_baseline(target: &str, calls: usize) -> anyhow::Result<Vec<Duration>> {
    let control = tempfile::tempdir()?;
    let socket = control.path().join("cm");
    let mut base: Vec<String> = vec![
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        "ControlMaster=auto".into(),
        "-o".into(),
        format!("ControlPath={}", socket.display()),
        "-o".into(),
        "ControlPersist=60".into(),
    ];
    base.extend(target.split_whitespace().map(str::to_string));
    let run = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = std::process::Command::new("ssh")
            .args(&base)
            .arg("true")
            .status()?;
        anyhow::ensure!(status.success(), "ssh {target} true failed");
        Ok(started.elapsed())
    };
    for _ in 0..20 {
        run()?;
    }
    let samples = (0..calls).map(|_| run()).collect::<anyhow::Result<_>>()?;
    let _ = std::process::Command::new("ssh")
        .args(&base)
        .args(["-O", "exit"])
        .status();
    Ok(samples)
}

async fn exec_true(a: &mut McpProcess) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let r = a
        .call_tool("exec", json!({"agent_id": "bench-b", "argv": ["true"]}))
        .await?;
    anyhow::ensure!(r["isError"] == json!(false), "exec failed: {r}");
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let relay = remote_agents_tests::relay::TestRelay::start().await?;
    let tmp = tempfile::tempdir()?;
    let room = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let common = [
        "--relay",
        relay.url.as_str(),
        "--room",
        room.as_str(),
        "--token",
        "bench",
    ];
    let b_data = tmp.path().join("b").display().to_string();
    let a_data = tmp.path().join("a").display().to_string();
    let mut b = tokio::process::Command::new(node_binary()?)
        .arg("run")
        .args(common)
        .args(["--name", "bench-b", "--data-dir", &b_data])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let mut a_args = common.to_vec();
    a_args.extend(["--name", "bench-a", "--data-dir", &a_data]);
    let mut a = McpProcess::start(&a_args, &[]).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = a.call_tool("list_agents", json!({})).await?;
        if r.to_string().contains("bench-b") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "peer never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        exec_true(&mut a).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        samples.push(exec_true(&mut a).await?);
    }
    let (median, p99) = summary(samples);
    println!(
        "remote-agents exec true via relay: median {:.2} ms, p99 {:.2} ms ({} calls)",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        args.calls
    );
    match &args.ssh {
        Some(target) => {
            let (ssh_median, ssh_p99) =
                summary(ssh_baseline(target, args.calls).context("ssh baseline")?);
            println!(
                "ssh ControlMaster true:           median {:.2} ms, p99 {:.2} ms",
                ssh_median.as_secs_f64() * 1e3,
                ssh_p99.as_secs_f64() * 1e3
            );
            println!(
                "ratio (remote-agents / ssh, median): {:.2}x (target <= 0.3x)",
                median.as_secs_f64() / ssh_median.as_secs_f64()
            );
        }
        None => println!("ssh baseline: not run (pass --ssh DEST to compare)"),
    }
    b.start_kill()?;
    Ok(())
}
