//! `--policy` with keyless `sigstoreSigned` requirements (`fulcio` + `rekorPublicKey*`),
//! against a Fulcio CA and a Rekor key made in the test and signatures the real cosign
//! attaches: what the policy accepts is mirrored with its signatures and `cosign verify
//! --offline` accepts it at both ends; each failing check refuses its image with the reason,
//! nothing of it written, in the dry run too; and cosign refuses the same images.

use std::path::{Path, PathBuf};

use crate::support::cli::*;
use crate::support::fulcio::*;
use crate::support::*;
use serde_json::Value;

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main";
const GOOGLE: &str = "https://accounts.google.com";
const EMAIL: &str = "release@example.com";

/// The test's trust: the Fulcio CA and Rekor key the policy and cosign are given.
struct Roots {
    fulcio: Fulcio,
    rekor: Rekor,
    /// The Fulcio root alone (the policy's `caPath`).
    ca: PathBuf,
    /// Root and intermediate (cosign's `SIGSTORE_ROOT_FILE`).
    cosign_roots: PathBuf,
    rekor_pub: PathBuf,
}

impl Roots {
    fn new(ws: &Workspace) -> Roots {
        let (fulcio, rekor) = (Fulcio::new("test fulcio"), Rekor::new());
        Roots {
            ca: ws.write("fulcio-root.pem", fulcio.root_pem()),
            cosign_roots: ws.write("fulcio-roots.pem", &fulcio.roots_pem()),
            rekor_pub: ws.write("rekor.pub", &rekor.public_pem()),
            fulcio,
            rekor,
        }
    }

    fn verifies(&self, dir: &Path, image: &str, identity: &str, issuer: &str) -> bool {
        let out = cosign_verify(
            dir,
            &self.cosign_roots,
            &self.rekor_pub,
            image,
            identity,
            issuer,
        );
        if !out.status.success() {
            eprintln!("cosign verify {image}: {}", text(&out.stderr));
        }
        out.status.success()
    }
}

/// How one test signature departs from a good one.
#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    None,
    OtherIdentity,
    OtherIssuer,
    OtherCa,
    OtherRekorKey,
    SetForAnotherSignature,
    LoggedAfterExpiry,
    PayloadForAnotherDigest,
    SignedWithAnotherKey,
}

/// Signs `image` keyless for `san` from `issuer`, with `flaw`, and attaches it with cosign.
/// `other` is another image's reference (for a payload naming another digest).
#[allow(clippy::too_many_arguments)]
fn sign_keyless(
    dir: &Path,
    roots: &Roots,
    image: &str,
    other: &str,
    san: San<'_>,
    issuer: &str,
    flaw: Flaw,
) {
    let now = now();
    let other_fulcio;
    let fulcio = if flaw == Flaw::OtherCa {
        // The same names as the test Fulcio's: only the signatures tell them apart.
        other_fulcio = Fulcio::new("test fulcio");
        &other_fulcio
    } else {
        &roots.fulcio
    };
    let san = match flaw {
        Flaw::OtherIdentity => {
            San::Uri("https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main")
        }
        _ => san,
    };
    let issuer = if flaw == Flaw::OtherIssuer {
        "https://evil.example.com"
    } else {
        issuer
    };
    // Fulcio's certificates live ten minutes.
    let leaf = fulcio.issue(san, issuer, now - 60, now + 540);
    let signed = if flaw == Flaw::PayloadForAnotherDigest {
        other
    } else {
        image
    };
    let payload = payload(dir, signed);
    let signature = if flaw == Flaw::SignedWithAnotherKey {
        // Logged as it is, with the certificate it does not belong to.
        let other = fulcio.issue(San::Uri(WORKFLOW), issuer, now - 60, now + 540);
        other.sign(&payload)
    } else {
        leaf.sign(&payload)
    };
    let other_rekor;
    let rekor = if flaw == Flaw::OtherRekorKey {
        other_rekor = Rekor::new();
        &other_rekor
    } else {
        &roots.rekor
    };
    let logged_at = if flaw == Flaw::LoggedAfterExpiry {
        now + 3600
    } else {
        now
    };
    let bundle = if flaw == Flaw::SetForAnotherSignature {
        let another = leaf.sign(b"another payload");
        rekor.bundle(b"another payload", &another, &leaf.pem, logged_at)
    } else {
        rekor.bundle(&payload, &signature, &leaf.pem, logged_at)
    };
    attach(
        dir,
        image,
        &Keyless {
            payload: &payload,
            signature: &signature,
            leaf: &leaf,
            bundle: &bundle,
        },
    );
}

