//! `skopeo sync --src yaml` files: per source registry, `images` (a repository and its tags
//! or digests; none: every tag), `images-by-tag-regex`, `images-by-semver`, and the
//! registry's `tls-verify`, `credentials` and `cert-dir`, which a mapping file cannot hold:
//! those become notes saying where they go. The destination is skopeo's command-line
//! argument, here `--to`; repositories keep their path under it, as `skopeo sync` does.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Translation, quoted, rooted};
use crate::model::reference::Reference;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Registry {
    #[serde(default)]
    images: BTreeMap<String, Option<Vec<String>>>,
    #[serde(default)]
    images_by_tag_regex: BTreeMap<String, String>,
    #[serde(default)]
    images_by_semver: BTreeMap<String, String>,
    #[serde(default)]
    tls_verify: Option<bool>,
    #[serde(default)]
    credentials: Option<serde_norway::Value>,
    #[serde(default)]
    cert_dir: Option<String>,
}

pub fn translate(text: &str, to: Option<&str>) -> Translation {
    let mut out = Translation::default();
    let Some(to) = to else {
        out.errors.push(
            "skopeo sync takes its destination on the command line: give it with --to DEST"
                .to_owned(),
        );
        return out;
    };
    let file: BTreeMap<String, Registry> = match serde_norway::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            out.errors.push(format!("not a skopeo sync YAML file: {e}"));
            return out;
        }
    };
    for (host, registry) in &file {
        notes(host, registry, &mut out);
        for (name, tags) in &registry.images {
            let entry = format!("{host}: images: {name}");
            let tags = tags.as_deref().unwrap_or_default();
            if tags.is_empty() {
                push(
                    &mut out,
                    one(host, name, to, "*", "").map(|l| vec![l]),
                    &entry,
                );
            }
            for tag in tags {
                let line = if tag.starts_with("sha256:") || tag.starts_with("sha512:") {
                    Err(format!(
                        "{host}/{name}@{tag}: a digest without a tag cannot be mirrored yet (give it a tag)"
                    ))
                } else {
                    one(host, name, to, tag, "")
                };
                push(&mut out, line.map(|l| vec![l]), &entry);
            }
        }
        for (name, re) in &registry.images_by_tag_regex {
            let line = quoted("regex", re).and_then(|o| one(host, name, to, "*", &o));
            push(
                &mut out,
                line.map(|l| vec![l]),
                &format!("{host}: images-by-tag-regex: {name}"),
            );
        }
        for (name, constraint) in &registry.images_by_semver {
            let line = cargo_range(constraint)
                .and_then(|r| quoted("semver", &r))
                .and_then(|o| one(host, name, to, "*", &o));
            push(
                &mut out,
                line.map(|l| vec![l]),
                &format!("{host}: images-by-semver: {name}"),
            );
        }
    }
    out
}

fn push(out: &mut Translation, lines: Result<Vec<String>, String>, entry: &str) {
    match lines {
        Ok(lines) => out.lines.extend(lines),
        Err(e) => out.errors.push(format!("{entry}: {e}")),
    }
}

/// `HOST/NAME:TAG TO/NAME[:TAG]  # image-mirror: OPTIONS` (a `*` tag keeps the source's).
fn one(host: &str, name: &str, to: &str, tag: &str, options: &str) -> Result<String, String> {
    let source = format!("{host}/{name}:{tag}");
    Reference::parse(&source).map_err(|e| format!("{source:?}: {e}"))?;
    let destination = rooted(to, name)?;
    let destination = if tag == "*" {
        destination
    } else {
        format!("{destination}:{tag}")
    };
    Ok(if options.is_empty() {
        format!("{source} {destination}")
    } else {
        format!("{source} {destination}  # image-mirror: {options}")
    })
}

fn notes(host: &str, registry: &Registry, out: &mut Translation) {
    if registry.tls_verify == Some(false) {
        out.notes.push(format!(
            "{host}: tls-verify: false: run image-mirror with --insecure-registry {host}"
        ));
    }
    if registry.credentials.is_some() {
        out.notes.push(format!(
            "{host}: credentials: put them in the registry auth file (config.json) under {host:?}"
        ));
    }
    if let Some(dir) = &registry.cert_dir {
        out.notes.push(format!(
            "{host}: cert-dir {dir}: put its CA certificates (*.crt) in /etc/containers/certs.d/{host}/"
        ));
    }
}

/// A Masterminds semver constraint (what skopeo reads) in Cargo's syntax: comparators joined
/// by commas instead of blanks, no blank after an operator. `||` and hyphen ranges have no
/// Cargo equivalent and are refused.
fn cargo_range(constraint: &str) -> Result<String, String> {
    if constraint.contains("||") {
        return Err(format!(
            "{constraint:?}: alternatives (||) cannot be translated: write one line per range"
        ));
    }
    if constraint.contains(" - ") {
        return Err(format!(
            "{constraint:?}: hyphen ranges cannot be translated: write >=A, <=B"
        ));
    }
    let mut comparators = Vec::new();
    let mut pending_op = String::new();
    for word in constraint.split([' ', ',']).filter(|w| !w.is_empty()) {
        if word.chars().all(|c| "<>=!~^".contains(c)) {
            pending_op.push_str(word);
        } else {
            comparators.push(format!("{pending_op}{word}"));
            pending_op.clear();
        }
    }
    let range = comparators.join(", ");
    semver::VersionReq::parse(&range)
        .map(|_| range.clone())
        .map_err(|e| format!("{constraint:?}: not a range image-mirror reads ({range:?}: {e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\.13\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: /home/john/certs
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
"#;

    #[test]
    fn the_documented_example_translates() {
        let t = super::super::translate(
            super::super::Format::SkopeoSync,
            EXAMPLE,
            Some("mirror.example.com/sync/"),
        );
        assert_eq!(
            t.lines,
            [
                "quay.io/coreos/etcd:latest mirror.example.com/sync/coreos/etcd:latest",
                "registry.example.com/busybox:* mirror.example.com/sync/busybox",
                "registry.example.com/redis:1.0 mirror.example.com/sync/redis:1.0",
                "registry.example.com/redis:2.0 mirror.example.com/sync/redis:2.0",
                r#"registry.example.com/nginx:* mirror.example.com/sync/nginx  # image-mirror: regex="^1\.13\.[12]-alpine-perl$""#,
                r#"registry.example.com/alpine:* mirror.example.com/sync/alpine  # image-mirror: semver=">=3.12.0""#,
            ]
        );
        assert_eq!(t.errors.len(), 1, "{:?}", t.errors);
        assert!(t.errors[0].contains("redis@sha256:0000"), "{:?}", t.errors);
        assert_eq!(t.notes.len(), 3, "{:?}", t.notes);
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("--insecure-registry quay.io"))
        );
        assert!(!t.notes.iter().any(|n| n.contains("secret")));
        assert!(!translate(EXAMPLE, None).errors.is_empty());
    }

    #[test]
    fn masterminds_ranges_in_cargo_syntax() {
        assert_eq!(
            cargo_range(">= 1.2, < 3.0.0").as_deref(),
            Ok(">=1.2, <3.0.0")
        );
        assert_eq!(cargo_range(">=1.2 <1.5").as_deref(), Ok(">=1.2, <1.5"));
        assert_eq!(cargo_range("~1.2.3").as_deref(), Ok("~1.2.3"));
        assert!(cargo_range("1.2 || 2.0").is_err());
        assert!(cargo_range("1.2 - 1.4").is_err());
        assert!(cargo_range("banana").is_err());
    }
}
