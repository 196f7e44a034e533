//! What is attached to an image and how it is found: cosign's tags next to it
//! (`sha256-<hex>.sig`, `.att`, `.sbom`), and OCI 1.1 referrers, listed by the referrers API
//! or by the tag-schema fallback index under `sha256-<hex>`. Pure: the tag names, reading a
//! referrers index and merging two of them, so that the copy step and its tests share one
//! definition of each.

use anyhow::{Result, bail};
use bytes::Bytes;

use super::digest::Digest;
use super::manifest::OCI_INDEX;

/// What an attached manifest is to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Signature,
    Attestation,
    Sbom,
    Referrer,
}

impl Kind {
    /// cosign's tag suffixes, each with what it holds.
    pub const COSIGN: [(Kind, &'static str); 3] = [
        (Kind::Signature, ".sig"),
        (Kind::Attestation, ".att"),
        (Kind::Sbom, ".sbom"),
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Attestation => "attestation",
            Kind::Sbom => "sbom",
            Kind::Referrer => "referrer",
        }
    }
}

/// One attached manifest a copy carried (or, in a dry run, would carry) to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub digest: Digest,
    pub kind: Kind,
    /// A referrer's `artifactType`, when it states one.
    pub artifact_type: Option<String>,
    /// The image (or attached manifest) it is attached to.
    pub subject: Digest,
}

/// The tag both cosign and the referrers fallback derive from a digest: `sha256-<hex>`.
pub fn digest_tag(digest: &Digest) -> String {
    digest.as_str().replacen(':', "-", 1)
}

/// cosign's tag for one kind of attachment (`sha256-<hex>.sig`, …).
pub fn cosign_tag(digest: &Digest, suffix: &str) -> String {
    format!("{}{suffix}", digest_tag(digest))
}

/// Whether a tag could be an attachment (so a repository with none needs no further look).
pub fn is_attachment_tag(tag: &str) -> bool {
    tag.starts_with("sha256-") || tag.starts_with("sha512-")
}

/// One entry of a referrers index: a manifest whose `subject` is the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub artifact_type: Option<String>,
    /// The descriptor as the index wrote it (annotations included), so that an index built
    /// or merged from it says what the source said.
    pub descriptor: serde_json::Value,
}

/// The referrers an OCI index lists (the referrers API's answer or the fallback tag's).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Referrer>> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("not a referrers index: {e}"))?;
    let Some(list) = doc.get("manifests").and_then(|m| m.as_array()) else {
        bail!("not a referrers index: no manifests");
    };
    list.iter()
        .map(|entry| {
            let digest = entry
                .get("digest")
                .and_then(|d| d.as_str())
                .ok_or_else(|| anyhow::anyhow!("a referrer without digest"))?;
            Ok(Referrer {
                digest: Digest::parse(digest)
                    .map_err(|e| anyhow::anyhow!("bad referrer digest: {e}"))?,
                artifact_type: entry
                    .get("artifactType")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned),
                descriptor: entry.clone(),
            })
        })
        .collect()
}

/// A fallback index listing `referrers`, for a destination that has none yet and whose
/// source listed them through the API (with no index bytes to copy).
pub fn build_index(referrers: &[Referrer]) -> Bytes {
    let manifests: Vec<_> = referrers.iter().map(|r| r.descriptor.clone()).collect();
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    Bytes::from(doc.to_string())
}

/// The destination's fallback index with the referrers it lacks appended: what it already
/// lists stays, first and as it was (never clobbered by the source's view). `None` when it
/// lists every one already.
pub fn merge_index(existing: &[u8], add: &[Referrer]) -> Result<Option<Bytes>> {
    let mut doc: serde_json::Value = serde_json::from_slice(existing)
        .map_err(|e| anyhow::anyhow!("the destination's referrers index is unreadable: {e}"))?;
    let Some(list) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        bail!("the destination's referrers index has no manifests");
    };
    let mut changed = false;
    for referrer in add {
        let present = list
            .iter()
            .any(|e| e.get("digest").and_then(|d| d.as_str()) == Some(referrer.digest.as_str()));
        if !present {
            list.push(referrer.descriptor.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(Bytes::from(serde_json::to_vec(&doc)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index(entries: &[(char, &str)]) -> String {
        let list: Vec<String> = entries
            .iter()
            .map(|(c, t)| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":3,"artifactType":"{t}"}}"#,
                    d(*c)
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            list.join(",")
        )
    }

    #[test]
    fn tags_derive_from_the_digest() {
        let digest = Digest::parse(&d('a')).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(digest_tag(&digest), format!("sha256-{}", "a".repeat(64)));
        assert_eq!(
            cosign_tag(&digest, ".sig"),
            format!("sha256-{}.sig", "a".repeat(64))
        );
        assert!(is_attachment_tag(&digest_tag(&digest)));
        assert!(!is_attachment_tag("v1.0"));
    }

    #[test]
    fn merging_keeps_what_the_destination_lists() {
        let dst = index(&[('a', "application/x-one"), ('b', "application/x-two")]);
        let src = parse_index(
            index(&[('b', "application/x-two"), ('c', "application/x-three")]).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src[1].artifact_type.as_deref(), Some("application/x-three"));
        let merged = merge_index(dst.as_bytes(), &src)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("c is new"));
        let digests: Vec<String> = parse_index(&merged)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.digest.to_string())
            .collect();
        assert_eq!(digests, vec![d('a'), d('b'), d('c')]);
        // Everything listed already: nothing to write.
        assert!(
            merge_index(&merged, &src)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        assert!(merge_index(b"{}", &src).is_err());
    }

    #[test]
    fn a_built_index_lists_the_descriptors() {
        let src = parse_index(index(&[('c', "application/x-three")]).as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let built = build_index(&src);
        assert_eq!(parse_index(&built).unwrap_or_else(|e| panic!("{e}")), src);
    }
}
