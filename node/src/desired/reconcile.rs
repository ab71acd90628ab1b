//! What this host should look like under a bundle (its mode, tags, policy, schedules and jobs,
//! computed from the spec's effective config for this host and layered over the node's local
//! config), and one reconcile pass in kube-runtime's shape: [`reconcile`] converges to that
//! target and says when to look again ([`Action`]); [`error_policy`] turns a failed pass into a
//! jittered backoff. Pure apart from what the [`Context`] does: the node implements it (compare
//! with what it runs, swap in the difference) and `desired::controller` runs the passes.

use std::ops::RangeInclusive;
use std::time::Duration;

use remote_agents_spec::{HostFacts, ScheduleSpec};

use crate::journal::StoreError;
use crate::policy::{Mode, PolicyConfig, PolicyError};
use remote_agents_ops::bundle::VerifiedBundle;

/// The converged state of one host under one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub generation: u64,
    pub mode: Mode,
    pub tags: Vec<String>,
    /// The host's facts, with those the spec declares for it over its live ones: what it
    /// announces, so that peers' selectors see the same facts as the spec's.
    pub facts: std::collections::BTreeMap<String, String>,
    pub policy: PolicyConfig,
    /// Declared schedules that select this host, by name.
    pub schedules: Vec<(String, ScheduleSpec)>,
    /// Declared jobs that select this host, by name.
    pub jobs: Vec<String>,
}

fn mode(mode: remote_agents_spec::Mode) -> Mode {
    match mode {
        remote_agents_spec::Mode::Plan => Mode::Plan,
        remote_agents_spec::Mode::Edit => Mode::Edit,
        remote_agents_spec::Mode::Bypass => Mode::Bypass,
        remote_agents_spec::Mode::Disabled => Mode::Disabled,
    }
}

/// The target of `host` under `bundle`. The local config stays a floor the spec cannot lower:
/// its deny lists add to the spec's, its roots and shell grant are kept (they describe this
/// machine), and its allow lists apply when the spec gives none.
pub fn target(bundle: &VerifiedBundle, host: &HostFacts, local: &PolicyConfig) -> Target {
    let effective = bundle.model.effective_config(host);
    let values = |list: &[remote_agents_spec::Sourced<String>]| -> Vec<String> {
        list.iter().map(|s| s.value.clone()).collect()
    };
    let union = |local: &[String], spec: Vec<String>| -> Vec<String> {
        let mut out = local.to_vec();
        for item in spec {
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out
    };
    let or_local = |spec: Vec<String>, local: &[String]| -> Vec<String> {
        if spec.is_empty() {
            local.to_vec()
        } else {
            spec
        }
    };
    let policy = PolicyConfig {
        roots: local.roots.clone(),
        allow_paths: or_local(values(&effective.policy.paths.allow), &local.allow_paths),
        deny_paths: union(&local.deny_paths, values(&effective.policy.paths.deny)),
        allow_commands: or_local(
            values(&effective.policy.commands.allow),
            &local.allow_commands,
        ),
        deny_commands: union(
            &local.deny_commands,
            values(&effective.policy.commands.deny),
        ),
        allow_shell: local.allow_shell,
    };
    let selected: Vec<String> = values(&effective.schedules);
    let schedules = bundle
        .model
        .schedules()
        .filter(|(_, s)| selected.contains(&s.metadata.name))
        .map(|(_, s)| (s.metadata.name.clone(), s.spec.clone()))
        .collect();
    Target {
        generation: bundle.content.generation,
        mode: mode(effective.mode.value),
        tags: values(&effective.tags),
        facts: effective
            .facts
            .iter()
            .map(|(key, value)| (key.clone(), value.value.clone()))
            .collect(),
        policy,
        schedules,
        jobs: values(&effective.jobs),
    }
}

/// What the controller does after a pass that succeeded (or after [`error_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes with time: the next pass runs when something it reads changes.
    AwaitChange,
    /// Something changes with time (a mode override expires): look again after this long.
    Requeue(Duration),
}

/// What can fail while converging.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The target's policy does not compile. The rest of the target is in force and the node
    /// keeps its previous policy; the same globs fail the same way until a new generation.
    #[error("generation {generation}: policy not applied: {source}")]
    Policy {
        generation: u64,
        #[source]
        source: PolicyError,
    },
    /// The declared schedules' cursors could not be stored: the schedule set is not swapped in.
    #[error("cannot store the declared schedules")]
    Schedules(#[source] StoreError),
    /// The pass panicked (the controller keeps running and tries again).
    #[error("reconcile pass panicked: {0}")]
    Panicked(String),
}

impl ReconcileError {
    /// Whether trying again without a change of input can succeed: a store that failed can
    /// work again; a policy that does not compile stays so and is reported (`BundleRefused`).
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Policy { .. } => false,
            ReconcileError::Schedules(_) | ReconcileError::Panicked(_) => true,
        }
    }
}

