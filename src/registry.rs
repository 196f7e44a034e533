//! All registry I/O, over reqwest: tag lists that follow `Link`, manifests with their exact
//! bytes in one GET, a one-request manifest HEAD that tells "absent" apart, blob HEADs,
//! blob downloads that resume with `Range`, cross-repository mounts, monolithic blob uploads
//! hashed as they pass, manifest uploads. (oci-client used to make some of these; it drops
//! response headers, so it could not honour `Retry-After` nor resume a download.)
//!
//! Failures carry an [`ErrorKind`] ([`RegistryError`] in the `anyhow` chain): transient ones
//! (refused or reset connections, timeouts, 408/429/5xx) are retried inside the request with
//! exponential backoff and jitter, honouring `Retry-After`, within [`NetworkOptions`];
//! the others fail at once with the registry's own words.
//!
//! Authentication is ours ([`crate::auth`]): credentials are chosen per repository (an auth
//! file may hold different robots for different organisations of one registry), tokens are
//! scoped per repository and action (plus the source's pull for a mount), cached, refreshed
//! before they expire, and fetched anew once when the registry answers 401. A registry that
//! asks for no authorization gets none, and is not asked `GET /v2/` again per request.
//!
//! TLS: the system's roots, plus CA certificates from `/etc/containers/certs.d/HOST[:PORT]/`
//! and `/etc/docker/certs.d/HOST[:PORT]/` (`*.crt`), as docker and podman read them; a
//! client certificate there (`NAME.cert` with its key `NAME.key`) is presented to registries
//! that ask for one (mutual TLS). The environment variable `IMAGE_MIRROR_CERTS_DIRS` (colon-separated) replaces those two base
//! directories; it exists for tests and unusual setups.
//!
//! One [`RegistryClient`] per registry host, which also holds the per-registry request limit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::Reference as OciReference;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LINK, LOCATION, RANGE,
    RETRY_AFTER,
};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use crate::auth::{Access, Authenticator, Authorization};
use crate::credentials::{Credentials, RegistryCredential};
use crate::manifest::{MANIFEST_MEDIA_TYPES, Manifest};
#[cfg(test)]
use crate::reference::Algorithm;
use crate::reference::{Digest, Hasher};

const TAGS_PAGE_SIZE: usize = 1000;
/// Where docker and podman users keep per-registry CA certificates.
const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];
/// Test-only / advanced: colon-separated base directories replacing [`DEFAULT_CERTS_DIRS`].
pub const CERTS_DIRS_ENV: &str = "IMAGE_MIRROR_CERTS_DIRS";
/// The wait before the first retry of a request; doubled for each further one (then capped
/// by [`NetworkOptions::max_retry_wait`] and jittered).
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);

/// What kind of failure an error is. Carried by [`RegistryError`] in the chain of every error
/// this module returns; it decides what is retried (only [`ErrorKind::Transient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth another try: connection refused or reset, timeouts, 5xx, 429, a body cut short.
    Transient,
    /// Refused for good by the registry (400 `MANIFEST_INVALID`, `BLOB_UNKNOWN`, 405, …), or
    /// something no retry can change (an unsupported manifest, a bad TLS certificate).
    Permanent,
    /// 404: the registry does not have it.
    NotFound,
    /// 401/403 after re-authentication, or credentials refused by the token service.
    Denied,
    /// Bytes that do not hash to their digest, or more bytes than the descriptor gives.
    Corrupt,
}

impl ErrorKind {
    /// The kind of a failed answer with this status.
    pub fn of_status(status: StatusCode) -> ErrorKind {
        match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Denied,
            s if is_transient_status(s) => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }

    /// For answers where "not found" says the endpoint is wrong, not that an image is missing.
    pub fn or_permanent(self) -> ErrorKind {
        if self == ErrorKind::NotFound {
            ErrorKind::Permanent
        } else {
            self
        }
    }
}

/// An error with its [`ErrorKind`]; the message is the whole text shown to the operator.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    pub kind: ErrorKind,
    pub message: String,
}

/// An `anyhow::Error` carrying `kind`.
/// Makes ring the process's TLS crypto provider, once, before any client is built: reqwest
/// is built without a provider of its own. ring rather than aws-lc-rs, because aws-lc seeds
/// its random generator from CPU-jitter entropy, ~25 ms of CPU at every start, a tenth of
/// an unchanged hourly run.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already (a test harness): that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn failure(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(RegistryError {
        kind,
        message: message.into(),
    })
}

/// The kind of an error from this module (the first [`RegistryError`] in its chain); `None`
/// for errors that carry none (treated as permanent by the retry logic).
pub fn error_kind(e: &anyhow::Error) -> Option<ErrorKind> {
    e.chain()
        .find_map(|c| c.downcast_ref::<RegistryError>())
        .map(|r| r.kind)
}

/// 408, 429 and 5xx: the registry may answer differently a moment later.
fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The kind of a transport error: a malformed request or a TLS/protocol failure (an
/// `InvalidData` I/O error underneath, e.g. an untrusted certificate) is permanent; refused
/// or reset connections, timeouts and bodies cut short are transient.
pub fn transport_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_builder() || e.is_redirect() {
        return ErrorKind::Permanent;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(kind) = io_kind(s) {
            return kind;
        }
        source = s.source();
    }
    ErrorKind::Transient
}

/// What an I/O error (or the TLS error inside it) says about trying again, if anything.
/// `io::Error::source` skips the error it wraps, so wrapped errors are unwrapped here.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_kind(tls));
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    if let Some(inner) = io.get_ref()
        && let Some(kind) = io_kind(inner)
    {
        return Some(kind);
    }
    (io.kind() == std::io::ErrorKind::InvalidData).then_some(ErrorKind::Permanent)
}

/// A certificate either side refuses stays refused however often it is asked again; other
/// TLS failures (a record garbled in transit) may not recur.
fn tls_kind(e: &rustls::Error) -> ErrorKind {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::NoApplicationProtocol => ErrorKind::Permanent,
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::CertificateRequired
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::HandshakeFailure
            | A::ProtocolVersion
            | A::InsufficientSecurity,
        ) => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

