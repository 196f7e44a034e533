//! The first hour of a new user (issue 28): what retrying cannot fix fails at once, with the
//! cause and the fix in the message; numbers and words as a person writes them; the CLI's
//! help and the README agree. Each fail-fast test counts the attempts (in the report), it
//! never times them.

use std::path::{Path, PathBuf};

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

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

/// Seeds `team/app:1` (from `seed`) in a registry behind a proxy whose first request for the
/// manifest (HEAD or GET) answers 503 once, with `retry_after`; writes a mapping in `ws` that
/// reads through the proxy into `mirror/app:1`. Returns the registry, the proxy and the mapping.
fn app_behind_one_503(
    ws: &Workspace,
    seed: u64,
    retry_after: Option<&str>,
) -> (Registry, FaultProxy, PathBuf) {
    let src = Registry::start();
    let s = src.host();
    let proxy = FaultProxy::start(&s);
    proxy.add(
        "*",
        "/manifests/1",
        1,
        Fault::Status {
            code: 503,
            retry_after: retry_after.map(str::to_owned),
        },
    );
    seed_docker_image(&src, "team/app", "1", &[layer(seed, 500)]);
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {s}/mirror/app:1\n", proxy.host()),
    );
    (src, proxy, mapping)
}

/// A retried request says what it waits for, in words and numbers a person writes: the
/// cause, which retry of how many, and the wait ("retry 1 of 2 in 250 ms").
#[test]
fn a_retry_says_what_it_waits_for_and_how_long_as_a_person_writes_it() {
    let ws = Workspace::new();
    let (_src, _proxy, mapping) = app_behind_one_503(&ws, 283, None);
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
    let out = ws.import("skopeo-sync", Some("mirror.example.com/x"), &file);
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
    let ws = Workspace::new();
    let (_src, _proxy, mapping) = app_behind_one_503(&ws, 284, Some("3"));
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

/// The long flags a block of text names (`--max-per-registry`, …), `--help` and
/// `--version` aside.
fn long_flags(text: &str) -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if !name.is_empty() && name != "help" && name != "version" {
            flags.insert(format!("--{name}"));
        }
    }
    flags
}

/// The flags `image-mirror COMMAND --help` lists (the option lines only, not its prose).
fn help_flags(command: &str) -> std::collections::BTreeSet<String> {
    let ws = Workspace::new();
    let out = ws
        .command()
        .args([command, "--help"])
        .output()
        .expect("run --help");
    expect_code(&out, 0);
    let listed: String = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-f, ")
                .or(l.strip_prefix("-a, "))
                .unwrap_or(l);
            l.starts_with("--")
                .then(|| l.split_whitespace().next().unwrap_or_default().to_owned())
        })
        .collect::<Vec<_>>()
        .join(" ");
    long_flags(&listed)
}

/// The README's text.
fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The README's synopsis (the first block under "## Commands"), per command: every line from
/// `image-mirror COMMAND` to the next command's.
fn readme_synopsis() -> std::collections::BTreeMap<String, String> {
    let readme = readme();
    let commands = &readme[readme.find("\n## Commands").expect("## Commands")..];
    let block = commands
        .split("```")
        .nth(1)
        .expect("a code block under ## Commands");
    let mut synopsis = std::collections::BTreeMap::<String, String>::new();
    let mut current = String::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("image-mirror ") {
            current = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        synopsis.entry(current.clone()).or_default().push_str(line);
        synopsis.entry(current.clone()).or_default().push('\n');
    }
    synopsis
}

/// One source of truth: the README's synopsis names exactly the flags `--help` lists, per
/// command (the global `--log-format` and `--color` once, under `run`; oc's no-op flags in
/// the prose under it).
#[test]
fn the_readme_synopsis_and_help_name_the_same_flags() {
    let synopsis = readme_synopsis();
    let globals: std::collections::BTreeSet<String> =
        ["--log-format", "--color"].map(String::from).into();
    let oc_only: std::collections::BTreeSet<String> = [
        "--keep-manifest-list",
        "--skip-multiple-scopes",
        "--continue-on-error",
    ]
    .map(String::from)
    .into();
    for command in ["check", "run", "verify", "import"] {
        let line = synopsis.get(command).map_or("", String::as_str);
        let mut written = long_flags(line);
        // The synopsis writes oc's short forms.
        for (short, long) in [("-f ", "--filename"), ("-a ", "--registry-config")] {
            if line.contains(&format!(" {short}")) || line.contains(&format!("[{short}")) {
                written.insert(long.to_owned());
            }
        }
        let mut listed = help_flags(command);
        listed.retain(|f| !oc_only.contains(f) && (command == "run" || !globals.contains(f)));
        assert_eq!(
            written, listed,
            "README's synopsis of `{command}` (left) and its --help (right)"
        );
    }
    let readme = readme();
    for flag in &oc_only {
        assert!(
            readme.contains(flag.as_str()),
            "{flag} is not in the README"
        );
    }
}

