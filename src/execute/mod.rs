//! Carrying out a plan: for each destination tag, every blob, then child manifests, then the
//! manifest, then the tag — so a failure never leaves a tag pointing at an incomplete image.
//!
//! Work shared between copies is done once: each source manifest is fetched once, each
//! image's content is ensured once per destination repository, and each blob is uploaded
//! once per destination store (other repositories mount it).
//!
//! The copy algorithm talks only to the [`crate::store`] seam, never to HTTP: the
//! registry client is one implementation, the unit tests use an in-memory one.
//! [`copy`] decides per tag whether to copy; [`content`] makes an image's blobs and child
//! manifests present. Image-level retries happen here, in [`Executor::run_job`].

mod attached;
mod checked;
mod content;
mod copy;
#[cfg(test)]
pub(crate) mod memory;
mod prefetch;
mod rehearsal;
mod signed;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
pub(crate) mod tests_attached;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::attachments::Discovery;
use crate::memo::Memo;
use crate::model::failure::{ErrorKind, Failure};
use crate::model::manifest::Manifest;
use crate::model::reference::{Digest, Host, ManifestRef, Repository, TagPattern};
use crate::plan::{CopyJob, Plan};
use crate::report::outcome::{Outcome, Status};
use crate::retry::{self, RetryPolicy};
use crate::stats::Stats;
use crate::store::Stores;

#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    pub dry_run: bool,
    pub force: bool,
    pub max_registry: usize,
    pub filter_by_os: Option<regex::Regex>,
    /// Further attempts after a copy failed transiently (requests are retried inside the
    /// stores first; permanent failures are never retried).
    pub retries: u32,
    /// The policy of one request, which a blob copy as a whole follows too.
    pub request_policy: RetryPolicy,
    /// Destination tags never overwritten (`--immutable-tags`), besides the lines marked
    /// `immutable`.
    pub immutable_tags: Vec<TagPattern>,
    /// Copy signatures, attestations, SBOMs and referrers with each image (`--attached`).
    pub attached: bool,
    /// `--policy`: only images whose signatures meet it are copied.
    pub policy: Option<Arc<crate::policy::Policy>>,
}

/// Copies of one registry worked on at once. Requests are bounded per registry anyway; this
/// bounds the memory of copies started and waiting (a 10,000-tag run).
const MAX_JOBS_IN_FLIGHT: usize = 256;

/// A source image as the run asks for it.
type SourceKey = (Repository, ManifestRef);

pub struct Executor {
    stores: Arc<dyn Stores>,
    options: ExecuteOptions,
    stats: Arc<Stats>,
    sources: Memo<SourceKey, Arc<Manifest>>,
    /// Sources named by more than one copy: only their manifests are worth keeping (a run of
    /// 10,000 wildcard tags would otherwise keep 10,000 manifests it never reads again).
    shared_sources: std::sync::OnceLock<HashSet<SourceKey>>,
    /// No registry is both read from and written to by the plan's copies between two
    /// registries: then a blob transfer can take the destination's slot after the source's
    /// (see `content.rs`) without two transfers ever waiting for each other's slots.
    one_way: std::sync::OnceLock<bool>,
    content: Memo<(Repository, Digest), ()>,
    /// Where each blob was uploaded in each destination store this run.
    uploads: Memo<(String, Digest), Repository>,
    blobs_in_repo: Memo<(Repository, Digest), ()>,
    /// In a dry run, the blobs counted as sent to each destination store (see
    /// [`rehearsal`]).
    would_send: std::sync::Mutex<HashSet<(String, Digest)>>,
    /// Per destination repository, the tags it held when the run first asked (`None` when
    /// its store cannot list them); see [`Executor::held_tags`].
    held: Memo<Repository, Option<Arc<HashSet<String>>>>,
    /// Per source repository, its `sha256-*` tags (where attachments are found), and per
    /// store name whether it has the referrers API (asked once, by the first copy).
    attachments: Discovery,
    /// `min-age`: when source tags were first seen (set once the ledger is read).
    quarantine: std::sync::OnceLock<crate::ledger::model::Quarantine>,
    cancel: CancellationToken,
}

