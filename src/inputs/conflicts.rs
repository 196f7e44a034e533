//! The one rule for a destination written twice — from the same content a harmless duplicate
//! (the first write stays), from other content a conflict — and the index that finds each
//! destination's first write. Applied twice, by the same code: to the mapping files as
//! written ([`cross_checks`]: destination tags, and the patterns of tag wildcards), and to the
//! copies `plan` makes once wildcards are expanded.

use std::fmt::Display;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use super::mapping::Mapping;
use crate::model::diagnostics::{Diagnostic, Location};
use crate::model::image::{SourceImage, Target};
use crate::model::reference::{ManifestRef, Repository};

/// The identity of what a destination receives, to tell a conflict from a duplicate.
#[derive(Clone, Copy)]
pub enum Origin<'a> {
    Image(&'a SourceImage),
    Wildcard(&'a Repository),
}

impl Origin<'_> {
    fn same_as(&self, other: &Origin<'_>) -> bool {
        match (self, other) {
            (Origin::Image(a), Origin::Image(b)) => a.same_content_as(b),
            (Origin::Wildcard(a), Origin::Wildcard(b)) => a == b,
            _ => false,
        }
    }
}

impl Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Image(i) => write!(f, "{i}"),
            Origin::Wildcard(r) => write!(f, "{r} (wildcard)"),
        }
    }
}

/// The rule: `shown` written at `at` from `origin`, after `first` wrote it at `first_at`, is
/// a duplicate (a warning) from the same content, a conflict (an error) from other content.
pub fn second_write(
    shown: &dyn Display,
    origin: Origin<'_>,
    at: &Location,
    first: Origin<'_>,
    first_at: &Location,
) -> Diagnostic {
    if first.same_as(&origin) {
        Diagnostic::warning(
            at.clone(),
            format!("duplicate mapping to {shown} (also at {first_at})"),
        )
    } else {
        Diagnostic::error(
            at.clone(),
            format!(
                "{shown} is written by two different sources: {origin} here and {first} at {first_at}"
            ),
        )
    }
}

/// The first write of each destination, held as places (where to read its key back: a
/// mapping's target, a planned copy), not as keys: a key is read from what it names, and no
/// text is made but for a diagnostic (`check`'s places take 8 bytes a destination; keys and
/// origins took 56).
pub struct FirstWrites<P> {
    hasher: foldhash::fast::RandomState,
    table: HashTable<P>,
}

impl<P> Default for FirstWrites<P> {
    fn default() -> FirstWrites<P> {
        FirstWrites::with_capacity(0)
    }
}

impl<P> FirstWrites<P> {
    pub fn with_capacity(capacity: usize) -> FirstWrites<P> {
        FirstWrites {
            hasher: foldhash::fast::RandomState::default(),
            table: HashTable::with_capacity(capacity),
        }
    }
}

impl<P: Copy> FirstWrites<P> {
    /// The place of `key`'s first write; `None` when there was none, and `place` is now it.
    /// `key_of` reads the key of a place recorded before.
    pub fn first<K: Hash + Eq>(
        &mut self,
        key: &K,
        place: P,
        key_of: impl Fn(P) -> Option<K>,
    ) -> Option<P> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        if let Some(&found) = self
            .table
            .find(hash, |&at| key_of(at).is_some_and(|k| k == *key))
        {
            return Some(found);
        }
        self.table.insert_unique(hash, place, |&at| {
            key_of(at).map_or(0, |k| hasher.hash_one(&k))
        });
        None
    }
}

/// What a mapping writes into a destination repository: a tag (or digest), or a pattern's
/// tags.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Written<'a> {
    Target(&'a ManifestRef),
    Pattern(&'a str),
}

/// One write of a destination: what it writes where, from which origin, at which place in
/// the files.
struct DestinationWrite<'a> {
    key: (&'a Repository, Written<'a>),
    origin: Origin<'a>,
    location: &'a Location,
}

/// The `target`-th destination `mapping` writes, if it has one (repository wildcards have
/// none: checked once expanded, by the planner).
fn write_of(mapping: &Mapping, target: usize) -> Option<DestinationWrite<'_>> {
    match mapping {
        Mapping::Repositories { .. } => None,
        Mapping::Image {
            source, targets, ..
        } => targets.get(target).map(|t| DestinationWrite {
            key: (&t.value.repository, Written::Target(&t.value.reference)),
            origin: Origin::Image(&source.value),
            location: &t.location,
        }),
        Mapping::Wildcard {
            repository,
            pattern,
            targets,
            ..
        } => targets.get(target).map(|t| DestinationWrite {
            key: (&t.value, Written::Pattern(pattern.as_str())),
            origin: Origin::Wildcard(&repository.value),
            location: &t.location,
        }),
    }
}

