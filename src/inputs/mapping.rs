//! The mapping-file grammar of `oc image mirror -f`, one line at a time.
//!
//! A line is `SRC DST [DST ...]` (spaces or tabs), or one or more `SRC=DST` pairs. `#` starts
//! a comment. Each source becomes one [`Mapping`], which only holds combinations that can be
//! mirrored: a wildcard source goes to repositories, a single image to explicit tags.

use std::cell::RefCell;
use std::sync::Arc;

use super::options::{ParsedOptions, parse_options};
use super::repositories::{has_repository_wildcard, parse_repositories_mapping};
use crate::model::diagnostics::{Diagnostic, Located, Location};
use crate::model::image::{Pin, SourceImage, Target};
use crate::model::intern::Interner;
use crate::model::reference::{
    ManifestRef, ParseError, Reference, Repository, TagPattern, TagSpec,
};
use crate::model::repo_pattern::{RepoPattern, RepoTemplate};
use crate::model::rules::LineRules;

/// One source and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// One image to one or more destination tags.
    Image {
        source: Located<SourceImage>,
        targets: Vec<Located<Target>>,
        rules: Arc<LineRules>,
    },
    /// Every tag of `repository` matching `pattern` (and its rules), each keeping its name in
    /// every target.
    Wildcard {
        repository: Located<Repository>,
        pattern: TagPattern,
        targets: Vec<Located<Repository>>,
        rules: Arc<LineRules>,
    },
    /// Every repository `source` matches (once listed), each as a [`Mapping::Wildcard`] of
    /// `pattern` into the targets filled with what the source's wildcards matched.
    Repositories {
        source: Located<RepoPattern>,
        pattern: TagPattern,
        targets: Vec<Located<RepoTemplate>>,
        rules: Arc<LineRules>,
    },
}

impl Mapping {
    pub fn location(&self) -> &Location {
        match self {
            Mapping::Image { source, .. } => &source.location,
            Mapping::Wildcard { repository, .. } => &repository.location,
            Mapping::Repositories { source, .. } => &source.location,
        }
    }

    /// What the line's `# image-mirror:` comment says (nothing, for most lines).
    pub fn rules(&self) -> &Arc<LineRules> {
        match self {
            Mapping::Image { rules, .. }
            | Mapping::Wildcard { rules, .. }
            | Mapping::Repositories { rules, .. } => rules,
        }
    }
}

/// The mappings and diagnostics of one line.
#[derive(Debug, Default)]
pub struct ParsedLine {
    pub mappings: Vec<Mapping>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A whitespace-separated word of a line and the byte offset where it starts.
#[derive(Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) text: &'a str,
    pub(super) offset: usize,
}

pub(super) struct LineContext<'a> {
    file: &'a Arc<str>,
    line_no: usize,
    line: &'a str,
    /// The hosts, repositories and tag patterns of the file's lines so far: each parsed and
    /// stored once.
    names: &'a RefCell<Interner<'a>>,
    /// The line's `# image-mirror:` options, if it has any.
    pub(super) options: Option<ParsedOptions>,
}

impl LineContext<'_> {
    /// The rules every mapping of this line carries.
    pub(super) fn rules(&self) -> Arc<LineRules> {
        // Most lines have none: they share one empty set (100,000 lines, 100,000 fewer
        // allocations).
        static NONE: std::sync::LazyLock<Arc<LineRules>> = std::sync::LazyLock::new(Arc::default);
        match &self.options {
            Some(o) => Arc::new(o.rules.clone()),
            None => NONE.clone(),
        }
    }
}

impl LineContext<'_> {
    pub(super) fn location(&self, byte_offset: usize) -> Location {
        let column = self
            .line
            .get(..byte_offset)
            .map_or(byte_offset, |s| s.chars().count())
            + 1;
        Location {
            file: self.file.clone(),
            line: u32::try_from(self.line_no).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
    pub(super) fn error(&self, byte_offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.location(byte_offset), message)
    }
}

/// Parses one line (without its line end; a trailing `\r` is ignored).
pub fn parse_line(file: &Arc<str>, line_no: usize, line: &str) -> ParsedLine {
    let mut out = ParsedLine::default();
    parse_line_into(file, line_no, line, &RefCell::default(), &mut out);
    out
}

