//! The limit on work in flight at one store: [`Slots`], a semaphore whose size follows the
//! decisions of a [`crate::concurrency::Controller`] (additive increase, multiplicative
//! decrease on refusals; for a registry's transfers, growth while the path does not
//! queue), counting the slots held; and [`holding`], which keeps a slot for as long as a
//! stream has bytes left. Used by every store behind the [`crate::store`] seam (the
//! registry client's controller, directories, the in-memory test store); depends on
//! nothing of the project but [`crate::concurrency`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::concurrency::{Controller, Limit, Reached, Sample, Signal};

/// A boxed stream, as [`holding`] wraps it (a [`crate::store::BlobStream`] is one).
pub type Held<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// A store's limit on work in flight, which follows what the store's answers show (see
/// [`crate::concurrency`] for the decisions): fixed stores and `--max-per-registry N` start
/// at their number and only go lower while the store refuses; a registry's transfers
/// without that flag start at six and grow while the path is long and does not queue.
/// [`Slots::observe`] feeds it an answer; each slot taken is counted while held.
pub struct Slots {
    semaphore: Arc<Semaphore>,
    /// The limit now, for [`Slots::take`] without the lock.
    limit: AtomicU32,
    /// Slots held now (a transfer holding two counts two).
    held: Arc<AtomicU32>,
    control: Mutex<Controller>,
}

impl Slots {
    /// At most `max` at once: starts there, halved on a `429` and won back (additive
    /// increase, multiplicative decrease, as TCP does), never higher.
    pub fn new(max: usize) -> Slots {
        let max = max.clamp(1, Semaphore::MAX_PERMITS) as u32;
        Slots::with(Limit::AtMost(max))
    }

    pub fn with(limit: Limit) -> Slots {
        let control = Controller::new(limit);
        let start = control.limit();
        Slots {
            semaphore: Arc::new(Semaphore::new(start as usize)),
            limit: AtomicU32::new(start),
            held: Arc::default(),
            control: Mutex::new(control),
        }
    }

    /// Waits for `count` slots at once (at most as many as the limit allows).
    pub async fn take(&self, count: u32) -> Slot<'_> {
        let count = count.min(self.limit().max(1));
        let permit = match self.semaphore.acquire_many(count).await {
            Ok(p) => p,
            Err(_) => unreachable!("the semaphore is never closed"),
        };
        self.taken(count);
        Slot {
            _permit: permit,
            held: &self.held,
            count,
        }
    }

    /// [`Slots::take`], for a holder that outlives the borrow (a stream that gives its slot
    /// back when it ends).
    pub async fn take_owned(&self, count: u32) -> OwnedSlot {
        let count = count.min(self.limit().max(1));
        let permit = match self.semaphore.clone().acquire_many_owned(count).await {
            Ok(p) => p,
            Err(_) => unreachable!("the semaphore is never closed"),
        };
        self.taken(count);
        OwnedSlot {
            _permit: permit,
            held: self.held.clone(),
            count,
        }
    }

    /// Counts slots taken, and tells the controller how many are in flight.
    fn taken(&self, count: u32) {
        let now = self.held.fetch_add(count, Ordering::Relaxed) + count;
        if let Ok(mut control) = self.control.lock() {
            control.in_flight(now);
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// What the limit reached in the run, and why it stopped growing.
    pub fn reached(&self) -> Reached {
        self.control.lock().map(|c| c.reached()).unwrap_or_default()
    }

    /// Learns from one answer of the store; returns the new limit when it changed. A lower
    /// limit takes the slots in use out of the pool as they come back.
    pub fn observe(&self, sample: Sample) -> Option<u32> {
        let (old, new) = {
            let Ok(mut control) = self.control.lock() else {
                return None;
            };
            control.in_flight(self.held.load(Ordering::Relaxed));
            let old = control.limit();
            (old, control.observe(sample)?)
        };
        self.limit.store(new, Ordering::Relaxed);
        if new > old {
            self.semaphore.add_permits((new - old) as usize);
        } else {
            let surplus = old - new;
            let semaphore = self.semaphore.clone();
            // Waits for the slots in use to come back, and keeps them.
            tokio::spawn(async move {
                if let Ok(permits) = semaphore.acquire_many_owned(surplus).await {
                    permits.forget();
                }
            });
        }
        Some(new)
    }

    /// The store answered `429`: halve the limit. Returns the new limit when it changed.
    pub fn throttled(&self) -> Option<u32> {
        self.observe(Sample {
            at: Instant::now(),
            round_trip: None,
            signal: Signal::Throttled,
        })
    }

    /// An answer that was no `429` (its time unknown). Returns the new limit when it
    /// changed.
    pub fn succeeded(&self) -> Option<u32> {
        self.observe(Sample {
            at: Instant::now(),
            round_trip: None,
            signal: Signal::Fine,
        })
    }
}

/// Slots taken from [`Slots`], given back when dropped.
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    held: &'a AtomicU32,
    count: u32,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.held.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// [`Slot`] without a borrow.
pub struct OwnedSlot {
    _permit: OwnedSemaphorePermit,
    held: Arc<AtomicU32>,
    count: u32,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.held.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// A stream that holds `slot` until it ends (or is dropped): the source's slot of a blob
/// transfer, given back as soon as its last byte is read rather than when the destination
/// has committed the blob.
pub fn holding<T: 'static>(stream: Held<T>, slot: OwnedSlot) -> Held<T> {
    struct Holding<T> {
        inner: Held<T>,
        slot: Option<OwnedSlot>,
    }
    impl<T> Stream for Holding<T> {
        type Item = T;
        fn poll_next(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let next = self.inner.as_mut().poll_next(cx);
            if let std::task::Poll::Ready(None) = next {
                self.slot = None;
            }
            next
        }
    }
    Box::pin(Holding {
        inner: stream,
        slot: Some(slot),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn a_held_stream_gives_its_slot_back_at_its_end() {
        use futures_util::StreamExt;
        let slots = Slots::new(1);
        let chunks: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"ab"))];
        let mut stream = holding(
            Box::pin(futures_util::stream::iter(chunks)),
            slots.take_owned(1).await,
        );
        assert_eq!(slots.semaphore.available_permits(), 0);
        assert!(stream.next().await.is_some());
        assert_eq!(
            slots.semaphore.available_permits(),
            0,
            "held while bytes remain"
        );
        assert!(stream.next().await.is_none());
        assert_eq!(
            slots.semaphore.available_permits(),
            1,
            "given back at the end"
        );
    }

    #[tokio::test]
    async fn a_429_halves_the_limit_and_successes_win_it_back() {
        let slots = Slots::new(8);
        let held = slots.take(2).await;
        assert_eq!(slots.throttled(), Some(4));
        assert_eq!(slots.throttled(), Some(2));
        assert_eq!(slots.throttled(), Some(1));
        assert_eq!(slots.throttled(), None);
        drop(held);
        // The surplus is taken out of the pool once returned: one slot is left.
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(slots.semaphore.available_permits(), 1);
        // One success at limit 1 raises it to 2; two more to 3.
        assert_eq!(slots.succeeded(), Some(2));
        assert_eq!(slots.succeeded(), None);
        assert_eq!(slots.succeeded(), Some(3));
        assert_eq!(slots.semaphore.available_permits(), 3);
        for _ in 0..100 {
            slots.succeeded();
        }
        assert_eq!(slots.limit(), 8);
        assert_eq!(slots.semaphore.available_permits(), 8);
    }
}
