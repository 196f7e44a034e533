//! Repository wildcards expanded against the repositories their registry listed: each
//! matching repository becomes a tag wildcard into the destinations filled with what the
//! source's `*`s matched. Pure: the listing happened before ([`super::listing`] says what to
//! list).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Plan;
use super::listing::{Listing, ListingFailure};
use crate::inputs::expanded::ExpandedMapping;
use crate::inputs::mapping::Mapping;
use crate::model::diagnostics::{Diagnostic, Located, Location};
use crate::model::failure::Failure;
use crate::model::reference::Repository;

/// The mappings with every repository wildcard replaced by the tag wildcards it expands to.
#[derive(Debug, Default)]
pub struct Expanded {
    pub mappings: Vec<ExpandedMapping>,
    /// The repository wildcards whose registry could not be listed.
    pub failures: Vec<ListingFailure>,
    pub diagnostics: Vec<Diagnostic>,
    /// Per repository wildcard: the repositories it matched.
    pub matches: Vec<RepositoryMatch>,
}

/// The repositories one repository wildcard matched.
#[derive(Debug, Clone)]
pub struct RepositoryMatch {
    pub origin: Location,
    pub pattern: String,
    pub repositories: Vec<Repository>,
}

/// The repositories one repository wildcard matched, with the source tags each brings.
#[derive(Debug, Clone)]
pub struct WildcardRepositories {
    pub origin: Location,
    pub pattern: String,
    pub repositories: Vec<(Repository, usize)>,
}

/// For each repository wildcard, its repositories and how many source tags the plan copies
/// from each (its copies counted once per tag, however many destinations they have).
pub fn tags_per_repository(matched: &[RepositoryMatch], plan: &Plan) -> Vec<WildcardRepositories> {
    let mut tags: HashMap<&Repository, HashSet<&str>> = HashMap::new();
    for job in plan.batches.iter().flat_map(|b| &b.jobs) {
        if let Some(tag) = job.source.tag() {
            tags.entry(&job.source.repository)
                .or_default()
                .insert(tag.as_str());
        }
    }
    matched
        .iter()
        .map(|m| WildcardRepositories {
            origin: m.origin.clone(),
            pattern: m.pattern.clone(),
            repositories: m
                .repositories
                .iter()
                .map(|r| (r.clone(), tags.get(r).map_or(0, HashSet::len)))
                .collect(),
        })
        .collect()
}

/// Every repository wildcard expanded against what its listing ([`Listing::of`]) found in
/// `listed`; one whose listing failed is a failure of its line, one missing from `listed`
/// is dropped. The other mappings come through as they are, moved, not copied: at 100,000
/// lines a copy of them all is tens of megabytes.
pub fn expand_all(
    mappings: Vec<Mapping>,
    listed: &HashMap<Listing, Result<Vec<String>, Failure>>,
) -> Expanded {
    let mut out = Expanded {
        mappings: Vec::with_capacity(mappings.len()),
        ..Expanded::default()
    };
    for m in mappings {
        let m = match ExpandedMapping::of(m) {
            Ok(expanded) => {
                out.mappings.push(expanded);
                continue;
            }
            Err(m) => m,
        };
        let Mapping::Repositories { source, rules, .. } = &*m else {
            continue;
        };
        let listing = Listing::of(&source.value, rules);
        match listed.get(&listing) {
            Some(Ok(paths)) => expand_listed(&m, &listing, paths, &mut out),
            Some(Err(error)) => out.failures.push(ListingFailure {
                origin: source.location.clone(),
                source: source.value.to_string(),
                error: error.clone(),
            }),
            None => {}
        }
    }
    out
}

/// One repository wildcard expanded against the `paths` its listing found, into `out`.
fn expand_listed(mapping: &Mapping, listing: &Listing, paths: &[String], out: &mut Expanded) {
    let Mapping::Repositories { source, .. } = mapping else {
        return;
    };
    let (expanded, diagnostics) = expand(mapping, paths);
    let repositories: Vec<Repository> = expanded
        .iter()
        .filter_map(|e| match e {
            ExpandedMapping::Wildcard { repository, .. } => Some(repository.value.clone()),
            ExpandedMapping::Image { .. } => None,
        })
        .collect();
    tracing::info!(pattern = %source.value, origin = %source.location, lister = listing.lister.name(), repositories = repositories.len(), "repository wildcard matched");
    if repositories.is_empty() {
        out.diagnostics.push(Diagnostic::warning(
            source.location.clone(),
            format!(
                "{} matches no repository ({} listed by the {} lister)",
                source.value,
                paths.len(),
                listing.lister.name()
            ),
        ));
    }
    out.matches.push(RepositoryMatch {
        origin: source.location.clone(),
        pattern: source.value.to_string(),
        repositories,
    });
    out.mappings.extend(expanded);
    out.diagnostics.extend(diagnostics);
}

