//! From mappings and the tags listed for wildcard sources to batches of copies, one batch per
//! destination repository. Pure: the listing happened before.

pub mod listing;
pub mod repositories;
pub mod select;
pub mod shard;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

pub use self::listing::{ListingFailure, wildcard_sources};
pub use self::repositories::{
    Expanded, RepositoryMatch, WildcardRepositories, expand_all, tags_per_repository,
};
pub use self::select::{Excluded, Selection, select};
pub use self::shard::Shard;

use crate::inputs::conflicts::{FirstWrites, Origin, second_write};
use crate::inputs::expanded::ExpandedMapping;
use crate::model::diagnostics::{Diagnostic, Location};
use crate::model::image::{SourceImage, Target};
use crate::model::reference::{ManifestRef, Repository, Tag};
use crate::model::rules::LineRules;

/// One image to one destination tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyJob {
    pub source: SourceImage,
    pub destination: Target,
    /// The mapping line this copy comes from.
    pub origin: Location,
    /// What that line's options say (immutable tags, platforms).
    pub rules: Arc<LineRules>,
}

impl CopyJob {
    /// The platforms to keep of an index, and how the filter was written: the line's
    /// `platforms=`, else `--filter-by-os` (given as `filter_by_os`). `None`: no rewrite.
    pub fn platform_filter(
        &self,
        filter_by_os: Option<&regex::Regex>,
    ) -> Option<(Arc<regex::Regex>, String)> {
        if let Some(p) = &self.rules.platforms {
            return Some((
                p.matcher.clone(),
                format!("platforms={}", p.listed.join(",")),
            ));
        }
        let re = filter_by_os?;
        Some((
            Arc::new(re.clone()),
            format!("--filter-by-os {:?}", re.as_str()),
        ))
    }
}

/// Every copy into one destination repository: the unit of progress and reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub repository: Repository,
    pub jobs: Vec<CopyJob>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Batch>,
    /// What the rules of each wildcard line with rules chose, and why they left tags out.
    pub selections: Vec<LineSelection>,
}

/// The tags one wildcard line chose among those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSelection {
    pub origin: Location,
    pub repository: Repository,
    pub selection: Selection,
}

impl Plan {
    pub fn job_count(&self) -> usize {
        self.batches.iter().map(|b| b.jobs.len()).sum()
    }
}

/// Expands wildcards against `listed` (the tags of each wildcard source repository; a
/// repository missing from it is skipped: its listing failed and is reported by the caller)
/// and groups the copies. Errors: a destination tag written from two different sources.
pub fn plan(
    mappings: &[ExpandedMapping],
    listed: &HashMap<Repository, Vec<String>>,
) -> (Plan, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut selections = Vec::new();
    let mut batches = Batches::default();
    for mapping in mappings {
        match mapping {
            ExpandedMapping::Image {
                source, targets, ..
            } => {
                for target in targets {
                    let job = CopyJob {
                        source: source.value.clone(),
                        destination: target.value.clone(),
                        origin: source.location.clone(),
                        rules: mapping.rules().clone(),
                    };
                    batches.add(job, &mut diagnostics);
                }
            }
            ExpandedMapping::Wildcard {
                repository,
                pattern,
                targets,
                rules,
            } => {
                let Some(tags) = listed.get(&repository.value) else {
                    continue;
                };
                let selection = select(tags, pattern, &rules.tags);
                let mut matched = 0;
                for tag in &selection.selected {
                    let Ok(tag) = Tag::parse(tag) else {
                        diagnostics.push(Diagnostic::warning(
                            repository.location.clone(),
                            format!("{} lists an invalid tag {tag:?}; skipped", repository.value),
                        ));
                        continue;
                    };
                    matched += 1;
                    let source = SourceImage::tagged(repository.value.clone(), tag.clone());
                    for target in targets {
                        let destination = Target {
                            repository: target.value.clone(),
                            reference: ManifestRef::Tag(tag.clone()),
                        };
                        batches.add(
                            CopyJob {
                                source: source.clone(),
                                destination,
                                origin: repository.location.clone(),
                                rules: rules.clone(),
                            },
                            &mut diagnostics,
                        );
                    }
                }
                if matched == 0 && rules.tags.is_empty() {
                    diagnostics.push(Diagnostic::warning(
                        repository.location.clone(),
                        format!(
                            "{}:{} matches no tag ({} listed)",
                            repository.value,
                            pattern.as_str(),
                            crate::plural::count(tags.len(), "tag")
                        ),
                    ));
                } else if matched == 0 {
                    diagnostics.push(Diagnostic::warning(
                        repository.location.clone(),
                        format!(
                            "{}:{} with `{}` selects no tag ({} listed, {} left out by the rules)",
                            repository.value,
                            pattern.as_str(),
                            rules.written,
                            crate::plural::count(tags.len(), "tag"),
                            selection.excluded.len()
                        ),
                    ));
                }
                if !rules.tags.is_empty() {
                    selections.push(LineSelection {
                        origin: repository.location.clone(),
                        repository: repository.value.clone(),
                        selection,
                    });
                }
            }
        }
    }
    (
        Plan {
            batches: batches.sorted(),
            selections,
        },
        diagnostics,
    )
}

