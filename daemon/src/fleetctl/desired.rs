//! fleetctl's desired-state commands against the live fleet: `apply`, `diff` (live), `status`,
//! `get`, `history`, `rollback`, and `keygen` for operator keys. fleetctl joins the room as a
//! send-only peer bound to its operator key, reads every node's observed status, plans the spec
//! against the newest applied bundle, signs a new generation, leaves it (sealed) at the relay
//! and offers it to every node, then reports per host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::output::Output;
use remote_agents_spec::FleetModel;

use super::fleet::{ConnectFlags, resolve_settings};
use super::{EXIT_FINDINGS, EXIT_OK, EXIT_ROLLOUT_HALTED};
use remote_agents_node::client::{Client, new_request_id};
use remote_agents_node::desired::operator::{configured_key, default_key_path};
use remote_agents_node::desired::{ObservedStatus, SpecFile, SyncState};
use remote_agents_node::fleet::connection::{Connection, fleetctl_dir};
use remote_agents_node::sync::publish::{
    HostResult, Snapshot, expected_hosts, publish, revision_of, snapshot,
};
use remote_agents_node::sync::rollout;
use remote_agents_ops::AgentArgs;
use remote_agents_ops::operation::{DesiredGet, DesiredHistory, Operation};
use remote_agents_ops::parse_duration;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The fleet repo folder (or files) to apply.
    #[arg(short = 'f', long = "filename", required = true)]
    pub path: PathBuf,
    /// Print the plan against the live fleet and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Block until every targeted host reports the new generation (or --timeout). A spec with
    /// a Rollout always waits for each wave before the next, printing the waves as they go.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (per wave of a Rollout without its own waveTimeout).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also remove imperative changes the spec does not hold (schedules added by hand).
    #[arg(long)]
    pub prune: bool,
    /// Apply inside a closed change window (a `Window` of the applied spec), for this reason:
    /// signed into the bundle and recorded in every node's audit log.
    #[arg(long, value_name = "REASON")]
    pub override_window: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// What `fleetctl get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    Hosts,
    Schedules,
    Jobs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub resource: Resource,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The generation number, revision or hash prefix to go back to (see `fleetctl history`).
    #[arg(long = "to")]
    pub to: String,
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (default: ~/.config/remote-agents/operator.key, or
    /// REMOTE_AGENTS_OPERATOR_KEY). Never overwritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `fleetctl keygen`: a new operator key; prints the public key for the spec's `operators`.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<u8> {
    let path = args
        .out
        .clone()
        .or_else(|| std::env::var_os("REMOTE_AGENTS_OPERATOR_KEY").map(PathBuf::from))
        .unwrap_or_else(default_key_path);
    let key = remote_agents_node::desired::operator::create_key(&path)?;
    eprintln!("wrote the private key to {} (mode 0600)", path.display());
    eprintln!(
        "add the public key to your Fleet spec:\n  operators:\n    - name: {}\n      key: {}",
        whoami(),
        key.public()
    );
    println!("{}", key.public());
    Ok(EXIT_OK)
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "me".into())
}

/// Reads and validates the spec under `path`; diagnostics go to stderr.
fn read_spec(path: &Path) -> anyhow::Result<(Vec<SpecFile>, FleetModel)> {
    let files = remote_agents_node::sources::read_paths(&[path.to_path_buf()])?;
    let (model, diagnostics) = remote_agents_spec::load(&files);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    anyhow::ensure!(
        !remote_agents_spec::has_errors(&diagnostics),
        "{}: the spec has errors; nothing was applied",
        path.display()
    );
    let base = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let files = files
        .into_iter()
        .map(|(display, text)| SpecFile {
            path: Path::new(&display)
                .strip_prefix(base)
                .map(|p| p.display().to_string())
                .unwrap_or(display),
            text,
        })
        .collect();
    Ok((files, model))
}

async fn connect(
    flags: &ConnectFlags,
) -> anyhow::Result<(remote_agents_node::config::Settings, Connection)> {
    let settings = resolve_settings(flags)?;
    let dir = fleetctl_dir(&settings)?;
    let connection = Connection::open(&settings, &dir, flags.connect_timeout).await?;
    Ok((settings, connection))
}

