//! What a dry run would move: the bytes of the blobs a copy would send, from the source's
//! manifests (an index's children too) and what the destination holds. The same decisions
//! as the copy's ([`super::content`]), taken without writing: a blob the destination
//! repository has is not sent, nor one the source's registry can mount (the same registry);
//! each blob is sent once per destination registry and run, and mounted elsewhere in it;
//! an index's child the destination has is complete. `--force` sends every blob, as the
//! run would.

use std::sync::Arc;

use anyhow::Result;
use futures_util::future::{BoxFuture, join_all};

use super::Executor;
use super::content::Copying;
use crate::ends::Ends;
use crate::model::manifest::{BlobRef, Content, Manifest};
use crate::model::reference::{Digest, ManifestRef};

impl Executor {
    /// The bytes a copy of `manifest` would send to the destination.
    pub(super) fn would_move<'a>(
        &'a self,
        copying: &'a Copying<'a>,
        manifest: Arc<Manifest>,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let sizes = match &manifest.content {
                Content::Image { blobs } => {
                    join_all(blobs.iter().map(|b| self.would_send(copying, b))).await
                }
                Content::Index { children } => {
                    join_all(
                        children
                            .iter()
                            .map(|child| self.would_move_child(copying, &child.digest)),
                    )
                    .await
                }
            };
            sizes.into_iter().sum()
        })
    }

    /// An index's child: nothing when the destination has it (see
    /// [`Executor::child_held`]), else what its content would move.
    async fn would_move_child(&self, copying: &Copying<'_>, digest: &Digest) -> Result<u64> {
        let reference = ManifestRef::Digest(digest.clone());
        if self.child_held(copying, &reference).await? {
            return Ok(0);
        }
        let Ends { src, src_repo, .. } = copying.ends;
        let child = self
            .source_manifest(src.as_ref(), src_repo, &reference)
            .await?;
        self.would_move(copying, child).await
    }

    /// A blob's size when the copy would send it, else 0.
    async fn would_send(&self, copying: &Copying<'_>, blob: &BlobRef) -> Result<u64> {
        let Ends {
            src, dst, dst_repo, ..
        } = copying.ends;
        let force = self.options.force;
        if !force && src.name() == dst.name() {
            return Ok(0);
        }
        if !force && !copying.fresh && dst.blob_exists(dst_repo, &blob.digest).await? {
            return Ok(0);
        }
        let first = self
            .would_send
            .lock()
            .map(|mut sent| sent.insert((dst.name().to_owned(), blob.digest.clone())))
            .unwrap_or(true);
        Ok(if first { blob.size } else { 0 })
    }
}
