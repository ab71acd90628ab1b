//! The engine's promises: a verified file or a clear error with nothing left at the destination;
//! a resume from the verified offset; a failing path handing over to the next mid-file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use remote_agents_ops::{
    Caller, Envelope, Outcome, Request, SendFileArgs, TransferPath, TransferState, TransferStatus,
};
use tokio_util::sync::CancellationToken;

use super::path::{Answer, PullWhat};
use super::*;
use crate::config::{NodeFlags, Settings};
use crate::node::{CallContext, Node};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Files whose name marks them as a write's or transfer's temp file.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".ra-tmp-"))
        .collect()
}

/// A node in `mode` whose only root is `<dir>/root`.
fn node_in(dir: &Path, mode: &str) -> (Arc<Node>, PathBuf) {
    let base = std::fs::canonicalize(dir).unwrap();
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let config = base.join("node.toml");
    std::fs::write(
        &config,
        format!("[policy]\nroots = [\"{}\"]\n", root.display()),
    )
    .unwrap();
    let flags = NodeFlags {
        name: Some("transfer".into()),
        data_dir: Some(base.join("data")),
        config: Some(config),
        mode: Some(mode.into()),
        ..NodeFlags::default()
    };
    let settings = Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap();
    (Node::open(settings).unwrap(), root)
}

async fn send(node: &Arc<Node>, from: &Path, to: &Path) -> TransferStatus {
    send_reporting(node, from, to, CallContext::default()).await
}

async fn send_reporting(
    node: &Arc<Node>,
    from: &Path,
    to: &Path,
    ctx: CallContext,
) -> TransferStatus {
    let envelope = Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        caller: Caller::McpLocal,
        request: Request::SendFile(SendFileArgs {
            agent_id: None,
            from_agent_id: None,
            from_path: from.display().to_string(),
            to_agent_id: None,
            to_path: to.display().to_string(),
            wait: true,
        }),
        on_behalf_of_model: false,
        window_override: None,
    };
    match node.handle(envelope, ctx).await {
        Outcome::Ok { result } => serde_json::from_value(result).unwrap(),
        other => panic!("send_file: {other:?}"),
    }
}

#[tokio::test]
async fn a_file_lands_verified_renamed_and_with_no_temp_left() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root) = node_in(dir.path(), "edit");
    let content = random_bytes(3 * CHUNK as usize + 12_345);
    std::fs::write(root.join("src.bin"), &content).unwrap();
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ctx = CallContext {
        cancel: CancellationToken::new(),
        progress: Some({
            let reports = reports.clone();
            Arc::new(move |progress, total, message| {
                reports.lock().unwrap().push((progress, total, message))
            })
        }),
    };
    let status = send_reporting(&node, &root.join("src.bin"), &root.join("dst.bin"), ctx).await;
    assert_eq!(status.state, TransferState::Done, "{status:?}");
    // The waiting caller (an MCP client's progress notifications) saw the bytes move.
    let reports = reports.lock().unwrap().clone();
    let size = content.len() as f64;
    assert_eq!(
        reports.last(),
        Some(&(size, Some(size), "via local".to_string())),
        "{reports:?}"
    );
    assert!(reports.len() >= 2, "{reports:?}");
    assert_eq!(std::fs::read(root.join("dst.bin")).unwrap(), content);
    assert_eq!(
        status.sha256.as_deref(),
        Some(sha256_file(&root.join("src.bin")).unwrap().as_str())
    );
    assert_eq!(status.bytes_done, content.len() as u64);
    assert_eq!(status.size, Some(content.len() as u64));
    assert_eq!(status.path, Some(TransferPath::Local));
    assert!(temps(&root).is_empty(), "{:?}", temps(&root));
    // The destination told the source it was done: the file is closed.
    assert_eq!(node.transfers().open_sources(), 0);
    // transfer_get and transfer_list read the same record.
    assert_eq!(
        node.transfers().record(&status.transfer_id).unwrap(),
        status
    );
    assert_eq!(node.transfers().records().len(), 1);
}

