//! Promises of the README that a plausible bug could break without any other test failing
//! (issue 18, "Tests that bite"). Each test names the behaviour it holds and fails when that
//! behaviour is broken by hand in `src/`; none measures time: they count requests, token
//! grants, attempts and bytes at the registries, the token issuer and the proxies.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use base64::Engine as _;
use support::cli::*;
use support::proxy::{Behaviour, Fault, FaultProxy, Paging};
use support::token::TokenIssuer;
use support::*;

impl Workspace {
    /// [`Workspace::run_report`] with `env` on top and the workspace's certs.d.
    fn run_with_env(
        &self,
        mapping: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, serde_json::Value) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let mut cmd = self.command();
        cmd.env("IMAGE_MIRROR_CERTS_DIRS", self.path("certs.d"))
            .arg("run")
            .args(args)
            .arg("--report")
            .arg(&report)
            .arg(mapping);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run image-mirror");
        (out, read_report(&report))
    }

    /// A `config.json` giving `user:password` for `host`; returns its path.
    fn basic_config(&self, host: &str, user: &str, password: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.write(
            &format!("config-{user}.json"),
            &format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
        )
    }
}

fn all_output(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}

fn images(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in the report: {report:#}"))
}

fn total(report: &serde_json::Value, name: &str) -> u64 {
    report["totals"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{name} in {report:#}"))
}

/// A token-auth registry whose issuer knows `pusher` (pull everywhere, push under `dst/`).
fn token_registry() -> (Registry, Arc<TokenIssuer>) {
    let issuer = TokenIssuer::start();
    issuer.user(
        "pusher",
        "pusher-pass",
        &[("*", "pull"), ("dst/", "pull,push")],
    );
    let reg = Registry::start_with(RegistryConfig {
        token: Some(issuer.clone()),
        ..Default::default()
    });
    (reg, issuer)
}

/// Row 1: `authorize_if_ours`. The registry's upload `Location`s and its tag list's `Link`s
/// name another authority (a CDN or bucket, played by a second proxy in front of the same
/// registry that records the `Authorization` it receives and forwards with a token of its
/// own): the blobs and the second page go there, without the registry token.
#[test]
fn credentials_never_follow_a_location_to_another_host() {
    let plain = Registry::start();
    let (reg, issuer) = token_registry();
    let elsewhere = FaultProxy::start_with(
        &reg.host(),
        Behaviour {
            sign_with: Some(issuer.clone()),
            paging: Some(Paging::Link(1)),
            ..Default::default()
        },
    );
    let front = FaultProxy::start_with(
        &reg.host(),
        Behaviour {
            send_elsewhere: Some(elsewhere.host()),
            paging: Some(Paging::Link(1)),
            ..Default::default()
        },
    );
    let (s, f) = (plain.host(), front.host());
    let image = seed_docker_image(&plain, "team/app", "1", &[layer(101, 3000)]);
    seed_docker_image(&reg, "src/lib", "a", &[layer(114, 300)]);
    seed_docker_image(&reg, "src/lib", "b", &[layer(115, 300)]);
    let ws = Workspace::new();
    let config = ws.basic_config(&f, "pusher", "pusher-pass");
    let mapping = ws.write(
        "m",
        &format!("{s}/team/app:1 {f}/dst/app:1\n{f}/src/lib:* {s}/copy/lib\n"),
    );
    let (out, _) = ws.run_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 0);
    assert_eq!(
        reg.manifest_digest("dst/app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    reg.assert_complete("dst/app", "1");
    assert_eq!(plain.tags("copy/lib"), ["a", "b"], "both pages were read");
    let there = elsewhere.seen();
    assert_eq!(
        there
            .iter()
            .filter(|r| r.method == "GET" && r.target.contains("/src/lib/tags/list"))
            .count(),
        1,
        "the second page came from the Link's host: {there:#?}"
    );
    assert_eq!(
        there
            .iter()
            .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
            .count(),
        image.blobs.len(),
        "every blob went to the Location's host: {there:#?}"
    );
    assert!(
        front
            .seen()
            .iter()
            .any(|r| r.method == "POST" && r.authorization.is_some()),
        "the registry itself got the token"
    );
    let leaked: Vec<_> = there.iter().filter(|r| r.authorization.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another host: {leaked:#?}"
    );
}

/// Row 2: an upload `Location`'s query (`_state`, a pre-signed URL's signature) is a
/// credential: an error on that URL names it without its query, in the log, the summary and
/// the report.
#[test]
fn url_queries_stay_out_of_errors_and_reports() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&dst.host());
    proxy.add("PUT", "/blobs/uploads/", 100, Fault::Drop);
    let (s, d) = (src.host(), proxy.host());
    seed_docker_image(&src, "team/app", "1", &[layer(102, 2000)]);
    let ws = Workspace::new();
    let mapping = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let (out, report) = ws.run_with_env(&mapping, &["--insecure", "--retries=0"], &[]);
    expect_code(&out, 1);
    let error = images(&report)[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/blobs/uploads/"),
        "the error names the upload URL: {error}"
    );
    let states: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| r.target.split_once("_state=").map(|(_, q)| q.to_owned()))
        .collect();
    assert!(!states.is_empty(), "the uploads carried a _state");
    let everything = format!("{}\n{report}", all_output(&out));
    assert!(
        !everything.contains("_state="),
        "an upload URL's query was shown: {everything}"
    );
    for state in states {
        let state = state.split('&').next().unwrap_or_default();
        assert!(!everything.contains(state), "the _state was shown");
    }
}

/// Row 3: tokens are cached per scope: a run of three tags of one repository, with shared
/// layers, copied within one token registry, asks the token service once per scope.
#[test]
fn tokens_are_asked_once_per_scope() {
    let (reg, issuer) = token_registry();
    for tag in ["1", "2", "3"] {
        seed_docker_image(
            &reg,
            "src/app",
            tag,
            &[layer(103, 2000), layer(104 + tag.len() as u64, 1000)],
        );
    }
    let plain = Registry::start();
    let t = reg.host();
    let ws = Workspace::new();
    let config = ws.basic_config(&t, "pusher", "pusher-pass");
    let mapping = ws.write(
        "m",
        &format!(
            "{t}/src/app:1 {t}/dst/app:1\n{t}/src/app:2 {t}/dst/app:2\n{t}/src/app:3 {t}/dst/app:3 {}/copy/app:3\n",
            plain.host()
        ),
    );
    let (out, _) = ws.run_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 0);
    reg.assert_complete("dst/app", "3");
    let mut per_scope: HashMap<String, usize> = HashMap::new();
    for grant in issuer.grants() {
        assert_eq!(grant.status, 200, "{grant:?}");
        *per_scope.entry(grant.requested.join(" ")).or_default() += 1;
    }
    assert!(
        per_scope.contains_key("repository:dst/app:pull,push"),
        "{per_scope:#?}"
    );
    let again: Vec<_> = per_scope.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "scopes asked more than once: {again:#?}");
}

