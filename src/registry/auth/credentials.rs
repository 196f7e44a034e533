//! Registry credentials: which auth file is read, and which credential applies to a
//! repository.
//!
//! Sources, first found wins: `--registry-config`, `REGISTRY_AUTH_FILE`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`; no file means anonymous access.
//! Within the file, for a repository `HOST/PATH`: `credHelpers[HOST]`, then the longest
//! matching `auths` key (`HOST/ORG/REPO`, `HOST/ORG`, `HOST`, keys with a scheme or Docker
//! Hub's legacy `https://index.docker.io/v1/` normalised), then `credsStore`.
//!
//! The docker_credential crate decodes the chosen `auths` entry (`auth`, `username` /
//! `password`, `identitytoken`). Credential helpers run here (its runner loses the helper's
//! message when the helper exits without reading stdin). What it does not do is done here
//! too: reading the file with errors that say what is wrong and where, namespaced keys and
//! longest-key matching, treating a helper's "credentials not found" as "no credential",
//! errors that name the helper and the registry, caching helper answers (each helper runs
//! once per registry per run), and keeping the username that goes with an identity token.
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Result, anyhow, bail};
use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::model::reference::{DOCKER_HUB, normalize_host};

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

/// One usable `auths` entry.
#[derive(Debug, Clone)]
struct Entry {
    /// Normalised: `host[:port]` or `host[:port]/namespace/...`.
    key: String,
    credential: RegistryCredential,
}

/// A parsed auth file.
#[derive(Debug, Default)]
struct AuthFile {
    entries: Vec<Entry>,
    /// Normalised host → helper name.
    helpers: BTreeMap<String, String>,
    store: Option<String>,
}

struct Inner {
    path: Option<PathBuf>,
    parsed: OnceLock<std::result::Result<AuthFile, String>>,
    /// Host → what its helper (credHelpers or credsStore) answered; `None`: not found.
    helper_answers: Mutex<HashMap<String, std::result::Result<Option<RegistryCredential>, String>>>,
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
        let cached = self
            .inner
            .helper_answers
            .lock()
            .ok()
            .and_then(|answers| answers.get(&host).cloned());
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = run_helper(&helper, &host).map_err(|e| format!("{e:#}"));
                if let Ok(mut answers) = self.inner.helper_answers.lock() {
                    answers.insert(host.clone(), answer.clone());
                }
                answer
            }
        };
        answer.map_err(|e| anyhow!(e))
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

fn read_auth_file(path: &Path) -> Result<AuthFile> {
    let text =
        std::fs::read(path).map_err(|e| anyhow!("registry config {}: {e}", path.display()))?;
    parse_auth_file(&text, &path.display().to_string())
}

fn parse_auth_file(text: &[u8], name: &str) -> Result<AuthFile> {
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
                    password: Secret(password),
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
                    token: Secret(token),
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

/// `https://quay.io` → `quay.io`; `https://index.docker.io/v1/` → `docker.io`;
/// `quay.io/org/` → `quay.io/org`. A key with a scheme is a registry (its path is an API
/// path, as docker writes them); a key without one may name a namespace (as podman does).
fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let (had_scheme, rest) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let rest = if had_scheme {
        rest.split('/').next().unwrap_or("")
    } else {
        rest.trim_end_matches('/')
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = normalize_host(host);
    if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

fn host_of(key: &str) -> String {
    key.split('/').next().unwrap_or("").to_owned()
}

/// The entry whose key is the longest prefix (on `/` boundaries) of `host/path`.
fn longest_match<'a>(entries: &'a [Entry], host: &str, path: &str) -> Option<&'a Entry> {
    let full = format!("{host}/{path}");
    entries
        .iter()
        .filter(|e| {
            e.key == host
                || (full.starts_with(&e.key) && full.as_bytes().get(e.key.len()) == Some(&b'/'))
                || e.key == full
        })
        .max_by_key(|e| e.key.len())
}

/// The longest a credential helper may take to answer.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `docker-credential-NAME get` with the server on stdin, as docker does. Run here
/// rather than through docker_credential, whose stdin write fails (and hides the helper's
/// own message) when a helper exits without reading it.
fn run_helper(helper: &str, host: &str) -> Result<Option<RegistryCredential>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }

    let server = if host == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        host
    };
    let program = format!("docker-credential-{helper}");
    tracing::debug!(helper = %program, registry = host, "asking credential helper");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("credential helper {program} (for registry {host}) is not on PATH")
        }
        Err(e) => bail!("could not run credential helper {program} for registry {host}: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that fails fast may not read its input: its answer still counts.
        let _ = stdin.write_all(server.as_bytes());
    }
    // A helper waiting for a keychain prompt or a login would hang the job forever. Its
    // answer is small and fits the pipe, so waiting before reading cannot block it.
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "credential helper {program} did not answer within {} s for registry {host}",
                    HELPER_TIMEOUT.as_secs()
                )
            }
            Err(e) => bail!("could not run credential helper {program} for registry {host}: {e}"),
        }
    }
    let output = child.wait_with_output().map_err(|e| {
        anyhow!("could not run credential helper {program} for registry {host}: {e}")
    })?;
    if !output.status.success() {
        let said = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let first = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        // A failing helper may still have printed part of a secret.
        let first: String = crate::redact::redact(first).chars().take(300).collect();
        bail!("credential helper {program} failed for registry {host}: {first}")
    }
    let answer: Answer = serde_json::from_slice(&output.stdout).map_err(|_| {
        anyhow!("credential helper {program} answered something that is not a credential (JSON with Username and Secret) for registry {host}")
    })?;
    let origin = format!("credential helper {program}");
    let credential = match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() && answer.username.is_empty() => return Ok(None),
        // Docker's convention for an identity (refresh) token.
        ("<token>", secret) => Credential::IdentityToken {
            username: None,
            token: Secret(secret),
        },
        (_, secret) => Credential::Basic {
            username: answer.username.clone(),
            password: Secret(secret),
        },
    };
    Ok(Some(RegistryCredential { credential, origin }))
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
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
