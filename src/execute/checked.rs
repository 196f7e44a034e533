//! The one digest-and-size check of a blob's bytes, for every destination: the source's
//! stream is handed to the destination through [`checked`], which hashes and counts the
//! bytes as they pass and ends the stream with an error — before its last byte, so before
//! any store can commit — on more bytes than the descriptor gives, fewer, or bytes that
//! hash to another digest. The bytes count in `Stats::bytes` (the progress, the summary,
//! the JSON report and `image_mirror_sent_bytes`) as they pass, whatever the destination.
//!
//! A stream's error is an `io::Error` carrying the [`Failure`] (its kind and whole text):
//! a store recovers it with [`Failure::in_io`] where the HTTP client or a file write would
//! lose it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::model::failure::{ErrorKind, Failure};
use crate::model::manifest::BlobRef;
use crate::model::reference::{Digest, Hasher};
use crate::stats::Stats;
use crate::store::BlobStream;

/// `source`, passed on chunk by chunk while it is hashed by `blob`'s digest algorithm and
/// counted against its size; the bytes count in `stats.bytes` as they pass.
pub(super) fn checked(source: BlobStream, blob: &BlobRef, stats: Arc<Stats>) -> BlobStream {
    Box::pin(Checked {
        inner: source,
        digest: blob.digest.clone(),
        size: blob.size,
        hasher: Some(Hasher::new(blob.digest.algorithm())),
        seen: 0,
        done: false,
        stats,
    })
}

/// A stream's progress through the check.
struct Checked {
    inner: BlobStream,
    digest: Digest,
    size: u64,
    /// Taken when the digest is compared (once).
    hasher: Option<Hasher>,
    seen: u64,
    /// The stream has ended, or failed: nothing more is read.
    done: bool,
    stats: Arc<Stats>,
}

impl Checked {
    /// Ends the stream with `why`.
    fn fail(&mut self, kind: ErrorKind, message: String) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::other(Failure { kind, message }))))
    }

    /// Why the bytes hashed so far are not the digest, if they are not.
    fn mismatch(&mut self) -> Option<String> {
        let actual = self.hasher.take()?.finish();
        (actual != self.digest).then(|| {
            format!(
                "blob {}: digest mismatch, the source's bytes hash to {actual}; not committed",
                self.digest
            )
        })
    }
}

impl Stream for Checked {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let (digest, size) = (self.digest.clone(), self.size);
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > size {
                    return self.fail(
                        ErrorKind::Corrupt,
                        format!(
                            "blob {digest}: the source sent more than the {size} bytes its descriptor gives"
                        ),
                    );
                }
                if let Some(hasher) = self.hasher.as_mut() {
                    hasher.update(&chunk);
                }
                self.stats
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                // The last chunk is held back when the whole does not match: the store never
                // sees every byte of a corrupt blob.
                if self.seen == size {
                    self.done = true;
                    if let Some(why) = self.mismatch() {
                        return self.fail(ErrorKind::Corrupt, why);
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let seen = self.seen;
                let kind = Failure::in_io(&e).map_or(ErrorKind::Transient, |r| r.kind);
                self.fail(
                    kind,
                    format!("blob {digest}: reading the source failed after {seen} bytes: {e}"),
                )
            }
            Poll::Ready(None) if self.seen < size => {
                let seen = self.seen;
                self.fail(
                    ErrorKind::Transient,
                    format!("blob {digest}: the source ended after {seen} of {size} bytes"),
                )
            }
            // An empty blob yields no chunk: its digest is checked here.
            Poll::Ready(None) => match self.mismatch() {
                Some(why) => self.fail(ErrorKind::Corrupt, why),
                None => {
                    self.done = true;
                    Poll::Ready(None)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::Algorithm;
    use futures_util::StreamExt;

    /// What `checked` makes of `chunks` for a blob of `digest` and `size`: the bytes it
    /// passed on, or the failure it ended with; and the bytes it counted.
    fn verified(chunks: &[&[u8]], digest: &Digest, size: u64) -> (Result<Vec<u8>, String>, u64) {
        let source = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<std::io::Result<Bytes>>>(),
        );
        let stats = Arc::new(Stats::default());
        let blob = BlobRef {
            digest: digest.clone(),
            size,
        };
        let stream = checked(Box::pin(source), &blob, stats.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let passed: Vec<std::io::Result<Bytes>> = runtime.block_on(stream.collect());
        let counted = stats.bytes.load(Ordering::Relaxed);
        let mut bytes = Vec::new();
        for chunk in passed {
            match chunk {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => {
                    let failure = Failure::in_io(&e)
                        .map_or_else(|| format!("no failure in {e}"), |f| f.message.clone());
                    return (Err(failure), counted);
                }
            }
        }
        (Ok(bytes), counted)
    }

    #[test]
    fn streamed_blobs_are_checked_by_their_digests_algorithm_and_counted() {
        let data: &[u8] = b"layer bytes";
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let right = Digest::of_with(algorithm, data);
            assert_eq!(
                verified(&[&data[..5], &data[5..]], &right, data.len() as u64),
                (Ok(data.to_vec()), 11)
            );
            let wrong = Digest::of_with(algorithm, b"other bytes");
            let (e, _) = verified(&[data], &wrong, data.len() as u64);
            let e = e.unwrap_err();
            assert!(e.contains("digest mismatch"), "{e}");
        }
        let (e, _) = verified(&[&data[..3]], &Digest::of(data), data.len() as u64);
        let e = e.unwrap_err();
        assert!(e.contains("ended after 3 of 11 bytes"), "{e}");
        let (e, _) = verified(&[b"layer bytes!"], &Digest::of(data), data.len() as u64);
        let e = e.unwrap_err();
        assert!(e.contains("more than the 11 bytes"), "{e}");
    }

    #[test]
    fn an_empty_blob_is_checked_too() {
        assert_eq!(verified(&[], &Digest::of(b""), 0), (Ok(Vec::new()), 0));
        let (e, _) = verified(&[], &Digest::of(b"x"), 0);
        assert!(e.unwrap_err().contains("digest mismatch"));
    }
}
