//! Faults of real registries, injected by a proxy ([`crate::support::proxy::FaultProxy`]) in
//! front of a real `docker-registry`: rate limits, 503s, connections cut or stalled, short and
//! corrupt bodies, a source ignoring `Range`, one blob of an image failing while its siblings
//! finish; and runs killed with SIGKILL. Each test checks the exit code and the destination
//! through the registry API, then runs `image-mirror verify` against the destination
//! registry directly (never through the proxy).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::*;
use crate::support::proxy::{Behaviour, Fault, FaultProxy};
use crate::support::*;

/// Short waits and timeouts so that every fault resolves in a second or two.
fn run(ws: &Workspace, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    ws.run_report(mapping, &[FAST, &["--read-timeout=1"], args].concat())
}

/// [`run`] with `RUST_LOG=level`.
fn run_logging(
    ws: &Workspace,
    mapping: &Path,
    args: &[&str],
    level: &str,
) -> (Output, serde_json::Value) {
    ws.run_report_with_env(
        mapping,
        &[FAST, &["--read-timeout=1"], args].concat(),
        &[("RUST_LOG", level)],
    )
}

/// A source registry with `team/app:1` (config + two layers, the second 64 KiB), a proxy in
/// front of it, and a destination registry. Returns the layer the faults aim at.
struct Setup {
    src: Registry,
    proxy: FaultProxy,
    dst: Registry,
    image: Seeded,
    big_layer: String,
}

impl Setup {
    fn new() -> Setup {
        let src = Registry::start();
        let dst = Registry::start();
        let image = seed_docker_image(
            &src,
            "team/app",
            "1",
            &[layer(1, 2000), layer(2, 64 * 1024)],
        );
        let big_layer = image.blobs[2].clone();
        assert_eq!(src.blob_size("team/app", &big_layer), Some(64 * 1024));
        let proxy = FaultProxy::start(&src.host());
        Setup {
            src,
            proxy,
            dst,
            image,
            big_layer,
        }
    }

    /// `PROXY/team/app:1 DST/app:1`
    fn mapping(&self, ws: &Workspace) -> PathBuf {
        ws.mapping(&format!(
            "{}/team/app:1 {}/app:1\n",
            self.proxy.host(),
            self.dst.host()
        ))
    }

    fn dst_repo(&self) -> Vec<String> {
        vec![format!("{}/app", self.dst.host())]
    }

    /// The destination tag is the source image, complete.
    fn assert_copied(&self, ws: &Workspace) {
        assert_eq!(
            self.dst.manifest_digest("app", "1").as_deref(),
            Some(self.image.digest.as_str())
        );
        self.dst.assert_complete("app", "1");
        ws.assert_verified(&self.dst_repo());
    }
}

#[test]
fn rate_limits_are_waited_out_as_retry_after_says_within_the_longest_wait() {
    let s = Setup::new();
    let ws = Workspace::new();
    // Retry-After: 1 is waited; Retry-After: 3600 is capped by --max-retry-wait=2.
    s.proxy.add(
        "GET",
        "/manifests/1",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
    );
    s.proxy.add(
        "GET",
        "/manifests/1",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some("3600".into()),
        },
    );
    let (out, report) = run_logging(&ws, &s.mapping(&ws), &[], "info");
    expect_code(&out, 0);
    assert_eq!(s.proxy.injected(), 2);
    assert_eq!(
        s.proxy.count("GET", "/manifests/1"),
        3,
        "asked a third time"
    );
    // The waits, as the tool logs them before sleeping: 1 s, then 2 s (capped).
    let stderr = text(&out.stderr);
    let waits: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.split_once(", retry "))
        .filter_map(|(_, w)| w.split_once(" in "))
        .map(|(_, w)| w.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    // "…: 429 Too Many Requests, retry 1 of 4 in 1 s".
    assert_eq!(waits, ["1 s", "2 s"], "{stderr}");
    assert_eq!(total(&report, "request_retries"), 2, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "no image retried: {report:#}");
    assert!(
        text(&out.stdout).contains("(2 request retries)"),
        "{}",
        text(&out.stdout)
    );
    s.assert_copied(&ws);
}

