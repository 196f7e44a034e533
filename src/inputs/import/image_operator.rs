//! image-operator's `Image` resources (`apiVersion: skopeo.io/v1alpha1`), one YAML document
//! each: `spec.source` and `spec.destination` with a `name` and a `version` that is a tag or
//! an `x` pattern (`v2.13.x`, `2.x.0`), `allowCandidateRelease` for `-rcN` tags, and a
//! `mode`: `OneShot` and `OnceByTag` copy a tag once and never again, which is `immutable`.

use serde::Deserialize;

use super::{Translation, quoted, rooted};
use crate::model::reference::Reference;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    allow_candidate_release: bool,
    #[serde(default)]
    mode: Option<String>,
    source: Endpoint,
    destination: Endpoint,
}

#[derive(Deserialize)]
struct Endpoint {
    name: String,
    version: String,
}

pub fn translate(text: &str, to: Option<&str>) -> Translation {
    let mut out = Translation::default();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let resource = match Resource::deserialize(document) {
            Ok(r) => r,
            Err(e) => {
                out.errors
                    .push(format!("document {}: not an Image resource: {e}", i + 1));
                continue;
            }
        };
        let entry = format!("document {} ({:?})", i + 1, resource.metadata.name);
        match line(&resource, to) {
            Ok(l) => out.lines.push(l),
            Err(e) => out.errors.push(format!("{entry}: {e}")),
        }
    }
    out
}

fn line(resource: &Resource, to: Option<&str>) -> Result<String, String> {
    if !resource.api_version.starts_with("skopeo.io/") || resource.kind != "Image" {
        return Err(format!(
            "kind {:?} of {:?}: only skopeo.io Image resources are translated",
            resource.kind, resource.api_version
        ));
    }
    let spec = resource.spec.as_ref().ok_or("no spec")?;
    let destination = match to {
        Some(to) => rooted(to, &spec.destination.name)?,
        None => spec.destination.name.clone(),
    };
    let mut options = Vec::new();
    if matches!(spec.mode.as_deref(), Some("OneShot" | "OnceByTag")) {
        options.push("immutable".to_owned());
    }
    let (source, destination) = if spec.source.version.split('.').any(|p| p == "x") {
        if spec.destination.version != spec.source.version {
            return Err(format!(
                "destination version {:?} differs from the source's pattern {:?}: tags keep their names",
                spec.destination.version, spec.source.version
            ));
        }
        options.insert(
            0,
            quoted(
                "regex",
                &pattern_regex(&spec.source.version, spec.allow_candidate_release),
            )?,
        );
        (format!("{}:*", spec.source.name), destination)
    } else {
        (
            format!("{}:{}", spec.source.name, spec.source.version),
            format!("{destination}:{}", spec.destination.version),
        )
    };
    for reference in [&source, &destination] {
        Reference::parse(reference).map_err(|e| format!("{reference:?}: {e}"))?;
    }
    Ok(if options.is_empty() {
        format!("{source} {destination}")
    } else {
        format!(
            "{source} {destination}  # image-mirror: {}",
            options.join(" ")
        )
    })
}

/// `v2.13.x` → `^v2\.13\.[0-9]+$`; with candidates, `-rcN` (one or two digits) may follow.
fn pattern_regex(version: &str, candidates: bool) -> String {
    let parts: Vec<String> = version
        .split('.')
        .map(|p| {
            if p == "x" {
                "[0-9]+".to_owned()
            } else {
                regex::escape(p)
            }
        })
        .collect();
    let rc = if candidates { "(-rc[0-9]{1,2})?" } else { "" };
    format!("^{}{rc}$", parts.join("\\."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_translate() {
        let t = translate(
            r#"apiVersion: skopeo.io/v1alpha1
kind: Image
metadata:
  name: nginx-alpine
spec:
  frequency: 15m
  mode: Recurrent
  source:
    name: quay.io/nginx/nginx-ingress
    version: 3.7-alpine
  destination:
    name: tchoupinax/nginx/nginx-ingress
    version: 3.7-alpine
---
apiVersion: skopeo.io/v1alpha1
kind: Image
metadata:
  name: argocd-2-13-rc
spec:
  allowCandidateRelease: true
  mode: OneShot
  source:
    name: quay.io/argoproj/argocd
    version: v2.13.x
  destination:
    name: tchoupinax/argoproj/argocd
    version: v2.13.x
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
"#,
            None,
        );
        assert_eq!(
            t.lines,
            [
                "quay.io/nginx/nginx-ingress:3.7-alpine tchoupinax/nginx/nginx-ingress:3.7-alpine",
                r#"quay.io/argoproj/argocd:* tchoupinax/argoproj/argocd  # image-mirror: regex="^v2\.13\.[0-9]+(-rc[0-9]{1,2})?$" immutable"#,
            ]
        );
        assert_eq!(t.errors.len(), 1, "{:?}", t.errors);
        assert!(t.errors[0].contains("document 3") && t.errors[0].contains("ConfigMap"));
    }

    #[test]
    fn x_patterns_match_what_image_operator_matches() {
        let re =
            regex::Regex::new(&pattern_regex("2.x.0", false)).unwrap_or_else(|e| panic!("{e}"));
        assert!(re.is_match("2.14.0") && !re.is_match("2.14.1") && !re.is_match("2.14.0-rc1"));
        let rc = regex::Regex::new(&pattern_regex("4.x.x", true)).unwrap_or_else(|e| panic!("{e}"));
        assert!(rc.is_match("4.1.2-rc3") && !rc.is_match("4.1.2-beta"));
    }
}
