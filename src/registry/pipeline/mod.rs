//! The one way a request leaves the registry client: [`Pipeline::send`]. Every request of
//! every resource (tags, manifests, catalog, referrers, blobs and their parts, upload
//! sessions, tokens, the first contact, the warm-up and the scheme probe, the listers) is a
//! [`Request`] handed to it. For each try it
//!
//! 1. asks the registry's [`Controller`] to admit it (concurrency today; pacing and quota
//!    later, which may refuse it without retry),
//! 2. puts the credentials on it (only when it goes to the registry's own host), counts it
//!    and sends it,
//! 3. tells the controller what came back ([`Controller::observe`]),
//! 4. renews the credentials once on a 401 from the registry,
//! 5. classifies the answer in one place ([`judge`]): take it, retry it (after its
//!    `Retry-After`), or fail with a permanent error,
//!
//! and retries through the one retry loop ([`crate::retry::drive`]) within the request's
//! budget.
//!
//! Below [`super::auth`] (which sends its token requests through it, without
//! credentials) and [`super::client`] (which lends it the registry's credentials through
//! [`Authorizing`]).

pub mod classify;
pub mod idle;
pub mod request;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

pub use self::request::{Auth, Body, Connection, Request, Tries};
use super::auth::credentials::RegistryCredential;
use super::auth::{Access, Authorization};
use super::control::quota::Account;
use super::control::throttle::Throttle;
use super::control::{Controller, Observed};
use super::error::{is_transient_status, registry_answer, retry_after, transport_kind};
use crate::model::failure::{ErrorKind, failure};
use crate::model::reference::Host;
use crate::retry::{RetryPolicy, Verdict, drive, next_try};
use crate::stats::Stats;

/// What the pipeline needs of one registry to send to it.
pub struct Pipeline {
    pub host: Host,
    /// `host[:port]` of the registry's API (Docker Hub's is not `docker.io`).
    pub api_host: String,
    /// `scheme://api-host/`.
    pub base: Url,
    /// Checks and small answers: HTTP/2 where offered.
    pub http: reqwest::Client,
    /// Blob bodies, the first contact, tokens: HTTP/1.1, a connection each.
    pub bulk: reqwest::Client,
    /// Blobs streamed to the registry: as `bulk`, without the client's read timeout, which
    /// would cap an upload's length (see [`idle`]); `read_timeout` is their idle limit.
    pub uploads: reqwest::Client,
    pub read_timeout: Duration,
    pub control: Controller,
    pub policy: RetryPolicy,
    pub stats: Arc<Stats>,
}

/// The registry's credentials, lent to the pipeline by the client that holds them.
pub trait Authorizing: Send + Sync {
    /// The credential for `access` (`given`, or the auth file's) and what to put on the
    /// request for it.
    fn authorize<'a>(
        &'a self,
        access: &'a Access,
        given: Option<&'a RegistryCredential>,
    ) -> BoxFuture<'a, anyhow::Result<(RegistryCredential, Option<Authorization>)>>;

    /// The registry answered 401 to `used`: drop it, read the challenge it sent, and say
    /// what to send instead.
    fn renew<'a>(
        &'a self,
        access: &'a Access,
        credential: &'a RegistryCredential,
        challenge: &'a HeaderMap,
        used: Option<&'a Authorization>,
    ) -> BoxFuture<'a, anyhow::Result<Option<Authorization>>>;
}

/// The answer a request came to (whatever its status), read by the request's `finish`.
pub struct Reply<T> {
    pub status: StatusCode,
    pub value: T,
    /// The credential it was sent with (anonymous when none).
    pub credential: RegistryCredential,
}

/// A request that got no usable answer: its error, and the transport error underneath when
/// that is what ended it (an upload tells a registry that stopped reading its body by it).
#[derive(Debug)]
pub struct Unsent {
    pub error: anyhow::Error,
    pub transport: Option<reqwest::Error>,
}

impl From<Unsent> for anyhow::Error {
    fn from(unsent: Unsent) -> anyhow::Error {
        unsent.error
    }
}

/// The credentials of one request across its tries.
struct Credentials<'a> {
    credential: &'a RegistryCredential,
    /// Whose pull quota it spends.
    account: Account,
    /// What goes on the request; replaced once after a 401.
    authorization: Mutex<Option<Authorization>>,
    /// The one renewal after a 401 was made.
    renewed: AtomicBool,
}

