//! Choosing which listed tags of a wildcard source to mirror: its glob, then the line's
//! rules (exclusions, a regular expression, a semver range, pre-releases, the newest N).
//! Pure and deterministic: the same tags and rules give the same choice, whatever the
//! order the registry listed them in.

use std::fmt;

use crate::model::reference::TagPattern;
use crate::model::rules::{TagRules, version_of};

/// Why a listed tag was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Excluded {
    /// It does not match the source's glob (not reported: the glob is the candidate list).
    Glob,
    /// It matches an `exclude` pattern.
    Pattern(String),
    /// `regex` does not match it.
    Regex,
    /// `semver` or `latest` asks for versions, and it is none.
    NotAVersion,
    /// A pre-release, and pre-releases do not count.
    Prerelease,
    /// A version outside the `semver` range.
    OutOfRange,
    /// Older than the newest N versions.
    Older(usize),
}

impl fmt::Display for Excluded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Excluded::Glob => f.write_str("does not match the source's pattern"),
            Excluded::Pattern(p) => write!(f, "excluded by {p}"),
            Excluded::Regex => f.write_str("does not match regex"),
            Excluded::NotAVersion => f.write_str("not a version"),
            Excluded::Prerelease => f.write_str("prerelease"),
            Excluded::OutOfRange => f.write_str("outside the semver range"),
            Excluded::Older(n) => write!(f, "older than the newest {n}"),
        }
    }
}

/// What became of each listed tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Chosen, in the order listed.
    pub selected: Vec<String>,
    /// Matched the glob but not the rules, with the reason.
    pub excluded: Vec<(String, Excluded)>,
}

/// The tags of `listed` that `pattern` and `rules` choose.
pub fn select(listed: &[String], pattern: &TagPattern, rules: &TagRules) -> Selection {
    let mut selection = Selection::default();
    let mut versions = Vec::new();
    for tag in listed.iter().filter(|t| pattern.is_match(t)) {
        match verdict(tag, rules) {
            Ok(version) => versions.push((tag.clone(), version)),
            Err(why) => selection.excluded.push((tag.clone(), why)),
        }
    }
    if let Some(n) = rules.latest {
        // Highest first; equal versions (`1.2` and `v1.2.0`) by tag, for determinism.
        let mut ranked: Vec<&(String, Option<semver::Version>)> = versions.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let kept: std::collections::HashSet<&str> =
            ranked.iter().take(n).map(|(t, _)| t.as_str()).collect();
        for (tag, _) in &versions {
            if kept.contains(tag.as_str()) {
                selection.selected.push(tag.clone());
            } else {
                selection.excluded.push((tag.clone(), Excluded::Older(n)));
            }
        }
    } else {
        selection.selected = versions.into_iter().map(|(t, _)| t).collect();
    }
    selection
}

