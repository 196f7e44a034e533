//! OCI 1.1 referrers against a registry that HAS the referrers API (`ferro-oci-server`,
//! [`crate::support::ferro::Ferro`]) as well as against Debian's distribution 2.8, which has none
//! (referrers are then found and written through the fallback tag `sha256-<hex>`):
//!
//! - API source -> API destination: every referrer arrives with its digest and is listed by
//!   the destination's own referrers API; no fallback tag is written; a re-run writes nothing.
//! - API source -> fallback destination: the fallback index lists them at the destination.
//! - fallback source -> API destination: found through the API at the destination.
//!
//! Each image carries an SBOM referrer (`artifactType: application/spdx+json`, as ORAS pushes
//! one), what cosign writes in OCI 1.1 mode (`cosign sign` and `cosign attach sbom` with
//! `--registry-referrers-mode=oci-1-1`; cosign 2.5's `attest` has no such mode), a signature
//! on the SBOM (a referrer of a referrer), and a cosign attestation (`.att` tag) signed in
//! turn; the dry run lists all of them, and `cosign verify` / `verify-attestation` pass
//! against the destination.

use crate::support::cli::*;
use crate::support::cosign::*;
use crate::support::ferro::Ferro;
use crate::support::*;

const SPDX: &str = "application/spdx+json";
const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const COSIGN_SBOM: &str = "application/vnd.dev.cosign.artifact.sbom.v1+json";

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// An SBOM of `subject` in `repo` as ORAS pushes one (see [`push_sbom`]), its document naming
/// both.
fn push_repo_sbom(
    reg: &impl Push,
    repo: &str,
    subject: &str,
    subject_size: usize,
    fallback: bool,
) -> String {
    let document = format!(r#"{{"spdxVersion":"SPDX-2.3","name":"{repo}","subject":"{subject}"}}"#);
    push_sbom(reg, repo, subject, subject_size, &document, fallback)
}

/// What a test image has attached, and where each was found at the source.
struct Attached {
    image: Seeded,
    /// The SBOM referrer of the image.
    sbom: String,
    /// cosign's OCI 1.1 signature of the image (a referrer).
    signature: String,
    /// cosign's SBOM attached in OCI 1.1 mode (`cosign attach sbom`, a referrer).
    cosign_sbom: String,
    /// cosign's OCI 1.1 signature of the SBOM: a referrer of a referrer.
    sbom_signature: String,
    /// cosign's attestation of the image (`sha256-<image>.att`).
    attestation: String,
    /// A signature of that attestation (`sha256-<attestation>.sig`).
    attestation_signature: String,
}

impl Attached {
    /// Everything that must arrive with the image.
    fn all(&self) -> Vec<&str> {
        vec![
            &self.sbom,
            &self.signature,
            &self.cosign_sbom,
            &self.sbom_signature,
            &self.attestation,
            &self.attestation_signature,
        ]
    }
}

/// Seeds `org/app:v1` in `reg` (reached as `host`) with everything [`Attached`] names.
/// `manifest` reads a manifest's bytes back from `reg`, and `listed` what `reg` lists as the
/// referrers of a digest (its API, or its fallback index when it has no API: `fallback`).
fn seed_attached(
    reg: &impl Push,
    fallback: bool,
    host: &str,
    dir: &std::path::Path,
    manifest: &dyn Fn(&str) -> Option<Vec<u8>>,
    listed: &dyn Fn(&str) -> Vec<String>,
) -> Attached {
    let image = seed_oci_image(reg, "org/app", "v1", &[layer(41, 900)]);
    let size = manifest(&image.digest).expect("the image").len();
    let sbom = push_repo_sbom(reg, "org/app", &image.digest, size, fallback);
    let at = |digest: &str| format!("{host}/org/app@{digest}");
    sign(
        dir,
        &at(&image.digest),
        &["--registry-referrers-mode=oci-1-1"],
    );
    let signature = only_new(&listed(&image.digest), &[&sbom]);
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
            "--registry-referrers-mode=oci-1-1",
            &at(&image.digest),
        ],
    );
    let cosign_sbom = only_new(&listed(&image.digest), &[&sbom, &signature]);
    sign(dir, &at(&sbom), &["--registry-referrers-mode=oci-1-1"]);
    let sbom_signature = only_new(&listed(&sbom), &[]);
    attest(dir, &at(&image.digest));
    let att_tag = format!("sha256-{}.att", hex(&image.digest));
    let attestation = sha256_digest(&manifest(&att_tag).expect("cosign wrote the .att tag"));
    sign(dir, &at(&attestation), &[]);
    let sig_tag = format!("sha256-{}.sig", hex(&attestation));
    let attestation_signature =
        sha256_digest(&manifest(&sig_tag).expect("cosign wrote the attestation's .sig tag"));
    Attached {
        image,
        sbom,
        signature,
        cosign_sbom,
        sbom_signature,
        attestation,
        attestation_signature,
    }
}

