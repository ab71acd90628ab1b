//! What the spec reader targets share: load one file, check the diagnostics point inside it, and
//! run the model through what fleetctl and nodes do next (effective configs, conversion).

use remote_agents_spec::{HostFacts, has_errors, load, to_kdl, to_yaml};

pub fn check_load(name: &str, text: &str) {
    let (model, diagnostics) = load(&[(name, text)]);
    for diagnostic in &diagnostics {
        assert!(
            diagnostic.loc.offset as usize <= text.len(),
            "diagnostic outside the input: {diagnostic}"
        );
        // Rendering a diagnostic (what `fleetctl validate` prints) must not panic either.
        let _ = diagnostic.to_string();
    }
    if has_errors(&diagnostics) {
        return;
    }
    for host in model.declared_hosts() {
        let _ = model.effective_config(&HostFacts::new(host)).to_text();
    }
    let _ = to_yaml(&model);
    let _ = to_kdl(&model);
}
