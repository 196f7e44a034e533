//! Metrics for a batch job: a run lasts minutes and is gone, so nothing can scrape it. It
//! leaves its numbers behind instead, in the Prometheus text format — in a file for
//! node_exporter's textfile collector (`--metrics-file`), or pushed to a Pushgateway
//! (`--pushgateway`) under job `image-mirror` (grouped by shard when sharded). An alert on
//! `image_mirror_last_success_timestamp_seconds` then tells when mirroring stopped working,
//! which no single run's exit code can.
//!
//! `last_success` must outlive failed runs: the file keeps the previous file's value, and a
//! push leaves it out so the Pushgateway keeps the one it has (a POST replaces only the
//! metrics it names). So must `deferred_since` (per source registry, since when images have
//! waited for its pull quota: a set the quota never lets complete is starving), which only
//! a run that deferred nothing there moves on ([`deferred_since`]). A dry run publishes nothing (see `commands::run`): a rehearsal with
//! the same flags must not disturb the numbers of the job it rehearses. A view like the
//! others: it renders text; `commands::publish` writes the file and does the push.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RunResult;
use super::outcome::Totals;

/// The one metric carried over from a previous run when this one did not succeed.
pub const LAST_SUCCESS: &str = "image_mirror_last_success_timestamp_seconds";

/// Per source registry: since when images have been deferred to its pull quota, carried over
/// from run to run while they are.
pub const DEFERRED_SINCE: &str = "image_mirror_deferred_since_timestamp_seconds";

/// What a run's metrics carry over from the runs before; `None` leaves a family out (a push:
/// the Pushgateway keeps the value it has).
#[derive(Debug, Clone, Default)]
pub struct Carried {
    /// The value of [`LAST_SUCCESS`]: this run's end if it succeeded, else the previous one.
    pub last_success: Option<f64>,
    /// The values of [`DEFERRED_SINCE`] per registry (see [`deferred_since`]).
    pub deferred_since: Option<BTreeMap<String, f64>>,
}

/// The Pushgateway job name.
pub const JOB: &str = "image-mirror";

/// When a run ended and whether it counts as a success.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Every image mirrored (nothing failed, interrupted or deferred).
    pub success: bool,
}

impl Ending {
    pub fn now(success: bool) -> Ending {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        Ending { at, success }
    }
}

