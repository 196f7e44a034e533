//! `verify`'s checks over the store seam, read-only: nothing here writes.
//!
//! - Walking a repository ([`walk_repository`]): every tag points at a complete image.
//! - Comparing a plan with its sources ([`Auditor`]): for each image a mapping names, the
//!   destination holds the source's digest (or, after a `platforms=` / `--filter-by-os`
//!   rewrite, the rewritten index's), everything it references exists, and everything
//!   attached to it at the source ([`attached`]) is at the destination with the same digest.
//!
//! The plan is `run`'s own (parse, expand, list, plan), so `verify` checks exactly what
//! `run` would copy; the source's tag list (one request per repository, reused from the
//! wildcard listing) says which attachment tags exist, as it does for `run`.

mod attached;
#[cfg(test)]
mod tests;
mod walk;

use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;

use self::walk::Walk;
use crate::attachments::Discovery;
use crate::model::manifest::{Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository, Tag};
use crate::plan::{CopyJob, Plan};
use crate::report::verified::{ImageCheck, Problem, ProblemKind, RepositoryCheck};
use crate::store::{Source, Stores};

/// Images compared at once. Requests are bounded per registry anyway; this bounds the
/// memory of checks started and waiting.
const MAX_IN_FLIGHT: usize = 256;

/// What `verify` is told about the plan beyond the mapping files.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// `--filter-by-os`, as `run` was given it: the destination's index is the filtered one.
    pub filter_by_os: Option<regex::Regex>,
    /// Compare what is attached (`--attached`, on by default).
    pub attached: bool,
}

/// Compares the images of a plan with their sources.
pub struct Auditor {
    stores: Arc<dyn Stores>,
    options: AuditOptions,
    /// Per source repository, its attachment tags; per store name, whether it has the
    /// referrers API.
    attachments: Discovery,
}

/// The two ends of one comparison (only read: the destination is a source too).
type Ends<'a> = crate::ends::Ends<'a, dyn Source, dyn Source>;

impl Auditor {
    pub fn new(stores: Arc<dyn Stores>, options: AuditOptions) -> Auditor {
        Auditor {
            stores,
            options,
            attachments: Discovery::new(),
        }
    }

    /// Tags a wildcard listing already fetched: attachments are found in them without
    /// listing the repository again.
    pub fn know_tags(&self, repository: &Repository, tags: &[String]) {
        self.attachments.know_tags(repository, tags);
    }

    /// Every image of `plan`, compared; in the plan's order.
    pub async fn audit(&self, plan: Plan) -> Vec<ImageCheck> {
        let jobs: Vec<CopyJob> = plan.batches.into_iter().flat_map(|b| b.jobs).collect();
        futures_util::stream::iter(jobs)
            .map(|job| self.image(job))
            .buffered(MAX_IN_FLIGHT)
            .collect()
            .await
    }

    async fn image(&self, job: CopyJob) -> ImageCheck {
        let mut check = ImageCheck {
            destination: job.destination.clone(),
            source: job.source.clone(),
            origin: job.origin.clone(),
            source_digest: None,
            destination_digest: None,
            rewritten: None,
            attached: Vec::new(),
            problems: Vec::new(),
        };
        if let Err(e) = self.compare(&job, &mut check).await {
            check.problems.push(Problem {
                tag: job.destination.short(),
                kind: ProblemKind::Unchecked,
                message: format!("{e:#}"),
                attachment: None,
            });
        }
        if check.problems.is_empty() {
            tracing::debug!(destination = %job.destination, "as at the source");
        } else {
            tracing::info!(destination = %job.destination, problems = check.problems.len(), "not as at the source");
        }
        check
    }

