//! Every example file parses without errors, the YAML and KDL spellings of the example fleet
//! load to the same model, and every example round-trips through both writers.

use remote_agents_spec::{FleetModel, HostFacts, Mode, has_errors, load, to_kdl, to_yaml};
use std::path::PathBuf;

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("..")
}

/// (relative path, text) of every spec file in a folder, sorted by name.
fn read_folder(folder: &str) -> Vec<(String, String)> {
    let dir = repo_root().join(folder);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| remote_agents_spec::Format::from_path(&path.to_string_lossy()).is_some())
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read example");
            (
                format!("{folder}/{}", path.file_name().unwrap().to_string_lossy()),
                text,
            )
        })
        .collect();
    files.sort();
    files
}

fn load_clean(folder: &str) -> FleetModel {
    let files = read_folder(folder);
    assert!(!files.is_empty(), "{folder} has no spec files");
    let (model, diagnostics) = load(&files);
    assert!(
        diagnostics.is_empty(),
        "{folder}: {}",
        diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    model
}

const EXAMPLES: &[&str] = &[
    "examples/fleet",
    "examples/fleet-kdl",
    "examples/secure-fleet",
    "examples/staged-fleet",
    "examples/staged-fleet-kdl",
];

#[test]
fn every_example_loads_without_diagnostics() {
    for folder in EXAMPLES {
        let model = load_clean(folder);
        assert!(model.fleet().is_some(), "{folder} declares a Fleet");
    }
}

#[test]
fn yaml_and_kdl_examples_load_to_the_same_model() {
    let yaml = load_clean("examples/fleet");
    let kdl = load_clean("examples/fleet-kdl");
    assert_eq!(yaml.documents.len(), 8);
    // Files load in name order (fleet, jobs, schedules, surfaces, windows) in both folders.
    assert_eq!(yaml, kdl);
    let yaml = load_clean("examples/staged-fleet");
    let kdl = load_clean("examples/staged-fleet-kdl");
    assert_eq!(yaml.documents.len(), 2);
    assert!(yaml.rollout().is_some());
    assert_eq!(yaml, kdl);
}

#[test]
fn every_example_round_trips_through_yaml_and_kdl() {
    for folder in EXAMPLES {
        let model = load_clean(folder);
        let yaml = to_yaml(&model);
        let (from_yaml, diagnostics) = load(&[("converted.yaml", yaml.as_str())]);
        assert!(
            !has_errors(&diagnostics),
            "{folder} yaml: {diagnostics:?}\n{yaml}"
        );
        assert_eq!(from_yaml, model, "{folder} via yaml:\n{yaml}");
        let kdl = to_kdl(&model);
        let (from_kdl, diagnostics) = load(&[("converted.kdl", kdl.as_str())]);
        assert!(
            !has_errors(&diagnostics),
            "{folder} kdl: {diagnostics:?}\n{kdl}"
        );
        assert_eq!(from_kdl, model, "{folder} via kdl:\n{kdl}");
    }
}

#[test]
fn example_fleet_has_the_documented_hosts_modes_and_targets() {
    let model = load_clean("examples/fleet");
    let check = |host: HostFacts, mode: Mode, schedules: &[&str], jobs: &[&str]| {
        let config = model.effective_config(&host);
        assert_eq!(config.mode.value, mode, "{}", host.name);
        let names = |list: &[remote_agents_spec::Sourced<String>]| {
            list.iter().map(|s| s.value.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&config.schedules), schedules, "{}", host.name);
        assert_eq!(names(&config.jobs), jobs, "{}", host.name);
        let denied = names(&config.policy.paths.deny);
        assert_eq!(denied, ["/etc/shadow", "~/.ssh/**"], "{}", host.name);
    };
    check(
        HostFacts::new("web-2"),
        Mode::Edit,
        &["heartbeat", "rotate-logs"],
        &["disk-usage"],
    );
    check(
        HostFacts::new("api-1"),
        Mode::Plan,
        &["heartbeat"],
        &["error-count", "disk-usage"],
    );
    check(
        HostFacts::new("db-2"),
        Mode::Plan,
        &["heartbeat", "backup-db"],
        &["error-count", "disk-usage"],
    );
    check(
        HostFacts::new("build-1"),
        Mode::Bypass,
        &["heartbeat"],
        &["disk-usage"],
    );
    check(
        HostFacts::new("mac-1"),
        Mode::Plan,
        &["heartbeat"],
        &["disk-usage"],
    );
    check(
        HostFacts::new("lab-gpu"),
        Mode::Plan,
        &["heartbeat"],
        &["disk-usage"],
    );
    let lab = model.effective_config(&HostFacts::new("lab-7"));
    assert_eq!(
        lab.tags
            .iter()
            .map(|t| t.value.as_str())
            .collect::<Vec<_>>(),
        ["lab"]
    );
    assert_eq!(model.declared_hosts().len(), 10);
}

#[test]
fn provenance_points_at_the_line_that_set_each_value() {
    let model = load_clean("examples/fleet");
    let config = model.effective_config(&HostFacts::new("web-1"));
    // `mode: edit` of the web-edit rule, and the default deny list.
    assert_eq!(config.mode.from.to_string(), "examples/fleet/fleet.yaml:50");
    assert_eq!(
        config.policy.paths.deny[0].from.to_string(),
        "examples/fleet/fleet.yaml:20"
    );
    assert_eq!(
        config.tags[0].from.to_string(),
        "examples/fleet/fleet.yaml:23"
    );
    let mac = model.effective_config(&HostFacts::new("mac-1").with_fact("os", "linux"));
    // The spec's fact overrides the live one.
    assert_eq!(mac.facts["os"].value, "macos");
    assert_eq!(
        mac.facts["os"].from.to_string(),
        "examples/fleet/fleet.yaml:43"
    );
    let undeclared = model.effective_config(&HostFacts::new("stray"));
    assert!(undeclared.entries.is_empty());
    assert_eq!(
        undeclared.mode.from.to_string(),
        "examples/fleet/fleet.yaml:17"
    );
}