/// `Retry-After` on a 429 or 503: delay-seconds or an HTTP date.
pub fn retry_after(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Request-level retries and timeouts, shared by every registry client.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Tries of one request (or of one blob copy) before a transient failure counts.
    pub request_attempts: u32,
    /// The longest wait between two tries, `Retry-After` included.
    pub max_retry_wait: Duration,
    pub connect_timeout: Duration,
    /// The longest a connection may stay silent while an answer is awaited or read.
    pub read_timeout: Duration,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            request_attempts: 5,
            max_retry_wait: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
        }
    }
}

impl NetworkOptions {
    /// The wait before retry number `retry` (0-based): exponential from
    /// [`FIRST_RETRY_WAIT`], capped, with "equal jitter" (between half and all of it) so
    /// that copies failing together do not come back together. A `Retry-After` replaces
    /// the computed wait, capped the same way.
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_wait);
        }
        let exponential = FIRST_RETRY_WAIT.saturating_mul(1u32 << retry.min(20));
        exponential
            .min(self.max_retry_wait)
            .mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Whether another try is allowed after `tries` tries.
    pub fn may_retry(&self, tries: u32) -> bool {
        tries < self.request_attempts.max(1)
    }
}

/// Sends a request without authorization (token services, `GET /v2/`), retrying transport
/// failures and transient statuses as [`RegistryClient`] requests are. Returns the last
/// answer whatever its status.
pub async fn send_retrying(
    network: &NetworkOptions,
    traffic: &Traffic,
    host: &str,
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    let mut tries = 0;
    loop {
        tries += 1;
        traffic.requests.fetch_add(1, Ordering::Relaxed);
        let (retry_after, why) = match build().send().await {
            Ok(r) if is_transient_status(r.status()) && network.may_retry(tries) => {
                (retry_after(r.status(), r.headers()), r.status().to_string())
            }
            Ok(r) => return Ok(r),
            Err(e) => (None, retry_or_fail(&e, network, host, what, tries)?),
        };
        let wait = network.wait(tries - 1, retry_after);
        traffic.request_retries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(registry = host, attempt = tries, error = %why, "{what}: retrying in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

/// A reqwest error with its causes, and a hint for TLS trust failures.
pub fn describe_http_error(e: &reqwest::Error, host: &str) -> String {
    // reqwest names the URL; its query (an upload session's state, a pre-signed blob URL's
    // signature) is a credential of its own and stays out of logs and reports.
    let mut text = e.to_string();
    if let Some(url) = e.url()
        && url.query().is_some()
    {
        let mut shown = url.clone();
        shown.set_query(None);
        text = text.replace(url.as_str(), &format!("{shown}?…"));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    let lower = text.to_ascii_lowercase();
    // The registry's alert, not our verdict on its certificate: it wants one from us.
    if lower.contains("received fatal alert: badcertificate")
        || lower.contains("received fatal alert: certificaterequired")
    {
        let [containers, docker] = DEFAULT_CERTS_DIRS;
        text.push_str(&format!(
            " (TLS: {host} asks for a client certificate, or refused ours; put it and its key \
             in {containers}/{host}/ or {docker}/{host}/ as NAME.cert and NAME.key)"
        ));
    } else if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("tls")
    {
        let [containers, docker] = DEFAULT_CERTS_DIRS;
        text.push_str(&format!(
            " (TLS: the certificate of {host} is not trusted; put its CA certificate in \
             {containers}/{host}/ca.crt or {docker}/{host}/ca.crt, or use --insecure-registry \
             {host})"
        ));
    }
    text
}

/// After a transport error on try number `tries`: the failure to give up with, or why the
/// request is sent again.
fn retry_or_fail(
    e: &reqwest::Error,
    network: &NetworkOptions,
    host: &str,
    what: &str,
    tries: u32,
) -> Result<String> {
    let kind = transport_kind(e);
    let why = describe_http_error(e, host);
    if kind != ErrorKind::Transient || !network.may_retry(tries) {
        return Err(failure(kind, format!("{what}: {why}")));
    }
    Ok(why)
}

/// Settings shared by every registry client.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP and unverified TLS allowed for every registry.
    pub insecure: bool,
    /// The same, for these registries only (`host[:port]`, as written in references).
    pub insecure_registries: Vec<String>,
    pub max_per_registry: usize,
}

impl RegistryOptions {
    fn insecure_for(&self, host: &str, api_host: &str) -> bool {
        self.insecure
            || self
                .insecure_registries
                .iter()
                .map(|r| r.trim().trim_end_matches('/').to_ascii_lowercase())
                .any(|r| r == host.to_ascii_lowercase() || r == api_host.to_ascii_lowercase())
    }
}

/// Counters of what was sent, for the summary.
#[derive(Debug, Default)]
pub struct Traffic {
    pub requests: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Requests (and blob copies) tried again after a transient failure.
    pub request_retries: AtomicU64,
}

/// The clients of one run, created on first use.
pub struct Registries {
    options: RegistryOptions,
    network: NetworkOptions,
    credentials: Credentials,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    pub traffic: Arc<Traffic>,
}

impl Registries {
    pub fn new(options: RegistryOptions, credentials: Credentials) -> Self {
        Self {
            options,
            network: NetworkOptions::default(),
            credentials,
            clients: Mutex::default(),
            traffic: Arc::default(),
        }
    }

    /// Request retries and timeouts other than the defaults.
    pub fn with_network(mut self, network: NetworkOptions) -> Self {
        self.network = network;
        self
    }

    pub fn network(&self) -> &NetworkOptions {
        &self.network
    }

    /// The client for `host` (as written in references, e.g. `docker.io`).
    pub async fn client(&self, host: &str) -> Result<Arc<RegistryClient>> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(host) {
            return Ok(c.clone());
        }
        // A credential helper is a blocking process: run it (once; the answer is cached)
        // off the async threads. Usually `Credentials::resolve_all` already did.
        let credentials = self.credentials.clone();
        let owned = host.to_owned();
        tokio::task::spawn_blocking(move || credentials.helper_for_host(&owned))
            .await
            .map_err(|e| anyhow!("credential helper for {host}: {e}"))??;
        let client = Arc::new(
            RegistryClient::connect(
                host,
                self.credentials.clone(),
                &self.options,
                &self.network,
                self.traffic.clone(),
            )
            .await?,
        );
        clients.insert(host.to_owned(), client.clone());
        Ok(client)
    }
}

/// A connection to one registry.
pub struct RegistryClient {
    host: String,
    /// Where the API lives: Docker Hub's is not `docker.io`.
    api_host: String,
    scheme: &'static str,
    http: reqwest::Client,
    credentials: Credentials,
    auth: Authenticator,
    permits: Semaphore,
    max_permits: usize,
    network: NetworkOptions,
    traffic: Arc<Traffic>,
}

impl RegistryClient {
    async fn connect(
        host: &str,
        credentials: Credentials,
        options: &RegistryOptions,
        network: &NetworkOptions,
        traffic: Arc<Traffic>,
    ) -> Result<Self> {
        let api_host = api_host_of(host);
        let insecure = options.insecure_for(host, &api_host);
        let tls_files = read_certs_d(host, &api_host, &certs_dirs())
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))?;
        // reqwest follows redirects (blobs on a CDN) and drops `Authorization` when one
        // leads to another host.
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(network.connect_timeout)
            .read_timeout(network.read_timeout)
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")));
        builder = builder.tls_certs_merge(tls_files.roots);
        if let Some(client) = tls_files.client {
            builder = builder.identity(client.identity);
        }
        let http = builder.build().map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("building the HTTP client: {e}"),
            )
        })?;
        let scheme = if insecure {
            probe_scheme(&http, &api_host).await
        } else {
            "https"
        };
        let max_permits = options.max_per_registry.max(1);
        let auth = Authenticator::new(
            host,
            &format!("{scheme}://{api_host}"),
            http.clone(),
            network.clone(),
            traffic.clone(),
        );
        Ok(Self {
            host: host.to_owned(),
            api_host,
            scheme,
            http,
            credentials,
            auth,
            permits: Semaphore::new(max_permits),
            max_permits,
            network: network.clone(),
            traffic,
        })
    }

    pub fn network(&self) -> &NetworkOptions {
        &self.network
    }

    /// Counts a retry made outside this module (a blob copy started again).
    pub fn note_retry(&self) {
        self.traffic.request_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Waits for a request slot; a streaming copy within one registry takes two at once so
    /// copies cannot deadlock holding one each.
    pub async fn permit(&self, count: u32) -> SemaphorePermit<'_> {
        let count = count.min(self.max_permits as u32);
        match self.permits.acquire_many(count).await {
            Ok(p) => p,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    fn count_request(&self) {
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn url(&self, path: &str, rest: &str) -> String {
        format!("{}://{}/v2/{path}/{rest}", self.scheme, self.api_host)
    }

    fn credential(&self, path: &str) -> Result<RegistryCredential> {
        self.credentials
            .for_repository(&self.host, path)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))
    }

    /// Credentials go only to this registry: a `Location` or `Link` it sends may name another
    /// host (a CDN, a storage bucket), which must not see them.
    fn authorize_if_ours(
        &self,
        request: reqwest::RequestBuilder,
        authorization: &Authorization,
    ) -> reqwest::RequestBuilder {
        let (client, built) = request.build_split();
        match built {
            Ok(req) if authority(req.url()) == self.api_host => {
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
    ///   one; that does not count as a try.
    /// * Transport failures (refused, reset, timeouts) and 408/429/5xx answers are tried again
    ///   up to [`NetworkOptions::request_attempts`] times, after an exponential, jittered
    ///   wait or the `Retry-After` of a 429/503, capped by `max_retry_wait`. So is a
    ///   `finish` that fails (a body cut short).
    ///
    /// Returns the last answer whatever its status, with the credential used.
    async fn exchange<T>(
        &self,
        access: &Access,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        finish: impl AsyncFn(reqwest::Response) -> std::result::Result<T, reqwest::Error>,
    ) -> Result<(StatusCode, T, RegistryCredential)> {
        let credential = self.credential(&access.path)?;
        let mut authorization = self.authorization(&credential, access).await?;
        let mut reauthorized = false;
        let mut tries = 0;
        loop {
            tries += 1;
            self.count_request();
            let mut request = build();
            if let Some(a) = &authorization {
                request = self.authorize_if_ours(request, a);
            }
            let (retry_after, why) = match request.send().await {
                Err(e) => (
                    None,
                    retry_or_fail(&e, &self.network, &self.host, what, tries)?,
                ),
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !reauthorized {
                        reauthorized = true;
                        tries -= 1;
                        tracing::debug!(registry = %self.host, path = %access.path, action = access.action(), "401 from the registry; asking for a new token");
                        self.auth.learn(response.headers()).await;
                        self.auth
                            .invalidate(&credential, access, authorization.as_ref())
                            .await;
                        authorization = self.authorization(&credential, access).await?;
                        continue;
                    }
                    if is_transient_status(status) && self.network.may_retry(tries) {
                        (retry_after(status, response.headers()), status.to_string())
                    } else {
                        match finish(response).await {
                            Ok(v) => return Ok((status, v, credential)),
                            Err(e) => (
                                None,
                                retry_or_fail(&e, &self.network, &self.host, what, tries)?,
                            ),
                        }
                    }
                }
            };
            let wait = self.network.wait(tries - 1, retry_after);
            self.note_retry();
            tracing::info!(registry = %self.host, attempt = tries, error = %why, "{what}: retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    /// [`Self::exchange`] reading the whole body (small answers: manifests, tag lists,
    /// HEADs, upload sessions).
    async fn fetch(
        &self,
        access: &Access,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        let (status, (headers, body), credential) = self
            .exchange(access, what, build, async |r: reqwest::Response| {
                let headers = r.headers().clone();
                // An exact-size copy: the response's bytes may be a slice of a connection's
                // 8 KiB read buffer, which a cached manifest would otherwise keep alive.
                r.bytes()
                    .await
                    .map(|b| (headers, Bytes::copy_from_slice(&b)))
            })
            .await?;
        Ok(Answer {
            status,
            headers,
            body,
            credential,
        })
    }

    async fn authorization(
        &self,
        credential: &RegistryCredential,
        access: &Access,
    ) -> Result<Option<Authorization>> {
        self.auth.authorization(credential, access).await
    }

    /// The error for a failed answer: [`Self::denied`] for 401/403, else the registry's own
    /// words with the kind of the status.
    fn refused(&self, what: &str, access: &Access, answer: &Answer) -> anyhow::Error {
        self.refused_with(
            what,
            access,
            answer.status,
            &answer.body,
            &answer.credential,
        )
    }

    /// [`Self::refused`] for an answer read as a stream (a blob's).
    fn refused_with(
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
            failure(ErrorKind::of_status(status), format!("{what}: {text}"))
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
            && matches!(
                credential.credential,
                crate::credentials::Credential::Anonymous
            )
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

    /// Every tag of a repository, following pagination (`Link: <...>; rel="next"`).
    pub async fn list_tags(&self, path: &str) -> Result<Vec<String>> {
        let _permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("listing tags of {}/{path}", self.host);
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut url = format!("{}?n={TAGS_PAGE_SIZE}", self.url(path, "tags/list"));
        loop {
            let answer = self.fetch(&access, &what, || self.http.get(&url)).await?;
            if !answer.status.is_success() {
                return Err(self.refused(&what, &access, &answer));
            }
            let next = answer
                .headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let page: TagsPage = serde_json::from_slice(&answer.body).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!("{what}: unreadable answer: {e}"),
                )
            })?;
            let page = page.tags.unwrap_or_default();
            let full_page = page.len() >= TAGS_PAGE_SIZE;
            let last = page.last().cloned();
            let before = tags.len();
            tags.extend(page.into_iter().filter(|t| seen.insert(t.clone())));
            // A registry that ignores `n`/`last` (distribution 2.8 does) answers the same
            // list again: a page with nothing new ends the listing.
            if tags.len() == before {
                break;
            }
            match (next, last) {
                (Some(next), _) => url = self.absolute(&next),
                // Registries that page without a Link header: ask for what follows the last
                // tag until a page comes back short.
                (None, Some(last)) if full_page => {
                    url = format!(
                        "{}?n={TAGS_PAGE_SIZE}&last={last}",
                        self.url(path, "tags/list")
                    )
                }
                _ => break,
            }
        }
        Ok(tags)
    }

    /// Whether a repository has no tag at all (or does not exist yet): then nothing in it
    /// can be assumed present, and a first copy need not ask blob by blob.
    pub async fn repository_is_empty(&self, path: &str) -> Result<bool> {
        let _permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("listing tags of {}/{path}", self.host);
        let url = format!("{}?n=1", self.url(path, "tags/list"));
        let answer = self.fetch(&access, &what, || self.http.get(&url)).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(true);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        let page: TagsPage =
            serde_json::from_slice(&answer.body).unwrap_or(TagsPage { tags: None });
        Ok(page.tags.is_none_or(|t| t.is_empty()))
    }

    fn absolute(&self, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_owned()
        } else {
            format!("{}://{}{link}", self.scheme, self.api_host)
        }
    }

    /// `method` (HEAD or GET) on a manifest, accepting every manifest type we copy: both
    /// must ask alike, or a registry may answer them with different manifests.
    async fn ask_manifest(
        &self,
        method: reqwest::Method,
        path: &str,
        reference: &str,
        access: &Access,
        what: &str,
    ) -> Result<Answer> {
        let url = self.url(path, &format!("manifests/{reference}"));
        self.fetch(access, what, || {
            self.http
                .request(method.clone(), &url)
                .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "))
        })
        .await
    }

    /// The digest a tag or digest resolves to, or `None` if the registry does not have it.
    /// One HEAD request.
    pub async fn manifest_digest(&self, path: &str, reference: &str) -> Result<Option<Digest>> {
        let permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("checking {}/{path}:{reference}", self.host);
        let answer = self
            .ask_manifest(reqwest::Method::HEAD, path, reference, &access, &what)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        match answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Ok(Some(Digest::parse(d).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!(
                        "{} answered a bad digest for {path}:{reference}: {e}",
                        self.host
                    ),
                )
            })?)),
            None => {
                drop(permit);
                Ok(Some(self.pull_manifest(path, reference).await?.digest))
            }
        }
    }

    /// A manifest's exact bytes, checked against the digest asked for (or the one the
    /// registry states for a tag).
    pub async fn pull_manifest(&self, path: &str, reference: &str) -> Result<Manifest> {
        let _permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("reading manifest {}/{path}:{reference}", self.host);
        let answer = self
            .ask_manifest(reqwest::Method::GET, path, reference, &access, &what)
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        let stated = answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let digest = Digest::of(&answer.body);
        let expected = if reference.contains(':') {
            Some(reference.to_owned())
        } else {
            stated
        };
        if let Some(expected) = expected {
            // Checked by the algorithm it names; the manifest keeps its canonical (sha256)
            // digest, the one registries answer HEADs with.
            let actual = match Digest::parse(&expected) {
                Ok(e) if e.algorithm() != digest.algorithm() => {
                    Digest::of_with(e.algorithm(), &answer.body)
                }
                _ => digest.clone(),
            };
            if expected != actual.as_str() {
                return Err(failure(
                    ErrorKind::Corrupt,
                    format!("{what}: the bytes hash to {actual}, not {expected}"),
                ));
            }
        }
        Manifest::parse(answer.body, digest)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{what}: {e:#}")))
    }

    /// Writes a manifest as its exact bytes and media type, under a tag or its digest.
    pub async fn push_manifest(
        &self,
        path: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<()> {
        let _permit = self.permit(1).await;
        let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| {
            failure(
                ErrorKind::Permanent,
                format!("unusable media type {:?}", manifest.media_type),
            )
        })?;
        let access = Access::push(path);
        let what = format!("writing manifest {}/{path}:{reference}", self.host);
        let url = self.url(path, &format!("manifests/{reference}"));
        let answer = self
            .fetch(&access, &what, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, content_type.clone())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        Ok(())
    }

    pub async fn blob_exists(&self, path: &str, digest: &Digest) -> Result<bool> {
        let _permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("checking blob {digest} in {}/{path}", self.host);
        let url = self.url(path, &format!("blobs/{digest}"));
        let answer = self.fetch(&access, &what, || self.http.head(&url)).await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(&what, &access, &answer)),
        }
    }

    /// Cross-repository mount. `Ok(false)` when the registry did not mount (it may offer an
    /// upload session instead, which is cancelled): the caller uploads.
    pub async fn mount_blob(&self, path: &str, from: &str, digest: &Digest) -> Result<Mount> {
        let _permit = self.permit(1).await;
        let access = Access::mount(path, from);
        let url = format!(
            "{}?mount={digest}&from={from}",
            self.url(path, "blobs/uploads/")
        );
        let what = format!("mounting {digest} into {}/{path}", self.host);
        let answer = match self
            .fetch(&access, &what, || {
                self.http.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(registry = %self.host, path, %digest, error = %format!("{e:#}"), "mount not possible; uploading instead");
                return Ok(Mount::Refused);
            }
        };
        match answer.status {
            StatusCode::CREATED => Ok(Mount::Mounted),
            // Not mounted (the registry mounts nothing, or not from there): the session it
            // opened instead takes the upload, saving a DELETE and a POST.
            StatusCode::ACCEPTED => Ok(UploadSession::from_answer(answer)
                .map(Mount::Session)
                .unwrap_or(Mount::Refused)),
            status => {
                tracing::debug!(registry = %self.host, path, %digest, %status, "mount refused; uploading instead");
                Ok(Mount::Refused)
            }
        }
    }

    /// Best effort: drops an upload session that will not be used (one try, no retries).
    /// `POST /v2/PATH/blobs/uploads/`: a new upload session.
    async fn open_upload(&self, path: &str, access: &Access, what: &str) -> Result<UploadSession> {
        let start = self.url(path, "blobs/uploads/");
        let answer = self
            .fetch(access, what, || {
                self.http.post(&start).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(self.refused(what, access, &answer));
        }
        UploadSession::from_answer(answer).ok_or_else(|| {
            failure(
                ErrorKind::Permanent,
                format!("{what}: the registry opened an upload without a Location"),
            )
        })
    }

    /// Gives back a session [`Self::mount_blob`] opened and nothing used.
    pub async fn cancel_session(&self, path: &str, session: UploadSession) {
        self.cancel_upload(&Access::push(path), &session.credential, &session.location)
            .await;
    }

    async fn cancel_upload(
        &self,
        access: &Access,
        credential: &RegistryCredential,
        location: &str,
    ) {
        let mut request = self.http.delete(self.absolute(location));
        if let Ok(Some(a)) = self.authorization(credential, access).await {
            request = self.authorize_if_ours(request, &a);
        }
        self.count_request();
        let _ = request.send().await;
    }

    /// `GET` a blob from `offset` on (a `Range` request when `offset > 0`). Returns the
    /// response and how many of its leading bytes to drop: a registry that ignores `Range`
    /// answers 200 with the whole blob.
    async fn open_blob(
        &self,
        path: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(reqwest::Response, u64)> {
        let access = Access::pull(path);
        let what = format!("reading blob {digest} from {}/{path}", self.host);
        let url = self.url(path, &format!("blobs/{digest}"));
        let (status, response, credential) = self
            .exchange(
                &access,
                &what,
                || {
                    let request = self.http.get(&url);
                    if offset > 0 {
                        request.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        request
                    }
                },
                async |r: reqwest::Response| Ok(r),
            )
            .await?;
        let from = |r: &reqwest::Response| {
            r.headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        match status {
            StatusCode::OK => Ok((response, offset)),
            StatusCode::PARTIAL_CONTENT if offset > 0 && from(&response) == Some(offset) => {
                Ok((response, 0))
            }
            StatusCode::PARTIAL_CONTENT => Err(failure(
                ErrorKind::Transient,
                format!("{what}: the registry answered a range that was not asked for"),
            )),
            _ => {
                let body = response.bytes().await.unwrap_or_default();
                Err(self.refused_with(&what, &access, status, &body, &credential))
            }
        }
    }

    /// Opens a blob for reading. When the answer breaks off (connection reset, a body
    /// shorter than `size`), the stream goes on with a `Range` request from the byte reached
    /// (or a whole new GET whose leading bytes are dropped, for a source that ignores
    /// `Range`), up to [`NetworkOptions::request_attempts`] times: the reader sees one
    /// continuous stream. Whatever it yields is checked by [`Self::push_blob`].
    pub async fn pull_blob(
        self: &Arc<Self>,
        path: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<>> {
        let (response, skip) = self.open_blob(path, digest, 0).await?;
        let state = ResumeState {
            client: self.clone(),
            path: path.to_owned(),
            digest: digest.clone(),
            size,
            offset: 0,
            skip,
            body: Some(Box::pin(response.bytes_stream())),
            resumes: 0,
            done: false,
        };
        Ok(futures_util::stream::unfold(state, ResumeState::next))
    }

    /// Uploads a blob from a stream in one monolithic PUT. The bytes are hashed as they pass
    /// and the body fails before its end if they do not match `digest`, so a corrupt blob is
    /// never committed (the registry's own `?digest=` check is a second line).
    ///
    /// `source` opens the stream (the source's `GET`); the upload session is opened at the
    /// same time rather than after it, because each is a round trip that ends in the
    /// registry's fsync, and the copy holds a request slot at both registries while it waits.
    ///
    /// The upload session is opened with retries; the PUT itself is sent once (a stream
    /// cannot be sent twice): on a transient failure the caller starts the copy again, with
    /// a new session. A failed session is cancelled.
    pub async fn push_blob<F, S>(
        &self,
        path: &str,
        digest: &Digest,
        size: u64,
        session: Option<UploadSession>,
        source: F,
    ) -> Result<()>
    where
        F: Future<Output = Result<S>>,
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let access = Access::push(path);
        let what = format!("uploading blob {digest} to {}/{path}", self.host);
        let (session, source) = match session {
            Some(session) => (Ok(session), source.await),
            None => {
                futures_util::future::join(self.open_upload(path, &access, &what), source).await
            }
        };
        let UploadSession {
            location,
            credential,
        } = session?;
        let location = location.as_str();
        let source = match source {
            Ok(source) => source,
            Err(e) => {
                self.cancel_upload(&access, &credential, location).await;
                return Err(e);
            }
        };
        let mut target = reqwest::Url::parse(&self.absolute(location)).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{what}: unusable upload location: {e}"),
            )
        })?;
        target
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let failed = Arc::new(std::sync::Mutex::new(None::<(ErrorKind, String)>));
        let body = verify_stream(
            source,
            digest.clone(),
            size,
            failed.clone(),
            self.traffic.clone(),
        );
        let mut request = self
            .http
            .put(target)
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = self.authorization(&credential, &access).await? {
            request = self.authorize_if_ours(request, &a);
        }
        self.count_request();
        let result = request.send().await;
        let stream_failure = failed.lock().ok().and_then(|mut f| f.take());
        let error = match (stream_failure, result) {
            (Some((kind, why)), _) => failure(kind, why),
            (None, Err(e)) => failure(
                transport_kind(&e),
                format!("{what}: {}", describe_http_error(&e, &self.host)),
            ),
            (None, Ok(response)) => {
                let status = response.status();
                if status == StatusCode::CREATED {
                    return Ok(());
                }
                let body = response.bytes().await.unwrap_or_default();
                self.refused_with(&what, &access, status, &body, &credential)
            }
        };
        self.cancel_upload(&access, &credential, location).await;
        Err(error)
    }
}

