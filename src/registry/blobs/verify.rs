//! The digest check of a blob's bytes as they stream from source to destination: more
//! bytes than the descriptor gives, fewer, or bytes that hash to another digest end the
//! stream with an error before the upload can commit. Whatever failed is also left in a
//! shared slot, because the HTTP client reports a body that failed without its cause.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::model::failure::{ErrorKind, Failure};
use crate::model::reference::{Digest, Hasher};
use crate::stats::Stats;

/// A stream's progress through the check.
struct VerifyState<S> {
    inner: std::pin::Pin<Box<S>>,
    hasher: Option<Hasher>,
    seen: u64,
    done: bool,
}

/// `source`, passed on chunk by chunk while it is hashed by `digest`'s algorithm and counted
/// against `size`; the bytes count in `stats.bytes` as they pass.
pub(super) fn verify_stream<S>(
    source: S,
    digest: Digest,
    size: u64,
    failure: Arc<std::sync::Mutex<Option<Failure>>>,
    stats: Arc<Stats>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let state = VerifyState {
        inner: Box::pin(source),
        hasher: Some(Hasher::new(digest.algorithm())),
        seen: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut st| {
        let digest = digest.clone();
        let failure = failure.clone();
        let stats = stats.clone();
        async move {
            if st.done {
                return None;
            }
            let fail = |st: VerifyState<S>, kind: ErrorKind, why: String| {
                if let Ok(mut f) = failure.lock() {
                    *f = Some(Failure {
                        kind,
                        message: why.clone(),
                    });
                }
                let mut st = st;
                st.done = true;
                Some((Err(std::io::Error::other(why)), st))
            };
            match st.inner.next().await {
                Some(Ok(chunk)) => {
                    st.seen += chunk.len() as u64;
                    if st.seen > size {
                        return fail(
                            st,
                            ErrorKind::Corrupt,
                            format!(
                                "blob {digest}: the source sent more than the {size} bytes its descriptor gives"
                            ),
                        );
                    }
                    if let Some(hasher) = st.hasher.as_mut() {
                        hasher.update(&chunk);
                    }
                    stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if st.seen == size {
                        st.done = true;
                        if let Some(why) = mismatch(&mut st.hasher, &digest) {
                            return fail(st, ErrorKind::Corrupt, why);
                        }
                    }
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => {
                    let seen = st.seen;
                    let kind = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<Failure>())
                        .map_or(ErrorKind::Transient, |r| r.kind);
                    fail(
                        st,
                        kind,
                        format!("blob {digest}: reading the source failed after {seen} bytes: {e}"),
                    )
                }
                None if st.seen < size => {
                    let seen = st.seen;
                    fail(
                        st,
                        ErrorKind::Transient,
                        format!("blob {digest}: the source ended after {seen} of {size} bytes"),
                    )
                }
                // An empty blob yields no chunk: its digest is checked here.
                None => match mismatch(&mut st.hasher, &digest) {
                    Some(why) => fail(st, ErrorKind::Corrupt, why),
                    None => None,
                },
            }
        }
    })
}

/// Why the bytes hashed so far are not `digest`, if they are not (once: the hasher is
/// taken).
fn mismatch(hasher: &mut Option<Hasher>, digest: &Digest) -> Option<String> {
    let actual = hasher.take()?.finish();
    (actual != *digest).then(|| {
        format!(
            "blob {digest}: digest mismatch, the source's bytes hash to {actual}; not committed"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::Algorithm;

    /// What `verify_stream` makes of `chunks` for a blob of `digest` and `size`: the bytes
    /// it passed on, or the failure it recorded.
    fn verified(chunks: &[&[u8]], digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
        let source = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<std::io::Result<Bytes>>>(),
        );
        let failed = Arc::new(std::sync::Mutex::new(None));
        let stream = verify_stream(source, digest.clone(), size, failed.clone(), Arc::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let passed: Vec<std::io::Result<Bytes>> = runtime.block_on(stream.collect());
        if let Some(failure) = failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(failure.message);
        }
        Ok(passed
            .into_iter()
            .flat_map(|c| c.map(|b| b.to_vec()).unwrap_or_default())
            .collect())
    }

    #[test]
    fn streamed_blobs_are_checked_by_their_digests_algorithm() {
        let data: &[u8] = b"layer bytes";
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let right = Digest::of_with(algorithm, data);
            assert_eq!(
                verified(&[&data[..5], &data[5..]], &right, data.len() as u64),
                Ok(data.to_vec())
            );
            let wrong = Digest::of_with(algorithm, b"other bytes");
            let e = verified(&[data], &wrong, data.len() as u64).unwrap_err();
            assert!(e.contains("digest mismatch"), "{e}");
        }
        let e = verified(&[&data[..3]], &Digest::of(data), data.len() as u64).unwrap_err();
        assert!(e.contains("ended after 3 of 11 bytes"), "{e}");
    }

    #[test]
    fn an_empty_blob_is_checked_too() {
        assert_eq!(verified(&[], &Digest::of(b""), 0), Ok(Vec::new()));
        let e = verified(&[], &Digest::of(b"x"), 0).unwrap_err();
        assert!(e.contains("digest mismatch"), "{e}");
    }
}
