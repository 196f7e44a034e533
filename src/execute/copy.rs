//! One destination tag: is it unchanged, would it be copied (dry run), or copy it — its
//! content first, the tag last. One attempt is a list of named steps ([`Executor::copy`]),
//! each returning what it found; the attempt returns an [`Attempt`], from which the outcome
//! is built.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use super::attached::Subjects;
use super::content::Copying;
use super::{Executor, SourceKey};
use crate::ends::Ends;
use crate::model::attached::Attachment;
use crate::model::failure::{ErrorKind, failure};
use crate::model::image::SourceImage;
use crate::model::manifest::Manifest;
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::plan::CopyJob;
use crate::report::outcome::Status;
use crate::store::{Destination, Source};

/// What one attempt at a copy came to, returned whole: the outcome is built from it.
pub(super) struct Attempt {
    /// The image's status, or why the attempt failed; `None` when the run was cancelled
    /// first (the copy was abandoned where it was, before its tag was written).
    pub end: Option<Result<Status>>,
    /// What the attempt learnt on its way, kept even when it failed or was cancelled.
    pub found: Found,
    /// Blob bytes this attempt moved (counted as each blob's transfer completes).
    pub bytes: u64,
}

/// What an attempt learnt, each when the step that learns it completed (`None`: not
/// reached).
#[derive(Default)]
pub(super) struct Found {
    /// The digest of the source's image (after any platform filter).
    pub source_digest: Option<Digest>,
    /// What the destination tag held when the copy decided to write it (`Some(None)`:
    /// nothing).
    pub previous: Option<Option<Digest>>,
    /// What is attached to the image, carried (or, in a dry run, would be).
    pub attached: Option<Vec<Attachment>>,
    /// In a dry run, the blob bytes the copy would send.
    pub would_move: Option<u64>,
}

/// What the destination holds for the tag, and what the source's digest is when it could be
/// known without the manifest: the first step's answer.
struct Decision {
    /// The source's digest from a HEAD (or pinned, or fetched earlier this run).
    known: Option<Digest>,
    /// What the destination tag holds now.
    current: Option<Digest>,
    /// The tag is never overwritten (the line's `immutable`, `--immutable-tags`).
    immutable: bool,
    /// The destination repository held no tag (see [`Copying::fresh`]).
    fresh: bool,
}

/// The source's image as it will be written.
struct Fetched {
    manifest: Arc<Manifest>,
    /// What the tag points at is what is signed: an index's own digest, before any filter.
    signed: Digest,
    /// A platform filter rewrote the index (its signatures do not apply to the result).
    rewritten: bool,
}

impl Executor {
    /// One attempt at one destination tag, as named steps: decide (compare digests), fetch
    /// the source's manifest, check the policy, place the content, carry what is attached,
    /// write the tag. Once the run is cancelled the attempt is abandoned where it is.
    pub(super) async fn copy(&self, job: &CopyJob) -> Attempt {
        let moved = AtomicU64::new(0);
        let mut found = Found::default();
        let end = tokio::select! {
            end = self.steps(job, &moved, &mut found) => Some(end),
            _ = self.cancel.cancelled() => None,
        };
        Attempt {
            end,
            found,
            bytes: moved.load(Ordering::Relaxed),
        }
    }

