//! The MCP adapter: the only crate that knows rmcp (and, with the relay, axum). Each tool call
//! becomes an `ops::Request` handled by `Node::handle` — locally, or on the peer named by
//! `agent_id` — so MCP and the peer RPC share one code path. Tool failures come back as
//! `isError` results with text a model can act on; protocol errors are reserved for calls that
//! cannot be routed at all. `http` is the Streamable HTTP transport, `stdio` the line framing of
//! the stdio one, `spec_tools` the desired-state tools. Stdout is the stdio transport's channel,
//! so nothing here prints; the HTTP transport's notices go to the console the binary passes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod http;
pub mod spec_tools;
pub mod stdio;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;

use remote_agents_node::node::{CallContext, Node, ProgressFn};
use remote_agents_ops::operation::Operation;
use remote_agents_ops::{self, Envelope, Outcome, Request};
use remote_agents_spec::Toolset;

/// How the MCP server talks to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// JSON-RPC lines on stdin/stdout (the default: how desktop clients start servers).
    Stdio,
    /// Streamable HTTP at `http://ADDR/mcp` on a loopback address (port 0 picks one).
    Http(SocketAddr, http::Auth),
}

/// The MCP face of a node.
#[derive(Clone)]
pub struct McpServer {
    node: Arc<Node>,
    /// Every tool with its toolset; which of them are offered is decided per call
    /// (`offered_toolsets`), since an applied spec can narrow them while the server runs.
    catalog: Arc<Vec<(Toolset, Tool)>>,
    /// The desired-state tools' recent plans.
    spec: Arc<spec_tools::SpecTools>,
}

/// How a tool behaves, for its annotations.
struct Hints {
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
}

const READ: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
    open_world: false,
};