/// What one pass needs from the node: the clock, the mode override, and the way to swap in a
/// target.
pub trait Context {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64;
    /// When the stored mode override expires (or expired), if one is stored.
    fn mode_override_expires_at_ms(&self) -> Option<u64>;
    /// The override that expired at `expires_at_ms` no longer holds: tell peers the mode
    /// changed back (once per override, however many passes see it expired).
    fn mode_override_expired(&self, expires_at_ms: u64);
    /// Makes what the node runs match `target`. Idempotent: with the same input a second call
    /// changes nothing.
    fn converge(&self, target: &Target) -> Result<(), ReconcileError>;
}

/// One reconcile pass: converges to `desired` (`None`: no bundle applied, the local config
/// decides) and says when to look again. Level-based: it does not know what triggered it.
pub fn reconcile(desired: Option<&Target>, ctx: &impl Context) -> Result<Action, ReconcileError> {
    // The override first, so that its expiry is announced even when converging fails.
    let now_ms = ctx.now_ms();
    let expiry = ctx.mode_override_expires_at_ms();
    if let Some(expires_at_ms) = expiry.filter(|&e| e <= now_ms) {
        ctx.mode_override_expired(expires_at_ms);
    }
    if let Some(target) = desired {
        ctx.converge(target)?;
    }
    Ok(match expiry.filter(|&e| e > now_ms) {
        Some(expires_at_ms) => Action::Requeue(Duration::from_millis(expires_at_ms - now_ms)),
        None => Action::AwaitChange,
    })
}

/// The first retry's ceiling: a store that failed once (a full disk being cleared, a
/// short-lived lock) often works again within a second.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The ceiling stops growing here: a node whose store keeps failing is broken until someone
/// acts, and trying every few minutes costs nothing while noticing the repair soon enough.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// What the controller does after a failed pass, the `attempts`-th failure in a row (from 1):
/// a transient error is retried after a backoff, a terminal one waits for a change of input
/// (the node reports it as a condition).
pub fn error_policy(error: &ReconcileError, attempts: u32) -> Action {
    if error.is_transient() {
        Action::Requeue(backoff(attempts, fastrand::u64))
    } else {
        Action::AwaitChange
    }
}