/// The copies planned so far, grouped by destination repository as they come, each
/// destination once. Grouped and indexed rather than kept in one ordered map of every copy:
/// for 137,000 copies that map took 57 MB and a third of the planning time. The indexes hold
/// places, not keys: a copy's destination is read from the copy itself.
#[derive(Default)]
struct Batches {
    batches: Vec<Batch>,
    hasher: RandomState,
    /// Each destination repository's batch (its index), by the repository's hash.
    by_repository: HashTable<usize>,
    /// Each copy, as its batch and its place there, by its batch and destination tag (or
    /// digest): the first write of each destination, by the rule `check` applies.
    by_destination: FirstWrites<(usize, usize)>,
}

/// Up to how many copies a batch grows one at a time.
const SMALL_BATCH: usize = 8;

impl Batches {
    /// Adds `job`, unless its destination is planned already: from the same content that is
    /// a harmless duplicate (the first is kept), from other content a conflict.
    fn add(&mut self, job: CopyJob, diagnostics: &mut Vec<Diagnostic>) {
        let batch = self.batch(&job.destination.repository);
        let Batches {
            batches,
            by_destination,
            ..
        } = self;
        let place = (batch, batches[batch].jobs.len());
        let key_of = |(b, j): (usize, usize)| {
            let jobs: &Vec<CopyJob> = &batches[b].jobs;
            jobs.get(j).map(|job| (b, &job.destination.reference))
        };
        let key = (batch, &job.destination.reference);
        if let Some((b, j)) = by_destination.first(&key, place, key_of) {
            let first = &batches[b].jobs[j];
            // A duplicate (the same content) keeps the first copy, unsaid: after expansion a
            // wildcard and a line naming one of its tags often agree.
            let verdict = second_write(
                &job.destination,
                Origin::Image(&job.source),
                &job.origin,
                Origin::Image(&first.source),
                &first.origin,
            );
            if verdict.is_error() {
                diagnostics.push(verdict);
            }
            return;
        }
        let jobs = &mut batches[batch].jobs;
        // Most batches hold a few copies (a repository per line): grown one at a time, they
        // keep no room for four (a Vec's first growth; 5 MB of bench/parse.sh's plan).
        if jobs.len() == jobs.capacity() && jobs.len() < SMALL_BATCH {
            jobs.reserve_exact(1);
        }
        jobs.push(job);
    }

    /// The index of `repository`'s batch, a new one if it has none yet.
    fn batch(&mut self, repository: &Repository) -> usize {
        let Batches {
            batches,
            hasher,
            by_repository,
            ..
        } = self;
        let hash = hasher.hash_one(repository);
        if let Some(&found) = by_repository.find(hash, |&b| batches[b].repository == *repository) {
            return found;
        }
        by_repository.insert_unique(hash, batches.len(), |&b| {
            hasher.hash_one(&batches[b].repository)
        });
        batches.push(Batch {
            repository: repository.clone(),
            jobs: Vec::with_capacity(1),
        });
        batches.len() - 1
    }

