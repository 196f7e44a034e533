//! A small token issuer for registries configured with `auth: token` (distribution's token
//! authentication), run on 127.0.0.1 by the test process.
//!
//! It generates a CA and an ES256 signing key with a certificate from that CA, writes the
//! CA to a root certificate bundle for the registry's `rootcertbundle`, and signs JWTs
//! whose header carries the signing certificate (`x5c`), as distribution 2.8 accepts.
//!
//! `GET /token?service=…&scope=…&scope=…` with basic auth (or none: anonymous), and
//! `POST /token` with an OAuth2 form `grant_type=refresh_token&refresh_token=…&scope=…`
//! (identity tokens). Scopes are granted per user from a table of (repository prefix,
//! actions) rules; what is not granted is left out of the token, as real token services do.
//! Every request is recorded ([`TokenIssuer::grants`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tempfile::TempDir;

use super::tls::TestCa;

pub const SERVICE: &str = "image-mirror-test-registry";
pub const ISSUER: &str = "image-mirror-test-issuer";
/// How long past its `exp` distribution 2.8 still accepts a token (`token.Leeway`).
pub const LEEWAY: u64 = 60;

/// One token request, as the issuer saw it.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The authenticated user; `None` for anonymous requests.
    pub user: Option<String>,
    /// `basic`, `refresh_token` or `anonymous`.
    pub grant_type: String,
    pub requested: Vec<String>,
    /// Scopes as granted (`repository:NAME:ACTIONS`), empty actions left out.
    pub granted: Vec<String>,
    pub status: u16,
    /// Issued already expired (see [`TokenIssuer::expire_next`]).
    pub expired: bool,
    /// The token itself (tests search output for it).
    pub token: Option<String>,
}

struct User {
    password: String,
    /// (repository name prefix or `*`, actions such as `pull` or `pull,push`)
    rules: Vec<(String, Vec<String>)>,
}

struct Shared {
    key: EcdsaKeyPair,
    x5c: String,
    users: Mutex<HashMap<String, User>>,
    refresh_tokens: Mutex<HashMap<String, String>>,
    lifetime: Mutex<u64>,
    /// (scope substring, how many more tokens for such scopes to issue already expired)
    expire_next: Mutex<Vec<(String, usize)>>,
    /// (repository prefix, delay) — slow answers for such scopes.
    delays: Mutex<Vec<(String, Duration)>>,
    grants: Mutex<Vec<Grant>>,
    counter: AtomicU64,
    stop: AtomicBool,
}

