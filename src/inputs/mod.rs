//! Finding mapping files, parsing them in parallel, and the checks that span files.

pub mod diff;
pub mod import;
pub mod mapping;
pub mod options;
pub mod repositories;

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashTable;
use rayon::prelude::*;

use self::mapping::{Mapping, ParsedLine, parse_text};
use crate::model::diagnostics::{Diagnostic, Location};
use crate::model::image::{SourceImage, Target};
use crate::model::reference::{Host, ManifestRef, Repository};

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
    set.diagnostics.extend(cross_checks(&set.mappings));
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

/// The identity of what a destination receives, to tell a conflict from a duplicate.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Image(&'a SourceImage),
    Wildcard(&'a Repository),
}

impl Origin<'_> {
    fn same_as(&self, other: &Origin) -> bool {
        match (self, other) {
            (Origin::Image(a), Origin::Image(b)) => a.same_content_as(b),
            (Origin::Wildcard(a), Origin::Wildcard(b)) => a == b,
            _ => false,
        }
    }
}

/// What a mapping writes into a destination repository: a tag (or digest), or a pattern's
/// tags.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Written<'a> {
    Target(&'a ManifestRef),
    Pattern(&'a str),
}

/// One write of a destination: what it writes where, from which origin, at which place in
/// the files.
struct TargetWrite<'a> {
    key: (&'a Repository, Written<'a>),
    origin: Origin<'a>,
    location: &'a Location,
}

/// The `target`-th destination `mapping` writes, if it has one (repository wildcards have
/// none: checked once expanded, by the planner).
fn write_of(mapping: &Mapping, target: usize) -> Option<TargetWrite<'_>> {
    match mapping {
        Mapping::Repositories { .. } => None,
        Mapping::Image {
            source, targets, ..
        } => targets.get(target).map(|t| TargetWrite {
            key: (&t.value.repository, Written::Target(&t.value.reference)),
            origin: Origin::Image(&source.value),
            location: &t.location,
        }),
        Mapping::Wildcard {
            repository,
            pattern,
            targets,
            ..
        } => targets.get(target).map(|t| TargetWrite {
            key: (&t.value, Written::Pattern(pattern.as_str())),
            origin: Origin::Wildcard(&repository.value),
            location: &t.location,
        }),
    }
}

/// Destination tags (or, for wildcards, destination repository + pattern) written twice:
/// from different sources it is a conflict, from the same source a harmless duplicate.
/// The index of first writes holds places (mapping, target), not keys: a key is read from
/// the mapping, and a destination's text is made only for a diagnostic. A 100,000-line check
/// allocates nothing here per line, and the index takes 16 bytes a destination (its keys
/// and origins took 56).
pub fn cross_checks(mappings: &[Mapping]) -> Vec<Diagnostic> {
    let hasher = foldhash::fast::RandomState::default();
    let hash = |key: &(&Repository, Written)| hasher.hash_one(key);
    let first = |&(m, t): &(usize, usize)| write_of(&mappings[m], t);
    let mut seen: HashTable<(usize, usize)> = HashTable::with_capacity(mappings.len());
    let mut out = Vec::new();
    for (m, mapping) in mappings.iter().enumerate() {
        let mut t = 0;
        while let Some(write) = write_of(mapping, t) {
            let found = seen.find(hash(&write.key), |at| {
                first(at).is_some_and(|w| w.key == write.key)
            });
            match found.and_then(first) {
                Some(earlier) => out.push(conflict_or_duplicate(&write, &earlier)),
                None => {
                    seen.insert_unique(hash(&write.key), (m, t), |at| {
                        first(at).map_or(0, |w| hash(&w.key))
                    });
                }
            }
            t += 1;
        }
    }
    out
}

/// What is wrong with `write` writing what `first` wrote before.
fn conflict_or_duplicate(write: &TargetWrite, first: &TargetWrite) -> Diagnostic {
    let (repository, written) = write.key;
    let shown = match written {
        Written::Target(r) => Target {
            repository: repository.clone(),
            reference: r.clone(),
        }
        .to_string(),
        Written::Pattern(p) => format!("{repository}:{p}"),
    };
    let first_location = first.location;
    if first.origin.same_as(&write.origin) {
        Diagnostic::warning(
            write.location.clone(),
            format!("duplicate mapping to {shown} (also at {first_location})"),
        )
    } else {
        Diagnostic::error(
            write.location.clone(),
            format!(
                "{shown} is written by two different sources: {} here and {} at {first_location}",
                describe(&write.origin),
                describe(&first.origin)
            ),
        )
    }
}

fn describe(origin: &Origin) -> String {
    match origin {
        Origin::Image(i) => i.to_string(),
        Origin::Wildcard(r) => format!("{r} (wildcard)"),
    }
}

