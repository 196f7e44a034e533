//! Where the ledger lives and how it is read and written: in a registry repository the
//! user names (`--ledger HOST/REPO`), as one OCI artifact per writer — a manifest whose
//! config is the ledger's JSON, `artifactType` [`MEDIA_TYPE`], under the tag
//! `ledger-<writer>` — or in a directory (`--ledger file:PATH`), one `ledger-<writer>.json`
//! per writer. OCI has no compare-and-swap on tags, so writers never share an object: each
//! shard of an Indexed Job writes its own, and a reader merges them all.
//!
//! A registry's objects are read and written over the [`crate::store`] seam (so through the
//! registry client's one request pipeline, counted and retried as every other request):
//! reading costs a tag list and two GETs per writer, writing a HEAD of the blob, its upload
//! when the registry lacks it, and a manifest PUT, whatever the number of tags. The time
//! of writing is the manifest's annotation, not part of the blob (see [`AsOf`]): a run that
//! changed nothing finds its blob there already.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::model::{AS_OF_ANNOTATION, AsOf, Ledger, MEDIA_TYPE, Stamp, Unreadable, decode, encode};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::{BlobRef, Manifest, OCI_MANIFEST};
use crate::model::reference::{Digest, ManifestRef, Repository, Tag, parse_name};
use crate::retry::RetryPolicy;
use crate::store::{BlobStream, Stores};

/// The tag (or file name) prefix of every ledger object.
const PREFIX: &str = "ledger-";
/// The largest ledger object read (a 10,000-tag ledger is about 3.5 MB).
const MAX_BYTES: u64 = 256 << 20;

/// Where the ledger is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository of a registry, named by the user.
    Registry(Repository),
    /// A directory of JSON files.
    Directory(PathBuf),
}