/// Parses one line into `out`, after what earlier lines put there, sharing names with them.
fn parse_line_into<'a>(
    file: &'a Arc<str>,
    line_no: usize,
    line: &'a str,
    names: &'a RefCell<Interner<'a>>,
    out: &mut ParsedLine,
) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let hash = line.find('#');
    let content = hash.map_or(line, |i| &line[..i]);
    let ctx = LineContext {
        file,
        line_no,
        line,
        names,
        options: hash.and_then(|i| parse_options(&line[i + 1..], i + 1)),
    };
    let tokens = tokenize(content);
    if let Some(options) = &ctx.options {
        for (offset, message) in &options.errors {
            out.diagnostics.push(ctx.error(*offset, message.clone()));
        }
        if tokens.is_empty() {
            out.diagnostics.push(ctx.error(
                hash.unwrap_or(0),
                "image-mirror options on a line without a mapping: put them after the mapping they belong to",
            ));
        }
    }
    if tokens.is_empty() {
        return;
    }
    let pairs: Vec<&Token<'_>> = tokens.iter().filter(|t| t.text.contains('=')).collect();
    if pairs.is_empty() {
        if tokens.len() == 1 {
            out.diagnostics.push(ctx.error(
                tokens[0].offset,
                format!(
                    "{:?} has no destination: write SRC DST [DST ...] or SRC=DST",
                    tokens[0].text
                ),
            ));
            return;
        }
        parse_mapping(&ctx, tokens[0], &tokens[1..], out);
        return;
    }
    if pairs.len() != tokens.len() {
        for bare in tokens.iter().filter(|t| !t.text.contains('=')) {
            out.diagnostics.push(ctx.error(
                bare.offset,
                format!(
                    "{:?} mixes a bare reference with SRC=DST pairs on one line (oc would silently drop it): put it on its own line",
                    bare.text
                ),
            ));
        }
        return;
    }
    for pair in pairs {
        let (src, dst) = pair.text.split_once('=').unwrap_or((pair.text, ""));
        if src.is_empty() || dst.is_empty() || dst.contains('=') {
            out.diagnostics.push(ctx.error(
                pair.offset,
                format!("{:?} is not a SRC=DST pair", pair.text),
            ));
            continue;
        }
        let src_tok = Token {
            text: src,
            offset: pair.offset,
        };
        let dst_tok = Token {
            text: dst,
            offset: pair.offset + src.len() + 1,
        };
        parse_mapping(&ctx, src_tok, &[dst_tok], out);
    }
}

