//! Watch mode (GitOps): a node that reconciles from a local spec folder (`--spec DIR`, re-read
//! when its files change) or follows a git repository (`--spec-repo PATH|URL [--branch B]`,
//! fetched on an interval, on SIGHUP, and when a local repository's refs change; an https or
//! ssh URL is fetched by the system `git` with the node user's credentials). Every
//! valid new revision becomes a new generation applied as a local authority; an invalid one is
//! reported (status condition `SpecSource` + log) and the last good generation stays in force.
//! A node that also holds an operator key publishes what it applied to the room, like
//! `fleetctl apply`: a GitOps controller.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use remote_agents_spec::FleetModel;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::desired::state::Accepted;
use crate::node::Node;
use remote_agents_ops::bundle::SpecFile;
use remote_agents_ops::status::Condition;

/// How long file events settle before one pass runs (an editor's save is several events).
const DEBOUNCE: Duration = Duration::from_millis(300);
/// The condition a watching node reports about its source.
pub const CONDITION: &str = "SpecSource";

/// Where desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    /// A folder of spec files on this machine.
    Folder(PathBuf),
    /// A git repository (local path or URL) and the branch to follow (`None`: its HEAD).
    Repo { url: String, branch: Option<String> },
}

impl SpecSource {
    /// The source a node's settings name, if any (`--spec` wins over `--spec-repo`).
    pub fn from_settings(settings: &Settings) -> Option<SpecSource> {
        if let Some(path) = &settings.spec.value {
            return Some(SpecSource::Folder(path.clone()));
        }
        settings
            .spec_repo
            .value
            .as_ref()
            .map(|url| SpecSource::Repo {
                url: url.clone(),
                branch: settings.spec_branch.value.clone(),
            })
    }

    /// The folder to watch for changes: the spec folder, or a local repository's git dir.
    fn watched_path(&self) -> Option<PathBuf> {
        match self {
            SpecSource::Folder(path) => Some(path.clone()),
            SpecSource::Repo { url, .. } => {
                let path = Path::new(url);
                if !path.exists() {
                    return None;
                }
                let git_dir = path.join(".git");
                Some(if git_dir.is_dir() {
                    git_dir
                } else {
                    path.to_path_buf()
                })
            }
        }
    }
}

/// The content of a source at one revision, validated.
#[derive(Debug, Clone)]
pub struct SourceContent {
    pub files: Vec<SpecFile>,
    pub model: FleetModel,
    /// The git commit, or `sha256:` of the content for a folder outside git.
    pub revision: String,
}

/// Why a source gave no content to apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the spec source: {0}")]
    Unavailable(String),
    #[error("revision {revision} is invalid:\n{diagnostics}")]
    Invalid {
        revision: String,
        diagnostics: String,
    },
}

impl SourceError {
    fn reason(&self) -> &'static str {
        match self {
            SourceError::Unavailable(_) => "SourceUnavailable",
            SourceError::Invalid { .. } => "InvalidRevision",
        }
    }
}

/// Loads and validates spec files; errors carry every error diagnostic.
pub fn validate(files: Vec<SpecFile>, revision: String) -> Result<SourceContent, SourceError> {
    if files.is_empty() {
        return Err(SourceError::Invalid {
            revision,
            diagnostics: "no .yaml, .yml or .kdl files".into(),
        });
    }
    let (model, _warnings) =
        remote_agents_ops::bundle::load_spec(&files).map_err(|diagnostics| {
            SourceError::Invalid {
                revision: revision.clone(),
                diagnostics,
            }
        })?;
    Ok(SourceContent {
        files,
        model,
        revision,
    })
}

/// The spec files of a folder, with paths relative to it.
pub fn read_folder_files(path: &Path) -> Result<Vec<SpecFile>, SourceError> {
    let files = crate::sources::read_paths(&[path.to_path_buf()])
        .map_err(|e| SourceError::Unavailable(format!("{e:#}")))?;
    Ok(files
        .into_iter()
        .map(|(display, text)| SpecFile {
            path: Path::new(&display)
                .strip_prefix(path)
                .map(|p| p.display().to_string())
                .unwrap_or(display),
            text,
        })
        .collect())
}

/// A folder's current content.
pub fn read_folder(path: &Path) -> Result<SourceContent, SourceError> {
    let files = read_folder_files(path)?;
    let revision = crate::sync::publish::revision_of(path, &files);
    validate(files, revision)
}

/// The spec files of `commit`'s tree in `repo`.
pub fn files_at_commit(
    repo: &git2::Repository,
    commit: &git2::Commit,
) -> Result<Vec<SpecFile>, SourceError> {
    let tree = commit
        .tree()
        .map_err(|e| SourceError::Unavailable(e.message().to_string()))?;
    let mut files = Vec::new();
    crate::sources::collect_tree(repo, &tree, Path::new(""), &mut files, &|p| {
        p.display().to_string()
    })
    .map_err(|e| SourceError::Unavailable(format!("{e:#}")))?;
    files.sort();
    Ok(files
        .into_iter()
        .map(|(path, text)| SpecFile { path, text })
        .collect())
}