impl Location {
    /// `file:PATH` (a directory), else `HOST/REPOSITORY`.
    pub fn parse(text: &str) -> Result<Location, String> {
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("--ledger file: needs a directory path".to_owned());
            }
            return Ok(Location::Directory(PathBuf::from(path)));
        }
        if text.starts_with("oci:") {
            return Err(format!(
                "--ledger {text:?}: a ledger in a directory is written `file:PATH`"
            ));
        }
        let repository = parse_name(text).map_err(|e| format!("--ledger {text:?}: {e}"))?;
        if !text.contains('/') || repository.on_disk() {
            return Err(format!(
                "--ledger {text:?}: name a registry repository (HOST/REPOSITORY) or file:PATH"
            ));
        }
        Ok(Location::Registry(repository))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Directory(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Who writes an object: the whole run, or one shard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer(String);

impl Writer {
    pub fn new(shard: Option<crate::plan::Shard>) -> Writer {
        Writer(match shard {
            Some(s) => format!("shard-{}-of-{}", s.index(), s.count()),
            None => "all".to_owned(),
        })
    }

    /// Its object's tag (or file stem).
    pub fn object_name(&self) -> String {
        format!("{PREFIX}{}", self.0)
    }
}

/// The ledger as read: every object merged, and what could not be read.
#[derive(Debug, Default)]
pub struct Read {
    pub ledger: Ledger,
    /// Objects read and merged.
    pub objects: usize,
    /// Objects (or the listing) that could not be read: nothing may be pruned on the
    /// strength of this ledger then.
    pub problems: Vec<String>,
    /// Objects written in a newer format, by object name (`ledger-<writer>`, the tag or
    /// the file stem): left as they are.
    pub newer: Vec<String>,
}

impl Read {
    /// Whether prune may trust the ledger.
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether `writer`'s own object is of a newer format (then it is not overwritten).
    /// Its name exactly: `ledger-shard-1-of-2` is not `ledger-shard-1-of-20`.
    pub fn newer_object_of(&self, writer: &Writer) -> bool {
        self.newer.contains(&writer.object_name())
    }
}

/// Reads and merges every writer's object. Never fails: what cannot be read is a problem
/// listed in [`Read::problems`].
pub async fn read(location: &Location, stores: &dyn Stores, policy: &RetryPolicy) -> Read {
    match location {
        Location::Registry(repository) => read_registry(repository, stores, policy).await,
        Location::Directory(dir) => read_directory(dir),
    }
}

/// Writes this writer's object (nothing else is touched).
pub async fn write(
    location: &Location,
    stores: &dyn Stores,
    policy: &RetryPolicy,
    writer: &Writer,
    ledger: &Ledger,
    now: Stamp,
) -> Result<()> {
    match location {
        Location::Registry(repository) => {
            let bytes = Bytes::from(encode(ledger, &writer.0, now, AsOf::Beside));
            write_registry(repository, stores, policy, writer, bytes, now).await
        }
        Location::Directory(dir) => {
            write_directory(dir, writer, &encode(ledger, &writer.0, now, AsOf::Inside)).await
        }
    }
}

/// Merges one object: `object` is its name (`ledger-<writer>`), `name` where it is.
fn merge_object(read: &mut Read, object: &str, name: String, decoded: Result<Ledger, Unreadable>) {
    match decoded {
        Ok(ledger) => {
            read.ledger.merge(ledger);
            read.objects += 1;
        }
        Err(e) => {
            if matches!(e, Unreadable::Newer(_)) {
                read.newer.push(object.to_owned());
            }
            read.problems.push(format!("ledger object {name}: {e}"));
        }
    }
}

async fn read_registry(repository: &Repository, stores: &dyn Stores, policy: &RetryPolicy) -> Read {
    let mut read = Read::default();
    let store = match stores.source(repository).await {
        Ok(s) => s,
        Err(e) => {
            read.problems
                .push(format!("reading the ledger in {repository}: {e:#}"));
            return read;
        }
    };
    // A repository that does not exist yet (404 NAME_UNKNOWN) is an empty ledger: a first
    // run with a new --ledger has nothing to distrust.
    let mut tags = match store.held_tags(repository).await {
        Ok(Some(tags)) => tags,
        Ok(None) => {
            read.problems.push(format!(
                "listing the ledger in {repository}: {} has no tag listing, so the ledger's \
                 objects cannot be found; keep it in a registry that lists tags, or in file:DIR",
                repository.registry()
            ));
            return read;
        }
        Err(e) => {
            read.problems
                .push(format!("listing the ledger in {repository}: {e:#}"));
            return read;
        }
    };
    tags.retain(|t| t.starts_with(PREFIX));
    tags.sort();
    for tag in tags {
        let name = format!("{repository}:{tag}");
        match read_object(store.clone(), repository, &tag, policy).await {
            Ok((bytes, as_of)) => merge_object(&mut read, &tag, name, decode(&bytes, as_of)),
            Err(e) => read.problems.push(format!("ledger object {name}: {e:#}")),
        }
    }
    read
}

/// One object's JSON and the time of writing its manifest gives: its manifest, then its
/// config blob, checked against its digest.
async fn read_object(
    store: Arc<dyn crate::store::Source>,
    repository: &Repository,
    tag: &str,
    policy: &RetryPolicy,
) -> Result<(Bytes, Option<Stamp>)> {
    let reference = ManifestRef::Tag(
        Tag::parse(tag).map_err(|e| failure(ErrorKind::Permanent, format!("{tag}: {e}")))?,
    );
    let manifest = store.manifest(repository, &reference).await?;
    let (config, as_of) = config_of(&manifest.bytes)?;
    if config.size > MAX_BYTES {
        anyhow::bail!(
            "its config is {} bytes, more than a ledger holds",
            config.size
        );
    }
    let budget = Arc::new(policy.budget());
    let mut stream = store
        .open_blob(repository.clone(), config.clone(), budget)
        .await?;
    let mut bytes = Vec::with_capacity(usize::try_from(config.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() as u64 > config.size {
            anyhow::bail!("its config is longer than its manifest says");
        }
    }
    let actual = Digest::of_with(config.digest.algorithm(), &bytes);
    if actual != config.digest {
        anyhow::bail!("its config hashes to {actual}, not {}", config.digest);
    }
    Ok((Bytes::from(bytes), as_of))
}

/// The ledger blob a manifest names, when it is a ledger's manifest, and the time of
/// writing its annotation gives (a malformed one is none: the blob may hold it).
fn config_of(manifest: &[u8]) -> Result<(BlobRef, Option<Stamp>)> {
    let doc: serde_json::Value =
        serde_json::from_slice(manifest).context("its manifest is not JSON")?;
    let config = &doc["config"];
    if config["mediaType"].as_str() != Some(MEDIA_TYPE) {
        anyhow::bail!("its manifest is not a ledger's (config media type is not {MEDIA_TYPE})");
    }
    let digest = config["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
        .context("its manifest names no valid config digest")?;
    let size = config["size"]
        .as_u64()
        .context("its manifest names no config size")?;
    let as_of = doc["annotations"][AS_OF_ANNOTATION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .map(Stamp);
    Ok((BlobRef { digest, size }, as_of))
}

/// The artifact's manifest: the ledger as its config, no layers, the time of writing as
/// an annotation.
fn artifact_manifest(blob: &BlobRef, now: Stamp) -> Result<Manifest> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MEDIA_TYPE,
        "config": {
            "mediaType": MEDIA_TYPE,
            "digest": blob.digest.as_str(),
            "size": blob.size,
        },
        "layers": [],
        "annotations": { AS_OF_ANNOTATION: now.0.to_string() },
    });
    let bytes = Bytes::from(serde_json::to_vec(&doc)?);
    let digest = Digest::of(&bytes);
    Manifest::parse(bytes, digest)
}

async fn write_registry(
    repository: &Repository,
    stores: &dyn Stores,
    policy: &RetryPolicy,
    writer: &Writer,
    bytes: Bytes,
    now: Stamp,
) -> Result<()> {
    let store = stores.destination(repository).await?;
    let blob = BlobRef {
        digest: Digest::of(&bytes),
        size: bytes.len() as u64,
    };
    let open = move || -> BoxFuture<'static, Result<BlobStream>> {
        let bytes = bytes.clone();
        Box::pin(async move {
            let stream: BlobStream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
            Ok(stream)
        })
    };
    // A run that changed nothing wrote this blob last time.
    let held = store
        .blob_exists(repository, &blob.digest)
        .await
        .with_context(|| format!("writing the ledger to {repository}"))?;
    if !held {
        let budget = policy.budget();
        store
            .upload(repository, &blob, None, &open, &budget)
            .await
            .with_context(|| format!("writing the ledger to {repository}"))?;
    }
    let manifest = artifact_manifest(&blob, now)?;
    let tag = Tag::parse(&writer.object_name()).map_err(|e| {
        failure(
            ErrorKind::Permanent,
            format!("{}: {e}", writer.object_name()),
        )
    })?;
    store
        .put_manifest(repository, &ManifestRef::Tag(tag), &manifest)
        .await
        .with_context(|| format!("writing the ledger to {repository}"))
}

