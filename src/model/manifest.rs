//! Manifests as exact bytes plus what the mirror needs to know of them: the blobs an image
//! references, or the children of an index.

use anyhow::{Result, bail};
use bytes::Bytes;
use serde::Deserialize;

use super::reference::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A blob an image needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// A manifest an index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub digest: Digest,
    /// `os/arch[/variant]`, when the index says.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Image { blobs: Vec<BlobRef> },
    Index { children: Vec<Child> },
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: String,
    pub content: Content,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

impl Manifest {
    /// Reads what a manifest references. The media type comes from the document (OCI
    /// manifests may omit it: `manifests` means an index, `config` an image).
    pub fn parse(bytes: Bytes, digest: Digest) -> Result<Manifest> {
        let doc: Document =
            serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("not a manifest: {e}"))?;
        if doc.schema_version == Some(1) {
            bail!(
                "Docker schema 1 manifests are not supported (their signed bytes cannot be copied exactly)"
            );
        }
        let media_type = match (doc.media_type, &doc.manifests, &doc.config) {
            (Some(t), _, _) => t,
            (None, Some(_), _) => OCI_INDEX.to_owned(),
            (None, None, Some(_)) => OCI_MANIFEST.to_owned(),
            (None, None, None) => bail!("manifest {digest} has neither layers nor manifests"),
        };
        let content = if let Some(manifests) = doc.manifests {
            let children = manifests
                .into_iter()
                .map(|d| {
                    Ok(Child {
                        digest: parse_digest(&d.digest)?,
                        platform: d.platform.as_ref().map(Platform::label),
                    })
                })
                .collect::<Result<_>>()?;
            Content::Index { children }
        } else {
            let mut blobs = Vec::new();
            for d in doc.config.into_iter().chain(doc.layers.unwrap_or_default()) {
                // Foreign layers (Windows base images) live outside registries by design.
                if !d.urls.is_empty() && d.media_type.contains("foreign") {
                    continue;
                }
                let blob = BlobRef {
                    digest: parse_digest(&d.digest)?,
                    size: d.size,
                };
                if !blobs.contains(&blob) {
                    blobs.push(blob);
                }
            }
            Content::Image { blobs }
        };
        Ok(Manifest {
            bytes,
            digest,
            media_type,
            content,
        })
    }

    /// An index keeping only the children whose platform matches; other fields and their
    /// order are kept. `None` when the manifest is not an index or every child matches (the
    /// original bytes, and digest, are then copied as they are).
    /// `named` is how the filter was written, for the error when it keeps nothing.
    pub fn filter_platforms(&self, keep: &regex::Regex, named: &str) -> Result<Option<Manifest>> {
        if !matches!(self.content, Content::Index { .. }) {
            return Ok(None);
        }
        let mut doc: serde_json::Value = serde_json::from_slice(&self.bytes)?;
        let Some(list) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
            return Ok(None);
        };
        let before = list.len();
        list.retain(|entry| {
            let platform: Option<Platform> = entry
                .get("platform")
                .and_then(|p| serde_json::from_value(p.clone()).ok());
            platform.is_some_and(|p| keep.is_match(&p.label()))
        });
        if list.len() == before {
            // Nothing dropped: the list as it is, digest preserved.
            return Ok(None);
        }
        if list.is_empty() {
            bail!("{named} matches no platform of {}", self.digest);
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc)?);
        let digest = Digest::of(&bytes);
        Manifest::parse(bytes, digest).map(Some)
    }
}

fn parse_digest(text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|e| anyhow::anyhow!("bad digest in manifest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn parse(json: &str) -> Manifest {
        let bytes = Bytes::from(json.to_owned());
        let digest = Digest::of(&bytes);
        Manifest::parse(bytes, digest).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn images_list_config_then_layers() {
        let m = parse(&format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":3}},"layers":[{{"mediaType":"l","digest":"{}","size":5}}]}}"#,
            d('a'),
            d('b')
        ));
        assert_eq!(m.media_type, OCI_MANIFEST);
        let Content::Image { blobs } = &m.content else {
            panic!()
        };
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[1].size, 5);
    }

    #[test]
    fn indexes_filter_by_platform() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let m = parse(&json);
        assert_eq!(m.media_type, DOCKER_LIST);
        let keep = regex::Regex::new("^linux/amd64$").unwrap_or_else(|e| panic!("{e}"));
        let filtered = m
            .filter_platforms(&keep, "keep")
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("not an index"));
        let Content::Index { children } = &filtered.content else {
            panic!()
        };
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].platform.as_deref(), Some("linux/amd64"));
        assert_ne!(filtered.digest, m.digest);
        assert_eq!(filtered.media_type, DOCKER_LIST);
        let none = regex::Regex::new("^windows/").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.filter_platforms(&none, "none").is_err());
        // Keeping every platform is no rewrite: the original bytes and digest stay.
        let all = regex::Regex::new("^linux/").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            m.filter_platforms(&all, "all")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
    }

    #[test]
    fn schema1_is_refused() {
        let bytes = Bytes::from_static(br#"{"schemaVersion":1,"fsLayers":[]}"#);
        let e = Manifest::parse(bytes.clone(), Digest::of(&bytes)).unwrap_err();
        assert!(e.to_string().contains("schema 1"));
    }
}
