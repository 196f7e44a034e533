//! The idle limit of a request that streams a blob's bytes to the registry (an upload's
//! `PUT` or `PATCH`): it fails when the registry takes no byte for `--read-timeout`, or
//! gives no answer that long after the last one, however long the whole upload takes.
//!
//! The HTTP client's own read timeout cannot be that: it runs from the moment a request is
//! sent until its answer's first byte, so an upload longer than it (a layer of several GiB
//! over a slow path) would fail while every byte moves. Streaming requests go out on a
//! connection without it, and [`Activity`] watches their body instead: each time the
//! client asks the body for more (the registry took what went before) is activity, and
//! so is waiting for the source, which has its own read timeout; what is left is the
//! registry taking nothing, or not answering once it has everything.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::Stream;

/// What an upload's body last did.
#[derive(Debug, Clone)]
pub struct Activity {
    last: Arc<Mutex<Moment>>,
}

#[derive(Debug, Clone, Copy)]
struct Moment {
    at: Instant,
    /// The body waits for its source's bytes: the registry is not the one keeping it.
    waiting_on_source: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last: Arc::new(Mutex::new(Moment {
                at: Instant::now(),
                waiting_on_source: false,
            })),
        }
    }
}

impl Activity {
    fn note(&self, waiting_on_source: bool) {
        if let Ok(mut last) = self.last.lock() {
            *last = Moment {
                at: Instant::now(),
                waiting_on_source,
            };
        }
    }

    /// The request is sent now: its idle time counts from here.
    pub fn started(&self) {
        self.note(false);
    }

    /// `body` as the request sends it, each poll of it noted.
    pub fn watch<S>(&self, body: S) -> Watched<S> {
        Watched {
            inner: body,
            activity: self.clone(),
        }
    }

    /// How long the registry has kept the request idle at `now`: zero while the body
    /// waits for its source.
    fn idle(&self, now: Instant) -> Duration {
        self.last
            .lock()
            .map(|m| {
                if m.waiting_on_source {
                    Duration::ZERO
                } else {
                    now.saturating_duration_since(m.at)
                }
            })
            .unwrap_or_default()
    }

    /// Resolves once the registry has kept the request idle for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let idle = self.idle(Instant::now());
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// A body whose polls are noted in an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: Stream + Unpin> Stream for Watched<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        self.activity.note(next.is_pending());
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_the_registrys_time_only() {
        let activity = Activity::default();
        let start = Instant::now();
        activity.note(false);
        let later = Instant::now() + Duration::from_secs(3);
        assert!(activity.idle(later) >= Duration::from_secs(3));
        // Waiting on the source: the source's own read timeout judges that.
        activity.note(true);
        assert_eq!(activity.idle(later), Duration::ZERO);
        activity.note(false);
        assert!(activity.idle(start + Duration::from_secs(100)) > Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_polled_again_is_not_idle() {
        use futures_util::StreamExt;
        let activity = Activity::default();
        activity.started();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u8>();
        let source =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
            );
        let mut body = activity.watch(Box::pin(source));
        // The body waits for its source (a pending poll): however long, not idle.
        assert!(futures_util::poll!(body.next()).is_pending());
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            activity.idle_for(Duration::from_secs(2)),
        )
        .await;
        assert!(waited.is_err(), "idle while waiting on the source");
        // A byte handed over, then nobody asks for more: idle after the limit.
        let _ = tx.send(1);
        assert_eq!(body.next().await, Some(1));
        let waited = tokio::time::timeout(
            Duration::from_secs(3),
            activity.idle_for(Duration::from_secs(2)),
        )
        .await;
        assert!(waited.is_ok(), "a body nobody polls is idle");
    }
}
