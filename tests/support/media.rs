//! Media types of the images the harness seeds and reads, and `sha256:` digests of bytes.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

/// User agent of every request the harness itself sends.
pub const HARNESS_USER_AGENT: &str = "image-mirror-test-harness";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The four manifest media types, as sent in `Accept` by [`Registry::manifest`] and
/// [`Registry::manifest_digest`]. distribution 2.8.2 answers 404 MANIFEST_UNKNOWN for an OCI
/// index if `Accept` does not list it, serves a Docker manifest list's linux/amd64 child if
/// `Accept` lists v2s2 but not lists, and 400 MANIFEST_INVALID for v2s2 manifests and lists if
/// `Accept` lists neither (it tries a schema 1 conversion).
pub const ALL_MANIFEST_TYPES: [&str; 4] = [
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];

/// `sha256:<hex>` of `data`.
///
/// Large inputs go through coreutils `sha256sum` when available: the `sha2` crate in an
/// unoptimised test build hashes only ~30 MB/s (2 s for 64 MiB), `sha256sum` ~200 MB/s+.
pub fn sha256_digest(data: &[u8]) -> String {
    if data.len() >= 1 << 20
        && let Some(d) = sha256sum_external(data)
    {
        return d;
    }
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash.iter() {
        write!(s, "{b:02x}").expect("writing to a String");
    }
    s
}

fn sha256sum_external(data: &[u8]) -> Option<String> {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let out = std::thread::scope(|s| {
        let writer = s.spawn(move || stdin.write_all(data));
        let out = child.wait_with_output();
        (writer.join(), out)
    });
    let (Ok(Ok(())), Ok(out)) = out else {
        return None;
    };
    let hex = String::from_utf8(out.stdout).ok()?;
    let hex = hex.split_whitespace().next()?;
    (out.status.success() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{hex}"))
}
