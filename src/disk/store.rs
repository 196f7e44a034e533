//! One directory store: the [`Source`] and [`Destination`] methods over the files of
//! [`super::layout`], written only through [`super::files`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::files;
use super::layout::{self, Descriptor, INDEX_FILE, Index, OCI_LAYOUT, OCI_LAYOUT_FILE};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::{BlobRef, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::retry::Budget;
use crate::store::{
    BlobStream, Deleted, Destination, Mount, OpenBlob, Slots, Source, UploadSession,
};

/// Files read or written at once per store: disks do not gain from more.
const DISK_SLOTS: usize = 8;

enum Kind {
    /// oc's layout under this base directory.
    File(PathBuf),
    /// OCI layouts, each repository path a layout directory.
    Oci,
}

pub struct DiskStore {
    kind: Kind,
    name: String,
    slots: Slots,
    /// `index.json` is read, changed and written back by one writer at a time.
    index_lock: tokio::sync::Mutex<()>,
}

impl DiskStore {
    pub(super) fn file(base: &Path) -> Arc<DiskStore> {
        Arc::new(DiskStore {
            name: format!("file://{}", base.display()),
            kind: Kind::File(base.to_path_buf()),
            slots: Slots::new(DISK_SLOTS),
            index_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) fn oci() -> Arc<DiskStore> {
        Arc::new(DiskStore {
            name: "oci:".to_owned(),
            kind: Kind::Oci,
            slots: Slots::new(DISK_SLOTS),
            index_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn blob_path(&self, repository: &Repository, digest: &Digest) -> PathBuf {
        match &self.kind {
            Kind::File(base) => {
                layout::file_blob(&layout::file_repo(base, repository.path()), digest)
            }
            Kind::Oci => layout::oci_blob(Path::new(repository.path()), digest),
        }
    }

    /// Where a manifest's bytes are read from.
    fn manifest_path(&self, repository: &Repository, digest: &Digest) -> PathBuf {
        match &self.kind {
            Kind::File(base) => {
                layout::file_manifest(&layout::file_repo(base, repository.path()), digest.as_str())
            }
            Kind::Oci => layout::oci_blob(Path::new(repository.path()), digest),
        }
    }

    async fn resolve(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Option<Digest>> {
        match (reference, &self.kind) {
            (ManifestRef::Digest(d), _) => Ok(files::exists(&self.manifest_path(repository, d))
                .await
                .then(|| d.clone())),
            (ManifestRef::Tag(tag), Kind::File(base)) => {
                let path = layout::file_manifest(
                    &layout::file_repo(base, repository.path()),
                    tag.as_str(),
                );
                let target = match tokio::fs::read_link(&path).await {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("reading the tag {}", path.display()));
                    }
                };
                let name = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let digest = Digest::parse(&name).map_err(|e| {
                    failure(
                        ErrorKind::Permanent,
                        format!("{}: points at {name:?}, not a digest: {e}", path.display()),
                    )
                })?;
                Ok(Some(digest))
            }
            (ManifestRef::Tag(tag), Kind::Oci) => {
                let index = Index::read(Path::new(repository.path())).await?;
                match index.find(tag) {
                    Some(d) => Ok(Some(
                        Digest::parse(&d.digest).map_err(|e| anyhow::anyhow!("{e}"))?,
                    )),
                    None => Ok(None),
                }
            }
        }
    }

    async fn list(&self, repository: &Repository) -> Result<Vec<String>> {
        match &self.kind {
            Kind::File(base) => {
                let dir = layout::file_repo(base, repository.path()).join("manifests");
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
                };
                let mut tags = Vec::new();
                // oc's rule: tags are the symbolic links; digests are plain files.
                while let Some(entry) = entries.next_entry().await? {
                    if entry.file_type().await.is_ok_and(|t| t.is_symlink()) {
                        tags.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
                tags.sort();
                Ok(tags)
            }
            Kind::Oci => Ok(Index::read(Path::new(repository.path())).await?.tags()),
        }
    }

    /// An OCI layout says what it is before anything else is written into it.
    async fn mark_layout(&self, repository: &Repository) -> Result<()> {
        if let Kind::Oci = self.kind {
            let path = Path::new(repository.path()).join(OCI_LAYOUT_FILE);
            if !files::exists(&path).await {
                files::write_file(&path, OCI_LAYOUT).await?;
            }
        }
        Ok(())
    }

    /// `prune`'s delete, as distribution's: a tag alone, or a manifest by digest with every
    /// tag pointing at it. Blobs stay (nothing collects them; a registry keeps them too until
    /// its garbage collection runs).
    async fn delete(&self, repository: &Repository, reference: &ManifestRef) -> Result<Deleted> {
        let removed = match &self.kind {
            Kind::File(base) => {
                let repo_dir = layout::file_repo(base, repository.path());
                match reference {
                    ManifestRef::Tag(tag) => {
                        files::remove(&layout::file_manifest(&repo_dir, tag.as_str())).await?
                    }
                    ManifestRef::Digest(digest) => {
                        let mut removed = false;
                        for tag in self.list(repository).await? {
                            let path = layout::file_manifest(&repo_dir, &tag);
                            let target = tokio::fs::read_link(&path).await.ok();
                            if target.is_some_and(|t| t.as_os_str() == digest.as_str()) {
                                removed |= files::remove(&path).await?;
                            }
                        }
                        let by_digest = layout::file_manifest(&repo_dir, digest.as_str());
                        files::remove(&by_digest).await? || removed
                    }
                }
            }
            Kind::Oci => {
                let dir = Path::new(repository.path());
                let _one_writer = self.index_lock.lock().await;
                let mut index = Index::read(dir).await?;
                let before = index.manifests.len();
                index.manifests.retain(|d| match reference {
                    ManifestRef::Tag(tag) => d.ref_name() != Some(tag.as_str()),
                    ManifestRef::Digest(digest) => d.digest != digest.as_str(),
                });
                let removed = index.manifests.len() != before;
                if removed {
                    let bytes = serde_json::to_vec(&index).context("serializing index.json")?;
                    files::write_file(&dir.join(INDEX_FILE), &bytes).await?;
                }
                removed
            }
        };
        Ok(if removed {
            Deleted::Removed
        } else {
            Deleted::Absent
        })
    }

    async fn write_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
        manifest: &Manifest,
    ) -> Result<()> {
        self.mark_layout(repository).await?;
        let blob = self.blob_path(repository, &manifest.digest);
        files::write_digest_file(&blob, &manifest.digest, &manifest.bytes).await?;
        match &self.kind {
            Kind::File(base) => {
                let repo_dir = layout::file_repo(base, repository.path());
                let by_digest = layout::file_manifest(&repo_dir, manifest.digest.as_str());
                files::link(&blob, &by_digest).await?;
                if let ManifestRef::Tag(tag) = reference {
                    // Last: the tag appears only once everything it points at is there.
                    let path = layout::file_manifest(&repo_dir, tag.as_str());
                    files::symlink(manifest.digest.as_str(), &path).await?;
                }
            }
            Kind::Oci => {
                // Only tags are entries of `index.json`: an index's children and a push by
                // digest are blobs found by their digest, as skopeo writes them.
                let ManifestRef::Tag(tag) = reference else {
                    return Ok(());
                };
                let dir = Path::new(repository.path());
                let _one_writer = self.index_lock.lock().await;
                let mut index = Index::read(dir).await?;
                let descriptor = Descriptor {
                    media_type: manifest.media_type.clone(),
                    digest: manifest.digest.to_string(),
                    size: manifest.bytes.len() as u64,
                    annotations: serde_json::Map::new(),
                    other: serde_json::Map::new(),
                };
                if index.put(tag, descriptor) {
                    let bytes = serde_json::to_vec(&index).context("serializing index.json")?;
                    files::write_file(&dir.join(INDEX_FILE), &bytes).await?;
                }
            }
        }
        Ok(())
    }
}

impl Source for DiskStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn slots(&self) -> &Slots {
        &self.slots
    }

    fn manifest_digest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        self.resolve(repository, reference).boxed()
    }

    fn manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Manifest>> {
        async move {
            let Some(digest) = self.resolve(repository, reference).await? else {
                return Err(failure(
                    ErrorKind::NotFound,
                    format!("{repository}: no manifest {reference}"),
                ));
            };
            let path = self.manifest_path(repository, &digest);
            let bytes = tokio::fs::read(&path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            if Digest::of_with(digest.algorithm(), &bytes) != digest {
                return Err(failure(
                    ErrorKind::Corrupt,
                    format!("{}: the bytes do not hash to {digest}", path.display()),
                ));
            }
            Manifest::parse(bytes.into(), digest)
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
            let path = self.blob_path(&repository, &blob.digest);
            let file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(failure(
                        ErrorKind::NotFound,
                        format!(
                            "{repository}: blob {} missing ({})",
                            blob.digest,
                            path.display()
                        ),
                    ));
                }
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            };
            let stream: BlobStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(
                file,
                256 * 1024,
            ));
            Ok(stream)
        }
        .boxed()
    }

    fn held_tags<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
        async move { Ok(Some(self.list(repository).await?)) }.boxed()
    }

    fn blob_exists<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<bool>> {
        async move { Ok(files::exists(&self.blob_path(repository, digest)).await) }.boxed()
    }

    fn tags<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Vec<String>>> {
        self.list(repository).boxed()
    }
}

impl Destination for DiskStore {
    fn mount<'a>(
        &'a self,
        repository: &'a Repository,
        from: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Mount>> {
        async move {
            let existing = self.blob_path(from, digest);
            if !files::exists(&existing).await {
                return Ok(Mount::Refused);
            }
            self.mark_layout(repository).await?;
            // A hard link fails across file systems: then the blob is copied the usual way.
            match files::link(&existing, &self.blob_path(repository, digest)).await {
                Ok(()) => Ok(Mount::Mounted),
                Err(e) => {
                    tracing::debug!(%digest, "no hard link ({e:#}); copying the blob");
                    Ok(Mount::Refused)
                }
            }
        }
        .boxed()
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
            let path = self.blob_path(repository, &blob.digest);
            if files::exists(&path).await {
                return Ok(());
            }
            self.mark_layout(repository).await?;
            let stream = open().await?;
            files::write_blob(&path, blob, stream).await
        }
        .boxed()
    }

    fn put_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
        manifest: &'a Manifest,
    ) -> BoxFuture<'a, Result<()>> {
        self.write_manifest(repository, reference, manifest).boxed()
    }

    fn delete_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Deleted>> {
        self.delete(repository, reference).boxed()
    }
}
