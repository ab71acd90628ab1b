//! The destination side of a transfer: pull the source's chunks over a byte path with a bounded
//! window in flight, append them in order to a temp file beside the target, hash as they land,
//! compare the hash with the source's digest, fsync, rename, fsync the folder.
//!
//! The temp file's name (`.NAME.ra-tmp-<32 hex>`, the naming `write_file` uses) is derived from
//! the source (host, path, size, mtime) and the target, so a transfer that was interrupted (the
//! path lost, the node restarted) and is started again finds what it had written, hashes it and
//! resumes after it; the digest at the end verifies everything end to end. A failure that no
//! retry can mend (the source changed, vanished or refused, the disk is full, cancellation)
//! removes the temp file: no partial file is left at the destination. When every path is lost
//! the temp file is kept for the resume.

use std::ffi::OsString;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::Duration;

use cap_std::fs::{Dir, MetadataExt as _, OpenOptions};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use remote_agents_ops::TransferPath;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

use super::forward::{FailOnDrop, Forwarding};
use super::path::{Answer, BytePath, PathError, Pull, PullWhat};
use super::source::Digest;
use super::{CHUNK, WINDOW};
use crate::policy::Resolved;

/// Path failures in a row (each after a pause that doubles) before the transfer stops and
/// keeps its temp file for a resume.
const PATH_RETRIES: u32 = 5;
/// How many written bytes start a flush to disk beside the pulls.
const FLUSH_BEHIND: u64 = 64 * 1024 * 1024;

/// What the coordinator told the destination about the source.
#[derive(Debug, Clone)]
pub struct ReceivePlan {
    pub from_agent_id: String,
    pub from_path: String,
    pub ticket: String,
    pub size: u64,
    pub modified_ms: Option<u64>,
    /// The host and path the file first came from when `from_agent_id` forwards it (a swarm):
    /// the temp file's resume key in place of the source's.
    pub origin: Option<String>,
    /// Shares the receive's progress with the sources that forward it to the next hosts.
    pub forward: Option<Arc<Forwarding>>,
}

/// Where the file lands: the folder (opened by the gate without following links) and the name.
pub struct Destination {
    dir: Dir,
    name: OsString,
    shown: String,
    /// Refuses an existing target the gate protects (a hard link to one), before it is replaced.
    protected: Option<Protected>,
}

/// Judges an existing target by its (device, inode): the gate's check of what was opened.
type Protected = Box<dyn Fn(crate::policy::Identity) -> Result<(), String> + Send + Sync>;

impl Destination {
    /// A path the gate approved for writing.
    pub fn beneath(target: Resolved) -> Result<Self, ReceiveError> {
        let shown = target.absolute.display().to_string();
        let (dir, name) = target
            .open_parent()
            .map_err(|e| ReceiveError::Fatal(format!("cannot open the folder of {shown}: {e}")))?;
        Ok(Destination {
            dir,
            name,
            shown,
            protected: Some(Box::new(move |identity| {
                target.check_opened(identity).map_err(|r| r.reason)
            })),
        })
    }

