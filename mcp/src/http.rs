//! The MCP Streamable HTTP transport: the same `McpServer` handler as stdio, served by axum at
//! `/mcp` on a loopback address. Clients of the 2025-11-25 protocol get a session (so progress
//! and other notifications reach them on SSE); clients of the stateless 2026-07-28 protocol are
//! served per request, which rmcp decides from the negotiated version.
//!
//! Whoever drives this endpoint controls the node (its commands run as the node's user), and
//! loopback is shared by every local user, so each request must carry the bearer token kept in
//! `<data-dir>/mcp-http.token` (created 0600 on first use; a token file group or others can
//! read is refused). The endpoint also binds loopback addresses only, and accepts exactly one
//! `Host` header naming a loopback host and only loopback `Origin`s, so that a web page cannot
//! reach it through DNS rebinding (rmcp's own check reads only the first `Host` header).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ring::rand::SecureRandom;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::McpServer;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// The stderr line announcing the bound endpoint; tests and scripts look for this prefix and
/// take the URL after it (the port may have been chosen by the OS).
pub const LISTENING_PREFIX: &str = "remote-agents: mcp http listening on ";

/// Whether requests must carry the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Every request carries `Authorization: Bearer <token>` (the default).
    BearerToken,
    /// `--http-insecure-no-auth`: no token, for test suites whose clients cannot send one.
    InsecureNone,
}

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "mcp-http.token";

/// Why MCP cannot be served over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "refusing to serve MCP over HTTP on {0}: the endpoint is for local clients, so it \
         binds loopback addresses only (127.0.0.1 or [::1])"
    )]
    NotLoopback(SocketAddr),
    #[error(
        "refusing to serve MCP over HTTP: the token file {path} can be read by group or others \
         (mode {mode:o}); anyone who reads it controls this node: run `chmod 600 {path}`, or \
         delete it to have a new token made"
    )]
    TokenFileReadable { path: String, mode: u32 },
    #[error(
        "refusing to serve MCP over HTTP: the token file {path} belongs to uid {owner}, not to \
         this user (uid {me}); delete it to have a new token made"
    )]
    TokenFileForeign { path: String, owner: u32, me: u32 },
    #[error(
        "refusing to serve MCP over HTTP: the token file {path} is empty; delete it to have a new token made"
    )]
    TokenFileEmpty { path: String },
    #[error("cannot read or create the token file {path}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The bearer token every request must carry. The comparison is constant-time: requests are
/// checked against an HMAC of the token under a key made at start (`ring::hmac::verify`
/// compares in constant time), so the time a wrong guess takes says nothing about the token.
pub struct BearerToken {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
    /// `--http-insecure-no-auth`: every request is admitted.
    insecure_no_auth: bool,
}

impl BearerToken {
    pub fn new(token: &str) -> Self {
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system random source works");
        let tag = ring::hmac::sign(&key, token.as_bytes());
        Self {
            key,
            tag,
            insecure_no_auth: false,
        }
    }

    /// Admits every request (`--http-insecure-no-auth`).
    fn insecure_none() -> Self {
        Self {
            insecure_no_auth: true,
            ..Self::new("")
        }
    }

    /// Whether the headers hold exactly one `Authorization: Bearer <token>` with this token.
    fn admits(&self, headers: &HeaderMap) -> bool {
        if self.insecure_no_auth {
            return true;
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(presented) = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
        else {
            return false;
        };
        ring::hmac::verify(&self.key, presented.trim_ascii(), self.tag.as_ref()).is_ok()
    }
}

/// Reads the token from `path`, making a new random one (0600) when the file does not exist;
/// refuses a file group or others can read, or one another user owns.
pub fn load_or_create_token(path: &Path) -> Result<String, HttpError> {
    let shown = path.display().to_string();
    let io = |source| HttpError::TokenFile {
        path: shown.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io(std::io::Error::other("the system random source failed")))?;
    let fresh = hex::encode(bytes);
    // create_new: never follow or reuse a file someone else put there in between.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(format!("{fresh}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            return Ok(fresh);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let metadata = std::fs::metadata(path).map_err(io)?;
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(HttpError::TokenFileForeign {
            path: shown,
            owner: metadata.uid(),
            me,
        });
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HttpError::TokenFileReadable { path: shown, mode });
    }
    let token = std::fs::read_to_string(path)
        .map_err(io)?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(HttpError::TokenFileEmpty { path: shown });
    }
    Ok(token)
}

