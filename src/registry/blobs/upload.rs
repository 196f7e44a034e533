//! Blob uploads, the way each registry takes them. Registries differ here more than
//! anywhere: most take a blob in one `PUT` carrying the body (one round trip less, so that
//! is tried first); others refuse a body on `PUT` and only take streamed `PATCH`es closed by
//! an empty `PUT ?digest=` (as skopeo and crane send), some in chunks no longer than a limit
//! they state. A refused `PUT` sends that blob again as `PATCH` + `PUT`, and when that works
//! the registry gets its blobs that way for the rest of the run (kept in the client's
//! [`UploadMethods`](super::super::client::UploadMethods)). Every way streams the source's
//! bytes (checked against their digest by the copy, a failure kept by [`super::watch`]),
//! into a session opened while the source's GET is on its way, or into one a mount opened.

use std::sync::atomic::Ordering;

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};

use super::super::auth::Access;
use super::super::client::RegistryClient;
use super::super::control::CostClass;
use super::super::pipeline::request::number;
use super::super::pipeline::{Request, Unsent, unread};
use super::Session;
use super::watch::{FailureSlot, watch_failure};
use crate::model::failure::{ErrorKind, failure};
use crate::model::manifest::BlobRef;
use crate::model::reference::Repository;
use crate::retry::Budget;
use crate::stats::UploadMethod;
use crate::store::{BlobStream, OpenBlob, UploadSession};

/// Why a `PUT` with a body did not commit the blob.
enum NotCommitted {
    /// The registry refused the method (it answered the body with an error, or stopped
    /// reading it): sending the blob again another way may work.
    Refused(anyhow::Error),
    /// Anything else: the source's bytes, credentials, a fault of the moment.
    Failed(anyhow::Error),
}

