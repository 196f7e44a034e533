//! Integration-test harness: real `docker-registry` processes (CNCF distribution 2.8.2,
//! Debian package `docker-registry`) plus helpers that seed real, valid images into them.
//!
//! Use from a test file with `mod support;`. Everything here is blocking (ureq, no async).
//!
//! * [`Registry::start`] starts one registry on a free 127.0.0.1 port with a private temporary
//!   filesystem storage, plain HTTP, deletes enabled.
//! * The registry's access log (one Combined-Log-Format line per served HTTP request, on its
//!   stdout) is written to `access.log` in the temp dir; its JSON application log (stderr) to
//!   `registry.log`. [`Registry::requests`] parses the access log.
//! * Requests made by this harness carry the user agent [`HARNESS_USER_AGENT`]; see
//!   [`Request::is_harness`] to tell them apart from the tool under test.
//! * The seeding helpers (`seed_*`) build deterministic images: same arguments, same digests.
#![allow(dead_code)]

pub mod cli;
pub mod cosign;
pub mod delay;
pub mod ferro;
pub mod junit;
pub mod other;
pub mod proxy;
pub mod tls;
pub mod token;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// User agent of every request the harness itself sends.
pub const HARNESS_USER_AGENT: &str = "image-mirror-test-harness";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The four manifest media types, as sent in `Accept` by [`Registry::manifest`] and
/// [`Registry::manifest_digest`]. distribution 2.8.2 answers 404 MANIFEST_UNKNOWN for an OCI
/// index if `Accept` does not list it, serves a Docker manifest list's linux/amd64 child if
/// `Accept` lists v2s2 but not lists, and 400 MANIFEST_INVALID for v2s2 manifests and lists if
/// `Accept` lists neither (it tries a schema 1 conversion).
pub const ALL_MANIFEST_TYPES: [&str; 4] = [
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];

/// Query parameter of the harness's own log-synchronisation requests (filtered out of
/// [`Registry::requests`]).
const SYNC_PARAM: &str = "harness-log-sync";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP request served by the registry, as recorded in its access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Request URI as sent: path plus query string, e.g.
    /// `/v2/foo/blobs/uploads/?mount=sha256:..&from=bar`.
    pub uri: String,
    pub status: u16,
    pub user_agent: String,
}

impl Request {
    /// The URI without its query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// Value of a query parameter (not percent-decoded), if present.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        let (_, query) = self.uri.split_once('?')?;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// Sent by this harness (seeding, checks), not by the tool under test.
    pub fn is_harness(&self) -> bool {
        self.user_agent == HARNESS_USER_AGENT
    }

    /// A cross-repository blob mount attempt: `POST .../blobs/uploads/?mount=<digest>&from=<repo>`.
    pub fn is_mount(&self) -> bool {
        self.method == "POST" && self.query_param("mount").is_some()
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} -> {} ({})",
            self.method, self.uri, self.status, self.user_agent
        )
    }
}

/// Parses one Combined Log Format line as written by distribution's access log:
/// `127.0.0.1 - - [23/Nov/2026:11:05:52 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
pub fn parse_access_log_line(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once("] \"")?;
    let (request_line, rest) = rest.split_once("\" ")?;
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let uri = parts.next()?.to_string();
    let mut fields = rest.splitn(3, ' ');
    let status = fields.next()?.parse().ok()?;
    let _size = fields.next()?;
    // `"referer" "user agent"`
    let tail = fields.next().unwrap_or("");
    let user_agent = tail
        .rsplit_once("\"")
        .and_then(|(before, _)| before.rsplit_once(" \"").map(|(_, ua)| ua.to_string()))
        .unwrap_or_default();
    Some(Request {
        method,
        uri,
        status,
        user_agent,
    })
}

/// What was seeded (or found by [`Registry::describe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Digest of the top-level manifest (image manifest, index or list).
    pub digest: String,
    /// Media type of the top-level manifest.
    pub media_type: String,
    /// Every blob digest referenced (configs and layers), children's included, deduplicated,
    /// in order of first reference.
    pub blobs: Vec<String>,
    /// Digests of child manifests of an index / manifest list (empty for a single image).
    pub children: Vec<String>,
}

/// A registry the seeding helpers push into: distribution ([`Registry`]) or another
/// implementation (e.g. [`ferro::Ferro`], which has the referrers API).
pub trait Push {
    /// Uploads a blob; returns its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String;
    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest of `body`.
    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String;
}

impl Push for Registry {
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        Registry::push_blob(self, repo, data)
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        Registry::push_manifest(self, repo, reference, media_type, body)
    }
}

