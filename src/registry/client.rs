//! One registry's client: its credentials and tokens, and the [`Pipeline`] every request
//! goes through (see [`super::pipeline`]), which holds the registry's connections and its
//! [`super::control::Controller`]. The resources on top — [`super::tags`],
//! [`super::manifests`], [`super::blobs`] — only describe what to ask and read the answer.
//!
//! The handshake, in order: (1) `GET /v2/` once, without credentials, tells how the registry
//! wants to be asked ([`super::auth::challenge`]); (2) the credential for the repository is
//! chosen from the auth file; (3) a token is asked for exactly the scopes the request needs,
//! and cached; (4) the request is sent with it; (5) a 401 drops the token and goes back to
//! (3), once; (6) a transient failure waits and goes back to (4), while the budget allows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

use super::auth::credentials::{Credential, Credentials, RegistryCredential};
use super::auth::{Access, Authenticator, Authorization};
use super::blobs::ranged::RangeOptions;
use super::control::{Controller, CostClass};
use super::error::{kind_of_status, registry_answer};
use super::pipeline::{Authorizing, Pipeline, Reply, Request, Unsent, unread};
use super::tls::{ClientSettings, http_client};
use super::{NetworkOptions, RegistryOptions};
use crate::model::failure::{ErrorKind, failure};
use crate::model::reference::{Host, Repository};
use crate::stats::Stats;

/// A connection to one registry.
pub struct RegistryClient {
    pub(super) host: Host,
    /// The way out for every request, with the registry's connections and controller.
    pub(super) pipe: Arc<Pipeline>,
    pub(super) credentials: Credentials,
    auth: Authenticator,
    /// How this registry takes blob uploads, learned during the run.
    pub(super) uploads: UploadMethods,
    /// How big blobs are fetched in ranges ([`super::blobs::ranged`]).
    pub(super) ranges: RangeOptions,
    /// The registry answered a range with the whole blob: big blobs come as one stream.
    pub(super) ranges_ignored: std::sync::atomic::AtomicBool,
    /// Set once [`Self::warm_up`] has run.
    warmed: tokio::sync::OnceCell<()>,
    /// The HTTP/2-capable connection was opened already, by the scheme probe of an
    /// `--insecure` registry.
    probed: bool,
}

/// What a registry has shown of blob uploads in this run. Registries differ: most take a
/// blob in one `PUT` with a body (one round trip less), some only streamed `PATCH`es closed
/// by an empty `PUT`. The first refusal of a body on `PUT`, answered by a streamed upload
/// that worked, switches the registry to `PATCH` for the rest of the run.
#[derive(Debug, Default)]
pub(super) struct UploadMethods {
    /// A `PUT` with a body has committed a blob here: a later 5xx or broken connection on
    /// one is taken as a fault (retried), not as a refusal of the method.
    pub monolithic_worked: std::sync::atomic::AtomicBool,
    /// Blobs go as `PATCH` + `PUT` here.
    pub streamed: std::sync::atomic::AtomicBool,
}

/// A whole (small) answer.
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    pub credential: RegistryCredential,
}

