//! Registry authentication for one registry: how it wants to be asked (its
//! `WWW-Authenticate` challenge), and bearer tokens scoped per repository and action.
//!
//! Tokens are fetched from the challenge's realm with basic credentials (`GET`, as docker
//! does) or, for an identity token, with an OAuth2 refresh-token grant (`POST`). They are
//! cached per credential and scope set, and refreshed before `expires_in` runs out; callers
//! drop a token the registry refused ([`Authenticator::invalidate`]) and ask again.
//!
//! Nothing here logs or formats a secret: tokens and passwords stay in [`Secret`].
//!
//! Sits on [`super::pipeline`] (token and `/v2/` requests are sent, counted and retried like
//! any other, without the registry's credentials) and below [`super::client`], which asks
//! it what to put on each request.

pub mod challenge;
pub mod credentials;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::StatusCode;

use self::challenge::{Challenge, offered_challenge};
use self::credentials::{Credential, RegistryCredential, Secret};
use super::control::CostClass;
use super::error::{describe_http_error, kind_of_status, registry_answer, transport_kind};
use super::pipeline::{Body, Pipeline, Request, unread};
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::retry::UNREACHABLE_FOR;

/// Per the token spec, a token without `expires_in` lives 60 seconds.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh this long before expiry at most (a quarter of the lifetime for short tokens).
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "image-mirror";

/// What a request needs: pull, or pull and push, on a repository; for a cross-repository
/// mount also pull on the repository the blob comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    pub path: String,
    pub push: bool,
    /// Deleting manifests (prune): token services grant it as its own action.
    pub delete: bool,
    pub mount_from: Option<String>,
    /// The registry's catalog (`registry:catalog:*`) rather than a repository.
    pub catalog: bool,
}

impl Access {
    pub fn pull(path: &str) -> Self {
        Access {
            path: path.to_owned(),
            push: false,
            delete: false,
            mount_from: None,
            catalog: false,
        }
    }

    /// Listing the registry's repositories (`GET /v2/_catalog`).
    pub fn catalog() -> Self {
        Access {
            path: String::new(),
            push: false,
            delete: false,
            mount_from: None,
            catalog: true,
        }
    }
    pub fn push(path: &str) -> Self {
        Access {
            path: path.to_owned(),
            push: true,
            delete: false,
            mount_from: None,
            catalog: false,
        }
    }
    pub fn mount(path: &str, from: &str) -> Self {
        Access {
            path: path.to_owned(),
            push: true,
            delete: false,
            mount_from: Some(from.to_owned()),
            catalog: false,
        }
    }

    /// Deleting a manifest of `path` (prune): `pull,delete`, as distribution's token
    /// authorization names it.
    pub fn delete(path: &str) -> Self {
        Access {
            delete: true,
            ..Access::pull(path)
        }
    }

    /// `repository:P:pull` / `repository:P:pull,push` / `repository:P:pull,delete`
    /// (+ `repository:FROM:pull`).
    pub fn scopes(&self) -> Vec<String> {
        if self.catalog {
            return vec!["registry:catalog:*".to_owned()];
        }
        let mut scopes = vec![format!(
            "repository:{}:{}",
            self.path,
            match (self.push, self.delete) {
                (true, true) => "pull,push,delete",
                (true, false) => "pull,push",
                (false, true) => "pull,delete",
                (false, false) => "pull",
            }
        )];
        if let Some(from) = &self.mount_from
            && from != &self.path
        {
            scopes.push(format!("repository:{from}:pull"));
        }
        scopes
    }

    pub fn action(&self) -> &'static str {
        if self.delete {
            "delete"
        } else if self.push {
            "push"
        } else {
            "pull"
        }
    }
}

/// Credentials to put on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl Authorization {
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        // reqwest marks both headers sensitive: they are never shown by its Debug output.
        match self {
            Authorization::Bearer(token) => request.bearer_auth(token.expose()),
            Authorization::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        }
    }
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// Whose token, for what: a token is asked per credential and per set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    origin: String,
    user: Option<String>,
    access: Access,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Authentication state for one registry.
