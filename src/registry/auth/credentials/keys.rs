//! Which `auths` key applies to a repository: keys normalised (a scheme, Docker Hub's legacy
//! `https://index.docker.io/v1/`, a trailing slash), then the longest key that is a prefix of
//! `host/path` on `/` boundaries (`HOST/ORG/REPO`, `HOST/ORG`, `HOST`).

use super::file::Entry;
use crate::model::reference::normalize_host;

/// `https://quay.io` → `quay.io`; `https://index.docker.io/v1/` → `docker.io`;
/// `quay.io/org/` → `quay.io/org`. A key with a scheme is a registry (its path is an API
/// path, as docker writes them); a key without one may name a namespace (as podman does).
pub(super) fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let (had_scheme, rest) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let rest = if had_scheme {
        rest.split('/').next().unwrap_or("")
    } else {
        rest.trim_end_matches('/')
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = normalize_host(host);
    if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

pub(super) fn host_of(key: &str) -> String {
    key.split('/').next().unwrap_or("").to_owned()
}

/// The entry whose key is the longest prefix (on `/` boundaries) of `host/path`.
pub(super) fn longest_match<'a>(entries: &'a [Entry], host: &str, path: &str) -> Option<&'a Entry> {
    let full = format!("{host}/{path}");
    entries
        .iter()
        .filter(|e| {
            e.key == host
                || (full.starts_with(&e.key) && full.as_bytes().get(e.key.len()) == Some(&b'/'))
                || e.key == full
        })
        .max_by_key(|e| e.key.len())
}
