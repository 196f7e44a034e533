//! Image references as written in mapping files, parsed once into types that cannot hold an
//! invalid name, tag or digest.
//!
//! The grammar is the distribution reference grammar
//! (`[host[:port]/]path[:tag][@algorithm:hex]`) with Docker Hub normalized the way docker does
//! it. A hand-written parser: the regex-based one in oci-spec costs ~10 µs a reference, which
//! dominates a 100,000-line check.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

pub use super::digest::{Algorithm, Digest, Hasher};
use super::intern::Interner;
pub use super::names::DOCKER_HUB;
pub(crate) use super::names::normalize_host;
use super::names::{validate_host, validate_path};
pub use super::parse::ParseError;
use super::parse::char_at;
use super::short_text::ShortText;

/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_API: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A registry as references name it, `host[:port]`: lower-case, Docker Hub's aliases folded
/// into `docker.io`. Shared, not copied: a mapping file names a few registries on every line
/// (see [`super::intern`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host(Arc<str>);

impl Host {
    /// Parses and normalizes `host[:port]` (as `--insecure-registry` takes it).
    pub fn parse(text: &str) -> Result<Host, ParseError> {
        validate_host(text)?;
        Ok(Host::normalized(text))
    }

    /// A host already validated (or one of the directory kinds' names), normalized.
    pub(super) fn normalized(text: &str) -> Host {
        Host(normalize_host(text).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the registry's API lives: Docker Hub's is not `docker.io`.
    pub fn api_host(&self) -> &str {
        if &*self.0 == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.0
        }
    }

    pub fn is_docker_hub(&self) -> bool {
        &*self.0 == DOCKER_HUB
    }

    /// Whether this names a registry or a kind of directory.
    pub fn place(&self) -> Place {
        match &*self.0 {
            FILE_HOST => Place::File,
            OCI_HOST => Place::Oci,
            _ => Place::Registry,
        }
    }
}

/// Where a repository lives: a registry, or a directory on disk. The directory kinds have
/// reserved host names no registry host can have (a `:` with no port), so a [`Repository`]
/// stays one type through planning and reporting and only the stores tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Registry,
    /// oc's `file://REPO` layout under `--dir`: `v2/REPO/manifests/…`, `v2/REPO/blobs/…`.
    File,
    /// An OCI image layout directory, `oci:PATH` (skopeo's transport name).
    Oci,
}

const FILE_HOST: &str = "file:";
const OCI_HOST: &str = "oci:";
const FILE_PREFIX: &str = "file://";

