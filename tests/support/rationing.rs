//! A rationing HTTP/1.1 proxy in front of a real registry: the stand-in for the public
//! registries that ration their clients (issue 23), which cannot be reached from here.
//!
//! Two ways registries ration, as they document and answer them:
//!
//! * **A pull quota** (Docker Hub). docs.docker.com, "Docker Hub pull usage and limits"
//!   (content/manuals/docker-hub/usage/pulls.md in github.com/docker/docs): a pull is a
//!   manifest GET, one per architecture of a multi-arch image; a "version check" (HEAD) does
//!   not count. Both GET and HEAD answers carry `ratelimit-limit: 100;w=21600`,
//!   `ratelimit-remaining: 20;w=21600` and `docker-ratelimit-source: <IP or user id>` (the
//!   window was 6 hours; since April 2025 it is an hour, `w=3600`, the figure issue 23 quotes).
//!   No header at all means "not rationed" for that client. Beyond the quota a manifest GET is
//!   answered `429` with `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your
//!   pull rate limit. You may increase the limit by authenticating and upgrading:
//!   https://www.docker.com/increase-rate-limit"}]}` (the body clients print as
//!   `toomanyrequests: You have reached your pull rate limit...`; the docs' own copy of the
//!   text says `increase-rate-limits`) and no `Retry-After`. The quota is per user when
//!   authenticated, per IPv4 address (or IPv6 /64) when not.
//! * **A request rate** (quay.io, GHCR, ECR). Red Hat's "Quay.io rate limiting"
//!   (access.redhat.com/solutions/6218921): "a few requests per second per IP, with some
//!   bursting", every endpoint, answered `429 Too many requests` (an nginx page, no
//!   `Retry-After`, as github.com/3scale/3scale-operator/issues/583 shows it). GHCR answers
//!   `429` with `toomanyrequests: retry-after: 333.939671ms, allowed: 44000/minute` in the
//!   error (github.com/falcosecurity/plugins/issues/1069, dependabot/cli#380). Played here as
//!   a token bucket (rate R per second, burst B) with a configurable `Retry-After`.
//!
//! The IETF httpapi draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-
//! headers-08 to -11, datatracker.ietf.org) replaces the older `RateLimit-Limit/-Remaining/
//! -Reset` with two structured fields: `RateLimit-Policy: "default";q=100;w=3600` (quota `q`
//! per window `w` seconds) and `RateLimit: "default";r=76;t=1800` (`r` remaining, `t` seconds
//! until more quota is available). [`QuotaHeaders::Ietf`] sends those instead of Docker Hub's.
//!
//! Everything else passes through unchanged; the Host header is passed through, so the
//! registry's `Location`s point back at the proxy. The quota is kept per identity (the user of
//! a `Basic` credential, the `sub` of a bearer JWT, else the client's IP address): every
//! credential of one user shares one quota, as Docker Hub's does. The window is the test's to
//! turn ([`RationProxy::new_window`]), or real time ([`Window::Real`], for the benchmark).
//!
//! Control endpoints, for scripts (`bench/rationing.sh` through `bench/ration_proxy.rs`):
//! `POST /_ration/new-window` starts a new window; `GET /_ration/counts` answers the
//! [`Counts`] as one JSON object; `GET /_ration/seen` every request seen, a line each (when,
//! method, status, whether refused, path). They are not counted.
//!
//! Standard library only, so that the benchmark's program (`bench/ration_proxy.rs`, which
//! includes this same file) builds with a bare `rustc` in seconds. For the same reason the
//! plumbing it shares with the other proxies, `forward.rs`, is a module of this one, named
//! by its path.
#![allow(dead_code)]

#[path = "forward.rs"]
pub mod forward;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::forward::{Listening, Message, ask, has_body, read_body, read_head};

/// Docker Hub's 429 body for a spent pull quota, byte for byte as its registry sends it.
pub const DOCKER_HUB_TOO_MANY: &str = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\
\"You have reached your pull rate limit. You may increase the limit by authenticating and \
upgrading: https://www.docker.com/increase-rate-limit\"}]}";

/// The 429 body of the request-rate mode, in GHCR's words (`retry-after: 333.939671ms,
/// allowed: 44000/minute`).
pub fn rate_too_many(per_second: f64, retry_after: Option<u64>) -> String {
    let per_minute = (per_second * 60.0).round();
    let after = retry_after.map_or(String::new(), |s| format!("retry-after: {s}s, "));
    format!(
        "{{\"errors\":[{{\"code\":\"TOOMANYREQUESTS\",\"message\":\"{after}allowed: \
         {per_minute}/minute\"}}]}}"
    )
}

