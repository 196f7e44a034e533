//! README claims that had no test (issue 18): SIGINT's exit code, the report's order,
//! `--max-per-registry` measured at a proxy, the rehearsal failing where the run would, a
//! source that ignores `Range`, and a dry run with an identity token. Counts, never times.

mod support;

use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use support::cli::*;
use support::proxy::{Behaviour, Fault, FaultProxy};
use support::token::TokenIssuer;
use support::*;

fn images(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in the report: {report:#}"))
}

/// "143 / 130 after SIGTERM / SIGINT": SIGINT once the first upload has started.
#[test]
fn sigint_stops_the_run_with_exit_130() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let mut mapping = String::new();
    for i in 0..8 {
        seed_docker_image(
            &src,
            &format!("team/big{i}"),
            "1",
            &[layer(2000 + i, 4 * 1024 * 1024)],
        );
        mapping.push_str(&format!("{s}/team/big{i}:1 {d}/big{i}:1\n"));
    }
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
    let report = ws.path("report.json");
    let mark = dst.mark();
    let child = image_mirror_process(ws.dir())
        .args(["run", "--insecure", "--max-per-registry=2", "--report"])
        .arg(&report)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dst
        .tool_requests_since(mark)
        .iter()
        .any(|r| r.method == "POST")
    {
        assert!(Instant::now() < deadline, "the run never started uploading");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = child.wait_with_output().expect("wait");
    expect_code(&out, 130);
    let json = read_report(&report);
    assert_eq!(json["interrupted"], true, "{json:#}");
    assert!(
        json["totals"]["cancelled"].as_u64().unwrap_or(0) > 0,
        "{json:#}"
    );
}

/// "`images`: one entry per destination tag, sorted by destination", whatever the order of
/// the mapping lines and of the copies' ends.
#[test]
fn report_images_are_sorted_by_destination() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(2100, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!(
            "{s}/team/app:1 {d}/zeta:1\n{s}/team/app:1 {d}/alpha:9\n{s}/team/app:1 {d}/mid:3 {d}/alpha:1\n"
        ),
    );
    let (out, report) = ws.run_report(&mapping, &["--insecure"]);
    expect_code(&out, 0);
    let destinations: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["destination"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = ["alpha:1", "alpha:9", "mid:3", "zeta:1"]
        .iter()
        .map(|t| format!("{d}/{t}"))
        .collect();
    assert_eq!(destinations, expected);
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
    let mut mapping = String::new();
    for i in 0..12 {
        seed_docker_image(
            &src,
            &format!("team/r{i}"),
            "1",
            &[layer(2200 + i, 1000), layer(2300 + i, 20_000)],
        );
        mapping.push_str(&format!("{s}/team/r{i}:1 {d}/r{i}:1\n"));
    }
    // Slow answers at the source keep requests in flight long enough to overlap.
    src_proxy.add(
        "GET",
        "/blobs/",
        24,
        Fault::Stall(Duration::from_millis(100)),
    );
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
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
        dst.assert_complete(&format!("r{i}"), "1");
    }
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
    let mut mapping = String::new();
    for i in 0..12 {
        seed_docker_image(
            &src,
            &format!("team/c{i}"),
            "1",
            &[layer(2500 + i, 1000), layer(2600 + i, 20_000)],
        );
        mapping.push_str(&format!("{s}/team/c{i}:1 {d}/c{i}:1\n"));
    }
    // Slow commits: each blob's last PUT is answered late.
    dst_proxy.add(
        "PUT",
        "/blobs/uploads/",
        24,
        Fault::Stall(Duration::from_millis(150)),
    );
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
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
        dst.assert_complete(&format!("c{i}"), "1");
    }
    // As above: one of slack for the proxy's own count at a boundary.
    assert!(
        dst_proxy.max_in_flight() <= 3 + 1 + 1,
        "{} in flight at the destination",
        dst_proxy.max_in_flight()
    );
}