    /// The steps of [`Executor::copy`], in order, each returning what it found; what the
    /// outcome reports is noted in `found` as each step completes (kept by `copy`, so that
    /// an attempt cancelled mid-way still reports what it learnt).
    async fn steps(&self, job: &CopyJob, moved: &AtomicU64, found: &mut Found) -> Result<Status> {
        let src = self.stores.source(&job.source.repository).await?;
        let dst = self.stores.destination(&job.destination.repository).await?;
        let (force, dry_run) = (self.options.force, self.options.dry_run);
        let Decision {
            known,
            current,
            immutable,
            fresh,
        } = self.decide(&src, &dst, job).await?;
        let copying = Copying {
            ends: Ends {
                src: &src,
                dst: &dst,
                src_repo: &job.source.repository,
                dst_repo: &job.destination.repository,
            },
            moved,
            fresh,
        };
        if let Some(known) = &known
            && current.as_ref() == Some(known)
            && !force
        {
            found.source_digest = Some(known.clone());
            self.recheck_policy(&src, job, known).await?;
            // Signatures may have come after the image: what is attached is looked for on
            // every run, by the repository's tag list (no request when there is none).
            found.attached = Some(self.attached_unchanged(&copying, known, dry_run).await?);
            return Ok(Status::Unchanged);
        }
        // What min-age had to fetch to learn the source's digest serves the copy too.
        let held_back = if current.is_none() {
            self.hold_back(src.as_ref(), job, known.as_ref(), found)
                .await?
        } else {
            None
        };
        let fetched = match held_back {
            Some(fetched) => fetched,
            None => self.fetch(src.as_ref(), job).await?,
        };
        let manifest = &fetched.manifest;
        found.source_digest = Some(manifest.digest.clone());
        let subjects = |ask_api| Subjects::of(manifest, fetched.rewritten, ask_api, dry_run);
        if current.as_ref() == Some(&manifest.digest) && !force {
            self.recheck_policy(&src, job, &fetched.signed).await?;
            if self.options.attached {
                found.attached = Some(self.carry_attached(&copying, &subjects(false)).await?);
            }
            return Ok(Status::Unchanged);
        }
        // Before any write, and in a dry run too.
        self.check_policy(&src, &job.source, &fetched.signed)
            .await?;
        if immutable && let Some(held) = &current {
            // In a dry run too: the rehearsal fails where the run would.
            found.previous = Some(Some(held.clone()));
            return Err(refuse_overwrite(job, held, &manifest.digest));
        }
        found.previous = Some(current.clone());
        if dry_run {
            found.would_move = Some(self.would_move(&copying, manifest.clone()).await?);
        } else {
            self.ensure_content(&copying, manifest.clone()).await?;
        }
        // What is attached goes before the tag: an image whose signatures could not be
        // copied fails, and the next run completes it.
        if self.options.attached {
            found.attached = Some(self.carry_attached(&copying, &subjects(true)).await?);
        }
        if dry_run {
            return Ok(would(&current));
        }
        dst.put_manifest(
            &job.destination.repository,
            &job.destination.reference,
            manifest,
        )
        .await?;
        Ok(Status::Copied)
    }

    /// The first step: what the destination tag holds and, when that can settle the copy
    /// without the source's manifest, the source's digest.
    async fn decide(
        &self,
        src: &Arc<dyn Source>,
        dst: &Arc<dyn Destination>,
        job: &CopyJob,
    ) -> Result<Decision> {
        let key: SourceKey = (job.source.repository.clone(), job.source.reference());
        let shared = self.is_shared(&key);
        let (force, dry_run) = (self.options.force, self.options.dry_run);
        let immutable = job.rules.immutable
            || self.options.immutable_tags.iter().any(|p| {
                job.destination
                    .tag()
                    .is_some_and(|t| p.is_match(t.as_str()))
            });
        let (fresh, unlisted) = self.listed(dst.as_ref(), job, immutable).await;
        // --force outside a dry run overwrites without looking, unless the tag is immutable.
        let look = !force || dry_run || immutable;
        // The source's digest comes first, from a HEAD sent together with the destination's:
        // an unchanged tag then costs no manifest GET at the source (Docker Hub counts GETs
        // against its pull rate limit, not HEADs). Not for a tag the destination does not
        // hold (nothing to compare with), and not with --filter-by-os (the digest that counts
        // is the filtered manifest's, known only from its body). A tag that differs is fetched
        // and parsed, in a dry run too, so the rehearsal fails where the run would.
        let ask_destination = look && !fresh && !unlisted;
        let digest_first = ask_destination && self.platform_filter(job).is_none();
        // A tag, or the digest alone (push by digest): then asking the destination is a HEAD
        // by digest, and an image already there is unchanged.
        let (known, current) = futures_util::future::join(
            async {
                if digest_first {
                    self.source_digest(src.as_ref(), &job.source, &key, shared)
                        .await
                } else {
                    Ok(None)
                }
            },
            async {
                if ask_destination {
                    dst.manifest_digest(&job.destination.repository, &job.destination.reference)
                        .await
                } else {
                    Ok(None)
                }
            },
        )
        .await;
        Ok(Decision {
            known: known?,
            current: current?,
            immutable,
            fresh,
        })
    }