/// Why a try did not end with an answer to take.
enum Miss {
    /// A transient status (408, 429, 5xx): tried again, or handed back as the answer when
    /// no try is left.
    Answered {
        response: Box<reqwest::Response>,
        after: Option<Duration>,
    },
    /// A pace 429 (its body read to judge it, see [`Pipeline::throttled`]): tried again, or
    /// a transient failure with the registry's words when no try is left.
    Throttled {
        after: Option<Duration>,
        answer: String,
    },
    /// No answer, or its body cut short.
    Transport(reqwest::Error),
    /// Not sent: the controller refused it, or its credentials could not be had.
    Failed(anyhow::Error),
}

impl Miss {
    fn verdict(&self, request: &Request<'_>) -> Verdict {
        match self {
            Miss::Answered { after, .. } | Miss::Throttled { after, .. } => {
                Verdict::Retry { after: *after }
            }
            Miss::Transport(e) if classify::kind(e, request) == ErrorKind::Transient => {
                Verdict::Retry { after: None }
            }
            Miss::Transport(_) | Miss::Failed(_) => Verdict::Stop,
        }
    }
}

/// The one classification of what a try came to: an answer to take, or a [`Miss`] (a
/// transient status to retry after its `Retry-After`; a transport error, transient or not).
fn judge(sent: reqwest::Result<reqwest::Response>) -> Result<reqwest::Response, Miss> {
    match sent {
        Err(e) => Err(Miss::Transport(e)),
        Ok(response) if is_transient_status(response.status()) => Err(Miss::Answered {
            after: retry_after(response.status(), response.headers()),
            response: Box::new(response),
        }),
        Ok(response) => Ok(response),
    }
}

impl Pipeline {
    /// Sends `request` (see the module doc), then `finish`es the answer it takes (reads its
    /// body, or hands the response over for streaming; a `finish` that fails, a body cut
    /// short, is a try that failed). Returns that answer whatever its status: the caller
    /// judges a 404 or a 403.
    pub async fn send<T, F>(
        &self,
        request: &Request<'_>,
        authorizing: Option<&dyn Authorizing>,
        finish: impl Fn(reqwest::Response) -> F,
    ) -> Result<Reply<T>, Unsent>
    where
        F: Future<Output = reqwest::Result<T>>,
    {
        let failed = |error| Unsent {
            error,
            transport: None,
        };
        let (credential, authorization) = match (&request.auth, authorizing) {
            (Auth::Registry { access, credential }, Some(by)) => {
                by.authorize(access, *credential).await.map_err(failed)?
            }
            (Auth::Given(given), _) => (RegistryCredential::anonymous(), Some(given.clone())),
            _ => (RegistryCredential::anonymous(), None),
        };
        let own_budget;
        let budget = match request.tries {
            Tries::Within(budget) => budget,
            Tries::Fresh => {
                own_budget = self.policy.budget();
                &own_budget
            }
            Tries::Once => {
                own_budget = RetryPolicy::requests(1, Duration::ZERO).budget();
                &own_budget
            }
        };
        let host = request.counted_as.unwrap_or(self.host.as_str());
        let state = Credentials {
            credential: &credential,
            account: credential.account(),
            authorization: Mutex::new(authorization),
            renewed: AtomicBool::new(false),
        };
        let tried = drive(
            &self.policy,
            budget,
            &self.stats.request_retries,
            None,
            || self.try_once(request, authorizing, &state, &finish),
            |miss| miss.verdict(request),
            |retry, wait, miss| {
                let why = match miss {
                    Miss::Answered { response, .. } => response.status().to_string(),
                    Miss::Throttled { answer, .. } => answer.clone(),
                    Miss::Transport(e) => classify::describe(e, host, &self.api_host),
                    Miss::Failed(e) => format!("{e:#}"),
                };
                self.stats.retried(host);
                let said = format!("{}: {why}, {}", request.what, next_try(retry, budget, wait));
                tracing::info!(registry = host, attempt = retry + 1, "{said}");
                self.stats.waiting_on(said, wait);
            },
        )
        .await;
        let transport = |e: reqwest::Error| Unsent {
            error: failure(
                classify::kind(&e, request),
                format!(
                    "{}: {}",
                    request.what,
                    classify::describe(&e, host, &self.api_host)
                ),
            ),
            transport: Some(e),
        };
        let (status, value) = match tried {
            Ok(answer) => answer,
            // A transient status with no try left: the caller says what it means.
            Err(Miss::Answered { response, .. }) => {
                let status = response.status();
                (status, finish(*response).await.map_err(transport)?)
            }
            Err(Miss::Throttled { answer, .. }) => {
                return Err(failed(failure(
                    ErrorKind::Transient,
                    format!("{}: {answer}", request.what),
                )));
            }
            Err(Miss::Transport(e)) => return Err(transport(e)),
            Err(Miss::Failed(e)) => return Err(failed(e)),
        };
        Ok(Reply {
            status,
            value,
            credential,
        })
    }

