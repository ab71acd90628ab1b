//! Decoding the spanned tree into the model. Every problem becomes a diagnostic and decoding
//! goes on, so one bad field never hides the others; the position of every decoded value is
//! recorded in the model's source map for provenance.

use crate::diagnostic::{Code, Diagnostic, Loc};
use crate::model::*;
use crate::toolset::Toolset;
use crate::tree::{Key, Node, Value};
use std::collections::BTreeMap;

pub(crate) struct Cx<'a> {
    pub diagnostics: &'a mut Vec<Diagnostic>,
    pub sources: &'a mut crate::SourceMap,
    pub document: usize,
}

impl Cx<'_> {
    fn record(&mut self, path: &str, loc: &Loc) {
        self.sources
            .locations
            .entry(self.document)
            .or_default()
            .insert(path.to_string(), loc.clone());
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = node.value.type_name();
        self.diagnostics.push(
            Diagnostic::error(
                Code::WrongType,
                node.loc.clone(),
                path,
                format!("wrong type: expected {expected}, found {found}"),
            )
            .expected(expected.to_string())
            .hint(match (&node.value, expected) {
                (Value::Int(_) | Value::Float(_) | Value::Bool(_), "a string") => {
                    "quote the value to make it a string".to_string()
                }
                (_, "a list") => "write a list, e.g. `[a, b]`".to_string(),
                _ => format!("write {expected} here"),
            }),
        );
    }
}

pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The closest known name, for "did you mean" hints.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

pub(crate) trait Decode: Sized {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self>;
}

impl Decode for String {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        cx.record(path, &node.loc);
        match &node.value {
            Value::Str(s) => {
                if node.text_col_offset > 0 {
                    cx.sources
                        .text_offsets
                        .insert((cx.document, path.to_string()), node.text_col_offset);
                }
                Some(s.clone())
            }
            _ => {
                cx.wrong_type(node, path, "a string");
                None
            }
        }
    }
}

impl Decode for u32 {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        cx.record(path, &node.loc);
        match &node.value {
            Value::Int(i) if (0..=i128::from(u32::MAX)).contains(i) => Some(*i as u32),
            _ => {
                cx.wrong_type(node, path, "a non-negative integer");
                None
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        match node.value {
            Value::Null => {
                cx.record(path, &node.loc);
                Some(None)
            }
            _ => T::decode(node, path, cx).map(Some),
        }
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        cx.record(path, &node.loc);
        match &node.value {
            Value::Null => Some(Vec::new()),
            Value::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| T::decode(item, &index(path, i), cx))
                    .collect(),
            ),
            Value::Str(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_)
                if node.scalar_may_be_list =>
            {
                T::decode(node, &index(path, 0), cx).map(|item| vec![item])
            }
            _ => {
                cx.wrong_type(node, path, "a list");
                None
            }
        }
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
        cx.record(path, &node.loc);
        let entries = map_entries(node, path, cx, "a mapping")?;
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            if let Some(v) = T::decode(value, &join(path, &key.name), cx) {
                out.insert(key.name.clone(), v);
            }
        }
        Some(out)
    }
}

/// The entries of a mapping, reporting duplicate keys (the later one wins).
pub(crate) fn map_entries<'n>(
    node: &'n Node,
    path: &str,
    cx: &mut Cx,
    what: &str,
) -> Option<&'n [(Key, Node)]> {
    match &node.value {
        Value::Map(entries) => {
            for (i, (key, _)) in entries.iter().enumerate() {
                if entries[..i].iter().any(|(k, _)| k.name == key.name) {
                    cx.diagnostics.push(
                        Diagnostic::error(
                            Code::DuplicateKey,
                            key.loc.clone(),
                            join(path, &key.name),
                            format!("duplicate key `{}`", key.name),
                        )
                        .hint("remove one of the two entries"),
                    );
                }
            }
            Some(entries)
        }
        Value::Null => Some(&[]),
        _ => {
            cx.wrong_type(node, path, what);
            None
        }
    }
}

