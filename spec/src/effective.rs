//! Effective config of one host: built-in limits ⊕ defaults ⊕ matching rules in order ⊕ host
//! entries, with the file:line that set each value.

use crate::diagnostic::Loc;
use crate::model::{Mode, Policy};
use crate::selector::{HostFacts, Selector};
use crate::{Document, FleetModel};
use globset::GlobMatcher;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written in a spec file.
    Spec(Loc),
    /// A spec value from a model built in code (no file).
    Model,
    /// The built-in default or hard limit.
    BuiltIn,
    /// Reported by the host itself (or given on the command line).
    Live,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Spec(loc) => write!(f, "{}:{}", loc.file, loc.line),
            Origin::Model => f.write_str("model"),
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Live => f.write_str("live"),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub from: Origin,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EffectiveAllowDeny {
    pub allow: Vec<Sourced<String>>,
    pub deny: Vec<Sourced<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EffectivePolicy {
    pub paths: EffectiveAllowDeny,
    pub commands: EffectiveAllowDeny,
}

/// The settings that apply to one host, each with its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveConfig {
    pub host: String,
    /// The host entries (exact or glob) that matched; empty for an undeclared host.
    pub entries: Vec<Sourced<String>>,
    pub mode: Sourced<Mode>,
    pub tags: Vec<Sourced<String>>,
    pub facts: BTreeMap<String, Sourced<String>>,
    pub policy: EffectivePolicy,
    /// The rules that matched, in order (name or target).
    pub rules: Vec<Sourced<String>>,
    pub schedules: Vec<Sourced<String>>,
    pub jobs: Vec<Sourced<String>>,
}

/// Selectors and host-name globs parsed once per model, so computing the config of thousands of
/// hosts does not re-parse them.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    rules: Vec<Option<Selector>>,
    exact_hosts: HashMap<String, Vec<usize>>,
    glob_hosts: Vec<(usize, GlobMatcher)>,
    schedules: Vec<(usize, Option<Selector>)>,
    jobs: Vec<(usize, Option<Selector>)>,
}

impl Compiled {
    pub(crate) fn new(model: &FleetModel) -> Self {
        let mut compiled = Compiled::default();
        if let Some((_, fleet)) = model.fleet() {
            compiled.rules = fleet
                .spec
                .rules
                .iter()
                .map(|rule| Selector::parse(&rule.target).ok())
                .collect();
            for (i, host) in fleet.spec.hosts.iter().enumerate() {
                if host.name.contains(['*', '?', '[', '{']) {
                    if let Ok(glob) = globset::Glob::new(&host.name) {
                        compiled.glob_hosts.push((i, glob.compile_matcher()));
                    }
                } else {
                    compiled
                        .exact_hosts
                        .entry(host.name.clone())
                        .or_default()
                        .push(i);
                }
            }
        }
        for (index, document) in model.documents.iter().enumerate() {
            match document {
                Document::Schedule(s) => compiled
                    .schedules
                    .push((index, Selector::parse(&s.spec.target).ok())),
                Document::MapReduceJob(j) => compiled
                    .jobs
                    .push((index, Selector::parse(&j.spec.target).ok())),
                Document::Fleet(_) => {}
            }
        }
        compiled
    }
}

struct Layering<'a> {
    model: &'a FleetModel,
    document: usize,
    policy: EffectivePolicy,
}

impl Layering<'_> {
    fn origin(&self, document: usize, path: &str) -> Origin {
        match self.model.sources.get(document, path) {
            Some(loc) => Origin::Spec(loc.clone()),
            None => Origin::Model,
        }
    }

    /// Deny lists add up; a later allow list replaces an earlier one.
    fn apply_policy(&mut self, path: &str, policy: &Option<Policy>) {
        let Some(policy) = policy else { return };
        for (field, lists) in [("paths", &policy.paths), ("commands", &policy.commands)] {
            let target = if field == "paths" {
                &mut self.policy.paths
            } else {
                &mut self.policy.commands
            };
            let sourced = |list_name: &str, list: &[String]| -> Vec<Sourced<String>> {
                list.iter()
                    .enumerate()
                    .map(|(i, value)| Sourced {
                        value: value.clone(),
                        from: match self
                            .model
                            .sources
                            .get(self.document, &format!("{path}.policy.{field}.{list_name}[{i}]"))
                        {
                            Some(loc) => Origin::Spec(loc.clone()),
                            None => Origin::Model,
                        },
                    })
                    .collect()
            };
            if !lists.allow.is_empty() {
                target.allow = sourced("allow", &lists.allow);
            }
            for deny in sourced("deny", &lists.deny) {
                if !target.deny.iter().any(|d| d.value == deny.value) {
                    target.deny.push(deny);
                }
            }
        }
    }
}

