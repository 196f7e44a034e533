//! Registries differ from distribution in a few corners; the engine must mirror through each
//! with identical digests. A proxy ([`crate::support::proxy::Quirk`]) gives a real `docker-registry`
//! one quirk at a time: a body on `PUT` refused, chunk size limits, HEAD without
//! `Docker-Content-Digest`, absolute upload `Location`s on another port, `Range` ignored.
//! Each test checks the destination through the registry API and with `image-mirror verify`.

use std::path::Path;
use std::process::Output;

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy, Quirk};
use crate::support::*;

/// `image-mirror run FAST... ARGS... --report report.json MAPPING`: the output and the report.
fn run(ws: &Workspace, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    ws.run_report(mapping, &[FAST, &["--read-timeout=5"], args].concat())
}

/// A source with `team/app:1`: a config and layers of 2,000 bytes and 300 KiB.
fn source() -> (Registry, Seeded) {
    let src = Registry::start();
    let image = seed_docker_image(
        &src,
        "team/app",
        "1",
        &[layer(1, 2000), layer(2, 300 * 1024)],
    );
    (src, image)
}

/// `dst` holds `repo:1` as the source's image, complete, and verify says so.
fn assert_mirrored(ws: &Workspace, dst: &Registry, repo: &str, image: &Seeded) {
    assert_eq!(
        dst.manifest_digest(repo, "1").as_deref(),
        Some(image.digest.as_str())
    );
    dst.assert_complete(repo, "1");
    ws.assert_verified(&[format!("{}/{repo}", dst.host())]);
}

/// A registry that refuses a body on `PUT` (answers 500 before reading it and closes, as
/// the `container-registry` crate does) gets the refused blob again as `PATCH` + `PUT`, and
/// every later blob that way straight away; the switch is no retry, and the report names
/// the method.
#[test]
fn a_registry_refusing_a_body_on_put_gets_patch_then_put() {
    let (src, image) = source();
    let dst = Registry::start();
    let proxy = FaultProxy::with_quirk(&dst.host(), Quirk::RefuseBodyOnPut);
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        proxy.host()
    ));
    // One blob at a time, so that exactly the first is refused.
    let (out, report) = run(&ws, &mapping, &["--max-per-registry=1"]);
    expect_code(&out, 0);
    assert_mirrored(&ws, &dst, "app", &image);
    let blobs = image.blobs.len() as u64;
    let refused: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.target.contains("/blobs/uploads/") && s.body_len > 0)
        .collect();
    assert_eq!(refused.len(), 1, "{:#?}", proxy.seen());
    assert_eq!(refused[0].status, 500);
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), blobs as usize);
    let registry = &report["registries"][proxy.host()];
    assert_eq!(registry["upload_method"], "patch", "{report:#}");
    assert_eq!(registry["fallbacks"], 1, "{report:#}");
    assert_eq!(registry["uploads"]["put"], 0, "{report:#}");
    assert_eq!(registry["uploads"]["patch"], blobs, "{report:#}");
    assert_eq!(total(&report, "request_retries"), 0, "{report:#}");
    assert_eq!(total(&report, "retries"), 0, "{report:#}");
    assert!(
        text(&out.stdout).contains("sent as PATCH + PUT"),
        "{}",
        text(&out.stdout)
    );
    // A registry that takes the body on PUT keeps getting it that way.
    let other = Registry::start();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        other.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    let registry = &report["registries"][other.host()];
    assert_eq!(registry["upload_method"], "put", "{report:#}");
    assert_eq!(registry["uploads"]["put"], blobs, "{report:#}");
    assert_eq!(registry["fallbacks"], 0, "{report:#}");
}

/// All blobs at once: several may be refused before the first `PATCH` succeeds; each is
/// sent again, none is retried, and the digests are the source's.
#[test]
fn concurrent_refusals_each_fall_back_once() {
    let (src, image) = source();
    let dst = Registry::start();
    let proxy = FaultProxy::with_quirk(&dst.host(), Quirk::RefuseBodyOnPut);
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        proxy.host()
    ));
    let (out, report) = run(&ws, &mapping, &["--request-attempts=1", "--retries=0"]);
    expect_code(&out, 0);
    assert_mirrored(&ws, &dst, "app", &image);
    let registry = &report["registries"][proxy.host()];
    let fallbacks = registry["fallbacks"].as_u64().unwrap_or(0);
    assert!(
        (1..=image.blobs.len() as u64).contains(&fallbacks),
        "{report:#}"
    );
    assert_eq!(registry["upload_method"], "patch", "{report:#}");
}

