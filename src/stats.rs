//! Every counter of a run in one place: what was sent (requests, retries, bytes), what
//! happened to blobs and images. The stores and the copy algorithm add to it; the progress
//! display and the report read it, and the progress display the big blobs moving now
//! ([`crate::moving`]). A leaf: it depends on nothing else in the crate but the plain values
//! of [`crate::concurrency`] and that list.
//!
//! Requests, their retries and 429 answers are also counted per registry, for the metrics a
//! batch job exports: a registry that starts throttling shows up by name; so do how many
//! transfers each registry got at once, and why no more; and what each pull quota had left
//! at the end ([`QuotaState`], filled by the registry client's rationing).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::concurrency::Reached;
use crate::moving::Moving;

/// Counters shared by everything a run does; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent, token requests and retries included.
    pub requests: AtomicU64,
    /// Requests (and blob copies) tried again after a transient failure.
    pub request_retries: AtomicU64,
    /// Blob bytes sent to destinations, failed attempts included.
    pub bytes: AtomicU64,
    pub blobs_uploaded: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_present: AtomicU64,
    /// Attached manifests (signatures, attestations, SBOMs, referrers) written.
    pub attached_copied: AtomicU64,
    /// Image copies started again after a transient failure.
    pub image_retries: AtomicU64,
    /// Images the plan holds, and those finished (failed included).
    pub images_planned: AtomicU64,
    pub images_done: AtomicU64,
    pub images_failed: AtomicU64,
    /// Blob transfers under way now.
    pub transfers: AtomicU64,
    /// Workers that stopped without reporting their images (a bug): the run fails.
    pub lost_workers: AtomicU64,
    /// The big blobs being read now, for the progress display.
    pub moving: Moving,
    /// Per destination registry: blobs committed by each upload method, and the switches
    /// from one method to another.
    uploads: Mutex<BTreeMap<String, RegistryUploads>>,
    /// Per registry (`host[:port]`): requests, retries, 429s.
    per_registry: Mutex<BTreeMap<String, RegistryCounts>>,
    /// The run's sequential round trips, see [`Stats::round_trips`].
    chain: Mutex<Chain>,
    /// The latest retry's wait: what it waits for, and until when (see [`Stats::waiting`]).
    waiting: Mutex<Option<(String, Instant)>>,
}

/// The longest chain of requests each sent after the previous one was answered, kept as
/// answers arrive: answers come in the order they end, and taking every request sent after
/// the last one taken was answered is the greedy choice that makes the chain longest (the
/// interval-scheduling argument). No request is stored.
#[derive(Debug, Default)]
struct Chain {
    last_answer: Option<Instant>,
    length: u64,
}

/// What was sent to one registry (its token service and the hosts it redirects to included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryCounts {
    pub requests: u64,
    /// Requests tried again after a transient failure.
    pub retries: u64,
    /// Answers `429 Too Many Requests`.
    pub throttled: u64,
    /// What its limits on transfers reached, reading from it and writing to it.
    pub reads: Option<Reached>,
    pub writes: Option<Reached>,
}

/// How blobs went into one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryUploads {
    /// Blobs committed by one `PUT` carrying the body.
    pub monolithic: u64,
    /// Blobs committed by one streamed `PATCH` and an empty `PUT`.
    pub streamed: u64,
    /// Blobs committed by several `PATCH`es within the registry's chunk limits.
    pub chunked: u64,
    /// Blobs whose `PUT` with a body the registry refused, sent again the other way.
    pub fallbacks: u64,
    /// The registry takes blobs as `PATCH` + `PUT` for the rest of the run (a fallback
    /// worked).
    pub patch_from_now_on: bool,
}

/// One way of uploading a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMethod {
    Monolithic,
    Streamed,
    Chunked,
}

