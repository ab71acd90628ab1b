//! `fleetctl cp`: a file from one host to another (`HOST:PATH HOST:PATH`), from this machine to
//! a host (`LOCAL HOST:PATH`) or from a host to this machine (`HOST:PATH LOCAL`). fleetctl
//! coordinates the transfer itself (`node::transfer::coordinate`): the source host opens the
//! file for the destination and the destination pulls and verifies it, each authorized there
//! against fleetctl's own identity and operator key. On this machine's side fleetctl is the
//! source (it serves the pulls of the destination) or the destination (it pulls, verifies and
//! renames into place) itself. A progress line goes to stderr when it is a terminal.
//!
//! `fleetctl cp FILE -t SELECTOR:PATH` (or `HOST:PATH -t SELECTOR:PATH`) sends one file to every
//! host the selector picks, the hosts forwarding it to each other as it arrives
//! (`node::fleet::send`), with per-host records folded and kept like any fan-out's.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use remote_agents_node::client::Client;
use remote_agents_node::identity::Identity;
use remote_agents_node::net::Net;
use remote_agents_node::transfer::coordinate::{self, HostProgress, Hosts, Job};
use remote_agents_node::transfer::path::{self, PullHandler};
use remote_agents_node::transfer::{
    BytePath, Destination, ReceivePlan, Source, Transfers, receive,
};
use remote_agents_ops::operation::{Operation, TransferReceive, TransferSource};
use remote_agents_ops::{
    Caller, Outcome, TransferReceiveArgs, TransferReceiveResult, TransferSourceArgs,
    TransferSourceResult, TransferState, TransferStatus,
};
use tokio_util::sync::CancellationToken;

use super::EXIT_OK;

/// The future a `Hosts` step returns (`futures_util::future::BoxFuture`).
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
use super::connect::{ConnectFlags, resolve_settings};
use crate::output::Output;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// HOST:PATH, or a local path.
    pub from: String,
    /// HOST:PATH, or a local path (or give -t instead).
    #[arg(required_unless_present = "target", conflicts_with = "target")]
    pub to: Option<String>,
    /// SELECTOR:PATH: send to every host the selector picks (`all`, a tag, `name:GLOB`,
    /// `os:linux`, ...), the hosts passing it on to each other. PATH is absolute, or contains no
    /// colon.
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// With -t: the fleet's spec (files or folders), for the hosts it declares; default the
    /// spec applied to the fleet.
    #[arg(long = "spec", short = 'f', requires = "target")]
    pub spec: Vec<std::path::PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    /// Copy inside a closed change window (a `Window` of the applied spec), for this reason:
    /// the hosts record it in their audit logs.
    #[arg(long, value_name = "REASON")]
    pub override_window: Option<String>,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// One end of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Local(std::path::PathBuf),
    Host {
        host: String,
        path: String,
    },
    /// `-t SELECTOR:PATH`: every host the selector picks.
    Swarm {
        selector: String,
        path: String,
    },
}

/// `SELECTOR:PATH`: selectors contain colons themselves (`name:web-*`), so an absolute path
/// starts at the first `:/`, and otherwise the path is what follows the last colon.
fn split_target(text: &str) -> anyhow::Result<(String, String)> {
    let (selector, path) = match text.find(":/") {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => text
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("-t {text:?}: expected SELECTOR:PATH"))?,
    };
    anyhow::ensure!(
        !selector.is_empty() && !path.is_empty(),
        "-t {text:?}: expected SELECTOR:PATH, e.g. `web:/srv/app.tar`"
    );
    Ok((selector.to_string(), path.to_string()))
}

/// A `cp -t` run: one file to every host the selector picks.
struct SwarmCopy<'a> {
    from_host: String,
    from_path: String,
    selector: String,
    to_path: String,
    spec: &'a [std::path::PathBuf],
    settings: &'a remote_agents_node::config::Settings,
    psk: remote_agents_protocol::psk::Psk,
    output: Output,
}

