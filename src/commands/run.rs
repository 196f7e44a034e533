//! `image-mirror run`: load and validate, list wildcard tags, plan, copy, report; with
//! `--ledger`, record what was written (and with `--prune`, prune). `image-mirror prune`
//! is the same without the copies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::ExitCode::{self, Failed, Interrupted, Ok as Done, Terminated, Usage};
use super::block_on;
use super::cli::{ENV_ARTIFACTS, ENV_JOB_COMPLETION_INDEX, RunArgs, resolve_dry_run};
use super::ledger::{self as ledger_steps, Settings, Settled};
use super::planning::{Planned, expand, list_and_plan, load_valid, preflight};
use super::publish::publish;
use super::stores::AnyStores;
use crate::disk::DiskStores;
use crate::execute::{ExecuteOptions, Executor};
use crate::inputs::expanded::ExpandedMapping;
use crate::inputs::{MappingSet, repositories_of};
use crate::ledger::prune::PruneOptions;
use crate::ledger::{Location, Stamp, Writer};
use crate::model::reference::TagPattern;
use crate::plan::{LineSelection, Shard, tags_per_repository};
use crate::registry::auth::credentials::Credentials;
use crate::registry::control::quota::Share;
use crate::registry::{NetworkOptions, Registries, RegistryOptions};
use crate::report::outcome::Status;
use crate::report::progress::Progress;
use crate::report::{RunResult, json, junit, text};
use crate::stats::Stats;

/// Everything decided before a registry is contacted.
struct Prepared {
    /// `--max-images`: the largest plan allowed to start.
    max_images: Option<usize>,
    set: MappingSet,
    dry_run: bool,
    credentials: Credentials,
    options: ExecuteOptions,
    registry: RegistryOptions,
    network: NetworkOptions,
    disk: DiskStores,
    shard: Option<Shard>,
    outputs: Outputs,
    progress_every: std::time::Duration,
    /// `--ledger`, and what to prune.
    ledger: Option<Settings>,
    /// False for `prune`: nothing is copied.
    copy: bool,
}

