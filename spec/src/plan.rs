//! Plans: what changes between two desired states, per object and per declared host, with
//! `unknown` for effects that cannot be known without running (jobs that run on apply).

use crate::model::{Document, Trigger};
use crate::selector::HostFacts;
use crate::{EffectiveConfig, FleetModel};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Change,
    Remove,
    Unknown,
}

impl Action {
    fn symbol(self) -> char {
        match self {
            Action::Add => '+',
            Action::Change => '~',
            Action::Remove => '-',
            Action::Unknown => '?',
        }
    }
}

/// One changed field: `old`/`new` absent when the field is added/removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// One object (a document, or a host entry, rule or operator inside the Fleet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanItem {
    pub action: Action,
    /// `Fleet`, `Schedule`, `MapReduceJob`, `Host`, `Rule` or `Operator`.
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a declared host's effective config changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostEffect {
    pub host: String,
    pub action: Action,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub unknown: usize,
}

/// The difference between two desired states. Items are sorted, so the JSON is stable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub hosts: Vec<HostEffect>,
    pub summary: Summary,
}

impl Plan {
    /// True when applying would change nothing (and nothing is unknown).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.hosts.is_empty()
    }

    /// Terraform-style text: `+ ~ - ?` items, host effects, and the `Plan:` line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            out.push_str("No changes. The desired state matches.\n");
            return out;
        }
        for item in &self.items {
            let _ = write!(
                out,
                "  {} {} {}",
                item.action.symbol(),
                item.kind,
                item.name
            );
            if let Some(reason) = &item.reason {
                let _ = write!(out, ": {reason}");
            }
            out.push('\n');
            write_changes(&mut out, &item.changes, 6);
        }
        if !self.hosts.is_empty() {
            out.push_str("\nEffects on declared hosts:\n");
            for host in &self.hosts {
                let _ = writeln!(out, "  {} host {}", host.action.symbol(), host.host);
                write_changes(&mut out, &host.changes, 6);
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\nPlan: {} to add, {} to change, {} to remove.",
            s.add, s.change, s.remove
        );
        if s.unknown > 0 {
            let _ = writeln!(
                out,
                "{} effect(s) unknown until run: opaque commands cannot be planned.",
                s.unknown
            );
        }
        out
    }
}

fn write_changes(out: &mut String, changes: &[FieldChange], indent: usize) {
    for change in changes {
        let pad = " ".repeat(indent);
        match (&change.old, &change.new) {
            (None, Some(new)) => {
                let _ = writeln!(out, "{pad}+ {}: {new}", change.field);
            }
            (Some(old), None) => {
                let _ = writeln!(out, "{pad}- {}: {old}", change.field);
            }
            (Some(old), Some(new)) => {
                let _ = writeln!(out, "{pad}~ {}: {old} -> {new}", change.field);
            }
            (None, None) => {}
        }
    }
}

/// Flattens a JSON value into leaf paths; lists of scalars stay one leaf (`tags`), lists of
/// objects are indexed.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, inner, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (i, inner) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), inner, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

fn field_changes(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    flatten("", old, &mut before);
    flatten("", new, &mut after);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (o, n) = (before.get(key), after.get(key));
            (o != n).then(|| FieldChange {
                field: key.clone(),
                old: o.cloned(),
                new: n.cloned(),
            })
        })
        .collect()
}

/// Objects of a model keyed by (kind, name), as JSON.
fn objects(model: &FleetModel) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for document in &model.documents {
        let mut json = document.to_json();
        if let Document::Fleet(fleet) = document {
            // The fleet's hosts, rules and operators are objects of their own.
            if let Some(spec) = json.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("hosts");
                spec.remove("rules");
                spec.remove("operators");
            }
            for host in &fleet.spec.hosts {
                out.insert(
                    ("Host".to_string(), host.name.clone()),
                    serde_json::to_value(host).unwrap_or(Value::Null),
                );
            }
            let mut rule_keys: BTreeMap<String, usize> = BTreeMap::new();
            for rule in &fleet.spec.rules {
                let base = rule.name.clone().unwrap_or_else(|| rule.target.clone());
                let n = rule_keys.entry(base.clone()).or_default();
                *n += 1;
                let key = if *n == 1 {
                    base
                } else {
                    format!("{base} #{n}")
                };
                out.insert(
                    ("Rule".to_string(), key),
                    serde_json::to_value(rule).unwrap_or(Value::Null),
                );
            }
            for operator in &fleet.spec.operators {
                out.insert(
                    ("Operator".to_string(), operator.name.clone()),
                    serde_json::to_value(operator).unwrap_or(Value::Null),
                );
            }
        }
        out.insert(
            (document.kind().to_string(), document.name().to_string()),
            json,
        );
    }
    out
}

