//! One registry's pacing and pull quota together, as the [`super::Controller`] asks them:
//! before a request ([`Rationing::admit_manifest_get`]: a manifest GET refused because the
//! quota cannot cover it; [`Rationing::pace`]: how long to wait) and after its answer
//! ([`Rationing::observe`], [`Rationing::throttled`] for a 429, [`Rationing::manifest_read`]
//! once a manifest and so an index's children are known).
//!
//! An image's manifest GETs are reserved together: the copy of one image runs inside
//! [`for_one_image`]. Where a quota is known, the image's first manifest GET is preceded by
//! a HEAD (free) that tells a single manifest (1 GET) from an index (the largest image seen
//! so far, at least [`super::quota::FIRST_INDEX`]), and that much is set aside
//! ([`Rationing::reserve_image`]); once the index is read, the reservation grows to one GET
//! per child before any is fetched ([`Rationing::manifest_read`]). A quota that cannot cover
//! the reservation refuses the image before its first GET, so it is deferred before
//! anything of it is fetched. What the image did not use is given back when its copy ends.
//!
//! Manifest fetches start the way TCP starts a connection ([`Rationing::fetch_slot`]): one
//! at a time until the registry has answered a manifest GET (and so said whether it
//! publishes a quota), then one more at once for each manifest GET it answers without a
//! 429 — twice as many each round trip — until [`OPEN`] are in flight, after which nothing
//! waits here. What a registry allows is unknown until it answers: a cold run would otherwise
//! send a whole batch at once into a quota of which a few units are left, or into a
//! request-rate limit's bucket that holds a burst of twenty, and every request already sent
//! when the first 429 comes back is refused (a 40/s limit refused 6-11% of a cold run's
//! requests, nearly all in that first batch). A registry that rations nothing pays a few
//! round trips of the first manifests, while its blob transfers, whose limit starts at six,
//! are already busy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::super::error::retry_after;
use super::pace::{Answer, Pace};
use super::published::published;
use super::quota::{Account, Deferral, QuotaState, Quotas, Reservation, Share};
use super::throttle::{Throttle, allowed_rate, classify_429};

/// Manifest fetches in flight at which the window opens for good (as many as
/// `--max-checks-per-registry` lets out by default).
pub const OPEN: usize = 64;

/// The pacing and quota of one registry.
pub struct Rationing {
    state: Arc<Mutex<State>>,
    /// Manifest fetches at once: its permits are the window (see the module doc).
    window: Semaphore,
    /// The window's size; [`OPEN`] and beyond, fetches no longer take a permit.
    size: Mutex<usize>,
    open: AtomicBool,
}

struct State {
    /// One per account: two credentials of one registry spend two quotas.
    quotas: Quotas,
    /// One per registry: a request-rate limit is the registry's (or the address's).
    pace: Pace,
}

