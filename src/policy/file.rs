//! containers-policy.json(5) read into what `--policy` enforces: the default, the `docker`
//! transport's scopes, and each scope's requirements. Pure: key and CA files are named here
//! and read by the caller, so a malformed policy is refused before anything is contacted.

use std::path::PathBuf;

use base64::Engine;
use serde_json::{Map, Value};

/// A policy file as written: the requirements of the default and of each `docker` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub default: Vec<Requirement<SignerRef>>,
    /// `transports.docker`: scope (`""`, `host`, `host/ns`, `host/ns/repo[:tag|@digest]`,
    /// `*.domain`) to requirements.
    pub docker: Vec<(String, Vec<Requirement<SignerRef>>)>,
}

/// One requirement; `S` is how its signer is held (named in the file, then loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement<S> {
    Accept,
    Reject,
    Sigstore { signer: S, identity: Identity },
}

/// Who must have signed, as the file names it: public keys, or (keyless) a Fulcio
/// certificate for one identity whose signature Rekor logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerRef {
    Keys(Vec<KeyRef>),
    Keyless(KeylessRef),
}

/// `fulcio` and `rekorPublicKey*` of a `sigstoreSigned` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylessRef {
    /// `fulcio.caPath` / `fulcio.caData`: the CA certificates (PEM) a signing certificate
    /// must chain to.
    pub ca: KeyRef,
    /// `fulcio.oidcIssuer`: the issuer the certificate's Fulcio extension must name.
    pub oidc_issuer: String,
    /// `fulcio.subjectEmail`: an email SAN, or (as cosign's `--certificate-identity`) a URI
    /// SAN when it is a URI, such as a CI workflow's.
    pub subject: String,
    /// `rekorPublicKeyPath(s)` / `rekorPublicKeyData`: the keys one of which must have
    /// signed the signature's SignedEntryTimestamp.
    pub rekor: Vec<KeyRef>,
}

/// A public key as the file gives it: a path (`keyPath`, `keyPaths`) or the PEM itself
/// (`keyData`, base64 in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Path(PathBuf),
    Data(Vec<u8>),
}

/// `signedIdentity`: which `docker-reference` in a signature is accepted for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The default: a tagged image needs its exact `repo:tag`, one by digest its repository.
    MatchRepoDigestOrExact,
    MatchRepository,
    MatchExact,
    ExactReference(String),
    ExactRepository(String),
    /// An image whose name starts with `prefix` (a host, a namespace or a repository, on
    /// path-segment boundaries) is looked for as if it were named under `signed_prefix`
    /// instead, then matched as [`Identity::MatchRepoDigestOrExact`]: signatures made for the
    /// original name verify on a mirror of it.
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

/// The fields a `sigstoreSigned` requirement may have (containers-policy.json(5)).
const SIGSTORE_FIELDS: [&str; 10] = [
    "type",
    "keyPath",
    "keyPaths",
    "keyData",
    "fulcio",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "pki",
    "signedIdentity",
];

/// The fields of `fulcio`.
const FULCIO_FIELDS: [&str; 4] = ["caPath", "caData", "oidcIssuer", "subjectEmail"];

/// Reads a policy file's text. The error names what is wrong and where.
pub fn parse(text: &str) -> Result<PolicyFile, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("not a JSON object")?;
    let default = match root.get("default") {
        Some(v) => requirements(v, "default")?,
        None => return Err("\"default\" is missing".into()),
    };
    let mut docker = Vec::new();
    if let Some(transports) = root.get("transports") {
        let transports = transports
            .as_object()
            .ok_or("\"transports\" is not an object")?;
        for (name, scopes) in transports {
            let scopes = scopes
                .as_object()
                .ok_or_else(|| format!("transports.{name} is not an object"))?;
            for (scope, reqs) in scopes {
                let parsed = requirements(reqs, &format!("transports.{name}[{scope:?}]"))?;
                // Only registries are mirrored: other transports' scopes are checked, not used.
                if name == "docker" {
                    docker.push((scope.clone(), parsed));
                }
            }
        }
    }
    Ok(PolicyFile { default, docker })
}

fn requirements(value: &Value, at: &str) -> Result<Vec<Requirement<SignerRef>>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| format!("{at}: not a list of requirements"))?;
    if list.is_empty() {
        return Err(format!("{at}: an empty list of requirements"));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{at}[{i}]")))
        .collect()
}

fn requirement(value: &Value, at: &str) -> Result<Requirement<SignerRef>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: not an object"))?;
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}: \"type\" is missing"))?;
    match kind {
        "insecureAcceptAnything" => Ok(Requirement::Accept),
        "reject" => Ok(Requirement::Reject),
        "sigstoreSigned" => sigstore(map, at),
        "signedBy" => Err(format!(
            "{at}: \"signedBy\" (GPG signatures) is not supported; use \"sigstoreSigned\" with cosign keys"
        )),
        other => Err(format!("{at}: unknown requirement type {other:?}")),
    }
}

