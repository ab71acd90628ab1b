//! The `McpSurface` kind: the same model from YAML and KDL, each host's effective surface (every
//! surface that selects a host applies), and diagnostics with file:line:col for an unknown
//! toolset, a bad mode, an empty list and a missing field.

use remote_agents_spec::{Code, HostFacts, Mode, Toolset, load};
use std::collections::BTreeSet;

const FLEET_YAML: &str = "\
apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: f}
spec:
  hosts:
    - {name: db-1, tags: [prod, db]}
    - {name: web-1, tags: [prod, web]}
    - {name: dev-1, tags: [dev]}
";

const SURFACES_YAML: &str = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: prod-read-only}
spec:
  target: tag:prod
  toolsets: [core, files, git, fleet]
  maxMode: plan
---
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: no-fan-out-from-db}
spec:
  target: tag:db
  toolsets: [core, files, transfer]
";

const SURFACES_KDL: &str = "\
McpSurface prod-read-only {
    target \"tag:prod\"
    toolsets core files git fleet
    maxMode plan
}
McpSurface no-fan-out-from-db {
    target \"tag:db\"
    toolsets core files transfer
}
";

#[test]
fn yaml_and_kdl_surfaces_load_to_the_same_model() {
    let (yaml, diagnostics) = load(&[("f.yaml", FLEET_YAML), ("s.yaml", SURFACES_YAML)]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (kdl, diagnostics) = load(&[("f.yaml", FLEET_YAML), ("s.kdl", SURFACES_KDL)]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(yaml, kdl);
    assert_eq!(yaml.documents[1].kind(), "McpSurface");
}

#[test]
fn every_surface_that_selects_a_host_applies() {
    let (model, diagnostics) = load(&[("f.yaml", FLEET_YAML), ("s.yaml", SURFACES_YAML)]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");

    let web = model.effective_config(&HostFacts::new("web-1"));
    let surface = web.mcp_surface.clone().expect("web-1 is prod");
    assert_eq!(
        surface.toolsets,
        BTreeSet::from([Toolset::Core, Toolset::Files, Toolset::Git, Toolset::Fleet])
    );
    assert_eq!(surface.max_mode, Some(Mode::Plan));
    assert_eq!(surface.describe(), "McpSurface prod-read-only (s.yaml:1)");

    // db-1 is selected by both: the toolsets both allow, the strictest ceiling.
    let db = model.effective_config(&HostFacts::new("db-1"));
    let surface = db.mcp_surface.clone().expect("db-1 is prod and db");
    assert_eq!(
        surface.toolsets,
        BTreeSet::from([Toolset::Core, Toolset::Files])
    );
    assert_eq!(surface.max_mode, Some(Mode::Plan));
    assert_eq!(surface.surfaces.len(), 2);
    assert!(
        db.to_text().contains("prod-read-only core,files max plan"),
        "{}",
        db.to_text()
    );

    let dev = model.effective_config(&HostFacts::new("dev-1"));
    assert_eq!(dev.mcp_surface, None);
    assert!(!dev.to_text().contains("mcp"), "{}", dev.to_text());
}

/// (file, text) → the one diagnostic's code, file:line:col, path and message.
fn only_diagnostic(file: &str, text: &str) -> (Code, String, String, String) {
    let (_, diagnostics) = load(&[(file, text)]);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    (
        d.code,
        format!("{}:{}:{}", d.loc.file, d.loc.line, d.loc.col),
        d.field.clone(),
        d.message.clone(),
    )
}

#[test]
fn a_bad_surface_is_reported_at_its_line() {
    let unknown_toolset = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: s}
spec:
  target: tag:prod
  toolsets: [core, shell]
";
    assert_eq!(
        only_diagnostic("s.yaml", unknown_toolset),
        (
            Code::UnknownToolset,
            "s.yaml:6:20".into(),
            "spec.toolsets[1]".into(),
            "unknown toolset `shell`".into()
        )
    );
    let unknown_toolset_kdl = "\
McpSurface s {
    target \"tag:prod\"
    toolsets core filez
}
";
    let (code, at, path, message) = only_diagnostic("s.kdl", unknown_toolset_kdl);
    assert_eq!(
        (code, at.as_str(), path.as_str(), message.as_str()),
        (
            Code::UnknownToolset,
            "s.kdl:3:19",
            "spec.toolsets[1]",
            "unknown toolset `filez`"
        )
    );
    let bad_mode = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: s}
spec:
  target: tag:prod
  toolsets: [core]
  maxMode: read-only
";
    assert_eq!(
        only_diagnostic("s.yaml", bad_mode),
        (
            Code::UnknownMode,
            "s.yaml:7:12".into(),
            "spec.maxMode".into(),
            "unknown mode `read-only`".into()
        )
    );
    let empty = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: s}
spec:
  target: tag:prod
  toolsets: []
";
    let (code, at, path, _) = only_diagnostic("s.yaml", empty);
    assert_eq!(
        (code, at.as_str(), path.as_str()),
        (Code::BadValue, "s.yaml:6:13", "spec.toolsets")
    );
    let missing = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: s}
spec:
  target: tag:prod
";
    let (code, _, path, _) = only_diagnostic("s.yaml", missing);
    assert_eq!((code, path.as_str()), (Code::MissingField, "spec.toolsets"));
    let bad_selector = "\
apiVersion: remote-agents.dev/v1
kind: McpSurface
metadata: {name: s}
spec:
  target: 'tag:'
  toolsets: [core]
";
    let (code, at, path, _) = only_diagnostic("s.yaml", bad_selector);
    assert_eq!(
        (code, at.as_str(), path.as_str()),
        (Code::BadSelector, "s.yaml:5:16", "spec.target")
    );
}
