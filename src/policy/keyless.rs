//! Keyless cosign signatures, checked offline as containers/image checks them
//! (`signature/fulcio_cert.go`, `signature/internal/rekor_set.go`): the Rekor bundle's
//! SignedEntryTimestamp verifies with a configured Rekor key over the canonical JSON of its
//! payload; the logged entry (a `hashedrekord`) is this signature, this certificate and this
//! payload; the certificate chains to the configured Fulcio CA at the time Rekor logged it,
//! names the policy's OIDC issuer and identity, and its key verifies the signature. Nothing is
//! fetched: the CA and the Rekor keys come from the policy. ring does the mathematics,
//! x509-parser reads the certificates.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::verify::PublicKey;

/// Fulcio's OIDC-issuer extension, the first form: the issuer's bytes as they are.
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Fulcio's OIDC-issuer extension, the second form: a DER UTF8String.
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Intermediate certificates allowed between a signing certificate and the CA.
const MAX_CHAIN: usize = 4;

/// A `fulcio` requirement with its CA certificates and Rekor keys read.
#[derive(Debug, Clone)]
pub struct Keyless {
    /// Where the CA came from (`caPath`'s path, or `caData`), for messages.
    pub ca_name: String,
    /// The CA certificates (DER): every one is a trust anchor, as in containers/image.
    roots: Vec<Vec<u8>>,
    pub oidc_issuer: String,
    /// An email SAN, or a URI SAN (a CI workflow), that the certificate must carry.
    pub subject: String,
    rekor: Vec<PublicKey>,
}

/// One keyless signature as its `.sig` layer carries it.
pub struct Evidence<'a> {
    pub payload: &'a [u8],
    /// Base64, from `dev.cosignproject.cosign/signature`.
    pub signature: &'a str,
    /// PEM, from `dev.sigstore.cosign/certificate`.
    pub certificate: Option<&'a str>,
    /// PEM, from `dev.sigstore.cosign/chain`: intermediates, then (ignored) the root.
    pub chain: Option<&'a str>,
    /// JSON, from `dev.sigstore.cosign/bundle`.
    pub bundle: Option<&'a str>,
}

/// What a verified SignedEntryTimestamp says: when Rekor logged which entry.
struct Logged {
    integrated_time: i64,
    body: Vec<u8>,
}

impl Keyless {
    /// The CA file's certificates (PEM, one or more) and the Rekor keys (PEM `PUBLIC KEY`).
    pub fn new(
        ca_name: String,
        ca_pem: &[u8],
        oidc_issuer: String,
        subject: String,
        rekor: Vec<PublicKey>,
    ) -> Result<Keyless, String> {
        let roots = pem_certificates(ca_pem).map_err(|e| format!("{ca_name}: {e}"))?;
        if roots.is_empty() {
            return Err(format!("{ca_name}: no PEM CERTIFICATE in it"));
        }
        Ok(Keyless {
            ca_name,
            roots,
            oidc_issuer,
            subject,
            rekor,
        })
    }

    /// For messages: who must have signed.
    pub fn describe(&self) -> String {
        format!(
            "a certificate of Fulcio CA {} for {} from {}",
            self.ca_name, self.subject, self.oidc_issuer
        )
    }

