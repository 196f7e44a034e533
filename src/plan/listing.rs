//! What planning needs listed before it can run, and what a failed listing costs: the
//! repository listings repository wildcards need (a registry, a lister, a prefix; each once),
//! the lister a registry gets unless the line names one, the wildcard sources whose tags are
//! needed, and a failed listing charged to the lines that needed it. Pure: the caller lists.

use crate::inputs::expanded::ExpandedMapping;
use crate::inputs::mapping::Mapping;
use crate::model::diagnostics::Location;
use crate::model::failure::Failure;
use crate::model::reference::{Host, Repository};
use crate::model::repo_pattern::RepoPattern;
use crate::model::rules::{LineRules, Lister};

/// One listing of a registry's repositories: the registry, the lister, the path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listing {
    pub host: Host,
    pub lister: Lister,
    pub prefix: String,
}

impl Listing {
    /// What a repository wildcard with these rules needs listed.
    pub fn of(source: &RepoPattern, rules: &LineRules) -> Listing {
        let host = source.registry().clone();
        Listing {
            lister: rules.repos.lister.unwrap_or_else(|| default_lister(&host)),
            prefix: source.literal_prefix().to_owned(),
            host,
        }
    }
}

/// The lister a registry gets unless the line names one: the two big public registries have
/// APIs of their own (neither serves the catalog), every other one the catalog.
pub fn default_lister(host: &Host) -> Lister {
    match host.as_str() {
        "docker.io" => Lister::DockerHub,
        "quay.io" => Lister::Quay,
        _ => Lister::Catalog,
    }
}

/// The repository listings the repository wildcards need, each once, in the order of the
/// lines.
pub fn listings_wanted(mappings: &[Mapping]) -> Vec<Listing> {
    let mut wanted: Vec<Listing> = Vec::new();
    for m in mappings {
        if let Mapping::Repositories { source, rules, .. } = m {
            let listing = Listing::of(&source.value, rules);
            if !wanted.contains(&listing) {
                wanted.push(listing);
            }
        }
    }
    wanted
}

/// The repositories whose tags must be listed before planning, each once, sorted.
pub fn wildcard_sources(mappings: &[ExpandedMapping]) -> Vec<Repository> {
    let mut repos: Vec<Repository> = mappings
        .iter()
        .filter_map(|m| match m {
            ExpandedMapping::Wildcard { repository, .. } => Some(repository.value.clone()),
            ExpandedMapping::Image { .. } => None,
        })
        .collect();
    repos.sort();
    repos.dedup();
    repos
}

/// A wildcard whose tags could not be listed: every copy it would have made failed.
#[derive(Debug, Clone)]
pub struct ListingFailure {
    pub origin: Location,
    /// The wildcard source as its line writes it: `repository:tag-pattern`, or a repository
    /// pattern.
    pub source: String,
    pub error: Failure,
}

/// `repository`'s tags could not be listed: a failure for each wildcard line of it.
pub fn tags_unlisted(
    mappings: &[ExpandedMapping],
    repository: &Repository,
    error: &Failure,
) -> Vec<ListingFailure> {
    mappings
        .iter()
        .filter_map(|m| match m {
            ExpandedMapping::Wildcard {
                repository: r,
                pattern,
                ..
            } if r.value == *repository => Some(ListingFailure {
                origin: m.location().clone(),
                source: format!("{repository}:{}", pattern.as_str()),
                error: error.clone(),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;
    use crate::model::reference::parse_name;
    use std::sync::Arc;

    fn expanded(text: &str) -> Vec<ExpandedMapping> {
        parse_text(&Arc::from("m"), text)
            .mappings
            .into_iter()
            .filter_map(|m| ExpandedMapping::of(m).ok())
            .collect()
    }

    #[test]
    fn wildcard_sources_are_listed_once() {
        let m = expanded("s.io/a:v1.* d.io/r\ns.io/a:v2.* d.io/q\ns.io/b:x d.io/b:x\n");
        let want = parse_name("s.io/a").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wildcard_sources(&m), [want]);
    }

    #[test]
    fn each_listing_is_wanted_once_with_the_registrys_lister() {
        let text = "quay.io/team/*:v1 d.io/q/*\nquay.io/team/* d.io/r/*\n\
                    docker.io/team/* d.io/s/*\nreg.io/a/* d.io/t/*  # image-mirror: lister=quay\n";
        let mappings = parse_text(&Arc::from("m"), text).mappings;
        let wanted: Vec<(String, &str, String)> = listings_wanted(&mappings)
            .into_iter()
            .map(|l| (l.host.to_string(), l.lister.name(), l.prefix))
            .collect();
        assert_eq!(
            wanted,
            [
                ("quay.io".to_owned(), "quay", "team/".to_owned()),
                ("docker.io".to_owned(), "dockerhub", "team/".to_owned()),
                ("reg.io".to_owned(), "quay", "a/".to_owned()),
            ]
        );
    }
}