#[tokio::test]
async fn bad_input_ends_with_a_clear_error_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root) = node_in(dir.path(), "edit");
    std::fs::write(root.join("src.bin"), random_bytes(1000)).unwrap();
    let outside = tempfile::tempdir().unwrap();

    let missing = send(&node, &root.join("nope.bin"), &root.join("dst.bin")).await;
    assert_eq!(missing.state, TransferState::Failed);
    let error = missing.error.unwrap();
    assert!(error.contains("nope.bin"), "{error}");

    let refused = send(
        &node,
        &root.join("src.bin"),
        &outside.path().join("dst.bin"),
    )
    .await;
    assert_eq!(refused.state, TransferState::Failed);
    let error = refused.error.unwrap();
    assert!(
        error.contains("refused") && error.contains("dst.bin"),
        "{error}"
    );
    assert!(!outside.path().join("dst.bin").exists());

    std::fs::write(outside.path().join("secret"), b"x").unwrap();
    let unreadable = send(&node, &outside.path().join("secret"), &root.join("dst.bin")).await;
    assert_eq!(unreadable.state, TransferState::Failed);
    assert!(unreadable.error.unwrap().contains("refused"));

    assert!(!root.join("dst.bin").exists());
    assert!(temps(&root).is_empty());
}

#[tokio::test]
async fn a_destination_in_plan_mode_is_refused_and_keeps_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root) = node_in(dir.path(), "plan");
    std::fs::write(root.join("src.bin"), random_bytes(1000)).unwrap();
    let status = send(&node, &root.join("src.bin"), &root.join("dst.bin")).await;
    assert_eq!(status.state, TransferState::Failed);
    let error = status.error.unwrap();
    assert!(
        error.contains("refused") && error.contains("plan"),
        "{error}"
    );
    assert!(!root.join("dst.bin").exists());
    assert!(temps(&root).is_empty());
}

/// `transfer_cancel` stops a running transfer at both ends: the record reads `cancelled`, the
/// destination keeps no partial file, and the source's ticket is closed. The source is a sparse
/// 4 GiB file, so the transfer is still running when the cancel arrives.
#[tokio::test]
async fn transfer_cancel_stops_both_ends_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root) = node_in(dir.path(), "edit");
    let source = std::fs::File::create(root.join("big.bin")).unwrap();
    source.set_len(4 << 30).unwrap();
    let call = |request: Request| {
        let node = node.clone();
        async move {
            let envelope = Envelope {
                id: uuid::Uuid::new_v4().to_string(),
                caller: Caller::McpLocal,
                request,
                on_behalf_of_model: false,
                window_override: None,
            };
            match node.handle(envelope, CallContext::default()).await {
                Outcome::Ok { result } => serde_json::from_value::<TransferStatus>(result).unwrap(),
                other => panic!("{other:?}"),
            }
        }
    };
    let started = call(Request::SendFile(SendFileArgs {
        agent_id: None,
        from_agent_id: None,
        from_path: root.join("big.bin").display().to_string(),
        to_agent_id: None,
        to_path: root.join("copy.bin").display().to_string(),
        wait: false,
    }))
    .await;
    assert_eq!(started.state, TransferState::Running);
    let cancelled = call(Request::TransferCancel(
        remote_agents_ops::TransferCancelArgs {
            agent_id: None,
            transfer_id: started.transfer_id.clone(),
        },
    ))
    .await;
    assert_eq!(cancelled.state, TransferState::Cancelled, "{cancelled:?}");
    assert!(cancelled.bytes_done < 4 << 30);
    assert!(!root.join("copy.bin").exists());
    assert!(temps(&root).is_empty());
    assert_eq!(node.transfers().open_sources(), 0);
    // A finished transfer cannot be cancelled again.
    let envelope = Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        caller: Caller::McpLocal,
        request: Request::TransferCancel(remote_agents_ops::TransferCancelArgs {
            agent_id: None,
            transfer_id: started.transfer_id,
        }),
        on_behalf_of_model: false,
        window_override: None,
    };
    let Outcome::Failed { error } = node.handle(envelope, CallContext::default()).await else {
        panic!("a second cancel succeeded")
    };
    assert!(error.contains("already ended"), "{error}");
}

