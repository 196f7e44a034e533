//! `image-mirror verify`: walk every tag of destination repositories and check that each
//! manifest and everything it references (index children too) exists — that no tag points
//! at an incomplete image. Registries and directories alike: the walk goes through the
//! store seam.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures_util::future::join_all;

use super::ExitCode;
use super::cli::VerifyArgs;
use super::stores::AnyStores;
use crate::disk::DiskStores;
use crate::model::manifest::Content;
use crate::model::reference::{Digest, ManifestRef, Reference, Repository, Tag, parse_name};
use crate::plural::count;
use crate::registry::auth::credentials::Credentials;
use crate::registry::{NetworkOptions, Registries, RegistryOptions};
use crate::stats::Stats;
use crate::store::{Source, Stores};

/// One problem found in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub tag: String,
    pub message: String,
}

/// Checks every tag of `repository`; returns the number of tags checked and the problems.
pub async fn verify_repository(
    stores: &dyn Stores,
    repository: &Repository,
) -> Result<(usize, Vec<Problem>)> {
    let client = stores.source(repository).await?;
    let tags = client.tags(repository).await?;
    let checks = join_all(tags.iter().map(|tag| {
        let client = client.clone();
        async move {
            let mut problems = Vec::new();
            let mut seen = HashSet::new();
            match Tag::parse(tag) {
                Ok(parsed) => {
                    let reference = ManifestRef::Tag(parsed);
                    let mut walk = Walk {
                        client: &client,
                        repository,
                        tag,
                        seen: &mut seen,
                        problems: &mut problems,
                    };
                    walk.manifest(&reference, 0).await;
                }
                Err(e) => problems.push(Problem {
                    tag: tag.clone(),
                    message: format!("the registry lists an invalid tag: {e}"),
                }),
            }
            problems
        }
    }))
    .await;
    Ok((tags.len(), checks.into_iter().flatten().collect()))
}

/// Index nesting deeper than this is reported rather than followed.
const MAX_DEPTH: usize = 4;

/// The walk from one tag through its manifests to its blobs.
struct Walk<'a> {
    client: &'a Arc<dyn Source>,
    repository: &'a Repository,
    tag: &'a str,
    /// Blobs and manifests already checked for this tag.
    seen: &'a mut HashSet<Digest>,
    problems: &'a mut Vec<Problem>,
}

impl Walk<'_> {
    fn problem(&mut self, message: String) {
        self.problems.push(Problem {
            tag: self.tag.to_owned(),
            message,
        });
    }

    fn manifest<'b>(
        &'b mut self,
        reference: &'b ManifestRef,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                self.problem(format!(
                    "{reference}: indexes nested deeper than {MAX_DEPTH}"
                ));
                return;
            }
            let manifest = match self.client.manifest(self.repository, reference).await {
                Ok(m) => m,
                Err(e) => return self.problem(format!("{e:#}")),
            };
            match &manifest.content {
                Content::Image { blobs } => {
                    for blob in blobs {
                        if !self.seen.insert(blob.digest.clone()) {
                            continue;
                        }
                        match self.client.blob_exists(self.repository, &blob.digest).await {
                            Ok(true) => {}
                            Ok(false) => self.problem(format!(
                                "blob {} of {} is missing",
                                blob.digest, manifest.digest
                            )),
                            Err(e) => self.problem(format!("{e:#}")),
                        }
                    }
                }
                Content::Index { children } => {
                    for child in children {
                        if self.seen.insert(child.digest.clone()) {
                            let reference = ManifestRef::Digest(child.digest.clone());
                            self.manifest(&reference, depth + 1).await;
                        }
                    }
                }
            }
        })
    }
}

/// Parses `host/path` repository arguments, or directories (`oci:PATH`, `file://REPO`).
pub fn parse_repositories(args: &[String]) -> Result<Vec<Repository>, String> {
    args.iter()
        .map(|a| {
            if a.starts_with("oci:") || a.starts_with("file://") {
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

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let repositories = match parse_repositories(&args.repositories) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Usage;
        }
    };
    let credentials = Credentials::locate(args.registry_config.clone());
    if let Err(e) = credentials.validate() {
        eprintln!("error: {e:#}");
        return ExitCode::Usage;
    }
    let options = RegistryOptions {
        insecure: args.insecure,
        insecure_registries: Vec::new(),
        max_per_registry: args.max_per_registry as usize,
        max_checks_per_registry: args.max_checks_per_registry as usize,
    };
    let dir = args.dir.clone();
    super::on_runtime(async {
        let stats = Arc::new(Stats::default());
        let registries = Registries::new(options, NetworkOptions::default(), credentials, stats);
        let stores = AnyStores {
            registries: Arc::new(registries),
            disk: DiskStores::new(dir, None),
        };
        let mut code = ExitCode::Ok;
        for repository in &repositories {
            match verify_repository(&stores, repository).await {
                Ok((tags, problems)) if problems.is_empty() => {
                    println!("{repository}: {}, all complete", count(tags, "tag"))
                }
                Ok((tags, problems)) => {
                    code = ExitCode::Failed;
                    println!(
                        "{repository}: {}, {}",
                        count(tags, "tag"),
                        count(problems.len(), "problem")
                    );
                    for p in problems {
                        println!("  {}: {}", p.tag, p.message);
                    }
                }
                Err(e) => {
                    code = ExitCode::Failed;
                    println!("{repository}: {e:#}");
                }
            }
        }
        code
    })
}