    /// A local path of the caller's own (fleetctl's `cp HOST:PATH LOCAL`).
    pub fn local(path: &std::path::Path) -> Result<Self, ReceiveError> {
        let shown = path.display().to_string();
        let name = path
            .file_name()
            .ok_or_else(|| ReceiveError::Fatal(format!("{shown} names no file")))?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        let dir = Dir::open_ambient_dir(parent, cap_std::ambient_authority()).map_err(|e| {
            ReceiveError::Fatal(format!("cannot open folder {}: {e}", parent.display()))
        })?;
        Ok(Destination {
            dir,
            name,
            shown,
            protected: None,
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Why a receive stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// Nothing was kept; starting again starts from zero.
    #[error("{0}")]
    Fatal(String),
    /// Every path failed; the verified part is kept and a new try resumes after it.
    #[error("{0}")]
    Interrupted(String),
    #[error("cancelled; the partial file at the destination was removed")]
    Cancelled,
}

/// How a receive ended well.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub bytes: u64,
    pub sha256: String,
    pub path: TransferPath,
    pub resumed_from: u64,
}

/// Progress: bytes verified so far, and the path carrying them.
pub type Progress = Arc<dyn Fn(u64, TransferPath) + Send + Sync>;

/// Receives `plan`'s file into `destination` over `paths` (tried in order; the first is
/// preferred, the next takes over when one fails, from the verified offset).
pub async fn receive(
    destination: Destination,
    plan: ReceivePlan,
    paths: Vec<Arc<dyn BytePath>>,
    progress: Progress,
    cancel: CancellationToken,
) -> Result<Received, ReceiveError> {
    if paths.is_empty() {
        return Err(ReceiveError::Fatal(format!(
            "no path to source host {}",
            plan.from_agent_id
        )));
    }
    // Whatever ends this receive early ends what it forwards too.
    let forwarding = FailOnDrop(plan.forward.clone());
    let destination = Arc::new(destination);
    let temp = temp_name(&destination.name, &plan);
    let opened = {
        let destination = destination.clone();
        let temp = temp.clone();
        let size = plan.size;
        blocking(move || open_temp(&destination, &temp, size)).await?
    };
    let (file, hasher, resumed_from) = opened;
    // A swarm's next hosts read what lands here back from the file, best from the page cache.
    let direct = if plan.forward.is_none() {
        let destination = destination.clone();
        let temp = temp.clone();
        blocking(move || Ok(DirectWriter::open(&destination, &temp))).await?
    } else {
        None
    };
    let file = Arc::new(file);
    if let Some(forward) = &plan.forward {
        forward.opened(file.clone(), resumed_from);
    }
    let started = std::time::Instant::now();
    let mut run = Run {
        file,
        hasher,
        direct,
        done: resumed_from,
        chunks_done: None,
        flushing: None,
        plan: &plan,
        destination: &destination,
    };
    progress(run.done, paths[0].kind());
    let outcome = run.pull_all(&paths, &progress, &cancel).await;
    let cleanup = |destination: Arc<Destination>, temp: OsString| async move {
        let _ = blocking(move || {
            let _ = destination.dir.remove_file(&temp);
            Ok(())
        })
        .await;
    };
    let (path, digest) = match outcome {
        Ok(done) => done,
        Err(ReceiveError::Interrupted(text)) => return Err(ReceiveError::Interrupted(text)),
        Err(e) => {
            cleanup(destination.clone(), temp.clone()).await;
            close(&paths, &plan).await;
            return Err(e);
        }
    };
    let local = hex::encode(run.hasher.clone().finalize());
    if digest.sha256 != local || digest.size != run.done {
        cleanup(destination.clone(), temp.clone()).await;
        close(&paths, &plan).await;
        return Err(ReceiveError::Fatal(format!(
            "SHA-256 mismatch for {}:{}: the source has {} ({} bytes), {} received {} ({} \
             bytes); the source changed during the transfer",
            plan.from_agent_id,
            plan.from_path,
            digest.sha256,
            digest.size,
            destination.shown,
            local,
            run.done
        )));
    }
    if let Some(forward) = &forwarding.0 {
        forward.done(digest.clone());
    }
    let verified = std::time::Instant::now();
    let finished = {
        let destination = destination.clone();
        let temp = temp.clone();
        let file = run.file.clone();
        blocking(move || finish(&destination, &temp, &file)).await
    };
    // Where a transfer's time went: the chunks, the source's digest, the sync to disk.
    let chunks_done = run.chunks_done.unwrap_or(verified);
    tracing::info!(
        target = %destination.shown,
        bytes = run.done - resumed_from,
        ?path,
        chunks_ms = (chunks_done - started).as_millis() as u64,
        digest_ms = (verified - chunks_done).as_millis() as u64,
        sync_ms = verified.elapsed().as_millis() as u64,
        "transfer received"
    );
    close(&paths, &plan).await;
    if let Err(e) = finished {
        cleanup(destination.clone(), temp).await;
        return Err(e);
    }
    Ok(Received {
        bytes: run.done,
        sha256: local,
        path,
        resumed_from,
    })
}

/// One receive in progress.
struct Run<'a> {
    file: Arc<std::fs::File>,
    hasher: sha2::Sha256,
    /// Writes chunks past the page cache, where the file system allows it.
    direct: Option<DirectWriter>,
    /// Bytes written, hashed and contiguous from 0: the verified offset.
    done: u64,
    /// When the last chunk was written (the digest and the sync follow).
    chunks_done: Option<std::time::Instant>,
    /// A flush of what is written so far, running beside the pulls, and the offset it covers.
    flushing: Option<(tokio::task::JoinHandle<()>, u64)>,
    plan: &'a ReceivePlan,
    destination: &'a Destination,
}

impl Run<'_> {
    /// Pulls everything after `done`, moving to the next path when one fails, and asks the
    /// source for its digest.
    async fn pull_all(
        &mut self,
        paths: &[Arc<dyn BytePath>],
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(TransferPath, Digest), ReceiveError> {
        let mut index = 0;
        let mut failures = 0;
        loop {
            let path = &paths[index];
            let before = self.done;
            let tried = async {
                self.pull_window(path.as_ref(), progress, cancel).await?;
                self.chunks_done = Some(std::time::Instant::now());
                let digest = path
                    .pull(Pull {
                        ticket: self.plan.ticket.clone(),
                        what: PullWhat::Digest,
                    })
                    .await
                    .map_err(Step::Path)?;
                serde_json::from_slice::<Digest>(&digest.concat())
                    .map_err(|e| Step::Fatal(format!("malformed digest from the source: {e}")))
            };
            match tried.await {
                Ok(digest) => return Ok((path.kind(), digest)),
                Err(Step::Fatal(text)) => return Err(ReceiveError::Fatal(text)),
                Err(Step::Cancelled) => return Err(ReceiveError::Cancelled),
                Err(Step::Path(PathError::Source(text))) => {
                    return Err(ReceiveError::Fatal(text));
                }
                Err(Step::Path(PathError::Unreachable(text))) => {
                    // Progress made on this try resets the count: only a path that keeps failing
                    // without moving ends the transfer.
                    if self.done > before {
                        failures = 0;
                    }
                    failures += 1;
                    tracing::warn!(
                        source = %self.plan.from_agent_id,
                        path = ?path.kind(),
                        verified = self.done,
                        "transfer path failed, continuing from the verified offset: {text}"
                    );
                    if failures > PATH_RETRIES {
                        return Err(ReceiveError::Interrupted(format!(
                            "every path to source host {} failed ({text}); {} of {} bytes are \
                             verified at {} and a new transfer of the same file resumes after \
                             them",
                            self.plan.from_agent_id,
                            self.done,
                            self.plan.size,
                            self.destination.shown
                        )));
                    }
                    index = (index + 1) % paths.len();
                    let pause = Duration::from_millis(100 << failures.min(6));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => return Err(ReceiveError::Cancelled),
                    }
                }
            }
        }
    }

