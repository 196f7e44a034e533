//! A fault-injecting HTTP/1.1 proxy placed in front of a real registry: answers 429/503,
//! cuts or shortens bodies, flips bytes, stalls — on the requests a rule selects, a given
//! number of times. Everything else passes through unchanged. The Host header is passed
//! through, so the registry's upload `Location`s point back at the proxy.
//!
//! [`FaultProxy::start_with`] adds standing behaviours ([`Behaviour`]): send the client's
//! `Location`s and `Link`s to another authority, replace the client's credentials with the
//! harness's own, page `tags/list` answers, redirect blob downloads to a pre-signed URL. Every
//! request is recorded with the `Authorization` it came with, and the most requests in flight
//! at once is kept ([`FaultProxy::max_in_flight`]).
//!
//! Started with a [`Quirk`], the same proxy makes distribution behave like another registry
//! implementation, one difference at a time, on every request (registries differ exactly in
//! these corners, and the engine must mirror through each with identical digests).
//! Two faults play a registry that keeps its blobs elsewhere: [`Fault::Redirect`] answers a
//! blob GET with a redirect to another host (a second proxy, standing for a CDN or an object
//! store) under a pre-signed query, and [`Fault::RefuseSigned`] is that host refusing the
//! signed URL with an error that quotes it whole, as S3 and CDNs do.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::forward::{Listening, Message, ask, has_body, read_body, read_head};

/// What to do to a selected request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status without asking the registry, with an optional `Retry-After`.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Forward, then close the connection after this many body bytes of the answer.
    CutAfter(usize),
    /// Forward, but declare and send only this many body bytes: a complete-looking answer
    /// that is shorter than the real one.
    ShortBody(usize),
    /// Forward with the body byte at this offset inverted.
    FlipByte(usize),
    /// Wait this long before answering.
    Stall(Duration),
    /// Close the connection without forwarding or answering (a connection reset as the
    /// client sees it).
    Drop,
    /// Forward without the target's query: a mount (`?mount=&from=`) becomes a plain upload
    /// start, as a registry without cross-repository mounts treats it.
    StripQuery,
    /// Hold the request until one whose target contains this text has been answered (then a
    /// further half second), at most 30 s; then forward it.
    HoldUntilAnswered(String),
    /// Answer `307` with a `Location` on this host (`127.0.0.1:PORT`), the same path, and a
    /// pre-signed query whose signature is [`SIGNATURE`] followed by a counter: each redirect
    /// is signed afresh, as a registry's are.
    Redirect(String),
    /// Answer this status with a distribution-style JSON error whose message quotes the
    /// request's full URL, signature included.
    RefuseSigned(u16),
    /// Forward without the `Range` header: this request is answered whole, from byte 0.
    IgnoreRange,
    /// Forward, sending the answer's body in this many pieces with a pause between each:
    /// a slow answer that never stops for as long as the whole takes.
    Trickle { pieces: usize, pause: Duration },
}

/// What every signature [`Fault::Redirect`] makes starts with; a secret that must never
/// appear in anything image-mirror writes.
pub const SIGNATURE: &str = "5ec2e7519a7";
/// The access key id in [`Fault::Redirect`]'s signed queries; a secret just the same.
pub const ACCESS_KEY: &str = "AKIAIMAGEMIRRORTEST";
/// `X-Amz-Date` of [`Fault::Redirect`]'s signed queries: a name that says nothing secret, in
/// a query that is a credential as a whole.
pub const SIGNED_DATE: &str = "20261130T060000Z";
/// `Expires` of [`Fault::Redirect`]'s signed queries (as CloudFront and older S3 URLs carry
/// it): likewise.
pub const EXPIRES: &str = "1796018400";

static SIGNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One way another registry implementation differs from distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quirk {
    /// A blob `PUT` that carries a body is answered 500 before the body is read, and the
    /// connection closed (as the `container-registry` crate does): blobs must come as
    /// `PATCH`es closed by an empty `PUT`.
    RefuseBodyOnPut,
    /// No request body longer than `max` bytes (413 otherwise); upload sessions state
    /// `OCI-Chunk-Max-Length: max` and `OCI-Chunk-Min-Length: min`.
    ChunkLimits { min: usize, max: usize },
    /// HEAD answers come without `Docker-Content-Digest`.
    HeadWithoutDigest,
    /// Upload `Location`s name this other `host:port` (another port of the same host), as
    /// absolute URLs.
    LocationOn(String),
    /// `Range` is dropped from requests: downloads always start at byte 0.
    IgnoreRange,
}

