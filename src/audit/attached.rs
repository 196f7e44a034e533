//! What is attached to an image at the source, looked for at the destination: cosign's
//! `sha256-<hex>.sig`/`.att`/`.sbom` tags (each must hold the source's digest there) and OCI
//! referrers (each present by digest, and listed where clients look: the destination's
//! referrers API, or its fallback index `sha256-<hex>`), recursively — as `run` carries them.
//!
//! Cost: cosign tags are looked for only when the source's tag list (one request per
//! repository and run) holds them; the referrers API is asked once per store to learn
//! whether it has one, then per subject only where it does.

use std::collections::HashSet;

use anyhow::Result;
use futures_util::future::BoxFuture;

use super::{Auditor, Ends};
use crate::execute::attached::{attachment_tags_once, referrers_once, tag_of};
use crate::model::attached::{Attachment, Kind, Referrer, cosign_tag, digest_tag, parse_index};
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::model::reference::{Digest, ManifestRef};
use crate::report::verified::{ImageCheck, Problem, ProblemKind};

/// How deep attachments of attachments are followed (as `run` does).
const MAX_DEPTH: u8 = 4;

impl Auditor {
    /// Compares what is attached to `subjects` at both ends; problems and what was found
    /// the same go into `check`.
    pub(super) async fn compare_attached(
        &self,
        ends: &Ends<'_>,
        subjects: &[Digest],
        check: &mut ImageCheck,
    ) -> Result<()> {
        let tags = attachment_tags_once(&self.source_tags, ends.src, ends.src_repo).await;
        for subject in subjects {
            self.attached_to(ends, tags.as_deref(), subject, 0, check)
                .await?;
        }
        Ok(())
    }