fn read_directory(dir: &Path) -> Read {
    let mut read = Read::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No directory yet: an empty ledger, nothing to distrust.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return read,
        Err(e) => {
            read.problems
                .push(format!("reading the ledger in {}: {e}", dir.display()));
            return read;
        }
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(".json"))
        })
        .collect();
    names.sort();
    for path in names {
        let name = path.display().to_string();
        let object = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        match std::fs::read(&path) {
            Ok(bytes) => merge_object(&mut read, &object, name, decode(&bytes, None)),
            Err(e) => read.problems.push(format!("ledger object {name}: {e}")),
        }
    }
    read
}

/// Written to a temporary file and renamed over the old one: a reader sees the old object
/// or the new, never half of one.
/// This writer's file, replaced whole (through a temporary file and a rename, as every
/// directory write is).
async fn write_directory(dir: &Path, writer: &Writer, bytes: &[u8]) -> Result<()> {
    let path = dir.join(format!("{}.json", writer.object_name()));
    crate::disk::write_file(&path, bytes)
        .await
        .map(|_| ())
        .with_context(|| format!("writing the ledger to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::memory::MemoryStores;
    use crate::ledger::model::{Seen, Stamp};

    fn ledger_with(tag: &str, n: u8) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.sources.insert(
            tag.to_owned(),
            Seen {
                digest: Digest::of(&[n]),
                first_seen: Stamp(u64::from(n)),
            },
        );
        ledger
    }

    #[test]
    fn locations_are_a_registry_repository_or_a_directory() {
        assert_eq!(
            Location::parse("file:/var/ledger"),
            Ok(Location::Directory(PathBuf::from("/var/ledger")))
        );
        let Ok(Location::Registry(r)) = Location::parse("reg.io/mirror/ledger") else {
            panic!()
        };
        assert_eq!(r.to_string(), "reg.io/mirror/ledger");
        assert!(Location::parse("file:").is_err());
        assert!(Location::parse("oci:/x").unwrap_err().contains("file:PATH"));
        assert!(Location::parse("UPPER/x").is_err());
    }

    /// Two writers' objects in one registry repository: both read back, merged, and a
    /// corrupt third is a problem (so nothing is pruned), not a failure.
    #[tokio::test]
    async fn objects_of_several_writers_are_merged_over_the_store_seam() {
        let stores = MemoryStores::default();
        let location = Location::parse("ledger.io/mirror/ledger").unwrap();
        let policy = RetryPolicy::requests(1, std::time::Duration::ZERO);
        let shard = |i| Writer::new(crate::plan::Shard::new(i, 2).ok());
        write(
            &location,
            &stores,
            &policy,
            &shard(0),
            &ledger_with("s/a:1", 1),
            Stamp(1),
        )
        .await
        .unwrap();
        write(
            &location,
            &stores,
            &policy,
            &shard(1),
            &ledger_with("s/b:1", 2),
            Stamp(1),
        )
        .await
        .unwrap();
        let read = read(&location, &stores, &policy).await;
        assert_eq!(read.objects, 2);
        assert!(read.complete(), "{:?}", read.problems);
        assert_eq!(read.ledger.sources.len(), 2);
    }

    /// A newer-format object is this writer's only when its name is exactly this writer's:
    /// shard 1 of 2 is not shard 1 of 20.
    #[test]
    fn a_newer_object_is_this_writers_only_by_its_exact_name() {
        let dir = std::env::temp_dir().join(format!("ledger-newer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let newer = br#"{"format": 99, "writer": "shard-1-of-20", "written": 1}"#;
        std::fs::write(dir.join("ledger-shard-1-of-20.json"), newer).unwrap();
        let read = read_directory(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(read.newer, ["ledger-shard-1-of-20"]);
        let shard = |i, n| Writer::new(crate::plan::Shard::new(i, n).ok());
        assert!(read.newer_object_of(&shard(1, 20)));
        assert!(!read.newer_object_of(&shard(1, 2)));
        assert!(!read.newer_object_of(&shard(11, 20)));
        assert!(!read.newer_object_of(&Writer::new(None)));
    }

    #[tokio::test]
    async fn a_directory_holds_one_file_per_writer_and_a_corrupt_one_is_a_problem() {
        let dir = std::env::temp_dir().join(format!("ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let empty = read_directory(&dir);
        assert!(empty.complete() && empty.objects == 0);
        let all = Writer::new(None);
        write_directory(
            &dir,
            &all,
            &encode(&ledger_with("s/a:1", 1), "all", Stamp(1), AsOf::Inside),
        )
        .await
        .unwrap();
        std::fs::write(dir.join("ledger-shard-0-of-2.json"), b"{not json").unwrap();
        let read = read_directory(&dir);
        assert_eq!(read.objects, 1);
        assert!(!read.complete());
        assert!(
            read.problems[0].contains("not a ledger"),
            "{:?}",
            read.problems
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
