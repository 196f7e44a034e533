//! What a run tells the operator, as views of one model ([`outcome`]): the dry-run plan and
//! the summary ([`text`]), the JSON report ([`json`]), and the live progress
//! ([`progress`], which reads only the run's [`crate::stats`]).

pub mod json;
pub mod outcome;
pub mod progress;
pub mod text;

use std::collections::BTreeMap;
use std::time::Duration;

use self::outcome::{ListingFailure, Outcome};
use crate::plan::LineSelection;
use crate::stats::{RegistryUploads, Snapshot};

/// Everything a finished (or interrupted) run has to say.
#[derive(Debug)]
pub struct RunResult {
    pub outcomes: Vec<Outcome>,
    pub listing_failures: Vec<ListingFailure>,
    /// What the rules of wildcard lines chose.
    pub selections: Vec<LineSelection>,
    pub stats: Snapshot,
    /// How blobs went into each registry that received any, by registry name.
    pub uploads: BTreeMap<String, RegistryUploads>,
    pub elapsed: Duration,
    pub dry_run: bool,
    pub interrupted: bool,
}