/// How a proxy answers `GET /v2/NAME/tags/list` (asking the registry for the whole list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Pages of at most this many tags (whatever `n` asks), sorted, after `last`, each with a
    /// `Link: <...?n=N&last=T>; rel="next"` while more follow (Docker Hub, quay.io).
    Link(usize),
    /// `n` and `last` honoured, never a `Link` (a registry that pages only by `last=`).
    LastOnly,
}

/// Standing behaviours of a proxy, for every request.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Rewrite `Location` and `Link` answer headers so that they name this authority
    /// (`127.0.0.1:PORT`) instead of the proxy: another host, as a CDN or bucket would be.
    pub send_elsewhere: Option<String>,
    /// Forward every request with a harness token for what it touches instead of the
    /// credentials it came with (a storage service that needs no registry token: its URL is
    /// its credential).
    pub sign_with: Option<Arc<super::token::TokenIssuer>>,
    /// Answer tag listings in pages.
    pub paging: Option<Paging>,
    /// Answer referrers listings (`GET /v2/NAME/referrers/DIGEST`) in pages of at most this
    /// many descriptors, each with a `Link: <...?page=K>; rel="next"` while more follow, as
    /// the OCI distribution spec allows a registry to.
    pub referrer_pages: Option<usize>,
    /// Answer blob GETs with `307` to `http://AUTHORITY/v2/.../blobs/DIGEST?X-Amz-Signature=SIG`
    /// (authority, signature): a pre-signed URL whose query is a credential.
    pub redirect_blobs: Option<(String, String)>,
    /// Forward without the `Range` header (recorded in [`Seen::range`] all the same): a
    /// source that answers every download whole, from its first byte.
    pub ignore_range: bool,
    /// Behave like another registry implementation in one way (see [`Quirk`]).
    pub quirk: Option<Quirk>,
}

#[derive(Debug, Clone)]
struct Rule {
    method: String,
    path_contains: String,
    remaining: usize,
    fault: Fault,
}

/// A request the proxy saw, and the fault it injected, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// The request's `Range` header.
    pub range: Option<String>,
    /// The request's `Authorization` header, as the client sent it.
    pub authorization: Option<String>,
    /// The request's `Content-Range` header.
    pub content_range: Option<String>,
    /// The length of the request's body.
    pub body_len: usize,
    /// The status answered (0: none, the connection was closed).
    pub status: u16,
    pub fault: Option<Fault>,
}

/// Requests being served now, and the most ever at once.
#[derive(Default)]
struct InFlight {
    now: usize,
    max: usize,
}

pub struct FaultProxy {
    listening: Listening,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<Mutex<InFlight>>,
}

/// What every connection's thread shares.
struct Shared {
    upstream: String,
    own_host: String,
    behaviour: Behaviour,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    answered: Mutex<Vec<String>>,
    in_flight: Arc<Mutex<InFlight>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_with(upstream, Behaviour::default())
    }

    /// A proxy that gives the registry behind it `quirk`.
    pub fn with_quirk(upstream: &str, quirk: Quirk) -> FaultProxy {
        FaultProxy::start_with(
            upstream,
            Behaviour {
                quirk: Some(quirk),
                ..Behaviour::default()
            },
        )
    }

    /// [`FaultProxy::start`] with standing behaviours.
    pub fn start_with(upstream: &str, behaviour: Behaviour) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let in_flight: Arc<Mutex<InFlight>> = Arc::default();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            own_host: host,
            behaviour,
            rules: rules.clone(),
            seen: seen.clone(),
            answered: Mutex::default(),
            in_flight: in_flight.clone(),
        });
        let listening = Listening::start(listener, move |client| {
            let _ = serve(client, &shared);
        })
        .expect("addr");
        FaultProxy {
            listening,
            rules,
            seen,
            in_flight,
        }
    }

    /// Requests being served now (read, not yet answered in full).
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().expect("in flight").now
    }

    /// The most requests this proxy was serving at the same moment (from the end of a
    /// request's head to the end of its answer).
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().expect("in flight").max
    }

    pub fn host(&self) -> String {
        self.listening.host().to_owned()
    }

    /// Injects `fault` into the next `times` requests whose method is `method` (or any, for
    /// "*") and whose target contains `path_contains`.
    pub fn add(&self, method: &str, path_contains: &str, times: usize, fault: Fault) {
        self.rules.lock().expect("rules").push(Rule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            remaining: times,
            fault,
        });
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// Requests seen with this method whose target contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.target.contains(path_contains))
            .count()
    }

    /// The `Range` headers of the requests seen with this method whose target contains
    /// `path_contains`, in order (`None`: no `Range`).
    pub fn ranges(&self, method: &str, path_contains: &str) -> Vec<Option<String>> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.target.contains(path_contains))
            .map(|s| s.range)
            .collect()
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }
}

