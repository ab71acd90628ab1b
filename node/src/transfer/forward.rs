//! Forwarding: a destination that serves the file it is receiving to the hosts after it in a
//! swarm (`fleet_send`), while it receives. What it serves is the prefix it has written and
//! hashed (the verified offset); a pull past it waits until the bytes land. The digest it answers
//! is the one it computed and compared with its own source's digest, so each host of the chain
//! checks the same SHA-256 end to end, and a failure anywhere up the chain reaches the hosts
//! below as a source failure, after which their coordinator sends them the file from the origin.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::source::Digest;

/// How long a pull waits for bytes the forwarding host has not received yet: well under the
/// puller's own pull deadline, so a stalled chain reads as a source failure, not a lost path.
pub const STALL: Duration = Duration::from_secs(40);

/// Where the forwarding host's own receive stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Bytes from 0 written and hashed so far.
    Receiving { verified: u64 },
    /// Received whole and verified against its source's digest.
    Done(Digest),
    /// Its receive ended without the file.
    Failed(String),
}

/// The state one receive shares with the sources that forward it.
pub struct Forwarding {
    /// The temp file being written, once open (read by descriptor, also after its rename).
    file: OnceLock<Arc<std::fs::File>>,
    progress: watch::Sender<Progress>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("progress", &*self.progress.borrow())
            .finish()
    }
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            file: OnceLock::new(),
            progress: watch::Sender::new(Progress::Receiving { verified: 0 }),
        }
    }
}

impl Forwarding {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The receive opened its temp file, `verified` bytes of it already hashed (a resume).
    pub fn opened(&self, file: Arc<std::fs::File>, verified: u64) {
        let _ = self.file.set(file);
        self.set(Progress::Receiving { verified });
    }

    pub fn verified(&self, verified: u64) {
        self.set(Progress::Receiving { verified });
    }

    pub fn done(&self, digest: Digest) {
        self.set(Progress::Done(digest));
    }

    /// Ends the forwarding with `error`, unless it already ended.
    pub fn failed(&self, error: impl Into<String>) {
        let error = error.into();
        self.progress.send_if_modified(|progress| {
            if matches!(progress, Progress::Receiving { .. }) {
                *progress = Progress::Failed(error);
                true
            } else {
                false
            }
        });
    }

    fn set(&self, next: Progress) {
        self.progress.send_if_modified(|progress| {
            // An ended receive stays ended.
            if matches!(progress, Progress::Receiving { .. }) {
                *progress = next;
                true
            } else {
                false
            }
        });
    }

    /// Waits until `end` bytes are verified (or the whole file is), and returns the file.
    pub async fn ready(&self, end: u64) -> Result<Arc<std::fs::File>, String> {
        self.wait(|progress| match progress {
            Progress::Receiving { verified } => *verified >= end,
            _ => true,
        })
        .await?;
        self.file
            .get()
            .cloned()
            .ok_or_else(|| "the forwarding host has not opened the file".to_string())
    }

    /// Waits until the receive is verified whole, and returns its digest.
    pub async fn digest(&self) -> Result<Digest, String> {
        match self
            .wait(|progress| !matches!(progress, Progress::Receiving { .. }))
            .await?
        {
            Progress::Done(digest) => Ok(digest),
            _ => Err("the forwarding host's receive did not finish".into()),
        }
    }

    async fn wait(&self, until: impl Fn(&Progress) -> bool) -> Result<Progress, String> {
        let mut receiver = self.progress.subscribe();
        let reached = tokio::time::timeout(STALL, receiver.wait_for(|p| until(p)))
            .await
            .map_err(|_| {
                format!(
                    "the forwarding host received nothing new for {}s",
                    STALL.as_secs()
                )
            })?
            .map_err(|_| "the forwarding host's receive ended".to_string())?
            .clone();
        match reached {
            Progress::Failed(error) => {
                Err(format!("the forwarding host's receive failed: {error}"))
            }
            progress => Ok(progress),
        }
    }
}

/// Ends a forwarding as failed when its receive returns without marking it done (an error, a
/// cancellation, a dropped future).
pub struct FailOnDrop(pub Option<Arc<Forwarding>>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        if let Some(forwarding) = &self.0 {
            forwarding.failed("the receive stopped");
        }
    }
}