/// What a cross-repository mount request came to.
pub enum Mount {
    /// The blob is in the repository now.
    Mounted,
    /// Not mounted, but the registry opened an upload session instead: upload into it with
    /// [`RegistryClient::push_blob`], or give it back with [`RegistryClient::cancel_session`].
    Session(UploadSession),
    /// Not mounted, no session: upload the usual way.
    Refused,
}

/// An open upload session: where to send the blob, and with which credential.
pub struct UploadSession {
    location: String,
    credential: RegistryCredential,
}

impl UploadSession {
    fn from_answer(answer: Answer) -> Option<UploadSession> {
        let location = answer.headers.get(LOCATION)?.to_str().ok()?.to_owned();
        Some(UploadSession {
            location,
            credential: answer.credential,
        })
    }
}

/// A whole (small) answer.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
    credential: RegistryCredential,
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A blob download that picks up where it broke off (see [`RegistryClient::pull_blob`]).
struct ResumeState {
    client: Arc<RegistryClient>,
    path: String,
    digest: Digest,
    size: u64,
    /// Bytes handed on so far.
    offset: u64,
    /// Leading bytes of the current answer to drop.
    skip: u64,
    body: Option<ByteStream>,
    resumes: u32,
    done: bool,
}

impl ResumeState {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let why = match self.body.as_mut()?.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64);
                        self.skip -= drop;
                        chunk = chunk.slice(drop as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.offset += chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                // The whole blob, or more: the digest check downstream judges it.
                None if self.offset >= self.size => return None,
                None => format!(
                    "the answer ended after {} of {} bytes",
                    self.offset, self.size
                ),
                Some(Err(e)) => {
                    let why = describe_http_error(&e, &self.client.host);
                    if transport_kind(&e) != ErrorKind::Transient {
                        return self.fail(ErrorKind::Permanent, why);
                    }
                    why
                }
            };
            self.body = None;
            self.resumes += 1;
            if !self.client.network.may_retry(self.resumes) {
                let why = format!("{why} (gave up after {} tries)", self.resumes);
                return self.fail(ErrorKind::Transient, why);
            }
            let wait = self.client.network.wait(self.resumes - 1, None);
            self.client.note_retry();
            tracing::info!(registry = %self.client.host, path = %self.path, digest = %self.digest, offset = self.offset, error = %why, "blob download broke off; resuming in {wait:?}");
            tokio::time::sleep(wait).await;
            match self
                .client
                .open_blob(&self.path, &self.digest, self.offset)
                .await
            {
                Ok((response, skip)) => {
                    self.skip = skip;
                    self.body = Some(Box::pin(response.bytes_stream()));
                }
                Err(e) => {
                    let kind = error_kind(&e).unwrap_or(ErrorKind::Permanent);
                    return self.fail(kind, format!("{e:#}"));
                }
            }
        }
    }

    fn fail(mut self, kind: ErrorKind, why: String) -> Option<(std::io::Result<Bytes>, Self)> {
        self.done = true;
        self.body = None;
        Some((
            Err(std::io::Error::other(RegistryError { kind, message: why })),
            self,
        ))
    }
}

