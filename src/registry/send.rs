//! Sending a request that needs no credentials (`GET /v2/`, token services), retried
//! within the retry policy; and the retry-or-fail decision every request shares.
//!
//! Below [`super::auth`] (which asks for tokens through it) and [`super::client`] (which
//! adds credentials on top). Depends on [`super::error`] and [`crate::retry`].

use std::time::Duration;

use anyhow::Result;

use super::error::{describe_http_error, is_transient_status, retry_after, transport_kind};
use crate::model::failure::{ErrorKind, failure};
use crate::retry::{Budget, RetryPolicy};
use crate::stats::Stats;

/// After a transport error: the retry to make (its number) and why, or the failure to give
/// up with when the error is not transient or `budget` is spent.
pub fn retry_or_fail(
    e: &reqwest::Error,
    budget: &Budget,
    host: &str,
    what: &str,
) -> Result<(u32, String)> {
    let kind = transport_kind(e);
    let why = describe_http_error(e, host);
    if kind == ErrorKind::Transient
        && let Some(retry) = budget.take()
    {
        return Ok((retry, why));
    }
    Err(failure(kind, format!("{what}: {why}")))
}

/// After an answer: the retry to make when its status is transient (408, 429, 5xx) and
/// `budget` allows one, with the wait the registry asked for and why; `None` to take the
/// answer as it is.
pub fn retry_for_status(
    response: &reqwest::Response,
    budget: &Budget,
) -> Option<(u32, Option<Duration>, String)> {
    let status = response.status();
    if !is_transient_status(status) {
        return None;
    }
    let retry = budget.take()?;
    Some((
        retry,
        retry_after(status, response.headers()),
        status.to_string(),
    ))
}

/// Waits before a request's retry, counting and logging it (see [`RetryPolicy::pause`]).
pub async fn pause_request(
    policy: &RetryPolicy,
    stats: &Stats,
    host: &str,
    what: &str,
    (retry, after, why): (u32, Option<Duration>, String),
) {
    stats.retried(host);
    policy
        .pause(retry, after, &stats.request_retries, None, |wait| {
            tracing::info!(registry = host, attempt = retry + 1, error = %why, "{what}: retrying in {wait:?}")
        })
        .await;
}

/// Sends a request without authorization, retrying transport failures and transient
/// statuses as every registry request is. Returns the last answer whatever its status.
pub async fn send_plain(
    policy: &RetryPolicy,
    stats: &Stats,
    host: &str,
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    let budget = policy.budget();
    loop {
        let sent_at = stats.request(host);
        let sent = build().send().await;
        if let Ok(r) = &sent {
            stats.answered(host, r.status().as_u16(), sent_at);
        }
        let retry = match sent {
            Ok(r) => match retry_for_status(&r, &budget) {
                Some(retry) => retry,
                None => return Ok(r),
            },
            Err(e) => {
                let (retry, why) = retry_or_fail(&e, &budget, host, what)?;
                (retry, None, why)
            }
        };
        pause_request(policy, stats, host, what, retry).await;
    }
}
