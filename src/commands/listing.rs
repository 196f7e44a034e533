//! What `run` asks registries before it can plan: the repositories each repository wildcard
//! matches (through the line's lister), then the tags of every wildcard source. Read-only;
//! a repository or tag list that cannot be had fails its lines, not the run.

use std::collections::HashMap;

use crate::inputs::mapping::Mapping;
use crate::model::diagnostics::{Diagnostic, Location};
use crate::model::failure::Failure;
use crate::model::reference::{Host, Repository};
use crate::model::rules::Lister;
use crate::plan::repositories::expand;
use crate::plan::wildcard_sources;
use crate::registry::Registries;
use crate::report::outcome::ListingFailure;
use crate::store::Stores;

/// The mappings with every repository wildcard replaced by the tag wildcards it expands to.
pub struct Expanded {
    pub mappings: Vec<Mapping>,
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

/// The lister a registry gets unless the line names one.
fn default_lister(host: &Host) -> Lister {
    match host.as_str() {
        "docker.io" => Lister::DockerHub,
        "quay.io" => Lister::Quay,
        _ => Lister::Catalog,
    }
}

/// Lists the repositories of every repository wildcard (each registry, lister and prefix
/// once, concurrently) and expands the wildcards.
pub async fn expand_repository_wildcards(
    registries: &Registries,
    mappings: Vec<Mapping>,
) -> Expanded {
    let mut wanted: Vec<(Host, Lister, String)> = Vec::new();
    for m in &mappings {
        if let Mapping::Repositories { source, rules, .. } = m {
            let host = source.value.registry().clone();
            let lister = rules.repos.lister.unwrap_or_else(|| default_lister(&host));
            let key = (host, lister, source.value.literal_prefix().to_owned());
            if !wanted.contains(&key) {
                wanted.push(key);
            }
        }
    }
    let results =
        futures_util::future::join_all(wanted.iter().map(|(host, lister, prefix)| async move {
            let client = registries.client(host).await?;
            client.list_repositories_with(*lister, prefix).await
        }))
        .await;
    let listed: HashMap<&(Host, Lister, String), Result<Vec<String>, Failure>> = wanted
        .iter()
        .zip(results)
        .map(|(k, r)| (k, r.map_err(|e| Failure::of(&e))))
        .collect();
    let mut out = Expanded {
        mappings: Vec::with_capacity(mappings.len()),
        failures: Vec::new(),
        diagnostics: Vec::new(),
        matches: Vec::new(),
    };
    // The mappings are moved into the expanded list, not copied: at 100,000 lines a copy
    // of them all is tens of megabytes.
    for m in mappings {
        if !matches!(m, Mapping::Repositories { .. }) {
            out.mappings.push(m);
            continue;
        }
        let Mapping::Repositories { source, rules, .. } = &m else {
            continue;
        };
        let host = source.value.registry().clone();
        let lister = rules.repos.lister.unwrap_or_else(|| default_lister(&host));
        let key = (host, lister, source.value.literal_prefix().to_owned());
        match listed.get(&key) {
            Some(Ok(paths)) => {
                let (expanded, diagnostics) = expand(&m, paths);
                let repositories: Vec<Repository> = expanded
                    .iter()
                    .filter_map(|e| match e {
                        Mapping::Wildcard { repository, .. } => Some(repository.value.clone()),
                        _ => None,
                    })
                    .collect();
                tracing::info!(pattern = %source.value, origin = %source.location, lister = lister.name(), repositories = repositories.len(), "repository wildcard matched");
                if repositories.is_empty() {
                    out.diagnostics.push(Diagnostic::warning(
                        source.location.clone(),
                        format!(
                            "{} matches no repository ({} listed by the {} lister)",
                            source.value,
                            paths.len(),
                            lister.name()
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

/// Lists the tags of every wildcard source repository (a registry's or a directory's),
/// concurrently.
pub async fn list_wildcards(
    stores: &dyn Stores,
    mappings: &[Mapping],
) -> (HashMap<Repository, Vec<String>>, Vec<ListingFailure>) {
    let repos = wildcard_sources(mappings);
    let results = futures_util::future::join_all(repos.iter().map(|repo| async move {
        let source = stores.source(repo).await?;
        source.tags(repo).await
    }))
    .await;
    let mut listed = HashMap::new();
    let mut failures = Vec::new();
    for (repo, result) in repos.into_iter().zip(results) {
        match result {
            Ok(tags) => {
                listed.insert(repo, tags);
            }
            Err(e) => {
                for mapping in mappings {
                    if let Mapping::Wildcard {
                        repository,
                        pattern,
                        ..
                    } = mapping
                        && repository.value == repo
                    {
                        failures.push(ListingFailure {
                            origin: mapping.location().clone(),
                            source: format!("{repo}:{}", pattern.as_str()),
                            error: Failure::of(&e),
                        });
                    }
                }
            }
        }
    }
    (listed, failures)
}
