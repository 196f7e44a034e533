//! Planning at scale: what `run` does between reading the mapping files and contacting a
//! registry to copy (load, then expand every wildcard source against its listed tags and
//! batch the copies per destination repository), timed without a registry. The tags of each
//! wildcard source are a fixed list standing in for what a registry would answer.
//!
//! Usage: `cargo run --release --example plan -- DIR...` (bench/parse.sh runs it on the set it
//! generates). Prints each step's time and the peak RSS after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use image_mirror::inputs::{self, InputSpec};
use image_mirror::model::reference::Repository;
use image_mirror::plan;

/// What every wildcard source lists: some tags match bench/parse.sh's patterns (`v1.*`,
/// `v2.*`, `v3.*`, `4.1[0-9].*`), most match none of them.
const LISTED: [&str; 12] = [
    "v1.0.0",
    "v1.1.0",
    "v2.0.0",
    "v2.1.3",
    "v3.0.1",
    "4.10.0",
    "4.11.2",
    "4.19.0-rc.1",
    "4.9.0",
    "latest",
    "main",
    "sha-0123abc",
];

fn main() -> ExitCode {
    // Every argument names mapping files or directories (`--bench`, added by `cargo bench`,
    // is skipped).
    let paths: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        eprintln!("usage: cargo run --release --example plan -- DIR...");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let set = match inputs::discover(&InputSpec {
        paths,
        prefix: None,
    })
    .and_then(|files| inputs::load(&files))
    {
        Ok(set) => set,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = started.elapsed();
    let loaded_rss = peak_rss_kb();
    if set.has_errors() {
        eprintln!("error: the mappings have {} errors", set.error_count());
        return ExitCode::from(2);
    }
    // No repository wildcard in the generated set: nothing to list for them.
    let expanded = plan::expand_all(set.mappings, &HashMap::new());
    let listed: HashMap<Repository, Vec<String>> = plan::wildcard_sources(&expanded.mappings)
        .into_iter()
        .map(|r| (r, LISTED.iter().map(|t| t.to_string()).collect()))
        .collect();
    let started = Instant::now();
    let (planned, diagnostics) = plan::plan(&expanded.mappings, &listed);
    let planning = started.elapsed();
    let planned_rss = peak_rss_kb();
    println!(
        "load: {} mappings from {} files in {:.3} s, peak RSS {loaded_rss} KB",
        expanded.mappings.len(),
        set.files.len(),
        loaded.as_secs_f64()
    );
    println!(
        "plan: {} wildcard sources listed ({} tags each), {} copies in {} batches, {} diagnostics in {:.3} s, peak RSS {planned_rss} KB",
        listed.len(),
        LISTED.len(),
        planned.job_count(),
        planned.batches.len(),
        diagnostics.len(),
        planning.as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// The process's peak resident set so far (Linux), in KB; 0 where it cannot be read.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
