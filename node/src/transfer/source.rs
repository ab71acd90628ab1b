//! The source side of a transfer: a file opened once through the gate (by descriptor, so what is
//! served is what was checked) and served in chunks to the one destination its ticket names.
//! Every chunk checks that the file is still the one opened (size, mtime, not unlinked); the
//! digest at the end hashes the whole file from the descriptor, which the destination compares
//! with what it received. A source can also be a file this host is still receiving
//! (`super::forward`): it serves what is verified so far, and the digest its receive checked.

use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The agent id of the only peer that may pull it.
    puller: String,
    last_used: Mutex<Instant>,
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
            puller: puller.to_string(),
            last_used: Mutex::new(Instant::now()),
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
            puller: puller.to_string(),
            last_used: Mutex::new(Instant::now()),
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

    /// Fails when the file is no longer the one opened: removed or replaced (no name left), or
    /// changed in size or modification time.
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
        if meta.len() != self.size || modified_ms(&meta) != self.modified_ms {
            return Err(format!(
                "source {} changed during the transfer (size {} -> {}, or its modification time)",
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

    /// SHA-256 of the whole file as it is now, read from the descriptor, and the check that it
    /// is still the file opened; for a forwarded source, the digest its receive verified.
    pub async fn digest(self: Arc<Self>) -> Result<Digest, String> {
        if let Bytes::Forwarded(forwarding) = &self.bytes {
            return forwarding.digest().await;
        }
        blocking(move || match &self.bytes {
            Bytes::File(file) => self.hash(file),
            Bytes::Forwarded(_) => Err("a forwarded source answered above".into()),
        })
        .await
    }

    fn hash(&self, file: &std::fs::File) -> Result<Digest, String> {
        use sha2::Digest as _;
        self.check_unchanged(file)?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        let mut offset = 0;
        while offset < self.size {
            let want = (self.size - offset).min(buffer.len() as u64) as usize;
            file.read_exact_at(&mut buffer[..want], offset)
                .map_err(|e| format!("cannot read source {} at {offset}: {e}", self.path))?;
            hasher.update(&buffer[..want]);
            offset += want as u64;
        }
        self.check_unchanged(file)?;
        Ok(Digest {
            sha256: hex::encode(hasher.finalize()),
            size: self.size,
        })
    }
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