    /// Whether the signature is certified for the policy's identity and logged by Rekor
    /// while its certificate was valid; the payload's own claims are the caller's to check.
    pub fn check(&self, evidence: &Evidence<'_>) -> Result<(), String> {
        let cert_pem = evidence
            .certificate
            .ok_or("it has no certificate (not a keyless signature)")?;
        let bundle = evidence.bundle.ok_or("it has no Rekor bundle")?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(evidence.signature.trim())
            .map_err(|e| format!("its signature is not base64: {e}"))?;
        let leaf_der = single_certificate(cert_pem)?;
        let (_, leaf) = X509Certificate::from_der(&leaf_der)
            .map_err(|e| format!("its certificate does not parse: {e}"))?;
        let found = Identity::of(&leaf)?;
        let logged = self.logged(bundle)?;
        matches_entry(&logged.body, &signature, &leaf_der, evidence.payload)?;
        within_validity(&leaf, logged.integrated_time, &found)?;
        let intermediates = match evidence.chain {
            Some(chain) => pem_certificates(chain.as_bytes())
                .map_err(|e| format!("its certificate chain: {e}"))?,
            None => Vec::new(),
        };
        self.chains_to_ca(&leaf, &intermediates, logged.integrated_time)
            .map_err(|e| format!("its certificate ({found}) {e}"))?;
        code_signing(&leaf)?;
        if found.issuer != self.oidc_issuer || !found.names.contains(&self.subject) {
            return Err(format!(
                "its certificate is for {found}, not {} from {}",
                self.subject, self.oidc_issuer
            ));
        }
        let key = PublicKey::from_spki("certificate", leaf.public_key())?;
        if !key.verifies_bytes(evidence.payload, &signature) {
            return Err(format!(
                "its signature does not verify with its certificate's key ({found})"
            ));
        }
        Ok(())
    }

    /// The bundle's SignedEntryTimestamp verified with one of the Rekor keys over the
    /// canonical JSON (RFC 8785) of its payload.
    fn logged(&self, bundle: &str) -> Result<Logged, String> {
        let bad = |what: &str| format!("its Rekor bundle {what}");
        let doc: Value =
            serde_json::from_str(bundle).map_err(|e| bad(&format!("is not JSON: {e}")))?;
        let doc = exact_fields(&doc, &["SignedEntryTimestamp", "Payload"])
            .ok_or_else(|| bad("is not {SignedEntryTimestamp, Payload}"))?;
        let set = doc["SignedEntryTimestamp"]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| bad("has no base64 SignedEntryTimestamp"))?;
        let payload = exact_fields(
            &doc["Payload"],
            &["body", "integratedTime", "logIndex", "logID"],
        )
        .ok_or_else(|| bad("Payload is not {body, integratedTime, logIndex, logID}"))?;
        let (Some(body), Some(integrated_time), Some(log_index), Some(log_id)) = (
            payload["body"].as_str(),
            payload["integratedTime"].as_i64(),
            payload["logIndex"].as_i64(),
            payload["logID"].as_str(),
        ) else {
            return Err(bad("Payload has a field of the wrong type"));
        };
        // RFC 8785 for these four: keys sorted, no spaces, integers as they are; serde_json
        // escapes strings as RFC 8785 does (only `"`, `\` and control characters).
        let canonical = format!(
            "{{\"body\":{},\"integratedTime\":{integrated_time},\"logID\":{},\"logIndex\":{log_index}}}",
            Value::from(body),
            Value::from(log_id)
        );
        if !self
            .rekor
            .iter()
            .any(|key| key.verifies_bytes(canonical.as_bytes(), &set))
        {
            let names: Vec<&str> = self.rekor.iter().map(|k| k.name.as_str()).collect();
            return Err(format!(
                "its Rekor SignedEntryTimestamp does not verify with Rekor key {}",
                names.join(", ")
            ));
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| bad(&format!("body is not base64: {e}")))?;
        Ok(Logged {
            integrated_time,
            body,
        })
    }

    /// Whether a path leads from `leaf` through `intermediates` to one of the CA's
    /// certificates, every certificate on it valid at `at` and signed by the next.
    fn chains_to_ca(
        &self,
        leaf: &X509Certificate<'_>,
        intermediates: &[Vec<u8>],
        at: i64,
    ) -> Result<(), String> {
        let roots: Vec<X509Certificate<'_>> = self
            .roots
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect();
        let intermediates: Vec<X509Certificate<'_>> = intermediates
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .collect();
        let issues = |issuer: &X509Certificate<'_>, cert: &X509Certificate<'_>| {
            issuer.subject().as_raw() == cert.issuer().as_raw()
                && valid_at(issuer, at)
                && signed_by(cert, issuer)
        };
        let mut current = leaf;
        for _ in 0..=MAX_CHAIN {
            if roots.iter().any(|root| issues(root, current)) {
                return Ok(());
            }
            match intermediates
                .iter()
                .find(|c| is_ca(c) && issues(c, current))
            {
                Some(next) => current = next,
                None => break,
            }
        }
        Err(format!("does not chain to Fulcio CA {}", self.ca_name))
    }
}

