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

use super::Observed;
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

    /// Learns from one answer (or transport failure); each change of a limit is logged.
    pub fn observe(&self, registry: &str, observed: &Observed<'_>) {
        let Some(signal) = signal(observed) else {
            return;
        };
        let sample = Sample {
            at: std::time::Instant::now(),
            round_trip: (signal == Signal::Fine).then_some(observed.elapsed),
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

/// What an answer says to the limits; `None` for a failure the registry did not cause (a
/// name that does not resolve, a TLS mismatch), which teaches nothing.
fn signal(observed: &Observed<'_>) -> Option<Signal> {
    match (observed.status, observed.failed) {
        (Some(StatusCode::TOO_MANY_REQUESTS), _) => Some(Signal::Throttled),
        (Some(StatusCode::SERVICE_UNAVAILABLE), _) => Some(Signal::Unavailable),
        (Some(_), _) => Some(Signal::Fine),
        (None, Some(ErrorKind::Transient)) => Some(Signal::Reset),
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
        }
    }

    #[test]
    fn answers_become_signals() {
        assert_eq!(signal(&observed(Some(200), None)), Some(Signal::Fine));
        assert_eq!(signal(&observed(Some(404), None)), Some(Signal::Fine));
        assert_eq!(signal(&observed(Some(429), None)), Some(Signal::Throttled));
        assert_eq!(
            signal(&observed(Some(503), None)),
            Some(Signal::Unavailable)
        );
        assert_eq!(
            signal(&observed(None, Some(ErrorKind::Transient))),
            Some(Signal::Reset)
        );
        assert_eq!(signal(&observed(None, Some(ErrorKind::Permanent))), None);
    }

    #[tokio::test]
    async fn a_429_lowers_both_directions() {
        let t = Transfers::new(Limit::adaptive());
        t.observe("r", &observed(Some(429), None));
        assert_eq!((t.reads().limit(), t.writes().limit()), (3, 3));
        let (reads, writes) = t.reached();
        assert_eq!(reads.stop, crate::concurrency::Stop::Throttled);
        assert_eq!(writes.limit, 6);
    }
}
