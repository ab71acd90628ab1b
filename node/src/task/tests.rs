//! The adapters against a stand-in program on the task `path` that replays a recorded event
//! stream in the provider's documented format (`node/tests/fixtures/tasks/`) and writes down the
//! argv, stdin and opencode permission config it was started with, so the mode mapping is
//! asserted on what the provider really receives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use remote_agents_ops::{
    Caller, Envelope, Outcome, Request, TaskDispatchArgs, TaskEvent, TaskProvider, TaskState,
    TaskStatus,
};
use tokio_util::sync::CancellationToken;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tasks")
        .join(name)
}

/// What the stand-in does after replaying its stream.
#[derive(Clone, Copy)]
enum Then {
    Exit(i32),
    /// Starts a long `sleep` (its pid written to `pid`) and waits for it: a provider that hangs
    /// until it is killed.
    Hang,
}

/// A folder with a stand-in `program` that replays `fixture` and records how it was started.
struct StandIn {
    dir: tempfile::TempDir,
}

impl StandIn {
    fn new(program: &str, fixture_name: &str, then: Then) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let tail = match then {
            Then::Exit(code) => format!("exit {code}"),
            Then::Hang => format!("sleep 600 &\necho $! > {d}/pid\nwait"),
        };
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {d}/argv\n\
             printf '%s' \"$OPENCODE_CONFIG_CONTENT\" > {d}/config\n\
             cat > {d}/stdin\ncat {}\n{tail}\n",
            fixture(fixture_name).display()
        );
        let path = dir.path().join(program);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { dir }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn argv(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("argv"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn launch(provider: TaskProvider, mode: Mode) -> Launch {
    Launch {
        provider,
        prompt: "Why does the div_by_zero test fail?".into(),
        cwd: std::env::temp_dir(),
        model: None,
        max_turns: None,
        budget_usd: None,
        timeout: Duration::from_secs(60),
        resume: None,
        mode,
        allowed_tools: Vec::new(),
        disallowed_tools: Vec::new(),
        deny_commands: Vec::new(),
        deny_paths: Vec::new(),
    }
}

fn tasks_on(store_dir: &Path, path: String, max_concurrent: usize) -> Arc<Tasks> {
    let store = Arc::new(Store::open(store_dir).unwrap());
    Tasks::open(
        store,
        TaskLimits {
            path: Some(path),
            max_concurrent,
            ..TaskLimits::default()
        },
    )
    .unwrap()
}

/// Runs `launch` with the stand-in to its end and returns its record with the transcript.
async fn run(stand_in: &StandIn, launch: Launch) -> TaskStatus {
    let store = tempfile::tempdir().unwrap();
    let tasks = tasks_on(store.path(), stand_in.path(), 4);
    let started = tasks
        .start("host-1", launch, CancellationToken::new(), None)
        .unwrap();
    assert_eq!(started.state, TaskState::Running);
    tasks
        .wait(
            &started.task_id,
            Duration::from_secs(30),
            true,
            &CancellationToken::new(),
        )
        .await
        .unwrap()
        .unwrap()
}

fn arg_after<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

#[tokio::test]
async fn claude_success_is_one_answer_with_turns_cost_and_session() {
    let stand_in = StandIn::new("claude", "claude-success.jsonl", Then::Exit(0));
    let status = run(&stand_in, launch(TaskProvider::Claude, Mode::Plan)).await;
    assert_eq!(status.state, TaskState::Done, "{status:?}");
    assert!(
        status
            .answer
            .as_deref()
            .unwrap()
            .starts_with("The test `div_by_zero` unwraps")
    );
    assert_eq!(status.turns, 3);
    assert_eq!(status.usage.cost_usd, Some(0.0213));
    assert_eq!(
        status.session_id.as_deref(),
        Some("5f0f7c1e-2b7a-4d62-9a51-0c9b1f3e7a10")
    );
    let transcript = status.transcript.unwrap();
    assert!(transcript.iter().any(
        |e| matches!(e, TaskEvent::ToolUse { name, id, .. } if name == "Bash" && id == "toolu_01")
    ));
    assert!(transcript.iter().any(|e| matches!(
        e,
        TaskEvent::ToolResult { id, output, is_error: false } if id == "toolu_02" && output.contains("pub fn div")
    )));
    // The prompt goes on stdin, the plan host's read-only mode on the command line.
    let argv = stand_in.argv();
    assert_eq!(
        stand_in.read("stdin"),
        "Why does the div_by_zero test fail?"
    );
    assert_eq!(arg_after(&argv, "--permission-mode"), Some("plan"));
    assert_eq!(arg_after(&argv, "--output-format"), Some("stream-json"));
    assert!(argv.contains(&"-p".to_string()) && argv.contains(&"--verbose".to_string()));
}

#[tokio::test]
async fn claude_at_its_max_turns_fails_with_the_session_kept() {
    let stand_in = StandIn::new("claude", "claude-max-turns.jsonl", Then::Exit(1));
    let mut l = launch(TaskProvider::Claude, Mode::Edit);
    l.max_turns = Some(2);
    l.resume = Some("0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411".into());
    let status = run(&stand_in, l).await;
    assert_eq!(status.state, TaskState::Failed);
    assert!(
        status.error.as_deref().unwrap().contains("error_max_turns"),
        "{status:?}"
    );
    assert_eq!(
        status.session_id.as_deref(),
        Some("0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411")
    );
    let argv = stand_in.argv();
    assert_eq!(arg_after(&argv, "--max-turns"), Some("2"));
    assert_eq!(
        arg_after(&argv, "--resume"),
        Some("0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411")
    );
    assert_eq!(arg_after(&argv, "--permission-mode"), Some("acceptEdits"));
}

#[tokio::test]
async fn claude_not_logged_in_fails_with_its_own_message() {
    let stand_in = StandIn::new("claude", "claude-not-logged-in.jsonl", Then::Exit(1));
    let status = run(&stand_in, launch(TaskProvider::Claude, Mode::Bypass)).await;
    assert_eq!(status.state, TaskState::Failed);
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("Invalid API key · Please run /login"),
        "{status:?}"
    );
    assert_eq!(
        arg_after(&stand_in.argv(), "--permission-mode"),
        Some("bypassPermissions")
    );
}

#[tokio::test]
async fn a_malformed_line_is_skipped_and_counted() {
    let stand_in = StandIn::new("claude", "claude-malformed.jsonl", Then::Exit(0));
    let status = run(&stand_in, launch(TaskProvider::Claude, Mode::Plan)).await;
    assert_eq!(status.state, TaskState::Done, "{status:?}");
    assert_eq!(status.answer.as_deref(), Some("Done: 42."));
    assert_eq!(status.skipped_lines, 1);
}

/// True once no process `pid` runs (gone, or a zombie waiting for its new parent).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", path.display());
}

