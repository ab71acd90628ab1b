//! Host→host file transfer, the engine: the files a node serves to one destination each by
//! ticket (`source`), the destination's pull of a file into a temp file with SHA-256 verified
//! end to end, fsync and rename, resuming from the verified offset (`receive`), the byte paths
//! that carry the chunks (`path`: the relay and local ones; `direct`: QUIC on a punched UDP
//! path, tried before the relay), and the coordinator's records of the transfers it runs (`coordinate`).
//!
//! Authorization: the coordinator (the caller's own node, or fleetctl) asks the source host for
//! a ticket (`transfer_source`, gated for reading there against the caller) and the destination
//! host to receive (`transfer_receive`, gated for writing there against the caller). A ticket
//! is 256 random bits, bound to the one destination the caller named: the source serves its
//! chunks only to that authenticated peer, so the bytes flow between the two hosts without
//! either acting on its own authority.

pub mod coordinate;
pub mod direct;
pub mod forward;
pub mod path;
pub mod receive;
pub mod source;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use remote_agents_ops::{TransferState, TransferStatus};

pub use path::{BytePath, PathError, Pull};
pub use receive::{Destination, ReceiveError, ReceivePlan, receive};
pub use source::Source;

/// Bytes per chunk: well under the relay's 1 MiB frame cap once sealed and framed.
pub const CHUNK: u64 = 512 * 1024;
/// Chunks in flight per transfer: enough to keep the relay path busy, and the memory of one
/// transfer bounded (`CHUNK * WINDOW` = 8 MiB of chunks at most).
pub const WINDOW: usize = 16;
/// Sources one host keeps open at most: each holds a file descriptor until its destination is
/// done or it idles out.
pub const MAX_SOURCES: usize = 1024;
/// How long a coordinator waits for a destination to receive a file (a day: a slow link's
/// large file; cancelling the call stops it sooner).
pub const RECEIVE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// A node's transfers: the sources it serves and the transfers it coordinates.
#[derive(Default)]
pub struct Transfers {
    sources: Mutex<HashMap<String, Arc<Source>>>,
    records: Mutex<BTreeMap<String, TransferStatus>>,
    /// Chunk bytes this node's sources have answered (what a swarm's origin sent).
    served: std::sync::atomic::AtomicU64,
    /// What stops each running transfer this node coordinates (`transfer_cancel`).
    cancels: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Woken whenever a record finishes (`transfer_get` waits on it).
    finished: tokio::sync::Notify,
    /// Where records are kept across restarts (`store`); none for a one-shot fleetctl.
    store: Option<Arc<crate::journal::Store>>,
}

impl Transfers {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Transfers whose records live in `store` too: those kept from earlier runs are loaded,
    /// the ones a stop cut off as `interrupted`.
    pub fn with_store(
        store: Arc<crate::journal::Store>,
    ) -> Result<Arc<Self>, crate::journal::StoreError> {
        let records = store::load(&store)?
            .into_iter()
            .map(|status| (status.transfer_id.clone(), status))
            .collect();
        Ok(Arc::new(Self {
            records: Mutex::new(records),
            store: Some(store),
            ..Self::default()
        }))
    }

    /// Saves a record that started or finished. A failure to save is logged, not fatal: the
    /// transfer itself does not depend on its record surviving a restart.
    fn save(&self, status: &TransferStatus) {
        if let Some(store) = &self.store
            && let Err(e) = store::save(store, status)
        {
            tracing::error!(transfer = %status.transfer_id, "cannot save the transfer record: {e}");
        }
    }

