//! Git over the network (issue 14, item 4): `git_pull` and `git_push` of a real node against an
//! sshd on 127.0.0.1 (the node user's ssh config names the key and known_hosts) and an https
//! git server behind TLS with a test CA (the user's credential helper and `http.sslCAInfo`), a
//! wrong key, an unknown host key, a wrong password and an untrusted CA giving clear errors that
//! leave the work tree as it was, and watch mode following spec repositories over both.
//!
//! The node user's git setup is a global git config file (`GIT_CONFIG_GLOBAL`) the test rewrites
//! between calls: git reads it on every run, so one node shows every case.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use remote_agents_tests::fleet::{NodeSpec, TestFleet};
use remote_agents_tests::git_servers::{
    HttpsServer, SshServer, commit_to_bare, git, head_of, seed_bare_repository,
};
use remote_agents_tests::node::McpProcess;
use serde_json::{Value, json};

/// Variables of the machine running the tests that would override the test user's git config
/// (this one points git at the system CA bundle, hiding `http.sslCAInfo`).
const MACHINE_GIT_SETTINGS: &[&str] = &["GIT_SSL_CAINFO", "GIT_SSH", "GIT_SSH_COMMAND"];

/// A test's folders: `root` (the node's only root), `server` (repositories the servers serve),
/// and the node user's global git config.
struct Work {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    server: PathBuf,
    gitconfig: PathBuf,
}

impl Work {
    fn new() -> anyhow::Result<Work> {
        let tmp = tempfile::tempdir()?;
        let base = std::fs::canonicalize(tmp.path())?;
        let (root, server) = (base.join("root"), base.join("server"));
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&server)?;
        let gitconfig = base.join("user.gitconfig");
        std::fs::write(&gitconfig, "")?;
        Ok(Work {
            _tmp: tmp,
            base,
            root,
            server,
            gitconfig,
        })
    }

    /// A node (`remote-agents mcp`, edit mode) whose user's global git config is `gitconfig`;
    /// its policy denies `*.secret` files.
    async fn node(&self) -> anyhow::Result<McpProcess> {
        std::fs::write(
            self.base.join("config.toml"),
            format!(
                "[policy]\nroots = [\"{}\"]\ndeny_paths = [\"**/*.secret\"]\n",
                self.root.display()
            ),
        )?;
        let data = self.base.join("data").display().to_string();
        let config = self.base.join("config.toml").display().to_string();
        let gitconfig = self.gitconfig.display().to_string();
        McpProcess::start_without(
            &["--data-dir", &data, "--config", &config, "--mode", "edit"],
            &[("GIT_CONFIG_GLOBAL", &gitconfig)],
            MACHINE_GIT_SETTINGS,
        )
        .await
    }

    /// A clone of the bare repository `bare` in the root, whose `origin` is then `url`.
    fn clone_with_remote(&self, bare: &Path, url: &str) -> anyhow::Result<PathBuf> {
        let clone = self.root.join("proj");
        git(
            &self.root,
            &[
                "clone",
                "-q",
                &bare.display().to_string(),
                &clone.display().to_string(),
            ],
        )?;
        git(&clone, &["remote", "set-url", "origin", url])?;
        Ok(clone)
    }
}

/// Calls a git tool on the repository and returns its result.
async fn call(node: &mut McpProcess, tool: &str, repo: &Path) -> anyhow::Result<Value> {
    node.call_tool(tool, json!({"repo": repo.display().to_string()}))
        .await
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| result.to_string())
}

fn local_head(clone: &Path) -> anyhow::Result<String> {
    Ok(git(clone, &["rev-parse", "HEAD"])?.trim().to_string())
}

/// Asserts a failed call whose message holds every one of `needles`, and that the work tree and
/// HEAD are as they were.
fn assert_failed_cleanly(
    result: &Value,
    needles: &[&str],
    clone: &Path,
    head_before: &str,
    server_log: &str,
) -> anyhow::Result<()> {
    let message = text_of(result);
    assert_eq!(
        result["isError"],
        json!(true),
        "{message}\nserver log:\n{server_log}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}\nserver log:\n{server_log}"
        );
    }
    assert_eq!(local_head(clone)?, head_before, "HEAD moved: {message}");
    assert!(
        !clone.join("incoming.txt").exists(),
        "the failed pull wrote the work tree"
    );
    Ok(())
}