/// Waits until the task's record names the provider's session (the stream is read as the
/// provider writes it), failing the test after 5 s.
async fn wait_for_session(tasks: &Tasks, task_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tasks
        .get(task_id, false)
        .unwrap()
        .unwrap()
        .session_id
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "task {task_id} named no session within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cancel_kills_a_hanging_provider_and_everything_it_started() {
    let stand_in = StandIn::new("claude", "claude-hang.jsonl", Then::Hang);
    let store = tempfile::tempdir().unwrap();
    let tasks = tasks_on(store.path(), stand_in.path(), 4);
    let started = tasks
        .start(
            "host-1",
            launch(TaskProvider::Claude, Mode::Plan),
            CancellationToken::new(),
            None,
        )
        .unwrap();
    let sleep_pid = wait_for_file(&stand_in.dir.path().join("pid")).await;
    assert!(!process_gone(&sleep_pid));
    // The stream is read as the provider writes it: cancel once the session was read.
    wait_for_session(&tasks, &started.task_id).await;
    let cancelled = tasks.cancel(&started.task_id).await.unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert_eq!(
        cancelled.session_id.as_deref(),
        Some("c0ffee00-1111-4222-8333-444455556666")
    );
    assert!(process_gone(&sleep_pid), "the provider's child survived");
    // A second cancel names the state it ended in.
    let again = tasks.cancel(&started.task_id).await.unwrap_err();
    assert!(again.contains("already ended (cancelled)"), "{again}");
}

#[tokio::test]
async fn the_wall_time_limit_stops_a_hanging_provider() {
    let stand_in = StandIn::new("claude", "claude-hang.jsonl", Then::Hang);
    let mut l = launch(TaskProvider::Claude, Mode::Plan);
    l.timeout = Duration::from_millis(300);
    let status = run(&stand_in, l).await;
    assert_eq!(status.state, TaskState::Failed);
    assert!(
        status.error.as_deref().unwrap().contains("wall-time limit"),
        "{status:?}"
    );
    assert!(process_gone(stand_in.read("pid").trim()));
}

#[tokio::test]
async fn codex_success_answers_with_its_last_message_and_thread() {
    let stand_in = StandIn::new("codex", "codex-success.jsonl", Then::Exit(0));
    let status = run(&stand_in, launch(TaskProvider::Codex, Mode::Plan)).await;
    assert_eq!(status.state, TaskState::Done, "{status:?}");
    assert_eq!(
        status.answer.as_deref(),
        Some("The crate is at version 0.4.1 (Cargo.toml line 3).")
    );
    assert_eq!(
        status.session_id.as_deref(),
        Some("0199a213-81c0-7800-8aa1-bbab2a035a53")
    );
    assert_eq!(status.turns, 3);
    assert_eq!(status.usage.input_tokens, 24763);
    assert_eq!(status.usage.output_tokens, 122);
    let argv = stand_in.argv();
    assert_eq!(&argv[..2], ["exec", "--sandbox"]);
    assert_eq!(arg_after(&argv, "--sandbox"), Some("read-only"));
    assert!(argv.contains(&"--json".to_string()));
    assert_eq!(argv.last().map(String::as_str), Some("-"));
    assert_eq!(
        stand_in.read("stdin"),
        "Why does the div_by_zero test fail?"
    );
}

