//! What a change to the mapping files does, offline: `check --diff BASE PATH…` compares the
//! mappings of two trees (the base branch and a pull request) by what they write — each
//! destination tag and the source it takes, each wildcard pattern and where its tags go —
//! not by lines, so moving a line or reformatting it is no change, and a reviewer sees that a
//! one-character edit re-points a release tag or widens `v4.1*` to `v4*`.
//!
//! Pure: reads parsed [`Mapping`]s only; rendering is `report::diff`.

use std::collections::{BTreeMap, BTreeSet};

use globset::Glob;

use super::mapping::Mapping;
use crate::model::diagnostics::Location;
use crate::model::reference::Repository;

/// One side of a change: what the mapping says and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// The source (`repo:tag`, `repo@digest`, or `repo:pattern` for a wildcard).
    pub source: String,
    pub location: Location,
}

/// How the plan for one destination repository changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A destination tag written now and not before.
    Added { tag: String, new: Side },
    /// A destination tag no longer written.
    Removed { tag: String, old: Side },
    /// The same destination tag, from another source (or the same repository at another
    /// tag or digest).
    Repointed { tag: String, old: Side, new: Side },
    /// A wildcard pattern that now copies tags of a source repository here.
    PatternAdded { pattern: String, new: Side },
    /// A wildcard pattern that no longer does.
    PatternRemoved { pattern: String, old: Side },
    /// A pattern replaced by one that matches everything it matched and more (`v4.1*` →
    /// `v4*`).
    PatternWidened {
        pattern: String,
        old: Side,
        new: Side,
    },
    /// A pattern replaced by one that matches less.
    PatternNarrowed {
        pattern: String,
        old: Side,
        new: Side,
    },
}

impl Change {
    /// Tags before patterns, then by name: the order a reviewer reads them in.
    fn sort_key(&self) -> (u8, &str) {
        match self {
            Change::Added { tag, .. }
            | Change::Removed { tag, .. }
            | Change::Repointed { tag, .. } => (0, tag),
            Change::PatternAdded { pattern, .. }
            | Change::PatternRemoved { pattern, .. }
            | Change::PatternWidened { pattern, .. }
            | Change::PatternNarrowed { pattern, .. } => (1, pattern),
        }
    }
}

/// Changes grouped by destination repository, repositories in order.
pub type Diff = BTreeMap<Repository, Vec<Change>>;

/// Who writes what: destination tag → source, and (destination, source repository) → the
/// patterns copied from it. The first mapping of a key wins, as `check` reports the others.
#[derive(Default)]
struct Writes {
    tags: BTreeMap<(Repository, String), Side>,
    patterns: BTreeMap<(Repository, Repository), BTreeMap<String, Side>>,
}

fn writes(mappings: &[Mapping]) -> Writes {
    let mut w = Writes::default();
    for m in mappings {
        match m {
            Mapping::Image {
                source,
                targets,
                rules,
            } => {
                for t in targets {
                    w.tags
                        .entry((t.value.repository.clone(), t.value.short()))
                        .or_insert_with(|| Side {
                            source: format!("{}{}", source.value, options(rules)),
                            location: t.location.clone(),
                        });
                }
            }
            Mapping::Wildcard {
                repository,
                pattern,
                targets,
                rules,
            } => {
                for t in targets {
                    let written = format!("{}{}", pattern.as_str(), options(rules));
                    w.patterns
                        .entry((t.value.clone(), repository.value.clone()))
                        .or_default()
                        .entry(written)
                        .or_insert_with(|| Side {
                            source: format!("{}:{}", repository.value, pattern.as_str()),
                            location: t.location.clone(),
                        });
                }
            }
            // A repository wildcard, grouped under the literal roots of its destination and
            // source (the part before the first `*`), its pattern written whole.
            Mapping::Repositories {
                source,
                pattern,
                targets,
                rules,
            } => {
                let Ok(from) = literal_root(&source.value.to_string()) else {
                    continue;
                };
                for t in targets {
                    let Ok(to) = literal_root(&t.value.to_string()) else {
                        continue;
                    };
                    let written = format!(
                        "{} -> {}:{}{}",
                        source.value,
                        t.value,
                        pattern.as_str(),
                        options(rules)
                    );
                    w.patterns
                        .entry((to, from.clone()))
                        .or_default()
                        .entry(written)
                        .or_insert_with(|| Side {
                            source: format!("{}:{}", source.value, pattern.as_str()),
                            location: t.location.clone(),
                        });
                }
            }
        }
    }
    w
}

/// A line's `# image-mirror:` options as written, for comparing: a change of options is a
/// change of what the line writes.
fn options(rules: &crate::model::rules::LineRules) -> String {
    if rules.written.is_empty() {
        String::new()
    } else {
        format!("  # image-mirror: {}", rules.written)
    }
}

/// The repository a wildcard path starts with: `reg.io/team/*` → `reg.io/team`.
fn literal_root(text: &str) -> Result<Repository, crate::model::parse::ParseError> {
    let head = &text[..text.find('*').unwrap_or(text.len())];
    crate::model::reference::parse_name(head.trim_end_matches(['/', '-', '_', '.']))
}

/// Whether every tag `narrow` matches is matched by `wide`: judged by `wide` matching the
/// text of `narrow` (its wildcards read as literal characters), which holds for the edits
/// people make (`v4.1*` → `v4*`, `v4.1.0` → `v4.1.*`, anything → `*`).
fn covers(wide: &str, narrow: &str) -> bool {
    wide != narrow
        && Glob::new(wide)
            .map(|g| g.compile_matcher().is_match(narrow))
            .unwrap_or(false)
}

