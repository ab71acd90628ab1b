//! Node test helpers: find the real `remote-agents` binary and talk MCP to it over stdio with
//! plain JSON-RPC lines, so a test can pipeline many calls and kill the process mid-flight.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The `remote-agents` binary: `REMOTE_AGENTS_BIN`, or the one cargo built next to this test
/// binary (built on demand when missing).
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("REMOTE_AGENTS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // Tests live in target/<profile>/deps/, benchmark binaries in target/<profile>/.
    let dir = exe.parent().context("current exe has no folder")?;
    let binary = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("remote-agents"))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| dir.join("remote-agents"));
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "remote-agents", "--bin", "remote-agents"])
            .status()?;
        if !status.success() {
            bail!("cargo build of remote-agents failed");
        }
    }
    Ok(binary)
}

/// A `remote-agents mcp` process spoken to with JSON-RPC lines.
pub struct McpProcess {
    pub child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl McpProcess {
    /// Starts `remote-agents mcp ARGS` with `envs` (and every toolset, unless `envs` or `ARGS`
    /// select them) and completes the MCP handshake.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_without(args, envs, &[]).await
    }

    /// Like `start`, with the variables `removed` taken out of the node's environment (e.g. a
    /// `GIT_SSL_CAINFO` of the machine that would override the test user's git config).
    pub async fn start_without(
        args: &[&str],
        envs: &[(&str, &str)],
        removed: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(node_binary()?);
        for name in removed {
            command.env_remove(name);
        }
        // Every toolset, so that each tool can be tested; a test of the selection sets
        // REMOTE_AGENTS_TOOLSETS (or --toolsets) itself, and either wins over this.
        command
            .arg("mcp")
            .args(args)
            .env("REMOTE_AGENTS_TOOLSETS", "all")
            .envs(envs.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().context("start remote-agents mcp")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut process = McpProcess {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 1,
        };
        let id = process
            .send(
                "initialize",
                json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "e2e", "version": "0"},
                }),
            )
            .await?;
        process.wait_for(id, Duration::from_secs(20)).await?;
        process
            .write_line(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(process)
    }

    async fn write_line(&mut self, value: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send(&mut self, method: &str, params: Value) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.write_line(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        Ok(id)
    }

    /// Sends a `tools/call` without waiting; returns its id.
    pub async fn send_tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<u64> {
        self.send("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// The next message from the server: a response or a notification.
    pub async fn next_message(&mut self, deadline: Duration) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(deadline, self.lines.next_line())
            .await
            .context("no message before the deadline")??
            .context("the server closed stdout")?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Sends a notification.
    pub async fn notify(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        self.write_line(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await
    }

    /// The next response (any id), skipping notifications.
    pub async fn next_response(&mut self, deadline: Duration) -> anyhow::Result<Value> {
        loop {
            let value = self.next_message(deadline).await?;
            if value.get("id").is_some() {
                return Ok(value);
            }
        }
    }

    /// Waits for the response to `id`, dropping others.
    pub async fn wait_for(&mut self, id: u64, deadline: Duration) -> anyhow::Result<Value> {
        loop {
            let response = self.next_response(deadline).await?;
            if response["id"] == json!(id) {
                return Ok(response);
            }
        }
    }

    /// Calls a tool and returns its result object.
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<Value> {
        let id = self.send_tool(name, arguments).await?;
        let response = self.wait_for(id, Duration::from_secs(30)).await?;
        response
            .get("result")
            .cloned()
            .with_context(|| format!("error response: {response}"))
    }
}