/// Exponential backoff with full jitter: a delay picked uniformly between zero and
/// `BACKOFF_BASE * 2^(attempts - 1)`, capped at `BACKOFF_CAP`. Full jitter (rather than a
/// fixed or half-random delay) spreads the retries of nodes that failed together, as after a
/// fleet-wide apply, instead of keeping them in step ("Exponential Backoff And Jitter", AWS
/// Architecture Blog). `pick` draws from the range of milliseconds (random outside tests).
fn backoff(attempts: u32, pick: impl FnOnce(RangeInclusive<u64>) -> u64) -> Duration {
    let base = u64::try_from(BACKOFF_BASE.as_millis()).unwrap_or(u64::MAX);
    let cap = u64::try_from(BACKOFF_CAP.as_millis()).unwrap_or(u64::MAX);
    let doublings = attempts.saturating_sub(1).min(63);
    let ceiling = base.saturating_mul(1u64 << doublings).min(cap);
    Duration::from_millis(pick(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::super::operator::OperatorKey;
    use super::*;
    use remote_agents_ops::bundle::{SignedBundle, fixtures::content};

    const FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: t}
spec:
  defaults:
    mode: plan
    policy:
      paths: {deny: [/etc/shadow]}
  hosts:
    - {name: web-1, tags: [web]}
  rules:
    - {target: tag:web, mode: edit}
---
apiVersion: remote-agents.dev/v1
kind: Schedule
metadata: {name: beat}
spec: {target: tag:web, cron: '* * * * *', command: [uptime]}
---
apiVersion: remote-agents.dev/v1
kind: Schedule
metadata: {name: db-only}
spec: {target: tag:db, cron: '* * * * *', command: [uptime]}
";

    #[test]
    fn a_host_gets_its_mode_tags_schedules_and_a_policy_over_the_local_floor() {
        let key = OperatorKey::generate();
        let bundle = SignedBundle::sign(&content(&key, 5, FLEET), &key)
            .verify()
            .unwrap();
        let local = PolicyConfig {
            deny_paths: vec!["/root/**".into()],
            allow_shell: true,
            ..PolicyConfig::default()
        };
        let web = target(&bundle, &HostFacts::new("web-1"), &local);
        assert_eq!(web.generation, 5);
        assert_eq!(web.mode, Mode::Edit);
        assert_eq!(web.tags, vec!["web".to_string()]);
        assert_eq!(web.policy.deny_paths, vec!["/root/**", "/etc/shadow"]);
        assert!(web.policy.allow_shell);
        assert_eq!(
            web.schedules
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            vec!["beat"]
        );
        let other = target(&bundle, &HostFacts::new("lab-9"), &local);
        assert_eq!(other.mode, Mode::Plan);
        assert!(other.schedules.is_empty());
        // Idempotent: the same input gives the same target.
        assert_eq!(web, target(&bundle, &HostFacts::new("web-1"), &local));
    }

    /// A node as the pass sees it: a clock, a stored override, and what was converged to.
    struct FakeNode {
        now_ms: u64,
        override_expires_at_ms: Option<u64>,
        expired: RefCell<Vec<u64>>,
        converged: Cell<u32>,
        fail_with: RefCell<Option<ReconcileError>>,
    }

    impl FakeNode {
        fn at(now_ms: u64, override_expires_at_ms: Option<u64>) -> Self {
            FakeNode {
                now_ms,
                override_expires_at_ms,
                expired: RefCell::new(Vec::new()),
                converged: Cell::new(0),
                fail_with: RefCell::new(None),
            }
        }
    }

    impl Context for FakeNode {
        fn now_ms(&self) -> u64 {
            self.now_ms
        }
        fn mode_override_expires_at_ms(&self) -> Option<u64> {
            self.override_expires_at_ms
        }
        fn mode_override_expired(&self, expires_at_ms: u64) {
            self.expired.borrow_mut().push(expires_at_ms);
        }
        fn converge(&self, _target: &Target) -> Result<(), ReconcileError> {
            self.converged.set(self.converged.get() + 1);
            self.fail_with.borrow_mut().take().map_or(Ok(()), Err)
        }
    }

    fn web_target() -> Target {
        let key = OperatorKey::generate();
        let bundle = SignedBundle::sign(&content(&key, 5, FLEET), &key)
            .verify()
            .unwrap();
        target(&bundle, &HostFacts::new("web-1"), &PolicyConfig::default())
    }

    fn store_failure() -> ReconcileError {
        ReconcileError::Schedules(StoreError::Locked("/data".into()))
    }

    #[test]
    fn a_pass_requeues_at_the_override_expiry_and_awaits_change_without_one() {
        let target = web_target();
        let node = FakeNode::at(10_000, Some(70_000));
        assert_eq!(
            reconcile(Some(&target), &node).unwrap(),
            Action::Requeue(Duration::from_secs(60))
        );
        assert_eq!(node.converged.get(), 1);
        assert!(node.expired.borrow().is_empty());

        let node = FakeNode::at(10_000, None);
        assert_eq!(
            reconcile(Some(&target), &node).unwrap(),
            Action::AwaitChange
        );
        // Before any bundle there is nothing to converge to, but the override still counts.
        let node = FakeNode::at(10_000, Some(12_500));
        assert_eq!(
            reconcile(None, &node).unwrap(),
            Action::Requeue(Duration::from_millis(2_500))
        );
        assert_eq!(node.converged.get(), 0);
    }

    #[test]
    fn an_expired_override_is_announced_even_when_converging_fails() {
        let node = FakeNode::at(10_000, Some(10_000));
        *node.fail_with.borrow_mut() = Some(store_failure());
        let error = reconcile(Some(&web_target()), &node).unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert_eq!(*node.expired.borrow(), vec![10_000]);
        // Once converging works the expired override asks for no requeue.
        assert_eq!(
            reconcile(Some(&web_target()), &node).unwrap(),
            Action::AwaitChange
        );
    }

    #[test]
    fn the_backoff_doubles_from_the_base_up_to_the_cap() {
        let ceilings: Vec<u64> = (1..=12)
            .map(|attempts| backoff(attempts, |range| *range.end()).as_secs())
            .collect();
        assert_eq!(
            ceilings,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(backoff(u32::MAX, |range| *range.end()), BACKOFF_CAP);
        // Full jitter: every draw starts from zero.
        assert_eq!(backoff(7, |range| *range.start()), Duration::ZERO);
    }

    #[test]
    fn the_error_policy_jitters_transient_errors_within_the_ceiling_and_waits_on_terminal_ones() {
        fastrand::seed(13);
        for attempts in [1, 3, 20] {
            let ceiling = backoff(attempts, |range| *range.end());
            let delays: Vec<Duration> = (0..200)
                .map(|_| match error_policy(&store_failure(), attempts) {
                    Action::Requeue(delay) => delay,
                    Action::AwaitChange => panic!("a transient error is retried"),
                })
                .collect();
            assert!(
                delays.iter().all(|d| *d <= ceiling),
                "{attempts}: {delays:?}"
            );
            // Jittered: not one fixed delay.
            assert!(delays.iter().any(|d| *d != delays[0]), "{attempts}");
        }
        let terminal = ReconcileError::Policy {
            generation: 5,
            source: crate::policy::PolicyError::Glob {
                glob: "[".into(),
                source: globset::Glob::new("[").unwrap_err(),
            },
        };
        assert_eq!(error_policy(&terminal, 1), Action::AwaitChange);
    }
}
