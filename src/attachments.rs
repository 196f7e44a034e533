//! Finding what is attached to an image at its source, one walk for every caller: cosign's
//! `sha256-<hex>.sig`, `.att` and `.sbom` tags, and OCI 1.1 referrers (from the referrers
//! API, else the fallback index under the tag `sha256-<hex>`), and recursively what is
//! attached to those (a signature on an attestation), at most [`MAX_DEPTH`] deep. `run`
//! carries what the walk finds (the copy algorithm), `verify` compares it (the audit); each
//! says what to do with a find through a [`Visitor`].
//!
//! Finding them must not cost the hourly no-op a request per tag: the source repository's
//! tag list (listed once per repository and run, or taken from the wildcard listing,
//! [`Discovery::know_tags`]) says which `sha256-*` tags exist; only those are asked for.
//! Whether a store has the referrers API is asked once per store and run.
//! Depends on [`crate::store`], [`crate::model`] and [`crate::memo`] only.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures_util::future::BoxFuture;

use crate::memo::Memo;
use crate::model::attached::{
    Kind, Referrer, cosign_tag, digest_tag, is_attachment_tag, parse_index,
};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::Manifest;
use crate::model::reference::{Digest, ManifestRef, Repository, Tag};
use crate::store::Source;

/// How deep attachments of attachments are followed (a signature on an attestation is 2).
pub const MAX_DEPTH: u8 = 4;

/// What a caller does with each attachment the walk finds at the source.
pub trait Visitor: Send {
    /// A cosign tag (`kind`) of `subject` that the source's tag list holds: the digest it
    /// holds at the source, or `None` when the source no longer has it. The walk follows
    /// what is attached to that digest in turn.
    fn cosign_tag<'a>(
        &'a mut self,
        subject: &'a Digest,
        kind: Kind,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<Digest>>>;

    /// The source's referrers of `subject` (never empty), and its fallback index when that
    /// is where they were listed. The walk follows what is attached to each.
    fn referrers<'a>(
        &'a mut self,
        subject: &'a Digest,
        referrers: &'a [Referrer],
        fallback_index: Option<&'a Manifest>,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Where the walk looks: a source repository, and whether its referrers API is worth a
/// request per subject (`ask_api`; without it only the fallback index is read).
pub struct At<'a> {
    pub src: &'a dyn Source,
    pub src_repo: &'a Repository,
    pub ask_api: bool,
}

/// What the walks of one run share: each source repository's attachment tags, and per store
/// whether it has the referrers API.
pub struct Discovery {
    /// Per repository, its attachment tags (`sha256-*`); `None` when it cannot be listed.
    tags: Memo<Repository, Option<Arc<HashSet<String>>>>,
    /// Per store name, whether it has the referrers API.
    referrers_api: Memo<String, bool>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new()
    }
}

impl Discovery {
    pub fn new() -> Discovery {
        Discovery {
            tags: Memo::new(),
            referrers_api: Memo::new(),
        }
    }

    /// Walks everything attached to `subjects` at `at`, telling `visitor` of each find.
    pub async fn walk(
        &self,
        at: &At<'_>,
        subjects: &[Digest],
        visitor: &mut dyn Visitor,
    ) -> Result<()> {
        let tags = self.source_tags(at.src, at.src_repo).await;
        for subject in subjects {
            self.attached_to(at, tags.as_deref(), subject, 0, visitor)
                .await?;
        }
        Ok(())
    }

    fn attached_to<'a>(
        &'a self,
        at: &'a At<'a>,
        tags: Option<&'a HashSet<String>>,
        subject: &'a Digest,
        depth: u8,
        visitor: &'a mut dyn Visitor,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut found: Vec<Digest> = Vec::new();
            for (kind, suffix) in Kind::COSIGN {
                let tag = cosign_tag(subject, suffix);
                if tags.is_some_and(|t| t.contains(&tag))
                    && let Some(digest) = visitor.cosign_tag(subject, kind, &tag).await?
                {
                    found.push(digest);
                }
            }
            let has_fallback = tags.is_some_and(|t| t.contains(&digest_tag(subject)));
            let (referrers, index) = self.source_referrers(at, subject, has_fallback).await?;
            if !referrers.is_empty() {
                visitor
                    .referrers(subject, &referrers, index.as_ref())
                    .await?;
                found.extend(referrers.iter().map(|r| r.digest.clone()));
            }
            if depth < MAX_DEPTH {
                for digest in &found {
                    self.attached_to(at, tags, digest, depth + 1, &mut *visitor)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The source's referrers of `subject`: its referrers API's answer (when asked), else its
    /// fallback index (when the tag list shows one), returned too.
    async fn source_referrers(
        &self,
        at: &At<'_>,
        subject: &Digest,
        has_fallback: bool,
    ) -> Result<(Vec<Referrer>, Option<Manifest>)> {
        let listed = if at.ask_api {
            self.referrers(at.src, at.src_repo, subject).await?
        } else {
            None
        };
        if let Some(listed) = listed {
            return Ok((listed, None));
        }
        if !has_fallback {
            return Ok((Vec::new(), None));
        }
        let tag = digest_tag(subject);
        let reference = ManifestRef::Tag(tag_of(&tag)?);
        let index = at.src.manifest(at.src_repo, &reference).await?;
        let list = parse_index(&index.bytes).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{}:{tag}: {e:#}", at.src_repo),
            )
        })?;
        Ok((list, Some(index)))
    }

    /// A repository's attachment tags, listed once per run; `None` when they cannot be listed
    /// (nothing attached by tag is found there then, which is logged, not an error: the image
    /// itself can still be copied or checked).
    pub async fn source_tags(
        &self,
        src: &dyn Source,
        repository: &Repository,
    ) -> Option<Arc<HashSet<String>>> {
        let cell = self.tags.cell(repository.clone());
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

    /// Tags a wildcard listing already fetched, remembered so the repository is not listed
    /// again.
    pub fn know_tags(&self, repository: &Repository, tags: &[String]) {
        let cell = self.tags.cell(repository.clone());
        let set = tags
            .iter()
            .filter(|t| is_attachment_tag(t))
            .cloned()
            .collect();
        let _ = cell.set(Some(Arc::new(set)));
    }

    /// The referrers API's answer, unless `store` showed that it has none (remembered per
    /// store name). The first caller to ask a store finds out for all: the others wait for
    /// its answer rather than each sending a request that a registry without the API
    /// answers 404.
    pub async fn referrers(
        &self,
        store: &dyn Source,
        repository: &Repository,
        subject: &Digest,
    ) -> Result<Option<Vec<Referrer>>> {
        let cell = self.referrers_api.cell(store.name().to_owned());
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

    /// Whether `store` has the referrers API, asked once per store and run (a destination
    /// that has it lists what was written there by its `subject`, and is not asked again).
    pub async fn has_referrers_api(
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
}

/// A tag name the walk made (from a digest), as a [`Tag`].
pub fn tag_of(text: &str) -> Result<Tag> {
    Tag::parse(text).map_err(|e| failure(ErrorKind::Permanent, format!("tag {text:?}: {e}")))
}