fn take_fault(rules: &Mutex<Vec<Rule>>, method: &str, target: &str) -> Option<Fault> {
    let mut rules = rules.lock().ok()?;
    let rule = rules.iter_mut().find(|r| {
        r.remaining > 0
            && (r.method == "*" || r.method == method)
            && target.contains(&r.path_contains)
    })?;
    rule.remaining -= 1;
    Some(rule.fault.clone())
}

/// Counts a request in flight until dropped.
struct Flying<'a>(&'a Mutex<InFlight>);

impl<'a> Flying<'a> {
    fn start(counter: &'a Mutex<InFlight>) -> Self {
        if let Ok(mut c) = counter.lock() {
            c.now += 1;
            c.max = c.max.max(c.now);
        }
        Flying(counter)
    }
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.lock() {
            c.now -= 1;
        }
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Heads and bodies are written separately: without this, Nagle's algorithm and delayed
    // ACKs add tens of milliseconds to every answer.
    client.set_nodelay(true)?;
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    while let Some(head) = read_head(&mut from_client)? {
        let _flying = Flying::start(&shared.in_flight);
        let result = serve_one(head, &mut from_client, &mut to_client, shared);
        if let Ok(mut answered) = shared.answered.lock()
            && let Ok((target, _)) = &result
        {
            answered.push(target.clone());
        }
        if !result?.1 {
            return Ok(());
        }
    }
    Ok(())
}