/// Reads and validates all input; any problem is exit 2 with nothing contacted.
fn prepare(args: &RunArgs) -> Result<Prepared, ExitCode> {
    let stderr = std::io::stderr();
    let usage = |message: String| {
        let _ = writeln!(stderr.lock(), "error: {message}");
        Usage
    };
    let network = NetworkOptions {
        request_attempts: args.request_attempts,
        max_retry_wait: args.max_retry_wait,
        connect_timeout: args.connect_timeout,
        read_timeout: args.read_timeout,
    };
    let dry_run = resolve_dry_run(args.dry_run, |name| std::env::var(name).ok()).map_err(usage)?;
    let filter_by_os = match &args.filter_by_os {
        Some(re) => {
            Some(regex::Regex::new(re).map_err(|e| usage(format!("--filter-by-os {re:?}: {e}")))?)
        }
        None => None,
    };
    let immutable_tags = args
        .immutable_tags
        .iter()
        .map(|g| TagPattern::parse(g).map_err(|e| usage(format!("--immutable-tags {g:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // Before anything is contacted: a policy that cannot be enforced is the user's to fix.
    let policy = match &args.policy {
        Some(path) => Some(Arc::new(
            crate::policy::Policy::load(path).map_err(|e| usage(format!("{e:#}")))?,
        )),
        None => None,
    };
    let shard = resolve_shard(args, |name| std::env::var(name).ok()).map_err(usage)?;
    let ledger = ledger_settings(args, dry_run, shard, &network).map_err(usage)?;
    let credentials = Credentials::locate(args.registry.registry_config.clone());
    credentials
        .validate()
        .map_err(|e| usage(format!("{e:#}")))?;
    args.mappings.default_exists().map_err(usage)?;
    let set = load_valid(&args.mappings.input_spec(), "nothing was copied")?;
    // First sightings live in the ledger: without one, a held tag would wait forever.
    let min_age_line = set.mappings.iter().find(|m| m.rules().min_age.is_some());
    if ledger.is_none() && (args.owned.min_age.is_some() || min_age_line.is_some()) {
        let by = match min_age_line {
            Some(m) => format!("min-age at {}", m.location()),
            None => "--min-age".to_owned(),
        };
        return Err(usage(format!(
            "{by} needs --ledger: when a source tag was first seen is kept there"
        )));
    }
    let disk = DiskStores::new(args.dir.clone(), args.from_dir.clone());
    preflight(&set, &disk, &credentials).map_err(|e| usage(format!("{e:#}")))?;
    Ok(Prepared {
        max_images: args.max_images,
        set,
        dry_run,
        credentials,
        options: ExecuteOptions {
            dry_run,
            force: args.force,
            max_registry: args.max_registry as usize,
            filter_by_os,
            immutable_tags,
            attached: args.attached,
            policy,
            retries: args.retries,
            request_policy: network.request_policy(),
        },
        registry: args.registry.options(),
        network,
        disk,
        shard,
        progress_every: std::time::Duration::from_secs(args.progress_interval),
        ledger,
        copy: true,
        outputs: Outputs {
            shard: shard.map(|s| s.index().to_string()),
            ..Outputs::resolve(args, std::env::var_os(ENV_ARTIFACTS))
        },
    })
}

/// `--ledger`, `--prune`, `--prune-after`, `--max-prune` and the clock.
fn ledger_settings(
    args: &RunArgs,
    dry_run: bool,
    shard: Option<Shard>,
    network: &NetworkOptions,
) -> Result<Option<Settings>, String> {
    let Some(text) = &args.owned.ledger else {
        return Ok(None);
    };
    let location = Location::parse(text)?;
    let now = match args.now {
        Some(seconds) => Stamp(seconds),
        None => Stamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
    };
    Ok(Some(Settings {
        location,
        writer: Writer::new(shard),
        prune: args.owned.prune.then_some(PruneOptions {
            after: args.owned.prune_after(),
            max: args.owned.max_prune.unwrap_or_default(),
            dry_run,
        }),
        now,
        dry_run,
        shard,
        policy: network.request_policy(),
        min_age: args.owned.min_age,
    }))
}

/// Where the run's reports and metrics go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Outputs {
    report: Option<PathBuf>,
    junit: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
    pushgateway: Option<reqwest::Url>,
    /// The shard's index, when sharded: a label of the metrics.
    shard: Option<String>,
}

/// The file names Prow's artefacts directory gets (Spyglass shows `junit*.xml`).
const ARTIFACT_REPORT: &str = "image-mirror-report.json";
const ARTIFACT_JUNIT: &str = "junit_image_mirror.xml";

impl Outputs {
    /// The flags, else `$ARTIFACTS/…` when Prow sets it (an empty value counts as unset).
    fn resolve(args: &RunArgs, artifacts: Option<std::ffi::OsString>) -> Outputs {
        let artifacts = artifacts.filter(|a| !a.is_empty()).map(PathBuf::from);
        let default = |name: &str| artifacts.as_ref().map(|dir| dir.join(name));
        Outputs {
            report: args.report.clone().or_else(|| default(ARTIFACT_REPORT)),
            junit: args.junit.clone().or_else(|| default(ARTIFACT_JUNIT)),
            metrics_file: args.metrics_file.clone(),
            pushgateway: args.pushgateway.clone(),
            shard: None,
        }
    }
}

/// `--shard I/N`, or `--shard-count N` with the index from `JOB_COMPLETION_INDEX`.
fn resolve_shard(
    args: &RunArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, String> {
    if let Some(spec) = &args.shard {
        return Shard::parse(spec)
            .map(Some)
            .map_err(|e| format!("--shard: {e}"));
    }
    let Some(count) = args.shard_count else {
        return Ok(None);
    };
    let index = env(ENV_JOB_COMPLETION_INDEX)
        .ok_or("--shard-count needs JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job)")?;
    let index = index
        .trim()
        .parse()
        .map_err(|_| format!("JOB_COMPLETION_INDEX={index:?} is not a number"))?;
    Shard::new(index, count)
        .map(Some)
        .map_err(|e| format!("--shard-count: {e}"))
}

pub fn run(args: &RunArgs) -> ExitCode {
    // Said alone, it would be ignored: a job meant to prune would silently prune nothing.
    if let Some(flag) = args.owned.without_prune() {
        eprintln!(
            "error: {flag} applies to a prune: give --prune too (or run `image-mirror prune`); nothing was copied"
        );
        return Usage;
    }
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.owned.prune
        && let Err(code) = refuse_pruning_everything(&prepared, args)
    {
        return code;
    }
    go(prepared)
}

/// `image-mirror prune`: plans as `run` does, copies nothing, prunes.
pub fn prune(args: &RunArgs) -> ExitCode {
    let mut prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    prepared.copy = false;
    if let Err(code) = refuse_pruning_everything(&prepared, args) {
        return code;
    }
    if let Some(settings) = &mut prepared.ledger {
        settings.prune = Some(PruneOptions {
            after: args.owned.prune_after(),
            max: args.owned.max_prune.unwrap_or_default(),
            dry_run: prepared.dry_run,
        });
    }
    // What a prune reports is the prune: no image was copied to count.
    prepared.outputs.junit = None;
    prepared.outputs.metrics_file = None;
    prepared.outputs.pushgateway = None;
    go(prepared)
}

/// No mapping line at all (an emptied ConfigMap, a wrong path) would make every tag the
/// ledger names unwanted: a prune then is exit 2 before anything is contacted, whatever the
/// default `--max-prune` would allow a small mirror. `--max-prune` given says it is meant.
fn refuse_pruning_everything(prepared: &Prepared, args: &RunArgs) -> Result<(), ExitCode> {
    if !prepared.set.mappings.is_empty() || args.owned.max_prune.is_some() {
        return Ok(());
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "error: no mapping line in {}: a prune would delete every tag the ledger names; nothing was pruned or copied (to prune them all on purpose, give --max-prune, e.g. --max-prune 100%)",
        super::planning::described(&args.mappings.input_spec())
    );
    Err(Usage)
}

fn go(prepared: Prepared) -> ExitCode {
    let outputs = prepared.outputs.clone();
    match block_on(mirror(prepared)) {
        Ok(Ok(finished)) => finish(finished, &outputs),
        Ok(Err(code)) | Err(code) => code,
    }
}

/// A run whose copies are over: what it did, and the signal that stopped it, if one did.
struct Finished {
    result: RunResult,
    signal: Option<ExitCode>,
    ledger: Option<Settled>,
    copy: bool,
}

/// Writes the report and prints the plan and summary, after the runtime is gone: nothing logs
/// any more, so in a Prow log (stdout and stderr in one file) the summary comes last.
fn finish(finished: Finished, outputs: &Outputs) -> ExitCode {
    let Finished {
        mut result,
        signal,
        ledger,
        copy,
    } = finished;
    let mut code = if !result.listing_failures.is_empty()
        || result.outcomes.iter().any(|o| o.status.fails_the_run())
        || result.stats.lost_workers > 0
    {
        Failed
    } else {
        Done
    };
    if let Some(settled) = &ledger {
        if settled.failed() && code == Done {
            code = Failed;
        }
        if settled.refused_by_valve() {
            code = Usage;
        }
        for problem in &settled.problems {
            eprintln!("warning: {problem}");
        }
        if let Some(error) = &settled.write_error {
            eprintln!("error: {error}");
        }
    }
    let prune_report = ledger.as_ref().and_then(|l| l.prune.as_ref());
    result.pruned = prune_report.map(crate::ledger::prune::PruneReport::totals);
    let reports = [
        (
            outputs.report.as_deref(),
            "JSON report",
            json_text(&result, prune_report),
        ),
        (
            outputs.junit.as_deref(),
            "JUnit report",
            Ok(junit::junit_report(&result).into_bytes()),
        ),
    ];
    for (path, what, text) in reports {
        let Some(path) = path else { continue };
        match text.and_then(|text| write_file(path, what, &text)) {
            Ok(()) => tracing::info!(path = %path.display(), "{what} written"),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = Failed;
            }
        }
    }
    if !copy {
        // `prune` publishes no metrics: they describe mirroring.
    } else if result.dry_run {
        if outputs.metrics_file.is_some() || outputs.pushgateway.is_some() {
            tracing::info!("dry run: no metrics published (they describe real mirroring)");
        }
    } else {
        // Deferred work exits 0 but is no success: the last success stays where it was, so
        // a set the quota never lets complete fires the staleness alert (see ExitCode::Ok).
        let deferred = result.outcomes.iter().any(|o| o.status == Status::Deferred);
        publish(
            &result,
            outputs.metrics_file.as_deref(),
            outputs.pushgateway.as_ref(),
            outputs.shard.as_deref(),
            code == Done && signal.is_none() && !deferred,
        );
    }
    // stderr is unbuffered, but a log line may sit in a writer's buffer; stdout is flushed
    // after the summary so that nothing of ours can follow it.
    let _ = std::io::stderr().flush();
    let mut out = std::io::stdout().lock();
    if result.dry_run && copy {
        let _ = write!(
            out,
            "{}",
            text::repository_wildcards(&result.repository_wildcards)
        );
        let _ = write!(out, "{}", text::selections(&result.selections));
        let _ = write!(out, "{}", text::dry_run_plan(&result.outcomes));
    }
    if let Some(report) = prune_report {
        let _ = write!(out, "{}", ledger_steps::text(report));
    }
    if copy {
        let _ = write!(out, "{}", text::summary(&result));
    }
    let _ = out.flush();
    signal.unwrap_or(code)
}

/// Cancels `token` on SIGINT or SIGTERM and tells which came.
async fn watch_signals(token: CancellationToken) -> Option<ExitCode> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return None;
        };
        let code = tokio::select! {
            _ = term.recv() => Terminated,
            _ = int.recv() => Interrupted,
        };
        tracing::warn!(
            "interrupted: starting nothing new, abandoning transfers in flight, writing the report"
        );
        token.cancel();
        Some(code)
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
        Some(Interrupted)
    }
}

