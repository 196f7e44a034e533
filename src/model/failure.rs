//! What kind of failure an error is, carried from the request that failed to the outcome the
//! report shows. The kind decides what is retried (only [`ErrorKind::Transient`]) and is
//! written into the JSON report as `error_kind`.

/// What kind of failure an error is. Carried by [`Failure`] in the `anyhow` chain of every
/// error the stores return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth another try: connection refused or reset, timeouts, 5xx, 429, a body cut short.
    Transient,
    /// Refused for good by the registry (400 `MANIFEST_INVALID`, `BLOB_UNKNOWN`, 405, …), or
    /// something no retry can change (an unsupported manifest, a bad TLS certificate).
    Permanent,
    /// 404: the registry does not have it.
    NotFound,
    /// 401/403 after re-authentication, or credentials refused by the token service.
    Denied,
    /// Bytes that do not hash to their digest, or more bytes than the descriptor gives.
    Corrupt,
    /// Not done by rule: an immutable destination tag already holds another image, or the
    /// image's signatures do not meet `--policy`.
    Refused,
    /// Not done for now: the source registry's pull quota cannot cover it in this window.
    /// Never retried in the run (only [`ErrorKind::Transient`] is): the next window does it.
    Deferred,
    /// Not done yet by rule: a new source tag not yet seen for the line's `min-age` (see
    /// the ledger, which keeps when each source tag was first seen). Never retried in the
    /// run: a later run lets it through.
    Waiting,
}

impl ErrorKind {
    /// The name the JSON report and the JUnit report use (`not_found`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Denied => "denied",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Refused => "refused",
            ErrorKind::Deferred => "deferred",
            ErrorKind::Waiting => "waiting",
        }
    }

    /// For answers where "not found" says the endpoint is wrong, not that an image is missing.
    pub fn or_permanent(self) -> ErrorKind {
        if self == ErrorKind::NotFound {
            ErrorKind::Permanent
        } else {
            self
        }
    }
}

/// An error with its [`ErrorKind`]; the message is the whole text shown to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    /// The kind and whole text of any error: its first [`Failure`]'s kind (permanent when it
    /// carries none), and the chain's messages.
    pub fn of(e: &anyhow::Error) -> Failure {
        Failure {
            kind: error_kind(e).unwrap_or(ErrorKind::Permanent),
            message: format!("{e:#}"),
        }
    }
}

impl Failure {
    /// The failure a stream's `io::Error` carries, if it carries one (a blob's bytes failing
    /// their check, see `execute::checked`): an HTTP body or a file write that failed on it
    /// reports it, not its own words.
    pub fn in_io(e: &std::io::Error) -> Option<&Failure> {
        e.get_ref()?.downcast_ref::<Failure>()
    }
}

/// An `anyhow::Error` carrying `kind`.
pub fn failure(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
    })
}

/// The kind of an error (the first [`Failure`] in its chain); `None` for errors that carry
/// none (treated as permanent by the retry logic).
pub fn error_kind(e: &anyhow::Error) -> Option<ErrorKind> {
    e.chain()
        .find_map(|c| c.downcast_ref::<Failure>())
        .map(|r| r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_json_report() {
        for kind in [
            ErrorKind::Transient,
            ErrorKind::Permanent,
            ErrorKind::NotFound,
            ErrorKind::Denied,
            ErrorKind::Corrupt,
            ErrorKind::Refused,
            ErrorKind::Deferred,
            ErrorKind::Waiting,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.as_str()))
            );
        }
    }

    #[test]
    fn kinds_survive_context() {
        let e = failure(ErrorKind::Corrupt, "blob x: digest mismatch").context("copying");
        assert_eq!(error_kind(&e), Some(ErrorKind::Corrupt));
        assert_eq!(error_kind(&anyhow::anyhow!("plain")), None);
        assert_eq!(Failure::of(&e).kind, ErrorKind::Corrupt);
        assert_eq!(Failure::of(&e).message, "copying: blob x: digest mismatch");
    }
}
