//! Registry credentials: which auth file is read, and which credential applies to a
//! repository.
//!
//! Sources, first found wins: `--registry-config`, `REGISTRY_AUTH_FILE`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`; no file means anonymous access.
//! Within the file, for a repository `HOST/PATH`: `credHelpers[HOST]`, then the longest
//! matching `auths` key, then `credsStore`.
//!
//! - [`file`]: the auth file, read and checked;
//! - [`keys`]: key normalisation and longest-key matching;
//! - [`helper`]: credential helper processes;
//! - here: the credential types and [`Credentials`], the sources of one run with their cache
//!   (the file is read once, each helper runs once per registry per run, concurrent askers
//!   for one registry wait for the one answer).
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` never show the value.

mod file;
mod helper;
mod keys;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Result, anyhow};

use self::file::{AuthFile, read_auth_file};
use self::helper::run_helper;
use self::keys::longest_match;
use crate::model::reference::normalize_host;
use crate::registry::control::quota::Account;

/// The key docker (and docker_credential, and credential helpers) use for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A password or token. Never printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What to authenticate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// Docker's `identitytoken`: an OAuth2 refresh token, exchanged at the registry's token
    /// endpoint (`grant_type=refresh_token`) for access tokens.
    IdentityToken {
        username: Option<String>,
        token: Secret,
    },
}

/// A credential and where it came from (for messages and the token cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    pub credential: Credential,
    /// E.g. `auths["quay.io/org"] in /run/secrets/config.json`,
    /// `credential helper docker-credential-ecr-login`, `anonymous`.
    pub origin: String,
}

impl RegistryCredential {
    pub fn anonymous() -> Self {
        RegistryCredential {
            credential: Credential::Anonymous,
            origin: "anonymous".to_owned(),
        }
    }

    /// The user name, when there is one (never the secret).
    pub fn user(&self) -> Option<&str> {
        match &self.credential {
            Credential::Anonymous => None,
            Credential::Basic { username, .. } => Some(username),
            Credential::IdentityToken { username, .. } => username.as_deref(),
        }
    }

    /// Whose pull quota requests with this credential spend: its user's (Docker Hub counts
    /// per account), else where it came from; never the secret.
    pub fn account(&self) -> Account {
        match (&self.credential, self.user()) {
            (Credential::Anonymous, _) => Account::anonymous(),
            (_, Some(user)) if !user.is_empty() => Account::named(format!("user {user}")),
            _ => Account::named(self.origin.clone()),
        }
    }

    /// `user robot+x`, `an identity token`, `anonymous access` — for messages.
    pub fn who(&self) -> String {
        match (&self.credential, self.user()) {
            (Credential::Anonymous, _) => "anonymous access".to_owned(),
            (_, Some(user)) if !user.is_empty() => format!("user {user}"),
            (Credential::IdentityToken { .. }, _) => {
                format!("the identity token from {}", self.origin)
            }
            _ => format!("the credentials from {}", self.origin),
        }
    }
}

/// What a credential helper answered for one host, once.
type HelperAnswer = OnceLock<std::result::Result<Option<RegistryCredential>, String>>;

struct Inner {
    path: Option<PathBuf>,
    parsed: OnceLock<std::result::Result<AuthFile, String>>,
    /// Host → what its helper (credHelpers or credsStore) answered; `None`: not found. One
    /// cell per host: a second asker for the host waits for the first one's answer rather
    /// than running the helper again, and askers for other hosts wait for nothing.
    helper_answers: Mutex<HashMap<String, Arc<HelperAnswer>>>,
}

/// Where credentials come from for this run. Cheap to clone (shared).
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn with_path(path: Option<PathBuf>) -> Self {
        Credentials {
            inner: Arc::new(Inner {
                path,
                parsed: OnceLock::new(),
                helper_answers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// No file: anonymous access everywhere.
    pub fn anonymous() -> Self {
        Self::with_path(None)
    }

    /// Credentials from this auth file (Docker `config.json` or containers `auth.json`).
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self::with_path(Some(path.into()))
    }

    /// The first of: the explicit flag, `REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`. Files named explicitly must exist; the default locations may
    /// be absent, which means anonymous access.
    pub fn locate(flag: Option<PathBuf>) -> Self {
        let explicit = flag.or_else(|| non_empty_env("REGISTRY_AUTH_FILE").map(PathBuf::from));
        if let Some(path) = explicit {
            return Self::from_file(path);
        }
        let default = match non_empty_env("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => {
                non_empty_env("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
            }
        };
        match default {
            Some(path) if path.exists() => Self::from_file(path),
            _ => Self::anonymous(),
        }
    }

    /// The auth file in use, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Reads and checks the whole file before anything is contacted: unreadable or
    /// malformed files, undecodable `auth` values and bad helper names are errors that name
    /// the file and the key.
    pub fn validate(&self) -> Result<()> {
        self.file().map(|_| ())
    }

    /// Runs, once each, the credential helpers that apply to `hosts` (registry hosts as
    /// written in references, e.g. `quay.io`, `docker.io`, `localhost:5000`), so that a
    /// failing helper stops the run before anything is pushed. Every failure is reported,
    /// one per line.
    pub fn resolve_all<I, S>(&self, hosts: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.validate()?;
        let errors: Vec<String> = hosts
            .into_iter()
            .filter_map(|h| self.helper_for_host(h.as_ref()).err())
            .map(|e| format!("{e:#}"))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(errors.join("\n")))
        }
    }

    /// The credential for repository `path` on `host`. May run a credential helper (blocking)
    /// the first time a host is asked for; [`Credentials::resolve_all`] runs them up front.
    pub fn for_repository(&self, host: &str, path: &str) -> Result<RegistryCredential> {
        let Some(file) = self.file()? else {
            return Ok(RegistryCredential::anonymous());
        };
        let host = normalize_host(host);
        if file.helpers.contains_key(&host) {
            return Ok(self
                .helper_for_host(&host)?
                .unwrap_or_else(RegistryCredential::anonymous));
        }
        if let Some(entry) = longest_match(&file.entries, &host, path) {
            return Ok(entry.credential.clone());
        }
        Ok(self
            .helper_for_host(&host)?
            .unwrap_or_else(RegistryCredential::anonymous))
    }

    /// What the helper that applies to the whole host (credHelpers, else credsStore) answers;
    /// `None` when no helper applies or it has nothing for this host. Cached.
    pub fn helper_for_host(&self, host: &str) -> Result<Option<RegistryCredential>> {
        let Some(file) = self.file()? else {
            return Ok(None);
        };
        let host = normalize_host(host);
        let helper = match (file.helpers.get(&host), &file.store) {
            (Some(h), _) => h.clone(),
            (None, Some(store)) => store.clone(),
            (None, None) => return Ok(None),
        };
        let cell = match self.inner.helper_answers.lock() {
            Ok(mut answers) => answers.entry(host.clone()).or_default().clone(),
            Err(poisoned) => poisoned
                .into_inner()
                .entry(host.clone())
                .or_default()
                .clone(),
        };
        // Blocks (in the caller's blocking thread) while another asker runs the helper.
        cell.get_or_init(|| run_helper(&helper, &host).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!(e))
    }

    fn file(&self) -> Result<Option<&AuthFile>> {
        let Some(path) = &self.inner.path else {
            return Ok(None);
        };
        match self
            .inner
            .parsed
            .get_or_init(|| read_auth_file(path).map_err(|e| format!("{e:#}")))
        {
            Ok(file) => Ok(Some(file)),
            Err(e) => Err(anyhow!("{e}")),
        }
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::file::parse_auth_file;
    use super::keys::{longest_match, normalize_key};
    use super::*;

    fn file(json: &str) -> AuthFile {
        parse_auth_file(json.as_bytes(), "config.json").unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn lookup(f: &AuthFile, host: &str, path: &str) -> Option<Credential> {
        longest_match(&f.entries, &normalize_host(host), path)
            .map(|e| e.credential.credential.clone())
    }

    fn basic(user: &str, password: &str) -> Credential {
        Credential::Basic {
            username: user.into(),
            password: Secret(password.into()),
        }
    }

    #[test]
    fn keys_are_normalised() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("https://quay.io"), "quay.io");
        assert_eq!(normalize_key("http://localhost:5000/v2/"), "localhost:5000");
        assert_eq!(normalize_key("quay.io/myorg/"), "quay.io/myorg");
        assert_eq!(normalize_key("Registry-1.Docker.io"), "docker.io");
        assert_eq!(normalize_key("host:5000"), "host:5000");
    }

    #[test]
    fn longest_key_wins() {
        // cm9ib3QreDpweA== is robot+x:px, b3JnOm8= is org:o, YTpi is a:b
        let f = file(
            r#"{"auths": {
                "quay.io": {"auth": "YTpi"},
                "quay.io/myorg": {"auth": "cm9ib3QreDpweA=="},
                "quay.io/myorg/special": {"username": "s", "password": "p"},
                "https://index.docker.io/v1/": {"auth": "b3JnOm8="},
                "localhost:5000": {"username": "l", "password": "lp", "email": "x@y"},
                "empty.example": {}
            }}"#,
        );
        assert_eq!(lookup(&f, "quay.io", "other/repo"), Some(basic("a", "b")));
        assert_eq!(
            lookup(&f, "quay.io", "myorg/app"),
            Some(basic("robot+x", "px"))
        );
        assert_eq!(
            lookup(&f, "quay.io", "myorg/special"),
            Some(basic("s", "p"))
        );
        assert_eq!(
            lookup(&f, "quay.io", "myorg/special/sub"),
            Some(basic("s", "p"))
        );
        // a prefix must end at a path boundary
        assert_eq!(
            lookup(&f, "quay.io", "myorganisation/app"),
            Some(basic("a", "b"))
        );
        assert_eq!(
            lookup(&f, "docker.io", "library/nginx"),
            Some(basic("org", "o"))
        );
        assert_eq!(lookup(&f, "localhost:5000", "a"), Some(basic("l", "lp")));
        assert_eq!(lookup(&f, "localhost:5001", "a"), None);
        assert_eq!(lookup(&f, "empty.example", "a"), None);
    }

    #[test]
    fn identity_tokens_keep_their_user() {
        let f = file(r#"{"auths": {"r.example": {"auth": "am9objo=", "identitytoken": "rt-1"}}}"#);
        assert_eq!(
            lookup(&f, "r.example", "x"),
            Some(Credential::IdentityToken {
                username: Some("john".into()),
                token: Secret("rt-1".into())
            })
        );
    }

    #[test]
    fn bad_files_say_what_and_where() {
        let err = |json: &str| {
            format!(
                "{:#}",
                parse_auth_file(json.as_bytes(), "/x/config.json").expect_err("an error")
            )
        };
        let e = err("{\"auths\": ");
        assert!(
            e.contains("/x/config.json") && e.contains("not a valid auth file"),
            "{e}"
        );
        let e = err(r#"{"auths": {"quay.io": {"auth": "!!!"}}}"#);
        assert!(
            e.contains("auths[\"quay.io\"]") && e.contains("base64"),
            "{e}"
        );
        let e = err(r#"{"auths": {"quay.io": {"auth": "bm9jb2xvbg=="}}}"#);
        assert!(e.contains("user:password"), "{e}");
        let e = err(r#"{"auths": {"quay.io": "x"}}"#);
        assert!(e.contains("not an object"), "{e}");
        let e = err(r#"{"credHelpers": {"quay.io": "../evil"}}"#);
        assert!(e.contains("credHelpers[\"quay.io\"]"), "{e}");
        let e =
            err(r#"{"auths": {"quay.io": {"auth": "YTpi", "username": "c", "password": "d"}}}"#);
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn secrets_are_never_shown() {
        let f = file(r#"{"auths": {"q.example": {"username": "u", "password": "hunter2"}}}"#);
        let shown = format!("{:?}", f.entries);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn helpers_apply_per_host() {
        let f = file(r#"{"credHelpers": {"https://Quay.io": "test"}, "credsStore": "store"}"#);
        assert_eq!(f.helpers.get("quay.io").map(String::as_str), Some("test"));
        assert_eq!(f.store.as_deref(), Some("store"));
    }
}
