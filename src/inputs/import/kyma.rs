//! kyma's image-syncer `images.yaml`: `targetRepoPrefix` and a list of `images`, each a
//! `source` (by tag, or by digest with a `tag` for the target) and `amd64Only` for an
//! amd64-only image. That tool guarantees tags are immutable: so is every line here.

use serde::Deserialize;

use super::{Translation, path_as_written, rooted};
use crate::model::reference::Reference;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default)]
    target_repo_prefix: Option<String>,
    #[serde(default)]
    images: Vec<Image>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Image {
    source: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default, alias = "amd64only")]
    amd64_only: bool,
}

pub fn translate(text: &str, to: Option<&str>) -> Translation {
    let mut out = Translation::default();
    let file: File = match serde_norway::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            out.errors
                .push(format!("not an image-syncer images file: {e}"));
            return out;
        }
    };
    let prefix = to.map(str::to_owned).or(file
        .target_repo_prefix
        .map(|p| p.trim_end_matches('/').to_owned()));
    let Some(prefix) = prefix else {
        out.errors
            .push("no targetRepoPrefix in the file: say where images go with --to".to_owned());
        return out;
    };
    for (i, image) in file.images.iter().enumerate() {
        match line(&prefix, image) {
            Ok(l) => out.lines.push(l),
            Err(e) => out
                .errors
                .push(format!("images[{i}] (source {:?}): {e}", image.source)),
        }
    }
    out
}

fn line(prefix: &str, image: &Image) -> Result<String, String> {
    let source = Reference::parse(&image.source).map_err(|e| e.to_string())?;
    let tag = match (&image.tag, source.literal_tag(), &source.digest) {
        (Some(tag), _, Some(_)) => tag.clone(),
        (Some(tag), Some(own), None) if tag != own.as_str() => {
            return Err(format!(
                "tag {tag:?} differs from the source's tag {own}: image-syncer re-tags only digest sources"
            ));
        }
        (_, Some(own), _) => own.to_string(),
        (None, None, Some(_)) => return Err("a digest source needs a tag".to_owned()),
        (_, None, None) => return Err("a source needs a tag or a digest".to_owned()),
    };
    let destination = rooted(prefix, &path_as_written(&image.source))?;
    let platforms = if image.amd64_only {
        " platforms=linux/amd64"
    } else {
        ""
    };
    Ok(format!(
        "{} {destination}:{tag}  # image-mirror: immutable{platforms}",
        image.source
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_translates() {
        let t = translate(
            r#"targetRepoPrefix: "eu.gcr.io/kyma-project/external/"
images:
- source: "bitnami/keycloak-gatekeeper:9.0.3"
- source: "busybox@sha256:31a54a0cf86d7354788a8265f60ae6acb4b348a67efbcf7c1007dd3cf7af05ab"
  tag: "1.32.0-v1"
- source: "bitnami/postgres-exporter:0.11.1-debian-11-r69"
  amd64Only: true
- source: "postgres@sha256:9d7ec48fe46e8bbce55deafff58080e49d161a3ed92e67f645014bb50dc599fd"
"#,
            None,
        );
        assert_eq!(
            t.lines,
            [
                "bitnami/keycloak-gatekeeper:9.0.3 eu.gcr.io/kyma-project/external/bitnami/keycloak-gatekeeper:9.0.3  # image-mirror: immutable",
                "busybox@sha256:31a54a0cf86d7354788a8265f60ae6acb4b348a67efbcf7c1007dd3cf7af05ab eu.gcr.io/kyma-project/external/busybox:1.32.0-v1  # image-mirror: immutable",
                "bitnami/postgres-exporter:0.11.1-debian-11-r69 eu.gcr.io/kyma-project/external/bitnami/postgres-exporter:0.11.1-debian-11-r69  # image-mirror: immutable platforms=linux/amd64",
            ]
        );
        assert_eq!(t.errors.len(), 1, "{:?}", t.errors);
        assert!(t.errors[0].contains("images[3]") && t.errors[0].contains("needs a tag"));
        assert!(!translate("images: []\n", None).errors.is_empty());
        assert!(
            !translate(
                "images: [{source: a:1, mystery: 1}]\ntargetRepoPrefix: x.io/y\n",
                None
            )
            .errors
            .is_empty()
        );
    }
}
