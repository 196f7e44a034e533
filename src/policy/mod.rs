//! `--policy`: mirror only what is signed. A containers-policy.json (the file skopeo and
//! podman read) says, per source scope, which cosign keys — or, keyless, which Fulcio-certified
//! identity whose signature Rekor logged — must have signed an image; an image that its
//! scope's requirements refuse is not copied (`refused`).
//!
//! - [`file`]: the file's grammar, pure.
//! - [`verify`]: keys, signatures and payloads.
//! - [`keyless`]: Fulcio certificates and Rekor's signed entry timestamps, offline.
//!
//! Loaded in `commands/run.rs` before anything is contacted; checked by `execute/signed.rs`
//! before an image is written.

pub mod file;
pub mod keyless;
pub mod verify;

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use self::file::{Identity, KeyRef, KeylessRef, Requirement, SignerRef};
use self::keyless::{Evidence, Keyless};
use self::verify::{Intended, PublicKey};

/// A policy with its keys read.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Vec<Requirement<Signer>>,
    docker: Vec<(String, Vec<Requirement<Signer>>)>,
}

/// Who must have signed, read: public keys, or a Fulcio CA, an identity and Rekor keys.
#[derive(Debug, Clone)]
pub enum Signer {
    Keys(Vec<PublicKey>),
    Keyless(Keyless),
}

/// One signature of an image: the payload (the `.sig` layer's bytes), its signature (base64,
/// from the layer's annotation) and, for a keyless one, the layer's certificate, chain and
/// Rekor bundle annotations.
pub struct Signature {
    pub payload: Vec<u8>,
    pub signature: String,
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub bundle: Option<String>,
}

