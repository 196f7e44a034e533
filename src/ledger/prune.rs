//! `prune`: deleting the destination tags the ledger says image-mirror wrote and no mapping
//! produces any more, once unwanted for the grace period — and what is attached to their
//! digests. Each step errs on the side of keeping:
//!
//! 1. only tags the ledger names ([`super::model::Ledger::unwanted`]), and only when the
//!    whole ledger could be read (the caller's check);
//! 2. the tag must still hold the digest image-mirror wrote (else someone else wrote it);
//! 3. no other tag of the repository may point at that digest (ours kept, or anyone's):
//!    distribution 2.8 deletes only by digest, every tag of it at once, and what is attached
//!    to a digest still tagged must stay;
//! 4. no index that stays (a kept tag's, or one listed by it) may list that digest as a
//!    child: deleting it by digest would break the kept multi-arch image. Such a tag is
//!    deleted alone where the registry can (the OCI 1.1 tag delete), else kept;
//! 5. more than `--max-prune` deletions in one run (a count, or a share of the tags the
//!    ledger names; by default 10, or half when that is more) is refused whole.
//!
//! What is attached to the digest (signatures, attestations, SBOMs and referrers, found at
//! the destination by the same walk `run` uses, [`crate::attachments`]) is deleted first,
//! then the tag alone (where the registry has the tag delete), then the manifest by digest:
//! a failure leaves the subject, so the next run finds it still due and finishes the job.
//! Directory destinations (`oci:`, `file://`) are pruned alike: the directory store deletes
//! as distribution does (a tag alone, or a digest with every tag of it), leaving blobs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};

use super::model::{Candidate, Ledger, Stamp};
use super::valve::{MaxPrune, Valve};
use crate::attachments::{At, Discovery, Visitor};
use crate::model::attached::{Kind, Referrer, is_attachment_tag};
use crate::model::failure::{ErrorKind, error_kind};
use crate::model::manifest::{Content, Manifest};
use crate::model::reference::{Digest, ManifestRef, Reference, Repository, Tag};
use crate::store::{Deleted, Destination, Stores};

/// How many tags' manifests are asked at once in a repository being pruned.
const MANIFESTS_IN_FLIGHT: usize = 16;

/// What `--prune`, `--prune-after` and `--max-prune` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    pub after: Duration,
    pub max: MaxPrune,
    pub dry_run: bool,
}

/// What became of one unwanted tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deleted, with this many attached manifests.
    Pruned { attached: usize },
    /// Would be deleted (a dry run, or a run the valve stopped).
    WouldPrune,
    /// Gone already: nothing to delete.
    Gone,
    /// It holds another digest than the one image-mirror wrote: someone else's now.
    Changed(Digest),
    /// Other tags point at its digest, which a delete by digest would take with it.
    StillTagged(Vec<String>),
    /// Its digest is a child of an index that stays (`by`: the tags naming it): a delete by
    /// digest would break that image. `refused`: the registry cannot delete the tag alone
    /// (false when not tried: a dry run, a push by digest, or a run the valve stopped).
    Referenced { by: Vec<String>, refused: bool },
    /// Not yet unwanted for the grace period: the time left.
    Waiting(Duration),
    /// The delete failed: why.
    Failed(String),
}

impl Verdict {
    /// Its name in the JSON report and the metrics (one of
    /// [`crate::report::PRUNE_STATUSES`]).
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pruned { .. } => "pruned",
            Verdict::WouldPrune => "would-prune",
            Verdict::Gone => "gone",
            Verdict::Changed(_) => "changed",
            Verdict::StillTagged(_) => "still-tagged",
            Verdict::Referenced { .. } => "referenced",
            Verdict::Waiting(_) => "waiting",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// One unwanted tag and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub candidate: Candidate,
    pub verdict: Verdict,
}

