//! Layering of the effective config: defaults, rules in order, glob then exact host entries;
//! deny lists add up, allow lists replace, host facts override live facts.

use remote_agents_spec::{HostFacts, Mode, Origin, load};

const SPEC: &str = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: f}
spec:
  defaults:
    mode: edit
    policy:
      paths: {allow: [/srv/**], deny: [/etc/shadow]}
  hosts:
    - name: lab-*
      tags: [lab]
      mode: plan
    - name: lab-1
      mode: bypass
      facts: {os: linux}
      policy:
        commands: {deny: [reboot]}
  rules:
    - target: lab
      mode: disabled
      policy:
        paths: {allow: [/tmp/**], deny: [/root/**]}
    - target: os:linux & lab
      policy:
        paths: {deny: [/etc/shadow, /boot/**]}
";

#[test]
fn layers_apply_in_order_with_origins() {
    let (model, diagnostics) = load(&[("f.yaml", SPEC)]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let values = |list: &[remote_agents_spec::Sourced<String>]| {
        list.iter()
            .map(|s| format!("{}@{}", s.value, s.from))
            .collect::<Vec<_>>()
    };

    let lab_1 = model.effective_config(&HostFacts::new("lab-1").with_fact("os", "darwin"));
    // The exact entry comes after the glob entry, so its mode wins over the glob's and the rules'.
    assert_eq!(lab_1.mode.value, Mode::Bypass);
    assert_eq!(lab_1.mode.from.to_string(), "f.yaml:14");
    assert_eq!(lab_1.facts["os"].value, "linux");
    assert_eq!(values(&lab_1.policy.paths.allow), ["/tmp/**@f.yaml:22"]);
    assert_eq!(
        values(&lab_1.policy.paths.deny),
        [
            "/etc/shadow@f.yaml:8",
            "/root/**@f.yaml:22",
            "/boot/**@f.yaml:25"
        ]
    );
    assert_eq!(values(&lab_1.policy.commands.deny), ["reboot@f.yaml:17"]);
    assert_eq!(lab_1.rules.len(), 2);

    let lab_2 = model.effective_config(&HostFacts::new("lab-2"));
    assert_eq!(
        lab_2.mode.value,
        Mode::Plan,
        "the glob entry overrides the rule"
    );
    assert_eq!(
        lab_2.rules.len(),
        1,
        "no os fact, so the second rule does not match"
    );

    let other = model.effective_config(&HostFacts::new("web-9").with_tag("lab"));
    assert_eq!(
        other.mode.value,
        Mode::Disabled,
        "live tags take part in matching"
    );
    assert_eq!(other.tags[0].from, Origin::Live);
}

#[test]
fn a_model_without_a_fleet_gives_built_in_defaults() {
    let (model, _) = load::<&str, &str>(&[]);
    let config = model.effective_config(&HostFacts::new("any"));
    assert_eq!(config.mode.value, Mode::Plan);
    assert_eq!(config.mode.from, Origin::BuiltIn);
    assert!(config.policy.paths.deny.is_empty());
}
