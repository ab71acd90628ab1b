//! The direct data channel through NATs built in network namespaces this test creates (veth
//! pairs, nftables masquerade): a "public" namespace routes between the sites and runs the relay
//! with its UDP reflector; each site is a host on the public network, or a host behind a NAT
//! router (endpoint-independent: plain `masquerade`, which keeps ports; symmetric:
//! `masquerade random`). Real `direct-peer` processes run in the host namespaces; each test
//! asserts the path taken and the SHA-256 of the bytes that arrived.
//!
//! Needs root (`ip netns add`) and `nft` (test.sh installs nftables); skipped with a printed
//! reason only where namespaces cannot be created.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Every test waits at most this long for any one event of a peer.
const EVENT_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Site {
    Public,
    EndpointIndependentNat,
    SymmetricNat,
}

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// The namespaces and processes of one test; dropping it (also while panicking) kills the
/// processes and deletes the namespaces, which deletes their veths.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        for namespace in &self.namespaces {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Lab {
    /// A lab, or `None` (after printing why) when this machine cannot create namespaces.
    fn new() -> anyhow::Result<Option<Lab>> {
        let prefix = format!(
            "rad{}x{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir()?,
        };
        if let Err(error) = lab.namespace("pub") {
            eprintln!("skipped: cannot create network namespaces here ({error})");
            return Ok(None);
        }
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
        {
            bail!("nft not found: install the nftables package (test.sh does)");
        }
        Ok(Some(lab))
    }

    fn name(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    fn namespace(&mut self, short: &str) -> anyhow::Result<String> {
        let name = self.name(short);
        run("ip", &["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        self.ip(&name, &["link", "set", "lo", "up"])?;
        Ok(name)
    }

    fn ip(&self, namespace: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", namespace];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn exec(&self, namespace: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", namespace, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn nft(&self, namespace: &str, rule: &str) -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", namespace, "nft"];
        all.extend(rule.split(' '));
        run("ip", &all)
    }

    /// A veth pair between two namespaces, addressed and up.
    fn link(
        &self,
        (a, a_if, a_addr): (&str, &str, &str),
        (b, b_if, b_addr): (&str, &str, &str),
    ) -> anyhow::Result<()> {
        run(
            "ip",
            &[
                "link", "add", "name", a_if, "netns", a, "type", "veth", "peer", "name", b_if,
                "netns", b,
            ],
        )?;
        self.ip(a, &["addr", "add", a_addr, "dev", a_if])?;
        self.ip(b, &["addr", "add", b_addr, "dev", b_if])?;
        self.ip(a, &["link", "set", a_if, "up"])?;
        self.ip(b, &["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// The public namespace: the relay's address on its loopback, forwarding on, and an empty
    /// filter chain the tests add UDP drop rules to.
    fn public(&self) -> anyhow::Result<String> {
        let public = self.name("pub");
        self.ip(&public, &["addr", "add", "10.99.0.1/32", "dev", "lo"])?;
        self.exec(&public, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        self.nft(&public, "add table inet lab")?;
        self.nft(
            &public,
            "add chain inet lab forward { type filter hook forward priority 0 ; }",
        )?;
        Ok(public)
    }

    /// Site `index` (1 or 2): returns the namespace its host runs in. Public: the host sits on
    /// 10.<i>.0.2. Behind a NAT: the router's outside is 10.<i>.0.2, the host 192.168.<i>.2.
    fn site(&mut self, index: u8, site: Site) -> anyhow::Result<String> {
        let public = self.name("pub");
        let outside = format!("10.{index}.0.2/24");
        let gateway = format!("10.{index}.0.1");
        let public_side = format!("{gateway}/24");
        let public_if = format!("site{index}");
        let host = self.namespace(&format!("h{index}"))?;
        match site {
            Site::Public => {
                self.link(
                    (&host, "uplink", &outside),
                    (&public, &public_if, &public_side),
                )?;
                self.ip(&host, &["route", "add", "default", "via", &gateway])?;
            }
            Site::EndpointIndependentNat | Site::SymmetricNat => {
                let router = self.namespace(&format!("r{index}"))?;
                self.link(
                    (&router, "wan", &outside),
                    (&public, &public_if, &public_side),
                )?;
                let inside_gateway = format!("192.168.{index}.1");
                self.link(
                    (&host, "uplink", &format!("192.168.{index}.2/24")),
                    (&router, "lan", &format!("{inside_gateway}/24")),
                )?;
                self.ip(&router, &["route", "add", "default", "via", &gateway])?;
                self.ip(&host, &["route", "add", "default", "via", &inside_gateway])?;
                self.exec(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
                self.nft(&router, "add table ip nat")?;
                self.nft(
                    &router,
                    "add chain ip nat post { type nat hook postrouting priority 100 ; }",
                )?;
                // Plain masquerade keeps the source port when it can: the same outside
                // address for every destination (endpoint-independent mapping). `random`
                // picks a new port per destination (symmetric NAT).
                let rule = match site {
                    Site::SymmetricNat => "add rule ip nat post oifname wan masquerade random",
                    _ => "add rule ip nat post oifname wan masquerade",
                };
                self.nft(&router, rule)?;
                // Like any home router, drop unsolicited datagrams to the router itself. Without
                // this, a peer's probe arriving before our first datagram to it leaves a
                // conntrack entry for the router's own input, and our outgoing mapping then
                // clashes with it and gets another port (the punch would miss).
                self.nft(&router, "add table inet firewall")?;
                self.nft(
                    &router,
                    "add chain inet firewall input { type filter hook input priority 0 ; }",
                )?;
                self.nft(
                    &router,
                    "add rule inet firewall input iifname wan ct state new drop",
                )?;
            }
        }
        Ok(host)
    }

    /// Starts the relay with its UDP reflector in the public namespace; returns the relay URL
    /// and the reflector address from its readiness lines.
    async fn relay(&mut self) -> anyhow::Result<(String, String)> {
        let public = self.name("pub");
        let relay = remote_agents_tests::relay::relay_binary()?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &public])
            .arg(relay)
            .args(["--bind", "10.99.0.1:0", "--udp-reflector", "10.99.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start the relay")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        self.children.push(child);
        let mut reflector = None;
        loop {
            let line = tokio::time::timeout(EVENT_DEADLINE, lines.next_line())
                .await
                .context("the relay did not get ready")??
                .context("the relay exited")?;
            if let Some(address) = line.strip_prefix("udp reflector on ") {
                reflector = Some(address.to_string());
            }
            if let Some(address) = line.strip_prefix("listening on ") {
                let reflector = reflector.context("no reflector line before readiness")?;
                return Ok((format!("ws://{address}"), reflector));
            }
        }
    }

    /// Starts a `direct-peer` in `namespace`.
    fn peer(&mut self, namespace: &str, args: &[&str]) -> anyhow::Result<Peer> {
        let data_dir = self.dir.path().join(namespace);
        std::fs::create_dir_all(&data_dir)?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(peer_binary()?)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start direct-peer")?;
        let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let stdin = child.stdin.take().context("stdin")?;
        self.children.push(child);
        Ok(Peer { lines, stdin })
    }
}

/// `direct-peer`, built next to this test binary (cargo builds a package's binaries for its
/// integration tests).
fn peer_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .context("test binary has no target dir")?;
    Ok(profile.join("direct-peer"))
}

struct Peer {
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
}

impl Peer {
    /// The next event line named `name` (earlier other events are skipped).
    async fn event(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let line = tokio::time::timeout(EVENT_DEADLINE, self.lines.next_line())
                .await
                .with_context(|| format!("no {name} event in time"))??
                .with_context(|| format!("the peer exited before {name}"))?;
            let value: Value = serde_json::from_str(&line)
                .with_context(|| format!("not an event line: {line}"))?;
            if value["event"] == name {
                return Ok(value);
            }
            assert_ne!(value["event"], "done", "{name} never came: {value}");
        }
    }
}

struct Outcome {
    path: Value,
    done: Value,
    accepted: Option<Value>,
}

/// Runs a receiver at site 2 and a sender at site 1 and moves `bytes` from the sender.
async fn transfer(
    first: Site,
    second: Site,
    block_udp: bool,
    bytes: usize,
) -> anyhow::Result<Option<Outcome>> {
    let Some(mut lab) = Lab::new()? else {
        return Ok(None);
    };
    let public = lab.public()?;
    let sender_namespace = lab.site(1, first)?;
    let receiver_namespace = lab.site(2, second)?;
    if block_udp {
        lab.nft(&public, "add rule inet lab forward meta l4proto udp drop")?;
    }
    let (relay, reflector) = lab.relay().await?;
    let room = lab.prefix.clone();
    let common = [
        "--relay",
        &relay,
        "--room",
        &room,
        "--reflector",
        &reflector,
    ];
    let mut receiver = lab.peer(
        &receiver_namespace,
        &[&common[..], &["--role", "receive"]].concat(),
    )?;
    receiver.event("ready").await?;
    let bytes = bytes.to_string();
    let mut sender = lab.peer(
        &sender_namespace,
        &[&common[..], &["--role", "send", "--bytes", &bytes]].concat(),
    )?;
    let path = sender.event("path").await?;
    let accepted = if path["path"] == "direct" {
        Some(receiver.event("accepted").await?)
    } else {
        None
    };
    let done = sender.event("done").await?;
    eprintln!("{first:?} → {second:?}, UDP blocked: {block_udp}: {path} {done}");
    Ok(Some(Outcome {
        path,
        done,
        accepted,
    }))
}

const MIB: usize = 1 << 20;

fn assert_same_file(outcome: &Outcome) {
    assert_eq!(
        outcome.done["sha256"], outcome.done["expected_sha256"],
        "the receiver holds other bytes: {}",
        outcome.done
    );
}

fn assert_direct(outcome: &Outcome, remote_ip: &str, accepted_ip: &str, bytes: usize) {
    assert_eq!(outcome.path["path"], "direct", "{}", outcome.path);
    let remote = outcome.path["remote"].as_str().unwrap();
    assert!(remote.starts_with(&format!("{remote_ip}:")), "{remote}");
    let accepted = outcome.accepted.as_ref().unwrap()["remote"]
        .as_str()
        .unwrap();
    assert!(
        accepted.starts_with(&format!("{accepted_ip}:")),
        "{accepted}"
    );
    assert_eq!(outcome.done["direct_bytes"], bytes, "{}", outcome.done);
    assert_same_file(outcome);
}

fn assert_relay(outcome: &Outcome) {
    assert_eq!(outcome.path["path"], "relay", "{}", outcome.path);
    // Punching gives up within its window (4 s) plus the offer exchange, not minutes later.
    assert!(
        outcome.path["connect_ms"].as_u64().unwrap() < 10_000,
        "{}",
        outcome.path
    );
    assert_eq!(outcome.done["direct_bytes"], 0, "{}", outcome.done);
    assert_same_file(outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_when_both_hosts_are_reachable() -> anyhow::Result<()> {
    let bytes = 16 * MIB;
    if let Some(outcome) = transfer(Site::Public, Site::Public, false, bytes).await? {
        assert_direct(&outcome, "10.2.0.2", "10.1.0.2", bytes);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punched_when_one_host_is_behind_nat() -> anyhow::Result<()> {
    // The receiver (the QUIC server) is the one behind the NAT: the sender reaches it at the
    // NAT's outside address, which only punching opens.
    let bytes = 16 * MIB;
    if let Some(outcome) =
        transfer(Site::Public, Site::EndpointIndependentNat, false, bytes).await?
    {
        assert_direct(&outcome, "10.2.0.2", "10.1.0.2", bytes);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punched_when_both_hosts_are_behind_endpoint_independent_nat() -> anyhow::Result<()> {
    let bytes = 16 * MIB;
    if let Some(outcome) = transfer(
        Site::EndpointIndependentNat,
        Site::EndpointIndependentNat,
        false,
        bytes,
    )
    .await?
    {
        assert_direct(&outcome, "10.2.0.2", "10.1.0.2", bytes);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_when_both_hosts_are_behind_symmetric_nat() -> anyhow::Result<()> {
    let bytes = 4 * MIB;
    if let Some(outcome) = transfer(Site::SymmetricNat, Site::SymmetricNat, false, bytes).await? {
        assert_relay(&outcome);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_when_udp_is_blocked() -> anyhow::Result<()> {
    let bytes = 4 * MIB;
    if let Some(outcome) = transfer(Site::Public, Site::Public, true, bytes).await? {
        assert_relay(&outcome);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_cut_mid_transfer_falls_back_to_the_relay_with_the_same_file() -> anyhow::Result<()> {
    let Some(mut lab) = Lab::new()? else {
        return Ok(());
    };
    let public = lab.public()?;
    let sender_namespace = lab.site(1, Site::Public)?;
    let receiver_namespace = lab.site(2, Site::EndpointIndependentNat)?;
    let (relay, reflector) = lab.relay().await?;
    let room = lab.prefix.clone();
    let common = [
        "--relay",
        &relay,
        "--room",
        &room,
        "--reflector",
        &reflector,
    ];
    let mut receiver = lab.peer(
        &receiver_namespace,
        &[&common[..], &["--role", "receive"]].concat(),
    )?;
    receiver.event("ready").await?;
    let bytes = 48 * MIB;
    let (total, pause) = (bytes.to_string(), (4 * MIB).to_string());
    let mut sender = lab.peer(
        &sender_namespace,
        &[
            &common[..],
            &["--role", "send", "--bytes", &total, "--pause-after", &pause],
        ]
        .concat(),
    )?;
    let path = sender.event("path").await?;
    assert_eq!(path["path"], "direct", "{path}");
    sender.event("paused").await?;
    // The cut: every UDP datagram between the sites dropped while the stream is open.
    lab.nft(&public, "add rule inet lab forward meta l4proto udp drop")?;
    sender.stdin.write_all(b"go\n").await?;
    let failed = sender.event("direct_failed").await?;
    let done = sender.event("done").await?;
    eprintln!("cut: {path} {failed} {done}");
    // The error surfaces within the idle timeout (5 s) and some slack, not after minutes.
    let after = failed["error_after_resume_ms"].as_u64().unwrap();
    assert!(
        after < 10_000,
        "the cut surfaced after {after} ms: {failed}"
    );
    // It fell back from where the receiver was, not from the start, and the file is whole.
    let fell_back_at = failed["fell_back_at"].as_u64().unwrap() as usize;
    assert!(
        fell_back_at > 0 && fell_back_at < bytes,
        "fell back at {fell_back_at}: {failed}"
    );
    assert_eq!(done["sha256"], done["expected_sha256"], "{done}");
    Ok(())
}
