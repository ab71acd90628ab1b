//! The fan-out engine: sends one operation to many hosts concurrently under a concurrency cap,
//! a per-host timeout and a global deadline, optionally in rolling batches that halt once the
//! failures exceed a threshold. Every target ends with exactly one [`HostRecord`]: hosts that are
//! offline are `unreachable`, hosts not attempted after a halt are `skipped`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::fold::natural_cmp;
use super::{HostRecord, HostStatus};

/// A count of hosts given either absolutely (`10`) or as a share of the targets (`10%`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Amount {
    Count(usize),
    Percent(f64),
}

impl Amount {
    /// The number of hosts this amount means out of `total`. Percentages round up, so `10%` of
    /// 5 hosts is 1, not 0.
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => ((total as f64) * p / 100.0).ceil() as usize,
        }
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let value: f64 = percent
                .trim()
                .parse()
                .map_err(|_| format!("expected a number before '%', got {text:?}"))?;
            if !(0.0..=100.0).contains(&value) {
                return Err(format!(
                    "a percentage must be between 0% and 100%, got {text:?}"
                ));
            }
            Ok(Amount::Percent(value))
        } else {
            text.parse::<usize>()
                .map(Amount::Count)
                .map_err(|_| format!("expected a count like 10 or a share like 10%, got {text:?}"))
        }
    }
}

/// One host to act on. `agent_id` is `None` when the host is expected (it matched the target in
/// the desired state) but is not connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub agent_id: Option<String>,
}