/// The one digest of `now` not in `known`.
/// [`seed_attached`] into a ferro registry, which lists referrers by its API.
fn seed_at_ferro(src: &Ferro, dir: &std::path::Path) -> Attached {
    seed_attached(
        src,
        false,
        &src.host(),
        dir,
        &|reference| src.manifest("org/app", reference).map(|(_, b)| b),
        &|digest| src.referrer_digests("org/app", digest),
    )
}

fn only_new(now: &[String], known: &[&str]) -> String {
    let new: Vec<&String> = now
        .iter()
        .filter(|d| !known.contains(&d.as_str()))
        .collect();
    assert_eq!(new.len(), 1, "one new referrer expected in {now:?}");
    new[0].clone()
}

/// The digests a fallback index of `reg` lists for `subject`, sorted (empty when none).
fn fallback_listed(reg: &Registry, repo: &str, subject: &str) -> Vec<String> {
    let Some((_, bytes)) = reg.manifest(repo, &format!("sha256-{}", hex(subject))) else {
        return Vec::new();
    };
    let index: serde_json::Value = serde_json::from_slice(&bytes).expect("fallback index");
    let mut digests: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_owned())
        .collect();
    digests.sort();
    digests
}

/// The dry run lists every attached manifest that would be copied, nested ones too, each
/// under the digest it is attached to, and counts them in its summary. Returns what its report
/// lists, which the run must then copy.
fn dry_run_lists_everything(
    ws: &Workspace,
    mapping: &std::path::Path,
    attached: &Attached,
) -> Vec<(String, String)> {
    let (out, report) = ws.run_insecure(mapping, &["--dry-run"]);
    expect_code(&out, 0);
    let plan = text(&out.stdout);
    let line = |kind: &str, digest: &str, of: &str| format!("+ {kind} {digest}  (of {of})");
    let image = attached.image.digest.as_str();
    for expected in [
        line(&format!("referrer ({SPDX})"), &attached.sbom, image),
        line(
            &format!("referrer ({COSIGN_SIG})"),
            &attached.signature,
            image,
        ),
        line(
            &format!("referrer ({COSIGN_SBOM})"),
            &attached.cosign_sbom,
            image,
        ),
        line(
            &format!("referrer ({COSIGN_SIG})"),
            &attached.sbom_signature,
            &attached.sbom,
        ),
        line("attestation", &attached.attestation, image),
        line(
            "signature",
            &attached.attestation_signature,
            &attached.attestation,
        ),
    ] {
        assert!(
            plan.contains(&expected),
            "{expected} missing from the dry run:\n{plan}"
        );
    }
    assert!(
        plan.contains(
            "6 attached manifests (signatures, attestations, SBOMs, referrers) would be copied;"
        ),
        "{plan}"
    );
    let listed = reported(&report);
    assert_eq!(listed.len(), 6, "{report:#}");
    listed
}

fn sorted(mut digests: Vec<String>) -> Vec<String> {
    digests.sort();
    digests
}

