//! The ledger's part of `run` and `prune`: read it before copying, then record what the
//! run saw, prune what is due (when asked and when the ledger and the plan can be
//! trusted), and write this writer's object back (never in a dry run). Also how the
//! outcome reads: the text lines and the report's `prune` section.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::duration::human;
use crate::ledger::model::Unwanted;
use crate::ledger::prune::{PruneOptions, PruneReport, Verdict, prune};
use crate::ledger::stored::{self, Read};
use crate::ledger::{Location, Stamp, Writer};
use crate::model::digest::short_digest;
use crate::plan::{Plan, Shard};
use crate::plural::count;
use crate::report::outcome::Outcome;
use crate::retry::RetryPolicy;
use crate::store::Stores;

/// What the flags say about the ledger.
#[derive(Debug, Clone)]
pub struct Settings {
    pub location: Location,
    pub writer: Writer,
    /// `Some` with `--prune` or the `prune` command.
    pub prune: Option<PruneOptions>,
    pub now: Stamp,
    pub dry_run: bool,
    pub shard: Option<Shard>,
    pub policy: RetryPolicy,
    /// `--min-age`.
    pub min_age: Option<std::time::Duration>,
}

/// What the ledger's steps came to, for the views and the exit code.
#[derive(Debug, Default)]
pub struct Settled {
    pub prune: Option<PruneReport>,
    /// Why the ledger could not be read whole, or is left unwritten: warnings on stderr.
    pub problems: Vec<String>,
    /// Why this writer's object could not be written: an error, and the run fails.
    pub write_error: Option<String>,
}

impl Settled {
    /// The valve stopped the prune: exit 2.
    pub fn refused_by_valve(&self) -> bool {
        self.prune.as_ref().is_some_and(|p| p.valve.is_some())
    }

    /// A delete or the ledger's write failed: exit 1.
    pub fn failed(&self) -> bool {
        self.write_error.is_some() || self.prune.as_ref().is_some_and(PruneReport::failed)
    }
}

/// The source tags the plan copies from, as the ledger names them (`host/path:tag`): the
/// first sightings this writer keeps.
pub fn planned_sources(plan: &Plan) -> HashSet<String> {
    plan.batches
        .iter()
        .flat_map(|b| &b.jobs)
        .filter_map(|j| {
            let tag = j.source.tag()?;
            Some(format!("{}:{tag}", j.source.repository))
        })
        .collect()
}

/// The destination tags (and digests) the plan produces, as the ledger names them.
pub fn wanted(plan: &Plan) -> HashSet<(String, String)> {
    plan.batches
        .iter()
        .flat_map(|b| &b.jobs)
        .map(|j| {
            (
                j.destination.repository.to_string(),
                j.destination.reference.as_str().to_owned(),
            )
        })
        .collect()
}

pub async fn read(settings: &Settings, stores: &dyn Stores) -> Read {
    stored::read(&settings.location, stores, &settings.policy).await
}

/// After the copies: record, prune, write.
pub async fn settle(
    settings: &Settings,
    stores: &dyn Stores,
    read: Read,
    outcomes: &[Outcome],
    wanted: &HashSet<(String, String)>,
    sources: &HashSet<String>,
    listing_failures: usize,
) -> Settled {
    let own_is_newer = read.newer_object_of(&settings.writer);
    let Read {
        mut ledger,
        problems,
        ..
    } = read;
    let mut settled = Settled {
        problems: problems.clone(),
        ..Settled::default()
    };
    let now = settings.now;
    ledger.record(outcomes, now);
    ledger.want(wanted, now);
    let shard = settings.shard;
    let owns = |repository: &str| shard.is_none_or(|s| s.owns_named(repository));
    if let Some(options) = settings.prune {
        let mut untrusted = problems;
        if listing_failures > 0 {
            untrusted.push(format!(
                "{} could not be listed: what they produce is unknown",
                count(listing_failures, "wildcard source")
            ));
        }
        settled.prune = Some(if untrusted.is_empty() {
            let Unwanted {
                due,
                waiting,
                named,
            } = ledger.unwanted(wanted, owns, now, options.after);
            prune(stores, &mut ledger, due, waiting, named, options, now).await
        } else {
            PruneReport {
                untrusted,
                dry_run: options.dry_run,
                ..PruneReport::default()
            }
        });
    }
    if settings.dry_run {
        return settled;
    }
    let own_name = format!("{}", settings.location);
    if own_is_newer {
        settled.problems.push(format!(
            "the ledger in {own_name} is not written: its object for this writer is of a newer format"
        ));
        return settled;
    }
    let part = ledger.owned_part(owns, sources);
    if let Err(e) = stored::write(
        &settings.location,
        stores,
        &settings.policy,
        &settings.writer,
        &part,
        now,
    )
    .await
    {
        settled.write_error = Some(format!("the ledger could not be written: {e:#}"));
    } else {
        tracing::info!(ledger = %own_name, "ledger written");
    }
    settled
}