fn host_view(config: &EffectiveConfig) -> Value {
    let values = |list: &[crate::Sourced<String>]| -> Vec<String> {
        list.iter().map(|s| s.value.clone()).collect()
    };
    serde_json::json!({
        "mode": config.mode.value,
        "tags": values(&config.tags),
        "policy": {
            "paths": {"allow": values(&config.policy.paths.allow), "deny": values(&config.policy.paths.deny)},
            "commands": {"allow": values(&config.policy.commands.allow), "deny": values(&config.policy.commands.deny)},
        },
        "schedules": values(&config.schedules),
        "jobs": values(&config.jobs),
    })
}

/// The plan that takes desired state `old` to `new`.
pub fn plan(old: &FleetModel, new: &FleetModel) -> Plan {
    let before = objects(old);
    let after = objects(new);
    let mut items = Vec::new();
    let mut keys: Vec<&(String, String)> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (kind, name) = key.clone();
        match (before.get(key), after.get(key)) {
            (None, Some(_)) => items.push(PlanItem {
                action: Action::Add,
                kind,
                name,
                changes: Vec::new(),
                reason: None,
            }),
            (Some(_), None) => items.push(PlanItem {
                action: Action::Remove,
                kind,
                name,
                changes: Vec::new(),
                reason: None,
            }),
            (Some(o), Some(n)) if o != n => items.push(PlanItem {
                action: Action::Change,
                kind,
                name,
                changes: field_changes(o, n),
                reason: None,
            }),
            _ => {}
        }
    }
    // Jobs that run on apply: whether they change anything on the hosts is unknown until run.
    for (_, job) in new.jobs() {
        if job.spec.trigger == Some(Trigger::OnApply)
            && items.iter().any(|i| {
                i.kind == "MapReduceJob"
                    && i.name == job.metadata.name
                    && matches!(i.action, Action::Add | Action::Change)
            })
        {
            items.push(PlanItem {
                action: Action::Unknown,
                kind: "MapReduceJob".to_string(),
                name: job.metadata.name.clone(),
                changes: Vec::new(),
                reason: Some(
                    "runs on apply; its effects cannot be known without running it".into(),
                ),
            });
        }
    }

    let mut host_names: Vec<String> = old.declared_hosts();
    host_names.extend(new.declared_hosts());
    host_names.sort();
    host_names.dedup();
    let mut hosts = Vec::new();
    for name in host_names {
        let facts = HostFacts::new(&name);
        let o = host_view(&old.effective_config(&facts));
        let n = host_view(&new.effective_config(&facts));
        let in_old = old.declared_hosts().contains(&name);
        let in_new = new.declared_hosts().contains(&name);
        let action = match (in_old, in_new) {
            (false, true) => Action::Add,
            (true, false) => Action::Remove,
            _ => Action::Change,
        };
        // An added or removed host is listed once; its whole config is new or gone.
        let changes = if action == Action::Change {
            field_changes(&o, &n)
        } else {
            Vec::new()
        };
        if action != Action::Change || !changes.is_empty() {
            hosts.push(HostEffect {
                host: name,
                action,
                changes,
            });
        }
    }

    let mut summary = Summary::default();
    for item in &items {
        match item.action {
            Action::Add => summary.add += 1,
            Action::Change => summary.change += 1,
            Action::Remove => summary.remove += 1,
            Action::Unknown => summary.unknown += 1,
        }
    }
    Plan {
        items,
        hosts,
        summary,
    }
}
