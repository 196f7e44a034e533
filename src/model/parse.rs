//! What a reference parser says when text is not a reference: the message and the byte
//! offset, which the mapping parser turns into a column.

use std::fmt;

/// A parse failure: what is wrong, and at which byte offset of the reference text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    pub fn at(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }

    /// The same error in a text that starts `by` bytes later.
    pub fn shift(self, by: usize) -> Self {
        Self {
            offset: self.offset + by,
            message: self.message,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The character at byte offset `byte` of `text`, for messages.
pub fn char_at(text: &str, byte: usize) -> char {
    text.get(byte..)
        .and_then(|s| s.chars().next())
        .unwrap_or('?')
}
