//! One registry's client: its HTTP connection, its credentials and tokens, its
//! [`Controller`] (see [`super::control`]), and the one `send` every request goes through ([`RegistryClient::exchange`]):
//! it authorizes (credentials only for the registry's own host), re-authenticates once on a
//! 401, and retries transient failures within a [`Budget`]. The resources on top —
//! [`super::tags`], [`super::manifests`], [`super::blobs`] — only say what to ask and read
//! the answer.
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
use reqwest::{StatusCode, Url};

use super::auth::credentials::{Credential, Credentials, RegistryCredential};
use super::auth::{Access, Authenticator, Authorization};
use super::control::{Controller, CostClass, Observed};
use super::error::{describe_http_error, kind_of_status, registry_answer};
use super::send::{pause_request, retry_for_status, retry_or_fail};
use super::tls::{ClientSettings, http_client};
use super::{NetworkOptions, RegistryOptions};
use crate::model::failure::{ErrorKind, failure};
use crate::model::reference::{Host, Repository};
use crate::retry::{Budget, RetryPolicy};
use crate::stats::Stats;

/// A connection to one registry.
pub struct RegistryClient {
    pub(super) host: Host,
    /// `scheme://api-host/`: Docker Hub's API host is not `docker.io`.
    base: Url,
    api_host: String,
    /// Every request but blob bodies: HTTP/2 where the registry offers it, so that many
    /// checks share one connection.
    pub(super) http: reqwest::Client,
    /// Blob downloads and uploads, over HTTP/1.1, a connection each: multiplexed on one
    /// HTTP/2 connection they would share its flow-control window (1 MiB on Go's servers,
    /// distribution's among them), which caps a cold copy at about 1 MiB per round trip.
    pub(super) bulk: reqwest::Client,
    pub(super) credentials: Credentials,
    auth: Authenticator,
    /// What decides when a request may leave and learns from its answer (limits on
    /// requests in flight; pacing and quota to come).
    pub(super) control: Controller,
    pub(super) policy: RetryPolicy,
    pub(super) stats: Arc<Stats>,
    /// How this registry takes blob uploads, learned during the run.
    pub(super) uploads: UploadMethods,
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
        let settings = |http1_only| ClientSettings {
            host: host.as_str(),
            api_host: &api_host,
            insecure,
            connect_timeout: network.connect_timeout,
            read_timeout: network.read_timeout,
            http1_only,
        };
        let built = |http1_only| {
            http_client(&settings(http1_only))
                .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))
        };
        let http = built(false)?;
        let bulk = built(true)?;
        let scheme = if insecure {
            probe_scheme(&http, &api_host, &stats, host.as_str()).await
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{host}: not usable as a URL: {e}"),
            )
        })?;
        let policy = network.request_policy();
        // The first contact (`GET /v2/`) and token requests over HTTP/1.1: a registry that
        // refuses our TLS (a client certificate it wants) says so in an alert that HTTP/1.1
        // reads back, where an HTTP/2 connection is just closed and the reason lost.
        let auth = Authenticator::new(
            host.as_str(),
            base.clone(),
            bulk.clone(),
            policy.clone(),
            stats.clone(),
        );
        Ok(Self {
            host: host.clone(),
            base,
            api_host,
            http,
            bulk,
            credentials,
            auth,
            control: Controller::new(
                host.as_str(),
                options.transfers,
                options.max_checks_per_registry,
            ),
            policy,
            stats,
            uploads: UploadMethods::default(),
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
                    let sent = self.stats.request(self.host.as_str());
                    if let Ok(answer) = self.http.get(self.url_at(&["v2", ""])).send().await {
                        self.stats
                            .answered(self.host.as_str(), answer.status().as_u16(), sent);
                    }
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

    /// `scheme://api-host/v2/<repository>/<rest…>`; an empty last part makes a trailing
    /// slash (`blobs/uploads/`).
    pub(super) fn url(&self, repository: &Repository, rest: &[&str]) -> Url {
        let mut url = self.base.clone();
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
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(parts);
        }
        url
    }

    /// A `Location` or `Link` target, relative to the registry or absolute.
    pub(super) fn absolute(&self, target: &str) -> Result<Url> {
        self.base.join(target).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{} sent an unusable location: {e}", self.host),
            )
        })
    }

    fn credential(&self, repository: &str) -> Result<RegistryCredential> {
        self.credentials
            .for_repository(self.host.as_str(), repository)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))
    }

    pub(super) async fn authorization(
        &self,
        credential: &RegistryCredential,
        access: &Access,
    ) -> Result<Option<Authorization>> {
        self.auth.authorization(credential, access).await
    }

    /// Whether `url` is this registry's (not a CDN or storage host a redirect led to), on the
    /// scheme it was reached by: a `Location` that drops from HTTPS to HTTP on the same host
    /// would otherwise carry the token in clear text (to port 80, which `authority` cannot
    /// tell from 443).
    pub(super) fn is_ours(&self, url: &Url) -> bool {
        same_registry(&self.base, url, &self.api_host)
    }

    /// Credentials go only to this registry: a `Location` or `Link` it sends may name another
    /// host (a CDN, a storage bucket), which must not see them.
    pub(super) fn authorize_if_ours(
        &self,
        request: reqwest::RequestBuilder,
        authorization: &Authorization,
    ) -> reqwest::RequestBuilder {
        let (client, built) = request.build_split();
        match built {
            Ok(req) if self.is_ours(req.url()) => {
                authorization.apply(reqwest::RequestBuilder::from_parts(client, req))
            }
            Ok(req) => reqwest::RequestBuilder::from_parts(client, req),
            Err(e) => {
                // Not a request at all (a registry's unusable Location): sending it fails,
                // without credentials.
                tracing::debug!(registry = %self.host, error = %e, "unusable request");
                client.get("")
            }
        }
    }

    /// Sends a request built by `build` with the credentials `access` needs, then `finish`es
    /// the answer (reads its body, or hands the response over for streaming).
    ///
    /// * A 401 drops the token (and re-reads the challenge) and sends once more with a new
    ///   one; that does not count as a retry.
    /// * Transport failures (refused, reset, timeouts) and 408/429/5xx answers are tried
    ///   again while `budget` allows, after the policy's wait or the `Retry-After` of a
    ///   429/503. So is a `finish` that fails (a body cut short).
    ///
    /// Returns the last answer whatever its status, with the credential used.
    pub(super) async fn exchange<T>(
        &self,
        access: &Access,
        what: &str,
        class: CostClass,
        budget: &Budget,
        build: impl Fn() -> reqwest::RequestBuilder,
        finish: impl AsyncFn(reqwest::Response) -> std::result::Result<T, reqwest::Error>,
    ) -> Result<(StatusCode, T, RegistryCredential)> {
        let credential = self.credential(&access.path)?;
        let mut authorization = self.authorization(&credential, access).await?;
        let mut reauthorized = false;
        loop {
            let admission =
                self.control.admit(class).await.map_err(|refused| {
                    failure(refused.kind, format!("{what}: {}", refused.message))
                })?;
            let sent_at = self.stats.request(self.host.as_str());
            let mut request = build();
            if let Some(a) = &authorization {
                request = self.authorize_if_ours(request, a);
            }
            let sent = request.send().await;
            if let Ok(response) = &sent {
                self.stats
                    .answered(self.host.as_str(), response.status().as_u16(), sent_at);
            }
            self.control.observe(
                class,
                &Observed {
                    status: sent.as_ref().ok().map(|r| r.status()),
                    headers: sent.as_ref().ok().map(|r| r.headers()),
                    elapsed: sent_at.elapsed(),
                    failed: sent.as_ref().err().map(super::error::transport_kind),
                },
            );
            let (reads, writes) = self.control.transfers().reached();
            self.stats.concurrency(self.host.as_str(), reads, writes);
            let retry = match sent {
                Err(e) => {
                    let (retry, why) = retry_or_fail(&e, budget, self.host.as_str(), what)?;
                    (retry, None, why)
                }
                // A 401 from the host a redirect led to (a CDN) is not the registry's: its
                // token is fine, and the caller judges that answer.
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED
                        && !reauthorized
                        && self.is_ours(response.url()) =>
                {
                    reauthorized = true;
                    drop(admission);
                    tracing::debug!(registry = %self.host, path = %access.path, action = access.action(), "401 from the registry; asking for a new token");
                    self.auth.learn(response.headers()).await;
                    self.auth
                        .invalidate(&credential, access, authorization.as_ref())
                        .await;
                    authorization = self.authorization(&credential, access).await?;
                    continue;
                }
                Ok(response) => match retry_for_status(&response, budget) {
                    Some(retry) => retry,
                    None => {
                        let status = response.status();
                        match finish(response).await {
                            Ok(v) => return Ok((status, v, credential)),
                            Err(e) => {
                                let (retry, why) =
                                    retry_or_fail(&e, budget, self.host.as_str(), what)?;
                                (retry, None, why)
                            }
                        }
                    }
                },
            };
            pause_request(&self.policy, &self.stats, self.host.as_str(), what, retry).await;
        }
    }

    /// [`Self::exchange`] reading the whole body (small answers: manifests, tag lists,
    /// HEADs, upload sessions), with a budget of its own.
    pub(super) async fn fetch(
        &self,
        access: &Access,
        what: &str,
        class: CostClass,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        self.fetch_within(access, what, class, &self.policy.budget(), build)
            .await
    }

    /// [`Self::fetch`] taking its retries from the budget of a larger operation.
    pub(super) async fn fetch_within(
        &self,
        access: &Access,
        what: &str,
        class: CostClass,
        budget: &Budget,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        let (status, (headers, body), credential) = self
            .exchange(
                access,
                what,
                class,
                budget,
                build,
                async |r: reqwest::Response| {
                    let headers = r.headers().clone();
                    // An exact-size copy: the response's bytes may be a slice of a connection's
                    // 8 KiB read buffer, which a cached manifest would otherwise keep alive.
                    r.bytes()
                        .await
                        .map(|b| (headers, Bytes::copy_from_slice(&b)))
                },
            )
            .await?;
        Ok(Answer {
            status,
            headers,
            body,
            credential,
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
        }
        failure(ErrorKind::Denied, message)
    }
}

