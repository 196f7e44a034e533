//! The seam between the copy algorithm and where images live. The copy algorithm reads
//! from a [`Source`] and writes to a [`Destination`] and knows nothing of HTTP; the
//! registry client implements both, and so can a directory layout or, in the copy
//! algorithm's unit tests, an in-memory store.
//!
//! Every method is one step that either happens or fails with an [`ErrorKind`]
//! (see [`crate::model::failure`]): the stores retry their own requests within the
//! [`Budget`] they are given, the copy algorithm decides what to try again as a whole.
//! Depends on [`crate::model`], [`crate::retry`] and [`crate::limiter`] (the limit on work in
//! flight every store has) only.
//!
//! [`ErrorKind`]: crate::model::failure::ErrorKind

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;

pub use crate::limiter::{Slot, Slots, holding};
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

    /// The store's limit on work in flight (reads, for a store that keeps one per
    /// direction); a blob transfer holds a slot at both ends.
    fn slots(&self) -> &Slots;

    /// Opens what the store's first requests will need (connections, how it wants to be
    /// asked), ahead of them and at most once; best effort: a failure shows on the request
    /// that needed it.
    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Runs `copy`, the copy of one image read from this store, under what the store
    /// rations per image: a registry's pull quota is spent on whole images, the image's
    /// manifest reads set aside together and what it did not use given back when it ends
    /// (see `registry::control::ration`). By default the copy runs as it is.
    fn ration<'a>(&'a self, copy: BoxFuture<'a, ()>) -> BoxFuture<'a, ()> {
        copy
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
    /// The store's limit on writes in flight: a registry keeps one per direction, since
    /// what it can take from us and give us differ; other stores share [`Source::slots`].
    fn write_slots(&self) -> &Slots {
        self.slots()
    }

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

    /// Deletes a tag (only the tag, where the store can) or a manifest by digest (with
    /// every tag pointing at it): what `prune` does, and nothing else does. A store that
    /// does not delete this way says so in [`Deleted::Refused`] rather than failing.
    fn delete_manifest<'a>(
        &'a self,
        _repository: &'a Repository,
        _reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Deleted>> {
        let refused = Deleted::Refused(format!("{} cannot delete", self.name()));
        Box::pin(async move { Ok(refused) })
    }
}

/// What a delete came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Removed,
    /// Nothing there to delete.
    Absent,
    /// The store does not delete this way (a registry without deletes, or one that deletes
    /// only by digest asked for a tag): its words.
    Refused(String),
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

/// The slots a blob transfer holds for all its requests (its download, resumes, upload
/// session and parts), given back when it is dropped: while it is held, the stores send
/// those requests without taking another slot.
#[must_use = "the transfer's slots are given back when this is dropped"]
pub struct TransferPermit<'a> {
    _first: Slot<'a>,
    _second: Option<Slot<'a>>,
}

/// The slots a blob transfer holds: the source's read slot and the destination's write
/// slot, or two at once when both are one pool (a store without directions), taken in one
/// order — by store name, then reads before writes — so that transfers running the other
/// way cannot deadlock holding one each.
pub async fn transfer_slots<'a>(
    src: &'a dyn Source,
    dst: &'a dyn Destination,
) -> TransferPermit<'a> {
    let (reads, writes) = (src.slots(), dst.write_slots());
    let (first, second) = if std::ptr::eq(reads, writes) {
        (reads.take(2).await, None)
    } else if src.name() <= dst.name() {
        let a = reads.take(1).await;
        (a, Some(writes.take(1).await))
    } else {
        let b = writes.take(1).await;
        (b, Some(reads.take(1).await))
    };
    TransferPermit {
        _first: first,
        _second: second,
    }
}
