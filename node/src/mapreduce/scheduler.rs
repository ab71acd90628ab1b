//! The pure scheduling core of a MapReduce job: which partition runs where, attempt numbers,
//! retries, first-commit-wins, backup tasks for stragglers and what happens when a host is lost.
//! No processes, no clock, no network: the coordinator feeds it events and runs what it assigns.

use std::collections::BTreeSet;

/// Index of a host in the job's host list.
pub type HostId = usize;
/// Index of a partition (also its position in the reduce input).
pub type PartitionId = usize;

/// Where a partition may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Only on this host: its input lives there (files matched by a host's own glob).
    Pinned(HostId),
    /// Anywhere; the home host is preferred at first so partitions spread evenly.
    Movable { home: HostId },
}

/// One attempt the coordinator should start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub partition: PartitionId,
    /// 1 for the first attempt; every further attempt (retry or backup) gets the next number.
    pub attempt: u32,
    pub host: HostId,
    /// A duplicate of an attempt still running elsewhere (straggler backup).
    pub backup: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    Succeeded,
    /// The map command failed (non-zero exit, timeout, refusal): counts against `retries`.
    Failed(String),
    /// The host went away (unreachable, or left while running it): does not count against
    /// `retries`; the host takes no more work and its partitions move if they can.
    HostLost(String),
}

/// What the coordinator does with a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first successful output of the partition: keep it. The listed attempts of the same
    /// partition still run elsewhere and should be cancelled (they are already forgotten here).
    Commit { cancel: Vec<(u32, HostId)> },
    /// A later success (or a failure) of a partition that already committed: ignore it.
    Duplicate,
    /// The attempt failed; the partition will be retried (or has finally failed, see
    /// [`Scheduler::final_error`]).
    Failed,
}

#[derive(Debug, Clone)]
struct PartitionState {
    placement: Placement,
    /// Attempt numbers issued so far.
    attempts: u32,
    /// Failures counted against `retries`.
    failures: u32,
    running: Vec<(u32, HostId)>,
    /// Hosts where an attempt failed: avoided when another host can take the partition.
    failed_on: BTreeSet<HostId>,
    /// When its current run started (a sequence number): the oldest running are the stragglers.
    started_seq: u64,
    backed_up: bool,
    done: Option<(HostId, u32)>,
    failed: Option<(Option<HostId>, String)>,
}

impl PartitionState {
    fn pending(&self) -> bool {
        self.done.is_none() && self.failed.is_none() && self.running.is_empty()
    }
}

#[derive(Debug, Clone)]
struct HostState {
    alive: bool,
    slots: usize,
    running: usize,
}

/// The scheduler of one job.
#[derive(Debug, Clone)]
pub struct Scheduler {
    partitions: Vec<PartitionState>,
    hosts: Vec<HostState>,
    retries: u32,
    /// Backups start once this share of the partitions has finished (done or failed).
    backup_after: f64,
    seq: u64,
    /// Attempts allowed in flight across all hosts (`None`: only the per-host slots bound it).
    max_running: Option<usize>,
}

impl Scheduler {
    /// `slots[h]` attempts may run at once on host `h`; `retries` failed attempts are retried
    /// per partition (so a partition fails for good after `retries + 1` failures).
    pub fn new(slots: Vec<usize>, placements: Vec<Placement>, retries: u32) -> Self {
        Scheduler {
            partitions: placements
                .into_iter()
                .map(|placement| PartitionState {
                    placement,
                    attempts: 0,
                    failures: 0,
                    running: Vec::new(),
                    failed_on: BTreeSet::new(),
                    started_seq: 0,
                    backed_up: false,
                    done: None,
                    failed: None,
                })
                .collect(),
            hosts: slots
                .into_iter()
                .map(|slots| HostState {
                    alive: true,
                    slots: slots.max(1),
                    running: 0,
                })
                .collect(),
            retries,
            backup_after: 0.75,
            seq: 0,
            max_running: None,
        }
    }

    /// Caps the attempts in flight across all hosts, e.g. when the hosts share the machine's
    /// cores or a file server (at least 1).
    pub fn with_max_running(mut self, max: Option<usize>) -> Self {
        self.max_running = max.map(|max| max.max(1));
        self
    }

