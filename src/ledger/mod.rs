//! The ledger: what image-mirror wrote at each destination (tag or digest push: digest,
//! source, mapping line, first written, last confirmed, last wanted) and when it first saw
//! each selected source tag at its digest — the record `prune` trusts to delete only what
//! the mirror itself wrote.
//!
//! - [`model`]: the ledger itself, its JSON form and versions, merging writers, what a run
//!   adds, what is unwanted (pure);
//! - [`stored`]: where it lives (a registry repository, or a directory) and reading and
//!   writing it over the [`crate::store`] seam;
//! - [`prune`]: deleting what no mapping wants any more, and what is attached to it, within
//!   [`valve`] (`--max-prune`).

pub mod model;
pub mod prune;
pub mod stored;
pub mod valve;

pub use model::{Ledger, Stamp};
pub use stored::{Location, Writer};