/// Serves one request; returns its target and whether the connection stays open.
fn serve_one(
    head: Vec<String>,
    from_client: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
    shared: &Shared,
) -> std::io::Result<(String, bool)> {
    let (upstream, rules, seen) = (shared.upstream.as_str(), &shared.rules, &shared.seen);
    let behaviour = &shared.behaviour;
    let mut request = Message::new(head);
    let mut parts = request.head[0].split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let quirk = behaviour.quirk.as_ref();
    let declared: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Refused before the body is read, and the connection closed, as a registry that never
    // reads it does: the client sees the answer or a broken pipe.
    let refuse = match quirk {
        Some(Quirk::RefuseBodyOnPut) => {
            (method == "PUT" && target.contains("/blobs/uploads/") && declared > 0)
                .then_some((500, "a body on PUT is not supported".to_owned()))
        }
        Some(Quirk::ChunkLimits { max, .. }) => {
            (declared > *max).then(|| (413, format!("request bodies are limited to {max} bytes")))
        }
        _ => None,
    };
    if let Some((code, why)) = refuse {
        note(seen, &method, &target, &request, declared, None);
        answered(seen, &method, &target, code);
        to_client.write_all(error_answer(code, &why).as_bytes())?;
        to_client.flush()?;
        let _ = to_client.shutdown(Shutdown::Both);
        return Ok((target, false));
    }
    request.body = read_body(from_client, &request)?;
    let fault = take_fault(rules, &method, &target);
    note(
        seen,
        &method,
        &target,
        &request,
        request.body.len(),
        fault.clone(),
    );
    if fault == Some(Fault::Drop) {
        let _ = to_client.shutdown(Shutdown::Both);
        return Ok((target, false));
    }
    if let Some(Fault::HoldUntilAnswered(what)) = &fault {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline
            && !shared
                .answered
                .lock()
                .is_ok_and(|a| a.iter().any(|t| t.contains(what.as_str())))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let path = target.split('?').next().unwrap_or("").to_owned();
    if let Some((authority, signature)) = &behaviour.redirect_blobs
        && method == "GET"
        && path.contains("/blobs/sha256:")
    {
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{authority}{path}?X-Amz-Signature={signature}\r\nContent-Length: 0\r\n\r\n"
        );
        to_client.write_all(answer.as_bytes())?;
        return Ok((target, true));
    }
    let paging = behaviour
        .paging
        .filter(|_| method == "GET" && path.ends_with("/tags/list"));
    let referrer_pages = behaviour
        .referrer_pages
        .filter(|_| method == "GET" && path.contains("/referrers/"));
    if paging.is_some() || referrer_pages.is_some() {
        request.head[0] = request.head[0].replacen(&target, &path, 1);
    }
    if behaviour.ignore_range
        || quirk == Some(&Quirk::IgnoreRange)
        || fault == Some(Fault::IgnoreRange)
    {
        request
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("range:"));
    }
    if let Some(issuer) = &behaviour.sign_with {
        let query = target.split_once('?').map(|(_, q)| q);
        let token = issuer.mint("harness", &super::registry::harness_access(&path, query));
        request
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("authorization:"));
        request.head.push(format!("Authorization: Bearer {token}"));
    }
    if let Some(Fault::Status { code, retry_after }) = &fault {
        let body = format!(
            "{{\"errors\":[{{\"code\":\"INJECTED\",\"message\":\"fault injected: {code}\"}}]}}"
        );
        let mut answer = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(after) = retry_after {
            answer.push_str(&format!("Retry-After: {after}\r\n"));
        }
        answer.push_str("\r\n");
        answer.push_str(&body);
        to_client.write_all(answer.as_bytes())?;
        return Ok((target, true));
    }
    if let Some(Fault::Redirect(to)) = &fault {
        let n = SIGNED.fetch_add(1, Ordering::Relaxed);
        let location = format!(
            "http://{to}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={ACCESS_KEY}%2F20261130%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date={SIGNED_DATE}&X-Amz-Expires=1200&Expires={EXPIRES}\
             &X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}{n:08}"
        );
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
        );
        to_client.write_all(answer.as_bytes())?;
        return Ok((target, true));
    }
    if let Some(Fault::RefuseSigned(code)) = &fault {
        let own = &shared.own_host;
        let body = format!(
            "{{\"errors\":[{{\"code\":\"DENIED\",\"message\":\"Request has expired or its \
             signature does not match: http://{own}{target}\"}}]}}"
        );
        let answer = format!(
            "HTTP/1.1 {code} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        to_client.write_all(answer.as_bytes())?;
        return Ok((target, true));
    }
    if let Some(Fault::Stall(d)) = &fault {
        std::thread::sleep(*d);
    }
    if fault == Some(Fault::StripQuery) {
        let path = target.split('?').next().unwrap_or("");
        request.head[0] = request.head[0].replacen(&target, path, 1);
    }
    let Some((mut response, mut from_upstream)) = ask(upstream, &mut request)? else {
        return Ok((target, false));
    };
    let status = response.status();
    answered(seen, &method, &target, status);
    let has_body = has_body(&method, status);
    if has_body {
        response.body = read_body(&mut from_upstream, &response)?;
    }
    response.drop_header("connection");
    play_quirk(&mut response, quirk, &method, status);
    if let Some(mode) = paging
        && status == 200
    {
        page_tags(&mut response, &target, mode);
    }
    if let Some(size) = referrer_pages
        && status == 200
    {
        page_referrers(&mut response, &target, size);
    }
    if let Some(elsewhere) = &behaviour.send_elsewhere {
        send_elsewhere(&mut response, &shared.own_host, elsewhere);
    }
    if has_body {
        response.set_content_length(response.body.len());
    }
    match fault {
        Some(Fault::CutAfter(n)) => {
            to_client.write_all(&response.head_bytes())?;
            to_client.write_all(&response.body[..n.min(response.body.len())])?;
            to_client.flush()?;
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok((target, false));
        }
        Some(Fault::ShortBody(n)) => {
            response.body.truncate(n);
            response.set_content_length(response.body.len());
        }
        Some(Fault::FlipByte(offset)) => {
            if let Some(b) = response.body.get_mut(offset) {
                *b ^= 0xff;
            }
        }
        _ => {}
    }
    to_client.write_all(&response.head_bytes())?;
    if let Some(Fault::Trickle { pieces, pause }) = fault {
        let size = response.body.len().div_ceil(pieces.max(1)).max(1);
        for (i, piece) in response.body.chunks(size).enumerate() {
            if i > 0 {
                std::thread::sleep(pause);
            }
            to_client.write_all(piece)?;
            to_client.flush()?;
        }
        return Ok((target, true));
    }
    to_client.write_all(&response.body)?;
    Ok((target, true))
}

/// A query parameter of `target`, not decoded.
fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Cuts the registry's whole tag list down to the page `target` asks for.
fn page_tags(response: &mut Message, target: &str, mode: Paging) {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return;
    };
    let mut tags: Vec<String> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    if let Some(last) = query_param(target, "last") {
        tags.retain(|t| t.as_str() > last);
    }
    let asked: Option<usize> = query_param(target, "n").and_then(|n| n.parse().ok());
    let size = match mode {
        Paging::Link(size) => asked.map_or(size, |n| n.min(size)),
        Paging::LastOnly => asked.unwrap_or(tags.len()),
    };
    let more = tags.len() > size;
    tags.truncate(size);
    response
        .head
        .retain(|l| !l.to_ascii_lowercase().starts_with("link:"));
    if let (Paging::Link(_), true, Some(last)) = (mode, more, tags.last()) {
        let path = target.split('?').next().unwrap_or("");
        response
            .head
            .push(format!("Link: <{path}?n={size}&last={last}>; rel=\"next\""));
    }
    doc["tags"] = serde_json::json!(tags);
    response.body = doc.to_string().into_bytes();
}