/// Row 4 (`Link`): a registry that pages `tags/list` two tags at a time with `Link: <…>;
/// rel="next"` (as quay.io and Docker Hub do) has every page read. (`last=` paging without
/// `Link`: `run_mirror::a_wildcard_over_more_tags_than_a_page_lists_each_once`.)
#[test]
fn a_wildcard_follows_link_pagination() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/many", "t1", &[layer(105, 100)]);
    let (media_type, body) = src.manifest("team/many", "t1").expect("manifest");
    for i in 2..=5 {
        src.push_manifest("team/many", &format!("t{i}"), &media_type, &body);
    }
    let proxy = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            paging: Some(Paging::Link(2)),
            ..Default::default()
        },
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/many:* {}/many\n", proxy.host(), dst.host()),
    );
    let (out, report) = ws.run_with_env(&mapping, &["--insecure", "--dry-run"], &[]);
    expect_code(&out, 0);
    let tags: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["destination"].as_str().unwrap_or_default())
        .map(|d| d.rsplit(':').next().unwrap_or_default())
        .collect();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"], "{report:#}");
    assert!(
        images(&report)
            .iter()
            .all(|i| i["source_digest"] == image.digest.as_str())
    );
    assert_eq!(
        proxy.count("GET", "/tags/list"),
        3,
        "three pages: {:#?}",
        proxy.seen()
    );
}

