//! A long path in front of a real registry: an HTTP/1.1 proxy (std threads, one per
//! connection) that holds every request for a fixed time before forwarding it, so that each
//! request's round trip is at least that long, as over a link between continents. It counts
//! the blob transfers in flight (a blob `GET`, an upload's `PUT` or `PATCH` with its bytes)
//! from the end of a request's head to the end of its answer, and keeps the most at once.
//!
//! [`DelayProxy::admitting`] plays a registry that takes only so many transfers at once: a
//! transfer arriving while that many are in flight is answered `429` after the same delay
//! (and counted in flight meanwhile too: what the client tried is what is measured).

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::forward::{Listening, Message, ask, has_body, read_body, read_head};

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
    listening: Listening,
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            delay,
            admit,
            counts: Mutex::default(),
            admitted: Mutex::default(),
        });
        let sh = shared.clone();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind delay proxy");
        let listening = Listening::start(listener, move |client| {
            let _ = serve(client, &sh);
        })
        .expect("addr");
        DelayProxy { listening, shared }
    }

    pub fn host(&self) -> String {
        self.listening.host().to_owned()
    }

    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().expect("counts")
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
        let mut request = Message::new(head);
        let mut parts = request.head[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        request.body = read_body(&mut from_client, &request)?;
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
        let Some((mut answer, mut from_upstream)) = ask(&shared.upstream, &mut request)? else {
            return Err(std::io::Error::other("no answer upstream"));
        };
        let has_body = has_body(&method, answer.status());
        if has_body {
            answer.body = read_body(&mut from_upstream, &answer)?;
        }
        answer.drop_header("connection");
        if has_body {
            answer.set_content_length(answer.body.len());
        }
        to_client.write_all(&answer.head_bytes())?;
        to_client.write_all(&answer.body)?;
        drop(flying);
    }
    Ok(())
}