    /// `min-age`: a tag the destination does not hold yet, copied from a source tag seen at
    /// its digest for less than the line's `min-age` (else `--min-age`), waits: an error of
    /// kind [`ErrorKind::Waiting`] saying how long is left. A tag the destination holds is
    /// updated as ever (unless `immutable`); a source pinned by digest cannot move and never
    /// waits. The source's digest is noted, so that the ledger starts its clock. When only
    /// the manifest could tell the digest, it is returned, fetched, for the copy.
    async fn hold_back(
        &self,
        src: &dyn Source,
        job: &CopyJob,
        known: Option<&Digest>,
        found: &mut Found,
    ) -> Result<Option<Fetched>> {
        let Some(quarantine) = self.quarantine.get() else {
            return Ok(None);
        };
        let Some(min_age) = job.rules.min_age.or(quarantine.default) else {
            return Ok(None);
        };
        let (Some(tag), None) = (job.source.tag(), job.source.digest()) else {
            return Ok(None);
        };
        let key: SourceKey = (job.source.repository.clone(), job.source.reference());
        let mut fetched = None;
        let digest = match known {
            Some(d) => d.clone(),
            None => match self
                .source_digest(src, &job.source, &key, self.is_shared(&key))
                .await?
            {
                Some(d) => d,
                // The registry does not say: the manifest does.
                None => {
                    let manifest = self.fetch(src, job).await?;
                    let signed = manifest.signed.clone();
                    fetched = Some(manifest);
                    signed
                }
            },
        };
        found.source_digest = Some(digest.clone());
        let name = format!("{}:{tag}", job.source.repository);
        match quarantine.left(&name, &digest, min_age) {
            None => Ok(fetched),
            Some(left) => Err(failure(
                ErrorKind::Waiting,
                format!(
                    "new at the source: copied once {name} has been seen at {digest} for min-age {}; {} left",
                    crate::duration::human(min_age),
                    crate::duration::human(left)
                ),
            )),
        }
    }

    /// The source's manifest (once per run when other copies share it), filtered to the
    /// line's platforms if it names some.
    async fn fetch(&self, src: &dyn Source, job: &CopyJob) -> Result<Fetched> {
        let key: SourceKey = (job.source.repository.clone(), job.source.reference());
        let mut manifest = if self.is_shared(&key) {
            self.source_manifest(src, &key.0, &key.1).await?
        } else {
            Arc::new(src.manifest(&key.0, &key.1).await?)
        };
        let signed = manifest.digest.clone();
        let mut rewritten = false;
        if let Some((filter, named)) = &self.platform_filter(job)
            && let Some(filtered) = manifest.filter_platforms(filter, named)?
        {
            tracing::info!(source = %job.source, original = %manifest.digest, rewritten = %filtered.digest, "{named} rewrites the index: signatures of the original index do not apply to the rewritten one (its images' signatures do, and are copied)");
            manifest = Arc::new(filtered);
            rewritten = true;
        }
        Ok(Fetched {
            manifest,
            signed,
            rewritten,
        })
    }

