//! Git servers for the network git tests, started by the test on 127.0.0.1 and stopped when
//! dropped: an OpenSSH `sshd` with its own host key, config and authorized test key, and an
//! https server (git-http-backend as CGI behind TLS with a test CA and Basic auth, a small
//! Python script). Each writes the client side a node user would have (ssh config, known_hosts,
//! CA file, stored credentials) into a global git config the test hands the node.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// How long a server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Runs `program args`, failing with its stderr.
pub fn run(program: &str, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `git ARGS` in `dir`, isolated from the user's and the system's git config.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec![
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "init.defaultBranch=main",
    ];
    all.extend_from_slice(args);
    run("git", &all, dir)
}

/// A bare repository `name` under `root` holding one commit of `files` on `main`, made through
/// a scratch clone.
pub fn seed_bare_repository(
    root: &Path,
    name: &str,
    files: &[(&str, &str)],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let bare = root.join(name);
    git(root, &["init", "-q", "--bare", "-b", "main", name])?;
    // Pushes over http need the server repository to accept them.
    git(&bare, &["config", "http.receivepack", "true"])?;
    let scratch = root.join(format!("{name}.seed"));
    git(
        root,
        &["init", "-q", "-b", "main", &scratch.display().to_string()],
    )?;
    for (path, text) in files {
        std::fs::write(scratch.join(path), text)?;
    }
    git(&scratch, &["add", "-A"])?;
    git(&scratch, &["commit", "-q", "-m", "seed"])?;
    git(
        &scratch,
        &["push", "-q", &bare.display().to_string(), "main:main"],
    )?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(bare)
}

/// A commit on `main` of the bare repository `bare` changing `files`, made as another user
/// would (a scratch clone pushing directly to the server's folder).
pub fn commit_to_bare(bare: &Path, files: &[(&str, &str)], message: &str) -> anyhow::Result<()> {
    let parent = bare.parent().context("bare repository has no parent")?;
    let scratch = parent.join("commit.scratch");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    git(
        parent,
        &[
            "clone",
            "-q",
            &bare.display().to_string(),
            &scratch.display().to_string(),
        ],
    )?;
    for (path, text) in files {
        std::fs::write(scratch.join(path), text)?;
    }
    git(&scratch, &["add", "-A"])?;
    git(&scratch, &["commit", "-q", "-m", message])?;
    git(&scratch, &["push", "-q", "origin", "main"])?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// The commit `main` names in the bare repository `bare`.
pub fn head_of(bare: &Path) -> anyhow::Result<String> {
    Ok(git(bare, &["rev-parse", "main"])?.trim().to_string())
}

/// A port that was free a moment ago (bound to port 0, then closed), for servers that cannot
/// bind port 0 themselves; callers retry when another process took it meanwhile.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `address` accepts connections, failing early when `child` exits.
fn wait_until_listening(
    child: &mut Child,
    address: SocketAddr,
) -> anyhow::Result<Result<(), String>> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(Ok(()));
        }
        if let Some(status) = child.try_wait()? {
            return Ok(Err(format!("exited with {status}")));
        }
        ensure!(
            Instant::now() < deadline,
            "{address} did not accept connections within {READY_WITHIN:?}"
        );
        // Polling for readiness: the server gives no other signal.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `sshd` on 127.0.0.1 that lets `root` in with the test's key, and the client files a node
/// user would have: a good key, a wrong key, `known_hosts` with the server's host key, and ssh
/// configs naming them.
pub struct SshServer {
    _process: Killed,
    pub port: u16,
    dir: PathBuf,
}