impl AsRef<str> for Host {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Host {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Host {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository: registry host (normalized) and path, e.g. `quay.io` + `openshift/ci`.
/// Shared: one pointer wide, a clone copies nothing (the planner puts one in every copy it
/// plans), and one mapping file's lines naming the same repository hold one copy of it (see
/// [`super::intern`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(Arc<RepositoryParts>);

/// The path inline when short (`openshift/ci`, `team/app`): one allocation a repository
/// instead of two, 3 MB fewer of a 100,000-line `check`'s.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RepositoryParts {
    registry: Host,
    path: ShortText,
}

impl Repository {
    fn new(registry: Host, path: &str) -> Repository {
        Repository(Arc::new(RepositoryParts {
            registry,
            path: ShortText::new(path),
        }))
    }
    pub fn registry(&self) -> &Host {
        &self.0.registry
    }
    pub fn path(&self) -> &str {
        self.0.path.as_str()
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("registry", self.registry())
            .field("path", &self.path())
            .finish()
    }
}

impl Repository {
    /// Whether the repository is a directory rather than a registry's.
    pub fn on_disk(&self) -> bool {
        self.registry().place() != Place::Registry
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.registry().place() {
            Place::Registry => write!(f, "{}/{}", self.registry(), self.path()),
            Place::File => write!(f, "{FILE_PREFIX}{}", self.path()),
            Place::Oci => write!(f, "{OCI_HOST}{}", self.path()),
        }
    }
}

/// A literal tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Inline when short (nearly always):
/// the planner copies a tag into every copy naming it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(ShortText);

impl Tag {
    pub fn parse(text: &str) -> Result<Tag, ParseError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(ParseError::at(0, "empty tag"));
        }
        if bytes.len() > MAX_TAG_LEN {
            return Err(ParseError::at(
                0,
                format!("tag longer than {MAX_TAG_LEN} characters"),
            ));
        }
        for (i, &b) in bytes.iter().enumerate() {
            let ok = b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'));
            if !ok {
                return Err(ParseError::at(
                    i,
                    format!("invalid character {:?} in tag {text:?}", char_at(text, i)),
                ));
            }
        }
        Ok(Tag(ShortText::new(text)))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a manifest is asked for at a registry: by tag or by digest. A digest answer is
/// checked against it; a tag's is taken as the registry states it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManifestRef {
    Tag(Tag),
    Digest(Digest),
}

impl ManifestRef {
    /// The text that goes into a `/manifests/<reference>` URL.
    pub fn as_str(&self) -> &str {
        match self {
            ManifestRef::Tag(t) => t.as_str(),
            ManifestRef::Digest(d) => d.as_str(),
        }
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Digest> for ManifestRef {
    fn from(d: Digest) -> Self {
        ManifestRef::Digest(d)
    }
}

impl From<Tag> for ManifestRef {
    fn from(t: Tag) -> Self {
        ManifestRef::Tag(t)
    }
}

/// The tag part of a reference as written: absent, a literal tag, or a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TagSpec {
    Literal(Tag),
    Pattern(TagPattern),
}

/// A glob over tags (`*`, `v4.1*`, `4.1[0-9].*`, `{v1,v2}.*`). Tags cannot contain
/// `* ? [ {`, so any of those marks a pattern.
#[derive(Clone)]
pub struct TagPattern {
    /// Shared: a mapping file repeats a few patterns (see [`super::intern`]).
    text: Arc<str>,
    /// Compiled on first use (compiling costs far more than validating, and `check` never
    /// matches), and shared with every pattern written alike: see [`compiled`].
    matcher: std::sync::OnceLock<Option<Arc<globset::GlobMatcher>>>,
}

impl TagPattern {
    pub fn parse(text: &str) -> Result<TagPattern, ParseError> {
        if let Some(i) = text.bytes().position(|b| {
            !(b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'.' | b'-' | b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b',' | b'!'
                ))
        }) {
            return Err(ParseError::at(
                i,
                format!(
                    "invalid character {:?} in tag pattern {text:?}",
                    char_at(text, i)
                ),
            ));
        }
        // Parsed to be validated, then dropped: kept, it would be most of a mapping's size.
        glob(text).map_err(|e| {
            ParseError::at(0, format!("invalid tag pattern {text:?}: {}", e.kind()))
        })?;
        Ok(TagPattern {
            text: text.into(),
            matcher: std::sync::OnceLock::new(),
        })
    }

    /// The pattern that matches every tag.
    pub fn all() -> TagPattern {
        match TagPattern::parse("*") {
            Ok(p) => p,
            Err(_) => unreachable!("`*` is a valid glob"),
        }
    }

    pub fn is_match(&self, tag: &str) -> bool {
        self.matcher
            .get_or_init(|| compiled(&self.text))
            .as_ref()
            .is_some_and(|m| m.is_match(tag))
    }
    pub fn is_all(&self) -> bool {
        &*self.text == "*"
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The compiled glob of `text`, shared by every [`TagPattern`] written alike. A mapping set
/// repeats a few patterns (`*`, `v4.*`) over thousands of lines, and each compiled glob is a
/// regex of some 9 KB: compiled per line, planning 20,000 wildcard lines took 180 MB and most
/// of a second. `None` for a text that is no glob, which a parsed pattern never is.
fn compiled(text: &str) -> Option<Arc<globset::GlobMatcher>> {
    type Cache = HashMap<Box<str>, Arc<globset::GlobMatcher>, foldhash::fast::RandomState>;
    static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(matcher) = cache.get(text) {
        return Some(matcher.clone());
    }
    let matcher = Arc::new(glob(text).ok()?.compile_matcher());
    cache.insert(text.into(), matcher.clone());
    Some(matcher)
}

/// A tag glob as the pattern grammar reads it: `*` crosses every character (tags have no
/// `/`), a backslash escapes, case matters.
fn glob(text: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(text)
        .case_insensitive(false)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
}

impl PartialEq for TagPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for TagPattern {}
impl std::hash::Hash for TagPattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}
impl fmt::Debug for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagPattern({:?})", self.text)
    }
}

