//! What a registry publishes about how it rations its clients, read from the headers of an
//! answer. Two dialects:
//!
//! - Docker Hub's (<https://docs.docker.com/docker-hub/usage/pulls/>, "View pull rate and
//!   limit"): `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600` on
//!   manifest answers, HEAD included (a HEAD is not counted), and `docker-ratelimit-source`
//!   (the account or address the pulls are counted against);
//! - the IETF HTTPAPI draft's (draft-ietf-httpapi-ratelimit-headers-10,
//!   <https://www.ietf.org/archive/id/draft-ietf-httpapi-ratelimit-headers-10.txt>):
//!   `RateLimit-Policy: "hour";q=100;w=3600, "burst";q=20;w=1` (a Structured Fields list
//!   of named policies: `q` the quota, `w` its window in seconds) and
//!   `RateLimit: "hour";r=76;t=1200` (`r` what is left, `t` seconds until the window
//!   resets).
//!
//! Pure: headers in, values out. A value that does not parse is left out with one debug
//! line (a registry's bad header must never fail a run), never guessed at.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Docker Hub's headers.
const DOCKER_LIMIT: &str = "ratelimit-limit";
const DOCKER_REMAINING: &str = "ratelimit-remaining";
const DOCKER_SOURCE: &str = "docker-ratelimit-source";
/// The IETF draft's.
const IETF_POLICY: &str = "ratelimit-policy";
const IETF_CURRENT: &str = "ratelimit";

/// Windows at least this long are quotas (spent and waited out); shorter ones are paces (a
/// rate to send at). Docker Hub's is hours; a request-rate limit's is seconds.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(60);

/// One limit a registry published: a quota over a window, what is left of it, when it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The policy's name (the IETF draft's list key); empty for Docker Hub's.
    pub name: String,
    /// Units the window allows (`q`, or Docker Hub's `ratelimit-limit`).
    pub quota: Option<u64>,
    pub window: Option<Duration>,
    /// Units left (`r`, or `ratelimit-remaining`).
    pub remaining: Option<u64>,
    /// Until the window resets (`t`).
    pub reset: Option<Duration>,
}

impl Limit {
    /// A window long enough to be a quota, or none given (Docker Hub's always has one; a
    /// limit without a window is taken as a quota, which is the cautious reading).
    pub fn is_quota(&self) -> bool {
        self.window.is_none_or(|w| w >= QUOTA_WINDOW)
    }

    /// The rate this limit allows, in units per second, when its window is short enough to
    /// be a pace.
    pub fn rate(&self) -> Option<f64> {
        let window = self.window?;
        if self.is_quota() || window.is_zero() {
            return None;
        }
        Some(self.quota? as f64 / window.as_secs_f64())
    }
}

/// Everything one answer published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub limits: Vec<Limit>,
    /// Who the pulls are counted against (`docker-ratelimit-source`).
    pub source: Option<String>,
}

impl Published {
    /// The quota (long window) with the fewest units left: the one that runs out first.
    pub fn quota(&self) -> Option<&Limit> {
        self.limits
            .iter()
            .filter(|l| l.is_quota() && (l.remaining.is_some() || l.quota.is_some()))
            .min_by_key(|l| l.remaining.or(l.quota).unwrap_or(u64::MAX))
    }

    /// The tightest pace (short window) published, in units per second.
    pub fn rate(&self) -> Option<f64> {
        self.limits
            .iter()
            .filter_map(Limit::rate)
            .min_by(|a, b| a.total_cmp(b))
    }

    /// A short-window limit with nothing left, and how long until it resets.
    pub fn pace_exhausted(&self) -> Option<Duration> {
        self.limits
            .iter()
            .filter(|l| !l.is_quota() && l.remaining == Some(0))
            .filter_map(|l| l.reset)
            .max()
    }
}

