//! `--policy` at copy time: the source's cosign signatures of an image (its `.sig` manifest
//! and that manifest's layers, read through the store seam) checked against the policy's
//! requirements for the image's scope, before anything of the image is written.

use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;
use serde_json::Value;

use super::Executor;
use crate::model::attached::cosign_tag;
use crate::model::failure::{ErrorKind, error_kind, failure};
use crate::model::image::SourceImage;
use crate::model::manifest::BlobRef;
use crate::model::reference::{Digest, ManifestRef, Tag};
use crate::plan::CopyJob;
use crate::policy::verify::{Intended, normalize};
use crate::policy::{Signature, evaluate, needs_signatures};
use crate::store::Source;

/// cosign's annotation holding a layer's signature (base64).
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A keyless signature's Fulcio certificate, its chain (PEM) and Rekor bundle (JSON).
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// A payload larger than this is no cosign simple-signing payload; it is not read.
const MAX_PAYLOAD: u64 = 1 << 20;

impl Executor {
    /// Refuses (`ErrorKind::Refused`) an image whose signatures do not meet the policy for
    /// its source scope. `digest` is what the source's reference resolved to (an index's own
    /// digest, before any platform filter).
    pub(super) async fn check_policy(
        &self,
        src: &Arc<dyn Source>,
        source: &SourceImage,
        digest: &Digest,
    ) -> Result<()> {
        let Some(policy) = &self.options.policy else {
            return Ok(());
        };
        let name = normalize(&source.repository.to_string());
        let (tag, pinned) = (source.tag().map(Tag::as_str), source.digest());
        let reference = match (tag, pinned) {
            (Some(t), _) => format!(":{t}"),
            (None, Some(d)) => format!("@{d}"),
            (None, None) => String::new(),
        };
        let (scope, requirements) = policy.requirements_for(&name, &reference);
        let shown = format!("{}@{digest}", source.repository);
        let signatures = if needs_signatures(requirements) {
            self.signatures(src, source, digest).await?
        } else {
            Vec::new()
        };
        let image = Intended {
            name,
            tag,
            pinned,
            digest,
        };
        evaluate(requirements, &image, &shown, &signatures).map_err(|why| {
            let scope = if scope.is_empty() { "\"\"" } else { scope };
            failure(ErrorKind::Refused, format!("{why} (policy scope {scope})"))
        })
    }

    /// `--policy` for an image already at the destination (unchanged): one the policy no
    /// longer accepts (its signature removed, the policy made stricter) is refused — the
    /// run fails so that the hourly job notices — and left as it is at the destination:
    /// nothing is deleted or written. Without `--policy`, no request.
    pub(super) async fn recheck_policy(
        &self,
        src: &Arc<dyn Source>,
        job: &CopyJob,
        digest: &Digest,
    ) -> Result<()> {
        self.check_policy(src, &job.source, digest)
            .await
            .map_err(|e| match error_kind(&e) {
                Some(ErrorKind::Refused) => failure(
                    ErrorKind::Refused,
                    format!(
                        "{e:#}; {} already holds it and is left as it is",
                        job.destination
                    ),
                ),
                _ => e,
            })
    }

    /// The image's cosign signatures at the source: none when it has no `.sig` tag. The
    /// source's tag list (listed once per repository and run, as for attachments) says
    /// whether it has one, so no HEAD is sent for it.
    async fn signatures(
        &self,
        src: &Arc<dyn Source>,
        source: &SourceImage,
        digest: &Digest,
    ) -> Result<Vec<Signature>> {
        let repo = &source.repository;
        let tag_text = cosign_tag(digest, ".sig");
        let tag = Tag::parse(&tag_text)
            .map_err(|e| failure(ErrorKind::Permanent, format!("tag {tag_text:?}: {e}")))?;
        let reference = ManifestRef::Tag(tag);
        let listed = self.source_tags(src.as_ref(), repo).await;
        match listed {
            Some(tags) if !tags.contains(&tag_text) => return Ok(Vec::new()),
            Some(_) => {}
            None => {
                if src.manifest_digest(repo, &reference).await?.is_none() {
                    return Ok(Vec::new());
                }
            }
        }
        let manifest = src.manifest(repo, &reference).await?;
        let doc: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            failure(
                ErrorKind::Permanent,
                format!("{repo}:{tag_text}: not a manifest: {e}"),
            )
        })?;
        let mut out = Vec::new();
        for layer in doc["layers"].as_array().into_iter().flatten() {
            let Some(signature) = layer["annotations"][SIGNATURE_ANNOTATION].as_str() else {
                continue;
            };
            let (Some(digest), Some(size)) = (
                layer["digest"].as_str().and_then(|d| Digest::parse(d).ok()),
                layer["size"].as_u64(),
            ) else {
                continue;
            };
            if size > MAX_PAYLOAD {
                tracing::warn!(repository = %repo, tag = %tag_text, %digest, size, "signature payload too large; skipped");
                continue;
            }
            let payload = self.read_payload(src, source, &digest, size).await?;
            let annotation = |name: &str| layer["annotations"][name].as_str().map(str::to_owned);
            out.push(Signature {
                payload,
                signature: signature.to_owned(),
                certificate: annotation(CERTIFICATE_ANNOTATION),
                chain: annotation(CHAIN_ANNOTATION),
                bundle: annotation(BUNDLE_ANNOTATION),
            });
        }
        Ok(out)
    }

    /// A payload blob's bytes, checked against its digest.
    async fn read_payload(
        &self,
        src: &Arc<dyn Source>,
        source: &SourceImage,
        digest: &Digest,
        size: u64,
    ) -> Result<Vec<u8>> {
        let budget = Arc::new(self.options.request_policy.budget());
        let blob = BlobRef {
            digest: digest.clone(),
            size,
        };
        let mut stream = src
            .clone()
            .open_blob(source.repository.clone(), blob, budget)
            .await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
            if bytes.len() as u64 > size {
                break;
            }
        }
        if bytes.len() as u64 != size || Digest::of_with(digest.algorithm(), &bytes) != *digest {
            return Err(failure(
                ErrorKind::Corrupt,
                format!(
                    "{}: signature payload {digest} does not match its digest",
                    source.repository
                ),
            ));
        }
        Ok(bytes)
    }
}
