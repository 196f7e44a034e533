//! What `run` and `verify` share between reading the mapping files and acting on them: the
//! checks made before any registry is contacted, then repository wildcards expanded, wildcard
//! tags listed and the plan made. One pipeline, so that `verify` compares exactly the images
//! `run` would copy.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;

use super::ExitCode::{self, Usage};
use super::listing::{expand_repository_wildcards, list_wildcards};
use super::load_and_report;
use super::stores::AnyStores;
use crate::disk::DiskStores;
use crate::inputs::mapping::Mapping;
use crate::inputs::{InputSpec, MappingSet, registries_of, repositories_of};
use crate::model::reference::Repository;
use crate::plan::{Expanded, Plan, RepositoryMatch, Shard, plan};
use crate::registry::auth::credentials::Credentials;
use crate::registry::tls::check_certificate_files;
use crate::report::outcome::ListingFailure;

/// Reads and validates the mapping files; any error is exit 2 with nothing contacted.
/// `nothing_done` ends the message ("nothing was copied").
pub fn load_valid(spec: &InputSpec, nothing_done: &str) -> Result<MappingSet, ExitCode> {
    let stderr = std::io::stderr();
    let set = load_and_report(spec, &mut stderr.lock()).ok_or(Usage)?;
    if set.has_errors() {
        let _ = writeln!(
            stderr.lock(),
            "{} in the mapping files; {nothing_done}",
            crate::plural::count(set.error_count(), "error")
        );
        return Err(Usage);
    }
    if set.mappings.is_empty() {
        // Not an error (a team's job may have nothing to mirror yet), but an emptied
        // ConfigMap or a wrong path would otherwise pass as a run that mirrored everything.
        let _ = writeln!(
            stderr.lock(),
            "warning: no mapping line in {}: nothing to do (an empty mapping directory, or a wrong path?)",
            described(spec)
        );
    }
    Ok(set)
}

/// The paths (and prefix) mappings are read from, as a message names them.
pub fn described(spec: &InputSpec) -> String {
    let paths: Vec<String> = spec.paths.iter().map(|p| p.display().to_string()).collect();
    match &spec.prefix {
        Some(prefix) => format!("{} (files named {prefix}*)", paths.join(", ")),
        None => paths.join(", "),
    }
}

/// Before any registry is contacted: directories readable, certificate files usable, a
/// credential for every registry the mappings name resolved.
pub fn preflight(set: &MappingSet, disk: &DiskStores, credentials: &Credentials) -> Result<()> {
    let (sources, destinations) =
        repositories_of(set.mappings.iter().filter_map(Mapping::named), |_| true);
    let (sources, destinations): (Vec<_>, Vec<_>) = (
        sources.into_iter().filter(|r| r.on_disk()).collect(),
        destinations.into_iter().filter(|r| r.on_disk()).collect(),
    );
    disk.preflight(&sources, &destinations)?;
    let hosts = registries_of(&set.mappings);
    check_certificate_files(&hosts)?;
    credentials.resolve_all(hosts)?;
    Ok(())
}

/// A plan and what was listed to make it.
pub struct Planned {
    pub plan: Plan,
    /// The tags of every wildcard source repository (attachments are found in them).
    pub listed: HashMap<Repository, Vec<String>>,
    pub listing_failures: Vec<ListingFailure>,
    /// Per repository wildcard, the repositories it matched.
    pub matched: Vec<RepositoryMatch>,
}

/// Repository wildcards expanded, wildcard sources listed, the plan made (and sharded). `Err`
/// (after saying why on stderr) when expanding leads to conflicting destinations.
pub async fn expand_and_plan(
    stores: &AnyStores,
    mappings: Vec<Mapping>,
    shard: Option<Shard>,
    nothing_done: &str,
) -> Result<Planned, ExitCode> {
    let expanded = expand(stores, mappings, nothing_done).await?;
    list_and_plan(stores, expanded, shard, nothing_done).await
}

/// Repository wildcards expanded (the first step of [`expand_and_plan`], for a caller with
/// work to start before the listing); `Err` (after saying why) when they lead to unusable
/// destinations.
pub async fn expand(
    stores: &AnyStores,
    mappings: Vec<Mapping>,
    nothing_done: &str,
) -> Result<Expanded, ExitCode> {
    let expanded = expand_repository_wildcards(&stores.registries, mappings).await;
    for d in &expanded.diagnostics {
        eprintln!("{d}");
    }
    if expanded.diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("repository wildcards lead to unusable destinations; {nothing_done}");
        return Err(Usage);
    }
    Ok(expanded)
}

/// Wildcard sources listed, the plan made (and sharded); `Err` (after saying why) when
/// expanding leads to conflicting destinations.
pub async fn list_and_plan(
    stores: &AnyStores,
    expanded: Expanded,
    shard: Option<Shard>,
    nothing_done: &str,
) -> Result<Planned, ExitCode> {
    let Expanded {
        mappings,
        failures,
        matches: matched,
        diagnostics: _,
    } = expanded;
    let (listed, mut listing_failures) = list_wildcards(stores, &mappings).await;
    listing_failures.extend(failures);
    let (mut plan, diagnostics) = plan(&mappings, &listed);
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("conflicting destinations after expanding wildcards; {nothing_done}");
        return Err(Usage);
    }
    if let Some(shard) = shard {
        plan = plan.shard(shard);
        tracing::info!(%shard, "working on one shard");
    }
    Ok(Planned {
        plan,
        listed,
        listing_failures,
        matched,
    })
}
