//! Git through the real node over MCP (issue 12 item 5): a repository config written with
//! `write_file` cannot make `git_pull` check files out beyond the roots. The repositories are set
//! up with the `git` command, isolated from the user's and the system's git config.

use std::path::Path;
use std::process::Command;

use remote_agents_tests::node::McpProcess;
use serde_json::json;

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_file_of_core_worktree_then_git_pull_writes_nothing_outside_the_roots()
-> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = std::fs::canonicalize(tmp.path())?;
    let root = work.join("root");
    let outside = work.join("outside");
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(&outside)?;
    git(&root, &["init", "-q", "--bare", "remote.git"])?;
    git(&root, &["clone", "-q", "remote.git", "up"])?;
    let up = root.join("up");
    std::fs::write(up.join("README"), "one\n")?;
    git(&up, &["add", "-A"])?;
    git(&up, &["commit", "-q", "-m", "first"])?;
    git(&up, &["push", "-q", "origin", "HEAD"])?;
    git(&root, &["clone", "-q", "remote.git", "proj"])?;
    std::fs::write(up.join("planted"), "escaped\n")?;
    git(&up, &["add", "-A"])?;
    git(&up, &["commit", "-q", "-m", "second"])?;
    git(&up, &["push", "-q", "origin", "HEAD"])?;

    std::fs::write(
        work.join("config.toml"),
        format!("[policy]\nroots = [\"{}\"]\n", root.display()),
    )?;
    let data = work.join("data").display().to_string();
    let config = work.join("config.toml").display().to_string();
    let mut node = McpProcess::start(
        &["--data-dir", &data, "--config", &config, "--mode", "edit"],
        &[],
    )
    .await?;
    let repo_config = root.join("proj/.git/config");
    let written = format!(
        "{}[core]\n\tworktree = {}\n",
        std::fs::read_to_string(&repo_config)?,
        outside.display()
    );
    let result = node
        .call_tool(
            "write_file",
            json!({"path": repo_config.display().to_string(), "content": written}),
        )
        .await?;
    assert_eq!(result["isError"], json!(false), "{result}");

    let result = node
        .call_tool(
            "git_pull",
            json!({"repo": root.join("proj").display().to_string()}),
        )
        .await?;
    assert_eq!(result["isError"], json!(true), "{result}");
    assert!(result.to_string().contains("work tree"), "{result}");
    assert!(
        std::fs::read_dir(&outside)?.next().is_none(),
        "git_pull wrote outside the roots"
    );
    assert!(!root.join("proj/planted").exists());
    Ok(())
}
