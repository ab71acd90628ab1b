//! The MCP Streamable HTTP transport end to end: the real `remote-agents mcp --http 127.0.0.1:0`
//! spoken to with plain HTTP/1.1 requests (no MCP client library, so the wire itself is checked):
//! session handshake, a tool call, cancellation that kills the command, the bearer token every
//! request needs, DNS-rebinding refusals (one loopback `Host` only), the loopback-only rule and a
//! clean stop on SIGTERM.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use remote_agents_tests::node::node_binary;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const LISTENING: &str = "remote-agents: mcp http listening on ";

/// A running `remote-agents mcp --http`, the `host:port` it bound and its bearer token.
struct HttpNode {
    child: Child,
    authority: String,
    /// `Bearer <token>`, read from the token file the node made in its data dir.
    bearer: String,
    /// What it printed on stderr before the listening line.
    preamble: Vec<String>,
    data: tempfile::TempDir,
}

impl HttpNode {
    async fn start() -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(node_binary()?)
            .args(["mcp", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(data.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start remote-agents mcp --http")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut preamble = Vec::new();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(LISTENING) {
                    return Ok(url.to_string());
                }
                eprintln!("node: {line}");
                preamble.push(line);
            }
            bail!("remote-agents mcp --http exited before listening")
        })
        .await
        .context("no listening line within 30 s")??;
        // Keep reading stderr so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/mcp"))
            .with_context(|| format!("unexpected url {url}"))?
            .to_string();
        let token = std::fs::read_to_string(data.path().join("data").join("mcp-http.token"))
            .context("the node made no token file")?;
        Ok(Self {
            child,
            authority,
            bearer: format!("Bearer {}", token.trim()),
            preamble,
            data,
        })
    }

    /// POSTs one JSON-RPC message to /mcp with the loopback Host header and the token.
    async fn post(&self, session: Option<&str>, body: Value) -> anyhow::Result<Response> {
        let mut headers = vec![
            ("Host", self.authority.clone()),
            ("Authorization", self.bearer.clone()),
        ];
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session.to_string()));
            headers.push(("Mcp-Protocol-Version", "2025-11-25".to_string()));
        }
        post(&self.authority, &headers, &body).await
    }

    /// initialize + notifications/initialized; returns the session id.
    async fn open_session(&self) -> anyhow::Result<String> {
        let response = self
            .post(
                None,
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "e2e-http", "version": "0"},
                }}),
            )
            .await?;
        assert_eq!(response.status, 200, "{response:?}");
        let result = response.result(1)?;
        assert_eq!(result["protocolVersion"], "2025-11-25");
        assert_eq!(result["serverInfo"]["name"], "remote-agents");
        assert!(result["capabilities"]["tools"].is_object(), "{result}");
        let session = response
            .headers
            .get("mcp-session-id")
            .context("no mcp-session-id header")?
            .clone();
        let ack = self
            .post(
                Some(&session),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await?;
        assert_eq!(ack.status, 202, "{ack:?}");
        Ok(session)
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    /// Lower-case names.
    headers: HashMap<String, String>,
    /// JSON-RPC messages from the SSE `data:` lines or the JSON body.
    messages: Vec<Value>,
}

impl Response {
    fn result(&self, id: u64) -> anyhow::Result<&Value> {
        self.messages
            .iter()
            .find(|m| m["id"] == json!(id))
            .map(|m| &m["result"])
            .with_context(|| format!("no response to request {id} in {:?}", self.messages))
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
async fn post(
    authority: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> anyhow::Result<Response> {
    let body = body.to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = TcpStream::connect(authority).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .context("response not complete within 30 s")??;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status line")?
        .parse()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)?
    } else {
        body.to_string()
    };
    let messages = if headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?
    } else if body.trim().is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&body).unwrap_or(Value::String(body.clone()))]
    };
    Ok(Response {
        status,
        headers,
        messages,
    })
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("truncated chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("truncated chunk")?);
        body = rest.get(size + 2..).context("truncated chunk end")?;
    }
}

