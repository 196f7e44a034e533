//! Integration-test harness: real `docker-registry` processes (CNCF distribution 2.8.2,
//! Debian package `docker-registry`) plus helpers that seed real, valid images into them.
//!
//! Declared once by `tests/tests.rs`; every test module uses it as `crate::support`.
//! Everything here is blocking (ureq, no async).
//!
//! * [`Registry::start`] starts one registry on a free 127.0.0.1 port with a private temporary
//!   filesystem storage, plain HTTP, deletes enabled (`registry.rs`: the process, its
//!   configuration, the harness's own HTTP client).
//! * The registry's access log (one Combined-Log-Format line per served HTTP request, on its
//!   stdout) is written to `access.log` in the temp dir; its JSON application log (stderr) to
//!   `registry.log`. [`Registry::requests`] parses the access log (`access_log.rs`).
//! * Requests made by this harness carry the user agent [`HARNESS_USER_AGENT`]; see
//!   [`Request::is_harness`] to tell them apart from the tool under test.
//! * The registry API as the harness speaks it: `api.rs`; media types and digests: `media.rs`.
//! * The seeding helpers (`seed_*`, `seed.rs`) build deterministic images: same arguments,
//!   same digests.
//! * Running the binary and reading what it wrote: `cli.rs` (the workspace, runs, reports),
//!   cosign: `cosign.rs`; other registries: `ferro.rs`, `other.rs`; faults and other
//!   registries' behaviour: `proxy.rs`; TLS and tokens: `tls.rs`, `token.rs`; JUnit: `junit.rs`.
//! * The test proxies (faults: `proxy.rs`; rationing: `rationing.rs`; delay: `delay.rs`)
//!   listen, read and forward with the same plumbing: `forward.rs`.

pub mod access_log;
pub mod api;
pub mod cli;
pub mod cosign;
pub mod delay;
pub mod ferro;
/// The proxies' shared HTTP plumbing: a module of `rationing.rs` (which the benchmark builds
/// alone), re-exported here for `proxy.rs` and `delay.rs`.
pub use rationing::forward;
pub mod fulcio;
pub mod junit;
pub mod media;
pub mod other;
pub mod proxy;
pub mod rationing;
pub mod registry;
pub mod seed;
pub mod tls;
pub mod token;

pub use access_log::{Request, parse_access_log_line};
pub use media::*;
pub use registry::{ClientAuth, Registry, RegistryConfig, free_port, port_open};
pub use seed::*;
