//! All registry I/O. Built on oci-client (blob existence, blob downloads with their digest
//! check, manifest uploads); the requests it cannot make go through reqwest with the same
//! TLS settings: tag lists that follow `Link`, manifests with their exact bytes in one GET,
//! a one-request manifest HEAD that tells "absent" apart, cross-repository mounts, and blob
//! uploads whose session is opened with a token that can be refreshed and retried (a
//! stream given to oci-client cannot be replayed after a 401).
//!
//! Authentication is ours ([`crate::auth`]): credentials are chosen per repository (an auth
//! file may hold different robots for different organisations of one registry), tokens are
//! scoped per repository and action (plus the source's pull for a mount), cached, refreshed
//! before they expire, and fetched anew once when the registry answers 401. oci-client gets
//! the current token put into its token cache before each call and never asks for one itself
//! (no credential is ever stored in it).
//!
//! TLS: the system's roots, plus CA certificates from `/etc/containers/certs.d/HOST[:PORT]/`
//! and `/etc/docker/certs.d/HOST[:PORT]/` (`*.crt`), as docker and podman read them. The
//! environment variable `IMAGE_MIRROR_CERTS_DIRS` (colon-separated) replaces those two base
//! directories; it exists for tests and unusual setups.
//!
//! One [`RegistryClient`] per registry host, which also holds the per-registry request limit.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use oci_client::{Reference as OciReference, RegistryOperation};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LINK, LOCATION};
use sha2::Digest as _;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use crate::auth::{Access, Authenticator, Authorization, describe_http_error};
use crate::credentials::{Credentials, RegistryCredential};
use crate::manifest::{MANIFEST_MEDIA_TYPES, Manifest};
use crate::reference::Digest;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);
const TAGS_PAGE_SIZE: usize = 1000;
/// Where docker and podman users keep per-registry CA certificates.
const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];
/// Test-only / advanced: colon-separated base directories replacing [`DEFAULT_CERTS_DIRS`].
pub const CERTS_DIRS_ENV: &str = "IMAGE_MIRROR_CERTS_DIRS";

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
}

/// The clients of one run, created on first use.
pub struct Registries {
    options: RegistryOptions,
    credentials: Credentials,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    pub traffic: Arc<Traffic>,
}

