//! Blob downloads that resume: a `Range` request from the byte reached when an answer
//! breaks off (or a whole new GET whose leading bytes are dropped, for a registry that
//! ignores `Range`), so the reader sees one continuous stream. Every resume is a try taken
//! from the blob copy's budget. A blob above `--range-threshold` is fetched as byte ranges
//! over several connections instead ([`super::ranged`]), through the same [`Ask`]s.

use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, HeaderValue, RANGE};

use super::super::auth::Access;
use super::super::client::RegistryClient;
use super::super::control::CostClass;
use super::super::error::{describe_http_error, kind_of_status, registry_answer, transport_kind};
use super::super::pipeline::{Request, authority, unread};
use crate::model::failure::{ErrorKind, Failure, error_kind, failure};
use crate::model::manifest::BlobRef;
use crate::model::reference::{Digest, Repository};
use crate::moving::Following;
use crate::retry::{Budget, Verdict};
use crate::store::BlobStream;

/// Which bytes of a blob a `GET` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// From this byte to the end (the whole blob from 0, without a `Range` header).
    From(u64),
    /// Bytes `start..end` (end exclusive): `Range: bytes=start-(end-1)`.
    Span { start: u64, end: u64 },
}

impl Ask {
    /// The `Range` header value, if one is sent.
    pub(super) fn range(self) -> Option<String> {
        match self {
            Ask::From(0) => None,
            Ask::From(offset) => Some(format!("bytes={offset}-")),
            Ask::Span { start, end } => Some(format!("bytes={start}-{}", end.saturating_sub(1))),
        }
    }

    /// Whether a 206's `Content-Range` (`bytes a-b/total`) is what was asked.
    pub(super) fn answered_by(self, content_range: Option<&str>) -> bool {
        let Some((a, b)) = content_range
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.split_once('-'))
        else {
            return false;
        };
        let (a, b) = (a.trim().parse::<u64>().ok(), b.trim().parse::<u64>().ok());
        match self {
            Ask::From(offset) => a == Some(offset),
            Ask::Span { start, end } => a == Some(start) && b == Some(end.saturating_sub(1)),
        }
    }
}

/// What a blob `GET` was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// 206: exactly the bytes asked.
    Part,
    /// 200: the whole blob from its first byte, whatever was asked (a source that ignores
    /// `Range`).
    Whole,
}

impl RegistryClient {
    /// `GET` the bytes `ask` names of a blob (a `Range` request unless it is the whole).
    /// Returns the response and whether it is the part asked or the whole blob: a registry
    /// that ignores `Range` answers 200 with every byte.
    pub(super) async fn open_blob_at(
        &self,
        repository: &Repository,
        digest: &Digest,
        ask: Ask,
        budget: &Budget,
    ) -> Result<(reqwest::Response, Answered)> {
        let access = Access::pull(repository.path());
        let what = format!("reading blob {digest} from {repository}");
        let url = self.url(repository, &["blobs", digest.as_str()]);
        let mut request = Request::new(reqwest::Method::GET, url, CostClass::Transfer, &what)
            .access(&access)
            .bulk()
            .within(budget);
        if let Some(range) = ask.range().and_then(|r| HeaderValue::from_str(&r).ok()) {
            request = request.header(RANGE, range);
        }
        let pipe = &self.pipe;
        crate::retry::drive(
            &pipe.policy,
            budget,
            &pipe.stats.request_retries,
            None,
            || self.open_once(&request, &access, ask),
            |opening| match opening {
                Opening::Redirected { .. } => Verdict::Retry { after: None },
                Opening::Failed(_) => Verdict::Stop,
            },
            |retry, wait, opening| {
                if let Opening::Redirected { why } = opening {
                    let why = format!("{why}; asking {} for a new redirect", self.host);
                    pipe.stats.retried(self.host.as_str());
                    let said = format!(
                        "{what}: {why}, {}",
                        crate::retry::next_try(retry, budget, wait)
                    );
                    tracing::info!(registry = %self.host, attempt = retry + 1, "{said}");
                    pipe.stats.waiting_on(said, wait);
                }
            },
        )
        .await
        .map_err(|opening| match opening {
            // Not the user's credentials: a pre-signed URL that expired or was refused; a
            // later try gets a new one.
            Opening::Redirected { why } => failure(ErrorKind::Transient, format!("{what}: {why}")),
            Opening::Failed(e) => e,
        })
    }

