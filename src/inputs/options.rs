//! The options a mapping line carries in a trailing comment, behind a marker:
//!
//! ```text
//! quay.io/org/app:v* mirror.example.com/org/app  # image-mirror: semver="^1.25" latest=3 immutable
//! ```
//!
//! `oc image mirror` drops everything from `#` on, so a file with options stays valid for oc
//! (which then mirrors a superset, never something different in silence). A comment without
//! the marker stays a comment.

use crate::model::reference::TagPattern;
use crate::model::rules::{LineRules, Lister, Platforms};

/// What starts an options comment (after `#` and optional blanks).
pub const MARKER: &str = "image-mirror:";

/// A line's options, or what is wrong with them (byte offsets into the line).
#[derive(Debug, Default)]
pub struct ParsedOptions {
    pub rules: LineRules,
    /// Where the first tag-selection option stands: they make sense on wildcard sources only.
    pub selection_at: Option<usize>,
    /// Where the first repository option stands: they make sense on repository wildcards
    /// only.
    pub repos_at: Option<usize>,
    pub errors: Vec<(usize, String)>,
}

/// The options in `comment` (the text after `#`), which starts at byte `start` of its line;
/// `None` when the comment has no marker.
pub fn parse_options(comment: &str, start: usize) -> Option<ParsedOptions> {
    let trimmed = comment.trim_start();
    let rest = trimmed.strip_prefix(MARKER)?;
    let mut offset = start + (comment.len() - trimmed.len()) + MARKER.len();
    let mut parsed = ParsedOptions::default();
    parsed.rules.written = rest.trim().to_owned();
    let mut text = rest;
    loop {
        let blank = text.len() - text.trim_start().len();
        text = &text[blank..];
        offset += blank;
        if text.is_empty() {
            break;
        }
        let (item, len) = match next_item(text) {
            Ok(found) => found,
            Err(message) => {
                parsed.errors.push((offset, message));
                break;
            }
        };
        if let Err(message) = apply(&mut parsed, offset, &item) {
            parsed.errors.push((offset, message));
        }
        text = &text[len..];
        offset += len;
    }
    Some(parsed)
}

/// One `name`, `name=value` or `name="value"`: the name, the value, and the bytes taken.
struct Item {
    name: String,
    value: Option<String>,
}

fn next_item(text: &str) -> Result<(Item, usize), String> {
    let name_end = text.find(['=', ' ', '\t']).unwrap_or(text.len());
    let name = text[..name_end].to_owned();
    if !text[name_end..].starts_with('=') {
        return Ok((Item { name, value: None }, name_end));
    }
    let after = &text[name_end + 1..];
    if let Some(quoted) = after.strip_prefix('"') {
        let close = quoted
            .find('"')
            .ok_or_else(|| format!("{name}: unclosed quote"))?;
        let taken = name_end + 2 + close + 1;
        return Ok((
            Item {
                name,
                value: Some(quoted[..close].to_owned()),
            },
            taken,
        ));
    }
    let end = after.find([' ', '\t']).unwrap_or(after.len());
    Ok((
        Item {
            name,
            value: Some(after[..end].to_owned()),
        },
        name_end + 1 + end,
    ))
}