/// A schema as a model reads it: without what only a validator uses (`$schema`, `title`,
/// `format`), and for results also without descriptions and bounds (a model reads the result
/// itself; the names and types say what it holds). Every tool is sent on every `tools/list`, so
/// these bytes are paid in every conversation.
fn schema_of<T: JsonSchema>(purpose: SchemaFor) -> Arc<JsonObject> {
    let mut value = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    compact_schema(&mut value, purpose);
    if let Some(root) = value.as_object_mut() {
        // The tool's description says what the arguments are for.
        root.remove("description");
    }
    Arc::new(value.as_object().cloned().unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaFor {
    Input,
    Output,
}

/// Removes the keywords a model does not need from a schema, walking into every subschema but
/// never treating a property's name as a keyword (a field may be called `title` or `format`).
fn compact_schema(schema: &mut serde_json::Value, purpose: SchemaFor) {
    match schema {
        serde_json::Value::Object(object) => {
            object.remove("$schema");
            object.remove("title");
            object.remove("format");
            if purpose == SchemaFor::Output {
                object.remove("description");
                object.remove("minimum");
                object.remove("maximum");
                object.remove("required");
            }
            // A choice of constant strings (how schemars writes a documented enum) says the
            // same as `enum` in a third of the bytes.
            let constants: Option<Vec<serde_json::Value>> = object
                .get("oneOf")
                .and_then(serde_json::Value::as_array)
                .and_then(|choices| {
                    choices
                        .iter()
                        .map(|choice| {
                            let choice = choice.as_object()?;
                            let plain = choice
                                .keys()
                                .all(|k| matches!(k.as_str(), "const" | "type" | "description"));
                            (plain && choice.get("type")? == "string")
                                .then(|| choice.get("const").cloned())
                                .flatten()
                        })
                        .collect()
                });
            if let Some(constants) = constants {
                object.remove("oneOf");
                object.insert("type".into(), "string".into());
                object.insert("enum".into(), constants.into());
            }
            for (keyword, value) in object.iter_mut() {
                match keyword.as_str() {
                    // Maps from names to subschemas.
                    "properties" | "$defs" | "definitions" | "patternProperties" => {
                        if let Some(named) = value.as_object_mut() {
                            for subschema in named.values_mut() {
                                compact_schema(subschema, purpose);
                            }
                        }
                    }
                    // Values, not schemas.
                    "enum" | "const" | "default" | "examples" | "required" => {}
                    _ => compact_schema(value, purpose),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                compact_schema(item, purpose);
            }
        }
        _ => {}
    }
}

fn tool<A: JsonSchema, R: JsonSchema>(
    name: &'static str,
    title: &str,
    description: &'static str,
    hints: Hints,
) -> Tool {
    // The title is the tool's own; repeating it in the annotations would only cost bytes.
    let mut annotations = ToolAnnotations::new()
        .read_only(hints.read_only)
        .idempotent(hints.idempotent)
        .open_world(hints.open_world);
    // destructiveHint is meaningful only for tools that are not read-only.
    if !hints.read_only {
        annotations = annotations.destructive(hints.destructive);
    }
    Tool::new(name, description, schema_of::<A>(SchemaFor::Input))
        .with_title(title)
        .with_raw_output_schema(schema_of::<R>(SchemaFor::Output))
        .with_annotations(annotations)
}

/// The tool of a node operation: its name, toolset, input and output schemas come from the
/// operation.
fn operation_tool<O: Operation>(
    title: &str,
    description: &'static str,
    hints: Hints,
) -> (Toolset, Tool)
where
    O::Output: JsonSchema,
{
    (
        O::TOOLSET,
        tool::<O::Args, O::Output>(O::NAME, title, description, hints),
    )
}

/// Every tool this server can offer, with accurate annotations.
pub fn tools() -> Vec<Tool> {
    catalog().into_iter().map(|(_, tool)| tool).collect()
}

/// The tools of the `selected` toolsets, in the catalog's order.
pub fn tools_of(selected: &BTreeSet<Toolset>) -> Vec<Tool> {
    catalog()
        .into_iter()
        .filter(|(toolset, _)| selected.contains(toolset))
        .map(|(_, tool)| tool)
        .collect()
}

/// The toolset of the tool called `name`, if there is such a tool.
pub fn toolset_of(name: &str) -> Option<Toolset> {
    catalog()
        .into_iter()
        .find(|(_, tool)| tool.name == name)
        .map(|(toolset, _)| toolset)
}

/// Every tool with the one toolset it belongs to.
pub fn catalog() -> Vec<(Toolset, Tool)> {
    use remote_agents_ops::operation::*;
    vec![
        operation_tool::<Exec>(
            "Run a command",
            "Run a program on this node (or on agent_id) without a shell: argv is the program and \
             its arguments. Returns exit code, stdout, stderr, duration, and `truncated` when \
             output exceeded max_output_bytes (binary output comes as base64, see \
             stdout_encoding). The whole process group is killed on timeout or cancellation. In \
             plan mode it runs read-only inside a Landlock sandbox (no writes except /dev/null, \
             no TCP, no new privileges), and is refused where the node cannot make one.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: false,
                open_world: true,
            },
        ),
        operation_tool::<ReadFile>(
            "Read a file",
            "Read a file (binary-safe) beneath the node's allowed roots, optionally a byte range \
             (offset, length). Text comes back as UTF-8, anything else as base64.",
            READ,
        ),
        operation_tool::<WriteFile>(
            "Write a file",
            "Replace a file's whole content atomically (temp file, fsync, rename). In edit mode \
             the previous version is kept as a backup (see the backups tool). Refused in plan mode.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: true,
                open_world: false,
            },
        ),
        operation_tool::<ListDir>(
            "List a directory",
            "List a directory's entries with kind, size and modification time; symlinks are \
             reported, not followed.",
            READ,
        ),
        operation_tool::<FileStat>(
            "Stat a path",
            "Kind, size, permissions and modification time of a path.",
            READ,
        ),
        operation_tool::<FileSearch>(
            "Find files",
            "Find files by name glob, content regex and/or images only. Default roots: \
             Pictures, Documents, Downloads, Desktop, then the home directory; .gitignore and \
             hidden files are respected.",
            READ,
        ),
        operation_tool::<FileThumbnail>(
            "Look at an image",
            "A thumbnail of an image file (PNG, JPEG, WebP, GIF; an animated GIF gives its first \
             frame) beneath the node's allowed roots, as an image content block, plus a line \
             with the image's own format and size. max_size is the longest edge (default 512, \
             at most 2048); smaller images are not enlarged. format png or jpeg (default png \
             for transparent images, jpeg otherwise). Files over 64 MiB, images over 16384 \
             pixels a side or 256 MiB decoded, and files that are not images are refused.",
            READ,
        ),
        operation_tool::<GetInfo>(
            "Node information",
            "This node's (or agent_id's) identity, platform facts, configured and effective mode, \
             live overrides (drift) and allowed roots.",
            READ,
        ),
        operation_tool::<SetMode>(
            "Set the mode",
            "Override the node's mode (plan = read-only, edit = writes with backups, bypass, \
             disabled) for ttl_secs (default 3600). The override is recorded and reported as \
             drift; setting the configured mode clears it.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: true,
                open_world: false,
            },
        ),
        operation_tool::<GitStatus>(
            "Git status",
            "Branch, upstream, ahead/behind and changed files of a git work tree.",
            READ,
        ),
        operation_tool::<GitPull>(
            "Git pull",
            "Fetch and fast-forward a branch (never merges; a diverged branch is an error).",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<GitCommit>(
            "Git commit",
            "Stage the given paths (default every change) and commit with the repository's \
             configured identity.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: false,
                open_world: false,
            },
        ),
        operation_tool::<GitPush>(
            "Git push",
            "Push a branch to a remote; a rejected (non-fast-forward) update is an error.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<ListAgents>(
            "List agents",
            "Every node in the fleet this node can see: id, name, tags, platform facts, mode, and \
             whether it accepts commands. Use an agent_id from here on any other tool.",
            Hints {
                read_only: true,
                destructive: false,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<Backups>(
            "List backups",
            "Previous versions of files replaced by write_file in edit mode, with where each is kept.",
            READ,
        ),
        operation_tool::<SendFile>(
            "Send a file host to host",
            "Send a file (binary-safe, any size) from from_agent_id's from_path to to_agent_id's \
             to_path (either host defaults to this node). The source host reads it through its \
             policy, the destination writes a temp file through its own (edit or bypass mode, \
             like write_file), verifies SHA-256 end to end, fsyncs and renames: a failure leaves \
             no partial file. Chunks travel through the relay (path `relay`) or a direct \
             connection (`direct`); a path lost mid-file continues from the verified offset. \
             Returns the transfer's record at once (follow it with transfer_get), or with \
             wait=true when it ends, reporting progress meanwhile; cancelling stops both ends.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<TransferGet>(
            "Get a transfer",
            "A transfer this node (or agent_id) coordinates: state, bytes done, rate, the path \
             in use (direct or relay), SHA-256 once verified, and the error if it failed; \
             wait_secs waits for it to end.",
            READ,
        ),
        operation_tool::<TransferCancel>(
            "Cancel a transfer",
            "Stop a running transfer this node coordinates: the destination removes its \
             partial file and the source closes. Returns the final record.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<TransferList>(
            "List transfers",
            "The transfers this node (or agent_id) coordinates, newest first.",
            READ,
        ),
        operation_tool::<TaskDispatch>(
            "Delegate a task to a host's AI",
            "Hand a prompt to the AI CLI on this node (or agent_id): claude, opencode or codex,              run with that host's own credentials under its mode (plan: the provider's              read-only mode; edit: edits accepted; bypass: unrestricted; disabled: refused)              and limits. Returns the task's record at once (follow it with task_wait), or with              wait=true when it ends, reporting progress per turn. The record is short: the              final answer, state, turns, duration, cost and session_id (continue it with              resume=<session_id>); transcript=true adds every event.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: false,
                open_world: true,
            },
        ),
        operation_tool::<TaskGet>(
            "Get a task",
            "A task of this node (or agent_id): state, answer, error, turns, duration, cost,              session_id; transcript=true adds every event the provider reported.",
            READ,
        ),
        operation_tool::<TaskWait>(
            "Wait for a task",
            "A task's record once it ends, or at wait_secs (default 600) while it still runs.",
            READ,
        ),
        operation_tool::<TaskList>(
            "List tasks",
            "The tasks this node (or agent_id) ran, newest first.",
            READ,
        ),
        operation_tool::<TaskCancel>(
            "Cancel a task",
            "Stop a running task: the provider's process group is killed; the record reads              cancelled and keeps its session_id.",
            Hints {
                read_only: false,
                destructive: false,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<ChatList>(
            "List a host's AI chats",
            "The AI chats kept on this node (or agent_id) by Claude Code, opencode, Codex, Cline, \
             Roo, Kilo and Zed, newest first, paged (limit, offset = the previous next_offset): \
             provider, session_id, title, cwd, updated time, message count and path. \
             resumable=true chats (claude, opencode, codex) continue with task_dispatch \
             provider=<provider> resume=<session_id> cwd=<cwd>; the others are read-only. Files the \
             host's path policy refuses are not read; unreadable ones are listed in skipped \
             with the reason.",
            READ,
        ),
        operation_tool::<ChatGet>(
            "Read a host's AI chat",
            "One AI chat of this node (or agent_id) by provider and session_id from chat_list: \
             its messages oldest first (user, assistant, tool calls and results), a page at a \
             time (offset, limit) within max_bytes; long messages are cut with a marker.",
            READ,
        ),
    ]
    .into_iter()
    .chain(schedule_tools())
    .chain(fleet_tools().into_iter().map(|t| (Toolset::Fleet, t)))
    .chain([(Toolset::Tasks, fleet_task_tool())])
    .chain([(Toolset::Mapreduce, mapreduce_tool())])
    .chain(spec_tools::tools().into_iter().map(|t| (Toolset::Spec, t)))
    .map(|(toolset, tool)| {
        if takes_window_override(&tool) {
            (toolset, with_window_override(tool))
        } else {
            (toolset, tool)
        }
    })
    .collect()
}

/// The argument that lets a changing tool run inside a closed change window of the applied
/// spec; the node records the reason in its audit log.
const OVERRIDE_WINDOW: &str = "override_window";

/// Single-host tools that change the host (the node holds them in a closed change window),
/// except set_mode, which windows never hold.
fn takes_window_override(tool: &Tool) -> bool {
    let changes = tool
        .annotations
        .as_ref()
        .is_some_and(|a| a.read_only_hint == Some(false));
    let single_host = !(tool.name.starts_with("spec_")
        || tool.name.starts_with("fleet_")
        || tool.name.starts_with("job_")
        || tool.name == "mapreduce");
    changes && single_host && tool.name != remote_agents_ops::operation::SetMode::NAME
}

fn with_window_override(mut tool: Tool) -> Tool {
    let mut schema = (*tool.input_schema).clone();
    if let Some(serde_json::Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert(
            OVERRIDE_WINDOW.into(),
            serde_json::json!({
                "type": "string",
                // Short: every changing tool carries it (tools/list stays within 32 KB).
                "description": "Reason to act inside a closed change window (audited).",
            }),
        );
    }
    tool.input_schema = Arc::new(schema);
    tool
}

/// `mapreduce`: map over partitions of an input on many hosts, then reduce.
fn mapreduce_tool() -> Tool {
    tool::<
        remote_agents_node::mapreduce::tool::MapReduceArgs,
        remote_agents_node::mapreduce::JobReport,
    >(
        "mapreduce",
        "MapReduce over many hosts",
        "Split an input into partitions, run the map step on each partition's stdin on the          hosts the target selects, and reduce the outputs in partition order (builtin sum,          count or concat, or a command). Input: files (globs each host expands; each file is          mapped on its own host), command/shell (lines printed on this node) or items. Failed          partitions are retried, slow ones backed up on another host, and a lost host's          shipped partitions re-run elsewhere; the result lists every partition that finally          failed. Reports progress as partitions finish.",
        Hints {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        },
    )
}

/// The schedule tools: imperative schedules on one node (or on agent_id), shown as drift
/// because the spec does not hold them.
fn schedule_tools() -> Vec<(Toolset, Tool)> {
    use remote_agents_ops::operation::*;
    vec![
        operation_tool::<ScheduleAdd>(
            "Add a schedule",
            "Run a command on a crontab line on this node (or agent_id), e.g. cron \"*/5 * * * *\" \
             (5 fields, optional leading seconds field, @daily etc., node's local time zone). \
             Each firing runs as exec under the node's policy and as the caller who added it; a \
             slot never runs twice. Adding an existing name replaces it; ttl_secs makes it \
             expire. Imperative schedules are reported as drift. Refused in plan mode.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: true,
                open_world: true,
            },
        ),
        operation_tool::<ScheduleRemove>(
            "Remove a schedule",
            "Stop and delete an imperative schedule (a run already going finishes). Schedules \
             declared in the spec are changed in the spec instead. Its run history is kept.",
            Hints {
                read_only: false,
                destructive: true,
                idempotent: true,
                open_world: false,
            },
        ),
        operation_tool::<ScheduleList>(
            "List schedules",
            "The node's schedules (source spec or imperative), their next run and recent runs \
             (start, end, exit code, output tail, outcome), and the drift.",
            READ,
        ),
    ]
}

/// The fleet tools: one call acts on every host a target selector picks; results come back
/// folded (identical outputs grouped) with an op id for `job_get`.
/// `fleet_task`: a fan-out, but in the `tasks` toolset with the other task tools.
fn fleet_task_tool() -> Tool {
    use remote_agents_node::fleet::tools::{FleetResult, FleetTaskArgs};
    tool::<FleetTaskArgs, FleetResult>(
        "fleet_task",
        "Delegate one prompt to many hosts' AI",
        "Run one prompt with the AI CLI (claude, opencode, codex) of every host the target \
         selects, each under its own mode and limits (see task_dispatch); timeout_secs is each \
         task's wall time (default 600). Returns a summary and groups of hosts with identical \
         answers; each host's record carries its task id, state, turns, cost and session id, \
         and an op_id for job_get.",
        Hints {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        },
    )
}

fn fleet_tools() -> Vec<Tool> {
    use remote_agents_node::fleet::tools::*;
    const FANOUT_WRITE: Hints = Hints {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: true,
    };
    const FANOUT_READ: Hints = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: true,
    };
    vec![
        tool::<FleetExecArgs, FleetResult>(
            "fleet_exec",
            "Run a command on many hosts",
            "Run a program (argv, no shell) on every host the target selects, e.g. target \
             \"web\", \"os:linux&!db\", \"all\". per_os picks another argv by OS family. Returns a \
             summary and groups of hosts with identical output (so 1,000 hosts read as a few \
             groups), plus an op_id for job_get. Hosts in plan mode run it read-only in a \
             sandbox; offline ones answer `unreachable`. batch + max_fail make a rolling run that halts on failures.",
            FANOUT_WRITE,
        ),
        tool::<FleetReadArgs, FleetResult>(
            "fleet_read",
            "Read a file on many hosts",
            "Read the same file on every host the target selects; identical contents are grouped.",
            FANOUT_READ,
        ),
        tool::<FleetWriteArgs, FleetResult>(
            "fleet_write",
            "Write a file on many hosts",
            "Write a file atomically on every host the target selects (backups in edit mode); \
             hosts in plan mode refuse.",
            Hints {
                idempotent: true,
                ..FANOUT_WRITE
            },
        ),
        tool::<FleetGitArgs, FleetResult>(
            "fleet_git",
            "Git on many hosts",
            "git status, pull (fast-forward), commit or push in a repository on every host the \
             target selects.",
            FANOUT_WRITE,
        ),
        tool::<FleetSearchArgs, FleetResult>(
            "fleet_search",
            "Find files on many hosts",
            "Find files by name glob and/or content regex on every host the target selects.",
            FANOUT_READ,
        ),
        tool::<FleetSendArgs, FleetResult>(
            "fleet_send",
            "Send one file to many hosts",
            "Copy a file from one host (default this one) to to_path on every host the target \
             selects. Hosts fetch it from each other as it arrives, so the source sends it about \
             twice however many hosts; each copy is SHA-256 verified, fsynced and renamed.",
            Hints {
                idempotent: true,
                ..FANOUT_WRITE
            },
        ),
        tool::<JobGetArgs, JobGetResult>(
            "job_get",
            "Fetch a fan-out's full results",
            "The full per-host records (status, exit, stdout, stderr, duration) of an earlier \
             fleet_* call, optionally only some hosts.",
            READ,
        ),
        tool::<JobListArgs, JobListResult>(
            "job_list",
            "List recent fan-outs",
            "The newest fleet_* calls issued from this node, with their one-line results.",
            READ,
        ),
    ]
}

impl McpServer {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            catalog: Arc::new(catalog()),
            spec: Arc::default(),
        }
    }

    /// The toolsets this server offers now: the node's `toolsets` setting.
    fn offered_toolsets(&self) -> BTreeSet<Toolset> {
        self.node.settings().toolsets.value.clone()
    }

    /// The tools offered now, in the catalog's order: those of the selected toolsets that this
    /// host's McpSurface, if the applied spec declares one, lets a model use.
    pub fn offered_tools(&self) -> Vec<Tool> {
        let surface = self.node.mcp_surface();
        self.catalog
            .iter()
            .filter(|(toolset, tool)| self.withheld(tool, *toolset, surface.as_ref()).is_none())
            .map(|(_, tool)| tool.clone())
            .collect()
    }

    /// Why `tool` of `toolset` may not be called here, if it may not: its toolset is not
    /// selected, or this host's McpSurface withholds it from models (its toolset, or a change
    /// under a read-only or disabled ceiling). Requests the node runs are judged by the surface
    /// again there, and on every other host by that host's own.
    fn withheld(
        &self,
        tool: &Tool,
        toolset: Toolset,
        surface: Option<&remote_agents_spec::effective::EffectiveMcpSurface>,
    ) -> Option<CallToolResult> {
        let name = tool.name.as_ref();
        let offered = self.offered_toolsets();
        if offered.contains(&toolset) {
            let surface = surface?;
            let host = &self.node.settings().name.value;
            let read_only = tool
                .annotations
                .as_ref()
                .and_then(|a| a.read_only_hint)
                .unwrap_or(false);
            let reason = if !surface.allows(toolset) {
                format!(
                    "{name} is in the `{toolset}` toolset, which {} withholds from models on \
                     host {host}",
                    surface.describe()
                )
            } else if surface.max_mode == Some(remote_agents_spec::Mode::Disabled) {
                format!(
                    "{} sets maxMode disabled for models on host {host}",
                    surface.describe()
                )
            } else if surface.max_mode == Some(remote_agents_spec::Mode::Plan) && !read_only {
                format!(
                    "{name} changes hosts, and {} makes host {host} read-only for models \
                     (maxMode plan)",
                    surface.describe()
                )
            } else {
                return None;
            };
            return Some(CallToolResult::error(vec![ContentBlock::text(format!(
                "{name} refused by policy: {reason}"
            ))]));
        }
        let mut enabled: Vec<&str> = offered.iter().map(|t| t.as_str()).collect();
        enabled.push(toolset.as_str());
        Some(CallToolResult::error(vec![ContentBlock::text(format!(
            "{name} is in the `{toolset}` toolset, which this MCP server does not offer \
             (it offers {offered}); start it with --toolsets {enable} (or \
             REMOTE_AGENTS_TOOLSETS, or `toolsets` in config.toml; `all` offers every toolset)",
            offered = offered
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            enable = enabled.join(","),
        ))]))
    }

    /// Serves MCP on stdin/stdout until the client disconnects; malformed and oversized lines
    /// get JSON-RPC errors (see `stdio`).
    pub async fn serve_stdio(self) -> anyhow::Result<()> {
        let (stdin, stdout) = rmcp::transport::stdio();
        let service = self.serve(stdio::LineTransport::new(stdin, stdout)).await?;
        service.waiting().await?;
        Ok(())
    }

    /// Serves MCP on `transport` until `shutdown` resolves or, on stdio, the client disconnects.
    pub async fn serve_on(
        self,
        transport: Transport,
        shutdown: impl Future<Output = ()> + Send + 'static,
        console: &mut (dyn std::io::Write + Send),
    ) -> anyhow::Result<()> {
        match transport {
            Transport::Stdio => tokio::select! {
                served = self.serve_stdio() => served,
                () = shutdown => Ok(()),
            },
            Transport::Http(addr, auth) => http::serve(self, addr, auth, shutdown, console).await,
        }
    }

    /// The one gate of a `disabled` node: every tool is refused here, before anything runs or
    /// is forwarded, because the fleet, job, MapReduce and spec tools do not pass through
    /// `Node::handle` (whose policy gate refuses the single-host tools on its own). The one
    /// exception is a local `set_mode`, which `Node::handle` judges itself: an override to
    /// `disabled` can be lifted that way, a configured `disabled` cannot.
    fn disabled_refusal(
        &self,
        name: &str,
        arguments: Option<&JsonObject>,
    ) -> Option<CallToolResult> {
        if self.node.effective_mode() != remote_agents_spec::Mode::Disabled {
            return None;
        }
        let remote_agent = arguments
            .and_then(|a| a.get("agent_id"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|agent| !self.node.is_local(agent));
        if name == "set_mode" && !remote_agent {
            return None;
        }
        Some(CallToolResult::error(vec![ContentBlock::text(format!(
            "{name} refused by policy: this node is in disabled mode and rejects every request, \
             local or for other hosts; its operator must change the mode (config, spec, or a \
             set_mode that lifts an override)"
        ))]))
    }

    /// Runs a fleet tool until it finishes or the client cancels it: dropping the fan-out drops
    /// its calls, which cancels them on every peer (their processes are killed there).
    async fn call_fleet_tool(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> CallToolResult {
        let value = serde_json::json!({
            "op": name,
            "args": serde_json::Value::Object(arguments.unwrap_or_default()),
        });
        let request =
            match serde_json::from_value::<remote_agents_node::fleet::tools::FleetRequest>(value) {
                Ok(request) => request,
                Err(e) => {
                    return CallToolResult::error(vec![ContentBlock::text(format!(
                        "invalid arguments for {name}: {e}; see the tool's input schema"
                    ))]);
                }
            };
        // The fan-outs report the hosts the applied spec declares (job_get and job_list fan
        // nothing out, so they skip the lookup).
        let inventory = if name.starts_with("fleet_") {
            remote_agents_node::sync::publish::node_inventory(&self.node).await
        } else {
            None
        };
        let outcome = tokio::select! {
            outcome = remote_agents_node::fleet::tools::run(
                &self.node, request, inventory.as_ref(),
            ) => outcome,
            () = cancel.cancelled() => {
                Err("cancelled; the hosts still running were told to stop".to_string())
            }
        };
        match outcome {
            Ok(result) => {
                // The folded summary first: it is what a model should read.
                let summary = result["summary"].as_str().map(str::to_string);
                let text = serde_json::to_string_pretty(&result).unwrap_or_default();
                let mut content = Vec::new();
                if let Some(summary) = summary {
                    content.push(ContentBlock::text(summary));
                }
                content.push(ContentBlock::text(text));
                let mut r = CallToolResult::success(content);
                r.structured_content = Some(result);
                r
            }
            Err(error) => {
                CallToolResult::error(vec![ContentBlock::text(format!("{name} failed: {error}"))])
            }
        }
    }

    async fn call_mapreduce(
        &self,
        arguments: Option<JsonObject>,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let value = serde_json::Value::Object(arguments.unwrap_or_default());
        let args = match serde_json::from_value::<remote_agents_node::mapreduce::tool::MapReduceArgs>(
            value,
        ) {
            Ok(args) => args,
            Err(e) => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid arguments for mapreduce: {e}; see the tool's input schema"
                ))]);
            }
        };
        let progress = ProgressRelay::new(context);
        let outcome = remote_agents_node::mapreduce::tool::run(
            &self.node,
            args,
            progress.sink(),
            context.ct.clone(),
        )
        .await;
        progress.flush().await;
        match outcome {
            Ok(report) => {
                let summary = format!(
                    "{}/{} partitions done on {} hosts, {} failed{}",
                    report.done,
                    report.partitions,
                    report.hosts.len(),
                    report.failed,
                    if report.complete {
                        ""
                    } else {
                        " (incomplete result)"
                    }
                );
                let value = serde_json::to_value(&report).unwrap_or_default();
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                let mut r = CallToolResult::success(vec![
                    ContentBlock::text(summary),
                    ContentBlock::text(text),
                ]);
                r.structured_content = Some(value);
                r
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(format!(
                "mapreduce failed: {error}"
            ))]),
        }
    }
}

