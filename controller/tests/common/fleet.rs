//! End-to-end harness: the real `holdfast` controller and the real `holdfast-agent`, enrolled,
//! on a config directory that is a git repository, backing up to a local restic repository.
//!
//! Every child process is killed (SIGKILL) when the [`Fleet`] is dropped. Their stderr goes to
//! files in the fleet's temporary directory; a failing test prints the tail of each and keeps the
//! directory for a look.

use std::cell::Cell;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

pub const RESTIC: &str = "/usr/bin/restic";
pub const PASSWORD: &str = "correct horse battery staple";
/// The host the agent runs as.
pub const HOST: &str = "web-1";
/// How many files `<tmp>/data` holds at the start.
pub const DATA_FILES: u64 = 3;
/// A cron that does not fire while a test runs (03:00 on the 1st of January).
pub const QUIET_CRON: &str = "0 3 1 1 *";
/// Long enough for anything on a slow CI machine; a deadline, not a performance assertion.
pub const LONG: Duration = Duration::from_secs(60);

pub fn holdfast_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast"))
}

/// The agent binary next to `holdfast`. `cargo test -p holdfast` does not build it, so it is
/// built here, once per test binary, when it is missing or older than the agent's sources.
pub fn agent_bin() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let bin = holdfast_bin().with_file_name("holdfast-agent");
        let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let sources = [
            "agent/src",
            "agent/Cargo.toml",
            "protocol/src",
            "protocol/Cargo.toml",
            "logging/src",
            "logging/Cargo.toml",
            "Cargo.lock",
        ]
        .map(|p| workspace.join(p));
        let built = modified(&bin);
        if built.is_none() || sources.iter().any(|s| newest(s) > built) {
            let profile_dir = bin.parent().unwrap();
            let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
                "debug" => "dev",
                other => other,
            };
            let out = Command::new(env!("CARGO"))
                .args(["build", "-p", "holdfast-agent", "--bin", "holdfast-agent"])
                .args(["--profile", profile, "--target-dir"])
                .arg(profile_dir.parent().unwrap())
                .current_dir(workspace)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "could not build holdfast-agent (cargo build -p holdfast-agent):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            bin.exists(),
            "{} is missing after building it",
            bin.display()
        );
        bin
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file or of anything below a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let own = modified(path);
    let Ok(entries) = fs::read_dir(path) else {
        return own;
    };
    entries
        .flatten()
        .map(|e| newest(&e.path()))
        .fold(own, |a, b| a.max(b))
}

pub fn require_restic() {
    assert!(
        Path::new(RESTIC).exists(),
        "{RESTIC} is missing: install Debian's restic (apt-get install restic)"
    );
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A child process whose stderr is appended to a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    killed: bool,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Proc {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(file, "===== test harness: starting {name} =====").unwrap();
        // Its own process group, so that a kill takes the restic it runs along.
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log: log.into(),
            killed: false,
        }
    }

    /// SIGKILL to the process and its children, as a power cut would: its process group and
    /// every descendant, since the agent starts restic in a process group of its own.
    pub fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        let mut targets = vec![format!("-{}", self.child.id())];
        targets.extend(descendants(self.child.id()).iter().map(u32::to_string));
        let _ = Command::new("kill")
            .args(["-KILL", "--"])
            .args(&targets)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes below `pid`, from Linux's /proc/PID/task/TID/children.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// How the agent under test is started: the native binary, or a build for another platform
/// under an emulator (wine, qemu-user; `tests/platforms.rs`).
#[derive(Clone, Debug)]
pub struct AgentRunner {
    /// The native agent, or the emulator.
    pub program: PathBuf,
    /// Arguments before the agent's own: the emulator's options and the agent binary.
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// The `--restic` the agent is given, as the agent sees it.
    pub restic: String,
    /// Paths handed to the agent are Windows paths: drive Z: is `/` under wine.
    pub windows_paths: bool,
}

impl AgentRunner {
    /// The agent built for this machine, with Debian's restic.
    pub fn native() -> AgentRunner {
        AgentRunner {
            program: agent_bin().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            restic: RESTIC.into(),
            windows_paths: false,
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).envs(self.env.iter().cloned());
        command
    }

    /// `path` as the agent names it.
    pub fn path(&self, path: &Path) -> String {
        if self.windows_paths {
            format!("Z:{}", path.display()).replace('/', "\\")
        } else {
            path.display().to_string()
        }
    }
}