/// Pull, commit and push through the node, with the user's config as it is now; `round` names
/// the files so that each round changes something.
async fn pull_then_push(
    node: &mut McpProcess,
    clone: &Path,
    bare: &Path,
    round: &str,
) -> anyhow::Result<()> {
    let (pulled_file, pushed_file) = (format!("pulled-{round}.txt"), format!("pushed-{round}.txt"));
    commit_to_bare(bare, &[(&pulled_file, "from the server\n")], "upstream")?;
    let pulled = call(node, "git_pull", clone).await?;
    assert_eq!(pulled["isError"], json!(false), "{}", text_of(&pulled));
    assert!(
        text_of(&pulled).contains("fast-forwarded"),
        "{}",
        text_of(&pulled)
    );
    assert_eq!(
        std::fs::read_to_string(clone.join(&pulled_file))?,
        "from the server\n"
    );
    assert_eq!(local_head(clone)?, head_of(bare)?);

    std::fs::write(clone.join(&pushed_file), "from the node\n")?;
    let committed = node
        .call_tool(
            "git_commit",
            json!({"repo": clone.display().to_string(), "message": "from the node"}),
        )
        .await?;
    assert_eq!(
        committed["isError"],
        json!(false),
        "{}",
        text_of(&committed)
    );
    let pushed = call(node, "git_push", clone).await?;
    assert_eq!(pushed["isError"], json!(false), "{}", text_of(&pushed));
    assert_eq!(head_of(bare)?, local_head(clone)?, "the push did not land");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_over_ssh_with_the_users_ssh_config_and_clear_key_errors()
-> anyhow::Result<()> {
    let work = Work::new()?;
    let sshd = SshServer::start(&work.base.join("sshd"))?;
    let bare = seed_bare_repository(&work.server, "proj.git", &[("README", "one\n")])?;
    // scp-style, through the host alias of the user's ssh config.
    let url = format!("gitserver:{}", bare.display());
    let clone = work.clone_with_remote(&bare, &url)?;
    sshd.write_user_gitconfig("good", &work.gitconfig)?;
    let mut node = work.node().await?;

    pull_then_push(&mut node, &clone, &bare, "scp-style")
        .await
        .with_context(|| format!("sshd log:\n{}", sshd.log()))?;
    // The ssh:// form works the same.
    git(
        &clone,
        &[
            "remote",
            "set-url",
            "origin",
            &format!("ssh://gitserver{}", bare.display()),
        ],
    )?;
    pull_then_push(&mut node, &clone, &bare, "ssh-url")
        .await
        .with_context(|| format!("sshd log:\n{}", sshd.log()))?;

    // A commit waits on the server; every failure below must leave it there.
    commit_to_bare(&bare, &[("incoming.txt", "new\n")], "incoming")?;
    let before = local_head(&clone)?;

    sshd.write_user_gitconfig("wrong-key", &work.gitconfig)?;
    let wrong_key = call(&mut node, "git_pull", &clone).await?;
    assert_failed_cleanly(
        &wrong_key,
        &[
            "ssh authentication failed",
            "Permission denied (publickey)",
            &format!("ssh://gitserver{}", bare.display()),
            "IdentityFile",
        ],
        &clone,
        &before,
        &sshd.log(),
    )?;
    let wrong_key_push = call(&mut node, "git_push", &clone).await?;
    assert_failed_cleanly(
        &wrong_key_push,
        &["git push to", "ssh authentication failed"],
        &clone,
        &before,
        &sshd.log(),
    )?;

    sshd.write_user_gitconfig("unknown-host", &work.gitconfig)?;
    let unknown_host = call(&mut node, "git_pull", &clone).await?;
    assert_failed_cleanly(
        &unknown_host,
        &[
            "ssh host key check failed",
            "Host key verification failed",
            "known_hosts",
        ],
        &clone,
        &before,
        &sshd.log(),
    )?;

    // Back to the good key: the waiting commit arrives.
    sshd.write_user_gitconfig("good", &work.gitconfig)?;
    let pulled = call(&mut node, "git_pull", &clone).await?;
    assert_eq!(pulled["isError"], json!(false), "{}", text_of(&pulled));
    assert_eq!(
        std::fs::read_to_string(clone.join("incoming.txt"))?,
        "new\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_over_https_with_a_credential_helper_and_clear_auth_and_tls_errors()
-> anyhow::Result<()> {
    let work = Work::new()?;
    seed_bare_repository(&work.server, "proj.git", &[("README", "one\n")])?;
    let bare = work.server.join("proj.git");
    let https = HttpsServer::start(&work.base.join("https"), &work.server)?;
    let url = https.url("proj.git");
    let clone = work.clone_with_remote(&bare, &url)?;
    https.write_user_gitconfig(&work.gitconfig, &https.password.clone(), true)?;
    let mut node = work.node().await?;

    pull_then_push(&mut node, &clone, &bare, "https")
        .await
        .with_context(|| format!("https log:\n{}", https.log()))?;

    commit_to_bare(&bare, &[("incoming.txt", "new\n")], "incoming")?;
    let before = local_head(&clone)?;

    https.write_user_gitconfig(&work.gitconfig, "wrong-password", true)?;
    let wrong_password = call(&mut node, "git_pull", &clone).await?;
    assert_failed_cleanly(
        &wrong_password,
        &[
            "https authentication failed",
            "Authentication failed for",
            &url,
            "credential.helper",
        ],
        &clone,
        &before,
        &https.log(),
    )?;

    https.write_user_gitconfig(&work.gitconfig, &https.password.clone(), false)?;
    let untrusted = call(&mut node, "git_push", &clone).await?;
    assert_failed_cleanly(
        &untrusted,
        // git's own line differs by TLS library (OpenSSL: "SSL certificate problem", GnuTLS:
        // "server certificate verification failed"); both begin so.
        &[
            "TLS certificate",
            "http.sslCAInfo",
            "fatal: unable to access",
        ],
        &clone,
        &before,
        &https.log(),
    )?;

    https.write_user_gitconfig(&work.gitconfig, &https.password.clone(), true)?;
    let pulled = call(&mut node, "git_pull", &clone).await?;
    assert_eq!(pulled["isError"], json!(false), "{}", text_of(&pulled));
    assert_eq!(
        std::fs::read_to_string(clone.join("incoming.txt"))?,
        "new\n"
    );

    // What came over the network is checked out by the same guarded fast-forward as a local
    // pull: a path the policy refuses refuses the whole checkout.
    commit_to_bare(
        &bare,
        &[("fine.txt", "ok\n"), ("id.secret", "no\n")],
        "with a secret",
    )?;
    let before = local_head(&clone)?;
    let refused = call(&mut node, "git_pull", &clone).await?;
    assert_eq!(refused["isError"], json!(true), "{}", text_of(&refused));
    assert!(
        text_of(&refused).contains("id.secret"),
        "{}",
        text_of(&refused)
    );
    assert_eq!(local_head(&clone)?, before);
    assert!(!clone.join("fine.txt").exists(), "the refused pull wrote");
    assert!(!clone.join("id.secret").exists(), "the refused pull wrote");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_config_cannot_weaken_tls_for_a_network_pull() -> anyhow::Result<()> {
    let work = Work::new()?;
    seed_bare_repository(&work.server, "proj.git", &[("README", "one\n")])?;
    let bare = work.server.join("proj.git");
    let https = HttpsServer::start(&work.base.join("https"), &work.server)?;
    let clone = work.clone_with_remote(&bare, &https.url("proj.git"))?;
    // The user does not trust the test CA; the repository's own config tries to switch TLS
    // verification off.
    https.write_user_gitconfig(&work.gitconfig, &https.password.clone(), false)?;
    git(&clone, &["config", "http.sslVerify", "false"])?;
    commit_to_bare(&bare, &[("incoming.txt", "new\n")], "incoming")?;
    let before = local_head(&clone)?;
    let mut node = work.node().await?;
    let refused = call(&mut node, "git_pull", &clone).await?;
    assert_failed_cleanly(
        &refused,
        // libgit2 reports config keys in lower case.
        &["http.sslverify", "refused for a network remote"],
        &clone,
        &before,
        &https.log(),
    )?;
    // Refused before git ran: the server saw no request.
    assert_eq!(https.log(), "", "the refused pull reached the server");
    Ok(())
}

const FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: watched}
spec:
  defaults: {mode: plan}
  hosts:
    - {name: https-watcher, mode: MODE}
    - {name: ssh-watcher, mode: MODE}
";

async fn desired_status(fleet: &TestFleet, host: &str) -> anyhow::Result<Value> {
    let outcome = fleet
        .call(host, json!({"op": "desired_status", "args": {}}))
        .await?;
    outcome
        .get("result")
        .cloned()
        .with_context(|| format!("{host} gave no status: {outcome}"))
}

/// Polls `host` until it observed `generation` in `mode`; fails with the last status.
async fn wait_generation(
    fleet: &TestFleet,
    host: &str,
    generation: u64,
    mode: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = desired_status(fleet, host).await?;
        if last["observed_generation"] == generation && last["mode"] == mode {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{host}: generation {generation} in {mode} not seen; last status: {last:#}\nlog:\n{}",
            fleet.node_log(host)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_follows_spec_repositories_over_https_and_ssh() -> anyhow::Result<()> {
    let work = Work::new()?;
    let bare = seed_bare_repository(
        &work.server,
        "fleet.git",
        &[("fleet.yaml", &FLEET.replace("MODE", "plan"))],
    )?;
    let https = HttpsServer::start(&work.base.join("https"), &work.server)?;
    let sshd = SshServer::start(&work.base.join("sshd"))?;
    // One user config with both: the ssh command and the https credentials and CA.
    let ssh_part = work.base.join("ssh.gitconfig");
    sshd.write_user_gitconfig("good", &ssh_part)?;
    https.write_user_gitconfig(&work.gitconfig, &https.password.clone(), true)?;
    let combined = std::fs::read_to_string(&work.gitconfig)? + &std::fs::read_to_string(&ssh_part)?;
    std::fs::write(&work.gitconfig, combined)?;
    let gitconfig = work.gitconfig.display().to_string();

    let https_url = https.url("fleet.git");
    let ssh_url = format!("gitserver:{}", bare.display());
    let fleet = TestFleet::start(&[
        NodeSpec::bare("https-watcher")
            .with_args(&[
                "--spec-repo",
                &https_url,
                "--branch",
                "main",
                "--spec-interval",
                "1s",
            ])
            .with_env("GIT_CONFIG_GLOBAL", &gitconfig)
            .without_env("GIT_SSL_CAINFO"),
        // No branch: the node follows the remote's HEAD.
        NodeSpec::bare("ssh-watcher")
            .with_args(&["--spec-repo", &ssh_url, "--spec-interval", "1s"])
            .with_env("GIT_CONFIG_GLOBAL", &gitconfig)
            .without_env("GIT_SSL_CAINFO"),
    ])
    .await?;
    for host in ["https-watcher", "ssh-watcher"] {
        wait_generation(&fleet, host, 1, "plan").await?;
    }
    commit_to_bare(
        &bare,
        &[("fleet.yaml", &FLEET.replace("MODE", "edit"))],
        "edit mode",
    )?;
    for host in ["https-watcher", "ssh-watcher"] {
        wait_generation(&fleet, host, 2, "edit").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_git_pulls_over_ssh_on_every_host() -> anyhow::Result<()> {
    let work = Work::new()?;
    let sshd = SshServer::start(&work.base.join("sshd"))?;
    let bare = seed_bare_repository(&work.server, "proj.git", &[("README", "one\n")])?;
    sshd.write_user_gitconfig("good", &work.gitconfig)?;
    let gitconfig = work.gitconfig.display().to_string();
    let hosts = ["git-1", "git-2"];
    let specs: Vec<NodeSpec> = hosts
        .iter()
        .map(|name| {
            NodeSpec::new(name, &["git"], "edit")
                .with_env("GIT_CONFIG_GLOBAL", &gitconfig)
                .without_env("GIT_SSL_CAINFO")
        })
        .collect();
    let fleet = TestFleet::start(&specs).await?;
    let url = format!("gitserver:{}", bare.display());
    for host in hosts {
        // Each host's clone is `proj` in its home, where a relative repo path lands.
        let home = remote_agents_tests::fleet::node_dir(&fleet, host);
        git(&home, &["clone", "-q", &bare.display().to_string(), "proj"])?;
        git(&home.join("proj"), &["remote", "set-url", "origin", &url])?;
    }
    commit_to_bare(&bare, &[("fleet.txt", "for every host\n")], "for all")?;
    let mut mcp = fleet.start_mcp_operator().await?;
    // The operator joins the room in the background: retry until both hosts answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        let result = mcp
            .call_tool(
                "fleet_git",
                json!({"target": "tag:git", "repo": "proj", "action": "pull"}),
            )
            .await?;
        if result["structuredContent"]["hosts"] == 2 {
            break result;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "fleet never complete: {result}"
        );
    };
    assert_eq!(
        result["structuredContent"]["ok"],
        2,
        "{result}\nsshd log:\n{}",
        sshd.log()
    );
    for host in hosts {
        let home = remote_agents_tests::fleet::node_dir(&fleet, host);
        assert_eq!(
            std::fs::read_to_string(home.join("proj/fleet.txt"))?,
            "for every host\n",
            "{host}"
        );
    }
    Ok(())
}
