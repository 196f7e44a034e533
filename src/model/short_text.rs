//! Text that is nearly always short, kept inline when it fits. A tag is a few characters
//! (`v4.16.0`, `latest`, `ocp_4.16_cli`) and a large plan holds one per copy: inline, a tag
//! costs no allocation to parse or to copy. Longer text is shared.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// How many bytes fit inline: the enum is then as large as a shared string plus its tag.
const INLINE: usize = 22;

/// A string, inline up to [`INLINE`] bytes, shared beyond. Compared, ordered and hashed as
/// its text.
#[derive(Clone)]
pub(crate) enum ShortText {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl ShortText {
    pub(crate) fn new(text: &str) -> ShortText {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ShortText::Inline { len, bytes }
            }
            _ => ShortText::Shared(text.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // The bytes are a whole `&str`'s, so they are UTF-8: the fallback is never taken.
            ShortText::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ShortText::Shared(text) => text,
        }
    }
}

impl PartialEq for ShortText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortText {}

impl PartialOrd for ShortText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortText {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for ShortText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_text_read_back_and_compare_as_text() {
        let texts = [
            "",
            "v1",
            "latest",
            &"x".repeat(INLINE),
            &"y".repeat(INLINE + 1),
            "é",
        ];
        for text in texts {
            let short = ShortText::new(text);
            assert_eq!(short.as_str(), text);
            assert_eq!(format!("{short:?}"), format!("{text:?}"));
            let inline = matches!(short, ShortText::Inline { .. });
            assert_eq!(inline, text.len() <= INLINE, "{text}");
        }
        // The same text compares and hashes alike whichever way it is held; order is the
        // text's.
        let long = "z".repeat(INLINE + 1);
        let (a, b) = (
            ShortText::new(&long),
            ShortText::Shared(long.as_str().into()),
        );
        assert_eq!(a, b);
        let hash = |t: &ShortText| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        let inline_v1 = ShortText::Inline {
            len: 2,
            bytes: *b"v1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        assert_eq!(ShortText::new("v1"), ShortText::Shared("v1".into()));
        assert_eq!(hash(&inline_v1), hash(&ShortText::Shared("v1".into())));
        assert!(ShortText::new("v10") < ShortText::new("v2"));
        assert!(ShortText::new(&long) > ShortText::new("v2"));
    }
}