/// A local mirror of a followed repository, kept in the node's data dir.
pub struct Mirror {
    url: String,
    branch: Option<String>,
    repo: git2::Repository,
}

impl Mirror {
    /// Opens (or creates) the bare mirror of `url` under `data_dir`.
    pub fn open(data_dir: &Path, url: &str, branch: Option<String>) -> Result<Self, SourceError> {
        let unavailable = |e: git2::Error| SourceError::Unavailable(e.message().to_string());
        let path = data_dir.join("spec-repo.git");
        let repo = match git2::Repository::open_bare(&path) {
            Ok(repo) => repo,
            Err(_) => git2::Repository::init_bare(&path).map_err(unavailable)?,
        };
        // A URL of a local folder is taken as a path, so relative paths keep working.
        let url = match std::fs::canonicalize(url) {
            Ok(absolute) => absolute.display().to_string(),
            Err(_) => url.to_string(),
        };
        Ok(Mirror { url, branch, repo })
    }

    /// Fetches the followed branch and returns its content at the fetched commit.
    pub fn fetch(&self) -> Result<SourceContent, SourceError> {
        let (reference, branch) = if crate::git::transport::is_network(&self.url) {
            self.fetch_over_network()?
        } else {
            self.fetch_local()?
        };
        let commit = self
            .repo
            .find_reference(&reference)
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| {
                SourceError::Unavailable(format!(
                    "{} has no branch `{branch}`",
                    crate::git::transport::redact(&self.url)
                ))
            })?;
        let files = files_at_commit(&self.repo, &commit)?;
        validate(files, commit.id().to_string())
    }

    /// A local path or `file://` URL, fetched with libgit2; returns the reference to read and
    /// the branch's name.
    fn fetch_local(&self) -> Result<(String, String), SourceError> {
        let unavailable = |e: git2::Error| {
            SourceError::Unavailable(format!("fetching {}: {}", self.url, e.message()))
        };
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(unavailable)?;
        remote
            .fetch(&["+refs/heads/*:refs/remotes/origin/*"], None, None)
            .map_err(unavailable)?;
        let branch = match &self.branch {
            Some(branch) => branch.clone(),
            None => remote
                .default_branch()
                .ok()
                .and_then(|b| b.as_str().ok().map(str::to_string))
                .map(|b| b.trim_start_matches("refs/heads/").to_string())
                .unwrap_or_else(|| "main".into()),
        };
        Ok((format!("refs/remotes/origin/{branch}"), branch))
    }

    /// An https, ssh or git URL, fetched by the system `git` with the node user's credentials
    /// (see `git::transport`). Without a branch the remote's HEAD is fetched to a ref of its
    /// own, as `git clone` would follow it.
    fn fetch_over_network(&self) -> Result<(String, String), SourceError> {
        let mut refspecs = vec!["+refs/heads/*:refs/remotes/origin/*".to_string()];
        let (reference, branch) = match &self.branch {
            Some(branch) => (format!("refs/remotes/origin/{branch}"), branch.clone()),
            None => {
                refspecs.push("+HEAD:refs/remote-agents/followed-head".into());
                (
                    "refs/remote-agents/followed-head".to_string(),
                    "HEAD".to_string(),
                )
            }
        };
        crate::git::transport::fetch(self.repo.path(), &self.url, &refspecs)
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        Ok((reference, branch))
    }
}

/// What wakes the watcher.
enum Event {
    /// Files changed (debounced).
    Changed,
    /// The fetch interval elapsed.
    Tick,
    /// SIGHUP: fetch now.
    Hangup,
    Shutdown,
}

/// Starts watching the node's spec source, if it has one; runs until `shutdown`.
pub fn start(node: &Arc<Node>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(source) = SpecSource::from_settings(node.settings()) else {
        return Ok(());
    };
    let interval = node.settings().spec_interval;
    let (changes, receiver) = mpsc::channel::<()>(1);
    // The debouncer runs on its own thread; dropping it stops the watch.
    let debouncer = match source.watched_path() {
        Some(path) => {
            let mut debouncer = notify_debouncer_full::new_debouncer(
                DEBOUNCE,
                None,
                move |result: notify_debouncer_full::DebounceEventResult| {
                    if result.is_ok_and(|events| !events.is_empty()) {
                        // A full channel already holds a wake-up: one pass reads everything.
                        let _ = changes.try_send(());
                    }
                },
            )?;
            debouncer.watch(&path, notify::RecursiveMode::Recursive)?;
            Some(debouncer)
        }
        None => None,
    };
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tracing::info!(?source, "watching the spec source");
    let node = node.clone();
    crate::runtime::spawn(async move {
        let _debouncer = debouncer;
        watch_loop(node, source, interval, receiver, hangup, shutdown).await;
    });
    Ok(())
}

async fn watch_loop(
    node: Arc<Node>,
    source: SpecSource,
    interval: Duration,
    mut changes: mpsc::Receiver<()>,
    mut hangup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watcher = Watcher::new(node, source);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => Event::Shutdown,
            Some(()) = changes.recv() => Event::Changed,
            _ = ticks.tick() => Event::Tick,
            Some(()) = hangup.recv() => Event::Hangup,
        };
        match event {
            Event::Shutdown => return,
            Event::Changed | Event::Tick | Event::Hangup => watcher.pass().await,
        }
    }
}