    /// Keeps up to [`WINDOW`] chunk pulls in flight and writes their answers in order.
    async fn pull_window(
        &mut self,
        path: &dyn BytePath,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), Step> {
        let size = self.plan.size;
        let mut next = self.done;
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < WINDOW && next < size {
                let length = CHUNK.min(size - next);
                let offset = next;
                let pull = path.pull(Pull {
                    ticket: self.plan.ticket.clone(),
                    what: PullWhat::Chunk { offset, length },
                });
                // A task of its own: the pulls in flight keep moving while a chunk is written.
                let pull = Aborting(crate::runtime::spawn(pull));
                in_flight.push_back(async move { (offset, length, pull.await) });
                next += length;
            }
            let Some((offset, length, answer)) = (tokio::select! {
                answer = in_flight.next() => answer,
                _ = cancel.cancelled() => return Err(Step::Cancelled),
            }) else {
                return Ok(());
            };
            let bytes = answer.map_err(Step::Path)?;
            if bytes.len() as u64 != length || offset != self.done {
                return Err(Step::Fatal(format!(
                    "source {}:{} answered {} bytes at {offset} where {length} were expected; \
                     it changed during the transfer",
                    self.plan.from_agent_id,
                    self.plan.from_path,
                    bytes.len()
                )));
            }
            // Written and hashed at once, on two threads: each is a pass over the chunk, and
            // the destination's CPU is what limits a fast path.
            let bytes = Arc::new(bytes);
            let write = {
                let (file, bytes) = (self.file.clone(), bytes.clone());
                let shown = self.destination.shown.clone();
                let mut direct = self.direct.take();
                crate::runtime::spawn_blocking(move || {
                    let failed = |at: u64, e: std::io::Error| {
                        format!("cannot write {shown} at {at}: {e}; the partial file was removed")
                    };
                    let mut at = offset;
                    let mut pieces = &bytes.0[..];
                    if let Some(writer) = &mut direct {
                        match writer.write(&bytes.0, offset) {
                            Ok(written) => {
                                // What is not whole blocks (a last chunk's end) goes buffered.
                                at += written as u64;
                                pieces = &[];
                                let tail = &writer.staged()[written..];
                                file.write_all_at(tail, at).map_err(|e| failed(at, e))?;
                            }
                            Err(e)
                                if rustix::io::Errno::from_io_error(&e)
                                    == Some(rustix::io::Errno::INVAL) =>
                            {
                                tracing::debug!(
                                    target = %shown,
                                    "direct writes refused here, writing through the page cache: {e}"
                                );
                                direct = None;
                            }
                            Err(e) => return Err(failed(at, e)),
                        }
                    }
                    for piece in pieces {
                        file.write_all_at(piece, at).map_err(|e| failed(at, e))?;
                        at += piece.len() as u64;
                    }
                    Ok::<_, String>(direct)
                })
            };
            let mut hasher = std::mem::take(&mut self.hasher);
            let hash = crate::runtime::spawn_blocking(move || {
                for piece in &bytes.0 {
                    hasher.update(piece);
                }
                hasher
            });
            let panicked = |e: tokio::task::JoinError| Step::Fatal(format!("writer panicked: {e}"));
            let (written, hasher) = tokio::join!(write, hash);
            let (written, hasher) = (written.map_err(panicked)?, hasher.map_err(panicked)?);
            self.hasher = hasher;
            self.direct = written.map_err(Step::Fatal)?;
            self.done += length;
            self.flush_behind();
            if let Some(forward) = &self.plan.forward {
                forward.verified(self.done);
            }
            progress(self.done, path.kind());
        }
    }
}

