//! A registry WITH the OCI 1.1 referrers API for the tests: the `ferro-oci-server` crate's
//! binary (axum, plain HTTP, anonymous; blobs in a directory, metadata in memory). Neither
//! distribution 2.8 nor `container-registry` has the API, so this is the one registry where
//! referrers are found by `GET /v2/<name>/referrers/<digest>` and a manifest put with a
//! `subject` is listed there (the `PUT` answers `OCI-Subject`).
//!
//! It writes no access log; it counts its requests itself on `GET /metrics`
//! (`ferrooci_http_requests_total` by method, handler and status), which is what
//! [`Ferro::requests`] reads: take the counts before and after a run of the tool, with no
//! harness request in between.
//!
//! `.ci/run` installs it (`cargo install --locked`) and sets `FERRO_OCI_SERVER_BIN`; without
//! that, the default install path under `target/tools/` and then `PATH` are tried. A missing
//! binary fails the test with the command that installs it: the tests must run against it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{ALL_MANIFEST_TYPES, HARNESS_USER_AGENT, OCI_INDEX, Push, sha256_digest};

/// The crate version the tests are written against.
pub const VERSION: &str = "1.0.0";

/// The command that installs the binary where the tests look first.
pub fn install_command() -> String {
    format!(
        "cargo install --locked ferro-oci-server --version {VERSION} --root {}",
        default_root().display()
    )
}

fn default_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/ferro-oci-server")
}

fn missing(what: &str) -> ! {
    panic!(
        "{what}; install it with:\n  {}\n(or set FERRO_OCI_SERVER_BIN; bash .ci/run does both)",
        install_command()
    )
}

/// The binary: `$FERRO_OCI_SERVER_BIN`, the default install path, or `PATH`.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRO_OCI_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.exists() {
            missing(&format!(
                "FERRO_OCI_SERVER_BIN={} does not exist",
                bin.display()
            ));
        }
        return bin;
    }
    let default = default_root().join("bin/ferro-oci-server");
    if default.exists() {
        return default;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("ferro-oci-server"))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| missing("the ferro-oci-server binary is missing"))
}

/// Requests a registry served, by (method, handler, status): handler is ferro's name for
/// the route (`manifests`, `blobs`, `uploads`, `tags`, `referrers`, `version`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests(pub BTreeMap<(String, String, u16), u64>);

impl Requests {
    /// What was served after `before` was taken.
    pub fn since(&self, before: &Requests) -> Requests {
        let mut out = BTreeMap::new();
        for (key, n) in &self.0 {
            let earlier = before.0.get(key).copied().unwrap_or(0);
            if *n > earlier {
                out.insert(key.clone(), n - earlier);
            }
        }
        Requests(out)
    }