    /// One `GET` of a blob through the pipeline (with its own retries), and what its answer
    /// comes to.
    async fn open_once(
        &self,
        request: &Request<'_>,
        access: &Access,
        ask: Ask,
    ) -> Result<(reqwest::Response, Answered), Opening> {
        let what = request.what;
        let reply = self
            .send(request, unread)
            .await
            .map_err(|unsent| Opening::Failed(unsent.error))?;
        let (status, response, credential) = (reply.status, reply.value, reply.credential);
        if !status.is_success() && !self.is_ours(response.url()) {
            // The registry granted access and redirected (a CDN, an object store); the host
            // it sent us to refused. Blame that host, and ask the registry again: its next
            // redirect carries a fresh signature.
            let elsewhere = authority(response.url());
            let body = response.bytes().await.unwrap_or_default();
            let verb = if is_refused_redirect(status) {
                "refused it"
            } else {
                "answered"
            };
            let why = format!(
                "the redirect host {elsewhere} {verb} ({}); {} granted access and sent the download there",
                registry_answer(status, &body),
                self.host,
            );
            if is_refused_redirect(status) {
                return Err(Opening::Redirected { why });
            }
            return Err(Opening::Failed(failure(
                kind_of_status(status),
                format!("{what}: {why}"),
            )));
        }
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok());
        match status {
            StatusCode::OK => Ok((response, Answered::Whole)),
            StatusCode::PARTIAL_CONTENT
                if ask != Ask::From(0) && ask.answered_by(content_range) =>
            {
                Ok((response, Answered::Part))
            }
            StatusCode::PARTIAL_CONTENT => Err(Opening::Failed(failure(
                ErrorKind::Transient,
                format!("{what}: the registry answered a range that was not asked for"),
            ))),
            _ => {
                let body = response.bytes().await.unwrap_or_default();
                Err(Opening::Failed(self.refused_with(
                    what,
                    access,
                    status,
                    &body,
                    &credential,
                )))
            }
        }
    }

    /// Opens a blob for reading. When the answer breaks off (connection reset, a body
    /// shorter than `size`), the stream goes on with a `Range` request from the byte reached
    /// (or a whole new GET whose leading bytes are dropped, for a source that ignores
    /// `Range`), each try taken from `budget`: the reader sees one continuous stream.
    /// A blob at or above `--range-threshold` is fetched as byte ranges over several
    /// connections instead ([`Self::pull_ranged`]), unless this registry has answered a
    /// range with the whole blob. A big blob is followed by the progress display while it
    /// moves ([`crate::moving`]). Whatever it yields is checked by the copy
    /// (`execute::checked`).
    pub async fn pull_blob(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        budget: Arc<Budget>,
    ) -> Result<BlobStream> {
        let following = self.ranges.big(blob.size).then(|| {
            self.pipe.stats.moving.follow(
                self.host.as_str(),
                repository.path(),
                blob.digest.as_str(),
                blob.size,
            )
        });
        let stream = if self.ranges.applies(blob.size) && !self.ranges_ignored() {
            self.pull_ranged(repository, blob, budget).await?
        } else {
            let (response, _) = self
                .open_blob_at(&repository, &blob.digest, Ask::From(0), &budget)
                .await?;
            self.resuming(repository, blob, budget, response)
        };
        Ok(match following {
            Some(following) => followed(stream, following),
            None => stream,
        })
    }

    /// The download from byte 0 that `response` (the whole blob) starts, resumed where it
    /// breaks off.
    pub(super) fn resuming(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        budget: Arc<Budget>,
        response: reqwest::Response,
    ) -> BlobStream {
        let state = ResumeState {
            client: self,
            repository,
            digest: blob.digest,
            size: blob.size,
            budget,
            offset: 0,
            skip: 0,
            body: Some(Box::pin(response.bytes_stream())),
            resumes: 0,
            done: false,
        };
        Box::pin(futures_util::stream::unfold(state, ResumeState::next))
    }
}

