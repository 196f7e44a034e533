//! image-mirror: mirror container images between registries from `oc image mirror` mapping
//! files.
//!
//! The pipeline, one module per stage: [`inputs`] finds and parses mapping files ([`mapping`],
//! [`reference`]); [`plan`] expands wildcards into batches per destination repository;
//! [`execute`] copies through [`registry`], the only module that speaks to registries;
//! [`report`] and [`progress`] tell the operator what happened.

pub mod auth;
pub mod check;
pub mod cli;
pub mod credentials;
pub mod diagnostics;
pub mod execute;
pub mod inputs;
pub mod manifest;
pub mod mapping;
pub mod plan;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod report;
pub mod run;
pub mod verify;
