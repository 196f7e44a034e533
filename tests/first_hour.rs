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
fn a_registry_refusing_its_first_contact_fails_at_once_without_naming_a_scheme_it_did_not_use()
{
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
        error.contains("connection refused: is a registry running at 127.0.0.1:1"),
        "{error}"
    );
    // With --insecure the scheme was never settled: no https:// URL pretends it was.
    assert!(!error.contains("https://"), "{error}");
}
