//! What a transport error was, in words a user can act on, and whether trying again can
//! help: a plain-HTTP registry answering our TLS hello, a host name that does not resolve,
//! a refused connection (final on the first contact of a registry, where nothing has ever
//! answered; transient later in the run, where the registry was there a moment ago).
//!
//! The status classification and the rest of the transport kinds (certificates) are in
//! [`super::super::error`]; this module only adds the causes retrying cannot fix and the
//! message that names their fix.

use super::request::Request;
use crate::model::failure::ErrorKind;
use crate::registry::error::{describe_http_error, transport_kind};

/// Why a request got no answer, as far as the user can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Our TLS hello was answered in plain HTTP: the registry speaks HTTP only.
    PlainHttp,
    /// The host name does not resolve (not a temporary failure of the resolver).
    Unresolved,
    /// Nothing listens there: the connection was refused.
    Refused,
    /// Anything else (a reset, a timeout, a certificate, ...).
    Other,
}

/// The [`Cause`] of a transport error, read from its chain of sources (and the errors an
/// `io::Error` wraps, which its `source` skips).
pub fn cause(e: &reqwest::Error) -> Cause {
    let mut found = Cause::Other;
    walk(e, &mut |s| {
        let c = cause_of(s);
        if c != Cause::Other {
            found = c;
        }
    });
    found
}

fn walk(
    e: &(dyn std::error::Error + 'static),
    visit: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
) {
    let mut source = Some(e);
    while let Some(s) = source {
        visit(s);
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            walk(inner, visit);
        }
        source = s.source();
    }
}

fn cause_of(e: &(dyn std::error::Error + 'static)) -> Cause {
    if let Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) =
        e.downcast_ref::<rustls::Error>()
    {
        return Cause::PlainHttp;
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::ConnectionRefused
    {
        return Cause::Refused;
    }
    let text = e.to_string().to_ascii_lowercase();
    // hyper-util's resolver error says "dns error"; getaddrinfo's own words tell a name that
    // does not exist from a resolver that failed for now ("temporary failure").
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return if text.contains("temporary") {
            Cause::Other
        } else {
            Cause::Unresolved
        };
    }
    Cause::Other
}

/// The kind of a transport error for `request`: a plain-HTTP answer or a name that does not
/// resolve is permanent, and so is a refused connection on the first contact of a registry.
pub fn kind(e: &reqwest::Error, request: &Request<'_>) -> ErrorKind {
    kind_of(cause(e), request.first_contact, transport_kind(e))
}

/// [`kind`] from its parts (pure, for the tests).
fn kind_of(cause: Cause, first_contact: bool, otherwise: ErrorKind) -> ErrorKind {
    match cause {
        Cause::PlainHttp | Cause::Unresolved => ErrorKind::Permanent,
        Cause::Refused if first_contact => ErrorKind::Permanent,
        Cause::Refused => ErrorKind::Transient,
        Cause::Other => otherwise,
    }
}

/// A transport error as the user reads it: the cause and its fix first when we know them,
/// then the error with its sources. `host` is the registry as references name it,
/// `api_host` where its API is (`host[:port]`).
pub fn describe(e: &reqwest::Error, host: &str, api_host: &str) -> String {
    match cause(e) {
        // The URL names the scheme that was used (HTTPS, here).
        Cause::PlainHttp => format!(
            "{api_host} answered plain HTTP to a TLS hello: add `--insecure-registry {host}` \
             (or `--insecure`){}",
            e.url()
                .map(|u| format!(" ({})", crate::redact::url_for_humans(u)))
                .unwrap_or_default()
        ),
        // No byte was exchanged: no URL, whose scheme would only be a guess under
        // `--insecure`.
        Cause::Unresolved => format!(
            "the host name of {api_host} does not resolve: check its spelling, DNS or /etc/hosts"
        ),
        Cause::Refused => {
            format!("connection refused (is a registry running at {api_host}, on this port?)")
        }
        Cause::Other => describe_http_error(e, host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_retrying_cannot_fix_is_permanent_and_a_refusal_only_on_first_contact() {
        use ErrorKind::{Permanent, Transient};
        assert_eq!(kind_of(Cause::PlainHttp, false, Transient), Permanent);
        assert_eq!(kind_of(Cause::Unresolved, false, Transient), Permanent);
        assert_eq!(kind_of(Cause::Refused, true, Transient), Permanent);
        // The registry answered before: it may be restarting.
        assert_eq!(kind_of(Cause::Refused, false, Transient), Transient);
        assert_eq!(kind_of(Cause::Other, true, Transient), Transient);
        assert_eq!(kind_of(Cause::Other, false, Permanent), Permanent);
    }

    #[test]
    fn a_tls_record_of_the_wrong_type_is_plain_http() {
        let wrapped = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ));
        let mut found = Cause::Other;
        walk(&wrapped, &mut |s| {
            if cause_of(s) != Cause::Other {
                found = cause_of(s);
            }
        });
        assert_eq!(found, Cause::PlainHttp);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(cause_of(&refused), Cause::Refused);
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(cause_of(&dns), Cause::Unresolved);
        let later = std::io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert_eq!(cause_of(&later), Cause::Other);
    }
}