/// The prune's lines: each tag and what became of it, then the counts.
pub fn text(report: &PruneReport) -> String {
    let mut out = String::new();
    if !report.untrusted.is_empty() {
        let _ = writeln!(
            out,
            "Prune: nothing pruned, the ledger cannot be trusted this run:"
        );
        for why in &report.untrusted {
            let _ = writeln!(out, "  {why}");
        }
        return out;
    }
    if report.decided.is_empty() {
        let _ = writeln!(out, "Prune: nothing to prune");
        return out;
    }
    let _ = writeln!(out, "Prune:");
    for d in &report.decided {
        let e = &d.candidate.entry;
        let _ = writeln!(
            out,
            "  {} {}  {}  (wrote {} from {}, {})",
            symbol(&d.verdict),
            d.name(),
            verdict_text(&d.verdict, report.dry_run),
            short_digest(e.digest.as_str()),
            e.source,
            e.origin
        );
    }
    let pruned = report.count(|v| matches!(v, Verdict::Pruned { .. }));
    let would = report.count(|v| matches!(v, Verdict::WouldPrune));
    let kept = report.count(|v| {
        matches!(
            v,
            Verdict::Changed(_) | Verdict::StillTagged(_) | Verdict::Referenced { .. }
        )
    });
    let waiting = report.count(|v| matches!(v, Verdict::Waiting(_)));
    let gone = report.count(|v| matches!(v, Verdict::Gone));
    let failed = report.count(|v| matches!(v, Verdict::Failed(_)));
    let also = [(gone, "gone already"), (failed, "failed")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!(", {n} {what}"))
        .collect::<String>();
    if let Some(valve) = &report.valve {
        let _ = writeln!(
            out,
            "error: {} due for pruning, more than {}: nothing was deleted; if the mappings \
             are as meant, give a higher --max-prune (N, or P% of the tags the ledger names)",
            count(valve.due, "tag"),
            valve.said
        );
    }
    // Held by the valve, they are not what a dry run would do: they are refused.
    let would = if report.valve.is_some() {
        format!("{would} held back by --max-prune")
    } else {
        format!("{would} would be pruned")
    };
    let _ = writeln!(
        out,
        "{} pruned, {would}, {kept} kept{also}, {waiting} waiting for --prune-after",
        count(pruned, "tag"),
    );
    out
}

fn symbol(v: &Verdict) -> char {
    match v {
        Verdict::Pruned { .. } | Verdict::WouldPrune => '-',
        Verdict::Waiting(_) => '~',
        Verdict::Failed(_) => '!',
        _ => '=',
    }
}

fn verdict_text(v: &Verdict, dry_run: bool) -> String {
    match v {
        Verdict::Pruned { attached: 0 } => "pruned".to_owned(),
        Verdict::Pruned { attached } => {
            format!("pruned, with {}", count(*attached, "attached manifest"))
        }
        Verdict::WouldPrune if dry_run => "would be pruned".to_owned(),
        Verdict::WouldPrune => "due, not pruned".to_owned(),
        Verdict::Gone => "gone already".to_owned(),
        Verdict::Changed(d) => format!(
            "kept: it holds {} now, not what image-mirror wrote",
            short_digest(d.as_str())
        ),
        Verdict::StillTagged(names) => format!(
            "kept: its digest is still {} (a delete by digest would take those too)",
            holders(names)
        ),
        Verdict::Referenced { by, refused: false } => format!(
            "kept: its digest is a child of the index {} (a delete by digest would break \
             it); only its tag goes, where the registry deletes a tag alone",
            holders(by)
        ),
        Verdict::Referenced { by, refused: true } => format!(
            "kept: its digest is a child of the index {} (a delete by digest would break \
             it, and the registry cannot delete the tag alone)",
            holders(by)
        ),
        Verdict::Waiting(left) => format!("unwanted; pruned in {}", human(*left)),
        Verdict::Failed(why) => format!("not pruned: {why}"),
    }
}

/// `sha256:` and the first 12 hex digits.
/// What holds a digest, as prune names it: tags, and pushes by digest a mapping still
/// wants (`@DIGEST`): "tagged v1, v2", "pushed by digest (sha256:1234abcd5678)", or both.
fn holders(names: &[String]) -> String {
    let (pushes, tags): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| n.starts_with('@'));
    let mut parts = Vec::new();
    if !tags.is_empty() {
        let tags: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
        parts.push(format!("tagged {}", tags.join(", ")));
    }
    if !pushes.is_empty() {
        let pushes: Vec<&str> = pushes.iter().map(|p| short_digest(&p[1..])).collect();
        parts.push(format!("pushed by digest ({})", pushes.join(", ")));
    }
    parts.join(" and ")
}

/// The report's `prune` section.
pub fn json(report: &PruneReport) -> serde_json::Value {
    let tags: Vec<serde_json::Value> = report
        .decided
        .iter()
        .map(|d| {
            let e = &d.candidate.entry;
            let detail = match &d.verdict {
                Verdict::Pruned { attached } => serde_json::json!({"attached": attached}),
                Verdict::Changed(now) => serde_json::json!({"holds": now.as_str()}),
                Verdict::StillTagged(tags) => serde_json::json!({"tags": tags}),
                Verdict::Referenced { by, .. } => serde_json::json!({"by": by}),
                Verdict::Waiting(left) => serde_json::json!({"seconds_left": left.as_secs()}),
                Verdict::Failed(why) => serde_json::json!({"error": why}),
                Verdict::WouldPrune | Verdict::Gone => serde_json::json!({}),
            };
            let mut value = serde_json::json!({
                "destination": d.name(),
                "status": d.verdict.label(),
                "digest": e.digest.as_str(),
                "source": e.source,
                "origin": e.origin,
                "first_written": e.first_written.0,
                "last_wanted": e.last_wanted.0,
            });
            if let (Some(v), Some(extra)) = (value.as_object_mut(), detail.as_object()) {
                v.extend(extra.clone());
            }
            value
        })
        .collect();
    serde_json::json!({
        "dry_run": report.dry_run,
        "max_prune_exceeded": report.valve.as_ref().map(|v| v.limit),
        "untrusted": report.untrusted,
        "tags": tags,
    })
}
