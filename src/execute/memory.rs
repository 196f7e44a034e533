//! An in-memory store behind the seam, for the copy algorithm's unit tests: registries as
//! maps, every write recorded in order, faults on demand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::model::attached::Referrer;
use crate::model::failure::{ErrorKind, Failure, failure};
use crate::model::manifest::{BlobRef, Manifest};
use crate::model::reference::{Digest, Host, ManifestRef, Repository, Tag};
use crate::retry::Budget;
use crate::store::{
    BlobStream, Destination, Mount, OpenBlob, Slots, Source, Stores, UploadSession,
};

/// A write, in the order the store saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Blob(Repository, Digest),
    Mounted(Repository, Digest),
    Manifest(Repository, ManifestRef),
}

#[derive(Default)]
struct Repo {
    tags: HashMap<Tag, Digest>,
    manifests: HashMap<Digest, Manifest>,
    blobs: HashMap<Digest, Bytes>,
}

#[derive(Default)]
struct State {
    repos: HashMap<Repository, Repo>,
    writes: Vec<Written>,
    /// Blobs whose download fails, with the kind of failure.
    broken: HashMap<Digest, ErrorKind>,
    /// Downloads asked for, per blob.
    opened: HashMap<Digest, usize>,
    /// Tags whose digest was asked for without the manifest (a registry's HEAD), per
    /// repository.
    heads: HashMap<Repository, usize>,
    /// Manifest reads left of a pull quota (`None`: no quota); a read past it is deferred.
    quota: Option<usize>,
    /// A tag's digest is not told without its manifest (a registry whose HEAD names none).
    heads_without_digest: bool,
}

/// One registry, in memory.
pub struct MemoryStore {
    name: Host,
    slots: Slots,
    state: Mutex<State>,
    /// Whether the store answers the referrers API (else it is a registry without it).
    referrers_api: std::sync::atomic::AtomicBool,
    /// Requests to the referrers API, answered or not.
    referrers_asked: std::sync::atomic::AtomicUsize,
}

impl MemoryStore {
    pub fn new(name: &Host) -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            name: name.clone(),
            slots: Slots::new(6),
            state: Mutex::default(),
            referrers_api: std::sync::atomic::AtomicBool::new(false),
            referrers_asked: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Puts an image (or index with its children) under `tag`, with its blobs, as a test's
    /// starting point; not recorded as a write.
    pub fn seed(
        &self,
        repository: &Repository,
        tag: &str,
        manifests: &[&Manifest],
        blobs: &[Bytes],
    ) {
        let mut state = self.state();
        let repo = state.repos.entry(repository.clone()).or_default();
        for blob in blobs {
            repo.blobs.insert(Digest::of(blob), blob.clone());
        }
        for m in manifests {
            repo.manifests.insert(m.digest.clone(), (*m).clone());
        }
        if let (Ok(tag), Some(top)) = (Tag::parse(tag), manifests.last()) {
            repo.tags.insert(tag, top.digest.clone());
        }
    }

    /// The store answers `reads` manifest reads (a pull quota), then defers every other.
    pub fn limit_manifest_reads(&self, reads: usize) {
        self.state().quota = Some(reads);
    }

    /// The store tells no tag's digest without its manifest, as a registry whose HEAD
    /// answers no `Docker-Content-Digest` (the caller reads the manifest instead).
    pub fn answer_heads_without_digest(&self) {
        self.state().heads_without_digest = true;
    }