/// The attachments the report shows for the first image, as (kind, digest), sorted.
fn reported(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["images"][0]["attached"]
        .as_array()
        .expect("attached")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().expect("kind").to_owned(),
                a["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn referrers_api_to_referrers_api_lists_them_at_the_destination() {
    let (src, dst) = (Ferro::start(), Ferro::start());
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let attached = seed_at_ferro(&src, dir);
    let image = &attached.image.digest;
    // The premise: the source lists them by its API and has no fallback tag.
    assert_eq!(
        src.referrer_digests("org/app", image),
        sorted(vec![
            attached.sbom.clone(),
            attached.signature.clone(),
            attached.cosign_sbom.clone()
        ])
    );
    assert!(
        !src.tags("org/app")
            .contains(&format!("sha256-{}", hex(image))),
        "ferro has the API: cosign wrote no fallback tag"
    );
    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {d}/mirror/app:v1\n"));

    let before = dst.requests();
    let rehearsed = dry_run_lists_everything(&ws, &mapping, &attached);
    assert_eq!(dst.requests().since(&before).writes(), 0);

    let (src_before, dst_before) = (src.requests(), dst.requests());
    let (out, report) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    let (src_seen, dst_seen) = (
        src.requests().since(&src_before),
        dst.requests().since(&dst_before),
    );

    for digest in attached.all() {
        assert_eq!(
            dst.manifest_digest("mirror/app", digest).as_deref(),
            Some(digest),
            "{digest} at the destination by digest"
        );
    }
    // Listed by the destination's own referrers API, as at the source; no fallback tag.
    assert_eq!(
        dst.referrer_digests("mirror/app", image),
        src.referrer_digests("org/app", image)
    );
    assert_eq!(
        dst.referrer_digests("mirror/app", &attached.sbom),
        vec![attached.sbom_signature.clone()]
    );
    let spdx = dst.referrers("mirror/app", image, Some(SPDX));
    assert_eq!(spdx.len(), 1, "{spdx:?}");
    assert_eq!(spdx[0]["digest"], attached.sbom.as_str());
    let sigs = dst.referrers("mirror/app", image, Some(COSIGN_SIG));
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0]["digest"], attached.signature.as_str());
    assert_eq!(
        dst.tags("mirror/app"),
        sorted(vec![
            "v1".to_owned(),
            format!("sha256-{}.att", hex(image)),
            format!("sha256-{}.sig", hex(&attached.attestation)),
        ]),
        "the cosign tags, and no fallback tag"
    );
    assert_eq!(
        reported(&report),
        rehearsed,
        "the run copied what the dry run listed"
    );
    assert_eq!(report["totals"]["attached_copied"], 6, "{report:#}");

    // The source's referrers API was asked once per digest copied (the image and each of
    // the six attached manifests); the destination's once in the run, to learn it has one.
    assert_eq!(src_seen.count(Some("GET"), "referrers"), 7, "{src_seen:?}");
    assert_eq!(dst_seen.count(Some("GET"), "referrers"), 1, "{dst_seen:?}");

    // cosign checks the copies at the destination.
    let there = |digest: &str| format!("{d}/mirror/app@{digest}");
    assert!(verifies(dir, &there(image), &["--experimental-oci11"]));
    assert!(verifies(
        dir,
        &there(&attached.sbom),
        &["--experimental-oci11"]
    ));
    let attestation = cosign(
        dir,
        &[
            "verify-attestation",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog",
            "--type",
            "custom",
            &there(image),
        ],
    );
    assert!(
        attestation.status.success(),
        "{}",
        text(&attestation.stderr)
    );

    // A re-run writes nothing, and asks no referrers API (the image is unchanged).
    let (src_before, dst_before) = (src.requests(), dst.requests());
    let (out, _) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    let (src_seen, dst_seen) = (
        src.requests().since(&src_before),
        dst.requests().since(&dst_before),
    );
    assert_eq!(dst_seen.writes(), 0, "{dst_seen:?}");
    assert_eq!(src_seen.count(None, "referrers"), 0, "{src_seen:?}");
    assert_eq!(
        dst.referrer_digests("mirror/app", image).len(),
        3,
        "nothing listed twice"
    );
}

