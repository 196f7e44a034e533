//! The registry API as the harness speaks it (blocking, through [`Registry::agent`]): pushes,
//! mounts, manifests, tags, the catalog, blobs, deletes; [`Registry::describe`] and
//! [`Registry::assert_complete`] walk what an image references.

use super::media::*;
use super::registry::Registry;
use super::seed::Seeded;

impl Registry {
    /// Monolithic upload: `POST /v2/<repo>/blobs/uploads/` then `PUT <location>&digest=`.
    /// Returns the blob digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blob_as(repo, data, &sha256_digest(data))
    }

    /// Uploads `data` under `digest` (a sha512 one, say), which the registry checks.
    pub fn push_blob_as(&self, repo: &str, data: &[u8], digest: &str) -> String {
        let digest = digest.to_owned();
        let what = format!("push blob {digest} to {repo}");
        let mut resp = self
            .agent
            .post(self.v2(&format!("{repo}/blobs/uploads/")))
            .send_empty()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if resp.status().as_u16() != 202 {
            Self::fail(&what, &mut resp);
        }
        let location = Self::header(&resp, "Location").expect("upload Location header");
        Self::read_body(&mut resp);
        let url = upload_commit_url(&self.url(), location, &digest);
        // Content-Type matters: with a form content type Go parses (and consumes) the body.
        let resp = self
            .agent
            .put(url)
            .content_type("application/octet-stream")
            .send(data)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Self::expect_created(&what, resp, &digest);
        digest
    }

    /// Requires a PUT's answer to be 201 and its Docker-Content-Digest to be `digest` (if sha256).
    fn expect_created(what: &str, mut resp: ureq::http::Response<ureq::Body>, digest: &str) {
        if resp.status().as_u16() != 201 {
            Self::fail(what, &mut resp);
        }
        let returned = Self::header(&resp, "Docker-Content-Digest");
        Self::read_body(&mut resp);
        // distribution answers with its canonical (sha256) digest whatever was asked.
        if digest.starts_with("sha256:") {
            assert_eq!(returned.as_deref(), Some(digest), "{what}: digest header");
        }
    }

    /// Cross-repository mount: `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`.
    /// Returns true if the registry mounted the blob (201), false if it fell back to a new
    /// upload session (202).
    pub fn mount_blob(&self, repo: &str, from: &str, digest: &str) -> bool {
        let what = format!("mount {digest} from {from} into {repo}");
        let mut resp = self
            .agent
            .post(self.v2(&format!("{repo}/blobs/uploads/?mount={digest}&from={from}")))
            .send_empty()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            201 => {
                Self::read_body(&mut resp);
                true
            }
            202 => {
                Self::read_body(&mut resp);
                false
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest of `body` (checked against the
    /// registry's Docker-Content-Digest).
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let digest = sha256_digest(body);
        let what = format!("push manifest {repo}:{reference} ({media_type})");
        let resp = self
            .agent
            .put(self.v2(&format!("{repo}/manifests/{reference}")))
            .content_type(media_type)
            .send(body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Self::expect_created(&what, resp, &digest);
        digest
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting all four manifest types.
    /// Returns (Content-Type, body), or None on 404.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let what = format!("get manifest {repo}:{reference}");
        let mut resp = self
            .agent
            .get(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("Accept", ALL_MANIFEST_TYPES.join(", "))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => {
                let ct = Self::header(&resp, "Content-Type").unwrap_or_default();
                Some((ct, Self::read_body(&mut resp)))
            }
            404 => {
                Self::read_body(&mut resp);
                None
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `HEAD /v2/<repo>/manifests/<reference>` accepting all four manifest types.
    /// Returns Docker-Content-Digest, or None on 404.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let what = format!("head manifest {repo}:{reference}");
        let mut resp = self
            .agent
            .head(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("Accept", ALL_MANIFEST_TYPES.join(", "))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(
                Self::header(&resp, "Docker-Content-Digest")
                    .unwrap_or_else(|| panic!("{what}: no Docker-Content-Digest")),
            ),
            404 => None,
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (deletes are enabled). True on 202, false on 404.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> bool {
        self.delete(&format!("{repo}/manifests/{digest}"))
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`: unlinks the blob from the repository (useful to
    /// build a deliberately incomplete image). True on 202, false on 404.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> bool {
        self.delete(&format!("{repo}/blobs/{digest}"))
    }

    fn delete(&self, path: &str) -> bool {
        let what = format!("delete {path}");
        let mut resp = self
            .agent
            .delete(self.v2(path))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            202 => {
                Self::read_body(&mut resp);
                true
            }
            404 => {
                Self::read_body(&mut resp);
                false
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// Sorted tags of `repo`; empty if the repository is unknown (404 NAME_UNKNOWN).
    /// Follows `Link` headers, although distribution 2.8.2 never paginates tags.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut tags = Vec::new();
        let mut url = self.v2(&format!("{repo}/tags/list"));
        loop {
            let what = format!("list tags of {repo}");
            let mut resp = self
                .agent
                .get(&url)
                .call()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    Self::read_body(&mut resp);
                    break;
                }
                _ => Self::fail(&what, &mut resp),
            }
            let link = Self::header(&resp, "Link");
            let body: serde_json::Value =
                serde_json::from_slice(&Self::read_body(&mut resp)).expect("tags/list JSON");
            if let Some(list) = body["tags"].as_array() {
                tags.extend(
                    list.iter()
                        .map(|t| t.as_str().expect("tag string").to_string()),
                );
            }
            match link.as_deref().and_then(next_link) {
                Some(next) => url = format!("{}{next}", self.url()),
                None => break,
            }
        }
        tags.sort();
        tags
    }

    /// Sorted repository names from `/v2/_catalog`.
    pub fn catalog(&self) -> Vec<String> {
        // distribution rejects n > 1000 with 400 PAGINATION_NUMBER_INVALID.
        let mut url = self.v2("_catalog?n=1000");
        let mut repos: Vec<String> = Vec::new();
        loop {
            let mut resp = self.agent.get(&url).call().expect("catalog");
            if resp.status().as_u16() != 200 {
                Self::fail("catalog", &mut resp);
            }
            let link = Self::header(&resp, "Link");
            let body: serde_json::Value =
                serde_json::from_slice(&Self::read_body(&mut resp)).expect("catalog JSON");
            if let Some(list) = body["repositories"].as_array() {
                repos.extend(list.iter().filter_map(|r| r.as_str().map(str::to_string)));
            }
            match link.as_deref().and_then(next_link) {
                Some(next) => url = format!("{}{next}", self.url()),
                None => break,
            }
        }
        repos.sort();
        repos
    }

    /// Size of the blob in `repo` (HEAD Content-Length), None if it is not there.
    pub fn blob_size(&self, repo: &str, digest: &str) -> Option<u64> {
        let what = format!("head blob {repo}@{digest}");
        let mut resp = self
            .agent
            .head(self.v2(&format!("{repo}/blobs/{digest}")))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(
                Self::header(&resp, "Content-Length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: no Content-Length")),
            ),
            404 => None,
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` is 200.
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        self.blob_size(repo, digest).is_some()
    }

    /// Blob content, None on 404.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let what = format!("get blob {repo}@{digest}");
        let mut resp = self
            .agent
            .get(self.v2(&format!("{repo}/blobs/{digest}")))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match resp.status().as_u16() {
            200 => Some(Self::read_body(&mut resp)),
            404 => {
                Self::read_body(&mut resp);
                None
            }
            _ => Self::fail(&what, &mut resp),
        }
    }

    /// Walks the manifest at `reference` (index/list children too) and reports what it
    /// references. None if the top-level manifest is not there. Panics if a child manifest is
    /// missing or a manifest's bytes do not match the digest it was fetched by.
    pub fn describe(&self, repo: &str, reference: &str) -> Option<Seeded> {
        let (media_type, body) = self.manifest(repo, reference)?;
        let digest = sha256_digest(&body);
        if reference.starts_with("sha256:") {
            assert_eq!(
                digest, reference,
                "{repo}@{reference}: manifest bytes digest"
            );
        }
        let head = self.manifest_digest(repo, reference);
        assert_eq!(
            head.as_deref(),
            Some(digest.as_str()),
            "{repo}:{reference}: HEAD digest"
        );
        let mut out = Seeded {
            digest,
            media_type: media_type.clone(),
            blobs: Vec::new(),
            children: Vec::new(),
        };
        self.walk(repo, reference, &media_type, &body, &mut out);
        Some(out)
    }

    fn walk(&self, repo: &str, reference: &str, media_type: &str, body: &[u8], out: &mut Seeded) {
        let json: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{repo}@{reference}: manifest is not JSON: {e}"));
        if let Some(declared) = json["mediaType"].as_str() {
            assert_eq!(
                declared, media_type,
                "{repo}@{reference}: mediaType vs Content-Type"
            );
        }
        assert_eq!(
            json["schemaVersion"], 2,
            "{repo}@{reference}: schemaVersion"
        );
        match media_type {
            DOCKER_MANIFEST_LIST | OCI_INDEX => {
                let children = json["manifests"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{repo}@{reference}: no manifests array"));
                for child in children {
                    let child_digest = child["digest"].as_str().expect("child digest");
                    let (child_type, child_body) =
                        self.manifest(repo, child_digest).unwrap_or_else(|| {
                            panic!("{repo}@{reference}: child manifest {child_digest} missing")
                        });
                    assert_eq!(
                        sha256_digest(&child_body),
                        child_digest,
                        "{repo}: child manifest bytes"
                    );
                    assert_eq!(
                        child["size"].as_u64(),
                        Some(child_body.len() as u64),
                        "{repo}: child manifest {child_digest} size"
                    );
                    if let Some(declared) = child["mediaType"].as_str() {
                        assert_eq!(
                            declared, child_type,
                            "{repo}: child {child_digest} mediaType"
                        );
                    }
                    if !out.children.iter().any(|c| c == child_digest) {
                        out.children.push(child_digest.to_string());
                    }
                    self.walk(repo, child_digest, &child_type, &child_body, out);
                }
            }
            DOCKER_MANIFEST | OCI_MANIFEST => {
                let layers = json["layers"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{repo}@{reference}: no layers array"));
                for desc in std::iter::once(&json["config"]).chain(layers) {
                    let d = desc["digest"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{repo}@{reference}: descriptor without digest"));
                    if !out.blobs.iter().any(|b| b == d) {
                        out.blobs.push(d.to_string());
                    }
                }
            }
            other => panic!("{repo}@{reference}: unsupported manifest media type {other:?}"),
        }
    }

    /// Asserts that `repo:tag` exists and that every manifest and blob it references (through
    /// index/list children too) exists in `repo` with the declared size.
    pub fn assert_complete(&self, repo: &str, tag: &str) {
        let seeded = self
            .describe(repo, tag)
            .unwrap_or_else(|| panic!("{}/{repo}:{tag}: manifest not found", self.host()));
        let mut manifests = vec![seeded.digest.clone()];
        manifests.extend(seeded.children.iter().cloned());
        for m in &manifests {
            let (_, body) = self.manifest(repo, m).expect("manifest by digest");
            let json: serde_json::Value =
                serde_json::from_slice(&body).expect("a manifest is JSON");
            let Some(layers) = json["layers"].as_array() else {
                continue;
            };
            for desc in std::iter::once(&json["config"]).chain(layers) {
                let d = desc["digest"].as_str().expect("a descriptor has a digest");
                let size = self.blob_size(repo, d);
                assert!(
                    size.is_some(),
                    "{}/{repo}:{tag}: blob {d} (referenced by {m}) missing",
                    self.host()
                );
                assert_eq!(
                    size,
                    desc["size"].as_u64(),
                    "{}/{repo}:{tag}: blob {d} size",
                    self.host()
                );
            }
        }
    }
}

/// The URL that commits a monolithic upload: the upload's `location` (made absolute against
/// `base`) with `digest=` added to its query.
pub(super) fn upload_commit_url(base: &str, location: String, digest: &str) -> String {
    let mut url = if location.starts_with("http://") || location.starts_with("https://") {
        location
    } else {
        format!("{base}{location}")
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(digest);
    url
}

/// Extracts the target of `<...>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    link[end..]
        .contains("rel=\"next\"")
        .then(|| link[start..end].to_string())
}