/// Base directories holding `HOST[:PORT]/*.crt`.
fn certs_dirs() -> Vec<PathBuf> {
    match std::env::var_os(CERTS_DIRS_ENV).filter(|v| !v.is_empty()) {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// What certs.d holds for one registry.
struct CertsD {
    /// CA certificates to trust besides the system's (`*.crt`).
    roots: Vec<reqwest::Certificate>,
    /// The client certificate to present (`NAME.cert` + `NAME.key`).
    client: Option<ClientCertificate>,
}

struct ClientCertificate {
    identity: reqwest::Identity,
    cert_file: PathBuf,
}

/// Reads every certs.d file the run's registries would use (CA certificates and client
/// certificates), so a bad one stops the run before anything is contacted.
pub fn check_certificate_files<'a>(hosts: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let bases = certs_dirs();
    for host in hosts {
        let files = read_certs_d(host, &api_host_of(host), &bases)?;
        if let Some(client) = files.client {
            // A key that does not belong to its certificate shows only when TLS is set up.
            install_tls_provider();
            reqwest::Client::builder()
                .identity(client.identity)
                .build()
                .map_err(|e| {
                    anyhow!(
                        "client certificate {}: unusable with its key: {:#}",
                        client.cert_file.display(),
                        anyhow::Error::from(e)
                    )
                })?;
        }
    }
    Ok(())
}

/// Where a registry's API lives: Docker Hub's is not `docker.io`.
fn api_host_of(host: &str) -> String {
    OciReference::with_tag(host.to_owned(), "x".to_owned(), "x".to_owned())
        .resolve_registry()
        .to_owned()
}

/// `BASE/HOST[:PORT]/` under each base directory, by docker's rules: `*.crt` are CA
/// certificates; `NAME.cert` is a client certificate whose key is `NAME.key`, and either
/// without the other is an error. Of several client certificates the first by name is used.
fn read_certs_d(host: &str, api_host: &str, bases: &[PathBuf]) -> Result<CertsD> {
    let mut names = vec![host.to_owned()];
    if api_host != host {
        names.push(api_host.to_owned());
    }
    let mut found = CertsD {
        roots: Vec::new(),
        client: None,
    };
    for base in bases {
        for name in &names {
            let dir = base.join(name);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => bail!("reading certificates in {}: {e}", dir.display()),
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for file in &files {
                match file.extension().and_then(|x| x.to_str()) {
                    Some("crt") => {
                        found.roots.extend(read_ca_file(file)?);
                        tracing::debug!(registry = host, file = %file.display(), "trusting extra CA certificates");
                    }
                    Some("cert") => {
                        let key = file.with_extension("key");
                        if !files.contains(&key) {
                            bail!(
                                "missing key {} for client certificate {} (CA certificates must use the extension .crt)",
                                key.display(),
                                file.display()
                            );
                        }
                        if found.client.is_some() {
                            tracing::debug!(registry = host, file = %file.display(), "another client certificate came first; not using this one");
                            continue;
                        }
                        found.client = Some(read_client_certificate(file, &key)?);
                        tracing::debug!(registry = host, file = %file.display(), "presenting this client certificate");
                    }
                    Some("key") if !files.contains(&file.with_extension("cert")) => {
                        bail!(
                            "missing client certificate {} for key {}",
                            file.with_extension("cert").display(),
                            file.display()
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(found)
}

fn read_client_certificate(cert_file: &Path, key_file: &Path) -> Result<ClientCertificate> {
    let read = |file: &Path, what: &str| {
        std::fs::read(file).map_err(|e| anyhow!("reading {what} {}: {e}", file.display()))
    };
    let cert = read(cert_file, "client certificate")?;
    let key = read(key_file, "client key")?;
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        bail!(
            "client key {}: no PEM private key in it",
            key_file.display()
        );
    }
    if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "client certificate {}: no PEM certificate in it",
            cert_file.display()
        );
    }
    let mut pem = key;
    pem.push(b'\n');
    pem.extend_from_slice(&cert);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
        anyhow!(
            "client certificate {} with key {}: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(ClientCertificate {
        identity,
        cert_file: cert_file.to_owned(),
    })
}

fn read_ca_file(file: &Path) -> Result<Vec<reqwest::Certificate>> {
    let data = std::fs::read(file)
        .map_err(|e| anyhow!("reading CA certificate {}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&data);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let certs = reqwest::Certificate::from_pem_bundle(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: not a PEM certificate: {e}",
                file.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "CA certificate {}: no readable certificate in it",
                file.display()
            );
        }
        Ok(certs)
    } else {
        let cert = reqwest::Certificate::from_der(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: neither PEM nor DER: {e}",
                file.display()
            )
        })?;
        Ok(vec![cert])
    }
}

