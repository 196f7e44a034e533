//! A test Fulcio and a test Rekor, made in the test, for keyless cosign signatures: a root CA
//! and an intermediate (ECDSA P-384, as Sigstore's public-good Fulcio) issuing short-lived
//! ECDSA P-256 code-signing certificates with Fulcio's OIDC-issuer extensions and an email or
//! URI SAN; a Rekor key (ECDSA P-256) signing the SignedEntryTimestamp over the canonical
//! JSON of a `hashedrekord` entry. Nothing is mocked: the certificates, signatures and SETs
//! are real, and the real cosign attaches them (`attach`) and checks them offline (`verify`).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PublicKeyData, SanType, SigningKey,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::cli::text;
use super::cosign::{cosign, cosign_bin};

/// Fulcio's OIDC-issuer extensions: v1 (the bytes as they are) and v2 (a DER UTF8String).
const OID_ISSUER_V1: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 1];
const OID_ISSUER_V2: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 8];

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Unix seconds as rcgen's time (its type, from the `time` crate, is not named here).
macro_rules! at {
    ($unix:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs($unix as u64)
    };
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A test Fulcio: a root, and the intermediate that issues signing certificates.
pub struct Fulcio {
    root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

/// A signing certificate and its key.
pub struct Leaf {
    pub pem: String,
    /// The intermediate, then the root: cosign's `--certificate-chain`.
    pub chain_pem: String,
    key: KeyPair,
}

/// A subject alternative name.
pub enum San<'a> {
    Email(&'a str),
    Uri(&'a str),
}

impl Fulcio {
    pub fn new(name: &str) -> Fulcio {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("root key");
        let root_params = ca_params(&format!("{name} root"));
        let root_pem = root_params.self_signed(&root_key).expect("root").pem();
        let root = Issuer::new(root_params, root_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("intermediate key");
        let params = ca_params(&format!("{name} intermediate"));
        let intermediate_pem = params.signed_by(&key, &root).expect("intermediate").pem();
        Fulcio {
            root_pem,
            intermediate_pem,
            intermediate: Issuer::new(params, key),
        }
    }

    /// The root alone: what a policy's `fulcio.caPath` names.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Root and intermediate: cosign's `SIGSTORE_ROOT_FILE`.
    pub fn roots_pem(&self) -> String {
        format!("{}{}", self.root_pem, self.intermediate_pem)
    }

    /// A code-signing certificate for `san` from `issuer`, valid from `from` to `until`
    /// (Unix seconds), with both forms of the OIDC-issuer extension.
    pub fn issue(&self, san: San<'_>, issuer: &str, from: i64, until: i64) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = at!(from);
        params.not_after = at!(until);
        params.subject_alt_names = vec![match san {
            San::Email(e) => SanType::Rfc822Name(e.try_into().expect("email")),
            San::Uri(u) => SanType::URI(u.try_into().expect("uri")),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&OID_ISSUER_V1, issuer.as_bytes().to_vec()),
            CustomExtension::from_oid_content(&OID_ISSUER_V2, der_utf8_string(issuer)),
        ];
        let pem = params
            .signed_by(&key, &self.intermediate)
            .expect("leaf")
            .pem();
        Leaf {
            pem,
            chain_pem: self.roots_pem_chain(),
            key,
        }
    }

    fn roots_pem_chain(&self) -> String {
        format!("{}{}", self.intermediate_pem, self.root_pem)
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at!(now() - 86_400);
    params.not_after = at!(now() + 10 * 86_400);
    params
}

fn der_utf8_string(text: &str) -> Vec<u8> {
    let len = u8::try_from(text.len()).expect("a short issuer");
    let mut der = if len < 0x80 {
        vec![0x0c, len]
    } else {
        vec![0x0c, 0x81, len]
    };
    der.extend_from_slice(text.as_bytes());
    der
}

impl Leaf {
    /// The payload's signature (ASN.1 ECDSA P-256, SHA-256), base64.
    pub fn sign(&self, payload: &[u8]) -> String {
        b64(&self.key.sign(payload).expect("sign"))
    }
}

/// A test Rekor: its key signs SignedEntryTimestamps.
pub struct Rekor {
    key: KeyPair,
}

impl Default for Rekor {
    fn default() -> Self {
        Rekor::new()
    }
}

impl Rekor {
    pub fn new() -> Rekor {
        Rekor {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("rekor key"),
        }
    }

    pub fn public_pem(&self) -> String {
        self.key.public_key_pem()
    }

    /// Rekor's log ID: the SHA-256 of its key's SubjectPublicKeyInfo (cosign finds the key
    /// by it).
    pub fn log_id(&self) -> String {
        hex(&Sha256::digest(self.key.subject_public_key_info()))
    }

    /// The bundle cosign stores in `dev.sigstore.cosign/bundle`: a `hashedrekord` entry for
    /// `signature` (base64) over `payload` with `certificate`, logged at `integrated_time`,
    /// and the SignedEntryTimestamp over its canonical JSON.
    pub fn bundle(
        &self,
        payload: &[u8],
        signature: &str,
        certificate: &str,
        integrated_time: i64,
    ) -> Value {
        let entry = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&Sha256::digest(payload))}},
                "signature": {"content": signature, "publicKey": {"content": b64(certificate.as_bytes())}}
            }
        });
        let body = b64(entry.to_string().as_bytes());
        let log_id = self.log_id();
        let log_index = 4242;
        // RFC 8785: keys sorted, no whitespace.
        let canonical = format!(
            "{{\"body\":\"{body}\",\"integratedTime\":{integrated_time},\"logID\":\"{log_id}\",\"logIndex\":{log_index}}}"
        );
        let set = self.key.sign(canonical.as_bytes()).expect("sign SET");
        json!({
            "SignedEntryTimestamp": b64(&set),
            "Payload": {"body": body, "integratedTime": integrated_time, "logIndex": log_index, "logID": log_id}
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One keyless signature to attach: the payload cosign generated, its signature, the
/// certificate and chain, and the Rekor bundle.
pub struct Keyless<'a> {
    pub payload: &'a [u8],
    pub signature: &'a str,
    pub leaf: &'a Leaf,
    pub bundle: &'a Value,
}

/// cosign's simple-signing payload for `image` (`cosign generate`).
pub fn payload(dir: &Path, image: &str) -> Vec<u8> {
    let out = cosign(dir, &["generate", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout
}

/// `cosign attach signature` with the certificate, its chain and the Rekor response.
pub fn attach(dir: &Path, image: &str, signature: &Keyless<'_>) {
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("write");
    };
    write("payload.json", signature.payload);
    write("payload.sig", signature.signature.as_bytes());
    write("cert.pem", signature.leaf.pem.as_bytes());
    write("chain.pem", signature.leaf.chain_pem.as_bytes());
    let response = json!({
        "base64Signature": signature.signature,
        "cert": signature.leaf.pem,
        "rekorBundle": signature.bundle,
    });
    write("rekor.json", response.to_string().as_bytes());
    let args = [
        "attach",
        "signature",
        "--payload",
        "payload.json",
        "--signature",
        "payload.sig",
        "--certificate",
        "cert.pem",
        "--certificate-chain",
        "chain.pem",
        "--rekor-response",
        "rekor.json",
        image,
    ];
    let out = cosign(dir, &args);
    assert!(
        out.status.success(),
        "cosign {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `cosign verify --offline` with the test roots (`roots` holds the Fulcio root and
/// intermediate, `rekor` the Rekor key), for `identity` from `issuer`; no SCT (the test
/// Fulcio has no CT log).
pub fn cosign_verify(
    dir: &Path,
    roots: &Path,
    rekor: &Path,
    image: &str,
    identity: &str,
    issuer: &str,
) -> Output {
    std::process::Command::new(cosign_bin())
        .current_dir(dir)
        .env("HOME", dir)
        .env("TUF_ROOT", dir.join("tuf"))
        .env("SIGSTORE_ROOT_FILE", roots)
        .env("SIGSTORE_REKOR_PUBLIC_KEY", rekor)
        .args([
            "verify",
            "--offline",
            "--insecure-ignore-sct",
            "--allow-insecure-registry",
            "--allow-http-registry",
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            issuer,
            image,
        ])
        .output()
        .expect("run cosign")
}