impl Registries {
    pub fn new(options: RegistryOptions, credentials: Credentials) -> Self {
        Self {
            options,
            credentials,
            clients: Mutex::default(),
            traffic: Arc::default(),
        }
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
    /// For registries that want authorization: holds an anonymous auth entry, so it uses the
    /// tokens `install` puts in its cache.
    oci: oci_client::Client,
    /// For requests that need no authorization: holds no auth entry, so it sends none and
    /// asks for none.
    oci_plain: oci_client::Client,
    http: reqwest::Client,
    credentials: Credentials,
    auth: Authenticator,
    permits: Semaphore,
    max_permits: usize,
    traffic: Arc<Traffic>,
}

impl RegistryClient {
    async fn connect(
        host: &str,
        credentials: Credentials,
        options: &RegistryOptions,
        traffic: Arc<Traffic>,
    ) -> Result<Self> {
        let api_host = OciReference::with_tag(host.to_owned(), "x".to_owned(), "x".to_owned())
            .resolve_registry()
            .to_owned();
        let insecure = options.insecure_for(host, &api_host);
        let roots = extra_roots(host, &api_host, &certs_dirs())?;
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")));
        let mut oci_roots = Vec::new();
        for root in &roots {
            builder = builder.tls_certs_merge(root.reqwest.clone());
            oci_roots.extend(root.oci.iter().map(|c| Certificate {
                encoding: c.encoding.clone(),
                data: c.data.clone(),
            }));
        }
        let http = builder.build().context("building the HTTP client")?;
        let scheme = if insecure {
            probe_scheme(&http, &api_host).await
        } else {
            "https"
        };
        let config = || ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: insecure,
            extra_root_certificates: oci_roots.clone(),
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("image-mirror/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let oci_plain = oci_client::Client::try_from(config())
            .with_context(|| format!("configuring the client for {host}"))?;
        let oci = oci_client::Client::try_from(config())
            .with_context(|| format!("configuring the client for {host}"))?;
        // oci-client only looks in its token cache (where `install` puts ours) for a registry
        // it holds an auth entry for. Anonymous: it never has a credential to send or log.
        oci.store_auth_if_needed(&api_host, &oci_client::secrets::RegistryAuth::Anonymous)
            .await;
        let max_permits = options.max_per_registry.max(1);
        let auth = Authenticator::new(
            host,
            &format!("{scheme}://{api_host}"),
            http.clone(),
            traffic.clone(),
        );
        Ok(Self {
            host: host.to_owned(),
            api_host,
            scheme,
            oci,
            oci_plain,
            http,
            credentials,
            auth,
            permits: Semaphore::new(max_permits),
            max_permits,
            traffic,
        })
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

    fn reference(&self, path: &str, reference: &str) -> OciReference {
        if reference.contains(':') {
            OciReference::with_digest(self.host.clone(), path.to_owned(), reference.to_owned())
        } else {
            OciReference::with_tag(self.host.clone(), path.to_owned(), reference.to_owned())
        }
    }

    fn url(&self, path: &str, rest: &str) -> String {
        format!("{}://{}/v2/{path}/{rest}", self.scheme, self.api_host)
    }

    fn credential(&self, path: &str) -> Result<RegistryCredential> {
        self.credentials.for_repository(&self.host, path)
    }

    /// Sends a request built by `build` with the credentials `access` needs. On a 401 the
    /// token is dropped (and the challenge re-read), and the request is sent once more with
    /// a new one. Returns the last answer, whatever its status.
    async fn send(
        &self,
        access: &Access,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, RegistryCredential)> {
        let credential = self.credential(&access.path)?;
        let mut authorization = self.auth.authorization(&credential, access).await?;
        for attempt in 0..2 {
            self.count_request();
            let mut request = build();
            if let Some(a) = &authorization {
                request = a.apply(request);
            }
            let response = request
                .send()
                .await
                .map_err(|e| anyhow!("{what}: {}", describe_http_error(&e, &self.host)))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok((response, credential));
            }
            tracing::debug!(registry = %self.host, path = %access.path, action = access.action(), "401 from the registry; asking for a new token");
            self.auth.learn(response.headers()).await;
            self.auth
                .invalidate(&credential, access, authorization.as_ref())
                .await;
            authorization = self.auth.authorization(&credential, access).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Runs an oci-client call with the token `access` needs in oci-client's cache; on a
    /// 401, once more with a new token.
    async fn oci_call<'c, T, F, Fut>(&'c self, access: &Access, what: &str, call: F) -> Result<T>
    where
        F: Fn(&'c oci_client::Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, OciDistributionError>>,
    {
        let credential = self.credential(&access.path)?;
        let op = if access.push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        let key = self.reference(&access.path, "latest");
        let mut authorization = self.auth.authorization(&credential, access).await?;
        for attempt in 0..2 {
            self.install(&key, op, authorization.as_ref()).await;
            self.count_request();
            // Without an authorization, the client that holds no auth entry: the other would
            // ask the registry's /v2/ again before every request.
            let client = if authorization.is_some() {
                &self.oci
            } else {
                &self.oci_plain
            };
            match call(client).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let status = oci_status(&e);
                    if status == Some(StatusCode::UNAUTHORIZED) && attempt == 0 {
                        tracing::debug!(registry = %self.host, path = %access.path, action = access.action(), "401 from the registry; asking for a new token");
                        self.auth
                            .invalidate(&credential, access, authorization.as_ref())
                            .await;
                        authorization = self.auth.authorization(&credential, access).await?;
                        continue;
                    }
                    return Err(match status {
                        Some(s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                            self.denied(access, &credential, s, &describe_oci_error(&e))
                        }
                        _ => anyhow!("{what}: {}", describe_oci_error(&e)),
                    });
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Puts the authorization into oci-client's token cache for this repository and action.
    async fn install(
        &self,
        key: &OciReference,
        op: RegistryOperation,
        authorization: Option<&Authorization>,
    ) {
        let token = match authorization {
            Some(Authorization::Bearer(t)) => RegistryTokenType::Bearer(RegistryToken::Token {
                token: t.expose().to_owned(),
            }),
            Some(Authorization::Basic { username, password }) => {
                RegistryTokenType::Basic(username.clone(), password.expose().to_owned())
            }
            None => return,
        };
        self.oci.tokens.insert(key, op, token).await;
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
        anyhow!(message)
    }

    /// Every tag of a repository, following pagination (`Link: <...>; rel="next"`).
    pub async fn list_tags(&self, path: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let _permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("listing tags of {}/{path}", self.host);
        let mut tags = Vec::new();
        let mut url = format!("{}?n={TAGS_PAGE_SIZE}", self.url(path, "tags/list"));
        loop {
            let (response, credential) = self.send(&access, &what, || self.http.get(&url)).await?;
            let status = response.status();
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = response.bytes().await.with_context(|| what.clone())?;
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.denied(
                    &access,
                    &credential,
                    status,
                    &registry_answer(status, &body),
                ));
            }
            if !status.is_success() {
                bail!("{what}: {}", registry_answer(status, &body));
            }
            let page: Page = serde_json::from_slice(&body)
                .with_context(|| format!("{what}: unreadable answer"))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = self.absolute(&next),
                None => break,
            }
        }
        Ok(tags)
    }

    fn absolute(&self, link: &str) -> String {
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_owned()
        } else {
            format!("{}://{}{link}", self.scheme, self.api_host)
        }
    }

    /// The digest a tag or digest resolves to, or `None` if the registry does not have it.
    /// One HEAD request.
    pub async fn manifest_digest(&self, path: &str, reference: &str) -> Result<Option<Digest>> {
        let permit = self.permit(1).await;
        let access = Access::pull(path);
        let what = format!("checking {}/{path}:{reference}", self.host);
        let url = self.url(path, &format!("manifests/{reference}"));
        let (response, credential) = self
            .send(&access, &what, || {
                self.http
                    .head(&url)
                    .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "))
            })
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.denied(&access, &credential, status, &registry_answer(status, &[])));
        }
        if !status.is_success() {
            bail!("{what}: {}", registry_answer(status, &[]));
        }
        match response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Ok(Some(Digest::parse(d).map_err(|e| {
                anyhow!(
                    "{} answered a bad digest for {path}:{reference}: {e}",
                    self.host
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
        let url = self.url(path, &format!("manifests/{reference}"));
        let (response, credential) = self
            .send(&access, &what, || {
                self.http
                    .get(&url)
                    .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "))
            })
            .await?;
        let status = response.status();
        let stated = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // An exact-size copy: the response's bytes may be a slice of a connection's 8 KiB
        // read buffer, which a cached manifest would otherwise keep alive.
        let body = Bytes::copy_from_slice(&response.bytes().await.with_context(|| what.clone())?);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.denied(
                &access,
                &credential,
                status,
                &registry_answer(status, &body),
            ));
        }
        if !status.is_success() {
            bail!("{what}: {}", registry_answer(status, &body));
        }
        let digest = Digest::of(&body);
        let expected = if reference.contains(':') {
            Some(reference.to_owned())
        } else {
            stated
        };
        let manifest = Manifest::parse(body, digest.clone()).with_context(|| what.clone())?;
        if let Some(expected) = expected
            && expected != digest.as_str()
        {
            bail!("{what}: the bytes hash to {digest}, not {expected}");
        }
        Ok(manifest)
    }

    /// Writes a manifest as its exact bytes and media type, under a tag or its digest.
    pub async fn push_manifest(
        &self,
        path: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<()> {
        let _permit = self.permit(1).await;
        let content_type = HeaderValue::from_str(&manifest.media_type)
            .map_err(|_| anyhow!("unusable media type {:?}", manifest.media_type))?;
        let image = self.reference(path, reference);
        self.oci_call(
            &Access::push(path),
            &format!("writing manifest {}/{path}:{reference}", self.host),
            |oci| oci.push_manifest_raw(&image, manifest.bytes.clone(), content_type.clone()),
        )
        .await?;
        Ok(())
    }

    pub async fn blob_exists(&self, path: &str, digest: &Digest) -> Result<bool> {
        let _permit = self.permit(1).await;
        let image = self.reference(path, digest.as_str());
        self.oci_call(
            &Access::pull(path),
            &format!("checking blob {digest} in {}/{path}", self.host),
            |oci| oci.blob_exists(&image, digest.as_str()),
        )
        .await
    }

    /// Cross-repository mount. `Ok(false)` when the registry did not mount (it may offer an
    /// upload session instead, which is cancelled): the caller uploads.
    pub async fn mount_blob(&self, path: &str, from: &str, digest: &Digest) -> Result<bool> {
        let _permit = self.permit(1).await;
        let access = Access::mount(path, from);
        let url = format!(
            "{}?mount={digest}&from={from}",
            self.url(path, "blobs/uploads/")
        );
        let what = format!("mounting {digest} into {}/{path}", self.host);
        let (response, credential) = match self
            .send(&access, &what, || {
                self.http.post(&url).header(CONTENT_LENGTH, 0)
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(registry = %self.host, path, %digest, error = %format!("{e:#}"), "mount not possible; uploading instead");
                return Ok(false);
            }
        };
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Some(location) = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    let cancel = self.absolute(location);
                    if let Ok(Some(a)) = self.auth.authorization(&credential, &access).await {
                        self.count_request();
                        let _ = a.apply(self.http.delete(cancel)).send().await;
                    } else {
                        self.count_request();
                        let _ = self.http.delete(cancel).send().await;
                    }
                }
                Ok(false)
            }
            status => {
                tracing::debug!(registry = %self.host, path, %digest, %status, "mount refused; uploading instead");
                Ok(false)
            }
        }
    }