#[test]
fn referrers_api_to_a_registry_without_it_writes_the_fallback_index() {
    let (src, dst) = (Ferro::start(), Registry::start());
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let attached = seed_at_ferro(&src, dir);
    let image = &attached.image.digest;
    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {d}/mirror/app:v1\n"));
    let mark = dst.mark();
    let rehearsed = dry_run_lists_everything(&ws, &mapping, &attached);
    assert!(dst.tool_writes_since(mark).is_empty());
    let mark = dst.mark();
    let (out, report) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    assert_eq!(reported(&report), rehearsed);
    let seen = dst.tool_requests_since(mark);

    for digest in attached.all() {
        assert_eq!(
            dst.manifest_digest("mirror/app", digest).as_deref(),
            Some(digest)
        );
    }
    // The fallback tags list what the source's API listed, for the image and the SBOM.
    assert_eq!(
        fallback_listed(&dst, "mirror/app", image),
        src.referrer_digests("org/app", image)
    );
    assert_eq!(
        fallback_listed(&dst, "mirror/app", &attached.sbom),
        vec![attached.sbom_signature.clone()]
    );
    // distribution has no referrers API: asked once, and its absence remembered.
    let asked = seen
        .iter()
        .filter(|r| r.path().contains("/referrers/"))
        .count();
    assert_eq!(asked, 1, "{seen:#?}");
    // cosign finds the signature there through the fallback tag.
    let there = |digest: &str| format!("{d}/mirror/app@{digest}");
    assert!(verifies(dir, &there(image), &["--experimental-oci11"]));
    assert!(verifies(
        dir,
        &there(&attached.sbom),
        &["--experimental-oci11"]
    ));

    let mark = dst.mark();
    let (out, _) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    assert!(
        dst.tool_writes_since(mark).is_empty(),
        "{:?}",
        dst.tool_writes_since(mark)
    );
}

#[test]
fn fallback_tags_to_a_referrers_api_are_listed_by_it() {
    let (src, dst) = (Registry::start(), Ferro::start());
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    // distribution has no API: the SBOM goes into a fallback index as ORAS writes it, and
    // cosign adds its signatures to the fallback indexes.
    let listed = |digest: &str| fallback_listed(&src, "org/app", digest);
    let attached = seed_attached(
        &src,
        true,
        &s,
        dir,
        &|reference| src.manifest("org/app", reference).map(|(_, b)| b),
        &listed,
    );
    let image = &attached.image.digest;
    assert!(
        src.tags("org/app")
            .contains(&format!("sha256-{}", hex(image))),
        "cosign wrote the fallback tag"
    );
    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {d}/mirror/app:v1\n"));
    let before = dst.requests();
    let rehearsed = dry_run_lists_everything(&ws, &mapping, &attached);
    assert_eq!(dst.requests().since(&before).writes(), 0);
    let mark = src.mark();
    let before = dst.requests();
    let (out, report) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    assert_eq!(reported(&report), rehearsed);
    let src_seen = src.tool_requests_since(mark);
    let dst_seen = dst.requests().since(&before);

    assert_eq!(
        dst.referrer_digests("mirror/app", image),
        listed(image),
        "the destination's API lists what the source's fallback index did"
    );
    assert_eq!(
        dst.referrer_digests("mirror/app", &attached.sbom),
        vec![attached.sbom_signature.clone()]
    );
    assert!(
        !dst.tags("mirror/app")
            .iter()
            .any(|t| !t.ends_with(".sig") && !t.ends_with(".att") && t.starts_with("sha256-")),
        "no fallback tag at a registry with the API: {:?}",
        dst.tags("mirror/app")
    );
    let asked = src_seen
        .iter()
        .filter(|r| r.path().contains("/referrers/"))
        .count();
    assert_eq!(
        asked, 1,
        "the source's missing API is asked once: {src_seen:#?}"
    );
    assert_eq!(dst_seen.count(Some("GET"), "referrers"), 1, "{dst_seen:?}");
    let there = |digest: &str| format!("{d}/mirror/app@{digest}");
    assert!(verifies(dir, &there(image), &["--experimental-oci11"]));
    assert!(verifies(
        dir,
        &there(&attached.sbom),
        &["--experimental-oci11"]
    ));

    // A re-run finds the referrers through the fallback tags again (the image is unchanged)
    // and writes nothing: ferro lists a manifest put twice twice, so a second PUT would show.
    let before = dst.requests();
    let (out, _) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    let seen = dst.requests().since(&before);
    assert_eq!(seen.writes(), 0, "{seen:?}");
    assert_eq!(dst.referrer_digests("mirror/app", image), listed(image));
}

