//! The only writes a directory store makes, each atomic: a blob streamed into a temporary
//! file and renamed under its digest only when its stream ended without error (the copy
//! checks the bytes against the digest and size as they pass and ends the stream with an
//! error when they do not match, see `execute::checked`; a crash never leaves a corrupt
//! blob under its final name), small files written the same way,
//! hard links and symbolic links put in place by a rename. What already holds the right
//! content is never written again. And the one removal (`prune`): a name unlinked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::model::failure::{ErrorKind, Failure, failure};
use crate::model::manifest::BlobRef;
use crate::model::reference::Digest;
use crate::store::BlobStream;

/// A temporary name beside `path`, unique to this process and call: `.tmp-` files are never
/// read as content (no digest, tag or `index.json` has that name).
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".tmp-{}-{}-{name}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

async fn parent_dirs(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Streams a blob into `path`, through a temporary file renamed only when the stream ended
/// without error: the stream given is checked against `blob`'s digest and size, and fails
/// before its end when it does not match.
pub async fn write_blob(path: &Path, blob: &BlobRef, mut stream: BlobStream) -> Result<()> {
    parent_dirs(path).await?;
    let tmp = temporary(path);
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // The check's own words and kind (corrupt bytes are not retried).
                Err(e) => {
                    return Err(match Failure::in_io(&e) {
                        Some(failure) => anyhow::Error::new(failure.clone()),
                        None => anyhow::Error::new(e)
                            .context(format!("reading the blob {} from its source", blob.digest)),
                    });
                }
            };
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    rename(&tmp, path).await
}

/// Writes `bytes` to `path` through a temporary file, unless `path` already holds them.
pub async fn write_file(path: &Path, bytes: &[u8]) -> Result<bool> {
    if tokio::fs::read(path).await.is_ok_and(|held| held == bytes) {
        return Ok(false);
    }
    parent_dirs(path).await?;
    let tmp = temporary(path);
    tokio::fs::write(&tmp, bytes)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    rename(&tmp, path).await?;
    Ok(true)
}

/// Writes a manifest's bytes under their digest, unless that file exists (a file named by
/// its digest holds that digest's bytes: it got there only through a checked rename).
pub async fn write_digest_file(path: &Path, digest: &Digest, bytes: &[u8]) -> Result<()> {
    if exists(path).await {
        return Ok(());
    }
    if &Digest::of_with(digest.algorithm(), bytes) != digest {
        return Err(failure(
            ErrorKind::Corrupt,
            format!("manifest bytes do not hash to {digest}"),
        ));
    }
    write_file(path, bytes).await.map(|_| ())
}

/// Makes `path` a hard link to `existing` (oc links a manifest's blob into `manifests/`).
pub async fn link(existing: &Path, path: &Path) -> Result<()> {
    if exists(path).await {
        return Ok(());
    }
    parent_dirs(path).await?;
    let tmp = temporary(path);
    tokio::fs::hard_link(existing, &tmp)
        .await
        .with_context(|| format!("linking {} to {}", tmp.display(), existing.display()))?;
    rename(&tmp, path).await
}

/// Makes `path` a symbolic link to `target`, unless it already is one.
pub async fn symlink(target: &str, path: &Path) -> Result<()> {
    if tokio::fs::read_link(path)
        .await
        .is_ok_and(|t| t.as_os_str() == target)
    {
        return Ok(());
    }
    parent_dirs(path).await?;
    let tmp = temporary(path);
    #[cfg(unix)]
    tokio::fs::symlink(target, &tmp)
        .await
        .with_context(|| format!("creating the link {}", tmp.display()))?;
    #[cfg(not(unix))]
    anyhow::bail!("tags in oc's file:// layout are symbolic links, which need a Unix system");
    rename(&tmp, path).await
}

async fn rename(from: &Path, to: &Path) -> Result<()> {
    tokio::fs::rename(from, to)
        .await
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Unlinks `path` (a tag's link, a manifest's name): whether it was there.
pub async fn remove(path: &Path) -> Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

pub async fn exists(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}