/// The wildcards one repository wildcard makes of `listed` (repository paths of its
/// registry), in the order listed; repositories whose destination would be no valid name
/// are errors. Other mappings make none.
pub fn expand(mapping: &Mapping, listed: &[String]) -> (Vec<ExpandedMapping>, Vec<Diagnostic>) {
    let Mapping::Repositories {
        source,
        pattern,
        targets,
        rules,
    } = mapping
    else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::new();
    let mut diagnostics = Vec::new();
    for path in listed {
        let Some(captures) = source.value.captures(path) else {
            continue;
        };
        if let Some(re) = &rules.repos.regex
            && !re.is_match(path)
        {
            continue;
        }
        let repository = match crate::model::reference::parse_name(&format!(
            "{}/{path}",
            source.value.registry()
        )) {
            Ok(r) => r,
            Err(e) => {
                diagnostics.push(Diagnostic::warning(
                    source.location.clone(),
                    format!(
                        "{} lists an invalid repository {path:?} ({e}); skipped",
                        source.value.registry()
                    ),
                ));
                continue;
            }
        };
        let mut filled: Vec<Located<Repository>> = Vec::new();
        for t in targets {
            match t.value.fill(&captures) {
                Ok(r) => filled.push(Located {
                    value: r,
                    location: t.location.clone(),
                }),
                Err(e) => diagnostics.push(Diagnostic::error(
                    t.location.clone(),
                    format!(
                        "{repository} would go to {}, which is no repository: {e}",
                        t.value
                    ),
                )),
            }
        }
        if filled.len() != targets.len() {
            continue;
        }
        out.push(ExpandedMapping::Wildcard {
            repository: Located {
                value: repository,
                location: source.location.clone(),
            },
            pattern: pattern.clone(),
            targets: filled,
            rules: Arc::clone(rules),
        });
    }
    (out, diagnostics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;

    fn one(text: &str) -> Mapping {
        let p = parse_text(&Arc::from("m"), text);
        assert!(
            p.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            p.diagnostics
        );
        p.mappings
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no mapping"))
    }

    fn listed(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    fn pairs(mappings: &[ExpandedMapping]) -> Vec<(String, String)> {
        mappings
            .iter()
            .map(|m| match m {
                ExpandedMapping::Wildcard {
                    repository,
                    targets,
                    ..
                } => (repository.value.to_string(), targets[0].value.to_string()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn matching_repositories_are_rerooted() {
        let m = one("src.io/team/*:v1.* dst.io/ecr/team/*\n");
        let (out, diags) = expand(&m, &listed(&["team/a", "team/b", "other/c", "team/x/y"]));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            pairs(&out),
            [
                ("src.io/team/a".into(), "dst.io/ecr/team/a".into()),
                ("src.io/team/b".into(), "dst.io/ecr/team/b".into())
            ]
        );
        let deep = one("src.io/team/** dst.io/all/**\n");
        let (out, _) = expand(&deep, &listed(&["team/x/y", "team/a"]));
        assert_eq!(
            pairs(&out)[0],
            ("src.io/team/x/y".into(), "dst.io/all/x/y".into())
        );
        assert_eq!(out.len(), 2);
    }

    /// Two repository wildcards writing the same destination tag from different sources
    /// conflict once expanded, as two tag wildcards would.
    #[test]
    fn expanded_destinations_are_checked_for_conflicts() {
        let a = one("src.io/team/* dst.io/m/*\n");
        let b = one("other.io/team/* dst.io/m/*\n");
        let listed_paths = listed(&["team/app"]);
        let (mut mappings, _) = expand(&a, &listed_paths);
        mappings.extend(expand(&b, &listed_paths).0);
        let tags = std::collections::HashMap::from([
            (
                crate::model::reference::parse_name("src.io/team/app")
                    .unwrap_or_else(|e| panic!("{e}")),
                vec!["v1".to_owned()],
            ),
            (
                crate::model::reference::parse_name("other.io/team/app")
                    .unwrap_or_else(|e| panic!("{e}")),
                vec!["v1".to_owned()],
            ),
        ]);
        let (_, diagnostics) = crate::plan::plan(&mappings, &tags);
        assert!(
            diagnostics.iter().any(|d| d.is_error()
                && d.message
                    .contains("dst.io/m/app:v1 is written by two different sources")),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn repos_regex_filters_further() {
        let m = one("src.io/team/* dst.io/t/*  # image-mirror: repos-regex=\"-(api|web)$\"\n");
        let (out, _) = expand(&m, &listed(&["team/a-api", "team/a-db", "team/b-web"]));
        assert_eq!(out.len(), 2);
    }
}
