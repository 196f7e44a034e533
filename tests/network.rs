//! How image-mirror speaks to registries on a real network's terms: HTTP/2 where the
//! registry offers it over TLS, fewer requests in flight when a registry answers 429, and
//! never more in flight than `--max-per-registry` and `--max-checks-per-registry` allow
//! (measured at proxies).

use std::time::Duration;

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

/// Over TLS, distribution offers HTTP/2 (ALPN): checks, manifests and tag lists go that way,
/// multiplexed; blob bodies go over HTTP/1.1, a connection each (multiplexed they would share
/// one flow-control window), and so does the first contact (`GET /v2/`, whose TLS refusals
/// HTTP/1.1 reads back); plain HTTP stays HTTP/1.1.
#[test]
fn http2_is_spoken_where_the_registry_offers_it() {
    let ca = crate::support::tls::TestCa::new("image-mirror test registry CA");
    let tls_reg = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let plain = Registry::start();
    let img = seed_docker_image(&plain, "team/app", "1", &[layer(80, 3000), layer(81, 5000)]);
    let ws = Workspace::new();
    let dir = ws.path("certs.d").join(tls_reg.host());
    std::fs::create_dir_all(&dir).expect("certs.d dir");
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("write CA");
    let mapping = ws.write(
        "m",
        &format!(
            "{}/team/app:1 {}/mirror/app:1\n",
            plain.host(),
            tls_reg.host()
        ),
    );
    let out = ws
        .command()
        .env("IMAGE_MIRROR_CERTS_DIRS", ws.path("certs.d"))
        .args(["run", &format!("--insecure-registry={}", plain.host())])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    assert_eq!(
        tls_reg.manifest_digest("mirror/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    // The access-log lines of image-mirror's own requests.
    let ours = |log: String| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("\"image-mirror/"))
            .map(str::to_owned)
            .collect()
    };
    let tls_lines = ours(tls_reg.access_log());
    let (uploads, others): (Vec<&String>, Vec<&String>) = tls_lines
        .iter()
        .filter(|l| !l.contains("\"GET /v2/ "))
        .partition(|l| l.contains("/blobs/uploads/"));
    assert!(
        tls_lines
            .iter()
            .any(|l| l.contains("\"GET /v2/ HTTP/1.1\"")),
        "{tls_lines:#?}"
    );
    // The HTTP/2 connection is opened at the start, beside the first contact, by a
    // `GET /v2/` of its own (one round trip less before the first check).
    assert!(
        tls_lines
            .iter()
            .any(|l| l.contains("\"GET /v2/ HTTP/2.0\"")),
        "{tls_lines:#?}"
    );
    assert!(
        !uploads.is_empty() && uploads.iter().all(|l| l.contains(" HTTP/1.1\"")),
        "{uploads:#?}"
    );
    assert!(
        others.len() >= 2 && others.iter().all(|l| l.contains(" HTTP/2.0\"")),
        "{others:#?}"
    );
    let plain_lines = ours(plain.access_log());
    assert!(
        !plain_lines.is_empty() && plain_lines.iter().all(|l| l.contains(" HTTP/1.1\"")),
        "{plain_lines:#?}"
    );
}

/// A registry that answers a storm of 429s gets fewer requests at once (said once per
/// change in the log), and the run still completes.
#[test]
fn a_429_storm_lowers_concurrency_and_the_run_completes() {
    let src = Registry::start();
    let dst = Registry::start();
    let mut images = Vec::new();
    for i in 0..8 {
        images.push(seed_docker_image(
            &src,
            "team/app",
            &format!("v{i}"),
            &[layer(90 + i, 1000)],
        ));
    }
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "HEAD",
        "/manifests/",
        6,
        Fault::Status {
            code: 429,
            retry_after: Some("0".into()),
        },
    );
    let ws = Workspace::new();
    // A destination that holds the tags (an older image), so that the source is asked with
    // HEADs: tags the destination does not list are copied without asking.
    for i in 0..8 {
        seed_docker_image(&dst, "mirror/app", &format!("v{i}"), &[layer(99, 100)]);
    }
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:v* {}/mirror/app\n", proxy.host(), dst.host()),
    );
    let out = ws
        .command()
        .args(["run", "--insecure", "--max-retry-wait=1"])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    assert_eq!(proxy.injected(), 6);
    let stderr = text(&out.stderr);
    let lowered = stderr
        .lines()
        .filter(|l| l.contains("answers 429: fewer checks at once"))
        .count();
    // Once per change, never more than once per 429 (six of them).
    assert!((1..=6).contains(&lowered), "{stderr}");
    for (i, image) in images.iter().enumerate() {
        assert_eq!(
            dst.manifest_digest("mirror/app", &format!("v{i}"))
                .as_deref(),
            Some(image.digest.as_str())
        );
    }
}