/// What a certificate says of its subject: its OIDC issuer and its email and URI SANs.
struct Identity {
    issuer: String,
    names: Vec<String>,
}

impl Identity {
    fn of(cert: &X509Certificate<'_>) -> Result<Identity, String> {
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::RFC822Name(email) => Some((*email).to_owned()),
                    GeneralName::URI(uri) => Some((*uri).to_owned()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("its certificate's SAN does not parse: {e}")),
        };
        Ok(Identity {
            issuer: oidc_issuer(cert)?,
            names,
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = if self.names.is_empty() {
            "no email or URI".to_owned()
        } else {
            self.names.join(", ")
        };
        write!(f, "{names} from {}", self.issuer)
    }
}

/// Fulcio's OIDC-issuer extension, either form; both present must agree.
fn oidc_issuer(cert: &X509Certificate<'_>) -> Result<String, String> {
    let (mut v1, mut v2) = (None, None);
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        let slot = if oid == OID_ISSUER_V1 {
            &mut v1
        } else if oid == OID_ISSUER_V2 {
            &mut v2
        } else {
            continue;
        };
        if slot.is_some() {
            return Err("its certificate has its OIDC-issuer extension twice".into());
        }
        *slot = Some(ext.value);
    }
    let v1 = v1
        .map(|v| String::from_utf8(v.to_vec()))
        .transpose()
        .map_err(|_| "its certificate's OIDC issuer is not UTF-8")?;
    let v2 = v2
        .map(der_utf8_string)
        .transpose()
        .map_err(|e| format!("its certificate's OIDC issuer (v2): {e}"))?;
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "its certificate names two OIDC issuers, {a} and {b}"
        )),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err("its certificate has no Fulcio OIDC-issuer extension".into()),
    }
}

/// A DER UTF8String, alone.
fn der_utf8_string(der: &[u8]) -> Result<String, String> {
    let (&tag, rest) = der.split_first().ok_or("empty")?;
    let (len, rest) = match rest.split_first() {
        Some((&n, rest)) if n < 0x80 => (usize::from(n), rest),
        Some((&0x81, rest)) => match rest.split_first() {
            Some((&n, rest)) => (usize::from(n), rest),
            None => return Err("truncated".into()),
        },
        _ => return Err("not a short DER string".into()),
    };
    if tag != 0x0c || rest.len() != len {
        return Err("not a DER UTF8String".into());
    }
    String::from_utf8(rest.to_vec()).map_err(|_| "not UTF-8".into())
}

/// The logged `hashedrekord` is this signature, over this payload, with this certificate.
fn matches_entry(
    body: &[u8],
    signature: &[u8],
    leaf_der: &[u8],
    payload: &[u8],
) -> Result<(), String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("its Rekor entry is not JSON: {e}"))?;
    if doc["kind"] != "hashedrekord" || doc["apiVersion"] != "0.0.1" {
        return Err("its Rekor entry is not a hashedrekord 0.0.1".into());
    }
    let spec = &doc["spec"];
    let b64 = |v: &Value| {
        v.as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    };
    if b64(&spec["signature"]["content"]).as_deref() != Some(signature) {
        return Err("its Rekor entry is for another signature".into());
    }
    let logged_cert = b64(&spec["signature"]["publicKey"]["content"])
        .and_then(|pem| pem_certificates(&pem).ok())
        .unwrap_or_default();
    if logged_cert.first().map(Vec::as_slice) != Some(leaf_der) {
        return Err("its Rekor entry is for another certificate".into());
    }
    let hash: String = Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let data = &spec["data"]["hash"];
    if data["algorithm"] != "sha256" || data["value"].as_str() != Some(hash.as_str()) {
        return Err("its Rekor entry is for another payload".into());
    }
    Ok(())
}

