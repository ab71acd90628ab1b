//! The fleet model (desired state): kinds, parsing of YAML and KDL into one model, validation
//! with source spans, target selectors, effective config with provenance, and plans.
//!
//! This crate is pure: it does no file, network or process I/O and never starts a runtime. The
//! caller reads files and hands their text to [`load`]:
//!
//! ```
//! let files = [("fleet.yaml", "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: demo}\nspec:\n  hosts:\n    - {name: web-1, tags: [web]}\n")];
//! let (model, diagnostics) = remote_agents_spec::load(&files);
//! assert!(diagnostics.is_empty());
//! let config = model.effective_config(&remote_agents_spec::HostFacts::new("web-1"));
//! assert_eq!(config.mode.value, remote_agents_spec::Mode::Plan);
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod decode;
pub mod diagnostic;
pub mod effective;
pub mod gate;
mod kdl_format;
pub mod limits;
pub mod model;
pub mod plan;
mod policy_test;
pub mod rollout;
pub mod schema;
pub mod selector;
pub mod toolset;
mod tree;
mod validate;
pub mod window;
mod yaml;

pub use diagnostic::{Code, Diagnostic, Loc, Severity};
pub use effective::{EffectiveConfig, Origin, Sourced};
pub use model::*;
pub use plan::{Plan, plan};
pub use selector::{HostFacts, Selector, SelectorError};
pub use toolset::{DEFAULT_TOOLSETS, Toolset};
pub use validate::parse_operator_key;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The spelling of a spec file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Kdl,
}

impl Format {
    /// `.yaml`/`.yml` are YAML, `.kdl` is KDL; anything else is not a spec file.
    pub fn from_path(path: &str) -> Option<Format> {
        let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "kdl" => Some(Format::Kdl),
            _ => None,
        }
    }
}

/// Where every decoded value was written: (document index, field path) → position.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// Per document, so lookups by `&str` need no allocation.
    pub(crate) locations: HashMap<usize, HashMap<String, Loc>>,
    /// For quoted strings, how many characters the text starts after the recorded position.
    pub(crate) text_offsets: HashMap<(usize, String), u32>,
}

impl SourceMap {
    /// The position of a field (`spec.hosts[2].mode`) of a document, or of the document itself
    /// for the empty path.
    pub fn get(&self, document: usize, path: &str) -> Option<&Loc> {
        self.locations.get(&document)?.get(path)
    }

    /// The position of a field, falling back to its nearest recorded parent.
    pub fn nearest(&self, document: usize, path: &str) -> Option<&Loc> {
        let mut path = path.to_string();
        loop {
            if let Some(loc) = self.get(document, &path) {
                return Some(loc);
            }
            if path.is_empty() {
                return None;
            }
            let cut = path.rfind(['.', '[']).unwrap_or(0);
            path.truncate(cut);
        }
    }
}

/// Every document of a fleet repo, in file order, with the positions they came from.
/// Two models are equal when their documents are; positions are not part of a model's identity.
#[derive(Debug, Default)]
pub struct FleetModel {
    pub documents: Vec<Document>,
    pub sources: SourceMap,
    compiled: OnceLock<effective::Compiled>,
}

impl Clone for FleetModel {
    fn clone(&self) -> Self {
        FleetModel {
            documents: self.documents.clone(),
            sources: self.sources.clone(),
            compiled: OnceLock::new(),
        }
    }
}

impl PartialEq for FleetModel {
    fn eq(&self, other: &Self) -> bool {
        self.documents == other.documents
    }
}

impl FleetModel {
    /// A model built in code, without source positions.
    pub fn from_documents(documents: Vec<Document>) -> Self {
        FleetModel {
            documents,
            ..FleetModel::default()
        }
    }

    /// The fleet document (the first one, if several were declared).
    pub fn fleet(&self) -> Option<(usize, &FleetDocument)> {
        self.documents
            .iter()
            .enumerate()
            .find_map(|(i, d)| match d {
                Document::Fleet(fleet) => Some((i, fleet)),
                _ => None,
            })
    }

    pub fn schedules(&self) -> impl Iterator<Item = (usize, &ScheduleDocument)> {
        self.documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d {
                Document::Schedule(s) => Some((i, s)),
                _ => None,
            })
    }

    pub fn jobs(&self) -> impl Iterator<Item = (usize, &MapReduceJobDocument)> {
        self.documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d {
                Document::MapReduceJob(j) => Some((i, j)),
                _ => None,
            })
    }

    /// The file a document was read from (`None` for models built in code).
    pub fn file_of(&self, document: usize) -> Option<&Arc<str>> {
        self.sources.get(document, "").map(|loc| &loc.file)
    }

    /// Documents serialized as JSON values, the shape both writers start from.
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.documents.iter().map(Document::to_json).collect()
    }

    pub(crate) fn compiled(&self) -> &effective::Compiled {
        self.compiled.get_or_init(|| effective::Compiled::new(self))
    }
}