#[test]
fn run_h_fits_a_screen_and_help_keeps_the_detail() {
    let ws = Workspace::new();
    let short = ws.command().args(["run", "-h"]).output().expect("run -h");
    expect_code(&short, 0);
    let short = text(&short.stdout);
    assert!(
        short.lines().count() < 60,
        "{} lines:\n{short}",
        short.lines().count()
    );
    for heading in [
        "Mapping files:",
        "Registries:",
        "Retries and timeouts:",
        "Reports:",
    ] {
        assert!(short.contains(heading), "{short}");
    }
    let long = ws
        .command()
        .args(["run", "--help"])
        .output()
        .expect("run --help");
    let long = text(&long.stdout);
    assert!(long.lines().count() > short.lines().count());
    // The detail of a flag is in --help, and oc's no-op flags too.
    assert!(
        long.contains("Retry-After") && long.contains("--keep-manifest-list"),
        "{long}"
    );
    assert!(!short.contains("--keep-manifest-list"), "{short}");
    // verify reads only: its limit does not speak of writes.
    let verify = ws
        .command()
        .args(["verify", "--help"])
        .output()
        .expect("verify --help");
    let verify = text(&verify.stdout);
    let limit = verify
        .split("--max-per-registry")
        .nth(1)
        .and_then(|rest| rest.split("--max-checks").next())
        .unwrap_or_default();
    assert!(!limit.is_empty() && !limit.contains("write"), "{verify}");
}

#[test]
fn verify_given_a_mapping_file_without_f_asks_whether_f_was_meant() {
    let ws = Workspace::new();
    let mapping = ws.write("mapping_file", "quay.io/a/b:1 127.0.0.1:1/b:1\n");
    let out = ws
        .command()
        .arg("verify")
        .arg(&mapping)
        .output()
        .expect("run verify");
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    let shown = p(&mapping);
    assert!(
        stderr.contains(&format!(
            "{shown} is a file: did you mean `verify -f {shown}`?"
        )),
        "{stderr}"
    );
}

#[test]
fn check_with_no_path_and_no_default_directory_says_no_path_was_given() {
    if Path::new("/etc/imagemirror").exists() {
        return; // The default exists on this machine: nothing to say.
    }
    let ws = Workspace::new();
    let out = ws.command().arg("check").output().expect("run check");
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no path given and the default /etc/imagemirror does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_certificate_nobody_vouches_for_fails_at_once_naming_where_its_ca_goes() {
    let ca = crate::support::tls::TestCa::new("first-hour CA nobody trusts");
    let src = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let dst = Registry::start();
    let (t, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(285, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write("mapping", &format!("{t}/team/app:1 {d}/mirror/app:1\n"));
    let error = fails_at_once(&ws, &mapping, &[&format!("--insecure-registry={d}")]);
    assert!(
        error.contains(&format!("the certificate of {t} is not trusted"))
            && error.contains("ca.crt"),
        "{error}"
    );
}

/// A mapping directory with no line in it (an emptied ConfigMap, a wrong path) is not an
/// error — a job may have nothing to mirror yet — but it is said, naming where it looked.
#[test]
fn a_mapping_directory_with_no_line_says_so() {
    let ws = Workspace::new();
    let empty = ws.path("mappings");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::write(empty.join("mapping_a"), "# nothing yet\n").expect("write");
    let out = ws
        .command()
        .args(["run", "--insecure"])
        .arg(&empty)
        .output()
        .expect("run");
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: no mapping line in {}: nothing to do",
            empty.display()
        )),
        "{stderr}"
    );
}

/// A rehearsal job's `DRY_RUN=true` meeting a stray `dry_run=false` is bad input (exit 2,
/// nothing contacted), never a push.
#[test]
fn dry_run_variables_that_disagree_stop_the_run() {
    let dst = Registry::start();
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {}/app:1\n", dst.host(), dst.host()),
    );
    let mark = dst.mark();
    let out = ws
        .command()
        .args(["run", "--insecure"])
        .arg(&mapping)
        .env("dry_run", "false")
        .env("DRY_RUN", "true")
        .output()
        .expect("run");
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("dry_run=false and DRY_RUN=true disagree"),
        "{stderr}"
    );
    assert!(
        dst.tool_requests_since(mark).is_empty(),
        "nothing contacted"
    );
}
