//! What is attached to an image travels with it: cosign's `sha256-<hex>.sig`, `.att` and
//! `.sbom` tags, and OCI 1.1 referrers (from the referrers API, else the fallback tag
//! `sha256-<hex>`), each copied as its exact bytes so that signatures still verify at the
//! destination — and, recursively, what is attached to those (a signature on an attestation).
//!
//! Finding them must not cost the hourly no-op a request per tag: the source repository's tag
//! list (listed once per repository and run, or taken from the wildcard listing) says which
//! `sha256-*` tags exist; only those are asked for. The referrers API is asked once per
//! digest actually copied, and never again at a registry that showed it has none; a
//! destination is asked once per run whether it has it (then it needs no fallback tag).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures_util::future::BoxFuture;

use super::Executor;
use super::content::Route;
use super::memo::Memo;
use crate::model::attached::{
    Attachment, Kind, Referrer, build_index, cosign_tag, digest_tag, is_attachment_tag,
    merge_index, parse_index,
};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::{Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository, Tag};
use crate::stats::Stats;
use crate::store::Source;

/// How deep attachments of attachments are followed (a signature on an attestation is 2).
const MAX_DEPTH: u8 = 4;

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
        route: &Route<'_>,
        digest: &Digest,
        dry_run: bool,
    ) -> Result<Vec<Attachment>> {
        if !self.options.attached {
            return Ok(Vec::new());
        }
        let Some(tags) = self.source_tags(route.src.as_ref(), route.src_repo).await else {
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
            let manifest = route.dst.manifest(route.dst_repo, &reference).await?;
            subjects = Subjects::of(&manifest, false, false, dry_run);
        }
        self.carry_attached(route, &subjects).await
    }

    /// Carries everything attached to `subjects` from the route's source repository to its
    /// destination repository, and says what was (or would be) written.
    pub(super) async fn carry_attached(
        &self,
        route: &Route<'_>,
        subjects: &Subjects,
    ) -> Result<Vec<Attachment>> {
        let tags = self.source_tags(route.src.as_ref(), route.src_repo).await;
        let mut out = Vec::new();
        for subject in &subjects.digests {
            self.attached_to(route, tags.as_deref(), subject, subjects, 0, &mut out)
                .await?;
        }
        Ok(out)
    }

    /// The source repository's attachment tags, once per run (see [`attachment_tags_once`]).
    pub(super) async fn source_tags(
        &self,
        src: &dyn Source,
        repository: &Repository,
    ) -> Option<Arc<HashSet<String>>> {
        attachment_tags_once(&self.source_tags, src, repository).await
    }

    /// Tags a wildcard listing already fetched: attachments are found in them without
    /// listing the repository again.
    pub fn know_tags(&self, repository: &Repository, tags: &[String]) {
        know_attachment_tags(&self.source_tags, repository, tags);
    }

    fn attached_to<'a>(
        &'a self,
        route: &'a Route<'a>,
        tags: Option<&'a HashSet<String>>,
        subject: &'a Digest,
        how: &'a Subjects,
        depth: u8,
        out: &'a mut Vec<Attachment>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut found: Vec<Digest> = Vec::new();
            for (kind, suffix) in Kind::COSIGN {
                let tag = cosign_tag(subject, suffix);
                if !tags.is_some_and(|t| t.contains(&tag)) {
                    continue;
                }
                if let Some((digest, copied)) = self.carry_tag(route, &tag, how.dry_run).await? {
                    if copied {
                        push(
                            out,
                            Attachment {
                                digest: digest.clone(),
                                kind,
                                artifact_type: None,
                                subject: subject.clone(),
                            },
                        );
                    }
                    found.push(digest);
                }
            }
            let fallback_tag = digest_tag(subject);
            let has_fallback = tags.is_some_and(|t| t.contains(&fallback_tag));
            let listed = if how.ask_api {
                self.api_referrers(route.src.as_ref(), route.src_repo, subject)
                    .await?
            } else {
                None
            };
            let (referrers, index) = match listed {
                Some(list) => (list, None),
                None if has_fallback => {
                    let reference = ManifestRef::Tag(tag_of(&fallback_tag)?);
                    let index = route.src.manifest(route.src_repo, &reference).await?;
                    let list = parse_index(&index.bytes).map_err(|e| {
                        failure(
                            ErrorKind::Permanent,
                            format!("{}:{fallback_tag}: {e:#}", route.src_repo),
                        )
                    })?;
                    (list, Some(index))
                }
                None => (Vec::new(), None),
            };
            for referrer in &referrers {
                if self
                    .carry_digest(route, &referrer.digest, how.dry_run)
                    .await?
                {
                    push(
                        out,
                        Attachment {
                            digest: referrer.digest.clone(),
                            kind: Kind::Referrer,
                            artifact_type: referrer.artifact_type.clone(),
                            subject: subject.clone(),
                        },
                    );
                }
                found.push(referrer.digest.clone());
            }
            if !referrers.is_empty() && !how.dry_run {
                self.publish_referrers(route, subject, &referrers, index.as_ref())
                    .await?;
            }
            if depth < MAX_DEPTH {
                for digest in found {
                    self.attached_to(route, tags, &digest, how, depth + 1, out)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The referrers API's answer, unless `store` showed that it has none (see
    /// [`referrers_once`]).
    async fn api_referrers(
        &self,
        store: &dyn Source,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Referrer>>> {
        referrers_once(&self.referrers_api, store, repository, subject).await
    }

    /// Whether `store` has the referrers API, asked once per registry and run: a destination
    /// that has it lists what was written there by its `subject`, and is not asked again.
    async fn has_referrers_api(
        &self,
        store: &dyn Source,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<bool> {
        let cell = self.referrers_api.cell(store.name().to_owned());
        let has = cell
            .get_or_try_init(|| async {
                let has = store.referrers(repository, subject).await?.is_some();
                if !has {
                    tracing::debug!(
                        registry = store.name(),
                        "no referrers API: writing the fallback tags"
                    );
                }
                Ok::<_, anyhow::Error>(has)
            })
            .await?;
        Ok(*has)
    }

    /// A cosign tag made the same at the destination: `(digest, written)`, or `None` when the
    /// source no longer has it.
    async fn carry_tag(
        &self,
        route: &Route<'_>,
        tag: &str,
        dry_run: bool,
    ) -> Result<Option<(Digest, bool)>> {
        let reference = ManifestRef::Tag(tag_of(tag)?);
        let (theirs, ours) = futures_util::future::join(
            route.src.manifest_digest(route.src_repo, &reference),
            route.dst.manifest_digest(route.dst_repo, &reference),
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
        let manifest = Arc::new(route.src.manifest(route.src_repo, &reference).await?);
        self.write_attached(route, &reference, manifest.clone())
            .await?;
        Ok(Some((manifest.digest.clone(), true)))
    }

    /// A referrer made present at the destination by digest; true when it was (or would be)
    /// written.
    async fn carry_digest(
        &self,
        route: &Route<'_>,
        digest: &Digest,
        dry_run: bool,
    ) -> Result<bool> {
        let reference = ManifestRef::Digest(digest.clone());
        if route
            .dst
            .manifest_digest(route.dst_repo, &reference)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        if dry_run {
            return Ok(true);
        }
        let manifest = self
            .source_manifest(route.src.as_ref(), route.src_repo, &reference)
            .await?;
        self.write_attached(route, &reference, manifest).await?;
        Ok(true)
    }

    /// An attached manifest's content, then the manifest itself, as its exact bytes.
    async fn write_attached(
        &self,
        route: &Route<'_>,
        reference: &ManifestRef,
        manifest: Arc<Manifest>,
    ) -> Result<()> {
        self.ensure_content(route, manifest.clone()).await?;
        route
            .dst
            .put_manifest(route.dst_repo, reference, &manifest)
            .await?;
        Stats::bump(&self.stats.attached_copied);
        tracing::info!(digest = %manifest.digest, to = %route.dst_repo, reference = %reference, "attached manifest copied");
        Ok(())
    }

    /// Makes the destination list the referrers of `subject`: a registry with the referrers
    /// API did so when they were written (their `subject` says so); one without gets the
    /// fallback index — the source's bytes when it had none, else its own index with what it
    /// lacked appended, so referrers only the destination has are kept.
    async fn publish_referrers(
        &self,
        route: &Route<'_>,
        subject: &Digest,
        referrers: &[Referrer],
        source_index: Option<&Manifest>,
    ) -> Result<()> {
        if self
            .has_referrers_api(route.dst.as_ref(), route.dst_repo, subject)
            .await?
        {
            return Ok(());
        }
        let tag = digest_tag(subject);
        let reference = ManifestRef::Tag(tag_of(&tag)?);
        let held = route
            .dst
            .manifest_digest(route.dst_repo, &reference)
            .await?;
        let bytes = match (held, source_index) {
            (Some(held), Some(index)) if held == index.digest => return Ok(()),
            (Some(_), _) => {
                let existing = route.dst.manifest(route.dst_repo, &reference).await?;
                match merge_index(&existing.bytes, referrers).map_err(|e| {
                    failure(
                        ErrorKind::Permanent,
                        format!("{}:{tag}: {e:#}", route.dst_repo),
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
                format!("{}:{tag} is no index", route.src_repo),
            ));
        }
        route
            .dst
            .put_manifest(route.dst_repo, &reference, &index)
            .await?;
        tracing::info!(subject = %subject, to = %route.dst_repo, "referrers fallback index updated");
        Ok(())
    }
}

/// Adds an attachment once (a retried copy finds the same ones again).
fn push(out: &mut Vec<Attachment>, attachment: Attachment) {
    if !out.contains(&attachment) {
        out.push(attachment);
    }
}

pub(crate) fn tag_of(text: &str) -> Result<Tag> {
    Tag::parse(text).map_err(|e| failure(ErrorKind::Permanent, format!("tag {text:?}: {e}")))
}

/// Per repository, its attachment tags (`sha256-*`); `None` when it cannot be listed.
pub(crate) type AttachmentTags = Memo<Repository, Option<Arc<HashSet<String>>>>;

/// A repository's attachment tags, listed once per run; `None` when they cannot be listed
/// (nothing attached by tag is found there then, which is logged, not an error: the image
/// itself can still be copied or checked).
pub(crate) async fn attachment_tags_once(
    memo: &AttachmentTags,
    src: &dyn Source,
    repository: &Repository,
) -> Option<Arc<HashSet<String>>> {
    let cell = memo.cell(repository.clone());
    cell.get_or_init(|| async {
        match src.tags(repository).await {
            Ok(tags) => Some(Arc::new(
                tags.into_iter().filter(|t| is_attachment_tag(t)).collect(),
            )),
            Err(e) => {
                tracing::warn!(repository = %repository, error = %format!("{e:#}"), "cannot list tags: signatures and other attachments by tag are not looked for in this repository");
                None
            }
        }
    })
    .await
    .clone()
}

/// Tags a wildcard listing already fetched, remembered so the repository is not listed again.
pub(crate) fn know_attachment_tags(
    memo: &AttachmentTags,
    repository: &Repository,
    tags: &[String],
) {
    let cell = memo.cell(repository.clone());
    let set = tags
        .iter()
        .filter(|t| is_attachment_tag(t))
        .cloned()
        .collect();
    let _ = cell.set(Some(Arc::new(set)));
}

/// The referrers API's answer, unless `store` showed that it has none (remembered in `memo`
/// per store name). The first caller to ask a store finds out for all: the others wait for
/// its answer rather than each sending a request that a registry without the API answers 404.
pub(crate) async fn referrers_once(
    memo: &Memo<String, bool>,
    store: &dyn Source,
    repository: &Repository,
    subject: &Digest,
) -> Result<Option<Vec<Referrer>>> {
    let cell = memo.cell(store.name().to_owned());
    if cell.get() == Some(&false) {
        return Ok(None);
    }
    let mut first = None;
    let has_api = *cell
        .get_or_try_init(|| async {
            let listed = store.referrers(repository, subject).await?;
            let has = listed.is_some();
            if !has {
                tracing::debug!(
                    registry = store.name(),
                    "no referrers API: using the fallback tags"
                );
            }
            first = Some(listed);
            Ok::<_, anyhow::Error>(has)
        })
        .await?;
    match first {
        Some(listed) => Ok(listed),
        None if has_api => store.referrers(repository, subject).await,
        None => Ok(None),
    }
}
