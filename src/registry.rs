//! All registry I/O. Built on oci-client; the few requests it cannot make (tag lists that
//! follow `Link`, a one-request manifest HEAD that tells "absent" apart, cross-repository
//! mounts) go through reqwest with the same credentials.
//!
//! One [`RegistryClient`] per registry host: oci-client keeps one credential per host per
//! client, and the per-registry request limit lives here too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference as OciReference, RegistryOperation};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, LINK};
use sha2::Digest as _;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use crate::credentials::Credentials;
use crate::manifest::{MANIFEST_MEDIA_TYPES, Manifest};
use crate::reference::Digest;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Tokens usually live 5 minutes or more; refetch well before that.
const TOKEN_REUSE: Duration = Duration::from_secs(120);
const TAGS_PAGE_SIZE: usize = 1000;

/// (repository path, push?) — one token per repository and action, as registries scope them.
type TokenKey = (String, bool);
/// A bearer token (`None`: the registry wants none) and when it was fetched.
type CachedToken = (Option<String>, Instant);

/// Settings shared by every registry client.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub insecure: bool,
    pub max_per_registry: usize,
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
        let auth = self.credentials.for_registry(host)?;
        let client = Arc::new(
            RegistryClient::connect(host, auth, &self.options, self.traffic.clone()).await?,
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
    oci: oci_client::Client,
    http: reqwest::Client,
    auth: RegistryAuth,
    permits: Semaphore,
    max_permits: usize,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    traffic: Arc<Traffic>,
}