impl SwarmCopy<'_> {
    async fn run(self, hosts: &FleetctlHosts) -> anyhow::Result<u8> {
        use remote_agents_node::fleet::{connection, fold, inventory::Inventory, jobs, remote};
        let selector = remote_agents_spec::Selector::parse(&self.selector)
            .map_err(|e| anyhow::anyhow!("-t {:?}: {e}", self.selector))?;
        let dir = connection::fleetctl_dir(self.settings)?;
        let store = remote_agents_node::journal::Store::open(&dir)?;
        // Without -f the applied spec is the inventory: a declared host that is offline is
        // reported `unreachable` rather than missed.
        let inventory = match connection::declared_inventory(self.spec)? {
            Some(inventory) => Some(inventory),
            None => {
                let connection = connection::Connection::of_node(
                    hosts.net.clone(),
                    hosts.agent_id.clone(),
                    self.psk.clone(),
                );
                remote_agents_node::sync::publish::applied_bundle(&connection)
                    .await
                    .map(|bundle| Inventory::of_bundle(&bundle))
            }
        };
        let targets = remote::resolve_targets(
            &selector,
            &hosts.net.peers(),
            inventory.as_ref().map_or(&[], |i| i.hosts.as_slice()),
        );
        anyhow::ensure!(
            !targets.is_empty(),
            "no host matched -t {:?} ({} connected)",
            self.selector,
            hosts.net.peers().len()
        );
        let count = targets.len();
        let started_ms = remote_agents_node::journal::now_ms();
        let received = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let progress: remote_agents_node::fleet::send::SwarmProgress = {
            let received = received.clone();
            Arc::new(move |host: &str, bytes| {
                received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(host.to_string(), bytes);
            })
        };
        let job = remote_agents_node::fleet::send::SwarmJob {
            from_host: self.from_host,
            from_path: self.from_path.clone(),
            targets,
            to_path: self.to_path.clone(),
        };
        let cancel = CancellationToken::new();
        let interrupted = cancel.clone();
        let swarm = remote_agents_node::fleet::send::run(hosts, job, progress, cancel);
        tokio::pin!(swarm);
        let bar = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut report = loop {
            tokio::select! {
                report = &mut swarm => break report,
                _ = tick.tick(), if bar => {
                    let total: u64 = received.lock().unwrap_or_else(|e| e.into_inner()).values().sum();
                    eprint!("\r{count} hosts  {:.1} MiB received in all  {:.1} MiB sent from here",
                        total as f64 / 1048576.0,
                        hosts.transfers.served_bytes() as f64 / 1048576.0);
                }
                _ = tokio::signal::ctrl_c() => interrupted.cancel(),
            }
        };
        if bar {
            eprint!("\r{}\r", " ".repeat(78));
        }
        if let Some(inventory) = &inventory {
            inventory.mark_undeclared(&mut report.records);
        }
        let job = jobs::Job {
            op_id: jobs::new_op_id(),
            summary: format!("cp {} -> {}", self.from_path, self.to_path),
            target: self.selector,
            started_ms,
            finished_ms: remote_agents_node::journal::now_ms(),
            report,
            trigger: None,
            outcome: None,
        };
        jobs::save(&store, &job)?;
        let sent = hosts.transfers.served_bytes();
        match self.output {
            Output::Json | Output::Yaml => {
                let data = serde_json::json!({
                    "op_id": job.op_id,
                    "records": job.report.records,
                    "bytes_sent_from_here": sent,
                });
                print!("{}", self.output.data(&data)?.unwrap_or_default());
            }
            Output::Text => {
                print!("{}", fold::render_text(&fold::fold(&job.report.records)));
                if sent > 0 {
                    println!("sent from here: {sent} bytes");
                }
                println!("op id: {}", job.op_id);
            }
        }
        Ok(if job.report.all_ok() { EXIT_OK } else { 1 })
    }
}

/// `HOST:PATH` names a host when a colon comes before any slash (so `./a:b` and `/x:y` are
/// local paths, as with scp).
fn parse_end(text: &str) -> End {
    match text.split_once(':') {
        Some((host, path)) if !host.is_empty() && !host.contains('/') => End::Host {
            host: host.to_string(),
            path: path.to_string(),
        },
        _ => End::Local(text.into()),
    }
}