    /// Requests of this method (`None`: any) to this handler.
    pub fn count(&self, method: Option<&str>, handler: &str) -> u64 {
        self.0
            .iter()
            .filter(|((m, h, _), _)| h == handler && method.is_none_or(|want| want == m))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests that write: `PUT`, `POST`, `PATCH`, `DELETE`.
    pub fn writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|((m, _, _), _)| matches!(m.as_str(), "PUT" | "POST" | "PATCH" | "DELETE"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// One running `ferro-oci-server` on a free 127.0.0.1 port with its own storage; killed when
/// dropped.
pub struct Ferro {
    child: Child,
    port: u16,
    agent: ureq::Agent,
    // Last field: removed after the process was killed.
    dir: TempDir,
}

impl Ferro {
    /// Starts one; retries with another port if the chosen one was taken meanwhile, and
    /// panics with its log when it does not come up.
    pub fn start() -> Ferro {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start_on(super::free_port()) {
                Ok(ferro) => return ferro,
                Err(e) => last = e,
            }
        }
        panic!("ferro-oci-server did not start after 5 attempts; last failure:\n{last}");
    }

    fn try_start_on(port: u16) -> Result<Ferro, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(binary())
            .env("FERRO_OCI_LISTEN", format!("127.0.0.1:{port}"))
            .env("FERRO_OCI_STORAGE_DIR", dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary().display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(HARNESS_USER_AGENT)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut ferro = Ferro {
            child,
            port,
            agent,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = ferro.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", ferro.log()));
            }
            let ready = ferro
                .agent
                .get(format!("{}/v2/", ferro.url()))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return Ok(ferro);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ferro-oci-server did not answer on {} within 10 s:\n{}",
                ferro.host(),
                ferro.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Its own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.url())
    }

    fn get(&self, url: &str, accept: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let mut answer = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let headers = answer
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = answer
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (answer.status().as_u16(), headers, body)
    }

    /// `GET /v2/<repo>/manifests/<reference>`: (Content-Type, body), or None on 404.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let url = self.v2(&format!("{repo}/manifests/{reference}"));
        let (status, headers, body) = self.get(&url, &ALL_MANIFEST_TYPES.join(", "));
        match status {
            200 => Some((
                headers.get("content-type").cloned().unwrap_or_default(),
                body,
            )),
            404 => None,
            _ => panic!(
                "GET {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// The digest of `repo:reference` by its bytes, or None when it does not have it.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        self.manifest(repo, reference)
            .map(|(_, body)| sha256_digest(&body))
    }

    /// Sorted tags of `repo` (empty when it has none).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let url = self.v2(&format!("{repo}/tags/list"));
        let (status, _, body) = self.get(&url, "application/json");
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("tags JSON");
        let mut tags: Vec<String> = doc["tags"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// What its referrers API lists for `digest`: the descriptors of the answer's index
    /// (digest, artifactType, …), optionally filtered by `artifactType`.
    pub fn referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Vec<serde_json::Value> {
        let mut url = self.v2(&format!("{repo}/referrers/{digest}"));
        if let Some(t) = artifact_type {
            // A `+` in a query is a space: `application/spdx+json` needs it escaped.
            url.push_str("?artifactType=");
            url.push_str(&t.replace('+', "%2B"));
        }
        let (status, headers, body) = self.get(&url, OCI_INDEX);
        assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
        if artifact_type.is_some() {
            assert_eq!(
                headers.get("oci-filters-applied").map(String::as_str),
                Some("artifactType"),
                "GET {url}: the filter was not applied"
            );
        }
        let index: serde_json::Value = serde_json::from_slice(&body).expect("referrers index");
        index["manifests"].as_array().cloned().unwrap_or_default()
    }

    /// The digests its referrers API lists for `digest`, sorted.
    pub fn referrer_digests(&self, repo: &str, digest: &str) -> Vec<String> {
        let mut digests: Vec<String> = self
            .referrers(repo, digest, None)
            .iter()
            .filter_map(|d| d["digest"].as_str().map(str::to_owned))
            .collect();
        digests.sort();
        digests
    }

    /// Every request it served so far, by (method, handler, status), from its `/metrics`
    /// (this request itself is counted under the handler `metrics`, which is left out).
    pub fn requests(&self) -> Requests {
        let url = format!("{}/metrics", self.url());
        let (status, _, body) = self.get(&url, "text/plain");
        assert_eq!(status, 200, "GET {url}");
        let text = String::from_utf8(body).expect("metrics text");
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("ferrooci_http_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let handler = label("handler");
            if handler == "metrics" {
                continue;
            }
            let key = (
                label("method"),
                handler,
                label("status").parse().unwrap_or(0),
            );
            out.insert(key, value.trim().parse().expect("a count"));
        }
        Requests(out)
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> ureq::http::Response<ureq::Body> {
        let request = match method {
            "PUT" => self.agent.put(url),
            "POST" => self.agent.post(url),
            other => panic!("no {other} here"),
        };
        request
            .content_type(content_type)
            .send(body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }
}

impl Push for Ferro {
    /// `POST …/blobs/uploads/` then `PUT <Location>?digest=` with the bytes.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let started = self.send(
            "POST",
            &self.v2(&format!("{repo}/blobs/uploads/")),
            "application/octet-stream",
            &[],
        );
        assert_eq!(started.status(), 202, "start an upload to {repo}");
        let location = started
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_owned();
        let url = super::api::upload_commit_url(&self.url(), location, &digest);
        let done = self.send("PUT", &url, "application/octet-stream", data);
        assert_eq!(done.status(), 201, "upload {digest} to {repo}");
        digest
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        let url = self.v2(&format!("{repo}/manifests/{reference}"));
        let mut answer = self.send("PUT", &url, media_type, body);
        let status = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "PUT {url}: {text}");
        sha256_digest(body)
    }
}

impl Drop for Ferro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- ferro-oci-server {} log ---\n{}",
                self.host(),
                self.log()
            );
        }
    }
}
