//! What a registry served, read from its access log (one Combined-Log-Format line per HTTP
//! request, written when the request's handler returns): [`Registry::requests`] and the marks
//! that count what the tool did after a point.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::media::HARNESS_USER_AGENT;
use super::registry::Registry;

/// Query parameter of the harness's own log-synchronisation requests (filtered out of
/// [`Registry::requests`]).
const SYNC_PARAM: &str = "harness-log-sync";
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

impl Registry {
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
}
