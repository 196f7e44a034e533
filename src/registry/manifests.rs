//! Manifests: HEAD for a digest (the cheap "is it unchanged?"), GET for the exact bytes
//! (checked against the digest asked for or stated), PUT of exact bytes under a tag or a
//! digest.

use anyhow::Result;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use super::auth::Access;
use super::client::{Answer, RegistryClient};
use super::control::CostClass;
use super::control::ration::FetchSlot;
use super::pipeline::{Body, Request};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::{Content, DOCKER_LIST, MANIFEST_MEDIA_TYPES, Manifest, OCI_INDEX};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::store::Deleted;

impl RegistryClient {
    /// `method` (HEAD or GET) on a manifest, accepting every manifest type we copy: both
    /// must ask alike, or a registry may answer them with different manifests.
    async fn ask_manifest(
        &self,
        method: reqwest::Method,
        repository: &Repository,
        reference: &ManifestRef,
        access: &Access,
        what: &str,
    ) -> Result<Answer> {
        let url = self.url(repository, &["manifests", reference.as_str()]);
        // A HEAD is a check; a GET is what a pull quota counts.
        let class = if method == reqwest::Method::HEAD {
            CostClass::Check
        } else {
            CostClass::ManifestGet
        };
        let accept = HeaderValue::from_str(&MANIFEST_MEDIA_TYPES.join(", "))
            .unwrap_or(HeaderValue::from_static("*/*"));
        self.fetch(
            &Request::new(method, url, class, what)
                .access(access)
                .header(ACCEPT, accept),
        )
        .await
    }