/// Performs the operation on one host and reports its record. Implementations should honour
/// `timeout` themselves (to cancel remote work); the engine enforces it too.
pub trait HostCaller: Send + Sync + 'static {
    fn call(&self, target: Target, timeout: Duration) -> BoxFuture<'static, HostRecord>;
}

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub per_host_timeout: Duration,
    /// The whole run ends by then; hosts still running are `timeout`, hosts not started are too.
    pub deadline: Option<Duration>,
    /// Hosts in flight at once.
    pub concurrency: usize,
    /// Rolling run: hosts per batch; the next batch starts when the previous one finished.
    pub batch: Option<Amount>,
    /// Halt (mark the rest `skipped`) once more hosts than this are not `ok`.
    pub max_fail: Option<Amount>,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        FanoutOptions {
            per_host_timeout: Duration::from_secs(60),
            deadline: None,
            concurrency: 256,
            batch: None,
            max_fail: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FanoutReport {
    /// One record per target, in natural host order.
    pub records: Vec<HostRecord>,
    /// True when the failure threshold stopped the run early.
    pub halted: bool,
}

impl FanoutReport {
    pub fn all_ok(&self) -> bool {
        self.records.iter().all(|r| r.status == HostStatus::Ok)
    }
}

/// Runs the operation on every target and returns one record per target.
pub async fn run(
    targets: Vec<Target>,
    caller: Arc<dyn HostCaller>,
    options: &FanoutOptions,
) -> FanoutReport {
    let total = targets.len();
    let batch_size = options
        .batch
        .map(|amount| amount.of(total).max(1))
        .unwrap_or(total.max(1));
    let failure_limit = options.max_fail.map(|amount| amount.of(total));
    let deadline = options.deadline.map(|d| Instant::now() + d);
    let failures = Arc::new(AtomicUsize::new(0));
    let halted = Arc::new(AtomicBool::new(false));
    let concurrency = options.concurrency.max(1);

    let mut records = Vec::with_capacity(total);
    let mut remaining = targets.into_iter().peekable();
    while remaining.peek().is_some() {
        let batch: Vec<Target> = remaining.by_ref().take(batch_size).collect();
        let batch_records: Vec<HostRecord> = futures_util::stream::iter(batch)
            .map(|target| {
                let caller = caller.clone();
                let failures = failures.clone();
                let halted = halted.clone();
                let per_host = options.per_host_timeout;
                async move {
                    let record =
                        call_one(target, caller.as_ref(), per_host, deadline, &halted).await;
                    if record.status != HostStatus::Ok && record.status != HostStatus::Skipped {
                        let failed = failures.fetch_add(1, Ordering::SeqCst) + 1;
                        if failure_limit.is_some_and(|limit| failed > limit) {
                            halted.store(true, Ordering::SeqCst);
                        }
                    }
                    record
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        records.extend(batch_records);
    }
    records.sort_by(|a, b| natural_cmp(&a.host, &b.host));
    FanoutReport {
        records,
        halted: halted.load(Ordering::SeqCst),
    }
}

async fn call_one(
    target: Target,
    caller: &dyn HostCaller,
    per_host: Duration,
    deadline: Option<Instant>,
    halted: &AtomicBool,
) -> HostRecord {
    if halted.load(Ordering::SeqCst) {
        return HostRecord::new(&target.host, HostStatus::Skipped)
            .with_error("not attempted: the run halted at its failure threshold");
    }
    if target.agent_id.is_none() {
        return HostRecord::new(&target.host, HostStatus::Unreachable)
            .with_error("host matched the target but is not connected");
    }
    let timeout = match deadline {
        Some(deadline) => per_host.min(deadline.saturating_duration_since(Instant::now())),
        None => per_host,
    };
    if timeout.is_zero() {
        return HostRecord::new(&target.host, HostStatus::Timeout)
            .with_error("the global deadline passed before this host was started");
    }
    let host = target.host.clone();
    let agent_id = target.agent_id.clone();
    let started = Instant::now();
    match tokio::time::timeout(timeout, caller.call(target, timeout)).await {
        Ok(record) => record,
        Err(_) => {
            let mut record = HostRecord::new(host, HostStatus::Timeout).with_error(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ));
            record.agent_id = agent_id;
            record.duration_ms = started.elapsed().as_millis() as u64;
            record
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers per host after a scripted delay with a scripted status; records call order.
    struct Scripted {
        delay: Duration,
        failing: Vec<String>,
        called: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(delay: Duration, failing: &[&str]) -> Arc<Self> {
            Arc::new(Scripted {
                delay,
                failing: failing.iter().map(|s| s.to_string()).collect(),
                called: Mutex::new(Vec::new()),
            })
        }
    }

    impl HostCaller for Scripted {
        fn call(&self, target: Target, _timeout: Duration) -> BoxFuture<'static, HostRecord> {
            self.called.lock().unwrap().push(target.host.clone());
            let fail = self.failing.contains(&target.host);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let mut record = HostRecord::new(
                    target.host,
                    if fail {
                        HostStatus::Failed
                    } else {
                        HostStatus::Ok
                    },
                );
                record.exit = Some(if fail { 1 } else { 0 });
                record
            })
        }
    }

    fn targets(n: usize) -> Vec<Target> {
        (1..=n)
            .map(|i| Target {
                host: format!("h-{i}"),
                agent_id: Some(format!("id{i}")),
            })
            .collect()
    }

    #[test]
    fn amounts_parse_counts_and_percentages() {
        assert_eq!("10".parse::<Amount>(), Ok(Amount::Count(10)));
        assert_eq!("5%".parse::<Amount>(), Ok(Amount::Percent(5.0)));
        assert_eq!(Amount::Percent(10.0).of(5), 1);
        assert_eq!(Amount::Percent(5.0).of(200), 10);
        assert!("ten".parse::<Amount>().unwrap_err().contains("\"ten\""));
        assert!("150%".parse::<Amount>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn offline_hosts_are_reported_unreachable_not_dropped() {
        let mut list = targets(3);
        list[1].agent_id = None;
        let caller = Scripted::new(Duration::from_millis(10), &[]);
        let report = run(list, caller.clone(), &FanoutOptions::default()).await;
        let statuses: Vec<_> = report.records.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            vec![HostStatus::Ok, HostStatus::Unreachable, HostStatus::Ok]
        );
        assert_eq!(caller.called.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_hosts_time_out_at_the_per_host_timeout() {
        let caller = Scripted::new(Duration::from_secs(30), &[]);
        let options = FanoutOptions {
            per_host_timeout: Duration::from_secs(5),
            ..FanoutOptions::default()
        };
        let started = Instant::now();
        let report = run(targets(4), caller, &options).await;
        assert!(
            report
                .records
                .iter()
                .all(|r| r.status == HostStatus::Timeout)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_bounds_hosts_in_flight() {
        let caller = Scripted::new(Duration::from_millis(100), &[]);
        let options = FanoutOptions {
            concurrency: 3,
            ..FanoutOptions::default()
        };
        let started = Instant::now();
        let report = run(targets(9), caller, &options).await;
        assert!(report.all_ok());
        // Nine hosts, three at a time, 100 ms each: three rounds.
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolling_run_halts_after_the_failure_threshold() {
        // Batches of 2; hosts 3 and 4 fail in the second batch; max-fail 1 → halt after it.
        let caller = Scripted::new(Duration::from_millis(10), &["h-3", "h-4"]);
        let options = FanoutOptions {
            batch: Some(Amount::Count(2)),
            max_fail: Some(Amount::Count(1)),
            ..FanoutOptions::default()
        };
        let report = run(targets(10), caller.clone(), &options).await;
        assert!(report.halted);
        let statuses: Vec<_> = report.records.iter().map(|r| r.status).collect();
        assert_eq!(
            &statuses[..4],
            &[
                HostStatus::Ok,
                HostStatus::Ok,
                HostStatus::Failed,
                HostStatus::Failed
            ]
        );
        assert!(statuses[4..].iter().all(|s| *s == HostStatus::Skipped));
        assert_eq!(caller.called.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_deadline_ends_hosts_not_yet_started() {
        let caller = Scripted::new(Duration::from_secs(2), &[]);
        let options = FanoutOptions {
            concurrency: 1,
            deadline: Some(Duration::from_secs(3)),
            ..FanoutOptions::default()
        };
        let report = run(targets(3), caller, &options).await;
        let statuses: Vec<_> = report.records.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            vec![HostStatus::Ok, HostStatus::Timeout, HostStatus::Timeout]
        );
    }
}