pub async fn run(args: CpArgs) -> anyhow::Result<u8> {
    let from = parse_end(&args.from);
    let to = match (&args.to, &args.target) {
        (Some(to), _) => parse_end(to),
        (None, Some(target)) => {
            let (selector, path) = split_target(target)?;
            End::Swarm { selector, path }
        }
        (None, None) => anyhow::bail!("name a destination: HOST:PATH, a local path, or -t"),
    };
    if let (End::Local(_), End::Local(_)) = (&from, &to) {
        anyhow::bail!(
            "both {} and {} are local paths: name a HOST:PATH",
            args.from,
            args.to.as_deref().unwrap_or_default()
        );
    }
    if let End::Swarm { .. } = from {
        anyhow::bail!("-t names destinations; the source is HOST:PATH or a local path");
    }
    let settings = resolve_settings(&args.connect)?;
    let dir = remote_agents_node::fleet::connection::fleetctl_dir(&settings)?;
    let identity = Identity::load_or_create(&dir)?;
    let agent_id = identity.agent_id();
    let operator = remote_agents_node::desired::operator::configured_key(&settings)?
        .map(|key| key.bind(&identity.public_key()));
    let announcement = remote_agents_protocol::message::Announcement {
        name: format!("fleetctl-{}", &agent_id[..8.min(agent_id.len())]),
        tags: Vec::new(),
        facts: Default::default(),
        mode: "disabled".into(),
        accepts_commands: false,
        operator,
    };
    let config = remote_agents_node::node::net_config(&settings, announcement)?.context(
        "no relay configured: pass --relay, --room and --token (or set REMOTE_AGENTS_RELAY, \
         REMOTE_AGENTS_ROOM, REMOTE_AGENTS_TOKEN)",
    )?;
    let psk = config.psk.clone();
    let transfers = Transfers::new();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    // fleetctl serves pulls only: the destination of `cp LOCAL HOST:PATH` pulls from it.
    let handler = Arc::new(PullHandler {
        transfers: transfers.clone(),
    });
    let net = Net::start(&identity, config, Some(handler), shutdown.clone());
    let direct = settings.direct.value;
    if direct {
        // The destination of `cp LOCAL HOST:PATH` tries a direct path to fleetctl first.
        remote_agents_node::runtime::spawn(remote_agents_node::transfer::direct::serve(
            net.clone(),
            transfers.clone(),
            shutdown,
        ));
    }
    let timeout = args.connect.connect_timeout;
    net.wait_settled(timeout).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the relay within {}: {e}",
            humantime::format_duration(timeout)
        )
    })?;
    let (from_host, from_path) = host_and_path(&from, &agent_id)?;
    if let End::Swarm { selector, path } = to {
        let hosts = FleetctlHosts {
            client: Client::new(
                net.clone(),
                Caller::Fleet {
                    caller: agent_id.clone(),
                },
            )
            .window_override(args.override_window.clone()),
            net,
            agent_id,
            transfers,
            direct,
        };
        let swarm = SwarmCopy {
            from_host,
            from_path,
            selector,
            to_path: path,
            spec: &args.spec,
            settings: &settings,
            psk,
            output: args.output,
        };
        return swarm.run(&hosts).await;
    }
    let (to_host, to_path) = host_and_path(&to, &agent_id)?;
    let job = Job {
        transfer_id: remote_agents_node::client::new_request_id(),
        from_host,
        from_path,
        to_host,
        to_path,
    };
    transfers.put_record(coordinate::started(&job));
    let hosts = FleetctlHosts {
        client: Client::new(
            net.clone(),
            Caller::Fleet {
                caller: agent_id.clone(),
            },
        )
        .window_override(args.override_window.clone()),
        net,
        agent_id,
        transfers: transfers.clone(),
        direct,
    };
    let cancel = CancellationToken::new();
    let interrupted = cancel.clone();
    let transfer = coordinate::run(transfers.clone(), &hosts, job.clone(), cancel);
    tokio::pin!(transfer);
    let bar = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let status = loop {
        tokio::select! {
            status = &mut transfer => break status,
            _ = tick.tick(), if bar => {
                if let Some(status) = transfers.record(&job.transfer_id) {
                    eprint!("\r{}", progress_line(&status));
                }
            }
            _ = tokio::signal::ctrl_c() => interrupted.cancel(),
        }
    };
    if bar {
        eprint!("\r{}\r", " ".repeat(78));
    }
    match args.output.data(&status)? {
        Some(text) => println!("{text}"),
        None if status.state == TransferState::Done => println!(
            "{} -> {}: {} bytes via {}, sha256 {}",
            args.from,
            args.to.as_deref().unwrap_or_default(),
            status.bytes_done,
            status
                .path
                .map(|p| coordinate::progress_message(p).replace("via ", ""))
                .unwrap_or_default(),
            status.sha256.as_deref().unwrap_or("-"),
        ),
        None => {}
    }
    if status.state != TransferState::Done {
        anyhow::bail!(
            "{} -> {}: {}",
            args.from,
            args.to.as_deref().unwrap_or_default(),
            status
                .error
                .as_deref()
                .unwrap_or("the transfer did not finish")
        );
    }
    Ok(EXIT_OK)
}