    /// The batches in destination repository order, each one's copies in destination order.
    fn sorted(self) -> Vec<Batch> {
        let mut batches = self.batches;
        batches.sort_unstable_by(|a, b| a.repository.cmp(&b.repository));
        for batch in &mut batches {
            batch
                .jobs
                .sort_unstable_by(|a, b| a.destination.reference.cmp(&b.destination.reference));
            batch.jobs.shrink_to_fit();
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;
    use crate::model::reference::parse_name;
    use std::sync::Arc;

    fn mappings(text: &str) -> Vec<ExpandedMapping> {
        let p = parse_text(&Arc::from("m"), text);
        assert!(
            p.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            p.diagnostics
        );
        let expanded = repositories::expand_all(p.mappings, &HashMap::new());
        expanded.mappings
    }

    fn repo(s: &str) -> Repository {
        parse_name(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn listing(repo_name: &str, tags: &[&str]) -> HashMap<Repository, Vec<String>> {
        HashMap::from([(
            repo(repo_name),
            tags.iter().map(|t| t.to_string()).collect(),
        )])
    }

    #[test]
    fn wildcards_expand_to_matching_tags_in_every_target() {
        let m = mappings("src.io/a/app:v1.* dst.io/x/app dst2.io/y/app:*\n");
        let (plan, diags) = plan(
            &m,
            &listing("src.io/a/app", &["v1.0", "v1.1", "v2.0", "latest"]),
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(plan.batches.len(), 2);
        let tags: Vec<_> = plan.batches[0]
            .jobs
            .iter()
            .map(|j| j.destination.to_string())
            .collect();
        assert_eq!(tags, ["dst.io/x/app:v1.0", "dst.io/x/app:v1.1"]);
        assert_eq!(plan.job_count(), 4);
        assert_eq!(plan.batches[0].jobs[0].origin.line, 1);
    }

    #[test]
    fn batches_group_by_destination_repository() {
        let m = mappings("s.io/a:1 d.io/r:1 d.io/q:1\ns.io/b:2 d.io/r:2\n");
        let (plan, _) = plan(&m, &HashMap::new());
        let repos: Vec<_> = plan
            .batches
            .iter()
            .map(|b| (b.repository.to_string(), b.jobs.len()))
            .collect();
        assert_eq!(repos, [("d.io/q".to_owned(), 1), ("d.io/r".to_owned(), 2)]);
    }

    #[test]
    fn expanded_conflicts_are_errors_and_duplicates_merge() {
        let m = mappings("s.io/a:* d.io/r\ns.io/b:v1 d.io/r:v1\ns.io/a:v2 d.io/r:v2\n");
        let (plan, diags) = plan(&m, &listing("s.io/a", &["v1", "v2"]));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].is_error());
        assert!(
            diags[0]
                .to_string()
                .starts_with("m:2:1: error: d.io/r:v1 is written by two different sources")
        );
        assert_eq!(plan.job_count(), 2);
    }

    #[test]
    fn copies_come_in_destination_order_and_the_first_of_a_duplicate_stays() {
        let d = format!("sha256:{}", "e".repeat(64));
        let m = mappings(&format!(
            "s.io/z:v9 d.io/r:v9\n\
             s.io/a:* d.io/r d.io/b\n\
             s.io/p@{d} d.io/b\n\
             s.io/a:v2 d.io/r:v2\n\
             s.io/a:v1 d.io/b:v1\n"
        ));
        let (plan, diags) = plan(&m, &listing("s.io/a", &["v2", "v1", "v10"]));
        assert!(diags.is_empty(), "{diags:?}");
        let shown: Vec<(String, u32)> = plan
            .batches
            .iter()
            .flat_map(|b| &b.jobs)
            .map(|j| (j.destination.to_string(), j.origin.line))
            .collect();
        let want = [
            ("d.io/b:v1", 2),
            ("d.io/b:v10", 2),
            ("d.io/b:v2", 2),
            (&*format!("d.io/b@{d}"), 3),
            ("d.io/r:v1", 2),
            ("d.io/r:v10", 2),
            // Written by lines 2 and 4 from the same image: line 2 planned it first.
            ("d.io/r:v2", 2),
            ("d.io/r:v9", 1),
        ];
        let want: Vec<(String, u32)> = want.iter().map(|(t, l)| (t.to_string(), *l)).collect();
        assert_eq!(shown, want);
        assert_eq!(plan.batches.len(), 2);
    }

    #[test]
    fn a_wildcard_matching_nothing_warns() {
        let m = mappings("s.io/a:v9.* d.io/r\n");
        let (plan, diags) = plan(&m, &listing("s.io/a", &["v1"]));
        assert_eq!(plan.job_count(), 0);
        assert_eq!(diags.len(), 1);
        assert!(!diags[0].is_error() && diags[0].message.contains("matches no tag"));
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_plan() {
        let text: String = (0..200)
            .map(|i| format!("s.io/a:{i} d.io/team{}/app{i}:{i}\n", i % 7))
            .collect();
        let (full, _) = plan(&mappings(&text), &HashMap::new());
        assert_eq!(full.batches.len(), 200);
        for count in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            for index in 0..count {
                let part = full
                    .clone()
                    .shard(Shard::new(index, count).unwrap_or_else(|e| panic!("{e}")));
                assert!(
                    count == 1 || part.batches.len() < full.batches.len(),
                    "shard {index}/{count} took everything"
                );
                seen.extend(part.batches.into_iter().map(|b| b.repository));
            }
            seen.sort();
            let before = seen.len();
            seen.dedup();
            assert_eq!(before, seen.len(), "a batch is in two shards of {count}");
            assert_eq!(
                seen.len(),
                full.batches.len(),
                "shards of {count} miss batches"
            );
        }
    }
}
