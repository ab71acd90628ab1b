//! Rollouts (`kind: Rollout`): the same waves from YAML and KDL, the waves planned for a fleet's
//! hosts, and mistakes reported at file:line:col with the field they are in.

use remote_agents_spec::rollout::plan_waves;
use remote_agents_spec::{Code, HostFacts, load, load_one};

const ROLLOUT: &str = "apiVersion: remote-agents.dev/v1
kind: Rollout
metadata: {name: staged}
spec:
  waves:
    - name: canary
      target: tag:canary
    - count: 2
  checks:
    - name: service-up
      shell: systemctl is-active app
      timeout: 20s
  failureThreshold: 2
  waveTimeout: 3m
";

const ROLLOUT_KDL: &str = "Rollout staged {
    waves {
        - canary { target \"tag:canary\"; }
        - { count 2; }
    }
    checks {
        - service-up {
            shell \"systemctl is-active app\"
            timeout \"20s\"
        }
    }
    failureThreshold 2
    waveTimeout \"3m\"
}
";

#[test]
fn a_rollout_reads_the_same_from_yaml_and_kdl() {
    let (yaml, diagnostics) = load(&[("rollout.yaml", ROLLOUT)]);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let (kdl, diagnostics) = load(&[("rollout.kdl", ROLLOUT_KDL)]);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(yaml.documents, kdl.documents);
    let rollout = yaml.rollout().expect("one rollout");
    assert_eq!(rollout.metadata.name, "staged");
    assert_eq!(rollout.spec.failure_threshold(), 2);
    assert_eq!(
        rollout.spec.wave_timeout(),
        Some(std::time::Duration::from_secs(180))
    );
    assert_eq!(
        rollout.spec.checks[0].shell.as_deref(),
        Some("systemctl is-active app")
    );
    let hosts = [
        HostFacts::new("web-1"),
        HostFacts::new("web-2").with_tag("canary"),
        HostFacts::new("web-3"),
        HostFacts::new("web-4"),
    ];
    let waves: Vec<(String, Vec<String>)> = plan_waves(&rollout.spec, &hosts)
        .into_iter()
        .map(|w| (w.name, w.hosts))
        .collect();
    assert_eq!(
        waves,
        vec![
            ("canary".to_string(), vec!["web-2".to_string()]),
            (
                "wave-2".to_string(),
                vec!["web-1".to_string(), "web-3".to_string()]
            ),
            ("rest".to_string(), vec!["web-4".to_string()]),
        ]
    );
}

#[test]
fn mistakes_in_a_rollout_are_reported_at_their_field() {
    // (replace this, with this, field, line, message)
    let cases: &[(&str, &str, &str, u32, &str)] = &[
        (
            "    - count: 2\n",
            "    - count: 2\n      percent: 10\n",
            "spec.waves[1]",
            8,
            "picks its hosts in 2 ways",
        ),
        (
            "    - count: 2\n",
            "    - count: 0\n",
            "spec.waves[1].count",
            8,
            "a wave of 0 hosts",
        ),
        (
            "    - count: 2\n",
            "    - percent: 150\n",
            "spec.waves[1].percent",
            8,
            "a wave of 150% of the hosts",
        ),
        (
            "      target: tag:canary\n",
            "      target: \"tag:\"\n",
            "spec.waves[0].target",
            7,
            "",
        ),
        (
            "      timeout: 20s\n",
            "      timeout: soon\n",
            "spec.checks[0].timeout",
            12,
            "bad duration `soon`",
        ),
        (
            "      shell: systemctl is-active app\n",
            "",
            "spec.checks[0]",
            10,
            "neither `command` nor `shell`",
        ),
        (
            "  failureThreshold: 2\n",
            "  failureThreshold: 0\n",
            "spec.failureThreshold",
            13,
            "a failure threshold of 0 hosts",
        ),
        (
            "  waveTimeout: 3m\n",
            "  waveTimeout: later\n",
            "spec.waveTimeout",
            14,
            "bad duration `later`",
        ),
    ];
    for (from, to, field, line, message) in cases {
        let text = ROLLOUT.replace(from, to);
        assert_ne!(text, ROLLOUT, "{from} not in the rollout");
        let (_, diagnostics) = load_one("rollout.yaml", &text);
        assert_eq!(diagnostics.len(), 1, "{text}\n{diagnostics:#?}");
        let d = &diagnostics[0];
        assert_eq!(
            (d.field.as_str(), d.loc.line, &*d.loc.file),
            (*field, *line, "rollout.yaml"),
            "{d}"
        );
        assert!(d.message.contains(message), "{d}");
    }
    // An unknown field names the fields a wave has.
    let (_, diagnostics) = load_one(
        "rollout.yaml",
        &ROLLOUT.replace("    - count: 2\n", "    - hosts: 2\n"),
    );
    assert!(
        diagnostics.iter().any(|d| d.code == Code::UnknownField
            && d.field == "spec.waves[1].hosts"
            && d.loc.line == 8
            && d.expected.as_deref() == Some("one of name, target, count, percent")),
        "{diagnostics:#?}"
    );
    // No waves at all.
    let (_, diagnostics) = load_one(
        "rollout.yaml",
        "apiVersion: remote-agents.dev/v1\nkind: Rollout\nmetadata: {name: r}\nspec:\n  waves: []\n",
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(
        (diagnostics[0].field.as_str(), diagnostics[0].loc.line),
        ("spec.waves", 5)
    );
    // A mistake in KDL is found at its line too.
    let (_, diagnostics) = load_one(
        "rollout.kdl",
        &ROLLOUT_KDL.replace("- { count 2; }", "- { count 0; }"),
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(
        (diagnostics[0].field.as_str(), diagnostics[0].loc.line),
        ("spec.waves[1].count", 4)
    );
}

#[test]
fn a_fleet_declares_at_most_one_rollout() {
    let second = ROLLOUT.replace("name: staged", "name: other");
    let (_, diagnostics) = load(&[("a.yaml", ROLLOUT), ("b.yaml", second.as_str())]);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(&*diagnostics[0].loc.file, "b.yaml");
    assert!(diagnostics[0].message.contains("a second Rollout document"));
}
