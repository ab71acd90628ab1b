//! `remote-agents demo`: a whole fleet on loopback in one process, with no account and no
//! internet. It validates the example fleet spec, starts an embedded relay and one node per host
//! the spec declares (with nothing but a name), joins as a send-only peer like fleetctl, applies
//! the spec as a signed generation (the nodes take their tags, modes and schedules from it),
//! shows `fleetctl status`, fans out a command, a write and a read, and tears everything down.
//!
//! Everything is real: WebSocket relay, Noise sessions, the policy gate, processes, files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use remote_agents_spec::{HostFacts, Selector};
use tokio_util::sync::CancellationToken;

use remote_agents_node::config::{NodeFlags, Settings};
use remote_agents_node::fleet::connection::{Connection, FanoutPlan, fan_out};
use remote_agents_node::fleet::fold::{fold, render_text};
use remote_agents_node::fleet::{FanoutOptions, jobs};
use remote_agents_node::node::Node;
use remote_agents_ops::{Encoding, ExecArgs, ReadFileArgs, Request, WriteFileArgs};

/// The example fleet compiled into the binary, so the demo runs from any folder.
const EXAMPLE_FLEET: &[(&str, &str)] = &[
    (
        "examples/fleet/fleet.yaml",
        include_str!("../../examples/fleet/fleet.yaml"),
    ),
    (
        "examples/fleet/schedules.yaml",
        include_str!("../../examples/fleet/schedules.yaml"),
    ),
    (
        "examples/fleet/jobs.yaml",
        include_str!("../../examples/fleet/jobs.yaml"),
    ),
];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// A fleet spec folder to use instead of the built-in example fleet.
    #[arg(long, short = 'f')]
    pub spec: Option<PathBuf>,
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// Runs the demo and returns when everything has been torn down.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let files: Vec<(String, String)> = match &args.spec {
        Some(path) => remote_agents_node::sources::read_paths(std::slice::from_ref(path))?,
        None => EXAMPLE_FLEET
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect(),
    };
    section("1. validate the fleet spec");
    let (model, diagnostics) = remote_agents_spec::load(&files);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    anyhow::ensure!(
        !remote_agents_spec::has_errors(&diagnostics),
        "the fleet spec has errors"
    );
    println!(
        "{} files, {} documents, {} warnings",
        files.len(),
        model.documents.len(),
        diagnostics.len()
    );
    let (_, fleet) = model.fleet().context("the spec declares no Fleet")?;
    let hosts: Vec<String> = fleet
        .spec
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .filter(|name| !name.contains(['*', '?', '[', '{']))
        .collect();

    section("2. start a relay and one node per declared host (loopback only)");
    let work = tempfile::Builder::new()
        .prefix("remote-agents-demo-")
        .tempdir()?;
    let shutdown = CancellationToken::new();
    let _stop_everything = shutdown.clone().drop_guard();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_url = format!("ws://{}", listener.local_addr()?);
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stopped = async move { shutdown.cancelled().await };
            if let Err(error) =
                remote_agents_relay::serve(listener, Default::default(), stopped).await
            {
                tracing::error!(%error, "demo relay stopped");
            }
        });
    }
    println!("relay listening on {relay_url}");
    println!("each node starts with only its name: mode plan, no tags, until the spec arrives");
    // A fresh random key for this run's room: the demo needs no token and leaves none behind.
    let key: [u8; 32] = rand_key()?;
    let key_hex = hex::encode(key);
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    for host in &hosts {
        let flags = NodeFlags {
            relay: Some(relay_url.clone()),
            room: Some("demo".into()),
            name: Some(host.clone()),
            data_dir: Some(work.path().join(host)),
            encryption_key: Some(key_hex.clone()),
            ..NodeFlags::default()
        };
        let settings = Settings::resolve(&flags, &BTreeMap::new())?;
        nodes.push(remote_agents_node::service::start(
            settings,
            shutdown.clone(),
        )?);
    }

    section("3. join as a send-only peer (like fleetctl) and wait for every node");
    let operator_flags = NodeFlags {
        relay: Some(relay_url.clone()),
        room: Some("demo".into()),
        data_dir: Some(work.path().join("operator")),
        encryption_key: Some(key_hex),
        no_agent: true,
        ..NodeFlags::default()
    };
    let operator_settings = Settings::resolve(&operator_flags, &BTreeMap::new())?;
    let operator_dir = work.path().join("operator");
    remote_agents_node::config::ensure_data_dir(&operator_dir)?;
    let connection =
        Connection::open(&operator_settings, &operator_dir, Duration::from_secs(10)).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while connection.net.peers().len() < hosts.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} nodes connected within 20 s",
            connection.net.peers().len(),
            hosts.len()
        );
        let mut presence = connection.net.watch_peers();
        let _ = tokio::time::timeout(Duration::from_millis(500), presence.changed()).await;
    }
    println!(
        "{} nodes connected through the relay, each over its own Noise session",
        connection.net.peers().len()
    );

    let expected: Vec<HostFacts> = hosts.iter().map(HostFacts::new).collect();

    section("4. fleetctl apply -f examples/fleet --wait   (a signed generation; nodes converge)");
    let operator_key =
        remote_agents_node::desired::operator::create_key(&work.path().join("operator.key"))?;
    println!(
        "operator key {} (made by `fleetctl keygen`)",
        operator_key.public()
    );
    print!(
        "{}",
        remote_agents_spec::plan(&Default::default(), &model).to_text()
    );
    let spec_files: Vec<remote_agents_node::desired::SpecFile> = files
        .iter()
        .map(|(path, text)| remote_agents_node::desired::SpecFile {
            path: path.rsplit('/').next().unwrap_or(path).to_string(),
            text: text.clone(),
        })
        .collect();
    let revision = format!(
        "sha256:{}",
        &remote_agents_ops::bundle::spec_hash(&spec_files)[..16]
    );
    let results = remote_agents_node::sync::publish::publish(
        &connection,
        &operator_key,
        fleet.metadata.name.clone(),
        spec_files,
        revision,
        1,
        &expected,
        false,
        Some(Duration::from_secs(20)),
        None,
    )
    .await?;
    crate::fleetctl::desired::print_results(&results, 1, Default::default())?;

    section("5. fleetctl status");
    let live = remote_agents_node::sync::publish::snapshot(&connection, &expected).await?;
    crate::fleetctl::desired::print_status(&live, Default::default())?;

    let store = remote_agents_node::journal::Store::open(&operator_dir)?;
    let options = FanoutOptions {
        per_host_timeout: Duration::from_secs(10),
        ..FanoutOptions::default()
    };

    section(
        "6. fleetctl exec --target all -- uname -sr   (plan-mode hosts run it read-only, in a \
         Landlock sandbox)",
    );
    let exec = Request::Exec(ExecArgs {
        agent_id: None,
        argv: vec!["uname".into(), "-sr".into()],
        shell: false,
        cwd: None,
        env: BTreeMap::new(),
        stdin: None,
        timeout_secs: Some(10.0),
        max_output_bytes: None,
    });
    let all = Selector::parse("all").map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &all,
            expected: &expected,
            request: exec,
            per_os: BTreeMap::new(),
            options: &options,
            summary: "exec uname -sr".into(),
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    print!("{}", render_text(&fold(&job.report.records)));
    jobs::save(&store, &job)?;

    let motd = work.path().join("motd.txt");
    let motd_path = motd.display().to_string();
    section(&format!(
        "7. fleetctl write --target 'web,db' {motd_path}   (edit hosts write with a backup, plan hosts refuse)"
    ));
    let write = Request::WriteFile(WriteFileArgs {
        agent_id: None,
        path: motd_path.clone(),
        content: "hello from remote-agents\n".into(),
        encoding: Encoding::Utf8,
        create_dirs: false,
    });
    let selector = Selector::parse("web,db").map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &selector,
            expected: &expected,
            request: write,
            per_os: BTreeMap::new(),
            options: &options,
            summary: format!("write {motd_path}"),
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    print!("{}", render_text(&fold(&job.report.records)));
    jobs::save(&store, &job)?;

    section(&format!(
        "8. fleetctl read --target all {motd_path}   (reads pass in every mode)"
    ));
    let read = Request::ReadFile(ReadFileArgs {
        agent_id: None,
        path: motd_path.clone(),
        offset: None,
        length: Some(4096),
    });
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &all,
            expected: &expected,
            request: read,
            per_os: BTreeMap::new(),
            options: &options,
            summary: format!("read {motd_path}"),
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    print!("{}", render_text(&fold(&job.report.records)));
    jobs::save(&store, &job)?;

    section(
        "9. fleetctl mapreduce run --target web --input-item ... --map-arg wc --map-arg -w --reduce sum",
    );
    let lines = [
        "desired state lives in git",
        "every host converges to it",
        "and every imperative action is checked against it",
    ];
    let plan = remote_agents_node::mapreduce::JobPlan {
        name: "word-count".into(),
        target: "web".into(),
        input: remote_agents_node::mapreduce::JobInput::Items(
            lines.iter().map(|l| l.to_string()).collect(),
        ),
        partitions_per_host: 1,
        chunk_bytes: remote_agents_node::mapreduce::DEFAULT_CHUNK_BYTES,
        map: remote_agents_node::mapreduce::Command::Argv(vec!["wc".into(), "-w".into()]),
        reduce: remote_agents_node::mapreduce::ReduceStep::Builtin(
            remote_agents_spec::Reducer::Sum,
        ),
        reduce_on: None,
        retries: 1,
        slots_per_host: 1,
        max_in_flight: None,
        attempt_timeout: Duration::from_secs(10),
        max_output_bytes: remote_agents_node::mapreduce::DEFAULT_MAX_OUTPUT,
    };
    let report = remote_agents_node::mapreduce::run(
        &connection.net,
        &connection.agent_id,
        &remote_agents_node::mapreduce::CallerSide::Process,
        plan,
        None,
        CancellationToken::new(),
    )
    .await?;
    println!(
        "{} partitions on {} ({} attempts): {} words{}",
        report.partitions,
        report.hosts.join(","),
        report.attempts,
        report.result.as_deref().unwrap_or("?").trim(),
        if report.complete { "" } else { " (incomplete)" }
    );

    section("10. fleetctl jobs");
    for job in jobs::list(&store, 10)? {
        println!("{}  {:<22} {}", job.op_id, job.summary, job.result);
    }

    section("done");
    drop(connection);
    shutdown.cancel();
    println!(
        "{} nodes, one relay, an apply, three fan-outs and a MapReduce job in {:.1} s; everything was in {} and is removed now",
        nodes.len(),
        started.elapsed().as_secs_f64(),
        work.path().display()
    );
    Ok(())
}

fn rand_key() -> anyhow::Result<[u8; 32]> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(key)
}