#[tokio::test]
async fn codex_turn_failure_is_a_failed_task_with_its_message() {
    let stand_in = StandIn::new("codex", "codex-error.jsonl", Then::Exit(1));
    let mut l = launch(TaskProvider::Codex, Mode::Edit);
    l.resume = Some("0199a214-0000-7000-8000-000000000001".into());
    let status = run(&stand_in, l).await;
    assert_eq!(status.state, TaskState::Failed);
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("401 Unauthorized"),
        "{status:?}"
    );
    let argv = stand_in.argv();
    assert_eq!(arg_after(&argv, "--sandbox"), Some("workspace-write"));
    assert_eq!(
        arg_after(&argv, "resume"),
        Some("0199a214-0000-7000-8000-000000000001")
    );
}

#[tokio::test]
async fn opencode_success_adds_up_steps_and_cost() {
    let stand_in = StandIn::new("opencode", "opencode-success.jsonl", Then::Exit(0));
    let status = run(&stand_in, launch(TaskProvider::Opencode, Mode::Plan)).await;
    assert_eq!(status.state, TaskState::Done, "{status:?}");
    assert_eq!(
        status.answer.as_deref(),
        Some("The host runs Linux 6.12.0.")
    );
    assert_eq!(status.turns, 2);
    assert_eq!(
        status.session_id.as_deref(),
        Some("ses_494719016ffe85dkDMj0FPRbHK")
    );
    assert!((status.usage.cost_usd.unwrap() - 0.002).abs() < 1e-9);
    // The session id is kept once, not once per line.
    let sessions = status
        .transcript
        .unwrap()
        .iter()
        .filter(|e| matches!(e, TaskEvent::Session { .. }))
        .count();
    assert_eq!(sessions, 1);
    let argv = stand_in.argv();
    assert_eq!(arg_after(&argv, "--agent"), Some("plan"));
    assert_eq!(arg_after(&argv, "--format"), Some("json"));
    assert_eq!(
        argv.last().map(String::as_str),
        Some("Why does the div_by_zero test fail?")
    );
    let config: serde_json::Value = serde_json::from_str(&stand_in.read("config")).unwrap();
    assert_eq!(config["permission"]["edit"], "deny");
    assert_eq!(config["permission"]["bash"], "deny");
}

#[tokio::test]
async fn opencode_error_fails_with_its_message() {
    let stand_in = StandIn::new("opencode", "opencode-error.jsonl", Then::Exit(1));
    let status = run(&stand_in, launch(TaskProvider::Opencode, Mode::Edit)).await;
    assert_eq!(status.state, TaskState::Failed);
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("No API key found for provider anthropic"),
        "{status:?}"
    );
}

/// The cases Claude Code's tests cover, for the two other adapters: a malformed line is skipped
/// and counted, the node stops them at `max_turns` (Codex has no turn flag; opencode's own is
/// covered above), and cancelling one that hangs kills it and what it started, keeping its
/// session for a resume.
#[tokio::test]
async fn codex_and_opencode_skip_malformed_lines_stop_at_max_turns_and_die_when_cancelled() {
    for (provider, answer, turns, session) in [
        (
            TaskProvider::Codex,
            "The crate is at version 0.4.1 (Cargo.toml line 3).",
            3,
            "0199a213-81c0-7800-8aa1-bbab2a035a53",
        ),
        (
            TaskProvider::Opencode,
            "The host runs Linux 6.12.0.",
            2,
            "ses_494719016ffe85dkDMj0FPRbHK",
        ),
    ] {
        let program = provider.program();
        let stand_in = StandIn::new(
            program,
            &format!("{program}-malformed.jsonl"),
            Then::Exit(0),
        );
        let status = run(&stand_in, launch(provider, Mode::Plan)).await;
        assert_eq!(status.state, TaskState::Done, "{provider}: {status:?}");
        assert_eq!(status.answer.as_deref(), Some(answer), "{provider}");
        assert_eq!(status.skipped_lines, 1, "{provider}");
        assert_eq!(status.turns, turns, "{provider}");

        let stand_in = StandIn::new(program, &format!("{program}-success.jsonl"), Then::Hang);
        let mut l = launch(provider, Mode::Edit);
        l.max_turns = Some(1);
        let status = run(&stand_in, l).await;
        assert_eq!(status.state, TaskState::Failed, "{provider}: {status:?}");
        assert_eq!(
            status.error.as_deref(),
            Some("stopped at the limit of 1 turns"),
            "{provider}"
        );
        assert_eq!(status.turns, 1, "{provider}");
        assert_eq!(status.session_id.as_deref(), Some(session), "{provider}");

        let stand_in = StandIn::new(program, &format!("{program}-hang.jsonl"), Then::Hang);
        let store = tempfile::tempdir().unwrap();
        let tasks = tasks_on(store.path(), stand_in.path(), 4);
        let started = tasks
            .start(
                "host-1",
                launch(provider, Mode::Plan),
                CancellationToken::new(),
                None,
            )
            .unwrap();
        let sleep_pid = wait_for_file(&stand_in.dir.path().join("pid")).await;
        assert!(!process_gone(&sleep_pid), "{provider}");
        wait_for_session(&tasks, &started.task_id).await;
        let cancelled = tasks.cancel(&started.task_id).await.unwrap();
        assert_eq!(cancelled.state, TaskState::Cancelled, "{provider}");
        assert_eq!(cancelled.session_id.as_deref(), Some(session), "{provider}");
        assert!(
            process_gone(&sleep_pid),
            "{provider}: the provider's child survived"
        );
    }
}