    /// The digest a tag or digest resolves to, or `None` if the registry does not have it.
    /// One HEAD request.
    pub async fn manifest_digest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Option<Digest>> {
        let access = Access::pull(repository.path());
        let what = format!("checking {repository}:{reference}");
        let answer = self
            .ask_manifest(reqwest::Method::HEAD, repository, reference, &access, &what)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        match answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Ok(Some(Digest::parse(d).map_err(|e| {
                failure(
                    ErrorKind::Permanent,
                    format!(
                        "{} answered a bad digest for {}:{reference}: {e}",
                        self.host,
                        repository.path()
                    ),
                )
            })?)),
            None => Ok(Some(
                self.pull_manifest(repository, reference).await?.digest,
            )),
        }
    }

    /// A manifest's exact bytes, checked against the digest asked for (or the one the
    /// registry states for a tag).
    pub async fn pull_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Manifest> {
        let access = Access::pull(repository.path());
        let what = format!("reading manifest {repository}:{reference}");
        // Held until the manifest is read: the first fetches of a registry go a few at a
        // time (see control::ration).
        let _slot = self
            .reserve_pulls(repository, reference, &access, &what)
            .await?;
        let answer = self
            .ask_manifest(reqwest::Method::GET, repository, reference, &access, &what)
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        let stated = answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let digest = Digest::of(&answer.body);
        // Asked by digest: the bytes must be that digest. By tag: the digest the registry
        // states, when it states one.
        let expected = match reference {
            ManifestRef::Digest(d) => Some(d.to_string()),
            ManifestRef::Tag(_) => stated,
        };
        if let Some(expected) = expected {
            // Checked by the algorithm it names; the manifest keeps its canonical (sha256)
            // digest, the one registries answer HEADs with.
            let actual = match Digest::parse(&expected) {
                Ok(e) if e.algorithm() != digest.algorithm() => {
                    Digest::of_with(e.algorithm(), &answer.body)
                }
                _ => digest.clone(),
            };
            if expected != actual.as_str() {
                return Err(failure(
                    ErrorKind::Corrupt,
                    format!("{what}: the bytes hash to {actual}, not {expected}"),
                ));
            }
        }
        let manifest = Manifest::parse(answer.body, digest)
            .map_err(|e| failure(ErrorKind::Permanent, format!("{what}: {e:#}")))?;
        // An index's children are fetched next: the image's share of the pull quota must
        // cover them all, or none is fetched (see control::ration).
        let children = match &manifest.content {
            Content::Index { children } => children.len() as u64,
            Content::Image { .. } => 0,
        };
        self.control()
            .rationing()
            .manifest_read(&answer.credential.account(), children)
            .map_err(|d| failure(ErrorKind::Deferred, format!("{what}: {d}")))?;
        Ok(manifest)
    }

    /// Where the registry publishes a pull quota, the first manifest GET of an image is
    /// preceded by a HEAD (which the quota does not count) telling an index from an image,
    /// so that what the whole image needs is set aside before any of it is fetched (see
    /// control::ration); an image the quota cannot cover is deferred here.
    async fn reserve_pulls(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
        access: &Access,
        what: &str,
    ) -> Result<Option<FetchSlot<'_>>> {
        let rationing = self.control().rationing();
        // The first fetch of a registry goes alone, its kind untold (no request more for a
        // registry that rations nothing); the others wait until it is read, and so until the
        // quota, if any, is known and this image's reservation has grown to its children.
        let slot = rationing.fetch_slot().await;
        // Whose quota the image spends: the credential the registry is asked with for
        // this repository (one that cannot be had fails the GET itself, saying why).
        let account = self
            .credential(repository.path())
            .map(|c| c.account())
            .unwrap_or_default();
        if !rationing.needs_kind(&account) {
            return Ok(slot);
        }
        let head = self
            .ask_manifest(reqwest::Method::HEAD, repository, reference, access, what)
            .await?;
        let index = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains(OCI_INDEX) || t.contains(DOCKER_LIST));
        rationing
            .reserve_image(&head.credential.account(), index)
            .map_err(|d| failure(ErrorKind::Deferred, format!("{what}: {d}")))?;
        Ok(slot)
    }

    /// Writes a manifest as its exact bytes and media type, under a tag or its digest.
    pub async fn push_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
        manifest: &Manifest,
    ) -> Result<()> {
        let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| {
            failure(
                ErrorKind::Permanent,
                format!("unusable media type {:?}", manifest.media_type),
            )
        })?;
        let access = Access::push(repository.path());
        let what = format!("writing manifest {repository}:{reference}");
        let url = self.url(repository, &["manifests", reference.as_str()]);
        let answer = self
            .fetch(
                &Request::new(reqwest::Method::PUT, url, CostClass::Write, &what)
                    .access(&access)
                    .header(CONTENT_TYPE, content_type)
                    .body(Body::Bytes(manifest.bytes.clone())),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &access, &answer));
        }
        Ok(())
    }

    /// `DELETE /v2/<repo>/manifests/<reference>`: one request. A tag is deleted alone by
    /// registries that implement the OCI 1.1 tag delete; distribution 2.8 refuses it (400
    /// DIGEST_INVALID) and deletes only by digest, every tag of that digest with it; a
    /// registry without deletes enabled answers 405 UNSUPPORTED. Both refusals are
    /// [`Deleted::Refused`] with the registry's words, for the caller to decide.
    pub async fn delete_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Deleted> {
        let access = Access::delete(repository.path());
        let what = format!("deleting {repository}:{reference}");
        let url = self.url(repository, &["manifests", reference.as_str()]);
        let answer = self
            .fetch(
                &Request::new(reqwest::Method::DELETE, url, CostClass::Write, &what)
                    .access(&access),
            )
            .await?;
        let status = answer.status;
        if status.is_success() {
            return Ok(Deleted::Removed);
        }
        if status == StatusCode::NOT_FOUND {
            return Ok(Deleted::Absent);
        }
        let unsupported = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::BAD_REQUEST && matches!(reference, ManifestRef::Tag(_)));
        if unsupported {
            return Ok(Deleted::Refused(super::error::registry_answer(
                status,
                &answer.body,
            )));
        }
        Err(self.refused(&what, &access, &answer))
    }
}
