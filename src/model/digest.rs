//! Content digests (`sha256:…`, `sha512:…`): parsed, computed, and computed as bytes pass.

use std::fmt;

use super::parse::ParseError;

/// A content digest, `sha256:` followed by 64 lowercase hex digits (or sha512 with 128).
/// Shared: a clone (one per job, blob and report line naming it) copies no text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(std::sync::Arc<str>);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, ParseError> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(ParseError::at(
                0,
                format!("digest {text:?} has no algorithm (expected sha256:<64 hex digits>)"),
            ));
        };
        let want = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => {
                return Err(ParseError::at(
                    0,
                    format!(
                        "unsupported digest algorithm {algorithm:?} (expected sha256 or sha512)"
                    ),
                ));
            }
        };
        if hex.len() != want
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ParseError::at(
                algorithm.len() + 1,
                format!(
                    "invalid {algorithm} digest {text:?}: expected {want} lowercase hex digits"
                ),
            ));
        }
        Ok(Digest(text.into()))
    }

    /// The digest of `bytes` (sha256, the canonical algorithm).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::of_with(Algorithm::Sha256, bytes)
    }

    /// The digest of `bytes` by `algorithm`.
    pub fn of_with(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// How this digest was computed (parsing admits sha256 and sha512 only).
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest as a person reads it: the algorithm and the first 12 hex digits
/// (`sha256:9f2a4c0e1b7d`, as `docker images` shows an id); text that is not one, its first
/// 12 characters.
pub fn short_digest(text: &str) -> &str {
    let end = match text.split_once(':') {
        Some((algorithm, _)) => algorithm.len() + 1 + 12,
        None => 12,
    };
    text.get(..end).unwrap_or(text)
}

/// Written as its text (the ledger keeps digests so).
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from its text, checked as [`Digest::parse`] checks it.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&text).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// The digest algorithms of the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

/// Hashes bytes as they pass into a [`Digest`] of one algorithm.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => Digest(format!("sha256:{}", hex(&h.finalize())).into()),
            Hasher::Sha512(h) => Digest(format!("sha512:{}", hex(&h.finalize())).into()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