/// Every registry host the mappings read from or write to.
pub fn registries_of(mappings: &[Mapping]) -> BTreeSet<Host> {
    let (sources, destinations) = repositories_of(mappings);
    let mut hosts: BTreeSet<Host> = sources
        .iter()
        .chain(&destinations)
        .filter(|r| !r.on_disk())
        .map(|r| r.registry().clone())
        .collect();
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

/// Every source repository and every destination repository the mappings name (wildcard
/// sources by their repository), each set sorted.
pub fn repositories_of(mappings: &[Mapping]) -> (BTreeSet<Repository>, BTreeSet<Repository>) {
    let mut sources = BTreeSet::new();
    let mut destinations = BTreeSet::new();
    for m in mappings {
        match m {
            Mapping::Image {
                source, targets, ..
            } => {
                sources.insert(source.value.repository.clone());
                destinations.extend(targets.iter().map(|t| t.value.repository.clone()));
            }
            Mapping::Wildcard {
                repository,
                targets,
                ..
            } => {
                sources.insert(repository.value.clone());
                destinations.extend(targets.iter().map(|t| t.value.clone()));
            }
            // Not repositories until listed: `registries_of` takes their hosts.
            Mapping::Repositories { .. } => {}
        }
    }
    (sources, destinations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> Vec<Diagnostic> {
        let mut mappings = Vec::new();
        for (name, text) in files {
            let p = parse_text(&Arc::from(*name), text);
            mappings.extend(p.mappings);
        }
        cross_checks(&mappings)
    }

    #[test]
    fn conflicts_across_files_name_both_places() {
        let d = set(&[
            ("a", "quay.io/x/one:v1 reg.io/t/app:v1\n"),
            ("b", "\nquay.io/x/two:v1 reg.io/t/app\n"),
        ]);
        assert_eq!(d.len(), 1);
        let text = d[0].to_string();
        assert!(
            text.starts_with("b:2:18: error: reg.io/t/app:v1 is written by two different sources"),
            "{text}"
        );
        assert!(text.contains("a:1:18"), "{text}");
    }

    #[test]
    fn one_digest_named_two_ways_is_a_duplicate() {
        let d = format!("sha256:{}", "d".repeat(64));
        let text = format!("quay.io/a/b:v1@{d} reg.io/x/b:v1\nquay.io/a/b@{d} reg.io/x/b:v1\n");
        let diags = set(&[("a", &text)]);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(!diags[0].is_error(), "{diags:?}");
    }

    #[test]
    fn hosts_differing_in_case_conflict() {
        let diags = set(&[(
            "a",
            "quay.io/a/b:v1 Reg.io/x/b:v1\nquay.io/c/d:v1 reg.io/x/b:v1\n",
        )]);
        assert!(diags.iter().any(|d| d.is_error()), "{diags:?}");
    }

    #[test]
    fn conflicts_are_found_among_many_destinations_of_one_line() {
        // Far more destinations than mappings: the index grows while it is filled.
        let many: Vec<String> = (0..300).map(|i| format!("reg.io/t/app:v{i}")).collect();
        let text = format!(
            "quay.io/x/one:v1 {}\nquay.io/x/two:v1 reg.io/t/app:v0 reg.io/t/app:v299\n",
            many.join(" ")
        );
        let d = set(&[("a", &text)]);
        let shown: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0]
                .starts_with("a:2:18: error: reg.io/t/app:v0 is written by two different sources"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("reg.io/t/app:v299 is written by two")
                && shown[1].contains("at a:1:"),
            "{shown:?}"
        );
    }

    #[test]
    fn exact_duplicates_are_warnings() {
        let d = set(&[(
            "a",
            "quay.io/x/one:v1 reg.io/t/app:v1\nquay.io/x/one:v1=reg.io/t/app:v1\n",
        )]);
        assert_eq!(d.len(), 1);
        assert!(!d[0].is_error());
        assert!(d[0].to_string().contains("duplicate"));
    }

    #[test]
    fn same_wildcard_into_one_repository_from_two_sources_conflicts() {
        let d = set(&[(
            "a",
            "quay.io/x/one:* reg.io/t/app\nquay.io/x/two reg.io/t/app:*\n",
        )]);
        assert_eq!(d.iter().filter(|d| d.is_error()).count(), 1, "{d:?}");
        // Different patterns may well be disjoint: decided after the tags are listed.
        assert!(
            set(&[(
                "a",
                "quay.io/x/one:v1.* reg.io/t/app\nquay.io/x/two:v2.* reg.io/t/app\n"
            )])
            .is_empty()
        );
    }
}
