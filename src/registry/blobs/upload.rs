//! Blob uploads: one monolithic PUT whose body is the source's stream, checked as it
//! passes (see [`super::verify`]), into a session opened while the source's GET is on its
//! way, or into one a mount opened.

use std::sync::Arc;

use anyhow::Result;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::super::auth::Access;
use super::super::client::RegistryClient;
use super::super::error::{describe_http_error, transport_kind};
use super::Session;
use super::verify::verify_stream;
use crate::model::failure::{ErrorKind, Failure, failure};
use crate::model::manifest::BlobRef;
use crate::model::reference::Repository;
use crate::retry::Budget;
use crate::store::{BlobStream, UploadSession};

impl RegistryClient {
    /// `POST /v2/PATH/blobs/uploads/`: a new upload session.
    async fn open_upload(
        &self,
        repository: &Repository,
        access: &Access,
        what: &str,
        budget: &Budget,
    ) -> Result<Session> {
        let start = self.url(repository, &["blobs", "uploads", ""]);
        let answer = self
            .fetch_within(access, what, budget, || {
                self.http.post(start.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(self.refused(what, access, &answer));
        }
        Session::from_answer(answer).ok_or_else(|| {
            failure(
                ErrorKind::Permanent,
                format!("{what}: the registry opened an upload without a Location"),
            )
        })
    }

    /// Uploads a blob from a stream in one monolithic PUT. The bytes are hashed as they pass
    /// and the body fails before its end if they do not match `digest`, so a corrupt blob is
    /// never committed (the registry's own `?digest=` check is a second line).
    ///
    /// `source` opens the stream (the source's `GET`); the upload session is opened at the
    /// same time rather than after it, because each is a round trip that ends in the
    /// registry's fsync, and the copy holds a request slot at both registries while it waits.
    ///
    /// The upload session is opened within `budget`; the PUT itself is sent once (a stream
    /// cannot be sent twice): on a transient failure the caller starts the copy again, with
    /// a new session. A failed session is cancelled.
    pub async fn push_blob(
        &self,
        repository: &Repository,
        blob: &BlobRef,
        session: Option<UploadSession>,
        source: impl Future<Output = Result<BlobStream>>,
        budget: &Budget,
    ) -> Result<()> {
        let digest = &blob.digest;
        let size = blob.size;
        let access = Access::push(repository.path());
        let what = format!("uploading blob {digest} to {repository}");
        let session = session.and_then(|s| s.into_inner::<Session>());
        let (session, source) = match session {
            Some(session) => (Ok(session), source.await),
            None => {
                futures_util::future::join(
                    self.open_upload(repository, &access, &what, budget),
                    source,
                )
                .await
            }
        };
        let session = session?;
        let source = match source {
            Ok(source) => source,
            Err(e) => {
                self.cancel_upload(&access, &session).await;
                return Err(e);
            }
        };
        let mut target = match self.absolute(&session.location) {
            Ok(target) => target,
            Err(e) => return Err(e.context(format!("{what}: unusable upload location"))),
        };
        target
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let failed = Arc::new(std::sync::Mutex::new(None::<Failure>));
        let body = verify_stream(
            source,
            digest.clone(),
            size,
            failed.clone(),
            self.stats.clone(),
        );
        let mut request = self
            .http
            .put(target)
            .header(CONTENT_LENGTH, size)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = self.authorization(&session.credential, &access).await? {
            request = self.authorize_if_ours(request, &a);
        }
        self.stats.request(self.host.as_str());
        let result = request.send().await;
        if let Ok(response) = &result {
            self.stats
                .answered(self.host.as_str(), response.status().as_u16());
        }
        let stream_failure = failed.lock().ok().and_then(|mut f| f.take());
        let error = match (stream_failure, result) {
            (Some(stream_failure), _) => anyhow::Error::new(stream_failure),
            (None, Err(e)) => failure(
                transport_kind(&e),
                format!("{what}: {}", describe_http_error(&e, self.host.as_str())),
            ),
            (None, Ok(response)) => {
                let status = response.status();
                if status == StatusCode::CREATED {
                    return Ok(());
                }
                let body = response.bytes().await.unwrap_or_default();
                self.refused_with(&what, &access, status, &body, &session.credential)
            }
        };
        self.cancel_upload(&access, &session).await;
        Err(error)
    }
}
