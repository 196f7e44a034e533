//! Running the image-mirror binary from tests: no ambient configuration leaks in (credentials,
//! dry-run, prefix or shard settings of the machine), and a hang fails the test instead of
//! running into CI's time limit.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Environment variables the binary reads that a developer's or CI's shell may have set.
pub const AMBIENT_ENV: [&str; 7] = [
    "ARTIFACTS",
    "NO_COLOR",
    "dry_run",
    "DRY_RUN",
    "REGISTRY_AUTH_FILE",
    "MAPPING_FILE_PREFIX",
    "JOB_COMPLETION_INDEX",
];

/// The longest a single run of the binary may take in a test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// `image-mirror` with a clean environment; `config_dir` stands in for `$DOCKER_CONFIG`
/// (empty: anonymous access). Logs at `warn`.
pub fn image_mirror(config_dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("image-mirror").expect("binary");
    for name in AMBIENT_ENV {
        cmd.env_remove(name);
    }
    cmd.env("DOCKER_CONFIG", config_dir)
        .env("RUST_LOG", "warn")
        .timeout(RUN_TIMEOUT);
    cmd
}

/// The same, as a std Command for tests that signal or time the process themselves.
pub fn image_mirror_process(config_dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("image-mirror"));
    for name in AMBIENT_ENV {
        cmd.env_remove(name);
    }
    cmd.env("DOCKER_CONFIG", config_dir).env("RUST_LOG", "warn");
    cmd
}

/// Sends `signal` (`TERM`, `INT`, `STOP`, `CONT`) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Stops process `pid` (SIGSTOP) and returns once every thread of it is stopped: from then
/// on it sends nothing until SIGCONT.
pub fn freeze(pid: u32) {
    send_signal(pid, "STOP");
    let stopped = |stat: &str| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
        let all_stopped = tasks.filter_map(Result::ok).all(|task| {
            std::fs::read_to_string(task.path().join("stat")).map_or(true, |s| stopped(&s))
        });
        if all_stopped {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code, showing both output streams when it is not the expected one.
pub fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A temporary directory for one test's files (mapping files, reports, auth files, certs.d).
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to the file `name` in the workspace; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// [`image_mirror`] with the workspace as `$DOCKER_CONFIG` (it holds no config.json
    /// unless a test writes one: anonymous access).
    pub fn command(&self) -> assert_cmd::Command {
        image_mirror(self.dir.path())
    }
}

/// Flags for runs through fault-injecting proxies: plain HTTP, and short waits, so that a
/// fault costs little time (each area adds the read timeout its faults need).
pub const FAST: &[&str] = &["--insecure", "--max-retry-wait=2", "--connect-timeout=2"];

impl Workspace {
    /// Writes the mapping file `mapping` with `text`; returns its path.
    pub fn mapping(&self, text: &str) -> PathBuf {
        self.write("mapping", text)
    }

    /// `image-mirror run ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    /// `image-mirror run ARGS...` with `env` on top.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command();
        cmd.arg("run").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run image-mirror")
    }

    /// `image-mirror run ARGS... --report report.json MAPPING`: the output and the report
    /// (`Null` when none was written).
    pub fn run_report(&self, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
        self.report_run(self.command(), mapping, args)
    }

    /// [`Workspace::run_report`] with `--insecure` first: the test registries speak plain
    /// HTTP.
    pub fn run_insecure(&self, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
        self.run_report(mapping, &[&["--insecure"], args].concat())
    }

    /// [`Workspace::run_report`] with `env` on top and the workspace's `certs.d` (empty
    /// unless a test fills it) as the only certificate directory.
    pub fn run_report_with_env(
        &self,
        mapping: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, serde_json::Value) {
        let mut cmd = self.command();
        cmd.env("IMAGE_MIRROR_CERTS_DIRS", self.path("certs.d"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.report_run(cmd, mapping, args)
    }

    fn report_run(
        &self,
        mut cmd: assert_cmd::Command,
        mapping: &Path,
        args: &[&str],
    ) -> (Output, serde_json::Value) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let out = cmd
            .arg("run")
            .args(args)
            .arg("--report")
            .arg(&report)
            .arg(mapping)
            .output()
            .expect("run image-mirror");
        (out, read_report(&report))
    }

    /// `image-mirror run --insecure --policy POLICY -f MAPPING --report report.json EXTRA...`:
    /// the exit code and the report (which must have been written).
    pub fn run_with_policy(
        &self,
        mapping: &Path,
        policy: &Path,
        extra: &[&str],
    ) -> (Option<i32>, serde_json::Value) {
        let report = self.path("report.json");
        let out = self
            .command()
            .args(["run", "--insecure", "--policy", p(policy), "-f", p(mapping)])
            .args(["--report", p(&report)])
            .args(extra)
            .output()
            .expect("run");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report json");
        (out.status.code(), json)
    }

    /// `image-mirror run --insecure --policy POLICY -f MAPPING` with a policy it cannot enforce:
    /// expects exit 2 and returns stderr.
    pub fn run_with_bad_policy(&self, mapping: &Path, policy: &Path) -> String {
        let out = self
            .command()
            .args(["run", "--insecure", "--policy", p(policy), "-f", p(mapping)])
            .output()
            .expect("run");
        expect_code(&out, 2);
        text(&out.stderr)
    }

    /// `image-mirror import --from FORMAT [--to TO] FILE`.
    pub fn import(&self, format: &str, to: Option<&str>, file: &Path) -> Output {
        let mut import = self.command();
        import.args(["import", "--from", format]);
        if let Some(to) = to {
            import.args(["--to", to]);
        }
        import.arg(file).output().expect("run import")
    }

    /// `image-mirror verify --insecure REPO...`: exit code and stdout.
    pub fn verify(&self, repos: &[String]) -> (i32, String) {
        let out = self
            .command()
            .arg("verify")
            .arg("--insecure")
            .args(repos)
            .output()
            .expect("run verify");
        (out.status.code().unwrap_or(-1), text(&out.stdout))
    }

    /// Every listed repository verifies complete (`image-mirror verify` exits 0).
    pub fn assert_verified(&self, repos: &[String]) {
        let (code, out) = self.verify(repos);
        assert_eq!(code, 0, "verify: {out}");
    }
}

/// `totals.NAME` of a JSON report; panics (showing the report) when it is missing.
pub fn total(report: &serde_json::Value, name: &str) -> u64 {
    report["totals"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{name} in {report:#}"))
}

/// The report's `images`; panics (showing the report) when there are none.
pub fn images(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in the report: {report:#}"))
}

/// The report's image whose `destination` is `destination`; panics (showing the report) when
/// there is none.
pub fn image_by_destination<'a>(
    report: &'a serde_json::Value,
    destination: &str,
) -> &'a serde_json::Value {
    report["images"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["destination"] == destination))
        .unwrap_or_else(|| panic!("{destination} not in {report:#}"))
}

/// stdout and stderr of a run, one after the other.
pub fn all_output(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

/// A JSON report, or `Null` when there is none to read.
pub fn read_report(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}