/// What the quota mode tells the client about its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaHeaders {
    /// Docker Hub's `ratelimit-limit`, `ratelimit-remaining` (`N;w=SECONDS`) and
    /// `docker-ratelimit-source`, on every manifest answer (HEAD included) and on the 429.
    DockerHub,
    /// The IETF draft's `RateLimit-Policy: "default";q=N;w=SECONDS` and
    /// `RateLimit: "default";r=LEFT;t=SECONDS`, on the same answers.
    Ietf,
    /// Nothing: the client learns of the quota only from the 429.
    None,
}

/// How a quota window passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Only when told ([`RationProxy::new_window`] or `POST /_ration/new-window`); `seconds`
    /// is what the headers advertise (`w=`).
    Manual { seconds: u64 },
    /// Every `seconds` of real time from the start (and when told).
    Real { seconds: u64 },
}

impl Window {
    pub fn seconds(self) -> u64 {
        match self {
            Window::Manual { seconds } | Window::Real { seconds } => seconds,
        }
    }
}

/// How the proxy rations.
#[derive(Debug, Clone, PartialEq)]
pub enum Rationing {
    /// Docker Hub: `limit` manifest GETs per window and identity; HEADs, blobs and everything
    /// else pass. Beyond it a manifest GET is answered 429 with [`DOCKER_HUB_TOO_MANY`] and
    /// no `Retry-After`.
    Quota {
        limit: u64,
        window: Window,
        headers: QuotaHeaders,
    },
    /// quay.io, GHCR: a token bucket over every request, refilled at `per_second`, holding at
    /// most `burst`; an empty bucket answers 429 with [`rate_too_many`] and
    /// `Retry-After: retry_after` (none when `None`).
    Rate {
        per_second: f64,
        burst: u64,
        retry_after: Option<u64>,
    },
}

/// What a request is, as the rationing counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ManifestGet,
    ManifestHead,
    BlobGet,
    Other,
}

impl Kind {
    fn of(method: &str, path: &str) -> Kind {
        let manifest = path.starts_with("/v2/") && path.contains("/manifests/");
        let blob = path.starts_with("/v2/") && path.contains("/blobs/sha256:");
        match method {
            "GET" if manifest => Kind::ManifestGet,
            "HEAD" if manifest => Kind::ManifestHead,
            "GET" if blob => Kind::BlobGet,
            _ => Kind::Other,
        }
    }
}

/// A request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub kind: Kind,
    /// Whose quota it is counted against (user, JWT subject or IP address).
    pub identity: String,
    /// The status answered (0: none, the connection was closed).
    pub status: u16,
    /// Answered 429 by the proxy, not by the registry.
    pub refused: bool,
    /// When it was answered, in milliseconds since the proxy started.
    pub at_ms: u64,
}

/// The counts a test or the benchmark reads. Every request seen, whatever its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub manifest_gets: u64,
    pub manifest_heads: u64,
    pub blob_gets: u64,
    pub other: u64,
    /// Answers 429 (refused by the proxy).
    pub too_many: u64,
    /// Manifest GETs answered 2xx: what the quota was spent on, over all windows.
    pub manifest_gets_admitted: u64,
    /// The most requests being served at the same moment.
    pub max_in_flight: u64,
    /// Windows started since the proxy started (the first is 1).
    pub window: u64,
}

impl Counts {
    pub fn requests(self) -> u64 {
        self.manifest_gets + self.manifest_heads + self.blob_gets + self.other
    }

    /// One JSON object, for scripts.
    pub fn to_json(self) -> String {
        format!(
            "{{\"manifest_gets\":{},\"manifest_heads\":{},\"blob_gets\":{},\"other\":{},\
             \"requests\":{},\"too_many\":{},\"manifest_gets_admitted\":{},\
             \"max_in_flight\":{},\"window\":{}}}",
            self.manifest_gets,
            self.manifest_heads,
            self.blob_gets,
            self.other,
            self.requests(),
            self.too_many,
            self.manifest_gets_admitted,
            self.max_in_flight,
            self.window
        )
    }
}

/// The rationing's state, behind one lock.
struct Ledger {
    rationing: Rationing,
    counts: Counts,
    in_flight: u64,
    /// Manifest GETs admitted in this window, per identity.
    spent: HashMap<String, u64>,
    window_started: Instant,
    /// Token bucket: tokens now, as of `refilled`.
    tokens: f64,
    refilled: Instant,
    seen: Vec<Seen>,
    /// When the proxy started (what [`Seen::at_ms`] counts from).
    started: Instant,
}