/// opencode has no turn limit of its own: the node counts its steps and stops it past the
/// limit; the budget likewise from the cost each step reports.
#[tokio::test]
async fn the_node_enforces_turns_and_budget_where_the_provider_does_not() {
    let stand_in = StandIn::new("opencode", "opencode-success.jsonl", Then::Hang);
    let mut l = launch(TaskProvider::Opencode, Mode::Edit);
    l.max_turns = Some(1);
    let status = run(&stand_in, l).await;
    assert_eq!(status.state, TaskState::Failed);
    assert_eq!(
        status.error.as_deref(),
        Some("stopped at the limit of 1 turns")
    );
    assert_eq!(status.turns, 1);

    let stand_in = StandIn::new("opencode", "opencode-success.jsonl", Then::Hang);
    let mut l = launch(TaskProvider::Opencode, Mode::Edit);
    l.budget_usd = Some(0.001);
    let status = run(&stand_in, l).await;
    assert_eq!(status.state, TaskState::Failed);
    assert_eq!(
        status.error.as_deref(),
        Some("stopped at the budget of $0.001")
    );
}

#[tokio::test]
async fn a_provider_that_is_not_installed_is_named() {
    let empty = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let tasks = tasks_on(store.path(), empty.path().display().to_string(), 4);
    let error = tasks
        .start(
            "host-1",
            launch(TaskProvider::Codex, Mode::Plan),
            CancellationToken::new(),
            None,
        )
        .unwrap_err();
    assert!(
        error.starts_with("provider codex is not installed on this host"),
        "{error}"
    );
    assert!(tasks.list(10).unwrap().is_empty());
}

#[tokio::test]
async fn the_hosts_concurrency_limit_refuses_one_more() {
    let stand_in = StandIn::new("claude", "claude-hang.jsonl", Then::Hang);
    let store = tempfile::tempdir().unwrap();
    let tasks = tasks_on(store.path(), stand_in.path(), 1);
    let first = tasks
        .start(
            "host-1",
            launch(TaskProvider::Claude, Mode::Plan),
            CancellationToken::new(),
            None,
        )
        .unwrap();
    let refused = tasks
        .start(
            "host-1",
            launch(TaskProvider::Claude, Mode::Plan),
            CancellationToken::new(),
            None,
        )
        .unwrap_err();
    assert!(refused.contains("max_concurrent"), "{refused}");
    tasks.cancel(&first.task_id).await.unwrap();
}

/// A task the node was running when it stopped reads `interrupted` with its session id when
/// the store is opened again, and is not run again.
#[tokio::test]
async fn a_task_running_when_the_node_stopped_reads_interrupted_with_its_session() {
    let stand_in = StandIn::new("claude", "claude-hang.jsonl", Then::Hang);
    let store_dir = tempfile::tempdir().unwrap();
    let task_id;
    {
        let store = Arc::new(Store::open(store_dir.path()).unwrap());
        let tasks = Tasks::open(
            store,
            TaskLimits {
                path: Some(stand_in.path()),
                ..TaskLimits::default()
            },
        )
        .unwrap();
        let started = tasks
            .start(
                "host-1",
                launch(TaskProvider::Claude, Mode::Plan),
                CancellationToken::new(),
                None,
            )
            .unwrap();
        task_id = started.task_id;
        wait_for_file(&stand_in.dir.path().join("pid")).await;
        // The record on disk carries the session as soon as the provider named it.
        for _ in 0..500 {
            let stored = tasks.load(&task_id).unwrap().unwrap();
            if stored.status.session_id.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What a crash leaves: the record as stored, read by a fresh store. The running
        // provider is stopped here so it does not outlive the test.
        let stored = tasks.load(&task_id).unwrap().unwrap();
        assert_eq!(stored.status.state, TaskState::Running);
        let copy = tempfile::tempdir().unwrap();
        let copied = Arc::new(Store::open(copy.path()).unwrap());
        let crashed = Tasks::open(copied.clone(), TaskLimits::default()).unwrap();
        crashed.save(&stored.status, &stored.transcript).unwrap();
        drop(crashed);
        tasks.cancel(&task_id).await.unwrap();
        let reopened = Tasks::open(copied, TaskLimits::default()).unwrap();
        let status = reopened.get(&task_id, false).unwrap().unwrap();
        assert_eq!(status.state, TaskState::Interrupted);
        assert_eq!(
            status.session_id.as_deref(),
            Some("c0ffee00-1111-4222-8333-444455556666")
        );
        assert!(status.error.unwrap().contains("not run again"));
    }
}

/// The host's deny lists and the node's own files become Claude Code's disallowed tools; the
/// modes map onto each provider's own permission system.
#[test]
fn modes_and_deny_lists_map_onto_each_provider() {
    let mut l = launch(TaskProvider::Claude, Mode::Edit);
    l.deny_commands = vec!["rm *".into(), "shutdown".into()];
    l.deny_paths = vec!["/home/dev/.ssh/**".into()];
    l.disallowed_tools = vec!["WebFetch".into()];
    let argv = command(&l).argv;
    assert!(
        argv.contains(
            &"--disallowedTools=WebFetch,Bash(rm:*),Bash(shutdown),Read(//home/dev/.ssh/**),\
              Edit(//home/dev/.ssh/**)"
                .to_string()
        ),
        "{argv:?}"
    );
    let codex = |mode| command(&launch(TaskProvider::Codex, mode)).argv;
    assert!(codex(Mode::Bypass).contains(&"--dangerously-bypass-approvals-and-sandbox".into()));
    assert_eq!(
        arg_after(&codex(Mode::Edit), "--sandbox"),
        Some("workspace-write")
    );
    let mut l = launch(TaskProvider::Opencode, Mode::Edit);
    l.deny_commands = vec!["rm *".into()];
    let opencode = command(&l);
    assert!(!opencode.argv.contains(&"--agent".to_string()));
    let config: serde_json::Value = serde_json::from_str(&opencode.env[0].1).unwrap();
    assert_eq!(config["permission"]["bash"]["rm *"], "deny");
    assert_eq!(config["permission"]["bash"]["*"], "allow");
    assert!(
        command(&launch(TaskProvider::Opencode, Mode::Bypass))
            .argv
            .contains(&"--auto".to_string())
    );
}

fn node_in(dir: &Path, mode: &str, path: &str) -> Arc<crate::node::Node> {
    use crate::config::{NodeFlags, Settings};
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("[tasks]\npath = \"{path}\"\n")).unwrap();
    let flags = NodeFlags {
        name: Some("web-1".into()),
        data_dir: Some(dir.join("data")),
        config: Some(config),
        mode: Some(mode.into()),
        ..NodeFlags::default()
    };
    crate::node::Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap())
        .unwrap()
}

