//! The checks of one cosign signature: its bytes against a public key (ring does the
//! mathematics), its simple-signing payload against the image's digest, and the payload's
//! `docker-reference` against the image's name under the policy's `signedIdentity`.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::file::Identity;
use crate::model::reference::Digest;

/// The `critical.type` of a cosign signature payload.
const COSIGN_TYPE: &str = "cosign container image signature";

/// A public key cosign makes (`cosign generate-key-pair`: ECDSA P-256) or imports (RSA).
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Where it came from (a path, or `keyData`), for messages.
    pub name: String,
    algorithm: Algorithm,
    /// The key as ring reads it: the EC point, or PKCS#1 `RSAPublicKey`.
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Algorithm {
    EcdsaP256,
    Rsa,
}

impl PublicKey {
    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as in cosign's `cosign.pub`.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<PublicKey, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| format!("{name}: not a PEM public key: {e}"))?;
        if pem.label != "PUBLIC KEY" {
            return Err(format!(
                "{name}: a PEM {:?}, not a \"PUBLIC KEY\"",
                pem.label
            ));
        }
        let (_, spki) = SubjectPublicKeyInfo::from_der(&pem.contents)
            .map_err(|e| format!("{name}: not a SubjectPublicKeyInfo: {e}"))?;
        PublicKey::from_spki(name, &spki)
    }

    /// The key of a certificate or of a PEM `PUBLIC KEY`.
    pub fn from_spki(name: &str, spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKey, String> {
        let algorithm = if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(format!(
                    "{name}: an ECDSA key on a curve other than P-256 is not supported"
                ));
            }
            Algorithm::EcdsaP256
        } else if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
            Algorithm::Rsa
        } else {
            return Err(format!(
                "{name}: key algorithm {} is not supported (ECDSA P-256 or RSA)",
                spki.algorithm.algorithm
            ));
        };
        Ok(PublicKey {
            name: name.to_owned(),
            algorithm,
            bytes: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Whether `signature` (base64, as in the `.sig` layer's annotation) signs `payload`.
    pub fn verifies(&self, payload: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
            return false;
        };
        self.verifies_bytes(payload, &sig)
    }

    /// Whether `sig` (ASN.1 ECDSA, or RSA PKCS#1 v1.5 / PSS) signs `payload` with SHA-256.
    pub fn verifies_bytes(&self, payload: &[u8], sig: &[u8]) -> bool {
        match self.algorithm {
            Algorithm::EcdsaP256 => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.bytes)
                    .verify(payload, sig)
                    .is_ok()
            }
            Algorithm::Rsa => [
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ]
            .into_iter()
            .any(|alg| {
                UnparsedPublicKey::new(alg, &self.bytes)
                    .verify(payload, sig)
                    .is_ok()
            }),
        }
    }
}

/// The image a signature must be for: its normalized repository name, the tag or digest it
/// was asked by, and the digest it resolved to.
#[derive(Debug, Clone)]
pub struct Intended<'a> {
    pub name: String,
    pub tag: Option<&'a str>,
    pub pinned: Option<&'a Digest>,
    pub digest: &'a Digest,
}

/// A `docker-reference` split the way the policy compares it.
#[derive(Debug, PartialEq, Eq)]
struct Named {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Named {
    fn parse(text: &str) -> Named {
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(d.to_owned())),
            None => (text, None),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        Named {
            name: normalize(name),
            tag,
            digest,
        }
    }
}