impl Ledger {
    fn new(rationing: Rationing) -> Ledger {
        let tokens = match &rationing {
            Rationing::Rate { burst, .. } => *burst as f64,
            Rationing::Quota { .. } => 0.0,
        };
        Ledger {
            rationing,
            counts: Counts {
                window: 1,
                ..Counts::default()
            },
            in_flight: 0,
            spent: HashMap::new(),
            window_started: Instant::now(),
            tokens,
            refilled: Instant::now(),
            seen: Vec::new(),
            started: Instant::now(),
        }
    }

    fn new_window(&mut self) {
        self.spent.clear();
        self.window_started = Instant::now();
        self.counts.window += 1;
    }

    /// A real window that has run out starts the next one.
    fn roll(&mut self) {
        if let Rationing::Quota {
            window: Window::Real { seconds },
            ..
        } = self.rationing
            && self.window_started.elapsed() >= Duration::from_secs(seconds)
        {
            self.new_window();
        }
    }

    fn count(&mut self, kind: Kind) {
        let c = &mut self.counts;
        match kind {
            Kind::ManifestGet => c.manifest_gets += 1,
            Kind::ManifestHead => c.manifest_heads += 1,
            Kind::BlobGet => c.blob_gets += 1,
            Kind::Other => c.other += 1,
        }
    }

    /// Takes a token from the bucket (rate mode); false when it is empty.
    fn take_token(&mut self) -> bool {
        let Rationing::Rate {
            per_second, burst, ..
        } = self.rationing
        else {
            return true;
        };
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * per_second;
        self.tokens = (self.tokens + earned).min(burst as f64);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Spends one manifest GET of `identity`'s quota; false when it is spent.
    fn spend(&mut self, identity: &str) -> bool {
        let Rationing::Quota { limit, .. } = self.rationing else {
            return true;
        };
        let spent = self.spent.entry(identity.to_owned()).or_insert(0);
        if *spent >= limit {
            return false;
        }
        *spent += 1;
        self.counts.manifest_gets_admitted += 1;
        true
    }

    fn remaining(&self, identity: &str) -> u64 {
        match self.rationing {
            Rationing::Quota { limit, .. } => {
                limit.saturating_sub(self.spent.get(identity).copied().unwrap_or(0))
            }
            Rationing::Rate { .. } => 0,
        }
    }

    /// The quota headers of a manifest answer to `identity`, as `Name: value` lines.
    fn quota_headers(&self, identity: &str) -> Vec<String> {
        let Rationing::Quota {
            limit,
            window,
            headers,
        } = self.rationing
        else {
            return Vec::new();
        };
        let w = window.seconds();
        let left = self.remaining(identity);
        match headers {
            QuotaHeaders::DockerHub => vec![
                format!("ratelimit-limit: {limit};w={w}"),
                format!("ratelimit-remaining: {left};w={w}"),
                format!("docker-ratelimit-source: {identity}"),
            ],
            QuotaHeaders::Ietf => {
                let reset = w.saturating_sub(self.window_started.elapsed().as_secs());
                vec![
                    format!("RateLimit-Policy: \"default\";q={limit};w={w}"),
                    format!("RateLimit: \"default\";r={left};t={reset}"),
                ]
            }
            QuotaHeaders::None => Vec::new(),
        }
    }
}

/// A running rationing proxy. Dropping it stops it.
pub struct RationProxy {
    listening: Listening,
    ledger: Arc<Mutex<Ledger>>,
}

struct Shared {
    upstream: String,
    ledger: Arc<Mutex<Ledger>>,
}

impl RationProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str, rationing: Rationing) -> RationProxy {
        RationProxy::start_on(upstream, rationing, "127.0.0.1:0").expect("bind rationing proxy")
    }

    /// The same on a given address ("127.0.0.1:PORT").
    pub fn start_on(
        upstream: &str,
        rationing: Rationing,
        listen: &str,
    ) -> std::io::Result<RationProxy> {
        let listener = TcpListener::bind(listen)?;
        let ledger = Arc::new(Mutex::new(Ledger::new(rationing)));
        let shared = Shared {
            upstream: upstream.to_owned(),
            ledger: ledger.clone(),
        };
        let listening = Listening::start(listener, move |client| {
            let _ = serve(client, &shared);
        })?;
        Ok(RationProxy { listening, ledger })
    }

    /// Docker Hub with its headers: `limit` manifest GETs per (manual) window of an hour.
    pub fn docker_hub(upstream: &str, limit: u64) -> RationProxy {
        RationProxy::quota(upstream, limit, QuotaHeaders::DockerHub)
    }

    /// A quota of `limit` manifest GETs per (manual) window of an hour, published as
    /// `headers` says.
    pub fn quota(upstream: &str, limit: u64, headers: QuotaHeaders) -> RationProxy {
        RationProxy::start(
            upstream,
            Rationing::Quota {
                limit,
                window: Window::Manual { seconds: 3600 },
                headers,
            },
        )
    }

    /// A token bucket over all requests: `per_second`, `burst`, 429 with `Retry-After: 1`.
    pub fn rate(upstream: &str, per_second: f64, burst: u64) -> RationProxy {
        RationProxy::start(
            upstream,
            Rationing::Rate {
                per_second,
                burst,
                retry_after: Some(1),
            },
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.listening.host().to_owned()
    }

    /// Starts a new quota window: every identity's quota is whole again.
    pub fn new_window(&self) {
        lock(&self.ledger).new_window();
    }

    pub fn counts(&self) -> Counts {
        let ledger = lock(&self.ledger);
        ledger.counts
    }

    /// What is left of `identity`'s quota in this window ("127.0.0.1" for anonymous
    /// requests, the user name for `Basic`, the JWT subject for a bearer token).
    pub fn remaining(&self, identity: &str) -> u64 {
        lock(&self.ledger).remaining(identity)
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.ledger).seen.clone()
    }

    /// Manifest GETs admitted (2xx) per identity, over all windows.
    pub fn admitted_by(&self, identity: &str) -> usize {
        lock(&self.ledger)
            .seen
            .iter()
            .filter(|s| s.kind == Kind::ManifestGet && s.identity == identity)
            .filter(|s| (200..300).contains(&s.status) && !s.refused)
            .count()
    }
}