/// Reads spec files (path, text) into one model plus every diagnostic, errors and warnings,
/// sorted by file, line and column. Never panics and never stops at the first problem.
///
/// Bounded in time and memory whatever the input ([`limits`]): a file over
/// [`limits::MAX_FILE_BYTES`], or one that brings the files together over
/// [`limits::MAX_TOTAL_BYTES`], is refused before it is parsed.
pub fn load<P: AsRef<str>, T: AsRef<str>>(files: &[(P, T)]) -> (FleetModel, Vec<Diagnostic>) {
    let mut model = FleetModel::default();
    let mut diagnostics = Vec::new();
    let mut total_bytes = 0usize;
    for (path, text) in files {
        let path: Arc<str> = Arc::from(path.as_ref());
        let text = text.as_ref();
        total_bytes = total_bytes.saturating_add(text.len());
        if let Some(diagnostic) = too_large(&path, text.len(), total_bytes) {
            diagnostics.push(diagnostic);
            continue;
        }
        if let Some(diagnostic) = too_deep(&path, text) {
            diagnostics.push(diagnostic);
            continue;
        }
        let (nodes, syntax) = match Format::from_path(&path) {
            Some(Format::Yaml) => yaml::read(&path, text),
            Some(Format::Kdl) => kdl_format::read(&path, text),
            None => {
                diagnostics.push(
                    Diagnostic::error(
                        Code::Syntax,
                        Loc {
                            file: path.clone(),
                            line: 1,
                            col: 1,
                            offset: 0,
                            len: 0,
                        },
                        "",
                        "not a spec file",
                    )
                    .expected("a .yaml, .yml or .kdl file"),
                );
                continue;
            }
        };
        diagnostics.extend(syntax);
        for node in nodes {
            let index = model.documents.len();
            let mut cx = decode::Cx {
                diagnostics: &mut diagnostics,
                sources: &mut model.sources,
                document: index,
            };
            if let Some(document) = decode::document(&node, &mut cx) {
                model.documents.push(document);
            } else {
                // The document was not kept: drop the positions recorded for its index.
                model.sources.locations.remove(&index);
                model.sources.text_offsets.retain(|(d, _), _| *d != index);
            }
        }
    }
    validate::validate(&model, &mut diagnostics);
    if let Some((index, fleet)) = model.fleet() {
        policy_test::check(&model, index, &fleet.spec, &mut diagnostics);
    }
    diagnostics.sort_by(|a, b| {
        (&a.loc.file, a.loc.line, a.loc.col).cmp(&(&b.loc.file, b.loc.line, b.loc.col))
    });
    (model, diagnostics)
}

/// The refusal of a file of `len` bytes that is over the per-file limit, or that brings the
/// files read so far to `total_bytes`, over the limit for a whole fleet.
fn too_large(path: &Arc<str>, len: usize, total_bytes: usize) -> Option<Diagnostic> {
    const MIB: usize = 1024 * 1024;
    let (message, hint) = if len > limits::MAX_FILE_BYTES {
        (
            format!(
                "file is {len} bytes, more than the {} MiB a spec file may have",
                limits::MAX_FILE_BYTES / MIB
            ),
            "split it into several files",
        )
    } else if total_bytes > limits::MAX_TOTAL_BYTES {
        (
            format!(
                "the spec files together reach {total_bytes} bytes with this one, more than \
                 the {} MiB a fleet may have",
                limits::MAX_TOTAL_BYTES / MIB
            ),
            "remove files that are not part of the fleet, or shrink the large ones",
        )
    } else {
        return None;
    };
    Some(
        Diagnostic::error(
            Code::TooLarge,
            Loc {
                file: path.clone(),
                line: 1,
                col: 1,
                offset: 0,
                len: 0,
            },
            "",
            message,
        )
        .hint(hint),
    )
}

/// Deeper bracket nesting than any spec needs. Checked before parsing because the KDL parser
/// recurses per level and would overflow the stack on hostile input.
const MAX_BRACKET_DEPTH: usize = 128;

/// A cheap scan for runaway `{`/`[` nesting (brackets inside strings count too, which only
/// matters for absurd strings).
fn too_deep(path: &Arc<str>, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (offset, byte) in text.bytes().enumerate() {
        match byte {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    let (line, col) = diagnostic::LineIndex::new(text).line_col(offset);
                    return Some(
                        Diagnostic::error(
                            Code::Syntax,
                            Loc {
                                file: path.clone(),
                                line,
                                col,
                                offset: offset as u32,
                                len: 1,
                            },
                            "",
                            format!("nesting deeper than {MAX_BRACKET_DEPTH} levels"),
                        )
                        .hint("a fleet spec never needs this much nesting"),
                    );
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Reads one file; shorthand for [`load`] with a single file.
pub fn load_one(path: &str, text: &str) -> (FleetModel, Vec<Diagnostic>) {
    load(&[(path, text)])
}

/// The model as one YAML stream (documents separated by `---`).
pub fn to_yaml(model: &FleetModel) -> String {
    documents_to_yaml(&model.documents)
}

/// Documents as one YAML stream.
pub fn documents_to_yaml(documents: &[Document]) -> String {
    let mut out = String::new();
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        yaml::write_value(&mut out, &document.to_json(), 0);
    }
    out
}

/// The model as one KDL file.
pub fn to_kdl(model: &FleetModel) -> String {
    documents_to_kdl(&model.documents)
}

/// Documents as one KDL file.
pub fn documents_to_kdl(documents: &[Document]) -> String {
    let values: Vec<serde_json::Value> = documents.iter().map(Document::to_json).collect();
    kdl_format::write(&values)
}

/// True when any diagnostic is an error (warnings alone leave a spec valid).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// Any JSON value (a plan, an effective config) as block-style YAML, for `-o yaml`.
pub fn json_to_yaml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    yaml::write_value(&mut out, value, 0);
    out
}