impl fmt::Display for TagSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagSpec::Literal(t) => t.fmt(f),
            TagSpec::Pattern(p) => f.write_str(p.as_str()),
        }
    }
}

/// A reference as written in a mapping file: a repository with an optional tag (or tag
/// pattern) and an optional digest. Whether a given combination is allowed depends on the
/// reference's role (source or destination) and is decided by the mapping grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub repository: Repository,
    pub tag: Option<TagSpec>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ParseError> {
        Reference::parse_in(text, &mut Interner::default())
    }

    /// [`Reference::parse`], sharing hosts and repositories with the references `names`
    /// parsed before (a mapping file's).
    pub fn parse_in<'t>(text: &'t str, names: &mut Interner<'t>) -> Result<Reference, ParseError> {
        if text.is_empty() {
            return Err(ParseError::at(0, "empty reference"));
        }
        if let Some(rest) = text.strip_prefix(FILE_PREFIX) {
            return parse_file(rest, names).map_err(|e| e.shift(FILE_PREFIX.len()));
        }
        if let Some(rest) = text.strip_prefix(OCI_HOST) {
            return parse_oci(rest, names).map_err(|e| e.shift(OCI_HOST.len()));
        }
        if text.starts_with("s3://") {
            return Err(ParseError::at(
                0,
                "s3:// (oc's S3 destination) is not supported: mirror to a registry, file:// or oci:",
            ));
        }
        let (name_and_tag, digest) = match text.find('@') {
            Some(at) => {
                let digest = Digest::parse(&text[at + 1..])
                    .map_err(|e| ParseError::at(at + 1 + e.offset, e.message))?;
                (&text[..at], Some(digest))
            }
            None => (text, None),
        };
        // A ':' after the last '/' separates the tag; one before it belongs to host:port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].find(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                let tag_text = &name_and_tag[colon + 1..];
                let shift = |e: ParseError| ParseError::at(colon + 1 + e.offset, e.message);
                let spec = if tag_text
                    .bytes()
                    .any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
                {
                    TagSpec::Pattern(names.pattern(tag_text).map_err(shift)?)
                } else {
                    TagSpec::Literal(Tag::parse(tag_text).map_err(shift)?)
                };
                (&name_and_tag[..colon], Some(spec))
            }
            None => (name_and_tag, None),
        };
        let repository = names.repository(name)?;
        Ok(Reference {
            repository,
            tag,
            digest,
        })
    }

    /// The literal tag, if the reference has one.
    pub fn literal_tag(&self) -> Option<&Tag> {
        match &self.tag {
            Some(TagSpec::Literal(t)) => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The tag and digest after a name: `[:tag][@digest]`, `offset` where `text` starts.
fn parse_suffix(
    text: &str,
    offset: usize,
) -> Result<(Option<TagSpec>, Option<Digest>), ParseError> {
    let (tag_text, digest) = match text.find('@') {
        Some(at) => {
            let digest = Digest::parse(&text[at + 1..])
                .map_err(|e| ParseError::at(offset + at + 1 + e.offset, e.message))?;
            (&text[..at], Some(digest))
        }
        None => (text, None),
    };
    let Some(tag_text) = tag_text.strip_prefix(':') else {
        return Ok((None, digest));
    };
    let shift = |e: ParseError| ParseError::at(offset + 1 + e.offset, e.message);
    let spec = if tag_text
        .bytes()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
    {
        TagSpec::Pattern(TagPattern::parse(tag_text).map_err(shift)?)
    } else {
        TagSpec::Literal(Tag::parse(tag_text).map_err(shift)?)
    };
    Ok((Some(spec), digest))
}

/// `file://REPO[:TAG][@DIGEST]`, after the prefix: as oc, the repository is a path of
/// repository-name components under `--dir`, with no registry and no Docker Hub defaults.
fn parse_file<'t>(text: &'t str, names: &mut Interner<'t>) -> Result<Reference, ParseError> {
    let end = text.rfind('/').map_or(0, |i| i + 1);
    let name_end = text[end..].find([':', '@']).map_or(text.len(), |i| end + i);
    let name = &text[..name_end];
    if name.is_empty() {
        return Err(ParseError::at(0, "missing repository name after file://"));
    }
    validate_path(name)?;
    let (tag, digest) = parse_suffix(&text[name_end..], name_end)?;
    Ok(Reference {
        repository: Repository::new(names.host(FILE_HOST), name),
        tag,
        digest,
    })
}

/// `oci:PATH[:TAG][@DIGEST]`, after the prefix, as skopeo splits it: the path ends at the
/// first `:` (or `@`), and names a directory (relative to where the run starts).
fn parse_oci<'t>(text: &'t str, names: &mut Interner<'t>) -> Result<Reference, ParseError> {
    let name_end = text.find([':', '@']).unwrap_or(text.len());
    let path = &text[..name_end];
    if path.is_empty() {
        return Err(ParseError::at(0, "missing directory after oci:"));
    }
    let (tag, digest) = parse_suffix(&text[name_end..], name_end)?;
    Ok(Reference {
        repository: Repository::new(names.host(OCI_HOST), path),
        tag,
        digest,
    })
}

