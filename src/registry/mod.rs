//! The registry client: the OCI distribution protocol over reqwest, built bottom-up.
//!
//! - [`tls`]: the crypto provider, certs.d CA and client certificates, the HTTP client;
//! - [`error`]: what a status or a transport error means (its [`ErrorKind`]), the
//!   registry's own words, `Retry-After`;
//! - [`control`]: one controller per registry, asked before every request leaves and told
//!   its answer (limits on requests in flight; pacing and quota to come);
//! - [`pipeline`]: a request as data and the one `send` every request goes through
//!   (admission, credentials, counting, re-authentication on 401, the classification of
//!   the answer, retries within a budget);
//! - [`auth`]: challenges, credentials (auth files and helpers), scoped tokens;
//! - [`client`]: one client per registry: its pipeline, credentials and tokens;
//! - one file per resource: [`tags`], [`manifests`], [`blobs`], [`catalog`]; and
//!   [`listers`] for the registries whose repositories are listed by another API;
//! - [`store`]: the client as a [`crate::store::Source`] and [`crate::store::Destination`].
//!
//! The wire protocol is ours rather than oci-client's: a mirror needs the response headers
//! (`Retry-After`, `Docker-Content-Digest`, `Link`, `Location`), `Range` to resume a
//! download, and retries inside the request, which oci-client does not give.
//!
//! Failures carry an [`ErrorKind`]: transient ones (refused or reset connections, timeouts,
//! 408/429/5xx) are retried inside the request (see [`crate::retry::drive`]); the others fail at
//! once with the registry's own words.
//!
//! [`ErrorKind`]: crate::model::failure::ErrorKind

pub mod auth;
pub mod blobs;
pub mod catalog;
pub mod client;
pub mod control;
pub mod error;
pub mod listers;
pub mod manifests;
pub mod pipeline;
pub mod referrers;
pub mod store;
pub mod tags;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::OnceCell;

use self::auth::credentials::Credentials;
use self::client::RegistryClient;
use crate::concurrency::Limit;
use crate::model::reference::Host;
use crate::retry::RetryPolicy;
use crate::stats::Stats;

/// Request-level retries and timeouts, shared by every registry client.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Tries of one request (or of one blob copy) before a transient failure counts.
    pub request_attempts: u32,
    /// The longest wait between two tries, `Retry-After` included.
    pub max_retry_wait: Duration,
    pub connect_timeout: Duration,
    /// The longest a connection may stay silent while an answer is awaited or read.
    pub read_timeout: Duration,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            request_attempts: 5,
            max_retry_wait: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
        }
    }
}

impl NetworkOptions {
    /// The policy of one request, or of one blob copy.
    pub fn request_policy(&self) -> RetryPolicy {
        RetryPolicy::requests(self.request_attempts, self.max_retry_wait)
    }
}

/// Settings shared by every registry client.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP and unverified TLS allowed for every registry.
    pub insecure: bool,
    /// The same, for these registries only (`host[:port]`, as written in references).
    pub insecure_registries: Vec<String>,
    /// Blob transfers in flight to one registry in each direction: adaptive by default,
    /// `--max-per-registry N` fixes the most.
    pub transfers: Limit,
    /// Checks, reads and lists in flight to one registry.
    pub max_checks_per_registry: usize,
    /// This shard's part of each registry's pull quota (`--shard I/N`); `None`: all of it.
    pub quota_share: Option<control::quota::Share>,
    /// Big blobs fetched as parallel byte ranges.
    pub ranges: blobs::ranged::RangeOptions,
}

impl RegistryOptions {
    fn insecure_for(&self, host: &Host) -> bool {
        self.insecure
            || self
                .insecure_registries
                .iter()
                .map(|r| r.trim().trim_end_matches('/').to_ascii_lowercase())
                .any(|r| r == host.as_str() || r == host.api_host())
    }
}

/// The clients of one run, created on first use.
pub struct Registries {
    options: RegistryOptions,
    network: NetworkOptions,
    credentials: Credentials,
    /// One cell per host: its client once connected.
    clients: std::sync::Mutex<HashMap<Host, Arc<OnceCell<Arc<RegistryClient>>>>>,
    pub stats: Arc<Stats>,
}

impl Registries {
    pub fn new(
        options: RegistryOptions,
        network: NetworkOptions,
        credentials: Credentials,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            options,
            network,
            credentials,
            clients: std::sync::Mutex::default(),
            stats,
        }
    }

    /// What each registry's pull quota had left, for those that published one or refused
    /// a manifest GET with a quota 429; sorted by registry.
    pub fn quotas(&self) -> Vec<(String, control::quota::QuotaState)> {
        let cells: Vec<(Host, Arc<OnceCell<Arc<RegistryClient>>>)> = match self.clients.lock() {
            Ok(clients) => clients
                .iter()
                .map(|(h, c)| (h.clone(), c.clone()))
                .collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(h, c)| (h.clone(), c.clone()))
                .collect(),
        };
        let mut out: Vec<(String, control::quota::QuotaState)> = cells
            .iter()
            .filter_map(|(host, cell)| {
                let state = cell.get()?.control().rationing().state()?;
                Some((host.to_string(), state))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The client for `host`, connected once: concurrent askers for one host wait for the
    /// one connection (its credential helper, its scheme probe), askers for other hosts do
    /// not. A connection that failed is tried again by the next asker.
    pub async fn client(&self, host: &Host) -> Result<Arc<RegistryClient>> {
        let cell = match self.clients.lock() {
            Ok(mut clients) => clients.entry(host.clone()).or_default().clone(),
            Err(poisoned) => poisoned
                .into_inner()
                .entry(host.clone())
                .or_default()
                .clone(),
        };
        cell.get_or_try_init(|| self.connect(host)).await.cloned()
    }

    async fn connect(&self, host: &Host) -> Result<Arc<RegistryClient>> {
        // A credential helper is a blocking process: run it (once; the answer is cached)
        // off the async threads. Usually `Credentials::resolve_all` already did.
        let credentials = self.credentials.clone();
        let owned = host.as_str().to_owned();
        tokio::task::spawn_blocking(move || credentials.helper_for_host(&owned))
            .await
            .map_err(|e| anyhow!("credential helper for {host}: {e}"))??;
        Ok(Arc::new(
            RegistryClient::connect(
                host,
                self.credentials.clone(),
                &self.options,
                &self.network,
                self.stats.clone(),
            )
            .await?,
        ))
    }
}