    /// Changes when backups start (share of partitions finished, 0..=1; above 1 disables them).
    pub fn with_backup_after(mut self, share: f64) -> Self {
        self.backup_after = share;
        self
    }

    pub fn total(&self) -> usize {
        self.partitions.len()
    }

    pub fn done(&self) -> usize {
        self.partitions.iter().filter(|p| p.done.is_some()).count()
    }

    pub fn failed(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.failed.is_some())
            .count()
    }

    pub fn is_finished(&self) -> bool {
        self.partitions
            .iter()
            .all(|p| p.done.is_some() || p.failed.is_some())
    }

    pub fn running(&self) -> usize {
        self.partitions.iter().map(|p| p.running.len()).sum()
    }

    /// Attempt numbers issued for a partition.
    pub fn attempts(&self, partition: PartitionId) -> u32 {
        self.partitions[partition].attempts
    }

    /// The host and attempt whose output was kept.
    pub fn committed(&self, partition: PartitionId) -> Option<(HostId, u32)> {
        self.partitions[partition].done
    }

    /// Why a partition finally failed, and on which host it last ran.
    pub fn final_error(&self, partition: PartitionId) -> Option<(Option<HostId>, &str)> {
        self.partitions[partition]
            .failed
            .as_ref()
            .map(|(host, error)| (*host, error.as_str()))
    }

    /// The host a partition belongs to: its pinned host, or its first choice.
    pub fn home(&self, partition: PartitionId) -> HostId {
        match self.partitions[partition].placement {
            Placement::Pinned(host) | Placement::Movable { home: host } => host,
        }
    }

    pub fn host_alive(&self, host: HostId) -> bool {
        self.hosts[host].alive
    }

    fn free(&self, host: HostId) -> bool {
        let h = &self.hosts[host];
        h.alive
            && h.running < h.slots
            && self
                .max_running
                .is_none_or(|max| self.hosts.iter().map(|h| h.running).sum::<usize>() < max)
    }

    fn can_run_on(&self, partition: &PartitionState, host: HostId) -> bool {
        match partition.placement {
            Placement::Pinned(home) => home == host,
            Placement::Movable { .. } => true,
        }
    }

    /// Fails every pending partition that no live host can run any more.
    fn fail_unplaceable(&mut self) {
        let any_alive = self.hosts.iter().any(|h| h.alive);
        for partition in &mut self.partitions {
            if !partition.pending() {
                continue;
            }
            match partition.placement {
                Placement::Pinned(home) if !self.hosts[home].alive => {
                    partition.failed = Some((
                        Some(home),
                        "its host was lost and its input (files on that host) cannot be read \
                         elsewhere"
                            .to_string(),
                    ));
                }
                Placement::Movable { .. } if !any_alive => {
                    partition.failed = Some((None, "no live host is left to run it".to_string()));
                }
                _ => {}
            }
        }
    }

    /// Picks a pending partition for `host`: its own first (home or pinned), then any movable
    /// one, preferring partitions that have not already failed on this host.
    fn pick_pending(&self, host: HostId) -> Option<PartitionId> {
        let home_of = |p: &PartitionState| match p.placement {
            Placement::Pinned(h) | Placement::Movable { home: h } => h,
        };
        let candidates = || {
            self.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.pending() && self.can_run_on(p, host))
        };
        // Another live host that has not failed it yet is a better choice than a repeat here.
        let better_elsewhere = |p: &PartitionState| {
            p.failed_on.contains(&host)
                && self
                    .hosts
                    .iter()
                    .enumerate()
                    .any(|(h, state)| state.alive && h != host && !p.failed_on.contains(&h))
        };
        candidates()
            .find(|(_, p)| home_of(p) == host && !better_elsewhere(p))
            .or_else(|| candidates().find(|(_, p)| !better_elsewhere(p)))
            .map(|(id, _)| id)
    }

    /// A straggler to back up on `host`: the longest-running movable partition with one attempt
    /// in flight on another host, once enough of the job has finished.
    fn pick_backup(&self, host: HostId) -> Option<PartitionId> {
        let finished = self.done() + self.failed();
        if self.partitions.is_empty()
            || (finished as f64) < self.backup_after * self.partitions.len() as f64
            || self.partitions.iter().any(|p| p.pending())
        {
            return None;
        }
        self.partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                matches!(p.placement, Placement::Movable { .. })
                    && p.done.is_none()
                    && !p.backed_up
                    && p.running.len() == 1
                    && p.running.iter().all(|(_, h)| *h != host)
            })
            .min_by_key(|(_, p)| p.started_seq)
            .map(|(id, _)| id)
    }

    fn start(&mut self, partition: PartitionId, host: HostId, backup: bool) -> Assignment {
        self.seq += 1;
        let state = &mut self.partitions[partition];
        state.attempts += 1;
        if backup {
            state.backed_up = true;
        } else {
            state.started_seq = self.seq;
        }
        state.running.push((state.attempts, host));
        self.hosts[host].running += 1;
        Assignment {
            partition,
            attempt: state.attempts,
            host,
            backup,
        }
    }

    /// Everything that should start now, filling free slots host by host (one slot per host
    /// per round, so the first partitions spread over every host).
    pub fn assign(&mut self) -> Vec<Assignment> {
        self.fail_unplaceable();
        let mut out = Vec::new();
        loop {
            let mut progressed = false;
            for host in 0..self.hosts.len() {
                if !self.free(host) {
                    continue;
                }
                if let Some(partition) = self.pick_pending(host) {
                    out.push(self.start(partition, host, false));
                    progressed = true;
                } else if let Some(partition) = self.pick_backup(host) {
                    out.push(self.start(partition, host, true));
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        out
    }

    /// Records how an attempt ended.
    pub fn finish(
        &mut self,
        partition: PartitionId,
        attempt: u32,
        host: HostId,
        end: AttemptEnd,
    ) -> Verdict {
        {
            let state = &mut self.partitions[partition];
            let before = state.running.len();
            state.running.retain(|&(a, h)| (a, h) != (attempt, host));
            if state.running.len() < before {
                self.hosts[host].running = self.hosts[host].running.saturating_sub(1);
            }
        }
        if let AttemptEnd::HostLost(_) = &end {
            self.hosts[host].alive = false;
        }
        let retries = self.retries;
        let state = &mut self.partitions[partition];
        if state.done.is_some() || state.failed.is_some() {
            return Verdict::Duplicate;
        }
        match end {
            AttemptEnd::Succeeded => {
                state.done = Some((host, attempt));
                let cancel = std::mem::take(&mut state.running);
                for &(_, other) in &cancel {
                    self.hosts[other].running = self.hosts[other].running.saturating_sub(1);
                }
                Verdict::Commit { cancel }
            }
            AttemptEnd::Failed(error) => {
                state.failures += 1;
                state.failed_on.insert(host);
                // A backup may be re-issued for the partition's next run.
                state.backed_up = false;
                if state.failures > retries && state.running.is_empty() {
                    state.failed = Some((
                        Some(host),
                        format!("failed {} times; last error: {error}", state.failures),
                    ));
                }
                Verdict::Failed
            }
            AttemptEnd::HostLost(error) => {
                state.backed_up = false;
                if let Placement::Pinned(_) = state.placement
                    && state.running.is_empty()
                {
                    state.failed = Some((
                        Some(host),
                        format!(
                            "host lost ({error}); its input (files on that host) cannot be \
                             read elsewhere"
                        ),
                    ));
                } else if state.failures > retries && state.running.is_empty() {
                    state.failed = Some((Some(host), error));
                }
                Verdict::Failed
            }
        }
    }

    /// Marks a host lost without an attempt ending (e.g. it left the room while idle).
    pub fn host_lost(&mut self, host: HostId) {
        self.hosts[host].alive = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_wide_cap_bounds_the_attempts_in_flight() {
        let mut s = Scheduler::new(vec![1; 4], movable(8, 4), 0).with_max_running(Some(2));
        let first = s.assign();
        assert_eq!(first.len(), 2);
        assert!(s.assign().is_empty());
        let done = &first[0];
        s.finish(
            done.partition,
            done.attempt,
            done.host,
            AttemptEnd::Succeeded,
        );
        assert_eq!(s.assign().len(), 1);
        assert_eq!(s.running(), 2);
    }

    fn movable(n: usize, hosts: usize) -> Vec<Placement> {
        (0..n)
            .map(|i| Placement::Movable { home: i % hosts })
            .collect()
    }

    fn pairs(assignments: &[Assignment]) -> Vec<(PartitionId, HostId, u32)> {
        assignments
            .iter()
            .map(|a| (a.partition, a.host, a.attempt))
            .collect()
    }

    #[test]
    fn first_partitions_spread_over_every_host_one_slot_each() {
        let mut s = Scheduler::new(vec![1, 1, 1], movable(6, 3), 0);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        // No free slot until something finishes.
        assert!(s.assign().is_empty());
        assert_eq!(
            s.finish(1, 1, 1, AttemptEnd::Succeeded),
            Verdict::Commit { cancel: vec![] }
        );
        // Host 1 takes its own next partition (4 has home 1).
        assert_eq!(pairs(&s.assign()), vec![(4, 1, 1)]);
    }

    #[test]
    fn an_idle_host_steals_movable_work_but_never_pinned_work() {
        let placements = vec![
            Placement::Pinned(0),
            Placement::Pinned(0),
            Placement::Movable { home: 0 },
        ];
        let mut s = Scheduler::new(vec![1, 1], placements, 0);
        // Host 1 cannot run the pinned ones, but takes the movable one whose home is busy.
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (2, 1, 1)]);
        s.finish(2, 1, 1, AttemptEnd::Succeeded);
        assert!(
            s.assign().is_empty(),
            "partition 1 is pinned to busy host 0"
        );
        s.finish(0, 1, 0, AttemptEnd::Succeeded);
        assert_eq!(pairs(&s.assign()), vec![(1, 0, 1)]);
    }

    #[test]
    fn failures_are_retried_with_new_attempt_numbers_until_retries_run_out() {
        let mut s = Scheduler::new(vec![1, 1], vec![Placement::Movable { home: 0 }], 2);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1)]);
        assert_eq!(
            s.finish(0, 1, 0, AttemptEnd::Failed("exit 1".into())),
            Verdict::Failed
        );
        // The retry goes to the other host, which has not failed it.
        assert_eq!(pairs(&s.assign()), vec![(0, 1, 2)]);
        s.finish(0, 2, 1, AttemptEnd::Failed("exit 1".into()));
        // Both hosts failed it once: any host will do.
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 3)]);
        s.finish(0, 3, 0, AttemptEnd::Failed("exit 3".into()));
        assert!(s.assign().is_empty());
        assert!(s.is_finished());
        assert_eq!(s.failed(), 1);
        assert_eq!(s.attempts(0), 3);
        let (host, error) = s.final_error(0).unwrap();
        assert_eq!(host, Some(0));
        assert!(
            error.contains("failed 3 times") && error.contains("exit 3"),
            "{error}"
        );
    }

    #[test]
    fn first_commit_wins_and_the_other_attempts_are_cancelled() {
        let mut s = Scheduler::new(vec![1, 1], movable(2, 2), 0).with_backup_after(0.5);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (1, 1, 1)]);
        s.finish(1, 1, 1, AttemptEnd::Succeeded);
        // Half done, nothing pending: host 1 backs up the straggler partition 0.
        let backup = s.assign();
        assert_eq!(pairs(&backup), vec![(0, 1, 2)]);
        assert!(backup[0].backup);
        // The backup finishes first: it commits and the original is to be cancelled.
        assert_eq!(
            s.finish(0, 2, 1, AttemptEnd::Succeeded),
            Verdict::Commit {
                cancel: vec![(1, 0)]
            }
        );
        assert_eq!(s.committed(0), Some((1, 2)));
        // If the original's answer still arrives, it is a duplicate and is ignored.
        assert_eq!(s.finish(0, 1, 0, AttemptEnd::Succeeded), Verdict::Duplicate);
        assert_eq!(s.committed(0), Some((1, 2)));
        assert!(s.is_finished());
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn backups_wait_until_most_partitions_are_done_and_go_to_another_host() {
        let mut s = Scheduler::new(vec![1, 1], movable(4, 2), 0);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (1, 1, 1)]);
        s.finish(1, 1, 1, AttemptEnd::Succeeded);
        // Host 1 runs its own partition 3 first, then takes partition 2 from busy host 0.
        assert_eq!(pairs(&s.assign()), vec![(3, 1, 1)]);
        s.finish(3, 1, 1, AttemptEnd::Succeeded);
        assert_eq!(pairs(&s.assign()), vec![(2, 1, 1)]);
        // Both slots are busy until something finishes.
        assert!(s.assign().is_empty());
        // 3 of 4 done reaches the mark: the idle host backs up the straggler.
        s.finish(2, 1, 1, AttemptEnd::Succeeded);
        let backup = s.assign();
        assert_eq!(pairs(&backup), vec![(0, 1, 2)]);
        assert!(backup[0].backup);
        // Only one backup per run.
        assert!(s.assign().is_empty());
    }

    #[test]
    fn pinned_partitions_are_never_backed_up() {
        let placements = vec![Placement::Pinned(0), Placement::Movable { home: 1 }];
        let mut s = Scheduler::new(vec![1, 1], placements, 0).with_backup_after(0.0);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (1, 1, 1)]);
        s.finish(1, 1, 1, AttemptEnd::Succeeded);
        assert!(s.assign().is_empty());
    }

    #[test]
    fn a_lost_hosts_movable_partitions_move_and_do_not_use_up_retries() {
        let mut s = Scheduler::new(vec![1, 1, 1], movable(6, 3), 0);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        assert_eq!(
            s.finish(1, 1, 1, AttemptEnd::HostLost("peer left".into())),
            Verdict::Failed
        );
        assert!(!s.host_alive(1));
        // Nothing is free on the live hosts yet; partition 1 waits, not failed.
        assert!(s.assign().is_empty());
        assert_eq!(s.failed(), 0);
        s.finish(0, 1, 0, AttemptEnd::Succeeded);
        // Host 0 takes more work; partition 1 (home lost) is waiting among it.
        let next = s.assign();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].host, 0);
        s.finish(2, 1, 2, AttemptEnd::Succeeded);
        let mut guard = 0;
        while !s.is_finished() {
            let assigned = s.assign();
            let running: Vec<_> = if assigned.is_empty() {
                // Finish whatever the earlier round left running.
                (0..6)
                    .filter_map(|p| s.partitions[p].running.first().map(|&(a, h)| (p, a, h)))
                    .collect()
            } else {
                assigned
                    .iter()
                    .map(|a| (a.partition, a.attempt, a.host))
                    .collect()
            };
            for (p, a, h) in running {
                assert_ne!(h, 1, "a lost host gets no work");
                s.finish(p, a, h, AttemptEnd::Succeeded);
            }
            guard += 1;
            assert!(guard < 20);
        }
        assert_eq!(s.done(), 6);
        assert_eq!(s.failed(), 0);
    }

    #[test]
    fn a_lost_hosts_pinned_partitions_fail_with_the_reason() {
        let placements = vec![
            Placement::Pinned(0),
            Placement::Pinned(0),
            Placement::Pinned(1),
        ];
        let mut s = Scheduler::new(vec![1, 1], placements, 3);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1), (2, 1, 1)]);
        s.finish(0, 1, 0, AttemptEnd::HostLost("peer left the room".into()));
        s.finish(2, 1, 1, AttemptEnd::Succeeded);
        assert!(s.assign().is_empty());
        assert!(s.is_finished());
        assert_eq!(s.failed(), 2);
        let (host, error) = s.final_error(0).unwrap();
        assert_eq!(host, Some(0));
        assert!(error.contains("peer left the room"), "{error}");
        assert!(error.contains("cannot be read elsewhere"), "{error}");
        let (_, pending_error) = s.final_error(1).unwrap();
        assert!(pending_error.contains("cannot be read elsewhere"));
    }

    #[test]
    fn with_every_host_lost_the_rest_fails_instead_of_waiting_forever() {
        let mut s = Scheduler::new(vec![1], movable(2, 1), 5);
        assert_eq!(pairs(&s.assign()), vec![(0, 0, 1)]);
        s.finish(0, 1, 0, AttemptEnd::HostLost("unreachable".into()));
        assert!(s.assign().is_empty());
        assert!(s.is_finished());
        assert_eq!(
            s.final_error(1).unwrap().1,
            "no live host is left to run it"
        );
    }
}
