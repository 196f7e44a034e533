//! The one outcome model every view reads: what happened to each destination tag, the
//! wildcard sources that could not be listed, and the totals by status.

use std::time::Duration;

use crate::model::attached::Attachment;
use crate::model::failure::{ErrorKind, Failure};
use crate::model::reference::Digest;
use crate::plan::CopyJob;
use crate::redact::redact;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Copied,
    Unchanged,
    Failed,
    WouldCopy,
    WouldOverwrite,
    /// Not done by rule, and never tried again: an immutable tag that already holds another
    /// image, or an image whose signatures do not meet `--policy` (refused before anything
    /// of it is written). Fails the run.
    Refused,
    /// Not done: the run was interrupted first.
    Cancelled,
    /// Not started: the source registry's pull quota could not cover it in this window (see
    /// `registry::control::quota`). Waits for the next window; does not fail the run.
    Deferred,
    /// Not copied yet: a new source tag held back until it has been seen at the same digest
    /// for its line's `min-age` (or `--min-age`); the error says how long is left. Does not
    /// fail the run.
    Waiting,
}

impl Status {
    /// Whether the run fails (exit 1) because of this image. A deferred image does not: it
    /// only waits for the next window (see `commands::ExitCode`).
    pub fn fails_the_run(self) -> bool {
        matches!(self, Status::Failed | Status::Refused)
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Copied => "copied",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::WouldCopy => "would copy",
            Status::WouldOverwrite => "would overwrite",
            Status::Refused => "refused",
            Status::Cancelled => "cancelled",
            Status::Deferred => "deferred",
            Status::Waiting => "waiting",
        }
    }

    /// The status of an image whose copy ended with an error of this kind.
    pub fn after_failure(kind: ErrorKind) -> Status {
        match kind {
            ErrorKind::Refused => Status::Refused,
            ErrorKind::Deferred => Status::Deferred,
            ErrorKind::Waiting => Status::Waiting,
            _ => Status::Failed,
        }
    }
}

/// What happened to one destination tag.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub job: CopyJob,
    pub status: Status,
    pub source_digest: Option<Digest>,
    /// What the destination tag pointed at before, when it differed.
    pub previous: Option<Digest>,
    /// Why it failed: the last attempt's error, with its kind.
    pub error: Option<Failure>,
    pub duration: Duration,
    /// Blob bytes this copy uploaded (blobs found, mounted or uploaded by another copy: 0).
    pub bytes: u64,
    /// In a dry run, the blob bytes this copy would upload (counted as `bytes` would be:
    /// each blob once per destination registry); `None` outside a dry run, or when the copy
    /// would not get that far.
    pub would_move: Option<u64>,
    pub attempts: u32,
    /// Signatures, attestations, SBOMs and referrers copied with the image (would be, in a
    /// dry run).
    pub attached: Vec<Attachment>,
}

impl Outcome {
    /// A copy not (yet) done.
    pub fn new(job: CopyJob) -> Outcome {
        Outcome {
            job,
            status: Status::Cancelled,
            source_digest: None,
            previous: None,
            error: None,
            duration: Duration::ZERO,
            bytes: 0,
            would_move: None,
            attempts: 0,
            attached: Vec::new(),
        }
    }

    /// The error's text, for views: redacted once more on its way out, so no view can show
    /// a secret that a message picked up from outside.
    pub fn error_text(&self) -> Option<String> {
        self.error.as_ref().map(|e| redact(&e.message))
    }
}

/// A wildcard whose tags could not be listed (the plan charges it to its lines).
pub use crate::plan::ListingFailure;

impl ListingFailure {
    /// The error's text, for views (redacted, as [`Outcome::error_text`]).
    pub fn error_text(&self) -> String {
        redact(&self.error.message)
    }
}

/// Images by status.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub copied: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub would_copy: usize,
    pub would_overwrite: usize,
    pub refused: usize,
    pub cancelled: usize,
    pub deferred: usize,
    pub waiting: usize,
}

impl Totals {
    pub fn of(outcomes: &[Outcome], listing_failures: usize) -> Totals {
        let mut t = Totals {
            failed: listing_failures,
            ..Totals::default()
        };
        for o in outcomes {
            match o.status {
                Status::Copied => t.copied += 1,
                Status::Unchanged => t.unchanged += 1,
                Status::Failed => t.failed += 1,
                Status::WouldCopy => t.would_copy += 1,
                Status::WouldOverwrite => t.would_overwrite += 1,
                Status::Refused => t.refused += 1,
                Status::Cancelled => t.cancelled += 1,
                Status::Deferred => t.deferred += 1,
                Status::Waiting => t.waiting += 1,
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status: its label, whether it fails the run, and where the totals count it.
    /// `Refused` (an immutable tag, or `--policy`) fails the run as `Failed` does, and is
    /// counted apart; `Deferred` (a pull quota spent) does not fail it.
    #[test]
    fn every_status_is_labelled_counted_and_judged() {
        let statuses = [
            (Status::Copied, "copied", false),
            (Status::Unchanged, "unchanged", false),
            (Status::Failed, "failed", true),
            (Status::WouldCopy, "would copy", false),
            (Status::WouldOverwrite, "would overwrite", false),
            (Status::Refused, "refused", true),
            (Status::Cancelled, "cancelled", false),
            (Status::Deferred, "deferred", false),
            (Status::Waiting, "waiting", false),
        ];
        for (status, label, fails) in statuses {
            assert_eq!(status.label(), label);
            assert_eq!(status.fails_the_run(), fails, "{label}");
        }
        let parsed =
            crate::inputs::mapping::parse_text(&std::sync::Arc::from("m"), "src.io/a:1 dst.io/a:1");
        let (plan, _) = crate::plan::plan(
            &crate::plan::expand_all(parsed.mappings, &std::collections::HashMap::new()).mappings,
            &std::collections::HashMap::new(),
        );
        let job = plan.batches[0].jobs[0].clone();
        let outcomes: Vec<Outcome> = statuses
            .iter()
            .map(|(status, ..)| Outcome {
                status: *status,
                ..Outcome::new(job.clone())
            })
            .collect();
        assert_eq!(
            Totals::of(&outcomes, 2),
            Totals {
                copied: 1,
                unchanged: 1,
                failed: 3,
                would_copy: 1,
                would_overwrite: 1,
                refused: 1,
                cancelled: 1,
                deferred: 1,
                waiting: 1,
            }
        );
    }
}