impl RegistryClient {
    /// `POST /v2/PATH/blobs/uploads/`: a new upload session.
    async fn open_upload(
        &self,
        repository: &Repository,
        access: &Access,
        what: &str,
        class: CostClass,
        budget: &Budget,
    ) -> Result<Session> {
        let start = self.url(repository, &["blobs", "uploads", ""]);
        let answer = self
            .fetch(
                &Request::new(reqwest::Method::POST, start, class, what)
                    .access(access)
                    .bulk()
                    .header(CONTENT_LENGTH, number(0))
                    .within(budget),
            )
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

    /// An upload session opened ahead of its upload, while the source's first bytes are on
    /// their way (see [`crate::store::Destination::open_session`]): one small request, under
    /// the checks' limit rather than the transfers'.
    pub async fn upload_session(
        &self,
        repository: &Repository,
        budget: &Budget,
    ) -> Result<UploadSession> {
        let access = Access::push(repository.path());
        let what = format!("opening an upload in {repository}");
        let session = self
            .open_upload(repository, &access, &what, CostClass::Check, budget)
            .await?;
        Ok(UploadSession::new(session))
    }

    /// Uploads a blob from the stream `open` gives. The bytes are hashed as they pass and
    /// the upload fails before its end if they do not match the blob's digest, so a corrupt
    /// blob is never committed (the registry's own `?digest=` check is a second line).
    ///
    /// The source is opened at the same time as the upload session rather than after it,
    /// because each is a round trip that ends in the registry's fsync, and the copy holds a
    /// request slot at both registries while it waits.
    ///
    /// One `PUT` with the body, unless this registry has refused that in this run or the
    /// blob is longer than the chunk limit it states. When the registry refuses the `PUT`
    /// (see [`Self::put_whole`]), the blob is opened again and sent as `PATCH` + `PUT` in a
    /// new session: that is no retry, and takes nothing from `budget`.
    ///
    /// The upload session is opened within `budget`; the body is sent once (a stream cannot
    /// be sent twice): on a transient failure the caller starts the copy again, with a new
    /// session. A failed session is cancelled.
    pub async fn push_blob(
        &self,
        repository: &Repository,
        blob: &BlobRef,
        session: Option<UploadSession>,
        open: OpenBlob<'_>,
        budget: &Budget,
    ) -> Result<()> {
        let access = Access::push(repository.path());
        let what = format!("uploading blob {} to {repository}", blob.digest);
        let session = session.and_then(|s| s.into_inner::<Session>());
        let (session, source) = self
            .start(repository, &access, &what, session, open, budget)
            .await?;
        let patch = self.uploads.streamed.load(Ordering::Relaxed)
            || session.max_chunk.is_some_and(|max| blob.size > max);
        if patch {
            return self
                .patch_then_put(&access, &what, blob, session, source)
                .await;
        }
        let refusal = match self.put_whole(&access, &what, blob, &session, source).await {
            Ok(()) => {
                self.uploads
                    .monolithic_worked
                    .store(true, Ordering::Relaxed);
                self.pipe
                    .stats
                    .uploaded(self.host.as_str(), UploadMethod::Monolithic);
                return Ok(());
            }
            Err(NotCommitted::Failed(e)) => {
                self.cancel_upload(&access, &session).await;
                return Err(e);
            }
            Err(NotCommitted::Refused(e)) => e,
        };
        self.cancel_upload(&access, &session).await;
        tracing::info!(registry = %self.host, digest = %blob.digest, error = %format!("{refusal:#}"), "the registry refused the blob in one PUT; sending it again as PATCH + PUT");
        self.pipe.stats.fell_back(self.host.as_str());
        let (session, source) = self
            .start(repository, &access, &what, None, open, budget)
            .await?;
        self.patch_then_put(&access, &what, blob, session, source)
            .await?;
        if !self.uploads.streamed.swap(true, Ordering::Relaxed) {
            self.pipe.stats.switched_to_patch(self.host.as_str());
            tracing::info!(registry = %self.host, "this registry gets its blobs as PATCH + PUT for the rest of the run");
        }
        Ok(())
    }

    /// The upload session (`session`, or a new one) and the source's stream, asked for at
    /// the same time. The session is cancelled when the source cannot be opened.
    async fn start(
        &self,
        repository: &Repository,
        access: &Access,
        what: &str,
        session: Option<Session>,
        open: OpenBlob<'_>,
        budget: &Budget,
    ) -> Result<(Session, BlobStream)> {
        let (session, source) = match session {
            Some(session) => (Ok(session), open().await),
            None => {
                futures_util::future::join(
                    self.open_upload(repository, access, what, CostClass::Transfer, budget),
                    open(),
                )
                .await
            }
        };
        let session = session?;
        match source {
            Ok(source) => Ok((session, source)),
            Err(e) => {
                self.cancel_upload(access, &session).await;
                Err(e)
            }
        }
    }

    /// The source's bytes as they will be sent (checked by the copy), and where a failure
    /// that ends them early is left (see [`watch_failure`]).
    fn checked_body(
        &self,
        source: BlobStream,
    ) -> (
        impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static + use<>,
        FailureSlot,
    ) {
        let failed = FailureSlot::default();
        let body = watch_failure(source, failed.clone());
        (body, failed)
    }

    /// A part of an upload into `session` (`PUT`, `PATCH`), authorized for `access` with the
    /// session's credential, sent once: a streamed body cannot be sent again, and the caller
    /// judges whatever came back.
    fn part<'a>(
        access: &'a Access,
        session: &'a Session,
        method: reqwest::Method,
        target: reqwest::Url,
        what: &'a str,
    ) -> Request<'a> {
        Request::new(method, target, CostClass::Transfer, what)
            .access_as(access, &session.credential)
            .bulk()
            .once()
    }

    /// Sends a part (see [`Self::part`]) and hands its answer over unread.
    async fn send_part(&self, request: &Request<'_>) -> Result<reqwest::Response, Unsent> {
        self.send(request, unread).await.map(|reply| reply.value)
    }

    /// The session's location with `?digest=`, for the `PUT` that commits the blob.
    fn commit_target(&self, what: &str, location: &str, blob: &BlobRef) -> Result<reqwest::Url> {
        let mut target = self
            .absolute(location)
            .map_err(|e| e.context(format!("{what}: unusable upload location")))?;
        target
            .query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        Ok(target)
    }

    /// One `PUT ?digest=` carrying the whole body. Which failures are a refusal of the
    /// method rather than of this blob: an error answer to the body (but 401/403, which no
    /// other method changes, and 404, a session that is gone), or the connection broken
    /// while the body was being sent (a registry that does not read a body on `PUT`
    /// answers and closes). A 5xx or a broken connection counts only until a `PUT` with a
    /// body has worked at this registry: after that it is a fault like any other, retried
    /// by the caller. Bytes that do not match the digest are never a refusal.
    async fn put_whole(
        &self,
        access: &Access,
        what: &str,
        blob: &BlobRef,
        session: &Session,
        source: BlobStream,
    ) -> std::result::Result<(), NotCommitted> {
        let target = self
            .commit_target(what, &session.location, blob)
            .map_err(NotCommitted::Failed)?;
        let (body, failed) = self.checked_body(source);
        let request = Self::part(access, session, reqwest::Method::PUT, target, what)
            .header(CONTENT_LENGTH, number(blob.size))
            .header(CONTENT_TYPE, octet_stream())
            .upload(body);
        let result = self.send_part(&request).await;
        if let Some(stream_failure) = failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(NotCommitted::Failed(anyhow::Error::new(stream_failure)));
        }
        let first_of_its_kind = !self.uploads.monolithic_worked.load(Ordering::Relaxed);
        match result {
            Err(Unsent {
                error,
                transport: Some(e),
            }) if first_of_its_kind && broken_while_sending(&e) => {
                Err(NotCommitted::Refused(error))
            }
            Err(unsent) => Err(NotCommitted::Failed(unsent.error)),
            Ok(response) => {
                let status = response.status();
                if status == StatusCode::CREATED {
                    return Ok(());
                }
                let body = response.bytes().await.unwrap_or_default();
                let error = self.refused_with(what, access, status, &body, &session.credential);
                let refusal = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                        false
                    }
                    s if s.is_client_error() => true,
                    s => s.is_server_error() && first_of_its_kind,
                };
                Err(if refusal {
                    NotCommitted::Refused(error)
                } else {
                    NotCommitted::Failed(error)
                })
            }
        }
    }

    /// The blob as `PATCH`es, then an empty `PUT ?digest=` to commit it; each request goes
    /// to the `Location` the answer before it gave. One streamed `PATCH` carries the whole
    /// blob, unless the registry states a chunk limit: then `PATCH`es of at most that many
    /// bytes (and at least its `OCI-Chunk-Min-Length`), each with its `Content-Range`, each
    /// held in memory while it is sent. The session is cancelled on failure.
    async fn patch_then_put(
        &self,
        access: &Access,
        what: &str,
        blob: &BlobRef,
        session: Session,
        source: BlobStream,
    ) -> Result<()> {
        let (body, failed) = self.checked_body(source);
        let mut location = session.location.clone();
        let chunk_size = session
            .max_chunk
            .map(|max| max.max(session.min_chunk.unwrap_or(1)));
        let sent = match chunk_size {
            None => {
                let body = PatchBody::Streamed(Box::pin(body));
                self.patch(access, what, &session, &mut location, body, blob.size, None)
                    .await
                    .map(|()| UploadMethod::Streamed)
            }
            Some(chunk_size) => self
                .patch_chunks(access, what, &session, &mut location, body, chunk_size)
                .await
                .map(|()| UploadMethod::Chunked),
        };
        // A body that ended early reports its own cause, not the HTTP client's.
        let stream_failure = failed.lock().ok().and_then(|mut f| f.take());
        let committed = match (stream_failure, sent) {
            (Some(stream_failure), _) => Err(anyhow::Error::new(stream_failure)),
            (None, Err(e)) => Err(e),
            (None, Ok(method)) => self
                .commit(access, what, blob, &session, &location)
                .await
                .map(|()| method),
        };
        match committed {
            Ok(method) => {
                self.pipe.stats.uploaded(self.host.as_str(), method);
                Ok(())
            }
            Err(e) => {
                let at = Session {
                    location,
                    credential: session.credential,
                    min_chunk: None,
                    max_chunk: None,
                };
                self.cancel_upload(access, &at).await;
                Err(e)
            }
        }
    }

    /// The verified stream in `PATCH`es of `chunk_size` bytes (the last one shorter).
    async fn patch_chunks(
        &self,
        access: &Access,
        what: &str,
        session: &Session,
        location: &mut String,
        body: impl futures_util::Stream<Item = std::io::Result<Bytes>>,
        chunk_size: u64,
    ) -> Result<()> {
        let chunk_size = usize::try_from(chunk_size).unwrap_or(usize::MAX);
        let mut body = std::pin::pin!(body);
        let mut pending = BytesMut::new();
        let mut offset = 0u64;
        loop {
            let next = body.next().await;
            if let Some(part) = &next {
                match part {
                    Ok(bytes) => pending.extend_from_slice(bytes),
                    // The digest check recorded why; the caller reports it.
                    Err(e) => return Err(failure(ErrorKind::Transient, format!("{what}: {e}"))),
                }
            }
            let end = next.is_none();
            while pending.len() >= chunk_size || (end && !pending.is_empty()) {
                let part = pending.split_to(pending.len().min(chunk_size)).freeze();
                let len = part.len() as u64;
                self.patch(
                    access,
                    what,
                    session,
                    location,
                    PatchBody::Part(part),
                    len,
                    Some(offset),
                )
                .await?;
                offset += len;
            }
            if end {
                return Ok(());
            }
        }
    }

    /// One `PATCH` of `len` bytes to `location`, which becomes the `Location` it answered.
    /// `offset` (a chunk's first byte) adds its `Content-Range`.
    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        access: &Access,
        what: &str,
        session: &Session,
        location: &mut String,
        body: PatchBody,
        len: u64,
        offset: Option<u64>,
    ) -> Result<()> {
        let target = self
            .absolute(location)
            .map_err(|e| e.context(format!("{what}: unusable upload location")))?;
        let mut request = Self::part(access, session, reqwest::Method::PATCH, target, what)
            .header(CONTENT_LENGTH, number(len))
            .header(CONTENT_TYPE, octet_stream());
        if let Some(start) = offset.filter(|_| len > 0) {
            let range = format!("{start}-{}", start + len - 1);
            if let Ok(range) = reqwest::header::HeaderValue::from_str(&range) {
                request = request.header(CONTENT_RANGE, range);
            }
        }
        let request = match body {
            PatchBody::Streamed(stream) => request.upload(stream),
            PatchBody::Part(part) => request.stream(reqwest::Body::from(part)),
        };
        let response = self.send_part(&request).await?;
        let status = response.status();
        if status != StatusCode::ACCEPTED {
            let body = response.bytes().await.unwrap_or_default();
            return Err(self.refused_with(what, access, status, &body, &session.credential));
        }
        if let Some(next) = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            next.clone_into(location);
        }
        Ok(())
    }

    /// The empty `PUT ?digest=` that commits what the `PATCH`es sent.
    async fn commit(
        &self,
        access: &Access,
        what: &str,
        blob: &BlobRef,
        session: &Session,
        location: &str,
    ) -> Result<()> {
        let target = self.commit_target(what, location, blob)?;
        let request = Self::part(access, session, reqwest::Method::PUT, target, what)
            .header(CONTENT_LENGTH, number(0));
        let response = self.send_part(&request).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(());
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(self.refused_with(what, access, status, &body, &session.credential))
    }
}

/// `application/octet-stream`, what a blob's bytes are sent as.
/// What one `PATCH` carries.
enum PatchBody {
    /// The whole blob as it streams from its source (watched for an idle registry, see
    /// [`super::super::pipeline::idle`]).
    Streamed(std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>),
    /// One chunk, held in memory, within the registry's chunk limits.
    Part(Bytes),
}

fn octet_stream() -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_static("application/octet-stream")
}

/// Whether the connection broke while the request was being written (the server stopped
/// reading the body and closed, or reset): the sign of a registry that will not read a body
/// there. A connection closed after the whole request was sent, or never made, is not.
fn broken_while_sending(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        cause = e.source();
    }
    false
}