    /// One try: admitted, authorized, counted, sent, observed, judged; sent again at once
    /// with renewed credentials after the registry's first 401.
    async fn try_once<T, F>(
        &self,
        request: &Request<'_>,
        authorizing: Option<&dyn Authorizing>,
        state: &Credentials<'_>,
        finish: &impl Fn(reqwest::Response) -> F,
    ) -> Result<(StatusCode, T), Miss>
    where
        F: Future<Output = reqwest::Result<T>>,
    {
        let host = request.counted_as.unwrap_or(self.host.as_str());
        loop {
            let admission = self
                .control
                .admit(request.class, &state.account)
                .await
                .map_err(|refused| {
                    Miss::Failed(failure(
                        refused.kind,
                        format!("{}: {}", request.what, refused.message),
                    ))
                })?;
            let authorization = state.authorization.lock().ok().and_then(|a| a.clone());
            let built = self.build(request, authorization.as_ref())?;
            let sent_at = self.stats.request(host);
            let Some(sent) = self.sent(request, built).await else {
                self.control.observe(
                    request.class,
                    &state.account,
                    &Observed {
                        status: None,
                        headers: None,
                        elapsed: sent_at.elapsed(),
                        failed: Some(ErrorKind::Transient),
                        uploaded: true,
                    },
                );
                return Err(Miss::Failed(failure(
                    ErrorKind::Transient,
                    format!(
                        "{}: {} took no byte and gave no answer for {} (--read-timeout)",
                        request.what,
                        self.host,
                        crate::duration::human(self.read_timeout)
                    ),
                )));
            };
            if let Ok(response) = &sent {
                self.stats
                    .answered(host, response.status().as_u16(), sent_at);
            }
            self.control.observe(
                request.class,
                &state.account,
                &Observed {
                    status: sent.as_ref().ok().map(|r| r.status()),
                    headers: sent.as_ref().ok().map(|r| r.headers()),
                    elapsed: sent_at.elapsed(),
                    failed: sent.as_ref().err().map(transport_kind),
                    uploaded: carries_bytes(&request.body),
                },
            );
            // What the transfers' limits have reached, for the report and the metrics.
            let (reads, writes) = self.control.transfers().reached();
            self.stats.concurrency(host, reads, writes);
            // A 401 from the host a redirect led to (a CDN) is not the registry's: its
            // token is fine, and the caller judges that answer.
            if let (Ok(response), Auth::Registry { access, .. }, Some(by)) =
                (&sent, &request.auth, authorizing)
                && response.status() == StatusCode::UNAUTHORIZED
                && !matches!(request.tries, Tries::Once)
                && self.is_ours(response.url())
                && !state.renewed.swap(true, Ordering::Relaxed)
            {
                drop(admission);
                tracing::debug!(registry = %self.host, path = %access.path, action = access.action(), "401 from the registry; asking for a new token");
                let renewed = by
                    .renew(
                        access,
                        state.credential,
                        response.headers(),
                        authorization.as_ref(),
                    )
                    .await
                    .map_err(Miss::Failed)?;
                if let Ok(mut a) = state.authorization.lock() {
                    *a = renewed;
                }
                continue;
            }
            let sent = match sent {
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(self.throttled(request, &state.account, response).await);
                }
                other => other,
            };
            let response = judge(sent)?;
            let status = response.status();
            return match finish(response).await {
                Ok(value) => Ok((status, value)),
                Err(e) => Err(Miss::Transport(e)),
            };
        }
    }

    /// `built` sent; `None` when it is a streamed upload the registry kept idle for the
    /// read timeout (see [`idle`]).
    async fn sent(
        &self,
        request: &Request<'_>,
        built: reqwest::RequestBuilder,
    ) -> Option<reqwest::Result<reqwest::Response>> {
        let Some(activity) = &request.activity else {
            return Some(built.send().await);
        };
        activity.started();
        tokio::select! {
            sent = built.send() => Some(sent),
            () = activity.idle_for(self.read_timeout) => None,
        }
    }

    /// A 429, judged with its body (see [`super::control::throttle`]): a spent pull quota
    /// fails the request at once, as deferred, never retried — asking again is wasted, and
    /// is how an address gets blocked; a pace exceeded is retried after its `Retry-After`
    /// like any transient status (its body read: it fails as transient when no try is left).
    async fn throttled(
        &self,
        request: &Request<'_>,
        account: &Account,
        response: reqwest::Response,
    ) -> Miss {
        let status = response.status();
        let headers = response.headers().clone();
        let after = retry_after(status, &headers);
        // An error body is small; one that cannot be read says nothing either way.
        let body = response.bytes().await.unwrap_or_default();
        let rationing = self.control.rationing();
        let verdict =
            rationing.throttled(account, &headers, after, &String::from_utf8_lossy(&body));
        if verdict == Throttle::Quota {
            tracing::warn!(registry = %self.host, "pull quota spent: no more manifest GETs this run; what is left is deferred");
            return Miss::Failed(failure(
                ErrorKind::Deferred,
                format!("{}: {}", request.what, rationing.deferral(account)),
            ));
        }
        Miss::Throttled {
            after,
            answer: registry_answer(status, &body),
        }
    }

    /// The request as reqwest sends it: the registry's credentials only when it goes to the
    /// registry itself (a `Location` or `Link` may name a CDN or a storage bucket, which
    /// must not see them).
    fn build(
        &self,
        request: &Request<'_>,
        authorization: Option<&Authorization>,
    ) -> Result<reqwest::RequestBuilder, Miss> {
        let client = match request.connection {
            _ if request.activity.is_some() => &self.uploads,
            Connection::Shared => &self.http,
            Connection::Bulk => &self.bulk,
        };
        let mut built = client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(timeout) = request.timeout {
            built = built.timeout(timeout);
        }
        built = match &request.body {
            Body::Empty => built,
            Body::Bytes(bytes) => built.body(bytes.clone()),
            Body::Form(pairs) => built.form(pairs),
            Body::Stream(once) => match once.lock().ok().and_then(|mut b| b.take()) {
                Some(body) => built.body(body),
                None => {
                    return Err(Miss::Failed(failure(
                        ErrorKind::Permanent,
                        format!("{}: its body was sent already", request.what),
                    )));
                }
            },
        };
        Ok(match (authorization, &request.auth) {
            (Some(a), Auth::Given(_)) => a.apply(built),
            (Some(a), Auth::Registry { .. }) if self.is_ours(&request.url) => a.apply(built),
            _ => built,
        })
    }

    /// Whether `url` is this registry's (not a CDN or storage host a redirect led to), on the
    /// scheme it was reached by: a `Location` that drops from HTTPS to HTTP on the same host
    /// would otherwise carry the token in clear text (to port 80, which `authority` cannot
    /// tell from 443).
    pub fn is_ours(&self, url: &Url) -> bool {
        same_registry(&self.base, url, &self.api_host)
    }
}