/// Parses `[host[:port]/]path` into a normalized repository.
pub fn parse_name(name: &str) -> Result<Repository, ParseError> {
    parse_name_with(name, Host::normalized)
}

/// [`parse_name`], the host (validated, as written, or Docker Hub's) made by `host`.
pub(super) fn parse_name_with<'t>(
    name: &'t str,
    host: impl FnOnce(&'t str) -> Host,
) -> Result<Repository, ParseError> {
    if name.is_empty() {
        return Err(ParseError::at(0, "missing repository name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ParseError::at(
            0,
            format!("repository name longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let (registry, path, path_offset) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            validate_host(first)?;
            (first, rest, first.len() + 1)
        }
        _ => (DOCKER_HUB, name, 0),
    };
    validate_path(path).map_err(|e| ParseError::at(path_offset + e.offset, e.message))?;
    let registry = host(registry);
    if registry.is_docker_hub() && !path.contains('/') {
        return Ok(Repository::new(registry, &format!("library/{path}")));
    }
    Ok(Repository::new(registry, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Survivors of the issue-18 mutation audit, each caught here.
    #[test]
    fn what_the_mutation_audit_found_untested() {
        // sha512 digests parse.
        let long = format!("sha512:{}", "ab".repeat(64));
        assert!(Digest::parse(&long).is_ok());
        // The longest name is allowed, one more character is not.
        let name = |n: usize| format!("r.io/{}", "a".repeat(n - 5));
        assert!(parse_name(&name(255)).is_ok());
        assert!(parse_name(&name(256)).is_err());
        // A bad digest's offset points into the digest, after the `@`.
        let e = Reference::parse("r.io/a@sha256:xyz").err();
        assert!(e.as_ref().is_some_and(|e| e.offset >= 7), "{e:?}");
        // A parse error shows its message.
        let e = ParseError::at(3, "what is wrong");
        assert_eq!(e.to_string(), "what is wrong");
        // Tag patterns are equal and hash alike only when written alike.
        let (a, b) = (
            TagPattern::parse("v1.*").unwrap_or_else(|e| panic!("{e}")),
            TagPattern::parse("v2.*").unwrap_or_else(|e| panic!("{e}")),
        );
        assert_ne!(a, b);
        let hash = |p: &TagPattern| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&b));
        assert!(format!("{a:?}").contains("v1.*"));
    }

    fn parse(s: &str) -> Reference {
        match Reference::parse(s) {
            Ok(r) => r,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn docker_hub_short_forms_normalize() {
        assert_eq!(parse("nginx").to_string(), "docker.io/library/nginx");
        assert_eq!(
            parse("nginx:1.25").to_string(),
            "docker.io/library/nginx:1.25"
        );
        assert_eq!(
            parse("bitnami/redis:7").to_string(),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            parse("index.docker.io/nginx").to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(
            parse("registry-1.docker.io/library/nginx").to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(
            parse("registry.hub.docker.com/foo/bar").to_string(),
            "docker.io/foo/bar"
        );
        assert_eq!(
            parse("docker.io/nginx").to_string(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn hosts_are_case_insensitive() {
        assert_eq!(parse("Quay.IO/a/b:v1").to_string(), "quay.io/a/b:v1");
        assert_eq!(
            parse("Docker.io/nginx").to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(
            parse("Index.Docker.io/nginx").to_string(),
            "docker.io/library/nginx"
        );
    }

    #[test]
    fn registries_are_recognized() {
        let r = parse("localhost/foo:1");
        assert_eq!(r.repository.registry(), "localhost");
        assert_eq!(r.repository.path(), "foo");
        let r = parse("127.0.0.1:5000/a/b/c:tag");
        assert_eq!(r.repository.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository.path(), "a/b/c");
        let r = parse("myhost:5000/x");
        assert_eq!(r.repository.registry(), "myhost:5000");
        assert_eq!(parse("[::1]:5000/x").repository.registry(), "[::1]:5000");
        // No dot, no colon, not localhost: a Docker Hub namespace.
        assert_eq!(
            parse("myhost/x").repository.to_string(),
            "docker.io/myhost/x"
        );
    }

    #[test]
    fn tags_digests_and_patterns() {
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let r = parse(&format!("quay.io/a/b@{d}"));
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(d.as_str()));
        assert!(r.tag.is_none());
        let r = parse(&format!("quay.io/a/b:v1@{d}"));
        assert_eq!(r.literal_tag().map(Tag::as_str), Some("v1"));
        assert!(matches!(
            parse("quay.io/a:v4.1*").tag,
            Some(TagSpec::Pattern(_))
        ));
        assert!(matches!(
            parse("quay.io/a:4.1[0-9].*").tag,
            Some(TagSpec::Pattern(_))
        ));
        assert!(matches!(
            parse("quay.io/a:{v1,v2}.*").tag,
            Some(TagSpec::Pattern(_))
        ));
        assert!(matches!(
            parse("quay.io/a:origin_4.22_fedora-coreos").tag,
            Some(TagSpec::Literal(_))
        ));
    }

    #[test]
    fn patterns_match_like_globs() {
        let p = TagPattern::parse("4.1[0-9].*").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.is_match("4.10.1"));
        assert!(p.is_match("4.19.0-rc1"));
        assert!(!p.is_match("4.1.1"));
        let p = TagPattern::parse("{v1,v2}.*").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.is_match("v1.0") && p.is_match("v2.3") && !p.is_match("v3.0"));
        let p = TagPattern::parse("v4.1*").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.is_match("v4.1") && p.is_match("v4.16") && !p.is_match("V4.1"));
        assert!(TagPattern::all().is_match("anything"));
    }

    #[test]
    fn bad_references_are_rejected_with_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("quay.io/Foo/bar", 8, "lowercase"),
            ("quay.io/foo//bar", 12, "empty path component"),
            ("quay.io/foo-/bar", 11, "must end"),
            ("quay.io/-foo", 8, "must start"),
            ("quay.io/foo:bad tag", 15, "invalid character"),
            ("quay.io/foo:.tag", 12, "invalid character"),
            ("quay.io/foo@sha256:abc", 19, "64 lowercase hex"),
            ("quay.io/foo@md5:abc", 12, "unsupported digest"),
            ("quay.io/foo:[a-", 12, "invalid tag pattern"),
            ("badhost.io:99999/x", 11, "bad port"),
            ("", 0, "empty"),
            ("quay.io/", 8, "empty path component"),
            ("quay.io/a$b", 9, "invalid character"),
        ];
        for (text, offset, needle) in cases {
            match Reference::parse(text) {
                Ok(r) => panic!("{text} parsed as {r}"),
                Err(e) => {
                    assert!(e.message.contains(needle), "{text}: {e}");
                    assert_eq!(e.offset, *offset, "{text}: {e}");
                }
            }
        }
        let long_tag = format!("quay.io/a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let ok_tag = format!("quay.io/a:{}", "t".repeat(128));
        assert!(Reference::parse(&ok_tag).is_ok());
    }

    #[test]
    fn directories_file_and_oci() {
        let d = "sha256:".to_owned() + &"b".repeat(64);
        let r = parse("file://local/app:v1");
        assert_eq!(r.repository.registry().place(), Place::File);
        assert_eq!(r.repository.path(), "local/app");
        assert_eq!(r.to_string(), "file://local/app:v1");
        assert_eq!(parse("file://app").repository.path(), "app");
        assert_eq!(
            parse(&format!("file://a/b@{d}"))
                .digest
                .map(|x| x.to_string()),
            Some(d.clone())
        );
        let r = parse("oci:/tmp/My.Layout:v1.*");
        assert_eq!(r.repository.registry().place(), Place::Oci);
        assert_eq!(r.repository.path(), "/tmp/My.Layout");
        assert!(matches!(r.tag, Some(TagSpec::Pattern(_))));
        assert_eq!(parse("oci:out").to_string(), "oci:out");
        assert_eq!(
            parse(&format!("oci:out@{d}")).to_string(),
            format!("oci:out@{d}")
        );
        for (bad, needle) in [
            ("file://", "missing repository"),
            ("file://Local/app", "lowercase"),
            ("oci::v1", "missing directory"),
            ("oci:x:bad tag", "invalid character"),
            ("s3://bucket/a/b:v1", "not supported"),
        ] {
            match Reference::parse(bad) {
                Ok(r) => panic!("{bad} parsed as {r}"),
                Err(e) => assert!(e.message.contains(needle), "{bad}: {e}"),
            }
        }
        assert_eq!(
            Reference::parse("oci:x:bad tag").err().map(|e| e.offset),
            Some(9)
        );
    }

    #[test]
    fn separators_follow_the_spec() {
        for ok in [
            "a/b.c",
            "a/b_c",
            "a/b__c",
            "a/b---c",
            "ocp/4.16",
            "origin/4.16",
        ] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a/b___c", "a/b..c", "a/b._c", "a/_b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn component() -> impl Strategy<Value = String> {
            "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}"
        }
        fn host() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                "[a-z][a-z0-9]{0,6}\\.(io|com|local)".prop_map(Some),
                "[a-z][a-z0-9]{0,6}\\.io:[1-9][0-9]{1,3}".prop_map(Some),
                Just(Some("localhost".to_owned())),
                Just(Some("127.0.0.1:5000".to_owned())),
            ]
        }
        fn tag() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}".prop_map(Some),
                Just(Some("v4.1*".to_owned()))
            ]
        }
        fn digest() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                "[0-9a-f]{64}".prop_map(|h| Some(format!("sha256:{h}")))
            ]
        }

        proptest! {
            #[test]
            fn display_then_parse_is_identity(
                host in host(),
                path in proptest::collection::vec(component(), 1..4),
                tag in tag(),
                digest in digest(),
            ) {
                // Without a host, a first component with a dot would itself be read as a host.
                prop_assume!(host.is_some() || !path[0].contains('.'));
                let mut text = String::new();
                if let Some(h) = host { text.push_str(&h); text.push('/'); }
                text.push_str(&path.join("/"));
                if let Some(t) = tag { text.push(':'); text.push_str(&t); }
                if let Some(d) = digest { text.push('@'); text.push_str(&d); }
                prop_assume!(text.len() < 200);
                let parsed = Reference::parse(&text);
                prop_assert!(parsed.is_ok(), "{}: {:?}", text, parsed);
                let parsed = parsed.unwrap();
                let again = Reference::parse(&parsed.to_string());
                prop_assert_eq!(Ok(parsed), again);
            }
        }
    }
}