impl<T: Push + ?Sized> Push for &T {
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        (**self).push_blob(repo, data)
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        (**self).push_manifest(repo, reference, media_type, body)
    }
}

/// One running `docker-registry` process. Dropping it kills the process and removes its storage.
pub struct Registry {
    child: Child,
    port: u16,
    agent: ureq::Agent,
    sync_counter: AtomicU64,
    /// `http` or `https` (TLS configured).
    scheme: &'static str,
    /// Keeps the token issuer of a token-auth registry running as long as the registry.
    issuer: Option<std::sync::Arc<token::TokenIssuer>>,
    // Last field: dropped after the process was killed.
    dir: TempDir,
}

fn registry_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_REGISTRY_BIN") {
        return PathBuf::from(p);
    }
    let default = Path::new("/usr/bin/docker-registry");
    if default.exists() {
        default.to_path_buf()
    } else {
        PathBuf::from("docker-registry")
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Extra settings for [`Registry::start_with`]: authentication and TLS.
#[derive(Clone, Default)]
pub struct RegistryConfig {
    /// Basic authentication (`auth: htpasswd`) with these (user, password) pairs, hashed
    /// with bcrypt. The harness's own requests use the first pair.
    pub htpasswd: Vec<(String, String)>,
    /// Token authentication (`auth: token`) against this issuer. The harness's own requests
    /// carry tokens it mints with every action on the repository they touch.
    pub token: Option<std::sync::Arc<token::TokenIssuer>>,
    /// Serve HTTPS with this certificate (`http.tls`). The harness does not verify it.
    pub tls: Option<tls::ServerCert>,
    /// With `tls`: require a client certificate signed by this CA (`http.tls.clientcas`).
    pub client_auth: Option<ClientAuth>,
    /// `catalog.maxentries`: the most repositories one `_catalog` page holds (a larger `n`
    /// is refused), so that listings really page.
    pub catalog_max_entries: Option<usize>,
}

/// Mutual TLS for a test registry.
#[derive(Clone)]
pub struct ClientAuth {
    /// PEM of the CA that client certificates must be signed by.
    pub ca_pem: String,
    /// The certificate the harness's own requests present.
    pub harness: tls::ServerCert,
}

/// How the harness authenticates its own requests.
#[derive(Clone)]
enum HarnessAuth {
    Basic(String),
    Token(std::sync::Arc<token::TokenIssuer>),
}

/// The access the harness needs for a request to `path?query`: everything on the repository
/// it names (plus pull on a mount's `from`), the catalog for `/v2/_catalog`.
fn harness_access(path: &str, query: Option<&str>) -> Vec<(String, String, Vec<String>)> {
    let all = || vec!["pull".to_owned(), "push".to_owned(), "delete".to_owned()];
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Vec::new();
    };
    if rest.is_empty() {
        return Vec::new();
    }
    if rest.starts_with("_catalog") {
        return vec![("registry".into(), "catalog".into(), vec!["*".into()])];
    }
    let name = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m).map(|i| &rest[..i]))
        .max_by_key(|n| n.len());
    let Some(name) = name else {
        return Vec::new();
    };
    let mut access = vec![("repository".to_owned(), name.to_owned(), all())];
    if let Some(from) = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("from=").map(str::to_owned))
    }) {
        access.push(("repository".to_owned(), from, vec!["pull".to_owned()]));
    }
    access
}

impl ureq::middleware::Middleware for HarnessAuth {
    fn handle(
        &self,
        mut request: ureq::http::Request<ureq::SendBody>,
        next: ureq::middleware::MiddlewareNext,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let value = match self {
            HarnessAuth::Basic(value) => value.clone(),
            HarnessAuth::Token(issuer) => {
                let access = harness_access(request.uri().path(), request.uri().query());
                format!("Bearer {}", issuer.mint("harness", &access))
            }
        };
        if let Ok(v) = ureq::http::HeaderValue::from_str(&value) {
            request.headers_mut().insert("authorization", v);
        }
        next.handle(request)
    }
}

fn new_agent() -> ureq::Agent {
    new_agent_with(&RegistryConfig::default())
}