impl SshServer {
    /// Starts sshd with files under `dir` (created); repositories are served from anywhere the
    /// user can read, by absolute path.
    pub fn start(dir: &Path) -> anyhow::Result<SshServer> {
        std::fs::create_dir_all(dir)?;
        // Privilege separation needs this folder; a container may not have it yet.
        std::fs::create_dir_all("/run/sshd")?;
        for key in ["host_key", "id_good", "id_wrong"] {
            let path = dir.join(key);
            if !path.exists() {
                run(
                    "ssh-keygen",
                    &[
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        key,
                        "-f",
                        &path.display().to_string(),
                    ],
                    dir,
                )?;
            }
        }
        std::fs::copy(dir.join("id_good.pub"), dir.join("authorized_keys"))?;
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile none\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     AllowUsers root\n",
                    dir = dir.display()
                ),
            )?;
            let log = std::fs::File::create(dir.join("sshd.log"))?;
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting /usr/sbin/sshd (apt-get install openssh-server)")?;
            match wait_until_listening(&mut child, SocketAddr::from(([127, 0, 0, 1], port)))? {
                Ok(()) => {
                    let server = SshServer {
                        _process: Killed(child),
                        port,
                        dir: dir.to_path_buf(),
                    };
                    server.write_client_files()?;
                    return Ok(server);
                }
                // Most likely another process took the port between the probe and sshd's bind.
                Err(why) => {
                    last_failure = format!(
                        "{why}: {}",
                        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
                    );
                }
            }
        }
        bail!("sshd did not start: {last_failure}")
    }

    /// `known_hosts` (the server's key), `known_hosts.empty`, and one ssh config per case.
    fn write_client_files(&self) -> anyhow::Result<()> {
        let host_key = std::fs::read_to_string(self.dir.join("host_key.pub"))?;
        let mut fields = host_key.split_whitespace();
        let (kind, key) = (
            fields.next().context("host key type")?,
            fields.next().context("host key")?,
        );
        std::fs::write(
            self.dir.join("known_hosts"),
            format!("[127.0.0.1]:{} {kind} {key}\n", self.port),
        )?;
        std::fs::write(self.dir.join("known_hosts.empty"), "")?;
        for (name, identity, known_hosts) in [
            ("good", "id_good", "known_hosts"),
            ("wrong-key", "id_wrong", "known_hosts"),
            ("unknown-host", "id_good", "known_hosts.empty"),
        ] {
            std::fs::write(
                self.ssh_config(name),
                format!(
                    "Host gitserver\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  \
                     IdentityFile {dir}/{identity}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
                     UserKnownHostsFile {dir}/{known_hosts}\n  GlobalKnownHostsFile /dev/null\n  \
                     StrictHostKeyChecking yes\n  BatchMode yes\n",
                    port = self.port,
                    dir = self.dir.display(),
                ),
            )?;
        }
        Ok(())
    }

    /// The ssh config of a case: `good`, `wrong-key` or `unknown-host`; all name the server
    /// `gitserver`.
    pub fn ssh_config(&self, case: &str) -> PathBuf {
        self.dir.join(format!("ssh_config.{case}"))
    }

    /// A global git config for a node user whose ssh setup is the `case` config.
    pub fn write_user_gitconfig(&self, case: &str, path: &Path) -> anyhow::Result<()> {
        std::fs::write(
            path,
            format!(
                "[core]\n\tsshCommand = ssh -F {}\n",
                self.ssh_config(case).display()
            ),
        )?;
        Ok(())
    }

    /// The sshd log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

/// An https git server (git-http-backend behind TLS, Basic auth) serving the bare repositories
/// under `root`, with a CA made for the test.
pub struct HttpsServer {
    _process: Killed,
    pub port: u16,
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
    dir: PathBuf,
}

const HTTPS_SCRIPT: &str = include_str!("git_https_server.py");

impl HttpsServer {
    /// Starts the server with its files (CA, certificate, script) in `dir`.
    pub fn start(dir: &Path, root: &Path) -> anyhow::Result<HttpsServer> {
        std::fs::create_dir_all(dir)?;
        let path = |name: &str| dir.join(name).display().to_string();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca_args = vec!["req", "-x509", "-nodes", "-days", "2"];
        ca_args.extend_from_slice(&ec);
        let (ca_key, ca_pem) = (path("ca.key"), path("ca.pem"));
        ca_args.extend_from_slice(&[
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-subj",
            "/CN=remote-agents test CA",
        ]);
        run("openssl", &ca_args, dir)?;
        let (server_key, server_csr, server_pem) =
            (path("server.key"), path("server.csr"), path("server.pem"));
        let mut csr_args = vec!["req", "-nodes"];
        csr_args.extend_from_slice(&ec);
        csr_args.extend_from_slice(&[
            "-keyout",
            &server_key,
            "-out",
            &server_csr,
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run("openssl", &csr_args, dir)?;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
             extendedKeyUsage = serverAuth\n",
        )?;
        let ext = path("server.ext");
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &server_csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &server_pem,
            ],
            dir,
        )?;
        let script = dir.join("git_https_server.py");
        std::fs::write(&script, HTTPS_SCRIPT)?;
        let backend = run("git", &["--exec-path"], dir)?.trim().to_string() + "/git-http-backend";
        let (user, password) = ("fleet".to_string(), "correct-horse".to_string());
        let log = std::fs::File::create(dir.join("https.log"))?;
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(root)
            .args([&server_pem, &server_key, &user, &password, &backend])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting python3 for the https git server")?;
        // The script prints the port it bound (port 0) once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let port: u16 = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the https git server did not start: {}",
                    std::fs::read_to_string(dir.join("https.log")).unwrap_or_default()
                );
            }
        };
        Ok(HttpsServer {
            _process: Killed(child),
            port,
            ca: dir.join("ca.pem"),
            user,
            password,
            dir: dir.to_path_buf(),
        })
    }

    /// The https URL of the repository `name` under the served root.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }

    /// A global git config for a node user: the test CA (unless `trust_ca` is false) and a
    /// `store` credential helper holding `password` for this server.
    pub fn write_user_gitconfig(
        &self,
        path: &Path,
        password: &str,
        trust_ca: bool,
    ) -> anyhow::Result<()> {
        let credentials = path.with_extension("credentials");
        std::fs::write(
            &credentials,
            format!("https://{}:{password}@127.0.0.1:{}\n", self.user, self.port),
        )?;
        let mut text = format!(
            "[credential]\n\thelper = store --file {}\n",
            credentials.display()
        );
        if trust_ca {
            text.push_str(&format!("[http]\n\tsslCAInfo = {}\n", self.ca.display()));
        }
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The server's request log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("https.log")).unwrap_or_default()
    }
}