fn tokenize(content: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, b) in content.bytes().enumerate() {
        let blank = b == b' ' || b == b'\t';
        match (blank, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                tokens.push(Token {
                    text: &content[s..i],
                    offset: s,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push(Token {
            text: &content[s..],
            offset: s,
        });
    }
    tokens
}

fn parse_reference<'a>(
    ctx: &LineContext<'a>,
    token: Token<'a>,
    out: &mut ParsedLine,
) -> Option<Reference> {
    let parsed = Reference::parse_in(token.text, &mut ctx.names.borrow_mut());
    match parsed {
        Ok(r) => Some(r),
        Err(ParseError { offset, message }) => {
            out.diagnostics.push(ctx.error(
                token.offset + offset,
                format!("{:?}: {message}", token.text),
            ));
            None
        }
    }
}

enum ParsedSource {
    Image(SourceImage),
    Wildcard(Repository, TagPattern),
}

fn parse_mapping<'a>(
    ctx: &LineContext<'a>,
    src: Token<'a>,
    dsts: &[Token<'a>],
    out: &mut ParsedLine,
) {
    if has_repository_wildcard(src.text) {
        parse_repositories_mapping(ctx, src, dsts, out);
        return;
    }
    if let Some(dst) = dsts.iter().find(|d| has_repository_wildcard(d.text)) {
        out.diagnostics.push(ctx.error(
            dst.offset + dst.text.find('*').unwrap_or(0),
            format!(
                "{:?}: a `*` in a destination repository takes what a `*` in the source repository matched, and {:?} has none",
                dst.text, src.text
            ),
        ));
        return;
    }
    if let Some(at) = ctx.options.as_ref().and_then(|o| o.repos_at) {
        out.diagnostics.push(ctx.error(
            at,
            format!(
                "{:?} is no repository wildcard: lister and repos-regex choose among the repositories a `*` in the source's path matches",
                src.text
            ),
        ));
        return;
    }
    let before = out.diagnostics.len();
    let source = parse_reference(ctx, src, out).and_then(|r| classify_source(ctx, src, r, out));
    let mut destinations = Vec::with_capacity(dsts.len());
    for &dst in dsts {
        if let Some(reference) = parse_reference(ctx, dst, out) {
            destinations.push((dst, reference));
        }
    }
    let Some(source) = source else {
        return;
    };
    let mapping = match source {
        ParsedSource::Image(image) => {
            let targets = destinations
                .into_iter()
                .filter_map(|(token, dst)| image_target(ctx, &image, token, dst, out))
                .collect();
            if let Some(at) = ctx.options.as_ref().and_then(|o| o.selection_at) {
                out.diagnostics.push(ctx.error(
                    at,
                    format!(
                        "{:?} names one image: semver, prerelease, latest, exclude and regex choose among the tags of a wildcard source (write {}:* or a tag pattern)",
                        src.text, image.repository
                    ),
                ));
            }
            Mapping::Image {
                source: Located {
                    value: image,
                    location: ctx.location(src.offset),
                },
                targets,
                rules: ctx.rules(),
            }
        }
        ParsedSource::Wildcard(repository, pattern) => {
            let targets = destinations
                .into_iter()
                .filter_map(|(token, dst)| wildcard_target(ctx, &repository, token, dst, out))
                .collect();
            Mapping::Wildcard {
                repository: Located {
                    value: repository,
                    location: ctx.location(src.offset),
                },
                pattern,
                targets,
                rules: ctx.rules(),
            }
        }
    };
    if out.diagnostics[before..].iter().all(|d| !d.is_error()) {
        out.mappings.push(mapping);
    }
}

fn classify_source(
    ctx: &LineContext<'_>,
    token: Token<'_>,
    reference: Reference,
    out: &mut ParsedLine,
) -> Option<ParsedSource> {
    let Reference {
        repository,
        tag,
        digest,
    } = reference;
    match (tag, digest) {
        (Some(TagSpec::Pattern(p)), Some(_)) => {
            out.diagnostics.push(ctx.error(
                token.offset,
                format!(
                    "{:?}: a source cannot have both a tag pattern ({}) and a digest",
                    token.text,
                    p.as_str()
                ),
            ));
            None
        }
        (Some(TagSpec::Pattern(p)), None) => Some(ParsedSource::Wildcard(repository, p)),
        (None, None) => {
            out.diagnostics.push(Diagnostic::warning(
                ctx.location(token.offset),
                format!(
                    "{:?} has no tag: like `oc image mirror`, this mirrors every tag of {repository}, not :latest (write {repository}:* or {repository}:latest to say which)",
                    token.text
                ),
            ));
            Some(ParsedSource::Wildcard(repository, TagPattern::all()))
        }
        (Some(TagSpec::Literal(tag)), digest) => Some(ParsedSource::Image(SourceImage {
            repository,
            pin: match digest {
                Some(digest) => Pin::TagAndDigest(tag, digest),
                None => Pin::Tag(tag),
            },
        })),
        (None, Some(digest)) => Some(ParsedSource::Image(SourceImage {
            repository,
            pin: Pin::Digest(digest),
        })),
    }
}

fn check_destination_shape(
    ctx: &LineContext<'_>,
    token: Token<'_>,
    dst: &Reference,
    out: &mut ParsedLine,
) -> bool {
    if dst.digest.is_some() {
        out.diagnostics.push(ctx.error(
            token.offset + token.text.find('@').unwrap_or(0),
            format!(
                "{:?}: a destination cannot have a digest; name a tag (the digest is preserved)",
                token.text
            ),
        ));
        return false;
    }
    if let Some(TagSpec::Pattern(p)) = &dst.tag
        && !p.is_all()
    {
        out.diagnostics.push(ctx.error(
            token.offset + token.text.rfind(':').map_or(0, |i| i + 1),
            format!("{:?}: a destination tag cannot be a pattern (only `*`, meaning \"the source's tags\")", token.text),
        ));
        return false;
    }
    true
}

fn image_target(
    ctx: &LineContext<'_>,
    image: &SourceImage,
    token: Token<'_>,
    dst: Reference,
    out: &mut ParsedLine,
) -> Option<Located<Target>> {
    if !check_destination_shape(ctx, token, &dst, out) {
        return None;
    }
    let reference = match dst.tag {
        Some(TagSpec::Literal(t)) => ManifestRef::Tag(t),
        Some(TagSpec::Pattern(_)) => {
            out.diagnostics.push(ctx.error(
                token.offset,
                format!(
                    "{:?}: a `*` destination needs a wildcard source, and {image} names one image",
                    token.text
                ),
            ));
            return None;
        }
        // As oc: a tag next to the digest names the destination tag; a digest alone is
        // pushed by digest, with no tag (oc's `digestCopies`).
        None => match &image.pin {
            Pin::Tag(t) | Pin::TagAndDigest(t, _) => ManifestRef::Tag(t.clone()),
            Pin::Digest(d) => ManifestRef::Digest(d.clone()),
        },
    };
    let itself = match &reference {
        ManifestRef::Tag(t) => image.tag() == Some(t),
        ManifestRef::Digest(d) => image.digest() == Some(d),
    };
    if dst.repository == image.repository && itself {
        out.diagnostics.push(ctx.error(
            token.offset,
            format!("{:?}: the destination is the source itself", token.text),
        ));
        return None;
    }
    Some(Located {
        value: Target {
            repository: dst.repository,
            reference,
        },
        location: ctx.location(token.offset),
    })
}

fn wildcard_target(
    ctx: &LineContext<'_>,
    source: &Repository,
    token: Token<'_>,
    dst: Reference,
    out: &mut ParsedLine,
) -> Option<Located<Repository>> {
    if !check_destination_shape(ctx, token, &dst, out) {
        return None;
    }
    if let Some(TagSpec::Literal(t)) = &dst.tag {
        out.diagnostics.push(ctx.error(
            token.offset + token.text.rfind(':').map_or(0, |i| i + 1),
            format!(
                "{:?}: a wildcard source copies many tags, so its destination must be a repository ({} or {}:*), not the tag {t}",
                token.text, dst.repository, dst.repository
            ),
        ));
        return None;
    }
    if &dst.repository == source {
        out.diagnostics.push(ctx.error(
            token.offset,
            format!("{:?}: the destination is the source itself", token.text),
        ));
        return None;
    }
    Some(Located {
        value: dst.repository,
        location: ctx.location(token.offset),
    })
}

/// Parses a whole file's text.
pub fn parse_text(file: &Arc<str>, text: &str) -> ParsedLine {
    // Editors on some systems start files with a byte-order mark; it is not part of a line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = ParsedLine::default();
    let names = RefCell::default();
    for (i, line) in text.split('\n').enumerate() {
        parse_line_into(file, i + 1, line, &names, &mut out);
    }
    // Held until the window of files it is parsed with is moved into the set: without the
    // spare capacity.
    out.mappings.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<str> {
        Arc::from("m.txt")
    }

    fn ok(line: &str) -> Vec<Mapping> {
        let parsed = parse_line(&file(), 1, line);
        let errors: Vec<_> = parsed.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        parsed.mappings
    }

    fn err(line: &str) -> Vec<String> {
        let parsed = parse_line(&file(), 7, line);
        let errors: Vec<String> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        assert!(!errors.is_empty(), "{line} should fail");
        assert!(
            parsed.mappings.is_empty(),
            "{line}: a line with errors yields no mapping"
        );
        errors
    }

    fn targets(m: &Mapping) -> Vec<String> {
        match m {
            Mapping::Image { targets, .. } => targets.iter().map(|t| t.value.to_string()).collect(),
            Mapping::Wildcard { targets, .. } => {
                targets.iter().map(|t| t.value.to_string()).collect()
            }
            Mapping::Repositories { targets, .. } => {
                targets.iter().map(|t| t.value.to_string()).collect()
            }
        }
    }

    /// A file with options is still an oc mapping file: oc drops everything from `#` on, and
    /// what it then reads is what we read, without the rules.
    #[test]
    fn options_hide_from_oc_in_a_comment() {
        let text = "quay.io/argoproj/argocd:v2.* mirror.example.com/argoproj/argocd   # image-mirror: semver=\">=2.13.0, <2.14.0\" prerelease=true\n\
                    docker.io/library/nginx       mirror.example.com/library/nginx    # image-mirror: semver=\"^1.25\" latest=3 exclude=\"*-perl,*-otel\"\n\
                    quay.io/org/app:v*            mirror.example.com/org/app          # image-mirror: regex=\"^v[0-9]+$\" immutable\n\
                    quay.io/org/tool@sha256:0123456789012345678901234567890123456789012345678901234567890123 mirror.example.com/org/tool:1.0 # image-mirror: immutable platforms=linux/amd64\n";
        let ours = parse_text(&file(), text);
        assert!(
            ours.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            ours.diagnostics
        );
        assert!(ours.mappings.iter().all(|m| !m.rules().is_empty()));
        // oc's reading: each line cut at `#`.
        let oc_text: String = text
            .lines()
            .map(|l| format!("{}\n", l.split('#').next().unwrap_or("")))
            .collect();
        let oc = parse_text(&file(), &oc_text);
        assert!(oc.mappings.iter().all(|m| m.rules().is_empty()));
        let without_rules = |m: &Mapping| {
            let mut m = m.clone();
            match &mut m {
                Mapping::Image { rules, .. }
                | Mapping::Wildcard { rules, .. }
                | Mapping::Repositories { rules, .. } => *rules = Arc::default(),
            }
            m
        };
        let ours: Vec<Mapping> = ours.mappings.iter().map(without_rules).collect();
        assert_eq!(ours, oc.mappings);
        assert_eq!(ours.len(), 4);
    }

    #[test]
    fn blank_and_comment_lines_yield_nothing() {
        for line in ["", "   ", "\t", "# comment", "  # indented comment", "\r"] {
            let p = parse_line(&file(), 1, line);
            assert!(
                p.mappings.is_empty() && p.diagnostics.is_empty(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn src_with_several_destinations() {
        let m =
            ok("quay.io/a/b:v1 reg.io/x/b reg2.io/y/b:v1-copy\treg3.io/z/b # trailing comment\r");
        assert_eq!(m.len(), 1);
        assert_eq!(
            targets(&m[0]),
            ["reg.io/x/b:v1", "reg2.io/y/b:v1-copy", "reg3.io/z/b:v1"]
        );
    }

    #[test]
    fn equals_pairs_one_or_many() {
        let m = ok("quay.io/a/b:v1=reg.io/x/b:v1");
        assert_eq!(m.len(), 1);
        let m = ok("quay.io/a/b:v1=reg.io/x/b:v1 quay.io/a/c:v2=reg.io/x/c:v2");
        assert_eq!(m.len(), 2);
        let digest = format!("sha256:{}", "0".repeat(64));
        let m = ok(&format!(
            "registry.ci.openshift.org/ocp/4.16@{digest}=quay.io/openshift/ci:ocp_4.16_cli"
        ));
        assert_eq!(targets(&m[0]), ["quay.io/openshift/ci:ocp_4.16_cli"]);
    }

    #[test]
    fn mixed_pairs_and_bare_tokens_are_an_error() {
        let e = err("quay.io/a/b:v1=reg.io/x/b:v1 quay.io/a/c:v2 reg.io/x/c:v2");
        assert_eq!(e.len(), 2);
        assert!(e[0].starts_with("m.txt:7:30: error:"), "{}", e[0]);
        assert!(e[0].contains("silently drop"));
    }

    #[test]
    fn a_lone_source_has_no_destination() {
        let e = err("  quay.io/a/b:v1");
        assert!(
            e[0].starts_with("m.txt:7:3: error:") && e[0].contains("no destination"),
            "{e:?}"
        );
        err("quay.io/a/b:v1=");
        err("=quay.io/a/b:v1");
        err("a=b=c");
    }

    #[test]
    fn wildcards_go_to_repositories() {
        for line in [
            "quay.io/a/b:* reg.io/x/b",
            "quay.io/a/b:v4.1* reg.io/x/b:*",
            "quay.io/a/b:4.1[0-9].* reg.io/x/b",
            "quay.io/a/b:{v1,v2}.* reg.io/x/b",
        ] {
            let m = ok(line);
            assert!(matches!(m[0], Mapping::Wildcard { .. }), "{line}");
            assert_eq!(targets(&m[0]), ["reg.io/x/b"]);
        }
        let e = err("quay.io/a/b:v4.* reg.io/x/b:v4");
        assert!(e[0].contains("must be a repository"), "{e:?}");
        assert!(e[0].starts_with("m.txt:7:29:"), "{e:?}");
    }

    #[test]
    fn a_source_without_tag_is_every_tag_with_a_warning() {
        let p = parse_line(&file(), 3, "quay.io/a/b reg.io/x/b");
        assert!(matches!(&p.mappings[0], Mapping::Wildcard { pattern, .. } if pattern.is_all()));
        assert_eq!(p.diagnostics.len(), 1);
        assert!(!p.diagnostics[0].is_error());
        assert!(
            p.diagnostics[0]
                .to_string()
                .starts_with("m.txt:3:1: warning:"),
            "{}",
            p.diagnostics[0]
        );
        assert!(p.diagnostics[0].message.contains("every tag"));
    }

    #[test]
    fn destination_shape_errors() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(err(&format!("quay.io/a/b:v1 reg.io/x/b@{d}"))[0].contains("cannot have a digest"));
        assert!(err("quay.io/a/b:v1 reg.io/x/b:v*")[0].contains("cannot be a pattern"));
        assert!(err("quay.io/a/b:* reg.io/x/b:v*")[0].contains("cannot be a pattern"));
        assert!(err("quay.io/a/b:v1 reg.io/x/b:*")[0].contains("needs a wildcard source"));
        // A digest alone with a repository destination is pushed by digest (oc's
        // `digestCopies`); shown as `repo@digest`.
        let m = ok(&format!("quay.io/a/b@{d} reg.io/x/b"));
        assert_eq!(targets(&m[0]), [format!("reg.io/x/b@{d}")]);
        assert!(err(&format!("quay.io/a/b@{d} quay.io/a/b"))[0].contains("source itself"));
        // A digest with a tag names the destination tag.
        let m = ok(&format!("quay.io/a/b:v1@{d} reg.io/x/b"));
        assert_eq!(targets(&m[0]), ["reg.io/x/b:v1"]);
        assert!(err(&format!("quay.io/a/b:v*@{d} reg.io/x/b"))[0].contains("both a tag pattern"));
    }

    #[test]
    fn source_equal_to_destination() {
        assert!(err("quay.io/a/b:v1 quay.io/a/b:v1")[0].contains("source itself"));
        assert!(err("quay.io/a/b:v1 quay.io/a/b")[0].contains("source itself"));
        assert!(err("quay.io/a/b:* quay.io/a/b")[0].contains("source itself"));
        assert!(err("nginx:1 docker.io/library/nginx:1")[0].contains("source itself"));
        ok("quay.io/a/b:v1 quay.io/a/b:v2");
    }

    #[test]
    fn syntax_errors_point_at_the_column() {
        let e = err("quay.io/a/B:v1 reg.io/x/b");
        assert!(
            e[0].starts_with("m.txt:7:11: error: \"quay.io/a/B:v1\""),
            "{e:?}"
        );
        let e = err("quay.io/a/b:v1   reg.io/x/b:v1 reg.io/y$/b");
        assert!(e[0].starts_with("m.txt:7:40:"), "{e:?}");
        // Every bad token on the line is reported.
        assert_eq!(err("Bad/ref other/Bad").len(), 2);
    }

    #[test]
    fn real_openshift_release_lines() {
        ok("registry.ci.openshift.org/ocp/4.16:cli quay.io/openshift/ci:ocp_4.16_cli");
        ok(
            "registry.ci.openshift.org/origin/4.22:fedora-coreos quay.io/openshift/origin:origin_4.22_fedora-coreos",
        );
        ok(
            "quay.io/coreos/etcd:v3.5 registry.ci.openshift.org/ci/etcd:v3.5 quay.io/org/etcd:v3.5 reg.io/etcd:v3.5",
        );
    }

    #[test]
    fn whole_files_with_crlf_and_no_final_newline() {
        let text = "# header\r\nquay.io/a/b:v1 reg.io/x/b\r\n\r\nquay.io/a/c:v2 reg.io/x/c";
        let p = parse_text(&file(), text);
        assert_eq!(p.mappings.len(), 2);
        assert!(p.diagnostics.is_empty());
        assert_eq!(p.mappings[1].location().line, 4);
    }
}