fn within_validity(leaf: &X509Certificate<'_>, at: i64, found: &Identity) -> Result<(), String> {
    if valid_at(leaf, at) {
        return Ok(());
    }
    let when = ASN1Time::from_timestamp(at).map_or_else(|_| at.to_string(), |t| t.to_string());
    let validity = leaf.validity();
    Err(format!(
        "Rekor logged it at {when}, outside its certificate's validity ({} to {}; {found})",
        validity.not_before, validity.not_after
    ))
}

fn valid_at(cert: &X509Certificate<'_>, at: i64) -> bool {
    let validity = cert.validity();
    validity.not_before.timestamp() <= at && at <= validity.not_after.timestamp()
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Fulcio issues for code signing; a certificate for anything else does not sign images.
fn code_signing(leaf: &X509Certificate<'_>) -> Result<(), String> {
    match leaf.extended_key_usage() {
        Ok(Some(eku)) if eku.value.code_signing => Ok(()),
        _ => Err("its certificate is not for code signing".into()),
    }
}

/// Whether `issuer`'s key made `cert`'s signature (ECDSA P-256/P-384, RSA).
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let spki = issuer.public_key();
    let key_alg = &spki.algorithm.algorithm;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    let sig_alg = &cert.signature_algorithm.algorithm;
    let algorithm: &dyn VerificationAlgorithm = if *key_alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        match (curve, sig_alg) {
            (Some(c), s) if c == OID_EC_P256 && *s == OID_SIG_ECDSA_WITH_SHA256 => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            (Some(c), s) if c == OID_EC_P256 && *s == OID_SIG_ECDSA_WITH_SHA384 => {
                &signature::ECDSA_P256_SHA384_ASN1
            }
            (Some(c), s) if c == OID_NIST_EC_P384 && *s == OID_SIG_ECDSA_WITH_SHA256 => {
                &signature::ECDSA_P384_SHA256_ASN1
            }
            (Some(c), s) if c == OID_NIST_EC_P384 && *s == OID_SIG_ECDSA_WITH_SHA384 => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            _ => return false,
        }
    } else if *key_alg == OID_PKCS1_RSAENCRYPTION {
        if *sig_alg == OID_PKCS1_SHA256WITHRSA {
            &signature::RSA_PKCS1_2048_8192_SHA256
        } else if *sig_alg == OID_PKCS1_SHA384WITHRSA {
            &signature::RSA_PKCS1_2048_8192_SHA384
        } else if *sig_alg == OID_PKCS1_SHA512WITHRSA {
            &signature::RSA_PKCS1_2048_8192_SHA512
        } else {
            return false;
        }
    } else {
        return false;
    };
    UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

/// The DER of every `CERTIFICATE` in a PEM text.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("not PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            X509Certificate::from_der(&block.contents)
                .map_err(|e| format!("a certificate that does not parse: {e}"))?;
            out.push(block.contents);
        }
    }
    Ok(out)
}

/// The signing certificate: exactly one.
fn single_certificate(pem: &str) -> Result<Vec<u8>, String> {
    let mut certs =
        pem_certificates(pem.as_bytes()).map_err(|e| format!("its certificate: {e}"))?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        n => Err(format!(
            "its certificate annotation holds {n} certificates, not 1"
        )),
    }
}

