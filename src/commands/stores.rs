//! The stores of a run: registries and directories side by side, each repository sent to
//! the one it names. Glue only: [`crate::registry`] and [`crate::disk`] do the work.

use std::sync::Arc;

use anyhow::Result;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::disk::DiskStores;
use crate::model::reference::Repository;
use crate::registry::Registries;
use crate::store::{Destination, Source, Stores};

pub struct AnyStores {
    pub registries: Arc<Registries>,
    pub disk: DiskStores,
}

impl Stores for AnyStores {
    fn source<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Arc<dyn Source>>> {
        if repository.on_disk() {
            let store = self.disk.source(repository);
            async move {
                let store: Arc<dyn Source> = store?;
                Ok(store)
            }
            .boxed()
        } else {
            self.registries.source(repository)
        }
    }

    fn destination<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Arc<dyn Destination>>> {
        if repository.on_disk() {
            let store = self.disk.destination(repository);
            async move {
                let store: Arc<dyn Destination> = store?;
                Ok(store)
            }
            .boxed()
        } else {
            self.registries.destination(repository)
        }
    }
}
