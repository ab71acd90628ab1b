//! Effective config of one host: built-in limits ⊕ defaults ⊕ matching rules in order ⊕ host
//! entries, with the file:line that set each value.

use crate::diagnostic::Loc;
use crate::model::{Mode, Policy};
use crate::selector::{HostFacts, Selector};
use crate::toolset::Toolset;
use crate::{Document, FleetModel};
use globset::GlobMatcher;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// What a model may use here, when an `McpSurface` selects this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_surface: Option<EffectiveMcpSurface>,
}

/// The MCP surface of a host: every `McpSurface` that selects it applies, so a model gets only
/// what all of them allow (the toolsets they share, the strictest ceiling). Declaring a second
/// surface can only narrow what a model may do, never widen it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveMcpSurface {
    /// The McpSurface documents that select the host, with where each is declared.
    pub surfaces: Vec<Sourced<String>>,
    pub toolsets: BTreeSet<Toolset>,
    /// The most a model's request may do here (`plan`: only operations that change nothing).
    pub max_mode: Option<Mode>,
}

impl EffectiveMcpSurface {
    /// The surfaces' names, for messages: `McpSurface prod-read-only (fleet/surface.yaml:4)`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .surfaces
            .iter()
            .map(|s| format!("McpSurface {} ({})", s.value, s.from))
            .collect();
        names.join(", ")
    }

    /// Whether a model may use `toolset` here.
    pub fn allows(&self, toolset: Toolset) -> bool {
        self.toolsets.contains(&toolset)
    }
}

/// The stricter of two mode ceilings: `disabled` refuses everything, otherwise the lower mode.
fn stricter(a: Mode, b: Mode) -> Mode {
    if a == Mode::Disabled || b == Mode::Disabled {
        Mode::Disabled
    } else {
        a.min(b)
    }
}

/// One McpSurface, compiled.
#[derive(Debug)]
struct CompiledSurface {
    selector: Option<Selector>,
    name: Sourced<String>,
    toolsets: BTreeSet<Toolset>,
    max_mode: Option<Mode>,
}

/// One layer's settings with their origins resolved, so per-host work is only matching and
/// cloning.
#[derive(Debug, Default)]
struct Layer {
    label: Option<Sourced<String>>,
    mode: Option<Sourced<Mode>>,
    paths: (Vec<Sourced<String>>, Vec<Sourced<String>>),
    commands: (Vec<Sourced<String>>, Vec<Sourced<String>>),
    tags: Vec<Sourced<String>>,
    facts: Vec<(String, Sourced<String>)>,
}

/// Selectors, host-name globs and origins resolved once per model, so computing the config of
/// thousands of hosts does not re-parse or re-look-up anything.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    defaults: Layer,
    rules: Vec<(Option<Selector>, Layer)>,
    hosts: Vec<Layer>,
    exact_hosts: HashMap<String, Vec<usize>>,
    glob_hosts: Vec<(usize, GlobMatcher)>,
    schedules: Vec<(Option<Selector>, Sourced<String>)>,
    jobs: Vec<(Option<Selector>, Sourced<String>)>,
    surfaces: Vec<CompiledSurface>,
}

fn origin(model: &FleetModel, document: usize, path: &str) -> Origin {
    match model.sources.get(document, path) {
        Some(loc) => Origin::Spec(loc.clone()),
        None => Origin::Model,
    }
}

fn sourced_list(
    model: &FleetModel,
    document: usize,
    path: &str,
    list: &[String],
) -> Vec<Sourced<String>> {
    list.iter()
        .enumerate()
        .map(|(i, value)| Sourced {
            value: value.clone(),
            from: origin(model, document, &format!("{path}[{i}]")),
        })
        .collect()
}