impl Decided {
    /// `host/repo:tag` or `host/repo@digest`.
    pub fn name(&self) -> String {
        let c = &self.candidate;
        if c.reference.contains(':') {
            format!("{}@{}", c.repository, c.reference)
        } else {
            format!("{}:{}", c.repository, c.reference)
        }
    }
}

/// What prune did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub decided: Vec<Decided>,
    /// Set when more than `--max-prune` were due: nothing was deleted.
    pub valve: Option<Valve>,
    /// Set when the ledger could not be trusted: nothing was looked at.
    pub untrusted: Vec<String>,
    pub dry_run: bool,
}

impl PruneReport {
    pub fn failed(&self) -> bool {
        self.decided
            .iter()
            .any(|d| matches!(d.verdict, Verdict::Failed(_)))
    }

    pub fn count(&self, pred: impl Fn(&Verdict) -> bool) -> usize {
        self.decided.iter().filter(|d| pred(&d.verdict)).count()
    }

    /// Counted for the metrics.
    pub fn totals(&self) -> crate::report::PruneTotals {
        let mut by_status = std::collections::BTreeMap::new();
        for d in &self.decided {
            *by_status.entry(d.verdict.label()).or_default() += 1;
        }
        crate::report::PruneTotals {
            by_status,
            refused: self.valve.is_some(),
            untrusted: !self.untrusted.is_empty(),
        }
    }
}

/// Looks at each due tag, and deletes what may go (unless a dry run or the valve says
/// not). Records what was deleted, or found gone or changed, in `ledger`. `named`: how
/// many tags the ledger names for the run's destinations (what a `--max-prune` share is
/// of).
pub async fn prune(
    stores: &dyn Stores,
    ledger: &mut Ledger,
    due: Vec<Candidate>,
    waiting: Vec<(Candidate, Duration)>,
    named: usize,
    options: PruneOptions,
    now: Stamp,
) -> PruneReport {
    let mut by_repository: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for candidate in due {
        by_repository
            .entry(candidate.repository.clone())
            .or_default()
            .push(candidate);
    }
    let mut looked = Vec::new();
    for (name, candidates) in by_repository {
        let kept = kept_pushes(ledger, &name, &candidates);
        looked.push(look(stores, &name, candidates, &kept).await);
    }
    let ready: usize = looked.iter().map(|l| l.ready_count()).sum();
    let limit = options.max.limit(named);
    let valve = (ready > limit).then(|| Valve {
        limit,
        due: ready,
        said: options.max.describe(named),
    });
    let mut report = PruneReport {
        valve,
        dry_run: options.dry_run,
        ..PruneReport::default()
    };
    for repository in looked {
        let decided = if options.dry_run || report.valve.is_some() {
            repository.without_deleting()
        } else {
            repository.delete().await
        };
        report.decided.extend(decided);
    }
    if !options.dry_run && report.valve.is_none() {
        for d in &report.decided {
            if matches!(
                d.verdict,
                Verdict::Pruned { .. } | Verdict::Gone | Verdict::Changed(_)
            ) {
                ledger.pruned(&d.candidate.repository, &d.candidate.reference, now);
            }
        }
    }
    report
        .decided
        .extend(waiting.into_iter().map(|(c, left)| Decided {
            candidate: c,
            verdict: Verdict::Waiting(left),
        }));
    report
}

/// The pushes by digest the ledger names in `repository` that stay (not due now, not
/// pruned before): a delete by digest must not take them, nor, for an index, its children.
fn kept_pushes(ledger: &Ledger, repository: &str, due: &[Candidate]) -> Vec<Digest> {
    ledger
        .destinations
        .get(repository)
        .into_iter()
        .flatten()
        .filter(|(reference, entry)| {
            entry.pruned.is_none() && !due.iter().any(|c| &&c.reference == reference)
        })
        .filter_map(|(reference, _)| Digest::parse(reference).ok())
        .collect()
}