impl Rationing {
    pub fn new(registry: &str, share: Share) -> Rationing {
        Rationing {
            state: Arc::new(Mutex::new(State {
                quotas: Quotas::new(registry, share),
                pace: Pace::new(),
            })),
            window: Semaphore::new(1),
            size: Mutex::new(1),
            open: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Before a manifest GET: one unit of `account`'s quota (from the image's reservation
    /// when it runs inside [`for_one_image`]), or the reason it cannot be sent.
    pub fn admit_manifest_get(&self, account: &Account) -> Result<(), Deferral> {
        self.take_unit(account)
    }

    /// Before any request, once it holds its slot: the wait the pace asks for, slept here.
    pub async fn pace(&self) {
        let wait = self.lock().pace.admit(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Before a manifest is fetched: waits for a place in the window (see the module doc),
    /// held until the manifest is read or its fetch failed; `None` once the window is open.
    pub async fn fetch_slot(&self) -> Option<FetchSlot<'_>> {
        if self.open.load(Ordering::Relaxed) {
            return None;
        }
        // Never closed: an error cannot come, and would only mean "do not wait".
        let permit = self.window.acquire().await.ok()?;
        Some(FetchSlot { _permit: permit })
    }

    /// A manifest GET was answered with something else than a 429: one more at once.
    fn widen(&self) {
        if self.open.load(Ordering::Relaxed) {
            return;
        }
        let mut size = lock(&self.size);
        // Opened meanwhile (checked under the lock: the permits are added once).
        if *size >= OPEN {
            return;
        }
        *size += 1;
        if *size >= OPEN {
            // Those waiting now go at once; later fetches take no permit.
            self.open.store(true, Ordering::Relaxed);
            self.window.add_permits(Semaphore::MAX_PERMITS / 2);
        } else {
            self.window.add_permits(1);
        }
    }

    /// How many manifest fetches may be in flight now (for tests and logs).
    pub fn window(&self) -> usize {
        *lock(&self.size)
    }

    /// Whether the image being copied should tell its kind before its first manifest GET
    /// here: a quota is known, and nothing is reserved for the image yet.
    pub fn needs_kind(&self, account: &Account) -> bool {
        let known = self.lock().quotas.of(account).is_known();
        known
            && IMAGE
                .try_with(|image| self.held_index(&lock(&image.held), account).is_none())
                .unwrap_or(false)
    }

    /// Sets aside what the image being copied will cost here, by its kind (see
    /// [`Quota::estimate`]); refuses when the quota cannot cover it. Outside an image's copy,
    /// or when something is reserved already, nothing to do.
    pub fn reserve_image(&self, account: &Account, index: bool) -> Result<(), Deferral> {
        let reserved = IMAGE.try_with(|image| {
            let mut held = lock(&image.held);
            if self.held_index(&held, account).is_some() {
                return Ok(());
            }
            let mut state = self.lock();
            let quota = state.quotas.of(account);
            let units = quota.estimate(index);
            let reservation = quota.reserve(units)?;
            held.push(self.holding(account, reservation));
            Ok(())
        });
        reserved.unwrap_or(Ok(()))
    }

    /// A reservation of this registry's quota for `account`, as an image holds it.
    fn holding(&self, account: &Account, reservation: Reservation) -> Held {
        Held {
            state: self.state.clone(),
            account: account.clone(),
            reservation,
            cost: 0,
        }
    }

    /// Where this registry's reservation for `account` is in an image's list.
    fn held_index(&self, held: &[Held], account: &Account) -> Option<usize> {
        held.iter()
            .position(|h| Arc::ptr_eq(&h.state, &self.state) && h.account == *account)
    }

    /// Takes one unit for a manifest GET: from the current image's reservation, reserving
    /// for the image first (its kind unknown) if this is its first GET here.
    fn take_unit(&self, account: &Account) -> Result<(), Deferral> {
        let image = IMAGE.try_with(|image| {
            let mut held = lock(&image.held);
            let mut state = self.lock();
            let quota = state.quotas.of(account);
            let index = match self.held_index(&held, account) {
                Some(i) => i,
                None => {
                    let units = quota.estimate_image();
                    let reservation = quota.reserve(units)?;
                    held.push(self.holding(account, reservation));
                    held.len() - 1
                }
            };
            let h = &mut held[index];
            quota.take(Some(&mut h.reservation))?;
            h.cost += 1;
            Ok(())
        });
        match image {
            Ok(taken) => taken,
            // Outside any image's copy (attachments listed by the run, tests).
            Err(_) => self.lock().quotas.of(account).take(None),
        }
    }

    /// A manifest GET was read: `children` of an index (0 for an image). The image's
    /// reservation grows to cover them, or the image is deferred before any is fetched.
    pub fn manifest_read(&self, account: &Account, children: u64) -> Result<(), Deferral> {
        if children == 0 {
            return Ok(());
        }
        IMAGE
            .try_with(|image| {
                let mut held = lock(&image.held);
                let Some(i) = self.held_index(&held, account) else {
                    return Ok(());
                };
                let h = &mut held[i];
                let mut state = self.lock();
                let quota = state.quotas.of(account);
                quota.note_image(h.cost + children);
                quota.grow(&mut h.reservation, children)
            })
            .unwrap_or(Ok(()))
    }

    /// After an answer (or a transport failure): what it published, that a manifest GET is
    /// no longer in flight, and, for any answer but a 429 (see [`Rationing::throttled`]),
    /// that a request was let through.
    pub fn observe(
        &self,
        account: &Account,
        manifest_get: bool,
        status: Option<StatusCode>,
        headers: Option<&HeaderMap>,
    ) {
        let now = Instant::now();
        if manifest_get && status.is_some_and(|s| s != StatusCode::TOO_MANY_REQUESTS) {
            self.widen();
        }
        let mut state = self.lock();
        if manifest_get {
            state.quotas.of(account).answered();
        }
        if let Some(p) = headers.and_then(published) {
            state.quotas.of(account).observe(&p);
            state.pace.publish(now, &p);
        }
        match status {
            // A 429 with Retry-After is a pace (a spent quota sends none): learned at once,
            // before its body is read, so that nothing more is sent into an empty bucket
            // meanwhile. One without waits for its body (see throttled).
            Some(StatusCode::TOO_MANY_REQUESTS) => {
                let after = headers.and_then(|h| retry_after(StatusCode::TOO_MANY_REQUESTS, h));
                if after.is_some() {
                    state
                        .pace
                        .observe(now, Answer::Refused { retry_after: after });
                }
            }
            Some(_) => state.pace.observe(now, Answer::Passed),
            None => {}
        }
    }

    /// A 429, with its body: a spent quota stops manifest GETs here for the rest of the run
    /// (the request fails as deferred); a pace is learned from (the request is retried).
    pub fn throttled(
        &self,
        account: &Account,
        headers: &HeaderMap,
        retry_after: Option<Duration>,
        body: &str,
    ) -> Throttle {
        let verdict = classify_429(headers, retry_after, Some(body));
        let mut state = self.lock();
        match verdict {
            Throttle::Quota => state.quotas.of(account).spent_by_refusal(),
            Throttle::Pace { retry_after } => {
                let now = Instant::now();
                // One with Retry-After was learned from already (see observe).
                if retry_after.is_none() {
                    state.pace.observe(now, Answer::Refused { retry_after });
                }
                if let Some(rate) = allowed_rate(body) {
                    state.pace.publish_rate(now, rate);
                }
            }
        }
        verdict
    }

    /// Why a manifest GET of `account` is refused now.
    pub fn deferral(&self, account: &Account) -> Deferral {
        self.lock().quotas.of(account).deferral(None)
    }

    /// What the report and metrics show: the account's quota with the least left, `None`
    /// when none was published or refused a GET.
    pub fn state(&self) -> Option<QuotaState> {
        self.lock().quotas.state()
    }

    /// The pace sent at, requests per second, once the registry showed it limits.
    pub fn rate(&self) -> Option<f64> {
        self.lock().pace.rate()
    }
}

/// A manifest fetch's place in the window, given back when dropped (whatever became of
/// the fetch).
pub struct FetchSlot<'a> {
    _permit: SemaphorePermit<'a>,
}

/// A lock that a panicking holder did not poison for good: the quota's numbers stay usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one image holds of each registry's quota.
struct Held {
    state: Arc<Mutex<State>>,
    account: Account,
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
            lock(&h.state)
                .quotas
                .of(&h.account)
                .release(h.reservation, h.cost);
        }
    }
}