/// The run itself; `Err` is an exit code that ends it before any copy (conflicts found once
/// wildcards are expanded).
async fn mirror(prepared: Prepared) -> Result<Finished, ExitCode> {
    let started = Instant::now();
    let Prepared {
        max_images,
        set,
        dry_run,
        credentials,
        options,
        registry,
        network,
        disk,
        shard,
        outputs: _,
        progress_every,
        ledger,
        copy,
    } = prepared;
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let stats = Arc::new(Stats::default());
    let mut registry = registry;
    // Shards pulling with one account share its quota: each takes its part.
    registry.quota_share = shard.map(|s| Share {
        index: s.index(),
        count: s.count(),
    });
    let registries = Arc::new(Registries::new(
        registry,
        network,
        credentials,
        stats.clone(),
    ));
    let stores = Arc::new(AnyStores { registries, disk });

    let expanded = expand(&stores, set.mappings, "nothing was copied").await?;
    let executor = Arc::new(Executor::new(
        stores.clone(),
        options,
        stats.clone(),
        cancel.clone(),
    ));
    // The destinations this shard owns and their sources, known before any tag is listed:
    // their stores are opened and the destinations' tags listed while the sources' tags are.
    let (sources, destinations) =
        repositories_of(expanded.mappings.iter().map(ExpandedMapping::named), |r| {
            shard.is_none_or(|s| s.owns(r))
        });
    if copy {
        executor.prefetch(sources, destinations);
    }
    let Planned {
        mut plan,
        listed,
        listing_failures,
        matched,
    } = list_and_plan(&stores, expanded, shard, "nothing was copied").await?;
    log_selections(&plan.selections);
    let selections = std::mem::take(&mut plan.selections);
    let repository_wildcards = tags_per_repository(&matched, &plan);
    if let Some(max) = max_images
        && plan.job_count() > max
    {
        eprintln!(
            "error: the plan holds {} images in {} repositories, more than --max-images {max}; nothing was copied",
            plan.job_count(),
            plan.batches.len()
        );
        return Err(Usage);
    }
    tracing::info!(
        images = plan.job_count(),
        repositories = plan.batches.len(),
        dry_run,
        "plan ready"
    );

    // Wildcard sources were listed already: attachments are found in those lists.
    for (repository, tags) in &listed {
        executor.know_tags(repository, tags);
    }
    let wanted = ledger.as_ref().map(|_| {
        (
            ledger_steps::wanted(&plan),
            ledger_steps::planned_sources(&plan),
        )
    });
    let read = match &ledger {
        Some(settings) => Some(ledger_steps::read(settings, stores.as_ref()).await),
        None => None,
    };
    if let (Some(settings), Some(read)) = (&ledger, &read) {
        executor.quarantine(crate::ledger::model::Quarantine::new(
            &read.ledger,
            settings.now,
            settings.min_age,
        ));
    }
    let outcomes = if copy {
        let stop_progress = CancellationToken::new();
        let progress_task = tokio::spawn(
            Progress::new(stats.clone()).report(progress_every, stop_progress.clone()),
        );
        let outcomes = executor.execute(plan).await;
        stop_progress.cancel();
        let _ = progress_task.await;
        outcomes
    } else {
        Vec::new()
    };
    // An interrupted run neither prunes nor writes the ledger: what it did not reach would
    // look unwanted.
    let settled = match (&ledger, read, wanted) {
        (Some(settings), Some(read), Some((wanted, sources))) if !cancel.is_cancelled() => Some(
            ledger_steps::settle(
                settings,
                stores.as_ref(),
                read,
                &outcomes,
                &wanted,
                &sources,
                listing_failures.len(),
            )
            .await,
        ),
        _ => None,
    };

    let interrupted = cancel.is_cancelled();
    let signal_code = if interrupted {
        signals.await.ok().flatten()
    } else {
        signals.abort();
        None
    };
    let result = RunResult {
        outcomes,
        listing_failures,
        stats: stats.snapshot(),
        registries: stats.registries(),
        quotas: stores.registries.quotas(),
        uploads: stats.uploads(),
        selections,
        repository_wildcards,
        elapsed: started.elapsed(),
        dry_run,
        interrupted,
        pruned: None,
    };
    Ok(Finished {
        result,
        signal: signal_code,
        ledger: settled,
        copy,
    })
}

