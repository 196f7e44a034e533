//! `image-mirror run`: load and validate, list wildcard tags, plan, copy, report.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::ExitCode::{self, Failed, Interrupted, Ok as Done, Terminated, Usage};
use super::cli::{ENV_JOB_COMPLETION_INDEX, RunArgs, resolve_dry_run};
use super::stores::AnyStores;
use super::{load_and_report, on_runtime};
use crate::disk::DiskStores;
use crate::execute::{ExecuteOptions, Executor};
use crate::inputs::mapping::Mapping;
use crate::inputs::{MappingSet, registries_of, repositories_of};
use crate::model::failure::Failure;
use crate::model::reference::{Repository, TagPattern};
use crate::plan::{LineSelection, Shard, plan, wildcard_sources};
use crate::registry::auth::credentials::Credentials;
use crate::registry::tls::check_certificate_files;
use crate::registry::{NetworkOptions, Registries, RegistryOptions};
use crate::report::outcome::ListingFailure;
use crate::report::progress::Progress;
use crate::report::{RunResult, json, text};
use crate::stats::Stats;
use crate::store::Stores;

/// Everything decided before a registry is contacted.
struct Prepared {
    set: MappingSet,
    dry_run: bool,
    credentials: Credentials,
    options: ExecuteOptions,
    registry: RegistryOptions,
    network: NetworkOptions,
    disk: DiskStores,
    shard: Option<Shard>,
    report: Option<PathBuf>,
    progress_every: std::time::Duration,
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
    let shard = resolve_shard(args, |name| std::env::var(name).ok()).map_err(usage)?;
    let credentials = Credentials::locate(args.registry_config.clone());
    credentials
        .validate()
        .map_err(|e| usage(format!("{e:#}")))?;
    let set = load_and_report(&args.mappings.input_spec(), &mut stderr.lock()).ok_or(Usage)?;
    if set.has_errors() {
        let _ = writeln!(
            stderr.lock(),
            "{} errors in the mapping files; nothing was copied",
            set.error_count()
        );
        return Err(Usage);
    }
    let disk = DiskStores::new(args.dir.clone(), args.from_dir.clone());
    let (sources, destinations) = repositories_of(&set.mappings);
    let (sources, destinations): (Vec<_>, Vec<_>) = (
        sources.into_iter().filter(|r| r.on_disk()).collect(),
        destinations.into_iter().filter(|r| r.on_disk()).collect(),
    );
    disk.preflight(&sources, &destinations)
        .map_err(|e| usage(format!("{e:#}")))?;
    let hosts = registries_of(&set.mappings);
    check_certificate_files(&hosts).map_err(|e| usage(format!("{e:#}")))?;
    credentials
        .resolve_all(hosts)
        .map_err(|e| usage(format!("{e:#}")))?;
    Ok(Prepared {
        set,
        dry_run,
        credentials,
        options: ExecuteOptions {
            dry_run,
            force: args.force,
            max_registry: args.max_registry as usize,
            filter_by_os,
            immutable_tags,
            retries: args.retries,
            request_policy: network.request_policy(),
        },
        registry: RegistryOptions {
            insecure: args.insecure,
            insecure_registries: args.insecure_registry.clone(),
            max_per_registry: args.max_per_registry as usize,
        },
        network,
        disk,
        shard,
        progress_every: std::time::Duration::from_secs(args.progress_interval),
        report: args.report.clone(),
    })
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
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    on_runtime(mirror(prepared))
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

async fn mirror(prepared: Prepared) -> ExitCode {
    let started = Instant::now();
    let Prepared {
        set,
        dry_run,
        credentials,
        options,
        registry,
        network,
        disk,
        shard,
        report: report_path,
        progress_every,
    } = prepared;
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let stats = Arc::new(Stats::default());
    let registries = Arc::new(Registries::new(
        registry,
        network,
        credentials,
        stats.clone(),
    ));
    let stores = Arc::new(AnyStores { registries, disk });

    let (listed, listing_failures) = list_wildcards(stores.as_ref(), &set).await;
    let (mut plan, diagnostics) = plan(&set.mappings, &listed);
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("conflicting destinations after expanding wildcards; nothing was copied");
        return Usage;
    }
    if let Some(shard) = shard {
        plan = plan.shard(shard);
        tracing::info!(%shard, "working on one shard");
    }
    log_selections(&plan.selections);
    let selections = std::mem::take(&mut plan.selections);
    tracing::info!(
        images = plan.job_count(),
        repositories = plan.batches.len(),
        dry_run,
        "plan ready"
    );

    let executor = Arc::new(Executor::new(
        stores,
        options,
        stats.clone(),
        cancel.clone(),
    ));
    let stop_progress = CancellationToken::new();
    let progress_task =
        tokio::spawn(Progress::new(stats.clone()).report(progress_every, stop_progress.clone()));
    let outcomes = executor.execute(plan).await;
    stop_progress.cancel();
    let _ = progress_task.await;

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
        selections,
        stats: stats.snapshot(),
        uploads: stats.uploads(),
        elapsed: started.elapsed(),
        dry_run,
        interrupted,
    };
    if dry_run {
        print!("{}", text::selections(&result.selections));
        print!("{}", text::dry_run_plan(&result.outcomes));
    }
    print!("{}", text::summary(&result));
    let mut code = if !result.listing_failures.is_empty()
        || result.outcomes.iter().any(|o| o.status.fails_the_run())
        || result.stats.lost_workers > 0
    {
        Failed
    } else {
        Done
    };
    if let Some(path) = report_path
        && let Err(e) = write_json(&path, &json::json_report(&result))
    {
        eprintln!("error: {e:#}");
        code = Failed;
    }
    signal_code.unwrap_or(code)
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

fn write_json(path: &PathBuf, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).context("serializing the report")?;
    std::fs::write(path, text).with_context(|| format!("writing the report to {}", path.display()))
}

/// Lists the tags of every wildcard source repository (a registry's or a directory's),
/// concurrently.
async fn list_wildcards(
    stores: &dyn Stores,
    set: &MappingSet,
) -> (HashMap<Repository, Vec<String>>, Vec<ListingFailure>) {
    let repos = wildcard_sources(&set.mappings);
    let results = futures_util::future::join_all(repos.iter().map(|repo| async move {
        let source = stores.source(repo).await?;
        source.tags(repo).await
    }))
    .await;
    let mut listed = HashMap::new();
    let mut failures = Vec::new();
    for (repo, result) in repos.into_iter().zip(results) {
        match result {
            Ok(tags) => {
                listed.insert(repo, tags);
            }
            Err(e) => {
                let wildcards = set.mappings.iter().filter(|m| matches!(m, Mapping::Wildcard { repository, .. } if repository.value == repo));
                for mapping in wildcards {
                    failures.push(ListingFailure {
                        origin: mapping.location().clone(),
                        repository: repo.clone(),
                        error: Failure::of(&e),
                    });
                }
            }
        }
    }
    (listed, failures)
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
