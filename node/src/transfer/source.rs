//! The source side of a transfer: a file opened once through the gate (by descriptor, so what is
//! served is what was checked) and served in chunks to the one destination its ticket names.
//! Every chunk checks that the file is still the one opened (size, mtime, change time, not
//! unlinked); the digest the destination compares with what it received at the end hashes the
//! whole file from the descriptor, on a thread of its own from the first pull on, so it is ready
//! when the last chunk has gone instead of adding a second pass over the file to the transfer's
//! time. The digest is handed out only after the same check: no write touched the file from its
//! opening to the end, so the bytes hashed are the bytes served. A source can also be a file this host is still receiving
//! (`super::forward`): it serves what is verified so far, and the digest its receive checked.

use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
    /// The whole file's hash, computed beside the chunks from the first pull on.
    hashing: OnceLock<watch::Receiver<Option<Result<String, String>>>>,
    /// Set when the source closes: the hash in progress stops.
    closed: Arc<AtomicBool>,
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
            hashing: OnceLock::new(),
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
            hashing: OnceLock::new(),
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

    /// Starts hashing the whole file on a blocking thread, once; a forwarded source has the
    /// digest its receive verifies.
    fn start_hashing(&self) -> Option<watch::Receiver<Option<Result<String, String>>>> {
        let Bytes::File(file) = &self.bytes else {
            return None;
        };
        let receiver = self.hashing.get_or_init(|| {
            let (sender, receiver) = watch::channel(None);
            let (path, size, closed) = (self.path.clone(), self.size, self.closed.clone());
            match file.try_clone() {
                Ok(file) => {
                    crate::runtime::spawn_blocking(move || {
                        let _ = sender.send(Some(hash_file(&file, size, &path, &closed)));
                    });
                }
                Err(e) => {
                    let _ = sender.send(Some(Err(format!("cannot hash source {path}: {e}"))));
                }
            }
            receiver
        });
        Some(receiver.clone())
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
    pub async fn chunk(self: Arc<Self>, offset: u64, length: u64) -> Result<Vec<u8>, String> {
        if offset > self.size {
            return Err(format!(
                "offset {offset} is past the end of source {} ({} bytes)",
                self.path, self.size
            ));
        }
        let length = length.min(super::CHUNK).min(self.size - offset);
        self.start_hashing();
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
            let mut buffer = vec![0; length as usize];
            file.read_exact_at(&mut buffer, offset)
                .map_err(|e| format!("cannot read source {} at {offset}: {e}", self.path))?;
            Ok(buffer)
        })
        .await
    }

    /// SHA-256 of the whole file, read from the descriptor, and the check that it is still the
    /// file opened; for a forwarded source, the digest its receive verified.
    pub async fn digest(self: Arc<Self>) -> Result<Digest, String> {
        let mut hashing = match &self.bytes {
            Bytes::Forwarded(forwarding) => return forwarding.digest().await,
            Bytes::File(_) => self.start_hashing().ok_or("a source without its file")?,
        };
        let sha256 = hashing
            .wait_for(Option::is_some)
            .await
            .map_err(|_| format!("the hash of source {} was abandoned", self.path))?
            .clone()
            .unwrap_or_else(|| Err("no hash".into()));
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
}

/// SHA-256 (hex) of the first `size` bytes of `file` (shown as `path`), unless `closed` is set
/// first.
fn hash_file(
    file: &std::fs::File,
    size: u64,
    path: &str,
    closed: &AtomicBool,
) -> Result<String, String> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut offset = 0;
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
