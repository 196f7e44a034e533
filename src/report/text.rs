//! The text views: the dry-run plan (per destination repository, each tag with its source
//! digest and what would happen) and the summary (failures first, then one line of totals).

use std::fmt::Write as _;

use super::RunResult;
use super::outcome::{Outcome, Status, Totals};
use crate::concurrency::Stop;
use crate::model::reference::Repository;
use crate::plan::LineSelection;
use crate::plural::{count, count_as};
use crate::report::WildcardRepositories;

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
            (Status::Failed | Status::Refused | Status::Deferred | Status::Waiting, _) => {
                format!(
                    "{}: {}",
                    o.status.label(),
                    o.error_text().unwrap_or_default()
                )
            }
            (status, _) => status.label().to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}  <- {}  {digest}  {what}",
            o.job.destination.short(),
            o.job.source
        );
        for a in &o.attached {
            let kind = match &a.artifact_type {
                Some(t) => format!("{} ({t})", a.kind.label()),
                None => a.kind.label().to_owned(),
            };
            let _ = writeln!(out, "      + {kind} {}  (of {})", a.digest, a.subject);
        }
    }
    out
}

/// For a dry run: per repository wildcard, the repositories it matched and the tags each
/// brings.
pub fn repository_wildcards(wildcards: &[WildcardRepositories]) -> String {
    let mut out = String::new();
    for w in wildcards {
        let tags: usize = w.repositories.iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            out,
            "{} ({}): {} x {}",
            w.pattern,
            w.origin,
            count_as(w.repositories.len(), "repository", "repositories"),
            count(tags, "tag")
        );
        for (repository, n) in &w.repositories {
            let _ = writeln!(out, "  {repository}  {}", count(*n, "tag"));
        }
    }
    out
}

/// For a dry run: per wildcard line with rules, which listed tags they chose and why they
/// left the others out.
pub fn selections(selections: &[LineSelection]) -> String {
    let mut out = String::new();
    for line in selections {
        let s = &line.selection;
        let _ = writeln!(
            out,
            "{} ({}): {} selected, {} left out",
            line.repository,
            line.origin,
            s.selected.len(),
            s.excluded.len()
        );
        for tag in &s.selected {
            let _ = writeln!(out, "  {tag}  selected");
        }
        for (tag, why) in &s.excluded {
            let _ = writeln!(out, "  {tag}  excluded: {why}");
        }
    }
    out
}