fn keyless_requirement(roots: &Roots, subject: &str, issuer: &str) -> String {
    format!(
        r#"[{{"type": "sigstoreSigned", "fulcio": {{"caPath": {:?}, "oidcIssuer": {issuer:?}, "subjectEmail": {subject:?}}}, "rekorPublicKeyPath": {:?}, "signedIdentity": {{"type": "matchRepository"}}}}]"#,
        p(&roots.ca),
        p(&roots.rekor_pub)
    )
}

#[test]
fn keyless_signatures_are_checked_offline_as_cosign_checks_them() {
    let (src, dst, ws) = (Registry::start(), Registry::start(), Workspace::new());
    let dir = ws.dir();
    let roots = Roots::new(&ws);
    let (s, d) = (src.host(), dst.host());
    let decoy = seed_oci_image(&src, "org/app", "decoy", &[layer(99, 500)]);
    let decoy_at = format!("{s}/org/app@{}", decoy.digest);

    let digest_reason = format!("signs {}", decoy.digest);
    // (tag, flaw, the reason a refusal gives)
    let cases = [
        ("good", Flaw::None, ""),
        (
            "identity",
            Flaw::OtherIdentity,
            "its certificate is for https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main from https://token.actions.githubusercontent.com, not https://github.com/org/app",
        ),
        (
            "issuer",
            Flaw::OtherIssuer,
            "from https://evil.example.com, not",
        ),
        ("ca", Flaw::OtherCa, "does not chain to Fulcio CA"),
        (
            "rekor",
            Flaw::OtherRekorKey,
            "its Rekor SignedEntryTimestamp does not verify with Rekor key",
        ),
        (
            "entry",
            Flaw::SetForAnotherSignature,
            "its Rekor entry is for another signature",
        ),
        (
            "expired",
            Flaw::LoggedAfterExpiry,
            "outside its certificate's validity",
        ),
        (
            "digest",
            Flaw::PayloadForAnotherDigest,
            digest_reason.as_str(),
        ),
        (
            "key",
            Flaw::SignedWithAnotherKey,
            "its signature does not verify with its certificate's key",
        ),
    ];
    let mut seeded = Vec::new();
    for (i, (tag, flaw, _)) in cases.iter().enumerate() {
        let image = seed_oci_image(&src, "org/app", tag, &[layer(i as u64 + 1, 900)]);
        let at = format!("{s}/org/app@{}", image.digest);
        sign_keyless(
            dir,
            &roots,
            &at,
            &decoy_at,
            San::Uri(WORKFLOW),
            GITHUB,
            *flaw,
        );
        seeded.push(image);
    }
    let unsigned = seed_oci_image(&src, "org/app", "unsigned", &[layer(50, 900)]);
    // An email identity from another issuer, under its own scope.
    let mail = seed_oci_image(&src, "people/app", "good", &[layer(60, 900)]);
    let mail_at = format!("{s}/people/app@{}", mail.digest);
    sign_keyless(
        dir,
        &roots,
        &mail_at,
        &decoy_at,
        San::Email(EMAIL),
        GOOGLE,
        Flaw::None,
    );

    // cosign, offline with the same roots, accepts exactly the good ones.
    for ((tag, flaw, _), image) in cases.iter().zip(&seeded) {
        let at = format!("{s}/org/app@{}", image.digest);
        assert_eq!(
            roots.verifies(dir, &at, WORKFLOW, GITHUB),
            *flaw == Flaw::None,
            "cosign verify of {tag}"
        );
    }
    assert!(roots.verifies(dir, &mail_at, EMAIL, GOOGLE));
    assert!(!roots.verifies(dir, &mail_at, EMAIL, GITHUB));

    let policy = ws.write(
        "policy.json",
        &format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{s}/org": {}, "{s}/people": {}}}}}}}"#,
            keyless_requirement(&roots, WORKFLOW, GITHUB),
            keyless_requirement(&roots, EMAIL, GOOGLE),
        ),
    );
    let mut mapping: String = cases
        .iter()
        .map(|(tag, _, _)| format!("{s}/org/app:{tag} {d}/mirror/app:{tag}\n"))
        .collect();
    mapping.push_str(&format!(
        "{s}/org/app:unsigned {d}/mirror/app:unsigned\n{s}/people/app:good {d}/mirror/people:good\n"
    ));
    let mapping = ws.write("mapping", &mapping);
    let check = |report: &Value, accepted: &str| {
        for (tag, flaw, reason) in &cases {
            let image = image_by_destination(report, &format!("{d}/mirror/app:{tag}"));
            if *flaw == Flaw::None {
                assert_eq!(image["status"], accepted, "{image:#}");
                continue;
            }
            assert_eq!(image["status"], "refused", "{tag}: {image:#}");
            let error = image["error"].as_str().unwrap_or_default();
            assert!(error.contains(reason), "{tag}: {error}");
            assert!(
                error.contains(&format!(
                    "is signed with a certificate of Fulcio CA {} for {WORKFLOW} from {GITHUB}",
                    p(&roots.ca)
                )),
                "{tag}: {error}"
            );
        }
        let image = image_by_destination(report, &format!("{d}/mirror/app:unsigned"));
        assert_eq!(image["status"], "refused");
        assert!(
            image["error"]
                .as_str()
                .unwrap_or_default()
                .contains("(it has no signature)"),
            "{image:#}"
        );
        assert_eq!(
            image_by_destination(report, &format!("{d}/mirror/people:good"))["status"],
            accepted
        );
    };

    // The rehearsal refuses the same images and writes nothing.
    let (code, report) = ws.run_with_policy(&mapping, &policy, &["--dry-run"]);
    assert_eq!(code, Some(1), "{report:#}");
    check(&report, "would-copy");
    assert!(dst.catalog().is_empty(), "{:?}", dst.catalog());

    let (code, report) = ws.run_with_policy(&mapping, &policy, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    check(&report, "copied");
    // The accepted images and their signatures are at the destination, and cosign verifies
    // them there; nothing of a refused image is.
    let good = &seeded[0];
    assert_eq!(
        dst.manifest_digest("mirror/app", "good").as_deref(),
        Some(good.digest.as_str())
    );
    assert!(roots.verifies(
        dir,
        &format!("{d}/mirror/app@{}", good.digest),
        WORKFLOW,
        GITHUB
    ));
    assert!(roots.verifies(
        dir,
        &format!("{d}/mirror/people@{}", mail.digest),
        EMAIL,
        GOOGLE
    ));
    for image in seeded[1..].iter().chain([&unsigned]) {
        assert!(dst.manifest_digest("mirror/app", &image.digest).is_none());
        let sig = format!("sha256-{}.sig", image.digest.trim_start_matches("sha256:"));
        assert!(dst.manifest_digest("mirror/app", &sig).is_none());
    }
}

