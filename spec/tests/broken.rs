//! One fixture per error class in `fixtures/broken/`: each gives exactly one diagnostic, of the
//! right class, at the right line and column.

use remote_agents_spec::{Code, Severity, load};

fn diagnose(name: &str) -> Vec<remote_agents_spec::Diagnostic> {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("tests/fixtures/broken")
    .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    load(&[(name, text)]).1
}

#[test]
fn each_broken_fixture_gives_one_diagnostic_at_the_right_place() {
    let cases: &[(&str, Code, Severity, u32, u32, &str)] = &[
        ("syntax.yaml", Code::Syntax, Severity::Error, 9, 1, ""),
        ("syntax.kdl", Code::Syntax, Severity::Error, 2, 11, ""),
        (
            "unknown-kind.yaml",
            Code::UnknownKind,
            Severity::Error,
            2,
            7,
            "kind",
        ),
        (
            "unknown-field.yaml",
            Code::UnknownField,
            Severity::Error,
            8,
            7,
            "spec.hosts[0].tag",
        ),
        (
            "unknown-field.kdl",
            Code::UnknownField,
            Severity::Error,
            5,
            13,
            "spec.hosts[0].mood",
        ),
        (
            "wrong-type.yaml",
            Code::WrongType,
            Severity::Error,
            13,
            12,
            "spec.retries",
        ),
        (
            "duplicate-name.yaml",
            Code::DuplicateName,
            Severity::Error,
            9,
            13,
            "spec.hosts[2].name",
        ),
        (
            "bad-cron.yaml",
            Code::BadCron,
            Severity::Error,
            7,
            9,
            "spec.cron",
        ),
        // Column 16 is the second `,` inside the quoted selector.
        (
            "bad-selector.yaml",
            Code::BadSelector,
            Severity::Error,
            6,
            16,
            "spec.target",
        ),
        (
            "bad-glob.yaml",
            Code::BadGlob,
            Severity::Error,
            9,
            16,
            "spec.defaults.policy.paths.deny[0]",
        ),
        (
            "unknown-mode.yaml",
            Code::UnknownMode,
            Severity::Error,
            7,
            11,
            "spec.defaults.mode",
        ),
        (
            "bad-operator-key.yaml",
            Code::BadOperatorKey,
            Severity::Error,
            8,
            12,
            "spec.operators[0].key",
        ),
        (
            "rule-never-matches.yaml",
            Code::RuleNeverMatches,
            Severity::Warning,
            10,
            15,
            "spec.rules[0].target",
        ),
    ];
    let fixtures = std::fs::read_dir(
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
        )
        .join("tests/fixtures/broken"),
    )
    .expect("fixtures dir")
    .count();
    assert_eq!(fixtures, cases.len(), "every fixture has a case");
    for (name, code, severity, line, col, field) in cases {
        let diagnostics = diagnose(name);
        assert_eq!(diagnostics.len(), 1, "{name}: {diagnostics:#?}");
        let d = &diagnostics[0];
        assert_eq!(
            (d.code, d.severity, d.loc.line, d.loc.col, d.field.as_str()),
            (*code, *severity, *line, *col, *field),
            "{name}: {d}"
        );
        assert_eq!(&*d.loc.file, *name);
        if !matches!(
            code,
            Code::Syntax | Code::DuplicateName | Code::RuleNeverMatches
        ) {
            assert!(d.expected.is_some(), "{name} says what was expected");
        }
        assert!(
            d.hint.is_some() || *code == Code::Syntax,
            "{name} has a hint"
        );
    }
}

#[test]
fn all_problems_of_a_file_are_reported_not_just_the_first() {
    let text = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: many}
spec:
  defaults: {mode: nope}
  hosts:
    - {name: a, tags: 3}
    - {name: b, colour: red}
    - {name: a}
  rules:
    - {target: 'web,,', mode: edit}
---
apiVersion: remote-agents.dev/v2
kind: Schedule
metadata: {name: s}
spec: {target: all, cron: '* * *', command: [x]}
";
    let (model, diagnostics) = load(&[("many.yaml", text)]);
    let codes: Vec<(Code, u32)> = diagnostics.iter().map(|d| (d.code, d.loc.line)).collect();
    assert_eq!(
        codes,
        [
            (Code::UnknownMode, 5),
            (Code::WrongType, 7),
            (Code::UnknownField, 8),
            (Code::DuplicateName, 9),
            (Code::BadSelector, 11),
            (Code::BadApiVersion, 13),
            (Code::BadCron, 16),
        ],
        "{diagnostics:#?}"
    );
    // The model is still built, so later stages can report on the rest.
    assert_eq!(model.documents.len(), 2);
}

/// Fields of a declared job that would be accepted and then do nothing are refused.
#[test]
fn job_fields_that_would_do_nothing_are_refused() {
    let job = |fields: &str| {
        format!(
            "apiVersion: remote-agents.dev/v1\nkind: MapReduceJob\nmetadata: {{name: j}}\nspec:\n  \
             target: all\n  input: {{files: [/var/log/*.log]}}\n  map: {{command: [wc]}}\n  \
             reduce: {{builtin: sum}}\n{fields}"
        )
    };
    let diagnose = |text: String| {
        load(&[("job.yaml", text)])
            .1
            .into_iter()
            .map(|d| {
                assert!(d.expected.is_some() || d.hint.is_some(), "{d}");
                (d.code, d.loc.line, d.field)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        diagnose(job("  partitions: 4\n")),
        [(Code::BadValue, 9, "spec.partitions".to_string())]
    );
    assert_eq!(
        diagnose(job("  trigger: on-apply\n  cron: '*/5 * * * *'\n")),
        [(Code::BadValue, 10, "spec.cron".to_string())]
    );
    assert_eq!(
        diagnose(job("  trigger: cron\n")),
        [(Code::MissingField, 9, "spec.trigger".to_string())]
    );
    assert!(diagnose(job("  trigger: cron\n  cron: '*/5 * * * *'\n")).is_empty());
    assert!(diagnose(job("  trigger: on-apply\n")).is_empty());
}

#[test]
fn duplicate_keys_and_missing_fields_are_reported() {
    let text = "apiVersion: remote-agents.dev/v1\nkind: Schedule\nmetadata: {name: s}\nspec:\n  target: all\n  target: web\n  command: [x]\n";
    let (_, diagnostics) = load(&[("dup.yaml", text)]);
    let codes: Vec<(Code, u32, u32)> = diagnostics
        .iter()
        .map(|d| (d.code, d.loc.line, d.loc.col))
        .collect();
    assert_eq!(
        codes,
        [(Code::MissingField, 5, 3), (Code::DuplicateKey, 6, 3)]
    );
}

#[test]
fn files_that_are_not_spec_files_are_reported() {
    let (_, diagnostics) = load(&[("notes.txt", "hello")]);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].code, Code::Syntax);
}