#[test]
fn service_unavailable_a_few_times_is_ridden_through() {
    let s = Setup::new();
    let ws = Workspace::new();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(1));
    s.proxy.add(
        "GET",
        &format!("/blobs/{}", s.big_layer),
        1,
        Fault::Status {
            code: 503,
            retry_after: Some(date),
        },
    );
    s.proxy.add(
        "GET",
        "/manifests/1",
        2,
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    );
    s.proxy.add(
        "GET",
        &format!("/blobs/{}", s.big_layer),
        2,
        Fault::Status {
            code: 502,
            retry_after: None,
        },
    );
    let (out, report) = run(&ws, &s.mapping(&ws), &[]);
    expect_code(&out, 0);
    assert_eq!(s.proxy.injected(), 5);
    assert_eq!(total(&report, "request_retries"), 5, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "{report:#}");
    assert_eq!(total(&report, "copied"), 1);
    s.assert_copied(&ws);
}

#[test]
fn a_registry_that_keeps_failing_costs_a_bounded_number_of_requests() {
    let s = Setup::new();
    let ws = Workspace::new();
    s.proxy.add(
        "GET",
        "/manifests/1",
        1000,
        Fault::Status {
            code: 503,
            retry_after: Some("0".into()),
        },
    );
    let (out, report) = run(
        &ws,
        &s.mapping(&ws),
        &["--request-attempts=3", "--retries=1"],
    );
    expect_code(&out, 1);
    // 3 tries per request, the image tried twice.
    assert_eq!(
        s.proxy.count("GET", "/manifests/1"),
        6,
        "{:#?}",
        s.proxy.seen()
    );
    assert_eq!(report["images"][0]["attempts"], 2, "{report:#}");
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("503"), "{error}");
    assert_eq!(s.dst.manifest_digest("app", "1"), None);
}

#[test]
fn a_blob_download_cut_midway_resumes_with_a_range_request() {
    let s = Setup::new();
    let ws = Workspace::new();
    let blob = format!("/blobs/{}", s.big_layer);
    s.proxy.add("GET", &blob, 1, Fault::CutAfter(10_000));
    s.proxy.add("GET", &blob, 1, Fault::CutAfter(20_000));
    let (out, report) = run(&ws, &s.mapping(&ws), &[]);
    expect_code(&out, 0);
    let gets = s.proxy.ranges("GET", &blob);
    assert_eq!(
        gets,
        [
            None,
            Some("bytes=10000-".to_owned()),
            Some("bytes=30000-".to_owned())
        ],
        "the second cut came 20000 bytes into the resumed answer"
    );
    assert_eq!(total(&report, "request_retries"), 2, "{report:#}");
    // One upload of the layer, not restarted.
    let puts = s
        .dst
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.uri.contains(s.big_layer.trim_start_matches("sha256:")))
        .count();
    assert_eq!(puts, 1);
    s.assert_copied(&ws);
}

#[test]
fn a_truncated_body_is_completed_not_committed_short() {
    let s = Setup::new();
    let ws = Workspace::new();
    let blob = format!("/blobs/{}", s.big_layer);
    s.proxy.add("GET", &blob, 1, Fault::ShortBody(5_000));
    let (out, _) = run(&ws, &s.mapping(&ws), &[]);
    expect_code(&out, 0);
    let ranges = s.proxy.ranges("GET", &blob);
    assert_eq!(ranges, [None, Some("bytes=5000-".to_owned())]);
    assert_eq!(s.dst.blob_size("app", &s.big_layer), Some(64 * 1024));
    s.assert_copied(&ws);
}