/// `host[:port]` of a URL, as registries are named.
fn authority(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// With `--insecure`, a registry may speak plain HTTP: try TLS (certificates unchecked) and
/// fall back to HTTP when TLS fails and plain HTTP answers, as oc does. A registry that is
/// slow, down or unreachable stays on HTTPS.
async fn probe_scheme(http: &reqwest::Client, api_host: &str) -> &'static str {
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

struct VerifyState<S> {
    inner: std::pin::Pin<Box<S>>,
    hasher: Option<Hasher>,
    seen: u64,
    done: bool,
}

fn verify_stream<S>(
    source: S,
    digest: Digest,
    size: u64,
    failure: Arc<std::sync::Mutex<Option<(ErrorKind, String)>>>,
    traffic: Arc<Traffic>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let state = VerifyState {
        inner: Box::pin(source),
        hasher: Some(Hasher::new(digest.algorithm())),
        seen: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| {
        let digest = digest.clone();
        let failure = failure.clone();
        let traffic = traffic.clone();
        async move {
            if st.done {
                return None;
            }
            let fail = |st: VerifyState<S>, kind: ErrorKind, why: String| {
                if let Ok(mut f) = failure.lock() {
                    *f = Some((kind, why.clone()));
                }
                let mut st = st;
                st.done = true;
                Some((Err(std::io::Error::other(why)), st))
            };
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    st.seen += chunk.len() as u64;
                    if st.seen > size {
                        return fail(
                            st,
                            ErrorKind::Corrupt,
                            format!(
                                "blob {digest}: the source sent more than the {size} bytes its descriptor gives"
                            ),
                        );
                    }
                    if let Some(hasher) = st.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    traffic
                        .bytes_uploaded
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if st.seen == size {
                        st.done = true;
                        if let Some(why) = mismatch(&mut st.hasher, &digest) {
                            return fail(st, ErrorKind::Corrupt, why);
                        }
                    }
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => {
                    let seen = st.seen;
                    let kind = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<RegistryError>())
                        .map_or(ErrorKind::Transient, |r| r.kind);
                    fail(
                        st,
                        kind,
                        format!("blob {digest}: reading the source failed after {seen} bytes: {e}"),
                    )
                }
                None if st.seen < size => {
                    let seen = st.seen;
                    fail(
                        st,
                        ErrorKind::Transient,
                        format!("blob {digest}: the source ended after {seen} of {size} bytes"),
                    )
                }
                // An empty blob yields no chunk: its digest is checked here.
                None => match mismatch(&mut st.hasher, &digest) {
                    Some(why) => fail(st, ErrorKind::Corrupt, why),
                    None => None,
                },
            }
        }
    })
}

