//! Upload once, hosts fetch from each other (`fleet_send`, `fleetctl cp FILE -t SELECTOR:PATH`):
//! one file to many hosts, where the origin sends it to [`FANOUT`] hosts and every host serves
//! what it has verified to [`FANOUT`] more while it still receives (`transfer::forward`). The hosts
//! form a tree in natural name order (host `i`'s children are `FANOUT*(i+1)` ..), so the origin
//! sends the file about `FANOUT` times however many hosts there are, and the bytes flow down the
//! tree piece by piece rather than file by file: a host starts serving its first verified chunk,
//! not its finished file.
//!
//! Each receive is an ordinary `transfer_receive` on its host (gated there for writing against
//! the caller, verified end to end against the origin's SHA-256, fsynced and renamed) from its
//! parent, with the tickets of its children drawn here. A host starts once its parent reported
//! progress (its forwarding sources exist by then). When a parent fails, its children fail
//! with it (a source failure) and fall back to pulling from the origin itself, resuming what
//! they verified: a dead host costs the origin bytes, never a host its file.

use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use remote_agents_ops::{ServeTo, TransferReceiveArgs, TransferSourceArgs, TransferSourceResult};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::fanout::{FanoutReport, Target};
use super::fold::natural_cmp;
use super::{HostRecord, HostStatus};
use crate::transfer::coordinate::{HostProgress, Hosts};

/// Hears each host's verified bytes: its name, bytes.
pub type SwarmProgress = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// Hosts each host (and the origin) serves at most: the origin sends about this many copies.
pub const FANOUT: usize = 2;

/// One distribution to run.
#[derive(Debug, Clone)]
pub struct SwarmJob {
    /// The origin host (agent id or name; fleetctl's own agent id for a local file).
    pub from_host: String,
    pub from_path: String,
    /// The hosts to send to; those without an agent id are offline and reported `unreachable`.
    pub targets: Vec<Target>,
    pub to_path: String,
}

/// How a host's start went, for its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Pending,
    /// Its receive reported progress: its forwarding sources exist.
    Serving,
    /// It ended before it could serve (refused, failed, or fell back to the origin).
    NotServing,
}

/// The tree: each connected target's parent (`None` for the origin) and its children.
struct Tree {
    /// Indexes into the connected targets.
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
}

impl Tree {
    /// Host `i`'s parent is the origin for the first [`FANOUT`] hosts, else host
    /// `(i - FANOUT) / FANOUT`.
    fn of(count: usize) -> Tree {
        let parent: Vec<Option<usize>> = (0..count)
            .map(|i| (i >= FANOUT).then(|| (i - FANOUT) / FANOUT))
            .collect();
        let mut children = vec![Vec::new(); count];
        for (child, parent) in parent.iter().enumerate() {
            if let Some(parent) = parent {
                children[*parent].push(child);
            }
        }
        Tree { parent, children }
    }
}

/// Runs `job` and returns one record per target in natural host order; `progress` hears each
/// host's verified bytes (its name, bytes).
pub async fn run(
    hosts: &dyn Hosts,
    job: SwarmJob,
    progress: SwarmProgress,
    cancel: CancellationToken,
) -> FanoutReport {
    let mut records: Vec<HostRecord> = Vec::new();
    let mut connected: Vec<(String, String)> = Vec::new();
    for target in job.targets {
        match target.agent_id {
            Some(agent_id) => connected.push((target.host, agent_id)),
            None => records.push(
                HostRecord::new(target.host, HostStatus::Unreachable).with_error("not connected"),
            ),
        }
    }
    connected.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    if !connected.is_empty() {
        let started = tokio::time::Instant::now();
        let mut done = distribute(
            hosts,
            &job.from_host,
            &job.from_path,
            &job.to_path,
            &connected,
            progress,
            cancel,
        )
        .await;
        for record in &mut done {
            if record.duration_ms == 0 {
                record.duration_ms = started.elapsed().as_millis() as u64;
            }
        }
        records.extend(done);
    }
    records.sort_by(|a, b| natural_cmp(&a.host, &b.host));
    FanoutReport {
        records,
        halted: false,
    }
}

