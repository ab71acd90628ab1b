//! The layer checks on this workspace: each test fails listing everything it found.

use std::path::{Path, PathBuf};

use remote_agents_tidy::{
    FORBIDDEN_IN_PURE_CRATES, Finding, PURE_CRATES, RUNTIME_FILE, TASK_CRATES,
    forbidden_dependencies, module_cycles, module_docs, task_starts,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tidy/ sits in the workspace root")
        .to_owned()
}

fn assert_none(check: &str, findings: &[Finding]) {
    let lines: Vec<String> = findings
        .iter()
        .map(|finding| format!("  {finding}"))
        .collect();
    assert!(
        findings.is_empty(),
        "{check}: {} finding(s)\n{}\n",
        findings.len(),
        lines.join("\n")
    );
}

#[test]
fn no_crate_has_a_cycle_between_its_top_level_modules() {
    let findings = module_cycles(&workspace_root()).expect("the check runs");
    assert_none("module cycles", &findings);
}

#[test]
fn no_pure_crate_reaches_an_io_or_runtime_crate() {
    let findings = forbidden_dependencies(&workspace_root(), PURE_CRATES, FORBIDDEN_IN_PURE_CRATES)
        .expect("the check runs");
    assert_none("pure crates", &findings);
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let findings = module_docs(&workspace_root()).expect("the check runs");
    assert_none("module docs", &findings);
}

#[test]
fn tasks_start_only_in_the_runtime_module() {
    let findings =
        task_starts(&workspace_root(), TASK_CRATES, RUNTIME_FILE).expect("the check runs");
    assert_none("task starts", &findings);
}