    /// Whether other copies of this run name the same source (then its manifest is kept).
    fn is_shared(&self, key: &SourceKey) -> bool {
        self.shared_sources.get().is_some_and(|s| s.contains(key))
    }

    /// Whether the destination repository holds no tag at all (`fresh`: nothing in it can be
    /// unchanged, nor assumed present), and whether it does not list this job's tag
    /// (`unlisted`: it cannot be unchanged), from its tags listed once per repository (usually
    /// while the sources were listed). Neither for a push by digest (images pushed that way
    /// leave no tag) nor with `--force`; and an immutable tag is never taken as unlisted: a
    /// listing that missed it (a registry capping its pages) must not let it be overwritten.
    async fn listed(&self, dst: &dyn Destination, job: &CopyJob, immutable: bool) -> (bool, bool) {
        let Some(tag) = job.destination.tag().filter(|_| !self.options.force) else {
            return (false, false);
        };
        match self.held_tags(dst, &job.destination.repository).await {
            Some(held) => (held.is_empty(), !immutable && !held.contains(tag.as_str())),
            None => (false, false),
        }
    }

    /// The platforms to keep of an index, and how the filter was written (the line's
    /// `platforms=`, else `--filter-by-os`): [`CopyJob::platform_filter`], which `verify`
    /// shares.
    fn platform_filter(&self, job: &CopyJob) -> Option<(Arc<regex::Regex>, String)> {
        job.platform_filter(self.options.filter_by_os.as_ref())
    }

    /// The tags a destination repository held when the run first needed to know, listed
    /// once per repository. `None` when they cannot be listed: then every tag is asked for.
    pub(super) async fn held_tags(
        &self,
        dst: &dyn Destination,
        repository: &Repository,
    ) -> Option<Arc<HashSet<String>>> {
        let cell = self.held.cell(repository.clone());
        cell.get_or_init(|| async {
            match dst.held_tags(repository).await {
                Ok(tags) => tags.map(|t| Arc::new(t.into_iter().collect())),
                Err(e) => {
                    tracing::debug!(repository = %repository, error = %format!("{e:#}"), "the destination's tags could not be listed; every tag is asked for");
                    None
                }
            }
        })
        .await
        .clone()
    }

    /// The source's digest without its manifest: the pinned digest, a manifest this run
    /// already fetched, or a HEAD. `None` when the registry does not say (then the manifest
    /// is fetched, which also reports a missing one properly).
    async fn source_digest(
        &self,
        src: &dyn Source,
        source: &SourceImage,
        key: &SourceKey,
        shared: bool,
    ) -> Result<Option<Digest>> {
        if let Some(digest) = source.digest() {
            return Ok(Some(digest.clone()));
        }
        if shared && let Some(manifest) = self.sources.value(key) {
            return Ok(Some(manifest.digest.clone()));
        }
        src.manifest_digest(&key.0, &key.1).await
    }

    /// A source manifest, fetched once per run whatever the number of destinations.
    pub(super) async fn source_manifest(
        &self,
        src: &dyn Source,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Arc<Manifest>> {
        let cell = self.sources.cell((repository.clone(), reference.clone()));
        let manifest = cell
            .get_or_try_init(|| async { src.manifest(repository, reference).await.map(Arc::new) })
            .await?;
        Ok(manifest.clone())
    }
}

/// Why an immutable tag that holds `held` is not overwritten with `new` (in a dry run too).
fn refuse_overwrite(job: &CopyJob, held: &Digest, new: &Digest) -> anyhow::Error {
    failure(
        ErrorKind::Refused,
        format!(
            "{} already holds {held} but the source now has {new}; immutable tags are never overwritten",
            job.destination
        ),
    )
}

/// What a dry run reports for a tag that differs from its source: `current` is the
/// destination's digest for it, if it has one.
fn would(current: &Option<Digest>) -> Status {
    match current {
        Some(_) => Status::WouldOverwrite,
        None => Status::WouldCopy,
    }
}