/// The JSON report, with its `prune` section when the run pruned.
fn json_text(
    result: &RunResult,
    prune: Option<&crate::ledger::prune::PruneReport>,
) -> Result<Vec<u8>> {
    let mut value =
        serde_json::to_value(json::json_report(result)).context("serializing the JSON report")?;
    if let (Some(prune), Some(map)) = (prune, value.as_object_mut()) {
        map.insert("prune".to_owned(), ledger_steps::json(prune));
    }
    serde_json::to_vec_pretty(&value).context("serializing the JSON report")
}

/// Writes a report, creating its directory (Prow's artefacts directory may not exist yet).
fn write_file(path: &Path, what: &str, text: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("writing the {what}: creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing the {what} to {}", path.display()))
}

/// What each line's rules chose: a count per line at info, every tag's verdict at debug.
fn log_selections(selections: &[LineSelection]) {
    for line in selections {
        let s = &line.selection;
        tracing::info!(source = %line.repository, origin = %line.origin, selected = s.selected.len(), left_out = s.excluded.len(), "tags chosen by the line's rules");
        for tag in &s.selected {
            tracing::debug!(source = %line.repository, %tag, "selected");
        }
        for (tag, why) in &s.excluded {
            tracing::debug!(source = %line.repository, %tag, "excluded: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cli::{Cli, Command};
    use clap::Parser;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["image-mirror", "run"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Run(args)) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_go_to_prows_artifacts_unless_the_flags_say_otherwise() {
        let none = Outputs::resolve(&run_args(&[]), None);
        assert_eq!(none, Outputs::default());
        let artifacts = Some(std::ffi::OsString::from("/logs/artifacts"));
        let prow = Outputs::resolve(&run_args(&[]), artifacts.clone());
        assert_eq!(
            prow,
            Outputs {
                report: Some(PathBuf::from("/logs/artifacts/image-mirror-report.json")),
                junit: Some(PathBuf::from("/logs/artifacts/junit_image_mirror.xml")),
                ..Outputs::default()
            }
        );
        let flags = Outputs::resolve(&run_args(&["--report=/r.json"]), artifacts);
        assert_eq!(flags.report, Some(PathBuf::from("/r.json")));
        assert_eq!(flags.junit, prow.junit);
        let empty = Outputs::resolve(&run_args(&[]), Some(std::ffi::OsString::new()));
        assert_eq!(empty, Outputs::default());
    }

    #[test]
    fn shard_from_flag_or_indexed_job() {
        let none = |_: &str| None;
        assert_eq!(resolve_shard(&run_args(&[]), none), Ok(None));
        assert_eq!(
            resolve_shard(&run_args(&["--shard", "2/3"]), none),
            Ok(Shard::new(2, 3).ok())
        );
        let env = |n: &str| (n == "JOB_COMPLETION_INDEX").then(|| "1".to_owned());
        assert_eq!(
            resolve_shard(&run_args(&["--shard-count=4"]), env),
            Ok(Shard::new(1, 4).ok())
        );
        assert!(
            resolve_shard(&run_args(&["--shard-count=4"]), none)
                .unwrap_err()
                .contains("JOB_COMPLETION_INDEX")
        );
        let bad = |n: &str| (n == "JOB_COMPLETION_INDEX").then(|| "9".to_owned());
        assert!(
            resolve_shard(&run_args(&["--shard-count=4"]), bad)
                .unwrap_err()
                .contains("out of range")
        );
    }
}
