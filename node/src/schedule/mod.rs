//! Schedules: commands a node runs on a cron line. Two sources feed one runner: schedules the
//! applied spec declares for this host ([`Schedules::set_declared`], called by the reconciler)
//! and imperative ones added with `schedule_add` (stored, optionally expiring, and reported as
//! drift because the spec does not hold them).
//!
//! Each firing is an `ops::Envelope` with id `schedule/<name>/<slot unix secs>` and the
//! schedule's issuer as caller (`spec:<generation>` for declared ones, the caller who added an
//! imperative one), run through `Node::handle_local`: the journal dedupes by id (a slot never
//! runs twice, a crash mid-run is `outcome_unknown`), the policy gate and the caller's
//! authorisation are checked at every firing.
//!
//! Policies, as implemented by [`runner`]:
//! - **Time zone**: cron lines are read in the node's local time zone, DST-correct (see
//!   [`cron`]).
//! - **Missed runs**: slots that came due while the runner was not looking (node down,
//!   suspended, clock stepped) are not all replayed. Only the most recent one runs, and only if
//!   it is at most one period of the schedule late (the time to its next slot), clamped to
//!   between [`MISSED_GRACE_MIN`] and [`MISSED_GRACE_MAX`]; the others are recorded in the run
//!   history as one `skipped` entry with their count. A schedule seen for the first time starts
//!   from now: nothing before it is caught up.
//! - **Concurrency**: `forbid` (default) records a due slot as `skipped` while a run of the
//!   schedule is still going; `allow` starts it anyway; `replace` cancels the running one
//!   (its process group is killed; it is recorded `cancelled`) and starts the new one.
//! - **Removal** (from the spec or with `schedule_remove`) stops future firings; a run already
//!   going finishes. Stopping the node cancels running scheduled commands.
//! - **Modes**: `schedule_add` changes the node (refused in plan mode) and installs future
//!   process execution, so the gate checks its command like an `exec` now (deny/allow lists,
//!   shell grant) and again at every firing; `schedule_remove` is a write (refused in plan mode,
//!   where a firing runs read-only in the sandbox like any plan-mode exec); `schedule_list` is a
//!   read.
//! - **Bad values**: timeouts and ttls are checked against the request limits (`ops`) when a
//!   schedule is added and again when a stored one is loaded; a stored schedule that fails the
//!   check (or cannot be read) is listed as not active with the reason and never fires, and a
//!   schedule whose pass fails is skipped in that pass: one bad schedule never stops the others.

pub mod clock;
pub mod cron;
pub mod runner;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use remote_agents_spec::{Concurrency, ScheduleSpec};
use tokio::sync::{Notify, watch};

pub use clock::{Clock, ManualClock, SystemClock};
pub use cron::CronLine;
pub use runner::start;

use crate::journal::{Store, StoreError};
use remote_agents_ops::{
    ExecArgs, ScheduleAddArgs, ScheduleAddResult, ScheduleInfo, ScheduleListArgs,
    ScheduleListResult, ScheduleRemoveResult, ScheduleRun, ScheduleSource,
};

/// The shortest grace a missed slot gets (a busy machine may wake a second late).
pub const MISSED_GRACE_MIN: Duration = Duration::from_secs(10);
/// The longest grace a missed slot gets, however long the schedule's period.
pub const MISSED_GRACE_MAX: Duration = Duration::from_secs(3600);
/// Bytes of stdout and of stderr a scheduled command keeps (the journal stores them).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// A schedule the applied spec declares for this host.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredSchedule {
    pub name: String,
    pub spec: ScheduleSpec,
    /// The generation of the applied spec; runs carry caller `spec:<generation>`.
    pub generation: u64,
}

/// Errors of schedule operations.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "schedule `{0}` is declared by the applied spec; change or remove it there (fleetctl \
         apply), not with schedule_add/schedule_remove"
    )]
    Declared(String),
}