/// A registry that limits request bodies and states its chunk sizes on the upload session
/// (`OCI-Chunk-Min-Length`, `OCI-Chunk-Max-Length`): small blobs still go in one `PUT`, a
/// blob longer than the limit in `PATCH`es within both sizes, each with its
/// `Content-Range`, following each answer's `Location`.
#[test]
fn chunk_limits_a_registry_states_are_kept() {
    let (src, image) = source();
    let dst = Registry::start();
    let (min, max) = (50 * 1024, 64 * 1024);
    let proxy = FaultProxy::with_quirk(&dst.host(), Quirk::ChunkLimits { min, max });
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        proxy.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_mirrored(&ws, &dst, "app", &image);
    let seen = proxy.seen();
    assert!(seen.iter().all(|s| s.status != 413), "{seen:#?}");
    let patches: Vec<_> = seen.iter().filter(|s| s.method == "PATCH").collect();
    // 300 KiB: four chunks of 64 KiB and the rest.
    assert_eq!(patches.len(), 5, "{seen:#?}");
    let mut offset = 0;
    for (i, patch) in patches.iter().enumerate() {
        assert!(patch.body_len <= max, "{patch:?}");
        if i + 1 < patches.len() {
            assert!(patch.body_len >= min, "{patch:?}");
        }
        assert_eq!(
            patch.content_range.as_deref(),
            Some(format!("{offset}-{}", offset + patch.body_len - 1).as_str())
        );
        assert_eq!(patch.status, 202);
        offset += patch.body_len;
    }
    assert_eq!(offset, 300 * 1024);
    let registry = &report["registries"][proxy.host()];
    assert_eq!(registry["uploads"]["chunked"], 1, "{report:#}");
    assert_eq!(registry["uploads"]["put"], 2, "{report:#}");
    assert_eq!(registry["fallbacks"], 0, "{report:#}");
}

/// HEAD answers without `Docker-Content-Digest`, at both ends: the copy works, and the
/// rerun finds every tag unchanged (the digest comes from the manifest's bytes) and writes
/// nothing.
#[test]
fn head_without_a_digest_still_finds_tags_unchanged() {
    let (src, image) = source();
    let dst = Registry::start();
    let src_proxy = FaultProxy::with_quirk(&src.host(), Quirk::HeadWithoutDigest);
    let dst_proxy = FaultProxy::with_quirk(&dst.host(), Quirk::HeadWithoutDigest);
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src_proxy.host(),
        dst_proxy.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_eq!(report["images"][0]["status"], "copied", "{report:#}");
    assert_mirrored(&ws, &dst, "app", &image);
    let writes_before = dst_proxy
        .seen()
        .iter()
        .filter(|s| s.method != "GET" && s.method != "HEAD")
        .count();
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_eq!(report["images"][0]["status"], "unchanged", "{report:#}");
    let writes_after = dst_proxy
        .seen()
        .iter()
        .filter(|s| s.method != "GET" && s.method != "HEAD")
        .count();
    assert_eq!(writes_before, writes_after, "{:#?}", dst_proxy.seen());
    assert!(
        dst_proxy
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.target.contains("/manifests/1")),
        "the digest was read from the manifest"
    );
}

/// Upload `Location`s that are absolute URLs on another port of the same host: the upload
/// goes there (to the registry itself, past the proxy).
#[test]
fn an_absolute_location_on_another_port_is_followed() {
    let (src, image) = source();
    let dst = Registry::start();
    let proxy = FaultProxy::with_quirk(&dst.host(), Quirk::LocationOn(dst.host()));
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        src.host(),
        proxy.host()
    ));
    let mark = dst.mark();
    let (out, _) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_mirrored(&ws, &dst, "app", &image);
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        image.blobs.len(),
        "{:#?}",
        proxy.seen()
    );
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 0);
    let direct_puts = dst
        .tool_writes_since(mark)
        .iter()
        .filter(|r| r.method == "PUT" && r.path().contains("/blobs/uploads/"))
        .count();
    assert_eq!(direct_puts, image.blobs.len());
}

/// A registry that ignores `Range`: a download cut midway is asked again from its byte,
/// answered from byte 0, and the bytes already passed on are skipped.
#[test]
fn a_source_ignoring_range_still_resumes_a_cut_download() {
    let (src, image) = source();
    let big = image.blobs[2].trim_start_matches("sha256:").to_owned();
    // image-mirror -> cuts the first download -> drops Range -> registry
    let quirk = FaultProxy::with_quirk(&src.host(), Quirk::IgnoreRange);
    let faults = FaultProxy::start(&quirk.host());
    faults.add("GET", &big, 1, Fault::CutAfter(100 * 1024));
    let dst = Registry::start();
    let ws = Workspace::new();
    let mapping = ws.mapping(&format!(
        "{}/team/app:1 {}/app:1\n",
        faults.host(),
        dst.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 0);
    assert_mirrored(&ws, &dst, "app", &image);
    // The client asked from the byte reached; the registry answered the whole blob.
    assert_eq!(
        faults.ranges("GET", &big),
        vec![None, Some("bytes=102400-".to_owned())]
    );
    let statuses: Vec<u16> = src
        .requests()
        .iter()
        .filter(|r| !r.is_harness() && r.method == "GET" && r.uri.contains(&big))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(report["images"][0]["status"], "copied", "{report:#}");
}
