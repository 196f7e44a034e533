//! The walk from one manifest through its index children to its blobs: does everything a
//! tag points at exist? What `verify` asks of every tag of a repository, and of every
//! destination a mapping names.

use std::collections::HashSet;

use futures_util::future::BoxFuture;

use crate::model::failure::{ErrorKind, error_kind};
use crate::model::manifest::{Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::report::verified::{Problem, ProblemKind};
use crate::store::Source;

/// Index nesting deeper than this is reported rather than followed.
const MAX_DEPTH: usize = 4;

/// One tag's walk: the problems it found.
pub struct Walk<'a> {
    store: &'a dyn Source,
    repository: &'a Repository,
    /// The tag (or `@digest`) the problems are reported under.
    tag: &'a str,
    /// Blobs and manifests already checked.
    seen: HashSet<Digest>,
    pub problems: Vec<Problem>,
}

impl<'a> Walk<'a> {
    pub fn new(store: &'a dyn Source, repository: &'a Repository, tag: &'a str) -> Walk<'a> {
        Walk {
            store,
            repository,
            tag,
            seen: HashSet::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, kind: ProblemKind, message: String) {
        self.problems.push(Problem {
            tag: self.tag.to_owned(),
            kind,
            message,
            attachment: None,
        });
    }

    /// Walks from `reference`; the manifest it names, when it could be read.
    pub async fn from(&mut self, reference: &ManifestRef) -> Option<Manifest> {
        self.manifest(reference, 0).await
    }

    fn manifest<'b>(
        &'b mut self,
        reference: &'b ManifestRef,
        depth: usize,
    ) -> BoxFuture<'b, Option<Manifest>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                self.problem(
                    ProblemKind::Incomplete,
                    format!("{reference}: indexes nested deeper than {MAX_DEPTH}"),
                );
                return None;
            }
            let manifest = match self.store.manifest(self.repository, reference).await {
                Ok(m) => m,
                Err(e) => {
                    let kind = match (error_kind(&e), depth) {
                        (Some(ErrorKind::NotFound), 0) => ProblemKind::Missing,
                        (Some(ErrorKind::NotFound), _) => ProblemKind::Incomplete,
                        _ => ProblemKind::Unchecked,
                    };
                    self.problem(kind, format!("{e:#}"));
                    return None;
                }
            };
            match &manifest.content {
                Content::Image { blobs } => {
                    for blob in blobs {
                        if !self.seen.insert(blob.digest.clone()) {
                            continue;
                        }
                        match self.store.blob_exists(self.repository, &blob.digest).await {
                            Ok(true) => {}
                            Ok(false) => self.problem(
                                ProblemKind::Incomplete,
                                format!("blob {} of {} is missing", blob.digest, manifest.digest),
                            ),
                            Err(e) => self.problem(ProblemKind::Unchecked, format!("{e:#}")),
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
            Some(manifest)
        })
    }
}
