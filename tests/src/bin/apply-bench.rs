//! apply-bench: time from publishing a signed desired-state bundle to every one of N nodes
//! acknowledging the new generation (verified, stored, reconciled, status reported back), next
//! to a bare broadcast-and-ack floor measured in the same run (the same fan-out machinery with a
//! trivial read-only request), and the idle CPU of N nodes holding an applied spec.
//!
//! Simulated nodes run in a few `sim-nodes` processes (each a full `Node` with its own
//! identity, store, reconciler and WebSocket connection); the relay and the caller run in this
//! process, so both figures pay the same two shared cores. Not part of the test run: start it with
//! `cargo run --release -p remote-agents-tests --bin apply-bench -- --nodes 1000`.

// The allocator of the remote-agents and fleetctl binaries, so the simulated nodes and the
// caller in this process allocate the way the real ones do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use clap::Parser;
use remote_agents_node::desired::{BundleContent, OperatorKey, SignedBundle, SpecFile};
use remote_agents_node::fleet::HostStatus;
use remote_agents_node::sync::distribute::publish_retained;
use remote_agents_ops::{AgentArgs, DesiredOfferArgs, DesiredOfferResult, Request};
use remote_agents_spec::Selector;
use remote_agents_tests::simulated::{SimulatedFleet, default_data_base};

#[derive(Parser)]
struct Args {
    /// How many simulated nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Generations applied (and floor fan-outs run); the best of each is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds of idle time over which the CPU of the idle fleet is measured (the CPU clock
    /// of /proc/self/stat counts in 10 ms ticks, so a long window reads finely).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Seconds the fleet settles after the last apply before the idle window opens: nodes
    /// that connected before any bundle existed are still on their catch-up retries.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// Where the nodes keep their stores (default /dev/shm: a thousand nodes would otherwise
    /// queue their fsyncs on one disk, which a real fleet spreads over a thousand).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// A realistic small fleet spec; `generation` changes a rule so every apply changes the mode
/// of a fifth of the hosts and the policy of all.
fn spec(generation: u64) -> Vec<SpecFile> {
    let mode = if generation.is_multiple_of(2) {
        "edit"
    } else {
        "plan"
    };
    let fleet = format!(
        "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {{name: bench}}
spec:
  defaults:
    mode: bypass
    policy:
      paths: {{deny: [/etc/shadow, '/root/**']}}
      commands: {{deny: [shutdown, reboot]}}
  hosts:
    - {{name: 'sim-*', tags: [sim]}}
    - {{name: sim-1, tags: [canary]}}
  rules:
    - {{name: first-200, target: first-200, mode: {mode}}}
    - {{name: generation, target: sim, policy: {{paths: {{deny: ['/tmp/generation-{generation}']}}}}}}
"
    );
    vec![SpecFile {
        path: "fleet.yaml".into(),
        text: fleet,
    }]
}

async fn run(args: Args) -> anyhow::Result<()> {
    let base = default_data_base(args.data_dir.as_deref());
    let work = tempfile::tempdir_in(&base)?;
    let n = args.nodes;
    let started = Instant::now();
    let fleet = SimulatedFleet::start(n, work.path()).await?;
    println!(
        "{n} nodes connected in {:.1} s (data in {})",
        started.elapsed().as_secs_f64(),
        base.display()
    );
    let all = Selector::parse("all").expect("`all` is a selector");
    let key = OperatorKey::generate();
    let mut floor = f64::MAX;
    let mut apply = f64::MAX;
    // One warm-up generation: the first contact with each node pays its Noise handshake.
    for generation in 1..=(args.repeat.max(1) as u64 + 1) {
        // The floor: the same broadcast-and-ack path with a trivial read-only request.
        let floor_seconds = fleet
            .timed_fan_out(
                &all,
                Request::DesiredStatus(AgentArgs { agent_id: None }),
                "floor",
                n,
            )
            .await?;
        if generation > 1 {
            floor = floor.min(floor_seconds);
        }

        // Publish: sign, leave it at the relay, offer it to every node; each acknowledges
        // with its status after verifying, storing and reconciling.
        let files = spec(generation);
        let t = Instant::now();
        let content = BundleContent {
            fleet: "bench".into(),
            generation,
            revision: format!("bench-{generation}"),
            issued_at_ms: remote_agents_node::journal::now_ms(),
            issuer: key.public(),
            files,
            window_override: None,
            rollout: None,
        };
        let signed = SignedBundle::sign(&content, &key);
        publish_retained(&fleet.connection.net, &fleet.connection.psk, &signed).await?;
        let job = fleet
            .fan_out(
                &all,
                Request::DesiredOffer(DesiredOfferArgs {
                    bundle: signed,
                    prune: false,
                    agent_id: None,
                }),
                &format!("apply {generation}"),
            )
            .await;
        let seconds = t.elapsed().as_secs_f64();
        // `current`: the node already took it from the relay's retained copy meanwhile.
        let acknowledges = |r: &remote_agents_node::fleet::HostRecord| {
            r.status == HostStatus::Ok
                && serde_json::from_str::<DesiredOfferResult>(&r.stdout).is_ok_and(|offer| {
                    offer.decision != "refused" && offer.status.observed_generation == generation
                })
        };
        let missing: Vec<String> = job
            .report
            .records
            .iter()
            .filter(|r| !acknowledges(r))
            .map(|r| {
                format!(
                    "{} {:?}: {} {} {:?}",
                    r.host, r.status, r.stdout, r.stderr, r.error
                )
            })
            .collect();
        anyhow::ensure!(
            missing.is_empty() && job.report.records.len() == n,
            "generation {generation}: {} of {n} nodes acknowledged it; the others:\n{}",
            job.report.records.len() - missing.len(),
            missing.join("\n")
        );
        if generation > 1 {
            apply = apply.min(seconds);
        }
        println!(
            "generation {generation}: floor {floor_seconds:.3} s, apply {seconds:.3} s{}",
            if generation == 1 { " (warm-up)" } else { "" }
        );
    }
    println!("\napply to {n} nodes (publish -> every node acknowledged the new generation):");
    println!("  apply: {apply:.3} s (best of {})", args.repeat);
    println!("  floor (same fan-out, trivial request): {floor:.3} s");
    println!("  ratio {:.2}x (target <= 3x)", apply / floor);

    // Idle: nodes hold the applied spec; nothing is asked of them.
    let wall = Duration::from_secs(args.idle_secs);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let (nodes_before, here_before) = fleet.cpu_time()?;
    let t = Instant::now();
    tokio::time::sleep(wall).await;
    let (nodes_after, here_after) = fleet.cpu_time()?;
    let seconds = t.elapsed().as_secs_f64();
    let (nodes, here) = (nodes_after - nodes_before, here_after - here_before);
    println!(
        "idle CPU of {n} nodes (the sim-nodes processes), {} s after the last apply: {:.2} s over \
         {seconds:.1} s = {:.2}% of a core (target < 1%)",
        args.settle_secs,
        nodes.as_secs_f64(),
        nodes.as_secs_f64() / seconds * 100.0
    );
    println!(
        "  the relay and the caller meanwhile (this process; mostly keepalive pings to the {n} \
         connections): {:.2}% of a core",
        here.as_secs_f64() / seconds * 100.0
    );
    Ok(())
}
