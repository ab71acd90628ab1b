//! The source side of a transfer: a file opened once through the gate (by descriptor, so what is
//! served is what was checked) and served in chunks to the one destination its ticket names.
//! Every chunk checks that the file is still the one opened (size, mtime, change time, not
//! unlinked). The digest the destination compares with what it received at the end is the hash
//! of the chunks as they are served, in order, while they are in the cache of the thread that
//! read them (a destination pulls in order, a window at a time: the few that finish reading
//! ahead of their turn wait in a small stash). So the file is read once, not once to serve and
//! once more to hash. Pulls too far out of order (a swarm's destinations take pieces from each
//! other) switch to hashing the whole file from the descriptor on a thread of its own, so the
//! digest is still ready about when the last chunk has gone. The digest is handed out only after
//! the same check: no write touched the file from its opening to the end, so the bytes hashed are
//! the bytes served. Chunk buffers come from a small pool and go back when the path is done with
//! them (a fresh 512 KiB buffer per chunk cost a page fault per page). A source can also be a
//! file this host is still receiving (`super::forward`): it serves what is verified so far, and
//! the digest its receive checked.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sha2::Digest as _;

use tokio::sync::watch;

use super::forward::Forwarding;
use crate::policy::{OpenError, Resolved};

/// How long a source stays open without a pull.
pub const IDLE: Duration = Duration::from_secs(15 * 60);

/// One file served to one destination.
pub struct Source {
    bytes: Bytes,
    path: String,
    size: u64,
    modified_ms: Option<u64>,
    /// The inode's change time (seconds, nanoseconds) when opened: every write moves it, and
    /// unlike the modification time no one can set it back, so a rewrite that keeps the size
    /// and restores the mtime still reads as a change.
    changed: Option<(i64, i64)>,
    /// The agent id of the only peer that may pull it.
    puller: String,
    last_used: Mutex<Instant>,
    /// The whole file's hash: fed the chunks as they are served, or computed on its own.
    hashing: Mutex<Hashing>,
    /// Chunk buffers the paths have handed back.
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Set when the source closes: the hash in progress stops.
    closed: Arc<AtomicBool>,
}

/// Chunks served ahead of the hash's place, kept (by reference: the bytes are the ones the path
/// sends) until the chunks before them are hashed. A destination keeps [`super::WINDOW`] pulls
/// in flight, so a chunk more than that ahead means the pulls are not in order.
const STASH: usize = super::WINDOW;
/// Buffers a source keeps for reuse: those of the chunks in flight and stashed.
const POOLED_BUFFERS: usize = 2 * super::WINDOW;

/// Where a file source's hash stands.
enum Hashing {
    /// Fed the chunks in order: `next` bytes from 0 are hashed, `stash` holds chunks served
    /// beyond them.
    Served {
        hasher: sha2::Sha256,
        next: u64,
        stash: BTreeMap<u64, bytes::Bytes>,
    },
    /// The pulls came out of order: the whole file is hashed from the descriptor on a thread.
    Whole(watch::Receiver<Option<Result<String, String>>>),
}

impl Hashing {
    fn new() -> Self {
        Hashing::Served {
            hasher: sha2::Sha256::new(),
            next: 0,
            stash: BTreeMap::new(),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Where a source's bytes come from.
enum Bytes {
    /// A whole file, opened once.
    File(std::fs::File),
    /// A file this host is receiving, served as it is verified.
    Forwarded(Arc<Forwarding>),
}

/// What a destination learns of the source at the end: the hash of the whole file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub sha256: String,
    pub size: u64,
}

impl Source {
    /// Opens a path the gate approved for reading, for `puller`.
    pub fn open(target: &Resolved, puller: &str) -> Result<Self, String> {
        let shown = target.absolute.display().to_string();
        let (file, meta) = target.open_read().map_err(|e| match e {
            OpenError::Refused(refusal) => refusal.reason,
            OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("source {shown} does not exist")
            }
            OpenError::Io(e) => format!("cannot open source {shown}: {e}"),
        })?;
        Self::of_file(file, &meta, shown, puller)
    }

    /// Opens a local file of the caller's own (fleetctl's `cp LOCAL HOST:PATH`: the user's own
    /// file, under the user's own permissions).
    pub fn open_local(path: &std::path::Path, puller: &str) -> Result<Self, String> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat {shown}: {e}"))?;
        Self::of_file(file, &meta, shown, puller)
    }

