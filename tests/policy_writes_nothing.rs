//! `--policy` refuses an image before anything of it is written: not one blob, not a
//! manifest, not an upload session of a refused image reaches the destination, while a
//! signed image of the same run is copied whole. (A policy check moved after the content is
//! placed would still refuse the image, and still leave no tag: only the destination's
//! requests and blobs show the difference.)

use std::path::Path;

use crate::support::cli::*;
use crate::support::cosign::*;
use crate::support::*;
use serde_json::Value;

/// A policy accepting only images of `scopes` signed with the workspace's `cosign.pub`.
fn signed_only(ws: &Workspace, dir: &Path, scopes: &[String]) -> std::path::PathBuf {
    let key = p(&dir.join("cosign.pub")).to_owned();
    let scopes: Vec<String> = scopes
        .iter()
        .map(|scope| format!(r#"{scope:?}: [{{"type": "sigstoreSigned", "keyPath": {key:?}}}]"#))
        .collect();
    ws.write(
        "policy.json",
        &format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{{}}}}}}}"#,
            scopes.join(", ")
        ),
    )
}

fn run(ws: &Workspace, mapping: &str, policy: &Path) -> (Option<i32>, Value) {
    let mapping = ws.write("mapping", mapping);
    let report = ws.path("report.json");
    let out = ws
        .command()
        .args([
            "run",
            "--insecure",
            "--policy",
            p(policy),
            "-f",
            p(&mapping),
        ])
        .args(["--report", p(&report)])
        .output()
        .expect("run");
    let json: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report json");
    (out.status.code(), json)
}

fn status<'a>(report: &'a Value, destination: &str) -> &'a Value {
    report["images"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["destination"] == destination))
        .map(|i| &i["status"])
        .unwrap_or_else(|| panic!("{destination} not in {report:#}"))
}

#[test]
fn no_blob_or_manifest_of_a_refused_image_reaches_the_destination() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let signed = seed_oci_image(&src, "org/signed", "1", &[layer(1, 4000), layer(2, 3000)]);
    // Signed for its tag (matchRepoDigestOrExact, the default, wants the exact tag).
    let identity = format!("{s}/org/signed:1");
    sign(
        dir,
        &format!("{s}/org/signed@{}", signed.digest),
        &["--sign-container-identity", &identity],
    );
    let unsigned = seed_oci_image(&src, "org/unsigned", "1", &[layer(3, 4000), layer(4, 3000)]);
    let policy = signed_only(
        &ws,
        dir,
        &[format!("{s}/org/signed"), format!("{s}/org/unsigned")],
    );
    let mapping =
        format!("{s}/org/signed:1 {d}/mirror/signed:1\n{s}/org/unsigned:1 {d}/mirror/unsigned:1\n");

    let mark = dst.mark();
    let (code, report) = run(&ws, &mapping, &policy);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(status(&report, &format!("{d}/mirror/signed:1")), "copied");
    assert_eq!(
        status(&report, &format!("{d}/mirror/unsigned:1")),
        "refused"
    );
    dst.assert_complete("mirror/signed", "1");

    // Not one request of the tool wrote into the refused image's repository, and none names
    // one of its blobs or its manifest anywhere at the destination.
    let writes = dst.tool_writes_since(mark);
    assert!(!writes.is_empty(), "the signed image was written");
    let refused_repo = "/v2/mirror/unsigned/";
    let of_refused: Vec<String> = writes
        .iter()
        .filter(|r| {
            r.path().starts_with(refused_repo)
                || unsigned
                    .blobs
                    .iter()
                    .chain([&unsigned.digest])
                    .any(|digest| r.uri.contains(digest.trim_start_matches("sha256:")))
        })
        .map(|r| r.to_string())
        .collect();
    assert!(
        of_refused.is_empty(),
        "writes of the refused image: {of_refused:#?}"
    );
    for blob in &unsigned.blobs {
        assert!(
            !dst.blob_exists("mirror/unsigned", blob),
            "{blob} was written"
        );
        assert!(
            !dst.blob_exists("mirror/signed", blob),
            "{blob} was written"
        );
    }
    assert!(
        dst.manifest_digest("mirror/unsigned", &unsigned.digest)
            .is_none()
    );
    assert!(dst.tags("mirror/unsigned").is_empty());
}
