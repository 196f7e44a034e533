//! Where things are in the two directory formats: oc's `file://` layout
//! (`v2/REPO/blobs/DIGEST`, `v2/REPO/manifests/DIGEST` hard-linked to the blob,
//! `v2/REPO/manifests/TAG` a symbolic link to `DIGEST`), and the OCI image layout
//! (`oci-layout`, `index.json` whose entries name tags by the
//! `org.opencontainers.image.ref.name` annotation, `blobs/ALG/HEX`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::reference::{Digest, Tag};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";
pub const INDEX_FILE: &str = "index.json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// oc's layout: a repository's directory under the base directory.
pub fn file_repo(base: &Path, repo: &str) -> PathBuf {
    let mut dir = base.join("v2");
    for part in repo.split('/') {
        dir.push(part);
    }
    dir
}

/// oc names blob and manifest files by the digest as written (`sha256:HEX`) on Unix.
pub fn file_blob(repo_dir: &Path, digest: &Digest) -> PathBuf {
    repo_dir.join("blobs").join(digest.as_str())
}

pub fn file_manifest(repo_dir: &Path, reference: &str) -> PathBuf {
    repo_dir.join("manifests").join(reference)
}

pub fn oci_blob(layout: &Path, digest: &Digest) -> PathBuf {
    let (algorithm, hex) = digest
        .as_str()
        .split_once(':')
        .unwrap_or(("sha256", digest.as_str()));
    layout.join("blobs").join(algorithm).join(hex)
}

/// `index.json`: the fields we read, and every other field kept as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub annotations: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).and_then(|v| v.as_str())
    }
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(crate::model::manifest::OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            other: serde_json::Map::new(),
        }
    }

    /// The layout's `index.json`; an empty index when the directory has none yet.
    pub async fn read(layout: &Path) -> Result<Index> {
        let path = layout.join(INDEX_FILE);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::empty()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Index::parse(&bytes, &path)
    }

    /// An `index.json`'s bytes, read from `path` (named in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Index> {
        let index: Index = serde_json::from_slice(bytes)
            .with_context(|| format!("{} is not an OCI image index", path.display()))?;
        for d in &index.manifests {
            if Digest::parse(&d.digest).is_err() {
                bail!("{}: bad digest {:?}", path.display(), d.digest);
            }
        }
        Ok(index)
    }

    /// The manifest a tag names.
    pub fn find(&self, tag: &Tag) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.ref_name() == Some(tag.as_str()))
    }

    pub fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .manifests
            .iter()
            .filter_map(|d| d.ref_name().map(str::to_owned))
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// Puts `descriptor` under `tag`, taking the tag from any other entry. Whether anything
    /// changed.
    pub fn put(&mut self, tag: &Tag, mut descriptor: Descriptor) -> bool {
        if self
            .find(tag)
            .is_some_and(|d| d.digest == descriptor.digest)
        {
            return false;
        }
        self.manifests
            .retain(|d| d.ref_name() != Some(tag.as_str()));
        descriptor
            .annotations
            .insert(REF_NAME.to_owned(), tag.as_str().into());
        self.manifests.push(descriptor);
        true
    }
}