/// Where the token of a node with `data_dir` is kept.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Whether a `Host` value (`name` or `name:port`) names this machine's loopback interface.
fn is_loopback_host(value: &str) -> bool {
    let Ok(authority) = value.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The checks every request passes before rmcp sees it: one loopback `Host` (a second, foreign
/// one must not ride along behind a good first one), then the bearer token.
async fn guard(
    axum::extract::State(token): axum::extract::State<Arc<BearerToken>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => {
            if !host.to_str().is_ok_and(is_loopback_host) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "Forbidden: the Host header must name a loopback host (localhost, 127.0.0.1 or [::1])",
                );
            }
        }
        (None, _) => {
            return refuse(StatusCode::BAD_REQUEST, "Bad Request: missing Host header");
        }
        (Some(_), Some(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Bad Request: more than one Host header",
            );
        }
    }
    // An absolute-form request line carries its own authority, which must agree.
    if let Some(authority) = request.uri().authority()
        && !is_loopback_host(authority.as_str())
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "Forbidden: the request target must name a loopback host",
        );
    }
    if !token.admits(request.headers()) {
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send `Authorization: Bearer <token>` with the token from the node's \
             mcp-http.token file (its path is printed when the node starts)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"remote-agents\""),
        );
        return response;
    }
    next.run(request).await
}

/// Accepts loopback addresses only (see the module comment).
pub fn check_address(addr: SocketAddr) -> Result<SocketAddr, HttpError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(HttpError::NotLoopback(addr))
    }
}

/// Host and Origin values a loopback client legitimately sends; anything else (a rebinding
/// page's own name) gets a 4xx before the handler runs.
fn loopback_config(cancel: CancellationToken) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"])
        .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"])
        .enforce_origin_validation()
        .with_cancellation_token(cancel)
}

/// The endpoint: the guard (Host, token) in front of rmcp's Streamable HTTP service.
fn router(server: McpServer, token: Arc<BearerToken>, cancel: CancellationToken) -> axum::Router {
    // One handler per session: cheap, they share the node.
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        loopback_config(cancel),
    );
    axum::Router::new()
        .nest_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(token, guard))
}

/// Serves `server` at `http://addr/mcp` until `shutdown` resolves; the bound address is printed
/// on `console` as `LISTENING_PREFIX` + URL (port 0 picks a free port).
pub async fn serve(
    server: McpServer,
    addr: SocketAddr,
    auth: Auth,
    shutdown: impl Future<Output = ()> + Send + 'static,
    console: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let addr = check_address(addr)?;
    let token_file = token_path(&server.node.settings().data_dir.value);
    let token = Arc::new(match auth {
        Auth::BearerToken => BearerToken::new(&load_or_create_token(&token_file)?),
        Auth::InsecureNone => BearerToken::insecure_none(),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let router = router(server, token, cancel.child_token());
    // Written to the operator's console (the binary passes stderr) rather than logged, so that
    // it shows whatever RUST_LOG says.
    match auth {
        Auth::BearerToken => write!(
            console,
            "{}",
            client_instructions(&format!("http://{bound}{PATH}"), &token_file)
        )?,
        Auth::InsecureNone => writeln!(
            console,
            "remote-agents: WARNING: --http-insecure-no-auth: mcp http takes requests WITHOUT A \
             TOKEN: every local user controls this node; use it for test suites only"
        )?,
    }
    writeln!(console, "{LISTENING_PREFIX}http://{bound}{PATH}")?;
    console.flush()?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Ends open SSE streams, which would otherwise hold the graceful shutdown open.
            cancel.cancel();
        })
        .await
        .context("mcp http server")?;
    Ok(())
}