/// What `headers` publish, or `None` when they publish nothing usable.
pub fn published(headers: &HeaderMap) -> Option<Published> {
    let mut limits = Vec::new();
    if let Some(limit) = docker_hub(headers) {
        limits.push(limit);
    }
    limits.extend(ietf(headers));
    if limits.is_empty() {
        return None;
    }
    let source = text(headers, DOCKER_SOURCE).map(str::to_owned);
    Some(Published { limits, source })
}

/// A header's value as text; one debug line when it is not.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?;
    match value.to_str() {
        Ok(v) => Some(v.trim()),
        Err(_) => {
            tracing::debug!(header = name, "ignored: not text");
            None
        }
    }
}

/// Docker Hub's pair. Either may come alone; a malformed one is left out.
fn docker_hub(headers: &HeaderMap) -> Option<Limit> {
    let limit = text(headers, DOCKER_LIMIT).and_then(|v| units_and_window(DOCKER_LIMIT, v));
    let remaining =
        text(headers, DOCKER_REMAINING).and_then(|v| units_and_window(DOCKER_REMAINING, v));
    if limit.is_none() && remaining.is_none() {
        return None;
    }
    let window = limit.and_then(|l| l.1).or(remaining.and_then(|r| r.1));
    Some(Limit {
        name: String::new(),
        quota: limit.map(|l| l.0),
        window,
        remaining: remaining.map(|r| r.0),
        reset: None,
    })
}

/// `100;w=21600` (or `100`): units, and the window when given. Docker Hub has sent other
/// parameters before `w`; they are skipped.
fn units_and_window(name: &str, value: &str) -> Option<(u64, Option<Duration>)> {
    // Docker Hub once sent `100, 100;w=21600`: the first member is the one that counts.
    let first = value.split(',').next().unwrap_or_default();
    let mut parts = first.split(';').map(str::trim);
    let units = parts.next().and_then(|u| u.parse::<u64>().ok());
    let Some(units) = units else {
        tracing::debug!(header = name, value, "ignored: no count of units");
        return None;
    };
    let mut window = None;
    for param in parts {
        if let Some(w) = param.strip_prefix("w=") {
            match w.trim().parse::<u64>() {
                Ok(seconds) => window = Some(Duration::from_secs(seconds)),
                Err(_) => {
                    tracing::debug!(header = name, value, "ignored: a window that is no number");
                    return None;
                }
            }
        }
    }
    Some((units, window))
}

/// The IETF draft's fields: each policy, joined with the current state of the same name.
fn ietf(headers: &HeaderMap) -> Vec<Limit> {
    let policies = text(headers, IETF_POLICY)
        .map(|v| members(IETF_POLICY, v))
        .unwrap_or_default();
    let current = text(headers, IETF_CURRENT)
        .map(|v| members(IETF_CURRENT, v))
        .unwrap_or_default();
    let mut limits: Vec<Limit> = policies
        .iter()
        .filter_map(|(name, params)| {
            let quota = param(params, "q");
            if quota.is_none() {
                tracing::debug!(header = IETF_POLICY, policy = %name, "ignored: a policy without q");
                return None;
            }
            Some(Limit {
                name: name.clone(),
                quota,
                window: param(params, "w").map(Duration::from_secs),
                remaining: None,
                reset: None,
            })
        })
        .collect();
    for (name, params) in &current {
        let remaining = param(params, "r");
        if remaining.is_none() {
            tracing::debug!(header = IETF_CURRENT, policy = %name, "ignored: no r");
            continue;
        }
        let reset = param(params, "t").map(Duration::from_secs);
        match limits.iter_mut().find(|l| &l.name == name) {
            Some(l) => {
                l.remaining = remaining;
                l.reset = reset;
            }
            // A state without its policy: what is left is known, the window is not.
            None => limits.push(Limit {
                name: name.clone(),
                quota: None,
                window: None,
                remaining,
                reset,
            }),
        }
    }
    limits
}