    fn of_file(
        file: std::fs::File,
        meta: &std::fs::Metadata,
        path: String,
        puller: &str,
    ) -> Result<Self, String> {
        if !meta.is_file() {
            return Err(format!("source {path} is not a regular file"));
        }
        Ok(Source {
            bytes: Bytes::File(file),
            path,
            size: meta.len(),
            modified_ms: modified_ms(meta),
            changed: Some((meta.ctime(), meta.ctime_nsec())),
            puller: puller.to_string(),
            last_used: Mutex::new(Instant::now()),
            hashing: Mutex::new(Hashing::new()),
            buffers: Arc::default(),
            closed: Arc::default(),
        })
    }

    /// The file this host is receiving into `path` (shown in messages), for `puller`.
    pub fn forwarded(
        forwarding: Arc<Forwarding>,
        path: String,
        size: u64,
        modified_ms: Option<u64>,
        puller: &str,
    ) -> Self {
        Source {
            bytes: Bytes::Forwarded(forwarding),
            path,
            size,
            modified_ms,
            changed: None,
            puller: puller.to_string(),
            last_used: Mutex::new(Instant::now()),
            hashing: Mutex::new(Hashing::new()),
            buffers: Arc::default(),
            closed: Arc::default(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn modified_ms(&self) -> Option<u64> {
        self.modified_ms
    }

    pub(super) fn puller(&self) -> &str {
        &self.puller
    }

    pub(super) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(super) fn idle_too_long(&self) -> bool {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            > IDLE
    }

    /// Adds a chunk just read at `offset` to the hash: hashed now if it is next, stashed if it
    /// is a little ahead, and if it is further ahead (or the stash is full) the hash moves to
    /// the whole file on a thread of its own. A chunk before the hash's place (pulled again
    /// after a path failed) is already in it.
    fn hash_served(&self, offset: u64, chunk: &bytes::Bytes) {
        let mut hashing = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
        let Hashing::Served {
            hasher,
            next,
            stash,
        } = &mut *hashing
        else {
            return;
        };
        if offset == *next {
            hasher.update(chunk);
            *next += chunk.len() as u64;
            while let Some(ahead) = stash.remove(next) {
                hasher.update(&ahead);
                *next += ahead.len() as u64;
            }
        } else if offset > *next {
            if stash.len() < STASH && offset - *next < (STASH as u64 + 1) * super::CHUNK {
                stash.insert(offset, chunk.clone());
            } else {
                *hashing = Hashing::Whole(self.hash_whole_file());
            }
        }
    }

    /// Starts hashing the whole file from the descriptor on a blocking thread.
    fn hash_whole_file(&self) -> watch::Receiver<Option<Result<String, String>>> {
        let (sender, receiver) = watch::channel(None);
        let Bytes::File(file) = &self.bytes else {
            let _ = sender.send(Some(Err("a forwarded source hashes nothing".into())));
            return receiver;
        };
        let (path, size, closed) = (self.path.clone(), self.size, self.closed.clone());
        match file.try_clone() {
            Ok(file) => {
                crate::runtime::spawn_blocking(move || {
                    let hashed = hash_file(&file, sha2::Sha256::new(), 0, size, &path, &closed);
                    let _ = sender.send(Some(hashed));
                });
            }
            Err(e) => {
                let _ = sender.send(Some(Err(format!("cannot hash source {path}: {e}"))));
            }
        }
        receiver
    }

    /// A chunk buffer of `length` bytes, from the pool when it has one. Its contents are
    /// whatever a previous chunk left: the read overwrites all of it.
    fn buffer(&self, length: usize) -> Vec<u8> {
        let pooled = self.buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(mut buffer) => {
                buffer.resize(length, 0);
                buffer
            }
            None => vec![0; length],
        }
    }

    /// Fails when the file is no longer the one opened: removed or replaced (no name left), or
    /// changed in size, modification time or change time (any write, even one that restores
    /// the mtime; also a chmod or a new hard link, which is the safe side to err on).
    fn check_unchanged(&self, file: &std::fs::File) -> Result<(), String> {
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat source {}: {e}", self.path))?;
        if meta.nlink() == 0 {
            return Err(format!(
                "source {} vanished during the transfer (removed or replaced)",
                self.path
            ));
        }
        if meta.len() != self.size
            || modified_ms(&meta) != self.modified_ms
            || self
                .changed
                .is_some_and(|changed| changed != (meta.ctime(), meta.ctime_nsec()))
        {
            return Err(format!(
                "source {} changed during the transfer (size {} -> {}, or it was written to)",
                self.path,
                self.size,
                meta.len()
            ));
        }
        Ok(())
    }

    /// `length` bytes from `offset` (fewer only at the end of the file); a forwarded source
    /// first waits until they are verified.
    pub async fn chunk(self: Arc<Self>, offset: u64, length: u64) -> Result<bytes::Bytes, String> {
        if offset > self.size {
            return Err(format!(
                "offset {offset} is past the end of source {} ({} bytes)",
                self.path, self.size
            ));
        }
        let length = length.min(super::CHUNK).min(self.size - offset);
        let forwarded = match &self.bytes {
            Bytes::File(_) => None,
            Bytes::Forwarded(forwarding) => Some(forwarding.ready(offset + length).await?),
        };
        blocking(move || {
            let file = match (&self.bytes, &forwarded) {
                (Bytes::File(file), _) => {
                    self.check_unchanged(file)?;
                    file
                }
                (Bytes::Forwarded(_), Some(file)) => file.as_ref(),
                (Bytes::Forwarded(_), None) => {
                    return Err("a forwarded source without its file".into());
                }
            };
            let mut buffer = self.buffer(length as usize);
            file.read_exact_at(&mut buffer, offset)
                .map_err(|e| format!("cannot read source {} at {offset}: {e}", self.path))?;
            let chunk = bytes::Bytes::from_owner(PooledBuffer {
                buffer,
                pool: Arc::downgrade(&self.buffers),
            });
            if matches!(self.bytes, Bytes::File(_)) {
                self.hash_served(offset, &chunk);
            }
            Ok(chunk)
        })
        .await
    }

    /// SHA-256 of the whole file and the check that it is still the file opened; for a
    /// forwarded source, the digest its receive verified. What the chunks served did not cover
    /// (a transfer that resumed past the start, a path that skipped ahead) is read and hashed
    /// from the descriptor now.
    pub async fn digest(self: Arc<Self>) -> Result<Digest, String> {
        if let Bytes::Forwarded(forwarding) = &self.bytes {
            return forwarding.digest().await;
        }
        let whole = {
            let hashing = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
            match &*hashing {
                Hashing::Whole(receiver) => Some(receiver.clone()),
                Hashing::Served { .. } => None,
            }
        };
        let sha256 = match whole {
            Some(mut hashing) => hashing
                .wait_for(Option::is_some)
                .await
                .map_err(|_| format!("the hash of source {} was abandoned", self.path))?
                .clone()
                .unwrap_or_else(|| Err("no hash".into())),
            None => {
                let this = self.clone();
                blocking(move || this.finish_served_hash()).await
            }
        };
        blocking(move || match &self.bytes {
            // Hashed while unchanged, and unchanged still: the hash is the file's. A change is
            // the better reason for a failed hash too (a shrunk file fails the read).
            Bytes::File(file) => self.check_unchanged(file).and_then(|()| {
                Ok(Digest {
                    sha256: sha256?,
                    size: self.size,
                })
            }),
            Bytes::Forwarded(_) => Err("a forwarded source answered above".into()),
        })
        .await
    }

    /// The hash of the chunks served in order, with the rest of the file read and hashed from
    /// where they stopped.
    fn finish_served_hash(&self) -> Result<String, String> {
        let Bytes::File(file) = &self.bytes else {
            return Err("a forwarded source hashes nothing".into());
        };
        let (hasher, next) = {
            let hashing = self.hashing.lock().unwrap_or_else(|e| e.into_inner());
            match &*hashing {
                Hashing::Served { hasher, next, .. } => (hasher.clone(), *next),
                Hashing::Whole(_) => return Err("the source's hash moved to the whole file".into()),
            }
        };
        hash_file(file, hasher, next, self.size, &self.path, &self.closed)
    }
}

/// A chunk's buffer lent to a path (as `bytes::Bytes`): back to its source's pool when the
/// path lets go of it, unless the pool is full or the source is gone.
struct PooledBuffer {
    buffer: Vec<u8>,
    pool: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_BUFFERS {
            pool.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// `hasher` fed bytes `from..size` of `file` (shown as `path`), in hex, unless `closed` is set
/// first.
fn hash_file(
    file: &std::fs::File,
    mut hasher: sha2::Sha256,
    from: u64,
    size: u64,
    path: &str,
    closed: &AtomicBool,
) -> Result<String, String> {
    let mut buffer = vec![0; 1 << 20];
    let mut offset = from;
    while offset < size {
        if closed.load(Ordering::Relaxed) {
            return Err(format!("source {path} was closed"));
        }
        let want = (size - offset).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..want], offset)
            .map_err(|e| format!("cannot read source {path} at {offset}: {e}"))?;
        hasher.update(&buffer[..want]);
        offset += want as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Runs file work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    crate::runtime::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("source reader panicked: {e}")))
}

fn modified_ms(meta: &std::fs::Metadata) -> Option<u64> {
    // Nanoseconds too: a rewrite within the same millisecond still reads as a change.
    let nanos = meta.mtime_nsec() as u64;
    u64::try_from(meta.mtime())
        .ok()
        .map(|secs| secs * 1000 + nanos / 1_000_000)
}
