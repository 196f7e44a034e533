//! The machine-readable report (`--report PATH`); its schema is documented in README.md.

use std::collections::BTreeMap;

use super::RunResult;
use super::outcome::Totals;
use crate::model::attached::{Attachment, Kind};
use crate::model::failure::ErrorKind;
use crate::report::outcome::Status;

#[derive(Debug, serde::Serialize)]
pub struct JsonReport<'a> {
    pub version: u32,
    pub dry_run: bool,
    pub interrupted: bool,
    pub elapsed_seconds: f64,
    pub totals: JsonTotals,
    pub images: Vec<JsonImage<'a>>,
    pub listing_failures: Vec<JsonListingFailure<'a>>,
    pub selections: Vec<JsonSelection<'a>>,
    /// Per destination registry that received blob uploads: how it took them.
    pub registries: BTreeMap<&'a str, JsonRegistry>,
    /// Per source registry with a pull quota (published, or enforced with a 429): what was
    /// left at the end, and the images deferred to its next window.
    pub quotas: BTreeMap<&'a str, JsonQuota>,
    /// Per registry that had blob transfers: how many it got at once in each direction it
    /// was used in, and why no more.
    pub concurrency: BTreeMap<&'a str, JsonConcurrency>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonQuota {
    /// Manifest GETs the window allows (this shard's part when sharded); null if unpublished.
    pub limit: Option<u64>,
    /// Left at the end of the run; null if unpublished.
    pub left: Option<u64>,
    pub window_seconds: Option<u64>,
    /// Manifest GETs this run counted against it.
    pub taken: u64,
    /// Manifest GETs not sent because nothing was left.
    pub not_sent: u64,
    /// Manifest GETs stopped for the rest of the run.
    pub spent: bool,
    /// Images not started for lack of it.
    pub deferred: usize,
}

/// A registry's limits on transfers, reading from it and writing to it.
#[derive(Debug, serde::Serialize)]
pub struct JsonConcurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads: Option<JsonReached>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes: Option<JsonReached>,
}

/// What one limit on transfers reached.
#[derive(Debug, serde::Serialize)]
pub struct JsonReached {
    /// The highest limit it had.
    pub limit: u32,
    /// The limit at the end of the run.
    pub limit_at_end: u32,
    /// The most transfers in flight at once.
    pub in_flight: u32,
    /// The most it could have had (`--max-per-registry`, or the default ceiling).
    pub ceiling: u32,
    /// Why it went no higher: `ceiling`, `latency` (round trips grew), `throttled` (429),
    /// `unavailable` (503), `resets`, `demand` (no more work at once), `growing`.
    pub stopped: &'static str,
}

impl JsonReached {
    /// A limit that was used (some transfer held a slot), else none.
    fn of(reached: Option<crate::concurrency::Reached>) -> Option<JsonReached> {
        let r = reached.filter(|r| r.in_flight > 0)?;
        Some(JsonReached {
            limit: r.limit,
            limit_at_end: r.now,
            in_flight: r.in_flight,
            ceiling: r.ceiling,
            stopped: r.stop.label(),
        })
    }
}

