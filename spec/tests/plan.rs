//! Plans between two desired states: `+ ~ -` per object, host effects, `?` for jobs that run on
//! apply, terraform-style text and stable JSON.

use remote_agents_spec::plan::Action;
use remote_agents_spec::{load, plan};

const OLD: &str = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: f}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: web-1, tags: [web]}
    - {name: db-1, tags: [db]}
  rules:
    - {name: web-edit, target: web, mode: edit}
---
apiVersion: remote-agents.dev/v1
kind: Schedule
metadata: {name: gone}
spec: {target: all, cron: '@daily', command: [uptime]}
";

const NEW: &str = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: f}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: web-1, tags: [web]}
    - {name: web-2, tags: [web]}
  rules:
    - {name: web-edit, target: web, mode: bypass}
---
apiVersion: remote-agents.dev/v1
kind: MapReduceJob
metadata: {name: count}
spec:
  target: all
  input: {items: [a]}
  map: {command: [wc]}
  reduce: {builtin: sum}
  trigger: on-apply
";

#[test]
fn plan_lists_adds_changes_removes_and_unknowns() {
    let (old, d1) = load(&[("old.yaml", OLD)]);
    let (new, d2) = load(&[("new.yaml", NEW)]);
    assert!(d1.is_empty() && d2.is_empty(), "{d1:?} {d2:?}");
    let plan = plan(&old, &new);
    let items: Vec<(Action, &str, &str)> = plan
        .items
        .iter()
        .map(|i| (i.action, i.kind.as_str(), i.name.as_str()))
        .collect();
    assert_eq!(
        items,
        [
            (Action::Remove, "Host", "db-1"),
            (Action::Add, "Host", "web-2"),
            (Action::Add, "MapReduceJob", "count"),
            (Action::Change, "Rule", "web-edit"),
            (Action::Remove, "Schedule", "gone"),
            (Action::Unknown, "MapReduceJob", "count"),
        ]
    );
    let text = plan.to_text();
    assert!(
        text.contains("  ~ Rule web-edit\n      ~ mode: \"edit\" -> \"bypass\"\n"),
        "{text}"
    );
    assert!(text.contains("  - host db-1\n"), "{text}");
    assert!(
        text.contains("  + host web-2\n  ~ host web-1\n") || text.contains("  ~ host web-1\n"),
        "{text}"
    );
    let web_1 = &plan
        .hosts
        .iter()
        .find(|h| h.host == "web-1")
        .expect("web-1 effect")
        .changes;
    let fields: Vec<&str> = web_1.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["jobs", "mode", "schedules"]);
    assert!(
        text.contains("\nPlan: 2 to add, 1 to change, 2 to remove.\n"),
        "{text}"
    );
    assert!(text.contains("1 effect(s) unknown until run"), "{text}");

    // Stable JSON: the same inputs give byte-identical output.
    let json = serde_json::to_string_pretty(&plan).expect("json");
    assert_eq!(
        json,
        serde_json::to_string_pretty(&crate::plan(&old, &new)).expect("json")
    );
    let value: serde_json::Value = serde_json::from_str(&json).expect("parse");
    assert_eq!(
        value["summary"],
        serde_json::json!({"add": 2, "change": 1, "remove": 2, "unknown": 1})
    );
    assert_eq!(
        value["items"][3]["changes"][0],
        serde_json::json!({"field": "mode", "old": "edit", "new": "bypass"})
    );
}

#[test]
fn identical_states_plan_no_changes() {
    let (old, _) = load(&[("old.yaml", OLD)]);
    let (same, _) = load(&[("other-name.yaml", OLD)]);
    let plan = plan(&old, &same);
    assert!(plan.is_empty());
    assert_eq!(plan.to_text(), "No changes. The desired state matches.\n");
}
