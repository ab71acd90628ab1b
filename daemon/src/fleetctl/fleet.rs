//! fleetctl's fleet operations: `exec`, `read`, `write`, `git`, `search` fanned out to a target
//! selector, and `jobs` (the stored history). fleetctl joins the room as a send-only peer with
//! its own identity (`<data dir>/fleetctl`), so it never evicts a node sharing the data dir.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use remote_agents_node::fleet::connection::{
    Connection, FanoutPlan, declared_inventory, fan_out, fleetctl_dir,
};
use remote_agents_node::fleet::fanout::{Amount, FanoutOptions};
use remote_agents_node::fleet::fold::{fold, render_text};
use remote_agents_node::fleet::inventory::Inventory;
use remote_agents_node::fleet::jobs::{self, Job};
use remote_agents_node::journal::Store;
use remote_agents_node::sync::publish::applied_bundle;
use remote_agents_ops::{
    Encoding, ExecArgs, FileSearchArgs, GitCommitArgs, GitRemoteArgs, GitRepoArgs, ReadFileArgs,
    Request, WriteFileArgs, parse_duration,
};
use remote_agents_spec::Selector;

pub use super::connect::{ConnectFlags, StateFlags, resolve_settings};
use crate::output::Output;

/// Options shared by every fan-out command.
#[derive(Debug, Clone, Args)]
pub struct FanoutFlags {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Which hosts: `all`, a tag, `name:GLOB`, `os:linux`, `fact:K=V`, joined with `,` `&` `!`.
    #[arg(long, short = 't')]
    pub target: String,
    /// The fleet's spec (files or folders): hosts it declares that match the target but are not
    /// connected are reported `unreachable` instead of being missed, and connected hosts it
    /// does not declare are marked `undeclared`. Default: the spec applied to the fleet.
    #[arg(long = "spec", short = 'f')]
    pub spec: Vec<PathBuf>,
    /// Rolling run: hosts per batch, as a count or a share (`10%`).
    #[arg(long)]
    pub batch: Option<Amount>,
    /// Halt the rest once more than this many hosts (or this share) are not ok.
    #[arg(long)]
    pub max_fail: Option<Amount>,
    /// Per-host timeout (`5s`, `2m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Deadline for the whole run.
    #[arg(long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// Hosts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Act inside a closed change window (a `Window` of the applied spec), for this reason:
    /// each host records it in its audit log.
    #[arg(long, value_name = "REASON")]
    pub override_window: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum GitAction {
    Status,
    Pull {
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        branch: Option<String>,
    },
    Commit {
        #[arg(long, short = 'm')]
        message: String,
        /// Paths to stage (default: every change).
        #[arg(long)]
        path: Vec<String>,
    },
    Push {
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        branch: Option<String>,
    },
}

/// One fleet operation from the command line.
#[derive(Debug, Clone, Subcommand)]
pub enum FleetCommand {
    /// Run a command on every targeted host: `fleetctl exec -t web -- uptime`.
    Exec {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// Run through `/bin/sh -c` (only where the host's policy grants a shell).
        #[arg(long)]
        shell: bool,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        argv: Vec<String>,
    },
    /// Read a file on every targeted host.
    Read {
        #[command(flatten)]
        fanout: FanoutFlags,
        path: String,
        #[arg(long)]
        offset: Option<u64>,
        #[arg(long)]
        length: Option<u64>,
    },
    /// Write a file on every targeted host (refused where the host's mode is `plan`).
    Write {
        #[command(flatten)]
        fanout: FanoutFlags,
        path: String,
        /// The content to write.
        #[arg(
            long,
            conflicts_with = "from_file",
            required_unless_present = "from_file"
        )]
        content: Option<String>,
        /// Read the content from this local file.
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// Git in a repository on every targeted host.
    Git {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// The repository's path on the hosts.
        #[arg(long)]
        repo: String,
        #[command(subcommand)]
        action: GitAction,
    },
    /// Schedules on every targeted host: add, remove or list imperative schedules.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Autonomous tasks: a prompt run by each targeted host's own AI CLI (claude, opencode,
    /// codex), and the hosts' task records.
    Task {
        #[command(subcommand)]
        action: TaskAction,
    },
    /// The hosts' local AI chats (Claude Code, opencode, Codex, Cline, Roo, Kilo, Zed), read
    /// through each host's path policy: `fleetctl chat list web-1`, `fleetctl chat get web-1
    /// claude SESSION`.
    Chat {
        #[command(subcommand)]
        action: ChatAction,
    },
    /// Search files on every targeted host.
    Search {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// File name glob.
        #[arg(long)]
        name: Option<String>,
        /// Content regex.
        #[arg(long)]
        content: Option<String>,
        /// Folders to search (default: the hosts' home and usual folders).
        #[arg(long)]
        root: Vec<String>,
        /// Where the search finds nothing, ask the host's AI CLI to locate the file (a
        /// read-only task; the operator key needs `task`). Give `--timeout` room for it.
        #[arg(long)]
        ai_fallback: bool,
        /// The AI CLI asked: claude, opencode or codex (default: the first installed).
        #[arg(long, value_parser = parse_provider, requires = "ai_fallback")]
        ai_provider: Option<remote_agents_ops::TaskProvider>,
    },
}