/// `stream` with its bytes counted for the progress display until it ends or is dropped
/// (a big blob, see [`crate::moving`]).
fn followed(stream: BlobStream, following: Following) -> BlobStream {
    let mut following = Some(following);
    Box::pin(stream.map(move |chunk| {
        // Every byte in, or failed: it no longer moves (a try of the copy after a failure
        // is followed anew).
        let moved = match &chunk {
            Ok(bytes) => following
                .as_ref()
                .is_some_and(|f| !f.advance(bytes.len() as u64)),
            Err(_) => false,
        };
        if !moved {
            following = None;
        }
        chunk
    }))
}

/// Why a blob's `GET` gave no stream to read.
enum Opening {
    /// The host the registry redirected to refused a pre-signed URL: ask the registry again.
    Redirected {
        why: String,
    },
    Failed(anyhow::Error),
}

/// How a redirect host (a CDN, an object store) refuses a pre-signed URL that expired or
/// whose signature it does not accept: S3 says 403, others 400, 401 or 410. Not a verdict on
/// the user's credentials, which the registry accepted.
fn is_refused_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::GONE
    )
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A blob download that picks up where it broke off (see [`RegistryClient::pull_blob`]).
struct ResumeState {
    client: Arc<RegistryClient>,
    repository: Repository,
    digest: Digest,
    size: u64,
    /// Shared with the upload this download feeds: resumes are tries of the blob copy.
    budget: Arc<Budget>,
    /// Bytes handed on so far.
    offset: u64,
    /// Leading bytes of the current answer to drop.
    skip: u64,
    body: Option<ByteStream>,
    /// Resumes made so far (for the message when they run out).
    resumes: u32,
    done: bool,
}

impl ResumeState {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let why = match self.body.as_mut()?.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64);
                        self.skip -= drop;
                        chunk = chunk.slice(drop as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.offset += chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                // The whole blob, or more: the digest check downstream judges it.
                None if self.offset >= self.size => return None,
                None => format!(
                    "the answer ended after {} of {} bytes",
                    self.offset, self.size
                ),
                Some(Err(e)) => {
                    let why = describe_http_error(&e, self.client.host.as_str());
                    if transport_kind(&e) != ErrorKind::Transient {
                        return self.fail(ErrorKind::Permanent, why);
                    }
                    why
                }
            };
            self.body = None;
            self.resumes += 1;
            let Some(retry) = self.budget.take() else {
                let why = format!(
                    "{why} (gave up after {})",
                    crate::plural::count_as(self.resumes, "try", "tries")
                );
                return self.fail(ErrorKind::Transient, why);
            };
            let client = &self.client;
            client.pipe.stats.retried(client.host.as_str());
            client
                .pipe
                .policy
                .pause(retry, None, &client.pipe.stats.request_retries, None, |wait| {
                    let said = format!("blob download broke off: {why}, resuming ({})", crate::retry::next_try(retry, &self.budget, wait));
                    tracing::info!(registry = %client.host, path = %self.repository.path(), digest = %self.digest, offset = self.offset, "{said}");
                    client.pipe.stats.waiting_on(said, wait);
                })
                .await;
            match self
                .client
                .open_blob_at(
                    &self.repository,
                    &self.digest,
                    Ask::From(self.offset),
                    &self.budget,
                )
                .await
            {
                Ok((response, answered)) => {
                    self.skip = match answered {
                        Answered::Whole => self.offset,
                        Answered::Part => 0,
                    };
                    self.body = Some(Box::pin(response.bytes_stream()));
                }
                Err(e) => {
                    let kind = error_kind(&e).unwrap_or(ErrorKind::Permanent);
                    return self.fail(kind, format!("{e:#}"));
                }
            }
        }
    }

    fn fail(mut self, kind: ErrorKind, why: String) -> Option<(std::io::Result<Bytes>, Self)> {
        self.done = true;
        self.body = None;
        Some((
            Err(std::io::Error::other(Failure { kind, message: why })),
            self,
        ))
    }
}
