//! Policy tests in the fleet repo (`spec.tests`): each shape of assertion (operator capability,
//! host mode, writable/readable paths) passes when the fleet makes it hold and fails, at the
//! assertion's own file:line:col and with what holds instead, when it does not, in YAML and KDL.

use remote_agents_spec::{Code, Diagnostic, Severity, load_one};

const ALICE: &str = "ed25519:fzxF0CLSFRgqQWn0CKbG5caOAq0tp3flKNEQgTrerLY=";
const BOB: &str = "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A fleet with two operators, a web and a database host; `tests` is appended under `spec`.
fn yaml_fleet(tests: &str) -> String {
    format!(
        "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {{name: policy}}
spec:
  operators:
    - {{name: alice, key: \"{ALICE}\", target: \"tag:web\", allow: [read, exec]}}
    - {{name: bob, key: \"{BOB}\", allow: [read]}}
  defaults:
    mode: plan
    policy:
      paths:
        deny: [\"~/.ssh/**\"]
  hosts:
    - {{name: web-1, tags: [web]}}
    - {{name: db-1, tags: [db]}}
  rules:
    - name: web-edit
      target: tag:web
      mode: edit
      policy:
        paths:
          allow: [\"/srv/www/**\"]
    - name: db-config
      target: tag:db
      mode: edit
      policy:
        paths:
          allow: [\"/etc/nginx/**\", \"/srv/db/**\"]
          deny: [\"/srv/db/secret/**\"]
  tests:
{tests}"
    )
}

/// The same fleet in KDL; `tests` are the `-` items of the `tests` block.
fn kdl_fleet(tests: &str) -> String {
    format!(
        "Fleet policy {{
    operators {{
        - alice {{ key \"{ALICE}\"; target \"tag:web\"; allow read exec; }}
        - bob {{ key \"{BOB}\"; allow read; }}
    }}
    defaults {{
        mode plan
        policy {{ paths {{ deny \"~/.ssh/**\"; }}; }}
    }}
    hosts {{
        - web-1 {{ tags web; }}
        - db-1 {{ tags db; }}
    }}
    rules {{
        - web-edit {{
            target \"tag:web\"
            mode edit
            policy {{ paths {{ allow \"/srv/www/**\"; }}; }}
        }}
        - db-config {{
            target \"tag:db\"
            mode edit
            policy {{ paths {{ allow \"/etc/nginx/**\" \"/srv/db/**\"; deny \"/srv/db/secret/**\"; }}; }}
        }}
    }}
    tests {{
{tests}    }}
}}
"
    )
}

fn diagnostics(path: &str, text: &str) -> Vec<Diagnostic> {
    load_one(path, text).1
}

/// The 1-based line and column where `needle` first appears in the tests of `text`.
fn position(text: &str, needle: &str) -> (u32, u32) {
    let tests = text
        .find("  tests:\n")
        .or_else(|| text.find("    tests {"))
        .expect("a tests block");
    let offset = tests
        + text[tests..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in {text}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let col = (offset - before.rfind('\n').map_or(0, |i| i + 1)) as u32 + 1;
    (line, col)
}

/// Exactly one error, a failed policy test at `needle`'s position, whose message has `parts`.
fn one_failure(path: &str, text: &str, needle: &str, field: &str, parts: &[&str]) {
    let found = diagnostics(path, text);
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!(
        (d.severity, d.code, d.field.as_str()),
        (Severity::Error, Code::PolicyTestFailed, field),
        "{d}"
    );
    let (line, col) = position(text, needle);
    assert_eq!(
        (&*d.loc.file, d.loc.line, d.loc.col),
        (path, line, col),
        "{d}"
    );
    for part in parts {
        assert!(d.message.contains(part), "{part:?} not in: {}", d.message);
    }
}

/// Every shape of assertion that holds in this fleet.
const PASSING_YAML: &str = "    - name: alice-runs-the-web
      target: tag:web
      operator: alice
      accept: [exec, read]
      deny: [write, apply]
    - name: bob-only-reads
      target: all
      operator: bob
      accept: [read]
      deny: [exec, write, git]
    - name: keyless-does-nothing
      target: all
      deny: [read, exec]
    - name: modes
      target: \"name:web-1\"
      mode: edit
    - name: web-paths
      target: tag:web
      writable: [/srv/www/index.html, \"/srv/www/**\"]
      unwritable: [\"/etc/**\", /srv/db/data]
      readable: [/srv/www/index.html]
      unreadable: [\"~/.ssh/**\", /etc/shadow]
    - name: db-paths
      target: tag:db
      writable: [\"/etc/nginx/**\"]
      unwritable: [\"/srv/db/secret/**\", /etc/sudoers, \"/boot/**\"]
";

const PASSING_KDL: &str = "        - alice-runs-the-web { target \"tag:web\"; operator alice; accept exec read; deny write apply; }
        - bob-only-reads { target all; operator bob; accept read; deny exec write git; }
        - keyless-does-nothing { target all; deny read exec; }
        - modes { target \"name:web-1\"; mode edit; }
        - web-paths {
            target \"tag:web\"
            writable \"/srv/www/index.html\" \"/srv/www/**\"
            unwritable \"/etc/**\" \"/srv/db/data\"
            readable \"/srv/www/index.html\"
            unreadable \"~/.ssh/**\" \"/etc/shadow\"
        }
        - db-paths {
            target \"tag:db\"
            writable \"/etc/nginx/**\"
            unwritable \"/srv/db/secret/**\" \"/etc/sudoers\" \"/boot/**\"
        }
";

#[test]
fn assertions_of_every_shape_that_hold_pass_in_yaml_and_kdl() {
    let yaml = diagnostics("fleet.yaml", &yaml_fleet(PASSING_YAML));
    assert!(yaml.is_empty(), "{yaml:#?}");
    let kdl = diagnostics("fleet.kdl", &kdl_fleet(PASSING_KDL));
    assert!(kdl.is_empty(), "{kdl:#?}");
    let (from_yaml, _) = load_one("fleet.yaml", &yaml_fleet(PASSING_YAML));
    let (from_kdl, _) = load_one("fleet.kdl", &kdl_fleet(PASSING_KDL));
    assert_eq!(
        from_yaml, from_kdl,
        "the two spellings declare the same tests"
    );
}

#[test]
fn an_operator_capability_that_does_not_hold_fails_at_its_line() {
    // Allowed the capability nowhere.
    let text = yaml_fleet(
        "    - target: tag:web
      operator: alice
      accept: [exec, WRITE-HERE]
",
    )
    .replace("WRITE-HERE", "write");
    let text_needle = "write]\n";
    one_failure(
        "fleet.yaml",
        &text,
        text_needle,
        "spec.tests[0].accept[1]",
        &[
            "expected operator `alice` may write on `tag:web`",
            "on web-1: operator `alice` may not write (allowed: read, exec)",
        ],
    );
    // Allowed the capability, but not on these hosts.
    let text = yaml_fleet("    - {target: tag:db, operator: alice, accept: [exec]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "exec]}",
        "spec.tests[0].accept[0]",
        &["on db-1: operator `alice` may only command hosts matching `tag:web`"],
    );
    // A deny that does not hold names the operator entry that grants it.
    let text = yaml_fleet("    - {target: \"name:web-1\", operator: bob, deny: [read]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "read]}",
        "spec.tests[0].deny[0]",
        &[
            "expected operator `bob` may not read on `name:web-1`",
            "on web-1: it may: operator `bob` declared at fleet.yaml:7 allows it",
        ],
    );
    // The mode takes part: exec is granted, but a disabled host runs nothing.
    let text = yaml_fleet("    - {target: \"name:web-1\", operator: alice, accept: [exec]}\n")
        .replace(
            "    - {name: web-1, tags: [web]}",
            "    - {name: web-1, tags: [web], mode: disabled}",
        );
    one_failure(
        "fleet.yaml",
        &text,
        "exec]}",
        "spec.tests[0].accept[0]",
        &["the host is in disabled mode (set at fleet.yaml:14), which refuses exec"],
    );
}

#[test]
fn a_host_in_another_mode_fails_with_the_line_that_set_it() {
    let text = yaml_fleet("    - {name: db-read-only, target: \"name:db-1\", mode: plan}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "plan}",
        "spec.tests[0].mode",
        &[
            "policy test `db-read-only`: expected `name:db-1` in plan mode",
            // The db-config rule's `mode: edit` line.
            "on db-1: it is in edit mode, set at fleet.yaml:25",
        ],
    );
}

#[test]
fn a_path_glob_the_lists_open_fails_naming_the_glob_that_opens_it() {
    let text =
        yaml_fleet("    - {name: no-etc-on-db, target: tag:db, unwritable: [\"/etc/**\"]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "\"/etc/**\"]}",
        "spec.tests[0].unwritable[0]",
        &[
            "policy test `no-etc-on-db`: expected no write of `/etc/**` on `tag:db`",
            "on db-1: /etc/nginx/x may be written: allow glob `/etc/nginx/**` at fleet.yaml:28",
            "(mode edit, set at fleet.yaml:25)",
        ],
    );
    // With no allow list at all, a sample of the glob itself is the witness.
    let text = yaml_fleet("    - {target: tag:db, unwritable: [\"/var/**\"]}\n")
        .replace("          allow: [\"/etc/nginx/**\", \"/srv/db/**\"]\n", "");
    one_failure(
        "fleet.yaml",
        &text,
        "\"/var/**\"]}",
        "spec.tests[0].unwritable[0]",
        &["/var/x may be written: no deny glob or hard limit covers it and there is no allow list"],
    );
}

#[test]
fn a_path_that_should_be_open_fails_with_what_closes_it() {
    // The deny glob inside the allowed folder.
    let text = yaml_fleet("    - {target: tag:db, writable: [\"/srv/db/**\"]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "\"/srv/db/**\"]}",
        "spec.tests[0].writable[0]",
        &[
            "on db-1: /srv/db/secret/x may not be written: deny glob `/srv/db/secret/**` at fleet.yaml:29 matches it",
        ],
    );
    // Not on the allow list.
    let text = yaml_fleet("    - {target: \"name:web-1\", writable: [/var/www/a]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "/var/www/a]}",
        "spec.tests[0].writable[0]",
        &[
            "/var/www/a may not be written: it is not on the path allow list (`/srv/www/**` at fleet.yaml:22)",
        ],
    );
    // A built-in hard limit, which holds in every mode.
    let text = yaml_fleet("    - {target: all, readable: [/etc/shadow]}\n");
    one_failure(
        "fleet.yaml",
        &text,
        "/etc/shadow]}",
        "spec.tests[0].readable[0]",
        &[
            "/etc/shadow may not be read: a built-in hard limit protects it in every mode",
            "on web-1: /etc/shadow",
            "(also fails on db-1)",
        ],
    );
    // Plan mode refuses every write.
    let text = yaml_fleet("    - {target: \"name:web-1\", writable: [/srv/www/a]}\n").replace(
        "      mode: edit\n      policy:\n        paths:\n          allow: [\"/srv/www/**\"]",
        "      policy:\n        paths:\n          allow: [\"/srv/www/**\"]",
    );
    one_failure(
        "fleet.yaml",
        &text,
        "/srv/www/a]}",
        "spec.tests[0].writable[0]",
        &[
            "/srv/www/a may not be written: the node is in plan mode (read-only): writes are refused (mode set at fleet.yaml:9)",
        ],
    );
}

#[test]
fn failing_assertions_in_kdl_point_at_the_kdl_line() {
    let text = kdl_fleet(
        "        - no-etc-on-db { target \"tag:db\"; unwritable \"/etc/**\"; }
        - db-read-only { target \"name:db-1\"; mode plan; }
        - bob-reads-not { target \"name:web-1\"; operator bob; deny read; }
",
    );
    let found = diagnostics("fleet.kdl", &text);
    let summary: Vec<(Code, u32, u32, &str)> = found
        .iter()
        .map(|d| (d.code, d.loc.line, d.loc.col, d.field.as_str()))
        .collect();
    let at = |needle: &str| position(&text, needle);
    assert_eq!(
        summary,
        vec![
            (
                Code::PolicyTestFailed,
                at("\"/etc/**\"; }").0,
                at("\"/etc/**\"; }").1,
                "spec.tests[0].unwritable[0]"
            ),
            (
                Code::PolicyTestFailed,
                at("plan; }").0,
                at("plan; }").1,
                "spec.tests[1].mode"
            ),
            (
                Code::PolicyTestFailed,
                at("deny read; }").0,
                at("deny read; }").1 + 5,
                "spec.tests[2].deny[0]"
            ),
        ],
        "{found:#?}"
    );
    assert!(
        found[0]
            .message
            .contains("/etc/nginx/x may be written: allow glob `/etc/nginx/**` at fleet.kdl:23"),
        "{}",
        found[0]
    );
    assert!(
        found[1]
            .message
            .contains("it is in edit mode, set at fleet.kdl:22"),
        "{}",
        found[1]
    );
}

#[test]
fn tests_that_cannot_assert_anything_are_errors() {
    let text = yaml_fleet(
        "    - {target: tag:nosuch, mode: plan}
    - {target: \"name:web-1\"}
    - {target: \"name:web-1\", operator: carol, accept: [read]}
",
    );
    let found = diagnostics("fleet.yaml", &text);
    let summary: Vec<(Code, &str)> = found.iter().map(|d| (d.code, d.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Code::PolicyTestFailed, "spec.tests[0].target"),
            (Code::MissingField, "spec.tests[1]"),
            (Code::BadValue, "spec.tests[2].operator"),
        ],
        "{found:#?}"
    );
    assert!(found[0].message.contains("selects no declared host"));
    assert!(found[1].message.contains("asserts nothing"));
    assert!(found[2].message.contains("no operator named `carol`"));
    // An operator may also be named by its key.
    let text = yaml_fleet(&format!(
        "    - {{target: \"name:web-1\", operator: \"{ALICE}\", accept: [exec]}}\n"
    ));
    assert!(diagnostics("fleet.yaml", &text).is_empty());
}
