//! Driving a rollout (`kind: Rollout`) from the caller (`fleetctl apply`): each wave is a new
//! generation whose signed bundle names the hosts that may take it (the node enforces that,
//! `desired::state`), then the caller waits until those hosts report it Synced and Healthy and
//! runs the rollout's checks on them through the normal exec path; at the failure threshold it
//! halts and publishes the previous generation's spec, scoped to the hosts that took the new
//! one. The last wave goes out unscoped, like a plain apply, so hosts that join later take it.
//! The state between waves lives in the fleet, not here: if the caller dies mid-rollout, the
//! hosts stay at the last wave it published.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use remote_agents_ops::bundle::{
    BundleContent, RolloutScope, SignedBundle, SpecFile, VerifiedBundle,
};
use remote_agents_ops::status::{Health, ObservedStatus, SyncState};
use remote_agents_ops::{AgentArgs, ExecArgs, Request};
use remote_agents_spec::rollout::PlannedWave;
use remote_agents_spec::{HostFacts, RolloutCheck, Selector};
use serde::Serialize;

use super::publish::{HostResult, publish_signed};
use crate::desired::OperatorKey;
use crate::fleet::HostStatus;
use crate::fleet::connection::{Connection, FanoutPlan, fan_out};
use crate::fleet::fanout::FanoutOptions;
use crate::journal::now_ms;

/// How long a check runs when it says nothing.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wave's hosts are asked for their status while the caller waits for them.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Everything a rollout needs to run.
pub struct Rollout<'a> {
    /// The Rollout document's name.
    pub name: String,
    pub waves: Vec<PlannedWave>,
    pub checks: Vec<RolloutCheck>,
    pub failure_threshold: u32,
    pub wave_timeout: Duration,
    /// The new spec.
    pub fleet: String,
    pub files: Vec<SpecFile>,
    pub revision: String,
    /// The generation the first wave gets; each later wave (and a rollback) the next one.
    pub first_generation: u64,
    /// What a halt goes back to: the applied generation before this rollout (none on a fleet's
    /// first apply, when a halt can only stop).
    pub previous: Option<&'a VerifiedBundle>,
    pub expected: &'a [HostFacts],
    pub prune: bool,
    pub window_override: Option<String>,
}

/// One check on one host.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    /// `ok`, `failed`, `timeout`, `denied`, `unreachable`, ...
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One host of a wave.
#[derive(Debug, Clone, Serialize)]
pub struct WaveHost {
    pub host: String,
    /// The generation it reported last (0: none or no answer).
    pub generation: u64,
    pub sync: Option<SyncState>,
    pub health: Option<Health>,
    pub checks: Vec<CheckResult>,
    /// Why the host failed the wave; `None` when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One wave as it went.
#[derive(Debug, Clone, Serialize)]
pub struct WaveReport {
    /// From 1.
    pub index: u32,
    pub name: String,
    pub generation: u64,
    pub hosts: Vec<WaveHost>,
    pub failed: u32,
}

/// The rollback after a halt.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    pub generation: u64,
    /// The generation whose spec it puts back.
    pub to_generation: u64,
    pub hosts: Vec<HostResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every wave passed: every host runs the new generation.
    Completed,
    /// A wave reached the failure threshold; the waves after it were not published.
    Halted,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    pub rollout: String,
    pub outcome: Outcome,
    pub waves: Vec<WaveReport>,
    /// Published after a halt when there was a previous generation to go back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReport>,
}

/// What happens, as it happens, for a caller that shows it.
#[derive(Debug, Clone)]
pub enum Event {
    WaveStarted {
        index: u32,
        waves: u32,
        name: String,
        generation: u64,
        hosts: Vec<String>,
    },
    WaveFinished(WaveReport),
    Halted {
        failed: u32,
        threshold: u32,
    },
    RollingBack {
        generation: u64,
        to_generation: u64,
        hosts: Vec<String>,
    },
    RolledBack(RollbackReport),
}

/// The hosts a rollout moves: every connected node that takes commands and every declared
/// host (`expected`, from the spec being applied; one that is not connected fails its wave).
/// Wave selectors see a host's announced tags and facts together with those the spec declares
/// for it, since a node takes its declared tags only once it applied the spec.
pub fn fleet_hosts(connection: &Connection, expected: &[HostFacts]) -> Vec<HostFacts> {
    let mut hosts: BTreeMap<String, HostFacts> = expected
        .iter()
        .map(|host| (host.name.clone(), host.clone()))
        .collect();
    for peer in connection.net.peers() {
        if peer.announcement.accepts_commands {
            let live = crate::fleet::remote::host_facts(&peer);
            let host = hosts
                .entry(live.name.clone())
                .or_insert_with(|| HostFacts::new(live.name.clone()));
            host.tags.extend(live.tags);
            for (key, value) in live.facts {
                // The spec's facts override live ones, as in the effective config.
                host.facts.entry(key).or_insert(value);
            }
        }
    }
    hosts.into_values().collect()
}