/// Failures first (with the mapping line), then one line of totals.
pub fn summary(run: &RunResult) -> String {
    let mut out = String::new();
    let totals = Totals::of(&run.outcomes, run.listing_failures.len());
    if totals.failed + totals.refused > 0 {
        let _ = writeln!(out, "Failures ({}):", totals.failed + totals.refused);
        for f in &run.listing_failures {
            let _ = writeln!(
                out,
                "  {} ({}): listing failed: {}",
                f.source,
                f.origin,
                f.error_text()
            );
        }
        for o in run.outcomes.iter().filter(|o| o.status.fails_the_run()) {
            let refused = if o.status == Status::Refused {
                "refused: "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} -> {} ({}): {refused}{}",
                o.job.source,
                o.job.destination,
                o.job.origin,
                o.error_text().as_deref().unwrap_or("unknown error")
            );
        }
    }
    out.push_str(&deferred_section(&run.outcomes));
    out.push_str(&waiting_section(&run.outcomes));
    if totals.cancelled > 0 {
        let _ = writeln!(
            out,
            "interrupted: {} not done; the next run picks them up",
            count(totals.cancelled, "image")
        );
    }
    let took = crate::duration::human(run.elapsed);
    let stats = &run.stats;
    // How many transfers each registry took at once, where that moved from the start
    // (and why no more), then what a run over a slow link pays for: round trips, not
    // requests (see Stats::round_trips). Before the summary, which stays the last line.
    for (host, c) in &run.registries {
        if let Some(line) = concurrency_note(host, c) {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "{}", requests_note(stats.requests, stats.round_trips));
    if run.dry_run {
        let _ = writeln!(
            out,
            "dry run: {} would be copied, {} overwritten, {} unchanged, {} failed{}{};{} {} of blobs would be sent; nothing was written ({took})",
            totals.would_copy,
            totals.would_overwrite,
            totals.unchanged,
            totals.failed,
            refused_note(totals.refused),
            deferred_note(totals.deferred) + &waiting_note(totals.waiting),
            attached_would_note(run.outcomes.iter().map(|o| o.attached.len()).sum()),
            human_bytes(would_move(&run.outcomes)),
        );
    } else {
        let _ = writeln!(
            out,
            "{} copied, {} unchanged, {} failed{}{}; blobs: {} uploaded, {} mounted, {} already present;{} {} moved in {took}{}",
            count(totals.copied, "image"),
            totals.unchanged,
            totals.failed,
            refused_note(totals.refused),
            deferred_note(totals.deferred) + &waiting_note(totals.waiting),
            stats.blobs_uploaded,
            stats.blobs_mounted,
            stats.blobs_present,
            attached_note(stats.attached_copied),
            human_bytes(stats.bytes),
            retries_note(stats.image_retries, stats.request_retries)
        );
        for (host, u) in &run.uploads {
            if u.fallbacks > 0 || u.patch_from_now_on {
                let _ = writeln!(
                    out,
                    "{host} refused blobs in one PUT: {} sent as PATCH + PUT ({} in one PUT)",
                    u.streamed + u.chunked,
                    u.monolithic
                );
            }
        }
    }
    out
}

/// "54 requests in 12 round trips one after another"; "54 requests, none answered" when
/// every one failed (no round trip to speak of).
fn requests_note(requests: u64, round_trips: u64) -> String {
    if requests > 0 && round_trips == 0 {
        return format!("{}, none answered", count(requests, "request"));
    }
    format!(
        "{} in {} one after another",
        count(requests, "request"),
        count(round_trips, "round trip")
    )
}

/// "quay.io: up to 32 transfers at once reading (at the ceiling)": what a registry's limit
/// on transfers reached in each direction it was used in, and why it went no higher; none
/// when it stayed where it started (nothing to explain) or the registry had no transfer.
fn concurrency_note(host: &str, c: &crate::stats::RegistryCounts) -> Option<String> {
    let parts: Vec<String> = [("reading", c.reads), ("writing", c.writes)]
        .into_iter()
        .filter_map(|(direction, reached)| {
            let r = reached.filter(|r| r.in_flight > 0)?;
            let why = match r.stop {
                Stop::Growing => "still growing",
                Stop::Ceiling => "at the ceiling",
                Stop::Demand => "no more work at once",
                Stop::Latency => "round trips grew",
                Stop::Throttled => "the registry answered 429",
                Stop::Unavailable => "the registry answered 503",
                Stop::Resets => "connections were reset",
            };
            Some((direction, r, why))
        })
        .filter(|(_, r, _)| r.limit != r.now || r.limit > crate::concurrency::START)
        .map(|(direction, r, why)| {
            format!(
                "up to {} at once {direction} ({why}; {} now)",
                count(u64::from(r.limit), "transfer"),
                r.now
            )
        })
        .collect();
    (!parts.is_empty()).then(|| format!("{host}: {}", parts.join(", ")))
}

/// ", 2 refused" (immutable tags that would have been overwritten); empty when none.
fn refused_note(refused: usize) -> String {
    if refused > 0 {
        format!(", {refused} refused")
    } else {
        String::new()
    }
}

/// ", 92 deferred" (waiting for a registry's next quota window); empty when none.
fn deferred_note(deferred: usize) -> String {
    if deferred > 0 {
        format!(", {deferred} deferred")
    } else {
        String::new()
    }
}