pub(crate) fn print_results(
    results: &[HostResult],
    generation: u64,
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json | Output::Yaml => {
            print!("{}", output.data(results)?.unwrap_or_default())
        }
        Output::Text => {
            let mut rows = vec![vec![
                "HOST".to_string(),
                "RESULT".into(),
                "GENERATION".into(),
                "SYNC".into(),
                "DETAIL".into(),
            ]];
            for r in results {
                rows.push(vec![
                    r.host.clone(),
                    r.result.clone(),
                    r.generation.to_string(),
                    r.sync.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    r.detail.clone().unwrap_or_default(),
                ]);
            }
            print!("{}", table(&rows));
            let ok = results
                .iter()
                .filter(|r| r.generation >= generation)
                .count();
            println!("{ok}/{} hosts at generation {generation}", results.len());
        }
    }
    Ok(())
}

fn all_converged(results: &[HostResult], generation: u64) -> bool {
    results
        .iter()
        .all(|r| r.generation >= generation && r.result != "refused")
}

/// A plain aligned table.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `fleetctl apply -f DIR`.
pub async fn apply(args: &ApplyArgs) -> anyhow::Result<u8> {
    let (files, model) = read_spec(&args.path)?;
    let expected = expected_hosts(&model);
    let (settings, connection) = connect(&args.connect).await?;
    let live = snapshot(&connection, &expected).await?;
    let old = live
        .newest
        .as_ref()
        .map(|b| b.model.clone())
        .unwrap_or_default();
    let plan = remote_agents_spec::plan(&old, &model);
    let spec_hash = remote_agents_ops::bundle::spec_hash(&files);
    let unknown: Vec<&String> = live
        .hosts
        .iter()
        .filter(|(_, s)| s.is_err())
        .map(|(h, _)| h)
        .collect();
    // Hosts that did not answer (offline) do not force a new generation: they catch up from
    // the relay or a peer when they return.
    let in_sync = live
        .newest
        .as_ref()
        .is_some_and(|b| b.spec_hash == spec_hash)
        && live.hosts.values().all(|s| match s {
            Ok(s) => {
                s.spec_hash.as_deref() == Some(spec_hash.as_str()) && s.sync == SyncState::Synced
            }
            Err(_) => true,
        });
    print!("{}", plan.to_text());
    for host in &unknown {
        println!(
            "  ? host {host}: unknown ({})",
            live.hosts[*host]
                .as_ref()
                .err()
                .map(String::as_str)
                .unwrap_or("")
        );
    }
    if in_sync && !args.prune {
        let answered = live.hosts.len() - unknown.len();
        println!(
            "No changes: {answered} hosts already run this spec (generation {}){}.",
            live.generation(),
            if unknown.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} did not answer and will catch up when they return",
                    unknown.len()
                )
            }
        );
        return Ok(if args.wait && !unknown.is_empty() {
            EXIT_FINDINGS
        } else {
            EXIT_OK
        });
    }
    if args.dry_run {
        if let Some(rollout) = model.rollout() {
            let hosts = rollout::fleet_hosts(&connection, &expected);
            print_wave_plan(
                &rollout.metadata.name,
                &remote_agents_spec::rollout::plan_waves(&rollout.spec, &hosts),
            );
        }
        println!("(dry run: nothing was published)");
        return Ok(EXIT_OK);
    }
    let key = configured_key(&settings)?.context(
        "no operator key to sign with: run `fleetctl keygen` (and list its public key under \
         `operators` in the Fleet spec to lock the fleet), or pass --operator-key",
    )?;
    let fleet = model
        .fleet()
        .map(|(_, f)| f.metadata.name.clone())
        .unwrap_or_default();
    let generation = live.generation() + 1;
    let revision = revision_of(&args.path, &files);
    let rollout_waves = model.rollout().map(|document| {
        let hosts = rollout::fleet_hosts(&connection, &expected);
        (
            document,
            remote_agents_spec::rollout::plan_waves(&document.spec, &hosts),
        )
    });
    if let Some((document, waves)) = &rollout_waves
        && waves.is_empty()
    {
        println!(
            "Rollout {}: no host is declared or connected, so no waves; publishing in one step.",
            document.metadata.name
        );
    }
    if let Some((document, waves)) = rollout_waves
        && !waves.is_empty()
    {
        let plan = rollout::Rollout {
            name: document.metadata.name.clone(),
            waves,
            checks: document.spec.checks.clone(),
            failure_threshold: document.spec.failure_threshold(),
            wave_timeout: document.spec.wave_timeout().unwrap_or(args.timeout),
            fleet,
            files,
            revision,
            first_generation: generation,
            previous: live.newest.as_ref(),
            expected: &expected,
            prune: args.prune,
            window_override: args.override_window.clone(),
        };
        return apply_rollout(&connection, &key, &plan, args.output).await;
    }
    println!("Publishing generation {generation} (revision {revision}).");
    let results = publish(
        &connection,
        &key,
        fleet,
        files,
        revision,
        generation,
        &expected,
        args.prune,
        args.wait.then_some(args.timeout),
        args.override_window.clone(),
    )
    .await?;
    print_results(&results, generation, args.output)?;
    Ok(if !args.wait || all_converged(&results, generation) {
        if results.iter().any(|r| r.result == "refused") {
            EXIT_FINDINGS
        } else {
            EXIT_OK
        }
    } else {
        EXIT_FINDINGS
    })
}

