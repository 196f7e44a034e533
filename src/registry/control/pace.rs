//! A client-side token bucket per registry, whose rate is learned from the registry, so that
//! few requests are refused where a registry limits requests per second (quay.io, GHCR, ECR,
//! Docker Hub's overall limit).
//!
//! Nothing is paced until the registry shows that it limits: a registry that never answers
//! 429 and publishes no short-window `RateLimit` policy is never slowed down. Then the rate
//! comes from, in order of trust:
//!
//! - a published pace (`RateLimit-Policy` with a window under a minute, see
//!   [`super::published`]): sent at exactly that, and held back until its reset when its
//!   `RateLimit` says nothing is left;
//! - the spacing of 429s: while a registry refuses some requests its bucket is empty, so what
//!   it lets through in that time is its rate. The answers let through between two 429s at
//!   least [`MIN_SPAN`] apart measure it, and the bucket is set a little below
//!   ([`MARGIN`]). At the first 429 nothing is measured yet: the pace starts at what was let
//!   through in the second before, and grows by [`START_STEP`] each [`START_AFTER`] without
//!   a 429, until 429s come again and measure the registry;
//! - a rate stated in a 429's body (GHCR's `allowed: 44000/minute`): sent a little below;
//! - `Retry-After`: a request refused waits it (capped by `--max-retry-wait`) and is tried
//!   again within its budget (the pipeline's retry). The first 429's also holds every
//!   request to the registry, once and for at most [`MAX_HOLD`]: the registry's bucket fills
//!   again meanwhile. A published window with nothing left holds it until its reset, also at
//!   most [`MAX_HOLD`] (a longer hold is every request's own wait, which the retry policy
//!   caps).
//!
//! Without 429s for [`PROBE_AFTER`], the rate is raised by [`PROBE_STEP`], so a registry that
//! allows more (or a rate measured low) is found again; one refusal then measures it anew.
//!
//! Pure: every call is given `now`; the controller sleeps for what [`Pace::admit`] returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::published::Published;

/// The shortest time between two 429s that measures a rate.
pub const MIN_SPAN: Duration = Duration::from_millis(250);
/// The fewest answers let through between them for a measure.
pub const MIN_PASSED: u32 = 4;
/// The bucket is set to this share of the measured rate.
pub const MARGIN: f64 = 0.95;
/// Until a rate is measured: quiet this long, the rate is raised by [`START_STEP`].
pub const START_AFTER: Duration = Duration::from_millis(500);
pub const START_STEP: f64 = 1.25;
/// Quiet this long (no 429), a measured rate is raised by [`PROBE_STEP`].
pub const PROBE_AFTER: Duration = Duration::from_secs(2);
pub const PROBE_STEP: f64 = 1.05;
/// The longest the pace holds every request to a registry (see the module doc).
pub const MAX_HOLD: Duration = Duration::from_secs(1);
/// 429s further apart than this are separate episodes: what passed between them was not
/// sent into an empty bucket.
const EPISODE_GAP: Duration = Duration::from_secs(1);

/// The answer to one request, as far as pacing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let through (any status but 429).
    Passed,
    /// A pace 429 (see [`super::throttle`]), with its `Retry-After`.
    Refused { retry_after: Option<Duration> },
}

/// A measure in progress: since the last 429, how many answers were let through.
#[derive(Debug, Clone, Copy)]
struct Episode {
    since: Instant,
    passed: u32,
}

/// One registry's pace.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Requests per second; `None`: not paced.
    rate: Option<f64>,
    /// Where the rate came from: a published policy is not probed past.
    published: bool,
    /// The rate was measured (or published), not just started from a guess.
    measured: bool,
    /// Answers let through in the last second, until a pace is set (its first guess).
    recent: VecDeque<Instant>,
    /// Tokens in the bucket (may go below zero: requests queued behind each other).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Option<Instant>,
    /// Nothing is sent before this (a long `Retry-After`, a published reset).
    hold_until: Option<Instant>,
    episode: Option<Episode>,
    /// The last 429, or the last change of rate: when quiet since, probe.
    quiet_since: Option<Instant>,
    /// Requests refused with a 429 that pacing counts.
    refusals: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::new()
    }
}

impl Pace {
    pub fn new() -> Pace {
        Pace {
            rate: None,
            published: false,
            measured: false,
            recent: VecDeque::new(),
            tokens: 0.0,
            at: None,
            hold_until: None,
            episode: None,
            quiet_since: None,
            refusals: 0,
        }
    }

    /// The rate sent at, requests per second; `None` while not paced.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// 429s seen.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// The burst the bucket holds: a tenth of a second's worth, at least one request, so
    /// that pacing spreads requests rather than releasing them in clumps.
    fn burst(rate: f64) -> f64 {
        (rate / 10.0).max(1.0)
    }

