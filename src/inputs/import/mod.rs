//! Other mirroring tools' configuration files, translated into mapping lines (with
//! `# image-mirror:` options), for `image-mirror import`. One file per format; each returns
//! every line it could translate and an error, naming the entry, for everything it could
//! not: nothing is dropped in silence.

mod image_operator;
mod kyma;
mod rancher;
mod skopeo_sync;

use crate::model::reference::Reference;

/// The formats `import --from` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rancher/image-mirror's `images-list`: `SOURCE DESTINATION TAG` lines.
    Rancher,
    /// kyma's image-syncer `images.yaml`: `targetRepoPrefix`, `images` of `source`, `tag`,
    /// `amd64Only`.
    Kyma,
    /// `skopeo sync --src yaml` files: registries with `images`, `images-by-tag-regex`,
    /// `images-by-semver`, `tls-verify`.
    SkopeoSync,
    /// image-operator's `Image` resources (`skopeo.io/v1alpha1`).
    ImageOperator,
}

/// What a translation gives: mapping lines, notes for the operator (settings a mapping
/// file cannot hold), and errors naming what could not be translated.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translation {
    pub lines: Vec<String>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// Translates `text`, a file of `format`; `to` is where destinations go when the format
/// does not say (skopeo-sync), or instead of what it says (kyma's `targetRepoPrefix`).
pub fn translate(format: Format, text: &str, to: Option<&str>) -> Translation {
    let to = to.map(|t| t.trim_end_matches('/'));
    match format {
        Format::Rancher => rancher::translate(text, to),
        Format::Kyma => kyma::translate(text, to),
        Format::SkopeoSync => skopeo_sync::translate(text, to),
        Format::ImageOperator => image_operator::translate(text, to),
    }
}

/// `PREFIX/path` for a destination; the path is checked as a repository name.
fn rooted(prefix: &str, path: &str) -> Result<String, String> {
    let joined = format!("{prefix}/{}", path.trim_start_matches('/'));
    Reference::parse(&joined)
        .map(|_| joined.clone())
        .map_err(|e| format!("{joined:?} is not a repository: {e}"))
}

/// The path of a reference as written, without its registry host (`quay.io/org/app:1` →
/// `org/app`), for tools that re-root sources under a prefix.
fn path_as_written(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_slash..].find(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    };
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            rest.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// A quoted option value: `"` inside it cannot be written, so it is refused.
fn quoted(name: &str, value: &str) -> Result<String, String> {
    if value.contains('"') {
        return Err(format!(
            "{name} {value:?} contains a double quote, which an option cannot hold"
        ));
    }
    Ok(format!("{name}=\"{value}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_written_lose_their_host_only() {
        assert_eq!(path_as_written("quay.io/org/app:1"), "org/app");
        assert_eq!(
            path_as_written("bitnami/keycloak:9.0.3"),
            "bitnami/keycloak"
        );
        assert_eq!(path_as_written("busybox@sha256:31a5"), "busybox");
        assert_eq!(path_as_written("localhost:5000/a/b"), "a/b");
        assert_eq!(
            rooted("eu.gcr.io/kyma/external", "bitnami/x").as_deref(),
            Ok("eu.gcr.io/kyma/external/bitnami/x")
        );
        assert!(rooted("eu.gcr.io/kyma", "UPPER").is_err());
    }
}