fn print_wave_plan(name: &str, waves: &[remote_agents_spec::rollout::PlannedWave]) {
    println!(
        "Rollout {name}: {} wave{}.",
        waves.len(),
        if waves.len() == 1 { "" } else { "s" }
    );
    for (i, wave) in waves.iter().enumerate() {
        println!(
            "  wave {}/{} {}: {}",
            i + 1,
            waves.len(),
            wave.name,
            wave.hosts.join(", ")
        );
    }
}

/// The rows of one wave: each host's generation, Synced/Healthy, checks and verdict.
fn wave_table(report: &rollout::WaveReport) -> String {
    let mut rows = vec![vec![
        "HOST".to_string(),
        "GENERATION".into(),
        "SYNC".into(),
        "HEALTH".into(),
        "CHECKS".into(),
        "RESULT".into(),
    ]];
    for host in &report.hosts {
        rows.push(vec![
            host.host.clone(),
            host.generation.to_string(),
            host.sync.map_or_else(|| "-".into(), |s| s.to_string()),
            host.health.map_or_else(|| "-".into(), |h| h.to_string()),
            if host.checks.is_empty() {
                "-".into()
            } else {
                host.checks
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}{}",
                            c.check,
                            c.status,
                            c.exit
                                .filter(|code| *code != 0)
                                .map(|code| format!(" (exit {code})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            match &host.failure {
                None => "passed".into(),
                Some(why) => format!("FAILED: {why}"),
            },
        ]);
    }
    table(&rows)
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect()
}

/// Shows one step of a rollout as it happens (text output).
fn print_rollout_event(event: rollout::Event) {
    match event {
        rollout::Event::WaveStarted {
            index,
            waves,
            name,
            generation,
            hosts,
        } => println!(
            "Wave {index}/{waves} {name}: publishing generation {generation} to {}.",
            hosts.join(", ")
        ),
        rollout::Event::WaveFinished(report) => {
            print!("{}", wave_table(&report));
            println!(
                "Wave {} {}: {} passed, {} failed.",
                report.index,
                report.name,
                report.hosts.len() as u32 - report.failed,
                report.failed
            );
        }
        rollout::Event::Halted { failed, threshold } => println!(
            "Halted: {failed} failed host(s) reached the failure threshold ({threshold}); the \
             next waves are not published."
        ),
        rollout::Event::RollingBack {
            generation,
            to_generation,
            hosts,
        } => println!(
            "Rolling back {} to generation {to_generation}'s spec as generation {generation}.",
            hosts.join(", ")
        ),
        rollout::Event::RolledBack(report) => {
            let mut rows = vec![vec![
                "HOST".to_string(),
                "RESULT".into(),
                "GENERATION".into(),
                "SYNC".into(),
                "DETAIL".into(),
            ]];
            for r in &report.hosts {
                rows.push(vec![
                    r.host.clone(),
                    r.result.clone(),
                    r.generation.to_string(),
                    r.sync.map_or_else(|| "-".into(), |s| s.to_string()),
                    r.detail.clone().unwrap_or_default(),
                ]);
            }
            for line in table(&rows).lines() {
                println!("  {line}");
            }
        }
    }
}

/// `fleetctl apply` of a spec that declares a Rollout: the waves one after the other, shown as
/// they go (text) or as one report at the end (json, yaml). Exit 0 when every wave passed,
/// [`EXIT_ROLLOUT_HALTED`] when the rollout halted.
async fn apply_rollout(
    connection: &Connection,
    key: &remote_agents_node::desired::OperatorKey,
    plan: &rollout::Rollout<'_>,
    output: Output,
) -> anyhow::Result<u8> {
    let text = output == Output::Text;
    if text {
        print_wave_plan(&plan.name, &plan.waves);
    }
    let mut on_event = |event: rollout::Event| {
        if text {
            print_rollout_event(event);
        }
    };
    let report = rollout::run(connection, key, plan, &mut on_event).await?;
    match output {
        Output::Text => match report.outcome {
            rollout::Outcome::Completed => println!(
                "Rollout {} completed: {} waves, every host at generation {}.",
                report.rollout,
                report.waves.len(),
                report.waves.last().map_or(0, |w| w.generation)
            ),
            rollout::Outcome::Halted => {
                let wave = report.waves.last();
                println!(
                    "Rollout {} halted at wave {}/{} ({}){}.",
                    report.rollout,
                    wave.map_or(0, |w| w.index),
                    plan.waves.len(),
                    wave.map_or("", |w| w.name.as_str()),
                    match &report.rollback {
                        Some(rollback) => format!(
                            "; the hosts that took it were rolled back to generation {}'s spec \
                             as generation {}",
                            rollback.to_generation, rollback.generation
                        ),
                        None => "; no previous generation to roll back to".to_string(),
                    }
                );
            }
        },
        Output::Json | Output::Yaml => print!("{}", output.data(&report)?.unwrap_or_default()),
    }
    Ok(match report.outcome {
        rollout::Outcome::Completed => EXIT_OK,
        rollout::Outcome::Halted => EXIT_ROLLOUT_HALTED,
    })
}

/// `fleetctl diff -f DIR` without `--against`: the spec against the live fleet. Exit 0 in
/// sync, 1 changes or drift, 2 error.
pub async fn diff_live(path: &Path, connect_flags: &ConnectFlags) -> anyhow::Result<u8> {
    let (files, model) = read_spec(path)?;
    let expected = expected_hosts(&model);
    let (_, connection) = connect(connect_flags).await?;
    let live = snapshot(&connection, &expected).await?;
    let old = live
        .newest
        .as_ref()
        .map(|b| b.model.clone())
        .unwrap_or_default();
    let plan = remote_agents_spec::plan(&old, &model);
    let spec_hash = remote_agents_ops::bundle::spec_hash(&files);
    let mut differs = !plan.is_empty();
    if !plan.is_empty() {
        print!("{}", plan.to_text());
    }
    for (host, status) in &live.hosts {
        match status {
            Ok(status) => {
                if status.spec_hash.as_deref() != Some(spec_hash.as_str()) {
                    differs = true;
                    println!(
                        "  ~ host {host}: runs generation {} ({}), not this spec",
                        status.observed_generation,
                        status.revision.as_deref().unwrap_or("no bundle")
                    );
                }
                for drift in &status.drift {
                    differs = true;
                    println!("  ~ host {host}: drift: {}", drift.message);
                }
            }
            Err(reason) => {
                differs = true;
                println!("  ? host {host}: unknown ({reason})");
            }
        }
    }
    if differs {
        Ok(EXIT_FINDINGS)
    } else {
        println!(
            "No changes: {} hosts run this spec with no drift.",
            live.hosts.len()
        );
        Ok(EXIT_OK)
    }
}

/// `fleetctl status`.
pub async fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let (_, connection) = connect(&args.connect).await?;
    let live = snapshot(&connection, &[]).await?;
    print_status(&live, args.output)?;
    Ok(EXIT_OK)
}

