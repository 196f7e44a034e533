//! `image-mirror verify`: walk every tag of destination repositories and check that each
//! manifest and everything it references (index children too) exists — that no tag points
//! at an incomplete image.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures_util::future::join_all;

use crate::manifest::Content;
use crate::reference::{Digest, Repository, parse_name};
use crate::registry::{Registries, RegistryClient};

/// One problem found in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tag: String,
    pub message: String,
}

/// Checks every tag of `repository`; returns the number of tags checked and the problems.
pub async fn verify_repository(
    registries: &Registries,
    repository: &Repository,
) -> Result<(usize, Vec<Problem>)> {
    let client = registries.client(repository.registry()).await?;
    let tags = client.list_tags(repository.path()).await?;
    let checks = join_all(tags.iter().map(|tag| {
        let client = client.clone();
        async move {
            let mut problems = Vec::new();
            let mut seen = HashSet::new();
            walk(
                &client,
                repository.path(),
                tag,
                tag,
                &mut seen,
                &mut problems,
                0,
            )
            .await;
            problems
        }
    }))
    .await;
    Ok((tags.len(), checks.into_iter().flatten().collect()))
}

/// Index nesting deeper than this is reported rather than followed.
const MAX_DEPTH: usize = 4;

fn walk<'a>(
    client: &'a Arc<RegistryClient>,
    path: &'a str,
    tag: &'a str,
    reference: &'a str,
    seen: &'a mut HashSet<String>,
    problems: &'a mut Vec<Problem>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let problem = |message: String| Problem {
            tag: tag.to_owned(),
            message,
        };
        if depth > MAX_DEPTH {
            problems.push(problem(format!(
                "{reference}: indexes nested deeper than {MAX_DEPTH}"
            )));
            return;
        }
        let manifest = match client.pull_manifest(path, reference).await {
            Ok(m) => m,
            Err(e) => {
                problems.push(problem(format!("{e:#}")));
                return;
            }
        };
        match &manifest.content {
            Content::Image { blobs } => {
                for blob in blobs {
                    if !seen.insert(blob.digest.to_string()) {
                        continue;
                    }
                    match client.blob_exists(path, &blob.digest).await {
                        Ok(true) => {}
                        Ok(false) => problems.push(problem(format!(
                            "blob {} of {} is missing",
                            blob.digest, manifest.digest
                        ))),
                        Err(e) => problems.push(problem(format!("{e:#}"))),
                    }
                }
            }
            Content::Index { children } => {
                for child in children {
                    let child_digest: &Digest = &child.digest;
                    if seen.insert(child_digest.to_string()) {
                        walk(
                            client,
                            path,
                            tag,
                            child_digest.as_str(),
                            seen,
                            problems,
                            depth + 1,
                        )
                        .await;
                    }
                }
            }
        }
    })
}

/// Parses `host/path` repository arguments.
pub fn parse_repositories(args: &[String]) -> Result<Vec<Repository>, String> {
    args.iter()
        .map(|a| parse_name(a).map_err(|e| format!("{a:?}: {e}")))
        .collect()
}

/// Runs `verify`; returns the exit code.
pub fn run(args: &crate::cli::VerifyArgs) -> i32 {
    let repositories = match parse_repositories(&args.repositories) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let credentials = crate::credentials::Credentials::locate(args.registry_config.clone());
    if let Err(e) = credentials.validate() {
        eprintln!("error: {e:#}");
        return 2;
    }
    let options = crate::registry::RegistryOptions {
        insecure: args.insecure,
        insecure_registries: Vec::new(),
        max_per_registry: args.max_per_registry as usize,
    };
    crate::run::on_runtime(async {
        let registries = Registries::new(options, credentials);
        let mut code = 0;
        for repository in &repositories {
            match verify_repository(&registries, repository).await {
                Ok((tags, problems)) if problems.is_empty() => {
                    println!("{repository}: {tags} tags, all complete")
                }
                Ok((tags, problems)) => {
                    code = 1;
                    println!("{repository}: {tags} tags, {} problems", problems.len());
                    for p in problems {
                        println!("  {}: {}", p.tag, p.message);
                    }
                }
                Err(e) => {
                    code = 1;
                    println!("{repository}: {e:#}");
                }
            }
        }
        code
    })
}
