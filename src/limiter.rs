//! The limit on work in flight at one store: [`Slots`], an adaptive semaphore (additive
//! increase, multiplicative decrease), and [`holding`], which keeps a slot for as long as a
//! stream has bytes left. Used by every store behind the copy seam (the
//! registry client's controller, directories, the in-memory test store); depends on
//! nothing of the project.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// A boxed stream, as [`holding`] wraps it (a blob stream of the store seam is one).
pub type Held<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// A store's limit on requests in flight, which adapts when the store says it is
/// overloaded: a `429` halves it ([`Slots::throttled`]), and each run of as many successful
/// answers as the limit raises it by one again, up to the configured maximum (additive
/// increase, multiplicative decrease, as TCP does).
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: u32,
    /// The limit now (at most `max`).
    limit: AtomicU32,
    /// Successes since the limit last changed.
    streak: AtomicU32,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        let max = max.clamp(1, Semaphore::MAX_PERMITS) as u32;
        Slots {
            semaphore: Arc::new(Semaphore::new(max as usize)),
            max,
            limit: AtomicU32::new(max),
            streak: AtomicU32::new(0),
        }
    }

    /// Waits for `count` slots at once (at most as many as the limit allows).
    pub async fn take(&self, count: u32) -> SemaphorePermit<'_> {
        let count = count.min(self.limit.load(Ordering::Relaxed).max(1));
        match self.semaphore.acquire_many(count).await {
            Ok(p) => p,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// [`Slots::take`], for a holder that outlives the borrow (a stream that gives its slot
    /// back when it ends).
    pub async fn take_owned(&self, count: u32) -> OwnedSemaphorePermit {
        let count = count.min(self.limit.load(Ordering::Relaxed).max(1));
        match self.semaphore.clone().acquire_many_owned(count).await {
            Ok(p) => p,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The store answered `429`: halve the limit. Slots in use are taken out of the pool as
    /// they come back. Returns the new limit when it changed.
    pub fn throttled(&self) -> Option<u32> {
        let old = self.limit.load(Ordering::Relaxed);
        let new = (old / 2).max(1);
        if new == old
            || self
                .limit
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        let surplus = old - new;
        let semaphore = self.semaphore.clone();
        // Waits for the slots in use to come back, and keeps them.
        tokio::spawn(async move {
            if let Ok(permits) = semaphore.acquire_many_owned(surplus).await {
                permits.forget();
            }
        });
        Some(new)
    }

    /// An answer that was no `429`: after as many in a row as the limit, raise it by one.
    /// Returns the new limit when it changed.
    pub fn succeeded(&self) -> Option<u32> {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit >= self.max {
            return None;
        }
        if self.streak.fetch_add(1, Ordering::Relaxed) + 1 < limit {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.limit
            .compare_exchange(limit, limit + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        self.semaphore.add_permits(1);
        Some(limit + 1)
    }
}

/// A stream that holds `slot` until it ends (or is dropped): the source's slot of a blob
/// transfer, given back as soon as its last byte is read rather than when the destination
/// has committed the blob.
pub fn holding<T: 'static>(stream: Held<T>, slot: OwnedSemaphorePermit) -> Held<T> {
    struct Holding<T> {
        inner: Held<T>,
        slot: Option<OwnedSemaphorePermit>,
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
