//! Finding mapping files, parsing them in parallel, and the checks that span files.

pub mod conflicts;
pub mod diff;
pub mod expanded;
pub mod import;
pub mod mapping;
pub mod options;
pub mod repositories;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use self::expanded::Named;
use self::mapping::{Mapping, ParsedLine, parse_text};
use crate::model::diagnostics::Diagnostic;
use crate::model::reference::{Host, Repository};

/// Where the Prow jobs mount the mappings ConfigMap.
pub const DEFAULT_MAPPING_DIR: &str = "/etc/imagemirror";

/// What the user named, and how to filter directories.
#[derive(Debug, Clone, Default)]
pub struct InputSpec {
    /// Files or directories.
    pub paths: Vec<PathBuf>,
    /// Only files in directories whose names start with this are read.
    pub prefix: Option<String>,
}

/// A problem finding or reading a file (not a mapping error).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    pub path: String,
    pub message: String,
}

/// Every mapping from every file, with all diagnostics.
#[derive(Debug, Default)]
pub struct MappingSet {
    pub files: Vec<Arc<str>>,
    pub mappings: Vec<Mapping>,
    pub diagnostics: Vec<Diagnostic>,
}

impl MappingSet {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Lists the mapping files: each file as named, each directory's visible regular files
/// (symlinks followed, as in a mounted ConfigMap) whose names start with the prefix, in name
/// order. A file reached twice is read once.
pub fn discover(spec: &InputSpec) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    for path in &spec.paths {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if meta.is_dir() {
            files.extend(directory_files(path, spec.prefix.as_deref())?);
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

fn directory_files(dir: &Path, prefix: Option<&str>) -> Result<Vec<PathBuf>, InputError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // Hidden names include a ConfigMap's `..data` and `..2026_...` directories; the
        // visible symlinks already lead to every file once.
        if name.starts_with('.') || !prefix.is_none_or(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => names.push(path),
            Ok(_) => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    names.sort();
    Ok(names)
}

fn io_error(path: &Path, e: std::io::Error) -> InputError {
    InputError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// How many files are parsed in parallel before their mappings move into the set. All of
/// them at once held every mapping twice (per file, then in the set) at the peak: 16 MB of a
/// 100,000-line check's 70. A window keeps the threads busy and the copies few.
const WINDOW: usize = 64;

/// Reads and parses the files in parallel, a window at a time, in order; then runs the
/// checks that span files.
pub fn load(files: &[PathBuf]) -> Result<MappingSet, InputError> {
    let mut set = MappingSet::default();
    for window in files.chunks(WINDOW) {
        let parsed: Vec<_> = window
            .par_iter()
            .map(|path| read_and_parse(path))
            .collect::<Result<_, InputError>>()?;
        for (name, p) in parsed {
            set.files.push(name);
            set.mappings.extend(p.mappings);
            set.diagnostics.extend(p.diagnostics);
        }
    }
    set.diagnostics
        .extend(conflicts::cross_checks(&set.mappings));
    set.diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(set)
}

/// One file's mappings and diagnostics, under the name it is reported by.
fn read_and_parse(path: &Path) -> Result<(Arc<str>, ParsedLine), InputError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let name: Arc<str> = Arc::from(path.display().to_string());
    let text = String::from_utf8(bytes).map_err(|_| InputError {
        path: path.display().to_string(),
        message: "not UTF-8 text".to_owned(),
    })?;
    let parsed = parse_text(&name, &text);
    Ok((name, parsed))
}

/// Every registry host the mappings read from or write to.
pub fn registries_of(mappings: &[Mapping]) -> BTreeSet<Host> {
    let (sources, destinations) =
        repositories_of(mappings.iter().filter_map(Mapping::named), |_| true);
    let mut hosts: BTreeSet<Host> = sources
        .iter()
        .chain(&destinations)
        .filter(|r| !r.on_disk())
        .map(|r| r.registry().clone())
        .collect();
    // Repository wildcards name no repository until listed: their hosts.
    for m in mappings {
        if let Mapping::Repositories {
            source, targets, ..
        } = m
        {
            hosts.insert(source.value.registry().clone());
            hosts.extend(targets.iter().map(|t| t.value.registry().clone()));
        }
    }
    hosts
}

/// The source and the destination repositories the mappings name ([`Mapping::named`] before
/// repository wildcards are expanded, [`expanded::ExpandedMapping::named`] after): every destination
/// `owned` keeps (a shard's), and the sources of those, each set sorted.
pub fn repositories_of<'a>(
    named: impl IntoIterator<Item = Named<'a>>,
    owned: impl Fn(&Repository) -> bool,
) -> (BTreeSet<Repository>, BTreeSet<Repository>) {
    let mut sources = BTreeSet::new();
    let mut destinations = BTreeSet::new();
    for Named {
        source,
        destinations: targets,
    } in named
    {
        let mut any = false;
        for target in targets.filter(|t| owned(t)) {
            destinations.insert(target.clone());
            any = true;
        }
        if any {
            sources.insert(source.clone());
        }
    }
    (sources, destinations)
}
