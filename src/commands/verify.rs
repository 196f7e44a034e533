//! `image-mirror verify`, read-only, in two modes: walk every tag of destination repositories
//! (each must point at a complete image), or, given the mapping files `run` takes, compare
//! each image they name with its source (digest, completeness, what is attached). Glue only:
//! the plan is `run`'s ([`super::planning`]), the checks are [`crate::audit`]'s, the views
//! [`crate::report::verified`]'s.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::ExitCode;
use super::cli::VerifyArgs;
use super::planning::{Planned, expand_and_plan, load_valid, preflight};
use super::stores::AnyStores;
use crate::audit::{AuditOptions, Auditor, walk_repository};
use crate::disk::DiskStores;
use crate::inputs::MappingSet;
use crate::model::reference::{Reference, Repository, parse_name};
use crate::registry::auth::credentials::Credentials;
use crate::registry::{NetworkOptions, Registries};
use crate::report::verified::{self, VerifyResult};
use crate::stats::Stats;

/// Parses `host/path` repository arguments, or directories (`oci:PATH`, `file://REPO`). A
/// local file or directory given where a repository goes is a mapping file (or a directory of
/// them) that lost its `-f`: said so.
pub fn parse_repositories(args: &[String]) -> Result<Vec<Repository>, String> {
    args.iter()
        .map(|a| {
            let local = std::path::Path::new(a);
            if local.is_file() {
                Err(format!("{a} is a file: did you mean `verify -f {a}`?"))
            } else if local.is_dir() && !a.starts_with("oci:") {
                Err(format!("{a} is a directory: did you mean `verify -f {a}`?"))
            } else if a.starts_with("oci:") || a.starts_with("file://") {
                match Reference::parse(a) {
                    Ok(r) if r.tag.is_none() && r.digest.is_none() => Ok(r.repository),
                    Ok(_) => Err(format!("{a:?}: name the repository, without tag or digest")),
                    Err(e) => Err(format!("{a:?}: {e}")),
                }
            } else {
                parse_name(a).map_err(|e| format!("{a:?}: {e}"))
            }
        })
        .collect()
}

/// What a mode needs, read and checked before any registry is contacted.
enum Mode {
    Walk(Vec<Repository>),
    Compare {
        set: MappingSet,
        options: AuditOptions,
    },
}

/// Reads and checks the arguments; any problem is exit 2 with nothing contacted.
fn prepare(
    args: &VerifyArgs,
    disk: &DiskStores,
    credentials: &Credentials,
) -> Result<Mode, ExitCode> {
    let usage = |message: String| {
        eprintln!("error: {message}");
        ExitCode::Usage
    };
    credentials
        .validate()
        .map_err(|e| usage(format!("{e:#}")))?;
    let Some(spec) = args.input_spec() else {
        return parse_repositories(&args.repositories)
            .map(Mode::Walk)
            .map_err(usage);
    };
    let filter_by_os = match &args.filter_by_os {
        Some(re) => {
            Some(regex::Regex::new(re).map_err(|e| usage(format!("--filter-by-os {re:?}: {e}")))?)
        }
        None => None,
    };
    let set = load_valid(&spec, "nothing was verified")?;
    preflight(&set, disk, credentials).map_err(|e| usage(format!("{e:#}")))?;
    Ok(Mode::Compare {
        set,
        options: AuditOptions {
            filter_by_os,
            attached: args.attached,
        },
    })
}

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let credentials = Credentials::locate(args.registry.registry_config.clone());
    let disk = DiskStores::new(args.dir.clone(), args.from_dir.clone());
    let mode = match prepare(args, &disk, &credentials) {
        Ok(mode) => mode,
        Err(code) => return code,
    };
    let options = args.registry.options();
    let found = super::on_runtime_value(async {
        let stats = Arc::new(Stats::default());
        let registries = Registries::new(
            options,
            NetworkOptions::default(),
            credentials,
            stats.clone(),
        );
        let stores = Arc::new(AnyStores {
            registries: Arc::new(registries),
            disk,
        });
        let mut result = match mode {
            Mode::Walk(repositories) => walk(stores, &repositories).await,
            Mode::Compare { set, options } => compare(stores, set, options).await?,
        };
        result.requests = stats.snapshot().requests;
        Ok(result)
    });
    let result = match found {
        Ok(result) => result,
        Err(code) => return code,
    };
    let mut code = if result.failed() {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    };
    if let Some(path) = &args.report
        && let Err(e) = write_report(path, &result)
    {
        eprintln!("error: {e:#}");
        code = ExitCode::Failed;
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", verified::text(&result));
    let _ = out.flush();
    code
}

async fn walk(stores: Arc<AnyStores>, repositories: &[Repository]) -> VerifyResult {
    let checks = futures_util::future::join_all(
        repositories
            .iter()
            .map(|r| walk_repository(stores.as_ref(), r)),
    )
    .await;
    VerifyResult {
        repositories: checks,
        ..VerifyResult::default()
    }
}

/// `run`'s plan, each image compared with its source.
async fn compare(
    stores: Arc<AnyStores>,
    set: MappingSet,
    options: AuditOptions,
) -> Result<VerifyResult, ExitCode> {
    let Planned {
        plan,
        listed,
        listing_failures,
        matched: _,
    } = expand_and_plan(&stores, set.mappings, None, "nothing was verified").await?;
    tracing::info!(
        images = plan.job_count(),
        repositories = plan.batches.len(),
        "verifying against the sources"
    );
    let auditor = Auditor::new(stores, options);
    for (repository, tags) in &listed {
        auditor.know_tags(repository, tags);
    }
    let images = auditor.audit(plan).await;
    Ok(VerifyResult {
        listing_failures,
        ..VerifyResult::from_images(images)
    })
}

fn write_report(path: &std::path::Path, result: &VerifyResult) -> Result<()> {
    let text = serde_json::to_vec_pretty(&verified::json(result))
        .context("serializing the verify report")?;
    std::fs::write(path, text)
        .with_context(|| format!("writing the verify report to {}", path.display()))
}
