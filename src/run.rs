//! `image-mirror run`: load and validate, list wildcard tags, plan, copy, report.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::check::load_and_report;
use crate::cli::{ENV_JOB_COMPLETION_INDEX, RunArgs, resolve_dry_run};
use crate::credentials::Credentials;
use crate::execute::{ExecuteOptions, Executor, Status};
use crate::inputs::MappingSet;
use crate::mapping::Mapping;
use crate::plan::{Shard, plan, wildcard_sources};
use crate::progress::Progress;
use crate::reference::Repository;
use crate::registry::{NetworkOptions, Registries, RegistryOptions};
use crate::report::{self, ListingFailure, RunFigures};

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
/// 128 + the signal, as shells report it.
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;

/// Everything decided before a registry is contacted.
struct Prepared {
    set: MappingSet,
    dry_run: bool,
    credentials: Credentials,
    options: ExecuteOptions,
    registry: RegistryOptions,
    network: NetworkOptions,
    shard: Option<Shard>,
    report: Option<PathBuf>,
    progress_every: std::time::Duration,
}

/// Reads and validates all input; any problem is exit 2 with nothing contacted.
fn prepare(args: &RunArgs) -> Result<Prepared, i32> {
    let stderr = std::io::stderr();
    let usage = |message: String| {
        let _ = writeln!(stderr.lock(), "error: {message}");
        EXIT_USAGE
    };
    let dry_run = resolve_dry_run(args.dry_run, |name| std::env::var(name).ok()).map_err(usage)?;
    let filter_by_os = match &args.filter_by_os {
        Some(re) => {
            Some(regex::Regex::new(re).map_err(|e| usage(format!("--filter-by-os {re:?}: {e}")))?)
        }
        None => None,
    };
    let shard = resolve_shard(args, |name| std::env::var(name).ok()).map_err(usage)?;
    let credentials = Credentials::locate(args.registry_config.clone());
    credentials
        .validate()
        .map_err(|e| usage(format!("{e:#}")))?;
    let set = load_and_report(&args.mappings.input_spec(), &mut stderr.lock()).ok_or(EXIT_USAGE)?;
    if set.has_errors() {
        let _ = writeln!(
            stderr.lock(),
            "{} errors in the mapping files; nothing was copied",
            set.error_count()
        );
        return Err(EXIT_USAGE);
    }
    let hosts = crate::credentials::registries_of(&set.mappings);
    crate::registry::check_certificate_files(&hosts).map_err(|e| usage(format!("{e:#}")))?;
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
            retries: args.retries,
        },
        registry: RegistryOptions {
            insecure: args.insecure,
            insecure_registries: args.insecure_registry.clone(),
            max_per_registry: args.max_per_registry as usize,
        },
        network: NetworkOptions {
            request_attempts: args.request_attempts,
            max_retry_wait: args.max_retry_wait,
            connect_timeout: args.connect_timeout,
            read_timeout: args.read_timeout,
        },
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

pub fn run(args: &RunArgs) -> i32 {
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    on_runtime(mirror(prepared))
}

/// Runs a command's async part to its exit code on a multi-threaded runtime.
pub(crate) fn on_runtime(command: impl Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            EXIT_FAILED
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM and tells which came.
async fn watch_signals(token: CancellationToken) -> Option<i32> {
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
            _ = term.recv() => EXIT_SIGTERM,
            _ = int.recv() => EXIT_SIGINT,
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
        Some(EXIT_SIGINT)
    }
}

async fn mirror(prepared: Prepared) -> i32 {
    let started = Instant::now();
    let Prepared {
        set,
        dry_run,
        credentials,
        options,
        registry,
        network,
        shard,
        report: report_path,
        progress_every,
    } = prepared;
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let registries = Registries::new(registry, credentials).with_network(network);

    let (listed, listing_failures) = list_wildcards(&registries, &set).await;
    let (mut plan, diagnostics) = plan(&set.mappings, &listed);
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("conflicting destinations after expanding wildcards; nothing was copied");
        return EXIT_USAGE;
    }
    if let Some(shard) = shard {
        plan = plan.shard(shard);
        tracing::info!(%shard, "working on one shard");
    }
    tracing::info!(
        images = plan.job_count(),
        repositories = plan.batches.len(),
        dry_run,
        "plan ready"
    );

    let progress = Progress::new(plan.job_count());
    let executor = Arc::new(Executor::new(
        registries,
        options,
        progress.clone(),
        cancel.clone(),
    ));
    let stop_progress = CancellationToken::new();
    let progress_task = tokio::spawn(progress.report(
        executor.registries().traffic.clone(),
        progress_every,
        stop_progress.clone(),
    ));
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
    let figures = RunFigures {
        bytes: executor
            .registries()
            .traffic
            .bytes_uploaded
            .load(Ordering::Relaxed),
        retries: executor.retries.load(Ordering::Relaxed),
        request_retries: executor
            .registries()
            .traffic
            .request_retries
            .load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        dry_run,
    };
    if dry_run {
        print!("{}", report::dry_run_plan(&outcomes));
    }
    print!(
        "{}",
        report::summary(&outcomes, &listing_failures, &executor.blobs, figures)
    );
    let mut code = if !listing_failures.is_empty()
        || outcomes.iter().any(|o| o.status == Status::Failed)
        || executor.lost_workers.load(Ordering::Relaxed) > 0
    {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    if let Some(path) = report_path {
        let json = report::json_report(
            &outcomes,
            &listing_failures,
            &executor.blobs,
            figures,
            interrupted,
        );
        if let Err(e) = write_json(&path, &json) {
            eprintln!("error: {e:#}");
            code = EXIT_FAILED;
        }
    }
    signal_code.unwrap_or(code)
}

fn write_json(path: &PathBuf, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).context("serializing the report")?;
    std::fs::write(path, text).with_context(|| format!("writing the report to {}", path.display()))
}

/// Lists the tags of every wildcard source repository, concurrently.
async fn list_wildcards(
    registries: &Registries,
    set: &MappingSet,
) -> (HashMap<Repository, Vec<String>>, Vec<ListingFailure>) {
    let repos = wildcard_sources(&set.mappings);
    let results = futures_util::future::join_all(repos.iter().map(|repo| async move {
        let client = registries.client(repo.registry()).await?;
        client.list_tags(repo.path()).await
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
                        error: format!("{e:#}"),
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
    use crate::cli::{Cli, Command};
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
