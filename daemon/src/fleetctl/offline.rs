//! The offline fleetctl commands: they read spec files and print; nothing leaves the machine.

use super::{
    ConvertArgs, DiffArgs, EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, ExplainArgs, Output, Spelling,
    ValidateArgs,
};
use anyhow::Result;
use remote_agents_node::sources::{read_at_revision, read_paths};
use remote_agents_spec::{Diagnostic, FleetModel, HostFacts, has_errors, load};
use std::collections::HashMap;
use std::path::Path;

/// Prints diagnostics to stderr with the offending source line and a caret under the column.
fn report(diagnostics: &[Diagnostic], files: &[(String, String)]) {
    let texts: HashMap<&str, &str> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    for diagnostic in diagnostics {
        eprintln!("{diagnostic}");
        let line = texts.get(&*diagnostic.loc.file).and_then(|text| {
            text.lines()
                .nth(diagnostic.loc.line.saturating_sub(1) as usize)
        });
        if let Some(line) = line {
            eprintln!("   | {line}");
            eprintln!(
                "   | {}^",
                " ".repeat(diagnostic.loc.col.saturating_sub(1) as usize)
            );
        }
    }
}

fn print_data(output: Output, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match output {
        Output::Text => print!("{}", text()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => print!("{}", remote_agents_spec::json_to_yaml(value)),
    }
}

/// Loads files, printing diagnostics; `None` when there are errors.
fn load_valid(files: &[(String, String)]) -> Option<FleetModel> {
    let (model, diagnostics) = load(files);
    report(&diagnostics, files);
    (!has_errors(&diagnostics)).then_some(model)
}

pub fn validate(args: &ValidateArgs) -> Result<u8> {
    let files = read_paths(&args.paths)?;
    let (model, diagnostics) = load(&files);
    report(&diagnostics, &files);
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let value = serde_json::json!({
        "valid": errors == 0,
        "files": files.len(),
        "documents": model.documents.len(),
        "diagnostics": diagnostics,
    });
    print_data(args.output, &value, || {
        if errors == 0 {
            format!(
                "valid: {} document(s) in {} file(s), {warnings} warning(s)\n",
                model.documents.len(),
                files.len()
            )
        } else {
            String::new()
        }
    });
    if errors > 0 {
        eprintln!("invalid: {errors} error(s), {warnings} warning(s)");
        return Ok(EXIT_FINDINGS);
    }
    Ok(EXIT_OK)
}

pub fn diff(args: &DiffArgs, against: &str) -> Result<u8> {
    let new_files = read_paths(std::slice::from_ref(&args.path))?;
    let old_files = if Path::new(against).exists() {
        read_paths(&[against.into()])?
    } else {
        read_at_revision(&args.path, against)?
    };
    let (Some(new), Some(old)) = (load_valid(&new_files), load_valid(&old_files)) else {
        eprintln!("fleetctl: error: cannot plan from an invalid spec");
        return Ok(EXIT_ERROR);
    };
    let plan = remote_agents_spec::plan(&old, &new);
    let value = serde_json::to_value(&plan)?;
    print_data(args.output, &value, || plan.to_text());
    Ok(if plan.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

pub fn explain(args: &ExplainArgs) -> Result<u8> {
    let files = read_paths(&args.paths)?;
    let Some(model) = load_valid(&files) else {
        return Ok(EXIT_ERROR);
    };
    let mut host = HostFacts::new(&args.host);
    for (key, value) in &args.facts {
        host.facts.insert(key.clone(), value.clone());
    }
    let config = model.effective_config(&host);
    let value = serde_json::to_value(&config)?;
    print_data(args.output, &value, || config.to_text());
    Ok(EXIT_OK)
}

pub fn convert(args: &ConvertArgs) -> Result<u8> {
    let files = read_paths(&args.paths)?;
    let Some(model) = load_valid(&files) else {
        return Ok(EXIT_FINDINGS);
    };
    let text = match args.to {
        Spelling::Yaml => remote_agents_spec::to_yaml(&model),
        Spelling::Kdl => remote_agents_spec::to_kdl(&model),
    };
    print!("{text}");
    Ok(EXIT_OK)
}
