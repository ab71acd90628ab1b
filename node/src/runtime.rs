//! The one place the node library and the MCP adapter start tasks (a tidy test keeps it so):
//! `spawn` for futures and `spawn_blocking` for file system, git and other blocking work. A
//! task carries the tracing span it was started in, so what it logs stays attributed to the
//! request or service that started it. The long-running services themselves are started in
//! `crate::service`.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::Instrument;

/// Starts `future` on the runtime, inside the current tracing span.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.in_current_span())
}

/// Runs blocking `work` on the runtime's blocking pool, inside the current tracing span.
pub fn spawn_blocking<F, R>(work: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}