/// A selector for exactly these hosts.
fn hosts_selector(hosts: &[String]) -> anyhow::Result<Selector> {
    let text = hosts
        .iter()
        .map(|h| format!("name:{h}"))
        .collect::<Vec<_>>()
        .join(",");
    Selector::parse(&text).map_err(|e| anyhow::anyhow!("cannot select the hosts {hosts:?}: {e}"))
}

fn options(timeout: Duration) -> FanoutOptions {
    FanoutOptions {
        per_host_timeout: timeout,
        ..FanoutOptions::default()
    }
}

/// Signs `files` as `generation` for the hosts `scope` names (every host when `None`), and
/// offers it to the fleet.
#[allow(clippy::too_many_arguments)]
async fn publish_scoped(
    connection: &Connection,
    key: &OperatorKey,
    fleet: &str,
    files: &[SpecFile],
    revision: &str,
    generation: u64,
    scope: Option<RolloutScope>,
    rollout: &Rollout<'_>,
) -> anyhow::Result<Vec<HostResult>> {
    let content = BundleContent {
        fleet: fleet.to_string(),
        generation,
        revision: revision.to_string(),
        issued_at_ms: now_ms(),
        issuer: key.public(),
        files: files.to_vec(),
        window_override: rollout.window_override.clone(),
        rollout: scope,
    };
    let signed = SignedBundle::sign(&content, key);
    signed.verify().context("the bundle does not verify")?;
    publish_signed(
        connection,
        &signed,
        generation,
        rollout.expected,
        rollout.prune,
        None,
    )
    .await
}

/// The statuses of `hosts` (a host that gives none is left out).
async fn statuses(
    connection: &Connection,
    hosts: &[String],
    expected: &[HostFacts],
) -> anyhow::Result<BTreeMap<String, Result<ObservedStatus, String>>> {
    let selector = hosts_selector(hosts)?;
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &selector,
            expected,
            request: Request::DesiredStatus(AgentArgs { agent_id: None }),
            per_os: BTreeMap::new(),
            options: &options(Duration::from_secs(15)),
            summary: "desired_status".into(),
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    Ok(job
        .report
        .records
        .into_iter()
        .map(|record| {
            let status = if record.status == HostStatus::Ok {
                serde_json::from_str::<ObservedStatus>(&record.stdout)
                    .map_err(|e| format!("malformed status: {e}"))
            } else {
                Err(record
                    .error
                    .clone()
                    .unwrap_or_else(|| record.status.as_str().to_string()))
            };
            (record.host, status)
        })
        .collect())
}

fn ready(status: &ObservedStatus, generation: u64) -> bool {
    status.observed_generation >= generation
        && status.sync == SyncState::Synced
        && status.health == Health::Healthy
}