fn dispatch(provider: TaskProvider) -> Request {
    Request::TaskDispatch(TaskDispatchArgs {
        agent_id: None,
        provider,
        prompt: "Why does the div_by_zero test fail?".into(),
        cwd: None,
        model: None,
        max_turns: None,
        timeout_secs: None,
        budget_usd: None,
        resume: None,
        allowed_tools: Vec::new(),
        disallowed_tools: Vec::new(),
        wait: true,
        transcript: false,
    })
}

async fn call(node: &Arc<crate::node::Node>, request: Request) -> Outcome {
    node.handle_local(
        Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: Caller::Cli,
            request,
            on_behalf_of_model: false,
            window_override: None,
        },
        crate::node::CallContext::default(),
    )
    .await
}

/// Through the node's pipeline: a `plan` host starts Claude Code in its plan mode with the
/// node's own files disallowed, and answers with the short record; a `disabled` host refuses.
#[tokio::test]
async fn a_plan_host_dispatches_in_plan_mode_and_a_disabled_one_refuses() {
    let stand_in = StandIn::new("claude", "claude-success.jsonl", Then::Exit(0));
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), "plan", &stand_in.path());
    let outcome = call(&node, dispatch(TaskProvider::Claude)).await;
    let Outcome::Ok { result } = outcome else {
        panic!("{outcome:?}");
    };
    let status: TaskStatus = serde_json::from_value(result).unwrap();
    assert_eq!(status.state, TaskState::Done);
    assert!(status.transcript.is_none());
    assert_eq!(status.mode, "plan (claude --permission-mode plan)");
    let argv = stand_in.argv();
    assert_eq!(arg_after(&argv, "--permission-mode"), Some("plan"));
    let data = std::fs::canonicalize(dir.path().join("data")).unwrap();
    let disallowed = argv
        .iter()
        .find(|a| a.starts_with("--disallowedTools="))
        .unwrap();
    assert!(
        disallowed.contains(&format!("Read(/{}/**)", data.display())),
        "{disallowed}"
    );

    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path(), "disabled", &stand_in.path());
    let outcome = call(&node, dispatch(TaskProvider::Claude)).await;
    assert!(
        matches!(&outcome, Outcome::Refused { reason } if reason.contains("disabled")),
        "{outcome:?}"
    );
}

/// A task is an exec in disguise, so it has its own capability: an operator key allowed
/// `exec` but not `task` is refused it.
#[test]
fn an_operator_key_without_task_is_refused() {
    use remote_agents_spec::{Capability, HostFacts, Operator};
    assert_eq!(
        dispatch(TaskProvider::Claude).capability(),
        Some(Capability::Task)
    );
    let operators = [Operator {
        name: "ci".into(),
        key: "ed25519:AAAA".into(),
        target: None,
        allow: vec![Capability::Exec, Capability::Read],
    }];
    let host = HostFacts::new("web-1");
    let refused = remote_agents_spec::gate::authorize_operator(
        &operators,
        Some("ed25519:AAAA"),
        Capability::Task,
        &host,
    )
    .unwrap_err();
    assert!(refused.contains("may not task"), "{refused}");
    assert!(
        remote_agents_spec::gate::authorize_operator(
            &operators,
            Some("ed25519:AAAA"),
            Capability::Exec,
            &host,
        )
        .is_ok()
    );
}