#[test]
fn referrers_api_pages_are_followed() {
    let (src, dst) = (Ferro::start(), Ferro::start());
    let s = src.host();
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let attached = seed_at_ferro(&src, dir);
    let image = &attached.image.digest;
    // The source's referrers answered one descriptor per page, each page linking the next.
    let pager = crate::support::proxy::FaultProxy::start_with(
        &s,
        crate::support::proxy::Behaviour {
            referrer_pages: Some(1),
            ..Default::default()
        },
    );
    let (p_host, d) = (pager.host(), dst.host());
    let mapping = ws.write(
        "mapping",
        &format!("{p_host}/org/app:v1 {d}/mirror/app:v1\n"),
    );
    let (out, report) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);
    let listed = src.referrer_digests("org/app", image);
    assert_eq!(listed.len(), 3);
    assert_eq!(dst.referrer_digests("mirror/app", image), listed);
    assert_eq!(report["totals"]["attached_copied"], 6, "{report:#}");
    assert_eq!(
        pager.count("GET", &format!("/referrers/{image}")),
        3,
        "three pages of one, each asked once"
    );
}

/// `verify -f` after a run from a registry with the referrers API to one with it and one
/// without: every referrer (a referrer of a referrer too), the attestation and its signature
/// are found the same at both destinations — listed by the API there, or by the fallback
/// index — reading only. A referrer deleted at the destination without the API is then named.
#[test]
fn verify_finds_referrers_through_the_api_and_the_fallback_index() {
    let (src, api, plain) = (Ferro::start(), Ferro::start(), Registry::start());
    let (s, a, p_) = (src.host(), api.host(), plain.host());
    let ws = Workspace::new();
    let dir = ws.dir();
    cosign_ok(dir, &["generate-key-pair"]);
    let attached = seed_at_ferro(&src, dir);
    let mapping = ws.write(
        "mapping",
        &format!("{s}/org/app:v1 {a}/mirror/app:v1 {p_}/mirror/app:v1\n"),
    );
    let (out, _) = ws.run_insecure(&mapping, &[]);
    expect_code(&out, 0);

    let verify = || {
        let report = ws.path("verify.json");
        let out = ws
            .command()
            .args([
                "verify",
                "--insecure",
                "-f",
                p(&mapping),
                "--report",
                p(&report),
            ])
            .output()
            .expect("verify");
        (out, read_report(&report))
    };
    let (src_before, api_before, mark) = (src.requests(), api.requests(), plain.mark());
    let (out, report) = verify();
    expect_code(&out, 0);
    assert_eq!(src.requests().since(&src_before).writes(), 0);
    assert_eq!(api.requests().since(&api_before).writes(), 0);
    assert!(plain.tool_writes_since(mark).is_empty());
    let mut expected = sorted(attached.all().into_iter().map(str::to_owned).collect());
    for image in report["images"].as_array().expect("images") {
        let mut found: Vec<String> = image["attached"]
            .as_array()
            .expect("attached")
            .iter()
            .map(|a| a["digest"].as_str().expect("digest").to_owned())
            .collect();
        found.sort();
        assert_eq!(found, expected, "{image:#}");
    }

    assert!(plain.delete_manifest("mirror/app", &attached.sbom_signature));
    let (out, report) = verify();
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "referrer {} ({COSIGN_SIG}) of {} is missing at {p_}/mirror/app",
            attached.sbom_signature, attached.sbom
        )),
        "{stdout}"
    );
    assert_eq!(report["totals"]["problems"], 1, "{report:#}");
    expected.retain(|d| *d != attached.sbom_signature);
    assert_eq!(report["totals"]["attached_checked"], expected.len() + 6);
}