fn new_agent_with(config: &RegistryConfig) -> ureq::Agent {
    use base64::Engine as _;
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(HARNESS_USER_AGENT)
        .timeout_global(Some(Duration::from_secs(120)));
    if config.tls.is_some() {
        let client_cert = config.client_auth.as_ref().map(|auth| {
            let cert = ureq::tls::Certificate::from_pem(auth.harness.cert_pem.as_bytes())
                .expect("harness client certificate")
                .to_owned();
            let key = ureq::tls::PrivateKey::from_pem(auth.harness.key_pem.as_bytes())
                .expect("harness client key")
                .to_owned();
            ureq::tls::ClientCert::new_with_certs(&[cert], key)
        });
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .disable_verification(true)
                .client_cert(client_cert)
                .build(),
        );
    }
    if let Some(issuer) = &config.token {
        builder = builder.middleware(HarnessAuth::Token(issuer.clone()));
    } else if let Some((user, password)) = config.htpasswd.first() {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        builder = builder.middleware(HarnessAuth::Basic(format!("Basic {encoded}")));
    }
    builder.build().into()
}

/// The `auth:` section and `http.tls` lines for `config`, writing the files they name into
/// `dir`.
fn extra_yaml(config: &RegistryConfig, dir: &Path) -> (String, String) {
    let mut auth = String::new();
    if let Some(issuer) = &config.token {
        auth = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            issuer.realm(),
            token::SERVICE,
            token::ISSUER,
            issuer.bundle_path().display()
        );
    } else if !config.htpasswd.is_empty() {
        let path = dir.join("htpasswd");
        let mut lines = String::new();
        for (user, password) in &config.htpasswd {
            // Cost 4 (the minimum): the registry checks a hash per request.
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            lines.push_str(&format!("{user}:{hash}\n"));
        }
        fs::write(&path, lines).expect("write htpasswd");
        auth = format!(
            "auth:\n  htpasswd:\n    realm: image-mirror-test\n    path: {}\n",
            path.display()
        );
    }
    if let Some(n) = config.catalog_max_entries {
        auth.push_str(&format!("catalog:\n  maxentries: {n}\n"));
    }
    let mut tls = String::new();
    if let Some(cert) = &config.tls {
        let cert_path = dir.join("server.crt");
        let key_path = dir.join("server.key");
        fs::write(&cert_path, &cert.cert_pem).expect("write server cert");
        fs::write(&key_path, &cert.key_pem).expect("write server key");
        tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert_path.display(),
            key_path.display()
        );
        if let Some(auth) = &config.client_auth {
            let ca_path = dir.join("client-ca.crt");
            fs::write(&ca_path, &auth.ca_pem).expect("write client CA");
            tls.push_str(&format!("    clientcas:\n      - {}\n", ca_path.display()));
        }
    }
    (auth, tls)
}

fn config_yaml(port: u16, root: &Path) -> String {
    format!(
        "version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: image-mirror-test-harness-secret
",
        root = root.display()
    )
}