impl FleetModel {
    /// The effective config of a host, from its name and live facts (and any live tags).
    pub fn effective_config(&self, host: &HostFacts) -> EffectiveConfig {
        let compiled = self.compiled();
        let mut facts: BTreeMap<String, Sourced<String>> = host
            .facts
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Sourced {
                        value: v.clone(),
                        from: Origin::Live,
                    },
                )
            })
            .collect();
        let mut tags: Vec<Sourced<String>> = host
            .tags
            .iter()
            .map(|t| Sourced {
                value: t.clone(),
                from: Origin::Live,
            })
            .collect();
        let mut mode = Sourced {
            value: Mode::Plan,
            from: Origin::BuiltIn,
        };
        let mut entries = Vec::new();
        let mut rules = Vec::new();
        let (document, fleet) = match self.fleet() {
            Some((document, fleet)) => (document, Some(fleet)),
            None => (0, None),
        };
        let mut layering = Layering {
            model: self,
            document,
            policy: EffectivePolicy::default(),
        };

        if let Some(fleet) = fleet {
            // Host entries: globs first, then exact names, so the more specific entry wins.
            let mut matched: Vec<usize> = compiled
                .glob_hosts
                .iter()
                .filter(|(_, glob)| glob.is_match(&host.name))
                .map(|(i, _)| *i)
                .collect();
            if let Some(exact) = compiled.exact_hosts.get(&host.name) {
                matched.extend(exact);
            }
            for &i in &matched {
                let entry = &fleet.spec.hosts[i];
                let path = format!("spec.hosts[{i}]");
                entries.push(Sourced {
                    value: entry.name.clone(),
                    from: layering.origin(document, &format!("{path}.name")),
                });
                for tag in &entry.tags {
                    if !tags.iter().any(|t| &t.value == tag) {
                        tags.push(Sourced {
                            value: tag.clone(),
                            from: layering.origin(document, &format!("{path}.tags")),
                        });
                    }
                }
                for (key, value) in &entry.facts {
                    facts.insert(
                        key.clone(),
                        Sourced {
                            value: value.clone(),
                            from: layering.origin(document, &format!("{path}.facts.{key}")),
                        },
                    );
                }
            }
            let subject = HostFacts {
                name: host.name.clone(),
                tags: tags.iter().map(|t| t.value.clone()).collect(),
                facts: facts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
            };

            if let Some(defaults) = &fleet.spec.defaults {
                if let Some(value) = defaults.mode {
                    mode = Sourced {
                        value,
                        from: layering.origin(document, "spec.defaults.mode"),
                    };
                }
                layering.apply_policy("spec.defaults", &defaults.policy);
            }
            for (i, rule) in fleet.spec.rules.iter().enumerate() {
                let Some(Some(selector)) = compiled.rules.get(i) else {
                    continue;
                };
                if !selector.matches(&subject) {
                    continue;
                }
                let path = format!("spec.rules[{i}]");
                rules.push(Sourced {
                    value: rule.name.clone().unwrap_or_else(|| rule.target.clone()),
                    from: layering.origin(document, &path),
                });
                if let Some(value) = rule.mode {
                    mode = Sourced {
                        value,
                        from: layering.origin(document, &format!("{path}.mode")),
                    };
                }
                layering.apply_policy(&path, &rule.policy);
            }
            for &i in &matched {
                let entry = &fleet.spec.hosts[i];
                let path = format!("spec.hosts[{i}]");
                if let Some(value) = entry.mode {
                    mode = Sourced {
                        value,
                        from: layering.origin(document, &format!("{path}.mode")),
                    };
                }
                layering.apply_policy(&path, &entry.policy);
            }

            let pick = |selectors: &[(usize, Option<Selector>)]| -> Vec<Sourced<String>> {
                selectors
                    .iter()
                    .filter(|(_, s)| s.as_ref().is_some_and(|s| s.matches(&subject)))
                    .map(|(index, _)| Sourced {
                        value: self.documents[*index].name().to_string(),
                        from: match self.sources.get(*index, "") {
                            Some(loc) => Origin::Spec(loc.clone()),
                            None => Origin::Model,
                        },
                    })
                    .collect()
            };
            let schedules = pick(&compiled.schedules);
            let jobs = pick(&compiled.jobs);
            return EffectiveConfig {
                host: host.name.clone(),
                entries,
                mode,
                tags,
                facts,
                policy: layering.policy,
                rules,
                schedules,
                jobs,
            };
        }
        EffectiveConfig {
            host: host.name.clone(),
            entries,
            mode,
            tags,
            facts,
            policy: layering.policy,
            rules,
            schedules: Vec::new(),
            jobs: Vec::new(),
        }
    }

    /// Names of hosts declared by exact name (glob entries stand for hosts not yet known).
    pub fn declared_hosts(&self) -> Vec<String> {
        self.fleet()
            .map(|(_, fleet)| {
                fleet
                    .spec
                    .hosts
                    .iter()
                    .filter(|h| !h.name.contains(['*', '?', '[', '{']))
                    .map(|h| h.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl EffectiveConfig {
    /// A human-readable listing with the origin of every value.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, value: &str, from: &Origin| {
            out.push_str(&format!("  {label:<10} {value:<28} # {from}\n"));
        };
        out.push_str(&format!("host {}\n", self.host));
        if self.entries.is_empty() {
            out.push_str("  (not declared in the fleet: defaults and rules only)\n");
        }
        for entry in &self.entries {
            line(&mut out, "entry", &entry.value, &entry.from);
        }
        line(&mut out, "mode", self.mode.value.as_str(), &self.mode.from);
        for tag in &self.tags {
            line(&mut out, "tag", &tag.value, &tag.from);
        }
        for (key, value) in &self.facts {
            line(&mut out, "fact", &format!("{key}={}", value.value), &value.from);
        }
        for (label, list) in [
            ("allow path", &self.policy.paths.allow),
            ("deny path", &self.policy.paths.deny),
            ("allow cmd", &self.policy.commands.allow),
            ("deny cmd", &self.policy.commands.deny),
        ] {
            for item in list {
                line(&mut out, label, &item.value, &item.from);
            }
        }
        for rule in &self.rules {
            line(&mut out, "rule", &rule.value, &rule.from);
        }
        for schedule in &self.schedules {
            line(&mut out, "schedule", &schedule.value, &schedule.from);
        }
        for job in &self.jobs {
            line(&mut out, "job", &job.value, &job.from);
        }
        out
    }
}
