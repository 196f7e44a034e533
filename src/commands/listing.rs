//! What `run` asks registries before it can plan: the repositories each repository wildcard
//! needs listed (through the line's lister), then the tags of every wildcard source. Glue
//! only: what to list and what the lists make is [`crate::plan`]'s, the asking the stores'.
//! Read-only; a repository or tag list that cannot be had fails its lines, not the run.

use std::collections::HashMap;

use crate::inputs::expanded::ExpandedMapping;
use crate::inputs::mapping::Mapping;
use crate::model::failure::Failure;
use crate::model::reference::Repository;
use crate::plan::listing::{Listing, listings_wanted, tags_unlisted};
use crate::plan::{Expanded, ListingFailure, expand_all, wildcard_sources};
use crate::registry::Registries;
use crate::store::Stores;

/// Lists the repositories every repository wildcard needs (each registry, lister and prefix
/// once, concurrently) and expands the wildcards.
pub async fn expand_repository_wildcards(
    registries: &Registries,
    mappings: Vec<Mapping>,
) -> Expanded {
    let wanted = listings_wanted(&mappings);
    let results = futures_util::future::join_all(wanted.iter().map(|listing| async move {
        let client = registries.client(&listing.host).await?;
        client
            .list_repositories_with(listing.lister, &listing.prefix)
            .await
    }))
    .await;
    let listed: HashMap<Listing, Result<Vec<String>, Failure>> = wanted
        .into_iter()
        .zip(results)
        .map(|(listing, r)| (listing, r.map_err(|e| Failure::of(&e))))
        .collect();
    expand_all(mappings, &listed)
}

/// Lists the tags of every wildcard source repository (a registry's or a directory's),
/// concurrently.
pub async fn list_wildcards(
    stores: &dyn Stores,
    mappings: &[ExpandedMapping],
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
            Err(e) => failures.extend(tags_unlisted(mappings, &repo, &Failure::of(&e))),
        }
    }
    (listed, failures)
}