/// The progress notifications of one tool call (when the client asked for them with a progress
/// token): sent in order by one task, and all of them before the call's result, because a client
/// stops listening for a token once it has the result.
struct ProgressRelay {
    sink: Option<ProgressFn>,
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressRelay {
    /// How long the result waits for progress still queued (a sink clone kept alive elsewhere
    /// must not hold the result back).
    const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

    fn new(context: &RequestContext<RoleServer>) -> Self {
        let Some(token) = context.meta.get_progress_token() else {
            return Self {
                sink: None,
                forwarder: None,
            };
        };
        let peer = context.peer.clone();
        let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel();
        let forwarder = remote_agents_node::runtime::spawn(async move {
            while let Some(param) = queued.recv().await {
                if let Err(e) = peer.notify_progress(param).await {
                    tracing::debug!("progress notification not delivered: {e}");
                }
            }
        });
        let sink: ProgressFn = Arc::new(move |progress: f64, total: Option<f64>, message| {
            let mut param =
                ProgressNotificationParam::new(token.clone(), progress).with_message(message);
            if let Some(total) = total {
                param = param.with_total(total);
            }
            let _ = queue.send(param);
        });
        Self {
            sink: Some(sink),
            forwarder: Some(forwarder),
        }
    }

    fn sink(&self) -> Option<ProgressFn> {
        self.sink.clone()
    }

    /// Waits until every queued notification went out; call it after the work, before
    /// returning the result.
    async fn flush(self) {
        let Self { sink, forwarder } = self;
        drop(sink);
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(Self::FLUSH_LIMIT, forwarder).await;
        }
    }
}