/// Row 5: a wildcard whose tags cannot be listed fails the run (exit 1) with a
/// `listing_failures` entry naming the source and its line; the other images still run.
#[test]
fn a_failed_wildcard_listing_fails_the_run_and_is_reported() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        "/team/gone/tags/list",
        100,
        Fault::Status {
            code: 403,
            retry_after: None,
        },
    );
    seed_docker_image(&src, "team/gone", "1", &[layer(106, 100)]);
    let app = seed_docker_image(&src, "team/app", "1", &[layer(107, 100)]);
    let (s, x, d) = (src.host(), proxy.host(), dst.host());
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{x}/team/gone:* {d}/gone\n{s}/team/app:1 {d}/app:1\n"),
    );
    let (out, report) = ws.run_with_env(&mapping, &["--insecure"], &[]);
    expect_code(&out, 1);
    let failures = report["listing_failures"]
        .as_array()
        .unwrap_or_else(|| panic!("listing_failures: {report:#}"));
    assert_eq!(failures.len(), 1, "{report:#}");
    assert!(
        failures[0]["source"]
            .as_str()
            .is_some_and(|s| s.contains("team/gone")),
        "{report:#}"
    );
    assert_eq!(failures[0]["line"], 1, "{report:#}");
    assert!(total(&report, "failed") >= 1, "{report:#}");
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(app.digest.as_str()),
        "the other image still ran"
    );
    assert!(dst.tags("gone").is_empty());
}

/// Row 6: refused credentials fail at once: one attempt, no request tried again, a handful
/// of 401s at the registry (not one round per retry).
#[test]
fn refused_credentials_are_not_retried() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryConfig {
        htpasswd: vec![("pusher".into(), "right-pass".into())],
        ..Default::default()
    });
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(108, 1000)]);
    let ws = Workspace::new();
    let config = ws.basic_config(&d, "pusher", "wrong-pass");
    let mapping = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let mark = dst.mark();
    let (out, report) = ws.run_with_env(&mapping, &["--insecure", "-a", p(&config)], &[]);
    expect_code(&out, 1);
    let image = &images(&report)[0];
    assert_eq!(image["status"], "failed", "{report:#}");
    assert_eq!(image["attempts"], 1, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "{report:#}");
    assert_eq!(total(&report, "request_retries"), 0, "{report:#}");
    let refused = dst
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.status == 401)
        .count();
    // `GET /v2/` twice (scheme probe, challenge), then each request asked twice (once more
    // after re-reading the challenge): the tag listing and the destination's HEAD.
    assert!(refused <= 6, "{refused} refused requests");
}

/// Row 7: a source manifest named by three destinations is fetched once.
#[test]
fn a_source_manifest_is_fetched_once_for_every_destination() {
    let src = Registry::start();
    let dst = Registry::start();
    let other = Registry::start();
    let (s, d, o) = (src.host(), dst.host(), other.host());
    let image = seed_oci_index(
        &src,
        "team/app",
        "1",
        &[("linux", "amd64"), ("linux", "arm64")],
        109,
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{s}/team/app:1 {d}/a:1 {d}/b:1 {o}/c:1\n{s}/team/app:1={d}/a:2\n"),
    );
    let mark = src.mark();
    let (out, _) = ws.run_with_env(&mapping, &["--insecure"], &[]);
    expect_code(&out, 0);
    for (reg, repo, tag) in [(&dst, "a", "1"), (&dst, "b", "1"), (&other, "c", "1")] {
        assert_eq!(
            reg.manifest_digest(repo, tag).as_deref(),
            Some(image.digest.as_str())
        );
    }
    let requests = src.tool_requests_since(mark);
    let manifest_gets: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/"))
        .collect();
    // The index and its two children, once each.
    assert_eq!(
        manifest_gets.len(),
        1 + image.children.len(),
        "{manifest_gets:#?}"
    );
}

/// Row 8: with `--filter-by-os`, a second run finds the filtered list unchanged: nothing
/// written, status `unchanged`.
#[test]
fn an_unchanged_filtered_list_is_recognised_as_unchanged() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_list(
        &src,
        "team/multi",
        "1",
        &[("linux", "amd64"), ("linux", "arm64")],
        110,
    );
    let ws = Workspace::new();
    let mapping = ws.write("m", &format!("{s}/team/multi:1 {d}/multi:1\n"));
    let args = ["--insecure", "--filter-by-os=linux/amd64"];
    let (out, first) = ws.run_with_env(&mapping, &args, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&first)[0]["status"], "copied", "{first:#}");
    let written = dst.manifest_digest("multi", "1");
    let mark = dst.mark();
    let (out, second) = ws.run_with_env(&mapping, &args, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&second)[0]["status"], "unchanged", "{second:#}");
    assert_eq!(
        images(&second)[0]["source_digest"].as_str(),
        written.as_deref()
    );
    let writes = dst.tool_writes_since(mark);
    assert!(writes.is_empty(), "{writes:#?}");
}

