//! The MCP stdio transport: one JSON-RPC message per line on stdin, answers on stdout. It
//! frames and validates each line itself instead of using rmcp's, because rmcp's drops a line
//! that is not JSON or is over its 16 MiB cap without a word, so a client waits forever for an
//! answer. Here a line that is not JSON gets a `-32700 Parse error` (id null), a line over
//! [`MAX_MESSAGE_BYTES`] a `-32600 Invalid Request` saying the limit, and JSON that is no
//! JSON-RPC message a `-32600` with its id when it has one; the session goes on after each.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// The largest message read from stdin (what rmcp's stdio transport and its HTTP client
/// accept); a longer line is skipped without being buffered.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// JSON-RPC 2.0 error codes this transport answers with.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

/// The server side of an MCP session over a byte stream pair (stdin and stdout in production).
pub struct LineTransport<R, W> {
    read: BufReader<R>,
    /// The line being read. It persists across calls because rmcp polls `receive` inside a
    /// `select!` and may drop it mid-line; the next call resumes the same line.
    line: Vec<u8>,
    max_message_bytes: usize,
    /// Set while skipping the rest of an oversized line.
    discarding: bool,
    /// Shared with the futures `send` returns (they must be `'static`); one line is written
    /// at a time under the lock, so answers and error replies never interleave.
    write: Arc<Mutex<W>>,
}

/// What one bounded line read found.
enum LineRead {
    Line,
    Oversized,
    Eof,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        Self {
            read: BufReader::new(read),
            line: Vec::new(),
            max_message_bytes: MAX_MESSAGE_BYTES,
            discarding: false,
            write: Arc::new(Mutex::new(write)),
        }
    }

    /// A smaller cap, so tests need not send 16 MiB.
    #[cfg(test)]
    fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// Reads one line into `self.line` without letting it grow past the cap. Cancel-safe: the
    /// bytes taken from the buffer are copied into `self.line` (or skipped) with no await in
    /// between.
    async fn read_line(&mut self) -> std::io::Result<LineRead> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                return Ok(LineRead::Eof);
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            let outcome = if self.discarding {
                if newline.is_some() {
                    self.discarding = false;
                }
                None
            } else if self.line.len() + take > self.max_message_bytes + 1 {
                // `+ 1`: the newline does not count towards the message.
                self.line.clear();
                self.discarding = newline.is_none();
                Some(LineRead::Oversized)
            } else {
                self.line.extend_from_slice(&available[..take]);
                newline.map(|_| LineRead::Line)
            };
            self.read.consume(take);
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }

    /// Writes an error reply on its own task, so that a `receive` dropped by rmcp's `select!`
    /// cannot leave half a line on the output.
    fn reply_error(&self, id: serde_json::Value, code: i64, message: String) {
        let reply = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": code, "message": message},
        });
        let write = self.write.clone();
        remote_agents_node::runtime::spawn(async move {
            if let Err(e) = write_line(&write, reply.to_string().into_bytes()).await {
                tracing::debug!("cannot write an error reply to the mcp client: {e}");
            }
        });
    }

    /// Judges one complete line: a message for rmcp, or `None` after answering it ourselves.
    fn judge(&self, line: &[u8]) -> Option<RxJsonRpcMessage<RoleServer>> {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(e) => {
                self.reply_error(
                    serde_json::Value::Null,
                    PARSE_ERROR,
                    format!("Parse error: the line is not valid JSON ({e}); send one JSON-RPC message per line"),
                );
                return None;
            }
        };
        let id = match value.get("id") {
            Some(id @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => {
                Some(id.clone())
            }
            _ => None,
        };
        match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
            Ok(message) => Some(message),
            // A notification gets no answer, not even an error (JSON-RPC 2.0 §4.1); rmcp
            // likewise ignores notifications it does not know.
            Err(e) if id.is_none() && line_has_method(line) => {
                tracing::debug!("ignoring a notification rmcp cannot read: {e}");
                None
            }
            Err(e) => {
                self.reply_error(
                    id.unwrap_or(serde_json::Value::Null),
                    INVALID_REQUEST,
                    format!("Invalid Request: not a JSON-RPC 2.0 message MCP knows ({e})"),
                );
                None
            }
        }
    }
}

fn line_has_method(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line)
        .is_ok_and(|v| v.get("method").is_some_and(serde_json::Value::is_string))
}

async fn write_line<W: AsyncWrite + Unpin>(
    write: &Mutex<W>,
    mut bytes: Vec<u8>,
) -> std::io::Result<()> {
    bytes.push(b'\n');
    let mut write = write.lock().await;
    write.write_all(&bytes).await?;
    write.flush().await
}

