//! `image-mirror check`: load the mapping files and report every diagnostic. Offline.

use super::{ExitCode, load_and_report};
use crate::inputs::{InputSpec, MappingSet};
use crate::plural::count;

/// The one-line summary `check` ends with.
pub fn summary(set: &MappingSet) -> String {
    [
        count(set.files.len(), "file"),
        count(set.mappings.len(), "mapping"),
        count(set.error_count(), "error"),
        count(set.warning_count(), "warning"),
    ]
    .join(", ")
}

/// Runs `check`.
pub fn run(spec: &InputSpec) -> ExitCode {
    let stderr = std::io::stderr();
    let Some(set) = load_and_report(spec, &mut stderr.lock()) else {
        return ExitCode::Usage;
    };
    println!("{}", summary(&set));
    if set.has_errors() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    }
}