/// Turns an outcome into a tool result: structured content on success, `isError` otherwise.
pub fn to_tool_result(tool: &str, outcome: Outcome) -> CallToolResult {
    match outcome {
        Outcome::Ok { result } => {
            let text = serde_json::to_string_pretty(&result).unwrap_or_default();
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            r.structured_content = Some(result);
            r
        }
        Outcome::Refused { reason } => CallToolResult::error(vec![ContentBlock::text(format!(
            "{tool} refused by policy: {reason}"
        ))]),
        Outcome::Failed { error } => {
            CallToolResult::error(vec![ContentBlock::text(format!("{tool} failed: {error}"))])
        }
        Outcome::OutcomeUnknown { reason } => CallToolResult::error(vec![ContentBlock::text(
            format!("{tool}: outcome unknown: {reason}"),
        )]),
    }
}

/// `file_thumbnail`'s result: the thumbnail as an image content block a model can look at, and
/// a line saying what the file is. The structured content is the result without the base64
/// data, which the image block already carries (a model would read it twice otherwise).
fn thumbnail_tool_result(outcome: Outcome) -> CallToolResult {
    use remote_agents_ops::operation::FileThumbnail;
    let Outcome::Ok { result } = outcome else {
        return to_tool_result(FileThumbnail::NAME, outcome);
    };
    let mut thumbnail =
        match serde_json::from_value::<remote_agents_ops::FileThumbnailResult>(result) {
            Ok(thumbnail) => thumbnail,
            Err(e) => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "file_thumbnail failed: the node's answer is not a thumbnail: {e}"
                ))]);
            }
        };
    let image = ContentBlock::image(std::mem::take(&mut thumbnail.data), &thumbnail.mime_type);
    let text = format!(
        "{}: {} image, {}×{} pixels, {} bytes; thumbnail {}×{} {}",
        thumbnail.path,
        thumbnail.format,
        thumbnail.width,
        thumbnail.height,
        thumbnail.size,
        thumbnail.thumbnail_width,
        thumbnail.thumbnail_height,
        thumbnail.mime_type
    );
    let mut r = CallToolResult::success(vec![image, ContentBlock::text(text)]);
    r.structured_content = serde_json::to_value(&thumbnail).ok();
    r
}