/// The ledger, even if a thread panicked holding it (its counts stay meaningful).
fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whose quota a request is counted against: the user of a `Basic` credential, the
/// subject of a bearer JWT, else the client's address (anonymous, as Docker Hub counts per
/// IP). Never the credential itself: the identity is sent back in `docker-ratelimit-source`.
pub fn identity(authorization: Option<&str>, peer: IpAddr) -> String {
    let anonymous = || peer.to_string();
    let Some(value) = authorization else {
        return anonymous();
    };
    let (scheme, credential) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(credential).and_then(|d| String::from_utf8(d).ok());
        return match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, _)) if !user.is_empty() => user.to_owned(),
            _ => anonymous(),
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let subject = credential.split('.').nth(1).and_then(|payload| {
            let bytes = base64_decode(payload)?;
            let text = String::from_utf8(bytes).ok()?;
            json_string_field(&text, "sub")
        });
        return match subject {
            Some(s) if !s.is_empty() => s,
            _ => anonymous(),
        };
    }
    anonymous()
}

/// Decodes base64, standard or URL-safe alphabet, padded or not; None if it is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The string value of `"field":"..."` in a flat JSON object (a JWT's claims); escapes are
/// not decoded (subjects are plain names).
fn json_string_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\"");
    let at = json.find(&key)? + key.len();
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// Counts a request in flight until dropped.
struct Flying<'a>(&'a Mutex<Ledger>);

impl<'a> Flying<'a> {
    fn start(ledger: &'a Mutex<Ledger>) -> Self {
        let mut l = lock(ledger);
        l.in_flight += 1;
        l.counts.max_in_flight = l.counts.max_in_flight.max(l.in_flight);
        Flying(ledger)
    }
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        lock(self.0).in_flight -= 1;
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Heads and bodies are written separately: without this, Nagle's algorithm and delayed
    // ACKs add tens of milliseconds to every answer.
    client.set_nodelay(true)?;
    let peer = client.peer_addr()?.ip();
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    while let Some(head) = read_head(&mut from_client)? {
        let keep_open = if head[0].contains(" /_ration/") {
            control(head, &mut from_client, &mut to_client, shared)?
        } else {
            let _flying = Flying::start(&shared.ledger);
            serve_one(head, peer, &mut from_client, &mut to_client, shared)?
        };
        if !keep_open {
            return Ok(());
        }
    }
    Ok(())
}