/// One run of a declared job, with the host that coordinated it (`fleetctl jobs --declared`).
#[derive(Debug, serde::Serialize)]
struct HostJobRun<'a> {
    host: &'a str,
    #[serde(flatten)]
    run: &'a remote_agents_ops::status::DeclaredJobRun,
}

/// `fleetctl jobs --declared`: the newest runs of declared jobs (`on-apply`, `cron`) across the
/// fleet, from every node's status (each reports those it coordinated), newest first.
pub async fn declared_runs(command: &super::fleet::JobsCommand) -> anyhow::Result<u8> {
    let (_, connection) = connect(&command.connect).await?;
    let live = snapshot(&connection, &[]).await?;
    let mut runs: Vec<HostJobRun> = live
        .hosts
        .iter()
        .filter_map(|(host, status)| Some((host, status.as_ref().ok()?)))
        .flat_map(|(host, status)| {
            status.job_runs.iter().map(|run| HostJobRun {
                host: host.as_str(),
                run,
            })
        })
        .collect();
    runs.sort_by(|a, b| (b.run.started_ms, &b.run.op_id).cmp(&(a.run.started_ms, &a.run.op_id)));
    runs.truncate(command.limit);
    match command.output {
        Output::Json | Output::Yaml => {
            print!("{}", command.output.data(&runs)?.unwrap_or_default())
        }
        Output::Text => {
            let mut rows = vec![vec![
                "OP ID".to_string(),
                "HOST".into(),
                "JOB".into(),
                "TRIGGER".into(),
                "MS".into(),
                "RESULT".into(),
            ]];
            for r in &runs {
                rows.push(vec![
                    r.run.op_id.clone(),
                    r.host.to_string(),
                    r.run.job.clone(),
                    r.run.trigger.clone(),
                    r.run.duration_ms.to_string(),
                    r.run.result.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(EXIT_OK)
}

/// The `fleetctl status` table (or JSON/YAML list) of a snapshot.
pub(crate) fn print_status(live: &Snapshot, output: Output) -> anyhow::Result<()> {
    let statuses: Vec<&ObservedStatus> = live
        .hosts
        .values()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    match output {
        Output::Json | Output::Yaml => {
            print!("{}", output.data(&statuses)?.unwrap_or_default())
        }
        Output::Text => {
            let mut rows = vec![vec![
                "HOST".to_string(),
                "GENERATION".into(),
                "SYNC".into(),
                "HEALTH".into(),
                "MODE".into(),
                "WINDOW".into(),
                "DRIFT".into(),
            ]];
            for (host, status) in &live.hosts {
                rows.push(match status {
                    Ok(s) => vec![
                        host.clone(),
                        s.observed_generation.to_string(),
                        s.sync.to_string(),
                        s.health.to_string(),
                        if s.mode == s.desired_mode {
                            s.mode.to_string()
                        } else {
                            format!("{} (spec: {})", s.mode, s.desired_mode)
                        },
                        window_column(s),
                        s.drift
                            .iter()
                            .map(|d| d.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ],
                    Err(reason) => vec![
                        host.clone(),
                        "-".into(),
                        "Unknown".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        reason.clone(),
                    ],
                });
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

/// The change-window column of `fleetctl status`: whether a window holds the host now, and
/// the last override it let through, with its reason.
fn window_column(status: &ObservedStatus) -> String {
    let condition = |kind: &str| status.conditions.iter().find(|c| c.kind == kind);
    let mut parts = Vec::new();
    if let Some(window) = condition("ChangeWindow") {
        parts.push(if window.status {
            format!("closed: {}", window.message)
        } else {
            "open".to_string()
        });
    }
    if let Some(overridden) = condition("WindowOverridden") {
        parts.push(format!("last override: {}", overridden.message));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join("; ")
    }
}

/// `fleetctl get hosts|schedules|jobs`.
pub async fn get(args: &GetArgs) -> anyhow::Result<u8> {
    let (_, connection) = connect(&args.connect).await?;
    let live = snapshot(&connection, &[]).await?;
    let statuses: Vec<&ObservedStatus> = live
        .hosts
        .values()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match args.resource {
        Resource::Hosts => (
            vec!["NAME", "TAGS", "MODE", "GENERATION", "SYNC"],
            statuses
                .iter()
                .map(|s| {
                    vec![
                        s.host.clone(),
                        s.tags.join(","),
                        s.mode.to_string(),
                        s.observed_generation.to_string(),
                        s.sync.to_string(),
                    ]
                })
                .collect(),
        ),
        Resource::Schedules => {
            let model = live.newest.as_ref().map(|b| &b.model);
            (
                vec!["NAME", "TARGET", "CRON", "HOSTS"],
                model
                    .into_iter()
                    .flat_map(|m| m.schedules())
                    .map(|(_, s)| {
                        let hosts: Vec<&str> = statuses
                            .iter()
                            .filter(|st| st.schedules.contains(&s.metadata.name))
                            .map(|st| st.host.as_str())
                            .collect();
                        vec![
                            s.metadata.name.clone(),
                            s.spec.target.clone(),
                            s.spec.cron.clone(),
                            hosts.join(","),
                        ]
                    })
                    .collect(),
            )
        }
        Resource::Jobs => {
            let model = live.newest.as_ref().map(|b| &b.model);
            (
                vec!["NAME", "TARGET", "TRIGGER", "HOSTS"],
                model
                    .into_iter()
                    .flat_map(|m| m.jobs())
                    .map(|(_, j)| {
                        let hosts: Vec<&str> = statuses
                            .iter()
                            .filter(|st| st.jobs.contains(&j.metadata.name))
                            .map(|st| st.host.as_str())
                            .collect();
                        vec![
                            j.metadata.name.clone(),
                            j.spec.target.clone(),
                            format!("{:?}", j.spec.trigger.unwrap_or_default()).to_lowercase(),
                            hosts.join(","),
                        ]
                    })
                    .collect(),
            )
        }
    };
    match args.output {
        Output::Text => {
            let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
            all.extend(rows);
            print!("{}", table(&all));
        }
        Output::Json | Output::Yaml => {
            let objects: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::Value::Object(
                        header
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.to_lowercase(), serde_json::Value::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            let value = serde_json::Value::Array(objects);
            if args.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", remote_agents_spec::json_to_yaml(&value));
            }
        }
    }
    Ok(EXIT_OK)
}

/// `fleetctl history`: the generations the most advanced node accepted.
pub async fn history(args: &HistoryArgs) -> anyhow::Result<u8> {
    let (_, connection) = connect(&args.connect).await?;
    let live = snapshot(&connection, &[]).await?;
    let Some(agent) = most_advanced(&live) else {
        println!("No desired state has been applied to this fleet yet.");
        return Ok(EXIT_OK);
    };
    let entries =
        call_node::<DesiredHistory>(&connection, &agent, AgentArgs { agent_id: None }).await?;
    match args.output {
        Output::Json | Output::Yaml => {
            print!("{}", args.output.data(&entries)?.unwrap_or_default())
        }
        Output::Text => {
            let mut rows = vec![vec![
                "GENERATION".to_string(),
                "REVISION".into(),
                "ISSUED".into(),
                "ISSUER".into(),
            ]];
            for e in entries.iter().rev() {
                rows.push(vec![
                    e.generation.to_string(),
                    e.revision.clone(),
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(e.issued_at_ms),
                    )
                    .to_string(),
                    e.issuer.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(EXIT_OK)
}

fn most_advanced(live: &Snapshot) -> Option<String> {
    live.hosts
        .values()
        .filter_map(|s| s.as_ref().ok())
        .filter(|s| s.observed_generation > 0)
        .max_by_key(|s| s.observed_generation)
        .map(|s| s.agent_id.clone())
}

/// Runs one operation on the node `agent` through the RPC client; a failure names the node.
async fn call_node<O: Operation>(
    connection: &Connection,
    agent: &str,
    args: O::Args,
) -> anyhow::Result<O::Output> {
    let peer = connection
        .net
        .peers()
        .into_iter()
        .find(|p| p.agent_id == agent)
        .context("the node left the room")?;
    Client::new(connection.net.clone(), remote_agents_ops::Caller::Unstated)
        .call_with::<O>(
            peer.peer_id,
            new_request_id(),
            args,
            Duration::from_secs(15),
        )
        .await
        .with_context(|| peer.announcement.name.clone())
}

/// `fleetctl rollback --to REV`: a new generation with an older generation's content.
pub async fn rollback(args: &RollbackArgs) -> anyhow::Result<u8> {
    let (settings, connection) = connect(&args.connect).await?;
    let live = snapshot(&connection, &[]).await?;
    let agent = most_advanced(&live).context("no desired state has been applied yet")?;
    let old = call_node::<DesiredGet>(
        &connection,
        &agent,
        remote_agents_ops::DesiredGetArgs {
            revision: Some(args.to.clone()),
            agent_id: None,
        },
    )
    .await?;
    let old = old.verify().context("the kept bundle does not verify")?;
    let key = configured_key(&settings)?
        .context("no operator key to sign with: pass --operator-key or run `fleetctl keygen`")?;
    let current = live
        .newest
        .as_ref()
        .map(|b| b.model.clone())
        .unwrap_or_default();
    print!(
        "{}",
        remote_agents_spec::plan(&current, &old.model).to_text()
    );
    let generation = live.generation() + 1;
    println!(
        "Rolling back to generation {} (revision {}) as generation {generation}.",
        old.content.generation, old.content.revision
    );
    let expected = expected_hosts(&old.model);
    let results = publish(
        &connection,
        &key,
        old.content.fleet.clone(),
        old.content.files.clone(),
        old.content.revision.clone(),
        generation,
        &expected,
        false,
        args.wait.then_some(args.timeout),
        None,
    )
    .await?;
    print_results(&results, generation, args.output)?;
    Ok(if all_converged(&results, generation) || !args.wait {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
