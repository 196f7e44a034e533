//! What is attached to an image at the source, looked for at the destination: cosign's
//! `sha256-<hex>.sig`/`.att`/`.sbom` tags (each must hold the source's digest there) and OCI
//! referrers (each present by digest, and listed where clients look: the destination's
//! referrers API, or its fallback index `sha256-<hex>`), recursively — as `run` carries them.
//!
//! What is found at the source is [`crate::attachments`]' walk, shared with `run`; this is
//! the comparison of each find. Cost: cosign tags are looked for only when the source's tag
//! list (one request per repository and run) holds them; the referrers API is asked once per
//! store to learn whether it has one, then per subject only where it does.

use std::collections::HashSet;

use anyhow::Result;
use futures_util::future::BoxFuture;

use super::{Auditor, Ends};
use crate::attachments::{At, Visitor, tag_of};
use crate::model::attached::{Attachment, Kind, Referrer, digest_tag, parse_index};
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::model::image::Target;
use crate::model::manifest::Manifest;
use crate::model::reference::{Digest, ManifestRef};
use crate::report::verified::{ImageCheck, Problem, ProblemKind};

impl Auditor {
    /// Compares what is attached to `subjects` at both ends; problems and what was found
    /// the same go into `check`.
    pub(super) async fn compare_attached(
        &self,
        ends: &Ends<'_>,
        subjects: &[Digest],
        check: &mut ImageCheck,
    ) -> Result<()> {
        let at = At {
            src: ends.src,
            src_repo: ends.src_repo,
            ask_api: true,
        };
        let mut comparer = Comparer {
            auditor: self,
            ends,
            check,
        };
        self.attachments.walk(&at, subjects, &mut comparer).await
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
                &check.destination,
                ProblemKind::AttachedDiffers,
                format!(
                    "{label} {theirs} of {subject} differs: {}:{tag} holds {ours}",
                    ends.dst_repo
                ),
                attachment,
            )),
            None => check.problems.push(attached_problem(
                &check.destination,
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

    /// The digests the destination lists as referrers of `subject`, where a client looks:
    /// its referrers API, else its fallback index (none when it has no such tag).
    async fn destination_lists(
        &self,
        ends: &Ends<'_>,
        subject: &Digest,
    ) -> Result<Option<HashSet<Digest>>> {
        let digests = |list: Vec<Referrer>| Some(list.into_iter().map(|r| r.digest).collect());
        if let Some(listed) = self
            .attachments
            .referrers(ends.dst, ends.dst_repo, subject)
            .await?
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
                &check.destination,
                ProblemKind::AttachedMissing,
                format!("{shown} of {subject} is missing at {}", ends.dst_repo),
                attachment,
            ));
        } else if !listed.is_some_and(|l| l.contains(&referrer.digest)) {
            check.problems.push(attached_problem(
                &check.destination,
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
    destination: &Target,
    kind: ProblemKind,
    message: String,
    attachment: Attachment,
) -> Problem {
    Problem {
        tag: destination.short(),
        kind,
        message,
        attachment: Some(attachment),
    }
}

/// `verify`'s side of the walk: each attachment found at the source is looked for at the
/// destination, and what differs or is missing becomes a problem of `check`.
struct Comparer<'a, 'e> {
    auditor: &'a Auditor,
    ends: &'a Ends<'e>,
    check: &'a mut ImageCheck,
}

impl Visitor for Comparer<'_, '_> {
    fn cosign_tag<'a>(
        &'a mut self,
        subject: &'a Digest,
        kind: Kind,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        Box::pin(async move {
            self.auditor
                .cosign_tag(self.ends, tag, kind, subject, self.check)
                .await
        })
    }

    fn referrers<'a>(
        &'a mut self,
        subject: &'a Digest,
        referrers: &'a [Referrer],
        _fallback_index: Option<&'a Manifest>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let listed = self.auditor.destination_lists(self.ends, subject).await?;
            for referrer in referrers {
                self.auditor
                    .referrer(self.ends, referrer, subject, listed.as_ref(), self.check)
                    .await?;
            }
            Ok(())
        })
    }
}