    /// Keeps `source` for its destination and returns its ticket. Sources idle longer than
    /// [`source::IDLE`] are dropped first, closing their files; beyond [`MAX_SOURCES`] open
    /// ones it is refused.
    pub fn add_source(&self, source: Source) -> Result<String, String> {
        let ticket = Self::new_ticket();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, s| !s.idle_too_long());
        if sources.len() >= MAX_SOURCES {
            return Err(format!(
                "this host already serves {MAX_SOURCES} transfers; wait for some to finish"
            ));
        }
        sources.insert(ticket.clone(), Arc::new(source));
        Ok(ticket)
    }

    /// Keeps `source` under a ticket the coordinator drew (a swarm's forwarded source): it must
    /// be 64 hex digits, and new.
    pub fn add_source_with_ticket(&self, ticket: &str, source: Source) -> Result<(), String> {
        if ticket.len() != 64 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a forwarding ticket must be 64 hex digits".into());
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, s| !s.idle_too_long());
        if sources.len() >= MAX_SOURCES {
            return Err(format!(
                "this host already serves {MAX_SOURCES} transfers; wait for some to finish"
            ));
        }
        if sources.contains_key(ticket) {
            return Err("this forwarding ticket is already in use".into());
        }
        sources.insert(ticket.to_string(), Arc::new(source));
        Ok(())
    }

    /// A ticket for a swarm's forwarded source: 256 random bits, hex.
    pub fn new_ticket() -> String {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// The source `ticket` names, if `puller` is the destination it was opened for. A wrong
    /// peer and an unknown ticket read the same, so a ticket cannot be probed.
    pub fn source_for(&self, ticket: &str, puller: &str) -> Result<Arc<Source>, String> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        match sources.get(ticket) {
            Some(source) if source.puller() == puller => {
                source.touch();
                Ok(source.clone())
            }
            _ => Err(
                "unknown or expired transfer ticket (the source closes it after 15 minutes \
                      idle); start the transfer again"
                    .into(),
            ),
        }
    }

    /// Closes the source `ticket` names, if `puller` may.
    pub fn close_source(&self, ticket: &str, puller: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.get(ticket).is_some_and(|s| s.puller() == puller) {
            sources.remove(ticket);
        }
    }

    /// Chunk bytes this node's sources have answered since it started.
    pub fn served_bytes(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_served(&self, bytes: usize) {
        self.served
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many sources are open (tests).
    pub fn open_sources(&self) -> usize {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Records (or updates) a transfer this node coordinates.
    pub fn put_record(&self, status: TransferStatus) {
        let finished = status.state.is_finished();
        self.save(&status);
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(status.transfer_id.clone(), status);
        if finished {
            self.finished.notify_waiters();
        }
    }

    /// A token that stops the running transfer `id` when `transfer_cancel` names it (and when
    /// `parent` is cancelled); forgotten once the record finishes.
    pub fn cancel_token(
        &self,
        id: &str,
        parent: &tokio_util::sync::CancellationToken,
    ) -> tokio_util::sync::CancellationToken {
        let token = parent.child_token();
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), token.clone());
        token
    }

    /// Cancels the running transfer `id`; false when none is running under that id.
    pub fn cancel(&self, id: &str) -> bool {
        match self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Changes the record of `id` in place, if it is still running.
    pub fn update_record(&self, id: &str, change: impl FnOnce(&mut TransferStatus)) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut finished = None;
        if let Some(status) = records.get_mut(id)
            && !status.state.is_finished()
        {
            change(status);
            finished = status.state.is_finished().then(|| status.clone());
        }
        drop(records);
        if let Some(status) = finished {
            self.save(&status);
            self.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            self.finished.notify_waiters();
        }
    }

    pub fn record(&self, id: &str) -> Option<TransferStatus> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every record, newest first.
    pub fn records(&self) -> Vec<TransferStatus> {
        let mut all: Vec<TransferStatus> = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|status| std::cmp::Reverse(status.started_at_ms));
        all
    }

    /// The record of `id` once it finished, or as it stands when `wait` runs out.
    pub async fn wait_record(&self, id: &str, wait: std::time::Duration) -> Option<TransferStatus> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = self.record(id)?;
            if status.state.is_finished() || tokio::time::Instant::now() >= deadline {
                return Some(status);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.record(id);
            }
        }
    }
}

/// Marks a running record failed (or cancelled) with `error`.
pub fn fail(status: &mut TransferStatus, state: TransferState, error: String) {
    status.state = state;
    status.error = Some(error);
    status.finished_at_ms = Some(crate::journal::now_ms());
}

/// SHA-256 of a whole file, hex (for callers that check what arrived).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
