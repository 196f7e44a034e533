//! What a `429 Too Many Requests` means: a pull quota spent, or a pace exceeded. The two ask
//! for opposite things. A spent quota comes back only with the next window (hours on Docker
//! Hub): asking again is wasted and is how an address gets blocked, so manifest GETs to that
//! registry stop for the rest of the run and what is left is deferred. A pace exceeded comes
//! back in a moment: the request waits (its `Retry-After`) and is tried again within its
//! budget, and the controller learns to send slower.
//!
//! Docker Hub tells them apart in its answer: the pull limit answers 429 without
//! `Retry-After`, with the distribution error code `TOOMANYREQUESTS` and a message naming the
//! pull rate limit; its overall request limit answers a bare 429
//! (<https://docs.docker.com/docker-hub/usage/>, "Other limits"). A published quota with
//! nothing left (`ratelimit-remaining: 0;w=3600`) says it too, whatever else the answer says.
//!
//! Pure: status, headers and body text in, a verdict out.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::published::Published;

/// Why a registry said 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The pull quota is spent: no more manifest GETs this run.
    Quota,
    /// Too fast: wait (`Retry-After` when given) and try again.
    Pace { retry_after: Option<Duration> },
}

/// The verdict on a 429. `retry_after`: the answer's `Retry-After` as read by
/// [`crate::registry::error::retry_after`]; `body`: the start of the answer's body, if read.
pub fn classify_429(
    headers: &HeaderMap,
    retry_after: Option<Duration>,
    body: Option<&str>,
) -> Throttle {
    let published = super::published::published(headers);
    if quota_left_is_zero(published.as_ref()) {
        return Throttle::Quota;
    }
    if retry_after.is_none() && body.is_some_and(names_a_pull_quota) {
        return Throttle::Quota;
    }
    Throttle::Pace { retry_after }
}

/// A published quota (long window) with nothing left.
fn quota_left_is_zero(published: Option<&Published>) -> bool {
    published
        .and_then(Published::quota)
        .is_some_and(|q| q.remaining == Some(0))
}

/// Whether an error body says a pull quota is reached, in the words Docker Hub uses ("You
/// have reached your pull rate limit"). The error code alone does not tell: the
/// distribution spec's `TOOMANYREQUESTS` is the code of every 429, GHCR's request-rate
/// limit's included (`toomanyrequests: retry-after: 333ms, allowed: 44000/minute`).
pub fn names_a_pull_quota(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    lower.contains("pull rate limit") || lower.contains("pull limit")
}

/// The rate a 429's body says is allowed, in requests per second: GHCR's
/// `toomanyrequests: retry-after: 333.939671ms, allowed: 44000/minute`.
pub fn allowed_rate(body: &str) -> Option<f64> {
    let lower = body.to_ascii_lowercase();
    let rest = &lower[lower.find("allowed:")? + "allowed:".len()..];
    let (count, per) = rest.trim_start().split_once('/')?;
    let count: f64 = count.trim().parse().ok()?;
    let seconds = if per.starts_with("second") || per.starts_with('s') {
        1.0
    } else if per.starts_with("minute") || per.starts_with("min") {
        60.0
    } else if per.starts_with("hour") || per.starts_with('h') {
        3600.0
    } else {
        return None;
    };
    (count > 0.0).then_some(count / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const HUB_BODY: &str = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}]}"#;

    #[test]
    fn docker_hubs_pull_limit_is_a_quota() {
        assert_eq!(
            classify_429(&HeaderMap::new(), None, Some(HUB_BODY)),
            Throttle::Quota
        );
    }

    #[test]
    fn ghcrs_allowed_rate_is_read_from_its_body() {
        let ghcr = "toomanyrequests: retry-after: 333.939671ms, allowed: 44000/minute";
        let rate = allowed_rate(ghcr).unwrap_or_default();
        assert!((rate - 44000.0 / 60.0).abs() < 1e-9, "{rate}");
        assert_eq!(allowed_rate(HUB_BODY), None);
        assert_eq!(allowed_rate("allowed: lots/minute"), None);
        assert_eq!(allowed_rate("allowed: 5/fortnight"), None);
    }

    #[test]
    fn a_published_zero_is_a_quota_whatever_else_comes() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", HeaderValue::from_static("0;w=3600"));
        assert_eq!(
            classify_429(&h, Some(Duration::from_secs(1)), None),
            Throttle::Quota
        );
    }

    #[test]
    fn a_429_with_retry_after_or_without_words_is_a_pace() {
        let one = Some(Duration::from_secs(1));
        assert_eq!(
            classify_429(&HeaderMap::new(), one, Some(HUB_BODY)),
            Throttle::Pace { retry_after: one }
        );
        assert_eq!(
            classify_429(&HeaderMap::new(), None, Some("Too Many Requests")),
            Throttle::Pace { retry_after: None }
        );
        // GHCR's request-rate limit uses the same error code as Docker Hub's pull limit.
        let ghcr = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"retry-after: 333.939671ms, allowed: 44000/minute"}]}"#;
        assert_eq!(
            classify_429(&HeaderMap::new(), None, Some(ghcr)),
            Throttle::Pace { retry_after: None }
        );
        assert_eq!(
            classify_429(&HeaderMap::new(), None, None),
            Throttle::Pace { retry_after: None }
        );
        // A short window with nothing left is a pace, not a quota.
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-policy",
            HeaderValue::from_static("\"s\";q=40;w=1"),
        );
        h.insert("ratelimit", HeaderValue::from_static("\"s\";r=0;t=1"));
        assert_eq!(
            classify_429(&h, None, None),
            Throttle::Pace { retry_after: None }
        );
    }
}