/// A path that passes pulls on to `inner` and does something after `after` chunks.
struct Hooked {
    inner: Arc<dyn BytePath>,
    kind: TransferPath,
    chunks: AtomicUsize,
    after: usize,
    action: Action,
}

enum Action {
    /// Every chunk pull after `after` fails as a lost connection.
    Lose,
    /// Runs once, before chunk number `after` is pulled.
    Once(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>),
    /// Runs once, before the digest is pulled (every chunk was read by then).
    BeforeDigest(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>),
    /// Flips a bit of chunk number `after` on its way (what the path's own integrity would
    /// have to miss).
    Corrupt,
}

impl BytePath for Hooked {
    fn kind(&self) -> TransferPath {
        self.kind
    }

    fn pull(&self, pull: Pull) -> BoxFuture<'static, Result<Answer, PathError>> {
        if let (PullWhat::Digest, Action::BeforeDigest(action)) = (&pull.what, &self.action)
            && let Some(action) = action.lock().unwrap().take()
        {
            action();
        }
        if matches!(pull.what, PullWhat::Chunk { .. }) {
            let n = self.chunks.fetch_add(1, Ordering::SeqCst);
            if n >= self.after {
                match &self.action {
                    Action::Lose => {
                        return Box::pin(async {
                            Err(PathError::Unreachable("connection lost".into()))
                        });
                    }
                    Action::Once(action) => {
                        if let Some(action) = action.lock().unwrap().take() {
                            action();
                        }
                    }
                    Action::Corrupt if n == self.after => {
                        let pulled = self.inner.pull(pull);
                        return Box::pin(async move {
                            let mut bytes = pulled.await?.concat();
                            bytes[0] ^= 1;
                            Ok(Answer::from(bytes))
                        });
                    }
                    Action::BeforeDigest(_) | Action::Corrupt => {}
                }
            }
        }
        self.inner.pull(pull)
    }
}

fn hooked(
    inner: Arc<dyn BytePath>,
    kind: TransferPath,
    after: usize,
    action: Action,
) -> Arc<Hooked> {
    Arc::new(Hooked {
        inner,
        kind,
        chunks: AtomicUsize::new(0),
        after,
        action,
    })
}

/// A source file in `dir` served by a fresh registry, and the plan a destination gets for it.
fn serve(dir: &Path, content: &[u8]) -> (Arc<Transfers>, Arc<dyn BytePath>, ReceivePlan) {
    let path = dir.join("src.bin");
    std::fs::write(&path, content).unwrap();
    let transfers = Transfers::new();
    let source = Source::open_local(&path, "me").unwrap();
    let (size, modified_ms) = (source.size(), source.modified_ms());
    let ticket = transfers.add_source(source).unwrap();
    let plan = ReceivePlan {
        from_agent_id: "me".into(),
        from_path: path.display().to_string(),
        ticket,
        size,
        modified_ms,
        origin: None,
        forward: None,
    };
    let local = path::local(transfers.clone(), "me");
    (transfers, local, plan)
}

fn no_progress() -> receive::Progress {
    Arc::new(|_, _| {})
}

async fn receive_to(
    dst: &Path,
    plan: &ReceivePlan,
    paths: Vec<Arc<dyn BytePath>>,
    cancel: CancellationToken,
) -> Result<receive::Received, ReceiveError> {
    receive(
        Destination::local(dst).unwrap(),
        plan.clone(),
        paths,
        no_progress(),
        cancel,
    )
    .await
}

