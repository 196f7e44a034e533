//! Carrying out a plan: for each destination tag, every blob, then child manifests, then the
//! manifest, then the tag — so a failure never leaves a tag pointing at an incomplete image.
//!
//! Work shared between copies is done once: each source manifest is fetched once, each
//! image's content is ensured once per destination repository, and each blob is uploaded
//! once per destination registry (other repositories mount it).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use futures_util::future::try_join_all;
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::manifest::{BlobRef, Content, Manifest};
use crate::plan::{CopyJob, Plan};
use crate::reference::{Digest, Repository};
use crate::registry::{Registries, RegistryClient};

#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    pub dry_run: bool,
    pub force: bool,
    pub max_registry: usize,
    pub filter_by_os: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Copied,
    Unchanged,
    Failed,
    WouldCopy,
    WouldOverwrite,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Copied => "copied",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::WouldCopy => "would copy",
            Status::WouldOverwrite => "would overwrite",
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
}

pub struct Executor {
    registries: Registries,
    options: ExecuteOptions,
    sources: Memo<(Repository, String), Arc<Manifest>>,
    content: Memo<(Repository, Digest), ()>,
    uploads: Memo<(String, Digest), Repository>,
    blobs_in_repo: Memo<(Repository, Digest), ()>,
    pub blobs: BlobStats,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Executor {
    pub fn new(registries: Registries, options: ExecuteOptions) -> Self {
        Self {
            registries,
            options,
            sources: Memo::new(),
            content: Memo::new(),
            uploads: Memo::new(),
            blobs_in_repo: Memo::new(),
            blobs: BlobStats::default(),
        }
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// Runs every batch; at most `max_registry` destination registries at once, each copy a
    /// task of its own so that a panic fails one image, not the run.
    pub async fn execute(self: &Arc<Self>, plan: Plan) -> Vec<Outcome> {
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
                Err(e) => tracing::error!(error = %e, "a registry's worker stopped unexpectedly"),
            }
        }
        outcomes
    }

    async fn run_jobs(self: Arc<Self>, jobs: Vec<CopyJob>) -> Vec<Outcome> {
        let mut set = JoinSet::new();
        let mut pending = HashMap::new();
        for job in jobs {
            let this = self.clone();
            let task_job = job.clone();
            let handle = set.spawn(async move { this.run_job(task_job).await });
            pending.insert(handle.id(), job);
        }
        let mut outcomes = Vec::with_capacity(pending.len());
        while let Some(done) = set.join_next_with_id().await {
            match done {
                Ok((id, outcome)) => {
                    pending.remove(&id);
                    outcomes.push(outcome);
                }
                Err(e) => {
                    if let Some(job) = pending.remove(&e.id()) {
                        outcomes.push(Outcome {
                            job,
                            status: Status::Failed,
                            source_digest: None,
                            previous: None,
                            error: Some(format!("internal error: {e}")),
                            duration: Duration::ZERO,
                        });
                    }
                }
            }
        }
        outcomes
    }

    async fn run_job(&self, job: CopyJob) -> Outcome {
        let started = Instant::now();
        let mut source_digest = None;
        let mut previous = None;
        let result = self.copy(&job, &mut source_digest, &mut previous).await;
        let (status, error) = match result {
            Ok(status) => (status, None),
            Err(e) => (Status::Failed, Some(format!("{e:#}"))),
        };
        match &error {
            None => {
                tracing::info!(source = %job.source, destination = %job.destination, status = status.label(), "image done")
            }
            Some(e) => {
                tracing::warn!(source = %job.source, destination = %job.destination, origin = %job.origin, error = %e, "image failed")
            }
        }
        Outcome {
            job,
            status,
            source_digest,
            previous,
            error,
            duration: started.elapsed(),
        }
    }

    async fn copy(
        &self,
        job: &CopyJob,
        source_digest: &mut Option<Digest>,
        previous: &mut Option<Digest>,
    ) -> Result<Status> {
        let src = self
            .registries
            .client(job.source.repository.registry())
            .await?;
        let dst = self
            .registries
            .client(job.destination.repository.registry())
            .await?;
        let mut manifest = self
            .source_manifest(&src, &job.source.repository, &job.source.reference())
            .await?;
        if let Some(filter) = &self.options.filter_by_os
            && let Some(filtered) = manifest.filter_platforms(filter)?
        {
            manifest = Arc::new(filtered);
        }
        *source_digest = Some(manifest.digest.clone());
        let dst_path = job.destination.repository.path();
        let tag = job.destination.tag.as_str();
        let current = if self.options.force && !self.options.dry_run {
            None
        } else {
            dst.manifest_digest(dst_path, tag).await?
        };
        if current.as_ref() == Some(&manifest.digest) && !self.options.force {
            return Ok(Status::Unchanged);
        }
        *previous = current.clone();
        if self.options.dry_run {
            return Ok(if current.is_some() {
                Status::WouldOverwrite
            } else {
                Status::WouldCopy
            });
        }
        self.ensure_content(
            &src,
            &dst,
            &job.source.repository,
            &job.destination.repository,
            manifest.clone(),
        )
        .await?;
        dst.push_manifest(dst_path, tag, &manifest).await?;
        Ok(Status::Copied)
    }

