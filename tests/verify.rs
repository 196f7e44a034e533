//! `image-mirror verify` against real registries: walking repositories, complete images pass
//! and missing blobs and index children are found; given mapping files, each image is
//! compared with its source — digests, completeness, and what is attached (cosign's tags,
//! referrers), read-only.

use std::path::Path;

use crate::support::cli::*;
use crate::support::cosign::*;
use crate::support::other::OtherRegistry;
use crate::support::*;
use serde_json::Value;

fn verify(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = image_mirror(dir.path())
        .arg("verify")
        .args(args)
        .output()
        .expect("run");
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

#[test]
fn complete_and_incomplete_repositories() {
    let reg = Registry::start();
    let h = reg.host();
    seed_docker_image(&reg, "good", "1", &[layer(1, 1000)]);
    seed_oci_index(
        &reg,
        "good",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        3,
    );
    let (code, out) = verify(&["--insecure", &format!("{h}/good")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 tags, all complete"), "{out}");
    assert!(
        out.contains("verified 2 tags in 1 repository: no problem; "),
        "{out}"
    );

    let broken = seed_docker_image(&reg, "broken", "1", &[layer(5, 1000), layer(6, 1000)]);
    let missing = broken.blobs.last().expect("a layer").clone();
    assert!(reg.delete_blob("broken", &missing));
    let index = seed_oci_index(
        &reg,
        "broken",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        7,
    );
    assert!(reg.delete_manifest("broken", &index.children[1]));
    let (code, out) = verify(&["--insecure", &format!("{h}/good"), &format!("{h}/broken")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{h}/good: 2 tags, all complete")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{h}/broken: 2 tags, 2 problems")),
        "{out}"
    );
    assert!(
        out.contains("verified 4 tags in 2 repositories: 2 problems; "),
        "{out}"
    );
    assert!(
        out.contains(&format!("blob {missing} of {} is missing", broken.digest)),
        "{out}"
    );
    assert!(out.contains(&index.children[1]), "{out}");

    let (code, out) = verify(&["--insecure", "not a repo"]);
    assert_eq!(code, 2, "{out}");
}

/// `verify -f MAPPING --report verify.json` with the workspace as `$DOCKER_CONFIG`: exit
/// code, stdout, the JSON report.
fn verify_mapping(ws: &Workspace, mapping: &Path, extra: &[&str]) -> (i32, String, Value) {
    let report = ws.path("verify.json");
    let _ = std::fs::remove_file(&report);
    let out = ws
        .command()
        .args([
            "verify",
            "--insecure",
            "-f",
            p(mapping),
            "--report",
            p(&report),
        ])
        .args(extra)
        .output()
        .expect("verify");
    let json = read_report(&report);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
        json,
    )
}

/// The problems the report lists for one destination, as (kind, attachment kind, digest).
fn problems(report: &Value, destination: &str) -> Vec<(String, String, String)> {
    let image = image_by_destination(report, destination);
    image["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&p["kind"]),
                s(&p["attachment"]["kind"]),
                s(&p["attachment"]["digest"]),
            )
        })
        .collect()
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// After a run, `verify -f` passes: every image at its source's digest, complete, and every
/// signature, attestation, SBOM and referrer there with the same digest (a `platforms=`
/// rewrite recognised as such) — reading only, one tag list per source repository. Then a
/// signature deleted at the destination, a referrer deleted, one never copied
/// (`--attached=false`) and a source tag moved are each reported by name, exit 1.
#[test]
fn verify_against_the_sources_finds_missing_attachments_and_moved_tags() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let at = |seeded: &Seeded| format!("{s}/org/app@{}", seeded.digest);
    let signed = seed_oci_image(&src, "org/app", "signed", &[layer(1, 900)]);
    sign(dir, &at(&signed), &[]);
    attest(dir, &at(&signed));
    let multi = seed_oci_index(
        &src,
        "org/app",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        3,
    );
    sign(dir, &at(&multi), &["--recursive"]);
    let referred = seed_oci_image(&src, "org/app", "referred", &[layer(9, 900)]);
    sign(dir, &at(&referred), &["--registry-referrers-mode=oci-1-1"]);
    seed_oci_image(&src, "org/app", "unsigned", &[layer(2, 900)]);
    let mapping = ws.write(
        "mapping",
        &format!(
            "{s}/org/app:signed {d}/mirror/app:signed\n\
             {s}/org/app:multi {d}/mirror/app:multi\n\
             {s}/org/app:multi {d}/mirror/app:amd64   # image-mirror: platforms=linux/amd64\n\
             {s}/org/app:referred {d}/mirror/app:referred\n\
             {s}/org/app:unsigned {d}/mirror/app:unsigned\n"
        ),
    );
    let out = ws
        .command()
        .args(["run", "--insecure", "-f", p(&mapping)])
        .output()
        .expect("run");
    expect_code(&out, 0);

    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let (code, out, report) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{d}/mirror/app: 5 tags, all complete, 7 attached manifests as at the source"
        )),
        "{out}"
    );
    // signed: signature and attestation; multi: the index's and each child's signature;
    // amd64: its child's signature (the rewritten index has none); referred: its referrer.
    assert_eq!(report["totals"]["attached_checked"], 7, "{report:#}");
    assert_eq!(report["totals"]["problems"], 0, "{report:#}");
    let amd64 = report["images"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| i["destination"] == format!("{d}/mirror/app:amd64"))
        })
        .expect("amd64");
    assert_eq!(amd64["rewritten"], "platforms=linux/amd64", "{amd64:#}");
    assert_ne!(amd64["source_digest"], amd64["destination_digest"]);
    // Read-only, and the source repository listed once.
    assert!(src.tool_writes_since(src_mark).is_empty());
    assert!(dst.tool_writes_since(dst_mark).is_empty());
    let lists = src
        .tool_requests_since(src_mark)
        .iter()
        .filter(|r| r.path().ends_with("/tags/list"))
        .count();
    assert_eq!(lists, 1, "one tag list of the source repository");
    assert!(
        report["totals"]["requests"].as_u64() > Some(0),
        "{report:#}"
    );

    // A signature deleted at the destination, and the referrer.
    let sig_tag = format!("sha256-{}.sig", hex(&signed.digest));
    let sig = dst
        .manifest_digest("mirror/app", &sig_tag)
        .expect("signature copied");
    assert!(dst.delete_manifest("mirror/app", &sig));
    let (_, index) = src
        .manifest("org/app", &format!("sha256-{}", hex(&referred.digest)))
        .expect("fallback index");
    let index: Value = serde_json::from_slice(&index).expect("index");
    let referrer = index["manifests"][0]["digest"]
        .as_str()
        .expect("referrer")
        .to_owned();
    assert!(dst.delete_manifest("mirror/app", &referrer));
    // The unsigned source tag moved to another image.
    let moved = seed_oci_image(&src, "org/app", "unsigned", &[layer(4, 900)]);

    let (code, out, report) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "  signed: signature {sig} of {} is missing: {d}/mirror/app:{sig_tag} does not exist",
            signed.digest
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("referrer {referrer}")) && out.contains("is missing"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "  unsigned: moved: the source {s}/org/app:unsigned is now {}",
            moved.digest
        )),
        "{out}"
    );
    assert_eq!(
        problems(&report, &format!("{d}/mirror/app:signed")),
        [("attached_missing".into(), "signature".into(), sig.clone())]
    );
    assert_eq!(
        problems(&report, &format!("{d}/mirror/app:referred")),
        [("attached_missing".into(), "referrer".into(), referrer)]
    );
    assert_eq!(
        problems(&report, &format!("{d}/mirror/app:unsigned")),
        [("moved".into(), String::new(), String::new())]
    );
    assert!(problems(&report, &format!("{d}/mirror/app:multi")).is_empty());
    assert_eq!(report["totals"]["problems"], 3, "{report:#}");

    // Never copied: --attached=false.
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
    let (code, out, report) = verify_mapping(&ws, &alone, &[]);
    assert_eq!(code, 1, "{out}");
    let kinds: Vec<String> = problems(&report, &format!("{d}/alone/app:signed"))
        .into_iter()
        .map(|(kind, what, _)| format!("{kind} {what}"))
        .collect();
    assert_eq!(
        kinds,
        ["attached_missing signature", "attached_missing attestation"]
    );
    // And with --attached=false, verify checks the image alone.
    let (code, out, _) = verify_mapping(&ws, &alone, &["--attached=false"]);
    assert_eq!(code, 0, "{out}");

    // The other mode is unchanged: every tag of the repository complete.
    let (code, out) = verify(&["--insecure", &format!("{d}/alone/app")]);
    assert_eq!(code, 0, "{out}");
}

