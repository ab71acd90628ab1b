//! transfer-bench: issue 15's figures, each against a peer or a limit measured in the same run,
//! on loopback with real node processes, a real relay and real fleetctl:
//! (a) one file (1 GiB) host→host over the direct path (QUIC on the punched UDP socket) next to
//!     `scp` (OpenSSH, the same file on the same machine) and `socat` (raw TCP, no crypto);
//!     target: direct ≤ 0.4× scp's time.
//! (b) the same file through the relay (the destination's direct path off) next to the relay's
//!     own sealed 64 KiB throughput (`relay-bench`, run here); target ≥ 0.5× of it.
//! (c) memory per transfer: the growth of the source's and the destination's peak RSS (VmHWM)
//!     over (a) and (b); target ≤ 64 MiB.
//! (d) one file to many nodes with `fleetctl cp FILE -t SELECTOR:PATH`: the bytes fleetctl (the
//!     source) sent over the file's size; target ≤ 3.
//!
//! Transfer times are the transfer's own (the record's start to end); the peers' times are their
//! processes' wall time. Run: `cargo build --release --bins -p remote-agents -p
//! remote-agents-tests && $CARGO_TARGET_DIR/release/transfer-bench` (needs `scp`, `sshd` and
//! `socat`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use remote_agents_tests::fleet::{NodeSpec, TestFleet};
use remote_agents_tests::git_servers::SshServer;

#[derive(Parser, Debug)]
#[command(about = "host-to-host transfer figures against scp, socat and the relay")]
struct Args {
    /// MiB of the file in (a), (b) and (c).
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Nodes in (d).
    #[arg(long, default_value_t = 50)]
    swarm_nodes: usize,
    /// MiB of the file in (d).
    #[arg(long, default_value_t = 256)]
    swarm_mib: u64,
    /// Skip (d).
    #[arg(long)]
    no_swarm: bool,
    /// Where (d)'s nodes keep their copies (nodes × MiB in all; 12.5 GiB by default): a RAM
    /// file system, since (d) counts bytes sent, not disk speed.
    #[arg(long, default_value = "/dev/shm")]
    swarm_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        pair(&args).await?;
        if !args.no_swarm {
            swarm(&args).await?;
        }
        Ok(())
    })
}

/// Writes `mib` MiB of random bytes to `path` (random: no transport may compress it).
fn random_file(path: &Path, mib: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = fastrand::Rng::with_seed(mib);
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill(&mut block);
        file.write_all(&block)?;
    }
    file.into_inner()?.sync_all()?;
    Ok(())
}

/// User and system CPU time a process has used, in seconds (`/proc/PID/stat`, in clock ticks
/// of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command in /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// VmHWM (peak resident set) of a process, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib * 1024)
}

/// Resets a process's peak RSS to its current RSS (Linux ≥ 4.0: writing 5 to clear_refs), so
/// the next VmHWM is the peak of what follows.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1048576.0 / time.as_secs_f64()
}

/// `fleetctl cp -o json FROM TO`: the transfer's own duration, its path and SHA-256.
async fn fleetctl_cp(
    fleet: &TestFleet,
    from: &str,
    to: &str,
) -> anyhow::Result<(Duration, String, String)> {
    let (code, stdout, stderr) = fleet.fleetctl(&["cp", "-o", "json", from, to]).await?;
    ensure!(code == 0, "fleetctl cp {from} {to}: {stdout}{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout)?;
    let ms = status["finished_at_ms"]
        .as_u64()
        .context("finished_at_ms")?
        - status["started_at_ms"].as_u64().context("started_at_ms")?;
    Ok((
        Duration::from_millis(ms),
        status["path"].as_str().unwrap_or_default().to_string(),
        status["sha256"].as_str().unwrap_or_default().to_string(),
    ))
}

fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output()?;
    ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed())
}

