//! What is attached to an image travels with it: cosign's `sha256-<hex>.sig`, `.att` and
//! `.sbom` tags, and OCI 1.1 referrers (from the referrers API, else the fallback tag
//! `sha256-<hex>`), each copied as its exact bytes so that signatures still verify at the
//! destination — and, recursively, what is attached to those (a signature on an attestation).
//!
//! Finding them is [`crate::attachments`]' walk (shared with `verify`); this is what the copy
//! does with each find. The referrers API is asked once per digest actually copied, and never
//! again at a registry that showed it has none; a destination is asked once per run whether
//! it has it (then it needs no fallback tag).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures_util::future::BoxFuture;

use super::Executor;
use super::content::Copying;
use crate::attachments::{At, Visitor, tag_of};
use crate::model::attached::{Attachment, Kind, Referrer, build_index, digest_tag, merge_index};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::{Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::stats::Stats;
use crate::store::Source;

/// What one copy asks of the attached step.
pub(super) struct Subjects {
    /// The image's digest and, for an index, its children's.
    pub digests: Vec<Digest>,
    /// The image was written (not unchanged): the referrers API is worth one request.
    pub ask_api: bool,
    /// Nothing is written (a dry run): what would be copied is listed.
    pub dry_run: bool,
}

impl Subjects {
    /// The image and its children. A rewritten index (`platforms=`, `--filter-by-os`) is no
    /// subject: what was attached to the original index names another digest.
    pub fn of(manifest: &Manifest, rewritten: bool, ask_api: bool, dry_run: bool) -> Subjects {
        let mut digests = Vec::new();
        if !rewritten {
            digests.push(manifest.digest.clone());
        }
        if let Content::Index { children } = &manifest.content {
            digests.extend(children.iter().map(|c| c.digest.clone()));
        }
        Subjects {
            digests,
            ask_api,
            dry_run,
        }
    }
}

impl Executor {
    /// What is attached to an image found unchanged, known by its digest alone. Its
    /// children (if it is an index) are known only from its manifest, read from the
    /// destination (no GET at the source, which Docker Hub counts) and only when the
    /// repository has attachment tags this digest does not explain.
    pub(super) async fn attached_unchanged(
        &self,
        copying: &Copying<'_>,
        digest: &Digest,
        dry_run: bool,
    ) -> Result<Vec<Attachment>> {
        if !self.options.attached {
            return Ok(Vec::new());
        }
        let Some(tags) = self
            .source_tags(copying.ends.src.as_ref(), copying.ends.src_repo)
            .await
        else {
            return Ok(Vec::new());
        };
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let own = digest_tag(digest);
        let mut subjects = Subjects {
            digests: vec![digest.clone()],
            ask_api: false,
            dry_run,
        };
        if tags.iter().any(|t| !t.starts_with(&own)) {
            let reference = ManifestRef::Digest(digest.clone());
            let manifest = copying
                .ends
                .dst
                .manifest(copying.ends.dst_repo, &reference)
                .await?;
            subjects = Subjects::of(&manifest, false, false, dry_run);
        }
        self.carry_attached(copying, &subjects).await
    }

    /// Carries everything attached to `subjects` from the copying's source repository to its
    /// destination repository, and says what was (or would be) written.
    pub(super) async fn carry_attached(
        &self,
        copying: &Copying<'_>,
        subjects: &Subjects,
    ) -> Result<Vec<Attachment>> {
        let mut out = Vec::new();
        self.walk(copying, subjects, &mut out).await?;
        Ok(out)
    }

    /// The source repository's attachment tags, once per run.
    pub(super) async fn source_tags(
        &self,
        src: &dyn Source,
        repository: &Repository,
    ) -> Option<Arc<HashSet<String>>> {
        self.attachments.source_tags(src, repository).await
    }

    /// Tags a wildcard listing already fetched: attachments are found in them without
    /// listing the repository again.
    pub fn know_tags(&self, repository: &Repository, tags: &[String]) {
        self.attachments.know_tags(repository, tags);
    }

    /// Everything attached to `subjects` at the source, carried by [`Carrier`].
    async fn walk(
        &self,
        copying: &Copying<'_>,
        subjects: &Subjects,
        out: &mut Vec<Attachment>,
    ) -> Result<()> {
        let at = At {
            src: copying.ends.src.as_ref(),
            src_repo: copying.ends.src_repo,
            ask_api: subjects.ask_api,
        };
        let mut carrier = Carrier {
            executor: self,
            copying,
            dry_run: subjects.dry_run,
            out,
        };
        self.attachments
            .walk(&at, &subjects.digests, &mut carrier)
            .await
    }

    /// A cosign tag made the same at the destination: `(digest, written)`, or `None` when the
    /// source no longer has it.
    async fn carry_tag(
        &self,
        copying: &Copying<'_>,
        tag: &str,
        dry_run: bool,
    ) -> Result<Option<(Digest, bool)>> {
        let reference = ManifestRef::Tag(tag_of(tag)?);
        let (theirs, ours) = futures_util::future::join(
            copying
                .ends
                .src
                .manifest_digest(copying.ends.src_repo, &reference),
            copying
                .ends
                .dst
                .manifest_digest(copying.ends.dst_repo, &reference),
        )
        .await;
        let Some(theirs) = theirs? else {
            return Ok(None);
        };
        if ours? == Some(theirs.clone()) {
            return Ok(Some((theirs, false)));
        }
        if dry_run {
            return Ok(Some((theirs, true)));
        }
        let manifest = Arc::new(
            copying
                .ends
                .src
                .manifest(copying.ends.src_repo, &reference)
                .await?,
        );
        self.write_attached(copying, &reference, manifest.clone())
            .await?;
        Ok(Some((manifest.digest.clone(), true)))
    }

    /// A referrer made present at the destination by digest; true when it was (or would be)
    /// written.
    async fn carry_digest(
        &self,
        copying: &Copying<'_>,
        digest: &Digest,
        dry_run: bool,
    ) -> Result<bool> {
        let reference = ManifestRef::Digest(digest.clone());
        if copying
            .ends
            .dst
            .manifest_digest(copying.ends.dst_repo, &reference)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        if dry_run {
            return Ok(true);
        }
        let manifest = self
            .source_manifest(copying.ends.src.as_ref(), copying.ends.src_repo, &reference)
            .await?;
        self.write_attached(copying, &reference, manifest).await?;
        Ok(true)
    }

    /// An attached manifest's content, then the manifest itself, as its exact bytes.
    async fn write_attached(
        &self,
        copying: &Copying<'_>,
        reference: &ManifestRef,
        manifest: Arc<Manifest>,
    ) -> Result<()> {
        self.ensure_content(copying, manifest.clone()).await?;
        copying
            .ends
            .dst
            .put_manifest(copying.ends.dst_repo, reference, &manifest)
            .await?;
        Stats::bump(&self.stats.attached_copied);
        tracing::info!(digest = %manifest.digest, to = %copying.ends.dst_repo, reference = %reference, "attached manifest copied");
        Ok(())
    }

    /// Makes the destination list the referrers of `subject`: a registry with the referrers
    /// API did so when they were written (their `subject` says so); one without gets the
    /// fallback index — the source's bytes when it had none, else its own index with what it
    /// lacked appended, so referrers only the destination has are kept.
    async fn publish_referrers(
        &self,
        copying: &Copying<'_>,
        subject: &Digest,
        referrers: &[Referrer],
        source_index: Option<&Manifest>,
    ) -> Result<()> {
        if self
            .attachments
            .has_referrers_api(copying.ends.dst.as_ref(), copying.ends.dst_repo, subject)
            .await?
        {
            return Ok(());
        }
        let tag = digest_tag(subject);
        let reference = ManifestRef::Tag(tag_of(&tag)?);
        let held = copying
            .ends
            .dst
            .manifest_digest(copying.ends.dst_repo, &reference)
            .await?;
        let bytes = match (held, source_index) {
            (Some(held), Some(index)) if held == index.digest => return Ok(()),
            (Some(_), _) => {
                let existing = copying
                    .ends
                    .dst
                    .manifest(copying.ends.dst_repo, &reference)
                    .await?;
                match merge_index(&existing.bytes, referrers).map_err(|e| {
                    failure(
                        ErrorKind::Permanent,
                        format!("{}:{tag}: {e:#}", copying.ends.dst_repo),
                    )
                })? {
                    Some(merged) => merged,
                    None => return Ok(()),
                }
            }
            (None, Some(index)) => index.bytes.clone(),
            (None, None) => build_index(referrers),
        };
        let digest = Digest::of(&bytes);
        let index = Manifest::parse(bytes, digest)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{e:#}")))?;
        if !matches!(index.content, Content::Index { .. }) {
            return Err(failure(
                ErrorKind::Permanent,
                format!("{}:{tag} is no index", copying.ends.src_repo),
            ));
        }
        copying
            .ends
            .dst
            .put_manifest(copying.ends.dst_repo, &reference, &index)
            .await?;
        tracing::info!(subject = %subject, to = %copying.ends.dst_repo, "referrers fallback index updated");
        Ok(())
    }
}

/// Adds an attachment once (a retried copy finds the same ones again).
fn push(out: &mut Vec<Attachment>, attachment: Attachment) {
    if !out.contains(&attachment) {
        out.push(attachment);
    }
}

/// The copy's side of the walk: each attachment found at the source is made the same at
/// the destination (or, in a dry run, listed as what would be), and recorded in `out`.
struct Carrier<'a, 'r> {
    executor: &'a Executor,
    copying: &'a Copying<'r>,
    dry_run: bool,
    out: &'a mut Vec<Attachment>,
}

impl Visitor for Carrier<'_, '_> {
    fn cosign_tag<'a>(
        &'a mut self,
        subject: &'a Digest,
        kind: Kind,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        Box::pin(async move {
            let carried = self
                .executor
                .carry_tag(self.copying, tag, self.dry_run)
                .await?;
            let Some((digest, copied)) = carried else {
                return Ok(None);
            };
            if copied {
                push(
                    self.out,
                    Attachment {
                        digest: digest.clone(),
                        kind,
                        artifact_type: None,
                        subject: subject.clone(),
                    },
                );
            }
            Ok(Some(digest))
        })
    }

    fn referrers<'a>(
        &'a mut self,
        subject: &'a Digest,
        referrers: &'a [Referrer],
        fallback_index: Option<&'a Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for referrer in referrers {
                if self
                    .executor
                    .carry_digest(self.copying, &referrer.digest, self.dry_run)
                    .await?
                {
                    push(
                        self.out,
                        Attachment {
                            digest: referrer.digest.clone(),
                            kind: Kind::Referrer,
                            artifact_type: referrer.artifact_type.clone(),
                            subject: subject.clone(),
                        },
                    );
                }
            }
            if !self.dry_run {
                self.executor
                    .publish_referrers(self.copying, subject, referrers, fallback_index)
                    .await?;
            }
            Ok(())
        })
    }
}
