//! Carrying out a plan: for each destination tag, every blob, then child manifests, then the
//! manifest, then the tag — so a failure never leaves a tag pointing at an incomplete image.
//!
//! Work shared between copies is done once: each source manifest is fetched once, each
//! image's content is ensured once per destination repository, and each blob is uploaded
//! once per destination registry (other repositories mount it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::future::join_all;
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::manifest::{BlobRef, Content, Manifest};
use crate::mapping::SourceImage;
use crate::plan::{CopyJob, Plan};
use crate::progress::Progress;
use crate::reference::{Digest, Repository};
use crate::registry::{
    ErrorKind, Mount, Registries, RegistryClient, UploadSession, error_kind, failure,
};

#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    pub dry_run: bool,
    pub force: bool,
    pub max_registry: usize,
    pub filter_by_os: Option<regex::Regex>,
    /// Further attempts after a copy failed transiently (requests are retried inside
    /// [`crate::registry`] first; permanent failures are never retried).
    pub retries: u32,
}

/// Copies of one registry worked on at once. Requests are bounded per registry anyway; this
/// bounds the memory of copies started and waiting (a 10,000-tag run).
const MAX_JOBS_IN_FLIGHT: usize = 256;

/// The first wait before retrying a failed copy; doubled each attempt.
/// Longer than a registry found unreachable is remembered, so a retry really asks again.
const RETRY_BACKOFF: Duration = Duration::from_secs(crate::auth::UNREACHABLE_FOR.as_secs() + 1);
/// The longest wait between two attempts of one image.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Copied,
    Unchanged,
    Failed,
    WouldCopy,
    WouldOverwrite,
    /// Not done: the run was interrupted first.
    Cancelled,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Copied => "copied",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::WouldCopy => "would copy",
            Status::WouldOverwrite => "would overwrite",
            Status::Cancelled => "cancelled",
        }
    }
}

/// What happened to one destination tag.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub job: CopyJob,
    pub status: Status,
    pub source_digest: Option<Digest>,
    /// What the destination tag pointed at before, when it differed.
    pub previous: Option<Digest>,
    pub error: Option<String>,
    pub duration: Duration,
    /// Blob bytes this copy uploaded (blobs found, mounted or uploaded by another copy: 0).
    pub bytes: u64,
    pub attempts: u32,
}

#[derive(Debug, Default)]
pub struct BlobStats {
    pub uploaded: AtomicU64,
    pub mounted: AtomicU64,
    pub present: AtomicU64,
}

