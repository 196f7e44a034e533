//! Where a blob body's failure is kept: the copy hands over the source's bytes already
//! checked against their digest and size (see `execute::checked`), and a stream that fails
//! the check ends with an error carrying the [`Failure`]. The HTTP client reports a body
//! that failed without its cause, so [`watch_failure`] leaves it in a shared slot for the
//! upload to report.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::model::failure::{ErrorKind, Failure};

/// Where a body's failure is left.
pub(super) type FailureSlot = Arc<std::sync::Mutex<Option<Failure>>>;

/// `source` passed on as it is; the first error that ends it is also left in `slot` (its
/// [`Failure`], or a transient one in the error's words).
pub(super) fn watch_failure<S>(
    source: S,
    slot: FailureSlot,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    source.map(move |item| {
        if let Err(e) = &item
            && let Ok(mut kept) = slot.lock()
            && kept.is_none()
        {
            *kept = Some(Failure::in_io(e).cloned().unwrap_or_else(|| Failure {
                kind: ErrorKind::Transient,
                message: format!("reading the blob's source failed: {e}"),
            }));
        }
        item
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_that_ends_a_body_is_kept_in_its_own_words() {
        let why = Failure {
            kind: ErrorKind::Corrupt,
            message: "blob x: digest mismatch".to_owned(),
        };
        let chunks: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other(why.clone())),
        ];
        let slot = FailureSlot::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let passed: Vec<_> = runtime
            .block_on(watch_failure(futures_util::stream::iter(chunks), slot.clone()).collect());
        assert_eq!(passed.len(), 2);
        assert_eq!(slot.lock().ok().and_then(|mut s| s.take()), Some(why));
    }
}
