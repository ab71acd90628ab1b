//! Plan mode runs commands read-only: the real `remote-agents mcp` in plan mode starts each
//! command inside its Landlock sandbox, where writes, deletions, `chmod`, a `git commit` and a
//! TCP connect all fail while reading commands (`uname`, `df`, `ps`, `cat`, `git status`) work,
//! except on the node's own files (its identity key, its config), which stay unreadable.

use std::path::Path;

use remote_agents_tests::node::McpProcess;
use serde_json::{Value, json};

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()?;
    anyhow::ensure!(output.status.success(), "git {args:?}: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `argv` with exec and returns the exec result (the call itself must succeed).
async fn exec(node: &mut McpProcess, argv: &[&str], cwd: &Path) -> anyhow::Result<Value> {
    let result = node
        .call_tool(
            "exec",
            json!({"argv": argv, "cwd": cwd, "timeout_secs": 30}),
        )
        .await?;
    anyhow::ensure!(result["isError"] == json!(false), "{argv:?}: {result}");
    Ok(result["structuredContent"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_commands_read_but_cannot_write_delete_commit_or_connect() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = std::fs::canonicalize(tmp.path())?;
    let data = home.join("data").display().to_string();
    let config = home.join("config.toml");
    std::fs::write(&config, "[policy]\nallow_shell = true\n")?;
    let kept = home.join("kept.txt");
    std::fs::write(&kept, "still here\n")?;
    let repo = home.join("repo");
    std::fs::create_dir(&repo)?;
    git(&repo, &["init", "-q"])?;
    std::fs::write(repo.join("a.txt"), "a\n")?;
    git(&repo, &["add", "a.txt"])?;
    git(&repo, &["commit", "-q", "-m", "first"])?;
    let head = git(&repo, &["rev-parse", "HEAD"])?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();

    let home_text = home.display().to_string();
    let mut node = McpProcess::start(
        &["--data-dir", &data, "--mode", "plan"],
        &[
            ("HOME", home_text.as_str()),
            ("REMOTE_AGENTS_CONFIG", config.to_str().unwrap_or_default()),
        ],
    )
    .await?;

    // Reading works, and the result says how the command was confined.
    for argv in [
        vec!["uname", "-a"],
        vec!["df", "-P", "."],
        vec!["ps", "-e"],
        vec!["cat", "kept.txt"],
    ] {
        let result = exec(&mut node, &argv, &home).await?;
        assert_eq!(result["exit_code"], 0, "{argv:?}: {result}");
        assert!(
            !result["stdout"].as_str().unwrap_or_default().is_empty(),
            "{argv:?}: {result}"
        );
        assert!(
            result["sandbox"]
                .as_str()
                .is_some_and(|s| s.contains("landlock")),
            "{result}"
        );
    }
    let status = exec(&mut node, &["git", "status", "--short"], &repo).await?;
    assert_eq!(status["exit_code"], 0, "{status}");

    // The node's own files stay unreadable, as they are for the file tools: its identity key
    // and its config file, while their folder can still be listed.
    assert!(home.join("data/identity.key").exists());
    for argv in [vec!["cat", "data/identity.key"], vec!["cat", "config.toml"]] {
        let result = exec(&mut node, &argv, &home).await?;
        assert_ne!(result["exit_code"], 0, "{argv:?}: {result}");
        assert_eq!(result["stdout"], "", "{argv:?}: {result}");
    }
    let listed = exec(&mut node, &["ls"], &home).await?;
    assert_eq!(listed["exit_code"], 0, "{listed}");
    assert!(
        listed["stdout"]
            .as_str()
            .is_some_and(|s| s.contains("kept.txt") && s.contains("data")),
        "{listed}"
    );

    // Writing through a shell (granted by allow_shell) runs, and fails to write.
    let result = node
        .call_tool(
            "exec",
            json!({"argv": ["echo x > ~/f"], "shell": true, "cwd": home}),
        )
        .await?;
    let result = &result["structuredContent"];
    assert_ne!(result["exit_code"], 0, "{result}");
    assert!(!home.join("f").exists());

    let result = exec(&mut node, &["touch", "new.txt"], &home).await?;
    assert_ne!(result["exit_code"], 0, "{result}");
    assert!(!home.join("new.txt").exists());

    let result = exec(&mut node, &["rm", "-f", "kept.txt"], &home).await?;
    assert_ne!(result["exit_code"], 0, "{result}");
    assert_eq!(std::fs::read_to_string(&kept)?, "still here\n");

    // Metadata too: a file's mode and times stay as they were.
    let before = std::fs::metadata(&kept)?;
    for argv in [
        vec!["chmod", "000", "kept.txt"],
        vec!["touch", "-d", "2001-01-01", "kept.txt"],
    ] {
        let result = exec(&mut node, &argv, &home).await?;
        assert_ne!(result["exit_code"], 0, "{argv:?}: {result}");
    }
    let after = std::fs::metadata(&kept)?;
    assert_eq!(after.permissions(), before.permissions());
    assert_eq!(after.modified()?, before.modified()?);

    let result = exec(
        &mut node,
        &[
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "--allow-empty",
            "-m",
            "second",
        ],
        &repo,
    )
    .await?;
    assert_ne!(result["exit_code"], 0, "{result}");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"])?, head);

    // TCP connect is denied: bash's /dev/tcp fails and the listener never sees a connection.
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let result = exec(&mut node, &["bash", "-c", &connect], &home).await?;
    assert_ne!(result["exit_code"], 0, "{result}");
    assert!(
        result["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("Permission denied")),
        "{result}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a sandboxed command connected"
    );

    // Requests that change the node are still refused outright.
    let result = node
        .call_tool(
            "schedule_add",
            json!({"name": "tick", "cron": "* * * * *", "command": ["true"]}),
        )
        .await?;
    assert_eq!(result["isError"], json!(true), "{result}");
    assert!(result.to_string().contains("plan mode"), "{result}");
    Ok(())
}