/// What the runner needs of one schedule, from either source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Definition {
    pub name: String,
    pub source: ScheduleSource,
    pub cron: CronLine,
    /// Program and arguments, or (with `shell`) one shell line.
    pub argv: Vec<String>,
    pub shell: bool,
    pub timeout: Option<Duration>,
    pub concurrency: Concurrency,
    pub issuer: String,
    pub expires_at_ms: Option<u64>,
}

impl Definition {
    /// The request one firing makes.
    pub fn exec_args(&self, slot: u64) -> ExecArgs {
        ExecArgs {
            agent_id: None,
            argv: self.argv.clone(),
            shell: self.shell,
            cwd: None,
            // The command can tell which schedule and slot it runs for.
            env: BTreeMap::from([
                ("REMOTE_AGENTS_SCHEDULE".to_string(), self.name.clone()),
                ("REMOTE_AGENTS_SCHEDULE_SLOT".to_string(), slot.to_string()),
            ]),
            stdin: None,
            timeout_secs: self.timeout.map(|t| t.as_secs_f64()),
            max_output_bytes: Some(MAX_OUTPUT_BYTES),
        }
    }

    fn from_declared(declared: &DeclaredSchedule) -> Result<Self, String> {
        let spec = &declared.spec;
        let (argv, shell) = command_of(&spec.command, spec.shell.as_deref())?;
        let timeout = match &spec.timeout {
            Some(text) => {
                let parsed = humantime::parse_duration(text)
                    .map_err(|e| format!("bad timeout `{text}`: {e}"))?;
                Some(remote_agents_ops::timeout_from_secs(
                    "timeout",
                    parsed.as_secs_f64(),
                )?)
            }
            None => None,
        };
        Ok(Definition {
            name: declared.name.clone(),
            source: ScheduleSource::Spec,
            cron: CronLine::parse(&spec.cron).map_err(|e| e.to_string())?,
            argv,
            shell,
            timeout,
            concurrency: spec.concurrency.unwrap_or_default(),
            issuer: format!("spec:{}", declared.generation),
            expires_at_ms: None,
        })
    }

    /// A stored schedule is checked like a new one: a record stored before a limit existed (or
    /// written by another version) is reported and skipped, never run with a bad value.
    fn from_imperative(stored: &store::StoredImperative) -> Result<Self, String> {
        let (argv, shell) = command_of(&stored.command, stored.shell.as_deref())?;
        let timeout = stored
            .timeout_secs
            .map(|secs| remote_agents_ops::timeout_from_secs("timeout_secs", secs))
            .transpose()?;
        Ok(Definition {
            name: stored.name.clone(),
            source: ScheduleSource::Imperative,
            cron: CronLine::parse(&stored.cron).map_err(|e| e.to_string())?,
            argv,
            shell,
            timeout,
            concurrency: stored.concurrency,
            issuer: stored.issuer.clone(),
            expires_at_ms: stored.expires_at_ms,
        })
    }
}

