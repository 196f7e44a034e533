//! Directories as image stores, behind the same seam as registries ([`crate::store`]): oc's
//! `file://` layout under `--dir` / `--from-dir`, and OCI image layouts (`oci:PATH`). This
//! is what lets a disconnected site be fed: mirror to a directory on a connected host,
//! carry it over, mirror from it into the internal registry.
//!
//! Digests are kept byte for byte (manifests are stored as the bytes read), blobs land under
//! their digest only through a checked rename ([`files`]), and a tag is written last.

mod files;
mod layout;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};

pub use self::files::write_file;
use self::layout::{INDEX_FILE, Index, OCI_LAYOUT_FILE, file_repo};
pub use self::store::DiskStore;
use crate::model::reference::{Place, Repository};

/// The directory stores of a run: `file://` sources read from `--from-dir` (else `--dir`),
/// `file://` destinations written to `--dir`; every `oci:` layout is its own directory.
pub struct DiskStores {
    file_source: Arc<DiskStore>,
    file_destination: Arc<DiskStore>,
    oci: Arc<DiskStore>,
    dir: PathBuf,
    from_dir: PathBuf,
}

impl DiskStores {
    /// `dir` is oc's `--dir` (default the current directory), `from_dir` its `--from-dir`.
    pub fn new(dir: Option<PathBuf>, from_dir: Option<PathBuf>) -> DiskStores {
        let dir = dir.unwrap_or_else(|| PathBuf::from("."));
        let from_dir = from_dir.unwrap_or_else(|| dir.clone());
        DiskStores {
            file_source: DiskStore::file(&from_dir),
            file_destination: DiskStore::file(&dir),
            oci: DiskStore::oci(),
            dir,
            from_dir,
        }
    }

    pub fn source(&self, repository: &Repository) -> Result<Arc<DiskStore>> {
        match repository.registry().place() {
            Place::File => Ok(self.file_source.clone()),
            Place::Oci => Ok(self.oci.clone()),
            Place::Registry => bail!("{repository} is not a directory"),
        }
    }

    pub fn destination(&self, repository: &Repository) -> Result<Arc<DiskStore>> {
        match repository.registry().place() {
            Place::File => Ok(self.file_destination.clone()),
            Place::Oci => Ok(self.oci.clone()),
            Place::Registry => bail!("{repository} is not a directory"),
        }
    }

    /// Checks, before anything is read or written, that every directory source can be read
    /// and every directory destination written: a bad `--dir`, a `file://` source missing
    /// from its directory, an `oci:` source that is no layout, a malformed `index.json`.
    pub fn preflight(&self, sources: &[Repository], destinations: &[Repository]) -> Result<()> {
        for repo in sources {
            match repo.registry().place() {
                Place::File => {
                    readable_dir(&self.from_dir, "--from-dir (or --dir)")?;
                    let at = file_repo(&self.from_dir, repo.path());
                    if !at.is_dir() {
                        bail!(
                            "{repo} is not in {}: no directory {}",
                            self.from_dir.display(),
                            at.display()
                        );
                    }
                }
                Place::Oci => {
                    let dir = Path::new(repo.path());
                    readable_dir(dir, &repo.to_string())?;
                    if !dir.join(OCI_LAYOUT_FILE).is_file() {
                        bail!(
                            "{repo}: {} has no {OCI_LAYOUT_FILE} file: not an OCI image layout",
                            dir.display()
                        );
                    }
                    check_index(dir)?;
                }
                Place::Registry => {}
            }
        }
        for repo in destinations {
            match repo.registry().place() {
                Place::File if self.dir.exists() => readable_dir(&self.dir, "--dir")?,
                Place::Oci => {
                    let dir = Path::new(repo.path());
                    if dir.exists() {
                        readable_dir(dir, &repo.to_string())?;
                        check_index(dir)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn readable_dir(dir: &Path, what: &str) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(_) => Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => {
            bail!("{what}: {} is not a directory", dir.display())
        }
        Err(e) => bail!("{what}: cannot read {}: {e}", dir.display()),
    }
}

/// A layout's `index.json`, if it has one, must parse.
fn check_index(dir: &Path) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    Index::parse(&bytes, &path).map(|_| ())
}