#[tokio::test]
async fn a_source_changed_or_vanished_mid_transfer_ends_with_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(4 * CHUNK as usize);
    for vanish in [false, true] {
        let (_transfers, local, plan) = serve(dir.path(), &content);
        let src = PathBuf::from(&plan.from_path);
        let change: Box<dyn FnOnce() + Send> = if vanish {
            Box::new(move || std::fs::remove_file(&src).unwrap())
        } else {
            Box::new(move || {
                let mut changed = std::fs::read(&src).unwrap();
                changed.push(1);
                std::fs::write(&src, changed).unwrap();
            })
        };
        let path = hooked(
            local,
            TransferPath::Relay,
            1,
            Action::Once(std::sync::Mutex::new(Some(change))),
        );
        let dst = dir.path().join("dst.bin");
        let error = receive_to(&dst, &plan, vec![path], CancellationToken::new())
            .await
            .unwrap_err();
        let expected = if vanish { "vanished" } else { "changed" };
        assert!(
            matches!(&error, ReceiveError::Fatal(text) if text.contains(expected) && text.contains("src.bin")),
            "{error:?}"
        );
        assert!(!dst.exists());
        assert!(temps(dir.path()).is_empty(), "{:?}", temps(dir.path()));
    }
}

/// Content rewritten in place with the same size and modification time set back is still a
/// change: the inode's change time moved, which no one can set back.
#[tokio::test]
async fn a_source_rewritten_behind_its_size_and_mtime_reads_as_changed() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(2 * CHUNK as usize);
    let (_transfers, local, plan) = serve(dir.path(), &content);
    let src = PathBuf::from(&plan.from_path);
    let rewrite: Box<dyn FnOnce() + Send> = Box::new(move || {
        use std::os::unix::fs::FileExt;
        let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        file.write_all_at(b"tampered", 0).unwrap();
        file.set_modified(mtime).unwrap();
    });
    let path = hooked(
        local,
        TransferPath::Relay,
        0,
        Action::BeforeDigest(std::sync::Mutex::new(Some(rewrite))),
    );
    let dst = dir.path().join("dst.bin");
    let error = receive_to(&dst, &plan, vec![path], CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ReceiveError::Fatal(text) if text.contains("changed during the transfer")),
        "{error:?}"
    );
    assert!(!dst.exists());
    assert!(temps(dir.path()).is_empty());
}

