//! What this host should look like under a bundle: its mode, tags, policy, schedules and jobs,
//! computed from the spec's effective config for this host and layered over the node's local
//! config. Pure: the node compares the result with what it runs and swaps in the difference.

use remote_agents_spec::{HostFacts, ScheduleSpec};

use crate::policy::{Mode, PolicyConfig};
use remote_agents_ops::bundle::VerifiedBundle;

/// The converged state of one host under one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub generation: u64,
    pub mode: Mode,
    pub tags: Vec<String>,
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
        policy,
        schedules,
        jobs: values(&effective.jobs),
    }
}

#[cfg(test)]
mod tests {
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
}