macro_rules! decode_enum {
    ($ty:ty, $code:expr, $what:literal, { $($text:literal => $variant:expr),* $(,)? }) => {
        impl Decode for $ty {
            fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
                cx.record(path, &node.loc);
                let Value::Str(text) = &node.value else {
                    cx.wrong_type(node, path, "a string");
                    return None;
                };
                match text.as_str() {
                    $($text => Some($variant),)*
                    other => {
                        let names = [$($text),*];
                        let mut diagnostic = Diagnostic::error(
                            $code,
                            node.loc.clone(),
                            path,
                            format!(concat!("unknown ", $what, " `{}`"), other),
                        )
                        .expected(format!("one of {}", names.join(", ")));
                        if let Some(near) = closest(other, &names) {
                            diagnostic = diagnostic.hint(format!("did you mean `{near}`?"));
                        }
                        cx.diagnostics.push(diagnostic);
                        None
                    }
                }
            }
        }
    };
}

decode_enum!(Mode, Code::UnknownMode, "mode", {
    "plan" => Mode::Plan, "edit" => Mode::Edit, "bypass" => Mode::Bypass, "disabled" => Mode::Disabled,
});
decode_enum!(Concurrency, Code::BadValue, "concurrency policy", {
    "allow" => Concurrency::Allow, "forbid" => Concurrency::Forbid, "replace" => Concurrency::Replace,
});
decode_enum!(Capability, Code::BadValue, "capability", {
    "read" => Capability::Read, "write" => Capability::Write, "exec" => Capability::Exec,
    "git" => Capability::Git, "schedule" => Capability::Schedule, "admin" => Capability::Admin,
    "apply" => Capability::Apply, "task" => Capability::Task,
});
decode_enum!(Toolset, Code::UnknownToolset, "toolset", {
    "core" => Toolset::Core, "files" => Toolset::Files, "git" => Toolset::Git,
    "fleet" => Toolset::Fleet, "spec" => Toolset::Spec, "schedule" => Toolset::Schedule,
    "mapreduce" => Toolset::Mapreduce, "transfer" => Toolset::Transfer, "tasks" => Toolset::Tasks,
});
decode_enum!(WindowAction, Code::BadValue, "window action", {
    "allow" => WindowAction::Allow, "deny" => WindowAction::Deny,
});
decode_enum!(Reducer, Code::BadValue, "reducer", {
    "sum" => Reducer::Sum, "count" => Reducer::Count, "concat" => Reducer::Concat,
});
decode_enum!(Trigger, Code::BadValue, "trigger", {
    "manual" => Trigger::Manual, "on-apply" => Trigger::OnApply, "cron" => Trigger::Cron,
});

macro_rules! decode_struct {
    ($ty:ty, $what:literal, required [$($required:literal),*], { $($key:literal => $field:ident),* $(,)? }) => {
        impl Decode for $ty {
            fn decode(node: &Node, path: &str, cx: &mut Cx) -> Option<Self> {
                cx.record(path, &node.loc);
                let entries = map_entries(node, path, cx, concat!("a mapping (", $what, ")"))?;
                let mut out = <$ty>::default();
                const FIELDS: &[&str] = &[$($key),*];
                for (key, value) in entries {
                    let field_path = join(path, &key.name);
                    match key.name.as_str() {
                        $($key => {
                            if let Some(v) = Decode::decode(value, &field_path, cx) {
                                out.$field = v;
                            }
                        })*
                        _ => unknown_field(cx, key, &field_path, FIELDS, $what),
                    }
                }
                $(
                    if !entries.iter().any(|(k, _)| k.name == $required) {
                        missing_field(cx, node, &join(path, $required), $required, $what);
                    }
                )*
                Some(out)
            }
        }
    };
}