    /// A source manifest, fetched once per run whatever the number of destinations.
    async fn source_manifest(
        &self,
        src: &RegistryClient,
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

    /// Everything `manifest` references exists in `dst_repo`: blobs, and for an index its
    /// children (pushed by digest). Done once per repository and manifest.
    fn ensure_content<'a>(
        &'a self,
        src: &'a Arc<RegistryClient>,
        dst: &'a Arc<RegistryClient>,
        src_repo: &'a Repository,
        dst_repo: &'a Repository,
        manifest: Arc<Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let cell = self
                .content
                .cell((dst_repo.clone(), manifest.digest.clone()));
            cell.get_or_try_init(|| async {
                match &manifest.content {
                    Content::Image { blobs } => {
                        try_join_all(
                            blobs
                                .iter()
                                .map(|b| self.ensure_blob(src, dst, src_repo, dst_repo, b)),
                        )
                        .await?;
                    }
                    Content::Index { children } => {
                        try_join_all(children.iter().map(|child| async move {
                            let child = self
                                .source_manifest(src, src_repo, child.digest.as_str())
                                .await?;
                            if !self.options.force
                                && dst
                                    .manifest_digest(dst_repo.path(), child.digest.as_str())
                                    .await?
                                    .is_some()
                            {
                                return Ok::<_, anyhow::Error>(());
                            }
                            self.ensure_content(src, dst, src_repo, dst_repo, child.clone())
                                .await?;
                            dst.push_manifest(dst_repo.path(), child.digest.as_str(), &child)
                                .await
                        }))
                        .await?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
            .await?;
            Ok(())
        })
    }

    /// One blob into `dst_repo`, handled once per repository however many images share it.
    async fn ensure_blob(
        &self,
        src: &Arc<RegistryClient>,
        dst: &Arc<RegistryClient>,
        src_repo: &Repository,
        dst_repo: &Repository,
        blob: &BlobRef,
    ) -> Result<()> {
        let cell = self
            .blobs_in_repo
            .cell((dst_repo.clone(), blob.digest.clone()));
        cell.get_or_try_init(|| self.place_blob(src, dst, src_repo, dst_repo, blob))
            .await?;
        Ok(())
    }

    /// Skip if there, mount if this registry has it elsewhere, else stream it from the
    /// source — once per destination registry per run.
    async fn place_blob(
        &self,
        src: &Arc<RegistryClient>,
        dst: &Arc<RegistryClient>,
        src_repo: &Repository,
        dst_repo: &Repository,
        blob: &BlobRef,
    ) -> Result<()> {
        let force = self.options.force;
        if !force && dst.blob_exists(dst_repo.path(), &blob.digest).await? {
            self.blobs.present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if !force
            && src.host() == dst.host()
            && dst
                .mount_blob(dst_repo.path(), src_repo.path(), &blob.digest)
                .await?
        {
            self.blobs.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let cell = self
            .uploads
            .cell((dst.host().to_owned(), blob.digest.clone()));
        let uploaded_here = AtomicBool::new(false);
        let landed = cell
            .get_or_try_init(|| async {
                self.transfer(src, dst, src_repo, dst_repo, blob).await?;
                uploaded_here.store(true, Ordering::Relaxed);
                Ok::<_, anyhow::Error>(dst_repo.clone())
            })
            .await?;
        if uploaded_here.load(Ordering::Relaxed) {
            self.blobs.uploaded.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if landed == dst_repo && !force {
            self.blobs.present.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if landed != dst_repo
            && dst
                .mount_blob(dst_repo.path(), landed.path(), &blob.digest)
                .await?
        {
            self.blobs.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.transfer(src, dst, src_repo, dst_repo, blob).await?;
        self.blobs.uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Streams one blob from source to destination, holding a request slot on each (taken in
    /// host order, two at once within one registry, so copies cannot deadlock).
    async fn transfer(
        &self,
        src: &RegistryClient,
        dst: &RegistryClient,
        src_repo: &Repository,
        dst_repo: &Repository,
        blob: &BlobRef,
    ) -> Result<()> {
        let _permits = if src.host() == dst.host() {
            (dst.permit(2).await, None)
        } else if src.host() < dst.host() {
            let a = src.permit(1).await;
            (a, Some(dst.permit(1).await))
        } else {
            let b = dst.permit(1).await;
            (b, Some(src.permit(1).await))
        };
        tracing::debug!(digest = %blob.digest, size = blob.size, from = %src_repo, to = %dst_repo, "uploading blob");
        let stream = src.pull_blob(src_repo.path(), &blob.digest).await?;
        dst.push_blob(dst_repo.path(), &blob.digest, blob.size, stream)
            .await
            .map_err(|e| anyhow!("{e:#} (copying from {src_repo})"))
    }
}