impl Run<'_> {
    /// Starts writing what is written so far to disk once [`FLUSH_BEHIND`] more bytes are
    /// written and no flush runs, so the fsync before the rename finds little left to do
    /// instead of a whole file's dirty pages. Its errors show again in that final fsync.
    fn flush_behind(&mut self) {
        let flushed = match &self.flushing {
            Some((flush, _)) if !flush.is_finished() => return,
            Some((_, covered)) => *covered,
            None => 0,
        };
        if self.done < flushed + FLUSH_BEHIND {
            return;
        }
        let file = self.file.clone();
        let flush = crate::runtime::spawn_blocking(move || {
            let _ = file.sync_data();
        });
        self.flushing = Some((flush, self.done));
    }
}

/// The alignment direct I/O asks of offsets, lengths and memory (a page: every logical block
/// size up to it divides it).
pub(super) const BLOCK: usize = 4096;

/// A second descriptor of the temp file, opened `O_DIRECT`: chunks go from an aligned buffer
/// to the disk without a copy into the page cache. Measured here, that copy is the largest CPU
/// cost of a receive (a buffered 1 GiB write with fdatasync took 3.7 s of system time, a direct
/// one 0.6 s), and the file is synced before its rename anyway, so the cache holds nothing the
/// transfer needs. Where the file system refuses direct I/O (at open or at the first write), the
/// chunks go through the page cache as before.
pub(super) struct DirectWriter {
    file: std::fs::File,
    /// Room for a chunk plus the slack to start it on a block boundary.
    buffer: Vec<u8>,
    /// Bytes of `buffer` the last `write` staged, from its aligned start.
    staged: usize,
}

