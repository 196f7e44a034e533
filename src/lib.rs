//! image-mirror: mirror container images between registries from `oc image mirror` mapping
//! files.
//!
//! The pipeline, one module per stage: [`inputs`] finds and parses mapping files ([`mapping`],
//! [`reference`]); `run` expands wildcards, plans batches per destination repository, and
//! copies through the registry client.

pub mod check;
pub mod cli;
pub mod diagnostics;
pub mod inputs;
pub mod mapping;
pub mod reference;