/// What one wildcard line's rules chose among the listed tags.
#[derive(Debug, serde::Serialize)]
pub struct JsonSelection<'a> {
    pub source: String,
    pub file: &'a str,
    pub line: u32,
    pub selected: &'a [String],
    pub excluded: Vec<JsonExcluded<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonExcluded<'a> {
    pub tag: &'a str,
    pub reason: String,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonRegistry {
    /// The way blobs went at the end of the run: `put` (one `PUT` with the body) or
    /// `patch` (`PATCH`es, then an empty `PUT`).
    pub upload_method: &'static str,
    pub uploads: JsonUploads,
    /// Blobs whose `PUT` with a body was refused, sent again as `PATCH` + `PUT`.
    pub fallbacks: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonUploads {
    pub put: u64,
    pub patch: u64,
    pub chunked: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonTotals {
    pub images: usize,
    #[serde(flatten)]
    pub images_by_status: Totals,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    /// Signatures, attestations, SBOMs and referrers written.
    pub attached_copied: u64,
    pub bytes: u64,
    /// In a dry run only: the blob bytes the run would send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_move_bytes: Option<u64>,
    pub retries: u64,
    /// Requests sent (token requests and retries included).
    pub requests: u64,
    pub request_retries: u64,
    /// Round trips waited for one after another: the longest chain of requests each sent
    /// after the previous one was answered.
    pub round_trips: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonImage<'a> {
    pub destination: String,
    pub source: String,
    pub source_digest: Option<&'a str>,
    pub previous_digest: Option<&'a str>,
    pub file: &'a str,
    pub line: u32,
    pub status: Status,
    pub bytes: u64,
    /// In a dry run only: the blob bytes this copy would send (see `Outcome::would_move`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_move_bytes: Option<u64>,
    pub duration_seconds: f64,
    pub attempts: u32,
    pub error: Option<String>,
    pub error_kind: Option<ErrorKind>,
    /// What was copied (would be, in a dry run) with the image.
    pub attached: Vec<JsonAttached<'a>>,
}

#[derive(Debug, serde::Serialize)]
pub struct JsonAttached<'a> {
    pub digest: &'a str,
    pub kind: Kind,
    /// A referrer's `artifactType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<&'a str>,
    /// What it is attached to: the image, one of its children, or another attachment.
    pub subject: &'a str,
}

impl<'a> JsonAttached<'a> {
    /// An attached manifest as every report writes it (`run`'s and `verify`'s).
    pub fn of(a: &'a Attachment) -> JsonAttached<'a> {
        JsonAttached {
            digest: a.digest.as_str(),
            kind: a.kind,
            artifact_type: a.artifact_type.as_deref(),
            subject: a.subject.as_str(),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct JsonListingFailure<'a> {
    pub source: String,
    pub file: &'a str,
    pub line: u32,
    pub error: String,
    pub error_kind: ErrorKind,
}

pub fn json_report(run: &RunResult) -> JsonReport<'_> {
    let t = Totals::of(&run.outcomes, run.listing_failures.len());
    let mut images: Vec<JsonImage<'_>> = run
        .outcomes
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
            would_move_bytes: o.would_move,
            duration_seconds: o.duration.as_secs_f64(),
            attempts: o.attempts,
            error: o.error_text(),
            error_kind: o.error.as_ref().map(|e| e.kind),
            attached: o.attached.iter().map(JsonAttached::of).collect(),
        })
        .collect();
    images.sort_by(|a, b| a.destination.cmp(&b.destination));
    let stats = &run.stats;
    JsonReport {
        version: 1,
        dry_run: run.dry_run,
        interrupted: run.interrupted,
        elapsed_seconds: run.elapsed.as_secs_f64(),
        totals: JsonTotals {
            images: run.outcomes.len(),
            images_by_status: t,
            blobs_uploaded: stats.blobs_uploaded,
            blobs_mounted: stats.blobs_mounted,
            blobs_present: stats.blobs_present,
            attached_copied: stats.attached_copied,
            bytes: stats.bytes,
            would_move_bytes: run.dry_run.then(|| super::text::would_move(&run.outcomes)),
            retries: stats.image_retries,
            requests: stats.requests,
            request_retries: stats.request_retries,
            round_trips: stats.round_trips,
        },
        images,
        listing_failures: run
            .listing_failures
            .iter()
            .map(|f| JsonListingFailure {
                source: f.source.clone(),
                file: &f.origin.file,
                line: f.origin.line,
                error: f.error_text(),
                error_kind: f.error.kind,
            })
            .collect(),
        selections: run
            .selections
            .iter()
            .map(|l| JsonSelection {
                source: l.repository.to_string(),
                file: &l.origin.file,
                line: l.origin.line,
                selected: &l.selection.selected,
                excluded: l
                    .selection
                    .excluded
                    .iter()
                    .map(|(tag, why)| JsonExcluded {
                        tag,
                        reason: why.to_string(),
                    })
                    .collect(),
            })
            .collect(),
        registries: run
            .uploads
            .iter()
            .map(|(host, u)| {
                let patch =
                    u.patch_from_now_on || (u.monolithic == 0 && u.streamed + u.chunked > 0);
                let entry = JsonRegistry {
                    upload_method: if patch { "patch" } else { "put" },
                    uploads: JsonUploads {
                        put: u.monolithic,
                        patch: u.streamed,
                        chunked: u.chunked,
                    },
                    fallbacks: u.fallbacks,
                };
                (host.as_str(), entry)
            })
            .collect(),
        quotas: json_quotas(run),
        concurrency: run
            .registries
            .iter()
            .filter_map(|(host, c)| {
                let entry = JsonConcurrency {
                    reads: JsonReached::of(c.reads),
                    writes: JsonReached::of(c.writes),
                };
                (entry.reads.is_some() || entry.writes.is_some()).then_some((host.as_str(), entry))
            })
            .collect(),
    }
}

/// The `quotas` object: every registry with a quota, and every one that deferred images.
fn json_quotas(run: &RunResult) -> BTreeMap<&str, JsonQuota> {
    let deferred = super::deferred_per_registry(&run.outcomes);
    let mut out: BTreeMap<&str, JsonQuota> = run
        .quotas
        .iter()
        .map(|(registry, q)| {
            let entry = JsonQuota {
                limit: q.limit,
                left: q.left,
                window_seconds: q.window.map(|w| w.as_secs()),
                taken: q.taken,
                not_sent: q.refused,
                spent: q.spent,
                deferred: deferred.get(registry.as_str()).copied().unwrap_or(0),
            };
            (registry.as_str(), entry)
        })
        .collect();
    for (registry, n) in deferred {
        out.entry(registry).or_insert(JsonQuota {
            limit: None,
            left: None,
            window_seconds: None,
            taken: 0,
            not_sent: 0,
            spent: true,
            deferred: n,
        });
    }
    out
}