/// "A tag that differs is fetched and parsed in a dry run too, so the rehearsal fails where
/// the run would": a source whose manifest comes back corrupt, and a missing one.
#[test]
fn the_dry_run_fails_where_the_run_would() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&src.host());
    let (s, d) = (proxy.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(2400, 500)]);
    seed_docker_image(&src, "team/ok", "1", &[layer(2401, 500)]);
    // A destination repository with a tag: the source's digest is asked first (HEAD), and
    // the manifest fetched only because it differs.
    seed_docker_image(&dst, "app", "old", &[layer(2402, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!(
            "{s}/team/app:1 {d}/app:1\n{s}/team/app:missing {d}/app:2\n{s}/team/ok:1 {d}/ok:1\n"
        ),
    );
    let mut outcomes = Vec::new();
    for dry in [true, false] {
        proxy.add("GET", "/team/app/manifests/1", 100, Fault::FlipByte(20));
        let mark = dst.mark();
        let args: &[&str] = if dry {
            &["--insecure", "--dry-run", "--retries=0"]
        } else {
            &["--insecure", "--retries=0"]
        };
        let (out, report) = ws.run_report(&mapping, args);
        expect_code(&out, 1);
        let statuses: Vec<(String, String)> = images(&report)
            .iter()
            .map(|i| {
                (
                    i["destination"].as_str().unwrap_or_default().to_owned(),
                    i["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if dry {
            assert_eq!(dst.tool_writes_since(mark), []);
        }
        outcomes.push(statuses);
    }
    let failed = |statuses: &Vec<(String, String)>| -> Vec<String> {
        statuses
            .iter()
            .filter(|(_, s)| s == "failed")
            .map(|(d, _)| d.clone())
            .collect()
    };
    assert_eq!(failed(&outcomes[0]), failed(&outcomes[1]), "{outcomes:#?}");
    assert_eq!(failed(&outcomes[0]).len(), 2, "{outcomes:#?}");
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

/// "it sends no POST, PUT, PATCH or DELETE to any registry (only an `identitytoken`
/// credential is exchanged for a token by an OAuth2 POST to the token service)": a dry run
/// with an identity token, source and destination in the same token registry.
#[test]
fn a_dry_run_with_an_identity_token_writes_nothing_at_the_source_either() {
    let issuer = TokenIssuer::start();
    issuer.user("pusher", "unused", &[("*", "pull"), ("dst/", "pull,push")]);
    issuer.refresh_token("rt-dry-run-identity", "pusher");
    let reg = Registry::start_with(RegistryConfig {
        token: Some(issuer.clone()),
        ..Default::default()
    });
    let t = reg.host();
    seed_docker_image(&reg, "src/app", "1", &[layer(2600, 500)]);
    seed_docker_image(&reg, "src/app", "2", &[layer(2601, 500)]);
    seed_docker_image(&reg, "dst/app", "2", &[layer(2602, 500)]);
    let ws = Workspace::new();
    let config = ws.write(
        "config.json",
        &format!(r#"{{"auths": {{"{t}": {{"identitytoken": "rt-dry-run-identity"}}}}}}"#),
    );
    let mapping = ws.write(
        "m",
        &format!("{t}/src/app:1 {t}/dst/app:1\n{t}/src/app:2 {t}/dst/app:2\n"),
    );
    let mark = reg.mark();
    let (out, report) = ws.run_report(
        &mapping,
        &["--insecure", "--dry-run", "-a", support::cli::p(&config)],
    );
    expect_code(&out, 0);
    let statuses: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["would-copy", "would-overwrite"], "{report:#}");
    assert_eq!(reg.tool_writes_since(mark), []);
    let grants = issuer.grants();
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g.grant_type == "refresh_token" && g.status == 200),
        "{grants:#?}"
    );
    assert!(
        grants
            .iter()
            .any(|g| g.requested.iter().any(|s| s.starts_with("repository:src/"))),
        "the source was read with the identity token: {grants:#?}"
    );
}
