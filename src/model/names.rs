//! The rules of names inside a reference: registry hosts (`host[:port]`, IPv6 in brackets,
//! Docker Hub's aliases) and repository paths. Apart from [`super::reference`] so that the
//! reference grammar reads as a grammar.

use super::parse::{ParseError, char_at};

/// The canonical name of Docker Hub; its aliases are folded into it.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Host names are case-insensitive (DNS): fold them so `Quay.io` and `quay.io` are one
/// registry; Docker Hub's many names are one.
pub(crate) fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_owned()
    } else {
        host
    }
}

pub(super) fn validate_host(host: &str) -> Result<(), ParseError> {
    let bad = |offset: usize, what: &str| {
        ParseError::at(offset, format!("invalid registry host {host:?}: {what}"))
    };
    let (hostname, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(bad(0, "unclosed '['"));
        };
        let addr = &rest[..end];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(1, "not an IPv6 address"));
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(port) => (None, Some((port, end + 3))),
            None if after.is_empty() => (None, None),
            None => return Err(bad(end + 2, "unexpected text after ']'")),
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (Some(h), Some((p, h.len() + 1))),
            None => (Some(host), None),
        }
    };
    if let Some(hostname) = hostname {
        if hostname.is_empty() {
            return Err(bad(0, "empty host name"));
        }
        let mut offset = 0;
        for label in hostname.split('.') {
            let ok = !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(bad(offset, &format!("bad host name label {label:?}")));
            }
            offset += label.len() + 1;
        }
    }
    if let Some((port, offset)) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u32>().map_or(true, |p| p > 65535))
    {
        return Err(bad(offset, &format!("bad port {port:?}")));
    }
    Ok(())
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or any run of `-`.
pub(super) fn validate_path(path: &str) -> Result<(), ParseError> {
    let mut offset = 0;
    for component in path.split('/') {
        validate_component(component).map_err(|e| ParseError::at(offset + e.offset, e.message))?;
        offset += component.len() + 1;
    }
    Ok(())
}

fn validate_component(component: &str) -> Result<(), ParseError> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err(ParseError::at(0, "empty path component in repository name"));
    }
    let mut i = 0;
    let mut after_separator = true;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            after_separator = false;
            i += 1;
            continue;
        }
        if b.is_ascii_uppercase() {
            return Err(ParseError::at(
                i,
                format!("repository name {component:?} must be lowercase"),
            ));
        }
        let sep_len = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
            _ => {
                return Err(ParseError::at(
                    i,
                    format!(
                        "invalid character {:?} in repository name {component:?}",
                        char_at(component, i)
                    ),
                ));
            }
        };
        if after_separator {
            return Err(ParseError::at(
                i,
                format!(
                    "repository name component {component:?} must start and end with a letter or digit, and separators may not repeat"
                ),
            ));
        }
        after_separator = true;
        i += sep_len;
    }
    if after_separator {
        return Err(ParseError::at(
            bytes.len() - 1,
            format!("repository name component {component:?} must end with a letter or digit"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case names the mutation of `validate_host` it would catch (cargo-mutants
    /// survivors of the issue-18 audit).
    #[test]
    fn hosts_and_ports_follow_the_reference_grammar() {
        for good in [
            "quay.io",
            "localhost",
            "registry-1.docker.io",
            "127.0.0.1:5000",
            "host:65535",
            "[::1]",
            "[::1]:5000",
            "a-b.c",
        ] {
            assert_eq!(validate_host(good), Ok(()), "{good}");
        }
        let offset = |host: &str| validate_host(host).err().map(|e| e.offset);
        assert_eq!(offset("[::1"), Some(0), "unclosed bracket");
        assert_eq!(offset("[zz]"), Some(1), "not IPv6");
        // After `]`: only `:PORT`; its offset points past the bracket.
        assert_eq!(offset("[::1]x"), Some(5));
        assert_eq!(offset("[::1]:x"), Some(6));
        assert_eq!(offset("[::1]:"), Some(6));
        assert_eq!(offset(""), Some(0));
        assert_eq!(offset("-a.io"), Some(0), "label starting with -");
        assert_eq!(offset("a.b-"), Some(2), "label ending with -");
        assert_eq!(offset("a..b"), Some(2), "empty label");
        assert_eq!(offset("ab.c_d"), Some(3), "bad character");
        assert_eq!(offset("host:"), Some(5), "empty port");
        assert_eq!(offset("host:123456"), Some(5), "port too long");
        assert_eq!(offset("host:65536"), Some(5), "port too large");
        assert_eq!(offset("host:5a"), Some(5), "port not a number");
    }
}
