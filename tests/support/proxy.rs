//! A fault-injecting HTTP/1.1 proxy placed in front of a real registry: answers 429/503,
//! cuts or shortens bodies, flips bytes, stalls — on the requests a rule selects, a given
//! number of times. Everything else passes through unchanged. The Host header is passed
//! through, so the registry's upload `Location`s point back at the proxy.
//!
//! Started with a [`Quirk`], the same proxy makes distribution behave like another registry
//! implementation, one difference at a time, on every request (registries differ exactly in
//! these corners, and the engine must mirror through each with identical digests).
//! Two faults play a registry that keeps its blobs elsewhere: [`Fault::Redirect`] answers a
//! blob GET with a redirect to another host (a second proxy, standing for a CDN or an object
//! store) under a pre-signed query, and [`Fault::RefuseSigned`] is that host refusing the
//! signed URL with an error that quotes it whole, as S3 and CDNs do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Answer `307` with a `Location` on this host (`127.0.0.1:PORT`), the same path, and a
    /// pre-signed query whose signature is [`SIGNATURE`] followed by a counter: each redirect
    /// is signed afresh, as a registry's are.
    Redirect(String),
    /// Answer this status with a distribution-style JSON error whose message quotes the
    /// request's full URL, signature included.
    RefuseSigned(u16),
}

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
/// What every signature [`Fault::Redirect`] makes starts with; a secret that must never
/// appear in anything image-mirror writes.
pub const SIGNATURE: &str = "5ec2e7519a7";
/// The access key id in [`Fault::Redirect`]'s signed queries; a secret just the same.
pub const ACCESS_KEY: &str = "AKIAIMAGEMIRRORTEST";

static SIGNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    /// The request's `Content-Range` header.
    pub content_range: Option<String>,
    /// The length of the request's body.
    pub body_len: usize,
    /// The status answered (0: none, the connection was closed).
    pub status: u16,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    pub fault: Option<Fault>,
}

pub struct FaultProxy {
    host: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_with(upstream, None)
    }

    /// A proxy that gives the registry behind it `quirk`.
    pub fn with_quirk(upstream: &str, quirk: Quirk) -> FaultProxy {
        FaultProxy::start_with(upstream, Some(quirk))
    }

    fn start_with(upstream: &str, quirk: Option<Quirk>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st, up, own) = (
            rules.clone(),
            seen.clone(),
            stop.clone(),
            upstream.to_owned(),
            host.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (r, s, up, own, q) =
                    (r.clone(), s.clone(), up.clone(), own.clone(), quirk.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &up, &own, &r, &s, q.as_ref());
                });
            }
        });
        FaultProxy {
            host,
            rules,
            seen,
            stop,
        }
    }

    pub fn host(&self) -> String {
        self.host.clone()
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

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

struct Message {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn set_content_length(&mut self, len: usize) {
        self.head.retain(|l| {
            let lower = l.to_ascii_lowercase();
            !lower.starts_with("content-length:") && !lower.starts_with("transfer-encoding:")
        });
        self.head.push(format!("Content-Length: {len}"));
    }

    fn head_bytes(&self) -> Vec<u8> {
        let mut out = self.head.join("\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<String>>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            if head.is_empty() {
                continue;
            }
            return Ok(Some(head));
        }
        head.push(line);
    }
}