/// A chunk that arrives different from what the source read fails the end-to-end check: the
/// destination's SHA-256 differs from the source's, and nothing is left at the target.
#[tokio::test]
async fn bytes_changed_on_the_way_fail_the_sha256_check() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(3 * CHUNK as usize);
    let (_transfers, local, plan) = serve(dir.path(), &content);
    let path = hooked(local, TransferPath::Relay, 1, Action::Corrupt);
    let dst = dir.path().join("dst.bin");
    let error = receive_to(&dst, &plan, vec![path], CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ReceiveError::Fatal(text) if text.contains("SHA-256 mismatch")),
        "{error:?}"
    );
    assert!(!dst.exists());
    assert!(temps(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_transfer_resumes_from_what_was_verified() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(5 * CHUNK as usize + 77);
    let (_transfers, local, plan) = serve(dir.path(), &content);
    let dst = dir.path().join("dst.bin");
    // The only path dies after three chunks: the verified part stays for a resume.
    let dying = hooked(local.clone(), TransferPath::Relay, 3, Action::Lose);
    let error = receive_to(&dst, &plan, vec![dying], CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ReceiveError::Interrupted(text) if text.contains("resumes")),
        "{error:?}"
    );
    assert!(!dst.exists());
    assert_eq!(temps(dir.path()).len(), 1);

    let counting = hooked(local, TransferPath::Relay, usize::MAX, Action::Lose);
    let received = receive_to(
        &dst,
        &plan,
        vec![counting.clone()],
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(received.resumed_from, 3 * CHUNK);
    assert_eq!(counting.chunks.load(Ordering::SeqCst), 3);
    assert_eq!(std::fs::read(&dst).unwrap(), content);
    assert!(temps(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_path_that_dies_mid_transfer_hands_over_without_restarting_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(6 * CHUNK as usize);
    let (_transfers, local, plan) = serve(dir.path(), &content);
    let direct = hooked(local.clone(), TransferPath::Direct, 2, Action::Lose);
    let relay = hooked(local, TransferPath::Relay, usize::MAX, Action::Lose);
    let dst = dir.path().join("dst.bin");
    let received = receive_to(
        &dst,
        &plan,
        vec![direct, relay.clone()],
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(received.path, TransferPath::Relay);
    assert_eq!(relay.chunks.load(Ordering::SeqCst), 4);
    assert_eq!(std::fs::read(&dst).unwrap(), content);
}

#[tokio::test]
async fn cancellation_stops_the_receive_and_removes_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(4 * CHUNK as usize);
    let (transfers, local, plan) = serve(dir.path(), &content);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let path = hooked(
        local,
        TransferPath::Relay,
        1,
        Action::Once(std::sync::Mutex::new(Some(Box::new(move || {
            trigger.cancel()
        })))),
    );
    let dst = dir.path().join("dst.bin");
    let error = receive_to(&dst, &plan, vec![path], cancel)
        .await
        .unwrap_err();
    assert_eq!(error, ReceiveError::Cancelled);
    assert!(!dst.exists());
    assert!(temps(dir.path()).is_empty());
    // The source end stopped too: the destination closed its ticket.
    assert_eq!(transfers.open_sources(), 0);
}

/// A ticket serves only the destination the caller named: another peer that learned it (or
/// guesses one) reads nothing, and learns no more than from an unknown ticket.
#[tokio::test]
async fn a_ticket_serves_only_the_destination_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (transfers, _local, plan) = serve(dir.path(), b"secret");
    let chunk = Pull {
        ticket: plan.ticket.clone(),
        what: PullWhat::Chunk {
            offset: 0,
            length: 6,
        },
    };
    let stranger = path::answer(&transfers, "stranger", chunk.clone())
        .await
        .unwrap_err();
    let unknown = Pull {
        ticket: "0".repeat(64),
        ..chunk.clone()
    };
    assert_eq!(
        path::answer(&transfers, "me", unknown).await.unwrap_err(),
        stranger
    );
    // Nor can another peer close it.
    let close = Pull {
        ticket: plan.ticket.clone(),
        what: PullWhat::Close,
    };
    path::answer(&transfers, "stranger", close).await.unwrap();
    assert_eq!(
        path::answer(&transfers, "me", chunk).await.unwrap(),
        &b"secret"[..]
    );
}

/// A 1 MiB tmpfs mounted for the test and unmounted when it ends.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CAP_SYS_ADMIN): {status}"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_ends_with_a_clear_error_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(3 * CHUNK as usize);
    let (_transfers, local, plan) = serve(dir.path(), &content);
    let disk = SmallDisk::mount();
    let dst = disk.dir.path().join("dst.bin");
    let error = receive_to(&dst, &plan, vec![local], CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ReceiveError::Fatal(text) if text.contains("dst.bin") && text.contains("No space left")),
        "{error:?}"
    );
    assert!(!dst.exists());
    assert!(temps(disk.dir.path()).is_empty());
}

/// Host A receives the file and, while it does, serves it to host B (a swarm's forwarding): B
/// starts before A has a byte, waits for what A verifies, and ends with the same verified file.
#[tokio::test]
async fn a_forwarding_destination_serves_what_it_verified_while_it_receives() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(6 * CHUNK as usize + 123);
    let (transfers, local, plan) = serve(dir.path(), &content);
    let (a_plan, b_plan, b_path) = forwarding_chain(&transfers, &plan);
    let b_file = dir.path().join("b.bin");
    let b = {
        let b_file = b_file.clone();
        crate::runtime::spawn(async move {
            receive_to(&b_file, &b_plan, vec![b_path], CancellationToken::new()).await
        })
    };
    let a_file = dir.path().join("a.bin");
    let a = receive_to(&a_file, &a_plan, vec![local], CancellationToken::new())
        .await
        .unwrap();
    let b = b.await.unwrap().unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(b.bytes, content.len() as u64);
    assert!(std::fs::read(&a_file).unwrap() == content);
    assert!(std::fs::read(&b_file).unwrap() == content);
    assert!(temps(dir.path()).is_empty());
}

