//! containers-policy.json(5) read into what `--policy` enforces: the default, the `docker`
//! transport's scopes, and each scope's requirements. Pure: key files are named here and
//! read by the caller, so a malformed policy is refused before anything is contacted.

use std::path::PathBuf;

use base64::Engine;
use serde_json::{Map, Value};

/// A policy file as written: the requirements of the default and of each `docker` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    pub default: Vec<Requirement<KeyRef>>,
    /// `transports.docker`: scope (`""`, `host`, `host/ns`, `host/ns/repo[:tag|@digest]`,
    /// `*.domain`) to requirements.
    pub docker: Vec<(String, Vec<Requirement<KeyRef>>)>,
}

/// One requirement; `K` is how its keys are held (named in the file, then loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement<K> {
    Accept,
    Reject,
    Sigstore { keys: Vec<K>, identity: Identity },
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

/// The fields that would need Fulcio certificates or a Rekor log: keyless verification.
const KEYLESS: [&str; 5] = [
    "fulcio",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "pki",
];

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

fn requirements(value: &Value, at: &str) -> Result<Vec<Requirement<KeyRef>>, String> {
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

fn requirement(value: &Value, at: &str) -> Result<Requirement<KeyRef>, String> {
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

fn sigstore(map: &Map<String, Value>, at: &str) -> Result<Requirement<KeyRef>, String> {
    if let Some(field) = KEYLESS.iter().find(|f| map.contains_key(**f)) {
        return Err(format!(
            "{at}: {field:?}: keyless verification (Fulcio certificates, Rekor) is not supported; give the signer's public key with \"keyPath\", \"keyPaths\" or \"keyData\""
        ));
    }
    let mut keys = Vec::new();
    if let Some(path) = map.get("keyPath") {
        let path = path
            .as_str()
            .ok_or_else(|| format!("{at}: \"keyPath\" is not a string"))?;
        keys.push(KeyRef::Path(PathBuf::from(path)));
    }
    if let Some(paths) = map.get("keyPaths") {
        let paths = paths
            .as_array()
            .ok_or_else(|| format!("{at}: \"keyPaths\" is not a list"))?;
        for p in paths {
            let p = p
                .as_str()
                .ok_or_else(|| format!("{at}: \"keyPaths\" holds a non-string"))?;
            keys.push(KeyRef::Path(PathBuf::from(p)));
        }
    }
    if let Some(data) = map.get("keyData") {
        let data = data
            .as_str()
            .ok_or_else(|| format!("{at}: \"keyData\" is not a string"))?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("{at}: \"keyData\" is not base64: {e}"))?;
        keys.push(KeyRef::Data(pem));
    }
    if keys.is_empty() {
        return Err(format!(
            "{at}: \"sigstoreSigned\" needs \"keyPath\", \"keyPaths\" or \"keyData\""
        ));
    }
    let identity = match map.get("signedIdentity") {
        None => Identity::MatchRepoDigestOrExact,
        Some(v) => identity(v, &format!("{at}.signedIdentity"))?,
    };
    Ok(Requirement::Sigstore { keys, identity })
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
                keys: vec![KeyRef::Path("/k/org.pub".into())],
                identity: Identity::MatchRepository
            }]
        );
        assert_eq!(
            file.docker[1].1,
            vec![Requirement::Sigstore {
                keys: vec![
                    KeyRef::Path("/a".into()),
                    KeyRef::Path("/b".into()),
                    KeyRef::Data(b"PEM".to_vec())
                ],
                identity: Identity::MatchRepoDigestOrExact
            }]
        );
        assert_eq!(file.docker[2], (String::new(), vec![Requirement::Accept]));
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
                "keyless",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPath": "/r"}]}"#,
                "keyless",
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