    fn attached_to<'a>(
        &'a self,
        ends: &'a Ends<'a>,
        tags: Option<&'a HashSet<String>>,
        subject: &'a Digest,
        depth: u8,
        check: &'a mut ImageCheck,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for (kind, suffix) in Kind::COSIGN {
                let tag = cosign_tag(subject, suffix);
                if tags.is_some_and(|t| t.contains(&tag))
                    && let Some(digest) = self.cosign_tag(ends, &tag, kind, subject, check).await?
                {
                    found.push(digest);
                }
            }
            let has_fallback = tags.is_some_and(|t| t.contains(&digest_tag(subject)));
            let referrers = self.source_referrers(ends, subject, has_fallback).await?;
            if !referrers.is_empty() {
                let listed = self.destination_lists(ends, subject).await?;
                for referrer in &referrers {
                    self.referrer(ends, referrer, subject, listed.as_ref(), check)
                        .await?;
                    found.push(referrer.digest.clone());
                }
            }
            if depth < MAX_DEPTH {
                for digest in &found {
                    self.attached_to(ends, tags, digest, depth + 1, check)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// One cosign tag at both ends; the source's digest when it has the tag.
    async fn cosign_tag(
        &self,
        ends: &Ends<'_>,
        tag: &str,
        kind: Kind,
        subject: &Digest,
        check: &mut ImageCheck,
    ) -> Result<Option<Digest>> {
        let reference = ManifestRef::Tag(tag_of(tag)?);
        let (theirs, ours) = futures_util::future::join(
            ends.src.manifest_digest(ends.src_repo, &reference),
            ends.dst.manifest_digest(ends.dst_repo, &reference),
        )
        .await;
        // Listed but gone since: nothing to compare.
        let Some(theirs) = theirs? else {
            return Ok(None);
        };
        let attachment = Attachment {
            digest: theirs.clone(),
            kind,
            artifact_type: None,
            subject: subject.clone(),
        };
        let label = kind.label();
        match ours? {
            Some(ours) if ours == theirs => check.attached.push(attachment),
            Some(ours) => check.problems.push(attached_problem(
                ends,
                ProblemKind::AttachedDiffers,
                format!(
                    "{label} {theirs} of {subject} differs: {}:{tag} holds {ours}",
                    ends.dst_repo
                ),
                attachment,
            )),
            None => check.problems.push(attached_problem(
                ends,
                ProblemKind::AttachedMissing,
                format!(
                    "{label} {theirs} of {subject} is missing: {}:{tag} does not exist",
                    ends.dst_repo
                ),
                attachment,
            )),
        }
        Ok(Some(theirs))
    }

    /// The source's referrers of `subject`: its referrers API's answer, else its fallback
    /// index (when the tag list shows one).
    async fn source_referrers(
        &self,
        ends: &Ends<'_>,
        subject: &Digest,
        has_fallback: bool,
    ) -> Result<Vec<Referrer>> {
        if let Some(listed) =
            referrers_once(&self.referrers_api, ends.src, ends.src_repo, subject).await?
        {
            return Ok(listed);
        }
        if !has_fallback {
            return Ok(Vec::new());
        }
        let tag = digest_tag(subject);
        let reference = ManifestRef::Tag(tag_of(&tag)?);
        let index = ends.src.manifest(ends.src_repo, &reference).await?;
        parse_index(&index.bytes).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{}:{tag}: {e:#}", ends.src_repo),
            )
        })
    }

    /// The digests the destination lists as referrers of `subject`, where a client looks:
    /// its referrers API, else its fallback index (none when it has no such tag).
    async fn destination_lists(
        &self,
        ends: &Ends<'_>,
        subject: &Digest,
    ) -> Result<Option<HashSet<Digest>>> {
        let digests = |list: Vec<Referrer>| Some(list.into_iter().map(|r| r.digest).collect());
        if let Some(listed) =
            referrers_once(&self.referrers_api, ends.dst, ends.dst_repo, subject).await?
        {
            return Ok(digests(listed));
        }
        let tag = digest_tag(subject);
        let reference = ManifestRef::Tag(tag_of(&tag)?);
        let index = match ends.dst.manifest(ends.dst_repo, &reference).await {
            Ok(index) => index,
            Err(e) if error_kind(&e) == Some(ErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let listed = parse_index(&index.bytes).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{}:{tag}: {e:#}", ends.dst_repo),
            )
        })?;
        Ok(digests(listed))
    }

    /// One referrer: present by digest at the destination, and listed there.
    async fn referrer(
        &self,
        ends: &Ends<'_>,
        referrer: &Referrer,
        subject: &Digest,
        listed: Option<&HashSet<Digest>>,
        check: &mut ImageCheck,
    ) -> Result<()> {
        let attachment = Attachment {
            digest: referrer.digest.clone(),
            kind: Kind::Referrer,
            artifact_type: referrer.artifact_type.clone(),
            subject: subject.clone(),
        };
        let shown = match &referrer.artifact_type {
            Some(t) => format!("referrer {} ({t})", referrer.digest),
            None => format!("referrer {}", referrer.digest),
        };
        let reference = ManifestRef::Digest(referrer.digest.clone());
        let present = ends
            .dst
            .manifest_digest(ends.dst_repo, &reference)
            .await?
            .is_some();
        if !present {
            check.problems.push(attached_problem(
                ends,
                ProblemKind::AttachedMissing,
                format!("{shown} of {subject} is missing at {}", ends.dst_repo),
                attachment,
            ));
        } else if !listed.is_some_and(|l| l.contains(&referrer.digest)) {
            check.problems.push(attached_problem(
                ends,
                ProblemKind::AttachedMissing,
                format!(
                    "{shown} of {subject} is at {} but not listed there (neither by its referrers API nor in its fallback index {}): clients will not find it",
                    ends.dst_repo,
                    digest_tag(subject)
                ),
                attachment,
            ));
        } else {
            check.attached.push(attachment);
        }
        Ok(())
    }
}

fn attached_problem(
    ends: &Ends<'_>,
    kind: ProblemKind,
    message: String,
    attachment: Attachment,
) -> Problem {
    Problem {
        tag: ends.tag.to_owned(),
        kind,
        message,
        attachment: Some(attachment),
    }
}