fn layer(
    model: &FleetModel,
    document: usize,
    path: &str,
    mode: Option<Mode>,
    policy: &Option<Policy>,
) -> Layer {
    let mut layer = Layer {
        mode: mode.map(|value| Sourced {
            value,
            from: origin(model, document, &format!("{path}.mode")),
        }),
        ..Layer::default()
    };
    if let Some(policy) = policy {
        let list = |field: &str, name: &str, values: &[String]| {
            sourced_list(
                model,
                document,
                &format!("{path}.policy.{field}.{name}"),
                values,
            )
        };
        layer.paths = (
            list("paths", "allow", &policy.paths.allow),
            list("paths", "deny", &policy.paths.deny),
        );
        layer.commands = (
            list("commands", "allow", &policy.commands.allow),
            list("commands", "deny", &policy.commands.deny),
        );
    }
    layer
}

impl Compiled {
    pub(crate) fn new(model: &FleetModel) -> Self {
        let mut compiled = Compiled::default();
        if let Some((document, fleet)) = model.fleet() {
            if let Some(defaults) = &fleet.spec.defaults {
                compiled.defaults = layer(
                    model,
                    document,
                    "spec.defaults",
                    defaults.mode,
                    &defaults.policy,
                );
            }
            for (i, rule) in fleet.spec.rules.iter().enumerate() {
                let path = format!("spec.rules[{i}]");
                let mut rule_layer = layer(model, document, &path, rule.mode, &rule.policy);
                rule_layer.label = Some(Sourced {
                    value: rule.name.clone().unwrap_or_else(|| rule.target.clone()),
                    from: origin(model, document, &path),
                });
                compiled
                    .rules
                    .push((Selector::parse(&rule.target).ok(), rule_layer));
            }
            for (i, host) in fleet.spec.hosts.iter().enumerate() {
                let path = format!("spec.hosts[{i}]");
                let mut host_layer = layer(model, document, &path, host.mode, &host.policy);
                host_layer.label = Some(Sourced {
                    value: host.name.clone(),
                    from: origin(model, document, &format!("{path}.name")),
                });
                let tags_from = origin(model, document, &format!("{path}.tags"));
                host_layer.tags = host
                    .tags
                    .iter()
                    .map(|tag| Sourced {
                        value: tag.clone(),
                        from: tags_from.clone(),
                    })
                    .collect();
                host_layer.facts = host
                    .facts
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            Sourced {
                                value: value.clone(),
                                from: origin(model, document, &format!("{path}.facts.{key}")),
                            },
                        )
                    })
                    .collect();
                compiled.hosts.push(host_layer);
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
            let named = || Sourced {
                value: document.name().to_string(),
                from: origin(model, index, ""),
            };
            match document {
                Document::Schedule(s) => compiled
                    .schedules
                    .push((Selector::parse(&s.spec.target).ok(), named())),
                Document::MapReduceJob(j) => compiled
                    .jobs
                    .push((Selector::parse(&j.spec.target).ok(), named())),
                Document::McpSurface(s) => compiled.surfaces.push(CompiledSurface {
                    selector: Selector::parse(&s.spec.target).ok(),
                    name: named(),
                    toolsets: s.spec.toolsets.iter().copied().collect(),
                    max_mode: s.spec.max_mode,
                }),
                Document::Fleet(_) | Document::Window(_) | Document::Rollout(_) => {}
            }
        }
        compiled
    }
}

/// Deny lists add up; a later allow list replaces an earlier one.
fn apply_policy(policy: &mut EffectivePolicy, layer: &Layer) {
    for (target, (allow, deny)) in [
        (&mut policy.paths, &layer.paths),
        (&mut policy.commands, &layer.commands),
    ] {
        if !allow.is_empty() {
            target.allow = allow.clone();
        }
        for item in deny {
            if !target.deny.iter().any(|d| d.value == item.value) {
                target.deny.push(item.clone());
            }
        }
    }
}

fn apply_mode(mode: &mut Sourced<Mode>, layer: &Layer) {
    if let Some(value) = &layer.mode {
        *mode = value.clone();
    }
}