#[test]
fn a_flipped_byte_is_never_committed_and_the_tag_stays_as_it_was() {
    let s = Setup::new();
    let ws = Workspace::new();
    // The destination tag holds an older image, which must survive.
    let old = seed_docker_image(&s.dst, "app", "1", &[layer(9, 1000)]);
    let blob = format!("/blobs/{}", s.big_layer);
    s.proxy.add("GET", &blob, 100, Fault::FlipByte(40_000));
    let (out, report) = run(&ws, &s.mapping(&ws), &[]);
    expect_code(&out, 1);
    assert_eq!(total(&report, "retries"), 0, "corrupt data is not retried");
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("digest mismatch")
            && error.contains(&s.big_layer)
            && error.contains(&format!("{}/team/app", s.proxy.host())),
        "names the blob and the source: {error}"
    );
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
    assert_eq!(s.proxy.count("GET", &blob), 1, "read once, not retried");
    // The upload's body failed before its end: the registry has no such blob (not in the
    // repository, not in its blob store), and the tag is untouched.
    assert!(!s.dst.blob_exists("app", &s.big_layer));
    let hex = s.big_layer.trim_start_matches("sha256:");
    let stored = s
        .dst
        .dir()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    assert!(!stored.exists(), "{} was committed", stored.display());
    assert!(
        s.dst
            .dir()
            .join("data/docker/registry/v2/blobs/sha256")
            .exists(),
        "the store layout is as expected (other blobs were committed)"
    );
    assert_eq!(
        s.dst.manifest_digest("app", "1").as_deref(),
        Some(old.digest.as_str())
    );
    assert_ne!(old.digest, s.image.digest);
    ws.assert_verified(&s.dst_repo());
}

#[test]
fn a_stalled_registry_times_out_and_is_asked_again() {
    let s = Setup::new();
    let ws = Workspace::new();
    s.proxy.add(
        "GET",
        "/manifests/1",
        1,
        Fault::Stall(Duration::from_secs(6)),
    );
    s.proxy.add(
        "GET",
        &format!("/blobs/{}", s.big_layer),
        1,
        Fault::Stall(Duration::from_secs(6)),
    );
    let (out, report) = run(&ws, &s.mapping(&ws), &[]);
    expect_code(&out, 0);
    // --read-timeout=1 gives up on each stall (6 s) and asks again.
    assert_eq!(total(&report, "request_retries"), 2, "{report:#}");
    assert_eq!(s.proxy.count("GET", "/manifests/1"), 2);
    assert_eq!(total(&report, "retries"), 0, "no image retried: {report:#}");
    s.assert_copied(&ws);

    // Stalled for good: the run ends, with a timeout, instead of hanging.
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/other:1\n",
        s.proxy.host(),
        s.dst.host()
    ));
    s.proxy.add(
        "GET",
        "/manifests/1",
        100,
        Fault::Stall(Duration::from_secs(3)),
    );
    let asked = s.proxy.count("GET", "/manifests/1");
    let (out, report) = run(&ws, &mapping, &["--request-attempts=2", "--retries=0"]);
    expect_code(&out, 1);
    assert_eq!(
        s.proxy.count("GET", "/manifests/1") - asked,
        2,
        "two attempts"
    );
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("timed out"), "{error}");
}

#[test]
fn a_destination_connection_dropped_mid_upload_restarts_that_blob() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(3, 32 * 1024)]);
    let proxy = FaultProxy::start(&dst.host());
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        proxy.host()
    ));
    // The first blob PUT is dropped before it reaches the registry.
    proxy.add("PUT", "/blobs/uploads/", 1, Fault::Drop);
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_eq!(proxy.injected(), 1);
    assert_eq!(total(&report, "request_retries"), 1, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "{report:#}");
    // The restart opened a new upload session.
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        image.blobs.len() + 1
    );
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    dst.assert_complete("app", "1");
    ws.assert_verified(&[format!("{}/app", dst.host())]);
}

/// A registry that answers a mount with an upload session instead of mounting (as one
/// without cross-repository mounts does) gets the blob in that session: no DELETE, no
/// second POST.
#[test]
fn a_registry_that_does_not_mount_gets_the_blob_in_the_session_it_opened() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(4, 3000), layer(5, 5000)]);
    let proxy = FaultProxy::start(&dst.host());
    proxy.add("POST", "mount=", 100, Fault::StripQuery);
    let ws = Workspace::new();
    let (s, d) = (src.host(), proxy.host());
    let mapping = ws.mapping(&format!(
        "{s}/team/app:1 {d}/a/app:1\n{s}/team/app:1 {d}/b/app:1\n"
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    let blobs = image.blobs.len();
    // Each blob: uploaded into one repository; for the other, a mount that opened a
    // session, and the PUT into it.
    assert_eq!(proxy.count("POST", "mount="), blobs, "{:#?}", proxy.seen());
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2 * blobs,
        "{:#?}",
        proxy.seen()
    );
    assert_eq!(
        proxy.count("PUT", "/blobs/uploads/"),
        2 * blobs,
        "{:#?}",
        proxy.seen()
    );
    assert_eq!(
        proxy.count("DELETE", "/blobs/uploads/"),
        0,
        "{:#?}",
        proxy.seen()
    );
    assert_eq!(
        total(&report, "blobs_uploaded"),
        2 * blobs as u64,
        "{report:#}"
    );
    for repo in ["a/app", "b/app"] {
        assert_eq!(
            dst.manifest_digest(repo, "1").as_deref(),
            Some(image.digest.as_str())
        );
        dst.assert_complete(repo, "1");
    }
    ws.assert_verified(&[
        format!("{}/a/app", dst.host()),
        format!("{}/b/app", dst.host()),
    ]);
}