impl DirectWriter {
    pub(super) fn open(destination: &Destination, temp: &OsString) -> Option<Self> {
        let file = rustix::fs::openat(
            &destination.dir,
            temp.as_os_str(),
            rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::DIRECT
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .inspect_err(|e| tracing::debug!(target = %destination.shown, "no direct writes: {e}"))
        .ok()?;
        Some(Self {
            file: file.into(),
            buffer: vec![0; CHUNK as usize + BLOCK],
            staged: 0,
        })
    }

    /// Where the buffer's block-aligned part starts.
    fn start(&self) -> usize {
        self.buffer.as_ptr().align_offset(BLOCK)
    }

    /// Stages `pieces` (one chunk) and writes its whole blocks at `offset`; returns how many
    /// bytes that wrote. The rest, `staged()[written..]`, is for the caller to write.
    pub(super) fn write(&mut self, pieces: &[bytes::Bytes], offset: u64) -> std::io::Result<usize> {
        let start = self.start();
        let length: usize = pieces.iter().map(bytes::Bytes::len).sum();
        if length > self.buffer.len() - start {
            self.buffer = vec![0; length + BLOCK];
            return self.write(pieces, offset);
        }
        let start = self.start();
        let mut at = start;
        for piece in pieces {
            self.buffer[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        self.staged = length;
        if !offset.is_multiple_of(BLOCK as u64) {
            return Ok(0);
        }
        let whole = length - length % BLOCK;
        self.file
            .write_all_at(&self.buffer[start..start + whole], offset)?;
        Ok(whole)
    }

    pub(super) fn staged(&self) -> &[u8] {
        let start = self.start();
        &self.buffer[start..start + self.staged]
    }
}

/// A spawned pull that is stopped when the transfer no longer wants it (a failed try, a
/// cancellation), so no request outlives its transfer.
struct Aborting(tokio::task::JoinHandle<Result<Answer, PathError>>);

impl std::future::Future for Aborting {
    type Output = Result<Answer, PathError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(context).map(|joined| {
            joined.unwrap_or_else(|e| Err(PathError::Source(format!("chunk pull failed: {e}"))))
        })
    }
}

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How one step of a try failed.
enum Step {
    Path(PathError),
    Fatal(String),
    Cancelled,
}

/// Tells the source it can close the file (best effort: it closes idle sources anyway).
async fn close(paths: &[Arc<dyn BytePath>], plan: &ReceivePlan) {
    for path in paths {
        let pull = Pull {
            ticket: plan.ticket.clone(),
            what: PullWhat::Close,
        };
        if tokio::time::timeout(Duration::from_secs(5), path.pull(pull))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return;
        }
    }
}

/// The temp file's name: `write_file`'s naming, with a suffix derived from the source and
/// target so a new try of the same transfer finds it.
fn temp_name(name: &std::ffi::OsStr, plan: &ReceivePlan) -> OsString {
    let mut key = sha2::Sha256::new();
    let (host, path) = match &plan.origin {
        Some(origin) => (origin.as_str(), ""),
        None => (plan.from_agent_id.as_str(), plan.from_path.as_str()),
    };
    for part in [
        host.as_bytes(),
        path.as_bytes(),
        &plan.size.to_le_bytes(),
        &plan.modified_ms.unwrap_or(0).to_le_bytes(),
        name.as_encoded_bytes(),
    ] {
        key.update((part.len() as u64).to_le_bytes());
        key.update(part);
    }
    let suffix = hex::encode(&key.finalize()[..16]);
    OsString::from(format!(".{}.ra-tmp-{suffix}", name.to_string_lossy()))
}

/// Opens (or creates) the temp file, and hashes what an earlier try left in it.
fn open_temp(
    destination: &Destination,
    temp: &OsString,
    size: u64,
) -> Result<(std::fs::File, sha2::Sha256, u64), ReceiveError> {
    let fatal = |e: std::io::Error| {
        ReceiveError::Fatal(format!("cannot write beside {}: {e}", destination.shown))
    };
    if let Some(protected) = &destination.protected {
        match destination.dir.symlink_metadata(&destination.name) {
            Ok(meta) => protected((meta.dev(), meta.ino())).map_err(ReceiveError::Fatal)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fatal(e)),
        }
    }
    // Not following a link: a temp name planted as a symlink must not redirect the write.
    let file = std::fs::File::from(
        rustix::fs::openat(
            &destination.dir,
            temp.as_os_str(),
            rustix::fs::OFlags::RDWR
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .map_err(|e| fatal(e.into()))?,
    );
    let mut existing = file.metadata().map_err(fatal)?.len();
    if existing > size {
        file.set_len(0).map_err(fatal)?;
        existing = 0;
    }
    // Only whole chunks count: a torn last write is pulled again.
    existing -= existing % CHUNK.min(size.max(1));
    file.set_len(existing).map_err(fatal)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut offset = 0;
    while offset < existing {
        let want = (existing - offset).min(buffer.len() as u64) as usize;
        file.read_exact_at(&mut buffer[..want], offset)
            .map_err(fatal)?;
        hasher.update(&buffer[..want]);
        offset += want as u64;
    }
    Ok((file, hasher, existing))
}

/// fsync, rename over the target, fsync the folder.
fn finish(
    destination: &Destination,
    temp: &OsString,
    file: &std::fs::File,
) -> Result<(), ReceiveError> {
    let fatal = |e: std::io::Error| {
        ReceiveError::Fatal(format!(
            "cannot finish {}: {e}; the partial file was removed",
            destination.shown
        ))
    };
    file.sync_all().map_err(fatal)?;
    if let Some(protected) = &destination.protected
        && let Ok(meta) = destination.dir.symlink_metadata(&destination.name)
    {
        protected((meta.dev(), meta.ino())).map_err(ReceiveError::Fatal)?;
    }
    destination
        .dir
        .rename(temp, &destination.dir, &destination.name)
        .map_err(fatal)?;
    // cap-std holds folders as path-only descriptors, which cannot be synced.
    destination
        .dir
        .open_with(".", OpenOptions::new().read(true))
        .and_then(|d| d.sync_all())
        .map_err(fatal)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ReceiveError> + Send + 'static,
) -> Result<T, ReceiveError> {
    crate::runtime::spawn_blocking(work)
        .await
        .map_err(|e| ReceiveError::Fatal(format!("writer panicked: {e}")))?
}