/// The host (fleetctl's own agent id for a local path) and path of one end.
fn host_and_path(end: &End, own: &str) -> anyhow::Result<(String, String)> {
    Ok(match end {
        End::Host { host, path } => (host.clone(), path.clone()),
        End::Swarm { selector, .. } => anyhow::bail!("-t {selector}: not a single host"),
        End::Local(path) => {
            let absolute = std::path::absolute(path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            (own.to_string(), absolute.display().to_string())
        }
    })
}

/// One line of progress: percent, bytes, rate and path.
fn progress_line(status: &TransferStatus) -> String {
    let size = status.size.unwrap_or(0);
    let percent = if size == 0 {
        0.0
    } else {
        status.bytes_done as f64 * 100.0 / size as f64
    };
    format!(
        "{percent:5.1}%  {:.1} of {:.1} MiB  {:.1} MiB/s  {}",
        status.bytes_done as f64 / 1048576.0,
        size as f64 / 1048576.0,
        status.rate_bytes_per_sec / 1048576.0,
        status
            .path
            .map(coordinate::progress_message)
            .unwrap_or_default()
    )
}

/// The hosts as fleetctl reaches them: peers through the relay, and this machine itself.
struct FleetctlHosts {
    client: Client,
    net: Net,
    agent_id: String,
    transfers: Arc<Transfers>,
    /// Whether `cp HOST:PATH LOCAL` tries a direct path before the relay (the `direct` setting).
    direct: bool,
}

impl FleetctlHosts {
    fn peer(&self, agent_id: &str) -> Result<remote_agents_protocol::frame::PeerId, String> {
        self.net
            .peers()
            .into_iter()
            .find(|p| p.agent_id == agent_id)
            .map(|p| p.peer_id)
            .ok_or_else(|| format!("host {agent_id} is not connected"))
    }

    async fn call<O: Operation>(
        &self,
        host: &str,
        args: O::Args,
        on_chunk: Option<remote_agents_node::client::ChunkSink<'_>>,
    ) -> Result<O::Output, String> {
        let peer = self.peer(host)?;
        let envelope = self.client.envelope(
            remote_agents_node::client::new_request_id(),
            O::request(args),
        );
        let outcome = self
            .client
            .send(
                peer,
                &envelope,
                remote_agents_node::transfer::RECEIVE_DEADLINE,
                on_chunk,
            )
            .await
            .map_err(|e| e.to_string())?;
        match outcome {
            Outcome::Ok { result } => serde_json::from_value(result)
                .map_err(|e| format!("malformed answer to {}: {e}", O::NAME)),
            Outcome::Refused { reason } => Err(format!("refused: {reason}")),
            Outcome::Failed { error } => Err(error),
            Outcome::OutcomeUnknown { reason } => Err(format!("outcome unknown: {reason}")),
        }
    }

    /// The destination is this machine: pull into the local path.
    async fn receive_here(
        &self,
        args: TransferReceiveArgs,
        progress: HostProgress,
        cancel: CancellationToken,
    ) -> Result<TransferReceiveResult, String> {
        let destination =
            Destination::local(std::path::Path::new(&args.path)).map_err(|e| e.to_string())?;
        let paths: Vec<Arc<dyn BytePath>> = if args.from_agent_id == self.agent_id {
            vec![path::local(self.transfers.clone(), self.agent_id.clone())]
        } else {
            let peer = self.peer(&args.from_agent_id)?;
            let mut paths = Vec::new();
            if self.direct {
                paths.push(remote_agents_node::transfer::direct::path(
                    self.net.clone(),
                    peer,
                ));
            }
            paths.push(path::relay(self.net.clone(), peer));
            paths
        };
        let plan = ReceivePlan {
            from_agent_id: args.from_agent_id,
            from_path: args.from_path,
            ticket: args.ticket,
            size: args.size,
            modified_ms: args.modified_ms,
            origin: args.origin,
            forward: None,
        };
        let report: remote_agents_node::transfer::receive::Progress =
            Arc::new(move |bytes, path| progress(bytes, Some(path)));
        let received = receive(destination, plan, paths, report, cancel)
            .await
            .map_err(|e| e.to_string())?;
        Ok(TransferReceiveResult {
            path: args.path,
            bytes: received.bytes,
            sha256: received.sha256,
            transfer_path: received.path,
            resumed_from: received.resumed_from,
        })
    }
}

impl Hosts for FleetctlHosts {
    fn resolve(&self, host: &str) -> Result<String, String> {
        if host == self.agent_id {
            return Ok(host.to_string());
        }
        let peers = self.net.peers();
        if let Some(peer) = peers.iter().find(|p| p.agent_id == host) {
            return Ok(peer.agent_id.clone());
        }
        match peers
            .iter()
            .filter(|p| p.announcement.name == host)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [peer] => Ok(peer.agent_id.clone()),
            [] => Err(format!("no connected host has agent id or name `{host}`")),
            _ => Err(format!(
                "several hosts are named `{host}`; use its agent id"
            )),
        }
    }

    fn source(
        &self,
        host: &str,
        args: TransferSourceArgs,
    ) -> BoxFuture<'_, Result<TransferSourceResult, String>> {
        let host = host.to_string();
        Box::pin(async move {
            if host != self.agent_id {
                return self.call::<TransferSource>(&host, args, None).await;
            }
            // This machine's own file, read with the user's own permissions.
            let path = std::path::PathBuf::from(&args.path);
            let source = Source::open_local(&path, &args.to_agent_id)?;
            let result = TransferSourceResult {
                agent_id: self.agent_id.clone(),
                path: source.path().to_string(),
                size: source.size(),
                modified_ms: source.modified_ms(),
                ticket: String::new(),
            };
            let ticket = self.transfers.add_source(source)?;
            Ok(TransferSourceResult { ticket, ..result })
        })
    }

    fn receive(
        &self,
        host: &str,
        args: TransferReceiveArgs,
        progress: HostProgress,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<TransferReceiveResult, String>> {
        let host = host.to_string();
        Box::pin(async move {
            if host == self.agent_id {
                return self.receive_here(args, progress, cancel).await;
            }
            // The destination's progress reports arrive as chunks of the call (JSON with
            // `progress` in bytes and `message` naming the path).
            let on_chunk = move |chunk: &[u8]| {
                if let Ok(report) = serde_json::from_slice::<serde_json::Value>(chunk)
                    && let Some(bytes) = report["progress"].as_f64()
                {
                    let path = report["message"]
                        .as_str()
                        .and_then(coordinate::progress_path);
                    progress(bytes as u64, path);
                }
            };
            tokio::select! {
                answer = self.call::<TransferReceive>(&host, args, Some(&on_chunk)) => answer,
                // Dropping the call cancels it on the destination, which stops pulling.
                _ = cancel.cancelled() => Err("cancelled".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colon_before_any_slash_names_a_host() {
        assert_eq!(
            parse_end("alpha:/srv/a.bin"),
            End::Host {
                host: "alpha".into(),
                path: "/srv/a.bin".into()
            }
        );
        assert_eq!(
            parse_end("alpha:rel/a"),
            End::Host {
                host: "alpha".into(),
                path: "rel/a".into()
            }
        );
        assert_eq!(parse_end("/tmp/a:b"), End::Local("/tmp/a:b".into()));
        assert_eq!(parse_end("./a:b"), End::Local("./a:b".into()));
        assert_eq!(parse_end("plain.bin"), End::Local("plain.bin".into()));
        assert_eq!(parse_end(":x"), End::Local(":x".into()));
    }
}