impl FleetModel {
    /// The effective config of a host, from its name and live facts (and any live tags).
    pub fn effective_config(&self, host: &HostFacts) -> EffectiveConfig {
        let compiled = self.compiled();
        let live = |value: &String| Sourced {
            value: value.clone(),
            from: Origin::Live,
        };
        let mut facts: BTreeMap<String, Sourced<String>> = host
            .facts
            .iter()
            .map(|(k, v)| (k.clone(), live(v)))
            .collect();
        let mut tags: Vec<Sourced<String>> = host.tags.iter().map(live).collect();
        let mut mode = Sourced {
            value: Mode::Plan,
            from: Origin::BuiltIn,
        };
        let mut policy = EffectivePolicy::default();

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
        let mut entries = Vec::new();
        for &i in &matched {
            let entry = &compiled.hosts[i];
            entries.extend(entry.label.clone());
            for tag in &entry.tags {
                if !tags.iter().any(|t| t.value == tag.value) {
                    tags.push(tag.clone());
                }
            }
            for (key, value) in &entry.facts {
                facts.insert(key.clone(), value.clone());
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

        apply_mode(&mut mode, &compiled.defaults);
        apply_policy(&mut policy, &compiled.defaults);
        let mut rules = Vec::new();
        for (selector, layer) in &compiled.rules {
            if selector.as_ref().is_some_and(|s| s.matches(&subject)) {
                rules.extend(layer.label.clone());
                apply_mode(&mut mode, layer);
                apply_policy(&mut policy, layer);
            }
        }
        for &i in &matched {
            apply_mode(&mut mode, &compiled.hosts[i]);
            apply_policy(&mut policy, &compiled.hosts[i]);
        }
        let pick = |targets: &[(Option<Selector>, Sourced<String>)]| -> Vec<Sourced<String>> {
            targets
                .iter()
                .filter(|(s, _)| s.as_ref().is_some_and(|s| s.matches(&subject)))
                .map(|(_, name)| name.clone())
                .collect()
        };
        let mut mcp_surface: Option<EffectiveMcpSurface> = None;
        for surface in &compiled.surfaces {
            if !surface
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&subject))
            {
                continue;
            }
            mcp_surface = Some(match mcp_surface {
                None => EffectiveMcpSurface {
                    surfaces: vec![surface.name.clone()],
                    toolsets: surface.toolsets.clone(),
                    max_mode: surface.max_mode,
                },
                Some(mut combined) => {
                    combined.surfaces.push(surface.name.clone());
                    combined.toolsets.retain(|t| surface.toolsets.contains(t));
                    combined.max_mode = match (combined.max_mode, surface.max_mode) {
                        (Some(a), Some(b)) => Some(stricter(a, b)),
                        (a, b) => a.or(b),
                    };
                    combined
                }
            });
        }
        EffectiveConfig {
            host: host.name.clone(),
            entries,
            mode,
            tags,
            facts,
            policy,
            rules,
            schedules: pick(&compiled.schedules),
            jobs: pick(&compiled.jobs),
            mcp_surface,
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
            line(
                &mut out,
                "fact",
                &format!("{key}={}", value.value),
                &value.from,
            );
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
        if let Some(surface) = &self.mcp_surface {
            let toolsets: Vec<&str> = surface.toolsets.iter().map(|t| t.as_str()).collect();
            let value = format!(
                "{} max {}",
                if toolsets.is_empty() {
                    "(no toolsets)".to_string()
                } else {
                    toolsets.join(",")
                },
                surface.max_mode.map_or("(none)", Mode::as_str)
            );
            for (i, name) in surface.surfaces.iter().enumerate() {
                let label = if i == 0 { value.as_str() } else { "(also)" };
                line(
                    &mut out,
                    "mcp",
                    &format!("{} {label}", name.value),
                    &name.from,
                );
            }
        }
        out
    }
}