    /// Opens a blob for reading.
    pub async fn pull_blob(
        &self,
        path: &str,
        digest: &Digest,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<>> {
        let image = self.reference(path, digest.as_str());
        let stream = self
            .oci_call(
                &Access::pull(path),
                &format!("reading blob {digest} from {}/{path}", self.host),
                |oci| oci.pull_blob_stream(&image, digest.as_str()),
            )
            .await?;
        Ok(stream.stream)
    }

    /// Uploads a blob from a stream in one monolithic PUT. The bytes are hashed as they pass
    /// and the body fails before its end if they do not match `digest`, so a corrupt blob is
    /// never committed (the registry's own `?digest=` check is a second line).
    ///
    /// The upload session is opened with a fresh token (retried once on a 401), then the
    /// stream goes out with that session's token: a stream cannot be sent twice.
    pub async fn push_blob<S>(
        &self,
        path: &str,
        digest: &Digest,
        size: u64,
        source: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let access = Access::push(path);
        let what = format!("uploading blob {digest} to {}/{path}", self.host);
        let start = self.url(path, "blobs/uploads/");
        let (response, credential) = self
            .send(&access, &what, || {
                self.http.post(&start).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = response.bytes().await.unwrap_or_default();
            return Err(self.denied(
                &access,
                &credential,
                status,
                &registry_answer(status, &body),
            ));
        }
        if status != StatusCode::ACCEPTED {
            let body = response.bytes().await.unwrap_or_default();
            bail!("{what}: {}", registry_answer(status, &body));
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("{what}: the registry opened an upload without a Location"))?;
        let mut target = reqwest::Url::parse(&self.absolute(location))
            .map_err(|e| anyhow!("{what}: unusable upload location: {e}"))?;
        target
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let failure = Arc::new(std::sync::Mutex::new(None::<String>));
        let body = verify_stream(
            source,
            digest.clone(),
            size,
            failure.clone(),
            self.traffic.clone(),
        );
        let mut request = self
            .http
            .put(target)
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = self.auth.authorization(&credential, &access).await? {
            request = a.apply(request);
        }
        self.count_request();
        let result = request.send().await;
        if let Some(why) = failure.lock().ok().and_then(|mut f| f.take()) {
            bail!("{why}");
        }
        let response =
            result.map_err(|e| anyhow!("{what}: {}", describe_http_error(&e, &self.host)))?;
        let status = response.status();
        if status == StatusCode::CREATED {
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.denied(
                &access,
                &credential,
                status,
                &registry_answer(status, &body),
            ));
        }
        bail!("{what}: {}", registry_answer(status, &body))
    }
}

/// Base directories holding `HOST[:PORT]/*.crt`.
fn certs_dirs() -> Vec<PathBuf> {
    match std::env::var_os(CERTS_DIRS_ENV).filter(|v| !v.is_empty()) {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
    }
}

/// The CA certificates of one certs.d file, for both HTTP clients.
struct ExtraRoot {
    reqwest: Vec<reqwest::Certificate>,
    oci: Vec<Certificate>,
}

/// CA certificates for `host` from `BASE/HOST[:PORT]/*.crt` under each base directory.
fn extra_roots(host: &str, api_host: &str, bases: &[PathBuf]) -> Result<Vec<ExtraRoot>> {
    let mut names = vec![host.to_owned()];
    if api_host != host {
        names.push(api_host.to_owned());
    }
    let mut roots = Vec::new();
    for base in bases {
        for name in &names {
            let dir = base.join(name);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => bail!("reading CA certificates in {}: {e}", dir.display()),
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            files.sort();
            for file in files {
                roots.push(read_ca_file(&file)?);
                tracing::debug!(registry = host, file = %file.display(), "trusting extra CA certificates");
            }
        }
    }
    Ok(roots)
}

fn read_ca_file(file: &Path) -> Result<ExtraRoot> {
    let data = std::fs::read(file)
        .map_err(|e| anyhow!("reading CA certificate {}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&data);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let reqwest = reqwest::Certificate::from_pem_bundle(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: not a PEM certificate: {e}",
                file.display()
            )
        })?;
        let oci = text
            .split_inclusive("-----END CERTIFICATE-----")
            .filter_map(|block| {
                block
                    .find("-----BEGIN CERTIFICATE-----")
                    .map(|at| block.as_bytes()[at..].to_vec())
            })
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            })
            .collect();
        Ok(ExtraRoot { reqwest, oci })
    } else {
        let cert = reqwest::Certificate::from_der(&data).map_err(|e| {
            anyhow!(
                "CA certificate {}: neither PEM nor DER: {e}",
                file.display()
            )
        })?;
        Ok(ExtraRoot {
            reqwest: vec![cert],
            oci: vec![Certificate {
                encoding: CertificateEncoding::Der,
                data,
            }],
        })
    }
}