/// scp of `source` to `target` through an sshd on 127.0.0.1 (OpenSSH's default cipher).
fn scp(dir: &Path, source: &Path, target: &Path) -> anyhow::Result<Duration> {
    let server = SshServer::start(&dir.join("sshd"))?;
    timed(
        // -O: the scp protocol (the test sshd has no sftp subsystem).
        Command::new("scp")
            .args(["-q", "-O"])
            .arg("-F")
            .arg(server.ssh_config("good"))
            .arg(source)
            .arg(format!("gitserver:{}", target.display())),
    )
}

/// socat of `source` to `target` over a TCP connection on 127.0.0.1: raw bytes, no crypto.
fn socat(source: &Path, target: &Path) -> anyhow::Result<Duration> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let started = Instant::now();
    let mut receiver = Command::new("socat")
        .arg("-u")
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
        .arg(format!("CREATE:{}", target.display()))
        .stdin(Stdio::null())
        .spawn()
        .context("socat (apt-get install socat)")?;
    // The listener is up once a connection succeeds; socat's sender retries until then.
    timed(
        Command::new("socat")
            .arg("-u")
            .arg(format!("OPEN:{},rdonly", source.display()))
            .arg(format!("TCP:127.0.0.1:{port},retry=100,interval=0.01")),
    )?;
    let status = receiver.wait()?;
    ensure!(status.success(), "socat receiver failed");
    Ok(started.elapsed())
}

/// The least time a durable copy of `source` to `target` can take on this disk: `dd` writing it
/// with O_DIRECT in 4 MiB blocks and syncing it, with no network and no crypto. The transfer's
/// destination ends the same way (direct writes, fdatasync before the rename); scp and socat
/// stop at the page cache.
fn disk_floor(source: &Path, target: &Path) -> anyhow::Result<Duration> {
    timed(
        Command::new("dd")
            .arg(format!("if={}", source.display()))
            .arg(format!("of={}", target.display()))
            .args(["bs=4M", "oflag=direct", "conv=fdatasync", "status=none"]),
    )
}

/// relay-bench's sealed 64 KiB throughput on this machine, in MiB/s of frames.
fn relay_sealed_mib_per_s() -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let bench = exe.with_file_name("relay-bench");
    let output = Command::new(&bench)
        .args([
            "--no-memory",
            "--no-reconnect",
            "--mib",
            "512",
            "--repeat",
            "3",
        ])
        .args(["--messages", "1000"])
        .output()
        .with_context(|| format!("running {}", bench.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("relay, sealed"))
        .with_context(|| format!("no sealed throughput in relay-bench's output: {text}"))?;
    // `…(AES-256-GCM): 3.21 Gbit/s median (runs: …)`
    let gbit: f64 = line
        .split(" Gbit/s")
        .next()
        .and_then(|before| before.split_whitespace().last())
        .context("the Gbit/s figure")?
        .parse()?;
    Ok(gbit * 1e9 / 8.0 / 1048576.0)
}