/// The controller on its own port, and one enrolled agent acting as [`HOST`].
///
/// Layout of the temporary directory: `config/` (the fleet, a git repository), `controller/`
/// (its data dir), `agent/` (the agent's state dir), `data/` (what the `files` schedule backs
/// up), `repo/` (the restic repository, created by the agent), `password`, and the logs.
pub struct Fleet {
    tmp: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub config: PathBuf,
    pub controller_data: PathBuf,
    pub agent_state: PathBuf,
    pub data: PathBuf,
    pub repo: PathBuf,
    pub password: PathBuf,
    pub port: u16,
    pub hosts: Vec<String>,
    controller: Option<Proc>,
    agent: Option<Proc>,
    /// Agents for hosts other than [`HOST`], from [`Fleet::start_agent_as`].
    others: Vec<Proc>,
    /// More flags for the controller, from its next start.
    pub controller_args: Vec<String>,
    /// How the agents are started.
    pub runner: AgentRunner,
    http: ureq::Agent,
    logs_shown: Cell<bool>,
}

impl Fleet {
    /// A fleet with the one host [`HOST`], in sync.
    pub fn start() -> Fleet {
        Fleet::with_hosts(&[HOST])
    }

    /// A fleet declaring `hosts` (the first must be [`HOST`]); only [`HOST`] gets an agent, the
    /// others stay offline. Returns once the agent is online and has applied its schedule.
    pub fn with_hosts(hosts: &[&str]) -> Fleet {
        require_restic();
        Fleet::build(hosts, AgentRunner::native())
    }

    /// A fleet of [`HOST`] whose agent `runner` starts.
    pub fn with_runner(runner: AgentRunner) -> Fleet {
        Fleet::build(&[HOST], runner)
    }

