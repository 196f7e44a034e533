//! `image-mirror check`: load the mapping files and report every diagnostic.

use std::io::Write;

use crate::inputs::{self, InputSpec, MappingSet};

/// What `check` and `run` share: find, read and validate the files. Prints every diagnostic
/// to `err`. Returns `None` (after printing why) when the input is unusable.
pub fn load_and_report(spec: &InputSpec, err: &mut dyn Write) -> Option<MappingSet> {
    let set = match inputs::discover(spec).and_then(|files| inputs::load(&files)) {
        Ok(set) => set,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return None;
        }
    };
    for d in &set.diagnostics {
        let _ = writeln!(err, "{d}");
    }
    Some(set)
}

/// The one-line summary `check` ends with.
pub fn summary(set: &MappingSet) -> String {
    format!(
        "{} files, {} mappings, {} errors, {} warnings",
        set.files.len(),
        set.mappings.len(),
        set.error_count(),
        set.warning_count()
    )
}

/// Runs `check`; returns the exit code.
pub fn run(spec: &InputSpec) -> i32 {
    let stderr = std::io::stderr();
    let Some(set) = load_and_report(spec, &mut stderr.lock()) else {
        return 2;
    };
    println!("{}", summary(&set));
    if set.has_errors() { 2 } else { 0 }
}