#[test]
fn permanent_failures_fail_at_once_with_the_registrys_words() {
    let s = Setup::new();
    let ws = Workspace::new();
    // A missing source tag: 404, no retry of any kind (default --retries=2).
    let mapping = ws.mapping(&format!(
        "{}/team/app:missing {}/app:missing\n",
        s.src.host(),
        s.dst.host()
    ));
    let mark = s.src.mark();
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 1);
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
    assert_eq!(total(&report, "request_retries"), 0);
    assert_eq!(total(&report, "retries"), 0);
    let asked: Vec<_> = s
        .src
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.path().ends_with("/manifests/missing"))
        .collect();
    assert_eq!(asked.len(), 1, "asked once: {asked:#?}");
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("MANIFEST_UNKNOWN"), "{error}");

    // A destination that rejects the manifest (400): one try, the registry's code shown.
    let proxy = FaultProxy::start(&s.dst.host());
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        s.src.host(),
        proxy.host()
    ));
    proxy.add(
        "PUT",
        "/manifests/1",
        100,
        Fault::Status {
            code: 400,
            retry_after: None,
        },
    );
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 1);
    assert_eq!(proxy.count("PUT", "/manifests/1"), 1);
    assert_eq!(report["images"][0]["attempts"], 1, "{report:#}");
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("400") && error.contains("INJECTED"),
        "{error}"
    );
    assert_eq!(s.dst.manifest_digest("app", "1"), None, "no tag written");
}

