//! Blobs: whether a repository has one, cross-repository mounts, and upload sessions; the
//! upload itself ([`upload`]), the resumable download ([`download`]), big blobs fetched as
//! parallel byte ranges ([`ranged`]) and where a body's
//! failure is kept ([`watch`]; the digest check itself is the copy's, for every destination).

pub mod download;
pub mod ranged;
pub mod upload;
pub mod watch;

use anyhow::Result;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, LOCATION};

use super::auth::Access;
use super::auth::credentials::RegistryCredential;
use super::client::{Answer, RegistryClient};
use super::control::CostClass;
use super::pipeline::Request;
use super::pipeline::request::number;
use super::pipeline::unread;
use crate::model::reference::{Digest, Repository};
use crate::store::{Mount, UploadSession};

/// An upload session this registry opened: where to send the blob, with which credential,
/// and the chunk sizes it stated. Travels through the copy algorithm as an opaque
/// [`UploadSession`].
pub(super) struct Session {
    pub location: String,
    pub credential: RegistryCredential,
    /// `OCI-Chunk-Min-Length`: every `PATCH` but the last carries at least this many bytes.
    pub min_chunk: Option<u64>,
    /// `OCI-Chunk-Max-Length` (proposed in opencontainers/distribution-spec#485, sent by
    /// registries behind request-buffering proxies): no request body longer than this.
    pub max_chunk: Option<u64>,
}

impl Session {
    pub(super) fn from_answer(answer: Answer) -> Option<Session> {
        let location = answer.headers.get(LOCATION)?.to_str().ok()?.to_owned();
        let length = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
        };
        Some(Session {
            location,
            min_chunk: length("oci-chunk-min-length"),
            max_chunk: length("oci-chunk-max-length"),
            credential: answer.credential,
        })
    }
}

impl RegistryClient {
    pub async fn blob_exists(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let access = Access::pull(repository.path());
        let what = format!("checking blob {digest} in {repository}");
        let url = self.url(repository, &["blobs", digest.as_str()]);
        let answer = self
            .fetch(
                &Request::new(reqwest::Method::HEAD, url, CostClass::Check, &what).access(&access),
            )
            .await?;
        match answer.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(&what, &access, &answer)),
        }
    }

    /// Cross-repository mount from `from`, a repository of this registry. Any failure is
    /// [`Mount::Refused`]: the caller uploads instead.
    pub async fn mount_blob(
        &self,
        repository: &Repository,
        from: &Repository,
        digest: &Digest,
    ) -> Result<Mount> {
        let access = Access::mount(repository.path(), from.path());
        let mut url = self.url(repository, &["blobs", "uploads", ""]);
        url.set_query(Some(&format!("mount={digest}&from={}", from.path())));
        let what = format!("mounting {digest} into {repository}");
        let answer = match self
            .fetch(
                &Request::new(reqwest::Method::POST, url, CostClass::Write, &what)
                    .access(&access)
                    .header(CONTENT_LENGTH, number(0)),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(registry = %self.host, path = repository.path(), %digest, error = %format!("{e:#}"), "mount not possible; uploading instead");
                return Ok(Mount::Refused);
            }
        };
        match answer.status {
            StatusCode::CREATED => Ok(Mount::Mounted),
            // Not mounted (the registry mounts nothing, or not from there): the session it
            // opened instead takes the upload, saving a DELETE and a POST.
            StatusCode::ACCEPTED => Ok(Session::from_answer(answer)
                .map(|s| Mount::Session(UploadSession::new(s)))
                .unwrap_or(Mount::Refused)),
            status => {
                tracing::debug!(registry = %self.host, path = repository.path(), %digest, %status, "mount refused; uploading instead");
                Ok(Mount::Refused)
            }
        }
    }

    /// Gives back a session [`Self::mount_blob`] opened and nothing used.
    pub async fn cancel_session(&self, repository: &Repository, session: UploadSession) {
        if let Some(session) = session.into_inner::<Session>() {
            self.cancel_upload(&Access::push(repository.path()), &session)
                .await;
        }
    }

    /// Best effort: drops an upload session that will not be used (one try, no retries).
    pub(super) async fn cancel_upload(&self, access: &Access, session: &Session) {
        let Ok(target) = self.absolute(&session.location) else {
            return;
        };
        let what = format!("cancelling an upload in {}/{}", self.host, access.path);
        let request = Request::new(reqwest::Method::DELETE, target, CostClass::Transfer, &what)
            .access_as(access, &session.credential)
            .once();
        let _ = self.send(&request, unread).await;
    }
}