/// One repository's due tags, looked at: those decided already, and the digests that may
/// go with the tags that point at them.
struct Looked {
    decided: Vec<Decided>,
    /// Per digest to delete, the candidates (tags or the digest push) it takes.
    ready: BTreeMap<Digest, Vec<Candidate>>,
    /// Per digest a kept index lists, the candidates on it and the tags of those indexes:
    /// only the tags may go, and only where the registry deletes a tag alone.
    referenced: BTreeMap<Digest, (Vec<Candidate>, Vec<String>)>,
    place: Option<(Arc<dyn Destination>, Repository, Vec<String>)>,
}

impl Looked {
    /// What would be deleted: the tags and digest pushes of the digests that go, and the
    /// tags that may go alone.
    fn ready_count(&self) -> usize {
        let referenced: usize = self
            .referenced
            .values()
            .flat_map(|(candidates, _)| candidates)
            .filter(|c| Digest::parse(&c.reference).is_err())
            .count();
        self.ready.values().map(Vec::len).sum::<usize>() + referenced
    }

    fn without_deleting(self) -> Vec<Decided> {
        let mut decided = self.decided;
        for (candidates, by) in self.referenced.into_values() {
            decided.extend(candidates.into_iter().map(|candidate| Decided {
                candidate,
                verdict: Verdict::Referenced {
                    by: by.clone(),
                    refused: false,
                },
            }));
        }
        for candidates in self.ready.into_values() {
            decided.extend(candidates.into_iter().map(|candidate| Decided {
                candidate,
                verdict: Verdict::WouldPrune,
            }));
        }
        decided
    }

    async fn delete(self) -> Vec<Decided> {
        let mut decided = self.decided;
        let Some((dst, repository, tags)) = self.place else {
            return decided;
        };
        for (candidates, by) in self.referenced.into_values() {
            for candidate in candidates {
                let verdict = delete_tag_alone(&*dst, &repository, &candidate, &by).await;
                decided.push(Decided { candidate, verdict });
            }
        }
        let discovery = Discovery::new();
        discovery.know_tags(&repository, &tags);
        for (digest, candidates) in self.ready {
            let verdict = delete_digest(&*dst, &repository, &discovery, &digest, &candidates).await;
            decided.extend(candidates.into_iter().map(|candidate| Decided {
                candidate,
                verdict: verdict.clone(),
            }));
        }
        decided
    }
}

/// Finds out, for one repository, which due tags still hold what image-mirror wrote and
/// are the only tags of their digest.
async fn look(
    stores: &dyn Stores,
    name: &str,
    candidates: Vec<Candidate>,
    kept_pushes: &[Digest],
) -> Looked {
    let mut looked = Looked {
        decided: Vec::new(),
        ready: BTreeMap::new(),
        referenced: BTreeMap::new(),
        place: None,
    };
    let decide_all = |looked: &mut Looked, candidates: Vec<Candidate>, verdict: Verdict| {
        looked
            .decided
            .extend(candidates.into_iter().map(|candidate| Decided {
                candidate,
                verdict: verdict.clone(),
            }));
    };
    // As the report names it: `host/path`, `file://REPO` or `oci:PATH`.
    let repository = match Reference::parse(name) {
        Ok(r) if r.tag.is_none() && r.digest.is_none() => r.repository,
        _ => {
            let why = format!("{name:?} is not a repository name");
            decide_all(&mut looked, candidates, Verdict::Failed(why));
            return looked;
        }
    };
    let held = match held_digests(stores, &repository, kept_pushes).await {
        Ok(held) => held,
        Err(e) => {
            decide_all(&mut looked, candidates, Verdict::Failed(format!("{e:#}")));
            return looked;
        }
    };
    let Held {
        dst,
        tags,
        digests,
        children,
    } = held;
    for candidate in candidates {
        let current = match Digest::parse(&candidate.reference) {
            Ok(d) => match dst
                .manifest_digest(&repository, &ManifestRef::Digest(d))
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    let verdict = Verdict::Failed(format!("{e:#}"));
                    looked.decided.push(Decided { candidate, verdict });
                    continue;
                }
            },
            Err(_) => digests.get(&candidate.reference).cloned(),
        };
        match current {
            None => looked.decided.push(Decided {
                candidate,
                verdict: Verdict::Gone,
            }),
            Some(d) if d != candidate.entry.digest => looked.decided.push(Decided {
                candidate,
                verdict: Verdict::Changed(d),
            }),
            Some(d) => looked.ready.entry(d).or_default().push(candidate),
        }
    }
    // A digest another tag still points at stays, with every tag of ours on it.
    let ready = std::mem::take(&mut looked.ready);
    for (digest, candidates) in ready {
        let mut others: Vec<String> = digests
            .iter()
            .filter(|(tag, d)| **d == digest && !candidates.iter().any(|c| &c.reference == *tag))
            .map(|(tag, _)| tag.clone())
            .collect();
        if others.is_empty() {
            looked.ready.insert(digest, candidates);
        } else {
            others.sort();
            decide_all(&mut looked, candidates, Verdict::StillTagged(others));
        }
    }
    looked.referenced = listed_by_kept_indexes(&mut looked.ready, &digests, &children);
    looked.place = Some((dst, repository, tags));
    looked
}