/// A Structured Fields list of `"name";key=value;…` members (RFC 9651), as far as these
/// fields use it: string or token keys, integer or token parameter values. A member that does
/// not parse is left out with one debug line.
fn members(header: &str, value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for member in split_outside_quotes(value, ',') {
        let mut parts = split_outside_quotes(member, ';').into_iter();
        let key = parts.next().unwrap_or_default().trim();
        let name = key
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(key);
        if name.is_empty() || name.contains('"') {
            tracing::debug!(header, member, "ignored: a member without a name");
            continue;
        }
        let mut params = Vec::new();
        for p in parts {
            match p.trim().split_once('=') {
                Some((k, v)) => params.push((k.trim().to_owned(), v.trim().to_owned())),
                None => params.push((p.trim().to_owned(), "?1".to_owned())),
            }
        }
        out.push((name.to_owned(), params));
    }
    out
}

/// `text` split at `sep` where `sep` is not inside a quoted string.
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.retain(|s| !s.trim().is_empty());
    out
}

/// A non-negative integer parameter; a malformed one is left out with one debug line.
fn param(params: &[(String, String)], key: &str) -> Option<u64> {
    let (_, value) = params.iter().find(|(k, _)| k == key)?;
    match value.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::debug!(parameter = key, value = %value, "ignored: not a non-negative integer");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let value = HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}"));
            map.append(name, value);
        }
        map
    }

    #[test]
    fn docker_hubs_headers_give_the_quota_and_its_window() {
        let p = published(&headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "76;w=21600"),
            ("docker-ratelimit-source", "192.0.2.1"),
        ]))
        .unwrap_or_else(|| panic!("published"));
        let quota = p.quota().unwrap_or_else(|| panic!("a quota"));
        assert_eq!(quota.quota, Some(100));
        assert_eq!(quota.remaining, Some(76));
        assert_eq!(quota.window, Some(Duration::from_secs(21600)));
        assert_eq!(p.source.as_deref(), Some("192.0.2.1"));
        assert_eq!(p.rate(), None);
    }

    #[test]
    fn the_ietf_fields_give_quotas_and_paces_by_window() {
        let p = published(&headers(&[
            (
                "RateLimit-Policy",
                "\"hour\";q=100;w=3600, \"burst\";q=40;w=1",
            ),
            ("RateLimit", "\"hour\";r=7;t=1200, \"burst\";r=0;t=1"),
        ]))
        .unwrap_or_else(|| panic!("published"));
        let quota = p.quota().unwrap_or_else(|| panic!("a quota"));
        assert_eq!(
            (quota.name.as_str(), quota.quota, quota.remaining),
            ("hour", Some(100), Some(7))
        );
        assert_eq!(quota.reset, Some(Duration::from_secs(1200)));
        assert_eq!(p.rate(), Some(40.0));
        assert_eq!(p.pace_exhausted(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn malformed_values_are_left_out_and_never_fail() {
        for bad in [
            &[("ratelimit-limit", "lots;w=3600")][..],
            &[("ratelimit-remaining", "5;w=soon")],
            &[("RateLimit-Policy", "\"p\";w=60")],
            &[("RateLimit", "\"p\";t=3")],
            &[("RateLimit", "\"unterminated;r=3")],
            &[("RateLimit-Policy", ";;,,")],
        ] {
            assert_eq!(published(&headers(bad)), None, "{bad:?}");
        }
        // The good half of a pair is kept.
        let p = published(&headers(&[
            ("ratelimit-limit", "x"),
            ("ratelimit-remaining", "3;w=3600"),
        ]));
        let quota = p.as_ref().and_then(Published::quota).cloned();
        assert_eq!(quota.and_then(|q| q.remaining), Some(3));
        assert_eq!(published(&headers(&[("content-type", "x")])), None);
    }

    #[test]
    fn the_quota_that_runs_out_first_is_the_one() {
        let p = published(&headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "50;w=21600"),
            ("RateLimit-Policy", "\"day\";q=1000;w=86400"),
            ("RateLimit", "\"day\";r=9"),
        ]));
        let left = p
            .as_ref()
            .and_then(Published::quota)
            .and_then(|q| q.remaining);
        assert_eq!(left, Some(9));
    }
}
