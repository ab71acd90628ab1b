//! The MCP Streamable HTTP transport: the same `McpServer` handler as stdio, served by axum at
//! `/mcp` on a loopback address. Clients of the 2025-11-25 protocol get a session (so progress
//! and other notifications reach them on SSE); clients of the stateless 2026-07-28 protocol are
//! served per request, which rmcp decides from the negotiated version.
//!
//! There is no authentication on this endpoint: whoever can reach it controls the node. So it
//! binds loopback addresses only, and checks `Host` and `Origin` so that a web page cannot reach
//! it through DNS rebinding.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::McpServer;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// The stderr line announcing the bound endpoint; tests and scripts look for this prefix and
/// take the URL after it (the port may have been chosen by the OS).
pub const LISTENING_PREFIX: &str = "remote-agents: mcp http listening on ";

/// Why an address cannot serve MCP over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "refusing to serve MCP over HTTP on {0}: the endpoint has no authentication, so it \
         binds loopback addresses only (127.0.0.1 or [::1])"
    )]
    NotLoopback(SocketAddr),
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

/// Serves `server` at `http://addr/mcp` until `shutdown` resolves; the bound address is printed
/// on stderr as `LISTENING_PREFIX` + URL (port 0 picks a free port).
pub async fn serve(
    server: McpServer,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = check_address(addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let cancel = CancellationToken::new();
    // One handler per session: cheap, they share the node.
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        loopback_config(cancel.child_token()),
    );
    let router = axum::Router::new().nest_service(PATH, service);
    // Printed rather than logged so that it shows whatever RUST_LOG says.
    eprintln!("{LISTENING_PREFIX}http://{bound}{PATH}");
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

#[cfg(test)]
mod tests {
    use super::*;

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