/// One repository as prune sees it before deleting.
struct Held {
    dst: Arc<dyn Destination>,
    /// Every tag, attachment tags included.
    tags: Vec<String>,
    /// The digest of each tag but the attachment tags (and of each push by digest that
    /// stays, named `@DIGEST`): what a delete by digest would take.
    digests: HashMap<String, Digest>,
    /// The children of each of those tags' manifests that is an index.
    children: HashMap<Digest, Vec<Digest>>,
}

/// The candidates whose digest an index that stays lists as a child, taken out of `ready`:
/// per digest, its candidates and the tags of the kept indexes listing it (directly, or
/// through an index kept this way). An index stays when a tag that does not go names it.
fn listed_by_kept_indexes(
    ready: &mut BTreeMap<Digest, Vec<Candidate>>,
    digests: &HashMap<String, Digest>,
    children: &HashMap<Digest, Vec<Digest>>,
) -> BTreeMap<Digest, (Vec<Candidate>, Vec<String>)> {
    let mut found: BTreeMap<Digest, (Vec<Candidate>, BTreeSet<String>)> = BTreeMap::new();
    // Manifests that stay, each with the tag that keeps it.
    let mut staying: Vec<(String, Digest)> = digests
        .iter()
        .filter(|(_, d)| !ready.contains_key(*d))
        .map(|(tag, d)| (tag.clone(), d.clone()))
        .collect();
    staying.sort();
    let mut next = 0;
    while let Some((tag, digest)) = staying.get(next).cloned() {
        next += 1;
        for child in children.get(&digest).into_iter().flatten() {
            if let Some(candidates) = ready.remove(child) {
                // It stays too: so do its own children.
                staying.push((tag.clone(), child.clone()));
                found.insert(child.clone(), (candidates, BTreeSet::new()));
            }
            if let Some((_, by)) = found.get_mut(child) {
                by.insert(tag.clone());
            }
        }
    }
    found
        .into_iter()
        .map(|(d, (candidates, by))| (d, (candidates, by.into_iter().collect())))
        .collect()
}