/// One watched source and what the watcher last reported about it.
struct Watcher {
    node: Arc<Node>,
    source: SpecSource,
    mirror: Option<Mirror>,
    /// The last problem logged, so a broken revision is logged once, not every interval.
    last_problem: Option<SourceError>,
}

impl Watcher {
    fn new(node: Arc<Node>, source: SpecSource) -> Self {
        Watcher {
            node,
            source,
            mirror: None,
            last_problem: None,
        }
    }

    /// Reads the source (fetching a repository) off the async threads.
    async fn read(&mut self) -> Result<SourceContent, SourceError> {
        match &self.source {
            SpecSource::Folder(path) => {
                let path = path.clone();
                crate::runtime::spawn_blocking(move || read_folder(&path))
                    .await
                    .map_err(|e| SourceError::Unavailable(e.to_string()))?
            }
            SpecSource::Repo { url, branch } => {
                let mirror = match self.mirror.take() {
                    Some(mirror) => mirror,
                    None => {
                        Mirror::open(&self.node.settings().data_dir.value, url, branch.clone())?
                    }
                };
                // git2's Repository is Send but not Sync: the blocking task owns the mirror
                // for the fetch and hands it back.
                let (mirror, fetched) = crate::runtime::spawn_blocking(move || {
                    let fetched = mirror.fetch();
                    (mirror, fetched)
                })
                .await
                .map_err(|e| SourceError::Unavailable(e.to_string()))?;
                self.mirror = Some(mirror);
                fetched
            }
        }
    }

    /// One level-based pass: read the source, apply it when it differs from the applied
    /// generation, report the outcome.
    async fn pass(&mut self) {
        let content = match self.read().await {
            Ok(content) => content,
            Err(problem) => {
                let generation = self.node.desired().generation();
                if self.last_problem.as_ref() != Some(&problem) {
                    tracing::warn!(
                        %problem,
                        generation,
                        "spec source not applied; the previous generation stays in force"
                    );
                }
                self.node.set_source_condition(Some(Condition {
                    kind: CONDITION.into(),
                    status: false,
                    reason: problem.reason().into(),
                    message: format!("{problem}\n(generation {generation} stays in force)"),
                }));
                self.last_problem = Some(problem);
                return;
            }
        };
        self.last_problem = None;
        let revision = content.revision.clone();
        match self
            .node
            .apply_local(content.files, revision.clone(), "watch")
        {
            Ok((bundle, accepted)) => {
                self.node.set_source_condition(Some(Condition {
                    kind: CONDITION.into(),
                    status: true,
                    reason: "Applied".into(),
                    message: format!(
                        "revision {revision} is generation {}",
                        bundle.content.generation
                    ),
                }));
                if accepted == Accepted::New {
                    publish_if_controller(&self.node, &bundle.signed, &content.model).await;
                }
            }
            Err(refusal) => {
                tracing::warn!(%refusal, revision, "spec source not applied");
                self.node.set_source_condition(Some(Condition {
                    kind: CONDITION.into(),
                    status: false,
                    reason: "NotApplied".into(),
                    message: refusal.to_string(),
                }));
            }
        }
    }
}

/// How long a publishing controller waits to authenticate the peers in the room.
const MEET_TIMEOUT: Duration = Duration::from_secs(5);

/// A node with an operator key and a relay passes what it applied on to the room.
async fn publish_if_controller(
    node: &Arc<Node>,
    signed: &remote_agents_ops::bundle::SignedBundle,
    model: &FleetModel,
) {
    if node.operator_key().is_none() {
        return;
    }
    let (Some(net), Some(psk)) = (node.net(), node.psk()) else {
        return;
    };
    let generation = signed.verify().map_or(0, |b| b.content.generation);
    // A headless node handshakes lazily, so it may not know yet who else is in the room: meet
    // them first, or the offer would reach only the peers it happened to have talked to (the
    // rest would wait for their next reconnect to read the relay's copy).
    match net.meet_present(MEET_TIMEOUT).await {
        Ok(0) => {}
        Ok(missing) => tracing::debug!(missing, "peers not authenticated before publishing"),
        Err(error) => tracing::debug!(%error, "cannot meet the room before publishing"),
    }
    let connection =
        crate::fleet::connection::Connection::of_node(net, node.agent_id().to_string(), psk);
    let expected = crate::sync::publish::expected_hosts(model);
    match crate::sync::publish::publish_signed(
        &connection,
        signed,
        generation,
        &expected,
        false,
        None,
    )
    .await
    {
        Ok(results) => {
            let applied = results
                .iter()
                .filter(|r| r.generation >= generation)
                .count();
            tracing::info!(
                generation,
                applied,
                hosts = results.len(),
                "published the watched spec to the room"
            );
        }
        Err(error) => tracing::warn!(%error, generation, "cannot publish the watched spec"),
    }
}