/// When the forwarding host's own receive fails (its source changed), the host it serves fails
/// too, as a source failure with the reason, and keeps no partial file.
#[tokio::test]
async fn a_failed_forwarding_host_fails_the_next_host_with_nothing_left() {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(6 * CHUNK as usize);
    let (transfers, local, plan) = serve(dir.path(), &content);
    let (a_plan, b_plan, b_path) = forwarding_chain(&transfers, &plan);
    let src = PathBuf::from(&plan.from_path);
    let change: Box<dyn FnOnce() + Send> = Box::new(move || {
        let mut changed = std::fs::read(&src).unwrap();
        changed.push(1);
        std::fs::write(&src, changed).unwrap();
    });
    let a_path = hooked(
        local,
        TransferPath::Local,
        2,
        Action::Once(std::sync::Mutex::new(Some(change))),
    );
    let sub = dir.path().join("b");
    std::fs::create_dir(&sub).unwrap();
    let b_file = sub.join("b.bin");
    let b = {
        let b_file = b_file.clone();
        crate::runtime::spawn(async move {
            receive_to(&b_file, &b_plan, vec![b_path], CancellationToken::new()).await
        })
    };
    let a = receive_to(
        &dir.path().join("a.bin"),
        &a_plan,
        vec![a_path],
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(a, Err(ReceiveError::Fatal(_))), "{a:?}");
    let Err(ReceiveError::Fatal(error)) = b.await.unwrap() else {
        panic!("the next host did not fail")
    };
    assert!(error.contains("forwarding host"), "{error}");
    assert!(!b_file.exists());
    assert!(temps(&sub).is_empty());
}

/// Plans for A (receiving `plan`, forwarding to `next`) and for B (`next`, pulling from A), and
/// B's path: the one registry stands for host A's sources.
fn forwarding_chain(
    transfers: &Arc<Transfers>,
    plan: &ReceivePlan,
) -> (ReceivePlan, ReceivePlan, Arc<dyn BytePath>) {
    let forwarding = forward::Forwarding::new();
    let ticket = Transfers::new_ticket();
    let source = Source::forwarded(
        forwarding.clone(),
        "a.bin".into(),
        plan.size,
        plan.modified_ms,
        "next",
    );
    transfers.add_source_with_ticket(&ticket, source).unwrap();
    let a_plan = ReceivePlan {
        forward: Some(forwarding),
        ..plan.clone()
    };
    let b_plan = ReceivePlan {
        from_agent_id: "a".into(),
        ticket,
        origin: Some(format!("me:{}", plan.from_path)),
        ..plan.clone()
    };
    (a_plan, b_plan, path::local(transfers.clone(), "next"))
}

#[tokio::test]
async fn records_survive_a_restart_and_a_cut_off_transfer_reads_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (node, root) = node_in(dir.path(), "edit");
    std::fs::write(root.join("src.bin"), random_bytes(CHUNK as usize + 7)).unwrap();
    let done = send(&node, &root.join("src.bin"), &root.join("dst.bin")).await;
    assert_eq!(done.state, TransferState::Done, "{done:?}");
    // A transfer the node's stop cuts off: its record was saved when it started.
    let cut_off = TransferStatus {
        transfer_id: "cut-off".into(),
        state: TransferState::Running,
        started_at_ms: done.started_at_ms + 1,
        finished_at_ms: None,
        sha256: None,
        error: None,
        bytes_done: 4096,
        ..done.clone()
    };
    node.transfers().put_record(cut_off);
    drop(node);

    let (node, _) = node_in(dir.path(), "edit");
    let records = node.transfers().records();
    assert_eq!(records.len(), 2, "{records:?}");
    // Newest first: the cut-off one, now interrupted with the reason, never re-run.
    assert_eq!(records[0].transfer_id, "cut-off");
    assert_eq!(records[0].state, TransferState::Interrupted);
    assert_eq!(records[0].error.as_deref(), Some(store::INTERRUPTED));
    assert!(records[0].finished_at_ms.is_some());
    // The rate comes back from the store's JSON to within a unit in the last place (serde_json
    // parses floats fast, not exactly); everything else exactly.
    let same_as_done = |kept: &TransferStatus| {
        assert!(
            (kept.rate_bytes_per_sec - done.rate_bytes_per_sec).abs()
                <= done.rate_bytes_per_sec.abs() * 1e-12,
            "{kept:?}"
        );
        assert_eq!(
            TransferStatus {
                rate_bytes_per_sec: done.rate_bytes_per_sec,
                ..kept.clone()
            },
            done
        );
    };
    same_as_done(&records[1]);
    // transfer_get reads the kept record the same way.
    same_as_done(&node.transfers().record(&done.transfer_id).unwrap());
    drop(node);
    // Read back a second time, the interrupted record is not touched again.
    let (node, _) = node_in(dir.path(), "edit");
    assert_eq!(node.transfers().records(), records);
}

