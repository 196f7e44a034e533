//! The seam between the copy algorithm and where images live. The copy algorithm reads
//! from a [`Source`] and writes to a [`Destination`] and knows nothing of HTTP; the
//! registry client implements both, and so can a directory layout or, in the copy
//! algorithm's unit tests, an in-memory store.
//!
//! Every method is one step that either happens or fails with an [`ErrorKind`]
//! (see [`crate::model::failure`]): the stores retry their own requests within the
//! [`Budget`] they are given, the copy algorithm decides what to try again as a whole.
//! Depends on [`crate::model`] and [`crate::retry`] only.
//!
//! [`ErrorKind`]: crate::model::failure::ErrorKind

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Result;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::model::attached::Referrer;
use crate::model::manifest::{BlobRef, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::retry::Budget;

/// A blob's bytes as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Opens a blob's stream at its source (a new download each call): an upload that has to
/// send the blob again another way asks for the bytes again.
pub type OpenBlob<'a> = &'a (dyn Fn() -> BoxFuture<'static, Result<BlobStream>> + Send + Sync);

/// Where images are read from.
pub trait Source: Send + Sync {
    /// The store's name (a registry host): blobs are uploaded once per name and run, and
    /// mounted between repositories of the same name.
    fn name(&self) -> &str;

    /// The store's limit on work in flight; a blob transfer holds a slot at both ends.
    fn slots(&self) -> &Slots;

    /// Opens what the store's first requests will need (connections, how it wants to be
    /// asked), ahead of them and at most once; best effort: a failure shows on the request
    /// that needed it.
    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// The digest `reference` resolves to, or `None` when the store does not have it.
    fn manifest_digest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Option<Digest>>>;

    /// A manifest's exact bytes, checked against the digest asked for (or the one the
    /// store states for a tag).
    fn manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Manifest>>;

    /// A blob's bytes. The stream may resume a broken download, taking each try from
    /// `budget`; the copy checks the bytes against the digest as it hands them on.
    fn open_blob(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        budget: Arc<Budget>,
    ) -> BoxFuture<'static, Result<BlobStream>>;

    /// Every tag of a repository (none when it does not exist), for wildcards and tagless
    /// sources.
    fn tags<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Vec<String>>>;

    /// The tags a repository holds (none when it does not exist), asked of a destination
    /// once per repository: a tag it does not list cannot be unchanged, and a repository with
    /// no tag has nothing to compare with. `None` when the store cannot list tags.
    fn held_tags<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>>>;

    /// Whether the repository holds the blob.
    fn blob_exists<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The manifests whose `subject` is `digest`, from the store's referrers API; `None`
    /// when the store has no such API (then the fallback tag is what lists them).
    fn referrers<'a>(
        &'a self,
        _repository: &'a Repository,
        _digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<Vec<Referrer>>>> {
        Box::pin(async { Ok(None) })
    }
}

/// Where images are written. A destination can be read too: the copy algorithm asks it
/// what it holds before writing.
pub trait Destination: Source {
    /// Asks the store to link a blob it holds in `from` (a repository of the same store)
    /// into `repository`.
    fn mount<'a>(
        &'a self,
        repository: &'a Repository,
        from: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Mount>>;

    /// Opens an upload session ahead of the upload, so that it is ready when the source's
    /// first bytes are (a cheap request, not counted as a transfer); `None` from stores that
    /// have no sessions. A session not used is given back with [`Self::cancel_session`].
    fn open_session<'a>(
        &'a self,
        _repository: &'a Repository,
        _budget: &'a Budget,
    ) -> BoxFuture<'a, Result<Option<UploadSession>>> {
        Box::pin(async { Ok(None) })
    }

    /// Gives back a session a mount opened and nothing used (best effort). Stores whose
    /// mounts never open sessions have nothing to give back.
    fn cancel_session<'a>(
        &'a self,
        _repository: &'a Repository,
        _session: UploadSession,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Writes a blob from a stream `open` gives (opened while the upload is prepared), into
    /// `session` when a mount opened one. The stream is checked (by the copy, for every
    /// store): it ends with an error, before its last byte, unless all of `blob.size` bytes
    /// arrived and match `blob.digest`; a store commits only a stream that ended without
    /// error, so nothing is committed unless the bytes match. Requests made on the way take their retries
    /// from `budget`; a failed upload is not retried here, but a store whose way of
    /// uploading was refused may send the blob again another way (opening it again), which
    /// is no retry.
    fn upload<'a>(
        &'a self,
        repository: &'a Repository,
        blob: &'a BlobRef,
        session: Option<UploadSession>,
        open: OpenBlob<'a>,
        budget: &'a Budget,
    ) -> BoxFuture<'a, Result<()>>;

    /// Writes a manifest as its exact bytes, under a tag or its digest.
    fn put_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
        manifest: &'a Manifest,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Finds the store for a repository.
pub trait Stores: Send + Sync {
    fn source<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Arc<dyn Source>>>;
    fn destination<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Arc<dyn Destination>>>;
}

/// What a mount request came to.
pub enum Mount {
    /// The blob is in the repository now.
    Mounted,
    /// Not mounted, but the store opened an upload session instead: upload into it, or
    /// give it back with [`Destination::cancel_session`].
    Session(UploadSession),
    /// Not mounted, no session: upload the usual way.
    Refused,
}

/// An upload a store opened; what it holds is the store's own business.
pub struct UploadSession(Box<dyn Any + Send + Sync>);

impl UploadSession {
    pub fn new<T: Any + Send + Sync>(inner: T) -> UploadSession {
        UploadSession(Box::new(inner))
    }

    /// The store's own session, if this is one of its kind.
    pub fn into_inner<T: Any>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|b| *b)
    }
}

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
pub fn holding(stream: BlobStream, slot: OwnedSemaphorePermit) -> BlobStream {
    struct Holding {
        inner: BlobStream,
        slot: Option<OwnedSemaphorePermit>,
    }
    impl Stream for Holding {
        type Item = std::io::Result<Bytes>;
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

/// The slots a blob transfer holds: one at each end, or two at once when both ends are one
/// store, taken in the order of the stores' names so that transfers running the other way
/// cannot deadlock holding one each.
pub async fn transfer_slots<'a>(
    src: &'a dyn Source,
    dst: &'a dyn Source,
) -> (SemaphorePermit<'a>, Option<SemaphorePermit<'a>>) {
    if src.name() == dst.name() {
        (dst.slots().take(2).await, None)
    } else if src.name() < dst.name() {
        let a = src.slots().take(1).await;
        (a, Some(dst.slots().take(1).await))
    } else {
        let b = dst.slots().take(1).await;
        (b, Some(src.slots().take(1).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
