//! Rules a mapping line can carry beyond oc's grammar (in a trailing `# image-mirror:`
//! comment): which tags of a wildcard source to mirror, and how its images may be written.
//! Pure values; parsed with the mapping files, applied by the planner (selection) and the
//! copy algorithm (immutable tags, platforms).

use std::sync::Arc;

use super::reference::TagPattern;

/// Which of a wildcard source's tags to mirror, after its glob. Empty: all of them.
#[derive(Debug, Clone, Default)]
pub struct TagRules {
    /// Only versions (see [`version_of`]) in this range.
    pub semver: Option<semver::VersionReq>,
    /// Whether pre-release versions count; `None`: they do unless `semver` or `latest` is
    /// given.
    pub prerelease: Option<bool>,
    /// Of the tags left, the N highest versions.
    pub latest: Option<usize>,
    /// Tags matching any of these are left out.
    pub exclude: Vec<TagPattern>,
    /// Only tags this matches (anchored only if the user anchored it).
    pub regex: Option<regex::Regex>,
}

impl TagRules {
    pub fn is_empty(&self) -> bool {
        self.semver.is_none()
            && self.prerelease.is_none()
            && self.latest.is_none()
            && self.exclude.is_empty()
            && self.regex.is_none()
    }

    /// Whether pre-release versions are kept.
    pub fn prereleases(&self) -> bool {
        self.prerelease
            .unwrap_or(self.semver.is_none() && self.latest.is_none())
    }

    /// Whether tags that are not versions are left out.
    pub fn versions_only(&self) -> bool {
        self.semver.is_some() || self.latest.is_some()
    }
}

/// Everything a line's `# image-mirror:` comment says. Shared by every copy the line makes.
/// Two are equal when they were written alike.
#[derive(Debug, Clone, Default)]
pub struct LineRules {
    /// The options as written, for messages (and equality).
    pub written: String,
    pub tags: TagRules,
    /// A destination tag that exists with another digest is never overwritten.
    pub immutable: bool,
    /// Only these platforms of an index are mirrored.
    pub platforms: Option<Platforms>,
    /// For a repository wildcard: how its repositories are listed, and a further filter.
    pub repos: RepoRules,
    /// `min-age=`: a new source tag is mirrored only once seen at the same digest this long.
    pub min_age: Option<std::time::Duration>,
}

/// How a repository wildcard's candidates are found and filtered.
#[derive(Debug, Clone, Default)]
pub struct RepoRules {
    /// The lister to use; `None`: chosen by registry.
    pub lister: Option<Lister>,
    /// Only repository paths this matches (anchored only if the user anchored it).
    pub regex: Option<regex::Regex>,
}

impl RepoRules {
    pub fn is_empty(&self) -> bool {
        self.lister.is_none() && self.regex.is_none()
    }
}

/// A way to list a registry's repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lister {
    /// `GET /v2/_catalog` with `Link` pagination (distribution, Harbor, GCR, …).
    Catalog,
    /// Docker Hub's repositories API for a namespace.
    DockerHub,
    /// quay.io's repository API for a namespace.
    Quay,
    /// A registry's search endpoint (`GET /v1/search?q=`).
    Index,
}

impl Lister {
    pub fn parse(text: &str) -> Option<Lister> {
        match text {
            "catalog" => Some(Lister::Catalog),
            "dockerhub" => Some(Lister::DockerHub),
            "quay" => Some(Lister::Quay),
            "index" => Some(Lister::Index),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lister::Catalog => "catalog",
            Lister::DockerHub => "dockerhub",
            Lister::Quay => "quay",
            Lister::Index => "index",
        }
    }
}

impl PartialEq for LineRules {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl Eq for LineRules {}

impl LineRules {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && !self.immutable && self.platforms.is_none() && self.repos.is_empty()
    }
}

/// A platform subset, `os/arch[/variant]` each; a platform without variant matches every
/// variant of its architecture.
#[derive(Debug, Clone)]
pub struct Platforms {
    pub listed: Vec<String>,
    /// Matches an index child's `os/arch[/variant]` label.
    pub matcher: Arc<regex::Regex>,
}

impl Platforms {
    pub fn new(listed: Vec<String>) -> Result<Platforms, String> {
        let alternatives: Vec<String> = listed
            .iter()
            .map(|p| {
                let escaped = regex::escape(p);
                if p.matches('/').count() == 1 {
                    format!("{escaped}(/.*)?")
                } else {
                    escaped
                }
            })
            .collect();
        let matcher = regex::Regex::new(&format!("^({})$", alternatives.join("|")))
            .map_err(|e| e.to_string())?;
        Ok(Platforms {
            listed,
            matcher: Arc::new(matcher),
        })
    }
}

/// A tag read as a semantic version: an optional leading `v`, one to three numbers (`1.2`
/// is `1.2.0`), then the usual `-pre-release` and `+build`. `None` for anything else.
pub fn version_of(tag: &str) -> Option<semver::Version> {
    let text = tag
        .strip_prefix('v')
        .or_else(|| tag.strip_prefix('V'))
        .unwrap_or(tag);
    let core_end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(core_end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut numbers = parts.clone();
    numbers.resize(3, "0");
    semver::Version::parse(&format!("{}{rest}", numbers.join("."))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_read_as_versions() {
        let v = |t: &str| version_of(t).map(|v| v.to_string());
        assert_eq!(v("v2.13.1").as_deref(), Some("2.13.1"));
        assert_eq!(v("1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v("1").as_deref(), Some("1.0.0"));
        assert_eq!(v("v1.2.3-rc1").as_deref(), Some("1.2.3-rc1"));
        assert_eq!(v("1.25-perl").as_deref(), Some("1.25.0-perl"));
        assert_eq!(v("1.2.3+build.4").as_deref(), Some("1.2.3+build.4"));
        for not in [
            "latest", "main", "sha-abc", "1.2.3.4", "v", "1..2", "01.2.3", "",
        ] {
            assert_eq!(v(not), None, "{not}");
        }
    }

    #[test]
    fn platforms_without_variant_match_every_variant() {
        let p = Platforms::new(vec!["linux/amd64".into(), "linux/arm/v7".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(p.matcher.is_match("linux/amd64"));
        assert!(p.matcher.is_match("linux/amd64/v3"));
        assert!(p.matcher.is_match("linux/arm/v7"));
        assert!(!p.matcher.is_match("linux/arm/v6"));
        assert!(!p.matcher.is_match("linux/arm64"));
        assert!(!p.matcher.is_match("windows/amd64"));
    }
}