/// ", 2 waiting" (new source tags held back by `min-age`); empty when none.
fn waiting_note(waiting: usize) -> String {
    if waiting > 0 {
        format!(", {waiting} waiting")
    } else {
        String::new()
    }
}

/// The images `min-age` holds back, each with the time it has left (a later run copies
/// them).
fn waiting_section(outcomes: &[Outcome]) -> String {
    let waiting: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == Status::Waiting)
        .collect();
    if waiting.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "Waiting ({}, not failed: new at the source, held back by min-age):\n",
        count(waiting.len(), "image")
    );
    for o in waiting {
        let _ = writeln!(
            out,
            "  {} -> {} ({}): {}",
            o.job.source,
            o.job.destination,
            o.job.origin,
            o.error_text().unwrap_or_default()
        );
    }
    out
}

/// The images deferred, counted by reason (one line per registry and quota, not one per
/// image: a spent quota defers most of a large set), and what happens to them.
fn deferred_section(outcomes: &[Outcome]) -> String {
    let mut by_reason: Vec<(String, usize)> = Vec::new();
    for o in outcomes.iter().filter(|o| o.status == Status::Deferred) {
        let reason = o
            .error_text()
            .unwrap_or_else(|| "pull quota spent".to_owned());
        match by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => by_reason.push((reason, 1)),
        }
    }
    let total: usize = by_reason.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return String::new();
    }
    let mut out = format!(
        "Deferred ({}, not failed: the next window continues):\n",
        count(total, "image")
    );
    for (reason, n) in &by_reason {
        let _ = writeln!(out, "  {}: {reason}", count(*n, "image"));
    }
    out
}

/// " (2 retries, 7 request retries)": image copies started again, and requests (or blob
/// copies) tried again after a transient failure; empty when there were none.
fn retries_note(image_retries: u64, request_retries: u64) -> String {
    let mut parts = Vec::new();
    if image_retries > 0 {
        parts.push(count_as(image_retries, "retry", "retries"));
    }
    if request_retries > 0 {
        parts.push(count_as(
            request_retries,
            "request retry",
            "request retries",
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
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

/// The blob bytes a dry run's copies would send, each blob once per destination registry.
pub fn would_move(outcomes: &[Outcome]) -> u64 {
    outcomes.iter().filter_map(|o| o.would_move).sum()
}

/// The attached manifests a dry run lists (nested ones included), when it lists any.
fn attached_would_note(listed: usize) -> String {
    if listed == 0 {
        String::new()
    } else {
        format!(
            " {} (signatures, attestations, SBOMs, referrers) would be copied;",
            count(listed, "attached manifest")
        )
    }
}

/// The attached manifests a run wrote, when it wrote any.
fn attached_note(copied: u64) -> String {
    if copied == 0 {
        String::new()
    } else {
        format!(
            " {} (signatures, attestations, SBOMs, referrers) copied;",
            count(copied, "attached manifest")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_none_of_which_was_answered_say_so() {
        assert_eq!(requests_note(54, 0), "54 requests, none answered");
        assert_eq!(
            requests_note(1, 1),
            "1 request in 1 round trip one after another"
        );
        assert_eq!(
            requests_note(0, 0),
            "0 requests in 0 round trips one after another"
        );
    }

    /// A run with nothing in it that took `elapsed`, real or dry.
    fn empty_run(elapsed: std::time::Duration, dry_run: bool) -> RunResult {
        RunResult {
            elapsed,
            dry_run,
            ..RunResult::default()
        }
    }

    #[test]
    fn the_summary_says_how_long_the_run_took_as_a_person_writes_it() {
        let quick = summary(&empty_run(std::time::Duration::from_millis(139), false));
        assert!(quick.trim_end().ends_with("moved in 139 ms"), "{quick}");
        let dry = summary(&empty_run(std::time::Duration::from_millis(2540), true));
        assert!(
            dry.trim_end().ends_with("nothing was written (2.5 s)"),
            "{dry}"
        );
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