/// The receives of every connected host, down the tree.
async fn distribute(
    hosts: &dyn Hosts,
    from_host: &str,
    from_path: &str,
    to_path: &str,
    connected: &[(String, String)],
    progress: SwarmProgress,
    cancel: CancellationToken,
) -> Vec<HostRecord> {
    let all_failed = |error: String| {
        connected
            .iter()
            .map(|(host, agent_id)| {
                let mut record =
                    HostRecord::new(host.clone(), HostStatus::Failed).with_error(error.clone());
                record.agent_id = Some(agent_id.clone());
                record
            })
            .collect()
    };
    let origin = match hosts.resolve(from_host) {
        Ok(origin) => origin,
        Err(error) => return all_failed(format!("source {from_host}: {error}")),
    };
    // The origin opens the file once per host it serves; every open must see the same file.
    let tree = Tree::of(connected.len());
    let mut first: Option<TransferSourceResult> = None;
    let mut tickets: Vec<String> = vec![String::new(); connected.len()];
    for (index, parent) in tree.parent.iter().enumerate() {
        if parent.is_some() {
            tickets[index] = crate::transfer::Transfers::new_ticket();
            continue;
        }
        match open_origin(
            hosts,
            &origin,
            from_path,
            &connected[index].1,
            first.as_ref(),
        )
        .await
        {
            Ok(source) => {
                tickets[index] = source.ticket.clone();
                first.get_or_insert(source);
            }
            Err(error) => return all_failed(error),
        }
    }
    let Some(source) = first else {
        return all_failed("no host to send to".into());
    };
    let starts: Vec<watch::Sender<Start>> = connected
        .iter()
        .map(|_| watch::Sender::new(Start::Pending))
        .collect();
    let plan = Plan {
        hosts,
        origin: &origin,
        from_path,
        to_path,
        source: &source,
        connected,
        tree: &tree,
        tickets: &tickets,
        starts: &starts,
        progress,
        cancel,
    };
    let mut receives: FuturesUnordered<_> =
        (0..connected.len()).map(|index| plan.host(index)).collect();
    let mut records = Vec::with_capacity(connected.len());
    while let Some(record) = receives.next().await {
        records.push(record);
    }
    records
}

/// Asks the origin for a ticket for `to`, checking it is the same file as the first open.
async fn open_origin(
    hosts: &dyn Hosts,
    origin: &str,
    from_path: &str,
    to: &str,
    first: Option<&TransferSourceResult>,
) -> Result<TransferSourceResult, String> {
    let source = hosts
        .source(
            origin,
            TransferSourceArgs {
                agent_id: None,
                path: from_path.to_string(),
                to_agent_id: to.to_string(),
            },
        )
        .await
        .map_err(|e| format!("source {origin}:{from_path}: {e}"))?;
    if let Some(first) = first
        && (first.size != source.size || first.modified_ms != source.modified_ms)
    {
        return Err(format!(
            "source {origin}:{from_path} changed during the distribution (size {} -> {})",
            first.size, source.size
        ));
    }
    Ok(source)
}

/// What every host's receive shares.
struct Plan<'a> {
    hosts: &'a dyn Hosts,
    origin: &'a str,
    from_path: &'a str,
    to_path: &'a str,
    source: &'a TransferSourceResult,
    connected: &'a [(String, String)],
    tree: &'a Tree,
    tickets: &'a [String],
    starts: &'a [watch::Sender<Start>],
    progress: SwarmProgress,
    cancel: CancellationToken,
}

