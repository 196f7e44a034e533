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

impl Workspace {
    /// `image-mirror run ARGS... --report report.json MAPPING`: the output and the report
    /// (`Null` when none was written).
    pub fn run_report(&self, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let out = self
            .command()
            .arg("run")
            .args(args)
            .arg("--report")
            .arg(&report)
            .arg(mapping)
            .output()
            .expect("run image-mirror");
        (out, read_report(&report))
    }
}

/// A JSON report, or `Null` when there is none to read.
pub fn read_report(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}