/// Cuts the registry's whole referrers index down to page `?page=K` (0 when not asked) of
/// `size` descriptors, in the registry's order.
fn page_referrers(response: &mut Message, target: &str, size: usize) {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&response.body) else {
        return;
    };
    let all = doc["manifests"].as_array().cloned().unwrap_or_default();
    let page: usize = query_param(target, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let start = (page * size).min(all.len());
    let end = (start + size).min(all.len());
    response
        .head
        .retain(|l| !l.to_ascii_lowercase().starts_with("link:"));
    if end < all.len() {
        let path = target.split('?').next().unwrap_or("");
        response
            .head
            .push(format!("Link: <{path}?page={}>; rel=\"next\"", page + 1));
    }
    doc["manifests"] = serde_json::json!(all[start..end]);
    response.body = doc.to_string().into_bytes();
}

/// `Location` and `Link` headers that name the proxy (or only a path) name `elsewhere`.
fn send_elsewhere(response: &mut Message, own_host: &str, elsewhere: &str) {
    for line in response.head.iter_mut().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let lower = name.trim().to_ascii_lowercase();
        if lower != "location" && lower != "link" {
            continue;
        }
        let value = value.trim();
        let value = if value.starts_with('/') {
            format!("http://{elsewhere}{value}")
        } else if let Some(path) = value.strip_prefix("</") {
            format!("<http://{elsewhere}/{path}")
        } else {
            value.replace(own_host, elsewhere)
        };
        *line = format!("{}: {value}", name.trim());
    }
}

/// Answers `code` with a registry error carrying `message`, saying `Connection: close`: the
/// proxy closes the connection after it (the body unread). Without the header a client may
/// keep the connection for its next request and find it closed, a retry the registry caused
/// by breaking HTTP/1.1, not by the quirk it plays (a server that closes says so, as hyper's
/// does when it leaves a body unread).
fn error_answer(code: u16, message: &str) -> String {
    let body = format!("{{\"errors\":[{{\"code\":\"QUIRK\",\"message\":\"{message}\"}}]}}");
    format!(
        "HTTP/1.1 {code} Quirk\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Notes a request the proxy saw.
fn note(
    seen: &Mutex<Vec<Seen>>,
    method: &str,
    target: &str,
    request: &Message,
    len: usize,
    fault: Option<Fault>,
) {
    if let Ok(mut s) = seen.lock() {
        s.push(Seen {
            method: method.to_owned(),
            target: target.to_owned(),
            range: request.header("range").map(str::to_owned),
            authorization: request.header("authorization").map(str::to_owned),
            content_range: request.header("content-range").map(str::to_owned),
            body_len: len,
            status: 0,
            fault,
        });
    }
}

/// Sets the status of the request noted last with this method and target.
fn answered(seen: &Mutex<Vec<Seen>>, method: &str, target: &str, status: u16) {
    if let Ok(mut s) = seen.lock()
        && let Some(last) = s
            .iter_mut()
            .rev()
            .find(|s| s.method == method && s.target == target)
    {
        last.status = status;
    }
}

/// What a quirk changes in an answer from distribution.
fn play_quirk(response: &mut Message, quirk: Option<&Quirk>, method: &str, status: u16) {
    match quirk {
        Some(Quirk::HeadWithoutDigest) if method == "HEAD" => response
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("docker-content-digest:")),
        Some(Quirk::ChunkLimits { min, max }) if method == "POST" && status == 202 => {
            response.head.push(format!("OCI-Chunk-Min-Length: {min}"));
            response.head.push(format!("OCI-Chunk-Max-Length: {max}"));
        }
        Some(Quirk::LocationOn(other)) => {
            for line in response.head.iter_mut().skip(1) {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("location") {
                    continue;
                }
                // distribution answers absolute URLs built from the Host header (this
                // proxy): keep the path, name the other port.
                let value = value.trim();
                let path = match value.find("/v2/") {
                    Some(at) => &value[at..],
                    None => value,
                };
                *line = format!("Location: http://{other}{path}");
            }
        }
        _ => {}
    }
}
