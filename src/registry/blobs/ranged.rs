//! Big blobs fetched as byte ranges over several connections at once: one TCP stream over a
//! long or rate-capped path (a CDN edge, a far region) carries a fraction of the bandwidth,
//! and a layer of several GiB copied through it is as slow as that one stream.
//!
//! A blob of at least `--range-threshold` bytes is cut into chunks of `--range-chunk-size`;
//! a sliding window of `--ranges-per-blob` chunks is fetched at once, each a
//! `Range: bytes=a-b` `GET` (expecting 206 and the same `Content-Range`) on a connection of
//! its own from the registry's HTTP/1.1 (`bulk`) pool, and the chunks are handed on in
//! order as the one [`BlobStream`] the copy reads: its digest check and every destination
//! are the same as for one stream. Memory is bounded by the window: at most
//! `ranges-per-blob` chunks being filled plus the one being handed on.
//!
//! Each range in flight holds a read slot of the registry (see [`Ticket`]): the one the
//! copy's transfer permit holds, lent to one range at a time, and for each further range
//! one more slot of the same limit. So several big layers share the registry's limit on
//! transfers, and one layer never opens the registry more than that limit; a range that
//! finds no slot free waits for the blob's own, which every range gives back when its
//! bytes are in, so a blob always moves on with its one slot. Every range request goes
//! through the pipeline as a transfer within the blob's one retry budget; a chunk that
//! fails is asked again alone, from its byte reached. Redirects to a CDN are followed per range (no
//! `Authorization` goes there), and a signed URL refused is asked afresh from the registry
//! (see [`RegistryClient::open_blob_at`]). A registry that answers the first range with
//! 200 and the whole blob is read as one stream, and is not asked for ranges again in the
//! run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::super::client::RegistryClient;
use super::super::error::{describe_http_error, transport_kind};
use super::download::{Answered, Ask};
use crate::limiter::OwnedSlot;
use crate::model::failure::{ErrorKind, Failure, error_kind};
use crate::model::manifest::BlobRef;
use crate::model::reference::{Digest, Repository};
use crate::retry::Budget;
use crate::store::BlobStream;

/// How big blobs are fetched in ranges (`--range-threshold`, `--range-chunk-size`,
/// `--ranges-per-blob`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeOptions {
    /// Blobs of at least this many bytes are fetched in ranges (0: none is).
    pub threshold: u64,
    /// Bytes per range (0: no ranges).
    pub chunk: u64,
    /// Ranges of one blob in flight at once (0 or 1: no ranges).
    pub per_blob: usize,
}