/// Why the bytes hashed so far are not `digest`, if they are not (once: the hasher is
/// taken).
fn mismatch(hasher: &mut Option<Hasher>, digest: &Digest) -> Option<String> {
    let actual = hasher.take()?.finish();
    (actual != *digest).then(|| {
        format!(
            "blob {digest}: digest mismatch, the source's bytes hash to {actual}; not committed"
        )
    })
}

/// One page of a `tags/list` answer.
#[derive(serde::Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// `<url>; rel="next"` from a Link header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

/// The registry's own words for a failed request: its error codes and messages when it sent
/// a distribution error body, else the status.
pub fn registry_answer(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => {
            let parts: Vec<String> = env
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            format!("{status}: {}", parts.join("; "))
        }
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `verify_stream` makes of `chunks` for a blob of `digest` and `size`: the bytes
    /// it passed on, or the failure it recorded.
    fn verified(chunks: &[&[u8]], digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        let source = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<std::io::Result<Bytes>>>(),
        );
        let failed = Arc::new(std::sync::Mutex::new(None));
        let stream = verify_stream(source, digest.clone(), size, failed.clone(), Arc::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let passed: Vec<std::io::Result<Bytes>> = runtime.block_on(stream.collect());
        if let Some((_, why)) = failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(why);
        }
        Ok(passed
            .into_iter()
            .flat_map(|c| c.map(|b| b.to_vec()).unwrap_or_default())
            .collect())
    }

    #[test]
    fn streamed_blobs_are_checked_by_their_digests_algorithm() {
        let data: &[u8] = b"layer bytes";
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let right = Digest::of_with(algorithm, data);
            assert_eq!(
                verified(&[&data[..5], &data[5..]], &right, data.len() as u64),
                Ok(data.to_vec())
            );
            let wrong = Digest::of_with(algorithm, b"other bytes");
            let e = verified(&[data], &wrong, data.len() as u64).unwrap_err();
            assert!(e.contains("digest mismatch"), "{e}");
        }
        let e = verified(&[&data[..3]], &Digest::of(data), data.len() as u64).unwrap_err();
        assert!(e.contains("ended after 3 of 11 bytes"), "{e}");
    }

    #[test]
    fn an_empty_blob_is_checked_too() {
        assert_eq!(verified(&[], &Digest::of(b""), 0), Ok(Vec::new()));
        let e = verified(&[], &Digest::of(b"x"), 0).unwrap_err();
        assert!(e.contains("digest mismatch"), "{e}");
    }

    #[test]
    fn tls_errors_inside_io_errors_decide_whether_to_ask_again() {
        let wrapped = |tls: rustls::Error| {
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls))
        };
        let untrusted = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(io_kind(&untrusted), Some(ErrorKind::Permanent));
        let refused = wrapped(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate,
        ));
        assert_eq!(io_kind(&refused), Some(ErrorKind::Permanent));
        // A record garbled in transit may not happen again.
        assert_eq!(
            io_kind(&wrapped(rustls::Error::DecryptError)),
            Some(ErrorKind::Transient)
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(io_kind(&reset), None);
    }

    #[test]
    fn certs_d_follows_dockers_file_rules() {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = base.path().join("reg.example:5000");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let bases = [base.path().to_owned()];
        let read = || read_certs_d("reg.example:5000", "reg.example:5000", &bases);
        // Nothing there, or another registry's directory: nothing to add.
        let none = read().unwrap_or_else(|e| panic!("{e:#}"));
        assert!(none.roots.is_empty() && none.client.is_none());
        // A key alone.
        std::fs::write(dir.join("client.key"), "-----BEGIN PRIVATE KEY-----\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            e.contains("missing client certificate") && e.contains("client.cert"),
            "{e}"
        );
        std::fs::remove_file(dir.join("client.key")).unwrap_or_else(|e| panic!("{e}"));
        // A certificate alone: docker's hint that CA files are *.crt.
        std::fs::write(dir.join("ca.cert"), "-----BEGIN CERTIFICATE-----\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("missing key") && e.contains(".crt"), "{e}");
        // A pair whose files hold no PEM.
        std::fs::write(dir.join("ca.cert"), "junk").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("ca.key"), "junk").unwrap_or_else(|e| panic!("{e}"));
        let e = read().err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(
            e.contains("client key") && e.contains("no PEM private key"),
            "{e}"
        );
    }

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
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link("</v2/a/tags/list?last=b&n=2>; rel=\"next\""),
            Some("/v2/a/tags/list?last=b&n=2".to_owned())
        );
        assert_eq!(
            next_link("<https://x/v2/a/tags/list?n=1>; rel=next"),
            Some("https://x/v2/a/tags/list?n=1".to_owned())
        );
        assert_eq!(next_link("</a>; rel=\"prev\""), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_on_429_and_503_only() {
        use reqwest::header::HeaderMap;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &headers), None);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::ZERO)
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), None);
    }

    #[test]
    fn waits_grow_with_jitter_and_are_capped() {
        let network = NetworkOptions {
            max_retry_wait: Duration::from_secs(2),
            ..NetworkOptions::default()
        };
        for retry in 0..10 {
            let full = FIRST_RETRY_WAIT
                .saturating_mul(1 << retry)
                .min(Duration::from_secs(2));
            let wait = network.wait(retry, None);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert_eq!(
            network.wait(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(2)
        );
        assert!(network.may_retry(4) && !network.may_retry(5));
    }

    #[test]
    fn kinds_come_from_the_status_and_survive_context() {
        assert_eq!(
            ErrorKind::of_status(StatusCode::NOT_FOUND),
            ErrorKind::NotFound
        );
        assert_eq!(
            ErrorKind::of_status(StatusCode::FORBIDDEN),
            ErrorKind::Denied
        );
        assert_eq!(
            ErrorKind::of_status(StatusCode::BAD_REQUEST),
            ErrorKind::Permanent
        );
        for s in [429, 408, 500, 502, 503, 504] {
            assert_eq!(
                ErrorKind::of_status(StatusCode::from_u16(s).unwrap()),
                ErrorKind::Transient
            );
        }
        let e = failure(ErrorKind::Corrupt, "blob x: digest mismatch").context("copying");
        assert_eq!(error_kind(&e), Some(ErrorKind::Corrupt));
        assert_eq!(error_kind(&anyhow!("plain")), None);
    }

    #[test]
    fn registry_answers_quote_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(
            registry_answer(StatusCode::NOT_FOUND, body),
            "404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            registry_answer(StatusCode::BAD_GATEWAY, b"oops"),
            "502 Bad Gateway"
        );
    }
}
