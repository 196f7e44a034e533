//! cosign, the real tool, run by tests against the plain-HTTP test registries: keys in a
//! test's workspace, no transparency log, no prompt. `.ci/run` fetches it (Debian trixie's
//! package) into `target/tools/cosign` and sets `COSIGN_BIN`; without it the default path and
//! then `PATH` are tried, and a missing binary fails the test with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::cli::text;

pub fn cosign_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("COSIGN_BIN") {
        return PathBuf::from(bin);
    }
    let default =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/cosign/usr/bin/cosign");
    if default.exists() {
        return default;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("cosign"))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("cosign is missing: `bash .ci/run` fetches it into target/tools/cosign (or set COSIGN_BIN)")
        })
}

/// Runs cosign in `dir` (its keys live there) against plain-HTTP registries, offline: no
/// transparency log, no prompt.
pub fn cosign(dir: &Path, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(cosign_bin());
    command
        .current_dir(dir)
        .env("COSIGN_PASSWORD", "")
        .env("COSIGN_EXPERIMENTAL", "1")
        .env("HOME", dir)
        .env("TUF_ROOT", dir.join("tuf"))
        .args(args);
    let insecure = ["--allow-insecure-registry", "--allow-http-registry"];
    if !matches!(args.first(), Some(&"generate-key-pair")) {
        command.args(insecure);
    }
    command.output().expect("run cosign")
}

pub fn cosign_ok(dir: &Path, args: &[&str]) {
    let out = cosign(dir, args);
    assert!(
        out.status.success(),
        "cosign {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

pub fn sign(dir: &Path, image: &str, extra: &[&str]) {
    let mut args = vec!["sign", "--key", "cosign.key", "--tlog-upload=false", "-y"];
    args.extend_from_slice(extra);
    args.push(image);
    cosign_ok(dir, &args);
}

pub fn verifies(dir: &Path, image: &str, extra: &[&str]) -> bool {
    let mut args = vec!["verify", "--key", "cosign.pub", "--insecure-ignore-tlog"];
    args.extend_from_slice(extra);
    args.push(image);
    cosign(dir, &args).status.success()
}

/// `cosign attest` of `image` with the key pair in `dir`: a `custom` predicate
/// (`{"built-by":"test"}`), no transparency log.
pub fn attest(dir: &Path, image: &str) {
    std::fs::write(dir.join("predicate.json"), r#"{"built-by":"test"}"#).expect("predicate");
    cosign_ok(
        dir,
        &[
            "attest",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "-y",
            "--type",
            "custom",
            "--predicate",
            "predicate.json",
            image,
        ],
    );
}