fn unknown_field(cx: &mut Cx, key: &Key, path: &str, fields: &[&str], what: &str) {
    let mut diagnostic = Diagnostic::error(
        Code::UnknownField,
        key.loc.clone(),
        path,
        format!("unknown field `{}` in {what}", key.name),
    )
    .expected(format!("one of {}", fields.join(", ")));
    if let Some(near) = closest(&key.name, fields) {
        diagnostic = diagnostic.hint(format!("did you mean `{near}`?"));
    }
    cx.diagnostics.push(diagnostic);
}

fn missing_field(cx: &mut Cx, node: &Node, path: &str, field: &str, what: &str) {
    cx.diagnostics.push(
        Diagnostic::error(
            Code::MissingField,
            node.loc.clone(),
            path,
            format!("{what} is missing required field `{field}`"),
        )
        .expected(format!("a `{field}` field")),
    );
}

decode_struct!(Metadata, "metadata", required ["name"], { "name" => name, "labels" => labels });
decode_struct!(AllowDeny, "allow/deny lists", required [], { "allow" => allow, "deny" => deny });
decode_struct!(Policy, "policy", required [], { "paths" => paths, "commands" => commands });
decode_struct!(Defaults, "defaults", required [], { "mode" => mode, "policy" => policy });
decode_struct!(Operator, "operator", required ["name", "key"], {
    "name" => name, "key" => key, "target" => target, "allow" => allow,
});
decode_struct!(HostEntry, "host entry", required ["name"], {
    "name" => name, "tags" => tags, "facts" => facts, "mode" => mode, "policy" => policy,
});
decode_struct!(Rule, "rule", required ["target"], {
    "name" => name, "target" => target, "mode" => mode, "policy" => policy,
});
decode_struct!(FleetSpec, "Fleet spec", required [], {
    "defaults" => defaults, "operators" => operators, "hosts" => hosts, "rules" => rules,
    "tests" => tests,
});
decode_struct!(PolicyTest, "policy test", required ["target"], {
    "name" => name, "target" => target, "operator" => operator, "accept" => accept,
    "deny" => deny, "mode" => mode, "writable" => writable, "unwritable" => unwritable,
    "readable" => readable, "unreadable" => unreadable,
});
decode_struct!(ScheduleSpec, "Schedule spec", required ["target", "cron"], {
    "target" => target, "cron" => cron, "command" => command, "shell" => shell,
    "timeout" => timeout, "concurrency" => concurrency,
});
decode_struct!(WindowSpec, "Window spec", required ["target", "action"], {
    "target" => target, "action" => action, "cron" => cron, "duration" => duration,
    "start" => start, "end" => end, "timeZone" => time_zone,
});
decode_struct!(Step, "step", required [], { "command" => command, "shell" => shell });
decode_struct!(Input, "input", required [], {
    "files" => files, "command" => command, "shell" => shell, "items" => items,
});
decode_struct!(Reduce, "reduce", required [], {
    "builtin" => builtin, "command" => command, "shell" => shell,
});
decode_struct!(MapReduceSpec, "MapReduceJob spec", required ["target", "input", "map", "reduce"], {
    "target" => target, "input" => input, "partitions" => partitions, "map" => map,
    "reduce" => reduce, "retries" => retries, "trigger" => trigger, "cron" => cron,
});

decode_struct!(McpSurfaceSpec, "McpSurface spec", required ["target", "toolsets"], {
    "target" => target, "toolsets" => toolsets, "maxMode" => max_mode,
});

decode_struct!(RolloutWave, "rollout wave", required [], {
    "name" => name, "target" => target, "count" => count, "percent" => percent,
});
decode_struct!(RolloutCheck, "rollout check", required [], {
    "name" => name, "command" => command, "shell" => shell, "timeout" => timeout,
});
decode_struct!(RolloutSpec, "Rollout spec", required ["waves"], {
    "waves" => waves, "checks" => checks, "failureThreshold" => failure_threshold,
    "waveTimeout" => wave_timeout,
});

const KINDS: &[&str] = &[
    "Fleet",
    "Schedule",
    "MapReduceJob",
    "McpSurface",
    "Window",
    "Rollout",
];
const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