impl RegistryClient {
    pub(super) async fn connect(
        host: &Host,
        credentials: Credentials,
        options: &RegistryOptions,
        network: &NetworkOptions,
        stats: Arc<Stats>,
    ) -> Result<Self> {
        let api_host = host.api_host().to_owned();
        let insecure = options.insecure_for(host);
        let settings = |http1_only, read_timeout| ClientSettings {
            host: host.as_str(),
            api_host: &api_host,
            insecure,
            connect_timeout: network.connect_timeout,
            read_timeout,
            http1_only,
        };
        let with_read_timeout = |http1_only| settings(http1_only, Some(network.read_timeout));
        let built = |settings: ClientSettings<'_>| {
            http_client(&settings).map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))
        };
        let base = |scheme: &str| {
            Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!("{host}: not usable as a URL: {e}"),
                )
            })
        };
        let mut pipe = Pipeline {
            host: host.clone(),
            api_host: api_host.clone(),
            base: base("https")?,
            http: built(with_read_timeout(false))?,
            // The first contact (`GET /v2/`) and token requests over HTTP/1.1 too: a
            // registry that refuses our TLS (a client certificate it wants) says so in an
            // alert that HTTP/1.1 reads back, where an HTTP/2 connection is just closed and
            // the reason lost.
            bulk: built(with_read_timeout(true))?,
            uploads: built(settings(true, None))?,
            read_timeout: network.read_timeout,
            control: {
                let controller = Controller::new(
                    host.as_str(),
                    options.transfers,
                    options.max_checks_per_registry,
                );
                match options.quota_share {
                    Some(share) => controller.shared(share),
                    None => controller,
                }
            },
            policy: network.request_policy(),
            stats,
        };
        if insecure {
            pipe.base = base(probe_scheme(&pipe).await)?;
        }
        let pipe = Arc::new(pipe);
        let auth = Authenticator::new(host.as_str(), pipe.clone());
        Ok(Self {
            host: host.clone(),
            pipe,
            credentials,
            auth,
            uploads: UploadMethods::default(),
            ranges: options.ranges,
            ranges_ignored: std::sync::atomic::AtomicBool::new(false),
            warmed: tokio::sync::OnceCell::new(),
            probed: insecure,
        })
    }

    /// Opens both connections at once, before the first request needs them (once; best
    /// effort): the HTTP/1.1 one of the first contact, which learns how the registry wants to
    /// be asked, and the HTTP/2 one checks and lists share, each with its own TLS handshake.
    /// Opened one after the other, as the first requests would, they cost a round trip more
    /// before the first answer. The HTTP/2 connection is opened by a `GET /v2/` whose answer
    /// is not read: a failure there shows again, explained, on the first contact.
    pub async fn warm_up(&self) {
        self.warmed
            .get_or_init(|| async {
                let open_http2 = async {
                    if self.probed {
                        return;
                    }
                    let what = format!("opening a connection to {}", self.host);
                    let request = Request::new(Method::GET, self.url_at(&["v2", ""]), CostClass::Check, &what).once();
                    let _ = self.pipe.send(&request, None, unread).await;
                };
                let (_, challenge) = futures_util::future::join(open_http2, self.auth.challenge()).await;
                if let Err(e) = challenge {
                    tracing::debug!(registry = %self.host, error = %format!("{e:#}"), "first contact failed; the first request will say why");
                }
            })
            .await;
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The registry's controller.
    pub fn control(&self) -> &Controller {
        &self.pipe.control
    }

    /// `scheme://api-host/v2/<repository>/<rest…>`; an empty last part makes a trailing
    /// slash (`blobs/uploads/`).
    pub(super) fn url(&self, repository: &Repository, rest: &[&str]) -> Url {
        let mut url = self.pipe.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .push("v2")
                .extend(repository.path().split('/'))
                .extend(rest);
        }
        url
    }

    /// `scheme://api-host/<parts…>`, for endpoints outside a repository (`/v2/_catalog`).
    pub(super) fn url_at(&self, parts: &[&str]) -> Url {
        let mut url = self.pipe.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(parts);
        }
        url
    }

    /// A `Location` or `Link` target, relative to the registry or absolute.
    pub(super) fn absolute(&self, target: &str) -> Result<Url> {
        self.pipe.base.join(target).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{} sent an unusable location: {e}", self.host),
            )
        })
    }

    pub(super) fn credential(&self, repository: &str) -> Result<RegistryCredential> {
        self.credentials
            .for_repository(self.host.as_str(), repository)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))
    }

    /// Whether `url` is this registry's (see [`Pipeline::is_ours`]).
    pub(super) fn is_ours(&self, url: &Url) -> bool {
        self.pipe.is_ours(url)
    }

    /// Sends `request` through the pipeline with this registry's credentials, then
    /// `finish`es the answer (see [`Pipeline::send`]).
    pub(super) async fn send<T, F>(
        &self,
        request: &Request<'_>,
        finish: impl Fn(reqwest::Response) -> F,
    ) -> Result<Reply<T>, Unsent>
    where
        F: std::future::Future<Output = reqwest::Result<T>>,
    {
        self.pipe.send(request, Some(self), finish).await
    }

    /// [`Self::send`] reading the whole body (small answers: manifests, tag lists, HEADs,
    /// upload sessions).
    pub(super) async fn fetch(&self, request: &Request<'_>) -> Result<Answer> {
        let reply = self
            .send(request, |r: reqwest::Response| async move {
                let headers = r.headers().clone();
                // An exact-size copy: the response's bytes may be a slice of a connection's
                // 8 KiB read buffer, which a cached manifest would otherwise keep alive.
                r.bytes()
                    .await
                    .map(|b| (headers, Bytes::copy_from_slice(&b)))
            })
            .await?;
        let (headers, body) = reply.value;
        Ok(Answer {
            status: reply.status,
            headers,
            body,
            credential: reply.credential,
        })
    }

    /// The error for a failed answer: [`Self::denied`] for 401/403, else the registry's own
    /// words with the kind of the status.
    pub(super) fn refused(&self, what: &str, access: &Access, answer: &Answer) -> anyhow::Error {
        self.refused_with(
            what,
            access,
            answer.status,
            &answer.body,
            &answer.credential,
        )
    }

    /// [`Self::refused`] for an answer read as a stream (a blob's).
    pub(super) fn refused_with(
        &self,
        what: &str,
        access: &Access,
        status: StatusCode,
        body: &[u8],
        credential: &RegistryCredential,
    ) -> anyhow::Error {
        let text = registry_answer(status, body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.denied(access, credential, status, &text)
        } else {
            failure(kind_of_status(status), format!("{what}: {text}"))
        }
    }

    /// "no push permission to quay.io/org/repo for user robot+x (403 Forbidden: DENIED: …)"
    fn denied(
        &self,
        access: &Access,
        credential: &RegistryCredential,
        status: StatusCode,
        answer: &str,
    ) -> anyhow::Error {
        let mut message = format!(
            "no {} permission to {}/{} for {}",
            access.action(),
            self.host,
            access.path,
            credential.who()
        );
        if let Some(from) = &access.mount_from {
            message.push_str(&format!(" (with pull on {}/{from})", self.host));
        }
        message.push_str(&format!(" ({answer})"));
        if status == StatusCode::UNAUTHORIZED
            && matches!(credential.credential, Credential::Anonymous)
        {
            match self.credentials.path() {
                Some(p) => message.push_str(&format!(
                    "; {} has no credentials for {}",
                    p.display(),
                    self.host
                )),
                None => message.push_str(
                    "; no registry config was found (-a/--registry-config, REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json)",
                ),
            }
        } else if status == StatusCode::UNAUTHORIZED {
            // A 401 to credentials that were sent: most often a wrong or expired password.
            message.push_str(&format!(
                "; {} did not accept these credentials: check the password or token in {}, or the user's permissions there",
                self.host, credential.origin
            ));
        }
        failure(ErrorKind::Denied, message)
    }
}

