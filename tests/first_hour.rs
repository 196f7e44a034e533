//! The first hour of a new user (issue 28): what retrying cannot fix fails at once, with the
//! cause and the fix in the message; numbers and words as a person writes them; the CLI's
//! help and the README agree. Each fail-fast test counts the attempts (in the report), it
//! never times them.

mod support;

use std::path::Path;

use support::cli::*;
use support::*;

/// Runs `image-mirror run ARGS... MAPPING` and checks what every fail-fast row shares: exit
/// 1, the image failed permanently after one attempt, no request tried again. Returns the
/// image's error.
fn fails_at_once(ws: &Workspace, mapping: &Path, args: &[&str]) -> String {
    let (out, report) = ws.run_report(mapping, args);
    expect_code(&out, 1);
    let image = &report["images"][0];
    assert_eq!(image["status"], "failed", "{report:#}");
    assert_eq!(image["error_kind"], "permanent", "{report:#}");
    assert_eq!(image["attempts"], 1, "{report:#}");
    assert_eq!(report["totals"]["request_retries"], 0, "{report:#}");
    assert_eq!(report["totals"]["retries"], 0, "{report:#}");
    let error = image["error"].as_str().unwrap_or_default().to_owned();
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&error), "the summary quotes it: {stdout}");
    error
}

#[test]
fn a_plain_http_registry_asked_in_tls_names_the_flag_that_fixes_it_at_once() {
    let src = Registry::start();
    seed_docker_image(&src, "team/app", "1", &[layer(281, 500)]);
    let s = src.host();
    let ws = Workspace::new();
    let mapping = ws.write("mapping", &format!("{s}/team/app:1 {s}/mirror/app:1\n"));
    let error = fails_at_once(&ws, &mapping, &[]);
    assert!(
        error.contains(&format!(
            "{s} answered plain HTTP to a TLS hello: add `--insecure-registry {s}` (or `--insecure`)"
        )),
        "{error}"
    );
    assert_eq!(src.manifest_digest("mirror/app", "1"), None);
}

#[test]
fn a_host_name_that_does_not_resolve_fails_at_once() {
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        "registry.does-not-exist.invalid/team/app:1 127.0.0.1:1/mirror/app:1\n",
    );
    let error = fails_at_once(&ws, &mapping, &[]);
    assert!(
        error.contains("registry.does-not-exist.invalid does not resolve"),
        "{error}"
    );
}

#[test]
fn a_registry_refusing_its_first_contact_fails_at_once_without_naming_a_scheme_it_did_not_use() {
    let src = Registry::start();
    seed_docker_image(&src, "team/app", "1", &[layer(282, 500)]);
    let ws = Workspace::new();
    // Nothing listens on port 1: the destination refuses from its first contact.
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 127.0.0.1:1/mirror/app:1\n", src.host()),
    );
    let error = fails_at_once(&ws, &mapping, &["--insecure"]);
    assert!(
        error.contains("connection refused (is a registry running at 127.0.0.1:1, on this port?)"),
        "{error}"
    );
    // With --insecure the scheme was never settled: no https:// URL pretends it was.
    assert!(!error.contains("https://"), "{error}");
}

#[test]
fn a_run_whose_requests_all_failed_says_none_was_answered() {
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        "127.0.0.1:1/team/app:1 127.0.0.1:2/mirror/app:1\n",
    );
    let (out, _) = ws.run_report(&mapping, &[]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(", none answered"), "{stdout}");
    assert!(!stdout.contains("in 0 round trips"), "{stdout}");
}

/// A retried request says what it waits for, in words and numbers a person writes: the
/// cause, which retry of how many, and the wait ("retry 1 of 2 in 250 ms").
#[test]
fn a_retry_says_what_it_waits_for_and_how_long_as_a_person_writes_it() {
    let src = Registry::start();
    let s = src.host();
    let proxy = support::proxy::FaultProxy::start(&s);
    // The first request for the image's manifest (HEAD or GET) answers 503 once.
    proxy.add(
        "*",
        "/manifests/1",
        1,
        support::proxy::Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    seed_docker_image(&src, "team/app", "1", &[layer(283, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {s}/mirror/app:1\n", proxy.host()),
    );
    let out = ws
        .command()
        .env("RUST_LOG", "info")
        .args([
            "run",
            "--insecure",
            "--request-attempts=3",
            "--max-retry-wait=1",
        ])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("503 Service Unavailable, retry 1 of 2 in "))
        .unwrap_or_else(|| panic!("no retry line: {stderr}"));
    let after = "503 Service Unavailable, retry 1 of 2 in ";
    let wait = &line[line.find(after).map_or(0, |i| i + after.len())..];
    // Equal jitter of the first 250 ms wait: between 125 and 250 ms, in whole milliseconds.
    let ms: u64 = wait
        .split_once(" ms")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("not in whole ms: {line}"));
    assert!((125..=250).contains(&ms), "{line}");
}

#[test]
fn a_listing_failure_names_the_line_as_written() {
    let src = Registry::start();
    let s = src.host();
    let ws = Workspace::new();
    let mapping = ws.write("mapping", &format!("{s}/team/gone:v1.* {s}/mirror/gone\n"));
    let (out, report) = ws.run_report(&mapping, &[&format!("--insecure-registry={s}")]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{s}/team/gone:v1.* (")) && stdout.contains("): listing failed"),
        "{stdout}"
    );
    assert_eq!(
        report["listing_failures"][0]["source"],
        format!("{s}/team/gone:v1.*"),
        "{report:#}"
    );
}

#[test]
fn one_entry_that_cannot_be_translated_is_one_entry() {
    let ws = Workspace::new();
    let file = ws.write(
        "sync.yaml",
        "registry.example.com:\n  images-by-semver:\n    alpine: \"1.2 || 2.0\"\n",
    );
    let out = ws
        .command()
        .args([
            "import",
            "--from",
            "skopeo-sync",
            "--to",
            "mirror.example.com/x",
        ])
        .arg(&file)
        .output()
        .expect("run import");
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 entry could not be translated; nothing was printed"),
        "{stderr}"
    );
}

/// While a retry waits, the progress line says for what: a line that does not move is no
/// longer a mystery.
#[test]
fn the_progress_line_says_what_a_retry_waits_for() {
    let src = Registry::start();
    let s = src.host();
    let proxy = support::proxy::FaultProxy::start(&s);
    proxy.add(
        "*",
        "/manifests/1",
        1,
        support::proxy::Fault::Status {
            code: 503,
            retry_after: Some("3".into()),
        },
    );
    seed_docker_image(&src, "team/app", "1", &[layer(284, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {s}/mirror/app:1\n", proxy.host()),
    );
    let out = ws
        .command()
        .env("RUST_LOG", "info")
        .args(["run", "--insecure", "--max-retry-wait=3"])
        .args(["--progress-interval=1"])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("progress: 0/1 image")
            && l.contains("; waiting: reading manifest")
            && l.contains("503 Service Unavailable, retry 1 of ")
            && l.contains(" in 3 s")),
        "{stderr}"
    );
}