/// How a client passes the token, printed on stderr at start; the token itself is not
/// printed (stderr often ends up in logs), only where to read it.
fn client_instructions(url: &str, token_file: &Path) -> String {
    let file = token_file.display();
    format!(
        "remote-agents: mcp http requires a bearer token on every request: \
         `Authorization: Bearer <token>`, the token being the content of {file}\n\
         remote-agents: e.g. claude mcp add --transport http remote-agents {url} \
         --header \"Authorization: Bearer $(cat {file})\"\n\
         remote-agents: or in a client's JSON config: {{\"mcpServers\": {{\"remote-agents\": \
         {{\"type\": \"http\", \"url\": \"{url}\", \"headers\": {{\"Authorization\": \
         \"Bearer <content of {file}>\"}}}}}}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_token_file_is_made_0600_on_first_use_and_read_back_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(&dir.path().join("data"));
        let token = load_or_create_token(&path).unwrap();
        assert_eq!(token.len(), 64, "{token}");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        assert_eq!(load_or_create_token(&path).unwrap(), token);
    }

    #[test]
    fn a_token_file_group_or_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path());
        std::fs::write(&path, "secret\n").unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = load_or_create_token(&path).unwrap_err().to_string();
            assert!(
                error.contains("chmod 600") && error.contains(&path.display().to_string()),
                "{error}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create_token(&path).unwrap(), "secret");
    }

    #[test]
    fn loopback_hosts_are_told_from_foreign_ones() {
        for ok in [
            "127.0.0.1:8765",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for foreign in [
            "evil.example.com",
            "evil.example.com:80",
            "10.0.0.1:80",
            "[::2]:1",
            "",
            "a b",
        ] {
            assert!(!is_loopback_host(foreign), "{foreign}");
        }
    }

    /// The endpoint on a free loopback port with token `secret`; returns its `host:port`.
    async fn endpoint(dir: &Path) -> String {
        let server = McpServer::new(crate::tests::node_in(dir, "edit"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let router = router(
            server,
            Arc::new(BearerToken::new("secret")),
            CancellationToken::new(),
        );
        remote_agents_node::runtime::spawn(async move { axum::serve(listener, router).await });
        authority
    }

    /// POSTs an initialize with these extra header lines; returns the status and the whole
    /// response.
    async fn initialize(authority: &str, headers: &[&str]) -> (u16, String) {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stream.read_to_end(&mut raw),
        )
        .await
        .expect("a response within 20 s")
        .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// Any local user could drive `mcp --http` (and run commands as the node's user): requests
    /// without the bearer token, or with a wrong one, must get 401.
    #[tokio::test]
    async fn http_requests_without_the_right_bearer_token_get_401() {
        let dir = tempfile::tempdir().unwrap();
        let authority = endpoint(dir.path()).await;
        let host = format!("Host: {authority}");
        let (status, text) = initialize(&authority, &[&host]).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("Bearer realm="), "{text}");
        for wrong in [
            "Authorization: Bearer secreT",
            "Authorization: Bearer secret2",
            "Authorization: Bearer ",
            "Authorization: Basic c2VjcmV0",
            "Authorization: secret",
        ] {
            let (status, text) = initialize(&authority, &[&host, wrong]).await;
            assert_eq!(status, 401, "{wrong}: {text}");
        }
        let (status, text) = initialize(
            &authority,
            &[
                &host,
                "Authorization: Bearer secret",
                "Authorization: Bearer secret",
            ],
        )
        .await;
        assert_eq!(status, 401, "two Authorization headers: {text}");
        let (status, text) = initialize(&authority, &[&host, "Authorization: Bearer secret"]).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\"serverInfo\""), "{text}");
    }

    /// rmcp reads only the first `Host` header: a second, foreign one rode along unchecked.
    #[tokio::test]
    async fn a_second_host_header_or_a_foreign_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let authority = endpoint(dir.path()).await;
        let host = format!("Host: {authority}");
        let token = "Authorization: Bearer secret";
        let (status, text) =
            initialize(&authority, &[&host, "Host: evil.example.com", token]).await;
        assert_eq!(status, 400, "{text}");
        let (status, text) = initialize(&authority, &[&host, &host, token]).await;
        assert_eq!(status, 400, "{text}");
        let (status, text) = initialize(&authority, &["Host: evil.example.com", token]).await;
        assert_eq!(status, 403, "{text}");
    }

    #[test]
    fn only_loopback_addresses_may_serve_mcp_over_http() {
        for ok in ["127.0.0.1:0", "127.0.0.1:8765", "[::1]:0"] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert_eq!(check_address(addr).unwrap(), addr);
        }
        for refused in ["0.0.0.0:0", "[::]:8765", "192.168.1.10:80"] {
            let error = check_address(refused.parse().unwrap()).unwrap_err();
            assert!(error.to_string().contains("loopback"), "{error}");
        }
    }
}
