//! image-mirror: mirror container images between registries from `oc image mirror` mapping
//! files.
//!
//! One pipeline, data flowing one way, each layer using only those listed before it:
//!
//! - [`plural`], [`duration`], [`redact`], [`stats`], [`model`]: counts and durations in words, secrets out of outside
//!   text, counters and pure data (references, manifests, diagnostics,
//!   kinds of failure);
//! - [`inputs`]: mapping files found and parsed (pure but for reading the files);
//! - [`policy`]: `--policy`, a containers-policy.json and cosign signature checks (pure
//!   but for reading its key files);
//! - [`plan`]: wildcards expanded, copies batched per destination repository, shards (pure);
//! - [`retry`]: the one retry policy; [`concurrency`]: how many transfers a registry gets at
//!   once, from what its answers show; [`limiter`]: a store's adaptive limit on work in
//!   flight; [`store`]: the seam between copying and storage;
//!   [`ends`]: a copy's (or a comparison's) source and destination repositories;
//!   [`memo`]: work done once however many callers need it;
//! - [`registry`]: the registry client, the only code that speaks HTTP to registries;
//!   [`disk`]: directories (oc's `file://` layout, OCI layouts) behind the same seam;
//! - [`report`]: the outcome model and its views (text, JSON, JUnit, metrics, progress);
//! - [`attachments`]: what is attached to an image, found at its source over the [`store`]
//!   seam (one walk, which `run` and `verify` both use);
//! - [`execute`]: the copy algorithm, over the [`store`] seam;
//! - [`ledger`]: what the mirror wrote (kept in a registry or a directory over the
//!   [`store`] seam) and `prune`, which deletes what no mapping wants any more;
//! - [`audit`]: `verify`'s read-only checks over the same seam (a plan against its sources,
//!   or every tag of a repository);
//! - [`commands`]: `check`, `run`, `verify`, `import` — the glue.

pub mod attachments;
pub mod audit;
pub mod commands;
pub mod concurrency;
pub mod disk;
pub mod duration;
pub mod ends;
pub mod execute;
pub mod inputs;
pub mod ledger;
pub mod limiter;
pub mod memo;
pub mod model;
pub mod moving;
pub mod plan;
pub mod plural;
pub mod policy;
pub mod redact;
pub mod registry;
pub mod report;
pub mod retry;
pub mod stats;
pub mod store;
