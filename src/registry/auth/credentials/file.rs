//! The auth file: Docker's `config.json` or containers' `auth.json`, read and checked as a
//! whole, with errors that say what is wrong and where. The `auths` entries are decoded by
//! the docker_credential crate (`auth`, `username` / `password`, `identitytoken`), keeping
//! the user name that goes with an identity token.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, anyhow};
use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::keys::{host_of, normalize_key};
use super::{Credential, RegistryCredential, Secret};

/// One usable `auths` entry.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Normalised: `host[:port]` or `host[:port]/namespace/...`.
    pub key: String,
    pub credential: RegistryCredential,
}

/// A parsed auth file.
#[derive(Debug, Default)]
pub(super) struct AuthFile {
    pub entries: Vec<Entry>,
    /// Normalised host → helper name.
    pub helpers: BTreeMap<String, String>,
    pub store: Option<String>,
}

pub(super) fn read_auth_file(path: &Path) -> Result<AuthFile> {
    let text =
        std::fs::read(path).map_err(|e| anyhow!("registry config {}: {e}", path.display()))?;
    parse_auth_file(&text, &path.display().to_string())
}

pub(super) fn parse_auth_file(text: &[u8], name: &str) -> Result<AuthFile> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        auths: Option<BTreeMap<String, serde_json::Value>>,
        #[serde(default, rename = "credHelpers")]
        cred_helpers: Option<BTreeMap<String, String>>,
        #[serde(default, rename = "credsStore")]
        creds_store: Option<String>,
    }
    let raw: Raw = serde_json::from_slice(text)
        .map_err(|e| anyhow!("registry config {name}: not a valid auth file: {e}"))?;
    let mut file = AuthFile::default();
    for (key, value) in raw.auths.unwrap_or_default() {
        let bad = |why: &str| anyhow!("registry config {name}: auths[{key:?}]: {why}");
        let Some(fields) = value.as_object() else {
            return Err(bad("not an object"));
        };
        for field in ["auth", "username", "password", "identitytoken"] {
            if let Some(v) = fields.get(field)
                && !v.is_string()
                && !v.is_null()
            {
                return Err(bad(&format!("{field} is not a string")));
            }
        }
        let text_of = |field: &str| {
            fields
                .get(field)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        if text_of("auth").is_none()
            && text_of("identitytoken").is_none()
            && (text_of("username").is_none() || text_of("password").is_none())
        {
            // `{}` (written by `docker login` next to a credsStore) or an email only.
            continue;
        }
        // Decoded by docker_credential, from a file of this one entry.
        let single = serde_json::json!({ "auths": { "entry": value } }).to_string();
        let decoded = docker_credential::get_credential_from_reader(single.as_bytes(), "entry")
            .map_err(|e| match e {
                CredentialRetrievalError::CredentialDecodingError => {
                    bad("auth is not base64 of user:password")
                }
                CredentialRetrievalError::CredentialMismatchError => {
                    bad("auth does not match username and password")
                }
                other => bad(&other.to_string()),
            })?;
        let origin = format!("auths[{key:?}] in {name}");
        let credential = match decoded {
            DockerCredential::UsernamePassword(username, password) => {
                if username.is_empty() {
                    return Err(bad("empty user name"));
                }
                Credential::Basic {
                    username,
                    password: Secret::new(password),
                }
            }
            DockerCredential::IdentityToken(token) => {
                let username = text_of("username").map(str::to_owned).or_else(|| {
                    text_of("auth").and_then(|a| {
                        // The user name beside an identity token (docker writes `user:` or
                        // `<token>:`) is only used in messages.
                        let single =
                            serde_json::json!({ "auths": { "e": { "auth": a } } }).to_string();
                        match docker_credential::get_credential_from_reader(single.as_bytes(), "e")
                        {
                            Ok(DockerCredential::UsernamePassword(u, _))
                                if !u.is_empty() && u != "<token>" =>
                            {
                                Some(u)
                            }
                            _ => None,
                        }
                    })
                });
                Credential::IdentityToken {
                    username,
                    token: Secret::new(token),
                }
            }
        };
        let normalized = normalize_key(&key);
        if normalized.is_empty() {
            return Err(bad("empty registry name"));
        }
        file.entries.push(Entry {
            key: normalized,
            credential: RegistryCredential { credential, origin },
        });
    }
    for (key, helper) in raw.cred_helpers.unwrap_or_default() {
        check_helper_name(&helper)
            .map_err(|why| anyhow!("registry config {name}: credHelpers[{key:?}]: {why}"))?;
        file.helpers.insert(host_of(&normalize_key(&key)), helper);
    }
    if let Some(store) = raw.creds_store.filter(|s| !s.is_empty()) {
        check_helper_name(&store)
            .map_err(|why| anyhow!("registry config {name}: credsStore: {why}"))?;
        file.store = Some(store);
    }
    Ok(file)
}

fn check_helper_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty helper name".to_owned());
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "{name:?} is not a helper name (the program run is docker-credential-NAME on PATH)"
        ));
    }
    Ok(())
}