/// What changes from `base` to `new`.
pub fn diff(base: &[Mapping], new: &[Mapping]) -> Diff {
    let (old, now) = (writes(base), writes(new));
    let mut out: Diff = BTreeMap::new();
    for (key, new_side) in &now.tags {
        let change = match old.tags.get(key) {
            None => Change::Added {
                tag: key.1.clone(),
                new: new_side.clone(),
            },
            Some(old_side) if old_side.source != new_side.source => Change::Repointed {
                tag: key.1.clone(),
                old: old_side.clone(),
                new: new_side.clone(),
            },
            Some(_) => continue,
        };
        out.entry(key.0.clone()).or_default().push(change);
    }
    for (key, old_side) in &old.tags {
        if !now.tags.contains_key(key) {
            out.entry(key.0.clone()).or_default().push(Change::Removed {
                tag: key.1.clone(),
                old: old_side.clone(),
            });
        }
    }
    let empty = BTreeMap::new();
    let keys: BTreeSet<&(Repository, Repository)> =
        old.patterns.keys().chain(now.patterns.keys()).collect();
    for key in keys {
        let before = old.patterns.get(key).unwrap_or(&empty);
        let after = now.patterns.get(key).unwrap_or(&empty);
        let mut gone: Vec<(&String, &Side)> = before
            .iter()
            .filter(|(p, _)| !after.contains_key(*p))
            .collect();
        let changes = out.entry(key.0.clone()).or_default();
        for (pattern, new_side) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
            // A pattern that replaced one it covers (or is covered by) is that one widened
            // (or narrowed); otherwise it is new.
            let partner = gone
                .iter()
                .position(|(old, _)| covers(pattern, old))
                .map(|i| (i, true))
                .or_else(|| {
                    gone.iter()
                        .position(|(old, _)| covers(old, pattern))
                        .map(|i| (i, false))
                });
            let change = match partner {
                Some((i, widened)) => {
                    let (_, old_side) = gone.remove(i);
                    let (pattern, old, new) = (pattern.clone(), old_side.clone(), new_side.clone());
                    if widened {
                        Change::PatternWidened { pattern, old, new }
                    } else {
                        Change::PatternNarrowed { pattern, old, new }
                    }
                }
                None => Change::PatternAdded {
                    pattern: pattern.clone(),
                    new: new_side.clone(),
                },
            };
            changes.push(change);
        }
        for (pattern, old_side) in gone {
            changes.push(Change::PatternRemoved {
                pattern: pattern.clone(),
                old: old_side.clone(),
            });
        }
    }
    out.retain(|_, changes| !changes.is_empty());
    for changes in out.values_mut() {
        changes.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;
    use std::sync::Arc;

    fn mappings(file: &str, text: &str) -> Vec<Mapping> {
        let parsed = parse_text(&Arc::from(file), text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        parsed.mappings
    }

    fn of<'a>(d: &'a Diff, repository: &str) -> &'a Vec<Change> {
        d.iter()
            .find(|(r, _)| r.to_string() == repository)
            .map(|(_, c)| c)
            .unwrap_or_else(|| panic!("{repository} not in {d:#?}"))
    }

    #[test]
    fn tags_added_removed_repointed_and_patterns_widened() {
        let base = mappings(
            "base/m",
            "s.io/a:1 d.io/x:1\ns.io/a:2 d.io/x:2\ns.io/a:3 d.io/x:3\ns.io/w:v4.1* d.io/w\ns.io/w:old* d.io/w\n",
        );
        let new = mappings(
            "new/m",
            "s.io/a:3 d.io/x:3\ns.io/a:1 d.io/x:1\ns.io/b:2 d.io/x:2\ns.io/a:4 d.io/x:4\ns.io/w:v4* d.io/w\ns.io/w:rc* d.io/w\n",
        );
        let d = diff(&base, &new);
        let x = of(&d, "d.io/x");
        assert_eq!(x.len(), 2, "moved lines are no change: {x:#?}");
        assert!(matches!(&x[0], Change::Repointed { tag, old, new }
            if tag == "2" && old.source == "s.io/a:2" && new.source == "s.io/b:2"
                && new.location.line == 3 && old.location.line == 2));
        assert!(matches!(&x[1], Change::Added { tag, .. } if tag == "4"));
        let w = of(&d, "d.io/w");
        let kinds: Vec<String> = w
            .iter()
            .map(|c| match c {
                Change::PatternAdded { pattern, .. } => format!("+{pattern}"),
                Change::PatternRemoved { pattern, .. } => format!("-{pattern}"),
                Change::PatternWidened { pattern, old, .. } => format!("{}>{pattern}", old.source),
                Change::PatternNarrowed { pattern, .. } => format!("<{pattern}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["-old*", "+rc*", "s.io/w:v4.1*>v4*"]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn narrowing_and_removal() {
        let base = mappings("b", "s.io/a:1 d.io/x:1\ns.io/w:* d.io/w\n");
        let new = mappings("n", "s.io/w:v1* d.io/w\n");
        let d = diff(&base, &new);
        assert!(matches!(
            d.values().flatten().collect::<Vec<_>>()[..],
            [Change::PatternNarrowed { .. }, Change::Removed { .. }]
                | [Change::Removed { .. }, Change::PatternNarrowed { .. }]
        ));
    }
}
