//! The JSON Schemas in `schemas/` are generated from the model; this test fails when they are
//! stale. Regenerate with `UPDATE_SCHEMAS=1 cargo test -p remote-agents-spec --test schemas`.

#[test]
fn checked_in_schemas_are_up_to_date() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, text) in remote_agents_spec::schema::all() {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            if update {
                std::fs::write(&path, &text).expect("write schema");
            } else {
                stale.push(name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p remote-agents-spec --test schemas`"
    );
}

#[test]
fn schemas_are_draft_07_and_name_the_kind() {
    for (name, text) in remote_agents_spec::schema::all() {
        let schema: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            schema["$schema"], "http://json-schema.org/draft-07/schema#",
            "{name}"
        );
        let kind = &schema["properties"]["kind"];
        assert!(
            kind.to_string().contains("enum") || kind.to_string().contains("$ref"),
            "{name}: {kind}"
        );
    }
}

#[test]
fn example_files_point_editors_at_the_schemas() {
    let examples = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("../examples");
    for folder in ["fleet", "secure-fleet"] {
        for entry in std::fs::read_dir(examples.join(folder)).expect("examples") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let line = text
                .lines()
                .find(|l| l.starts_with("# yaml-language-server: $schema="))
                .unwrap_or_else(|| panic!("{} has no schema line", path.display()));
            let target = line.trim_start_matches("# yaml-language-server: $schema=");
            assert!(
                path.parent().unwrap().join(target).exists(),
                "{}: {target}",
                path.display()
            );
        }
    }
}