    /// The store answers the referrers API from the `subject` of the manifests it holds.
    pub fn enable_referrers_api(&self) {
        self.referrers_api
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the referrers API was asked (a store without it is asked too).
    pub fn referrers_asked(&self) -> usize {
        self.referrers_asked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A manifest's exact bytes, by tag or digest.
    pub fn manifest_bytes(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Option<Bytes> {
        self.resolve(repository, reference).map(|m| m.bytes)
    }

    /// How many tags of `repository` were asked for without their manifest (HEADs).
    pub fn heads(&self, repository: &Repository) -> usize {
        self.state().heads.get(repository).copied().unwrap_or(0)
    }

    pub fn writes(&self) -> Vec<Written> {
        self.state().writes.clone()
    }

    pub fn tag(&self, repository: &Repository, tag: &str) -> Option<Digest> {
        let tag = Tag::parse(tag).ok()?;
        self.state().repos.get(repository)?.tags.get(&tag).cloned()
    }

    pub fn has_blob(&self, repository: &Repository, digest: &Digest) -> bool {
        self.state()
            .repos
            .get(repository)
            .is_some_and(|r| r.blobs.contains_key(digest))
    }

    /// Every download of `digest` fails with `kind`.
    pub fn break_blob(&self, digest: &Digest, kind: ErrorKind) {
        self.state().broken.insert(digest.clone(), kind);
    }

    /// The source's bytes of `digest` in `repository` no longer match it (one byte flipped,
    /// the size unchanged), as a registry serving corrupt data.
    pub fn corrupt_blob(&self, repository: &Repository, digest: &Digest) {
        let mut state = self.state();
        if let Some(bytes) = state
            .repos
            .get_mut(repository)
            .and_then(|r| r.blobs.get_mut(digest))
        {
            let mut flipped = bytes.to_vec();
            if let Some(first) = flipped.first_mut() {
                *first ^= 1;
            }
            *bytes = Bytes::from(flipped);
        }
    }

    pub fn opened(&self, digest: &Digest) -> usize {
        self.state().opened.get(digest).copied().unwrap_or(0)
    }

    fn resolve(&self, repository: &Repository, reference: &ManifestRef) -> Option<Manifest> {
        let state = self.state();
        let repo = state.repos.get(repository)?;
        let digest = match reference {
            ManifestRef::Tag(t) => repo.tags.get(t)?,
            ManifestRef::Digest(d) => d,
        };
        repo.manifests.get(digest).cloned()
    }
}

impl Source for MemoryStore {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    fn slots(&self) -> &Slots {
        &self.slots
    }

    fn manifest_digest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        if matches!(reference, ManifestRef::Tag(_)) {
            let mut state = self.state();
            *state.heads.entry(repository.clone()).or_default() += 1;
            if state.heads_without_digest {
                return async { Ok(None) }.boxed();
            }
        }
        let found = self.resolve(repository, reference).map(|m| m.digest);
        async move { Ok(found) }.boxed()
    }

    fn manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Manifest>> {
        let spent = match &mut self.state().quota {
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        };
        let found = self.resolve(repository, reference);
        async move {
            if spent {
                return Err(failure(
                    ErrorKind::Deferred,
                    format!("{repository}:{reference}: pull quota spent"),
                ));
            }
            found.ok_or_else(|| {
                failure(
                    ErrorKind::NotFound,
                    format!("{repository}:{reference}: not found"),
                )
            })
        }
        .boxed()
    }

    fn open_blob(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        _budget: Arc<Budget>,
    ) -> BoxFuture<'static, Result<BlobStream>> {
        async move {
            let mut state = self.state();
            *state.opened.entry(blob.digest.clone()).or_default() += 1;
            if let Some(kind) = state.broken.get(&blob.digest) {
                return Err(failure(*kind, format!("blob {}: broken", blob.digest)));
            }
            let bytes = state
                .repos
                .get(&repository)
                .and_then(|r| r.blobs.get(&blob.digest))
                .cloned()
                .ok_or_else(|| failure(ErrorKind::NotFound, "blob unknown"))?;
            let stream: BlobStream = Box::pin(futures_util::stream::iter([Ok(bytes)]));
            Ok(stream)
        }
        .boxed()
    }

    fn tags<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Vec<String>>> {
        let mut tags: Vec<String> = self
            .state()
            .repos
            .get(repository)
            .map(|r| r.tags.keys().map(|t| t.to_string()).collect())
            .unwrap_or_default();
        tags.sort();
        async move { Ok(tags) }.boxed()
    }

    fn held_tags<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
        let tags = self.tags(repository);
        async move { Ok(Some(tags.await?)) }.boxed()
    }

    fn blob_exists<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<bool>> {
        let found = self.has_blob(repository, digest);
        async move { Ok(found) }.boxed()
    }

    fn referrers<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<Vec<Referrer>>>> {
        async move {
            self.referrers_asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !self
                .referrers_api
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Ok(None);
            }
            Ok(Some(self.referrers_of(repository, digest)))
        }
        .boxed()
    }
}