/// A `finish` that hands the response over unread (for streaming, or for a caller that
/// reads it itself).
pub async fn unread(response: reqwest::Response) -> reqwest::Result<reqwest::Response> {
    Ok(response)
}

/// Whether `url` names the registry at `base` (whose authority is `api_host`): the same
/// scheme and the same `host[:port]`.
fn same_registry(base: &Url, url: &Url, api_host: &str) -> bool {
    url.scheme() == base.scheme() && authority(url) == api_host
}

/// `host[:port]` of a URL, as registries are named.
pub fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// Whether a request carries bytes worth timing apart from its round trip: a blob's (a
/// stream, or a part of more than 64 KiB).
fn carries_bytes(body: &Body) -> bool {
    match body {
        Body::Stream(_) => true,
        Body::Bytes(bytes) => bytes.len() > 64 * 1024,
        Body::Empty | Body::Form(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_with_their_registry_authority() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            authority(&url("http://127.0.0.1:5000/v2/a/blobs/uploads/x?y=1")),
            "127.0.0.1:5000"
        );
        assert_eq!(authority(&url("https://quay.io/v2/")), "quay.io");
        assert_eq!(authority(&url("https://quay.io:443/v2/")), "quay.io");
        assert_ne!(
            authority(&url("https://bucket.s3.amazonaws.com/blob")),
            "quay.io"
        );
        // A redirect from HTTPS to plain HTTP on the same host is not the registry.
        let base = url("https://quay.io/");
        assert!(same_registry(
            &base,
            &url("https://quay.io/v2/a"),
            "quay.io"
        ));
        assert!(!same_registry(
            &base,
            &url("http://quay.io/v2/a"),
            "quay.io"
        ));
        assert!(!same_registry(
            &base,
            &url("https://cdn.quay.io/v2/a"),
            "quay.io"
        ));
    }
}