impl<R, W> rmcp::transport::Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            let bytes = serde_json::to_vec(&item)?;
            write_line(&write, bytes).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            match self.read_line().await {
                Ok(LineRead::Line) => {}
                Ok(LineRead::Oversized) => {
                    self.reply_error(
                        serde_json::Value::Null,
                        INVALID_REQUEST,
                        format!(
                            "Invalid Request: the message is over {} bytes, the most this \
                             server reads from stdin; it was skipped (send smaller messages, \
                             e.g. write a large file in parts)",
                            self.max_message_bytes
                        ),
                    );
                    continue;
                }
                // A last line without a newline is an incomplete message: nothing to answer.
                Ok(LineRead::Eof) => return None,
                Err(e) => {
                    tracing::error!("cannot read the mcp client's stdin: {e}");
                    return None;
                }
            }
            let line = std::mem::take(&mut self.line);
            let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            let judged = if trimmed.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                self.judge(trimmed)
            };
            // Keep the allocation for the next line.
            self.line = line;
            self.line.clear();
            if let Some(message) = judged {
                return Some(message);
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.lock().await.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::McpServer;
    use crate::tests::{LineClient, node_in};
    use rmcp::ServiceExt;

    fn serve_lines(client_max: Option<usize>) -> (LineClient, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let server = McpServer::new(node_in(dir.path(), "edit"));
        let (client, server_in, server_out) = LineClient::pipes();
        let mut transport = LineTransport::new(server_in, server_out);
        if let Some(max) = client_max {
            transport = transport.with_max_message_bytes(max);
        }
        remote_agents_node::runtime::spawn(async move {
            if let Ok(service) = server.serve(transport).await {
                let _ = service.waiting().await;
            }
        });
        (client, dir)
    }

    /// rmcp's stdio transport dropped a line that was not JSON without any reply.
    #[tokio::test]
    async fn malformed_json_on_stdio_gets_a_parse_error_and_the_session_goes_on() {
        let (mut client, _dir) = serve_lines(None);
        client.initialize().await;
        client
            .send_line(b"{\"jsonrpc\": \"2.0\", \"id\": 7, \"method\": ")
            .await;
        let error = client.next_message().await;
        assert_eq!(error["error"]["code"], PARSE_ERROR, "{error}");
        assert_eq!(error["id"], serde_json::Value::Null, "{error}");
        assert_eq!(error["jsonrpc"], "2.0", "{error}");
        let listed = client.request("tools/list", serde_json::json!({})).await;
        assert!(listed["result"]["tools"].is_array(), "{listed}");
    }

    /// rmcp's stdio transport dropped a line over 16 MiB without any reply.
    #[tokio::test]
    async fn an_oversized_stdio_message_gets_an_error_and_the_session_goes_on() {
        let (mut client, _dir) = serve_lines(Some(4096));
        client.initialize().await;
        let big = serde_json::json!({
            "jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "write_file", "arguments": {"path": "/tmp/x", "content": "a".repeat(10_000)}},
        });
        client.send_line(big.to_string().as_bytes()).await;
        let error = client.next_message().await;
        assert_eq!(error["error"]["code"], INVALID_REQUEST, "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("4096 bytes"),
            "{error}"
        );
        let listed = client.request("tools/list", serde_json::json!({})).await;
        assert!(listed["result"]["tools"].is_array(), "{listed}");
    }

    /// JSON that is no JSON-RPC message is answered with its id; an unknown notification is not
    /// answered at all.
    #[tokio::test]
    async fn json_that_is_not_json_rpc_gets_invalid_request_with_its_id() {
        let (mut client, _dir) = serve_lines(None);
        client.initialize().await;
        client
            .send_line(
                b"{\"jsonrpc\": \"2.0\", \"method\": \"notifications/unheard_of\", \"params\": 3}",
            )
            .await;
        client.send_line(b"{\"id\": 12, \"oops\": true}").await;
        let error = client.next_message().await;
        assert_eq!(error["error"]["code"], INVALID_REQUEST, "{error}");
        assert_eq!(error["id"], 12, "{error}");
    }

    /// The cap counts the message, not the newline that ends it.
    #[tokio::test]
    async fn a_message_of_exactly_the_cap_is_read() {
        let ping = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
        let (mut client, server_in, server_out) = LineClient::pipes();
        let mut transport =
            LineTransport::new(server_in, server_out).with_max_message_bytes(ping.len());
        client.send_line(ping).await;
        let message = rmcp::transport::Transport::<RoleServer>::receive(&mut transport)
            .await
            .expect("a message");
        assert!(matches!(message, rmcp::model::JsonRpcMessage::Request(_)));
    }
}
