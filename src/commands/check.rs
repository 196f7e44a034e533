//! `image-mirror check`: load the mapping files and report every diagnostic; with `--diff`,
//! also what the change from a base tree does. Offline.

use super::cli::{CheckArgs, DiffFormat};
use super::{ExitCode, load_and_report};
use crate::inputs::diff::diff;
use crate::inputs::{InputSpec, MappingSet};
use crate::plural::count;
use crate::report;

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
pub fn run(args: &CheckArgs) -> ExitCode {
    if let Err(message) = args.mappings.default_exists() {
        eprintln!("error: {message}");
        return ExitCode::Usage;
    }
    let spec = args.mappings.input_spec();
    let stderr = std::io::stderr();
    let Some(set) = load_and_report(&spec, &mut stderr.lock()) else {
        return ExitCode::Usage;
    };
    if let Some(base) = &args.diff {
        // stdout is the diff alone (it may be posted as a comment); the rest goes to stderr.
        let base_spec = InputSpec {
            paths: vec![base.clone()],
            prefix: spec.prefix.clone(),
        };
        let Some(base_set) = load_and_report(&base_spec, &mut stderr.lock()) else {
            return ExitCode::Usage;
        };
        if base_set.has_errors() {
            eprintln!(
                "note: the base has {} (compared as far as it parses)",
                count(base_set.error_count(), "error")
            );
        }
        let changes = diff(&base_set.mappings, &set.mappings);
        let shown = match args.diff_format {
            DiffFormat::Text => report::diff::text(&changes),
            DiffFormat::Markdown => report::diff::markdown(&changes),
        };
        print!("{shown}");
        if let Some(note) = prune_note(&changes) {
            eprintln!("{note}");
        }
        eprintln!("{}", summary(&set));
    } else {
        println!("{}", summary(&set));
    }
    if set.has_errors() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    }
}
/// What `prune` does with this change, on stderr (stdout is the diff alone): the tags it no
/// longer writes are deleted by `run --prune` once unwanted for `--prune-after`, when the
/// ledger says image-mirror wrote them. `None` when nothing is removed.
fn prune_note(changes: &crate::inputs::diff::Diff) -> Option<String> {
    use crate::inputs::diff::Change;
    let removed = changes
        .values()
        .flatten()
        .filter(|c| {
            matches!(
                c,
                Change::Removed { .. }
                    | Change::PatternRemoved { .. }
                    | Change::PatternNarrowed { .. }
            )
        })
        .count();
    (removed > 0).then(|| {
        format!(
            "note: with --ledger and --prune, image-mirror deletes the destination tags of the \
             {} above (-, <) once unwanted for --prune-after, if its ledger says it wrote \
             them; `image-mirror prune --dry-run` lists them",
            count(removed, "removal")
        )
    })
}
