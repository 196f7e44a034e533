//! One `docker-registry` process per [`Registry`]: its configuration (authentication, TLS,
//! catalog pages), start on a free port, the harness's own HTTP client, logs, and the kill
//! when it is dropped.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::media::HARNESS_USER_AGENT;
use super::{tls, token};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One running `docker-registry` process. Dropping it kills the process and removes its storage.
pub struct Registry {
    pub(super) child: Child,
    pub(super) port: u16,
    pub(super) agent: ureq::Agent,
    pub(super) sync_counter: AtomicU64,
    /// `http` or `https` (TLS configured).
    pub(super) scheme: &'static str,
    /// Keeps the token issuer of a token-auth registry running as long as the registry.
    pub(super) _issuer: Option<std::sync::Arc<token::TokenIssuer>>,
    // Last field: dropped after the process was killed.
    pub(super) dir: TempDir,
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
    /// `storage.delete.enabled: false`: every DELETE is answered 405 UNSUPPORTED (the
    /// harness's registries delete otherwise).
    pub delete_disabled: bool,
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
pub(super) fn harness_access(
    path: &str,
    query: Option<&str>,
) -> Vec<(String, String, Vec<String>)> {
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
        mut request: ureq::http::Request<ureq::SendBody<'_>>,
        next: ureq::middleware::MiddlewareNext<'_>,
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

fn config_yaml(port: u16, root: &Path, delete: bool) -> String {
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
    enabled: {delete}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: image-mirror-test-harness-secret
",
        root = root.display(),
    )
}

pub(super) fn read_lossy(path: &Path) -> String {
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
            format!(
                "{}{tls_yaml}{auth_yaml}",
                config_yaml(port, &data, !extra.delete_disabled)
            ),
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
            _issuer: extra.token.clone(),
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

    pub(super) fn logs(&self) -> String {
        format!(
            "--- registry.log ---\n{}\n--- access.log ---\n{}",
            self.app_log(),
            self.access_log()
        )
    }

    pub(super) fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.url())
    }

    pub(super) fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
        resp.body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .expect("read response body")
    }

    pub(super) fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub(super) fn fail(what: &str, resp: &mut ureq::http::Response<ureq::Body>) -> ! {
        let status = resp.status();
        let body = Self::read_body(resp);
        panic!(
            "{what}: unexpected HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )
    }
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

/// True if something accepts TCP connections on `host` ("127.0.0.1:PORT").
pub fn port_open(host: &str) -> bool {
    TcpStream::connect_timeout(
        &host.parse().expect("socket address"),
        Duration::from_millis(500),
    )
    .is_ok()
}