impl Executor {
    pub fn new(
        stores: Arc<dyn Stores>,
        options: ExecuteOptions,
        stats: Arc<Stats>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            stores,
            options,
            stats,
            sources: Memo::new(),
            shared_sources: std::sync::OnceLock::new(),
            one_way: std::sync::OnceLock::new(),
            content: Memo::new(),
            uploads: Memo::new(),
            blobs_in_repo: Memo::new(),
            would_send: std::sync::Mutex::default(),
            held: Memo::new(),
            attachments: Discovery::new(),
            quarantine: std::sync::OnceLock::new(),
            cancel,
        }
    }

    /// Holds new source tags back by `min-age` (a line's, else the quarantine's default)
    /// for the rest of the run: set before [`Self::execute`], once.
    pub fn quarantine(&self, quarantine: crate::ledger::model::Quarantine) {
        let _ = self.quarantine.set(quarantine);
    }

    /// Runs every batch; at most `max_registry` destination registries at once, each copy a
    /// task of its own so that a panic fails one image, not the run.
    pub async fn execute(self: &Arc<Self>, plan: Plan) -> Vec<Outcome> {
        self.stats
            .images_planned
            .store(plan.job_count() as u64, Ordering::Relaxed);
        let mut uses: HashMap<SourceKey, usize> = HashMap::new();
        for job in plan.batches.iter().flat_map(|b| &b.jobs) {
            *uses
                .entry((job.source.repository.clone(), job.source.reference()))
                .or_default() += 1;
        }
        let shared = uses
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect();
        let _ = self.shared_sources.set(shared);
        let _ = self.one_way.set(one_way(&plan));
        let mut by_registry: BTreeMap<Host, Vec<CopyJob>> = BTreeMap::new();
        for batch in plan.batches {
            by_registry
                .entry(batch.repository.registry().clone())
                .or_default()
                .extend(batch.jobs);
        }
        let gate = Arc::new(Semaphore::new(self.options.max_registry.max(1)));
        let mut groups = JoinSet::new();
        for jobs in by_registry.into_values() {
            let this = self.clone();
            let gate = gate.clone();
            groups.spawn(async move {
                let _turn = gate.acquire_owned().await;
                this.run_jobs(jobs).await
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = groups.join_next().await {
            match done {
                Ok(mut o) => outcomes.append(&mut o),
                Err(e) => {
                    Stats::bump(&self.stats.lost_workers);
                    tracing::error!(error = %e, "a registry's worker stopped unexpectedly; its images are unaccounted for")
                }
            }
        }
        outcomes
    }

    /// The copies a destination lacks first, then the others (unchanged or moved), each in
    /// plan order: where a source's pull quota runs out, it went to the tags missing
    /// altogether before the tags that moved. The destination's tags were listed at the start
    /// of the run (see prefetch); a repository that cannot be listed keeps its order.
    async fn lacking_first(&self, jobs: Vec<CopyJob>) -> Vec<CopyJob> {
        if self.options.force {
            return jobs;
        }
        let mut held: HashMap<Repository, Option<Arc<HashSet<String>>>> = HashMap::new();
        let mut keyed = Vec::with_capacity(jobs.len());
        for job in jobs {
            let repository = &job.destination.repository;
            if !held.contains_key(repository) {
                let tags = match self.stores.destination(repository).await {
                    Ok(dst) => self.held_tags(dst.as_ref(), repository).await,
                    Err(_) => None,
                };
                held.insert(repository.clone(), tags);
            }
            let lacks = match (job.destination.tag(), held.get(repository)) {
                (Some(tag), Some(Some(tags))) => !tags.contains(tag.as_str()),
                _ => false,
            };
            keyed.push((!lacks, job));
        }
        // Stable: false (lacking) before true, plan order within each.
        keyed.sort_by_key(|(has, _)| *has);
        keyed.into_iter().map(|(_, job)| job).collect()
    }

    async fn run_jobs(self: Arc<Self>, jobs: Vec<CopyJob>) -> Vec<Outcome> {
        let jobs = self.lacking_first(jobs).await;
        let mut set = JoinSet::new();
        let mut pending = HashMap::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let slots = Arc::new(Semaphore::new(MAX_JOBS_IN_FLIGHT));
        for job in jobs {
            // Taken before the task exists: a waiting copy would otherwise hold its whole
            // future's memory (kilobytes each, 10,000 copies in an hourly no-op).
            let Ok(slot) = slots.clone().acquire_owned().await else {
                unreachable!("the semaphore is never closed")
            };
            // A finished task keeps its memory until it is joined: reap as we go.
            while let Some(done) = set.try_join_next_with_id() {
                outcomes.extend(Self::outcome_of(done, &mut pending));
            }
            let this = self.clone();
            let task_job = job.clone();
            let handle = set.spawn(async move {
                let _slot = slot;
                this.rationed(task_job).await
            });
            pending.insert(handle.id(), job);
        }
        while let Some(done) = set.join_next_with_id().await {
            outcomes.extend(Self::outcome_of(done, &mut pending));
        }
        outcomes
    }

    /// A joined copy's outcome; a copy that panicked failed.
    fn outcome_of(
        done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
        pending: &mut HashMap<tokio::task::Id, CopyJob>,
    ) -> Option<Outcome> {
        match done {
            Ok((id, outcome)) => {
                pending.remove(&id);
                Some(outcome)
            }
            Err(e) => {
                // Every task's job is recorded as it is spawned.
                let mut outcome = Outcome::new(pending.remove(&e.id())?);
                outcome.status = Status::Failed;
                outcome.error = Some(Failure {
                    kind: ErrorKind::Permanent,
                    message: format!("internal error: {e}"),
                });
                Some(outcome)
            }
        }
    }

    /// One copy with its retries, under what its source rations per image (a pull quota
    /// spent on whole images, see [`crate::store::Source::ration`]).
    async fn rationed(&self, job: CopyJob) -> Outcome {
        let mut outcome = None;
        let copy = Box::pin(async { outcome = Some(self.run_job(job.clone()).await) });
        match self.stores.source(&job.source.repository).await {
            Ok(source) => source.ration(copy).await,
            // The copy fails on it itself, saying why.
            Err(_) => copy.await,
        }
        outcome.unwrap_or_else(|| {
            let mut outcome = Outcome::new(job);
            outcome.status = Status::Failed;
            outcome.error = Some(Failure {
                kind: ErrorKind::Permanent,
                message: "internal error: the store did not run the copy".to_owned(),
            });
            outcome
        })
    }

    /// One copy with its retries. Once the run is cancelled nothing new starts, and an
    /// in-flight copy is abandoned before its tag is written.
    async fn run_job(&self, job: CopyJob) -> Outcome {
        let started = Instant::now();
        let policy = RetryPolicy::images(self.options.retries);
        let budget = policy.budget();
        // Each attempt adds what it learnt; the lock is never held across an await.
        let outcome = std::sync::Mutex::new(Outcome::new(job.clone()));
        let attempt = || async {
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            let attempt = self.copy(&job).await;
            let mut outcome = outcome.lock().unwrap_or_else(|e| e.into_inner());
            outcome.attempts += 1;
            outcome.bytes += attempt.bytes;
            learnt(&mut outcome, attempt.found);
            match attempt.end {
                None => outcome.status = Status::Cancelled,
                Some(Ok(status)) => {
                    outcome.status = status;
                    outcome.error = None;
                }
                Some(Err(e)) => {
                    let failure = Failure::of(&e);
                    outcome.status = Status::after_failure(failure.kind);
                    outcome.error = Some(failure);
                    return Err(e);
                }
            }
            Ok(())
        };
        // Only what may go differently next time is tried again: a missing tag, a refused
        // credential, a manifest the registry rejects or corrupt bytes fail now.
        let destination = &job.destination;
        let _ = retry::drive(
            &policy,
            &budget,
            &self.stats.image_retries,
            Some(&self.cancel),
            attempt,
            retry::when_transient,
            |retry, wait, e| {
                let said = format!(
                    "copy of {destination} failed: {}, {}",
                    Failure::of(e).message,
                    retry::next_try(retry, &budget, wait)
                );
                tracing::info!(%destination, attempt = retry + 1, "{said}");
                self.stats.waiting_on(said, wait);
            },
        )
        .await;
        let mut outcome = outcome.into_inner().unwrap_or_else(|e| e.into_inner());
        outcome.duration = started.elapsed();
        log_outcome(&outcome);
        Stats::bump(&self.stats.images_done);
        if outcome.status.fails_the_run() {
            Stats::bump(&self.stats.images_failed);
        }
        outcome
    }
}

/// What an attempt learnt, into the outcome: each fact replaces what an earlier attempt
/// learnt of it, and a fact the attempt did not reach keeps the earlier one.
fn learnt(outcome: &mut Outcome, found: copy::Found) {
    if let Some(digest) = found.source_digest {
        outcome.source_digest = Some(digest);
    }
    if let Some(previous) = found.previous {
        outcome.previous = previous;
    }
    if let Some(attached) = found.attached {
        outcome.attached = attached;
    }
    if let Some(bytes) = found.would_move {
        outcome.would_move = Some(bytes);
    }
}

fn log_outcome(outcome: &Outcome) {
    let job = &outcome.job;
    match (&outcome.status, outcome.error_text()) {
        (Status::Failed, Some(e)) => {
            tracing::warn!(source = %job.source, destination = %job.destination, origin = %job.origin, error = %e, "image failed")
        }
        (Status::Refused, Some(e)) => {
            tracing::warn!(source = %job.source, destination = %job.destination, origin = %job.origin, error = %e, "image refused")
        }
        // The hourly no-op would log every tag: what did not change is a debug detail.
        (Status::Unchanged, _) => {
            tracing::debug!(source = %job.source, destination = %job.destination, "image unchanged")
        }
        (status, _) => {
            tracing::info!(source = %job.source, destination = %job.destination, status = status.label(), "image done")
        }
    }
}

/// Whether no registry is both a source and a destination of the plan's copies between two
/// registries (copies within one registry take both their slots at once and wait for
/// nothing while holding one).
fn one_way(plan: &Plan) -> bool {
    let (mut read, mut written) = (HashSet::new(), HashSet::new());
    for job in plan.batches.iter().flat_map(|b| &b.jobs) {
        let (from, to) = (
            job.source.repository.registry(),
            job.destination.repository.registry(),
        );
        if from != to {
            read.insert(from.clone());
            written.insert(to.clone());
        }
    }
    read.is_disjoint(&written)
}
