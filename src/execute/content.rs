//! An image's content made present in a destination repository: every blob (skipped if
//! there, mounted from another repository of the same store, or streamed from the source
//! through the one digest-and-size check, [`super::checked`]), an index's children by
//! digest, each once per repository and run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;
use futures_util::future::{BoxFuture, join, join_all};

use super::Executor;
use super::checked::checked;
use crate::ends::Ends;
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::model::manifest::{BlobRef, Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::retry::{self, Budget};
use crate::stats::Stats;
use crate::store::{
    BlobStream, Destination, Mount, OpenBlob, Source, UploadSession, holding, transfer_slots,
};

/// The ends of a copy with their stores held as `Arc`s (a blob's download outlives the
/// borrow).
pub(super) type CopyEnds<'a> = Ends<'a, Arc<dyn Source>, Arc<dyn Destination>>;

/// One copy on its way: where it reads and writes, and its byte counter.
pub(super) struct Copying<'a> {
    pub ends: CopyEnds<'a>,
    pub moved: &'a AtomicU64,
    /// The destination repository had no tag when this run first wrote to it: whatever is in
    /// it was put there by this run (and is tracked), so nothing needs asking for.
    pub fresh: bool,
}

impl Executor {
    /// Everything `manifest` references exists in the destination repository: blobs, and for
    /// an index its children (pushed by digest). Done once per repository and manifest.
    pub(super) fn ensure_content<'a>(
        &'a self,
        copying: &'a Copying<'a>,
        manifest: Arc<Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let cell = self
                .content
                .cell((copying.ends.dst_repo.clone(), manifest.digest.clone()));
            cell.get_or_try_init(|| async {
                match &manifest.content {
                    Content::Image { blobs } => {
                        all_then_first_error(blobs.iter().map(|b| self.ensure_blob(copying, b)))
                            .await?;
                    }
                    Content::Index { children } => {
                        all_then_first_error(
                            children
                                .iter()
                                .map(|child| self.ensure_child(copying, &child.digest)),
                        )
                        .await?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
            .await?;
            Ok(())
        })
    }

    /// A child of an index: its content, then the child itself by digest.
    async fn ensure_child(&self, copying: &Copying<'_>, digest: &Digest) -> Result<()> {
        let reference = ManifestRef::Digest(digest.clone());
        let child = self
            .source_manifest(copying.ends.src.as_ref(), copying.ends.src_repo, &reference)
            .await?;
        if self.child_held(copying, &reference).await? {
            return Ok(());
        }
        self.ensure_content(copying, child.clone()).await?;
        copying
            .ends
            .dst
            .put_manifest(copying.ends.dst_repo, &reference, &child)
            .await
    }

    /// Whether the destination already holds an index's child (not asked under `--force` or
    /// in a fresh repository). A registry accepts a manifest only when everything it
    /// references is there, so a child that exists is complete.
    pub(super) async fn child_held(
        &self,
        copying: &Copying<'_>,
        reference: &ManifestRef,
    ) -> Result<bool> {
        Ok(!self.options.force
            && !copying.fresh
            && copying
                .ends
                .dst
                .manifest_digest(copying.ends.dst_repo, reference)
                .await?
                .is_some())
    }

    /// One blob into the destination repository, handled once per repository however many
    /// images share it.
    async fn ensure_blob(&self, copying: &Copying<'_>, blob: &BlobRef) -> Result<()> {
        let cell = self
            .blobs_in_repo
            .cell((copying.ends.dst_repo.clone(), blob.digest.clone()));
        cell.get_or_try_init(|| self.place_blob(copying, blob))
            .await?;
        Ok(())
    }

    /// Skip if there, mount if this registry has it elsewhere, else stream it from the
    /// source — once per destination registry per run. A registry that answers a mount with
    /// an upload session instead (one without cross-repository mounts) gets the blob in
    /// that session.
    async fn place_blob(&self, copying: &Copying<'_>, blob: &BlobRef) -> Result<()> {
        let Ends {
            src,
            dst,
            src_repo,
            dst_repo,
        } = copying.ends;
        let force = self.options.force;
        let cell = self
            .uploads
            .cell((dst.name().to_owned(), blob.digest.clone()));
        let mut session = None;
        // Uploaded to another repository of this registry earlier in the run: mount it
        // straight away, no need to ask first.
        if let Some(landed) = cell.get()
            && landed != dst_repo
            && self.mounted(copying, blob, landed, &mut session).await?
        {
            return Ok(());
        }
        if !force && !copying.fresh {
            match dst.blob_exists(dst_repo, &blob.digest).await {
                Ok(false) => {}
                Ok(true) => {
                    self.give_back(copying, session).await;
                    return self.placed(&self.stats.blobs_present);
                }
                Err(e) => {
                    self.give_back(copying, session).await;
                    return Err(e);
                }
            }
        }
        if session.is_none()
            && !force
            && src.name() == dst.name()
            && self.mounted(copying, blob, src_repo, &mut session).await?
        {
            return Ok(());
        }
        let session = std::sync::Mutex::new(session);
        let take = || session.lock().ok().and_then(|mut s| s.take());
        let uploaded_here = AtomicBool::new(false);
        let landed = cell
            .get_or_try_init(|| async {
                self.transfer(copying, blob, take()).await?;
                uploaded_here.store(true, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(dst_repo.clone())
            })
            .await?;
        if uploaded_here.load(Ordering::Relaxed) {
            return self.placed(&self.stats.blobs_uploaded);
        }
        let mut session = take();
        if landed == dst_repo && !force {
            self.give_back(copying, session).await;
            return self.placed(&self.stats.blobs_present);
        }
        // Uploaded elsewhere meanwhile: mount from there, unless this registry has already
        // answered a mount with a session.
        if landed != dst_repo
            && session.is_none()
            && self.mounted(copying, blob, landed, &mut session).await?
        {
            return Ok(());
        }
        self.transfer(copying, blob, session).await?;
        self.placed(&self.stats.blobs_uploaded)
    }

    /// Asks the destination to mount the blob from `from`; true when it did. A session the
    /// registry opened instead is kept in `session` for the upload.
    async fn mounted(
        &self,
        copying: &Copying<'_>,
        blob: &BlobRef,
        from: &Repository,
        session: &mut Option<UploadSession>,
    ) -> Result<bool> {
        let answer = copying
            .ends
            .dst
            .mount(copying.ends.dst_repo, from, &blob.digest)
            .await?;
        Ok(match answer {
            Mount::Mounted => {
                Stats::bump(&self.stats.blobs_mounted);
                true
            }
            Mount::Session(s) => {
                *session = Some(s);
                false
            }
            Mount::Refused => false,
        })
    }

    /// Counts one blob placed this way; the blob's part is done.
    fn placed(&self, counter: &AtomicU64) -> Result<()> {
        Stats::bump(counter);
        Ok(())
    }

    /// Cancels an upload session a mount opened that turned out not to be needed.
    async fn give_back(&self, copying: &Copying<'_>, session: Option<UploadSession>) {
        if let Some(session) = session {
            copying
                .ends
                .dst
                .cancel_session(copying.ends.dst_repo, session)
                .await;
        }
    }

    /// Streams one blob from the source into `session` (if a mount opened one) or a new
    /// upload session. The blob copy is one operation under the request policy: its
    /// download, the download's resumes, the upload session and the copy's restarts all
    /// take their retries from one budget, so a blob is asked for at most
    /// `--request-attempts` times per image attempt.
    async fn transfer(
        &self,
        copying: &Copying<'_>,
        blob: &BlobRef,
        session: Option<UploadSession>,
    ) -> Result<()> {
        let Ends {
            src,
            dst,
            src_repo,
            dst_repo,
        } = copying.ends;
        let moved = copying.moved;
        let split = src.name() != dst.name() && self.one_way.get().copied().unwrap_or(false);
        let _active = self.stats.transfer();
        // A copy that breaks off transiently (the destination's PUT cut, the source gone
        // for longer than its resumes) starts again with a new upload session; the bytes
        // of each try are hashed as they pass (see `checked`), so only a whole, matching
        // blob commits.
        let policy = &self.options.request_policy;
        let budget = Arc::new(policy.budget());
        // The session a mount opened serves the first try only.
        let session = std::sync::Mutex::new(session);
        // The one digest-and-size check, for every destination: each stream opened (the
        // first, and any the store asks for again) is checked and counted as it passes.
        let open = || -> BoxFuture<'static, Result<BlobStream>> {
            let opening = src
                .clone()
                .open_blob(src_repo.clone(), blob.clone(), budget.clone());
            let (blob, stats) = (blob.clone(), self.stats.clone());
            Box::pin(async move { Ok(checked(opening.await?, &blob, stats)) })
        };
        let attempt = || {
            let session = session.lock().ok().and_then(|mut s| s.take());
            let (open, budget) = (&open, &budget);
            async move {
                tracing::debug!(digest = %blob.digest, size = blob.size, from = %src_repo, to = %dst_repo, "uploading blob");
                if split {
                    self.send_split(copying, blob, session, open, budget).await
                } else {
                    let _slots = transfer_slots(src.as_ref(), dst.as_ref()).await;
                    dst.upload(dst_repo, blob, session, open, budget).await
                }
            }
        };
        retry::drive(
            policy,
            &budget,
            &self.stats.request_retries,
            None,
            attempt,
            retry::when_transient,
            |retry, wait, e| {
                let said = format!(
                    "blob copy failed: {e:#}, starting it again ({})",
                    retry::next_try(retry, &budget, wait)
                );
                tracing::info!(digest = %blob.digest, from = %src_repo, to = %dst_repo, "{said}");
                self.stats.waiting_on(said, wait);
            },
        )
        .await
        .map_err(|e| {
            // Keep the kind: the job's retries look at it.
            let kind = error_kind(&e).unwrap_or(ErrorKind::Permanent);
            failure(kind, format!("{e:#} (copying from {src_repo})"))
        })?;
        moved.fetch_add(blob.size, Ordering::Relaxed);
        Ok(())
    }
}

impl Executor {
    /// One try of a blob copy between two registries, each end's slot held only for that
    /// end's own request: the source's from its GET until the last byte is read, the
    /// destination's from when the source's first bytes are in hand (and an upload session
    /// is open, opened meanwhile as a cheap request) until the blob is committed. Each
    /// registry still has at most its limit of transfers in flight, and neither end's slot
    /// waits a round trip for the other end: over a 20 ms link that is a round trip less
    /// per blob at each end. Only when no registry is both read and written (see
    /// `one_way`): a transfer holds its source's slot while it waits for its
    /// destination's, which two transfers going opposite ways could each hold for the
    /// other. A blob sent again another way (a registry refusing a body on `PUT`) is read
    /// again without a source slot: that happens once per registry and run.
    async fn send_split(
        &self,
        copying: &Copying<'_>,
        blob: &BlobRef,
        session: Option<UploadSession>,
        open: OpenBlob<'_>,
        budget: &Arc<Budget>,
    ) -> Result<()> {
        let Ends {
            src, dst, dst_repo, ..
        } = copying.ends;
        let source_slot = src.slots().take_owned(1).await;
        let opening = open();
        let (stream, session) = match session {
            Some(session) => (opening.await, Ok(Some(session))),
            None => join(opening, dst.open_session(dst_repo, budget)).await,
        };
        let (stream, session) = match (stream, session) {
            (Ok(stream), Ok(session)) => (stream, session),
            (Err(e), session) => {
                self.give_back(copying, session.ok().flatten()).await;
                return Err(e);
            }
            (Ok(_), Err(e)) => return Err(e),
        };
        let first = std::sync::Mutex::new(Some(holding(stream, source_slot)));
        let first_then_anew = || -> BoxFuture<'static, Result<BlobStream>> {
            match first.lock().ok().and_then(|mut f| f.take()) {
                Some(stream) => Box::pin(async move { Ok(stream) }),
                None => open(),
            }
        };
        let _destination_slot = dst.write_slots().take(1).await;
        dst.upload(dst_repo, blob, session, &first_then_anew, budget)
            .await
    }
}

/// Runs every future to its end, then gives the first error. Used for the parts of one
/// image: when one blob fails, the copies of its siblings already under way finish rather
/// than being dropped mid-upload, which would waste the bytes sent (the next run or retry
/// needs them) and leave upload sessions open at the destination.
async fn all_then_first_error<F>(parts: impl IntoIterator<Item = F>) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    join_all(parts).await.into_iter().collect()
}