/// Reads a body framed by Content-Length or chunked encoding (de-chunked).
fn read_body(
    reader: &mut BufReader<TcpStream>,
    msg: &Message,
    has_body: bool,
) -> std::io::Result<Vec<u8>> {
    if !has_body {
        return Ok(Vec::new());
    }
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let len: usize = msg
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(body)
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

/// Answers `code` with a registry error carrying `message`.
fn error_answer(code: u16, message: &str) -> String {
    let body = format!("{{\"errors\":[{{\"code\":\"QUIRK\",\"message\":\"{message}\"}}]}}");
    format!(
        "HTTP/1.1 {code} Quirk\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Notes a request the proxy saw.
fn note(seen: &Mutex<Vec<Seen>>, method: &str, target: &str, request: &Message, len: usize) {
    if let Ok(mut s) = seen.lock() {
        s.push(Seen {
            method: method.to_owned(),
            target: target.to_owned(),
            range: request.header("range").map(str::to_owned),
            content_range: request.header("content-range").map(str::to_owned),
            body_len: len,
            status: 0,
            authorization: request.header("authorization").is_some(),
            fault: None,
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

fn serve(
    client: TcpStream,
    upstream: &str,
    own: &str,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
    quirk: Option<&Quirk>,
) -> std::io::Result<()> {
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    while let Some(head) = read_head(&mut from_client)? {
        let mut request = Message {
            head,
            body: Vec::new(),
        };
        let mut parts = request.head[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let declared: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Refused before the body is read, and the connection closed, as a registry that
        // never reads it does: the client sees the answer or a broken pipe.
        let refuse = match quirk {
            Some(Quirk::RefuseBodyOnPut) => {
                (method == "PUT" && target.contains("/blobs/uploads/") && declared > 0)
                    .then_some((500, "a body on PUT is not supported".to_owned()))
            }
            Some(Quirk::ChunkLimits { max, .. }) => (declared > *max)
                .then(|| (413, format!("request bodies are limited to {max} bytes"))),
            _ => None,
        };
        if let Some((code, why)) = refuse {
            note(seen, &method, &target, &request, declared);
            answered(seen, &method, &target, code);
            to_client.write_all(error_answer(code, &why).as_bytes())?;
            to_client.flush()?;
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok(());
        }
        request.body = read_body(&mut from_client, &request, true)?;
        let fault = take_fault(rules, &method, &target);
        note(seen, &method, &target, &request, request.body.len());
        if let Ok(mut s) = seen.lock()
            && let Some(last) = s.last_mut()
        {
            last.fault = fault.clone();
        }
        if quirk == Some(&Quirk::IgnoreRange) {
            request
                .head
                .retain(|l| !l.to_ascii_lowercase().starts_with("range:"));
        }
        if fault == Some(Fault::Drop) {
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok(());
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
            continue;
        }
        if let Some(Fault::Redirect(to)) = &fault {
            let n = SIGNED.fetch_add(1, Ordering::Relaxed);
            let path = target.split('?').next().unwrap_or("");
            let location = format!(
                "http://{to}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential={ACCESS_KEY}%2F20261130%2Fus-east-1%2Fs3%2Faws4_request\
                 &X-Amz-Date=20261130T060000Z&X-Amz-Expires=1200&X-Amz-SignedHeaders=host\
                 &X-Amz-Signature={SIGNATURE}{n:08}"
            );
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
            to_client.write_all(answer.as_bytes())?;
            continue;
        }
        if let Some(Fault::RefuseSigned(code)) = &fault {
            let body = format!(
                "{{\"errors\":[{{\"code\":\"DENIED\",\"message\":\"Request has expired or its \
                 signature does not match: http://{own}{target}\"}}]}}"
            );
            let answer = format!(
                "HTTP/1.1 {code} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            to_client.write_all(answer.as_bytes())?;
            continue;
        }
        if let Some(Fault::Stall(d)) = &fault {
            std::thread::sleep(*d);
        }
        if fault == Some(Fault::StripQuery) {
            let path = target.split('?').next().unwrap_or("");
            request.head[0] = request.head[0].replacen(&target, path, 1);
        }
        // Forward on a fresh upstream connection, framed by Content-Length.
        let upstream_conn = TcpStream::connect(upstream)?;
        let mut to_upstream = upstream_conn.try_clone()?;
        let mut from_upstream = BufReader::new(upstream_conn);
        request.set_content_length(request.body.len());
        request
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
        request.head.push("Connection: close".to_owned());
        to_upstream.write_all(&request.head_bytes())?;
        to_upstream.write_all(&request.body)?;
        let Some(head) = read_head(&mut from_upstream)? else {
            return Ok(());
        };
        let mut response = Message {
            head,
            body: Vec::new(),
        };
        let status: u16 = response.head[0]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        answered(seen, &method, &target, status);
        let has_body = method != "HEAD" && status != 204 && status != 304;
        response.body = read_body(&mut from_upstream, &response, has_body)?;
        response
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
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
        if has_body {
            response.set_content_length(response.body.len());
        }
        match fault {
            Some(Fault::CutAfter(n)) => {
                to_client.write_all(&response.head_bytes())?;
                to_client.write_all(&response.body[..n.min(response.body.len())])?;
                to_client.flush()?;
                let _ = to_client.shutdown(Shutdown::Both);
                return Ok(());
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
        to_client.write_all(&response.body)?;
    }
    Ok(())
}