/// A running token issuer. Dropping it stops it.
pub struct TokenIssuer {
    shared: Arc<Shared>,
    port: u16,
    bundle: PathBuf,
    _dir: TempDir,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenIssuer {
    pub fn start() -> Arc<TokenIssuer> {
        let ca = TestCa::new("image-mirror test token CA");
        let signing = ca.signing_cert("image-mirror test token signer");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signing.key_pkcs8)
            .expect("load signing key");
        let dir = tempfile::Builder::new()
            .prefix("image-mirror-token-")
            .tempdir()
            .expect("temp dir");
        let bundle = dir.path().join("root-bundle.pem");
        std::fs::write(&bundle, &ca.cert_pem).expect("write root bundle");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            key,
            x5c: STANDARD.encode(&signing.cert_der),
            users: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            lifetime: Mutex::new(300),
            expire_next: Mutex::new(Vec::new()),
            delays: Mutex::new(Vec::new()),
            grants: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if serving.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = serving.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &shared);
                });
            }
        });
        Arc::new(TokenIssuer {
            shared,
            port,
            bundle,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// Adds a user. `rules`: (repository prefix or `*`, `pull` / `pull,push`). The user `""`
    /// (any password) is what anonymous requests get.
    pub fn user(&self, name: &str, password: &str, rules: &[(&str, &str)]) {
        let rules = rules
            .iter()
            .map(|(prefix, actions)| {
                (
                    prefix.to_string(),
                    actions.split(',').map(str::to_owned).collect(),
                )
            })
            .collect();
        self.shared
            .users
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .insert(
                name.to_owned(),
                User {
                    password: password.to_owned(),
                    rules,
                },
            );
    }

    /// Accepts `token` as an OAuth2 refresh token (docker's identity token) for `user`.
    pub fn refresh_token(&self, token: &str, user: &str) {
        self.shared
            .refresh_tokens
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .insert(token.to_owned(), user.to_owned());
    }

    /// Tokens live this long. Default 300 s. `expires_in` says so, and the registry refuses
    /// a token once it has run out (within the second after): distribution accepts a token
    /// up to [`LEEWAY`] past its `exp`, so `exp` is set that much earlier.
    pub fn set_lifetime(&self, seconds: u64) {
        *self
            .shared
            .lifetime
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)") = seconds;
    }

    /// The next `count` tokens whose scopes contain `scope_part` are issued already expired:
    /// `exp` two minutes in the past (beyond distribution's 60 s leeway) while `expires_in`
    /// still says they are good — a token that died before it was used.
    pub fn expire_next(&self, scope_part: &str, count: usize) {
        self.shared
            .expire_next
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .push((scope_part.to_owned(), count));
    }

    /// Answers token requests for repositories starting with `prefix` only after `delay`.
    pub fn delay(&self, prefix: &str, delay: Duration) {
        self.shared
            .delays
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .push((prefix.to_owned(), delay));
    }

    /// Every token request so far.
    pub fn grants(&self) -> Vec<Grant> {
        self.shared
            .grants
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .clone()
    }

    /// A token for `subject` with exactly `access` ((type, name, actions)), for the harness's
    /// own requests.
    pub fn mint(&self, subject: &str, access: &[(String, String, Vec<String>)]) -> String {
        let lifetime = *self
            .shared
            .lifetime
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)");
        sign(&self.shared, subject, access, now() + lifetime.max(60))
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn sign(
    shared: &Shared,
    subject: &str,
    access: &[(String, String, Vec<String>)],
    exp: u64,
) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [shared.x5c]});
    let access: Vec<serde_json::Value> = access
        .iter()
        .map(|(kind, name, actions)| serde_json::json!({"type": kind, "name": name, "actions": actions}))
        .collect();
    let issued = now();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": exp,
        "nbf": issued.saturating_sub(5),
        "iat": issued,
        "jti": format!("test-{}", shared.counter.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = shared
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign token");
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

/// `repository:a/b:pull,push` → ("repository", "a/b", ["pull", "push"])
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        kind.to_owned(),
        name.to_owned(),
        actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, body: &str, extra: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/token" {
        return respond(&mut stream, "404 Not Found", "{}", "");
    }
    let params = if method == "POST" {
        form_pairs(&String::from_utf8_lossy(&body))
    } else {
        form_pairs(query)
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut requested: Vec<String> = Vec::new();
    for (k, v) in &params {
        if k == "scope" {
            requested.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned));
        }
    }
    let mut grant = Grant {
        user: None,
        grant_type: "anonymous".to_owned(),
        requested: requested.clone(),
        granted: Vec::new(),
        status: 200,
        expired: false,
        token: None,
    };
    let refuse = |stream: &mut TcpStream, mut grant: Grant, why: &str| {
        grant.status = 401;
        shared
            .grants
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .push(grant);
        respond(
            stream,
            "401 Unauthorized",
            &format!(r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{why}"}}]}}"#),
            "WWW-Authenticate: Basic realm=\"image-mirror-test-issuer\"\r\n",
        )
    };
    if param("service").as_deref() != Some(SERVICE) {
        grant.status = 400;
        shared
            .grants
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .push(grant);
        return respond(
            &mut stream,
            "400 Bad Request",
            r#"{"errors":[{"code":"INVALID_SERVICE"}]}"#,
            "",
        );
    }
    let user = if method == "POST" {
        grant.grant_type = param("grant_type").unwrap_or_default();
        if grant.grant_type != "refresh_token" {
            return refuse(&mut stream, grant, "unsupported grant type");
        }
        let token = param("refresh_token").unwrap_or_default();
        match shared
            .refresh_tokens
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)")
            .get(&token)
        {
            Some(user) => user.clone(),
            None => return refuse(&mut stream, grant, "unknown refresh token"),
        }
    } else if let Some(auth) = headers.get("authorization") {
        grant.grant_type = "basic".to_owned();
        let decoded = auth
            .strip_prefix("Basic ")
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let (name, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let users = shared
            .users
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)");
        match users.get(name) {
            Some(u) if !name.is_empty() && u.password == password => name.to_owned(),
            _ => {
                drop(users);
                grant.user = Some(name.to_owned());
                return refuse(&mut stream, grant, "bad user name or password");
            }
        }
    } else {
        String::new()
    };
    grant.user = (!user.is_empty()).then(|| user.clone());
    let mut access = Vec::new();
    {
        let users = shared
            .users
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)");
        let rules = users.get(&user).map(|u| u.rules.as_slice()).unwrap_or(&[]);
        for scope in &requested {
            let Some((kind, name, actions)) = parse_scope(scope) else {
                continue;
            };
            if kind != "repository" {
                continue;
            }
            let allowed: Vec<String> = actions
                .into_iter()
                .filter(|a| {
                    rules.iter().any(|(prefix, acts)| {
                        (prefix == "*" || name.starts_with(prefix.as_str()))
                            && acts.iter().any(|x| x == a)
                    })
                })
                .collect();
            if !allowed.is_empty() {
                grant
                    .granted
                    .push(format!("repository:{name}:{}", allowed.join(",")));
                access.push((kind, name, allowed));
            }
        }
    }
    let delay = shared
        .delays
        .lock()
        .expect("issuer state (a panicked test thread poisoned it)")
        .iter()
        .filter(|(prefix, _)| {
            requested
                .iter()
                .any(|s| s.starts_with(&format!("repository:{prefix}")))
        })
        .map(|(_, d)| *d)
        .max();
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    let lifetime = *shared
        .lifetime
        .lock()
        .expect("issuer state (a panicked test thread poisoned it)");
    {
        let mut expire = shared
            .expire_next
            .lock()
            .expect("issuer state (a panicked test thread poisoned it)");
        for (part, count) in expire.iter_mut() {
            if *count > 0 && requested.iter().any(|s| s.contains(part.as_str())) {
                *count -= 1;
                grant.expired = true;
                break;
            }
        }
    }
    // `now()` is whole seconds: `+ 1` makes the token live at least `lifetime` (at most a
    // second more), refused after that.
    let exp = if grant.expired {
        now().saturating_sub(120)
    } else {
        (now() + lifetime + 1).saturating_sub(LEEWAY)
    };
    let subject = if user.is_empty() {
        "anonymous"
    } else {
        user.as_str()
    };
    let token = sign(shared, subject, &access, exp);
    grant.token = Some(token.clone());
    shared
        .grants
        .lock()
        .expect("issuer state (a panicked test thread poisoned it)")
        .push(grant);
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
    })
    .to_string();
    respond(&mut stream, "200 OK", &body, "")
}