/// `host[:port]` of a URL, as registries are named.
/// Whether `url` names the registry at `base` (whose authority is `api_host`): the same
/// scheme and the same `host[:port]`.
fn same_registry(base: &Url, url: &Url, api_host: &str) -> bool {
    url.scheme() == base.scheme() && authority(url) == api_host
}

pub(super) fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// With `--insecure`, a registry may speak plain HTTP: try TLS (certificates unchecked) and
/// fall back to HTTP when TLS fails and plain HTTP answers, as oc does. A registry that is
/// slow, down or unreachable stays on HTTPS.
async fn probe_scheme(
    http: &reqwest::Client,
    api_host: &str,
    stats: &Stats,
    registry: &str,
) -> &'static str {
    stats.request(registry);
    match http
        .get(format!("https://{api_host}/v2/"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(_) => "https",
        Err(tls_error) => {
            // Plain HTTP only when the registry answers it: a registry that is slow or down
            // stays on HTTPS.
            stats.request(registry);
            let plain = http
                .get(format!("http://{api_host}/v2/"))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if plain.is_ok() {
                tracing::debug!(registry = api_host, "no TLS spoken here; using plain HTTP");
                "http"
            } else {
                tracing::debug!(registry = api_host, error = %describe_http_error(&tls_error, api_host), "TLS probe failed; staying on HTTPS");
                "https"
            }
        }
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