impl Plan<'_> {
    /// Host `index`'s receive from its parent, then from the origin if the parent let it down.
    async fn host(&self, index: usize) -> HostRecord {
        let (host, agent_id) = &self.connected[index];
        let started = tokio::time::Instant::now();
        let parent = self.tree.parent[index];
        let mut attempt = match parent {
            Some(parent) => {
                let mut start = self.starts[parent].subscribe();
                let serving = tokio::select! {
                    reached = start.wait_for(|s| *s != Start::Pending) => {
                        reached.map(|s| *s == Start::Serving).unwrap_or(false)
                    }
                    _ = self.cancel.cancelled() => false,
                };
                if serving {
                    self.receive(index, &self.connected[parent].1, &self.tickets[index], true)
                        .await
                } else {
                    Err(format!("{} could not serve it", self.connected[parent].0))
                }
            }
            None => {
                self.receive(index, self.origin, &self.tickets[index], true)
                    .await
            }
        };
        if let (Err(error), Some(parent)) = (&attempt, parent)
            && !self.cancel.is_cancelled()
        {
            // The parent failed it (or could not start): the origin sends it instead, and this
            // host serves no one (its children are falling back too).
            tracing::info!(host, parent = %self.connected[parent].0, %error,
                "swarm: falling back to the origin");
            self.starts[index].send_replace(Start::NotServing);
            attempt = match open_origin(
                self.hosts,
                self.origin,
                self.from_path,
                agent_id,
                Some(self.source),
            )
            .await
            {
                Ok(source) => self
                    .receive(index, self.origin, &source.ticket, false)
                    .await
                    .map_err(|e| {
                        format!(
                            "{e} (after its peer {} failed: {error})",
                            self.connected[parent].0
                        )
                    }),
                Err(e) => Err(e),
            };
        }
        // A host that served keeps serving once done (its sources outlive its receive); one
        // that never started tells its children to go to the origin.
        self.starts[index].send_if_modified(|start| {
            let pending = *start == Start::Pending;
            if pending {
                *start = Start::NotServing;
            }
            pending
        });
        let mut record = match attempt {
            Ok(output) => {
                let mut record = HostRecord::new(host.clone(), HostStatus::Ok);
                record.stdout = output;
                record.exit = Some(0);
                record
            }
            // The client's text for a gate's refusal (`refused: …`) is a denial.
            Err(error) if error.starts_with("refused:") => {
                HostRecord::new(host.clone(), HostStatus::Denied).with_error(error)
            }
            Err(error) => HostRecord::new(host.clone(), HostStatus::Failed).with_error(error),
        };
        record.agent_id = Some(agent_id.clone());
        record.duration_ms = started.elapsed().as_millis() as u64;
        record
    }

    /// One `transfer_receive` on host `index` from `from` with `ticket`; with `forward`, it
    /// serves its children as it receives.
    async fn receive(
        &self,
        index: usize,
        from: &str,
        ticket: &str,
        forward: bool,
    ) -> Result<String, String> {
        let (host, agent_id) = &self.connected[index];
        let serve_to = if forward {
            self.tree.children[index]
                .iter()
                .map(|child| ServeTo {
                    agent_id: self.connected[*child].1.clone(),
                    ticket: self.tickets[*child].clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let report: HostProgress = {
            let start = self.starts[index].clone();
            let progress = self.progress.clone();
            let host = host.clone();
            Arc::new(move |bytes, _path| {
                if forward {
                    start.send_if_modified(|start| {
                        let changed = *start == Start::Pending;
                        if changed {
                            *start = Start::Serving;
                        }
                        changed
                    });
                }
                progress(&host, bytes);
            })
        };
        let received = self
            .hosts
            .receive(
                agent_id,
                TransferReceiveArgs {
                    agent_id: None,
                    path: self.to_path.to_string(),
                    from_agent_id: from.to_string(),
                    from_path: self.source.path.clone(),
                    ticket: ticket.to_string(),
                    size: self.source.size,
                    modified_ms: self.source.modified_ms,
                    serve_to,
                    origin: Some(format!("{}:{}", self.origin, self.source.path)),
                },
                report,
                self.cancel.clone(),
            )
            .await?;
        Ok(format!(
            "{} bytes, sha256 {}\n",
            received.bytes, received.sha256
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_gives_every_host_one_parent_and_at_most_fanout_children() {
        for count in [1, 2, 3, 7, 50] {
            let tree = Tree::of(count);
            let from_origin = tree.parent.iter().filter(|p| p.is_none()).count();
            assert_eq!(from_origin, count.min(FANOUT));
            for (child, parent) in tree.parent.iter().enumerate() {
                if let Some(parent) = parent {
                    assert!(*parent < child, "a parent comes before its child");
                    assert!(tree.children[*parent].contains(&child));
                }
            }
            assert!(tree.children.iter().all(|c| c.len() <= FANOUT));
        }
        // 50 hosts: depth 5 below the origin's two.
        let tree = Tree::of(50);
        let depth = |mut i: usize| {
            let mut d = 1;
            while let Some(p) = tree.parent[i] {
                i = p;
                d += 1;
            }
            d
        };
        assert_eq!((0..50).map(depth).max(), Some(5));
    }
}