/// Parses tool arguments into a request; unknown fields and wrong types are rejected.
pub fn parse_request(tool: &str, arguments: Option<JsonObject>) -> Result<Request, String> {
    let value = serde_json::json!({
        "op": tool,
        "args": serde_json::Value::Object(arguments.unwrap_or_default()),
    });
    serde_json::from_value::<Request>(value)
        .map_err(|e| format!("invalid arguments for {tool}: {e}; see the tool's input schema"))
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "remote-agents",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Controls this machine and, with agent_id, any machine of the remote-agents \
                 fleet (see list_agents). Every call passes the target node's policy gate: in \
                 plan mode only reads are allowed.",
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, McpError> {
        Ok(rmcp::model::ListResourcesResult::with_all_items(
            spec_tools::resources(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, McpError> {
        Ok(rmcp::model::ListResourceTemplatesResult::with_all_items(
            spec_tools::resource_templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, McpError> {
        if self.node.effective_mode() == remote_agents_spec::Mode::Disabled {
            return Err(McpError::invalid_request(
                format!(
                    "cannot read {}: this node is in disabled mode and rejects every request",
                    request.uri
                ),
                None,
            ));
        }
        match self.spec.read_resource(&self.node, &request.uri).await {
            Ok(text) => Ok(rmcp::model::ReadResourceResult::new(vec![
                rmcp::model::ResourceContents::text(text, request.uri)
                    .with_mime_type("application/json"),
            ])
            .into()),
            Err(message) => Err(McpError::invalid_params(message, None)),
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.offered_tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let Some((toolset, tool)) = self.catalog.iter().find(|(_, tool)| tool.name == name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`; call tools/list"),
                None,
            ));
        };
        if let Some(refusal) = self.withheld(tool, *toolset, self.node.mcp_surface().as_ref()) {
            return Ok(refusal.into());
        }
        if let Some(refusal) = self.disabled_refusal(&name, request.arguments.as_ref()) {
            return Ok(refusal.into());
        }
        if spec_tools::is_spec_tool(&name) {
            return Ok(self
                .spec
                .call(&self.node, &name, request.arguments)
                .await
                .into());
        }
        if name.starts_with("fleet_") || name.starts_with("job_") {
            return Ok(self
                .call_fleet_tool(&name, request.arguments, &context.ct)
                .await
                .into());
        }
        if name == "mapreduce" {
            return Ok(self
                .call_mapreduce(request.arguments, &context)
                .await
                .into());
        }
        let mut arguments = request.arguments;
        let window_override = arguments
            .as_mut()
            .and_then(|a| a.remove(OVERRIDE_WINDOW))
            .and_then(|v| v.as_str().map(str::to_string));
        let parsed = match parse_request(&name, arguments) {
            Ok(r) => r,
            Err(text) => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
            }
        };
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: "mcp:local".into(),
            request: parsed,
            on_behalf_of_model: true,
            window_override,
        };
        let progress = ProgressRelay::new(&context);
        let ctx = CallContext {
            cancel: context.ct.clone(),
            progress: progress.sink(),
        };
        let outcome = self.node.handle(envelope, ctx).await;
        progress.flush().await;
        if name == remote_agents_ops::operation::FileThumbnail::NAME {
            return Ok(thumbnail_tool_result(outcome).into());
        }
        Ok(to_tool_result(&name, outcome).into())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    /// A node of its own (local only) in `mode`, with its data in `dir`.
    pub(crate) fn node_in(dir: &std::path::Path, mode: &str) -> Arc<Node> {
        let flags = remote_agents_node::config::NodeFlags {
            name: Some("mcp-test".into()),
            data_dir: Some(dir.join("data")),
            mode: Some(mode.into()),
            // Every tool, so that each can be tested; the selection is tested on its own.
            toolsets: Some("all".into()),
            ..Default::default()
        };
        let env = std::collections::BTreeMap::<String, String>::new();
        Node::open(remote_agents_node::config::Settings::resolve(&flags, &env).unwrap()).unwrap()
    }

    /// A JSON-RPC client speaking raw lines to a server over in-process pipes, as a desktop
    /// client does over stdio.
    pub(crate) struct LineClient {
        to_server: tokio::io::DuplexStream,
        from_server: tokio::io::Lines<tokio::io::BufReader<tokio::io::DuplexStream>>,
        next_id: u64,
    }

    impl LineClient {
        /// Pipes for a server: returns the client and the server's (stdin, stdout) ends.
        pub(crate) fn pipes() -> (Self, tokio::io::DuplexStream, tokio::io::DuplexStream) {
            let (to_server, server_in) = tokio::io::duplex(1 << 16);
            let (server_out, from_server) = tokio::io::duplex(1 << 16);
            let client = Self {
                to_server,
                from_server: tokio::io::BufReader::new(from_server).lines(),
                next_id: 1,
            };
            (client, server_in, server_out)
        }

        /// A client of `server` served by rmcp's own stdio framing.
        pub(crate) fn serving(server: McpServer) -> Self {
            let (client, server_in, server_out) = Self::pipes();
            remote_agents_node::runtime::spawn(async move {
                if let Ok(service) = server.serve((server_in, server_out)).await {
                    let _ = service.waiting().await;
                }
            });
            client
        }

        pub(crate) async fn send_line(&mut self, line: &[u8]) {
            self.to_server.write_all(line).await.unwrap();
            self.to_server.write_all(b"\n").await.unwrap();
        }

        /// The next message the server writes (a response or a notification).
        pub(crate) async fn next_message(&mut self) -> serde_json::Value {
            let line = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                self.from_server.next_line(),
            )
            .await
            .expect("the server answered within 20 s")
            .unwrap()
            .expect("the server closed its output");
            serde_json::from_str(&line).unwrap()
        }

        /// Sends a request and returns its response, skipping notifications.
        pub(crate) async fn request(
            &mut self,
            method: &str,
            params: serde_json::Value,
        ) -> serde_json::Value {
            let id = self.next_id;
            self.next_id += 1;
            let message = serde_json::json!({
                "jsonrpc": "2.0", "id": id, "method": method, "params": params,
            });
            self.send_line(message.to_string().as_bytes()).await;
            loop {
                let answer = self.next_message().await;
                if answer["id"] == serde_json::json!(id) {
                    return answer;
                }
            }
        }

        pub(crate) async fn initialize(&mut self) {
            let answer = self
                .request(
                    "initialize",
                    serde_json::json!({
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "unit-test", "version": "0"},
                    }),
                )
                .await;
            assert_eq!(
                answer["result"]["serverInfo"]["name"], "remote-agents",
                "{answer}"
            );
            let initialized =
                serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            self.send_line(initialized.to_string().as_bytes()).await;
        }

        /// Calls a tool and returns its result (`isError` results included).
        pub(crate) async fn call_tool(
            &mut self,
            name: &str,
            arguments: serde_json::Value,
        ) -> serde_json::Value {
            let answer = self
                .request(
                    "tools/call",
                    serde_json::json!({"name": name, "arguments": arguments}),
                )
                .await;
            answer["result"].clone()
        }
    }

    fn text_of(result: &serde_json::Value) -> String {
        result["content"]
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }

    /// A `disabled` node used to answer `job_list` and `fleet_status`, and to forward `exec`
    /// and `fleet_exec` towards peers, because those tools bypass the node's policy gate.
    #[tokio::test]
    async fn a_disabled_node_refuses_every_tool_local_or_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "disabled");
        let mut client = LineClient::serving(McpServer::new(node));
        client.initialize().await;
        let calls = [
            ("job_list", serde_json::json!({})),
            ("job_get", serde_json::json!({"op_id": "x"})),
            ("fleet_status", serde_json::json!({})),
            (
                "fleet_exec",
                serde_json::json!({"target": "*", "argv": ["true"]}),
            ),
            (
                "fleet_read",
                serde_json::json!({"target": "*", "path": "/etc/hostname"}),
            ),
            (
                "mapreduce",
                serde_json::json!({"target": "*", "items": ["a"], "map": ["cat"]}),
            ),
            ("spec_get", serde_json::json!({})),
            ("spec_plan", serde_json::json!({})),
            ("exec", serde_json::json!({"argv": ["true"]})),
            (
                "exec",
                serde_json::json!({"argv": ["true"], "agent_id": "another-host"}),
            ),
            ("get_info", serde_json::json!({})),
            ("list_agents", serde_json::json!({})),
            ("set_mode", serde_json::json!({"mode": "edit"})),
            (
                "set_mode",
                serde_json::json!({"mode": "edit", "agent_id": "another-host"}),
            ),
        ];
        for (tool, arguments) in calls {
            let result = client.call_tool(tool, arguments.clone()).await;
            assert_eq!(result["isError"], true, "{tool} {arguments}: {result}");
            assert!(
                text_of(&result).contains("disabled mode"),
                "{tool} {arguments}: {result}"
            );
        }
        let resource = client
            .request(
                "resources/read",
                serde_json::json!({"uri": "fleet://desired"}),
            )
            .await;
        assert!(
            resource["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("disabled mode")),
            "{resource}"
        );
    }

    /// An override to `disabled` is lifted by a local set_mode (only a configured `disabled`
    /// is a kill switch), and the node answers again afterwards.
    #[tokio::test]
    async fn an_override_to_disabled_is_lifted_by_a_local_set_mode() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "edit");
        let mut client = LineClient::serving(McpServer::new(node));
        client.initialize().await;
        let set = client
            .call_tool("set_mode", serde_json::json!({"mode": "disabled"}))
            .await;
        assert_ne!(set["isError"], true, "{set}");
        let refused = client.call_tool("job_list", serde_json::json!({})).await;
        assert_eq!(refused["isError"], true, "{refused}");
        let lifted = client
            .call_tool("set_mode", serde_json::json!({"mode": "edit"}))
            .await;
        assert_ne!(lifted["isError"], true, "{lifted}");
        let answered = client.call_tool("job_list", serde_json::json!({})).await;
        assert_ne!(answered["isError"], true, "{answered}");
    }

    /// The bytes of `tools/list` as a client receives it (the result's JSON).
    fn tools_list_bytes(tools: Vec<Tool>) -> usize {
        serde_json::to_vec(&ListToolsResult::with_all_items(tools))
            .unwrap()
            .len()
    }

    /// Every tool list is sent to the model in every conversation: the default one must stay
    /// within 32 KiB of JSON (it was 73 KB with 30 tools before toolsets and compaction).
    #[test]
    // The figures are this test's report (run with --nocapture); it is not the stdio channel.
    #[allow(clippy::print_stdout)]
    fn the_default_tool_list_fits_in_32_kib() {
        let default = BTreeSet::from(remote_agents_spec::DEFAULT_TOOLSETS);
        let default_bytes = tools_list_bytes(tools_of(&default));
        let all_bytes = tools_list_bytes(tools());
        println!(
            "tools/list: default ({}) {} tools, {default_bytes} bytes; all {} tools, {all_bytes} bytes",
            default
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(","),
            tools_of(&default).len(),
            tools().len(),
        );
        for toolset in Toolset::ALL {
            let tools = tools_of(&BTreeSet::from([toolset]));
            println!(
                "  {toolset}: {} tools, {} bytes",
                tools.len(),
                tools_list_bytes(tools)
            );
        }
        assert!(default_bytes <= 32 * 1024, "{default_bytes} bytes");
        assert!(all_bytes > default_bytes);
    }

    #[test]
    fn every_tool_belongs_to_exactly_one_toolset_and_every_toolset_has_tools() {
        let catalog = catalog();
        let mut names: Vec<&str> = catalog.iter().map(|(_, t)| t.name.as_ref()).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a tool is listed twice");
        for toolset in Toolset::ALL {
            assert!(
                catalog.iter().any(|(t, _)| *t == toolset),
                "{toolset} has no tool"
            );
        }
        assert_eq!(toolset_of("exec"), Some(Toolset::Core));
        assert_eq!(toolset_of("read_file"), Some(Toolset::Files));
        assert_eq!(toolset_of("git_push"), Some(Toolset::Git));
        assert_eq!(toolset_of("fleet_exec"), Some(Toolset::Fleet));
        assert_eq!(toolset_of("job_get"), Some(Toolset::Fleet));
        assert_eq!(toolset_of("spec_plan"), Some(Toolset::Spec));
        assert_eq!(toolset_of("fleet_status"), Some(Toolset::Spec));
        assert_eq!(toolset_of("schedule_add"), Some(Toolset::Schedule));
        assert_eq!(toolset_of("mapreduce"), Some(Toolset::Mapreduce));
        assert_eq!(toolset_of("send_file"), Some(Toolset::Transfer));
        assert_eq!(toolset_of("chat_list"), Some(Toolset::Tasks));
        assert_eq!(toolset_of("chat_get"), Some(Toolset::Tasks));
        assert_eq!(toolset_of("no_such_tool"), None);
    }

    /// A server started with some toolsets lists only their tools, and refuses a call to
    /// another toolset's tool with a message naming the toolset and how to enable it.
    #[tokio::test]
    async fn a_server_lists_and_accepts_only_its_toolsets() {
        let dir = tempfile::tempdir().unwrap();
        let flags = remote_agents_node::config::NodeFlags {
            name: Some("mcp-test".into()),
            data_dir: Some(dir.path().join("data")),
            toolsets: Some("core,files".into()),
            ..Default::default()
        };
        let env = std::collections::BTreeMap::<String, String>::new();
        let node = Node::open(remote_agents_node::config::Settings::resolve(&flags, &env).unwrap())
            .unwrap();
        let mut client = LineClient::serving(McpServer::new(node));
        client.initialize().await;
        let listed = client.request("tools/list", serde_json::json!({})).await;
        let names: BTreeSet<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = catalog()
            .into_iter()
            .filter(|(t, _)| matches!(t, Toolset::Core | Toolset::Files))
            .map(|(_, tool)| match tool.name {
                std::borrow::Cow::Borrowed(name) => name,
                std::borrow::Cow::Owned(_) => unreachable!("tool names are static"),
            })
            .collect();
        assert_eq!(names, expected);
        assert!(names.contains("exec") && names.contains("read_file"));

        let refused = client
            .call_tool("git_status", serde_json::json!({"path": "/tmp"}))
            .await;
        assert_eq!(refused["isError"], true, "{refused}");
        let text = text_of(&refused);
        assert!(
            text.contains("`git` toolset")
                && text.contains("--toolsets core,files,git")
                && text.contains("REMOTE_AGENTS_TOOLSETS"),
            "{text}"
        );
        let answered = client
            .call_tool("file_stat", serde_json::json!({"path": dir.path()}))
            .await;
        assert_ne!(answered["isError"], true, "{answered}");
    }

    #[test]
    fn every_tool_has_a_strict_object_schema_and_annotations() {
        let tools = tools();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for expected in [
            "exec",
            "read_file",
            "write_file",
            "list_dir",
            "file_stat",
            "file_search",
            "file_thumbnail",
            "get_info",
            "set_mode",
            "git_status",
            "git_pull",
            "git_commit",
            "git_push",
            "list_agents",
            "schedule_add",
            "schedule_remove",
            "schedule_list",
        ] {
            assert!(names.contains(&expected), "missing {expected}");
        }
        for expected in [
            "fleet_exec",
            "fleet_read",
            "fleet_write",
            "fleet_git",
            "fleet_search",
            "fleet_send",
            "job_get",
            "job_list",
        ] {
            assert!(names.contains(&expected), "missing {expected}");
        }
        for tool in &tools {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert_eq!(
                tool.input_schema["additionalProperties"],
                serde_json::json!(false),
                "{}",
                tool.name
            );
            // Single-host tools take agent_id; fleet tools take a target selector instead.
            let routing = if tool.name.starts_with("fleet_") || tool.name == "mapreduce" {
                "target"
            } else if tool.name.starts_with("job_") {
                "op_id"
            } else {
                "agent_id"
            };
            // The desired-state tools act on the spec source, not on one agent.
            if tool.name != "job_list"
                && !(tool.name.starts_with("spec_") || tool.name == "fleet_status")
            {
                assert!(
                    tool.input_schema["properties"].get(routing).is_some(),
                    "{} lacks {routing}",
                    tool.name
                );
            }
            let annotations = tool.annotations.as_ref().unwrap();
            assert!(annotations.read_only_hint.is_some());
            assert!(tool.output_schema.is_some());
        }
        let hints = |name: &str| {
            let tool = tools.iter().find(|t| t.name == name).unwrap();
            let a = tool.annotations.clone().unwrap();
            (a.read_only_hint, a.destructive_hint)
        };
        assert_eq!(hints("schedule_list"), (Some(true), None));
        assert_eq!(hints("schedule_add"), (Some(false), Some(true)));
        assert_eq!(hints("schedule_remove"), (Some(false), Some(true)));
        let exec = tools.iter().find(|t| t.name == "exec").unwrap();
        assert_eq!(
            exec.annotations.as_ref().unwrap().read_only_hint,
            Some(false)
        );
        assert_eq!(
            exec.annotations.as_ref().unwrap().destructive_hint,
            Some(true)
        );
    }

    /// The width and height a PNG's IHDR chunk states (bytes 16..24, after the signature and
    /// the chunk's length and type).
    fn png_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        assert_eq!(&png[12..16], b"IHDR");
        let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (number(16), number(20))
    }

    /// file_thumbnail answers with an image content block a client can show: its mime type
    /// set, its data base64 of an image of the thumbnail's size, and a line of text saying
    /// what the file is; the structured content does not carry the image a second time.
    #[tokio::test]
    async fn file_thumbnail_answers_with_an_image_content_block() {
        // A 64×32 solid red PNG (made with Python's zlib; the mcp crate has no image codec).
        const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAgCAIAAAAt/+nTAAAAN0lEQVR42u3PQQkAAAgEsItz/VMYyww+hcE\
                           KLNO+FgEBAQEBAQEBAQEBAQEBAQEBAQEBAQGBqwVH+cB5rlzNGwAAAABJRU5ErkJggg==";
        let base64 = remote_agents_ops::Encoding::Base64;
        let dir = tempfile::tempdir().unwrap();
        let node = node_in(dir.path(), "plan");
        let path = dir.path().join("red.png");
        let bytes = remote_agents_node::fs::decode(PNG, base64).unwrap();
        assert_eq!(png_size(&bytes), (64, 32));
        std::fs::write(&path, bytes).unwrap();
        let mut client = LineClient::serving(McpServer::new(node));
        client.initialize().await;

        let result = client
            .call_tool(
                "file_thumbnail",
                serde_json::json!({"path": path, "max_size": 16, "format": "png"}),
            )
            .await;
        assert_ne!(result["isError"], true, "{result}");
        let image = &result["content"][0];
        assert_eq!(image["type"], "image", "{result}");
        assert_eq!(image["mimeType"], "image/png", "{result}");
        let thumbnail =
            remote_agents_node::fs::decode(image["data"].as_str().unwrap(), base64).unwrap();
        assert_eq!(png_size(&thumbnail), (16, 8));
        let text = text_of(&result);
        assert!(
            text.contains("red.png") && text.contains("png image, 64×32"),
            "{text}"
        );
        assert_eq!(
            result["structuredContent"]["thumbnail_width"], 16,
            "{result}"
        );
        assert!(
            result["structuredContent"].get("data").is_none(),
            "{result}"
        );

        // The node's own data dir is read in no mode, images included.
        let protected = dir.path().join("data").join("red.png");
        std::fs::copy(&path, &protected).unwrap();
        let refused = client
            .call_tool("file_thumbnail", serde_json::json!({"path": protected}))
            .await;
        assert_eq!(refused["isError"], true, "{refused}");
        assert!(text_of(&refused).contains("refused by policy"), "{refused}");
    }

    #[test]
    fn unknown_argument_fields_are_reported_as_tool_errors() {
        let mut args = JsonObject::new();
        args.insert("path".into(), "/tmp".into());
        args.insert("recursive".into(), true.into());
        let err = parse_request("list_dir", Some(args)).unwrap_err();
        assert!(err.contains("recursive"), "{err}");
    }

    #[test]
    fn refusals_become_is_error_results_with_the_reason() {
        let r = to_tool_result(
            "write_file",
            Outcome::Refused {
                reason: "plan mode".into(),
            },
        );
        assert_eq!(r.is_error, Some(true));
        assert!(r.structured_content.is_none());
    }
}