/// Records one option; what is wrong with it, if anything.
fn apply(parsed: &mut ParsedOptions, offset: usize, item: &Item) -> Result<(), String> {
    let name = item.name.as_str();
    let value = || {
        item.value
            .as_deref()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("option {name} needs a value ({name}=…)"))
    };
    let rules = &mut parsed.rules;
    let selection = matches!(
        name,
        "semver" | "prerelease" | "latest" | "exclude" | "regex"
    );
    match name {
        "semver" => {
            let text = value()?;
            let req = semver::VersionReq::parse(text)
                .map_err(|e| format!("semver={text:?} is not a version range: {e}"))?;
            rules.tags.semver = Some(req);
        }
        "prerelease" => {
            let on = match item.value.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => return Err(format!("prerelease={other:?}: expected true or false")),
            };
            rules.tags.prerelease = Some(on);
        }
        "latest" => {
            let text = value()?;
            let n: usize = text
                .parse()
                .map_err(|_| format!("latest={text:?}: expected a whole number of tags"))?;
            if n == 0 {
                return Err("latest=0 would mirror nothing: give at least 1".to_owned());
            }
            rules.tags.latest = Some(n);
        }
        "exclude" => {
            for glob in value()?.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                let pattern =
                    TagPattern::parse(glob).map_err(|e| format!("exclude: {}", e.message))?;
                rules.tags.exclude.push(pattern);
            }
        }
        "regex" => {
            let text = value()?;
            let re = regex::Regex::new(text)
                .map_err(|e| format!("regex={text:?} is not a regular expression: {e}"))?;
            rules.tags.regex = Some(re);
        }
        "lister" => {
            let text = value()?;
            let lister = Lister::parse(text).ok_or_else(|| {
                format!("lister={text:?}: expected catalog, dockerhub, quay or index")
            })?;
            rules.repos.lister = Some(lister);
        }
        "repos-regex" => {
            let text = value()?;
            let re = regex::Regex::new(text)
                .map_err(|e| format!("repos-regex={text:?} is not a regular expression: {e}"))?;
            rules.repos.regex = Some(re);
        }
        "min-age" => {
            let text = value()?;
            rules.min_age =
                Some(crate::duration::parse(text).map_err(|e| format!("min-age: {e}"))?);
        }
        "immutable" => match item.value.as_deref() {
            None | Some("true") => rules.immutable = true,
            Some("false") => rules.immutable = false,
            Some(other) => return Err(format!("immutable={other:?}: expected true or false")),
        },
        "platforms" => {
            let listed: Vec<String> = value()?
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = listed.iter().find(|p| !is_platform(p)) {
                return Err(format!(
                    "platforms: {bad:?} is not os/arch or os/arch/variant"
                ));
            }
            rules.platforms = Some(Platforms::new(listed)?);
        }
        _ => {
            return Err(format!(
                "unknown option {name:?} (options: semver, prerelease, latest, exclude, regex, immutable, platforms, min-age, lister, repos-regex)"
            ));
        }
    }
    if selection && parsed.selection_at.is_none() {
        parsed.selection_at = Some(offset);
    }
    if matches!(name, "lister" | "repos-regex") && parsed.repos_at.is_none() {
        parsed.repos_at = Some(offset);
    }
    Ok(())
}

fn is_platform(text: &str) -> bool {
    let parts: Vec<&str> = text.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(comment: &str) -> ParsedOptions {
        parse_options(comment, 10).unwrap_or_else(|| panic!("no marker in {comment:?}"))
    }

    #[test]
    fn a_comment_without_the_marker_is_a_comment() {
        assert!(parse_options(" just a note: semver=1", 0).is_none());
        assert!(parse_options("image-mirror", 0).is_none());
    }

    #[test]
    fn every_option_is_read() {
        let p = parse(
            r#" image-mirror: semver=">=2.13.0, <2.14.0" prerelease=true latest=3 exclude="*-perl,*-otel" regex="^v[0-9]+$" immutable platforms=linux/amd64,linux/arm/v7 min-age=2d12h"#,
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let t = &p.rules.tags;
        assert_eq!(
            t.semver.as_ref().map(|r| r.to_string()).as_deref(),
            Some(">=2.13.0, <2.14.0")
        );
        assert_eq!(t.prerelease, Some(true));
        assert_eq!(t.latest, Some(3));
        assert_eq!(t.exclude.len(), 2);
        assert!(t.regex.is_some());
        assert!(p.rules.immutable);
        assert_eq!(
            p.rules.platforms.map(|p| p.listed),
            Some(vec!["linux/amd64".to_owned(), "linux/arm/v7".to_owned()])
        );
        assert_eq!(p.selection_at, Some(10 + 15));
        assert_eq!(
            p.rules.min_age,
            Some(std::time::Duration::from_secs(60 * 3600))
        );
    }

    #[test]
    fn mistakes_are_errors_at_their_place() {
        let cases = [
            (" image-mirror: colour=red", "unknown option"),
            (
                " image-mirror: semver=\"not a range\"",
                "not a version range",
            ),
            (" image-mirror: latest=0", "latest=0"),
            (" image-mirror: latest=many", "whole number"),
            (" image-mirror: regex=\"(\"", "not a regular expression"),
            (" image-mirror: exclude=\"[\"", "exclude"),
            (" image-mirror: platforms=linux", "not os/arch"),
            (" image-mirror: semver=\"^1", "unclosed quote"),
            (" image-mirror: prerelease=maybe", "true or false"),
            (" image-mirror: semver", "needs a value"),
            (" image-mirror: min-age=3days", "unknown unit \"days\""),
            (" image-mirror: min-age=", "needs a value"),
        ];
        for (comment, expected) in cases {
            let p = parse(comment);
            assert_eq!(p.errors.len(), 1, "{comment}: {:?}", p.errors);
            assert!(
                p.errors[0].1.contains(expected),
                "{comment}: {:?}",
                p.errors
            );
            assert_eq!(p.errors[0].0, 10 + 15, "{comment}");
        }
        let p = parse(" image-mirror: immutable colour=red");
        assert_eq!(p.errors[0].0, 10 + 25);
    }
}
