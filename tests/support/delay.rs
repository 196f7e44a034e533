//! A long path in front of a real registry: an HTTP/1.1 proxy (std threads, one per
//! connection) that holds every request for a fixed time before forwarding it, so that each
//! request's round trip is at least that long, as over a link between continents. It counts
//! the blob transfers in flight (a blob `GET`, an upload's `PUT` or `PATCH` with its bytes)
//! from the end of a request's head to the end of its answer, and keeps the most at once.
//!
//! [`DelayProxy::admitting`] plays a registry that takes only so many transfers at once: a
//! transfer arriving while that many are in flight is answered `429` after the same delay
//! (and counted in flight meanwhile too: what the client tried is what is measured).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Transfers in flight now, and the most at once (refused ones included).
    pub now: usize,
    pub max: usize,
    /// Transfers answered `429`.
    pub refused: usize,
    /// Transfers seen, refused ones included.
    pub seen: usize,
    /// The most transfers in flight at once, counted as each arrived once the first `429`
    /// had been answered and every transfer in flight then had ended: what the client
    /// tried once it had been told no (the ones already under way, slowed by a busy
    /// machine, are not its choice).
    pub max_after_refusal: usize,
    /// 0: no refusal answered yet; 1: transfers from before it are still in flight
    /// (`before` of them); 2: measuring.
    phase: u8,
    before: usize,
}

struct Shared {
    upstream: String,
    delay: Duration,
    admit: Option<usize>,
    counts: Mutex<Counts>,
    /// Transfers admitted and in flight now (refused ones not).
    admitted: Mutex<usize>,
}

pub struct DelayProxy {
    host: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Holds every request `delay` before forwarding it to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str, delay: Duration) -> DelayProxy {
        DelayProxy::with(upstream, delay, None)
    }

    /// [`DelayProxy::start`], answering `429` to a transfer while `transfers` are in flight.
    pub fn admitting(upstream: &str, delay: Duration, transfers: usize) -> DelayProxy {
        DelayProxy::with(upstream, delay, Some(transfers))
    }

    fn with(upstream: &str, delay: Duration, admit: Option<usize>) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind delay proxy");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            delay,
            admit,
            counts: Mutex::default(),
            admitted: Mutex::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sh) = (stop.clone(), shared.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let shared = sh.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, &shared);
                });
            }
        });
        DelayProxy { host, shared, stop }
    }

    pub fn host(&self) -> String {
        self.host.clone()
    }

    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().expect("counts")
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.host);
    }
}

/// Whether a request moves a blob's bytes.
fn is_transfer(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    match method {
        "GET" => path.contains("/blobs/") && !path.contains("/blobs/uploads/"),
        "PUT" | "PATCH" => path.contains("/blobs/uploads/"),
        _ => false,
    }
}

/// Counts a transfer in flight until dropped; `admitted` when it was forwarded.
struct Flying<'a> {
    shared: &'a Shared,
    admitted: bool,
    /// It arrived before the first refusal was answered.
    before: bool,
}

impl<'a> Flying<'a> {
    /// Counts a transfer; `false` in the second place when it is to be refused.
    fn start(shared: &'a Shared) -> Flying<'a> {
        let admitted = {
            let mut admitted = shared.admitted.lock().expect("admitted");
            let room = shared.admit.is_none_or(|n| *admitted < n);
            if room {
                *admitted += 1;
            }
            room
        };
        let mut c = shared.counts.lock().expect("counts");
        c.now += 1;
        c.max = c.max.max(c.now);
        c.seen += 1;
        if c.phase == 2 {
            c.max_after_refusal = c.max_after_refusal.max(c.now);
        }
        if !admitted {
            c.refused += 1;
        }
        Flying {
            shared,
            admitted,
            before: c.phase == 0,
        }
    }
}

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        if self.admitted
            && let Ok(mut a) = self.shared.admitted.lock()
        {
            *a -= 1;
        }
        if let Ok(mut c) = self.shared.counts.lock() {
            c.now -= 1;
            if self.before && c.phase == 1 {
                c.before -= 1;
                if c.before == 0 {
                    c.phase = 2;
                }
            }
        }
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    while let Some(head) = read_head(&mut from_client)? {
        let mut parts = head[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let body = read_body(&mut from_client, &head, true)?;
        let flying = is_transfer(&method, &target).then(|| Flying::start(shared));
        // Refused or not, the answer comes a round trip later.
        std::thread::sleep(shared.delay);
        if flying.as_ref().is_some_and(|f| !f.admitted) {
            to_client.write_all(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")?;
            let mut c = shared.counts.lock().expect("counts");
            if c.phase == 0 {
                // This one and every other from before it: measuring starts when they end.
                c.phase = 1;
                c.before = c.now;
            }
            continue;
        }
        let (head, body) = forward(&shared.upstream, &method, head, &body)?;
        to_client.write_all(&head)?;
        to_client.write_all(&body)?;
        drop(flying);
    }
    Ok(())
}

/// Sends one request upstream on a connection of its own; the answer's head (framed by
/// Content-Length) and body.
fn forward(
    upstream: &str,
    method: &str,
    mut head: Vec<String>,
    body: &[u8],
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let conn = TcpStream::connect(upstream)?;
    conn.set_nodelay(true)?;
    let mut to_upstream = conn.try_clone()?;
    let mut from_upstream = BufReader::new(conn);
    head.retain(|l| {
        let l = l.to_ascii_lowercase();
        !l.starts_with("connection:")
            && !l.starts_with("content-length:")
            && !l.starts_with("transfer-encoding:")
    });
    head.push(format!("Content-Length: {}", body.len()));
    head.push("Connection: close".to_owned());
    to_upstream.write_all(&bytes_of(&head))?;
    to_upstream.write_all(body)?;
    let Some(mut answer) = read_head(&mut from_upstream)? else {
        return Err(std::io::Error::other("no answer upstream"));
    };
    let status: u16 = answer[0]
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let has_body = method != "HEAD" && status != 204 && status != 304;
    let answer_body = read_body(&mut from_upstream, &answer, has_body)?;
    answer.retain(|l| {
        let l = l.to_ascii_lowercase();
        !l.starts_with("connection:") && (!has_body || !l.starts_with("transfer-encoding:"))
    });
    if has_body {
        answer.retain(|l| !l.to_ascii_lowercase().starts_with("content-length:"));
        answer.push(format!("Content-Length: {}", answer_body.len()));
    }
    Ok((bytes_of(&answer), answer_body))
}

fn bytes_of(head: &[String]) -> Vec<u8> {
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
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

/// A body framed by Content-Length or chunked encoding (de-chunked).
fn read_body(
    reader: &mut BufReader<TcpStream>,
    head: &[String],
    has_body: bool,
) -> std::io::Result<Vec<u8>> {
    if !has_body {
        return Ok(Vec::new());
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
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
    let len: usize = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(body)
}
