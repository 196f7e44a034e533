//! The big blobs moving now, for the progress display: a multi-GiB layer takes minutes, and
//! a log (a CronJob's) or a terminal should show it advancing rather than a silence. A
//! store follows each big blob it reads ([`Moving::follow`]) and counts its bytes as they
//! are handed on; the blob leaves the list when its stream ends or is dropped (copied,
//! failed, or started again). Nothing here knows what a registry or a URL is: a blob is
//! named by its store, repository and short digest, never by where its bytes come from. A
//! leaf: depends on nothing of the crate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The big blobs being read now.
#[derive(Debug, Default)]
pub struct Moving {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: AtomicU64,
    blobs: Mutex<BTreeMap<u64, Arc<Blob>>>,
}

/// One big blob being read.
#[derive(Debug)]
pub struct Blob {
    /// Stable while the blob moves: tells one reading from the next (a blob started again
    /// is a new one).
    pub id: u64,
    /// Its store (a registry's `host[:port]`) and repository path.
    pub store: String,
    pub repository: String,
    /// `sha256:` and the first 12 hex digits.
    pub short_digest: String,
    pub size: u64,
    pub started: Instant,
    done: AtomicU64,
}

impl Blob {
    /// Bytes handed on so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Where it is read from, as a log line names it: `host/path`.
    pub fn place(&self) -> String {
        format!("{}/{}", self.store, self.repository)
    }
}

/// A blob followed until this is dropped.
#[derive(Debug)]
pub struct Following {
    blob: Arc<Blob>,
    inner: Arc<Inner>,
}

impl Following {
    /// `bytes` more handed on; whether every byte of the blob has been.
    pub fn advance(&self, bytes: u64) -> bool {
        self.blob.done.fetch_add(bytes, Ordering::Relaxed) + bytes >= self.blob.size
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Ok(mut blobs) = self.inner.blobs.lock() {
            blobs.remove(&self.blob.id);
        }
    }
}

impl Moving {
    /// Follows a blob of `size` bytes from `repository` of `store` until the returned
    /// handle is dropped. `digest` is shortened here.
    pub fn follow(&self, store: &str, repository: &str, digest: &str, size: u64) -> Following {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let blob = Arc::new(Blob {
            id,
            store: store.to_owned(),
            repository: repository.to_owned(),
            short_digest: crate::model::digest::short_digest(digest).to_owned(),
            size,
            started: Instant::now(),
            done: AtomicU64::new(0),
        });
        if let Ok(mut blobs) = self.inner.blobs.lock() {
            blobs.insert(id, blob.clone());
        }
        Following {
            blob,
            inner: self.inner.clone(),
        }
    }

    /// The blobs moving now, oldest first.
    pub fn now(&self) -> Vec<Arc<Blob>> {
        self.inner
            .blobs
            .lock()
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_followed_until_its_handle_is_dropped() {
        let moving = Moving::default();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let first = moving.follow("r.io", "team/app", &digest, 100);
        let second = moving.follow("r.io", "team/app", &digest, 50);
        assert!(!first.advance(30));
        assert!(!first.advance(12));
        let now = moving.now();
        assert_eq!(now.len(), 2);
        assert_eq!(now[0].short_digest, "sha256:abababababab");
        assert_eq!((now[0].done(), now[0].size), (42, 100));
        assert_eq!(now[0].place(), "r.io/team/app");
        drop(first);
        let now = moving.now();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].size, 50);
        assert!(second.advance(50));
        drop(second);
        assert!(moving.now().is_empty());
    }
}