fn sigstore(map: &Map<String, Value>, at: &str) -> Result<Requirement<SignerRef>, String> {
    known_fields(map, &SIGSTORE_FIELDS, at)?;
    if map.contains_key("pki") {
        return Err(format!(
            "{at}: \"pki\" (certificates from a private CA without Fulcio) is not supported; use \"fulcio\" or a public key"
        ));
    }
    let mut keys = key_refs(map, at, ["keyPath", "keyPaths", "keyData"])?;
    let rekor = key_refs(
        map,
        at,
        [
            "rekorPublicKeyPath",
            "rekorPublicKeyPaths",
            "rekorPublicKeyData",
        ],
    )?;
    let signer = match map.get("fulcio") {
        Some(fulcio) => {
            if !keys.is_empty() {
                return Err(format!(
                    "{at}: \"fulcio\" and \"keyPath\"/\"keyPaths\"/\"keyData\" exclude each other"
                ));
            }
            if rekor.is_empty() {
                return Err(format!(
                    "{at}: \"fulcio\" needs \"rekorPublicKeyPath\", \"rekorPublicKeyPaths\" or \"rekorPublicKeyData\" (keyless signatures are checked against Rekor's signed timestamp)"
                ));
            }
            SignerRef::Keyless(keyless(fulcio, rekor, &format!("{at}.fulcio"))?)
        }
        None => {
            if !rekor.is_empty() {
                return Err(format!(
                    "{at}: \"rekorPublicKey*\" without \"fulcio\" (Rekor checks of key-signed images) is not supported"
                ));
            }
            if keys.is_empty() {
                return Err(format!(
                    "{at}: \"sigstoreSigned\" needs \"keyPath\", \"keyPaths\", \"keyData\" or \"fulcio\""
                ));
            }
            SignerRef::Keys(std::mem::take(&mut keys))
        }
    };
    let identity = match map.get("signedIdentity") {
        None => Identity::MatchRepoDigestOrExact,
        Some(v) => identity(v, &format!("{at}.signedIdentity"))?,
    };
    Ok(Requirement::Sigstore { signer, identity })
}

/// A field not in `known` is an error: a misspelt field would otherwise loosen the policy.
fn known_fields(map: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(field) => Err(format!(
            "{at}: unknown field {field:?} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// The keys named by a `…Path`, `…Paths` and `…Data` triple of fields.
fn key_refs(
    map: &Map<String, Value>,
    at: &str,
    [one, many, data]: [&str; 3],
) -> Result<Vec<KeyRef>, String> {
    let mut keys = Vec::new();
    if let Some(path) = map.get(one) {
        let path = path
            .as_str()
            .ok_or_else(|| format!("{at}: {one:?} is not a string"))?;
        keys.push(KeyRef::Path(PathBuf::from(path)));
    }
    if let Some(paths) = map.get(many) {
        let paths = paths
            .as_array()
            .ok_or_else(|| format!("{at}: {many:?} is not a list"))?;
        for p in paths {
            let p = p
                .as_str()
                .ok_or_else(|| format!("{at}: {many:?} holds a non-string"))?;
            keys.push(KeyRef::Path(PathBuf::from(p)));
        }
    }
    if let Some(value) = map.get(data) {
        keys.push(KeyRef::Data(base64_field(value, data, at)?));
    }
    Ok(keys)
}

fn base64_field(value: &Value, name: &str, at: &str) -> Result<Vec<u8>, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{at}: {name:?} is not a string"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("{at}: {name:?} is not base64: {e}"))
}

fn keyless(value: &Value, rekor: Vec<KeyRef>, at: &str) -> Result<KeylessRef, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: not an object"))?;
    known_fields(map, &FULCIO_FIELDS, at)?;
    let ca = match (map.get("caPath"), map.get("caData")) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{at}: \"caPath\" and \"caData\" exclude each other"
            ));
        }
        (Some(path), None) => KeyRef::Path(PathBuf::from(
            path.as_str()
                .ok_or_else(|| format!("{at}: \"caPath\" is not a string"))?,
        )),
        (None, Some(data)) => KeyRef::Data(base64_field(data, "caData", at)?),
        (None, None) => return Err(format!("{at}: \"caPath\" or \"caData\" is missing")),
    };
    let text = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("{at}: {name:?} is missing"))
    };
    Ok(KeylessRef {
        ca,
        oidc_issuer: text("oidcIssuer")?,
        subject: text("subjectEmail")?,
        rekor,
    })
}