/// Row 9: the caps on library logs (reqwest, hyper, rustls: `SECRET_SAFE_CAPS`). At
/// `RUST_LOG=trace`, with a source that redirects blob downloads to a pre-signed URL and a
/// destination over TLS, no line from those libraries is below its cap, and the URL's
/// signature appears nowhere. Every line is JSON (`--log-format json`).
#[test]
fn library_logs_stay_under_their_caps_at_trace() {
    let src = Registry::start();
    let ca = support::tls::TestCa::new("image-mirror test caps CA");
    let dst = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let signature = "SIGNATURE-NEVER-SHOWN-5e1d";
    let bucket = FaultProxy::start(&src.host());
    let front = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            redirect_blobs: Some((bucket.host(), signature.to_owned())),
            ..Default::default()
        },
    );
    let image = seed_docker_image(&src, "team/app", "1", &[layer(111, 3000)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:1 {}/app:1\n", front.host(), dst.host()),
    );
    let (out, _) = ws.run_with_env(
        &mapping,
        &["--insecure", "--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    expect_code(&out, 0);
    dst.assert_complete("app", "1");
    assert_eq!(
        bucket.count("GET", "X-Amz-Signature="),
        image.blobs.len(),
        "every blob came from the pre-signed URL"
    );
    let stderr = text(&out.stderr);
    assert!(
        !all_output(&out).contains(signature),
        "the signature leaked"
    );
    let caps: [(&str, &[&str]); 7] = [
        ("reqwest", &["DEBUG", "TRACE"]),
        ("hyper", &["DEBUG", "TRACE"]),
        ("hyper_util", &["DEBUG", "TRACE"]),
        ("h2", &["DEBUG", "TRACE"]),
        ("rustls", &["DEBUG", "TRACE"]),
        ("tokio_rustls", &["DEBUG", "TRACE"]),
        ("oci_client", &["TRACE"]),
    ];
    let mut ours = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        let target = json["target"].as_str().unwrap_or_default();
        let level = json["level"].as_str().unwrap_or_default();
        if target.starts_with("image_mirror") && level == "DEBUG" {
            ours += 1;
        }
        let crate_name = target.split("::").next().unwrap_or_default();
        for (capped, below) in caps {
            assert!(
                !(crate_name == capped && below.contains(&level)),
                "{capped} logged at {level}: {line}"
            );
        }
    }
    assert!(ours > 0, "trace logging was on: {stderr}");
}

/// Row 10: when one blob of an image fails, its sibling's copy under way finishes. The
/// source answers one layer 404 at once and holds the other until that 404 was answered.
#[test]
fn when_one_blob_fails_its_siblings_finish() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(112, 2000), layer(113, 3000)]);
    let (failing, sibling) = (image.blobs[1].clone(), image.blobs[2].clone());
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        &format!("/blobs/{failing}"),
        100,
        Fault::Status {
            code: 404,
            retry_after: None,
        },
    );
    proxy.add(
        "GET",
        &format!("/blobs/{sibling}"),
        1,
        Fault::HoldUntilAnswered(format!("/blobs/{failing}")),
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:1 {}/app:1\n", proxy.host(), dst.host()),
    );
    let (out, report) = ws.run_with_env(&mapping, &["--insecure", "--retries=0"], &[]);
    expect_code(&out, 1);
    assert_eq!(images(&report)[0]["status"], "failed", "{report:#}");
    assert!(dst.manifest_digest("app", "1").is_none());
    assert!(!dst.blob_exists("app", &failing));
    assert!(
        dst.blob_exists("app", &sibling),
        "the sibling's upload was dropped: {:#?}",
        proxy.seen()
    );
    assert!(dst.blob_exists("app", &image.blobs[0]), "the config");
}