async fn pair(args: &Args) -> anyhow::Result<()> {
    let fleet = TestFleet::start(&[
        NodeSpec::new("alpha", &[], "edit")
            .with_env("RUST_LOG", "info,remote_agents_node::transfer=debug"),
        // The destination logs where its transfer's time went, and its direct path's QUIC
        // figures (round trip, congestion window, MTU, losses), which the run prints.
        NodeSpec::new("beta", &[], "edit")
            .with_env("RUST_LOG", "info,remote_agents_node::transfer=debug"),
        NodeSpec::new("gamma", &[], "edit").with_env("REMOTE_AGENTS_DIRECT", "false"),
    ])
    .await?;
    let home = |name: &str| fleet.dir.path().join("nodes").join(name);
    let source = home("alpha").join("big.bin");
    random_file(&source, args.mib)?;
    let bytes = args.mib * 1048576;
    let pid = |name: &str| fleet.nodes[name].id().unwrap_or_default();
    let (alpha, beta, gamma) = (pid("alpha"), pid("beta"), pid("gamma"));
    println!("(a) {} MiB host→host on loopback", args.mib);

    reset_peak(alpha);
    reset_peak(beta);
    let (before_alpha, before_beta) = (peak_rss(alpha)?, peak_rss(beta)?);
    let cpu_before = (cpu_seconds(alpha)?, cpu_seconds(beta)?);
    let (direct, path, sha) = fleetctl_cp(
        &fleet,
        &format!("alpha:{}", source.display()),
        &format!("beta:{}", home("beta").join("big.bin").display()),
    )
    .await?;
    ensure!(path == "direct", "the transfer took the {path} path");
    let cpu_direct = (
        cpu_seconds(alpha)? - cpu_before.0,
        cpu_seconds(beta)? - cpu_before.1,
    );
    for name in ["alpha", "beta"] {
        for line in fleet.node_log(name).lines().filter(|l| {
            l.contains("transfer received")
                || l.contains("direct path closed")
                || l.contains("direct transfer connection ended")
        }) {
            println!("    {name}: {line}");
        }
    }
    let direct_source_mem = peak_rss(alpha)?.saturating_sub(before_alpha);
    let direct_dest_mem = peak_rss(beta)?.saturating_sub(before_beta);
    std::fs::remove_file(home("beta").join("big.bin"))?;

    let scratch = tempfile::tempdir()?;
    let scp_time = scp(scratch.path(), &source, &scratch.path().join("scp.bin"))?;
    std::fs::remove_file(scratch.path().join("scp.bin"))?;
    let socat_time = socat(&source, &scratch.path().join("socat.bin"))?;
    ensure!(
        remote_agents_node::transfer::sha256_file(&scratch.path().join("socat.bin"))? == sha,
        "socat's copy differs"
    );
    std::fs::remove_file(scratch.path().join("socat.bin"))?;
    let floor = disk_floor(&source, &scratch.path().join("dd.bin"))?;
    std::fs::remove_file(scratch.path().join("dd.bin"))?;
    println!(
        "    direct (QUIC, TLS 1.3):  {:6.2} s  {:7.1} MiB/s",
        direct.as_secs_f64(),
        mib_per_s(bytes, direct)
    );
    println!(
        "    CPU time over it: source {:.2} s, destination {:.2} s",
        cpu_direct.0, cpu_direct.1
    );
    println!(
        "    scp (OpenSSH):           {:6.2} s  {:7.1} MiB/s",
        scp_time.as_secs_f64(),
        mib_per_s(bytes, scp_time)
    );
    println!(
        "    socat (raw TCP):         {:6.2} s  {:7.1} MiB/s",
        socat_time.as_secs_f64(),
        mib_per_s(bytes, socat_time)
    );
    println!(
        "    direct time / scp time: {:.2} (target <= 0.40); direct / socat: {:.2}",
        direct.as_secs_f64() / scp_time.as_secs_f64(),
        direct.as_secs_f64() / socat_time.as_secs_f64()
    );
    println!(
        "    disk floor, dd O_DIRECT + fdatasync (no network): {:6.2} s  {:7.1} MiB/s",
        floor.as_secs_f64(),
        mib_per_s(bytes, floor)
    );
    println!(
        "    floor / scp time: {:.2} (the least any durable copy can reach here); direct / floor: {:.2}",
        floor.as_secs_f64() / scp_time.as_secs_f64(),
        direct.as_secs_f64() / floor.as_secs_f64()
    );

    println!("(b) {} MiB through the relay (direct off)", args.mib);
    reset_peak(alpha);
    reset_peak(gamma);
    let before_source = peak_rss(alpha)?;
    let before_gamma = peak_rss(gamma)?;
    // The relay runs inside this process.
    let relay = std::process::id();
    let cpu_before = (
        cpu_seconds(alpha)?,
        cpu_seconds(relay)?,
        cpu_seconds(gamma)?,
    );
    let (relayed, path, relayed_sha) = fleetctl_cp(
        &fleet,
        &format!("alpha:{}", source.display()),
        &format!("gamma:{}", home("gamma").join("big.bin").display()),
    )
    .await?;
    ensure!(path == "relay", "the transfer took the {path} path");
    ensure!(relayed_sha == sha, "the relayed copy's SHA-256 differs");
    let cpu_relayed = (
        cpu_seconds(alpha)? - cpu_before.0,
        cpu_seconds(relay)? - cpu_before.1,
        cpu_seconds(gamma)? - cpu_before.2,
    );
    let relay_source_mem = peak_rss(alpha)?.saturating_sub(before_source);
    let relay_dest_mem = peak_rss(gamma)?.saturating_sub(before_gamma);
    std::fs::remove_file(home("gamma").join("big.bin"))?;
    let sealed = relay_sealed_mib_per_s()?;
    let relay_rate = mib_per_s(bytes, relayed);
    println!(
        "    transfer via relay:      {:6.2} s  {relay_rate:7.1} MiB/s",
        relayed.as_secs_f64()
    );
    println!(
        "    CPU time over it: source {:.2} s, relay (this process) {:.2} s, destination {:.2} s",
        cpu_relayed.0, cpu_relayed.1, cpu_relayed.2
    );
    println!("    relay-bench, sealed 64 KiB frames A→relay→B: {sealed:7.1} MiB/s");
    println!(
        "    ratio transfer/sealed: {:.2} (target >= 0.50)",
        relay_rate / sealed
    );
    println!(
        "    relay transfer / disk floor: {:.2}; disk floor rate / sealed rate: {:.2} (the most the \
         ratio can reach when the file lands on this disk)",
        relayed.as_secs_f64() / floor.as_secs_f64(),
        mib_per_s(bytes, floor) / sealed
    );

    println!("(c) memory per transfer (peak RSS growth of the node process)");
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "    direct: source {:.1} MiB, destination {:.1} MiB; relay: source {:.1} MiB, \
         destination {:.1} MiB (target <= 64 MiB each)",
        mib(direct_source_mem),
        mib(direct_dest_mem),
        mib(relay_source_mem),
        mib(relay_dest_mem)
    );
    Ok(())
}