tokio::task_local! {
    static IMAGE: ImageQuota;
}

/// Runs the copy of one image with its own quota reservations (see the module doc): the
/// registry's [`crate::store::Source::ration`], which the copy algorithm calls for each image
/// without knowing what a registry rations.
pub async fn for_one_image<F: Future>(copy: F) -> F::Output {
    IMAGE.scope(ImageQuota::default(), copy).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// The account of most tests: anonymous.
    const A: Account = Account::ANONYMOUS;

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
        if r.admit_manifest_get(&A).is_err() {
            return false;
        }
        *remaining -= 1;
        r.observe(&A, true, Some(StatusCode::OK), Some(&hub(*remaining)));
        r.manifest_read(&A, 0).is_ok()
    }

    #[tokio::test]
    async fn images_are_started_only_when_the_quota_covers_them_whole() {
        let r = Rationing::new("docker.io", Share::WHOLE);
        let mut remaining = 10;
        // A HEAD told the quota: 10 left.
        r.observe(&A, false, Some(StatusCode::OK), Some(&hub(remaining)));
        let mut whole = 0;
        let mut started = 0;
        for _ in 0..5 {
            // An index of 2 children: 3 GETs.
            let done = for_one_image(async {
                if !get(&r, &mut remaining).await {
                    return None;
                }
                if r.manifest_read(&A, 2).is_err() {
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
        // 10 units: 3 whole images (9); the first image's GET reserved 1 only (its kind not
        // told) and grew; the fourth is not started at all.
        assert_eq!((whole, started), (3, 3));
        assert_eq!(remaining, 1);
        let state = r.state();
        assert_eq!(state.and_then(|s| s.left), Some(1));
    }

    #[tokio::test]
    async fn an_image_told_an_index_reserves_for_its_children_before_its_first_get() {
        let r = Rationing::new("docker.io", Share::WHOLE);
        r.observe(&A, false, Some(StatusCode::OK), Some(&hub(4)));
        let mut remaining = 4;
        let first = for_one_image(async {
            assert!(r.needs_kind(&A));
            r.reserve_image(&A, true)?;
            assert!(!r.needs_kind(&A), "reserved once");
            assert!(get(&r, &mut remaining).await);
            r.manifest_read(&A, 2)?;
            for _ in 0..2 {
                assert!(get(&r, &mut remaining).await);
            }
            Ok::<(), Deferral>(())
        })
        .await;
        assert!(first.is_ok());
        // 1 left after a whole index's 3: an index is refused before its first GET, a
        // single image is not.
        assert!(
            for_one_image(async { r.reserve_image(&A, true) })
                .await
                .is_err()
        );
        assert!(
            for_one_image(async { r.reserve_image(&A, false) })
                .await
                .is_ok()
        );
        assert!(!r.needs_kind(&A), "outside an image's copy");
    }

    #[tokio::test]
    async fn manifest_fetches_start_one_at_a_time_and_widen_with_each_answer() {
        let r = Rationing::new("quay.io", Share::WHOLE);
        let ok = |r: &Rationing| r.observe(&A, true, Some(StatusCode::OK), None);
        let first = r.fetch_slot().await;
        assert!(first.is_some());
        // The second waits while the first is out.
        let waits = |r: &Rationing| {
            let Ok(permit) = r.window.try_acquire() else {
                return true;
            };
            drop(permit);
            false
        };
        assert!(waits(&r), "one at a time before any answer");
        ok(&r);
        assert_eq!(r.window(), 2);
        let second = r.fetch_slot().await;
        assert!(
            second.is_some() && waits(&r),
            "two at once after one answer"
        );
        // A 429 (a pace, or a quota) widens nothing; nor does a HEAD.
        r.observe(&A, true, Some(StatusCode::TOO_MANY_REQUESTS), None);
        r.observe(&A, false, Some(StatusCode::OK), None);
        assert_eq!(r.window(), 2);
        drop((first, second));
        // One more per answer until OPEN: then nothing waits.
        for _ in 2..OPEN {
            ok(&r);
        }
        assert_eq!(r.window(), OPEN);
        assert!(r.fetch_slot().await.is_none(), "open");
    }

    #[tokio::test]
    async fn a_quota_429_stops_manifest_gets_and_a_pace_429_does_not() {
        let r = Rationing::new("docker.io", Share::WHOLE);
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        assert!(r.admit_manifest_get(&A).is_ok());
        r.observe(
            &A,
            true,
            Some(StatusCode::TOO_MANY_REQUESTS),
            Some(&HeaderMap::new()),
        );
        let pace = r.throttled(&A, &HeaderMap::new(), Some(Duration::from_secs(1)), body);
        assert!(matches!(pace, Throttle::Pace { .. }));
        assert!(r.admit_manifest_get(&A).is_ok(), "a pace 429 stops nothing");
        assert_eq!(
            r.throttled(&A, &HeaderMap::new(), None, body),
            Throttle::Quota
        );
        let refused = r.admit_manifest_get(&A).err().map(|d| d.to_string());
        assert_eq!(
            refused.as_deref(),
            Some("docker.io: pull quota spent (the registry answered 429 and publishes no limit)")
        );
        r.pace().await;
    }
}
