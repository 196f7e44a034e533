//! The registry client behind the copy algorithm's seam: each [`Source`] and
//! [`Destination`] method is one resource call of [`RegistryClient`].

use std::sync::Arc;

use anyhow::Result;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::Registries;
use super::client::RegistryClient;
use super::control::ration::for_one_image;
use crate::model::attached::Referrer;
use crate::model::manifest::{BlobRef, Manifest};
use crate::model::reference::{Digest, ManifestRef, Repository};
use crate::retry::Budget;
use crate::store::{
    BlobStream, Deleted, Destination, Mount, OpenBlob, Slots, Source, Stores, UploadSession,
};

impl Source for RegistryClient {
    fn name(&self) -> &str {
        self.host.as_str()
    }

    fn slots(&self) -> &Slots {
        self.control().transfers().reads()
    }

    fn prepare(&self) -> BoxFuture<'_, ()> {
        self.warm_up().boxed()
    }

    fn ration<'a>(&'a self, copy: BoxFuture<'a, ()>) -> BoxFuture<'a, ()> {
        for_one_image(copy).boxed()
    }

    fn manifest_digest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Option<Digest>>> {
        RegistryClient::manifest_digest(self, repository, reference).boxed()
    }

    fn manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Manifest>> {
        self.pull_manifest(repository, reference).boxed()
    }

    fn open_blob(
        self: Arc<Self>,
        repository: Repository,
        blob: BlobRef,
        budget: Arc<Budget>,
    ) -> BoxFuture<'static, Result<BlobStream>> {
        self.pull_blob(repository, blob, budget).boxed()
    }

    fn tags<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Vec<String>>> {
        self.list_tags(repository).boxed()
    }

    fn held_tags<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>>> {
        RegistryClient::held_tags(self, repository).boxed()
    }

    fn blob_exists<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<bool>> {
        RegistryClient::blob_exists(self, repository, digest).boxed()
    }

    fn referrers<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<Vec<Referrer>>>> {
        self.list_referrers(repository, digest).boxed()
    }
}

impl Destination for RegistryClient {
    fn write_slots(&self) -> &Slots {
        self.control().transfers().writes()
    }

    fn open_session<'a>(
        &'a self,
        repository: &'a Repository,
        budget: &'a Budget,
    ) -> BoxFuture<'a, Result<Option<UploadSession>>> {
        async move { Ok(Some(self.upload_session(repository, budget).await?)) }.boxed()
    }

    fn mount<'a>(
        &'a self,
        repository: &'a Repository,
        from: &'a Repository,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Mount>> {
        self.mount_blob(repository, from, digest).boxed()
    }

    fn cancel_session<'a>(
        &'a self,
        repository: &'a Repository,
        session: UploadSession,
    ) -> BoxFuture<'a, ()> {
        RegistryClient::cancel_session(self, repository, session).boxed()
    }

    fn upload<'a>(
        &'a self,
        repository: &'a Repository,
        blob: &'a BlobRef,
        session: Option<UploadSession>,
        open: OpenBlob<'a>,
        budget: &'a Budget,
    ) -> BoxFuture<'a, Result<()>> {
        self.push_blob(repository, blob, session, open, budget)
            .boxed()
    }

    fn put_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
        manifest: &'a Manifest,
    ) -> BoxFuture<'a, Result<()>> {
        self.push_manifest(repository, reference, manifest).boxed()
    }

    fn delete_manifest<'a>(
        &'a self,
        repository: &'a Repository,
        reference: &'a ManifestRef,
    ) -> BoxFuture<'a, Result<Deleted>> {
        RegistryClient::delete_manifest(self, repository, reference).boxed()
    }
}

impl Stores for Registries {
    fn source<'a>(&'a self, repository: &'a Repository) -> BoxFuture<'a, Result<Arc<dyn Source>>> {
        async move {
            let client: Arc<dyn Source> = self.client(repository.registry()).await?;
            Ok(client)
        }
        .boxed()
    }

    fn destination<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> BoxFuture<'a, Result<Arc<dyn Destination>>> {
        async move {
            let client: Arc<dyn Destination> = self.client(repository.registry()).await?;
            Ok(client)
        }
        .boxed()
    }
}