async fn swarm(args: &Args) -> anyhow::Result<()> {
    let nodes: Vec<NodeSpec> = (1..=args.swarm_nodes)
        .map(|i| NodeSpec::new(&format!("s{i}"), &["swarm"], "edit"))
        .collect();
    println!(
        "(d) {} MiB to {} nodes with fleetctl cp -t",
        args.swarm_mib, args.swarm_nodes
    );
    let started = Instant::now();
    let fleet = TestFleet::start_in(&args.swarm_dir, &nodes).await?;
    println!(
        "    {} nodes up in {:.1} s",
        args.swarm_nodes,
        started.elapsed().as_secs_f64()
    );
    let source = fleet.dir.path().join("swarm-source.bin");
    random_file(&source, args.swarm_mib)?;
    let size = args.swarm_mib * 1048576;
    let started = Instant::now();
    let (code, stdout, stderr) = fleet
        .fleetctl(&[
            "cp",
            "-o",
            "json",
            &source.display().to_string(),
            "-t",
            "swarm:swarm.bin",
        ])
        .await?;
    let elapsed = started.elapsed();
    if code != 0 {
        bail!("fleetctl cp -t failed: {stdout}{stderr}");
    }
    let result: serde_json::Value = serde_json::from_str(&stdout)?;
    let records = result["records"].as_array().context("records")?;
    let ok = records.iter().filter(|r| r["status"] == "ok").count();
    ensure!(
        ok == args.swarm_nodes,
        "{ok} of {} hosts ok",
        args.swarm_nodes
    );
    let sent = result["bytes_sent_from_here"]
        .as_u64()
        .context("bytes sent")?;
    println!(
        "    all {ok} copies verified in {:.1} s ({:.1} MiB/s delivered in all)",
        elapsed.as_secs_f64(),
        mib_per_s(size * ok as u64, elapsed)
    );
    println!(
        "    bytes the source sent: {sent} = {:.2}× the file (target <= 3); a fan-out of \
         single copies would send {}×",
        sent as f64 / size as f64,
        args.swarm_nodes
    );
    let homes: Vec<PathBuf> = (1..=args.swarm_nodes)
        .map(|i| {
            fleet
                .dir
                .path()
                .join("nodes")
                .join(format!("s{i}"))
                .join("swarm.bin")
        })
        .collect();
    for home in homes {
        let _ = std::fs::remove_file(home);
    }
    Ok(())
}