fn identity(value: &Value, at: &str) -> Result<Identity, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{at}: not an object"))?;
    let field = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{at}: {name:?} is missing"))
    };
    match map.get("type").and_then(Value::as_str) {
        Some("matchRepoDigestOrExact") => Ok(Identity::MatchRepoDigestOrExact),
        Some("matchRepository") => Ok(Identity::MatchRepository),
        Some("matchExact") => Ok(Identity::MatchExact),
        Some("exactReference") => Ok(Identity::ExactReference(field("dockerReference")?)),
        Some("exactRepository") => Ok(Identity::ExactRepository(field("dockerRepository")?)),
        Some("remapIdentity") => {
            let (prefix, signed_prefix) = (field("prefix")?, field("signedPrefix")?);
            for (name, value) in [("prefix", &prefix), ("signedPrefix", &signed_prefix)] {
                if value.is_empty() || value.contains('@') || value.ends_with('/') {
                    return Err(format!(
                        "{at}: {name} {value:?} must be a host, a namespace or a repository (no tag or digest)"
                    ));
                }
            }
            Ok(Identity::RemapIdentity {
                prefix,
                signed_prefix,
            })
        }
        Some(other) => Err(format!("{at}: unknown signedIdentity type {other:?}")),
        None => Err(format!("{at}: \"type\" is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_default_scopes_and_keys() {
        let text = r#"{
          "default": [{"type": "reject"}],
          "transports": {
            "docker": {
              "quay.io/org": [{"type": "sigstoreSigned", "keyPath": "/k/org.pub",
                               "signedIdentity": {"type": "matchRepository"}}],
              "quay.io/org/app": [{"type": "sigstoreSigned", "keyPaths": ["/a", "/b"],
                                   "keyData": "UEVN"}],
              "": [{"type": "insecureAcceptAnything"}]
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
          }
        }"#;
        let file = parse(text).expect("parses");
        assert_eq!(file.default, vec![Requirement::Reject]);
        assert_eq!(file.docker.len(), 3);
        assert_eq!(
            file.docker[0].1,
            vec![Requirement::Sigstore {
                signer: SignerRef::Keys(vec![KeyRef::Path("/k/org.pub".into())]),
                identity: Identity::MatchRepository
            }]
        );
        assert_eq!(
            file.docker[1].1,
            vec![Requirement::Sigstore {
                signer: SignerRef::Keys(vec![
                    KeyRef::Path("/a".into()),
                    KeyRef::Path("/b".into()),
                    KeyRef::Data(b"PEM".to_vec())
                ]),
                identity: Identity::MatchRepoDigestOrExact
            }]
        );
        assert_eq!(file.docker[2], (String::new(), vec![Requirement::Accept]));
    }

    #[test]
    fn reads_the_keyless_form() {
        let text = r#"{"default": [{"type": "sigstoreSigned",
            "fulcio": {"caData": "UEVN", "oidcIssuer": "https://token.actions.githubusercontent.com",
                       "subjectEmail": "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"},
            "rekorPublicKeyPaths": ["/r1.pub", "/r2.pub"], "rekorPublicKeyData": "UkVL",
            "signedIdentity": {"type": "matchRepository"}}]}"#;
        let file = parse(text).expect("parses");
        assert_eq!(
            file.default,
            vec![Requirement::Sigstore {
                signer: SignerRef::Keyless(KeylessRef {
                    ca: KeyRef::Data(b"PEM".to_vec()),
                    oidc_issuer: "https://token.actions.githubusercontent.com".into(),
                    subject:
                        "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main"
                            .into(),
                    rekor: vec![
                        KeyRef::Path("/r1.pub".into()),
                        KeyRef::Path("/r2.pub".into()),
                        KeyRef::Data(b"REK".to_vec())
                    ],
                }),
                identity: Identity::MatchRepository
            }]
        );
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let cases = [
            ("not json", "not JSON"),
            ("[]", "not a JSON object"),
            ("{}", "\"default\" is missing"),
            (r#"{"default": []}"#, "empty list"),
            (
                r#"{"default": [{"type": "maybe"}]}"#,
                "unknown requirement type",
            ),
            (r#"{"default": [{"type": "signedBy"}]}"#, "GPG"),
            (
                r#"{"default": [{"type": "sigstoreSigned", "fulcio": {}}]}"#,
                "\"fulcio\" needs \"rekorPublicKeyPath\"",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "subjectEmail": "a@b"}, "rekorPublicKeyPath": "/r"}]}"#,
                "[0].fulcio: \"oidcIssuer\" is missing",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca", "oidcIssuer": "i", "subjectEmail": "a@b", "subjectURI": "x"}, "rekorPublicKeyPath": "/r"}]}"#,
                "[0].fulcio: unknown field \"subjectURI\"",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "fulcio": {"oidcIssuer": "i", "subjectEmail": "a@b"}, "rekorPublicKeyPath": "/r"}]}"#,
                "\"caPath\" or \"caData\" is missing",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPath": "/r"}]}"#,
                "without \"fulcio\"",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "keyPaht": "/r"}]}"#,
                "unknown field \"keyPaht\"",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "pki": {}}]}"#,
                "\"pki\"",
            ),
            (r#"{"default": [{"type": "sigstoreSigned"}]}"#, "needs"),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyData": "%%"}]}"#,
                "not base64",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/org"}}]}"#,
                "\"signedPrefix\" is missing",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "remapIdentity", "prefix": "quay.io/org/app:v1@sha256:00", "signedPrefix": "x.io/a"}}]}"#,
                "no tag or digest",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "exactReference"}}]}"#,
                "dockerReference",
            ),
            (
                r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"x": [{"type": "nope"}]}}}"#,
                "transports.docker[\"x\"][0]",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