/// A tag the destination repository does not list is copied without asking for it: the
/// destination's tags are listed once per repository, then only the tags it holds are
/// asked for by a HEAD (at both ends).
#[test]
fn only_tags_the_destination_holds_are_asked_for() {
    let src = Registry::start();
    let dst = Registry::start();
    for i in 0..4 {
        seed_docker_image(&src, "team/app", &format!("v{i}"), &[layer(120 + i, 800)]);
    }
    // The destination holds v0 (the same image) and an unrelated tag.
    seed_docker_image(&dst, "mirror/app", "v0", &[layer(120, 800)]);
    seed_docker_image(&dst, "mirror/app", "other", &[layer(129, 100)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:v* {}/mirror/app\n", src.host(), dst.host()),
    );
    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let (out, report) = ws.run_report(&mapping, &["--insecure"]);
    expect_code(&out, 0);
    assert_eq!(report["totals"]["copied"], 3, "{report:#}");
    assert_eq!(report["totals"]["unchanged"], 1, "{report:#}");
    let heads = |requests: Vec<Request>| -> Vec<String> {
        requests
            .into_iter()
            .filter(|r| r.method == "HEAD" && r.path().contains("/manifests/"))
            .map(|r| r.path().to_owned())
            .collect()
    };
    assert_eq!(
        heads(dst.tool_requests_since(dst_mark)),
        ["/v2/mirror/app/manifests/v0"]
    );
    assert_eq!(
        heads(src.tool_requests_since(src_mark)),
        ["/v2/team/app/manifests/v0"]
    );
    let listings = dst
        .tool_requests_since(dst_mark)
        .into_iter()
        .filter(|r| r.path().ends_with("/tags/list"))
        .count();
    assert_eq!(listings, 1, "the destination's tags are listed once");
}

/// An unchanged run waits for a few round trips, however many tags it checks: the checks
/// go out together. The report counts the round trips one after another; with one check at
/// a time they are one per tag.
#[test]
fn an_unchanged_run_waits_for_a_few_round_trips() {
    let src = Registry::start();
    let dst = Registry::start();
    for i in 0..24 {
        seed_docker_image(&src, "team/app", &format!("v{i}"), &[layer(140, 500)]);
    }
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:v* {}/mirror/app\n", src.host(), dst.host()),
    );
    let (out, _) = ws.run_report(&mapping, &["--insecure"]);
    expect_code(&out, 0);
    let (out, report) = ws.run_report(&mapping, &["--insecure"]);
    expect_code(&out, 0);
    assert_eq!(report["totals"]["unchanged"], 24, "{report:#}");
    let trips = report["totals"]["round_trips"].as_u64().unwrap_or(0);
    let requests = report["totals"]["requests"].as_u64().unwrap_or(0);
    // Per registry: the scheme probe, the first contact, the tag list, one wave of HEADs.
    assert!((1..=8).contains(&trips), "{trips} round trips: {report:#}");
    assert!(requests >= 48, "a HEAD per tag at each end: {report:#}");
    let summary = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        summary.contains(&format!(
            "{requests} requests in {trips} round trips one after another"
        )),
        "{summary}"
    );
    let (out, report) = ws.run_report(&mapping, &["--insecure", "--max-checks-per-registry=1"]);
    expect_code(&out, 0);
    let one_at_a_time = report["totals"]["round_trips"].as_u64().unwrap_or(0);
    assert!(
        one_at_a_time >= 24,
        "{one_at_a_time} round trips: {report:#}"
    );
}