    /// Takes a token for a request about to be sent, and says how long to wait before sending
    /// it (zero when not paced). Requests admitted together are spaced one after another.
    pub fn admit(&mut self, now: Instant) -> Duration {
        let hold = self
            .hold_until
            .filter(|h| *h > now)
            .map_or(Duration::ZERO, |h| h - now);
        let Some(rate) = self.rate else { return hold };
        self.probe(now, rate);
        let rate = self.rate.unwrap_or(rate);
        self.refill(now, rate);
        self.tokens -= 1.0;
        let wait = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        };
        wait.max(hold)
    }

    /// Brings the bucket up to `now`.
    fn refill(&mut self, now: Instant, rate: f64) {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(Pace::burst(rate));
        self.at = Some(now);
    }

    /// Quiet long enough: a little faster (a measured rate only).
    fn probe(&mut self, now: Instant, rate: f64) {
        if self.published {
            return;
        }
        let (after, step) = if self.measured {
            (PROBE_AFTER, PROBE_STEP)
        } else {
            (START_AFTER, START_STEP)
        };
        if let Some(quiet) = self.quiet_since
            && now.saturating_duration_since(quiet) >= after
        {
            self.rate = Some(rate * step);
            self.quiet_since = Some(now);
        }
    }

    /// Learns from an answer.
    pub fn observe(&mut self, now: Instant, answer: Answer) {
        match answer {
            Answer::Passed => {
                if let Some(e) = &mut self.episode {
                    e.passed += 1;
                }
                if self.rate.is_none() {
                    self.recent.push_back(now);
                    self.forget_before(now);
                }
            }
            Answer::Refused { retry_after } => self.refused(now, retry_after),
        }
    }

    fn refused(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.refusals += 1;
        self.quiet_since = Some(now);
        // The first 429 holds every request for its Retry-After too (at most MAX_HOLD): the
        // registry's bucket fills again meanwhile, and what was sent before the registry
        // said it limits is not followed by more into an empty bucket.
        if self.refusals == 1
            && let Some(after) = retry_after
        {
            self.hold(now + after.min(MAX_HOLD));
        }
        let episode = self
            .episode
            .filter(|e| now.saturating_duration_since(e.since) <= EPISODE_GAP + MIN_SPAN);
        match episode {
            Some(e) if now.saturating_duration_since(e.since) >= MIN_SPAN => {
                if e.passed >= MIN_PASSED {
                    let span = now.saturating_duration_since(e.since).as_secs_f64();
                    self.set_rate(now, MARGIN * f64::from(e.passed) / span, true);
                } else {
                    // Hardly anything passed: the registry allows less than was measured.
                    let slower = self.rate.map(|r| r / 2.0);
                    if let Some(r) = slower {
                        self.set_rate(now, r, self.measured);
                    }
                }
                self.episode = Some(Episode {
                    since: now,
                    passed: 0,
                });
            }
            // Too soon after the episode's start to measure: keep counting.
            Some(_) => {}
            None => {
                self.episode = Some(Episode {
                    since: now,
                    passed: 0,
                });
                if self.rate.is_none() {
                    // A first guess: what was let through in the last second.
                    self.forget_before(now);
                    let guess = self.recent.len() as f64;
                    self.recent = VecDeque::new();
                    self.set_rate(now, guess, false);
                }
            }
        }
    }

    /// Drops what was let through more than a second before `now`.
    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
    }

    fn set_rate(&mut self, now: Instant, rate: f64, measured: bool) {
        if self.published {
            return;
        }
        let rate = rate.max(1.0);
        self.rate = Some(rate);
        self.measured = measured;
        self.tokens = self.tokens.min(Pace::burst(rate));
        self.at.get_or_insert(now);
        self.quiet_since = Some(now);
    }

    /// A rate the registry stated in a 429's body (see [`super::throttle::allowed_rate`]):
    /// sent at exactly that from now on, as a published policy.
    pub fn publish_rate(&mut self, now: Instant, rate: f64) {
        if rate > 0.0 {
            // A little under: sent at exactly the registry's rate into its empty bucket,
            // the jitter of the path alone would be refused.
            let rate = rate * MARGIN;
            self.rate = Some(rate);
            self.published = true;
            self.measured = true;
            self.tokens = self.tokens.min(Pace::burst(rate));
            self.at.get_or_insert(now);
        }
    }

    /// Learns from a registry's published limits: a short-window policy is the rate, and a
    /// policy with nothing left holds every request until its reset.
    pub fn publish(&mut self, now: Instant, published: &Published) {
        if let Some(rate) = published.rate() {
            self.rate = Some(rate);
            self.published = true;
            self.measured = true;
            self.at.get_or_insert(now);
        }
        if let Some(reset) = published.pace_exhausted() {
            self.hold(now + reset.min(MAX_HOLD));
        }
    }

    /// Nothing is sent before `until`.
    fn hold(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::control::published::Limit;

    /// A registry's token bucket, as the rationing proxy keeps one: `rate` per second, `burst`.
    struct Registry {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: Duration,
    }

    impl Registry {
        fn answer(&mut self, t: Duration) -> Answer {
            let elapsed = t.saturating_sub(self.at);
            self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
            self.at = self.at.max(t);
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                Answer::Passed
            } else {
                Answer::Refused {
                    retry_after: Some(Duration::from_secs(1)),
                }
            }
        }
    }

    /// `n` requests from `workers` clients sending as fast as the pace lets them, each taking
    /// `latency`; a refused request is sent again after its `Retry-After`. Returns the
    /// refusals and when the last answer came.
    fn simulate(n: usize, workers: usize, latency: Duration) -> (u64, Duration) {
        let start = Instant::now();
        let mut pace = Pace::new();
        let mut registry = Registry {
            rate: 40.0,
            burst: 20.0,
            tokens: 20.0,
            at: Duration::ZERO,
        };
        // Each worker's next free time.
        let mut free = vec![Duration::ZERO; workers];
        let mut done = 0;
        let mut refused = 0;
        let mut last = Duration::ZERO;
        while done < n {
            let (w, at) = free
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, t)| *t)
                .unwrap_or((0, Duration::ZERO));
            let wait = pace.admit(start + at);
            let sent = at + wait;
            let answered = sent + latency;
            let answer = registry.answer(sent);
            pace.observe(start + answered, answer);
            match answer {
                Answer::Passed => done += 1,
                Answer::Refused { retry_after } => {
                    refused += 1;
                    free[w] = answered + retry_after.unwrap_or_default();
                    last = last.max(answered);
                    continue;
                }
            }
            free[w] = answered;
            last = last.max(answered);
        }
        (refused, last)
    }

    #[test]
    fn an_unlimited_registry_is_never_paced() {
        let mut pace = Pace::new();
        let now = Instant::now();
        for i in 0..1000 {
            pace.observe(now, Answer::Passed);
            assert_eq!(pace.admit(now + Duration::from_micros(i)), Duration::ZERO);
        }
        assert_eq!(pace.rate(), None);
    }

    #[test]
    fn a_token_bucket_is_learned_with_few_refusals_near_its_rate() {
        // The bench: 622 requests let through by a registry admitting 40/s, burst 20.
        let (refused, took) = simulate(622, 12, Duration::from_millis(5));
        let floor = 602.0 / 40.0;
        assert!(refused <= 31, "{refused} refused of 622 (5% is 31)");
        assert!(
            took.as_secs_f64() <= 1.2 * floor,
            "{:.1} s against a floor of {floor:.1} s",
            took.as_secs_f64()
        );
    }

    #[test]
    fn the_rate_is_measured_between_429s_and_set_below_it() {
        let mut pace = Pace::new();
        let t0 = Instant::now();
        let refused = Answer::Refused { retry_after: None };
        pace.observe(t0 - Duration::from_secs(2), Answer::Passed);
        for _ in 0..12 {
            pace.observe(t0 - Duration::from_millis(300), Answer::Passed);
        }
        pace.observe(t0, refused);
        assert_eq!(
            pace.rate(),
            Some(12.0),
            "a first guess: what passed in the second before"
        );
        for _ in 0..20 {
            pace.observe(t0, Answer::Passed);
        }
        pace.observe(t0 + Duration::from_millis(500), refused);
        let rate = pace.rate().unwrap_or_default();
        assert!((rate - 38.0).abs() < 0.01, "{rate}");
        // Requests admitted together are spaced at that rate.
        let now = t0 + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..10).map(|_| pace.admit(now)).collect();
        assert!(waits[9] > Duration::from_millis(150), "{waits:?}");
    }

    #[test]
    fn the_first_429_holds_the_registry_once_and_briefly() {
        let mut pace = Pace::new();
        let t0 = Instant::now();
        let refused = |after| Answer::Refused {
            retry_after: Some(Duration::from_secs(after)),
        };
        pace.observe(t0, refused(1));
        assert_eq!(pace.admit(t0), Duration::from_secs(1));
        // A Retry-After of an hour is that request's own wait (capped by the retry
        // policy); every other request is not held for it.
        let t1 = t0 + Duration::from_secs(2);
        pace.observe(t1, refused(3600));
        assert!(pace.admit(t1) <= MAX_HOLD, "{:?}", pace.admit(t1));
    }

    #[test]
    fn a_published_pace_is_followed_and_its_reset_waited_for() {
        let mut pace = Pace::new();
        let t0 = Instant::now();
        let published = Published {
            limits: vec![Limit {
                name: "s".to_owned(),
                quota: Some(10),
                window: Some(Duration::from_secs(1)),
                remaining: Some(0),
                reset: Some(Duration::from_secs(1)),
            }],
            source: None,
        };
        pace.publish(t0, &published);
        assert_eq!(pace.rate(), Some(10.0));
        assert!(pace.admit(t0) >= MAX_HOLD);
    }
}