/// Runs killed with SIGKILL mid-run: each killed run reads the source through a proxy that
/// holds one layer of `team/c:v3` (so it cannot finish) and writes through a proxy that counts
/// requests in flight; it is killed once `k` tags are done at the destination (a different
/// `k` each round), and looked at once the destination has answered every request it got.
#[test]
fn runs_killed_with_sigkill_mid_run_complete_when_started_again() {
    let src = Registry::start();
    let repos = ["a", "b", "c"];
    let mut lines = String::new();
    let mut expected = Vec::new();
    let mut last_layer = String::new();
    for (r, repo) in repos.iter().enumerate() {
        for t in 0..4u64 {
            let seed = 100 * r as u64 + t;
            let image = seed_docker_image(
                &src,
                &format!("team/{repo}"),
                &format!("v{t}"),
                &[
                    layer(1000 + r as u64, 48 * 1024),
                    layer(seed, 96 * 1024),
                    layer(seed + 50, 8 * 1024),
                ],
            );
            last_layer = image.blobs[2].clone();
            expected.push((repo.to_string(), format!("v{t}")));
        }
        // An index too: its children must be complete before it is tagged.
        seed_oci_index(
            &src,
            &format!("team/{repo}"),
            "vmulti",
            &[("linux", "amd64"), ("linux", "arm64")],
            500 + r as u64,
        );
        expected.push((repo.to_string(), "vmulti".to_owned()));
        lines.push_str(&format!("SRC/team/{repo}:v* DST/{repo}\n"));
    }
    let held = FaultProxy::start(&src.host());
    held.add(
        "GET",
        &format!("/team/c/blobs/{last_layer}"),
        usize::MAX,
        Fault::HoldUntilAnswered("never asked".to_owned()),
    );
    let ws = Workspace::new();
    let tags_done = |dst: &Registry| -> Vec<String> {
        repos
            .iter()
            .flat_map(|repo| {
                dst.tags(repo)
                    .into_iter()
                    .map(move |tag| format!("{}/{repo}:{tag}", dst.host()))
            })
            .collect()
    };
    for (round, k) in [1, 3, 5, 8].into_iter().enumerate() {
        let dst = Registry::start();
        let counted = FaultProxy::start(&dst.host());
        let mapping = ws.write(
            &format!("killed-{round}"),
            &lines
                .replace("SRC", &held.host())
                .replace("DST", &counted.host()),
        );
        let mut child = image_mirror_process(ws.dir())
            .args(["run", "--insecure", "--max-per-registry=4"])
            .arg(&mapping)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start image-mirror");
        let deadline = Instant::now() + Duration::from_secs(120);
        while tags_done(&dst).len() < k {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("round {round}: the run ended ({status}) before {k} tags were done");
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {k} tags never done"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // A request the process sent whole just before it died may still be served: wait
        // until the destination has answered all of them.
        let deadline = Instant::now() + Duration::from_secs(60);
        while counted.in_flight() > 0 {
            assert!(Instant::now() < deadline, "the destination never went idle");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Killed mid-run: some tags done, not all; none points at an incomplete image.
        let present = tags_done(&dst);
        assert!(
            present.len() >= k && present.len() < expected.len(),
            "round {round}: {} of {} tags done",
            present.len(),
            expected.len()
        );
        for repo in repos {
            for tag in dst.tags(repo) {
                dst.assert_complete(repo, &tag);
            }
        }
        // Started again (straight to the registries): everything is mirrored, and what the
        // killed run finished is not copied again.
        let mapping = ws.mapping(
            &lines
                .replace("SRC", &src.host())
                .replace("DST", &dst.host()),
        );
        let (out, json) = run(&ws, &mapping, &[]);
        expect_code(&out, 0);
        for image in json["images"].as_array().expect("images") {
            let dest = image["destination"].as_str().unwrap_or("");
            let done_before = present.iter().any(|p| p == dest);
            let status = image["status"].as_str().unwrap_or("");
            assert!(
                if done_before {
                    status == "unchanged"
                } else {
                    status == "copied"
                },
                "round {round}, killed after {k} tags, done before: {done_before}: {image}"
            );
        }
        assert_eq!(total(&json, "images"), expected.len() as u64);
        for (repo, tag) in &expected {
            dst.assert_complete(repo, tag);
        }
        let repos: Vec<String> = repos
            .iter()
            .map(|r| format!("{}/{r}", dst.host()))
            .collect();
        ws.assert_verified(&repos);
    }
}

#[test]
fn a_job_without_a_terminal_logs_progress_lines() {
    let s = Setup::new();
    let ws = Workspace::new();
    // A source that takes its time: the run lasts long enough for two progress lines.
    s.proxy.add(
        "GET",
        "/manifests/1",
        1,
        Fault::Stall(Duration::from_millis(2500)),
    );
    let out = image_mirror(ws.dir())
        .env("RUST_LOG", "info")
        .args(["run", "--insecure", "--progress-interval=1"])
        .arg(s.mapping(&ws))
        .output()
        .expect("run");
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| l.contains("progress: 0/1 image (0 failed)"))
        .count();
    assert!(lines >= 2, "{stderr}");
    // Not a terminal: no progress bar drawn.
    assert!(!stderr.contains('\r'), "{stderr}");
    s.assert_copied(&ws);
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
    let (out, report) = ws.run_report_with_env(&mapping, &["--insecure", "--retries=0"], &[]);
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

/// "downloads cut mid-blob resume with `Range` … (or a whole new GET whose leading bytes are
/// dropped, for a source that ignores `Range`)".
#[test]
fn a_source_that_ignores_range_is_resumed_by_dropping_what_was_read() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(2500, 64 * 1024)]);
    let big = image.blobs[1].clone();
    let proxy = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            ignore_range: true,
            ..Default::default()
        },
    );
    proxy.add("GET", &format!("/blobs/{big}"), 1, Fault::CutAfter(20_000));
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:1 {}/app:1\n", proxy.host(), dst.host()),
    );
    let (out, report) = ws.run_report(&mapping, &["--insecure", "--retries=0"]);
    expect_code(&out, 0);
    assert_eq!(images(&report)[0]["attempts"], 1, "{report:#}");
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    dst.assert_complete("app", "1");
    let ranges = proxy.ranges("GET", &format!("/blobs/{big}"));
    assert_eq!(
        ranges,
        [None, Some("bytes=20000-".to_owned())],
        "asked from the byte reached, answered whole"
    );
}