impl Default for RangeOptions {
    /// The defaults of the flags (see the README, "How a copy works", for why).
    fn default() -> Self {
        RangeOptions {
            threshold: 64 * MIB,
            chunk: 8 * MIB,
            per_blob: 6,
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl RangeOptions {
    /// Whether a blob of `size` bytes is fetched in ranges: more than one chunk of it, at
    /// or above the threshold, ranges enabled.
    pub fn applies(&self, size: u64) -> bool {
        self.per_blob > 1
            && self.chunk > 0
            && self.threshold > 0
            && size >= self.threshold
            && size > self.chunk
    }

    /// Whether a blob of `size` bytes is big: one the progress display follows (see
    /// [`crate::moving`]). The threshold of ranges, or its default when ranges are off: a
    /// layer of several GiB read as one stream deserves watching all the more.
    pub fn big(&self, size: u64) -> bool {
        let threshold = match self.threshold {
            0 => RangeOptions::default().threshold,
            n => n,
        };
        size >= threshold
    }

    /// The chunks of a blob of `size` bytes, in order: `(start, end)`, end exclusive.
    fn spans(&self, size: u64) -> Vec<(u64, u64)> {
        let chunk = self.chunk.max(1);
        (0..size.div_ceil(chunk))
            .map(|i| (i * chunk, ((i + 1) * chunk).min(size)))
            .collect()
    }
}

/// A size as flags give it: bytes, or a number with `KiB`, `MiB` or `GiB` ("16MiB").
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "m" | "mib" => MIB,
        "g" | "gib" => 1024 * MIB,
        _ => {
            return Err(format!(
                "{text:?} is not a size (bytes, or a number with KiB, MiB or GiB)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size (bytes, or a number with KiB, MiB or GiB)"))
}

impl RegistryClient {
    /// Whether this registry answered a range with the whole blob in this run.
    pub(super) fn ranges_ignored(&self) -> bool {
        self.ranges_ignored.load(Ordering::Relaxed)
    }

    /// Remembers that this registry ignores `Range` (said once per run).
    fn ignores_ranges(&self) {
        if !self.ranges_ignored.swap(true, Ordering::Relaxed) {
            tracing::info!(registry = %self.host, "the registry answers a byte range with the whole blob; big blobs come from it as one stream");
        }
    }

    /// The blob as ranges (see the module doc). The first range is asked alone: its answer
    /// says whether the registry serves ranges (206) or sends the whole blob (200), which is
    /// then read as one stream, and the rest of the window follows it.
    pub(super) async fn pull_ranged(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        budget: Arc<Budget>,
    ) -> Result<BlobStream> {
        let spans = self.ranges.spans(blob.size);
        let Some(&(start, end)) = spans.first() else {
            return Ok(Box::pin(futures_util::stream::empty()));
        };
        // The first range goes under the blob's own slot, free as nothing else runs yet.
        let own = Arc::new(Semaphore::new(1));
        let first_ticket = Ticket::own(&own).await;
        let (response, answered) = self
            .open_blob_at(&repository, &blob.digest, Ask::Span { start, end }, &budget)
            .await?;
        if answered == Answered::Whole {
            self.ignores_ranges();
            return Ok(self.resuming(repository, blob, budget, response));
        }
        tracing::debug!(registry = %self.host, path = %repository.path(), digest = %blob.digest, size = blob.size, ranges = spans.len(), "fetching the blob in ranges");
        let window = self.ranges.per_blob;
        let fetcher = Arc::new(Chunks {
            client: self,
            repository,
            digest: blob.digest,
            budget,
            own,
        });
        let mut first = Some((response, first_ticket));
        let chunks = futures_util::stream::iter(spans).map(move |(start, end)| {
            let (fetcher, opened) = (fetcher.clone(), first.take());
            Spawned(tokio::spawn(async move {
                fetcher.chunk(start, end, opened).await
            }))
        });
        // `buffered` keeps at most `window` chunks in flight and yields them in order.
        Ok(Box::pin(chunks.buffered(window)))
    }
}

/// What every chunk of one blob shares.
struct Chunks {
    client: Arc<RegistryClient>,
    repository: Repository,
    digest: Digest,
    /// The blob copy's one budget: every chunk's retries are tries of the copy.
    budget: Arc<Budget>,
    /// The blob's own slot (the one its transfer permit holds), lent to one range at a time.
    own: Arc<Semaphore>,
}

/// Leave for one range of a blob to be in flight at its registry, held until the range's
/// bytes are in (or it gave up): every range in flight counts against the registry's limit
/// on reads, as a whole blob does.
enum Ticket {
    /// The blob's own slot: the copy holds a read slot for the whole transfer.
    Own { _permit: OwnedSemaphorePermit },
    /// One more read slot of the registry, for one more range at once.
    Extra { _slot: OwnedSlot },
}

impl Ticket {
    /// The blob's own slot, once no other range of it holds it.
    async fn own(own: &Arc<Semaphore>) -> Ticket {
        match own.clone().acquire_owned().await {
            Ok(permit) => Ticket::Own { _permit: permit },
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// The blob's own slot when it is free, else whichever comes first: the blob's own
    /// slot given back by another range of it, or a further read slot of the registry. Never
    /// only the latter: a blob whose slot is held (by the copy, in `own`) must not wait on
    /// slots that other blobs hold while they wait on it; its own slot always comes back.
    async fn take(own: &Arc<Semaphore>, client: &RegistryClient) -> Ticket {
        if let Ok(permit) = own.clone().try_acquire_owned() {
            return Ticket::Own { _permit: permit };
        }
        let reads = client.control().transfers().reads();
        tokio::select! {
            biased;
            own = Ticket::own(own) => own,
            slot = reads.take_owned(1) => Ticket::Extra { _slot: slot },
        }
    }
}

impl Chunks {
    /// Bytes `start..end` of the blob, read from `opened` (the first chunk's answer, under
    /// the blob's own slot) or a range request of their own under a [`Ticket`]; a chunk
    /// that breaks off is asked again alone, from its byte reached, each time a try taken
    /// from the budget.
    async fn chunk(
        &self,
        start: u64,
        end: u64,
        opened: Option<(reqwest::Response, Ticket)>,
    ) -> std::io::Result<Bytes> {
        let (mut opened, _ticket) = match opened {
            Some((response, ticket)) => (Some(response), ticket),
            None => (None, Ticket::take(&self.own, &self.client).await),
        };
        let length = (end - start) as usize;
        let mut filled = BytesMut::with_capacity(length);
        let mut tries = 0u32;
        loop {
            let response = match opened.take() {
                Some(response) => response,
                None => self.open(start + filled.len() as u64, end).await?,
            };
            let why = match read_into(response, &mut filled, length, &self.client).await {
                Ok(()) => return Ok(filled.freeze()),
                Err(Broke::Permanent(why)) => return Err(fail(ErrorKind::Permanent, why)),
                Err(Broke::Transient(why)) => why,
            };
            tries += 1;
            let Some(retry) = self.budget.take() else {
                let tries = crate::plural::count_as(tries, "try", "tries");
                return Err(fail(
                    ErrorKind::Transient,
                    format!("{why} (gave up after {tries})"),
                ));
            };
            let client = &self.client;
            client.pipe.stats.retried(client.host.as_str());
            let reached = start + filled.len() as u64;
            client
                .pipe
                .policy
                .pause(retry, None, &client.pipe.stats.request_retries, None, |wait| {
                    // As a whole blob's resume says it (download.rs), and on the progress line.
                    let said = format!("a range of the blob broke off: {why}, asking it again ({})", crate::retry::next_try(retry, &self.budget, wait));
                    tracing::info!(registry = %client.host, path = %self.repository.path(), digest = %self.digest, offset = reached, end, "{said}");
                    client.pipe.stats.waiting_on(said, wait);
                })
                .await;
        }
    }

    /// A range request for bytes `start..end`.
    async fn open(&self, start: u64, end: u64) -> std::io::Result<reqwest::Response> {
        let client = &self.client;
        let ask = Ask::Span { start, end };
        match client
            .open_blob_at(&self.repository, &self.digest, ask, &self.budget)
            .await
        {
            Ok((response, Answered::Part)) => Ok(response),
            Ok((_, Answered::Whole)) => {
                // The first range was served; this one is not (a redirect host that ignores
                // `Range`). The copy's next try reads the blob as one stream.
                client.ignores_ranges();
                Err(fail(
                    ErrorKind::Transient,
                    format!(
                        "reading blob {} from {}: a range was answered with the whole blob; reading it as one stream",
                        self.digest, self.repository
                    ),
                ))
            }
            Err(e) => Err(fail(
                error_kind(&e).unwrap_or(ErrorKind::Permanent),
                format!("{e:#}"),
            )),
        }
    }
}

/// Why a chunk's answer did not fill it.
enum Broke {
    /// Cut, short, reset: ask the rest again.
    Transient(String),
    /// No retry can help (a TLS or protocol failure), or more bytes than asked.
    Permanent(String),
}

/// Reads `response` into `filled` until it holds `length` bytes.
async fn read_into(
    response: reqwest::Response,
    filled: &mut BytesMut,
    length: usize,
    client: &RegistryClient,
) -> Result<(), Broke> {
    let mut body = response.bytes_stream();
    loop {
        match body.next().await {
            Some(Ok(piece)) if filled.len() + piece.len() > length => {
                return Err(Broke::Permanent(format!(
                    "{}: a range was answered with more bytes than asked",
                    client.host
                )));
            }
            Some(Ok(piece)) => filled.extend_from_slice(&piece),
            None if filled.len() == length => return Ok(()),
            None => {
                return Err(Broke::Transient(format!(
                    "the answer to a range ended after {} of {length} bytes",
                    filled.len()
                )));
            }
            Some(Err(e)) => {
                let why = describe_http_error(&e, client.host.as_str());
                return Err(if transport_kind(&e) == ErrorKind::Transient {
                    Broke::Transient(why)
                } else {
                    Broke::Permanent(why)
                });
            }
        }
    }
}

/// An error a blob stream ends with, carrying its [`Failure`].
fn fail(kind: ErrorKind, message: String) -> std::io::Error {
    std::io::Error::other(Failure { kind, message })
}

/// A chunk fetched on a task of its own (so every chunk of the window moves while the one
/// before is handed on), aborted when the stream is dropped (the copy failed or ended).
struct Spawned(tokio::task::JoinHandle<std::io::Result<Bytes>>);

impl Future for Spawned {
    type Output = std::io::Result<Bytes>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(fail(
                    ErrorKind::Transient,
                    format!("fetching a range of a blob stopped: {e}"),
                ))
            })
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_blobs_are_cut_into_chunks_in_order() {
        let options = RangeOptions {
            threshold: 3,
            chunk: 4,
            per_blob: 2,
        };
        assert_eq!(options.spans(10), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(options.spans(8), vec![(0, 4), (4, 8)]);
        assert!(options.applies(5));
        // One chunk or less, below the threshold, or ranges disabled: one stream.
        assert!(!options.applies(4));
        assert!(!options.applies(2));
        for off in [
            RangeOptions {
                threshold: 0,
                ..options
            },
            RangeOptions {
                chunk: 0,
                ..options
            },
            RangeOptions {
                per_blob: 1,
                ..options
            },
        ] {
            assert!(!off.applies(100), "{off:?}");
        }
    }

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(parse_size("16MiB"), Ok(16 * MIB));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1024 * MIB));
        assert_eq!(parse_size("1048576"), Ok(MIB));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn a_range_is_asked_and_checked_by_its_bytes() {
        let ask = Ask::Span { start: 4, end: 8 };
        assert_eq!(ask.range().as_deref(), Some("bytes=4-7"));
        assert!(ask.answered_by(Some("bytes 4-7/10")));
        assert!(!ask.answered_by(Some("bytes 4-9/10")));
        assert!(!ask.answered_by(Some("bytes 0-7/10")));
        assert!(!ask.answered_by(None));
        assert_eq!(Ask::From(0).range(), None);
        assert_eq!(Ask::From(5).range().as_deref(), Some("bytes=5-"));
        assert!(Ask::From(5).answered_by(Some("bytes 5-9/10")));
    }
}