/// `sha256:<hex>` of `data`.
///
/// Large inputs go through coreutils `sha256sum` when available: the `sha2` crate in an
/// unoptimised test build hashes only ~30 MB/s (2 s for 64 MiB), `sha256sum` ~200 MB/s+.
pub fn sha256_digest(data: &[u8]) -> String {
    if data.len() >= 1 << 20
        && let Some(d) = sha256sum_external(data)
    {
        return d;
    }
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash.iter() {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

fn sha256sum_external(data: &[u8]) -> Option<String> {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let out = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(data));
        let out = child.wait_with_output();
        (writer.join(), out)
    });
    let (Ok(Ok(())), Ok(out)) = out else {
        return None;
    };
    let hex = String::from_utf8(out.stdout).ok()?;
    let hex = hex.split_whitespace().next()?;
    (out.status.success() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{hex}"))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Registry {
    /// Starts a registry; panics (with its logs) if it does not answer `GET /v2/` with 200
    /// within ~10 s. Retries with another port if the chosen one was taken meanwhile.
    pub fn start() -> Registry {
        Self::start_with(RegistryConfig::default())
    }

    /// [`Registry::start`] with authentication and/or TLS.
    pub fn start_with(config: RegistryConfig) -> Registry {
        let mut last_failure = String::new();
        for _attempt in 0..5 {
            match Self::try_start_with(free_port(), &config) {
                Ok(r) => return r,
                Err(e) => last_failure = e,
            }
        }
        panic!("docker-registry did not start after 5 attempts; last failure:\n{last_failure}");
    }

    /// Starts a registry on `port`. Err (with the logs) if the process exited, e.g. because the
    /// port is taken; panics if it neither exits nor comes up within ~10 s.
    pub fn try_start_on(port: u16) -> Result<Registry, String> {
        Self::try_start_with(port, &RegistryConfig::default())
    }

    /// [`Registry::try_start_on`] with authentication and/or TLS.
    pub fn try_start_with(port: u16, extra: &RegistryConfig) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("image-mirror-registry-")
            .tempdir()
            .expect("create temp dir");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create storage dir");
        let config = dir.path().join("config.yml");
        let (auth_yaml, tls_yaml) = extra_yaml(extra, dir.path());
        fs::write(
            &config,
            format!("{}{tls_yaml}{auth_yaml}", config_yaml(port, &data)),
        )
        .expect("write registry config");
        let access_log = File::create(dir.path().join("access.log")).expect("create access.log");
        let app_log = File::create(dir.path().join("registry.log")).expect("create registry.log");
        let bin = registry_binary();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(access_log)
            .stderr(app_log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); install Debian's docker-registry package \
                     (apt-get install docker-registry) or set DOCKER_REGISTRY_BIN",
                    bin.display()
                )
            });
        let mut reg = Registry {
            child,
            port,
            agent: new_agent_with(extra),
            sync_counter: AtomicU64::new(0),
            scheme: if extra.tls.is_some() { "https" } else { "http" },
            issuer: extra.token.clone(),
            dir,
        };
        let listening = format!("listening on 127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = reg.child.try_wait() {
                // `reg` is dropped on return: nothing left to kill.
                return Err(format!(
                    "docker-registry on port {port} exited with {status}\n{}",
                    reg.logs()
                ));
            }
            // Only trust a 200 once *our* process has logged that it listens on the port
            // (guards against another process having grabbed the port meanwhile).
            if reg.app_log().contains(&listening)
                && let Ok(resp) = reg.agent.get(format!("{}/v2/", reg.url())).call()
                && resp.status().as_u16() == 200
            {
                return Ok(reg);
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry on port {port} did not answer GET /v2/ with 200 within {:?}\n{}",
                    START_TIMEOUT,
                    reg.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://` when serving TLS)
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host())
    }

    /// OS process id of the registry.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The harness's HTTP client (no proxy, 4xx/5xx are not errors, no redirects, user agent
    /// [`HARNESS_USER_AGENT`]) for raw requests.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The temporary directory holding config.yml, access.log, registry.log and data/.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Raw access log (registry stdout).
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.path().join("access.log"))
    }

    /// Raw JSON application log (registry stderr).
    pub fn app_log(&self) -> String {
        read_lossy(&self.dir.path().join("registry.log"))
    }

    fn logs(&self) -> String {
        format!(
            "--- registry.log ---\n{}\n--- access.log ---\n{}",
            self.app_log(),
            self.access_log()
        )
    }

    fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.url())
    }

    fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
        resp.body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .expect("read response body")
    }

    fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn fail(what: &str, resp: &mut ureq::http::Response<ureq::Body>) -> ! {
        let status = resp.status();
        let body = Self::read_body(resp);
        panic!(
            "{what}: unexpected HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )
    }

    /// Monolithic upload: `POST /v2/<repo>/blobs/uploads/` then `PUT <location>&digest=`.
    /// Returns the blob digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blob_as(repo, data, &sha256_digest(data))
    }

    /// Uploads `data` under `digest` (a sha512 one, say), which the registry checks.
    pub fn push_blob_as(&self, repo: &str, data: &[u8], digest: &str) -> String {
        let digest = digest.to_owned();
        let what = format!("push blob {digest} to {repo}");
        let mut resp = self
            .agent
            .post(self.v2(&format!("{repo}/blobs/uploads/")))
            .send_empty()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if resp.status().as_u16() != 202 {
            Self::fail(&what, &mut resp);
        }
        let location = Self::header(&resp, "Location").expect("upload Location header");
        Self::read_body(&mut resp);
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.url())
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(&digest);
        // Content-Type matters: with a form content type Go parses (and consumes) the body.
        let mut resp = self
            .agent
            .put(url)
            .content_type("application/octet-stream")
            .send(data)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if resp.status().as_u16() != 201 {
            Self::fail(&what, &mut resp);
        }
        let returned = Self::header(&resp, "Docker-Content-Digest");
        Self::read_body(&mut resp);
        // distribution answers with its canonical (sha256) digest whatever was asked.
        if digest.starts_with("sha256:") {
            assert_eq!(
                returned.as_deref(),
                Some(digest.as_str()),
                "{what}: digest header"
            );
        }
        digest
    }

    /// Cross-repository mount: `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`.
    /// Returns true if the registry mounted the blob (201), false if it fell back to a new
    /// upload session (202).
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &str) -> bool {
        let what = format!("mount {digest} from {from} into {repo}");
        let mut resp = self
            .agent
            .post(self.v2(&format!("{repo}/blobs/uploads/?mount={digest}&from={from}")))
            .send_empty()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            201 => {
                Self::read_body(&mut resp);
                true
            }
            202 => {
                Self::read_body(&mut resp);
                false
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest of `body` (checked against the
    /// registry's Docker-Content-Digest).
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let digest = sha256_digest(body);
        let what = format!("push manifest {repo}:{reference} ({media_type})");
        let mut resp = self
            .agent
            .put(self.v2(&format!("{repo}/manifests/{reference}")))
            .content_type(media_type)
            .send(body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if resp.status().as_u16() != 201 {
            Self::fail(&what, &mut resp);
        }
        let returned = Self::header(&resp, "Docker-Content-Digest");
        Self::read_body(&mut resp);
        // distribution answers with its canonical (sha256) digest whatever was asked.
        if digest.starts_with("sha256:") {
            assert_eq!(
                returned.as_deref(),
                Some(digest.as_str()),
                "{what}: digest header"
            );
        }
        digest
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting all four manifest types.
    /// Returns (Content-Type, body), or None on 404.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let what = format!("get manifest {repo}:{reference}");
        let mut resp = self
            .agent
            .get(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("Accept", ALL_MANIFEST_TYPES.join(", "))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => {
                let ct = Self::header(&resp, "Content-Type").unwrap_or_default();
                Some((ct, Self::read_body(&mut resp)))
            }
            404 => {
                Self::read_body(&mut resp);
                None
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `HEAD /v2/<repo>/manifests/<reference>` accepting all four manifest types.
    /// Returns Docker-Content-Digest, or None on 404.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let what = format!("head manifest {repo}:{reference}");
        let mut resp = self
            .agent
            .head(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("Accept", ALL_MANIFEST_TYPES.join(", "))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(
                Self::header(&resp, "Docker-Content-Digest")
                    .unwrap_or_else(|| panic!("{what}: no Docker-Content-Digest")),
            ),
            404 => None,
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (deletes are enabled). True on 202, false on 404.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> bool {
        self.delete(&format!("{repo}/manifests/{digest}"))
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`: unlinks the blob from the repository (useful to
    /// build a deliberately incomplete image). True on 202, false on 404.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> bool {
        self.delete(&format!("{repo}/blobs/{digest}"))
    }

    fn delete(&self, path: &str) -> bool {
        let what = format!("delete {path}");
        let mut resp = self
            .agent
            .delete(self.v2(path))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            202 => {
                Self::read_body(&mut resp);
                true
            }
            404 => {
                Self::read_body(&mut resp);
                false
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// Sorted tags of `repo`; empty if the repository is unknown (404 NAME_UNKNOWN).
    /// Follows `Link` headers, although distribution 2.8.2 never paginates tags.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut tags = Vec::new();
        let mut url = self.v2(&format!("{repo}/tags/list"));
        loop {
            let what = format!("list tags of {repo}");
            let mut resp = self
                .agent
                .get(&url)
                .call()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    Self::read_body(&mut resp);
                    break;
                }
                _ => Self::fail(&what, &mut resp),
            }
            let link = Self::header(&resp, "Link");
            let body: serde_json::Value =
                serde_json::from_slice(&Self::read_body(&mut resp)).expect("tags/list JSON");
            if let Some(list) = body["tags"].as_array() {
                tags.extend(
                    list.iter()
                        .map(|t| t.as_str().expect("tag string").to_string()),
                );
            }
            match link.as_deref().and_then(next_link) {
                Some(next) => url = format!("{}{next}", self.url()),
                None => break,
            }
        }
        tags.sort();
        tags
    }

    /// Sorted repository names from `/v2/_catalog`.
    pub fn catalog(&self) -> Vec<String> {
        // distribution rejects n > 1000 with 400 PAGINATION_NUMBER_INVALID.
        let mut url = self.v2("_catalog?n=1000");
        let mut repos: Vec<String> = Vec::new();
        loop {
            let mut resp = self.agent.get(&url).call().expect("catalog");
            if resp.status().as_u16() != 200 {
                Self::fail("catalog", &mut resp);
            }
            let link = Self::header(&resp, "Link");
            let body: serde_json::Value =
                serde_json::from_slice(&Self::read_body(&mut resp)).expect("catalog JSON");
            if let Some(list) = body["repositories"].as_array() {
                repos.extend(list.iter().filter_map(|r| r.as_str().map(str::to_string)));
            }
            match link.as_deref().and_then(next_link) {
                Some(next) => url = format!("{}{next}", self.url()),
                None => break,
            }
        }
        repos.sort();
        repos
    }

    /// Size of the blob in `repo` (HEAD Content-Length), None if it is not there.
    pub fn blob_size(&self, repo: &str, digest: &str) -> Option<u64> {
        let what = format!("head blob {repo}@{digest}");
        let mut resp = self
            .agent
            .head(self.v2(&format!("{repo}/blobs/{digest}")))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(
                Self::header(&resp, "Content-Length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: no Content-Length")),
            ),
            404 => None,
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` is 200.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        self.blob_size(repo, digest).is_some()
    }

    /// Blob content, None on 404.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let what = format!("get blob {repo}@{digest}");
        let mut resp = self
            .agent
            .get(self.v2(&format!("{repo}/blobs/{digest}")))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(Self::read_body(&mut resp)),
            404 => {
                Self::read_body(&mut resp);
                None
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// Every HTTP request the registry has served so far, in log order (the harness's own
    /// log-sync requests excluded, its other requests included: see [`Request::is_harness`]).
    ///
    /// The access log line is written when a handler returns; to be sure every earlier request
    /// is in the file, this sends a marker request and waits until its line appears.
    pub fn requests(&self) -> Vec<Request> {
        let n = self.sync_counter.fetch_add(1, Ordering::SeqCst);
        let marker = format!("{SYNC_PARAM}={n}");
        let mut resp = self
            .agent
            .get(format!("{}/v2/?{marker}", self.url()))
            .call()
            .expect("log sync request");
        assert_eq!(resp.status().as_u16(), 200, "log sync request");
        Self::read_body(&mut resp);
        let deadline = Instant::now() + LOG_SYNC_TIMEOUT;
        let needle = format!("?{marker} ");
        while !self.access_log().contains(&needle) {
            if Instant::now() > deadline {
                panic!(
                    "access log never showed the sync request {marker}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // A line is written when its handler returns, which for a large body can be just after
        // the client got the last byte; give such stragglers a moment, then take every complete
        // line (a straggler landing after the sync line is still counted, keeping marks stable).
        std::thread::sleep(Duration::from_millis(10));
        let log = self.access_log();
        let complete = log.rfind('\n').map_or("", |i| &log[..i]);
        complete
            .lines()
            .filter_map(parse_access_log_line)
            .filter(|r| r.query_param(SYNC_PARAM).is_none())
            .collect()
    }

    /// Current number of logged requests; pass to [`Registry::requests_since`].
    pub fn mark(&self) -> usize {
        self.requests().len()
    }

    /// Requests served after `mark` was taken with [`Registry::mark`].
    pub fn requests_since(&self, mark: usize) -> Vec<Request> {
        let mut all = self.requests();
        assert!(
            mark <= all.len(),
            "mark {mark} is beyond the log ({})",
            all.len()
        );
        all.split_off(mark)
    }

    /// Requests with POST, PUT, PATCH or DELETE.
    pub fn write_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    /// Write requests served after `mark`.
    pub fn write_requests_since(&self, mark: usize) -> Vec<Request> {
        self.requests_since(mark)
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    /// Requests the tool (not the harness) sent after `mark`.
    pub fn tool_requests_since(&self, mark: usize) -> Vec<Request> {
        self.requests_since(mark)
            .into_iter()
            .filter(|r| !r.is_harness())
            .collect()
    }

    /// Writes (POST, PUT, PATCH, DELETE) the tool sent after `mark`.
    pub fn tool_writes_since(&self, mark: usize) -> Vec<Request> {
        self.tool_requests_since(mark)
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    /// Walks the manifest at `reference` (index/list children too) and reports what it
    /// references. None if the top-level manifest is not there. Panics if a child manifest is
    /// missing or a manifest's bytes do not match the digest it was fetched by.
    pub fn describe(&self, repo: &str, reference: &str) -> Option<Seeded> {
        let (media_type, body) = self.manifest(repo, reference)?;
        let digest = sha256_digest(&body);
        if reference.starts_with("sha256:") {
            assert_eq!(
                digest, reference,
                "{repo}@{reference}: manifest bytes digest"
            );
        }
        let head = self.manifest_digest(repo, reference);
        assert_eq!(
            head.as_deref(),
            Some(digest.as_str()),
            "{repo}:{reference}: HEAD digest"
        );
        let mut out = Seeded {
            digest,
            media_type: media_type.clone(),
            blobs: Vec::new(),
            children: Vec::new(),
        };
        self.walk(repo, reference, &media_type, &body, &mut out);
        Some(out)
    }

    fn walk(&self, repo: &str, reference: &str, media_type: &str, body: &[u8], out: &mut Seeded) {
        let json: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{repo}@{reference}: manifest is not JSON: {e}"));
        if let Some(declared) = json["mediaType"].as_str() {
            assert_eq!(
                declared, media_type,
                "{repo}@{reference}: mediaType vs Content-Type"
            );
        }
        assert_eq!(
            json["schemaVersion"], 2,
            "{repo}@{reference}: schemaVersion"
        );
        match media_type {
            DOCKER_MANIFEST_LIST | OCI_INDEX => {
                let children = json["manifests"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{repo}@{reference}: no manifests array"));
                for child in children {
                    let child_digest = child["digest"].as_str().expect("child digest");
                    let (child_type, child_body) =
                        self.manifest(repo, child_digest).unwrap_or_else(|| {
                            panic!("{repo}@{reference}: child manifest {child_digest} missing")
                        });
                    assert_eq!(
                        sha256_digest(&child_body),
                        child_digest,
                        "{repo}: child manifest bytes"
                    );
                    assert_eq!(
                        child["size"].as_u64(),
                        Some(child_body.len() as u64),
                        "{repo}: child manifest {child_digest} size"
                    );
                    if let Some(declared) = child["mediaType"].as_str() {
                        assert_eq!(
                            declared, child_type,
                            "{repo}: child {child_digest} mediaType"
                        );
                    }
                    if !out.children.iter().any(|c| c == child_digest) {
                        out.children.push(child_digest.to_string());
                    }
                    self.walk(repo, child_digest, &child_type, &child_body, out);
                }
            }
            DOCKER_MANIFEST | OCI_MANIFEST => {
                let layers = json["layers"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{repo}@{reference}: no layers array"));
                for desc in std::iter::once(&json["config"]).chain(layers) {
                    let d = desc["digest"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{repo}@{reference}: descriptor without digest"));
                    if !out.blobs.iter().any(|b| b == d) {
                        out.blobs.push(d.to_string());
                    }
                }
            }
            other => panic!("{repo}@{reference}: unsupported manifest media type {other:?}"),
        }
    }

    /// Asserts that `repo:tag` exists and that every manifest and blob it references (through
    /// index/list children too) exists in `repo` with the declared size.
    pub fn assert_complete(&self, repo: &str, tag: &str) {
        let seeded = self
            .describe(repo, tag)
            .unwrap_or_else(|| panic!("{}/{repo}:{tag}: manifest not found", self.host()));
        let mut manifests = vec![seeded.digest.clone()];
        manifests.extend(seeded.children.iter().cloned());
        for m in &manifests {
            let (_, body) = self.manifest(repo, m).expect("manifest by digest");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let Some(layers) = json["layers"].as_array() else {
                continue;
            };
            for desc in std::iter::once(&json["config"]).chain(layers) {
                let d = desc["digest"].as_str().unwrap();
                let size = self.blob_size(repo, d);
                assert!(
                    size.is_some(),
                    "{}/{repo}:{tag}: blob {d} (referenced by {m}) missing",
                    self.host()
                );
                assert_eq!(
                    size,
                    desc["size"].as_u64(),
                    "{}/{repo}:{tag}: blob {d} size",
                    self.host()
                );
            }
        }
    }
}

/// Extracts the target of `<...>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    link[end..]
        .contains("rel=\"next\"")
        .then(|| link[start..end].to_string())
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.access_log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- registry {} access log (last {} lines) ---\n{}",
                self.host(),
                tail.len(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (splitmix64-seeded xorshift64*): same seed and size,
/// same bytes; never all zeros.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    // splitmix64 so that neighbouring seeds (and seed 0) give unrelated, non-zero states.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut state = (z ^ (z >> 31)) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Image config; `layer_digests` double as rootfs diff_ids (the layers are not real tars).
fn config_json(os: &str, arch: &str, layer_digests: &[String]) -> Vec<u8> {
    let diff_ids: Vec<String> = layer_digests.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "{{\"architecture\":\"{arch}\",\"os\":\"{os}\",\"config\":{{\"Env\":[\"PATH=/usr/bin:/bin\"]}},\
         \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
        diff_ids.join(",")
    )
    .into_bytes()
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> String {
    format!("{{\"mediaType\":\"{media_type}\",\"digest\":\"{digest}\",\"size\":{size}}}")
}

struct Kind {
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const DOCKER: Kind = Kind {
    manifest: DOCKER_MANIFEST,
    config: DOCKER_CONFIG,
    layer: DOCKER_LAYER,
};
const OCI: Kind = Kind {
    manifest: OCI_MANIFEST,
    config: OCI_CONFIG,
    layer: OCI_LAYER,
};

/// Pushes config and layers, returns (manifest bytes, blob digests). Does not push the manifest.
fn build_image(
    reg: &impl Push,
    repo: &str,
    kind: &Kind,
    os: &str,
    arch: &str,
    layers: &[Vec<u8>],
) -> (Vec<u8>, Vec<String>) {
    let mut layer_digests = Vec::new();
    let mut layer_descs = Vec::new();
    for l in layers {
        let d = reg.push_blob(repo, l);
        layer_descs.push(descriptor(kind.layer, &d, l.len()));
        layer_digests.push(d);
    }
    let config = config_json(os, arch, &layer_digests);
    let config_digest = reg.push_blob(repo, &config);
    let mut blobs = vec![config_digest.clone()];
    for d in layer_digests {
        if !blobs.contains(&d) {
            blobs.push(d);
        }
    }
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{},\"layers\":[{}]}}",
        kind.manifest,
        descriptor(kind.config, &config_digest, config.len()),
        layer_descs.join(",")
    );
    (manifest.into_bytes(), blobs)
}

fn seed_image(reg: &impl Push, repo: &str, tag: &str, kind: &Kind, layers: &[Vec<u8>]) -> Seeded {
    let (manifest, blobs) = build_image(reg, repo, kind, "linux", "amd64", layers);
    let digest = reg.push_manifest(repo, tag, kind.manifest, &manifest);
    Seeded {
        digest,
        media_type: kind.manifest.to_string(),
        blobs,
        children: Vec::new(),
    }
}

/// Docker v2 schema 2 image (linux/amd64) with the given layers, tagged `tag`.
pub fn seed_docker_image(reg: &impl Push, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Seeded {
    seed_image(reg, repo, tag, &DOCKER, layers)
}

/// OCI image manifest (with `mediaType` set; linux/amd64) with the given layers, tagged `tag`.
pub fn seed_oci_image(reg: &impl Push, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Seeded {
    seed_image(reg, repo, tag, &OCI, layers)
}

/// Layers of the child for platform number `i`: one layer shared by all platforms
/// (`layer(layer_seed, 2048)`) and one of its own (`layer(layer_seed + 1 + i, 1024 + i)`).
pub fn platform_layers(layer_seed: u64, i: usize) -> Vec<Vec<u8>> {
    vec![
        layer(layer_seed, 2048),
        layer(layer_seed.wrapping_add(1 + i as u64), 1024 + i),
    ]
}

fn seed_multi(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    list_type: &str,
    kind: &Kind,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    let mut blobs: Vec<String> = Vec::new();
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (i, (os, arch)) in platforms.iter().enumerate() {
        let layers = platform_layers(layer_seed, i);
        let (manifest, child_blobs) = build_image(reg, repo, kind, os, arch, &layers);
        let digest = sha256_digest(&manifest);
        reg.push_manifest(repo, &digest, kind.manifest, &manifest);
        for b in child_blobs {
            if !blobs.contains(&b) {
                blobs.push(b);
            }
        }
        entries.push(format!(
            "{{\"mediaType\":\"{}\",\"digest\":\"{digest}\",\"size\":{},\
             \"platform\":{{\"architecture\":\"{arch}\",\"os\":\"{os}\"}}}}",
            kind.manifest,
            manifest.len()
        ));
        children.push(digest);
    }
    let list = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{list_type}\",\"manifests\":[{}]}}",
        entries.join(",")
    );
    let digest = reg.push_manifest(repo, tag, list_type, list.as_bytes());
    Seeded {
        digest,
        media_type: list_type.to_string(),
        blobs,
        children,
    }
}

/// OCI image index of OCI image manifests, one per (os, arch); children pushed by digest
/// first, then the index tagged `tag`. Layers: see [`platform_layers`].
pub fn seed_oci_index(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    seed_multi(reg, repo, tag, OCI_INDEX, &OCI, platforms, layer_seed)
}

/// Docker manifest list of Docker v2 schema 2 manifests, one per (os, arch); children pushed
/// by digest first, then the list tagged `tag`. Layers: see [`platform_layers`].
pub fn seed_docker_list(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    seed_multi(
        reg,
        repo,
        tag,
        DOCKER_MANIFEST_LIST,
        &DOCKER,
        platforms,
        layer_seed,
    )
}

/// True if something accepts TCP connections on `host` ("127.0.0.1:PORT").
pub fn port_open(host: &str) -> bool {
    TcpStream::connect_timeout(
        &host.parse().expect("socket address"),
        Duration::from_millis(500),
    )
    .is_ok()
}
