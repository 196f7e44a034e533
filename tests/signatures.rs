//! Signatures, attestations, SBOMs and referrers travel with each image, checked by the real
//! tool: `cosign` signs images in Debian's registry, image-mirror copies them into another,
//! and `cosign verify` / `verify-attestation` against the destination must pass for the
//! signed images and fail for the unsigned one.
//!
//! `.ci/run` fetches cosign (Debian trixie's package) into `target/tools/cosign` and sets
//! `COSIGN_BIN`; without it the default path and then `PATH` are tried, and a missing binary
//! fails the test with the command that installs it.

use crate::support::cli::*;
use crate::support::cosign::*;
use crate::support::*;

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[test]
fn signatures_attestations_sboms_and_referrers_arrive_byte_identical() {
    let src = Registry::start();
    let dst = Registry::start();
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());

    let signed = seed_oci_image(&src, "org/app", "signed", &[layer(1, 900)]);
    let unsigned = seed_oci_image(&src, "org/app", "unsigned", &[layer(2, 900)]);
    let multi = seed_oci_index(
        &src,
        "org/app",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        3,
    );
    let referred = seed_oci_image(&src, "org/app", "referred", &[layer(9, 900)]);
    let at = |seeded: &Seeded| format!("{s}/org/app@{}", seeded.digest);

    sign(dir, &at(&signed), &[]);
    attest(dir, &at(&signed));
    std::fs::write(
        dir.join("sbom.spdx.json"),
        r#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    )
    .expect("sbom");
    cosign_ok(
        dir,
        &[
            "attach",
            "sbom",
            "--sbom",
            "sbom.spdx.json",
            "--type",
            "spdx",
            &at(&signed),
        ],
    );
    // The index and, with --recursive, each of its children.
    sign(dir, &at(&multi), &["--recursive"]);
    // An OCI 1.1 referrer: Debian's registry has no referrers API, so cosign writes the
    // fallback index under sha256-<hex>.
    sign(dir, &at(&referred), &["--registry-referrers-mode=oci-1-1"]);
    let fallback = format!("sha256-{}", hex(&referred.digest));
    let (_, source_index) = src
        .manifest("org/app", &fallback)
        .expect("cosign wrote the fallback index");

    let mapping = ws.write(
        "mapping",
        &format!("{s}/org/app:signed {d}/mirror/app:signed\n{s}/org/app:unsigned {d}/mirror/app:unsigned\n{s}/org/app:multi {d}/mirror/app:multi\n{s}/org/app:referred {d}/mirror/app:referred\n"),
    );
    // The dry run lists what the run then copies, attachments of attachments included.
    let (rehearsal, rehearsed) = ws.run_report(&mapping, &["--insecure", "--dry-run"]);
    expect_code(&rehearsal, 0);
    let report = ws.path("report.json");
    let out = ws
        .command()
        .args([
            "run",
            "--insecure",
            "-f",
            p(&mapping),
            "--report",
            p(&report),
        ])
        .output()
        .expect("run");
    expect_code(&out, 0);

    // Every attachment tag of the source is at the destination with the same digest.
    for tag in src
        .tags("org/app")
        .iter()
        .filter(|t| t.starts_with("sha256-"))
    {
        assert_eq!(
            dst.manifest_digest("mirror/app", tag),
            src.manifest_digest("org/app", tag),
            "{tag}"
        );
    }
    // The fallback index is byte-identical (the destination had none), and so is its referrer.
    let (_, copied_index) = dst
        .manifest("mirror/app", &fallback)
        .expect("fallback index copied");
    assert_eq!(copied_index, source_index);
    let referrer: serde_json::Value = serde_json::from_slice(&source_index).expect("index");
    let referrer_digest = referrer["manifests"][0]["digest"]
        .as_str()
        .expect("a referrer")
        .to_owned();
    assert!(
        dst.manifest_digest("mirror/app", &referrer_digest)
            .is_some()
    );

    // cosign at the destination: signed images and the index's children verify, the
    // attestation verifies, the unsigned image does not.
    let there = |seeded: &Seeded| format!("{d}/mirror/app@{}", seeded.digest);
    assert!(verifies(dir, &format!("{d}/mirror/app:signed"), &[]));
    assert!(verifies(dir, &there(&multi), &[]));
    for child in &multi.children {
        assert!(
            verifies(dir, &format!("{d}/mirror/app@{child}"), &[]),
            "child {child}"
        );
    }
    assert!(verifies(dir, &there(&referred), &["--experimental-oci11"]));
    assert!(!verifies(dir, &there(&unsigned), &[]));
    let attestation = cosign(
        dir,
        &[
            "verify-attestation",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog",
            "--type",
            "custom",
            &there(&signed),
        ],
    );
    assert!(
        attestation.status.success(),
        "{}",
        text(&attestation.stderr)
    );

    // The report counts them, per image with kind and subject.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let image = |tag: &str| {
        json["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["destination"] == format!("{d}/mirror/app:{tag}"))
            .expect("image in report")
            .clone()
    };
    let kinds = |tag: &str| -> Vec<String> {
        image(tag)["attached"]
            .as_array()
            .expect("attached")
            .iter()
            .map(|a| a["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(kinds("signed"), ["signature", "attestation", "sbom"]);
    assert_eq!(kinds("unsigned"), Vec::<String>::new());
    assert_eq!(
        kinds("multi").len(),
        3,
        "the index's signature and each child's"
    );
    let referred_entry = image("referred");
    assert_eq!(referred_entry["attached"][0]["kind"], "referrer");
    assert_eq!(
        referred_entry["attached"][0]["artifact_type"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );
    assert_eq!(json["totals"]["attached_copied"], 7);
    let attached_of = |report: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut images: Vec<serde_json::Value> = report["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|i| serde_json::json!([i["destination"], i["attached"]]))
            .collect();
        images.sort_by_key(|i| i.to_string());
        images
    };
    assert_eq!(attached_of(&rehearsed), attached_of(&json));
    assert!(
        text(&rehearsal.stdout).contains("7 attached manifests"),
        "{}",
        text(&rehearsal.stdout)
    );

    // The no-op: nothing written, and no request for attachments of the unsigned image.
    let mark = dst.mark();
    let src_mark = src.mark();
    let again = ws
        .command()
        .args(["run", "--insecure", "-f", p(&mapping)])
        .output()
        .expect("run");
    expect_code(&again, 0);
    assert!(
        dst.tool_writes_since(mark).is_empty(),
        "{:?}",
        dst.tool_writes_since(mark)
    );
    let unsigned_tag = format!("sha256-{}", hex(&unsigned.digest));
    assert!(
        !src.tool_requests_since(src_mark)
            .iter()
            .any(|r| r.path().contains(&unsigned_tag)),
        "no request for attachments the tag list does not show"
    );

    // --attached=false: the images alone.
    let alone = ws.write(
        "alone",
        &format!("{s}/org/app:signed {d}/alone/app:signed\n"),
    );
    let out = ws
        .command()
        .args(["run", "--insecure", "--attached=false", "-f", p(&alone)])
        .output()
        .expect("run");
    expect_code(&out, 0);
    assert_eq!(dst.tags("alone/app"), ["signed"]);
    assert!(!verifies(dir, &format!("{d}/alone/app:signed"), &[]));
}

#[test]
fn a_destination_fallback_index_is_merged_not_clobbered() {
    let src = Registry::start();
    let dst = Registry::start();
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let image = seed_oci_image(&src, "org/app", "v1", &[layer(11, 900)]);
    // The same image already at the destination, with a referrer of its own there.
    seed_oci_image(&dst, "mirror/app", "v1", &[layer(11, 900)]);
    assert_eq!(
        dst.manifest_digest("mirror/app", "v1").as_deref(),
        Some(image.digest.as_str())
    );
    sign(
        dir,
        &format!("{d}/mirror/app@{}", image.digest),
        &["--registry-referrers-mode=oci-1-1"],
    );
    sign(
        dir,
        &format!("{s}/org/app@{}", image.digest),
        &["--registry-referrers-mode=oci-1-1"],
    );
    let fallback = format!("sha256-{}", hex(&image.digest));
    let listed = |reg: &Registry, repo: &str| -> Vec<String> {
        let (_, bytes) = reg.manifest(repo, &fallback).expect("fallback index");
        let index: serde_json::Value = serde_json::from_slice(&bytes).expect("index");
        index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["digest"].as_str().expect("digest").to_owned())
            .collect()
    };
    let before = listed(&dst, "mirror/app");
    let theirs = listed(&src, "org/app");
    assert_eq!(before.len(), 1);

    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {d}/mirror/app:v1\n"));
    let out = ws
        .command()
        .args(["run", "--insecure", "-f", p(&mapping)])
        .output()
        .expect("run");
    expect_code(&out, 0);
    let after = listed(&dst, "mirror/app");
    assert_eq!(
        after[0], before[0],
        "what the destination listed stays first"
    );
    assert!(after.contains(&theirs[0]), "{after:?}");
    assert_eq!(after.len(), 2);
}
