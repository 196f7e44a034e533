//! The one retry policy, the one retry loop ([`drive`]), and the one place that waits
//! before trying again.
//!
//! Two levels, never more: a request (or a blob copy, whose requests share one budget) is
//! tried up to `--request-attempts` times; an image whose copy still failed transiently is
//! tried again, as a whole, `--retries` times. Inner steps never retry what an outer level
//! retries, so the worst case is a product of two numbers, not of four: one failing request
//! is sent at most `request_attempts × (retries + 1)` times in a run. (go-containerregistry
//! does the same: the inner calls of an upload run under `retry.Never`, the upload is
//! retried once at the top.)
//!
//! Depends only on [`crate::stats`] (it counts what it retries) and the kinds of failure of
//! [`crate::model::failure`]; knows nothing of HTTP.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// The wait before the first retry of a request; doubled for each further one.
pub const FIRST_REQUEST_WAIT: Duration = Duration::from_millis(250);
/// How long a registry whose `GET /v2/` failed (after its retries) is answered with that
/// failure without being asked again, so that the copies waiting behind it do not each
/// retry it in turn.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(10);
/// The first wait before an image is copied again: longer than an unreachable registry is
/// remembered, so that the retry really asks again.
pub const FIRST_IMAGE_WAIT: Duration = Duration::from_secs(UNREACHABLE_FOR.as_secs() + 1);
/// The longest wait between two attempts of one image.
pub const MAX_IMAGE_WAIT: Duration = Duration::from_secs(300);

/// How many tries, and how long to wait between them: exponential from `first_wait`,
/// capped at `max_wait`, then spread by a random factor between `jitter.0` and `jitter.1`
/// so that copies failing together do not come back together.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub jitter: (f64, f64),
}

impl RetryPolicy {
    /// One request (or blob copy): `attempts` tries, waits from 0.25 s up to `max_wait`
    /// with "equal jitter" (between half and all of the computed wait).
    pub fn requests(attempts: u32, max_wait: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: attempts.max(1),
            first_wait: FIRST_REQUEST_WAIT,
            max_wait,
            jitter: (0.5, 1.0),
        }
    }

    /// One image: `retries` more attempts after the first; waits never shorter than the
    /// computed one (see [`FIRST_IMAGE_WAIT`]), up to a fifth longer.
    pub fn images(retries: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: retries.saturating_add(1),
            first_wait: FIRST_IMAGE_WAIT,
            max_wait: MAX_IMAGE_WAIT,
            jitter: (1.0, 1.2),
        }
    }

    /// The wait before retry number `retry` (0-based). A `Retry-After` the server sent
    /// replaces the computed wait, capped the same way.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_wait);
        }
        let exponential = self.first_wait.saturating_mul(1u32 << retry.min(20));
        let (low, high) = self.jitter;
        exponential
            .min(self.max_wait)
            .mul_f64(low + fastrand::f64() * (high - low))
    }

    /// A fresh budget: the retries one operation may still make.
    pub fn budget(&self) -> Budget {
        Budget {
            used: AtomicU32::new(0),
            allowed: self.attempts.saturating_sub(1),
        }
    }

    /// Waits before retry number `retry` (0-based), counting it in `counter` and letting
    /// `log` say why (it is given the wait). The only sleep of the retry logic. Returns
    /// false, early, when `cancel` fires first.
    pub async fn pause(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        counter: &AtomicU64,
        cancel: Option<&CancellationToken>,
        log: impl FnOnce(Duration),
    ) -> bool {
        let wait = self.delay(retry, retry_after);
        Stats::bump(counter);
        log(wait);
        match cancel {
            Some(cancel) => tokio::select! {
                _ = tokio::time::sleep(wait) => true,
                _ = cancel.cancelled() => false,
            },
            None => {
                tokio::time::sleep(wait).await;
                true
            }
        }
    }
}

/// What a failed attempt comes to, as its classifier judges it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Worth another try, after the registry's `Retry-After` when it sent one (else the
    /// policy's wait).
    Retry { after: Option<Duration> },
    /// Trying again cannot help: the failure stands.
    Stop,
}

/// The one retry loop. Runs `attempt` until it succeeds; after a failure asks `classify`
/// whether another try can help, takes that try from `budget`, lets `log` say why (given
/// the retry's number, the wait and the failure), counts it in `counter` and waits (see
/// [`RetryPolicy::pause`]). Returns the last failure when the classifier says stop, the
/// budget is spent, or `cancel` fires during a wait.
///
/// The request pipeline drives every registry request with it; a blob copy and an image
/// copy can drive their attempts with it too, classifying by
/// [`crate::model::failure::error_kind`].
pub async fn drive<T, E, F>(
    policy: &RetryPolicy,
    budget: &Budget,
    counter: &AtomicU64,
    cancel: Option<&CancellationToken>,
    mut attempt: impl FnMut() -> F,
    classify: impl Fn(&E) -> Verdict,
    mut log: impl FnMut(u32, Duration, &E),
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    loop {
        let e = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Verdict::Retry { after } = classify(&e) else {
            return Err(e);
        };
        let Some(retry) = budget.take() else {
            return Err(e);
        };
        if !policy
            .pause(retry, after, counter, cancel, |wait| log(retry, wait, &e))
            .await
        {
            return Err(e);
        }
    }
}

