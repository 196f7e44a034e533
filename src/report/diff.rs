//! The views of `check --diff`: plain text for a build log, Markdown for a pull-request
//! comment. Both group the changes by destination repository and give `file:line` on both
//! sides, so a reviewer can find the line that made each change and the one it replaced.

use std::fmt::Write as _;

use crate::inputs::diff::{Change, Diff, Side};
use crate::plural::count;

/// Counts of each kind of change, for the closing line.
#[derive(Default)]
struct Counts {
    added: usize,
    removed: usize,
    repointed: usize,
    patterns_added: usize,
    patterns_removed: usize,
    widened: usize,
    narrowed: usize,
}

fn counts(diff: &Diff) -> Counts {
    let mut c = Counts::default();
    for change in diff.values().flatten() {
        match change {
            Change::Added { .. } => c.added += 1,
            Change::Removed { .. } => c.removed += 1,
            Change::Repointed { .. } => c.repointed += 1,
            Change::PatternAdded { .. } => c.patterns_added += 1,
            Change::PatternRemoved { .. } => c.patterns_removed += 1,
            Change::PatternWidened { .. } => c.widened += 1,
            Change::PatternNarrowed { .. } => c.narrowed += 1,
        }
    }
    c
}

/// "2 destination tags added, 1 removed, 1 re-pointed; 1 wildcard pattern added, 1 widened",
/// leaving out what is zero; "no change to what is mirrored" for none.
pub fn totals(diff: &Diff) -> String {
    let c = counts(diff);
    let part = |first: &str, items: &[(usize, &str)]| {
        let present: Vec<(usize, &str)> = items.iter().copied().filter(|(n, _)| *n > 0).collect();
        present
            .iter()
            .enumerate()
            .map(|(i, (n, what))| {
                if i == 0 {
                    format!("{} {what}", count(*n, first))
                } else {
                    format!("{n} {what}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tags = part(
        "destination tag",
        &[
            (c.added, "added"),
            (c.removed, "removed"),
            (c.repointed, "re-pointed"),
        ],
    );
    let patterns = part(
        "wildcard pattern",
        &[
            (c.patterns_added, "added"),
            (c.widened, "widened"),
            (c.narrowed, "narrowed"),
            (c.patterns_removed, "removed"),
        ],
    );
    let parts: Vec<String> = [tags, patterns]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        "no change to what is mirrored".to_owned()
    } else {
        parts.join("; ")
    }
}

fn at(side: &Side) -> String {
    format!("{}:{}", side.location.file, side.location.line)
}

/// One line per change: a sign, the tag or pattern, the source, `file:line`, and for a
/// replacement what it was and where.
///
/// ```text
/// quay.io/org/app
///   + v2     <- registry.example.com/team/app:v2  (mappings/mapping_a:3)
///   ~ v3     <- registry.example.com/other/app:v3  (mappings/mapping_a:4)
///              was registry.example.com/team/app:v3  (base/mapping_a:4)
/// ```
pub fn text(diff: &Diff) -> String {
    let mut out = String::new();
    for (repository, changes) in diff {
        let _ = writeln!(out, "{repository}");
        for change in changes {
            let (sign, name, now, was) = match change {
                Change::Added { tag, new } => ("+", tag.clone(), new, None),
                Change::Removed { tag, old } => ("-", tag.clone(), old, None),
                Change::Repointed { tag, old, new } => ("~", tag.clone(), new, Some(old)),
                Change::PatternAdded { pattern, new } => {
                    ("+", format!("{pattern} (wildcard)"), new, None)
                }
                Change::PatternRemoved { pattern, old } => {
                    ("-", format!("{pattern} (wildcard)"), old, None)
                }
                Change::PatternWidened { pattern, old, new } => {
                    (">", format!("{pattern} (wildcard widened)"), new, Some(old))
                }
                Change::PatternNarrowed { pattern, old, new } => (
                    "<",
                    format!("{pattern} (wildcard narrowed)"),
                    new,
                    Some(old),
                ),
            };
            let _ = writeln!(out, "  {sign} {name}  <- {}  ({})", now.source, at(now));
            if let Some(old) = was {
                let _ = writeln!(out, "      was {}  ({})", old.source, at(old));
            }
        }
    }
    let _ = writeln!(out, "{}", totals(diff));
    out
}

/// A Markdown section for a pull-request comment: a table per destination repository.
pub fn markdown(diff: &Diff) -> String {
    let code = |s: &str| format!("`{}`", s.replace('`', "'"));
    let mut out = String::from("### Mirror changes\n\n");
    let _ = writeln!(out, "{}\n", totals(diff));
    for (repository, changes) in diff {
        let _ = writeln!(out, "#### {}\n", code(&repository.to_string()));
        out.push_str("| change | tag | source | where | before |\n|---|---|---|---|---|\n");
        for change in changes {
            let (what, name, now, was) = match change {
                Change::Added { tag, new } => ("added", tag, new, None),
                Change::Removed { tag, old } => ("**removed**", tag, old, None),
                Change::Repointed { tag, old, new } => ("**re-pointed**", tag, new, Some(old)),
                Change::PatternAdded { pattern, new } => ("wildcard added", pattern, new, None),
                Change::PatternRemoved { pattern, old } => ("wildcard removed", pattern, old, None),
                Change::PatternWidened { pattern, old, new } => {
                    ("**wildcard widened**", pattern, new, Some(old))
                }
                Change::PatternNarrowed { pattern, old, new } => {
                    ("wildcard narrowed", pattern, new, Some(old))
                }
            };
            let before = was.map_or(String::new(), |old| {
                format!("{} at {}", code(&old.source), code(&at(old)))
            });
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} | {before} |",
                code(name),
                code(&now.source),
                code(&at(now))
            );
        }
        out.push('\n');
    }
    out
}