/// Destination tags (or, for wildcards, destination repository + pattern) written twice, by
/// [`second_write`]'s rule. A 100,000-line check allocates nothing here per line.
pub fn cross_checks(mappings: &[Mapping]) -> Vec<Diagnostic> {
    // Places as 32-bit numbers, 8 bytes a destination: 4 billion mappings would not fit in
    // memory anyway.
    let write_at = |(m, t): (u32, u32)| write_of(&mappings[m as usize], t as usize);
    let key_of = |place| write_at(place).map(|w| w.key);
    let mut firsts = FirstWrites::with_capacity(mappings.len());
    let mut out = Vec::new();
    for (m, mapping) in mappings.iter().enumerate() {
        let mut t = 0;
        while let Some(write) = write_of(mapping, t) {
            let place = (m as u32, t as u32);
            let earlier = firsts.first(&write.key, place, key_of).and_then(write_at);
            if let Some(first) = earlier {
                out.push(second_write(
                    &Shown(write.key),
                    write.origin,
                    write.location,
                    first.origin,
                    first.location,
                ));
            }
            t += 1;
        }
    }
    out
}

/// A destination key as a person reads it: `repository:tag`, `repository@digest`, or
/// `repository:pattern`.
struct Shown<'a>((&'a Repository, Written<'a>));

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (repository, written) = self.0;
        match written {
            Written::Target(r) => write!(
                f,
                "{}",
                Target {
                    repository: repository.clone(),
                    reference: r.clone(),
                }
            ),
            Written::Pattern(p) => write!(f, "{repository}:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;
    use std::sync::Arc;

    fn set(files: &[(&str, &str)]) -> Vec<Diagnostic> {
        let mut mappings = Vec::new();
        for (name, text) in files {
            let p = parse_text(&Arc::from(*name), text);
            mappings.extend(p.mappings);
        }
        cross_checks(&mappings)
    }

    #[test]
    fn conflicts_across_files_name_both_places() {
        let d = set(&[
            ("a", "quay.io/x/one:v1 reg.io/t/app:v1\n"),
            ("b", "\nquay.io/x/two:v1 reg.io/t/app\n"),
        ]);
        assert_eq!(d.len(), 1);
        let text = d[0].to_string();
        assert!(
            text.starts_with("b:2:18: error: reg.io/t/app:v1 is written by two different sources"),
            "{text}"
        );
        assert!(text.contains("a:1:18"), "{text}");
    }

    #[test]
    fn one_digest_named_two_ways_is_a_duplicate() {
        let d = format!("sha256:{}", "d".repeat(64));
        let text = format!("quay.io/a/b:v1@{d} reg.io/x/b:v1\nquay.io/a/b@{d} reg.io/x/b:v1\n");
        let diags = set(&[("a", &text)]);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(!diags[0].is_error(), "{diags:?}");
    }

    #[test]
    fn hosts_differing_in_case_conflict() {
        let diags = set(&[(
            "a",
            "quay.io/a/b:v1 Reg.io/x/b:v1\nquay.io/c/d:v1 reg.io/x/b:v1\n",
        )]);
        assert!(diags.iter().any(|d| d.is_error()), "{diags:?}");
    }

    #[test]
    fn conflicts_are_found_among_many_destinations_of_one_line() {
        // Far more destinations than mappings: the index grows while it is filled.
        let many: Vec<String> = (0..300).map(|i| format!("reg.io/t/app:v{i}")).collect();
        let text = format!(
            "quay.io/x/one:v1 {}\nquay.io/x/two:v1 reg.io/t/app:v0 reg.io/t/app:v299\n",
            many.join(" ")
        );
        let d = set(&[("a", &text)]);
        let shown: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0]
                .starts_with("a:2:18: error: reg.io/t/app:v0 is written by two different sources"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("reg.io/t/app:v299 is written by two")
                && shown[1].contains("at a:1:"),
            "{shown:?}"
        );
    }

    #[test]
    fn exact_duplicates_are_warnings() {
        let d = set(&[(
            "a",
            "quay.io/x/one:v1 reg.io/t/app:v1\nquay.io/x/one:v1=reg.io/t/app:v1\n",
        )]);
        assert_eq!(d.len(), 1);
        assert!(!d[0].is_error());
        assert!(d[0].to_string().contains("duplicate"));
    }

    #[test]
    fn same_wildcard_into_one_repository_from_two_sources_conflicts() {
        let d = set(&[(
            "a",
            "quay.io/x/one:* reg.io/t/app\nquay.io/x/two reg.io/t/app:*\n",
        )]);
        assert_eq!(d.iter().filter(|d| d.is_error()).count(), 1, "{d:?}");
        // Different patterns may well be disjoint: decided after the tags are listed.
        assert!(
            set(&[(
                "a",
                "quay.io/x/one:v1.* reg.io/t/app\nquay.io/x/two:v2.* reg.io/t/app\n"
            )])
            .is_empty()
        );
    }
}