impl RegistryClient {
    async fn connect(
        host: &str,
        auth: RegistryAuth,
        options: &RegistryOptions,
        traffic: Arc<Traffic>,
    ) -> Result<Self> {
        let api_host = OciReference::with_tag(host.to_owned(), "x".to_owned(), "x".to_owned())
            .resolve_registry()
            .to_owned();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(options.insecure)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let scheme = if options.insecure {
            probe_scheme(&http, &api_host).await
        } else {
            "https"
        };
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.insecure,
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        };
        let oci = oci_client::Client::try_from(config)
            .with_context(|| format!("configuring the client for {host}"))?;
        // Stored first, so no later anonymous call can take its place (first stored wins).
        oci.store_auth_if_needed(&api_host, &auth).await;
        let max_permits = options.max_per_registry.max(1);
        Ok(Self {
            host: host.to_owned(),
            api_host,
            scheme,
            oci,
            http,
            auth,
            permits: Semaphore::new(max_permits),
            max_permits,
            tokens: Mutex::default(),
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

    /// Adds credentials for a request oci-client does not make: a bearer token for the
    /// repository's scope when the registry uses tokens, else basic auth if configured.
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
        push: bool,
    ) -> Result<reqwest::RequestBuilder> {
        let key = (path.to_owned(), push);
        let token = {
            let tokens = self.tokens.lock().await;
            tokens
                .get(&key)
                .filter(|(_, at)| at.elapsed() < TOKEN_REUSE)
                .map(|(t, _)| t.clone())
        };
        let token = match token {
            Some(t) => t,
            None => {
                let op = if push {
                    RegistryOperation::Push
                } else {
                    RegistryOperation::Pull
                };
                self.count_request();
                let t = self
                    .oci
                    .auth(&self.reference(path, "latest"), &self.auth, op)
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "authenticating to {} for {path}: {}",
                            self.host,
                            describe_oci_error(&e)
                        )
                    })?;
                self.tokens
                    .lock()
                    .await
                    .insert(key, (t.clone(), Instant::now()));
                t
            }
        };
        Ok(match (token, &self.auth) {
            (Some(t), _) => request.bearer_auth(t),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, _) => request,
        })
    }

    /// Every tag of a repository, following pagination (`Link: <...>; rel="next"`).
    pub async fn list_tags(&self, path: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let _permit = self.permit(1).await;
        let mut tags = Vec::new();
        let mut url = format!("{}?n={TAGS_PAGE_SIZE}", self.url(path, "tags/list"));
        loop {
            self.count_request();
            let response = self
                .authorize(self.http.get(&url), path, false)
                .await?
                .send()
                .await
                .with_context(|| format!("listing tags of {}/{path}", self.host))?;
            let status = response.status();
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = response
                .bytes()
                .await
                .with_context(|| format!("listing tags of {}/{path}", self.host))?;
            if !status.is_success() {
                bail!(
                    "listing tags of {}/{path}: {}",
                    self.host,
                    registry_answer(status, &body)
                );
            }
            let page: Page = serde_json::from_slice(&body).with_context(|| {
                format!("listing tags of {}/{path}: unreadable answer", self.host)
            })?;
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
        let _permit = self.permit(1).await;
        self.count_request();
        let request = self
            .http
            .head(self.url(path, &format!("manifests/{reference}")))
            .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "));
        let response = self
            .authorize(request, path, false)
            .await?
            .send()
            .await
            .with_context(|| format!("checking {}/{path}:{reference}", self.host))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            bail!(
                "checking {}/{path}:{reference}: {}",
                self.host,
                registry_answer(status, &[])
            );
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
                drop(_permit);
                Ok(Some(self.pull_manifest(path, reference).await?.digest))
            }
        }
    }

    /// A manifest's exact bytes (digest verified).
    pub async fn pull_manifest(&self, path: &str, reference: &str) -> Result<Manifest> {
        let _permit = self.permit(1).await;
        self.count_request();
        let (bytes, digest) = self
            .oci
            .pull_manifest_raw(
                &self.reference(path, reference),
                &self.auth,
                MANIFEST_MEDIA_TYPES,
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "reading manifest {}/{path}:{reference}: {}",
                    self.host,
                    describe_oci_error(&e)
                )
            })?;
        let digest = Digest::parse(&digest)
            .map_err(|e| anyhow!("{}: bad digest for {path}:{reference}: {e}", self.host))?;
        Manifest::parse(bytes, digest)
            .with_context(|| format!("reading manifest {}/{path}:{reference}", self.host))
    }

    /// Writes a manifest as its exact bytes and media type, under a tag or its digest.
    pub async fn push_manifest(
        &self,
        path: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<()> {
        let _permit = self.permit(1).await;
        self.count_request();
        let content_type = HeaderValue::from_str(&manifest.media_type)
            .map_err(|_| anyhow!("unusable media type {:?}", manifest.media_type))?;
        self.oci
            .push_manifest_raw(
                &self.reference(path, reference),
                manifest.bytes.clone(),
                content_type,
            )
            .await
            .map_err(|e| {
                anyhow!(
                    "writing manifest {}/{path}:{reference}: {}",
                    self.host,
                    describe_oci_error(&e)
                )
            })?;
        Ok(())
    }

    pub async fn blob_exists(&self, path: &str, digest: &Digest) -> Result<bool> {
        let _permit = self.permit(1).await;
        self.count_request();
        self.oci
            .blob_exists(&self.reference(path, digest.as_str()), digest.as_str())
            .await
            .map_err(|e| {
                anyhow!(
                    "checking blob {digest} in {}/{path}: {}",
                    self.host,
                    describe_oci_error(&e)
                )
            })
    }

    /// Cross-repository mount. `Ok(false)` when the registry did not mount (it may offer an
    /// upload session instead, which is cancelled): the caller uploads.
    pub async fn mount_blob(&self, path: &str, from: &str, digest: &Digest) -> Result<bool> {
        let _permit = self.permit(1).await;
        self.count_request();
        let url = format!(
            "{}?mount={digest}&from={from}",
            self.url(path, "blobs/uploads/")
        );
        let request = self
            .authorize(self.http.post(url), path, true)
            .await?
            .header(reqwest::header::CONTENT_LENGTH, 0);
        let response = request
            .send()
            .await
            .with_context(|| format!("mounting {digest} into {}/{path}", self.host))?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Some(location) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    let cancel = self
                        .authorize(self.http.delete(self.absolute(location)), path, true)
                        .await?;
                    self.count_request();
                    let _ = cancel.send().await;
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
        self.count_request();
        let stream = self
            .oci
            .pull_blob_stream(&self.reference(path, digest.as_str()), digest.as_str())
            .await
            .map_err(|e| {
                anyhow!(
                    "reading blob {digest} from {}/{path}: {}",
                    self.host,
                    describe_oci_error(&e)
                )
            })?;
        Ok(stream.stream)
    }

    /// Uploads a blob from a stream in one monolithic PUT. The bytes are hashed as they pass
    /// and the body fails before its end if they do not match `digest`, so a corrupt blob is
    /// never committed (the registry's own `?digest=` check is a second line).
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
        self.count_request();
        self.count_request();
        let failure = Arc::new(std::sync::Mutex::new(None::<String>));
        let body = verify_stream(
            source,
            digest.clone(),
            size,
            failure.clone(),
            self.traffic.clone(),
        );
        let result = self
            .oci
            .push_blob_stream(
                &self.reference(path, digest.as_str()),
                body,
                digest.as_str(),
                Some(size),
            )
            .await;
        if let Some(why) = failure.lock().ok().and_then(|mut f| f.take()) {
            bail!("{why}");
        }
        result.map(|_| ()).map_err(|e| {
            anyhow!(
                "uploading blob {digest} to {}/{path}: {}",
                self.host,
                describe_oci_error(&e)
            )
        })
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
) -> impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static
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
                Some((Err(OciDistributionError::GenericError(Some(why))), st))
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
