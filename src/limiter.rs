//! The limit on work in flight at one store: [`Slots`], a semaphore whose size follows the
//! decisions of a [`crate::concurrency::Controller`] (additive increase, multiplicative
//! decrease on refusals; for a registry's transfers, growth while the path does not
//! queue), counting the slots held; and [`holding`], which keeps a slot for as long as a
//! stream has bytes left. Used by every store behind the copy seam (the
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

/// A boxed stream, as [`holding`] wraps it (a blob stream of the store seam is one).
pub type Held<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// A store's limit on work in flight, which follows what the store's answers show (see
/// [`crate::concurrency`] for the decisions): fixed stores and `--max-per-registry N` start
/// at their number and only go lower while the store refuses; a registry's transfers
/// without that flag start at six and grow while the path is long and does not queue.
/// [`Slots::observe`] feeds it an answer; each slot taken is counted while held.
///
/// The semaphore holds as many permits as the limit. A lower limit takes the permits that
/// are free at once and the rest as slots come back (a debt paid by the holders, not a
/// task queued behind the waiters, which would let them have the permits first); a higher
/// one first cancels what is still owed.
pub struct Slots {
    semaphore: Arc<Semaphore>,
    /// The limit now, for [`Slots::take`] without the lock.
    limit: AtomicU32,
    pool: Arc<Pool>,
    control: Mutex<Controller>,
}

/// What the slots' holders update as they give them back.
#[derive(Default)]
struct Pool {
    /// Slots held now (a transfer holding two counts two).
    held: AtomicU32,
    /// Permits to take out of the semaphore as slots come back (the limit was lowered
    /// while they were held).
    debt: AtomicU32,
}

impl Pool {
    /// Pays up to `count` of the debt; returns how much was paid.
    fn pay(&self, count: u32) -> u32 {
        let mut paid = 0;
        let _ = self
            .debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                paid = d.min(count);
                Some(d - paid)
            });
        paid
    }

    /// `count` slots given back: how many of their permits go back to the semaphore.
    fn given_back(&self, count: u32) -> u32 {
        self.held.fetch_sub(count, Ordering::Relaxed);
        count - self.pay(count)
    }
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
            pool: Arc::default(),
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
            permit: Some(permit),
            semaphore: &self.semaphore,
            pool: &self.pool,
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
            permit: Some(permit),
            semaphore: self.semaphore.clone(),
            pool: self.pool.clone(),
            count,
        }
    }

    /// Counts slots taken, and tells the controller how many are in flight.
    fn taken(&self, count: u32) {
        let now = self.pool.held.fetch_add(count, Ordering::Relaxed) + count;
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

    /// The shortest round trip the controller has seen.
    #[cfg(test)]
    pub(crate) fn no_load(&self) -> Option<std::time::Duration> {
        self.control.lock().ok().and_then(|c| c.no_load())
    }

    /// Learns from one answer of the store; returns the new limit when it changed.
    pub fn observe(&self, sample: Sample) -> Option<u32> {
        let Ok(mut control) = self.control.lock() else {
            return None;
        };
        control.in_flight(self.pool.held.load(Ordering::Relaxed));
        let old = control.limit();
        let new = control.observe(sample)?;
        self.limit.store(new, Ordering::Relaxed);
        if new > old {
            let owed = self.pool.pay(new - old);
            self.semaphore.add_permits((new - old - owed) as usize);
        } else {
            let surplus = old - new;
            let free = surplus.min(self.semaphore.available_permits() as u32);
            let taken = match self.semaphore.try_acquire_many(free) {
                Ok(permits) if free > 0 => {
                    permits.forget();
                    free
                }
                _ => 0,
            };
            self.pool.debt.fetch_add(surplus - taken, Ordering::Relaxed);
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
    permit: Option<SemaphorePermit<'a>>,
    semaphore: &'a Semaphore,
    pool: &'a Pool,
    count: u32,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let permit = self.permit.take();
        give_back(
            self.pool,
            self.semaphore,
            self.count,
            permit.map(|p| move || p.forget()),
        );
    }
}

/// What a dropped slot of `count` permits returns: all of them (the permit's own drop),
/// unless the pool keeps some back (a limit lowered meanwhile), when the permit is forgotten
/// and only what the pool gives back is added again.
fn give_back(pool: &Pool, semaphore: &Semaphore, count: u32, forget: Option<impl FnOnce()>) {
    let back = pool.given_back(count);
    if let Some(forget) = forget
        && back < count
    {
        forget();
        semaphore.add_permits(back as usize);
    }
}

/// [`Slot`] without a borrow.
pub struct OwnedSlot {
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
    pool: Arc<Pool>,
    count: u32,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        let permit = self.permit.take();
        give_back(
            &self.pool,
            &self.semaphore,
            self.count,
            permit.map(|p| move || p.forget()),
        );
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
    async fn a_lower_limit_holds_even_for_takers_already_waiting() {
        let slots = Arc::new(Slots::new(4));
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| slots.take(1))).await;
        let got = Arc::new(AtomicU32::new(0));
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let (slots, got) = (slots.clone(), got.clone());
                tokio::spawn(async move {
                    let _slot = slots.take(1).await;
                    got.fetch_add(1, Ordering::Relaxed);
                    std::future::pending::<()>().await;
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(slots.throttled(), Some(2));
        drop(held);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(got.load(Ordering::Relaxed), 2, "two slots, not four");
        assert_eq!(slots.pool.held.load(Ordering::Relaxed), 2);
        for w in waiting {
            w.abort();
        }
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
