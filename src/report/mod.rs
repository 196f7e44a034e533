//! What a run tells the operator, as views of one model ([`outcome`]): the dry-run plan and
//! the summary ([`text`]), the JSON report ([`json`]), the JUnit XML for Prow ([`junit`]), the Prometheus metrics of a batch job ([`metrics`]), the plan diff of `check --diff` ([`diff`]), and the live progress
//! ([`progress`], which reads only the run's [`crate::stats`]).

pub mod diff;
pub mod json;
pub mod junit;
pub mod metrics;
pub mod outcome;
pub mod progress;
pub mod text;

use std::time::Duration;

use self::outcome::{ListingFailure, Outcome};
use crate::stats::Snapshot;

/// Everything a finished (or interrupted) run has to say.
#[derive(Debug)]
pub struct RunResult {
    pub outcomes: Vec<Outcome>,
    pub listing_failures: Vec<ListingFailure>,
    pub stats: Snapshot,
    /// Requests, retries and 429s per registry.
    pub registries: metrics::PerRegistry,
    pub elapsed: Duration,
    pub dry_run: bool,
    pub interrupted: bool,
}
