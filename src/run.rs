//! `image-mirror run`: load and validate, list wildcard tags, plan, copy, report.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::check::load_and_report;
use crate::cli::{RunArgs, resolve_dry_run};
use crate::credentials::Credentials;
use crate::execute::{ExecuteOptions, Executor, Status};
use crate::inputs::MappingSet;
use crate::plan::{plan, wildcard_sources};
use crate::reference::Repository;
use crate::registry::{Registries, RegistryOptions};
use crate::report::{self, ListingFailure};

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Everything decided before a registry is contacted.
struct Prepared {
    set: MappingSet,
    dry_run: bool,
    credentials: Credentials,
    options: ExecuteOptions,
    registry: RegistryOptions,
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
    Ok(Prepared {
        set,
        dry_run,
        credentials,
        options: ExecuteOptions {
            dry_run,
            force: args.force,
            max_registry: args.max_registry as usize,
            filter_by_os,
        },
        registry: RegistryOptions {
            insecure: args.insecure,
            max_per_registry: args.max_per_registry as usize,
        },
    })
}

pub fn run(args: &RunArgs) -> i32 {
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    runtime.block_on(mirror(prepared))
}

async fn mirror(prepared: Prepared) -> i32 {
    let started = Instant::now();
    let Prepared {
        set,
        dry_run,
        credentials,
        options,
        registry,
    } = prepared;
    let registries = Registries::new(registry, credentials);

    let (listed, listing_failures) = list_wildcards(&registries, &set).await;
    let (plan, diagnostics) = plan(&set.mappings, &listed);
    for d in &diagnostics {
        eprintln!("{d}");
    }
    if diagnostics.iter().any(|d| d.is_error()) {
        eprintln!("conflicting destinations after expanding wildcards; nothing was copied");
        return EXIT_USAGE;
    }
    tracing::info!(
        images = plan.job_count(),
        repositories = plan.batches.len(),
        dry_run,
        "plan ready"
    );

    let executor = Arc::new(Executor::new(registries, options));
    let outcomes = executor.execute(plan).await;
    if dry_run {
        print!("{}", report::dry_run_plan(&outcomes));
    }
    let bytes = executor
        .registries()
        .traffic
        .bytes_uploaded
        .load(Ordering::Relaxed);
    print!(
        "{}",
        report::summary(
            &outcomes,
            &listing_failures,
            &executor.blobs,
            bytes,
            started.elapsed(),
            dry_run
        )
    );
    let failed =
        !listing_failures.is_empty() || outcomes.iter().any(|o| o.status == Status::Failed);
    if failed { EXIT_FAILED } else { EXIT_OK }
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
                let e = anyhow!(e);
                for mapping in set.mappings.iter().filter(|m| matches!(m, crate::mapping::Mapping::Wildcard { repository, .. } if repository.value == repo)) {
                    failures.push(ListingFailure { origin: mapping.location().clone(), repository: repo.clone(), error: format!("{e:#}") });
                }
            }
        }
    }
    (listed, failures)
}