/// Writes one metric family: its help, its type, its samples.
fn family(out: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `{a="x",b="y"}` from label pairs (values escaped as the text format wants); empty for none.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The run's metrics in the Prometheus text format. `common` labels go on every sample (the
/// shard, in a file; a push gets it from its grouping key instead). `carried`: what is
/// carried over from the runs before (see [`Carried`]).
pub fn render(
    run: &RunResult,
    ending: Ending,
    carried: &Carried,
    common: &[(&str, &str)],
) -> String {
    let one = |value: f64| vec![(labels(common), value)];
    let with = |extra: (&str, &str), value: f64| {
        let mut pairs = common.to_vec();
        pairs.push(extra);
        (labels(&pairs), value)
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut out = String::new();
    family(
        &mut out,
        "image_mirror_last_run_timestamp_seconds",
        "When the last run of image-mirror ended (Unix time).",
        &one(ending.at),
    );
    if let Some(at) = carried.last_success {
        family(
            &mut out,
            LAST_SUCCESS,
            "When a run last ended with every image mirrored (Unix time).",
            &one(at),
        );
    }
    family(
        &mut out,
        "image_mirror_run_success",
        "1 if the last run mirrored every image, else 0.",
        &one(flag(ending.success)),
    );
    family(
        &mut out,
        "image_mirror_run_duration_seconds",
        "How long the last run took.",
        &one(run.elapsed.as_secs_f64()),
    );
    family(
        &mut out,
        "image_mirror_run_interrupted",
        "1 if the last run was stopped by a signal before it finished.",
        &one(flag(run.interrupted)),
    );
    let t = Totals::of(&run.outcomes, run.listing_failures.len());
    let by_status = [
        ("copied", t.copied),
        ("unchanged", t.unchanged),
        ("failed", t.failed),
        ("cancelled", t.cancelled),
        ("deferred", t.deferred),
        ("waiting", t.waiting),
    ];
    family(
        &mut out,
        "image_mirror_images",
        "Destination tags of the last run, by what happened to them.",
        &by_status
            .iter()
            .map(|(status, n)| with(("status", status), *n as f64))
            .collect::<Vec<_>>(),
    );
    let s = &run.stats;
    family(
        &mut out,
        "image_mirror_blobs",
        "Blobs of the last run: uploaded, mounted from another repository, already present.",
        &[
            with(("result", "uploaded"), s.blobs_uploaded as f64),
            with(("result", "mounted"), s.blobs_mounted as f64),
            with(("result", "present"), s.blobs_present as f64),
        ],
    );
    family(
        &mut out,
        "image_mirror_sent_bytes",
        "Blob bytes the last run sent to destinations (failed attempts included).",
        &one(s.bytes as f64),
    );
    family(
        &mut out,
        "image_mirror_image_retries",
        "Image copies the last run started again after a transient failure.",
        &one(s.image_retries as f64),
    );
    let per = |pick: fn(&crate::stats::RegistryCounts) -> u64| {
        run.registries
            .iter()
            .map(|(registry, c)| with(("registry", registry), pick(c) as f64))
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "image_mirror_requests",
        "Requests the last run sent, per registry (token requests and retries included).",
        &per(|c| c.requests),
    );
    family(
        &mut out,
        "image_mirror_round_trips",
        "Round trips the last run waited for one after another (requests in flight together count once).",
        &one(s.round_trips as f64),
    );
    family(
        &mut out,
        "image_mirror_request_retries",
        "Requests the last run tried again after a transient failure, per registry.",
        &per(|c| c.retries),
    );
    family(
        &mut out,
        "image_mirror_throttled_requests",
        "Answers 429 Too Many Requests the last run got, per registry.",
        &per(|c| c.throttled),
    );
    quota_families(&mut out, run, common);
    if let Some(pruned) = &run.pruned {
        prune_families(&mut out, pruned, common);
    }
    if let Some(since) = &carried.deferred_since {
        family(
            &mut out,
            DEFERRED_SINCE,
            "Since when images have been deferred to the source registry's pull quota (Unix time): the end of the last run that deferred none there, kept while runs defer; time() minus it is how long the oldest deferred image has waited.",
            &since
                .iter()
                .map(|(registry, at)| with(("registry", registry), *at))
                .collect::<Vec<_>>(),
        );
    }
    let reached = |pick: fn(&crate::concurrency::Reached) -> u32, why: bool| {
        let mut samples = Vec::new();
        for (registry, c) in &run.registries {
            for (direction, r) in [("read", c.reads), ("write", c.writes)] {
                let Some(r) = r.filter(|r| r.in_flight > 0) else {
                    continue;
                };
                let mut pairs = common.to_vec();
                pairs.extend([("registry", registry.as_str()), ("direction", direction)]);
                if why {
                    pairs.push(("stopped", r.stop.label()));
                }
                samples.push((labels(&pairs), f64::from(pick(&r))));
            }
        }
        samples
    };
    family(
        &mut out,
        "image_mirror_transfers_limit",
        "The highest limit on blob transfers at once the last run reached, per registry and direction (read from it, write to it), labelled with why it went no higher (ceiling, latency, throttled, unavailable, resets, demand, growing).",
        &reached(|r| r.limit, true),
    );
    family(
        &mut out,
        "image_mirror_transfers_in_flight",
        "The most blob transfers in flight at once in the last run, per registry and direction.",
        &reached(|r| r.in_flight, false),
    );
    out
}

/// Per source registry with a pull quota: what was left at the end and the images deferred
/// to its next window. A set the quota never lets complete shows as images deferred run
/// after run, and as [`LAST_SUCCESS`] growing old (a run that deferred work is no success).
fn quota_families(out: &mut String, run: &RunResult, common: &[(&str, &str)]) {
    let with = |registry: &str, value: f64| {
        let mut pairs = common.to_vec();
        pairs.push(("registry", registry));
        (labels(&pairs), value)
    };
    let left: Vec<(String, f64)> = run
        .quotas
        .iter()
        .filter_map(|(r, q)| q.left.map(|left| with(r, left as f64)))
        .collect();
    if !left.is_empty() {
        family(
            out,
            "image_mirror_quota_remaining",
            "Manifest GETs left of the registry's pull quota at the end of the last run (this shard's part when sharded).",
            &left,
        );
    }
    let limit: Vec<(String, f64)> = run
        .quotas
        .iter()
        .filter_map(|(r, q)| q.limit.map(|limit| with(r, limit as f64)))
        .collect();
    if !limit.is_empty() {
        family(
            out,
            "image_mirror_quota_limit",
            "Manifest GETs the registry's pull quota allows per window, as it published it.",
            &limit,
        );
    }
    let deferred = super::deferred_per_registry(&run.outcomes);
    let mut registries: Vec<&str> = run.quotas.iter().map(|(r, _)| r.as_str()).collect();
    registries.extend(deferred.keys().copied());
    registries.sort_unstable();
    registries.dedup();
    family(
        out,
        "image_mirror_deferred_images",
        "Images the last run deferred to the registry's next quota window, per source registry.",
        &registries
            .iter()
            .map(|r| with(r, deferred.get(r).copied().unwrap_or(0) as f64))
            .collect::<Vec<_>>(),
    );
}

/// `run --prune`: the unwanted tags per verdict (every verdict, zero included, so that an
/// alert on `failed` or `waiting` has a series to watch), and what held the whole prune back.
fn prune_families(out: &mut String, pruned: &super::PruneTotals, common: &[(&str, &str)]) {
    let with = |name: &str, value: &str, count: f64| {
        let mut pairs = common.to_vec();
        pairs.push((name, value));
        (labels(&pairs), count)
    };
    family(
        out,
        "image_mirror_prune_tags",
        "Tags the ledger names and no mapping wants, by what the last run's prune made of them.",
        &super::PRUNE_STATUSES
            .iter()
            .map(|s| {
                with(
                    "status",
                    s,
                    pruned.by_status.get(s).copied().unwrap_or(0) as f64,
                )
            })
            .collect::<Vec<_>>(),
    );
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    family(
        out,
        "image_mirror_prune_held",
        "1 if the last run's prune deleted nothing because of this: max-prune (more were due than --max-prune allows) or untrusted (the ledger could not be read whole).",
        &[
            with("reason", "max-prune", flag(pruned.refused)),
            with("reason", "untrusted", flag(pruned.untrusted)),
        ],
    );
}

/// The [`DEFERRED_SINCE`] values to write, per source registry: a registry this run
/// deferred images to keeps its value from the file before (`previous`, the old file's
/// text), or, on the first such run, this run's start; every other registry of this run or
/// the file before gets this run's end (nothing of it waits). Without a file before (a push,
/// `previous` `None`), the family is left out when anything was deferred, so that the
/// Pushgateway keeps its values (a POST replaces a family whole).
pub fn deferred_since(
    run: &RunResult,
    ending: Ending,
    previous: Option<&str>,
) -> Option<BTreeMap<String, f64>> {
    let deferred = super::deferred_per_registry(&run.outcomes);
    let before = match previous {
        Some(text) => previous_deferred_since(text),
        None if deferred.is_empty() => BTreeMap::new(),
        None => return None,
    };
    let start = ending.at - run.elapsed.as_secs_f64();
    let mut out: BTreeMap<String, f64> = before
        .keys()
        .map(|r| r.as_str())
        .chain(run.quotas.iter().map(|(r, _)| r.as_str()))
        .chain(deferred.keys().copied())
        .map(|r| (r.to_owned(), ending.at))
        .collect();
    for registry in deferred.keys() {
        let since = before.get(*registry).copied().unwrap_or(start);
        out.insert((*registry).to_owned(), since);
    }
    Some(out)
}

/// The samples of `family` in a metrics file written before: each one's labels (`{…}`, or
/// empty) and value.
fn previous_samples<'a>(text: &'a str, family: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
    text.lines().filter_map(move |line| {
        let (labels, value) = line.strip_prefix(family)?.rsplit_once(' ')?;
        if !(labels.is_empty() || labels.starts_with('{')) {
            // Another family whose name starts with this one.
            return None;
        }
        Some((labels, value.trim().parse().ok()?))
    })
}

/// The [`DEFERRED_SINCE`] values in a metrics file written before, by registry.
fn previous_deferred_since(text: &str) -> BTreeMap<String, f64> {
    previous_samples(text, DEFERRED_SINCE)
        .filter_map(|(labels, value)| {
            let registry = labels.split("registry=\"").nth(1)?.split('"').next()?;
            Some((registry.to_owned(), value))
        })
        .collect()
}

/// The [`LAST_SUCCESS`] value in a metrics file written before, if any.
pub fn previous_last_success(text: &str) -> Option<f64> {
    previous_samples(text, LAST_SUCCESS)
        .next()
        .map(|(_, value)| value)
}

/// The per-registry counts a run collected, for [`RunResult`].
pub type PerRegistry = BTreeMap<String, crate::stats::RegistryCounts>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_success_is_found_in_an_old_file() {
        let old = "# HELP image_mirror_last_success_timestamp_seconds x\n\
                   # TYPE image_mirror_last_success_timestamp_seconds gauge\n\
                   image_mirror_last_success_timestamp_seconds{shard=\"1\"} 1764480000.5\n";
        assert_eq!(previous_last_success(old), Some(1_764_480_000.5));
        assert_eq!(
            previous_last_success("image_mirror_last_success_timestamp_secondsX 1\n"),
            None
        );
        assert_eq!(previous_last_success(""), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z")]), r#"{a="x\"y\\z"}"#);
        assert_eq!(labels(&[]), "");
    }
}
