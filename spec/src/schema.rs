//! JSON Schema (draft-07, for editors) of every spec kind, generated from the model types.

use crate::model::{
    FleetDocument, MapReduceJobDocument, McpSurfaceDocument, RolloutDocument, ScheduleDocument,
    WindowDocument,
};
use schemars::generate::SchemaSettings;

/// (file name in `schemas/`, pretty JSON) for every kind.
pub fn all() -> Vec<(&'static str, String)> {
    let generator = || SchemaSettings::draft07().into_generator();
    let pretty = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        (
            "fleet.schema.json",
            pretty(generator().into_root_schema_for::<FleetDocument>()),
        ),
        (
            "schedule.schema.json",
            pretty(generator().into_root_schema_for::<ScheduleDocument>()),
        ),
        (
            "mapreducejob.schema.json",
            pretty(generator().into_root_schema_for::<MapReduceJobDocument>()),
        ),
        (
            "mcpsurface.schema.json",
            pretty(generator().into_root_schema_for::<McpSurfaceDocument>()),
        ),
        (
            "window.schema.json",
            pretty(generator().into_root_schema_for::<WindowDocument>()),
        ),
        (
            "rollout.schema.json",
            pretty(generator().into_root_schema_for::<RolloutDocument>()),
        ),
    ]
}

/// The schema file name of a kind.
pub fn file_name(kind: &str) -> &'static str {
    match kind {
        "Fleet" => "fleet.schema.json",
        "Schedule" => "schedule.schema.json",
        "McpSurface" => "mcpsurface.schema.json",
        "Window" => "window.schema.json",
        "Rollout" => "rollout.schema.json",
        _ => "mapreducejob.schema.json",
    }
}
