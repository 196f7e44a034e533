//! Seeding real, valid images into a registry: deterministic layers, configs and manifests
//! (same arguments, same digests), single images, OCI indexes and Docker manifest lists.

use super::media::*;
use super::registry::Registry;

/// What was seeded (or found by [`Registry::describe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Digest of the top-level manifest (image manifest, index or list).
    pub digest: String,
    /// Media type of the top-level manifest.
    pub media_type: String,
    /// Every blob digest referenced (configs and layers), children's included, deduplicated,
    /// in order of first reference.
    pub blobs: Vec<String>,
    /// Digests of child manifests of an index / manifest list (empty for a single image).
    pub children: Vec<String>,
}

/// A registry the seeding helpers push into: distribution ([`Registry`]) or another
/// implementation (e.g. [`ferro::Ferro`], which has the referrers API).
pub trait Push {
    /// Uploads a blob; returns its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String;
    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest of `body`.
    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String;
}

impl Push for Registry {
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        Registry::push_blob(self, repo, data)
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        Registry::push_manifest(self, repo, reference, media_type, body)
    }
}

impl<T: Push + ?Sized> Push for &T {
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        (**self).push_blob(repo, data)
    }

    fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        (**self).push_manifest(repo, reference, media_type, body)
    }
}

/// Deterministic pseudo-random bytes (splitmix64-seeded xorshift64*): same seed and size,
/// same bytes; never all zeros.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    // splitmix64 so that neighbouring seeds (and seed 0) give unrelated, non-zero states.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut state = (z ^ (z >> 31)) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Image config; `layer_digests` double as rootfs diff_ids (the layers are not real tars).
fn config_json(os: &str, arch: &str, layer_digests: &[String]) -> Vec<u8> {
    let diff_ids: Vec<String> = layer_digests.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "{{\"architecture\":\"{arch}\",\"os\":\"{os}\",\"config\":{{\"Env\":[\"PATH=/usr/bin:/bin\"]}},\
         \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
        diff_ids.join(",")
    )
    .into_bytes()
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> String {
    format!("{{\"mediaType\":\"{media_type}\",\"digest\":\"{digest}\",\"size\":{size}}}")
}

struct Kind {
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

const DOCKER: Kind = Kind {
    manifest: DOCKER_MANIFEST,
    config: DOCKER_CONFIG,
    layer: DOCKER_LAYER,
};
const OCI: Kind = Kind {
    manifest: OCI_MANIFEST,
    config: OCI_CONFIG,
    layer: OCI_LAYER,
};

/// Pushes config and layers, returns (manifest bytes, blob digests). Does not push the manifest.
fn build_image(
    reg: &impl Push,
    repo: &str,
    kind: &Kind,
    os: &str,
    arch: &str,
    layers: &[Vec<u8>],
) -> (Vec<u8>, Vec<String>) {
    let mut layer_digests = Vec::new();
    let mut layer_descs = Vec::new();
    for l in layers {
        let d = reg.push_blob(repo, l);
        layer_descs.push(descriptor(kind.layer, &d, l.len()));
        layer_digests.push(d);
    }
    let config = config_json(os, arch, &layer_digests);
    let config_digest = reg.push_blob(repo, &config);
    let mut blobs = vec![config_digest.clone()];
    for d in layer_digests {
        if !blobs.contains(&d) {
            blobs.push(d);
        }
    }
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{},\"layers\":[{}]}}",
        kind.manifest,
        descriptor(kind.config, &config_digest, config.len()),
        layer_descs.join(",")
    );
    (manifest.into_bytes(), blobs)
}

fn seed_image(reg: &impl Push, repo: &str, tag: &str, kind: &Kind, layers: &[Vec<u8>]) -> Seeded {
    let (manifest, blobs) = build_image(reg, repo, kind, "linux", "amd64", layers);
    let digest = reg.push_manifest(repo, tag, kind.manifest, &manifest);
    Seeded {
        digest,
        media_type: kind.manifest.to_string(),
        blobs,
        children: Vec::new(),
    }
}

