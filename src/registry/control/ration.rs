//! One registry's pacing and pull quota together, as the [`super::Controller`] asks them:
//! before a request ([`Rationing::admit`]: how long to wait, or a manifest GET refused
//! because the quota cannot cover it) and after its answer ([`Rationing::observe`],
//! [`Rationing::throttled`] for a 429, [`Rationing::index_fetched`] once an index's children
//! are known).
//!
//! An image's manifest GETs are reserved together: the copy of one image runs inside
//! [`for_one_image`], and its first manifest GET at a registry sets aside what the image is
//! expected to cost there (the largest image seen so far); an index grows that to one GET
//! per child before they are fetched. A quota that cannot cover the reservation refuses the
//! image's first GET, so the image is deferred before anything of it is fetched. What the
//! image did not use is given back when its copy ends.
//!
//! Until the registry has answered one manifest request (and so said whether it publishes a
//! quota), one manifest GET at a time is sent: a cold run would otherwise send a whole batch
//! into a quota of which a few units are left.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::watch;

use super::pace::{Answer, Pace};
use super::published::published;
use super::quota::{Deferral, Quota, QuotaState, Reservation, Share};
use super::throttle::{Throttle, classify_429};

/// The pacing and quota of one registry.
pub struct Rationing {
    state: Arc<Mutex<State>>,
    /// Set once the registry has answered a manifest request.
    learned: watch::Sender<bool>,
}

struct State {
    quota: Quota,
    pace: Pace,
    /// A manifest GET is out before anything was learned (see the module doc).
    probing: bool,
}

