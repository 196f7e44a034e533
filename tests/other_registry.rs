//! The engine's main scenarios against a second registry implementation, the
//! `container-registry` crate ([`crate::support::other::OtherRegistry`]), between real
//! distribution registries: a single image into it and back out with identical digests, a
//! dry run, an unchanged rerun, digest verification of what it serves, shared layers without
//! mounts; and where it lacks an API (tag listing, manifests by digest), the clear error.

use std::path::Path;
use std::process::Output;

use crate::support::cli::*;
use crate::support::other::OtherRegistry;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

/// `image-mirror run --insecure ARGS... --report report.json MAPPING` with the workspace's
/// `config.json`: the output and the report.
fn run(ws: &Workspace, mapping: &Path, args: &[&str]) -> (Output, serde_json::Value) {
    ws.run_report(
        mapping,
        &[&["--insecure", "--max-retry-wait=1", "--retries=0"], args].concat(),
    )
}

/// Into it, a dry run, an unchanged rerun, a corrupted pull refused, and back out into
/// distribution: the digests are the source's throughout.
#[test]
fn an_image_goes_into_it_and_back_out_with_identical_digests() {
    let src = Registry::start();
    let other = OtherRegistry::start();
    let back = Registry::start();
    let proxy = FaultProxy::start(&other.host());
    let image = seed_docker_image(
        &src,
        "team/app",
        "1",
        &[layer(1, 2000), layer(2, 300 * 1024)],
    );
    let ws = Workspace::new();
    ws.write("config.json", &other.config_json(&[proxy.host()]));
    let (s, o, b) = (src.host(), other.host(), back.host());

    // Into it: its refusal of a body on PUT is met with PATCH + PUT.
    let into = ws.mapping(&format!("{s}/team/app:1 {o}/mirror/app:1\n"));
    let (out, report) = run(&ws, &into, &[]);
    expect_code(&out, 0);
    assert_eq!(
        other.manifest_digest("mirror/app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    let registry = &report["registries"][o.as_str()];
    assert_eq!(registry["upload_method"], "patch", "{report:#}");
    assert_eq!(registry["uploads"]["put"], 0, "{report:#}");
    assert!(registry["fallbacks"].as_u64() >= Some(1), "{report:#}");
    assert_eq!(
        total(&report, "blobs_uploaded"),
        image.blobs.len() as u64,
        "{report:#}"
    );
    assert_eq!(total(&report, "request_retries"), 0, "{report:#}");

    // Unchanged: found so (without tag listing, and without a digest on HEAD), nothing
    // written.
    let (out, report) = run(&ws, &into, &[]);
    expect_code(&out, 0);
    assert_eq!(report["images"][0]["status"], "unchanged", "{report:#}");
    assert_eq!(total(&report, "blobs_uploaded"), 0, "{report:#}");

    // A dry run of a new tag, through a proxy that sees every request: nothing written.
    let dry = ws.mapping(&format!("{s}/team/app:1 {}/mirror/app:2\n", proxy.host()));
    let (out, report) = run(&ws, &dry, &["--dry-run"]);
    expect_code(&out, 0);
    assert_eq!(report["images"][0]["status"], "would-copy", "{report:#}");
    let writes: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
    assert_eq!(other.manifest_digest("mirror/app", "2"), None);

    // Out of it, with a flipped byte on the way: refused as corrupt, nothing tagged.
    let big = image.blobs[2].clone();
    proxy.add("GET", &big, 100, Fault::FlipByte(1000));
    let out_corrupt = ws.mapping(&format!("{}/mirror/app:1 {b}/team/app:1\n", proxy.host()));
    let (out, report) = run(&ws, &out_corrupt, &[]);
    expect_code(&out, 1);
    assert_eq!(report["images"][0]["error_kind"], "corrupt", "{report:#}");
    assert_eq!(back.manifest_digest("team/app", "1"), None);

    // Out of it: identical digests, complete.
    let out_of = ws.mapping(&format!("{o}/mirror/app:1 {b}/team/app:1\n"));
    let (out, report) = run(&ws, &out_of, &[]);
    expect_code(&out, 0);
    assert_eq!(report["images"][0]["status"], "copied", "{report:#}");
    assert_eq!(
        back.manifest_digest("team/app", "1").as_deref(),
        Some(image.digest.as_str())
    );
    back.assert_complete("team/app", "1");
}

/// Two images sharing layers into two repositories: it mounts nothing (a mount is answered
/// with an upload session), and both images arrive whole.
#[test]
fn shared_layers_arrive_in_both_repositories_without_mounts() {
    let src = Registry::start();
    let other = OtherRegistry::start();
    let back = Registry::start();
    let shared = layer(7, 40 * 1024);
    let one = seed_docker_image(&src, "team/one", "1", &[shared.clone(), layer(8, 3000)]);
    let two = seed_docker_image(&src, "team/two", "1", &[shared, layer(9, 3000)]);
    let ws = Workspace::new();
    ws.write("config.json", &other.config_json(&[]));
    let (s, o, b) = (src.host(), other.host(), back.host());
    let into = ws.mapping(&format!(
        "{s}/team/one:1 {o}/mirror/one:1\n{s}/team/two:1 {o}/mirror/two:1\n"
    ));
    let (out, report) = run(&ws, &into, &[]);
    expect_code(&out, 0);
    assert_eq!(total(&report, "blobs_mounted"), 0, "{report:#}");
    for (repo, image) in [("mirror/one", &one), ("mirror/two", &two)] {
        assert_eq!(
            other.manifest_digest(repo, "1").as_deref(),
            Some(image.digest.as_str())
        );
    }
    let out_of = ws.mapping(&format!(
        "{o}/mirror/one:1 {b}/team/one:1\n{o}/mirror/two:1 {b}/team/two:1\n"
    ));
    let (out, _) = run(&ws, &out_of, &[]);
    expect_code(&out, 0);
    for (repo, image) in [("team/one", &one), ("team/two", &two)] {
        assert_eq!(
            back.manifest_digest(repo, "1").as_deref(),
            Some(image.digest.as_str())
        );
        back.assert_complete(repo, "1");
    }
}

/// It stores no manifest under a digest, so an index (children are pushed by digest)
/// cannot go in: the copy fails with its answer, and no tag is written.
#[test]
fn an_index_cannot_go_into_it_and_the_error_says_why() {
    let src = Registry::start();
    let other = OtherRegistry::start();
    let index = seed_oci_index(
        &src,
        "team/multi",
        "1",
        &[("linux", "amd64"), ("linux", "arm64")],
        30,
    );
    let ws = Workspace::new();
    ws.write("config.json", &other.config_json(&[]));
    let mapping = ws.mapping(&format!(
        "{}/team/multi:1 {}/mirror/multi:1\n",
        src.host(),
        other.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 1);
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(
        error.contains("400") && index.children.iter().any(|c| error.contains(c.as_str())),
        "{error}"
    );
    assert_eq!(report["images"][0]["error_kind"], "permanent", "{report:#}");
    assert_eq!(other.manifest_digest("mirror/multi", "1"), None);
}

/// It has no tag listing: a wildcard over it is a listing failure that says so.
#[test]
fn a_wildcard_over_it_fails_clearly() {
    let other = OtherRegistry::start();
    let back = Registry::start();
    let ws = Workspace::new();
    ws.write("config.json", &other.config_json(&[]));
    let mapping = ws.mapping(&format!(
        "{}/mirror/app:v1.* {}/team/app\n",
        other.host(),
        back.host()
    ));
    let (out, report) = run(&ws, &mapping, &[]);
    expect_code(&out, 1);
    let error = report["listing_failures"][0]["error"]
        .as_str()
        .unwrap_or("");
    assert!(error.contains("has no tag listing"), "{report:#}");
    assert!(error.contains("name the tags"), "{error}");
}
