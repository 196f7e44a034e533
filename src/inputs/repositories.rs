//! The mapping grammar's repository wildcards, an image-mirror extension (oc rejects a `*`
//! outside the tag, so such a line fails loudly there): `SRC/team/*[:TAGS] DST/mirror/*`.
//! The source's `*` (one path segment) and `**` (several) select repositories; the
//! destination's wildcards, as many, take what they matched.

use super::mapping::{LineContext, Mapping, ParsedLine, Token};
use crate::model::diagnostics::Located;
use crate::model::reference::TagPattern;
use crate::model::repo_pattern::{RepoPattern, RepoTemplate};

/// Whether a reference's repository part (not its tag) holds a `*`.
pub fn has_repository_wildcard(text: &str) -> bool {
    name_part(text).0.contains('*')
}

/// The repository part of a reference, and its tag text if it has one.
fn name_part(text: &str) -> (&str, Option<&str>) {
    let name_and_tag = text.split('@').next().unwrap_or(text);
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    match name_and_tag[last_slash..].find(':') {
        Some(colon) => (
            &name_and_tag[..last_slash + colon],
            Some(&name_and_tag[last_slash + colon + 1..]),
        ),
        None => (name_and_tag, None),
    }
}

pub(super) fn parse_repositories_mapping(
    ctx: &LineContext<'_>,
    src: Token<'_>,
    dsts: &[Token<'_>],
    out: &mut ParsedLine,
) {
    let before = out.diagnostics.len();
    let source = source(ctx, src, out);
    let targets: Vec<Located<RepoTemplate>> = dsts
        .iter()
        .filter_map(|&dst| target(ctx, src, source.as_ref(), dst, out))
        .collect();
    let Some((pattern, tags)) = source else {
        return;
    };
    if out.diagnostics[before..].iter().any(|d| d.is_error()) {
        return;
    }
    out.mappings.push(Mapping::Repositories {
        source: Located {
            value: pattern,
            location: ctx.location(src.offset),
        },
        pattern: tags,
        targets,
        rules: ctx.rules(),
    });
}

/// The source's repository pattern and tag pattern.
fn source(
    ctx: &LineContext<'_>,
    src: Token<'_>,
    out: &mut ParsedLine,
) -> Option<(RepoPattern, TagPattern)> {
    if let Some(at) = src.text.find('@') {
        out.diagnostics.push(ctx.error(
            src.offset + at,
            format!("{:?}: a repository wildcard cannot have a digest", src.text),
        ));
        return None;
    }
    let (name, tag) = name_part(src.text);
    let pattern = match RepoPattern::parse(name) {
        Ok(p) => p,
        Err(e) => {
            out.diagnostics.push(ctx.error(
                src.offset + e.offset,
                format!("{:?}: {}", src.text, e.message),
            ));
            return None;
        }
    };
    let tags = match tag {
        None => TagPattern::all(),
        Some(text) => match TagPattern::parse(text) {
            Ok(p) => p,
            Err(e) => {
                out.diagnostics.push(ctx.error(
                    src.offset + name.len() + 1 + e.offset,
                    format!("{:?}: {}", src.text, e.message),
                ));
                return None;
            }
        },
    };
    Some((pattern, tags))
}

/// One destination template: as many wildcards as the source, no tag but `*`, no digest.
fn target(
    ctx: &LineContext<'_>,
    src: Token<'_>,
    source: Option<&(RepoPattern, TagPattern)>,
    dst: Token<'_>,
    out: &mut ParsedLine,
) -> Option<Located<RepoTemplate>> {
    if let Some(at) = dst.text.find('@') {
        out.diagnostics.push(ctx.error(
            dst.offset + at,
            format!("{:?}: a destination cannot have a digest", dst.text),
        ));
        return None;
    }
    let (name, tag) = name_part(dst.text);
    if let Some(tag) = tag
        && tag != "*"
    {
        out.diagnostics.push(ctx.error(
            dst.offset + name.len() + 1,
            format!(
                "{:?}: repositories matched by {:?} keep their tags; a destination tag can only be `*`",
                dst.text, src.text
            ),
        ));
        return None;
    }
    let template = match RepoTemplate::parse(name) {
        Ok(t) => t,
        Err(e) => {
            out.diagnostics.push(ctx.error(
                dst.offset + e.offset,
                format!("{:?}: {}", dst.text, e.message),
            ));
            return None;
        }
    };
    let wanted = source.map_or(0, |(p, _)| p.wildcards());
    if source.is_some() && template.wildcards() != wanted {
        out.diagnostics.push(ctx.error(
            dst.offset,
            format!(
                "{:?} has {} wildcard(s) but the source {:?} has {wanted}: each `*` or `**` of the destination takes what one of the source's matched, in order",
                dst.text,
                template.wildcards(),
                src.text
            ),
        ));
        return None;
    }
    Some(Located {
        value: template,
        location: ctx.location(dst.offset),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::mapping::parse_text;
    use std::sync::Arc;

    fn parse(text: &str) -> ParsedLine {
        parse_text(&Arc::from("m"), text)
    }

    #[test]
    fn a_repository_wildcard_line() {
        let p = parse("registry.example.com/myproject/*:v1.* mirror.example.com/ecr/myproject/*\n");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let Some(Mapping::Repositories {
            source,
            pattern,
            targets,
            ..
        }) = p.mappings.first()
        else {
            panic!("{:?}", p.mappings)
        };
        assert_eq!(source.value.to_string(), "registry.example.com/myproject/*");
        assert!(pattern.is_match("v1.2") && !pattern.is_match("v2.0"));
        assert_eq!(
            targets[0].value.to_string(),
            "mirror.example.com/ecr/myproject/*"
        );
    }

    #[test]
    fn mistakes_are_errors_at_their_place() {
        let cases = [
            ("src.io/team/* dst.io/mirror/app\n", "has 0 wildcard(s)"),
            ("src.io/team/app:* dst.io/mirror/*\n", "has none"),
            (
                "src.io/team/*@sha256:0123456789012345678901234567890123456789012345678901234567890123 dst.io/m/*\n",
                "cannot have a digest",
            ),
            ("src.io/team/* dst.io/m/*:v1\n", "can only be `*`"),
            ("src.io/Team/* dst.io/m/*\n", "lowercase"),
            (
                "src.io/team/app:v1 dst.io/m/app:v1  # image-mirror: lister=catalog\n",
                "repository wildcard",
            ),
        ];
        for (text, expected) in cases {
            let p = parse(text);
            assert!(
                p.diagnostics
                    .iter()
                    .any(|d| d.is_error() && d.message.contains(expected)),
                "{text}: {:?}",
                p.diagnostics
            );
            assert!(p.mappings.is_empty(), "{text}");
        }
    }
}