impl Policy {
    /// Reads the policy file and every key it names; any error is the user's to fix.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--policy {}", path.display()))?;
        let parsed = file::parse(&text).map_err(|e| anyhow!("--policy {}: {e}", path.display()))?;
        let load = |reqs: Vec<Requirement<SignerRef>>| -> Result<Vec<Requirement<Signer>>> {
            reqs.into_iter()
                .map(|r| load_signer(r).map_err(|e| anyhow!("--policy {}: {e}", path.display())))
                .collect()
        };
        Ok(Policy {
            default: load(parsed.default)?,
            docker: parsed
                .docker
                .into_iter()
                .map(|(scope, reqs)| Ok((scope, load(reqs)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// The requirements for an image (`name` normalized, `reference` `:tag` or `@digest`)
    /// and the scope they come from: the most specific scope wins (the image itself, its
    /// repository, each namespace above, the registry, `*.domain` wildcards, `""`, then
    /// `default`).
    pub fn requirements_for(&self, name: &str, reference: &str) -> (&str, &[Requirement<Signer>]) {
        for candidate in scopes(name, reference) {
            if let Some((scope, reqs)) = self.docker.iter().find(|(s, _)| *s == candidate) {
                return (scope, reqs);
            }
        }
        ("default", &self.default)
    }
}

/// Whether every requirement accepts `image`, given its signatures (`None`: not fetched,
/// which only requirements that need none may meet). `Err` says why not.
pub fn evaluate(
    requirements: &[Requirement<Signer>],
    image: &Intended<'_>,
    shown: &str,
    signatures: &[Signature],
) -> Result<(), String> {
    for requirement in requirements {
        match requirement {
            Requirement::Accept => {}
            Requirement::Reject => return Err(format!("the policy rejects {shown}")),
            Requirement::Sigstore {
                signer: Signer::Keys(keys),
                identity,
            } => sigstore(keys, identity, image, shown, signatures)?,
            Requirement::Sigstore {
                signer: Signer::Keyless(keyless),
                identity,
            } => certified(keyless, identity, image, shown, signatures)?,
        }
    }
    Ok(())
}

/// Whether the requirements can be met without reading any signature.
pub fn needs_signatures(requirements: &[Requirement<Signer>]) -> bool {
    requirements
        .iter()
        .any(|r| matches!(r, Requirement::Sigstore { .. }))
        && !requirements
            .iter()
            .any(|r| matches!(r, Requirement::Reject))
}

fn sigstore(
    keys: &[PublicKey],
    identity: &Identity,
    image: &Intended<'_>,
    shown: &str,
    signatures: &[Signature],
) -> Result<(), String> {
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let mut why = Vec::new();
    for sig in signatures {
        let Some(key) = keys
            .iter()
            .find(|k| k.verifies(&sig.payload, &sig.signature))
        else {
            continue;
        };
        match verify::check_payload(&sig.payload, image, identity) {
            Ok(()) => {
                tracing::debug!(image = shown, key = %key.name, "signature verified");
                return Ok(());
            }
            Err(e) => why.push(e),
        }
    }
    let mut message = format!(
        "no signature of {shown} verifies with key {}",
        names.join(", ")
    );
    if signatures.is_empty() {
        message.push_str(" (it has no signature)");
    } else if !why.is_empty() {
        message.push_str(&format!(" ({})", why.join("; ")));
    }
    Err(message)
}

/// One keyless signature is enough: certified for the policy's identity, logged by Rekor
/// while its certificate was valid, and its payload for this image and an accepted identity.
fn certified(
    keyless: &Keyless,
    identity: &Identity,
    image: &Intended<'_>,
    shown: &str,
    signatures: &[Signature],
) -> Result<(), String> {
    let mut why = Vec::new();
    for sig in signatures {
        let evidence = Evidence {
            payload: &sig.payload,
            signature: &sig.signature,
            certificate: sig.certificate.as_deref(),
            chain: sig.chain.as_deref(),
            bundle: sig.bundle.as_deref(),
        };
        let checked = keyless
            .check(&evidence)
            .and_then(|()| verify::check_payload(&sig.payload, image, identity));
        match checked {
            Ok(()) => {
                tracing::debug!(image = shown, subject = %keyless.subject, "keyless signature verified");
                return Ok(());
            }
            Err(e) => why.push(e),
        }
    }
    let mut message = format!(
        "no signature of {shown} is signed with {}",
        keyless.describe()
    );
    if signatures.is_empty() {
        message.push_str(" (it has no signature)");
    } else {
        message.push_str(&format!(" ({})", why.join("; ")));
    }
    Err(message)
}

fn load_signer(requirement: Requirement<SignerRef>) -> Result<Requirement<Signer>, String> {
    Ok(match requirement {
        Requirement::Accept => Requirement::Accept,
        Requirement::Reject => Requirement::Reject,
        Requirement::Sigstore { signer, identity } => Requirement::Sigstore {
            signer: match signer {
                SignerRef::Keys(keys) => Signer::Keys(load_keys(keys, "key", "keyData")?),
                SignerRef::Keyless(keyless) => Signer::Keyless(load_keyless(keyless)?),
            },
            identity,
        },
    })
}

/// Public keys from their files or the policy's `…Data` field (named `data` in messages).
fn load_keys(keys: Vec<KeyRef>, what: &str, data: &str) -> Result<Vec<PublicKey>, String> {
    keys.into_iter()
        .map(|k| {
            let (name, pem) = read(k, what, data)?;
            PublicKey::from_pem(&name, &pem)
        })
        .collect()
}

fn load_keyless(keyless: KeylessRef) -> Result<Keyless, String> {
    let (ca_name, ca) = read(keyless.ca, "Fulcio CA", "fulcio.caData")?;
    let rekor = load_keys(keyless.rekor, "Rekor key", "rekorPublicKeyData")?;
    Keyless::new(ca_name, &ca, keyless.oidc_issuer, keyless.subject, rekor)
}

/// A key's or a CA's bytes and the name messages give it (its path, or the field).
fn read(key: KeyRef, what: &str, data: &str) -> Result<(String, Vec<u8>), String> {
    match key {
        KeyRef::Path(path) => {
            let name = path.display().to_string();
            let bytes = std::fs::read(&path).map_err(|e| format!("{what} {name}: {e}"))?;
            Ok((name, bytes))
        }
        KeyRef::Data(bytes) => Ok((data.to_owned(), bytes)),
    }
}

/// The scopes that may name an image, most specific first.
fn scopes(name: &str, reference: &str) -> Vec<String> {
    let mut out = vec![format!("{name}{reference}")];
    let mut namespace = name;
    loop {
        out.push(namespace.to_owned());
        match namespace.rfind('/') {
            Some(i) => namespace = &namespace[..i],
            None => break,
        }
    }
    let host = name.split('/').next().unwrap_or_default();
    if !host.contains(':') {
        let mut rest = host;
        while let Some(i) = rest.find('.') {
            rest = &rest[i + 1..];
            out.push(format!("*.{rest}"));
        }
    }
    out.push(String::new());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_go_from_the_image_to_the_transport() {
        assert_eq!(
            scopes("reg.example.com/org/app", ":v1"),
            [
                "reg.example.com/org/app:v1",
                "reg.example.com/org/app",
                "reg.example.com/org",
                "reg.example.com",
                "*.example.com",
                "*.com",
                ""
            ]
        );
        assert_eq!(
            scopes("127.0.0.1:5000/app", ":v1"),
            [
                "127.0.0.1:5000/app:v1",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000",
                ""
            ]
        );
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let policy = Policy {
            default: vec![Requirement::Reject],
            docker: vec![
                ("q.io".into(), vec![Requirement::Reject]),
                ("q.io/org/app".into(), vec![Requirement::Accept]),
                ("*.io".into(), vec![Requirement::Accept]),
            ],
        };
        assert_eq!(
            policy.requirements_for("q.io/org/app", ":v1").0,
            "q.io/org/app"
        );
        assert_eq!(policy.requirements_for("q.io/org/other", ":v1").0, "q.io");
        assert_eq!(policy.requirements_for("r.io/x", ":v1").0, "*.io");
        assert_eq!(policy.requirements_for("localhost:1/x", ":v1").0, "default");
    }
}
