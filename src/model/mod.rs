//! Pure data every stage shares: image references, manifests, the images a plan names,
//! diagnostics tied to `file:line:column`, and the kinds of failure. Depends on nothing else
//! in the crate; does no I/O.

pub mod attached;
pub mod diagnostics;
pub mod digest;
pub mod failure;
pub mod image;
pub mod intern;
pub mod manifest;
pub mod names;
pub mod parse;
pub mod reference;
pub mod repo_pattern;
pub mod rules;
pub mod short_text;