/// The HTTP status behind an oci-client error, when there is one.
fn oci_status(e: &OciDistributionError) -> Option<StatusCode> {
    match e {
        OciDistributionError::UnauthorizedError { .. } => Some(StatusCode::UNAUTHORIZED),
        OciDistributionError::AuthenticationFailure(_) => Some(StatusCode::UNAUTHORIZED),
        OciDistributionError::RequestError(e) => e.status(),
        OciDistributionError::ServerError { code, .. } => StatusCode::from_u16(*code).ok(),
        OciDistributionError::RegistryError { envelope, .. } => {
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized))
            {
                Some(StatusCode::UNAUTHORIZED)
            } else if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Denied))
            {
                Some(StatusCode::FORBIDDEN)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// With `--insecure`, a registry may speak plain HTTP: try TLS (certificates unchecked) and
/// fall back to HTTP when the handshake fails, as oc does.
async fn probe_scheme(http: &reqwest::Client, api_host: &str) -> &'static str {
    match http
        .get(format!("https://{api_host}/v2/"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(_) => "https",
        Err(e) => {
            tracing::debug!(registry = api_host, error = %e, "TLS probe failed; using plain HTTP");
            "http"
        }
    }
}

struct VerifyState<S> {
    inner: std::pin::Pin<Box<S>>,
    hasher: sha2::Sha256,
    seen: u64,
    done: bool,
}

fn verify_stream<S>(
    source: S,
    digest: Digest,
    size: u64,
    failure: Arc<std::sync::Mutex<Option<String>>>,
    traffic: Arc<Traffic>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let state = VerifyState {
        inner: Box::pin(source),
        hasher: sha2::Sha256::new(),
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
            let fail = |st: VerifyState<S>, why: String| {
                if let Ok(mut f) = failure.lock() {
                    *f = Some(why.clone());
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
                            format!(
                                "blob {digest}: the source sent more than the {size} bytes its descriptor gives"
                            ),
                        );
                    }
                    st.hasher.update(&chunk);
                    traffic
                        .bytes_uploaded
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if st.seen == size {
                        st.done = true;
                        let actual =
                            Digest::from_sha256(&std::mem::take(&mut st.hasher).finalize());
                        if actual != digest {
                            return fail(
                                st,
                                format!(
                                    "blob {digest}: digest mismatch, the source's bytes hash to {actual}; not committed"
                                ),
                            );
                        }
                    }
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => {
                    let seen = st.seen;
                    fail(
                        st,
                        format!("blob {digest}: reading the source failed after {seen} bytes: {e}"),
                    )
                }
                None if st.seen < size => {
                    let seen = st.seen;
                    fail(
                        st,
                        format!("blob {digest}: the source ended after {seen} of {size} bytes"),
                    )
                }
                None => None,
            }
        }
    })
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

/// oci-client's errors, without URLs that could carry tokens, and with the registry's codes.
pub fn describe_oci_error(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let parts: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect();
            parts.join("; ")
        }
        OciDistributionError::ServerError { code, message, .. } => {
            format!("HTTP {code}: {}", message.trim())
        }
        OciDistributionError::UnauthorizedError { .. } => "unauthorized (401)".to_owned(),
        OciDistributionError::RequestError(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