/// Every tag of the repository, and the manifest of each but the attachment tags, and of
/// each push by digest that stays (`kept_pushes`): its digest (what a delete by digest
/// would take with it) and, for an index, its children (what a delete by digest must not
/// take from under it). One GET per tag, as many as HEADs would be. A tag or push gone
/// meanwhile is skipped; a manifest that cannot be read fails the repository (nothing is
/// deleted there: its children are unknown).
async fn held_digests(
    stores: &dyn Stores,
    repository: &Repository,
    kept_pushes: &[Digest],
) -> Result<Held> {
    let dst = stores.destination(repository).await?;
    // A repository that no longer exists holds none of them: each is gone.
    let Some(tags) = dst.held_tags(repository).await? else {
        anyhow::bail!(
            "{} has no tag listing: which other tags point at a digest is unknown, so \
             nothing is deleted there",
            repository.registry()
        );
    };
    let tagged = tags
        .iter()
        .filter(|t| !is_attachment_tag(t))
        .filter_map(|t| Tag::parse(t).ok())
        .map(|tag| (tag.as_str().to_owned(), ManifestRef::Tag(tag)));
    let pushed = kept_pushes
        .iter()
        .map(|d| (format!("@{d}"), ManifestRef::Digest(d.clone())));
    let asked: Vec<Result<Option<(String, Manifest)>>> = stream::iter(tagged.chain(pushed))
        .map(|(name, reference)| {
            let dst = dst.clone();
            async move {
                match dst.manifest(repository, &reference).await {
                Ok(manifest) => Ok(Some((name, manifest))),
                Err(e) if error_kind(&e) == Some(ErrorKind::NotFound) => Ok(None),
                Err(e) => Err(e.context(format!(
                    "reading {repository} {reference} (to know what a delete by digest would break)"
                ))),
            }
            }
        })
        .buffer_unordered(MANIFESTS_IN_FLIGHT)
        .collect()
        .await;
    let mut digests = HashMap::new();
    let mut children = HashMap::new();
    for answer in asked {
        if let Some((tag, manifest)) = answer? {
            if let Content::Index { children: listed } = &manifest.content {
                children.insert(
                    manifest.digest.clone(),
                    listed.iter().map(|c| c.digest.clone()).collect(),
                );
            }
            digests.insert(tag, manifest.digest);
        }
    }
    Ok(Held {
        dst,
        tags,
        digests,
        children,
    })
}

/// A tag whose manifest a kept index lists: deleted alone where the registry can (the OCI
/// 1.1 tag delete), else kept. The manifest, and what is attached to it, stay.
async fn delete_tag_alone(
    dst: &dyn Destination,
    repository: &Repository,
    candidate: &Candidate,
    by: &[String],
) -> Verdict {
    let Ok(tag) = Tag::parse(&candidate.reference) else {
        // A push by digest: nothing but the manifest to delete, and it must stay.
        return Verdict::Referenced {
            by: by.to_vec(),
            refused: false,
        };
    };
    match dst
        .delete_manifest(repository, &ManifestRef::Tag(tag))
        .await
    {
        Ok(Deleted::Removed) => Verdict::Pruned { attached: 0 },
        Ok(Deleted::Absent) => Verdict::Gone,
        Ok(Deleted::Refused(_)) => Verdict::Referenced {
            by: by.to_vec(),
            refused: true,
        },
        Err(e) => Verdict::Failed(format!("{e:#}")),
    }
}