/// Docker v2 schema 2 image (linux/amd64) with the given layers, tagged `tag`.
pub fn seed_docker_image(reg: &impl Push, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Seeded {
    seed_image(reg, repo, tag, &DOCKER, layers)
}

/// OCI image manifest (with `mediaType` set; linux/amd64) with the given layers, tagged `tag`.
pub fn seed_oci_image(reg: &impl Push, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Seeded {
    seed_image(reg, repo, tag, &OCI, layers)
}

/// Layers of the child for platform number `i`: one layer shared by all platforms
/// (`layer(layer_seed, 2048)`) and one of its own (`layer(layer_seed + 1 + i, 1024 + i)`).
pub fn platform_layers(layer_seed: u64, i: usize) -> Vec<Vec<u8>> {
    vec![
        layer(layer_seed, 2048),
        layer(layer_seed.wrapping_add(1 + i as u64), 1024 + i),
    ]
}

fn seed_multi(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    list_type: &str,
    kind: &Kind,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    let mut blobs: Vec<String> = Vec::new();
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (i, (os, arch)) in platforms.iter().enumerate() {
        let layers = platform_layers(layer_seed, i);
        let (manifest, child_blobs) = build_image(reg, repo, kind, os, arch, &layers);
        let digest = sha256_digest(&manifest);
        reg.push_manifest(repo, &digest, kind.manifest, &manifest);
        for b in child_blobs {
            if !blobs.contains(&b) {
                blobs.push(b);
            }
        }
        entries.push(format!(
            "{{\"mediaType\":\"{}\",\"digest\":\"{digest}\",\"size\":{},\
             \"platform\":{{\"architecture\":\"{arch}\",\"os\":\"{os}\"}}}}",
            kind.manifest,
            manifest.len()
        ));
        children.push(digest);
    }
    let list = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{list_type}\",\"manifests\":[{}]}}",
        entries.join(",")
    );
    let digest = reg.push_manifest(repo, tag, list_type, list.as_bytes());
    Seeded {
        digest,
        media_type: list_type.to_string(),
        blobs,
        children,
    }
}

/// OCI image index of OCI image manifests, one per (os, arch); children pushed by digest
/// first, then the index tagged `tag`. Layers: see [`platform_layers`].
pub fn seed_oci_index(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    seed_multi(reg, repo, tag, OCI_INDEX, &OCI, platforms, layer_seed)
}

/// Docker manifest list of Docker v2 schema 2 manifests, one per (os, arch); children pushed
/// by digest first, then the list tagged `tag`. Layers: see [`platform_layers`].
pub fn seed_docker_list(
    reg: &impl Push,
    repo: &str,
    tag: &str,
    platforms: &[(&str, &str)],
    layer_seed: u64,
) -> Seeded {
    seed_multi(
        reg,
        repo,
        tag,
        DOCKER_MANIFEST_LIST,
        &DOCKER,
        platforms,
        layer_seed,
    )
}

/// Pushes an SBOM as ORAS does: an OCI manifest with `artifactType` SPDX, the empty config,
/// `document` as its layer and `subject` (of `subject_size` bytes) naming the image; pushed by
/// digest (no tag). With `fallback` (a registry without the referrers API), the fallback index
/// `sha256-<hex>` lists it. Returns its digest.
pub fn push_sbom(
    reg: &impl Push,
    repo: &str,
    subject: &str,
    subject_size: usize,
    document: &str,
    fallback: bool,
) -> String {
    let spdx = "application/spdx+json";
    let empty_digest = reg.push_blob(repo, b"{}");
    let document_digest = reg.push_blob(repo, document.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{spdx}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty_digest}","size":2}},"layers":[{{"mediaType":"{spdx}","digest":"{document_digest}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{subject_size}}}}}"#,
        document.len()
    );
    let digest = sha256_digest(manifest.as_bytes());
    reg.push_manifest(repo, &digest, OCI_MANIFEST, manifest.as_bytes());
    if fallback {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{},"artifactType":"{spdx}"}}]}}"#,
            manifest.len()
        );
        reg.push_manifest(
            repo,
            &format!("sha256-{}", subject.trim_start_matches("sha256:")),
            OCI_INDEX,
            index.as_bytes(),
        );
    }
    digest
}
