//! fanout-bench: fan-out of `exec true` to N nodes, and a 64 KiB `read` from N nodes, through the
//! real relay, Noise sessions, policy gate and executors — next to the peers measured in the same
//! run: `pdsh -R exec` running the same command locally for N "hosts", and the process-spawn
//! floor (N / the spawn rate of `/bin/true` measured here).
//!
//! Simulated nodes run in a few `sim-nodes` processes (each is a full `Node` with its own
//! identity, store and WebSocket connection; see `simulated` for why not one); the relay and the
//! caller run in this process. Not part of the test run: start it with
//! `cargo run --release -p remote-agents-tests --bin fanout-bench -- --nodes 200,1000`.

// The allocator of the remote-agents and fleetctl binaries, so the simulated nodes and the
// caller in this process allocate the way the real ones do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use remote_agents_ops::{ExecArgs, ReadFileArgs, Request};
use remote_agents_spec::Selector;
use remote_agents_tests::simulated::{SimulatedFleet, default_data_base};

#[derive(Parser)]
struct Args {
    /// Fleet sizes to measure, comma-separated.
    #[arg(long, default_value = "200,1000", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Size of the file each node returns in the read benchmark.
    #[arg(long, default_value_t = 64 * 1024)]
    read_bytes: usize,
    /// Repetitions of each fan-out; the best is reported (the first warms the sessions).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where the simulated nodes keep their data (identity, journal); default /dev/shm (see
    /// `simulated::default_data_base`). Pass a disk folder to include the journal's fsyncs.
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

async fn run(args: Args) -> anyhow::Result<()> {
    let spawn_rate = spawn_rate(2_000).await?;
    println!("process-spawn rate here: {spawn_rate:.0} /s (/bin/true, 8 in flight)");
    let base = default_data_base(args.data_dir.as_deref());
    let work = tempfile::tempdir_in(&base)?;
    println!("node data (journals) in {}", base.display());
    // The file the nodes read lives beneath their default roots (home, temp dir).
    let blob_dir = tempfile::tempdir()?;
    let blob = blob_dir.path().join("blob.txt");
    std::fs::write(&blob, "x".repeat(args.read_bytes))?;
    let largest = args.nodes.iter().copied().max().unwrap_or(0);
    let fleet = SimulatedFleet::start(largest, work.path()).await?;
    println!(
        "{largest} simulated nodes connected ({} sim-nodes processes, relay in this one)\n",
        fleet.process_count()
    );

    let all = Selector::parse("all").map_err(|e| anyhow::anyhow!("{e}"))?;
    for &n in &args.nodes {
        let selector = if n == largest {
            all.clone()
        } else {
            Selector::parse(&format!("tag:first-{n}")).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let exec = Request::Exec(ExecArgs {
            agent_id: None,
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(60.0),
            max_output_bytes: None,
        });
        let ours = best_of(&fleet, args.repeat, &selector, exec, n).await?;
        let floor = n as f64 / spawn_rate;
        let pdsh = pdsh_exec(n)?;
        println!("fan-out `exec true` to {n} nodes: {:.3} s", ours);
        println!(
            "  spawn floor ({n} / spawn rate): {floor:.3} s   ratio {:.2}x (target <= 2x)",
            ours / floor
        );
        match pdsh {
            Some(pdsh) => println!(
                "  pdsh -R exec locally:           {pdsh:.3} s   ratio {:.2}x (target <= 0.25x)",
                ours / pdsh
            ),
            None => println!("  pdsh not installed (apt-get install pdsh): no pdsh ratio"),
        }
    }

    let read = Request::ReadFile(ReadFileArgs {
        agent_id: None,
        path: blob.display().to_string(),
        offset: None,
        length: Some(args.read_bytes as u64),
    });
    let seconds = best_of(&fleet, args.repeat, &all, read, largest).await?;
    let megabytes = (largest * args.read_bytes) as f64 / 1e6;
    println!(
        "\nread {} KiB from {largest} nodes: {seconds:.3} s ({:.0} MB/s through relay + crypto; target <= 0.3 s)",
        args.read_bytes / 1024,
        megabytes / seconds
    );
    Ok(())
}

/// Spawns `/bin/true` `count` times with 8 in flight; returns spawns per second.
async fn spawn_rate(count: usize) -> anyhow::Result<f64> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let results: Vec<std::io::Result<std::process::ExitStatus>> =
        futures_util::stream::iter(0..count)
            .map(|_| async { tokio::process::Command::new("/bin/true").status().await })
            .buffer_unordered(8)
            .collect()
            .await;
    for result in results {
        anyhow::ensure!(result?.success(), "/bin/true failed");
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// `pdsh -R exec -f 64 -w bench[1-N] true`: the same command for N hosts, run locally.
fn pdsh_exec(n: usize) -> anyhow::Result<Option<f64>> {
    if which("pdsh").is_none() {
        return Ok(None);
    }
    let started = Instant::now();
    let status = std::process::Command::new("pdsh")
        .args([
            "-R",
            "exec",
            "-f",
            "64",
            "-w",
            &format!("bench[1-{n}]"),
            "true",
        ])
        .status()
        .context("running pdsh")?;
    anyhow::ensure!(status.success(), "pdsh failed");
    Ok(Some(started.elapsed().as_secs_f64()))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Runs the fan-out `repeat` times; returns the best wall time, checking every host was ok.
async fn best_of(
    fleet: &SimulatedFleet,
    repeat: usize,
    selector: &Selector,
    request: Request,
    expected: usize,
) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..repeat.max(1) {
        let seconds = fleet
            .timed_fan_out(selector, request.clone(), "bench", expected)
            .await?;
        best = best.min(seconds);
    }
    Ok(best)
}
