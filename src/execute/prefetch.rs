//! Work started before the plan needs it, so that its round trips overlap with listing the
//! sources rather than follow it: every store's connections, and what each destination
//! repository holds. Over a 20 ms link an unchanged run is mostly waiting: these are the
//! waits that can be taken together.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Executor;
use crate::model::reference::Repository;

impl Executor {
    /// Opens the stores of `sources` and `destinations` and lists what each destination
    /// repository holds, in the background; the copies that need an answer wait for it
    /// (see [`Executor::held_tags`]). Reads only, in a dry run too.
    pub fn prefetch(
        self: &Arc<Self>,
        sources: BTreeSet<Repository>,
        destinations: BTreeSet<Repository>,
    ) {
        // One per registry: a store is opened once however many repositories it holds.
        let mut opened = std::collections::HashSet::new();
        let one_per_registry = sources
            .into_iter()
            .filter(|r| opened.insert(r.registry().clone()));
        for repository in one_per_registry {
            let executor = self.clone();
            tokio::spawn(async move {
                if let Ok(src) = executor.stores.source(&repository).await {
                    src.prepare().await;
                }
            });
        }
        if self.options.force {
            // --force asks the destination nothing.
            return;
        }
        for repository in destinations {
            let executor = self.clone();
            tokio::spawn(async move {
                if let Ok(dst) = executor.stores.destination(&repository).await {
                    dst.prepare().await;
                    executor.held_tags(dst.as_ref(), &repository).await;
                }
            });
        }
    }
}
