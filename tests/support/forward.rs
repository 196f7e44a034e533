//! The HTTP/1.1 plumbing the test proxies share (the fault proxy, `proxy.rs`; the rationing
//! proxy, `rationing.rs`; the delaying proxy, `delay.rs`): a loopback listener with a thread
//! per connection, a message's head and body as they are read (a chunked body de-chunked),
//! and a request sent to the registry on a connection of its own, framed by Content-Length.
//! What a proxy does to a request, and what it counts, is its own.
//!
//! Standard library only, and a module of `rationing.rs` (which names this file by its
//! path): the benchmark's program includes `rationing.rs` alone and builds it with a bare
//! `rustc`. `mod.rs` re-exports it as `support::forward` for the other two.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A listener serving each connection on a thread of its own; dropping it stops accepting.
pub struct Listening {
    host: String,
    stop: Arc<AtomicBool>,
}

impl Listening {
    /// Hands each connection `listener` accepts to `serve`, on a thread of its own.
    pub fn start(
        listener: TcpListener,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> std::io::Result<Listening> {
        let host = format!("127.0.0.1:{}", listener.local_addr()?.port());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, serve) = (stop.clone(), Arc::new(serve));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let serve = serve.clone();
                std::thread::spawn(move || serve(client));
            }
        });
        Ok(Listening { host, stop })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

/// A request or an answer: its head (the first line, then one header a line) and its body.
pub struct Message {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

impl Message {
    /// A message of `head` whose body is not read yet.
    pub fn new(head: Vec<String>) -> Message {
        Message {
            head,
            body: Vec::new(),
        }
    }

    /// The value of the header `name` (any case), the first if there are several.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Removes every header `name` (any case).
    pub fn drop_header(&mut self, name: &str) {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let first = self.head.remove(0);
        self.head
            .retain(|l| !l.to_ascii_lowercase().starts_with(&prefix));
        self.head.insert(0, first);
    }

    /// Frames the body by `Content-Length: len` (and not chunked).
    pub fn set_content_length(&mut self, len: usize) {
        self.drop_header("content-length");
        self.drop_header("transfer-encoding");
        self.head.push(format!("Content-Length: {len}"));
    }

    /// The status of an answer (0 when its first line has none).
    pub fn status(&self) -> u16 {
        self.head[0]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The head as sent: CRLF after each line, and a blank line.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut out = self.head.join("\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out
    }
}

/// Whether the answer to `method` with `status` has a body to read.
pub fn has_body(method: &str, status: u16) -> bool {
    method != "HEAD" && status != 204 && status != 304
}

/// Reads a message's head, skipping blank lines before it (None: the connection closed).
pub fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<String>>> {
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

/// Reads the body `msg`'s head frames, by Content-Length or chunked encoding (de-chunked).
pub fn read_body(reader: &mut BufReader<TcpStream>, msg: &Message) -> std::io::Result<Vec<u8>> {
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

/// Sends `request` to `upstream` ("127.0.0.1:PORT") on a connection of its own, framed by
/// Content-Length and saying `Connection: close`; returns the answer with its head read and
/// the connection its body is still on (None: the registry closed without an answer).
pub fn ask(
    upstream: &str,
    request: &mut Message,
) -> std::io::Result<Option<(Message, BufReader<TcpStream>)>> {
    let conn = TcpStream::connect(upstream)?;
    // Heads and bodies are written separately: without this, Nagle's algorithm and delayed
    // ACKs add tens of milliseconds to every request.
    conn.set_nodelay(true)?;
    let mut to_upstream = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let len = request.body.len();
    request.set_content_length(len);
    request.drop_header("connection");
    request.head.push("Connection: close".to_owned());
    to_upstream.write_all(&request.head_bytes())?;
    to_upstream.write_all(&request.body)?;
    Ok(read_head(&mut reader)?.map(|head| (Message::new(head), reader)))
}