/// Where the real AI CLIs are: `REMOTE_AGENTS_AI_CLIS`, else the folder `test.sh` installs them
/// into from npm (`@anthropic-ai/claude-code`, `opencode-ai`, `@openai/codex`).
fn real_clis() -> PathBuf {
    let dir = match std::env::var_os("REMOTE_AGENTS_AI_CLIS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap())
            .join(".cache/remote-agents/ai-clis/node_modules/.bin"),
    };
    for program in ["claude", "opencode", "codex"] {
        assert!(
            dir.join(program).exists(),
            "{} has no {program}: install the AI CLIs with `npm install --prefix \
             ~/.cache/remote-agents/ai-clis @anthropic-ai/claude-code opencode-ai @openai/codex` \
             (test.sh does) or point REMOTE_AGENTS_AI_CLIS at their bin folder",
            dir.display()
        );
    }
    dir
}

/// The real CLIs, started by the adapters with every flag they pass (mode, turns, budget, deny
/// lists, resume), with an empty HOME and no API keys: each accepts the flags and the task ends
/// `failed` with the provider's own message. Here nothing reaches the providers' APIs: Claude
/// Code says it is not logged in; Codex and opencode (whose free default model needs no login)
/// retry their unreachable APIs until the wall-time limit, and their last word is kept.
#[tokio::test]
async fn the_real_clis_accept_every_flag_and_fail_clearly_without_credentials() {
    let real = real_clis();
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let wrappers = tempfile::tempdir().unwrap();
    for program in ["claude", "opencode", "codex"] {
        let script = format!(
            // A HOME per process: two opencode runs that create their database in one fresh
            // HOME at once race on its migration ("Failed query: CREATE TABLE").
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {w}/argv-{program}\n\
             h={home}/$$; mkdir -p \"$h\"\n\
             exec env -u ANTHROPIC_API_KEY -u OPENAI_API_KEY -u CODEX_API_KEY \
             -u OPENCODE_API_KEY HOME=\"$h\" XDG_CONFIG_HOME=\"$h/.config\" \
             XDG_DATA_HOME=\"$h/.local/share\" XDG_CACHE_HOME=\"$h/.cache\" {real} \"$@\"\n",
            w = wrappers.path().display(),
            home = home.path().display(),
            real = real.join(program).display(),
        );
        let path = wrappers.path().join(program);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let tasks = tasks_on(
        store.path(),
        format!(
            "{}:{}",
            wrappers.path().display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        8,
    );
    let with_flags = |provider, mode, timeout: u64| Launch {
        cwd: work.path().to_path_buf(),
        max_turns: Some(3),
        budget_usd: Some(0.5),
        timeout: Duration::from_secs(timeout),
        deny_commands: vec!["rm *".into()],
        deny_paths: vec!["/etc/shadow".into(), "/root/.ssh/**".into()],
        allowed_tools: if provider == TaskProvider::Claude {
            vec!["Read".into()]
        } else {
            Vec::new()
        },
        disallowed_tools: if provider == TaskProvider::Claude {
            vec!["WebFetch".into()]
        } else {
            Vec::new()
        },
        ..launch(provider, mode)
    };
    let mut codex_resume = with_flags(TaskProvider::Codex, Mode::Edit, 60);
    codex_resume.resume = Some("0199a214-0000-7000-8000-000000000001".into());
    let mut claude_resume = with_flags(TaskProvider::Claude, Mode::Edit, 120);
    claude_resume.resume = Some("0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411".into());
    let mut opencode_resume = with_flags(TaskProvider::Opencode, Mode::Edit, 25);
    opencode_resume.resume = Some("ses_4f1c2b7a9e0dffe1a2b3c4d5e6".into());
    let runs = [
        with_flags(TaskProvider::Claude, Mode::Plan, 120),
        with_flags(TaskProvider::Claude, Mode::Bypass, 120),
        with_flags(TaskProvider::Codex, Mode::Plan, 20),
        codex_resume,
        with_flags(TaskProvider::Opencode, Mode::Plan, 25),
        with_flags(TaskProvider::Opencode, Mode::Bypass, 25),
        claude_resume,
        opencode_resume,
    ];
    let mut started = Vec::new();
    for run in runs {
        let provider = run.provider;
        let status = tasks
            .start("host-1", run, CancellationToken::new(), None)
            .unwrap();
        started.push((provider, status.task_id));
    }
    for (provider, task_id) in started {
        let status = tasks
            .wait(
                &task_id,
                Duration::from_secs(180),
                true,
                &CancellationToken::new(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.state, TaskState::Failed, "{provider}: {status:?}");
        let error = status.error.clone().unwrap();
        for unaccepted in ["unknown option", "unexpected argument", "Unknown argument"] {
            assert!(!error.contains(unaccepted), "{provider}: {error}");
        }
        let expected: &[&str] = match (provider, status.mode.as_str()) {
            // Claude Code refuses its bypass mode to root before it looks at the login.
            (TaskProvider::Claude, mode)
                if mode.starts_with("bypass") && rustix::process::geteuid().is_root() =>
            {
                &["--dangerously-skip-permissions cannot be used with root/sudo privileges"]
            }
            // `--resume` of a session this HOME never had: accepted, and answered before the
            // login is looked at.
            (TaskProvider::Claude, mode) if mode.starts_with("edit") => {
                &["No conversation found with session ID: 0b3c8a52-71c4-4a55-b7f6-3e2f9d0c4411"]
            }
            (TaskProvider::Claude, _) => &["Not logged in · Please run /login"],
            (TaskProvider::Codex, mode) if mode.starts_with("edit") => {
                &["no rollout found for thread id 0199a214-0000-7000-8000-000000000001"]
            }
            (TaskProvider::Codex, _) => &["codex last said: Reconnecting"],
            // `--session` of a session this HOME never had, told without colour codes.
            (TaskProvider::Opencode, mode) if mode.starts_with("edit") => {
                &["opencode exited with status 1: Error: Session not found"]
            }
            (TaskProvider::Opencode, _) => &["opencode last said:", "level=ERROR", "connect"],
        };
        for text in expected {
            assert!(error.contains(text), "{provider}: {error}");
        }
    }
    // The flags really were passed.
    let claude = std::fs::read_to_string(wrappers.path().join("argv-claude")).unwrap();
    assert!(claude.contains("--max-turns\n3\n") && claude.contains("--max-budget-usd\n0.5\n"));
    let codex = std::fs::read_to_string(wrappers.path().join("argv-codex")).unwrap();
    assert!(codex.contains("--json\n"), "{codex}");
}

/// The point of a task: what the caller reads is small. For the recorded three-turn Claude Code
/// run, the record `task_wait` answers with (no transcript) against the transcript the host
/// kept and the provider's raw stream (README: "what a caller receives").
#[tokio::test]
async fn the_caller_receives_a_fraction_of_what_the_host_kept() {
    let stand_in = StandIn::new("claude", "claude-success.jsonl", Then::Exit(0));
    let mut status = run(&stand_in, launch(TaskProvider::Claude, Mode::Plan)).await;
    let transcript = status.transcript.take().unwrap();
    let record_bytes = serde_json::to_vec(&status).unwrap().len() as u64;
    let transcript_bytes: u64 = transcript
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len() as u64)
        .sum();
    let stream_bytes = std::fs::metadata(fixture("claude-success.jsonl"))
        .unwrap()
        .len();
    assert_eq!(transcript_bytes, status.transcript_bytes);
    // Measured: 635, 1,944 and 3,518 bytes. The record grows with the answer only; the
    // transcript with every tool output.
    assert!(
        record_bytes * 3 < transcript_bytes,
        "{record_bytes} {transcript_bytes}"
    );
    assert!(
        record_bytes * 5 < stream_bytes,
        "{record_bytes} {stream_bytes}"
    );
}

/// A stand-in `claude` whose one answer is `answer` (a success stream in Claude Code's
/// format), recording its argv and stdin like `StandIn`.
fn answering_claude(answer: &str) -> StandIn {
    let stand_in = StandIn {
        dir: tempfile::tempdir().unwrap(),
    };
    let d = stand_in.dir.path().display();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > {d}/argv\ncat > {d}/stdin\ncat {d}/stream.jsonl\n"
    );
    let path = stand_in.dir.path().join("claude");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    set_answer(&stand_in, answer);
    stand_in
}

/// What `answering_claude`'s next run answers.
fn set_answer(stand_in: &StandIn, answer: &str) {
    let init = serde_json::json!({"type": "system", "subtype": "init", "cwd": "/",
        "session_id": "7d2a0c55-search", "tools": ["Glob", "Grep"],
        "model": "claude-sonnet-4-5", "permissionMode": "plan"});
    let result = serde_json::json!({
        "type": "result", "subtype": "success", "is_error": false, "duration_ms": 900,
        "num_turns": 2, "result": answer, "session_id": "7d2a0c55-search",
        "total_cost_usd": 0.004, "usage": {"input_tokens": 900, "output_tokens": 40}
    });
    std::fs::write(
        stand_in.dir.path().join("stream.jsonl"),
        format!("{init}\n{result}\n"),
    )
    .unwrap();
}

fn search(root: &Path, name: &str) -> Request {
    Request::FileSearch(remote_agents_ops::FileSearchArgs {
        agent_id: None,
        roots: Some(vec![root.display().to_string()]),
        name: Some(name.into()),
        content: None,
        images_only: false,
        include_hidden: false,
        max_results: None,
        ai_fallback: true,
        ai_provider: None,
    })
}

/// Issue 16 item 5: a search that finds nothing asks the host's AI in its read-only mode (on
/// an `edit` host too), and of the paths the answer names lists only what the policy hands out:
/// the file that exists, not a missing one, not one outside the roots, not the node's own.
#[tokio::test]
async fn an_empty_search_asks_the_ai_read_only_and_keeps_only_what_the_policy_hands_out() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::create_dir_all(&old).unwrap();
    let report = old.join("report-final.txt");
    std::fs::write(&report, "the report").unwrap();
    let node_in_dir = dir.path().join("n");
    std::fs::create_dir_all(&node_in_dir).unwrap();
    let stand_in = answering_claude("NONE");
    let node = node_in(&node_in_dir, "edit", &stand_in.path());
    // One of the node's own files (its store), which no caller is handed.
    let own = std::fs::read_dir(node_in_dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("a file in the node's data folder");
    set_answer(
        &stand_in,
        &format!(
            "The report was moved.\nPATH: {}\nPATH: {}\n- PATH: `/etc/shadow`\nPATH: {}",
            report.display(),
            old.join("missing.txt").display(),
            own.display()
        ),
    );
    let outcome = call(&node, search(&docs, "report-2024*")).await;
    let Outcome::Ok { result } = outcome else {
        panic!("{outcome:?}");
    };
    let result: remote_agents_ops::FileSearchResult = serde_json::from_value(result).unwrap();
    let report = std::fs::canonicalize(&report).unwrap();
    assert_eq!(
        result
            .matches
            .iter()
            .map(|m| m.path.as_str())
            .collect::<Vec<_>>(),
        [report.display().to_string()]
    );
    assert_eq!(result.matches[0].size, 10);
    assert_eq!(result.found_by, Some(remote_agents_ops::FoundBy::Ai));
    let ai = result.ai.unwrap();
    assert_eq!(ai.provider, TaskProvider::Claude);
    assert_eq!(ai.session_id.as_deref(), Some("7d2a0c55-search"));
    assert!(ai.task_id.is_some() && ai.error.is_none(), "{ai:?}");
    let rejected: BTreeMap<String, String> = ai
        .rejected
        .into_iter()
        .map(|r| (r.path, r.reason))
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(
        rejected[&old.join("missing.txt").display().to_string()].contains("does not exist"),
        "{rejected:?}"
    );
    assert!(
        rejected["/etc/shadow"].contains("outside the roots"),
        "{rejected:?}"
    );
    assert!(
        rejected[&own.display().to_string()].contains("hard limit"),
        "{rejected:?}"
    );
    // Read-only whatever the host allows, with the node's own files disallowed.
    let argv = stand_in.argv();
    assert_eq!(arg_after(&argv, "--permission-mode"), Some("plan"));
    assert!(
        argv.iter()
            .any(|a| a.starts_with("--disallowedTools=") && a.contains("/data/**")),
        "{argv:?}"
    );
    let prompt = stand_in.read("stdin");
    assert!(
        prompt.contains("report-2024*") && prompt.contains(&docs.display().to_string()),
        "{prompt}"
    );
}

/// A search that finds its file never starts the AI; one without any AI CLI installed says so
/// in the result instead of failing the search.
#[tokio::test]
async fn a_found_file_needs_no_ai_and_a_missing_cli_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("report-2024.txt"), "x").unwrap();
    let stand_in = answering_claude("NONE");
    let node_dir = dir.path().join("n");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node = node_in(&node_dir, "plan", &stand_in.path());
    let Outcome::Ok { result } = call(&node, search(&docs, "report-2024*")).await else {
        panic!("search failed");
    };
    let result: remote_agents_ops::FileSearchResult = serde_json::from_value(result).unwrap();
    assert_eq!(result.matches.len(), 1);
    assert_eq!(result.found_by, Some(remote_agents_ops::FoundBy::Search));
    assert!(result.ai.is_none());
    assert!(!stand_in.dir.path().join("argv").exists());

    let empty = tempfile::tempdir().unwrap();
    let node_dir = dir.path().join("m");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node = node_in(&node_dir, "plan", &empty.path().display().to_string());
    let Outcome::Ok { result } = call(&node, search(&docs, "nothing-like-it*")).await else {
        panic!("search failed");
    };
    let result: remote_agents_ops::FileSearchResult = serde_json::from_value(result).unwrap();
    assert!(result.matches.is_empty() && result.found_by.is_none());
    let error = result.ai.unwrap().error.unwrap();
    assert!(
        error.contains("none of the AI CLIs (claude, opencode, codex) is installed"),
        "{error}"
    );
}

/// The fallback starts a task, so it needs what a task needs: the `task` capability and the
/// Tasks toolset; a plain search needs neither.
#[test]
fn an_ai_fallback_search_needs_the_task_capability() {
    use remote_agents_spec::{Capability, Toolset};
    let dir = tempfile::tempdir().unwrap();
    let with = search(dir.path(), "*.pdf");
    assert_eq!(with.capability(), Some(Capability::Read));
    let (capability, toolset, _) = with.also_needs().unwrap();
    assert_eq!((capability, toolset), (Capability::Task, Toolset::Tasks));
    let Request::FileSearch(mut plain) = with else {
        panic!("a file_search request");
    };
    plain.ai_fallback = false;
    assert!(Request::FileSearch(plain).also_needs().is_none());
}