impl Rationing {
    pub fn new(registry: &str, share: Share) -> Rationing {
        Rationing {
            state: Arc::new(Mutex::new(State {
                quota: Quota::new(registry, share),
                pace: Pace::new(),
                probing: false,
            })),
            learned: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Before a manifest GET: one unit of the quota (from the image's reservation when it
    /// runs inside [`for_one_image`]), or the reason it cannot be sent.
    pub async fn admit_manifest_get(&self) -> Result<(), Deferral> {
        self.first_answer().await;
        self.take_unit()
    }

    /// Before any request, once it holds its slot: the wait the pace asks for, slept here.
    pub async fn pace(&self) {
        let wait = self.lock().pace.admit(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until the registry has answered a manifest request, letting one GET go first.
    async fn first_answer(&self) {
        let mut learned = self.learned.subscribe();
        loop {
            if *learned.borrow_and_update() {
                return;
            }
            {
                let mut state = self.lock();
                if !state.probing {
                    state.probing = true;
                    return;
                }
            }
            if learned.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes one unit for a manifest GET: from the current image's reservation, reserving
    /// for the image first if this is its first GET here.
    fn take_unit(&self) -> Result<(), Deferral> {
        let image = IMAGE.try_with(|image| {
            let mut held = lock(&image.held);
            let mut state = self.lock();
            let index = match held.iter().position(|h| Arc::ptr_eq(&h.state, &self.state)) {
                Some(i) => i,
                None => {
                    let units = state.quota.estimate_image();
                    let reservation = state.quota.reserve(units)?;
                    held.push(Held {
                        state: self.state.clone(),
                        reservation,
                        cost: 0,
                    });
                    held.len() - 1
                }
            };
            let h = &mut held[index];
            state.quota.take(Some(&mut h.reservation))?;
            h.cost += 1;
            Ok(())
        });
        match image {
            Ok(taken) => taken,
            // Outside any image's copy (attachments listed by the run, tests).
            Err(_) => self.lock().quota.take(None),
        }
    }

    /// An index was fetched with `children` children: the current image's reservation grows
    /// to cover them, or the image is deferred before any of them is fetched.
    pub fn index_fetched(&self, children: u64) -> Result<(), Deferral> {
        let grown = IMAGE.try_with(|image| {
            let mut held = lock(&image.held);
            let Some(h) = held.iter_mut().find(|h| Arc::ptr_eq(&h.state, &self.state)) else {
                return Ok(());
            };
            self.lock().quota.grow(&mut h.reservation, children)
        });
        grown.unwrap_or(Ok(()))
    }

    /// After an answer (or a transport failure): what it published, that a manifest GET is
    /// no longer in flight, and, for any answer but a 429 (see [`Rationing::throttled`]),
    /// that a request was let through.
    pub fn observe(
        &self,
        manifest_get: bool,
        status: Option<StatusCode>,
        headers: Option<&HeaderMap>,
    ) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut learned = manifest_get;
        if manifest_get {
            state.quota.answered();
        }
        if let Some(p) = headers.and_then(published) {
            learned |= p.quota().is_some();
            state.quota.observe(&p);
            state.pace.publish(now, &p);
        }
        if status.is_some_and(|s| s != StatusCode::TOO_MANY_REQUESTS) {
            state.pace.observe(now, Answer::Passed);
        }
        drop(state);
        if learned {
            self.learned
                .send_if_modified(|l| !std::mem::replace(l, true));
        }
    }

    /// A 429, with its body: a spent quota stops manifest GETs here for the rest of the run
    /// (the request fails as deferred); a pace is learned from (the request is retried).
    pub fn throttled(
        &self,
        headers: &HeaderMap,
        retry_after: Option<Duration>,
        body: &str,
    ) -> Throttle {
        let verdict = classify_429(headers, retry_after, Some(body));
        let mut state = self.lock();
        match verdict {
            Throttle::Quota => state.quota.spent_by_refusal(),
            Throttle::Pace { retry_after } => state
                .pace
                .observe(Instant::now(), Answer::Refused { retry_after }),
        }
        verdict
    }

    /// Why a manifest GET is refused now.
    pub fn deferral(&self) -> Deferral {
        self.lock().quota.deferral(None)
    }

    /// What the report and metrics show.
    pub fn state(&self) -> QuotaState {
        self.lock().quota.state()
    }

    /// The pace sent at, requests per second, once the registry showed it limits.
    pub fn rate(&self) -> Option<f64> {
        self.lock().pace.rate()
    }
}

/// A lock that a panicking holder did not poison for good: the quota's numbers stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one image holds of each registry's quota.
struct Held {
    state: Arc<Mutex<State>>,
    reservation: Reservation,
    /// Manifest GETs the image sent there.
    cost: u64,
}

/// The reservations of the image being copied, given back when its copy ends.
#[derive(Default)]
pub struct ImageQuota {
    held: Mutex<Vec<Held>>,
}

impl Drop for ImageQuota {
    fn drop(&mut self) {
        let held = std::mem::take(&mut *lock(&self.held));
        for h in held {
            lock(&h.state).quota.release(h.reservation, h.cost);
        }
    }
}

tokio::task_local! {
    static IMAGE: ImageQuota;
}

/// Runs the copy of one image with its own quota reservations (see the module doc).
pub async fn for_one_image<F: Future>(copy: F) -> F::Output {
    IMAGE.scope(ImageQuota::default(), copy).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn hub(remaining: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", HeaderValue::from_static("10;w=3600"));
        let left =
            HeaderValue::from_str(&format!("{remaining};w=3600")).unwrap_or_else(|e| panic!("{e}"));
        h.insert("ratelimit-remaining", left);
        h
    }

    /// Sends a manifest GET of an image through `r` if admitted; the registry answers with
    /// `remaining` left.
    async fn get(r: &Rationing, remaining: &mut u64) -> bool {
        if r.admit_manifest_get().await.is_err() {
            return false;
        }
        *remaining -= 1;
        r.observe(true, Some(StatusCode::OK), Some(&hub(*remaining)));
        true
    }

    #[tokio::test]
    async fn images_are_started_only_when_the_quota_covers_them_whole() {
        let r = Rationing::new("docker.io", Share::WHOLE);
        let mut remaining = 10;
        // A HEAD told the quota: 10 left.
        r.observe(false, Some(StatusCode::OK), Some(&hub(remaining)));
        let mut whole = 0;
        let mut started = 0;
        for _ in 0..5 {
            // An index of 2 children: 3 GETs.
            let done = for_one_image(async {
                if !get(&r, &mut remaining).await {
                    return None;
                }
                if r.index_fetched(2).is_err() {
                    return Some(false);
                }
                let children = [get(&r, &mut remaining).await, get(&r, &mut remaining).await];
                Some(children.iter().all(|c| *c))
            })
            .await;
            match done {
                Some(true) => {
                    whole += 1;
                    started += 1;
                }
                Some(false) => started += 1,
                None => {}
            }
        }
        // 10 units: 3 whole images (9); the first image's GET reserved 1 only (nothing seen
        // yet) and grew; the fourth is not started at all.
        assert_eq!((whole, started), (3, 3));
        assert_eq!(remaining, 1);
        let state = r.state();
        assert_eq!(state.left, Some(1));
    }

    #[tokio::test]
    async fn a_quota_429_stops_manifest_gets_and_a_pace_429_does_not() {
        let r = Rationing::new("docker.io", Share::WHOLE);
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        assert!(r.admit_manifest_get().await.is_ok());
        r.observe(
            true,
            Some(StatusCode::TOO_MANY_REQUESTS),
            Some(&HeaderMap::new()),
        );
        let pace = r.throttled(&HeaderMap::new(), Some(Duration::from_secs(1)), body);
        assert!(matches!(pace, Throttle::Pace { .. }));
        assert!(
            r.admit_manifest_get().await.is_ok(),
            "a pace 429 stops nothing"
        );
        assert_eq!(r.throttled(&HeaderMap::new(), None, body), Throttle::Quota);
        let refused = r.admit_manifest_get().await.err().map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io: pull quota spent (the registry answered 429 and publishes no limit)")
        );
        r.pace().await;
    }
}