pub struct Authenticator {
    /// The registry as named in references, for messages.
    host: String,
    /// Where its requests go (without the registry's credentials).
    pipe: Arc<Pipeline>,
    challenge: tokio::sync::Mutex<Option<Challenge>>,
    /// A `GET /v2/` that failed after its retries, and when: the copies waiting behind it
    /// get the same answer for a while instead of each retrying again.
    unreachable: std::sync::Mutex<Option<(Instant, ErrorKind, String)>>,
    /// (credential origin, scopes) → token
    tokens: std::sync::Mutex<HashMap<TokenKey, TokenSlot>>,
}

impl Authenticator {
    pub fn new(host: &str, pipe: Arc<Pipeline>) -> Self {
        Authenticator {
            host: host.to_owned(),
            pipe,
            challenge: tokio::sync::Mutex::new(None),
            unreachable: std::sync::Mutex::new(None),
            tokens: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The registry's challenge, asked once (`GET /v2/` without credentials).
    pub async fn challenge(&self) -> Result<Challenge> {
        let mut known = self.challenge.lock().await;
        if let Some(c) = known.as_ref() {
            return Ok(c.clone());
        }
        if let Ok(failed) = self.unreachable.lock()
            && let Some((at, kind, message)) = failed.as_ref()
            && at.elapsed() < UNREACHABLE_FOR
        {
            return Err(failure(*kind, message.clone()));
        }
        let mut url = self.pipe.base.clone();
        url.set_path("/v2/");
        let what = format!("connecting to {}", self.host);
        let request = Request::new(reqwest::Method::GET, url, CostClass::Check, &what)
            .bulk()
            .first_contact();
        let response = match self.pipe.send(&request, None, unread).await {
            Ok(r) => r.value,
            Err(e) => {
                let e = e.error;
                if let Ok(mut failed) = self.unreachable.lock() {
                    let kind = error_kind(&e).unwrap_or(ErrorKind::Transient);
                    *failed = Some((Instant::now(), kind, format!("{e:#}")));
                }
                return Err(e);
            }
        };
        let challenge = match response.status() {
            s if s.is_success() => Challenge::None,
            StatusCode::UNAUTHORIZED => {
                offered_challenge(response.headers()).unwrap_or(Challenge::Basic)
            }
            status => {
                return Err(failure(
                    kind_of_status(status).or_permanent(),
                    format!(
                        "{} answered GET /v2/ with {status}; is it a container registry?",
                        self.host
                    ),
                ));
            }
        };
        tracing::debug!(registry = %self.host, ?challenge, "registry authentication");
        *known = Some(challenge.clone());
        Ok(challenge)
    }

    /// Records the challenge from a 401 answer (a registry may allow anonymous `/v2/` and
    /// still ask for credentials to push). True if it changed.
    pub async fn learn(&self, response_headers: &reqwest::header::HeaderMap) -> bool {
        let Some(offered) = offered_challenge(response_headers) else {
            return false;
        };
        let mut known = self.challenge.lock().await;
        if known.as_ref() == Some(&offered) {
            return false;
        }
        *known = Some(offered);
        true
    }

    /// What to send for `access` with `credential`: nothing, basic credentials, or a bearer
    /// token for exactly the scopes `access` needs.
    pub async fn authorization(
        &self,
        credential: &RegistryCredential,
        access: &Access,
    ) -> Result<Option<Authorization>> {
        match self.challenge().await? {
            Challenge::None => Ok(None),
            Challenge::Basic => match &credential.credential {
                Credential::Basic { username, password } => Ok(Some(Authorization::Basic {
                    username: username.clone(),
                    password: password.clone(),
                })),
                Credential::Anonymous => Ok(None),
                Credential::IdentityToken { .. } => Err(failure(
                    ErrorKind::Denied,
                    format!(
                        "{} asks for a user name and password, but {} holds an identity token",
                        self.host, credential.origin
                    ),
                )),
            },
            Challenge::Bearer { realm, service } => {
                let token = self
                    .token(credential, access, &realm, service.as_deref())
                    .await?;
                Ok(Some(Authorization::Bearer(token)))
            }
        }
    }

    /// Forgets the token `used` for `access`, so the next request fetches a new one (unless
    /// another task already replaced it).
    pub async fn invalidate(
        &self,
        credential: &RegistryCredential,
        access: &Access,
        used: Option<&Authorization>,
    ) {
        let Some(Authorization::Bearer(used)) = used else {
            return;
        };
        let slot = self.slot(credential, access);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| &c.token == used) {
            *cached = None;
        }
    }

    fn slot(&self, credential: &RegistryCredential, access: &Access) -> TokenSlot {
        let key = TokenKey {
            origin: credential.origin.clone(),
            user: credential.user().map(str::to_owned),
            access: access.clone(),
        };
        let mut tokens = match self.tokens.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        tokens.entry(key).or_default().clone()
    }

    async fn token(
        &self,
        credential: &RegistryCredential,
        access: &Access,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Secret> {
        let slot = self.slot(credential, access);
        // One fetch per scope at a time; the others wait for its token.
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let scopes = access.scopes();
        let fetched = self
            .fetch_token(credential, realm, service, &scopes)
            .await?;
        let lifetime = fetched.1;
        let margin = (lifetime / 4).min(MAX_REFRESH_MARGIN);
        tracing::debug!(
            registry = %self.host,
            scope = %scopes.join(" "),
            lifetime_s = lifetime.as_secs_f64(),
            refreshed = cached.is_some(),
            "got a registry token"
        );
        *cached = Some(CachedToken {
            token: fetched.0.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(fetched.0)
    }

    async fn fetch_token(
        &self,
        credential: &RegistryCredential,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(Secret, Duration)> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<f64>,
        }
        let who = credential.who();
        let what = format!("asking the token service of {} for a token", self.host);
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{what}: unusable realm {realm:?}: {e}"),
            )
        })?;
        let request = match &credential.credential {
            Credential::IdentityToken { token, .. } => {
                let mut form: Vec<(String, String)> = vec![
                    ("grant_type".into(), "refresh_token".into()),
                    ("refresh_token".into(), token.expose().to_owned()),
                    ("client_id".into(), CLIENT_ID.into()),
                ];
                if let Some(s) = service {
                    form.push(("service".into(), s.to_owned()));
                }
                form.push(("scope".into(), scopes.join(" ")));
                Request::new(reqwest::Method::POST, url, CostClass::Check, &what)
                    .body(Body::Form(form))
            }
            other => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(s) = service {
                        query.append_pair("service", s);
                    }
                    for s in scopes {
                        query.append_pair("scope", s);
                    }
                    if let Credential::Basic { username, .. } = other {
                        query.append_pair("account", username);
                    }
                }
                if url.query() == Some("") {
                    url.set_query(None);
                }
                let request = Request::new(reqwest::Method::GET, url, CostClass::Check, &what);
                match other {
                    Credential::Basic { username, password } => {
                        request.given(Authorization::Basic {
                            username: username.clone(),
                            password: password.clone(),
                        })
                    }
                    _ => request,
                }
            }
        };
        let response = self.pipe.send(&request.bulk(), None, unread).await?.value;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            failure(
                transport_kind(&e),
                format!(
                    "reading the token answer of {}: {}",
                    self.host,
                    describe_http_error(&e, &self.host)
                ),
            )
        })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(failure(
                ErrorKind::Denied,
                format!(
                    "the token service of {} refused {who} ({}): check the credentials from {}",
                    self.host,
                    registry_answer(status, &body),
                    credential.origin
                ),
            ));
        }
        if !status.is_success() {
            return Err(failure(
                kind_of_status(status).or_permanent(),
                format!(
                    "the token service of {} answered {}",
                    self.host,
                    registry_answer(status, &body)
                ),
            ));
        }
        let not_a_token = || {
            failure(
                ErrorKind::Permanent,
                format!(
                    "the token service of {} answered something that is not a token ({} bytes)",
                    self.host,
                    body.len()
                ),
            )
        };
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| not_a_token())?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                failure(
                    ErrorKind::Permanent,
                    format!(
                        "the token service of {} answered without a token",
                        self.host
                    ),
                )
            })?;
        let lifetime = match answer.expires_in {
            Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0)),
            _ => DEFAULT_TOKEN_LIFETIME,
        };
        Ok((Secret::new(token), lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(Access::pull("a/b").scopes(), ["repository:a/b:pull"]);
        assert_eq!(Access::push("a/b").scopes(), ["repository:a/b:pull,push"]);
        assert_eq!(
            Access::mount("a/b", "c/d").scopes(),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
    }

    #[test]
    fn authorization_debug_hides_secrets() {
        let a = Authorization::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        let b = Authorization::Bearer(Secret::new("tok3n"));
        let shown = format!("{a:?} {b:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
    }
}
