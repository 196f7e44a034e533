//! The controller of one registry: what decides when a request may leave, and what learns
//! from its answer. The request pipeline ([`super::pipeline`]) calls exactly two hooks for
//! every request: [`Controller::admit`] before it is sent, [`Controller::observe`] after
//! its answer (or its transport failure).
//!
//! Today it holds adaptive limits on requests in flight (see [`crate::limiter::Slots`]):
//! for what loads the registry (transfers and writes), one per direction, which follow the
//! round trip and the registry's refusals ([`transfers`]; `--max-per-registry` their
//! ceiling), and one for what costs it little (checks, manifest reads, lists, tokens,
//! `--max-checks-per-registry`), which a `429` halves and a run of other answers raises
//! again. Pacing (a token bucket) and a published pull quota belong here too: `admit` may
//! then refuse a request with an error that must not be retried ([`Refused`]).
//!
//! Depends on [`crate::limiter`] and [`crate::model`] only; knows nothing of how a request
//! is built.

pub mod pace;
pub mod published;
pub mod quota;
pub mod ration;
pub mod throttle;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use self::quota::{Account, Share};
use self::ration::Rationing;
use self::transfers::Transfers;
use crate::concurrency::Limit;
use crate::limiter::{Slot, Slots};
use crate::model::failure::ErrorKind;

pub mod transfers;

/// What a request costs the registry, which decides what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CostClass {
    /// Cheap and answered at once: a HEAD, a tag, catalog or referrers list, a token, the
    /// first contact, an upload session opened ahead of its transfer.
    Check,
    /// A manifest GET: what Docker Hub's pull quota counts (a HEAD does not).
    ManifestGet,
    /// A blob body, its resumes and ranged parts, an upload's PUT/PATCH parts and the
    /// session it opens: sent under the [`crate::store::TransferPermit`] the transfer holds
    /// for all its requests, so admitting one waits for nothing more.
    Transfer,
    /// A manifest PUT, a cross-repository mount: it loads the registry like a transfer.
    Write,
}

/// What the controller sees of an answer.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The status, when an answer came.
    pub status: Option<StatusCode>,
    /// Its headers (rate-limit and quota fields live there).
    pub headers: Option<&'a HeaderMap>,
    /// From sending to the status line (the time to first byte).
    pub elapsed: Duration,
    /// The kind of the transport failure, when no answer came.
    pub failed: Option<ErrorKind>,
    /// The request carried a blob's bytes: `elapsed` is then the upload's time, not a
    /// round trip.
    pub uploaded: bool,
}

/// A request the controller will not let leave now (a pull quota spent): the pipeline
/// returns it as the request's failure, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: ErrorKind,
    pub message: String,
}

/// Leave to send one request, given back when the request's answer is in (dropped).
#[must_use = "the request may leave while the admission is held"]
pub struct Admission<'a> {
    _slot: Option<Slot<'a>>,
}

/// One registry's controller, held by its client.
pub struct Controller {
    /// For messages.
    registry: String,
    /// Transfers and writes in flight, one adaptive limit per direction
    /// (`--max-per-registry` their ceiling when given, oc's meaning).
    transfers: Transfers,
    /// Checks, manifest reads, lists in flight (`--max-checks-per-registry`): an unchanged
    /// run is nothing but these, and its wall time is their round trips, which many in
    /// flight hide.
    checks: Slots,
    /// The registry's pace and pull quota (see [`ration`]).
    rationing: Rationing,
}

impl Controller {
    pub fn new(registry: &str, transfers: Limit, max_checks: usize) -> Controller {
        Controller {
            registry: registry.to_owned(),
            transfers: Transfers::new(transfers),
            checks: Slots::new(max_checks),
            rationing: Rationing::new(registry, Share::WHOLE),
        }
    }

    /// The same, for a shard that shares the registry's pull quota with its siblings.
    pub fn shared(mut self, share: Share) -> Controller {
        self.rationing = Rationing::new(&self.registry, share);
        self
    }

    /// The registry's pace and pull quota.
    pub fn rationing(&self) -> &Rationing {
        &self.rationing
    }

    /// The limits transfers take their slots from, across all their requests (the copy
    /// algorithm holds them over the [`crate::store`] seam): reads and writes.
    pub fn transfers(&self) -> &Transfers {
        &self.transfers
    }

    /// Waits until a request of `class`, sent for `account`, may leave. A transfer's
    /// requests wait for nothing: their transfer holds its slot already.
    pub async fn admit(
        &self,
        class: CostClass,
        account: &Account,
    ) -> Result<Admission<'_>, Refused> {
        let slot = match class {
            CostClass::Check | CostClass::ManifestGet => Some(self.checks.take(1).await),
            CostClass::Write => Some(self.transfers.writes().take(1).await),
            CostClass::Transfer => None,
        };
        // A manifest GET takes from the pull quota once it holds its slot, just before it
        // leaves: GETs queued for a slot were not sent, and must not count as if they were.
        if class == CostClass::ManifestGet {
            self.rationing
                .admit_manifest_get(account)
                .map_err(|deferral| Refused {
                    kind: ErrorKind::Deferred,
                    message: deferral.to_string(),
                })?;
        }
        // Paced once it holds its slot, so that the bucket spaces what is actually sent.
        self.rationing.pace().await;
        Ok(Admission { _slot: slot })
    }

    /// Learns from an answer: the pull quota and the pace from its status and headers (see
    /// [`Rationing`]); the transfers' limits from every answer and reset (see
    /// [`Transfers`]); the checks' limit halves on a `429` and a run of other answers raises
    /// it again (see [`Slots`]); each change is logged once.
    pub fn observe(&self, class: CostClass, account: &Account, observed: &Observed<'_>) {
        self.rationing.observe(
            account,
            class == CostClass::ManifestGet,
            observed.status,
            observed.headers,
        );
        let registry = self.registry.as_str();
        self.transfers.observe(registry, class, observed);
        let Some(status) = observed.status else {
            return;
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            if let Some(limit) = self.checks.throttled() {
                tracing::warn!(
                    registry,
                    limit,
                    "the registry answers 429: fewer checks at once"
                );
            }
        } else if let Some(limit) = self.checks.succeeded() {
            tracing::info!(registry, limit, "more checks at once again");
        }
    }
}
