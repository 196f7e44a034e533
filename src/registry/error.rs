//! How registries fail, read from their answers: the [`ErrorKind`] of a status or a
//! transport error (what is worth asking again), `Retry-After`, the registry's own words from
//! a distribution error body, and a transport error described without its URL's query (an
//! upload's state or a pre-signed signature is a credential of its own).
//!
//! The bottom of the registry stack: depends on [`crate::model::failure`] and
//! [`crate::redact`] only.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

use super::tls::DEFAULT_CERTS_DIRS;
use crate::model::failure::ErrorKind;
use crate::redact::{redact, url_for_humans};

/// The kind of a failed answer with this status.
pub fn kind_of_status(status: StatusCode) -> ErrorKind {
    match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Denied,
        s if is_transient_status(s) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// 408, 429 and 5xx: the registry may answer differently a moment later.
pub fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The kind of a transport error: a malformed request or a TLS/protocol failure (an
/// `InvalidData` I/O error underneath, e.g. an untrusted certificate) is permanent; refused
/// or reset connections, timeouts and bodies cut short are transient.
pub fn transport_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_builder() || e.is_redirect() {
        return ErrorKind::Permanent;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(kind) = io_kind(s) {
            return kind;
        }
        source = s.source();
    }
    ErrorKind::Transient
}

/// What an I/O error (or the TLS error inside it) says about trying again, if anything.
/// `io::Error::source` skips the error it wraps, so wrapped errors are unwrapped here.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_kind(tls));
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    if let Some(inner) = io.get_ref()
        && let Some(kind) = io_kind(inner)
    {
        return Some(kind);
    }
    (io.kind() == std::io::ErrorKind::InvalidData).then_some(ErrorKind::Permanent)
}

/// A certificate either side refuses stays refused however often it is asked again; other
/// TLS failures (a record garbled in transit) may not recur.
fn tls_kind(e: &rustls::Error) -> ErrorKind {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::NoApplicationProtocol => ErrorKind::Permanent,
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::CertificateRequired
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::HandshakeFailure
            | A::ProtocolVersion
            | A::InsufficientSecurity,
        ) => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

/// `Retry-After` on a 429 or 503: delay-seconds or an HTTP date.
pub fn retry_after(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A reqwest error with its causes, and a hint for TLS trust failures.
pub fn describe_http_error(e: &reqwest::Error, host: &str) -> String {
    // reqwest names the URL; its query (an upload session's state, a pre-signed blob URL's
    // signature) is a credential of its own and stays out of logs and reports, as does
    // anything secret-looking in the causes (a proxy's or CDN's words).
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &url_for_humans(url));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    let mut text = redact(&text);
    let lower = text.to_ascii_lowercase();
    // The registry's alert, not our verdict on its certificate: it wants one from us.
    if lower.contains("received fatal alert: badcertificate")
        || lower.contains("received fatal alert: certificaterequired")
    {
        let [containers, docker] = DEFAULT_CERTS_DIRS;
        text.push_str(&format!(
            " (TLS: {host} asks for a client certificate, or refused ours; put it and its key \
             in {containers}/{host}/ or {docker}/{host}/ as NAME.cert and NAME.key)"
        ));
    } else if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("tls")
    {
        let [containers, docker] = DEFAULT_CERTS_DIRS;
        text.push_str(&format!(
            " (TLS: the certificate of {host} is not trusted; put its CA certificate in \
             {containers}/{host}/ca.crt or {docker}/{host}/ca.crt, or use --insecure-registry \
             {host})"
        ));
    }
    text
}

/// Whether `body` is a registry's error envelope (`{"errors": [...]}`): a 404 with one is
/// the registry saying what is missing; a 404 without one may be an API it does not have.
pub fn is_registry_error(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<serde_json::Value>,
    }
    serde_json::from_slice::<Envelope>(body).is_ok_and(|e| !e.errors.is_empty())
}

/// The registry's own words for a failed request: its error codes and messages when it sent
/// a distribution error body, else the status. Redacted: a CDN's or object store's message
/// quotes the signed URL it was sent.
pub fn registry_answer(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => {
            let parts: Vec<String> = env
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            redact(&format!("{status}: {}", parts.join("; ")))
        }
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn tls_errors_inside_io_errors_decide_whether_to_ask_again() {
        let wrapped = |tls: rustls::Error| {
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls))
        };
        let untrusted = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(io_kind(&untrusted), Some(ErrorKind::Permanent));
        let refused = wrapped(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate,
        ));
        assert_eq!(io_kind(&refused), Some(ErrorKind::Permanent));
        // A record garbled in transit may not happen again.
        assert_eq!(
            io_kind(&wrapped(rustls::Error::DecryptError)),
            Some(ErrorKind::Transient)
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(io_kind(&reset), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_on_429_and_503_only() {
        use reqwest::header::HeaderMap;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &headers), None);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::ZERO)
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), None);
    }

    #[test]
    fn kinds_come_from_the_status() {
        assert_eq!(kind_of_status(StatusCode::NOT_FOUND), ErrorKind::NotFound);
        assert_eq!(kind_of_status(StatusCode::FORBIDDEN), ErrorKind::Denied);
        assert_eq!(
            kind_of_status(StatusCode::BAD_REQUEST),
            ErrorKind::Permanent
        );
        for s in [429, 408, 500, 502, 503, 504] {
            assert_eq!(
                kind_of_status(StatusCode::from_u16(s).unwrap()),
                ErrorKind::Transient
            );
        }
    }

    #[test]
    fn a_missing_api_is_told_from_a_missing_repository() {
        assert!(is_registry_error(
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#
        ));
        assert!(!is_registry_error(b""));
        assert!(!is_registry_error(b"404 page not found"));
    }

    #[test]
    fn registry_answers_quote_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(
            registry_answer(StatusCode::NOT_FOUND, body),
            "404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            registry_answer(StatusCode::BAD_GATEWAY, b"oops"),
            "502 Bad Gateway"
        );
        let cdn = br#"{"errors":[{"code":"DENIED","message":"Request has expired: https://cdn.example/b?X-Amz-Signature=5ec12e7"}]}"#;
        let said = registry_answer(StatusCode::FORBIDDEN, cdn);
        assert!(!said.contains("5ec12e7"), "{said}");
        assert!(said.contains("https://cdn.example/b?…"), "{said}");
    }
}