/// The object's fields when they are exactly `fields`.
fn exact_fields<'a>(value: &'a Value, fields: &[&str]) -> Option<&'a Map<String, Value>> {
    let map = value.as_object()?;
    (map.len() == fields.len() && fields.iter().all(|f| map.contains_key(*f))).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256,
    };

    const V1: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 1];
    const V2: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 8];

    /// A self-signed certificate with these Fulcio issuer extensions, as PEM.
    fn certificate(extensions: Vec<CustomExtension>) -> String {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["a.example".to_owned()]).expect("params");
        params.custom_extensions = extensions;
        params.self_signed(&key).expect("certificate").pem()
    }

    fn issuer_of(pem: &str) -> Result<String, String> {
        let der = single_certificate(pem)?;
        let (_, cert) = X509Certificate::from_der(&der).expect("parses");
        oidc_issuer(&cert)
    }

    #[test]
    fn the_oidc_issuer_is_read_from_either_extension_and_both_must_agree() {
        let v1 = |i: &str| CustomExtension::from_oid_content(&V1, i.as_bytes().to_vec());
        let v2 = |i: &str| {
            let mut der = vec![0x0c, i.len() as u8];
            der.extend_from_slice(i.as_bytes());
            CustomExtension::from_oid_content(&V2, der)
        };
        assert_eq!(
            issuer_of(&certificate(vec![v1("https://a")])).as_deref(),
            Ok("https://a")
        );
        assert_eq!(
            issuer_of(&certificate(vec![v2("https://a")])).as_deref(),
            Ok("https://a")
        );
        assert_eq!(
            issuer_of(&certificate(vec![v1("https://a"), v2("https://a")])).as_deref(),
            Ok("https://a")
        );
        let err = issuer_of(&certificate(vec![v1("https://a"), v2("https://b")]))
            .expect_err("two issuers");
        assert!(err.contains("two OIDC issuers"), "{err}");
        let err = issuer_of(&certificate(vec![])).expect_err("none");
        assert!(err.contains("no Fulcio OIDC-issuer extension"), "{err}");
    }

    #[test]
    fn a_signature_without_certificate_or_bundle_is_not_keyless() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca").pem();
        let keyless = Keyless::new(
            "ca.pem".into(),
            ca.as_bytes(),
            "i".into(),
            "s".into(),
            vec![],
        )
        .expect("a CA");
        let leaf = certificate(vec![CustomExtension::from_oid_content(&V1, b"i".to_vec())]);
        let two = format!("{leaf}{leaf}");
        let cases = [
            (None, Some("{}"), "no certificate (not a keyless signature)"),
            (Some(leaf.as_str()), None, "no Rekor bundle"),
            (
                Some(two.as_str()),
                Some("{}"),
                "holds 2 certificates, not 1",
            ),
            (
                Some(leaf.as_str()),
                Some("{}"),
                "is not {SignedEntryTimestamp, Payload}",
            ),
        ];
        for (certificate, bundle, expected) in cases {
            let evidence = Evidence {
                payload: b"{}",
                signature: "c2ln",
                certificate,
                chain: None,
                bundle,
            };
            let err = keyless.check(&evidence).expect_err(expected);
            assert!(err.contains(expected), "{err}");
        }
        let err = Keyless::new("x.pem".into(), b"hello", "i".into(), "s".into(), vec![])
            .expect_err("no certificate");
        assert!(err.contains("x.pem: no PEM CERTIFICATE"), "{err}");
    }

    #[test]
    fn der_utf8_strings_are_read_and_others_refused() {
        assert_eq!(der_utf8_string(b"\x0c\x05https").as_deref(), Ok("https"));
        assert!(der_utf8_string(b"\x13\x01a").is_err());
        assert!(der_utf8_string(b"\x0c\x05http").is_err());
        let long = "a".repeat(200);
        let mut der = vec![0x0c, 0x81, 200];
        der.extend_from_slice(long.as_bytes());
        assert_eq!(der_utf8_string(&der), Ok(long));
    }

    #[test]
    fn exact_fields_refuses_missing_and_extra_fields() {
        let v: Value = serde_json::json!({"a": 1, "b": 2});
        assert!(exact_fields(&v, &["a", "b"]).is_some());
        assert!(exact_fields(&v, &["a"]).is_none());
        assert!(exact_fields(&v, &["a", "c"]).is_none());
    }
}