    fn build(hosts: &[&str], runner: AgentRunner) -> Fleet {
        assert_eq!(hosts[0], HOST, "the agent runs as {HOST}");
        let tmp = tempfile::Builder::new()
            .prefix("holdfast-fleet-")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let mut fleet = Fleet {
            tmp: Some(tmp),
            config: root.join("config"),
            controller_data: root.join("controller"),
            agent_state: root.join("agent"),
            data: root.join("data"),
            repo: root.join("repo"),
            password: root.join("password"),
            root,
            port: free_port(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            controller: None,
            agent: None,
            others: Vec::new(),
            controller_args: Vec::new(),
            runner,
            http: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build(),
            ),
            logs_shown: Cell::new(false),
        };
        fs::create_dir_all(&fleet.controller_data).unwrap();
        fs::create_dir_all(fleet.data.join("sub")).unwrap();
        fs::write(fleet.data.join("a.txt"), "alpha\n").unwrap();
        fs::write(fleet.data.join("b.txt"), "bravo\n").unwrap();
        fs::write(fleet.data.join("sub/c.txt"), "charlie\n").unwrap();
        fs::write(&fleet.password, PASSWORD).unwrap();
        // An empty agent config, so that a /etc/holdfast/agent.yaml on this machine is not read.
        fs::write(fleet.root.join("agent.yaml"), "").unwrap();

        fs::create_dir_all(&fleet.config).unwrap();
        fleet.git(&["init", "-q", "-b", "main"]);
        fleet.git(&["config", "user.name", "Holdfast Tests"]);
        fleet.git(&["config", "user.email", "tests@holdfast.invalid"]);
        fleet.git(&["config", "commit.gpgsign", "false"]);
        let repo_yaml = fleet.repo_yaml();
        let schedule = fleet.files_schedule(QUIET_CRON);
        let mut files = vec![
            ("repos.yaml".to_string(), repo_yaml),
            ("schedules/files.yaml".to_string(), schedule),
        ];
        for host in hosts {
            files.push((format!("hosts/{host}.yaml"), host_yaml(host)));
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        fleet.write_all(&files);

        fleet.start_controller();
        fleet.enroll_agent(HOST, &fleet.agent_state);
        fleet.start_agent();
        fleet.wait_in_sync(HOST);
        fleet
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    // ---- processes -------------------------------------------------------------------------

    /// Starts the controller and waits until `/readyz` answers 200.
    pub fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "the controller is running");
        let mut command = Command::new(holdfast_bin());
        command
            .arg("controller")
            .arg("--config-dir")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.controller_data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--offline-after", "2s"])
            .args(&self.controller_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let log = self.root.join("controller.log");
        self.controller = Some(Proc::spawn("holdfast controller", &mut command, &log));
        let start = Instant::now();
        loop {
            let seen = match self.get("/readyz") {
                Ok((200, _)) => return,
                // Serving: the directory was read, and its newest revision rejected.
                Ok((503, body)) if body.starts_with("the config directory is rejected") => return,
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            if self.controller.as_mut().unwrap().has_exited() {
                panic!("the controller exited\n{}", self.log_tails());
            }
            if start.elapsed() > LONG {
                panic!(
                    "timed out after {LONG:?} waiting for GET /readyz to answer 200; last seen: {seen}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill_controller(&mut self) {
        let mut proc = self
            .controller
            .take()
            .expect("the controller is not running");
        proc.kill();
    }

    /// SIGKILL, then a new controller on the same data dir and port.
    pub fn restart_controller(&mut self) {
        self.kill_controller();
        self.start_controller();
    }

    /// `holdfast-agent enroll` as `host` into `state`, with a new token.
    fn enroll_agent(&self, host: &str, state: &Path) {
        let token = self.create_token(host, None);
        let out = self
            .runner
            .command()
            .args(["enroll", "--server", &self.url(""), "--token", &token])
            .arg("--state-dir")
            .arg(self.runner.path(state))
            .env_remove("HOLDFAST_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "holdfast-agent enroll as {host} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
    }

    /// `holdfast-agent run` as `host` on `state`, with nothing from this machine's environment.
    fn agent_command(&self, host: &str, state: &Path) -> Command {
        let mut command = self.runner.command();
        command
            .arg("run")
            .arg("--config")
            .arg(self.runner.path(&self.root.join("agent.yaml")))
            .arg("--state-dir")
            .arg(self.runner.path(state))
            .args([
                "--server",
                &self.url(""),
                "--restic",
                &self.runner.restic,
                "--host",
                host,
            ])
            .env(
                "HOLDFAST_LOG",
                std::env::var("HOLDFAST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for var in [
            "HOLDFAST_CONFIG",
            "HOLDFAST_SERVER",
            "HOLDFAST_STATE_DIR",
            "HOLDFAST_RESTIC",
            "HOLDFAST_HOST",
            "HOLDFAST_CA_FILE",
        ] {
            command.env_remove(var);
        }
        command
    }

    /// Starts the (already enrolled) agent as [`HOST`].
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is running");
        let mut command = self.agent_command(HOST, &self.agent_state);
        let log = self.root.join("agent.log");
        self.agent = Some(Proc::spawn("holdfast-agent", &mut command, &log));
    }

    /// Enrolls and starts one more agent, acting as `host` with its own state dir
    /// (`agent-HOST/`) and log (`agent-HOST.log`).
    pub fn start_agent_as(&mut self, host: &str) {
        let state = self.root.join(format!("agent-{host}"));
        self.enroll_agent(host, &state);
        let mut command = self.agent_command(host, &state);
        let log = self.root.join(format!("agent-{host}.log"));
        self.others.push(Proc::spawn(
            &format!("holdfast-agent as {host}"),
            &mut command,
            &log,
        ));
    }

    pub fn kill_agent(&mut self) {
        let mut proc = self.agent.take().expect("the agent is not running");
        proc.kill();
    }

    /// `holdfast token create HOST --data-dir DATA [--ttl TTL]`: the token, trimmed.
    pub fn create_token(&self, host: &str, ttl: Option<&str>) -> String {
        let mut command = Command::new(holdfast_bin());
        command
            .args(["token", "create", host, "--data-dir"])
            .arg(&self.controller_data);
        if let Some(ttl) = ttl {
            command.args(["--ttl", ttl]);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "holdfast token create {host} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            !token.is_empty() && !token.contains(char::is_whitespace),
            "expected the token alone on stdout, got {token:?}"
        );
        token
    }

    /// The tails of the controller's and the agent's logs.
    pub fn log_tails(&self) -> String {
        self.logs_shown.set(true);
        ["controller.log", "agent.log"]
            .iter()
            .map(|name| {
                let path = self.root.join(name);
                format!(
                    "----- last lines of {} -----\n{}\n",
                    path.display(),
                    tail(&path, 60)
                )
            })
            .collect()
    }

    // ---- waiting ---------------------------------------------------------------------------

    /// Polls `f` until it returns Ok; after `limit` fails with the last Err (what was seen) and
    /// the logs. A deadline for a test that would otherwise hang, not a performance assertion.
    pub fn eventually<T>(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            let last = match f() {
                Ok(v) => return v,
                Err(last) => last,
            };
            if start.elapsed() >= limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; last seen: {last}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks `f` again and again for `period`; fails at the first Err.
    pub fn holds(&self, period: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
        let start = Instant::now();
        while start.elapsed() < period {
            if let Err(seen) = f() {
                panic!(
                    "expected {what} for {period:?}, but after {:?}: {seen}\n{}",
                    start.elapsed(),
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `host` is online and has applied its desired version; returns that version.
    pub fn wait_in_sync(&self, host: &str) -> u64 {
        self.eventually(
            LONG,
            &format!("{host} online with appliedScheduleVersion == desiredScheduleVersion"),
            || {
                let h = self.host(host)?;
                let (desired, applied) = versions_of(&h)?;
                if h.pointer("/status/online") == Some(&Value::Bool(true)) && applied == desired {
                    Ok(desired)
                } else {
                    Err(format!("status: {}", h["status"]))
                }
            },
        )
    }

    // ---- HTTP ------------------------------------------------------------------------------

    /// GET: status and body, whatever the status; Err only when there is no answer.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
        let mut request = self.http.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().map_err(|e| format!("GET {path}: {e}"))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {path}: reading the body: {e}"))?;
        Ok((response.status().as_u16(), body))
    }

    /// GET or DELETE: status, content type and body, whatever the status.
    pub fn http_response(&self, path: &str, method: &str) -> Result<(u16, String, String), String> {
        let url = self.url(path);
        let mut response = match method {
            "GET" => self.http.get(url).call(),
            "DELETE" => self.http.delete(url).call(),
            other => return Err(format!("the harness has no method {other}")),
        }
        .map_err(|e| format!("{method} {path}: {e}"))?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok((response.status().as_u16(), content_type, body))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<(u16, String), String> {
        let mut response = self
            .http
            .post(self.url(path))
            .send_json(body)
            .map_err(|e| format!("POST {path}: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("POST {path}: reading the body: {e}"))?;
        Ok((response.status().as_u16(), text))
    }

    /// GET of a JSON document that must answer 200.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        match self.get(path)? {
            (200, body) => serde_json::from_str(&body)
                .map_err(|e| format!("GET {path}: not JSON ({e}): {body}")),
            (status, body) => Err(format!("GET {path}: {status} {body}")),
        }
    }

    pub fn host(&self, name: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/hosts/default/{name}"))
    }

    /// `(desiredScheduleVersion, appliedScheduleVersion)` of a host.
    pub fn versions(&self, host: &str) -> Result<(u64, u64), String> {
        versions_of(&self.host(host)?)
    }

    pub fn backup(&self, name: &str) -> Result<Value, String> {
        self.api(&format!("/api/v1/backups/default/{name}"))
    }

    pub fn backups(&self) -> Result<Vec<Value>, String> {
        let list = self.api("/api/v1/backups")?;
        list["items"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("no items in {list}"))
    }

    pub fn revisions(&self) -> Result<Value, String> {
        self.api("/api/v1/revisions")
    }

    // ---- the config directory ----------------------------------------------------------------

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git must be installed");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes files below the config directory (each replaced atomically, as a checkout would)
    /// and commits them together.
    pub fn write_all(&self, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = self.config.join(path);
            let dir = path.parent().unwrap();
            fs::create_dir_all(dir).unwrap();
            // A hidden name: the controller ignores it until the rename.
            let temp = dir.join(format!(
                ".{}.tmp",
                path.file_name().unwrap().to_str().unwrap()
            ));
            fs::write(&temp, text).unwrap();
            fs::rename(&temp, &path).unwrap();
        }
        self.commit();
    }

    pub fn write(&self, path: &str, text: &str) {
        self.write_all(&[(path, text)]);
    }

    pub fn append(&self, path: &str, text: &str) {
        let old = self.read(path);
        self.write(path, &format!("{old}{text}"));
    }

    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.config.join(path)).unwrap()
    }

    /// Deletes a file and commits.
    pub fn remove(&self, path: &str) {
        fs::remove_file(self.config.join(path)).unwrap();
        self.commit();
    }

    fn commit(&self) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", "test change"]);
    }

    pub fn repo_yaml(&self) -> String {
        format!(
            "\
apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata:
  name: local
spec:
  url: {}
  password:
    file: {}
  initialize: true
",
            self.runner.path(&self.repo),
            self.password.display()
        )
    }

    /// The `files` schedule: a backup of `<tmp>/data` by [`HOST`] on `cron`.
    pub fn files_schedule(&self, cron: &str) -> String {
        schedule_yaml("files", cron, Path::new(&self.runner.path(&self.data)), "")
    }

    // ---- the restic repository -------------------------------------------------------------

    /// The repository's snapshots; none before the agent has created the repository.
    pub fn snapshots(&self) -> Vec<Value> {
        if !self.repo.join("config").exists() {
            return Vec::new();
        }
        let out = Command::new(RESTIC)
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.password)
            .args(["--no-lock", "--no-cache", "snapshots", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic snapshots: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill();
        }
        if let Some(mut controller) = self.controller.take() {
            controller.kill();
        }
        if std::thread::panicking() {
            if !self.logs_shown.get() {
                eprintln!("{}", self.log_tails());
            }
            if let Some(tmp) = self.tmp.take() {
                eprintln!("test files kept in {}", tmp.keep().display());
            }
        }
    }
}

/// `(desiredScheduleVersion, appliedScheduleVersion)`; an agent that has applied nothing yet
/// counts as 0.
pub fn versions_of(host: &Value) -> Result<(u64, u64), String> {
    let desired = host
        .pointer("/status/desiredScheduleVersion")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no status.desiredScheduleVersion in {host}"))?;
    let applied = host
        .pointer("/status/appliedScheduleVersion")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok((desired, applied))
}

pub fn host_yaml(name: &str) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata:
  name: {name}
spec:
  defaultRepo: local
"
    )
}

/// A backup schedule of `path` by [`HOST`] into the repo `local`; `extra` is more lines of
/// `spec`, indented by two spaces.
pub fn schedule_yaml(name: &str, cron: &str, path: &Path, extra: &str) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: {name}
spec:
  operation: backup
  cron: \"{cron}\"
  hosts: [{HOST}]
  repo: local
  paths:
    - {}
{extra}",
        path.display()
    )
}

/// A backup schedule `name` of `path` whose pre-hook waits until the file `gate` exists: a run
/// that stays Running until the test lets it go on.
pub fn gated_schedule_yaml(name: &str, path: &Path, gate: &Path) -> String {
    schedule_yaml(
        name,
        QUIET_CRON,
        path,
        &format!(
            "  hooks:\n    pre:\n      - command: [sh, -c, \"while [ ! -e {} ]; do sleep 0.1; done\"]\n        timeout: 10m\n",
            gate.display()
        ),
    )
}

/// A run-now request: `schedule` once on [`HOST`].
pub fn backup_request_yaml(name: &str, schedule: &str) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Backup
metadata:
  name: {name}
spec:
  host: {HOST}
  schedule: {schedule}
"
    )
}

/// `count` files of `size` pseudo-random (incompressible) bytes under `dir`, from a fast PRNG.
pub fn random_files(dir: &Path, count: usize, size: usize) {
    fs::create_dir_all(dir).unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..count {
        let mut bytes = Vec::with_capacity(size + 8);
        while bytes.len() < size {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        bytes.truncate(size);
        fs::write(dir.join(format!("part-{i}.bin")), bytes).unwrap();
    }
}

/// The `data-state` of the fleet table's `<tr data-host="HOST">` row, from the HTML as served or
/// as Chromium dumps it.
pub fn row_state(html: &str, host: &str) -> Option<String> {
    let wanted = format!("data-host=\"{host}\"");
    html.split("<tr").skip(1).find_map(|rest| {
        let tag = &rest[..rest.find('>')?];
        if !tag.contains(&wanted) {
            return None;
        }
        let start = tag.find("data-state=\"")? + "data-state=\"".len();
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    })
}

/// HTML with the character references a server-side renderer writes turned back into text.
pub fn unescape_html(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Runs a command, killing it (SIGKILL) after `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{command:?} did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
