//! What the operator reads at the end: the dry-run plan, failures first, then the totals.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::diagnostics::Location;
use crate::execute::{BlobStats, Outcome, Status};
use crate::reference::Repository;

/// A wildcard whose tags could not be listed: every copy it would have made failed.
#[derive(Debug, Clone)]
pub struct ListingFailure {
    pub origin: Location,
    pub repository: Repository,
    pub error: String,
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub copied: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub would_copy: usize,
    pub would_overwrite: usize,
    pub cancelled: usize,
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
                Status::Cancelled => t.cancelled += 1,
            }
        }
        t
    }
}

/// The dry-run plan: per destination repository, each tag with its source digest and what
/// would happen.
pub fn dry_run_plan(outcomes: &[Outcome]) -> String {
    let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
    sorted.sort_by(|a, b| a.job.destination.cmp(&b.job.destination));
    let mut out = String::new();
    let mut current: Option<&Repository> = None;
    for o in sorted {
        if current != Some(&o.job.destination.repository) {
            let _ = writeln!(out, "{}", o.job.destination.repository);
            current = Some(&o.job.destination.repository);
        }
        let digest = o
            .source_digest
            .as_ref()
            .map_or("?".to_owned(), |d| d.to_string());
        let what = match (o.status, &o.previous) {
            (Status::WouldOverwrite, Some(prev)) => format!("would overwrite {prev}"),
            (Status::Failed, _) => format!("failed: {}", o.error.as_deref().unwrap_or("")),
            (status, _) => status.label().to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}  <- {}  {digest}  {what}",
            o.job.destination.tag, o.job.source
        );
    }
    out
}

/// Failures first (with the mapping line), then one line of totals.
pub fn summary(
    outcomes: &[Outcome],
    listing_failures: &[ListingFailure],
    blobs: &BlobStats,
    figures: RunFigures,
) -> String {
    let mut out = String::new();
    let totals = Totals::of(outcomes, listing_failures.len());
    if totals.failed > 0 {
        let _ = writeln!(out, "Failures ({}):", totals.failed);
        for f in listing_failures {
            let _ = writeln!(
                out,
                "  {}:* ({}): listing tags failed: {}",
                f.repository, f.origin, f.error
            );
        }
        for o in outcomes.iter().filter(|o| o.status == Status::Failed) {
            let _ = writeln!(
                out,
                "  {} -> {} ({}): {}",
                o.job.source,
                o.job.destination,
                o.job.origin,
                o.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    if totals.cancelled > 0 {
        let _ = writeln!(
            out,
            "interrupted: {} images not done; the next run picks them up",
            totals.cancelled
        );
    }
    let secs = figures.elapsed.as_secs_f64();
    if figures.dry_run {
        let _ = writeln!(
            out,
            "dry run: {} would be copied, {} overwritten, {} unchanged, {} failed; nothing was written ({secs:.1}s)",
            totals.would_copy, totals.would_overwrite, totals.unchanged, totals.failed
        );
    } else {
        let _ = writeln!(
            out,
            "{} images copied, {} unchanged, {} failed; blobs: {} uploaded, {} mounted, {} already present; {} moved in {secs:.1}s{}",
            totals.copied,
            totals.unchanged,
            totals.failed,
            blobs.uploaded.load(Ordering::Relaxed),
            blobs.mounted.load(Ordering::Relaxed),
            blobs.present.load(Ordering::Relaxed),
            human_bytes(figures.bytes),
            retries_note(&figures)
        );
    }
    out
}

/// " (2 retries, 7 request retries)": image copies started again, and requests (or blob
/// copies) tried again after a transient failure; empty when there were none.
fn retries_note(figures: &RunFigures) -> String {
    let mut parts = Vec::new();
    if figures.retries > 0 {
        parts.push(format!("{} retries", figures.retries));
    }
    if figures.request_retries > 0 {
        parts.push(format!("{} request retries", figures.request_retries));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Extra figures the summary and the JSON report share.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFigures {
    pub bytes: u64,
    pub retries: usize,
    /// Requests and blob copies tried again inside an image copy (see `registry`).
    pub request_retries: u64,
    pub elapsed: Duration,
    pub dry_run: bool,
}

/// The machine-readable report (`--report PATH`); its schema is documented in README.md.
#[derive(Debug, serde::Serialize)]
pub struct JsonReport<'a> {
    pub version: u32,
    pub dry_run: bool,
    pub interrupted: bool,
    pub elapsed_seconds: f64,
    pub totals: JsonTotals,
    pub images: Vec<JsonImage<'a>>,
    pub listing_failures: Vec<JsonListingFailure<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonTotals {
    pub images: usize,
    #[serde(flatten)]
    pub images_by_status: Totals,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub bytes: u64,
    pub retries: usize,
    pub request_retries: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonImage<'a> {
    pub destination: String,
    pub source: String,
    pub source_digest: Option<&'a str>,
    pub previous_digest: Option<&'a str>,
    pub file: &'a str,
    pub line: usize,
    pub status: Status,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub attempts: u32,
    pub error: Option<&'a str>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonListingFailure<'a> {
    pub source: String,
    pub file: &'a str,
    pub line: usize,
    pub error: &'a str,
}

pub fn json_report<'a>(
    outcomes: &'a [Outcome],
    listing_failures: &'a [ListingFailure],
    blobs: &BlobStats,
    figures: RunFigures,
    interrupted: bool,
) -> JsonReport<'a> {
    let t = Totals::of(outcomes, listing_failures.len());
    let mut images: Vec<JsonImage> = outcomes
        .iter()
        .map(|o| JsonImage {
            destination: o.job.destination.to_string(),
            source: o.job.source.to_string(),
            source_digest: o.source_digest.as_ref().map(|d| d.as_str()),
            previous_digest: o.previous.as_ref().map(|d| d.as_str()),
            file: &o.job.origin.file,
            line: o.job.origin.line,
            status: o.status,
            bytes: o.bytes,
            duration_seconds: o.duration.as_secs_f64(),
            attempts: o.attempts,
            error: o.error.as_deref(),
        })
        .collect();
    images.sort_by(|a, b| a.destination.cmp(&b.destination));
    JsonReport {
        version: 1,
        dry_run: figures.dry_run,
        interrupted,
        elapsed_seconds: figures.elapsed.as_secs_f64(),
        totals: JsonTotals {
            images: outcomes.len(),
            images_by_status: t,
            blobs_uploaded: blobs.uploaded.load(Ordering::Relaxed),
            blobs_mounted: blobs.mounted.load(Ordering::Relaxed),
            blobs_present: blobs.present.load(Ordering::Relaxed),
            bytes: figures.bytes,
            retries: figures.retries,
            request_retries: figures.request_retries,
        },
        images,
        listing_failures: listing_failures
            .iter()
            .map(|f| JsonListingFailure {
                source: f.repository.to_string(),
                file: &f.origin.file,
                line: f.origin.line,
                error: &f.error,
            })
            .collect(),
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