impl MemoryStore {
    /// What the referrers API answers: every manifest of the repository whose `subject` is
    /// `digest`, described as a referrers index lists it.
    fn referrers_of(&self, repository: &Repository, digest: &Digest) -> Vec<Referrer> {
        let state = self.state();
        let Some(repo) = state.repos.get(repository) else {
            return Vec::new();
        };
        let mut found: Vec<Referrer> = repo
            .manifests
            .values()
            .filter_map(|m| {
                let doc: serde_json::Value = serde_json::from_slice(&m.bytes).ok()?;
                let subject = doc.get("subject")?.get("digest")?.as_str()?;
                (subject == digest.as_str()).then(|| {
                    let artifact_type = doc
                        .get("artifactType")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned);
                    Referrer {
                        digest: m.digest.clone(),
                        descriptor: serde_json::json!({
                            "mediaType": m.media_type,
                            "digest": m.digest.as_str(),
                            "size": m.bytes.len(),
                            "artifactType": artifact_type,
                        }),
                        artifact_type,
                    }
                })
            })
            .collect();
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        found
    }
}

impl Destination for MemoryStore {
    fn mount<'a>(
        &'a self,
        repository: &'a Repository,
        from: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Mount>> {
        let mut state = self.state();
        let found = state
            .repos
            .get(from)
            .and_then(|r| r.blobs.get(digest))
            .cloned();
        let mount = match found {
            Some(bytes) => {
                let repo = state.repos.entry(repository.clone()).or_default();
                repo.blobs.insert(digest.clone(), bytes);
                state
                    .writes
                    .push(Written::Mounted(repository.clone(), digest.clone()));
                Mount::Mounted
            }
            None => Mount::Refused,
        };
        async move { Ok(mount) }.boxed()
    }

    fn upload<'a>(
        &'a self,
        repository: &'a Repository,
        blob: &'a BlobRef,
        _session: Option<UploadSession>,
        open: OpenBlob<'a>,
        _budget: &'a Budget,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            // Committed only when the stream ends without error, as the real stores do: the
            // digest check is the copy's, not the store's.
            let mut stream = open().await?;
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(e) => {
                        return Err(match Failure::in_io(&e) {
                            Some(f) => anyhow::Error::new(f.clone()),
                            None => anyhow::Error::new(e),
                        });
                    }
                }
            }
            let mut state = self.state();
            let repo = state.repos.entry(repository.clone()).or_default();
            repo.blobs.insert(blob.digest.clone(), Bytes::from(bytes));
            state
                .writes
                .push(Written::Blob(repository.clone(), blob.digest.clone()));
            Ok(())
        }
        .boxed()
    }

    fn put_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
        manifest: &'a Manifest,
    ) -> BoxFuture<'a, Result<()>> {
        let mut state = self.state();
        let repo = state.repos.entry(repository.clone()).or_default();
        // Accepted whatever it references (a registry would refuse a manifest whose blobs
        // are missing): the order of writes is the copy algorithm's to keep, and the tests
        // check it.
        repo.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        if let ManifestRef::Tag(tag) = reference {
            repo.tags.insert(tag.clone(), manifest.digest.clone());
        }
        state
            .writes
            .push(Written::Manifest(repository.clone(), reference.clone()));
        async { Ok(()) }.boxed()
    }
}

/// Registries by host.
#[derive(Default)]
pub struct MemoryStores {
    stores: Mutex<HashMap<Host, Arc<MemoryStore>>>,
}

impl MemoryStores {
    pub fn store(&self, host: &Host) -> Arc<MemoryStore> {
        let mut stores = match self.stores.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        stores
            .entry(host.clone())
            .or_insert_with(|| MemoryStore::new(host))
            .clone()
    }
}

impl Stores for MemoryStores {
    fn source<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Arc<dyn Source>>> {
        let store: Arc<dyn Source> = self.store(repository.registry());
        async move { Ok(store) }.boxed()
    }

    fn destination<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Arc<dyn Destination>>> {
        let store: Arc<dyn Destination> = self.store(repository.registry());
        async move { Ok(store) }.boxed()
    }
}
