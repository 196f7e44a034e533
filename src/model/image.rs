//! The images a plan names: a source image (by tag, digest or both) and where it goes, a
//! destination tag or, for oc's push by digest, the destination repository by digest only.
//! Pure values, built by the mapping parser and the planner, read by every later stage.

use super::reference::{Digest, ManifestRef, Repository, Tag};

/// One image named by tag, digest, or both (the digest wins; the tag names destinations).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceImage {
    pub repository: Repository,
    pub pin: Pin,
}

/// How a source image is named: never by nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pin {
    Tag(Tag),
    Digest(Digest),
    TagAndDigest(Tag, Digest),
}

impl SourceImage {
    pub fn tagged(repository: Repository, tag: Tag) -> SourceImage {
        SourceImage {
            repository,
            pin: Pin::Tag(tag),
        }
    }

    pub fn tag(&self) -> Option<&Tag> {
        match &self.pin {
            Pin::Tag(t) | Pin::TagAndDigest(t, _) => Some(t),
            Pin::Digest(_) => None,
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match &self.pin {
            Pin::Digest(d) | Pin::TagAndDigest(_, d) => Some(d),
            Pin::Tag(_) => None,
        }
    }

    /// Whether two sources name the same content: the same digest when both are pinned,
    /// else the same tag.
    pub fn same_content_as(&self, other: &SourceImage) -> bool {
        match (self.digest(), other.digest()) {
            (Some(a), Some(b)) => self.repository == other.repository && a == b,
            _ => self == other,
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn reference(&self) -> ManifestRef {
        match &self.pin {
            Pin::Tag(t) => ManifestRef::Tag(t.clone()),
            Pin::Digest(d) | Pin::TagAndDigest(_, d) => ManifestRef::Digest(d.clone()),
        }
    }
}

impl std::fmt::Display for SourceImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest() {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Where one image goes: a tag, or only its digest (pushed by digest, no tag written).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub repository: Repository,
    pub reference: ManifestRef,
}

impl Target {
    /// The tag written, if any.
    pub fn tag(&self) -> Option<&Tag> {
        match &self.reference {
            ManifestRef::Tag(t) => Some(t),
            ManifestRef::Digest(_) => None,
        }
    }

    /// How the target is named inside its repository: `TAG` or `@sha256:…`.
    pub fn short(&self) -> String {
        match &self.reference {
            ManifestRef::Tag(t) => t.to_string(),
            ManifestRef::Digest(d) => format!("@{d}"),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reference {
            ManifestRef::Tag(t) => write!(f, "{}:{t}", self.repository),
            ManifestRef::Digest(d) => write!(f, "{}@{d}", self.repository),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::parse_name;

    /// Survivors of the issue-18 mutation audit, each caught here.
    #[test]
    fn sources_name_their_content_by_digest_first() {
        let repo = |n: &str| parse_name(n).unwrap_or_else(|e| panic!("{e}"));
        let digest = Digest::of(b"x");
        let tag = Tag::parse("v1").unwrap_or_else(|e| panic!("{e}"));
        let pinned = SourceImage {
            repository: repo("r.io/a"),
            pin: Pin::TagAndDigest(tag.clone(), digest.clone()),
        };
        assert_eq!(pinned.reference(), ManifestRef::Digest(digest.clone()));
        assert_eq!(
            SourceImage::tagged(repo("r.io/a"), tag.clone()).reference(),
            ManifestRef::Tag(tag)
        );
        // The same digest in another repository is other content (to pull, at least).
        let elsewhere = SourceImage {
            repository: repo("r.io/b"),
            pin: Pin::Digest(digest),
        };
        assert!(!pinned.same_content_as(&elsewhere));
        assert!(pinned.same_content_as(&pinned.clone()));
    }
}
