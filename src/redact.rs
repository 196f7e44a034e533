//! Secrets out of every text that came from outside. A registry's error body, a CDN's or an
//! object store's refusal, a `Location`, `Link` or `WWW-Authenticate` echo may quote a
//! pre-signed URL (`X-Amz-Signature=…`, which is a credential until it expires), an upload
//! session's state, or a token. Such text is passed through [`redact`] where it enters
//! (`registry::error`), and once more where it leaves (every log line, the summary, the JSON
//! and JUnit reports), so a message that slipped past the first pass still loses its secrets.
//!
//! Over-redacting a harmless `key=value` costs a reader little; missing one leaks a credential
//! into CI logs that many people read, so the patterns are wide.

use std::sync::LazyLock;

use regex::Regex;

/// What a secret is replaced with.
pub const HIDDEN: &str = "…";

/// A URL: its query and fragment (and any `user:password@`) are dropped.
static URL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^\s/@"'<>]*@)?(?P<rest>[^\s?#"'<>]*)(?P<query>[?#][^\s"'<>)]*)?"#).ok()
});

/// `name=value` where the name says credential, in a query, a form or free text.
static PARAM: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?P<name>[a-z0-9_.-]*(?:signature|sig|credential|token|passw|secret|key|policy|state|session|auth|accessid)[a-z0-9_.-]*)=(?P<value>[^&\s"'<>;,]+)"#).ok()
});

/// An `Authorization`-style value: `Bearer …`, `Basic …`.
static SCHEME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?P<scheme>bearer|basic)\s+[a-z0-9._~+/=-]{6,}").ok());

/// A JSON string or XML element whose name says credential: `"token": "…"`,
/// `<SignatureProvided>…</SignatureProvided>` (S3 quotes what it was sent).
static FIELD: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?P<open>"[a-z_]*(?:token|password|secret|signature|credential|stringtosign|canonicalrequest)[a-z_]*"\s*:\s*")[^"]*"|(?P<xopen><(?P<tag>[a-z]*(?:token|password|secret|signature|credential|stringtosign|canonicalrequest)[a-z]*)>)[^<]*"#).ok()
});

/// `text` without URL queries, credential parameters, authorization values, or credential
/// fields of a quoted JSON or XML answer.
pub fn redact(text: &str) -> String {
    // If a pattern failed to compile (it cannot: they are constants, and the unit tests
    // build them), say nothing rather than something that may hold a secret.
    let (Some(url), Some(param), Some(scheme), Some(field)) = (
        URL.as_ref(),
        PARAM.as_ref(),
        SCHEME.as_ref(),
        FIELD.as_ref(),
    ) else {
        return "(message withheld: it could not be checked for secrets)".to_owned();
    };
    let text = url.replace_all(text, |c: &regex::Captures<'_>| {
        let query = if c.name("query").is_some() {
            format!("?{HIDDEN}")
        } else {
            String::new()
        };
        format!("{}{}{query}", &c["scheme"], &c["rest"])
    });
    let text = param.replace_all(&text, |c: &regex::Captures<'_>| {
        format!("{}={HIDDEN}", &c["name"])
    });
    let text = scheme.replace_all(&text, |c: &regex::Captures<'_>| {
        format!("{} {HIDDEN}", &c["scheme"])
    });
    let text = field.replace_all(&text, |c: &regex::Captures<'_>| match c.name("open") {
        Some(open) => format!("{}{HIDDEN}\"", open.as_str()),
        None => format!("{}{HIDDEN}", &c["xopen"]),
    });
    text.into_owned()
}

/// `scheme://host[:port]/path` of a URL, for messages: the query (a signature, an upload
/// session's state) and any user info left out.
pub fn url_for_humans(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let mut text = shown.to_string();
    if url.query().is_some() {
        text.push('?');
        text.push_str(HIDDEN);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "5f1c0ffee0ddba11";

    #[test]
    fn the_patterns_compile() {
        assert!(URL.is_some() && PARAM.is_some() && SCHEME.is_some() && FIELD.is_some());
    }

    #[test]
    fn signed_urls_lose_their_query_and_user_info() {
        let text = format!(
            "AccessDenied: Request has expired for https://bucket.s3.example.com/docker/blobs/sha256:ab?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F2026&X-Amz-Signature={SIG} (see http://user:pw@cdn.example/x?sig={SIG})"
        );
        let shown = redact(&text);
        assert!(!shown.contains(SIG), "{shown}");
        assert!(
            !shown.contains("AKIAEXAMPLE") && !shown.contains("pw@"),
            "{shown}"
        );
        assert!(
            shown.contains("https://bucket.s3.example.com/docker/blobs/sha256:ab?…"),
            "{shown}"
        );
        assert!(shown.contains("http://cdn.example/x?…"), "{shown}");
    }

    #[test]
    fn credentials_outside_urls_go_too() {
        for text in [
            format!("the query was X-Amz-Signature={SIG}&X-Amz-Expires=300"),
            format!("Authorization: Bearer {SIG}abcdef"),
            format!("Basic {SIG}=="),
            format!(r#"{{"token": "{SIG}", "expires_in": 300}}"#),
            format!("<SignatureProvided>{SIG}</SignatureProvided>"),
            format!("/v2/a/blobs/uploads/u?_state={SIG}"),
            format!("Key-Pair-Id={SIG}; Policy={SIG}"),
        ] {
            let shown = redact(&text);
            assert!(!shown.contains(SIG), "{text} -> {shown}");
        }
    }

    #[test]
    fn ordinary_messages_stay_as_they_are() {
        for text in [
            "404 Not Found: MANIFEST_UNKNOWN: manifest unknown",
            "blob sha256:0123abcd of quay.io/org/app:v1 is missing",
            "no pull permission to quay.io/org/app for user robot+x (403 Forbidden)",
            "127.0.0.1:5000/team/app:1 -> 127.0.0.1:5001/app:1",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn urls_for_humans_keep_the_path() {
        let url = reqwest::Url::parse(&format!(
            "https://u:p@cdn.example:8443/b/sha256:ab?sig={SIG}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url_for_humans(&url),
            "https://cdn.example:8443/b/sha256:ab?…"
        );
    }
}
