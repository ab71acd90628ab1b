//! fleetctl's offline commands as a user runs them: the real binary on the example fleet, on the
//! broken fixtures, on a modified copy, and against a revision of a real (temporary) git repo.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("..")
}

fn fleetctl() -> Command {
    let mut command = Command::cargo_bin("fleetctl").expect("fleetctl binary");
    command.current_dir(repo_root());
    command
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Outcome {
    let output = fleetctl().args(args).output().expect("run fleetctl");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// A copy of examples/fleet with one host added, one rule changed and one schedule removed.
fn modified_copy(dir: &Path) {
    copy_dir(&repo_root().join("examples/fleet"), dir);
    let fleet = dir.join("fleet.yaml");
    let text = std::fs::read_to_string(&fleet).expect("read");
    let text = text
        .replace(
            "    - name: mac-1\n",
            "    - name: web-4\n      tags: [web]\n    - name: mac-1\n",
        )
        .replace(
            "      target: tag:ci\n      mode: bypass",
            "      target: tag:ci\n      mode: edit",
        );
    std::fs::write(&fleet, text).expect("write");
    let schedules = dir.join("schedules.yaml");
    let text = std::fs::read_to_string(&schedules).expect("read");
    let cut = text.rfind("---\n").expect("three documents");
    std::fs::write(&schedules, &text[..cut]).expect("write");
}

#[test]
fn validate_accepts_every_example() {
    for folder in [
        "examples/fleet",
        "examples/fleet-kdl",
        "examples/secure-fleet",
    ] {
        let out = run(&["validate", "-f", folder]);
        assert_eq!(out.code, 0, "{folder}: {}", out.stderr);
        assert!(out.stdout.starts_with("valid: "), "{}", out.stdout);
    }
    let out = run(&[
        "validate",
        "-f",
        "examples/fleet/fleet.yaml",
        "examples/fleet/jobs.yaml",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn validate_reports_each_broken_fixture_with_its_position_and_exits_1() {
    let expected = [
        "syntax.yaml:9:1: error[syntax]",
        "syntax.kdl:2:11: error[syntax]",
        "unknown-kind.yaml:2:7: error[unknown-kind]",
        "unknown-field.yaml:8:7: error[unknown-field]",
        "unknown-field.kdl:5:13: error[unknown-field]",
        "wrong-type.yaml:13:12: error[wrong-type]",
        "duplicate-name.yaml:9:13: error[duplicate-name]",
        "bad-cron.yaml:7:9: error[bad-cron]",
        "bad-selector.yaml:6:16: error[bad-selector]",
        "bad-glob.yaml:9:16: error[bad-glob]",
        "unknown-mode.yaml:7:11: error[unknown-mode]",
        "bad-operator-key.yaml:8:12: error[bad-operator-key]",
        "rule-never-matches.yaml:10:15: warning[rule-never-matches]",
    ];
    for line in expected {
        let file = line.split(':').next().expect("file");
        let path = format!("spec/tests/fixtures/broken/{file}");
        let out = run(&["validate", "-f", &path]);
        let want = if line.contains("warning[") { 0 } else { 1 };
        assert_eq!(out.code, want, "{path}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("spec/tests/fixtures/broken/{line}")),
            "{path}:\n{}",
            out.stderr
        );
    }
    let out = run(&["validate", "-f", "spec/tests/fixtures/broken", "-o", "json"]);
    assert_eq!(out.code, 1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json report");
    assert_eq!(report["valid"], false);
    assert!(report["diagnostics"].as_array().expect("list").len() >= expected.len());
}

#[test]
fn diff_shows_adds_changes_removes_with_kubectl_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("fleet");
    modified_copy(&copy);
    let copy = copy.to_string_lossy().to_string();

    let out = run(&["diff", "-f", &copy, "--against", "examples/fleet"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    for expected in [
        "  + Host web-4\n",
        "  ~ Rule ci-bypass\n      ~ mode: \"bypass\" -> \"edit\"\n",
        "  - Schedule backup-db\n",
        "  ~ host build-1\n",
        "  + host web-4\n",
        "Plan: 1 to add, 1 to change, 1 to remove.\n",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            out.stdout
        );
    }

    // `plan` is the same command; JSON is stable between runs.
    let first = run(&[
        "plan",
        "-f",
        &copy,
        "--against",
        "examples/fleet",
        "-o",
        "json",
    ]);
    let second = run(&[
        "plan",
        "-f",
        &copy,
        "--against",
        "examples/fleet",
        "-o",
        "json",
    ]);
    assert_eq!(first.code, 1);
    assert_eq!(first.stdout, second.stdout);
    let plan: serde_json::Value = serde_json::from_str(&first.stdout).expect("plan json");
    assert_eq!(
        plan["summary"],
        serde_json::json!({"add": 1, "change": 1, "remove": 1, "unknown": 0})
    );

    let yaml = run(&[
        "plan",
        "-f",
        &copy,
        "--against",
        "examples/fleet",
        "-o",
        "yaml",
    ]);
    assert!(
        yaml.stdout.contains("summary:\n  add: 1\n"),
        "{}",
        yaml.stdout
    );

    // No changes: the YAML and KDL spellings of one fleet.
    let same = run(&[
        "diff",
        "-f",
        "examples/fleet",
        "--against",
        "examples/fleet-kdl",
    ]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(same.stdout.contains("No changes."));

    // Errors: an invalid side, and a revision that does not resolve.
    let invalid = run(&[
        "diff",
        "-f",
        "spec/tests/fixtures/broken/bad-cron.yaml",
        "--against",
        "examples/fleet",
    ]);
    assert_eq!(invalid.code, 2, "{}", invalid.stderr);
    let unknown = run(&[
        "diff",
        "-f",
        "examples/fleet",
        "--against",
        "no-such-revision-or-path",
    ]);
    assert!(unknown.code >= 2, "{}", unknown.stderr);
}

#[test]
fn diff_against_a_git_revision_reads_the_same_folder_at_that_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repository = git2::Repository::init(dir.path()).expect("git init");
    let fleet = dir.path().join("specs/fleet");
    copy_dir(&repo_root().join("examples/fleet"), &fleet);
    let mut index = repository.index().expect("index");
    index
        .add_all(["specs"], git2::IndexAddOption::DEFAULT, None)
        .expect("add");
    index.write().expect("write index");
    let tree = repository
        .find_tree(index.write_tree().expect("tree"))
        .expect("find tree");
    let signature = git2::Signature::now("test", "test@example.invalid").expect("signature");
    repository
        .commit(Some("HEAD"), &signature, &signature, "fleet", &tree, &[])
        .expect("commit");
    let fleet_path = fleet.to_string_lossy().to_string();

    let clean = run(&["diff", "-f", &fleet_path, "--against", "HEAD"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);

    // Change the work tree: the plan is against the committed folder.
    std::fs::remove_dir_all(&fleet).expect("rm");
    modified_copy(&fleet);
    let changed = run(&["diff", "-f", &fleet_path, "--against", "HEAD"]);
    assert_eq!(changed.code, 1, "{}{}", changed.stdout, changed.stderr);
    assert!(
        changed
            .stdout
            .contains("Plan: 1 to add, 1 to change, 1 to remove."),
        "{}",
        changed.stdout
    );

    let file = fleet.join("fleet.yaml").to_string_lossy().to_string();
    let one_file = run(&["diff", "-f", &file, "--against", "HEAD"]);
    assert_eq!(one_file.code, 1, "{}", one_file.stderr);
    assert!(
        one_file.stdout.contains("+ Host web-4"),
        "{}",
        one_file.stdout
    );

    let missing = run(&["diff", "-f", &fleet_path, "--against", "HEAD~5"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
}

#[test]
fn explain_shows_the_effective_config_with_provenance() {
    let out = run(&[
        "explain",
        "web-1",
        "-f",
        "examples/fleet",
        "--fact",
        "os=linux",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("mode       edit"), "{}", out.stdout);
    assert!(
        out.stdout.contains("# examples/fleet/fleet.yaml:50"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("fact       os=linux                     # live"),
        "{}",
        out.stdout
    );

    let json = run(&[
        "explain",
        "build-2",
        "-f",
        "examples/fleet-kdl",
        "-o",
        "json",
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let config: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(config["mode"]["value"], "bypass");
    assert!(
        config["mode"]["from"]
            .as_str()
            .expect("from")
            .starts_with("examples/fleet-kdl/fleet.kdl:")
    );
}

#[test]
fn convert_round_trips_between_spellings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["convert", "-f", "examples/fleet-kdl", "--to", "yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let yaml = dir.path().join("converted.yaml");
    std::fs::write(&yaml, &out.stdout).expect("write");
    let same = run(&[
        "diff",
        "-f",
        &yaml.to_string_lossy(),
        "--against",
        "examples/fleet",
    ]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);

    let out = run(&["convert", "-f", "examples/fleet", "--to", "kdl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kdl = dir.path().join("converted.kdl");
    std::fs::write(&kdl, &out.stdout).expect("write");
    let same = run(&[
        "diff",
        "-f",
        &kdl.to_string_lossy(),
        "--against",
        "examples/fleet",
    ]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);

    let broken = run(&[
        "convert",
        "-f",
        "spec/tests/fixtures/broken/bad-glob.yaml",
        "--to",
        "kdl",
    ]);
    assert_eq!(broken.code, 1);
}

/// `fleetctl ARGS` with its address space capped (on Linux), so a parser that stops being
/// bounded fails the test instead of exhausting the machine: before the limits, a 652-byte
/// alias bomb grew fleetctl past 8 GB.
fn run_bounded(args: &[&str]) -> Outcome {
    const ADDRESS_SPACE_KIB: u64 = 2 * 1024 * 1024;
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} 2>/dev/null; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_fleetctl"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run fleetctl");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn validate_refuses_an_alias_bomb_naming_the_file_and_the_alias() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let items = vec![format!("*a{}", level - 1); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    let path = dir.path().join("bomb.yaml");
    std::fs::write(&path, &bomb).expect("write");
    for command in ["validate", "convert"] {
        let mut args = vec![command, "-f", path.to_str().expect("utf-8")];
        if command == "convert" {
            args.extend(["--to", "kdl"]);
        }
        let out = run_bounded(&args);
        assert_eq!(out.code, 1, "{command}: {}{}", out.stdout, out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains("error[too-large]"))
            .unwrap_or_else(|| panic!("{command}: no too-large error:\n{}", out.stderr));
        // file:line:col of an alias on one of the expanding lines.
        assert!(line.contains("bomb.yaml:"), "{line}");
        assert!(line.contains("alias"), "{line}");
    }
}

#[test]
fn validate_refuses_an_oversized_file_without_reading_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    // 4 GiB, sparse: read whole, it would not fit in the capped address space.
    std::fs::File::create(&path)
        .and_then(|file| file.set_len(4 << 30))
        .expect("sparse file");
    let out = run_bounded(&["validate", "-f", path.to_str().expect("utf-8")]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("huge.yaml") && out.stderr.contains("MiB a spec file may have"),
        "{}",
        out.stderr
    );
}