/// Decodes one document. Returns `None` when its kind is unknown or missing (the document then
/// cannot be part of the model); any other problem still yields a document.
pub(crate) fn document(node: &Node, cx: &mut Cx) -> Option<Document> {
    cx.record("", &node.loc);
    let entries = map_entries(node, "", cx, "a mapping (a spec document)")?;
    let field = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
    for (key, _) in entries {
        if !TOP_FIELDS.contains(&key.name.as_str()) {
            unknown_field(cx, key, &key.name, TOP_FIELDS, "a document");
        }
    }
    match field("apiVersion") {
        None => missing_field(cx, node, "apiVersion", "apiVersion", "document"),
        Some(value) => {
            cx.record("apiVersion", &value.loc);
            if !matches!(&value.value, Value::Str(s) if s == API_VERSION) {
                cx.diagnostics.push(
                    Diagnostic::error(
                        Code::BadApiVersion,
                        value.loc.clone(),
                        "apiVersion",
                        "unsupported apiVersion",
                    )
                    .expected(API_VERSION)
                    .hint(format!("write `apiVersion: {API_VERSION}`")),
                );
            }
        }
    }
    let Some(kind_node) = field("kind") else {
        missing_field(cx, node, "kind", "kind", "document");
        return None;
    };
    cx.record("kind", &kind_node.loc);
    let Value::Str(kind) = &kind_node.value else {
        cx.wrong_type(kind_node, "kind", "a string");
        return None;
    };
    if !KINDS.contains(&kind.as_str()) {
        let mut diagnostic = Diagnostic::error(
            Code::UnknownKind,
            kind_node.loc.clone(),
            "kind",
            format!("unknown kind `{kind}`"),
        )
        .expected(format!("one of {}", KINDS.join(", ")));
        if let Some(near) = closest(kind, KINDS) {
            diagnostic = diagnostic.hint(format!("did you mean `{near}`?"));
        }
        cx.diagnostics.push(diagnostic);
        return None;
    }
    let metadata = match field("metadata") {
        Some(value) => Metadata::decode(value, "metadata", cx).unwrap_or_default(),
        None => {
            missing_field(cx, node, "metadata", "metadata", "document");
            Metadata::default()
        }
    };
    let spec = field("spec");
    if spec.is_none() {
        missing_field(cx, node, "spec", "spec", "document");
    }
    fn spec_of<T: Decode + Default>(spec: Option<&Node>, cx: &mut Cx) -> T {
        spec.and_then(|value| T::decode(value, "spec", cx))
            .unwrap_or_default()
    }
    Some(match kind.as_str() {
        "Fleet" => Document::Fleet(FleetDocument {
            api_version: ApiVersion::V1,
            kind: Fleet::Fleet,
            metadata,
            spec: spec_of(spec, cx),
        }),
        "Schedule" => Document::Schedule(ScheduleDocument {
            api_version: ApiVersion::V1,
            kind: Schedule::Schedule,
            metadata,
            spec: spec_of(spec, cx),
        }),
        "McpSurface" => Document::McpSurface(McpSurfaceDocument {
            api_version: ApiVersion::V1,
            kind: McpSurface::McpSurface,
            metadata,
            spec: spec_of(spec, cx),
        }),
        "Rollout" => Document::Rollout(RolloutDocument {
            api_version: ApiVersion::V1,
            kind: Rollout::Rollout,
            metadata,
            spec: spec_of(spec, cx),
        }),
        "Window" => Document::Window(WindowDocument {
            api_version: ApiVersion::V1,
            kind: Window::Window,
            metadata,
            spec: spec_of(spec, cx),
        }),
        _ => Document::MapReduceJob(MapReduceJobDocument {
            api_version: ApiVersion::V1,
            kind: MapReduceJob::MapReduceJob,
            metadata,
            spec: spec_of(spec, cx),
        }),
    })
}