/// One cell per key: the first caller computes, the others wait for its result.
struct Memo<K, V> {
    cells: std::sync::Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash, V> Memo<K, V> {
    fn new() -> Self {
        Self {
            cells: std::sync::Mutex::new(HashMap::new()),
        }
    }
    fn cell(&self, key: K) -> Arc<OnceCell<V>> {
        let mut cells = match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cells.entry(key).or_default().clone()
    }

    /// The value, if some caller has computed it already.
    fn value(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        let cells = match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cells.get(key)?.get().cloned()
    }
}

pub struct Executor {
    registries: Registries,
    options: ExecuteOptions,
    sources: Memo<(Repository, String), Arc<Manifest>>,
    /// Sources named by more than one copy: only their manifests are worth keeping (a run of
    /// 10,000 wildcard tags would otherwise keep 10,000 manifests it never reads again).
    shared_sources: std::sync::OnceLock<HashSet<(Repository, String)>>,
    content: Memo<(Repository, Digest), ()>,
    uploads: Memo<(String, Digest), Repository>,
    blobs_in_repo: Memo<(Repository, Digest), ()>,
    fresh_repos: Memo<Repository, bool>,
    pub blobs: BlobStats,
    /// Retries made, over all copies.
    pub retries: AtomicUsize,
    /// Registry workers that stopped without reporting their images (a bug): the run fails.
    pub lost_workers: AtomicUsize,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

/// Where one copy reads and writes, and its byte counter.
struct Route<'a> {
    src: &'a Arc<RegistryClient>,
    dst: &'a Arc<RegistryClient>,
    src_repo: &'a Repository,
    dst_repo: &'a Repository,
    moved: &'a AtomicU64,
    /// The destination repository had no tag when this run first wrote to it: whatever is in
    /// it was put there by this run (and is tracked), so nothing needs asking for.
    fresh: bool,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Executor {
    pub fn new(
        registries: Registries,
        options: ExecuteOptions,
        progress: Arc<Progress>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            registries,
            options,
            sources: Memo::new(),
            shared_sources: std::sync::OnceLock::new(),
            content: Memo::new(),
            uploads: Memo::new(),
            blobs_in_repo: Memo::new(),
            fresh_repos: Memo::new(),
            blobs: BlobStats::default(),
            retries: AtomicUsize::new(0),
            lost_workers: AtomicUsize::new(0),
            progress,
            cancel,
        }
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Runs every batch; at most `max_registry` destination registries at once, each copy a
    /// task of its own so that a panic fails one image, not the run.
    pub async fn execute(self: &Arc<Self>, plan: Plan) -> Vec<Outcome> {
        let mut uses: HashMap<(Repository, String), usize> = HashMap::new();
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
        let mut by_registry: BTreeMap<String, Vec<CopyJob>> = BTreeMap::new();
        for batch in plan.batches {
            by_registry
                .entry(batch.repository.registry().to_owned())
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
                    self.lost_workers.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "a registry's worker stopped unexpectedly; its images are unaccounted for")
                }
            }
        }
        outcomes
    }

    async fn run_jobs(self: Arc<Self>, jobs: Vec<CopyJob>) -> Vec<Outcome> {
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
                this.run_job(task_job).await
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
                outcome.error = Some(format!("internal error: {e}"));
                Some(outcome)
            }
        }
    }

    /// One copy with its retries. Once the run is cancelled nothing new starts, and an
    /// in-flight copy is abandoned before its tag is written.
    async fn run_job(&self, job: CopyJob) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::new(job);
        let mut backoff = RETRY_BACKOFF;
        while !self.cancel.is_cancelled() {
            outcome.attempts += 1;
            let moved = AtomicU64::new(0);
            let attempt = tokio::select! {
                result = self.copy(&outcome.job, &mut outcome.source_digest, &mut outcome.previous, &moved) => Some(result),
                _ = self.cancel.cancelled() => None,
            };
            outcome.bytes += moved.load(Ordering::Relaxed);
            match attempt {
                None => {
                    outcome.status = Status::Cancelled;
                    break;
                }
                Some(Ok(status)) => {
                    outcome.status = status;
                    outcome.error = None;
                    break;
                }
                Some(Err(e)) => {
                    outcome.status = Status::Failed;
                    outcome.error = Some(format!("{e:#}"));
                    // Only what may go differently next time: a missing tag, a refused
                    // credential, a manifest the registry rejects or corrupt bytes fail now.
                    let kind = error_kind(&e);
                    if outcome.attempts > self.options.retries || kind != Some(ErrorKind::Transient)
                    {
                        break;
                    }
                    tracing::info!(destination = %outcome.job.destination, attempt = outcome.attempts, error = %format!("{e:#}"), "copy failed; retrying in {backoff:?}");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                }
            }
        }
        outcome.duration = started.elapsed();
        let job = &outcome.job;
        match (&outcome.status, &outcome.error) {
            (Status::Failed, Some(e)) => {
                tracing::warn!(source = %job.source, destination = %job.destination, origin = %job.origin, error = %e, "image failed")
            }
            // The hourly no-op would log every tag: what did not change is a debug detail.
            (Status::Unchanged, _) => {
                tracing::debug!(source = %job.source, destination = %job.destination, "image unchanged")
            }
            (status, _) => {
                tracing::info!(source = %job.source, destination = %job.destination, status = status.label(), "image done")
            }
        }
        self.progress.image_done(outcome.status == Status::Failed);
        outcome
    }

    async fn copy(
        &self,
        job: &CopyJob,
        source_digest: &mut Option<Digest>,
        previous: &mut Option<Digest>,
        moved: &AtomicU64,
    ) -> Result<Status> {
        let src = self
            .registries
            .client(job.source.repository.registry())
            .await?;
        let dst = self
            .registries
            .client(job.destination.repository.registry())
            .await?;
        let reference = job.source.reference();
        let key = (job.source.repository.clone(), reference);
        let shared = self.shared_sources.get().is_some_and(|s| s.contains(&key));
        let dst_path = job.destination.repository.path();
        let tag = job.destination.tag.as_str();
        let (force, dry_run) = (self.options.force, self.options.dry_run);
        // A repository with no tag yet has no tag to compare with either.
        let fresh = !force && self.is_fresh(&dst, &job.destination.repository).await;
        // --force outside a dry run overwrites without looking.
        let look = !force || dry_run;
        // The source's digest comes first, from a HEAD sent together with the destination's:
        // an unchanged tag then costs no manifest GET at the source (Docker Hub counts GETs
        // against its pull rate limit, not HEADs). Not into a fresh repository (nothing can
        // be unchanged there), and not with --filter-by-os (the digest that counts is the
        // filtered manifest's, known only from its body). A tag that differs is fetched and
        // parsed, in a dry run too, so the rehearsal fails where the run would.
        let digest_first = look && !fresh && self.options.filter_by_os.is_none();
        let (known, current) = futures_util::future::join(
            async {
                if digest_first {
                    self.source_digest(&src, &job.source, &key, shared).await
                } else {
                    Ok(None)
                }
            },
            async {
                if look && !fresh {
                    dst.manifest_digest(dst_path, tag).await
                } else {
                    Ok(None)
                }
            },
        )
        .await;
        let (known, current) = (known?, current?);
        if let Some(known) = &known
            && current.as_ref() == Some(known)
            && !force
        {
            *source_digest = Some(known.clone());
            return Ok(Status::Unchanged);
        }
        let mut manifest = if shared {
            self.source_manifest(&src, &key.0, &key.1).await?
        } else {
            Arc::new(src.pull_manifest(key.0.path(), &key.1).await?)
        };
        if let Some(filter) = &self.options.filter_by_os
            && let Some(filtered) = manifest.filter_platforms(filter)?
        {
            manifest = Arc::new(filtered);
        }
        *source_digest = Some(manifest.digest.clone());
        if current.as_ref() == Some(&manifest.digest) && !force {
            return Ok(Status::Unchanged);
        }
        *previous = current.clone();
        if dry_run {
            return Ok(would(&current));
        }
        let route = Route {
            src: &src,
            dst: &dst,
            src_repo: &job.source.repository,
            dst_repo: &job.destination.repository,
            moved,
            fresh,
        };
        self.ensure_content(&route, manifest.clone()).await?;
        dst.push_manifest(dst_path, tag, &manifest).await?;
        Ok(Status::Copied)
    }

    /// Whether the destination repository was empty when the run first needed to know; asked
    /// once per repository. Not knowing counts as not empty.
    async fn is_fresh(&self, dst: &RegistryClient, repository: &Repository) -> bool {
        let cell = self.fresh_repos.cell(repository.clone());
        *cell
            .get_or_init(|| async {
                dst.repository_is_empty(repository.path())
                    .await
                    .unwrap_or(false)
            })
            .await
    }

    /// The source's digest without its manifest: the pinned digest, a manifest this run
    /// already fetched, or a HEAD. `None` when the registry does not say (then the manifest
    /// is fetched, which also reports a missing one properly).
    async fn source_digest(
        &self,
        src: &RegistryClient,
        source: &SourceImage,
        key: &(Repository, String),
        shared: bool,
    ) -> Result<Option<Digest>> {
        if let Some(digest) = source.digest() {
            return Ok(Some(digest.clone()));
        }
        if shared && let Some(manifest) = self.sources.value(key) {
            return Ok(Some(manifest.digest.clone()));
        }
        src.manifest_digest(key.0.path(), &key.1).await
    }

    /// A source manifest, fetched once per run whatever the number of destinations.
    async fn source_manifest(
        &self,
        src: &Arc<RegistryClient>,
        repository: &Repository,
        reference: &str,
    ) -> Result<Arc<Manifest>> {
        let cell = self
            .sources
            .cell((repository.clone(), reference.to_owned()));
        let manifest = cell
            .get_or_try_init(|| async {
                src.pull_manifest(repository.path(), reference)
                    .await
                    .map(Arc::new)
            })
            .await?;
        Ok(manifest.clone())
    }

    /// Everything `manifest` references exists in the destination repository: blobs, and for
    /// an index its children (pushed by digest). Done once per repository and manifest.
    fn ensure_content<'a>(
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
        let child = self
            .source_manifest(route.src, route.src_repo, digest.as_str())
            .await?;
        // A registry accepts a manifest only when everything it references is there, so a
        // child that exists is complete.
        if !self.options.force
            && !route.fresh
            && route
                .dst
                .manifest_digest(route.dst_repo.path(), digest.as_str())
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.ensure_content(route, child.clone()).await?;
        route
            .dst
            .push_manifest(route.dst_repo.path(), digest.as_str(), &child)
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
            .cell((dst.host().to_owned(), blob.digest.clone()));
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
            match dst.blob_exists(dst_repo.path(), &blob.digest).await {
                Ok(false) => {}
                Ok(true) => {
                    self.give_back(route, session).await;
                    return self.placed(&self.blobs.present);
                }
                Err(e) => {
                    self.give_back(route, session).await;
                    return Err(e);
                }
            }
        }
        if session.is_none()
            && !force
            && src.host() == dst.host()
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
            return self.placed(&self.blobs.uploaded);
        }
        let mut session = take();
        if landed == dst_repo && !force {
            self.give_back(route, session).await;
            return self.placed(&self.blobs.present);
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
        self.placed(&self.blobs.uploaded)
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
        let answer = route
            .dst
            .mount_blob(route.dst_repo.path(), from.path(), &blob.digest)
            .await?;
        Ok(match answer {
            Mount::Mounted => {
                self.blobs.mounted.fetch_add(1, Ordering::Relaxed);
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
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Cancels an upload session a mount opened that turned out not to be needed.
    async fn give_back(&self, route: &Route<'_>, session: Option<UploadSession>) {
        if let Some(session) = session {
            route
                .dst
                .cancel_session(route.dst_repo.path(), session)
                .await;
        }
    }

    /// Streams one blob from the source into `session` (if a mount opened one) or a new
    /// upload session.
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
        let _permits = if src.host() == dst.host() {
            (dst.permit(2).await, None)
        } else if src.host() < dst.host() {
            let a = src.permit(1).await;
            (a, Some(dst.permit(1).await))
        } else {
            let b = dst.permit(1).await;
            (b, Some(src.permit(1).await))
        };
        let _active = self.progress.transfer();
        // A copy that breaks off transiently (the destination's PUT cut, the source gone
        // for longer than its resumes) starts again with a new upload session; the bytes
        // of each try are hashed as they pass, so only a whole, matching blob commits.
        let network = dst.network();
        let mut session = session;
        let mut tries = 0;
        loop {
            tries += 1;
            tracing::debug!(digest = %blob.digest, size = blob.size, from = %src_repo, to = %dst_repo, "uploading blob");
            let stream = src.pull_blob(src_repo.path(), &blob.digest, blob.size);
            let result = dst
                .push_blob(
                    dst_repo.path(),
                    &blob.digest,
                    blob.size,
                    session.take(),
                    stream,
                )
                .await;
            let e = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            let kind = error_kind(&e).unwrap_or(ErrorKind::Permanent);
            if kind != ErrorKind::Transient || !network.may_retry(tries) {
                // Keep the kind: the job's retries look at it.
                return Err(failure(kind, format!("{e:#} (copying from {src_repo})")));
            }
            let wait = network.wait(tries - 1, None);
            dst.note_retry();
            tracing::info!(digest = %blob.digest, from = %src_repo, to = %dst_repo, error = %format!("{e:#}"), "blob copy failed; starting it again in {wait:?}");
            tokio::time::sleep(wait).await;
        }
        moved.fetch_add(blob.size, Ordering::Relaxed);
        Ok(())
    }
}

/// What a dry run reports for a tag that differs from its source: `current` is the
/// destination's digest for it, if it has one.
fn would(current: &Option<Digest>) -> Status {
    match current {
        Some(_) => Status::WouldOverwrite,
        None => Status::WouldCopy,
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

impl Outcome {
    fn new(job: CopyJob) -> Outcome {
        Outcome {
            job,
            status: Status::Cancelled,
            source_digest: None,
            previous: None,
            error: None,
            duration: Duration::ZERO,
            bytes: 0,
            attempts: 0,
        }
    }
}
