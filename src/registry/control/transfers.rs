//! One registry's limits on blob transfers, one per direction: reads (the registry as a
//! source: blob downloads, referrers it serves) and writes (as a destination: uploads,
//! manifest writes, mounts). What a registry can give and take differ, and a registry read
//! and written in one run should not have its downloads wait on its uploads.
//!
//! Each limit is a [`crate::concurrency::Controller`] behind a [`Slots`]: six at first,
//! more while the round trip is long and does not lengthen under load, fewer on `429`,
//! `503` and connection resets (see [`crate::concurrency`] for the rule).
//! `--max-per-registry N` fixes the most, in each direction. Every answer the registry
//! gives teaches both: the path and the registry's load are one.

use reqwest::StatusCode;

use super::{CostClass, Observed};
use crate::concurrency::{Limit, Reached, Sample, Signal};
use crate::limiter::Slots;
use crate::model::failure::ErrorKind;

/// The two limits.
pub struct Transfers {
    reads: Slots,
    writes: Slots,
}

impl Transfers {
    pub fn new(limit: Limit) -> Transfers {
        Transfers {
            reads: Slots::with(limit),
            writes: Slots::with(limit),
        }
    }

    /// The limit on transfers reading from the registry.
    pub fn reads(&self) -> &Slots {
        &self.reads
    }

    /// The limit on transfers and writes to the registry.
    pub fn writes(&self) -> &Slots {
        &self.writes
    }

    /// What each limit has reached so far: reads, writes.
    pub fn reached(&self) -> (Reached, Reached) {
        (self.reads.reached(), self.writes.reached())
    }

    /// Learns from one answer (or transport failure) to a request of `class`; each change
    /// of a limit is logged.
    pub fn observe(&self, registry: &str, class: CostClass, observed: &Observed<'_>) {
        let Some(signal) = signal(class, observed) else {
            return;
        };
        let sample = Sample {
            at: std::time::Instant::now(),
            round_trip: (signal == Signal::Fine && !observed.uploaded).then_some(observed.elapsed),
            signal,
        };
        for (slots, direction) in [(&self.reads, "reads"), (&self.writes, "writes")] {
            let Some(limit) = slots.observe(sample) else {
                continue;
            };
            let why = slots.reached().stop.label();
            if signal == Signal::Fine {
                tracing::debug!(registry, direction, limit, why, "transfers at once");
            } else {
                tracing::warn!(registry, direction, limit, why, "fewer transfers at once");
            }
        }
    }
}

/// What an answer says to the limits; `None` for a failure that says nothing of the load:
/// one the registry did not cause (a name that does not resolve, a TLS mismatch), or a
/// check's broken connection (the scheme probe of an `--insecure` registry tries HTTPS on
/// a plain port): only a transfer or a write cut off counts as a reset.
fn signal(class: CostClass, observed: &Observed<'_>) -> Option<Signal> {
    let loads = matches!(class, CostClass::Transfer | CostClass::Write);
    match (observed.status, observed.failed) {
        (Some(StatusCode::TOO_MANY_REQUESTS), _) => Some(Signal::Throttled),
        (Some(StatusCode::SERVICE_UNAVAILABLE), _) => Some(Signal::Unavailable),
        (Some(_), _) => Some(Signal::Fine),
        (None, Some(ErrorKind::Transient)) if loads => Some(Signal::Reset),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn observed(status: Option<u16>, failed: Option<ErrorKind>) -> Observed<'static> {
        Observed {
            status: status.and_then(|s| StatusCode::from_u16(s).ok()),
            headers: None,
            elapsed: Duration::from_millis(80),
            failed,
            uploaded: false,
        }
    }

    #[test]
    fn answers_become_signals() {
        let t = CostClass::Transfer;
        assert_eq!(signal(t, &observed(Some(200), None)), Some(Signal::Fine));
        assert_eq!(signal(t, &observed(Some(404), None)), Some(Signal::Fine));
        assert_eq!(
            signal(t, &observed(Some(429), None)),
            Some(Signal::Throttled)
        );
        let check = CostClass::Check;
        assert_eq!(
            signal(check, &observed(Some(429), None)),
            Some(Signal::Throttled)
        );
        assert_eq!(
            signal(t, &observed(Some(503), None)),
            Some(Signal::Unavailable)
        );
        let cut = observed(None, Some(ErrorKind::Transient));
        assert_eq!(signal(t, &cut), Some(Signal::Reset));
        assert_eq!(signal(CostClass::Write, &cut), Some(Signal::Reset));
        // A check's broken connection (the scheme probe) says nothing of the load.
        assert_eq!(signal(check, &cut), None);
        assert_eq!(signal(t, &observed(None, Some(ErrorKind::Permanent))), None);
    }

    #[test]
    fn an_upload_time_is_no_round_trip() {
        let t = Transfers::new(Limit::adaptive());
        let mut upload = observed(Some(201), None);
        upload.uploaded = true;
        upload.elapsed = Duration::from_secs(30);
        t.observe("r", CostClass::Transfer, &upload);
        t.observe("r", CostClass::Transfer, &observed(Some(200), None));
        // Had the upload's 30 s counted, they would not be the shortest round trip; the
        // 80 ms answer is the only one.
        upload.elapsed = Duration::from_millis(1);
        t.observe("r", CostClass::Transfer, &upload);
        assert_eq!(t.reads.no_load(), Some(Duration::from_millis(80)));
    }

    #[tokio::test]
    async fn a_429_lowers_both_directions() {
        let t = Transfers::new(Limit::adaptive());
        t.observe("r", CostClass::Transfer, &observed(Some(429), None));
        assert_eq!((t.reads().limit(), t.writes().limit()), (3, 3));
        let (reads, writes) = t.reached();
        assert_eq!(reads.stop, crate::concurrency::Stop::Throttled);
        assert_eq!(writes.limit, 6);
    }
}