/// Docker Hub's short names in full (`app` → `docker.io/library/app`), as the policy
/// compares them.
pub fn normalize(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    if is_host && name.contains('/') {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// Whether a payload says it signs `image` (digest, type, identity); why not, otherwise.
pub fn check_payload(
    payload: &[u8],
    image: &Intended<'_>,
    identity: &Identity,
) -> Result<(), String> {
    let doc: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let critical = &doc["critical"];
    if critical["type"].as_str() != Some(COSIGN_TYPE) {
        return Err("payload is not a cosign container image signature".into());
    }
    let digest = critical["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if digest != image.digest.to_string() {
        return Err(format!("signs {digest}, not {}", image.digest));
    }
    let reference = critical["identity"]["docker-reference"]
        .as_str()
        .ok_or("payload names no docker-reference")?;
    if identity_matches(&Named::parse(reference), image, identity) {
        Ok(())
    } else {
        Err(format!("signed for {reference}"))
    }
}

fn identity_matches(signed: &Named, image: &Intended<'_>, identity: &Identity) -> bool {
    let same_as_image = || {
        signed.name == image.name
            && signed.tag.as_deref() == image.tag
            && signed.digest == image.pinned.map(ToString::to_string)
    };
    match identity {
        Identity::MatchRepoDigestOrExact => {
            if image.tag.is_some() {
                same_as_image()
            } else {
                signed.name == image.name
            }
        }
        Identity::MatchRepository => signed.name == image.name,
        Identity::MatchExact => {
            (signed.tag.is_some() || signed.digest.is_some()) && same_as_image()
        }
        Identity::ExactReference(r) => *signed == Named::parse(r),
        Identity::ExactRepository(r) => signed.name == normalize(r),
        Identity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let remapped = Intended {
                name: remap(&image.name, prefix, signed_prefix),
                ..image.clone()
            };
            identity_matches(signed, &remapped, &Identity::MatchRepoDigestOrExact)
        }
    }
}

/// `name` with `prefix` replaced by `signed_prefix`, when `prefix` is the whole name or ends
/// at one of its `/`s (containers/image's rule: the host and port must match exactly); else
/// `name` unchanged.
fn remap(name: &str, prefix: &str, signed_prefix: &str) -> String {
    match name.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{signed_prefix}{rest}"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest")
    }

    fn payload(reference: &str, digest: &Digest) -> Vec<u8> {
        serde_json::json!({"critical": {"identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.to_string()}, "type": COSIGN_TYPE},
            "optional": null})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn names_are_normalized_and_split() {
        assert_eq!(normalize("app"), "docker.io/library/app");
        assert_eq!(normalize("org/app"), "docker.io/org/app");
        assert_eq!(normalize("quay.io/org/app"), "quay.io/org/app");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app");
        let n = Named::parse("127.0.0.1:5000/org/app:v1");
        assert_eq!(n.name, "127.0.0.1:5000/org/app");
        assert_eq!(n.tag.as_deref(), Some("v1"));
        let n = Named::parse("127.0.0.1:5000/org/app");
        assert_eq!((n.tag, n.digest), (None, None));
    }

    #[test]
    fn identities_follow_containers_policy() {
        let d = digest('a');
        let tagged = Intended {
            name: "quay.io/org/app".into(),
            tag: Some("v1"),
            pinned: None,
            digest: &d,
        };
        let pinned = Intended {
            tag: None,
            pinned: Some(&d),
            ..tagged.clone()
        };
        let check = |reference: &str, image: &Intended<'_>, identity: Identity| {
            check_payload(&payload(reference, &d), image, &identity).is_ok()
        };
        use Identity::*;
        assert!(check("quay.io/org/app:v1", &tagged, MatchRepoDigestOrExact));
        assert!(!check(
            "quay.io/org/app:v2",
            &tagged,
            MatchRepoDigestOrExact
        ));
        assert!(!check("quay.io/org/app", &tagged, MatchRepoDigestOrExact));
        assert!(check("quay.io/org/app", &pinned, MatchRepoDigestOrExact));
        assert!(!check("quay.io/org/other", &pinned, MatchRepoDigestOrExact));
        assert!(check("quay.io/org/app:v2", &tagged, MatchRepository));
        assert!(check("quay.io/org/app", &tagged, MatchRepository));
        assert!(!check("quay.io/org/other", &tagged, MatchRepository));
        assert!(check("quay.io/org/app:v1", &tagged, MatchExact));
        assert!(!check("quay.io/org/app", &pinned, MatchExact));
        let at = format!("quay.io/org/app@{d}");
        assert!(check(&at, &pinned, MatchExact));
        assert!(check(
            "x.io/a:b",
            &tagged,
            ExactReference("x.io/a:b".into())
        ));
        assert!(!check(
            "x.io/a:c",
            &tagged,
            ExactReference("x.io/a:b".into())
        ));
        assert!(check("x.io/a:c", &tagged, ExactRepository("x.io/a".into())));
        // A mirror's name mapped back to the name the signature was made for.
        let remap = |prefix: &str, signed_prefix: &str| RemapIdentity {
            prefix: prefix.into(),
            signed_prefix: signed_prefix.into(),
        };
        assert!(check(
            "registry.internal/team/app:v1",
            &tagged,
            remap("quay.io/org", "registry.internal/team")
        ));
        assert!(check(
            "registry.internal/app:v1",
            &tagged,
            remap("quay.io/org/app", "registry.internal/app")
        ));
        // Still matchRepoDigestOrExact: another tag does not do.
        assert!(!check(
            "registry.internal/team/app:v2",
            &tagged,
            remap("quay.io/org", "registry.internal/team")
        ));
        // Prefixes end at a `/`: quay.io/or is no prefix of quay.io/org/app, and a name that
        // does not start with the prefix is compared as it is.
        assert!(!check(
            "registry.internal/team/app:v1",
            &tagged,
            remap("quay.io/or", "registry.internal/team")
        ));
        assert!(check(
            "quay.io/org/app:v1",
            &tagged,
            remap("docker.io/x", "registry.internal/team")
        ));
    }

    #[test]
    fn a_payload_for_another_digest_or_of_another_type_fails() {
        let (d, other) = (digest('a'), digest('b'));
        let image = Intended {
            name: "quay.io/org/app".into(),
            tag: None,
            pinned: None,
            digest: &d,
        };
        let err = check_payload(
            &payload("quay.io/org/app", &other),
            &image,
            &Identity::MatchRepository,
        )
        .expect_err("another digest");
        assert!(err.contains("signs sha256:bbb"), "{err}");
        let mut other_type: Value =
            serde_json::from_slice(&payload("quay.io/org/app", &d)).expect("json");
        other_type["critical"]["type"] = Value::from("atomic container signature");
        let err = check_payload(
            other_type.to_string().as_bytes(),
            &image,
            &Identity::MatchRepository,
        )
        .expect_err("another type");
        assert!(err.contains("not a cosign"), "{err}");
        assert!(check_payload(b"{}", &image, &Identity::MatchRepository).is_err());
        assert!(check_payload(b"nope", &image, &Identity::MatchRepository).is_err());
    }

    #[test]
    fn keys_other_than_public_keys_are_refused() {
        let err = PublicKey::from_pem(
            "k",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect_err("private");
        assert!(err.contains("not a \"PUBLIC KEY\""), "{err}");
        assert!(PublicKey::from_pem("k", b"garbage").is_err());
    }
}