/// Waits (at most `timeout`) until every host of `hosts` reports `generation` Synced and
/// Healthy; returns the last status of each, or why it gave none.
async fn wait_ready(
    connection: &Connection,
    hosts: &[String],
    generation: u64,
    timeout: Duration,
    expected: &[HostFacts],
) -> anyhow::Result<BTreeMap<String, Result<ObservedStatus, String>>> {
    let started = tokio::time::Instant::now();
    loop {
        let seen = statuses(connection, hosts, expected).await?;
        let all_ready = hosts
            .iter()
            .all(|h| matches!(seen.get(h), Some(Ok(s)) if ready(s, generation)));
        if all_ready || started.elapsed() >= timeout {
            return Ok(seen);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn check_name(check: &RolloutCheck) -> String {
    check.name.clone().unwrap_or_else(|| match &check.shell {
        Some(line) => line.clone(),
        None => check.command.join(" "),
    })
}

/// Runs `check` on `hosts` through their exec path; host → result.
async fn run_check(
    connection: &Connection,
    hosts: &[String],
    check: &RolloutCheck,
    expected: &[HostFacts],
) -> anyhow::Result<BTreeMap<String, CheckResult>> {
    let selector = hosts_selector(hosts)?;
    let timeout = check
        .timeout
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(DEFAULT_CHECK_TIMEOUT);
    let (argv, shell) = match &check.shell {
        Some(line) => (vec![line.clone()], true),
        None => (check.command.clone(), false),
    };
    let job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &selector,
            expected,
            request: Request::Exec(ExecArgs {
                agent_id: None,
                argv,
                shell,
                cwd: None,
                env: BTreeMap::new(),
                stdin: None,
                timeout_secs: Some(timeout.as_secs_f64()),
                max_output_bytes: Some(4096),
            }),
            per_os: BTreeMap::new(),
            options: &options(timeout + Duration::from_secs(10)),
            summary: format!("rollout check {}", check_name(check)),
            on_behalf_of_model: false,
            window_override: None,
        },
    )
    .await;
    let name = check_name(check);
    Ok(job
        .report
        .records
        .into_iter()
        .map(|record| {
            let output = |text: &str| {
                let text = text.trim();
                (!text.is_empty()).then(|| text.chars().take(200).collect::<String>())
            };
            let detail = record
                .error
                .clone()
                .or_else(|| output(&record.stderr))
                .or_else(|| output(&record.stdout));
            (
                record.host,
                CheckResult {
                    check: name.clone(),
                    status: record.status.as_str().to_string(),
                    exit: record.exit,
                    detail,
                },
            )
        })
        .collect())
}

/// Runs one wave: publish, wait, check. Returns its report.
async fn run_wave(
    connection: &Connection,
    key: &OperatorKey,
    rollout: &Rollout<'_>,
    position: usize,
    admitted: &[String],
    on_event: &mut (dyn FnMut(Event) + Send),
) -> anyhow::Result<WaveReport> {
    let wave = &rollout.waves[position];
    let index = position as u32 + 1;
    let generation = rollout.first_generation + position as u64;
    on_event(Event::WaveStarted {
        index,
        waves: rollout.waves.len() as u32,
        name: wave.name.clone(),
        generation,
        hosts: wave.hosts.clone(),
    });
    let offered = publish_scoped(
        connection,
        key,
        &rollout.fleet,
        &rollout.files,
        &rollout.revision,
        generation,
        // The last wave takes every host left, and hosts that join later must take it too:
        // it goes out unscoped, like a plain apply.
        (position + 1 < rollout.waves.len()).then(|| RolloutScope {
            rollout: rollout.name.clone(),
            wave: wave.name.clone(),
            index,
            waves: rollout.waves.len() as u32,
            hosts: admitted.to_vec(),
            rollback: false,
        }),
        rollout,
    )
    .await?;
    let refused: BTreeMap<&str, &HostResult> = offered
        .iter()
        .filter(|r| r.result == "refused" && wave.hosts.contains(&r.host))
        .map(|r| (r.host.as_str(), r))
        .collect();
    // A host that refused the bundle will not take it by waiting.
    let waiting: Vec<String> = wave
        .hosts
        .iter()
        .filter(|h| !refused.contains_key(h.as_str()))
        .cloned()
        .collect();
    let seen = if waiting.is_empty() {
        BTreeMap::new()
    } else {
        wait_ready(
            connection,
            &waiting,
            generation,
            rollout.wave_timeout,
            rollout.expected,
        )
        .await?
    };
    let mut hosts: Vec<WaveHost> = wave
        .hosts
        .iter()
        .map(|host| {
            let status = seen.get(host);
            let failure = if let Some(refusal) = refused.get(host.as_str()) {
                Some(format!(
                    "refused generation {generation}: {}",
                    refusal.detail.as_deref().unwrap_or("no reason given")
                ))
            } else {
                match status {
                    Some(Ok(s)) if ready(s, generation) => None,
                    Some(Ok(s)) => Some(format!(
                        "not Synced and Healthy at generation {generation} within {}: at \
                         generation {}, {}, {}",
                        humantime::format_duration(rollout.wave_timeout),
                        s.observed_generation,
                        s.sync,
                        s.health
                    )),
                    Some(Err(reason)) => Some(format!("no status: {reason}")),
                    None => Some("no status".to_string()),
                }
            };
            let status = status.and_then(|s| s.as_ref().ok());
            WaveHost {
                host: host.clone(),
                generation: status.map_or(0, |s| s.observed_generation),
                sync: status.map(|s| s.sync),
                health: status.map(|s| s.health),
                checks: Vec::new(),
                failure,
            }
        })
        .collect();
    // The checks run on the hosts that took the generation; one failed check fails the host.
    let healthy: Vec<String> = hosts
        .iter()
        .filter(|h| h.failure.is_none())
        .map(|h| h.host.clone())
        .collect();
    if !healthy.is_empty() {
        for check in &rollout.checks {
            let mut results = run_check(connection, &healthy, check, rollout.expected).await?;
            for host in hosts.iter_mut().filter(|h| healthy.contains(&h.host)) {
                let result = results.remove(&host.host).unwrap_or(CheckResult {
                    check: check_name(check),
                    status: "unreachable".into(),
                    exit: None,
                    detail: Some("no answer".into()),
                });
                if result.status != "ok" && host.failure.is_none() {
                    host.failure = Some(format!(
                        "check `{}` {}{}",
                        result.check,
                        result.status,
                        result
                            .exit
                            .map(|code| format!(" (exit {code})"))
                            .unwrap_or_default()
                    ));
                }
                host.checks.push(result);
            }
        }
    }
    let failed = hosts.iter().filter(|h| h.failure.is_some()).count() as u32;
    let report = WaveReport {
        index,
        name: wave.name.clone(),
        generation,
        hosts,
        failed,
    };
    on_event(Event::WaveFinished(report.clone()));
    Ok(report)
}

/// Runs the rollout to its end: every wave, or a halt (and the rollback of the hosts that took
/// the new generation, when there is a previous one). `on_event` sees each step as it happens.
pub async fn run(
    connection: &Connection,
    key: &OperatorKey,
    rollout: &Rollout<'_>,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> anyhow::Result<RolloutReport> {
    let threshold = rollout.failure_threshold.max(1);
    let mut admitted: Vec<String> = Vec::new();
    let mut waves = Vec::new();
    let mut failed = 0;
    for position in 0..rollout.waves.len() {
        admitted.extend(rollout.waves[position].hosts.iter().cloned());
        let report = run_wave(connection, key, rollout, position, &admitted, on_event).await?;
        failed += report.failed;
        waves.push(report);
        if failed >= threshold {
            on_event(Event::Halted { failed, threshold });
            let rollback = match rollout.previous {
                Some(previous) => {
                    // The generation after the last wave published.
                    let generation = rollout.first_generation + waves.len() as u64;
                    Some(
                        roll_back(
                            connection, key, rollout, previous, generation, &admitted, on_event,
                        )
                        .await?,
                    )
                }
                None => None,
            };
            return Ok(RolloutReport {
                rollout: rollout.name.clone(),
                outcome: Outcome::Halted,
                waves,
                rollback,
            });
        }
    }
    Ok(RolloutReport {
        rollout: rollout.name.clone(),
        outcome: Outcome::Completed,
        waves,
        rollback: None,
    })
}

/// Publishes `previous`'s spec as `generation` for the hosts that took the new one, and
/// waits (at most the wave timeout) until they report it.
#[allow(clippy::too_many_arguments)]
async fn roll_back(
    connection: &Connection,
    key: &OperatorKey,
    rollout: &Rollout<'_>,
    previous: &VerifiedBundle,
    generation: u64,
    admitted: &[String],
    on_event: &mut (dyn FnMut(Event) + Send),
) -> anyhow::Result<RollbackReport> {
    let every_host = admitted.len()
        == rollout
            .waves
            .iter()
            .map(|wave| wave.hosts.len())
            .sum::<usize>();
    let to_generation = previous.content.generation;
    on_event(Event::RollingBack {
        generation,
        to_generation,
        hosts: admitted.to_vec(),
    });
    let offered = publish_scoped(
        connection,
        key,
        &previous.content.fleet,
        &previous.content.files,
        &previous.content.revision,
        generation,
        // After the last (unscoped) wave any host may hold the new generation: all go back.
        (!every_host).then(|| RolloutScope {
            rollout: rollout.name.clone(),
            wave: "rollback".into(),
            index: rollout.waves.len() as u32 + 1,
            waves: rollout.waves.len() as u32,
            hosts: admitted.to_vec(),
            rollback: true,
        }),
        rollout,
    )
    .await?;
    let mut results: BTreeMap<String, HostResult> = offered
        .into_iter()
        .filter(|r| admitted.contains(&r.host))
        .map(|r| (r.host.clone(), r))
        .collect();
    let seen = wait_ready(
        connection,
        admitted,
        generation,
        rollout.wave_timeout,
        rollout.expected,
    )
    .await?;
    for host in admitted {
        let result = match seen.get(host) {
            Some(Ok(status)) if status.observed_generation >= generation => HostResult {
                host: host.clone(),
                result: "rolled-back".into(),
                generation: status.observed_generation,
                sync: Some(status.sync),
                detail: None,
            },
            other => {
                let mut result = results.remove(host).unwrap_or(HostResult {
                    host: host.clone(),
                    result: "unreachable".into(),
                    generation: 0,
                    sync: None,
                    detail: None,
                });
                if result.result != "refused" {
                    result.result = "timeout".into();
                }
                if let Some(Err(reason)) = other {
                    result.detail = Some(reason.clone());
                }
                result
            }
        };
        results.insert(host.clone(), result);
    }
    let report = RollbackReport {
        generation,
        to_generation,
        hosts: results.into_values().collect(),
    };
    on_event(Event::RolledBack(report.clone()));
    Ok(report)
}
