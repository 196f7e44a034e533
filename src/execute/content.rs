//! An image's content made present in a destination repository: every blob (skipped if
//! there, mounted from another repository of the same store, or streamed from the source),
//! an index's children by digest, each once per repository and run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;
use futures_util::future::{BoxFuture, join, join_all};

use super::Executor;
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::model::manifest::{BlobRef, Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::retry::Budget;
use crate::stats::Stats;
use crate::store::{
    BlobStream, Destination, Mount, OpenBlob, Source, UploadSession, holding, transfer_slots,
};

/// Where one copy reads and writes, and its byte counter.
pub(super) struct Route<'a> {
    pub src: &'a Arc<dyn Source>,
    pub dst: &'a Arc<dyn Destination>,
    pub src_repo: &'a Repository,
    pub dst_repo: &'a Repository,
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
        route: &'a Route<'a>,
        manifest: Arc<Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let cell = self
                .content
                .cell((route.dst_repo.clone(), manifest.digest.clone()));
            cell.get_or_try_init(|| async {
                match &manifest.content {
                    Content::Image { blobs } => {
                        all_then_first_error(blobs.iter().map(|b| self.ensure_blob(route, b)))
                            .await?;
                    }
                    Content::Index { children } => {
                        all_then_first_error(
                            children
                                .iter()
                                .map(|child| self.ensure_child(route, &child.digest)),
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
    async fn ensure_child(&self, route: &Route<'_>, digest: &Digest) -> Result<()> {
        let reference = ManifestRef::Digest(digest.clone());
        let child = self
            .source_manifest(route.src.as_ref(), route.src_repo, &reference)
            .await?;
        // A registry accepts a manifest only when everything it references is there, so a
        // child that exists is complete.
        if !self.options.force
            && !route.fresh
            && route
                .dst
                .manifest_digest(route.dst_repo, &reference)
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.ensure_content(route, child.clone()).await?;
        route
            .dst
            .put_manifest(route.dst_repo, &reference, &child)
            .await
    }

    /// One blob into the destination repository, handled once per repository however many
    /// images share it.
    async fn ensure_blob(&self, route: &Route<'_>, blob: &BlobRef) -> Result<()> {
        let cell = self
            .blobs_in_repo
            .cell((route.dst_repo.clone(), blob.digest.clone()));
        cell.get_or_try_init(|| self.place_blob(route, blob))
            .await?;
        Ok(())
    }

    /// Skip if there, mount if this registry has it elsewhere, else stream it from the
    /// source — once per destination registry per run. A registry that answers a mount with
    /// an upload session instead (one without cross-repository mounts) gets the blob in
    /// that session.
    async fn place_blob(&self, route: &Route<'_>, blob: &BlobRef) -> Result<()> {
        let Route {
            src,
            dst,
            src_repo,
            dst_repo,
            ..
        } = *route;
        let force = self.options.force;
        let cell = self
            .uploads
            .cell((dst.name().to_owned(), blob.digest.clone()));
        let mut session = None;
        // Uploaded to another repository of this registry earlier in the run: mount it
        // straight away, no need to ask first.
        if let Some(landed) = cell.get()
            && landed != dst_repo
            && self.mounted(route, blob, landed, &mut session).await?
        {
            return Ok(());
        }
        if !force && !route.fresh {
            match dst.blob_exists(dst_repo, &blob.digest).await {
                Ok(false) => {}
                Ok(true) => {
                    self.give_back(route, session).await;
                    return self.placed(&self.stats.blobs_present);
                }
                Err(e) => {
                    self.give_back(route, session).await;
                    return Err(e);
                }
            }
        }
        if session.is_none()
            && !force
            && src.name() == dst.name()
            && self.mounted(route, blob, src_repo, &mut session).await?
        {
            return Ok(());
        }
        let session = std::sync::Mutex::new(session);
        let take = || session.lock().ok().and_then(|mut s| s.take());
        let uploaded_here = AtomicBool::new(false);
        let landed = cell
            .get_or_try_init(|| async {
                self.transfer(route, blob, take()).await?;
                uploaded_here.store(true, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(dst_repo.clone())
            })
            .await?;
        if uploaded_here.load(Ordering::Relaxed) {
            return self.placed(&self.stats.blobs_uploaded);
        }
        let mut session = take();
        if landed == dst_repo && !force {
            self.give_back(route, session).await;
            return self.placed(&self.stats.blobs_present);
        }
        // Uploaded elsewhere meanwhile: mount from there, unless this registry has already
        // answered a mount with a session.
        if landed != dst_repo
            && session.is_none()
            && self.mounted(route, blob, landed, &mut session).await?
        {
            return Ok(());
        }
        self.transfer(route, blob, session).await?;
        self.placed(&self.stats.blobs_uploaded)
    }

    /// Asks the destination to mount the blob from `from`; true when it did. A session the
    /// registry opened instead is kept in `session` for the upload.
    async fn mounted(
        &self,
        route: &Route<'_>,
        blob: &BlobRef,
        from: &Repository,
        session: &mut Option<UploadSession>,
    ) -> Result<bool> {
        let answer = route.dst.mount(route.dst_repo, from, &blob.digest).await?;
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
    async fn give_back(&self, route: &Route<'_>, session: Option<UploadSession>) {
        if let Some(session) = session {
            route.dst.cancel_session(route.dst_repo, session).await;
        }
    }

    /// Streams one blob from the source into `session` (if a mount opened one) or a new
    /// upload session. The blob copy is one operation under the request policy: its
    /// download, the download's resumes, the upload session and the copy's restarts all
    /// take their retries from one budget, so a blob is asked for at most
    /// `--request-attempts` times per image attempt.
    async fn transfer(
        &self,
        route: &Route<'_>,
        blob: &BlobRef,
        session: Option<UploadSession>,
    ) -> Result<()> {
        let Route {
            src,
            dst,
            src_repo,
            dst_repo,
            moved,
            ..
        } = *route;
        let split = src.name() != dst.name() && self.one_way.get().copied().unwrap_or(false);
        let _active = self.stats.transfer();
        // A copy that breaks off transiently (the destination's PUT cut, the source gone
        // for longer than its resumes) starts again with a new upload session; the bytes
        // of each try are hashed as they pass, so only a whole, matching blob commits.
        let policy = &self.options.request_policy;
        let budget = Arc::new(policy.budget());
        let mut session = session;
        let open = || {
            src.clone()
                .open_blob(src_repo.clone(), blob.clone(), budget.clone())
        };
        loop {
            tracing::debug!(digest = %blob.digest, size = blob.size, from = %src_repo, to = %dst_repo, "uploading blob");
            let result = if split {
                self.send_split(route, blob, session.take(), &open, &budget)
                    .await
            } else {
                let _slots = transfer_slots(src.as_ref(), dst.as_ref()).await;
                dst.upload(dst_repo, blob, session.take(), &open, &budget)
                    .await
            };
            let e = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            let kind = error_kind(&e).unwrap_or(ErrorKind::Permanent);
            let retry = match budget.take() {
                Some(retry) if kind == ErrorKind::Transient => retry,
                // Keep the kind: the job's retries look at it.
                _ => return Err(failure(kind, format!("{e:#} (copying from {src_repo})"))),
            };
            policy
                .pause(retry, None, &self.stats.request_retries, None, |wait| {
                    tracing::info!(digest = %blob.digest, from = %src_repo, to = %dst_repo, error = %format!("{e:#}"), "blob copy failed; starting it again in {wait:?}")
                })
                .await;
        }
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
        route: &Route<'_>,
        blob: &BlobRef,
        session: Option<UploadSession>,
        open: OpenBlob<'_>,
        budget: &Arc<Budget>,
    ) -> Result<()> {
        let Route {
            src, dst, dst_repo, ..
        } = *route;
        let source_slot = src.slots().take_owned(1).await;
        let opening = open();
        let (stream, session) = match session {
            Some(session) => (opening.await, Ok(Some(session))),
            None => join(opening, dst.open_session(dst_repo, budget)).await,
        };
        let (stream, session) = match (stream, session) {
            (Ok(stream), Ok(session)) => (stream, session),
            (Err(e), session) => {
                self.give_back(route, session.ok().flatten()).await;
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