/// The counters' values at one moment, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub request_retries: u64,
    pub bytes: u64,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub attached_copied: u64,
    pub image_retries: u64,
    pub images_planned: u64,
    pub images_done: u64,
    pub images_failed: u64,
    pub transfers: u64,
    pub lost_workers: u64,
    /// See [`Stats::round_trips`].
    pub round_trips: u64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            requests: get(&self.requests),
            request_retries: get(&self.request_retries),
            bytes: get(&self.bytes),
            blobs_uploaded: get(&self.blobs_uploaded),
            blobs_mounted: get(&self.blobs_mounted),
            blobs_present: get(&self.blobs_present),
            attached_copied: get(&self.attached_copied),
            image_retries: get(&self.image_retries),
            images_planned: get(&self.images_planned),
            images_done: get(&self.images_done),
            images_failed: get(&self.images_failed),
            transfers: get(&self.transfers),
            lost_workers: get(&self.lost_workers),
            round_trips: self.round_trips(),
        }
    }

    /// Counts a blob committed to `registry` by `method`.
    pub fn uploaded(&self, registry: &str, method: UploadMethod) {
        self.with_uploads(registry, |u| match method {
            UploadMethod::Monolithic => u.monolithic += 1,
            UploadMethod::Streamed => u.streamed += 1,
            UploadMethod::Chunked => u.chunked += 1,
        });
    }

    /// Counts a blob sent again another way after `registry` refused a `PUT` with a body.
    pub fn fell_back(&self, registry: &str) {
        self.with_uploads(registry, |u| u.fallbacks += 1);
    }

    /// Notes that `registry` gets its blobs as `PATCH` + `PUT` from now on.
    pub fn switched_to_patch(&self, registry: &str) {
        self.with_uploads(registry, |u| u.patch_from_now_on = true);
    }

    fn with_uploads(&self, registry: &str, change: impl FnOnce(&mut RegistryUploads)) {
        if let Ok(mut uploads) = self.uploads.lock() {
            change(uploads.entry(registry.to_owned()).or_default());
        }
    }

    /// Upload methods per registry that received uploads, by registry name.
    pub fn uploads(&self) -> BTreeMap<String, RegistryUploads> {
        self.uploads.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Counts a request to `registry` (in the total too); returns when it was sent, for
    /// [`Stats::answered`].
    pub fn request(&self, registry: &str) -> Instant {
        Stats::bump(&self.requests);
        self.for_registry(registry, |c| c.requests += 1);
        Instant::now()
    }

    /// Notes that a retry waits `wait` because of `why` ("127.0.0.1:1: connection refused,
    /// retry 3 of 5 in 11 s"), for the progress line.
    pub fn waiting_on(&self, why: String, wait: std::time::Duration) {
        if let Ok(mut waiting) = self.waiting.lock() {
            *waiting = Some((why, Instant::now() + wait));
        }
    }

    /// What the latest retry waits for, while it waits.
    pub fn waiting(&self) -> Option<String> {
        let waiting = self.waiting.lock().ok()?;
        let (why, until) = waiting.as_ref()?;
        (Instant::now() < *until).then(|| why.clone())
    }

    /// Counts a retry of a request to `registry`; the total is counted where the retry waits
    /// (the retry policy), which also counts retries of whole blob copies.
    pub fn retried(&self, registry: &str) {
        self.for_registry(registry, |c| c.retries += 1);
    }

    /// Notes an answer (its status line and headers) from `registry` to a request sent at
    /// `sent`: a 429 is counted, and so is the round trip.
    pub fn answered(&self, registry: &str, status: u16, sent: Instant) {
        if status == 429 {
            self.for_registry(registry, |c| c.throttled += 1);
        }
        if let Ok(mut chain) = self.chain.lock() {
            let now = Instant::now();
            if chain.last_answer.is_none_or(|last| sent >= last) {
                chain.length += 1;
                chain.last_answer = Some(now);
            }
        }
    }

    /// Round trips the run waited for one after another: the longest chain of requests in
    /// which each was sent after the previous one was answered. Requests in flight together
    /// count once; over a link of R seconds of round trip, the run spent at least this many
    /// times R waiting. Unanswered requests (a refused connection) are not counted.
    pub fn round_trips(&self) -> u64 {
        self.chain.lock().map(|c| c.length).unwrap_or(0)
    }

    /// Notes what `registry`'s limits on transfers have reached so far.
    pub fn concurrency(&self, registry: &str, reads: Reached, writes: Reached) {
        self.for_registry(registry, |c| {
            c.reads = Some(reads);
            c.writes = Some(writes);
        });
    }

    fn for_registry(&self, registry: &str, bump: impl FnOnce(&mut RegistryCounts)) {
        if let Ok(mut map) = self.per_registry.lock() {
            bump(map.entry(registry.to_owned()).or_default());
        }
    }

    /// The per-registry counts, by registry.
    pub fn registries(&self) -> BTreeMap<String, RegistryCounts> {
        self.per_registry
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Counts a transfer under way until the guard is dropped.
    pub fn transfer(&self) -> TransferGuard<'_> {
        Stats::bump(&self.transfers);
        TransferGuard(self)
    }
}

pub struct TransferGuard<'a>(&'a Stats);

impl Drop for TransferGuard<'_> {
    fn drop(&mut self) {
        self.0.transfers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a run knew of one pull quota at its end, for the report and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub limit: Option<u64>,
    pub left: Option<u64>,
    pub window: Option<std::time::Duration>,
    /// Manifest GETs this run counted against it.
    pub taken: u64,
    /// Manifest GETs refused before they were sent.
    pub refused: u64,
    /// Manifest GETs stopped for the rest of the run.
    pub spent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_registry_counts_add_up_to_the_total() {
        let stats = Stats::default();
        let sent = stats.request("a:5000");
        stats.request("a:5000");
        stats.request("b");
        stats.answered("a:5000", 429, sent);
        stats.answered("a:5000", 200, sent);
        stats.retried("a:5000");
        let per = stats.registries();
        assert_eq!(
            per.get("a:5000"),
            Some(&RegistryCounts {
                requests: 2,
                retries: 1,
                throttled: 1,
                ..RegistryCounts::default()
            })
        );
        assert_eq!(per.get("b").map(|c| c.requests), Some(1));
        assert_eq!(stats.snapshot().requests, 3);
    }

    #[test]
    fn requests_in_flight_together_are_one_round_trip() {
        let stats = Stats::default();
        // Three requests sent together, answered one after the other: one round trip.
        let together: Vec<Instant> = (0..3).map(|_| stats.request("a")).collect();
        for sent in &together {
            stats.answered("a", 200, *sent);
        }
        assert_eq!(stats.round_trips(), 1);
        // Then two, each sent after the previous answer: two more.
        for _ in 0..2 {
            let sent = stats.request("b");
            stats.answered("b", 200, sent);
        }
        assert_eq!(stats.round_trips(), 3);
        // One sent before the last answer came overlaps it: no more.
        let early = together[0];
        stats.answered("a", 200, early);
        assert_eq!(stats.snapshot().round_trips, 3);
    }
}