/// `fleetctl schedule ...`: imperative schedules on the targeted hosts (reported as drift there
/// unless the spec holds them).
#[derive(Debug, Clone, Subcommand)]
pub enum ScheduleAction {
    /// Add (or replace) a schedule:
    /// `fleetctl schedule add -t web backup --cron '0 3 * * *' -- /usr/local/bin/backup`.
    Add {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// The schedule's name (letters, digits, `.`, `_`, `-`); an existing one is replaced.
        #[arg(value_name = "NAME")]
        schedule: String,
        /// Crontab line in each host's local time zone: 5 fields, an optional leading seconds
        /// field, or @hourly/@daily/@weekly/@monthly.
        #[arg(long)]
        cron: String,
        /// Run the words after `--` as one `/bin/sh -c` line (where the host's policy grants a
        /// shell).
        #[arg(long)]
        shell: bool,
        /// Kill a run after this long (`30s`, `5m`); default 60s.
        #[arg(long, value_parser = parse_duration)]
        run_timeout: Option<Duration>,
        /// When a slot comes due while the previous run still runs: forbid (skip it), allow,
        /// or replace (cancel the running one).
        #[arg(long, value_parser = parse_concurrency)]
        concurrency_policy: Option<remote_agents_spec::Concurrency>,
        /// Remove the schedule after this long (`1h`, `7d`); default: never.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// The program and its arguments.
        #[arg(required = true, last = true)]
        argv: Vec<String>,
    },
    /// Remove a schedule (a run already going finishes).
    Remove {
        #[command(flatten)]
        fanout: FanoutFlags,
        #[arg(value_name = "NAME")]
        schedule: String,
    },
    /// List schedules with their recent runs.
    List {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// Only this schedule.
        #[arg(value_name = "NAME")]
        schedule: Option<String>,
        /// Recent runs shown per schedule.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

/// `fleetctl task ...`: autonomous tasks on the targeted hosts.
#[derive(Debug, Clone, Subcommand)]
pub enum TaskAction {
    /// Run one prompt on every targeted host and wait for each answer (`--timeout` is each
    /// task's wall time): `fleetctl task run -t web --provider claude "why is the disk full?"`.
    Run {
        #[command(flatten)]
        fanout: FanoutFlags,
        /// claude, opencode or codex.
        #[arg(long, value_parser = parse_provider)]
        provider: remote_agents_ops::TaskProvider,
        /// Working directory on the hosts (default: their home directory).
        #[arg(long)]
        cwd: Option<String>,
        /// The provider's model.
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        max_turns: Option<u32>,
        /// US dollars each task may cost at most.
        #[arg(long)]
        budget: Option<f64>,
        /// Continue this earlier session (one host: the session is that host's).
        #[arg(long)]
        resume: Option<String>,
        /// Answer with the task ids at once instead of waiting for the answers.
        #[arg(long)]
        no_wait: bool,
        /// Include each task's full transcript.
        #[arg(long)]
        transcript: bool,
        /// The prompt.
        #[arg(required = true)]
        prompt: Vec<String>,
    },
    /// One task's record.
    Get {
        #[command(flatten)]
        fanout: FanoutFlags,
        task_id: String,
        #[arg(long)]
        transcript: bool,
    },
    /// The hosts' tasks, newest first.
    List {
        #[command(flatten)]
        fanout: FanoutFlags,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// A task's record once it ends (or at --wait).
    Wait {
        #[command(flatten)]
        fanout: FanoutFlags,
        task_id: String,
        /// How long to wait (`30s`, `10m`); default 10m.
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
        #[arg(long)]
        transcript: bool,
    },
    /// Stop a running task (its provider's process group is killed).
    Cancel {
        #[command(flatten)]
        fanout: FanoutFlags,
        task_id: String,
    },
}

/// The connection and output flags of `fleetctl chat`, which names its hosts itself.
#[derive(Debug, Clone, Args)]
pub struct ChatFlags {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Per-host timeout (`5s`, `2m`, `1h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The same as `-o json`.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
}

impl ChatFlags {
    fn fanout(self, target: String) -> FanoutFlags {
        FanoutFlags {
            connect: self.connect,
            target,
            spec: Vec::new(),
            batch: None,
            max_fail: None,
            timeout: self.timeout,
            deadline: None,
            concurrency: 256,
            output: if self.json { Output::Json } else { self.output },
            override_window: None,
        }
    }
}

/// `fleetctl chat ...`: the hosts' local AI-chat history, read-only.
#[derive(Debug, Clone, Subcommand)]
pub enum ChatAction {
    /// The chats of one host (HOST) or of every targeted host (-t), newest first, a page at a
    /// time. Resumable ones (claude, opencode, codex) continue with `fleetctl task run
    /// --provider P --resume SESSION`.
    List {
        #[command(flatten)]
        flags: ChatFlags,
        /// The host (its name).
        #[arg(required_unless_present = "target", conflicts_with = "target")]
        host: Option<String>,
        /// Which hosts, as a selector (`all`, a tag, `name:GLOB`, ...).
        #[arg(long, short = 't')]
        target: Option<String>,
        /// Only this provider's chats: claude, opencode, codex, cline, roo, kilo or zed.
        #[arg(long, value_parser = parse_chat_provider)]
        provider: Option<remote_agents_ops::ChatProvider>,
        /// Chats per page (default 50).
        #[arg(long)]
        limit: Option<usize>,
        /// Chats to pass over (the previous page's next offset).
        #[arg(long)]
        offset: Option<usize>,
    },
    /// One chat's messages, oldest first, a page at a time.
    Get {
        #[command(flatten)]
        flags: ChatFlags,
        /// The host (its name).
        host: String,
        #[arg(value_parser = parse_chat_provider)]
        provider: remote_agents_ops::ChatProvider,
        /// The session id chat list shows.
        session: String,
        /// Messages to pass over (the previous page's next offset).
        #[arg(long)]
        offset: Option<usize>,
        /// Messages per page (default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Bytes of message text per page (default 256 KiB).
        #[arg(long)]
        max_bytes: Option<usize>,
    },
}

fn parse_chat_provider(text: &str) -> Result<remote_agents_ops::ChatProvider, String> {
    text.parse()
}

fn chat_request(action: ChatAction) -> (FanoutFlags, Request, String) {
    use remote_agents_ops::{ChatGetArgs, ChatListArgs};
    match action {
        ChatAction::List {
            flags,
            host,
            target,
            provider,
            limit,
            offset,
        } => {
            let target = target.unwrap_or_else(|| format!("name:{}", host.unwrap_or_default()));
            let summary = match provider {
                Some(provider) => format!("chat list {provider}"),
                None => "chat list".to_string(),
            };
            let request = Request::ChatList(ChatListArgs {
                agent_id: None,
                provider,
                limit,
                offset,
            });
            (flags.fanout(target), request, summary)
        }
        ChatAction::Get {
            flags,
            host,
            provider,
            session,
            offset,
            limit,
            max_bytes,
        } => {
            let summary = format!("chat get {provider} {session}");
            let request = Request::ChatGet(ChatGetArgs {
                agent_id: None,
                provider,
                session_id: session,
                offset,
                limit,
                max_bytes,
            });
            (flags.fanout(format!("name:{host}")), request, summary)
        }
    }
}

fn parse_provider(text: &str) -> Result<remote_agents_ops::TaskProvider, String> {
    text.parse()
}

/// How much longer than the task's own wall time the fan-out waits for a host's answer.
const TASK_ANSWER_SLACK: Duration = Duration::from_secs(30);

fn task_request(action: TaskAction) -> (FanoutFlags, Request, String) {
    use remote_agents_ops::{
        TaskCancelArgs, TaskDispatchArgs, TaskGetArgs, TaskListArgs, TaskWaitArgs,
    };
    match action {
        TaskAction::Run {
            mut fanout,
            provider,
            cwd,
            model,
            max_turns,
            budget,
            resume,
            no_wait,
            transcript,
            prompt,
        } => {
            let prompt = prompt.join(" ");
            let summary = format!(
                "task {provider}: {}",
                remote_agents_ops::prompt_summary(&prompt, 60)
            );
            let request = Request::TaskDispatch(TaskDispatchArgs {
                agent_id: None,
                provider,
                prompt,
                cwd,
                model,
                max_turns,
                timeout_secs: Some(fanout.timeout.as_secs_f64()),
                budget_usd: budget,
                resume,
                allowed_tools: Vec::new(),
                disallowed_tools: Vec::new(),
                wait: !no_wait,
                transcript,
            });
            // The host stops the task at --timeout; its answer comes after that.
            fanout.timeout += TASK_ANSWER_SLACK;
            (fanout, request, summary)
        }
        TaskAction::Get {
            fanout,
            task_id,
            transcript,
        } => (
            fanout,
            Request::TaskGet(TaskGetArgs {
                agent_id: None,
                task_id: task_id.clone(),
                transcript,
            }),
            format!("task get {task_id}"),
        ),
        TaskAction::List { fanout, limit } => (
            fanout,
            Request::TaskList(TaskListArgs {
                agent_id: None,
                limit,
            }),
            "task list".into(),
        ),
        TaskAction::Wait {
            mut fanout,
            task_id,
            wait,
            transcript,
        } => {
            let wait = wait.unwrap_or(Duration::from_secs(600));
            fanout.timeout = fanout.timeout.max(wait + TASK_ANSWER_SLACK);
            (
                fanout,
                Request::TaskWait(TaskWaitArgs {
                    agent_id: None,
                    task_id: task_id.clone(),
                    wait_secs: Some(wait.as_secs_f64()),
                    transcript,
                }),
                format!("task wait {task_id}"),
            )
        }
        TaskAction::Cancel { fanout, task_id } => (
            fanout,
            Request::TaskCancel(TaskCancelArgs {
                agent_id: None,
                task_id: task_id.clone(),
            }),
            format!("task cancel {task_id}"),
        ),
    }
}

fn parse_concurrency(text: &str) -> Result<remote_agents_spec::Concurrency, String> {
    use remote_agents_spec::Concurrency;
    match text {
        "forbid" => Ok(Concurrency::Forbid),
        "allow" => Ok(Concurrency::Allow),
        "replace" => Ok(Concurrency::Replace),
        other => Err(format!(
            "unknown concurrency policy {other:?}: expected forbid, allow or replace"
        )),
    }
}

/// `fleetctl jobs`: the stored history of fan-outs.
#[derive(Debug, Clone, Args)]
pub struct JobsCommand {
    /// Show one job in full (an op id or a unique prefix of one).
    pub op_id: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// List the runs of declared jobs (`trigger: on-apply` or `cron`) instead, asking every
    /// node for those it coordinated (the room flags say where).
    #[arg(long, conflicts_with = "op_id")]
    pub declared: bool,
    #[command(flatten)]
    pub connect: ConnectFlags,
}

/// Runs one fleet operation; returns the process exit code (0 when every host is ok).
pub async fn run(command: FleetCommand) -> anyhow::Result<u8> {
    let (fanout, request, summary) = build_request(command)?;
    let connect = &fanout.connect;
    let settings = resolve_settings(connect)?;
    let selector = Selector::parse(&fanout.target)
        .map_err(|e| anyhow::anyhow!("--target {:?}: {e}", fanout.target))?;
    let from_files = declared_inventory(&fanout.spec)?;
    let dir = fleetctl_dir(&settings)?;
    let store = Store::open(&dir)?;
    let connection = Connection::open(&settings, &dir, connect.connect_timeout).await?;
    // Without -f the applied spec is the inventory, so a declared host that is offline is
    // reported `unreachable` instead of missing from the result.
    let inventory = match from_files {
        Some(inventory) => Some(inventory),
        None => applied_bundle(&connection)
            .await
            .map(|bundle| Inventory::of_bundle(&bundle)),
    };
    let job_request = request.clone();
    let mut job = fan_out(
        &connection.net,
        &connection.agent_id,
        FanoutPlan {
            selector: &selector,
            expected: inventory.as_ref().map_or(&[], |i| i.hosts.as_slice()),
            request,
            per_os: BTreeMap::new(),
            options: &options(&fanout),
            summary,
            // fleetctl is an operator's command line, not a model.
            on_behalf_of_model: false,
            window_override: fanout.override_window.clone(),
        },
    )
    .await;
    if let Some(inventory) = &inventory {
        inventory.mark_undeclared(&mut job.report.records);
    }
    // A target that matches nothing is almost always a typo: say so rather than succeed.
    anyhow::ensure!(
        !job.report.records.is_empty(),
        "no host matched --target {:?} ({} connected)",
        fanout.target,
        connection.net.peers().len()
    );
    jobs::save(&store, &job)?;
    if fanout.output == Output::Text {
        // A chat page reads as a table or a transcript; the JSON outputs keep the host's answer.
        for record in &mut job.report.records {
            crate::fleetctl::chat_text::render(&job_request, record);
        }
    }
    print_job(&job, fanout.output)?;
    Ok(if job.report.all_ok() { 0 } else { 1 })
}

fn options(flags: &FanoutFlags) -> FanoutOptions {
    FanoutOptions {
        per_host_timeout: flags.timeout,
        deadline: flags.deadline,
        concurrency: flags.concurrency,
        batch: flags.batch,
        max_fail: flags.max_fail,
    }
}

fn build_request(command: FleetCommand) -> anyhow::Result<(FanoutFlags, Request, String)> {
    Ok(match command {
        FleetCommand::Exec {
            fanout,
            shell,
            argv,
        } => {
            let summary = format!("exec {}", argv.join(" "));
            let request = Request::Exec(ExecArgs {
                agent_id: None,
                argv,
                shell,
                cwd: None,
                env: BTreeMap::new(),
                stdin: None,
                timeout_secs: Some(fanout.timeout.as_secs_f64()),
                max_output_bytes: None,
            });
            (fanout, request, summary)
        }
        FleetCommand::Read {
            fanout,
            path,
            offset,
            length,
        } => {
            let summary = format!("read {path}");
            let request = Request::ReadFile(ReadFileArgs {
                agent_id: None,
                path,
                offset,
                length,
            });
            (fanout, request, summary)
        }
        FleetCommand::Write {
            fanout,
            path,
            content,
            from_file,
        } => {
            let (content, encoding) = match (content, from_file) {
                (Some(text), _) => (text, Encoding::Utf8),
                (None, Some(file)) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("--from-file {}", file.display()))?;
                    match String::from_utf8(bytes) {
                        Ok(text) => (text, Encoding::Utf8),
                        Err(e) => {
                            use base64::Engine;
                            (
                                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                                Encoding::Base64,
                            )
                        }
                    }
                }
                (None, None) => anyhow::bail!("write needs --content or --from-file"),
            };
            let summary = format!("write {path}");
            let request = Request::WriteFile(WriteFileArgs {
                agent_id: None,
                path,
                content,
                encoding,
                create_dirs: false,
            });
            (fanout, request, summary)
        }
        FleetCommand::Git {
            fanout,
            repo,
            action,
        } => {
            let (summary, request) = match action {
                GitAction::Status => (
                    format!("git status {repo}"),
                    Request::GitStatus(GitRepoArgs {
                        agent_id: None,
                        repo,
                    }),
                ),
                GitAction::Pull { remote, branch } => (
                    format!("git pull {repo}"),
                    Request::GitPull(GitRemoteArgs {
                        agent_id: None,
                        repo,
                        remote,
                        branch,
                    }),
                ),
                GitAction::Push { remote, branch } => (
                    format!("git push {repo}"),
                    Request::GitPush(GitRemoteArgs {
                        agent_id: None,
                        repo,
                        remote,
                        branch,
                    }),
                ),
                GitAction::Commit { message, path } => (
                    format!("git commit {repo}"),
                    Request::GitCommit(GitCommitArgs {
                        agent_id: None,
                        repo,
                        message,
                        paths: (!path.is_empty()).then_some(path),
                    }),
                ),
            };
            (fanout, request, summary)
        }
        FleetCommand::Schedule { action } => schedule_request(action),
        FleetCommand::Task { action } => task_request(action),
        FleetCommand::Chat { action } => chat_request(action),
        FleetCommand::Search {
            fanout,
            name,
            content,
            root,
            ai_fallback,
            ai_provider,
        } => {
            let summary = format!(
                "search name={} content={}",
                name.as_deref().unwrap_or("*"),
                content.as_deref().unwrap_or("-")
            );
            let request = Request::FileSearch(FileSearchArgs {
                agent_id: None,
                name,
                content,
                roots: (!root.is_empty()).then_some(root),
                images_only: false,
                include_hidden: false,
                max_results: None,
                ai_fallback,
                ai_provider,
            });
            (fanout, request, summary)
        }
    })
}

fn schedule_request(action: ScheduleAction) -> (FanoutFlags, Request, String) {
    use remote_agents_ops::{ScheduleAddArgs, ScheduleListArgs, ScheduleRemoveArgs};
    match action {
        ScheduleAction::Add {
            fanout,
            schedule: name,
            cron,
            shell,
            run_timeout,
            concurrency_policy,
            ttl,
            argv,
        } => {
            let summary = format!("schedule add {name} `{cron}` {}", argv.join(" "));
            let (command, shell) = if shell {
                (Vec::new(), Some(argv.join(" ")))
            } else {
                (argv, None)
            };
            let request = Request::ScheduleAdd(ScheduleAddArgs {
                agent_id: None,
                name,
                cron,
                command,
                shell,
                timeout_secs: run_timeout.map(|t| t.as_secs_f64()),
                concurrency: concurrency_policy,
                ttl_secs: ttl.map(|t| t.as_secs().max(1)),
            });
            (fanout, request, summary)
        }
        ScheduleAction::Remove {
            fanout,
            schedule: name,
        } => {
            let summary = format!("schedule remove {name}");
            let request = Request::ScheduleRemove(ScheduleRemoveArgs {
                agent_id: None,
                name,
            });
            (fanout, request, summary)
        }
        ScheduleAction::List {
            fanout,
            schedule: name,
            runs,
        } => {
            let summary = format!("schedule list {}", name.as_deref().unwrap_or("*"));
            let request = Request::ScheduleList(ScheduleListArgs {
                agent_id: None,
                name,
                runs: Some(runs),
            });
            (fanout, request, summary)
        }
    }
}

fn print_job(job: &Job, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json | Output::Yaml => {
            let data = serde_json::json!({
                "op_id": job.op_id,
                "halted": job.report.halted,
                "records": job.report.records,
            });
            print!("{}", output.data(&data)?.unwrap_or_default());
        }
        Output::Text => {
            print!("{}", render_text(&fold(&job.report.records)));
            if job.report.halted {
                println!("halted: the failure threshold was exceeded; the rest were skipped");
            }
            println!("op id: {}", job.op_id);
        }
    }
    Ok(())
}

/// `fleetctl jobs [OP_ID]`: lists stored jobs, or shows one.
pub fn jobs_command(command: &JobsCommand) -> anyhow::Result<u8> {
    let settings = command.connect.state.settings()?;
    let store = Store::open(&fleetctl_dir(&settings)?)?;
    match &command.op_id {
        Some(op_id) => {
            let job = jobs::get(&store, op_id)?.with_context(|| {
                format!("no job with op id {op_id:?} (or the prefix is ambiguous)")
            })?;
            match command.output {
                Output::Json | Output::Yaml => {
                    print!("{}", command.output.data(&job)?.unwrap_or_default())
                }
                Output::Text => {
                    println!("{}  {}  target {}", job.op_id, job.summary, job.target);
                    print!("{}", render_text(&fold(&job.report.records)));
                }
            }
        }
        None => {
            let list = jobs::list(&store, command.limit)?;
            match command.output {
                Output::Json | Output::Yaml => {
                    print!("{}", command.output.data(&list)?.unwrap_or_default())
                }
                Output::Text => {
                    println!(
                        "{:<24} {:<28} {:<16} {:>8}  RESULT",
                        "OP ID", "OPERATION", "TARGET", "MS"
                    );
                    for job in list {
                        // A run of a declared job says what triggered it.
                        let result = match &job.trigger {
                            Some(trigger) => format!("[{trigger}] {}", job.result),
                            None => job.result.clone(),
                        };
                        println!(
                            "{:<24} {:<28} {:<16} {:>8}  {}",
                            job.op_id, job.summary, job.target, job.duration_ms, result
                        );
                    }
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_commands_parse_into_schedule_requests() {
        use clap::Parser;
        let cli = crate::fleetctl::Cli::try_parse_from([
            "fleetctl",
            "schedule",
            "add",
            "-t",
            "web",
            "tick",
            "--cron",
            "*/5 * * * *",
            "--concurrency-policy",
            "replace",
            "--ttl",
            "1h",
            "--",
            "sh",
            "-c",
            "date",
        ])
        .unwrap();
        let crate::fleetctl::Command::Fleet(command) = cli.command else {
            panic!("not a fleet command");
        };
        let (fanout, request, _) = build_request(command).unwrap();
        assert_eq!(fanout.target, "web");
        let Request::ScheduleAdd(args) = request else {
            panic!("not schedule_add: {request:?}");
        };
        assert_eq!(args.name, "tick");
        assert_eq!(args.command, ["sh", "-c", "date"]);
        assert_eq!(
            args.concurrency,
            Some(remote_agents_spec::Concurrency::Replace)
        );
        assert_eq!(args.ttl_secs, Some(3600));
        for argv in [
            &["fleetctl", "schedule", "remove", "-t", "all", "tick"][..],
            &["fleetctl", "schedule", "list", "-t", "all", "--runs", "3"][..],
        ] {
            assert!(
                crate::fleetctl::Cli::try_parse_from(argv).is_ok(),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn durations_read_like_5s_2m_1h() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
    }

    /// `--deadline 1e300` panicked in `Duration::from_secs_f64`, and a duration beyond what the
    /// clock holds panicked where it was added to `Instant::now()`.
    #[test]
    fn absurd_durations_are_errors_not_panics() {
        for text in ["1e300", "-1", "NaN", "inf", "1000000years"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_duration("366days"),
            Ok(Duration::from_secs(366 * 86_400))
        );
    }
}