/// Seeds `team/{name}{i}:1` for i in 0..12 in `src` (layers of 1000 and 20,000 bytes from
/// seeds `seed + i` and `seed + 100 + i`); returns the mapping from `s` to `{d}/{name}{i}:1`.
fn seed_twelve(src: &Registry, name: &str, seed: u64, s: &str, d: &str) -> String {
    let mut mapping = String::new();
    for i in 0..12 {
        seed_docker_image(
            src,
            &format!("team/{name}{i}"),
            "1",
            &[layer(seed + i, 1000), layer(seed + 100 + i, 20_000)],
        );
        mapping.push_str(&format!("{s}/team/{name}{i}:1 {d}/{name}{i}:1\n"));
    }
    mapping
}

/// Runs `mapping` with `--max-per-registry=3 --max-checks-per-registry=1`, expects exit 0 and
/// every `{name}{i}:1` of [`seed_twelve`] complete in `dst`.
fn mirror_twelve_bounded(mapping: &str, dst: &Registry, name: &str) {
    let ws = Workspace::new();
    let file = ws.write("m", mapping);
    let (out, _) = ws.run_report(
        &file,
        &[
            "--insecure",
            "--max-per-registry=3",
            "--max-checks-per-registry=1",
        ],
    );
    expect_code(&out, 0);
    for i in 0..12 {
        dst.assert_complete(&format!("{name}{i}"), "1");
    }
}

/// "`--max-per-registry N` for transfers and writes, `--max-checks-per-registry M` for
/// checks, reads and lists": never more than N + M requests in flight at a registry,
/// measured at proxies in front of the source and the destination; and more than M are
/// reached (the transfers' bound is what holds the run back).
#[test]
fn max_per_registry_bounds_the_requests_in_flight() {
    let src = Registry::start();
    let dst = Registry::start();
    let src_proxy = FaultProxy::start(&src.host());
    let dst_proxy = FaultProxy::start(&dst.host());
    let (s, d) = (src_proxy.host(), dst_proxy.host());
    let mapping = seed_twelve(&src, "r", 2200, &s, &d);
    // Slow answers at the source keep requests in flight long enough to overlap.
    src_proxy.add(
        "GET",
        "/blobs/",
        24,
        Fault::Stall(Duration::from_millis(100)),
    );
    mirror_twelve_bounded(&mapping, &dst, "r");
    // The proxy counts a request until it has written the answer's last byte, and the client
    // may have read that byte and sent its next request before the proxy's count goes down:
    // one more at a boundary is the measurement, not the client (unbounded, 24 stalled blob
    // GETs would be in flight at once).
    let slack = 1;
    assert!(
        src_proxy.max_in_flight() <= 3 + 1 + slack,
        "{} in flight at the source",
        src_proxy.max_in_flight()
    );
    assert!(
        dst_proxy.max_in_flight() <= 3 + 1 + slack,
        "{} in flight at the destination",
        dst_proxy.max_in_flight()
    );
    assert!(src_proxy.max_in_flight() >= 3, "the bound was reached");
}

/// "Each registry still has at most its limit of transfers in flight", with each end's slot
/// held only for its own request: uploads whose commit answers are slow (the source's bytes
/// all read, its slot given back) still hold the destination's slots, so no more than
/// `--max-per-registry` of them wait at once.
#[test]
fn uploads_waiting_for_their_commit_hold_the_destination_slots() {
    let src = Registry::start();
    let dst = Registry::start();
    let dst_proxy = FaultProxy::start(&dst.host());
    let (s, d) = (src.host(), dst_proxy.host());
    let mapping = seed_twelve(&src, "c", 2500, &s, &d);
    // Slow commits: each blob's last PUT is answered late.
    dst_proxy.add(
        "PUT",
        "/blobs/uploads/",
        24,
        Fault::Stall(Duration::from_millis(150)),
    );
    mirror_twelve_bounded(&mapping, &dst, "c");
    // As above: one of slack for the proxy's own count at a boundary.
    assert!(
        dst_proxy.max_in_flight() <= 3 + 1 + 1,
        "{} in flight at the destination",
        dst_proxy.max_in_flight()
    );
}