#[test]
fn direct_writes_land_whole_blocks_and_leave_the_tail_to_the_caller() {
    use receive::{BLOCK, DirectWriter};
    // The checkout's file system, as a host's disk would be (a tmpfs may refuse O_DIRECT).
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let target = dir.path().join("file.bin");
    let destination = Destination::local(&target).unwrap();
    let temp = std::ffi::OsString::from(".file.bin.tmp");
    let temp_path = dir.path().join(&temp);
    std::fs::write(&temp_path, b"").unwrap();
    let mut writer = DirectWriter::open(&destination, &temp)
        .expect("the checkout's file system takes O_DIRECT writes");
    // A chunk's end that is not whole blocks, arriving in pieces of odd sizes.
    let content = random_bytes(2 * BLOCK + 100);
    let pieces: Vec<bytes::Bytes> = [&content[..1000], &content[1000..5000], &content[5000..]]
        .iter()
        .map(|piece| bytes::Bytes::copy_from_slice(piece))
        .collect();
    let written = writer.write(&pieces, BLOCK as u64).unwrap();
    assert_eq!(written, 2 * BLOCK);
    assert_eq!(writer.staged(), &content[..]);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&temp_path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &file,
        &writer.staged()[written..],
        (BLOCK + written) as u64,
    )
    .unwrap();
    let landed = std::fs::read(&temp_path).unwrap();
    assert_eq!(landed.len(), BLOCK + content.len());
    assert_eq!(&landed[BLOCK..], &content[..]);
    // An offset off the block grid writes nothing directly: all of it is the caller's.
    assert_eq!(writer.write(&pieces[..1], 10).unwrap(), 0);
    assert_eq!(writer.staged(), &content[..1000]);
}

/// The source's digest is the file's SHA-256 whatever order its chunks are pulled in: in order
/// (hashed as served), a window's chunks finishing out of order (stashed, then hashed), a pull
/// far ahead (the whole file hashed on its own), and chunks never pulled (a resumed transfer:
/// read and hashed at the digest). Chunk buffers go back to the pool and are reused, and a
/// reused buffer shorter than the last chunk is trimmed to it.
#[tokio::test]
async fn the_source_digest_is_the_file_hash_in_any_pull_order() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(5 * CHUNK as usize + 1234);
    let path = dir.path().join("src.bin");
    std::fs::write(&path, &content).unwrap();
    let expected = hex::encode(sha2::Sha256::digest(&content));
    let chunks = content.len().div_ceil(CHUNK as usize) as u64;
    let orders: [(&str, Vec<u64>); 5] = [
        ("in order", (0..chunks).collect()),
        ("a window out of order", vec![1, 0, 3, 2, 5, 4]),
        ("far ahead first", vec![5, 0, 1, 2, 3, 4]),
        ("resumed at chunk 2", vec![2, 3, 4, 5]),
        (
            "the first chunk again after a failed path",
            vec![0, 1, 0, 1, 2, 3, 4, 5],
        ),
    ];
    for (what, order) in orders {
        let source = Arc::new(Source::open_local(&path, "me").unwrap());
        for index in order {
            let offset = index * CHUNK;
            let chunk = source.clone().chunk(offset, CHUNK).await.unwrap();
            let end = (offset + CHUNK).min(content.len() as u64) as usize;
            assert_eq!(
                &chunk[..],
                &content[offset as usize..end],
                "{what}: chunk {index}"
            );
        }
        let digest = source.clone().digest().await.unwrap();
        assert_eq!(digest.sha256, expected, "{what}");
        assert_eq!(digest.size, content.len() as u64, "{what}");
    }
}
