//! The declared inventory of a fan-out: the hosts a fleet's spec names (the applied bundle's,
//! or the files given with `-f`). A declared host that matches the target but is not connected
//! is reported `unreachable` rather than missing from the result, and a connected host that no
//! declaration covers (neither by its exact name nor by a glob entry such as `lab-*`) is marked
//! `undeclared`, so a stray or misnamed machine shows up instead of passing unnoticed.

use remote_agents_ops::bundle::VerifiedBundle;
use remote_agents_spec::{FleetModel, HostFacts, Selector};

use super::HostRecord;

/// The hosts a spec declares.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// The generation of the applied bundle it comes from (`None`: spec files given directly).
    pub generation: Option<u64>,
    /// Hosts declared by exact name, with their declared tags and facts: the ones reported
    /// `unreachable` when they match a target and are not connected.
    pub hosts: Vec<HostFacts>,
    /// Glob entries (`lab-*`) as `name:` selectors: they cover connected hosts but name no one
    /// host, so none is expected from them.
    patterns: Vec<Selector>,
}

impl Inventory {
    /// The hosts `model` declares; `generation` is the applied bundle's, when it is one.
    pub fn of_model(model: &FleetModel, generation: Option<u64>) -> Self {
        let mut inventory = Inventory {
            generation,
            ..Inventory::default()
        };
        let Some((_, fleet)) = model.fleet() else {
            return inventory;
        };
        for host in &fleet.spec.hosts {
            if host.name.contains(['*', '?', '[', '{']) {
                // A glob the spec's validation refused covers nothing rather than failing the
                // fan-out.
                if let Ok(pattern) = Selector::parse(&format!("name:{}", host.name)) {
                    inventory.patterns.push(pattern);
                }
            } else {
                inventory.hosts.push(HostFacts {
                    name: host.name.clone(),
                    tags: host.tags.iter().cloned().collect(),
                    facts: host.facts.clone(),
                });
            }
        }
        inventory
    }

    /// The hosts an applied bundle declares.
    pub fn of_bundle(bundle: &VerifiedBundle) -> Self {
        Self::of_model(&bundle.model, Some(bundle.content.generation))
    }

    /// Whether the spec declares any host at all. A fleet with only defaults and rules declares
    /// none, and then calling every host `undeclared` would say nothing.
    pub fn declares_hosts(&self) -> bool {
        !self.hosts.is_empty() || !self.patterns.is_empty()
    }

    /// Whether a declaration covers the host called `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.hosts.iter().any(|host| host.name == name) || {
            let host = HostFacts::new(name);
            self.patterns.iter().any(|pattern| pattern.matches(&host))
        }
    }

    /// Marks the records of connected hosts that no declaration covers. Hosts that are not
    /// connected came from the declarations themselves.
    pub fn mark_undeclared(&self, records: &mut [HostRecord]) {
        if !self.declares_hosts() {
            return;
        }
        for record in records {
            record.undeclared = record.agent_id.is_some() && !self.covers(&record.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::HostStatus;

    fn model(hosts: &str) -> FleetModel {
        let text = format!(
            "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {{name: lab}}\nspec:\n{hosts}"
        );
        let files = vec![("fleet.yaml".to_string(), text)];
        let (model, diagnostics) = remote_agents_spec::load(&files);
        assert!(
            !remote_agents_spec::has_errors(&diagnostics),
            "{diagnostics:?}"
        );
        model
    }

    fn live(host: &str) -> HostRecord {
        HostRecord {
            agent_id: Some(format!("id-{host}")),
            ..HostRecord::new(host, HostStatus::Ok)
        }
    }

    #[test]
    fn exact_names_are_expected_and_globs_only_cover() {
        let inventory = Inventory::of_model(
            &model(
                "  hosts:\n    - {name: web-1, tags: [web]}\n    - {name: web-2, tags: [web]}\n    - {name: lab-*, tags: [lab]}\n",
            ),
            Some(3),
        );
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-1", "web-2"]);
        assert!(inventory.hosts[0].tags.contains("web"));
        assert!(inventory.covers("web-2"));
        assert!(inventory.covers("lab-7"));
        assert!(!inventory.covers("stray"));

        let mut records = vec![
            live("web-1"),
            live("lab-7"),
            live("stray"),
            // Declared but offline: it came from the inventory, so it is not `undeclared`.
            HostRecord::new("web-2", HostStatus::Unreachable),
        ];
        inventory.mark_undeclared(&mut records);
        let undeclared: Vec<&str> = records
            .iter()
            .filter(|r| r.undeclared)
            .map(|r| r.host.as_str())
            .collect();
        assert_eq!(undeclared, ["stray"]);
    }

    #[test]
    fn a_spec_that_declares_no_host_marks_nothing() {
        let inventory = Inventory::of_model(&model("  defaults: {mode: plan}\n"), Some(1));
        assert!(!inventory.declares_hosts());
        let mut records = vec![live("web-1")];
        inventory.mark_undeclared(&mut records);
        assert!(!records[0].undeclared);
    }
}