/// Whether one tag passes the rules (other than `latest`), with its version when it has one.
fn verdict(tag: &str, rules: &TagRules) -> Result<Option<semver::Version>, Excluded> {
    if let Some(p) = rules.exclude.iter().find(|p| p.is_match(tag)) {
        return Err(Excluded::Pattern(p.as_str().to_owned()));
    }
    if let Some(re) = &rules.regex
        && !re.is_match(tag)
    {
        return Err(Excluded::Regex);
    }
    let version = version_of(tag);
    match &version {
        None if rules.versions_only() => return Err(Excluded::NotAVersion),
        Some(v) if !v.pre.is_empty() && !rules.prereleases() => {
            return Err(Excluded::Prerelease);
        }
        _ => {}
    }
    if let (Some(req), Some(v)) = (&rules.semver, &version) {
        // A pre-release counts (when allowed) if its release would: `2.13.1-rc1` is in
        // `>=2.13.0, <2.14.0`. (Cargo's own rule admits pre-releases only where a bound names
        // one, which no mirroring user means.)
        let mut release = v.clone();
        release.pre = semver::Prerelease::EMPTY;
        if !req.matches(&release) {
            return Err(Excluded::OutOfRange);
        }
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAGS: [&str; 14] = [
        "v2.12.9",
        "v2.13.0",
        "v2.13.1",
        "v2.13.2-rc1",
        "v2.14.0-rc1",
        "v2.14.0",
        "1.24.0",
        "1.25.3",
        "1.25.4-perl",
        "1.26.0",
        "latest",
        "main",
        "sha-abc",
        "1.25",
    ];

    fn listed() -> Vec<String> {
        TAGS.iter().map(|t| t.to_string()).collect()
    }

    fn rules(text: &str) -> TagRules {
        let parsed = crate::inputs::options::parse_options(&format!(" image-mirror: {text}"), 0)
            .unwrap_or_else(|| panic!("marker"));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        parsed.rules.tags
    }

    fn glob(p: &str) -> TagPattern {
        TagPattern::parse(p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn chosen(pattern: &str, text: &str) -> Vec<String> {
        select(&listed(), &glob(pattern), &rules(text)).selected
    }

    #[test]
    fn no_rules_keep_what_the_glob_matches() {
        assert_eq!(chosen("v2.13.*", ""), ["v2.13.0", "v2.13.1", "v2.13.2-rc1"]);
    }

    #[test]
    fn a_semver_range_without_prereleases() {
        assert_eq!(
            chosen("v2.*", r#"semver=">=2.13.0, <2.14.0""#),
            ["v2.13.0", "v2.13.1"]
        );
        let s = select(
            &listed(),
            &glob("v2.*"),
            &rules(r#"semver=">=2.13.0, <2.14.0""#),
        );
        assert!(
            s.excluded
                .contains(&("v2.13.2-rc1".into(), Excluded::Prerelease))
        );
        assert!(
            s.excluded
                .contains(&("v2.12.9".into(), Excluded::OutOfRange))
        );
    }

    #[test]
    fn prereleases_when_asked_for() {
        assert_eq!(
            chosen("v2.*", r#"semver=">=2.13.0, <2.14.0" prerelease=true"#),
            ["v2.13.0", "v2.13.1", "v2.13.2-rc1"]
        );
        // Without semver or latest pre-releases count; prerelease=false drops them.
        assert_eq!(chosen("v2.14*", ""), ["v2.14.0-rc1", "v2.14.0"]);
        assert_eq!(chosen("v2.14*", "prerelease=false"), ["v2.14.0"]);
    }

    #[test]
    fn latest_keeps_the_highest_versions_and_never_other_tags() {
        assert_eq!(
            chosen("*", r#"semver="^1.25" latest=3 exclude="*-perl,*-otel""#),
            ["1.25.3", "1.26.0", "1.25"]
        );
        assert_eq!(chosen("*", "latest=2"), ["v2.13.1", "v2.14.0"]);
        let s = select(&listed(), &glob("*"), &rules("latest=2"));
        assert!(
            s.excluded
                .contains(&("latest".into(), Excluded::NotAVersion))
        );
        assert!(s.excluded.contains(&("v2.13.0".into(), Excluded::Older(2))));
    }

    #[test]
    fn regex_and_exclude_filter_further() {
        assert_eq!(
            chosen(
                "v*",
                r#"regex="^v[0-9]+\.[0-9]+\.[0-9]+$" exclude="v2.12*""#
            ),
            ["v2.13.0", "v2.13.1", "v2.14.0"]
        );
        // Unanchored unless anchored.
        assert_eq!(chosen("*", r#"regex="abc""#), ["sha-abc"]);
    }

    proptest! {
        #[test]
        fn selection_is_deterministic_and_latest_is_a_bound(
            mut tags in proptest::collection::vec("v?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(-rc[0-9])?|[a-z]{1,5}", 0..30),
            n in 1usize..6,
            seed in any::<u64>(),
        ) {
            tags.sort();
            tags.dedup();
            let rules = rules(&format!("latest={n} prerelease=true"));
            let first = select(&tags, &TagPattern::all(), &rules);
            prop_assert!(first.selected.len() <= n);
            let mut shuffled = tags.clone();
            fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
            let mut again = select(&shuffled, &TagPattern::all(), &rules).selected;
            let mut expected = first.selected.clone();
            again.sort();
            expected.sort();
            prop_assert_eq!(again, expected);
            prop_assert_eq!(first.selected.len() + first.excluded.len(), tags.len());
        }
    }
}