    /// The destination's image read (by the reference `run` wrote, one request that gives
    /// its digest and content), the source's digest asked (a HEAD, none when pinned), then
    /// completeness and attachments.
    async fn compare(&self, job: &CopyJob, check: &mut ImageCheck) -> Result<()> {
        let src_repo = &job.source.repository;
        let dst_repo = &job.destination.repository;
        let src = self.stores.source(src_repo).await?;
        let dst: Arc<dyn Source> = self.stores.destination(dst_repo).await?;
        let tag = job.destination.short();
        let ends = Ends {
            src: src.as_ref(),
            dst: dst.as_ref(),
            src_repo,
            dst_repo,
        };
        let mut walk = Walk::new(dst.as_ref(), dst_repo, &tag);
        let (theirs, held) = futures_util::future::join(
            async {
                match job.source.digest() {
                    Some(pinned) => Ok(Some(pinned.clone())),
                    None => src.manifest_digest(src_repo, &job.source.reference()).await,
                }
            },
            walk.from(&job.destination.reference),
        )
        .await;
        let theirs = theirs?;
        let walked = walk.problems;
        check.source_digest = theirs.clone();
        check.destination_digest = held.as_ref().map(|m| m.digest.clone());
        let problem = |kind, message| Problem {
            tag: tag.clone(),
            kind,
            message,
            attachment: None,
        };
        let Some(held) = held else {
            if walked.iter().any(|p| p.kind == ProblemKind::Missing) {
                let source = match &theirs {
                    Some(digest) => format!("the source {} has {digest}", job.source),
                    None => format!("nor has the source {}", job.source),
                };
                check.problems.push(problem(
                    ProblemKind::Missing,
                    format!("{} does not exist ({source})", job.destination),
                ));
            } else {
                // Unreadable: the registry's words.
                check.problems.extend(walked);
            }
            return Ok(());
        };
        let Some(theirs) = theirs else {
            check.problems.push(problem(
                ProblemKind::SourceMissing,
                format!(
                    "the source {} no longer exists (the destination holds {})",
                    job.source, held.digest
                ),
            ));
            return Ok(());
        };
        let mut rewritten = false;
        if theirs != held.digest {
            match self
                .expected_rewrite(job, src.as_ref(), &theirs, &held.digest)
                .await?
            {
                Ok(named) => {
                    check.rewritten = Some(named);
                    rewritten = true;
                }
                Err(expected) => {
                    check.problems.push(problem(
                        ProblemKind::Moved,
                        format!(
                            "moved: the source {} is now {expected}, the destination holds {} (the next run updates it)",
                            job.source, held.digest
                        ),
                    ));
                    return Ok(());
                }
            }
        }
        check.problems.extend(walked);
        if self.options.attached {
            let subjects = subjects_of(&held, rewritten);
            self.compare_attached(&ends, &subjects, check).await?;
        }
        Ok(())
    }

    /// For a source (`theirs`) and destination whose digests differ: `Ok(how)` when the destination
    /// holds exactly the source's index rewritten by the job's platform filter, else
    /// `Err(digest)`, the digest the destination should hold.
    async fn expected_rewrite(
        &self,
        job: &CopyJob,
        src: &dyn Source,
        theirs: &Digest,
        held: &Digest,
    ) -> Result<Result<String, Digest>> {
        let Some((filter, named)) = job.platform_filter(self.options.filter_by_os.as_ref()) else {
            return Ok(Err(theirs.clone()));
        };
        let manifest = src
            .manifest(&job.source.repository, &job.source.reference())
            .await?;
        Ok(match manifest.filter_platforms(&filter, &named)? {
            Some(filtered) if filtered.digest == *held => Ok(named),
            Some(filtered) => Err(filtered.digest),
            None => Err(manifest.digest),
        })
    }
}

/// What attachments may name: the image and, for an index, its children. A rewritten
/// index is no subject: what was attached to the original names another digest.
fn subjects_of(manifest: &Manifest, rewritten: bool) -> Vec<Digest> {
    let mut digests = Vec::new();
    if !rewritten {
        digests.push(manifest.digest.clone());
    }
    if let Content::Index { children } = &manifest.content {
        digests.extend(children.iter().map(|c| c.digest.clone()));
    }
    digests
}

/// Walks every tag of `repository` (a destination, registry or directory): each must point
/// at a complete image.
pub async fn walk_repository(stores: &dyn Stores, repository: &Repository) -> RepositoryCheck {
    let mut check = RepositoryCheck {
        repository: repository.to_string(),
        tags: 0,
        attached: 0,
        problems: Vec::new(),
        error: None,
    };
    let listed = async {
        let client = stores.source(repository).await?;
        let tags = client.tags(repository).await?;
        Ok::<_, anyhow::Error>((client, tags))
    };
    let (client, tags) = match listed.await {
        Ok(listed) => listed,
        Err(e) => {
            check.error = Some(format!("{e:#}"));
            return check;
        }
    };
    check.tags = tags.len();
    let walks = futures_util::future::join_all(tags.iter().map(|tag| {
        let client = client.clone();
        async move {
            let Ok(parsed) = Tag::parse(tag) else {
                return vec![Problem {
                    tag: tag.clone(),
                    kind: ProblemKind::Unchecked,
                    message: "the registry lists an invalid tag".to_owned(),
                    attachment: None,
                }];
            };
            let mut walk = Walk::new(client.as_ref(), repository, tag);
            walk.from(&ManifestRef::Tag(parsed)).await;
            walk.problems
        }
    }))
    .await;
    check.problems = walks.into_iter().flatten().collect();
    check
}