#[test]
fn a_keyless_policy_that_cannot_be_enforced_is_exit_2_before_any_request() {
    let (src, ws) = (Registry::start(), Workspace::new());
    let s = src.host();
    let roots = Roots::new(&ws);
    let mapping = ws.write("mapping", &format!("{s}/org/app:v1 {s}/mirror/app:v1\n"));
    let not_pem = ws.write("not-a-ca.pem", "hello");
    let (ca, rekor) = (p(&roots.ca), p(&roots.rekor_pub));
    let fulcio = |ca: &str| {
        format!(
            r#""fulcio": {{"caPath": {ca:?}, "oidcIssuer": "{GITHUB}", "subjectEmail": "{EMAIL}"}}"#
        )
    };
    let cases = [
        (
            format!(
                r#"{}, "rekorPublicKeyPath": {rekor:?}"#,
                fulcio("/nonexistent/ca.pem")
            ),
            "Fulcio CA /nonexistent/ca.pem".to_owned(),
        ),
        (
            format!(
                r#"{}, "rekorPublicKeyPath": {rekor:?}"#,
                fulcio(p(&not_pem))
            ),
            format!("{}: no PEM CERTIFICATE", p(&not_pem)),
        ),
        (
            format!(
                r#"{}, "rekorPublicKeyPath": "/nonexistent/rekor.pub""#,
                fulcio(ca)
            ),
            "Rekor key /nonexistent/rekor.pub".to_owned(),
        ),
        (
            fulcio(ca),
            "default[0]: \"fulcio\" needs \"rekorPublicKeyPath\"".to_owned(),
        ),
        (
            format!(
                r#"{}, "rekorPublicKeyPath": {rekor:?}, "rekorKey": "x""#,
                fulcio(ca)
            ),
            "default[0]: unknown field \"rekorKey\"".to_owned(),
        ),
        (
            format!(
                r#""fulcio": {{"caPath": {ca:?}, "oidcIssuer": "{GITHUB}", "subjectEmail": "{EMAIL}", "subject": "x"}}, "rekorPublicKeyPath": {rekor:?}"#
            ),
            "default[0].fulcio: unknown field \"subject\"".to_owned(),
        ),
    ];
    let mark = src.mark();
    for (fields, expected) in cases {
        let written = format!(r#"{{"default": [{{"type": "sigstoreSigned", {fields}}}]}}"#);
        let policy = ws.write("policy.json", &written);
        let stderr = ws.run_with_bad_policy(&mapping, &policy);
        assert!(stderr.contains(&expected), "{written}: {stderr}");
        assert!(stderr.contains(p(&policy)), "{stderr}");
    }
    assert!(src.requests_since(mark).is_empty());
}