/// Deletes what is attached to one digest, then the tags of ours on it, then the digest.
async fn delete_digest(
    dst: &dyn Destination,
    repository: &Repository,
    discovery: &Discovery,
    digest: &Digest,
    candidates: &[Candidate],
) -> Verdict {
    // Found before the subject goes: a referrers API lists by subject.
    let mut found = Attached {
        dst,
        repository,
        digests: Vec::new(),
    };
    let at = At {
        src: dst,
        src_repo: repository,
        ask_api: true,
    };
    if let Err(e) = discovery
        .walk(&at, std::slice::from_ref(digest), &mut found)
        .await
    {
        return Verdict::Failed(format!(
            "finding what is attached to {repository}@{digest}: {e:#}"
        ));
    }
    // What is attached goes first (the last found first: what is attached to an attached
    // manifest before it): a failure leaves the subject, still due, and the next run finds
    // what is left of its attachments and finishes the job.
    let mut attached = 0;
    for found in found.digests.iter().rev() {
        let left = |why: String| {
            Verdict::Failed(format!(
                "deleting {repository}@{found}, attached to it: {why}; {repository}@{digest} \
                 and its tags are kept ({} attached deleted before), and the next run tries again",
                crate::plural::count(attached, "manifest")
            ))
        };
        match dst
            .delete_manifest(repository, &ManifestRef::Digest(found.clone()))
            .await
        {
            Ok(Deleted::Removed) => attached += 1,
            Ok(Deleted::Absent) => {}
            Ok(Deleted::Refused(words)) => return left(refused(repository, &words)),
            Err(e) => return left(format!("{e:#}")),
        }
    }
    let subject_left = |why: String| {
        let before = if attached == 0 {
            String::new()
        } else {
            format!(
                " ({} attached to it deleted already)",
                crate::plural::count(attached, "manifest")
            )
        };
        Verdict::Failed(format!(
            "{why}{before}; {repository}@{digest} is kept, and the next run tries again"
        ))
    };
    for candidate in candidates {
        let Ok(tag) = Tag::parse(&candidate.reference) else {
            continue;
        };
        match dst
            .delete_manifest(repository, &ManifestRef::Tag(tag))
            .await
        {
            Ok(Deleted::Removed | Deleted::Absent | Deleted::Refused(_)) => {}
            Err(e) => return subject_left(format!("{e:#}")),
        }
    }
    match dst
        .delete_manifest(repository, &ManifestRef::Digest(digest.clone()))
        .await
    {
        Ok(Deleted::Removed | Deleted::Absent) => Verdict::Pruned { attached },
        Ok(Deleted::Refused(words)) => subject_left(refused(repository, &words)),
        Err(e) => subject_left(format!("{e:#}")),
    }
}

/// A registry that will not delete: what to do about it.
fn refused(repository: &Repository, words: &str) -> String {
    format!(
        "{} refuses to delete manifests ({words}): enable deletes there \
         (distribution: storage.delete.enabled: true) or prune by hand; \
         nothing else of this run is affected",
        repository.registry()
    )
}

/// The attached manifests the walk finds at the destination, in the order found (a
/// subject before what is attached to it): cosign's tags, referrers, and the referrers
/// fallback index itself.
struct Attached<'s> {
    dst: &'s dyn Destination,
    repository: &'s Repository,
    digests: Vec<Digest>,
}

impl Visitor for Attached<'_> {
    fn cosign_tag<'a>(
        &'a mut self,
        _subject: &'a Digest,
        _kind: Kind,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        Box::pin(async move {
            let tag = crate::attachments::tag_of(tag)?;
            let found = self
                .dst
                .manifest_digest(self.repository, &ManifestRef::Tag(tag))
                .await?;
            if let Some(d) = &found {
                self.digests.push(d.clone());
            }
            Ok(found)
        })
    }

    fn referrers<'a>(
        &'a mut self,
        _subject: &'a Digest,
        referrers: &'a [Referrer],
        fallback_index: Option<&'a Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        self.digests
            .extend(fallback_index.map(|i| i.digest.clone()));
        self.digests
            .extend(referrers.iter().map(|r| r.digest.clone()));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    /// The metrics write a series for each of the report's statuses: every verdict is one.
    #[test]
    fn every_verdict_is_one_of_the_statuses_the_metrics_write() {
        let digest = crate::model::reference::Digest::of(b"x");
        let all = [
            Verdict::Pruned { attached: 0 },
            Verdict::WouldPrune,
            Verdict::Gone,
            Verdict::Changed(digest),
            Verdict::StillTagged(Vec::new()),
            Verdict::Referenced {
                by: Vec::new(),
                refused: false,
            },
            Verdict::Waiting(std::time::Duration::ZERO),
            Verdict::Failed(String::new()),
        ];
        let labels: Vec<&str> = all.iter().map(Verdict::label).collect();
        assert_eq!(labels, crate::report::PRUNE_STATUSES);
    }
}