fn command_of(command: &[String], shell: Option<&str>) -> Result<(Vec<String>, bool), String> {
    match (command.is_empty(), shell) {
        (false, None) => Ok((command.to_vec(), false)),
        (true, Some(line)) if !line.trim().is_empty() => Ok((vec![line.to_string()], true)),
        (false, Some(_)) => Err("give either command (argv) or shell, not both".into()),
        _ => Err("a schedule needs a command (argv) or a shell line".into()),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bad schedule name `{name}`: use 1-128 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// Checks `schedule_add` arguments without touching anything: the gate calls this, then checks
/// the command against the node's policy. Returns the argv and whether it is a shell line.
pub fn validate_add(args: &ScheduleAddArgs) -> Result<(Vec<String>, bool), String> {
    check_name(&args.name)?;
    CronLine::parse(&args.cron).map_err(|e| e.to_string())?;
    if let Some(secs) = args.timeout_secs {
        remote_agents_ops::timeout_from_secs("timeout_secs", secs)?;
    }
    if let Some(ttl) = args.ttl_secs {
        remote_agents_ops::ttl_from_secs("ttl_secs", ttl)?;
    }
    command_of(&args.command, args.shell.as_deref())
}

/// The name of the time zone cron lines are read in.
pub fn time_zone() -> String {
    std::env::var("TZ")
        .ok()
        .filter(|tz| !tz.is_empty())
        .unwrap_or_else(|| {
            format!(
                "local (UTC{})",
                chrono::Local::now()
                    .offset()
                    .to_string()
                    .replace("+00:00", "")
            )
        })
}

fn to_ms(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

struct State {
    /// Declared schedules by name, as given (a definition, or why it cannot run).
    declared: BTreeMap<String, (DeclaredSchedule, Result<Definition, String>)>,
    imperative: BTreeMap<String, store::StoredImperative>,
}

/// The node's schedules: declared and imperative definitions, their run history, and the
/// signals the runner task waits on.
pub struct Schedules {
    store: Arc<Store>,
    state: Mutex<State>,
    /// Wakes the runner when the set of schedules changes.
    changed: Notify,
    clock: RwLock<Arc<dyn Clock>>,
    /// The clock time of the runner's latest pass (tests wait on it).
    evaluated: watch::Sender<Option<DateTime<Utc>>>,
}

impl Schedules {
    /// Opens the schedule tables in the node's store and settles runs a stop interrupted (the
    /// journal must already be recovered, which `Store::open` does).
    pub fn open(store: Arc<Store>) -> Result<Self, StoreError> {
        store::init(&store)?;
        store::recover(&store, crate::journal::now_ms())?;
        let imperative: BTreeMap<String, store::StoredImperative> = store::imperative(&store)?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        for stored in imperative.values() {
            if let Err(e) = Definition::from_imperative(stored) {
                tracing::error!(
                    schedule = %stored.name,
                    "stored schedule cannot run and is skipped (schedule_remove it, or \
                     schedule_add it again with valid values): {e}"
                );
            }
        }
        Ok(Schedules {
            store,
            state: Mutex::new(State {
                declared: BTreeMap::new(),
                imperative,
            }),
            changed: Notify::new(),
            clock: RwLock::new(Arc::new(SystemClock)),
            evaluated: watch::Sender::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    pub(crate) fn mark_evaluated(&self, at: DateTime<Utc>) {
        self.evaluated.send_replace(Some(at));
    }

    /// The clock time of the runner's latest pass over the schedules: once it is at or past a
    /// time, every slot due by then has been started or recorded as skipped.
    pub fn evaluated(&self) -> watch::Receiver<Option<DateTime<Utc>>> {
        self.evaluated.subscribe()
    }

    /// Replaces the declared schedules with those of the applied spec that select this host.
    /// Idempotent: the same input changes nothing; a schedule missing from `declared` stops
    /// firing and its cursor is dropped. The new set is swapped in only once its cursors are
    /// stored, so that after a store error the reconciler's retry does the whole swap again.
    pub fn set_declared(&self, declared: Vec<DeclaredSchedule>) -> Result<(), StoreError> {
        let next: BTreeMap<String, (DeclaredSchedule, Result<Definition, String>)> = declared
            .into_iter()
            .map(|d| {
                let definition = Definition::from_declared(&d);
                if let Err(e) = &definition {
                    tracing::warn!(schedule = %d.name, "declared schedule cannot run: {e}");
                }
                (d.name.clone(), (d, definition))
            })
            .collect();
        {
            let mut state = self.state();
            if state.declared == next {
                return Ok(());
            }
            let keep: BTreeSet<String> = next.keys().cloned().collect();
            store::prune_spec_cursors(&self.store, &keep)?;
            let now_ms = self.clock().now().timestamp_millis();
            for name in &keep {
                store::init_cursor(&self.store, name, ScheduleSource::Spec, now_ms)?;
            }
            state.declared = next;
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Imperative schedules that the spec does not hold, in words (for the node's status).
    pub fn drift(&self) -> Vec<String> {
        let now_ms = to_ms(self.clock().now());
        let state = self.state();
        state
            .imperative
            .values()
            .filter(|s| !state.declared.contains_key(&s.name))
            .filter(|s| s.expires_at_ms.is_none_or(|e| e > now_ms))
            .map(|s| {
                format!(
                    "imperative schedule `{}` ({}) added by {} is not in the spec{}",
                    s.name,
                    s.cron,
                    s.issuer,
                    s.expires_at_ms
                        .map(|e| format!("; expires at {e} ms since epoch"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    /// The schedules that fire now: declared ones, plus imperative ones that neither expired nor
    /// are superseded by a declared one of the same name. Expired imperative ones are deleted.
    pub(crate) fn active(&self, now: DateTime<Utc>) -> Vec<Definition> {
        let now_ms = to_ms(now);
        let mut state = self.state();
        let expired: Vec<String> = state
            .imperative
            .values()
            .filter(|s| s.expires_at_ms.is_some_and(|e| e <= now_ms))
            .map(|s| s.name.clone())
            .collect();
        for name in expired {
            match store::remove_imperative(&self.store, &name) {
                Ok(_) => {
                    tracing::info!(schedule = %name, "imperative schedule expired");
                    state.imperative.remove(&name);
                }
                Err(e) => tracing::error!(schedule = %name, "cannot remove expired schedule: {e}"),
            }
        }
        let mut out: Vec<Definition> = state
            .declared
            .values()
            .filter_map(|(_, d)| d.as_ref().ok().cloned())
            .collect();
        for stored in state.imperative.values() {
            if state.declared.contains_key(&stored.name) {
                continue;
            }
            match Definition::from_imperative(stored) {
                Ok(d) => out.push(d),
                Err(e) => tracing::warn!(schedule = %stored.name, "cannot run: {e}"),
            }
        }
        out
    }

    /// `schedule_add`: stores (or replaces) an imperative schedule issued by `issuer`.
    pub fn add(
        &self,
        args: ScheduleAddArgs,
        issuer: &str,
    ) -> Result<ScheduleAddResult, ScheduleError> {
        let (argv, shell) = validate_add(&args).map_err(ScheduleError::Invalid)?;
        let now = self.clock().now();
        let now_ms = to_ms(now);
        let stored = store::StoredImperative {
            name: args.name.clone(),
            cron: args.cron.trim().to_string(),
            command: if shell { Vec::new() } else { argv },
            shell: args.shell.clone(),
            timeout_secs: args.timeout_secs,
            concurrency: args.concurrency.unwrap_or_default(),
            issuer: issuer.to_string(),
            added_at_ms: now_ms,
            expires_at_ms: args
                .ttl_secs
                .map(|ttl| now_ms.saturating_add(ttl.saturating_mul(1000))),
        };
        let replaced = {
            let mut state = self.state();
            if state.declared.contains_key(&args.name) {
                return Err(ScheduleError::Declared(args.name));
            }
            let replaced = store::put_imperative(&self.store, &stored, now.timestamp_millis())?;
            state.imperative.insert(stored.name.clone(), stored.clone());
            replaced
        };
        self.changed.notify_one();
        let next = CronLine::parse(&stored.cron)
            .ok()
            .and_then(|c| c.next_after(now));
        Ok(ScheduleAddResult {
            name: stored.name,
            replaced,
            next_run_ms: next.map(to_ms),
            expires_at_ms: stored.expires_at_ms,
            time_zone: time_zone(),
        })
    }

    /// `schedule_remove`: removes an imperative schedule (declared ones belong to the spec).
    pub fn remove(&self, name: &str) -> Result<ScheduleRemoveResult, ScheduleError> {
        let removed = {
            let mut state = self.state();
            if state.declared.contains_key(name) && !state.imperative.contains_key(name) {
                return Err(ScheduleError::Declared(name.to_string()));
            }
            let removed = store::remove_imperative(&self.store, name)?;
            state.imperative.remove(name);
            removed
        };
        if removed {
            self.changed.notify_one();
        }
        Ok(ScheduleRemoveResult {
            name: name.to_string(),
            removed,
        })
    }

    /// Removes every imperative schedule the spec does not hold (`fleetctl apply --prune`);
    /// returns their names.
    pub fn prune_imperative(&self) -> Vec<String> {
        let names: Vec<String> = {
            let state = self.state();
            state
                .imperative
                .keys()
                .filter(|name| !state.declared.contains_key(*name))
                .cloned()
                .collect()
        };
        names
            .into_iter()
            .filter(|name| self.remove(name).is_ok_and(|r| r.removed))
            .collect()
    }

    /// `schedule_list`: every schedule with its recent runs, and the drift.
    pub fn list(&self, args: &ScheduleListArgs) -> Result<ScheduleListResult, ScheduleError> {
        let runs = args.runs.unwrap_or(5).min(store::HISTORY_PER_SCHEDULE);
        let now = self.clock().now();
        let now_ms = to_ms(now);
        let wanted = |name: &str| args.name.as_deref().is_none_or(|n| n == name);
        let mut schedules = Vec::new();
        {
            let state = self.state();
            for (declared, definition) in state.declared.values() {
                if !wanted(&declared.name) {
                    continue;
                }
                let spec = &declared.spec;
                schedules.push(ScheduleInfo {
                    name: declared.name.clone(),
                    source: ScheduleSource::Spec,
                    cron: spec.cron.clone(),
                    command: spec.command.clone(),
                    shell: spec.shell.clone(),
                    timeout_secs: definition
                        .as_ref()
                        .ok()
                        .and_then(|d| d.timeout)
                        .map(|t| t.as_secs_f64()),
                    concurrency: spec.concurrency.unwrap_or_default(),
                    issuer: format!("spec:{}", declared.generation),
                    generation: Some(declared.generation),
                    added_at_ms: None,
                    expires_at_ms: None,
                    active: definition.is_ok(),
                    note: definition.as_ref().err().cloned(),
                    next_run_ms: definition
                        .as_ref()
                        .ok()
                        .and_then(|d| d.cron.next_after(now))
                        .map(to_ms),
                    recent_runs: Vec::new(),
                });
            }
            for stored in state.imperative.values() {
                if !wanted(&stored.name) || stored.expires_at_ms.is_some_and(|e| e <= now_ms) {
                    continue;
                }
                let superseded = state.declared.contains_key(&stored.name);
                let invalid = Definition::from_imperative(stored).err();
                let active = !superseded && invalid.is_none();
                let cron = CronLine::parse(&stored.cron).ok();
                schedules.push(ScheduleInfo {
                    name: stored.name.clone(),
                    source: ScheduleSource::Imperative,
                    cron: stored.cron.clone(),
                    command: stored.command.clone(),
                    shell: stored.shell.clone(),
                    timeout_secs: stored.timeout_secs,
                    concurrency: stored.concurrency,
                    issuer: stored.issuer.clone(),
                    generation: None,
                    added_at_ms: Some(stored.added_at_ms),
                    expires_at_ms: stored.expires_at_ms,
                    active,
                    note: if superseded {
                        Some("superseded by the spec's schedule of the same name".to_string())
                    } else {
                        invalid.map(|e| format!("cannot run: {e}"))
                    },
                    next_run_ms: if active {
                        cron.and_then(|c| c.next_after(now)).map(to_ms)
                    } else {
                        None
                    },
                    recent_runs: Vec::new(),
                });
            }
        }
        for info in &mut schedules {
            info.recent_runs = store::runs(&self.store, &info.name, runs)?;
        }
        Ok(ScheduleListResult {
            time_zone: time_zone(),
            schedules,
            drift: self.drift(),
        })
    }

    /// The newest runs of one schedule (also of one no longer defined), newest first.
    pub fn history(&self, name: &str, limit: usize) -> Result<Vec<ScheduleRun>, StoreError> {
        store::runs(&self.store, name, limit)
    }
}