/// Answers a control request (`POST /_ration/new-window`, `GET /_ration/counts`).
fn control(
    head: Vec<String>,
    from_client: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
    shared: &Shared,
) -> std::io::Result<bool> {
    let request = Message::new(head);
    read_body(from_client, &request)?;
    let mut ledger = lock(&shared.ledger);
    let body = match request.head[0].split_whitespace().nth(1).unwrap_or("") {
        "/_ration/new-window" => {
            ledger.new_window();
            ledger.counts.to_json()
        }
        "/_ration/counts" => ledger.counts.to_json(),
        "/_ration/seen" => seen_lines(&ledger.seen),
        _ => {
            drop(ledger);
            write_answer(to_client, 404, "Not Found", &[], "{}")?;
            return Ok(true);
        }
    };
    drop(ledger);
    write_answer(to_client, 200, "OK", &[], &body)?;
    Ok(true)
}

/// What `GET /_ration/seen` answers: one line per request seen, in the order answered:
/// milliseconds since the proxy started, method, status, `refused` or `-`, path.
fn seen_lines(seen: &[Seen]) -> String {
    seen.iter()
        .map(|s| {
            let refused = if s.refused { "refused" } else { "-" };
            let path = s.target.split('?').next().unwrap_or("");
            format!("{} {} {} {refused} {path}\n", s.at_ms, s.method, s.status)
        })
        .collect()
}

fn write_answer(
    to_client: &mut TcpStream,
    code: u16,
    reason: &str,
    headers: &[String],
    body: &str,
) -> std::io::Result<()> {
    let mut answer = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        answer.push_str(h);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(body);
    to_client.write_all(answer.as_bytes())
}

/// Serves one request; returns whether the connection stays open.
fn serve_one(
    head: Vec<String>,
    peer: IpAddr,
    from_client: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
    shared: &Shared,
) -> std::io::Result<bool> {
    let mut request = Message::new(head);
    let mut parts = request.head[0].split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let kind = Kind::of(&method, &path);
    let who = identity(request.header("authorization"), peer);
    request.body = read_body(from_client, &request)?;

    // Rate mode: the bucket decides before the registry is asked.
    let admitted = {
        let mut ledger = lock(&shared.ledger);
        ledger.roll();
        ledger.count(kind);
        ledger.take_token()
    };
    if !admitted {
        let (per_second, retry_after) = match lock(&shared.ledger).rationing {
            Rationing::Rate {
                per_second,
                retry_after,
                ..
            } => (per_second, retry_after),
            Rationing::Quota { .. } => (0.0, None),
        };
        let headers: Vec<String> = retry_after
            .map(|s| format!("Retry-After: {s}"))
            .into_iter()
            .collect();
        let body = rate_too_many(per_second, retry_after);
        note(shared, &method, &target, kind, &who, 429, true);
        write_answer(to_client, 429, "Too Many Requests", &headers, &body)?;
        return Ok(true);
    }

    let Some((mut response, mut from_upstream)) = ask(&shared.upstream, &mut request)? else {
        note(shared, &method, &target, kind, &who, 0, false);
        return Ok(false);
    };
    let status = response.status();
    let has_body = has_body(&method, status);
    if has_body {
        response.body = read_body(&mut from_upstream, &response)?;
    }

    // Quota mode: a manifest GET the registry served is a pull. Counted only when it
    // succeeds (a 401 or 404 is not a pull), refused when the quota is spent.
    let served = (200..300).contains(&status);
    let mut ledger = lock(&shared.ledger);
    if kind == Kind::ManifestGet && served && !ledger.spend(&who) {
        let headers = ledger.quota_headers(&who);
        drop(ledger);
        note(shared, &method, &target, kind, &who, 429, true);
        write_answer(
            to_client,
            429,
            "Too Many Requests",
            &headers,
            DOCKER_HUB_TOO_MANY,
        )?;
        return Ok(true);
    }
    let manifest = matches!(kind, Kind::ManifestGet | Kind::ManifestHead);
    let quota_headers = if manifest && served {
        ledger.quota_headers(&who)
    } else {
        Vec::new()
    };
    drop(ledger);
    note(shared, &method, &target, kind, &who, status, false);
    response.drop_header("connection");
    response.head.extend(quota_headers);
    if has_body {
        let len = response.body.len();
        response.set_content_length(len);
    }
    to_client.write_all(&response.head_bytes())?;
    to_client.write_all(&response.body)?;
    Ok(true)
}

fn note(
    shared: &Shared,
    method: &str,
    target: &str,
    kind: Kind,
    who: &str,
    status: u16,
    refused: bool,
) {
    let mut ledger = lock(&shared.ledger);
    if refused {
        ledger.counts.too_many += 1;
    }
    let at_ms = ledger.started.elapsed().as_millis() as u64;
    ledger.seen.push(Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        kind,
        identity: who.to_owned(),
        status,
        refused,
        at_ms,
    });
}
