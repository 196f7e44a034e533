//! Equal names parsed once and shared. A mapping file names the same few registries,
//! destination repositories and tag patterns on line after line; parsed through one
//! [`Interner`], each distinct one is validated, normalized and stored once, and every later
//! reference to it shares that copy (a 100,000-line check held a copy of its host and path
//! per reference).

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::parse::ParseError;
use super::reference::{Host, Repository, TagPattern, parse_name_with};

/// The hosts, repositories and tag patterns parsed so far, by their text as written: parsing is a pure
/// function of the text, so a name seen before needs no second look. Keys borrow the text
/// (a file's contents), so an interner lives as long as one file is being parsed.
#[derive(Default)]
pub struct Interner<'t> {
    repositories: HashMap<&'t str, Repository, RandomState>,
    hosts: HashMap<&'t str, Host, RandomState>,
    /// Tag patterns: validating one builds a glob, a dozen allocations.
    patterns: HashMap<&'t str, TagPattern, RandomState>,
}

impl<'t> Interner<'t> {
    /// The host `text` names (already validated), shared with earlier ones written alike.
    pub(super) fn host(&mut self, text: &'t str) -> Host {
        self.hosts
            .entry(text)
            .or_insert_with(|| Host::normalized(text))
            .clone()
    }

    /// `[host[:port]/]path` as [`super::reference::parse_name`] reads it, shared with
    /// earlier repositories written alike. Errors are not kept: they are rare, and reported
    /// where each is written.
    pub fn repository(&mut self, name: &'t str) -> Result<Repository, ParseError> {
        if let Some(known) = self.repositories.get(name) {
            return Ok(known.clone());
        }
        let repository = parse_name_with(name, |host| self.host(host))?;
        self.repositories.insert(name, repository.clone());
        Ok(repository)
    }

    /// The tag pattern `text` is, as [`TagPattern::parse`] reads it, shared with earlier
    /// patterns written alike.
    pub fn pattern(&mut self, text: &'t str) -> Result<TagPattern, ParseError> {
        if let Some(known) = self.patterns.get(text) {
            return Ok(known.clone());
        }
        let pattern = TagPattern::parse(text)?;
        self.patterns.insert(text, pattern.clone());
        Ok(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{Reference, TagSpec, parse_name};

    /// Whether two names are one copy in memory, not two equal ones.
    fn same_copy(a: &str, b: &str) -> bool {
        std::ptr::eq(a.as_ptr(), b.as_ptr())
    }

    #[test]
    fn names_written_alike_share_one_copy_and_parse_as_alone() {
        let mut names = Interner::default();
        let text = "Quay.io/org/app quay.io/org/app nginx quay.io/other quay.io/org/app";
        let parsed: Vec<Repository> = text
            .split(' ')
            .map(|n| names.repository(n).unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect();
        for (n, r) in text.split(' ').zip(&parsed) {
            assert_eq!(Ok(r), parse_name(n).as_ref(), "{n}");
        }
        assert_eq!(parsed[2].to_string(), "docker.io/library/nginx");
        // The same text, the same copy; an equal name written otherwise is its own copy.
        assert!(same_copy(parsed[1].path(), parsed[4].path()));
        assert!(!same_copy(parsed[0].path(), parsed[1].path()));
        // Hosts written alike are shared across repositories.
        let host = |i: usize| parsed[i].registry().as_str();
        assert!(same_copy(host(1), host(3)));
        // A reference shares its repository with names parsed before it.
        let r = Reference::parse_in("quay.io/org/app:v1", &mut names);
        assert!(r.is_ok_and(|r| same_copy(r.repository.path(), parsed[1].path())));
        // Tag patterns written alike are one copy too, and parse as alone.
        let mut pattern = |text| match Reference::parse_in(text, &mut names).map(|r| r.tag) {
            Ok(Some(TagSpec::Pattern(p))) => p,
            other => panic!("{text}: {other:?}"),
        };
        let (a, b, c) = (
            pattern("r.io/a:v1.*"),
            pattern("r.io/b:v1.*"),
            pattern("r.io/a:v2.*"),
        );
        assert!(same_copy(a.as_str(), b.as_str()) && !same_copy(a.as_str(), c.as_str()));
        assert_eq!(c.as_str(), "v2.*");
        assert!(c.is_match("v2.0") && !c.is_match("v1.0"));
        let bad = Reference::parse_in("r.io/a:[a-", &mut names).err();
        assert_eq!(bad, Reference::parse("r.io/a:[a-").err());
        assert!(bad.is_some());
        // Errors are those of parsing alone, and not remembered as names.
        for bad in ["quay.io/Org/app", "quay.io/Org/app", ""] {
            assert_eq!(names.repository(bad).err(), parse_name(bad).err(), "{bad}");
        }
    }
}
