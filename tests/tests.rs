//! The integration tests: one binary (as ripgrep's are), one module per area, one harness.
//!
//! Each area is a file `tests/AREA.rs` declared here; they share `support` (real registries,
//! proxies, seeding, the binary under test). One binary links the harness once instead of
//! once per file, and `cargo test --test integration AREA::` runs one area. A new area is a
//! new file and a line here (`architecture::every_test_file_is_a_module_of_the_one_binary`
//! fails on a file nobody declared: with `autotests = false` it would never run).

mod support;

// The shape of src/ itself.
mod architecture;
// Prow's artefacts: JUnit and the report under $ARTIFACTS.
mod artifacts;
// Credentials, tokens, TLS, and no secret in any output.
mod auth;
// `check --diff`.
mod check_diff;
// What a CI log shows.
mod ci_logs;
// `check` end to end.
mod cli_check;
// The manifests under deploy/ against the binary.
mod deploy;
// The bytes written into directories, counted.
mod directory_bytes;
// `oci:` and `file://` directories.
mod disk;
// Faults injected by a proxy; runs killed midway.
mod faults;
// A newcomer's first hour: fail fast with the fix, retries that say why, help and README.
mod first_hour;
// The harness itself.
mod harness;
// `import` of other tools' files.
mod import;
// The periodic job: report, shards, signals, mapping directories.
mod job;
mod keyless;
// The ledger of what was written, and `prune`.
mod ledger;
// Many tags in many repositories.
mod load;
mod long_paths;
// Metrics file and Pushgateway.
mod metrics;
// HTTP/2, requests in flight, 429s.
mod network;
// A second registry implementation.
mod other_registry;
// `--policy`: only what is signed.
mod policy;
// oc's push by digest.
mod push_by_digest;
// Other registries' corners, one at a time.
mod quirks;
mod rationing;
mod rationing_proxy;
// Big blobs as parallel byte ranges.
mod ranged;
// Blobs kept elsewhere (redirects to signed URLs).
mod redirects;
// OCI 1.1 referrers.
mod referrers;
// Repository wildcards and `--max-images`.
mod repositories;
// The retry budget.
mod retry_budget;
// `run` against real registries: copies, reruns, dry runs, wildcards.
mod run_mirror;
// Choosing tags by rule; immutable tags.
mod selection;
// Signatures, attestations and SBOMs travel with their images.
mod signatures;
// `verify`.
mod verify;