impl Authorizing for RegistryClient {
    fn authorize<'a>(
        &'a self,
        access: &'a Access,
        given: Option<&'a RegistryCredential>,
    ) -> BoxFuture<'a, Result<(RegistryCredential, Option<Authorization>)>> {
        async move {
            let credential = match given {
                Some(c) => c.clone(),
                None => self.credential(&access.path)?,
            };
            let authorization = self.auth.authorization(&credential, access).await?;
            Ok((credential, authorization))
        }
        .boxed()
    }

    fn renew<'a>(
        &'a self,
        access: &'a Access,
        credential: &'a RegistryCredential,
        challenge: &'a HeaderMap,
        used: Option<&'a Authorization>,
    ) -> BoxFuture<'a, Result<Option<Authorization>>> {
        async move {
            self.auth.learn(challenge).await;
            self.auth.invalidate(credential, access, used).await;
            self.auth.authorization(credential, access).await
        }
        .boxed()
    }
}

/// With `--insecure`, a registry may speak plain HTTP: try TLS (certificates unchecked) and
/// fall back to HTTP when TLS fails and plain HTTP answers, as oc does. A registry that is
/// slow, down or unreachable stays on HTTPS.
async fn probe_scheme(pipe: &Pipeline) -> &'static str {
    let api_host = pipe.api_host.as_str();
    let probe = async |scheme: &str| {
        let what = format!("probing {scheme} at {api_host}");
        let url = Url::parse(&format!("{scheme}://{api_host}/v2/")).map_err(|e| Unsent {
            error: anyhow::anyhow!("{what}: {e}"),
            transport: None,
        })?;
        let request = Request::new(Method::GET, url, CostClass::Check, &what)
            .once()
            .timeout(Duration::from_secs(10));
        pipe.send(&request, None, unread).await.map(|_| ())
    };
    let Err(tls_error) = probe("https").await else {
        return "https";
    };
    // Plain HTTP only when the registry answers it: a registry that is slow or down stays on
    // HTTPS.
    if probe("http").await.is_ok() {
        tracing::debug!(registry = api_host, "no TLS spoken here; using plain HTTP");
        "http"
    } else {
        tracing::debug!(registry = api_host, error = %format!("{:#}", tls_error.error), "TLS probe failed; staying on HTTPS");
        "https"
    }
}
