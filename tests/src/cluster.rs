//! Relay cluster helpers: a real `nats-server` with JetStream on 127.0.0.1 (a free port it picks
//! itself, its store in a temp folder) and relay instances started as processes with
//! `--cluster`, which tests kill and restart.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::AsyncBufReadExt;

use crate::relay::{EVENT_DEADLINE, RelayLimits, RelayProcess, TestRelay};

/// The `nats-server` binary: `NATS_SERVER_BIN`, else Debian's `/usr/sbin/nats-server`, else
/// whatever `PATH` finds.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return path.into();
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("nats-server")
    }
}

/// The Go garbage collector settings nats-server runs with here, as the README's cluster
/// deployment recommends: collection bounded by memory (`GOMEMLIMIT`, what the server may use)
/// instead of by heap growth (`GOGC=off`), the Go GC guide's setting for a process with a known
/// memory budget. nats-server allocates per message, and with Go's default (`GOGC=100`) its
/// collector took enough of this 2-core machine to cut its own throughput by a third. A variable
/// already set in the environment wins.
pub const NATS_GC_ENV: [(&str, &str); 2] = [("GOMEMLIMIT", "1GiB"), ("GOGC", "off")];

/// A `nats-server -js` on 127.0.0.1, killed when dropped.
pub struct NatsServer {
    child: tokio::process::Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// What the server logged so far.
    pub logs: Arc<Mutex<String>>,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts the server on a port it picks (`-p -1`) and waits for "Server is ready". Messages
    /// may be as large as 2 MiB, above the relay's 1 MiB frame cap (NATS defaults to 1 MiB).
    pub async fn start() -> anyhow::Result<Self> {
        let store = tempfile::tempdir()?;
        let config = store.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "max_payload: 2097152\njetstream {{\n  store_dir: {:?}\n}}\n",
                store.path().join("jetstream")
            ),
        )?;
        let binary = nats_server_binary();
        let mut command = tokio::process::Command::new(&binary);
        for (name, value) in NATS_GC_ENV {
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
        let mut child = command
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (the Debian package nats-server; test.sh installs it)",
                    binary.display()
                )
            })?;
        let stderr = child.stderr.take().context("nats-server stderr")?;
        let logs = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn({
            let logs = logs.clone();
            async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                let mut address_tx = Some(address_tx);
                let mut address = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some((_, rest)) = line.split_once("Listening for client connections on ")
                    {
                        address = Some(rest.trim().to_owned());
                    }
                    if line.contains("Server is ready")
                        && let (Some(tx), Some(address)) = (address_tx.take(), address.clone())
                    {
                        let _ = tx.send(address);
                    }
                    let mut text = logs.lock().unwrap_or_else(|poison| poison.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let address = tokio::time::timeout(EVENT_DEADLINE, address_rx)
            .await
            .context("nats-server readiness deadline")?
            .with_context(|| {
                format!(
                    "nats-server exited before it was ready:\n{}",
                    logs.lock().unwrap_or_else(|poison| poison.into_inner())
                )
            })?;
        Ok(NatsServer {
            child,
            url: format!("nats://{address}"),
            logs,
            _store: store,
        })
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Relay instances sharing rooms through one NATS server.
pub struct RelayCluster {
    pub nats: NatsServer,
    /// The instances by index; `None` while one is killed.
    pub instances: Vec<Option<RelayProcess>>,
    extra_args: Vec<String>,
}

impl RelayCluster {
    /// Starts a NATS server and `count` relay instances with `--cluster` (plus `extra_args`).
    pub async fn start(count: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let nats = NatsServer::start().await?;
        let mut cluster = RelayCluster {
            nats,
            instances: Vec::new(),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        for _ in 0..count {
            let instance = cluster.start_instance().await?;
            cluster.instances.push(Some(instance));
        }
        Ok(cluster)
    }

    async fn start_instance(&self) -> anyhow::Result<RelayProcess> {
        let mut args: Vec<&str> = vec!["--cluster", &self.nats.url];
        args.extend(self.extra_args.iter().map(String::as_str));
        RelayProcess::start(&args, &[]).await
    }

    fn instance(&self, index: usize) -> anyhow::Result<&RelayProcess> {
        self.instances
            .get(index)
            .and_then(Option::as_ref)
            .with_context(|| format!("relay instance {index} is not running"))
    }

    /// `ws://ADDRESS` of one instance.
    pub fn url(&self, index: usize) -> anyhow::Result<String> {
        Ok(format!("ws://{}", self.instance(index)?.address))
    }

    /// Every running instance's URL, comma-separated, starting with `first` (a node's
    /// `--relay` list: it connects to `first` and moves on round the list when that dies).
    pub fn urls_from(&self, first: usize) -> anyhow::Result<String> {
        let count = self.instances.len();
        let mut urls = Vec::new();
        for offset in 0..count {
            let index = (first + offset) % count;
            if self.instances[index].is_some() {
                urls.push(self.url(index)?);
            }
        }
        Ok(urls.join(","))
    }

    /// A frame-level handle on one instance.
    pub fn handle(&self, index: usize) -> anyhow::Result<TestRelay> {
        Ok(self.instance(index)?.handle(RelayLimits::defaults()))
    }

    /// Kills an instance at once (SIGKILL: no close frames, no goodbye to the others).
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let mut instance = self.instances[index]
            .take()
            .with_context(|| format!("relay instance {index} is not running"))?;
        instance.child.start_kill()?;
        instance.child.wait().await?;
        Ok(())
    }

    /// Stops an instance as an operator would (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self, index: usize) -> anyhow::Result<()> {
        let mut instance = self.instances[index]
            .take()
            .with_context(|| format!("relay instance {index} is not running"))?;
        let pid = instance.child.id().context("relay instance has no pid")?;
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(EVENT_DEADLINE, instance.child.wait())
            .await
            .context("relay instance did not exit after SIGTERM")??;
        Ok(())
    }

    /// Starts a fresh instance in the place of `index` (on a new port).
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        if self.instances[index].is_some() {
            self.kill(index).await?;
        }
        let instance = self.start_instance().await?;
        self.instances[index] = Some(instance);
        Ok(())
    }

    /// What every instance logged, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (index, instance) in self.instances.iter().enumerate() {
            if let Some(instance) = instance {
                text.push_str(&format!("--- relay instance {index}\n{}", instance.logs()));
            }
        }
        text
    }
}