/// Against the second registry implementation (no tag listing, no digest on HEAD): an image
/// mirrored into it verifies, and its source tag moved is reported.
#[test]
fn verify_against_the_sources_with_the_other_registry() {
    let (src, other, ws) = (Registry::start(), OtherRegistry::start(), Workspace::new());
    ws.write("config.json", &other.config_json(&[]));
    let (s, o) = (src.host(), other.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let mapping = ws.write("mapping", &format!("{s}/team/app:1 {o}/mirror/app:1\n"));
    let out = ws
        .command()
        .args(["run", "--insecure", "-f", p(&mapping)])
        .output()
        .expect("run");
    expect_code(&out, 0);
    let (code, out, _) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{o}/mirror/app: 1 tag, all complete")),
        "{out}"
    );
    let moved = seed_docker_image(&src, "team/app", "1", &[layer(2, 2000)]);
    let (code, out, report) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("is now {}", moved.digest)), "{out}");
    assert_eq!(
        problems(&report, &format!("{o}/mirror/app:1")),
        [("moved".into(), String::new(), String::new())]
    );
}

/// Into an OCI layout: `verify -f` reads the directory through the same seam; a blob file
/// removed from it is an incomplete image.
#[test]
fn verify_against_the_sources_into_a_directory() {
    let (src, ws) = (Registry::start(), Workspace::new());
    let s = src.host();
    let image = seed_oci_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let layout = ws.path("layout");
    let mapping = ws.write("mapping", &format!("{s}/team/app:1 oci:{}:1\n", p(&layout)));
    let out = ws
        .command()
        .args(["run", "--insecure", "-f", p(&mapping)])
        .output()
        .expect("run");
    expect_code(&out, 0);
    let (code, out, report) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["images"][0]["destination_digest"], image.digest);
    let layer = image.blobs.last().expect("a layer");
    std::fs::remove_file(layout.join("blobs/sha256").join(hex(layer))).expect("blob file");
    let (code, out, report) = verify_mapping(&ws, &mapping, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("blob {layer} of {} is missing", image.digest)),
        "{out}"
    );
    assert_eq!(report["images"][0]["problems"][0]["kind"], "incomplete");
}
