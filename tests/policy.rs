//! `--policy` mirrors only what is signed, with real cosign signatures: the images a
//! containers-policy.json accepts are copied, the others are `refused` (exit 1) and nothing of
//! them is written; a policy that cannot be enforced is exit 2 before any request.

use std::path::Path;

use crate::support::cli::*;
use crate::support::cosign::*;
use crate::support::*;
use base64::Engine;
use serde_json::Value;

/// A policy whose scopes (`scope`, requirements JSON) sit under `transports.docker`, with
/// `default` rejecting everything else.
fn policy(ws: &Workspace, scopes: &[(String, String)]) -> std::path::PathBuf {
    let scopes: Vec<String> = scopes
        .iter()
        .map(|(scope, reqs)| format!("{scope:?}: {reqs}"))
        .collect();
    ws.write(
        "policy.json",
        &format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{{}}}}}}}"#,
            scopes.join(", ")
        ),
    )
}

/// `sigstoreSigned` with the workspace's cosign.pub and a `signedIdentity` (none: the default).
fn signed_by(dir: &Path, identity: Option<&str>) -> String {
    let identity = identity
        .map(|t| format!(r#", "signedIdentity": {{"type": "{t}"}}"#))
        .unwrap_or_default();
    format!(
        r#"[{{"type": "sigstoreSigned", "keyPath": {:?}{identity}}}]"#,
        p(&dir.join("cosign.pub"))
    )
}

/// Runs image-mirror with the policy; the exit code and the report's images by destination.
fn run(ws: &Workspace, mapping: &str, policy: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mapping = ws.write("mapping", mapping);
    ws.run_with_policy(&mapping, policy, extra)
}

fn assert_refused(report: &Value, destination: &str, reason: &str) {
    let image = image_by_destination(report, destination);
    assert_eq!(image["status"], "refused", "{image:#}");
    let error = image["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "{destination}: {error}");
}

/// The `.sig` manifest of `digest` in `repo`, as JSON.
fn sig_manifest(reg: &Registry, repo: &str, digest: &str) -> Value {
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let (_, bytes) = reg.manifest(repo, &tag).expect("a .sig manifest");
    serde_json::from_slice(&bytes).expect("json")
}

fn put_sig(reg: &Registry, repo: &str, digest: &str, manifest: &Value) {
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let media_type = manifest["mediaType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    reg.push_manifest(
        repo,
        &tag,
        &media_type,
        &serde_json::to_vec(manifest).expect("json"),
    );
}

#[test]
fn only_images_signed_for_what_is_mirrored_are_copied() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let at = |seeded: &Seeded| format!("{s}/org/app@{}", seeded.digest);

    // Signed for its tag (matchRepoDigestOrExact wants the exact tag of a tagged source).
    let tagged = seed_oci_image(&src, "org/app", "tagged", &[layer(1, 900)]);
    let identity = format!("{s}/org/app:tagged");
    sign(dir, &at(&tagged), &["--sign-container-identity", &identity]);
    // Signed as cosign does by default (the repository alone), mirrored by digest.
    let pinned = seed_oci_image(&src, "org/app", "pinned", &[layer(2, 900)]);
    sign(dir, &at(&pinned), &[]);
    // An index: its own digest is signed, not its children (no --recursive).
    let multi = seed_oci_index(
        &src,
        "org/app",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        3,
    );
    let identity = format!("{s}/org/app:multi");
    sign(dir, &at(&multi), &["--sign-container-identity", &identity]);
    let unsigned = seed_oci_image(&src, "org/app", "unsigned", &[layer(4, 900)]);
    // Another image's signature under this one's .sig tag.
    let retagged = seed_oci_image(&src, "org/app", "retagged", &[layer(5, 900)]);
    put_sig(
        &src,
        "org/app",
        &retagged.digest,
        &sig_manifest(&src, "org/app", &tagged.digest),
    );
    // A signature with one byte flipped.
    let flipped = seed_oci_image(&src, "org/app", "flipped", &[layer(6, 900)]);
    let identity = format!("{s}/org/app:flipped");
    sign(
        dir,
        &at(&flipped),
        &["--sign-container-identity", &identity],
    );
    let mut sig = sig_manifest(&src, "org/app", &flipped.digest);
    let annotation = &mut sig["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64
        .decode(annotation.as_str().expect("signature"))
        .expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    *annotation = Value::String(b64.encode(&bytes));
    put_sig(&src, "org/app", &flipped.digest, &sig);

    let policy = policy(&ws, &[(format!("{s}/org/app"), signed_by(dir, None))]);
    let mapping = format!(
        "{s}/org/app:tagged {d}/mirror/app:tagged\n{s}/org/app@{} {d}/mirror/app:pinned\n{s}/org/app:multi {d}/mirror/app:multi\n{s}/org/app:unsigned {d}/mirror/app:unsigned\n{s}/org/app:retagged {d}/mirror/app:retagged\n{s}/org/app:flipped {d}/mirror/app:flipped\n",
        pinned.digest
    );
    let check = |report: &Value| {
        let key = p(&dir.join("cosign.pub")).to_owned();
        assert_refused(
            report,
            &format!("{d}/mirror/app:unsigned"),
            &format!(
                "no signature of {s}/org/app@{} verifies with key {key}",
                unsigned.digest
            ),
        );
        assert_refused(
            report,
            &format!("{d}/mirror/app:retagged"),
            &format!("signs {}", tagged.digest),
        );
        assert_refused(
            report,
            &format!("{d}/mirror/app:flipped"),
            "verifies with key",
        );
    };

    // The rehearsal refuses the same images and writes nothing.
    let (code, report) = run(&ws, &mapping, &policy, &["--dry-run"]);
    assert_eq!(code, Some(1), "{report:#}");
    check(&report);
    for tag in ["tagged", "pinned", "multi"] {
        assert_eq!(
            image_by_destination(&report, &format!("{d}/mirror/app:{tag}"))["status"],
            "would-copy"
        );
    }
    assert!(dst.tags("mirror/app").is_empty());

    let (code, report) = run(&ws, &mapping, &policy, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    check(&report);
    let mut tags: Vec<String> = dst
        .tags("mirror/app")
        .into_iter()
        .filter(|t| !t.starts_with("sha256-"))
        .collect();
    tags.sort();
    assert_eq!(tags, ["multi", "pinned", "tagged"]);
    for (tag, seeded) in [("tagged", &tagged), ("pinned", &pinned), ("multi", &multi)] {
        assert_eq!(
            image_by_destination(&report, &format!("{d}/mirror/app:{tag}"))["status"],
            "copied"
        );
        assert_eq!(
            dst.manifest_digest("mirror/app", tag).as_deref(),
            Some(seeded.digest.as_str())
        );
    }
    // Nothing of a refused image was written: not its manifest, not its signature.
    for seeded in [&unsigned, &retagged, &flipped] {
        assert!(dst.manifest_digest("mirror/app", &seeded.digest).is_none());
    }
}

#[test]
fn a_signature_for_another_tag_passes_only_match_repository() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let image = seed_oci_image(&src, "org/app", "v1", &[layer(1, 900)]);
    let identity = format!("{s}/org/app:v2");
    sign(
        dir,
        &format!("{s}/org/app@{}", image.digest),
        &["--sign-container-identity", &identity],
    );
    let mapping = format!("{s}/org/app:v1 {d}/mirror/app:v1\n");

    let exact = policy(
        &ws,
        &[(
            format!("{s}/org/app"),
            signed_by(dir, Some("matchRepoDigestOrExact")),
        )],
    );
    let (code, report) = run(&ws, &mapping, &exact, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_refused(
        &report,
        &format!("{d}/mirror/app:v1"),
        &format!("signed for {s}/org/app:v2"),
    );
    assert!(dst.tags("mirror/app").is_empty());

    let repository = policy(
        &ws,
        &[(
            format!("{s}/org/app"),
            signed_by(dir, Some("matchRepository")),
        )],
    );
    let (code, report) = run(&ws, &mapping, &repository, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        dst.manifest_digest("mirror/app", "v1").as_deref(),
        Some(image.digest.as_str())
    );

    // matchExact wants the tag too.
    let exact = policy(
        &ws,
        &[(format!("{s}/org/app"), signed_by(dir, Some("matchExact")))],
    );
    let (code, report) = run(
        &ws,
        &format!("{s}/org/app:v1 {d}/mirror/app:again\n"),
        &exact,
        &[],
    );
    assert_eq!(code, Some(1), "{report:#}");
    assert_refused(&report, &format!("{d}/mirror/app:again"), "signed for");
}

/// `remapIdentity`: mirrored from a mirror, an image still verifies with the signature made
/// for its original name, once the policy maps the mirror's prefix back to it; without the
/// remap the default identity refuses it.
#[test]
fn remap_identity_accepts_a_signature_made_for_the_original_name() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let image = seed_oci_image(&src, "org/app", "v1", &[layer(7, 900)]);
    sign(
        dir,
        &format!("{s}/org/app@{}", image.digest),
        &["--sign-container-identity", &format!("{s}/org/app:v1")],
    );
    // A first mirror, signatures and all: the signature still names org/app.
    let (code, report) = run_without_policy(&ws, &format!("{s}/org/app:v1 {s}/mirror/app:v1\n"));
    assert_eq!(code, Some(0), "{report:#}");
    let mapping = format!("{s}/mirror/app:v1 {d}/final/app:v1\n");

    let plain = policy(&ws, &[(format!("{s}/mirror"), signed_by(dir, None))]);
    let (code, report) = run(&ws, &mapping, &plain, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_refused(
        &report,
        &format!("{d}/final/app:v1"),
        &format!("signed for {s}/org/app:v1"),
    );
    assert!(dst.tags("final/app").is_empty());

    let remapped = policy(
        &ws,
        &[(
            format!("{s}/mirror"),
            format!(
                r#"[{{"type": "sigstoreSigned", "keyPath": {:?}, "signedIdentity": {{"type": "remapIdentity", "prefix": "{s}/mirror", "signedPrefix": "{s}/org"}}}}]"#,
                p(&dir.join("cosign.pub"))
            ),
        )],
    );
    let (code, report) = run(&ws, &mapping, &remapped, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        dst.manifest_digest("final/app", "v1").as_deref(),
        Some(image.digest.as_str())
    );
}

#[test]
fn the_most_specific_scope_wins_and_reject_refuses() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    for (i, repo) in [
        "org/app",
        "org/open/app",
        "org/closed/app",
        "org/closed/app2",
    ]
    .iter()
    .enumerate()
    {
        seed_oci_image(&src, repo, "v1", &[layer(i as u64 + 1, 900)]);
    }
    let policy = policy(
        &ws,
        &[
            (s.clone(), signed_by(dir, None)),
            (
                format!("{s}/org/open"),
                r#"[{"type": "insecureAcceptAnything"}]"#.into(),
            ),
            (
                format!("{s}/org/closed"),
                r#"[{"type": "insecureAcceptAnything"}]"#.into(),
            ),
            (
                format!("{s}/org/closed/app"),
                r#"[{"type": "reject"}]"#.into(),
            ),
        ],
    );
    let mapping = format!(
        "{s}/org/app:v1 {d}/m/app:v1\n{s}/org/open/app:v1 {d}/m/open:v1\n{s}/org/closed/app:v1 {d}/m/closed:v1\n{s}/org/closed/app2:v1 {d}/m/closed2:v1\n"
    );
    let (code, report) = run(&ws, &mapping, &policy, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    // The registry's scope wants a signature; the namespace's, more specific, accepts all,
    // and the repository's, more specific still, rejects.
    assert_refused(
        &report,
        &format!("{d}/m/app:v1"),
        &format!("(policy scope {s})"),
    );
    assert_eq!(
        image_by_destination(&report, &format!("{d}/m/open:v1"))["status"],
        "copied"
    );
    assert_eq!(
        image_by_destination(&report, &format!("{d}/m/closed2:v1"))["status"],
        "copied"
    );
    assert_refused(&report, &format!("{d}/m/closed:v1"), "the policy rejects");
    assert!(dst.tags("m/app").is_empty());
    assert!(dst.tags("m/closed").is_empty());
}

#[test]
fn a_policy_that_cannot_be_enforced_is_exit_2_before_any_request() {
    let (src, ws) = (Registry::start(), Workspace::new());
    let s = src.host();
    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {s}/mirror/app:v1\n"));
    let cases = [
        ("{ not json", "not JSON"),
        (
            r#"{"default": [{"type": "acceptAll"}]}"#,
            "unknown requirement type",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca.pem", "oidcIssuer": "https://x", "subjectEmail": "a@b"}, "rekorPublicKeyPath": "/r.pub"}]}"#,
            "Fulcio CA /ca.pem",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/nonexistent/cosign.pub"}]}"#,
            "/nonexistent/cosign.pub",
        ),
    ];
    let mark = src.mark();
    for (written, expected) in cases {
        let policy = ws.write("policy.json", written);
        let stderr = ws.run_with_bad_policy(&mapping, &policy);
        assert!(stderr.contains(expected), "{written}: {stderr}");
    }
    let unreadable = ws.path("no-such-policy.json");
    ws.run_with_bad_policy(&mapping, &unreadable);
    assert!(src.requests_since(mark).is_empty());
}

/// The run's report without a policy (`run` above always passes one).
fn run_without_policy(ws: &Workspace, mapping: &str) -> (Option<i32>, Value) {
    let mapping = ws.write("mapping", mapping);
    let (out, report) = ws.run_report(&mapping, &["--insecure"]);
    (out.status.code(), report)
}

fn requests(report: &Value) -> u64 {
    report["totals"]["requests"]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.requests in {report:#}"))
}

/// An image already at the destination is checked against `--policy` on every run: once its
/// signature is removed at the source, or the policy refuses its scope, it is `refused`
/// (exit 1) and left as it is at the destination. The re-check costs two GETs per signed
/// image (its `.sig` manifest and payload: the tag list says the tag exists); without
/// `--policy` an unchanged re-run sends nothing more.
#[test]
fn unchanged_images_are_rechecked_against_the_policy() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let one = seed_oci_image(&src, "org/app", "one", &[layer(1, 900)]);
    let two = seed_oci_image(&src, "org/app", "two", &[layer(2, 900)]);
    for seeded in [&one, &two] {
        sign(dir, &format!("{s}/org/app@{}", seeded.digest), &[]);
    }
    let accept = policy(
        &ws,
        &[(
            format!("{s}/org/app"),
            signed_by(dir, Some("matchRepository")),
        )],
    );
    let mapping =
        format!("{s}/org/app:one {d}/mirror/app:one\n{s}/org/app:two {d}/mirror/app:two\n");
    let (code, report) = run(&ws, &mapping, &accept, &[]);
    assert_eq!(code, Some(0), "{report:#}");

    // Unchanged, with and without the policy: what the re-check costs.
    let (code, without) = run_without_policy(&ws, &mapping);
    assert_eq!(code, Some(0), "{without:#}");
    let mark = src.mark();
    let (code, with) = run(&ws, &mapping, &accept, &[]);
    assert_eq!(code, Some(0), "{with:#}");
    for tag in ["one", "two"] {
        assert_eq!(
            image_by_destination(&with, &format!("{d}/mirror/app:{tag}"))["status"],
            "unchanged"
        );
    }
    assert_eq!(
        requests(&with) - requests(&without),
        4,
        "a .sig manifest and a payload per image: {without:#} {with:#}"
    );
    let sig_gets = src
        .tool_requests_since(mark)
        .iter()
        .filter(|r| r.to_string().contains("GET") && r.path().ends_with(".sig"))
        .count();
    assert_eq!(sig_gets, 2);

    // The signature of `one` removed at the source: refused, and left at the destination.
    let sig = src
        .manifest_digest(
            "org/app",
            &format!("sha256-{}.sig", one.digest.trim_start_matches("sha256:")),
        )
        .expect("a signature");
    assert!(src.delete_manifest("org/app", &sig));
    let dst_mark = dst.mark();
    let (code, report) = run(&ws, &mapping, &accept, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_refused(
        &report,
        &format!("{d}/mirror/app:one"),
        &format!(
            "no signature of {s}/org/app@{} verifies with key {} (it has no signature) (policy scope {s}/org/app); {d}/mirror/app:one already holds it and is left as it is",
            one.digest,
            p(&dir.join("cosign.pub"))
        ),
    );
    assert_eq!(
        image_by_destination(&report, &format!("{d}/mirror/app:two"))["status"],
        "unchanged"
    );
    assert_eq!(report["totals"]["refused"], 1);
    assert!(dst.tool_writes_since(dst_mark).is_empty());
    assert_eq!(
        dst.manifest_digest("mirror/app", "one").as_deref(),
        Some(one.digest.as_str())
    );

    // A stricter policy: the repository rejected.
    let reject = policy(
        &ws,
        &[(format!("{s}/org/app"), r#"[{"type": "reject"}]"#.into())],
    );
    let (code, report) = run(&ws, &mapping, &reject, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_refused(
        &report,
        &format!("{d}/mirror/app:two"),
        "the policy rejects",
    );
    assert!(dst.tool_writes_since(dst_mark).is_empty());
}

/// `openssl` in `dir`, checked.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    out.stdout
}

/// Signs `image` with the RSA key `rsa.pem` the way cosign documents for keys it does not
/// hold: cosign writes the simple-signing payload (`cosign generate`), openssl signs it
/// (RSA PKCS#1 v1.5 with SHA-256, what cosign's RSA signer makes), cosign attaches the
/// signature (`cosign attach signature`). (`cosign import-key-pair` would let cosign sign
/// itself, but Debian's cosign 2.5 refuses every key it is given to import — "error
/// validating rsa key: unsupported public key type", EC keys alike.)
fn sign_with_rsa(dir: &Path, image: &str) {
    let out = cosign(dir, &["generate", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(dir.join("payload.json"), &out.stdout).expect("payload");
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            "rsa.pem",
            "-out",
            "payload.sig",
            "payload.json",
        ],
    );
    let signature = std::fs::read(dir.join("payload.sig")).expect("signature");
    let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
    std::fs::write(dir.join("payload.sig.b64"), b64).expect("signature");
    cosign_ok(
        dir,
        &[
            "attach",
            "signature",
            "--payload",
            "payload.json",
            "--signature",
            "payload.sig.b64",
            image,
        ],
    );
}

/// An RSA key made by openssl, end to end: `--policy` with `keyPath` to its public key
/// accepts the image signed with it and refuses the unsigned one and one whose signature
/// was tampered with; `cosign verify --key` agrees on each, at the source and at the
/// destination.
#[test]
fn an_rsa_key_accepts_what_it_signed_and_refuses_the_rest() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
            "-out",
            "rsa.pem",
        ],
    );
    openssl(
        dir,
        &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"],
    );
    let (s, d) = (src.host(), dst.host());
    let signed = seed_oci_image(&src, "org/app", "signed", &[layer(1, 900)]);
    let unsigned = seed_oci_image(&src, "org/app", "unsigned", &[layer(2, 900)]);
    let tampered = seed_oci_image(&src, "org/app", "tampered", &[layer(3, 900)]);
    sign_with_rsa(dir, &format!("{s}/org/app@{}", signed.digest));
    sign_with_rsa(dir, &format!("{s}/org/app@{}", tampered.digest));
    let mut sig = sig_manifest(&src, "org/app", &tampered.digest);
    let annotation = &mut sig["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64
        .decode(annotation.as_str().expect("signature"))
        .expect("base64");
    bytes[10] ^= 1;
    *annotation = Value::String(b64.encode(&bytes));
    put_sig(&src, "org/app", &tampered.digest, &sig);

    let rsa_verifies = |image: &str| {
        cosign(
            dir,
            &[
                "verify",
                "--key",
                "rsa.pub",
                "--insecure-ignore-tlog",
                image,
            ],
        )
        .status
        .success()
    };
    let at = |reg: &str, repo: &str, seeded: &Seeded| format!("{reg}/{repo}@{}", seeded.digest);
    assert!(rsa_verifies(&at(&s, "org/app", &signed)));
    assert!(!rsa_verifies(&at(&s, "org/app", &unsigned)));
    assert!(!rsa_verifies(&at(&s, "org/app", &tampered)));

    let policy = ws.write(
        "policy.json",
        &format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{s}/org/app": [{{"type": "sigstoreSigned", "keyPath": {:?}, "signedIdentity": {{"type": "matchRepository"}}}}]}}}}}}"#,
            p(&dir.join("rsa.pub"))
        ),
    );
    let mapping = format!(
        "{s}/org/app:signed {d}/mirror/app:signed\n{s}/org/app:unsigned {d}/mirror/app:unsigned\n{s}/org/app:tampered {d}/mirror/app:tampered\n"
    );
    let (code, report) = run(&ws, &mapping, &policy, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        image_by_destination(&report, &format!("{d}/mirror/app:signed"))["status"],
        "copied"
    );
    let key = p(&dir.join("rsa.pub")).to_owned();
    assert_refused(
        &report,
        &format!("{d}/mirror/app:unsigned"),
        &format!(
            "no signature of {s}/org/app@{} verifies with key {key} (it has no signature)",
            unsigned.digest
        ),
    );
    assert_refused(
        &report,
        &format!("{d}/mirror/app:tampered"),
        &format!(
            "no signature of {s}/org/app@{} verifies with key {key}",
            tampered.digest
        ),
    );
    assert!(rsa_verifies(&at(&d, "mirror/app", &signed)));
    assert!(dst.manifest_digest("mirror/app", "unsigned").is_none());
    assert!(dst.manifest_digest("mirror/app", "tampered").is_none());
}

/// A signature whose payload is right in everything but the digest it signs (made for
/// another image, with the identity this one is mirrored by) is refused, and the message
/// says which digest it signs.
#[test]
fn a_signature_of_another_digest_is_refused_for_that_alone() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let (s, d) = (src.host(), dst.host());
    let other = seed_oci_image(&src, "org/app", "other", &[layer(11, 900)]);
    let image = seed_oci_image(&src, "org/app", "app", &[layer(12, 900)]);
    // `other` signed for `org/app:app`, then that signature put under `app`'s .sig tag: the
    // identity is the one `app` is mirrored by; only the digest is another.
    let identity = format!("{s}/org/app:app");
    sign(
        dir,
        &format!("{s}/org/app@{}", other.digest),
        &["--sign-container-identity", &identity],
    );
    put_sig(
        &src,
        "org/app",
        &image.digest,
        &sig_manifest(&src, "org/app", &other.digest),
    );
    let policy = policy(&ws, &[(format!("{s}/org/app"), signed_by(dir, None))]);
    let (code, report) = run(
        &ws,
        &format!("{s}/org/app:app {d}/mirror/app:app\n"),
        &policy,
        &[],
    );
    assert_eq!(code, Some(1), "{report:#}");
    let destination = format!("{d}/mirror/app:app");
    assert_refused(
        &report,
        &destination,
        &format!("signs {}, not {}", other.digest, image.digest),
    );
    let error = image_by_destination(&report, &destination)["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.contains("signed for"), "{error}");
    assert!(dst.tags("mirror/app").is_empty());
}

/// `--policy` refuses an image before anything of it is written: not one blob, not a
/// manifest, not an upload session of a refused image reaches the destination, while a
/// signed image of the same run is copied whole. (A policy check moved after the content is
/// placed would still refuse the image, and still leave no tag: only the destination's
/// requests and blobs show the difference.)
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
    let policy = policy(
        &ws,
        &[
            (format!("{s}/org/signed"), signed_by(dir, None)),
            (format!("{s}/org/unsigned"), signed_by(dir, None)),
        ],
    );
    let mapping =
        format!("{s}/org/signed:1 {d}/mirror/signed:1\n{s}/org/unsigned:1 {d}/mirror/unsigned:1\n");

    let mark = dst.mark();
    let (code, report) = run(&ws, &mapping, &policy, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        image_by_destination(&report, &format!("{d}/mirror/signed:1"))["status"],
        "copied"
    );
    assert_eq!(
        image_by_destination(&report, &format!("{d}/mirror/unsigned:1"))["status"],
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