/// What a retry waits for, as logs and the progress line say it: "retry 3 of 5 in 11 s"
/// (`retry` is 0-based, as [`Budget::take`] gives it).
pub fn next_try(retry: u32, budget: &Budget, wait: Duration) -> String {
    format!(
        "retry {} of {} in {}",
        retry + 1,
        budget.allowed(),
        crate::duration::human(wait)
    )
}

/// The classifier of a step whose failures carry an [`ErrorKind`] (a blob copy, an image
/// copy): what is transient is tried again, the rest stands.
///
/// [`ErrorKind`]: crate::model::failure::ErrorKind
pub fn when_transient(e: &anyhow::Error) -> Verdict {
    match crate::model::failure::error_kind(e) {
        Some(crate::model::failure::ErrorKind::Transient) => Verdict::Retry { after: None },
        _ => Verdict::Stop,
    }
}

/// The retries left to one operation. Shared by reference between the steps of an
/// operation that may each fail (a blob copy's download, its resumes and its upload), so
/// that together they make no more tries than the policy allows.
#[derive(Debug)]
pub struct Budget {
    used: AtomicU32,
    allowed: u32,
}

impl Budget {
    /// Takes one retry: its number (0-based, for [`RetryPolicy::delay`]), or `None` when
    /// none is left.
    pub fn take(&self) -> Option<u32> {
        let n = self.used.fetch_add(1, Ordering::Relaxed);
        (n < self.allowed).then_some(n)
    }

    /// Retries allowed in all.
    pub fn allowed(&self) -> u32 {
        self.allowed
    }

    /// Retries taken so far.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed).min(self.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_with_jitter_and_are_capped() {
        let policy = RetryPolicy::requests(5, Duration::from_secs(2));
        for retry in 0..10 {
            let full = FIRST_REQUEST_WAIT
                .saturating_mul(1 << retry)
                .min(Duration::from_secs(2));
            let wait = policy.delay(retry, None);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn image_waits_outlast_the_unreachable_memo() {
        let policy = RetryPolicy::images(2);
        for retry in 0..3 {
            assert!(policy.delay(retry, None) > UNREACHABLE_FOR);
        }
        assert!(policy.delay(9, None) <= MAX_IMAGE_WAIT.mul_f64(1.2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_retries_what_the_classifier_allows_within_the_budget() {
        let policy = RetryPolicy::requests(3, Duration::from_secs(1));
        let counter = AtomicU64::new(0);
        let tries = AtomicU32::new(0);
        let mut logged = Vec::new();
        let result: Result<(), u32> = drive(
            &policy,
            &policy.budget(),
            &counter,
            None,
            || async { Err(tries.fetch_add(1, Ordering::Relaxed) + 1) },
            |_| Verdict::Retry { after: None },
            |retry, _, e| logged.push((retry, *e)),
        )
        .await;
        assert_eq!(result, Err(3));
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        assert_eq!(logged, [(0, 1), (1, 2)]);

        let tries = AtomicU32::new(0);
        let stopped: Result<(), u32> = drive(
            &policy,
            &policy.budget(),
            &counter,
            None,
            || async { Err(tries.fetch_add(1, Ordering::Relaxed) + 1) },
            |_| Verdict::Stop,
            |_, _, _| {},
        )
        .await;
        assert_eq!(
            stopped,
            Err(1),
            "a failure retrying cannot fix is tried once"
        );

        let tries = AtomicU32::new(0);
        let recovered = drive(
            &policy,
            &policy.budget(),
            &counter,
            None,
            || async {
                let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
                if n < 2 { Err(()) } else { Ok(n) }
            },
            |_| Verdict::Retry {
                after: Some(Duration::from_secs(5)),
            },
            |_, wait, _| assert_eq!(wait, Duration::from_secs(1), "Retry-After, capped"),
        )
        .await;
        assert_eq!(recovered, Ok(2));
    }

    #[test]
    fn only_transient_failures_are_worth_another_try() {
        use crate::model::failure::{ErrorKind, failure};
        assert_eq!(
            when_transient(&failure(ErrorKind::Transient, "reset")),
            Verdict::Retry { after: None }
        );
        assert_eq!(
            when_transient(&failure(ErrorKind::Denied, "no")),
            Verdict::Stop
        );
        assert_eq!(when_transient(&anyhow::anyhow!("plain")), Verdict::Stop);
    }

    #[test]
    fn a_budget_allows_attempts_minus_one_retries_however_it_is_shared() {
        let policy = RetryPolicy::requests(3, Duration::from_secs(1));
        let budget = policy.budget();
        assert_eq!(budget.take(), Some(0));
        assert_eq!(budget.take(), Some(1));
        assert_eq!(budget.take(), None);
        assert_eq!(budget.take(), None);
        assert_eq!(budget.used(), 2);
        assert_eq!(
            next_try(1, &budget, Duration::from_millis(10_700)),
            "retry 2 of 2 in 11 s"
        );
        assert_eq!(
            RetryPolicy::requests(0, Duration::ZERO).budget().take(),
            None
        );
        assert_eq!(RetryPolicy::images(0).budget().take(), None);
    }
}
