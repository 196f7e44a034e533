//! Repository wildcards: a source path with `*` (within one path segment) or `**` (across
//! segments) that selects repositories of a registry, and the destination template whose
//! wildcards take, in order, what the source's matched — so `quay.io/team/*` can land in
//! `mirror.example.com/ecr/team/*`.

use std::fmt;

use super::parse::ParseError;
use super::reference::{Host, Repository, parse_name};

/// Repositories of one registry whose paths match a glob. Boxed: rare, and held in a
/// variant of the mapping-file parser's `Mapping` that would otherwise set the size of every
/// mapping.
#[derive(Debug, Clone)]
pub struct RepoPattern(Box<Parts>);

#[derive(Debug, Clone)]
struct Parts {
    host: Host,
    /// The path as written (Docker Hub's `library/` added where docker adds it).
    path: String,
    matcher: regex::Regex,
    wildcards: usize,
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.host == other.0.host && self.0.path == other.0.path
    }
}

impl Eq for RepoPattern {}

impl RepoPattern {
    /// Parses `[host[:port]/]path-with-wildcards` (no tag, no digest).
    pub fn parse(name: &str) -> Result<RepoPattern, ParseError> {
        let (host, path) = normalized(name)?;
        let mut pattern = String::from("^");
        let mut wildcards = 0;
        let mut rest = path.as_str();
        while let Some(i) = rest.find('*') {
            pattern.push_str(&regex::escape(&rest[..i]));
            if rest[i..].starts_with("**") {
                pattern.push_str("(.+)");
                rest = &rest[i + 2..];
            } else {
                pattern.push_str("([^/]+)");
                rest = &rest[i + 1..];
            }
            wildcards += 1;
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let matcher = regex::Regex::new(&pattern)
            .map_err(|e| ParseError::at(0, format!("repository pattern {name:?}: {e}")))?;
        Ok(RepoPattern(Box::new(Parts {
            host,
            path,
            matcher,
            wildcards,
        })))
    }

    pub fn registry(&self) -> &Host {
        &self.0.host
    }

    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// How many `*` and `**` the path holds.
    pub fn wildcards(&self) -> usize {
        self.0.wildcards
    }

    /// What the wildcards matched of `path`, in order; `None` when it does not match.
    pub fn captures(&self, path: &str) -> Option<Vec<String>> {
        let caps = self.0.matcher.captures(path)?;
        Some(
            caps.iter()
                .skip(1)
                .map(|c| c.map_or(String::new(), |m| m.as_str().to_owned()))
                .collect(),
        )
    }

    /// The literal start of the path, up to its last `/` before the first wildcard: every
    /// match starts with it, so a listing may begin there.
    pub fn literal_prefix(&self) -> &str {
        let path = self.path();
        let first = path.find('*').unwrap_or(path.len());
        let head = &path[..first];
        &head[..head.rfind('/').map_or(0, |i| i + 1)]
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.host, self.0.path)
    }
}

/// A destination path with wildcards, filled from what a [`RepoPattern`] matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoTemplate {
    host: Host,
    path: String,
}

impl RepoTemplate {
    pub fn parse(name: &str) -> Result<RepoTemplate, ParseError> {
        let (host, path) = normalized(name)?;
        Ok(RepoTemplate { host, path })
    }

    pub fn registry(&self) -> &Host {
        &self.host
    }

    pub fn wildcards(&self) -> usize {
        let mut count = 0;
        let mut rest = self.path.as_str();
        while let Some(i) = rest.find('*') {
            count += 1;
            let skip = if rest[i..].starts_with("**") { 2 } else { 1 };
            rest = &rest[i + skip..];
        }
        count
    }

    /// The repository for one match: each wildcard replaced by its capture, in order.
    pub fn fill(&self, captures: &[String]) -> Result<Repository, ParseError> {
        let mut path = String::new();
        let mut rest = self.path.as_str();
        let mut taken = captures.iter();
        while let Some(i) = rest.find('*') {
            path.push_str(&rest[..i]);
            path.push_str(taken.next().map_or("", String::as_str));
            let skip = if rest[i..].starts_with("**") { 2 } else { 1 };
            rest = &rest[i + skip..];
        }
        path.push_str(rest);
        parse_name(&format!("{}/{path}", self.host))
    }
}

impl fmt::Display for RepoTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// The host and path of a name with wildcards, validated as a repository name would be with
/// each wildcard standing for a letter, and normalized the same way.
fn normalized(name: &str) -> Result<(Host, String), ParseError> {
    let stand_in = name.replace('*', "a");
    let repository = parse_name(&stand_in)?;
    let written_path = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            rest
        }
        _ => name,
    };
    // Docker Hub's one-segment names gain `library/`, as parse_name gives them.
    let path = match repository.path().len() - written_path.len() {
        0 => written_path.to_owned(),
        _ => format!("library/{written_path}"),
    };
    Ok((repository.registry().clone(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> RepoPattern {
        RepoPattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn one_star_stays_in_its_segment_two_cross_segments() {
        let p = pattern("registry.example.com/myproject/*");
        assert_eq!(p.registry(), "registry.example.com");
        assert_eq!(p.captures("myproject/app"), Some(vec!["app".to_owned()]));
        assert_eq!(p.captures("myproject/a/b"), None);
        assert_eq!(p.captures("other/app"), None);
        let deep = pattern("registry.example.com/myproject/**");
        assert_eq!(deep.captures("myproject/a/b"), Some(vec!["a/b".to_owned()]));
        let partial = pattern("docker.io/jenkins/jnlp-*");
        assert_eq!(
            partial.captures("jenkins/jnlp-agent"),
            Some(vec!["agent".to_owned()])
        );
        assert_eq!(partial.literal_prefix(), "jenkins/");
        assert_eq!(deep.literal_prefix(), "myproject/");
        assert_eq!(pattern("r.io/*/x").literal_prefix(), "");
    }

    #[test]
    fn templates_take_the_captures_in_order() {
        let p = pattern("src.io/team/*/**");
        let t = RepoTemplate::parse("dst.io/mirror/*/x/**").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.wildcards(), 2);
        let caps = p.captures("team/a/b/c").unwrap_or_default();
        assert_eq!(
            t.fill(&caps).map(|r| r.to_string()).ok().as_deref(),
            Some("dst.io/mirror/a/x/b/c")
        );
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(RepoPattern::parse("src.io/Team/*").is_err());
        assert!(RepoPattern::parse("src.io/team/*!").is_err());
        assert_eq!(pattern("myorg/*").registry(), "docker.io");
        assert_eq!(pattern("docker.io/*").path(), "library/*");
    }
}
