//! What a run tells the operator, as views of one model ([`outcome`]): the dry-run plan and
//! the summary ([`text`]), the JSON report ([`json`]), the JUnit XML for Prow ([`junit`]), the Prometheus metrics of a batch job ([`metrics`]), the plan diff of `check --diff` ([`diff`]), what `verify` found ([`verified`]), and the live progress
//! ([`progress`], which reads only the run's [`crate::stats`]).

pub mod diff;
pub mod json;
pub mod junit;
pub mod metrics;
pub mod outcome;
pub mod progress;
pub mod text;
pub mod verified;

#[cfg(test)]
mod tests_deferred;

use std::collections::BTreeMap;
use std::time::Duration;

use self::outcome::{ListingFailure, Outcome};
use crate::plan::LineSelection;
use crate::stats::{QuotaState, RegistryUploads, Snapshot};

/// The repositories one repository wildcard matched, with the source tags each brought
/// (the plan counts them).
pub use crate::plan::WildcardRepositories;

/// Images deferred per source registry (see [`outcome::Status::Deferred`]).
pub fn deferred_per_registry(outcomes: &[Outcome]) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for o in outcomes
        .iter()
        .filter(|o| o.status == outcome::Status::Deferred)
    {
        *out.entry(o.job.source.repository.registry().as_str())
            .or_default() += 1;
    }
    out
}

/// Everything a finished (or interrupted) run has to say.
#[derive(Debug, Default)]
pub struct RunResult {
    pub outcomes: Vec<Outcome>,
    pub listing_failures: Vec<ListingFailure>,
    /// What the rules of wildcard lines chose.
    pub selections: Vec<LineSelection>,
    /// What each repository wildcard matched.
    pub repository_wildcards: Vec<WildcardRepositories>,
    pub stats: Snapshot,
    /// How blobs went into each registry that received any, by registry name.
    pub uploads: BTreeMap<String, RegistryUploads>,
    /// Requests, retries and 429s per registry.
    pub registries: metrics::PerRegistry,
    /// What each registry that publishes (or enforced) a pull quota had left at the end,
    /// sorted by registry.
    pub quotas: Vec<(String, QuotaState)>,
    pub elapsed: Duration,
    pub dry_run: bool,
    pub interrupted: bool,
    /// What `run --prune` made of the unwanted tags the ledger names (`None` without
    /// `--prune`).
    pub pruned: Option<PruneTotals>,
}

/// Each verdict prune can reach on a tag the ledger names and no mapping wants (the JSON
/// report's `prune.tags[].status`).
pub const PRUNE_STATUSES: [&str; 8] = [
    "pruned",
    "would-prune",
    "gone",
    "changed",
    "still-tagged",
    "referenced",
    "waiting",
    "failed",
];

/// What a prune did, counted for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneTotals {
    /// Tags per verdict, keyed by [`PRUNE_STATUSES`].
    pub by_status: BTreeMap<&'static str, usize>,
    /// `--max-prune` refused the prune: nothing was deleted.
    pub refused: bool,
    /// The ledger could not be trusted: nothing was looked at.
    pub untrusted: bool,
}
