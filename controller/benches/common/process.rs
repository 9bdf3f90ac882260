//! The `holdfast controller` process a benchmark drives: the fleet it is given (one local repo,
//! hosts labelled `fleet: bench`), which binary, started on a config directory and waited for
//! until ready, its memory and CPU time read from `/proc`, killed when dropped; and how the
//! benchmarks print times.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `holdfast` binary to run: `HOLDFAST_BIN`, or the one cargo built for the benchmark.
pub fn binary() -> PathBuf {
    std::env::var_os("HOLDFAST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_holdfast")))
}

/// A temporary directory (removed when dropped, unless `KEEP_WORKSPACE` is set: then its
/// database can be read after the run) with an empty config directory (`schedules/` included)
/// and a data directory for the controller: `(root, config, data)`.
pub fn workspace(prefix: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("KEEP_WORKSPACE").is_some())
        .tempdir()
        .expect("a temporary directory");
    let config = tmp.path().join("config");
    let data = tmp.path().join("controller");
    fs::create_dir_all(config.join("schedules")).expect("config dir");
    fs::create_dir_all(&data).expect("data dir");
    (tmp, config, data)
}

/// Writes the repo (password in `root`) and `hosts`, each labelled `fleet: bench`, to `config`.
pub fn write_fleet(config: &Path, root: &Path, hosts: &[String]) {
    fs::write(root.join("password"), "bench").expect("password file");
    let repo = format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: local\nspec:\n  url: {}\n  password:\n    file: {}\n",
        root.join("repo").display(),
        root.join("password").display()
    );
    fs::write(config.join("repos.yaml"), repo).expect("repos.yaml");
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {h}\n  labels:\n    fleet: bench\nspec:\n  defaultRepo: local\n"
            )
        })
        .collect();
    fs::write(config.join("hosts.yaml"), hosts.join("---\n")).expect("hosts.yaml");
}

/// Enrolls `hosts` as a real agent would: a token from `holdfast token create` (the CLI, on the
/// controller's data directory), traded at the enroll endpoint for a credential. Four at a
/// time, or 10,000 take minutes. Returns the credentials in the order of `hosts`.
pub fn enroll(bin: &Path, data: &Path, port: u16, hosts: &[String]) -> Vec<String> {
    use protocol::{ENROLL_PATH, EnrollRequest, EnrollResponse};
    let http = ureq::Agent::new_with_config(ureq::Agent::config_builder().build());
    let one = |host: &String| -> String {
        let out = Command::new(bin)
            .args(["token", "create", host, "--data-dir"])
            .arg(data)
            .output()
            .expect("holdfast token create");
        assert!(out.status.success(), "holdfast token create {host}");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let response: EnrollResponse = http
            .post(format!("http://127.0.0.1:{port}{ENROLL_PATH}"))
            .send_json(EnrollRequest { token })
            .expect("enroll")
            .body_mut()
            .read_json()
            .expect("an enroll response");
        response.credential
    };
    let chunk = hosts.len().div_ceil(4).max(1);
    std::thread::scope(|scope| {
        let enrolling: Vec<_> = hosts
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        enrolling
            .into_iter()
            .flat_map(|t| t.join().expect("enrolled"))
            .collect()
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The controller process; killed when dropped.
pub struct Controller {
    child: Child,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl Controller {
    pub fn start(bin: &Path, config: &Path, data: &Path, port: u16, root: &Path) -> Controller {
        let log: PathBuf = root.join("controller.log");
        let child = Command::new(bin)
            .arg("controller")
            .arg("--config-dir")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("holdfast controller starts");
        let started = Instant::now();
        while ureq::get(format!("http://127.0.0.1:{port}/readyz"))
            .call()
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the controller did not become ready: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Controller { child, log }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the controller's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the controller's /proc stat");
        // Fields after the command name, which is in parentheses: state is field 3, utime 14,
        // stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .expect("a stat line");
        let field = |n: usize| -> f64 { fields[n - 3].parse().expect("a tick count") };
        (field(14) + field(15)) / clock_ticks_per_second()
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