fn process_alive(pattern: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_http_calls_tools_and_cancellation_kills_the_command() -> anyhow::Result<()>
{
    let node = HttpNode::start().await?;
    let session = node.open_session().await?;

    let listed = node
        .post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await?;
    let tools = listed.result(2)?["tools"]
        .as_array()
        .context("tools")?
        .clone();
    assert!(tools.iter().any(|t| t["name"] == "exec"), "{tools:?}");

    let called = node
        .post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "name": "exec", "arguments": {"argv": ["echo", "over http"]},
            }}),
        )
        .await?;
    let result = called.result(3)?;
    assert_eq!(
        result["structuredContent"]["stdout"], "over http\n",
        "{result}"
    );
    assert_eq!(result["structuredContent"]["exit_code"], 0);

    // A long command on one POST stream, cancelled by a notification on another.
    let marker = format!("ra-http-cancel-{}", uuid::Uuid::new_v4().simple());
    let long_call = {
        let (authority, session, marker, bearer) = (
            node.authority.clone(),
            session.clone(),
            marker.clone(),
            node.bearer.clone(),
        );
        tokio::spawn(async move {
            let headers = [
                ("Host", authority.clone()),
                ("Authorization", bearer),
                ("Mcp-Session-Id", session),
                ("Mcp-Protocol-Version", "2025-11-25".to_string()),
            ];
            post(
                &authority,
                &headers,
                &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
                    "name": "exec", "arguments": {"argv": ["sh", "-c", "sleep 60", marker]},
                }}),
            )
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !process_alive(&marker) {
        assert!(Instant::now() < deadline, "the long command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancel = node
        .post(
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 4, "reason": "e2e"}}),
        )
        .await?;
    assert_eq!(cancel.status, 202, "{cancel:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(&marker) {
        assert!(
            Instant::now() < deadline,
            "cancellation over http did not kill the command"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    long_call.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_or_origin_headers_are_refused_and_sigterm_stops_cleanly() -> anyhow::Result<()>
{
    let mut node = HttpNode::start().await?;
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "rebinding", "version": "0"},
    }});
    // A page on evil.example.com that resolved its name to 127.0.0.1 (even one that somehow
    // holds the token).
    let rebinding = post(
        &node.authority,
        &[
            ("Host", "evil.example.com".to_string()),
            ("Authorization", node.bearer.clone()),
        ],
        &initialize,
    )
    .await?;
    assert!((400..500).contains(&rebinding.status), "{rebinding:?}");
    // rmcp checks only the first Host header: a foreign second one rode along.
    let second_host = post(
        &node.authority,
        &[
            ("Host", node.authority.clone()),
            ("Host", "evil.example.com".to_string()),
            ("Authorization", node.bearer.clone()),
        ],
        &initialize,
    )
    .await?;
    assert_eq!(second_host.status, 400, "{second_host:?}");
    let foreign_origin = post(
        &node.authority,
        &[
            ("Host", node.authority.clone()),
            ("Origin", "http://evil.example.com".to_string()),
            ("Authorization", node.bearer.clone()),
        ],
        &initialize,
    )
    .await?;
    assert!(
        (400..500).contains(&foreign_origin.status),
        "{foreign_origin:?}"
    );
    // A local page's own origin is fine.
    let local_origin = post(
        &node.authority,
        &[
            ("Host", node.authority.clone()),
            ("Origin", format!("http://{}", node.authority)),
            ("Authorization", node.bearer.clone()),
        ],
        &initialize,
    )
    .await?;
    assert_eq!(local_origin.status, 200, "{local_origin:?}");

    let pid = node.child.id().context("pid")?;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(10), node.child.wait())
        .await
        .context("no exit within 10 s of SIGTERM")??;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test]
async fn a_non_loopback_http_address_is_refused_before_starting() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let output = Command::new(node_binary()?)
        .args(["mcp", "--http", "0.0.0.0:0", "--data-dir"])
        .arg(data.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    // Refused before the node opened its store.
    assert!(!data.path().join("data").exists());
    Ok(())
}

/// Any local user could drive `mcp --http` (uid 65534 ran commands as root): every request now
/// needs the bearer token from the 0600 file the node made, and the node says how to pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_without_the_bearer_token_are_refused_with_401() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let node = HttpNode::start().await?;
    let token_file = node.data.path().join("data").join("mcp-http.token");
    let mode = std::fs::metadata(&token_file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let preamble = node.preamble.join("\n");
    assert!(
        preamble.contains("Authorization: Bearer")
            && preamble.contains(&token_file.display().to_string()),
        "{preamble}"
    );
    let exec = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "exec", "arguments": {"argv": ["echo", "should not run"]},
    }});
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "intruder", "version": "0"},
    }});
    for body in [&initialize, &exec] {
        for authorization in [None, Some("Bearer wrong"), Some("Bearer ")] {
            let mut headers = vec![("Host", node.authority.clone())];
            if let Some(value) = authorization {
                headers.push(("Authorization", value.to_string()));
            }
            let refused = post(&node.authority, &headers, body).await?;
            assert_eq!(refused.status, 401, "{authorization:?}: {refused:?}");
            assert!(
                refused.headers.contains_key("www-authenticate"),
                "{refused:?}"
            );
        }
    }
    node.open_session().await?;
    Ok(())
}

/// A token file group or others can read would let them drive the node: the node refuses to
/// serve with it and says how to fix it.
#[tokio::test]
async fn a_token_file_others_can_read_stops_the_http_server_from_starting() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir()?;
    let data_dir = data.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let token_file = data_dir.join("mcp-http.token");
    std::fs::write(&token_file, "0123456789abcdef\n")?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644))?;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(node_binary()?)
            .args(["mcp", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the node neither refused nor stopped within 30 s")??;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chmod 600") && stderr.contains(&token_file.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains(LISTENING), "{stderr}");
    Ok(())
}
