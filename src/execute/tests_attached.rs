//! The attached step against the in-memory store: referrers found through the referrers API
//! reach a destination with the API as manifests with their `subject`, and one without it
//! as the fallback index too; a dry run lists them and writes nothing.

use std::sync::Arc;

use super::memory::{MemoryStores, Written};
use super::tests::{blob, descriptor, image, manifest, options, repo, run};
use crate::model::attached::{Kind, digest_tag, parse_index};
use crate::model::manifest::Manifest;
use crate::model::reference::{ManifestRef, Tag};
use crate::report::outcome::Status;

pub(crate) const ARTIFACT: &str = "application/vnd.example.sbom";

/// A source `src.io/team/app:1` with the referrers API and one referrer of the image; the
/// destination `dst.io` without it unless `dst_api`.
pub(crate) fn with_referrer(dst_api: bool) -> (Arc<MemoryStores>, Manifest, Manifest) {
    let stores = Arc::new(MemoryStores::default());
    let src = stores.store(repo("src.io/team/app").registry());
    let dst = stores.store(repo("dst.io/x").registry());
    src.enable_referrers_api();
    if dst_api {
        dst.enable_referrers_api();
    }
    let (config, layer) = (blob("config"), blob("layer"));
    let img = image(&[&config, &layer]);
    let empty = bytes::Bytes::from_static(b"{}");
    let payload = blob("sbom");
    let referrer = manifest(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{ARTIFACT}","config":{},"layers":[{}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}}}"#,
        descriptor("application/vnd.oci.empty.v1+json", &empty),
        descriptor("text/spdx+json", &payload),
        img.digest,
        img.bytes.len()
    ));
    let source = repo("src.io/team/app");
    src.seed(&source, "1", &[&img], &[config, layer]);
    // By digest only, as a referrer is pushed: no tag points at it.
    src.seed(&source, "", &[&referrer], &[empty, payload]);
    (stores, img, referrer)
}

/// A referrer of `subject` (with `artifactType`), as ORAS or cosign in OCI 1.1 mode push one.
fn referrer_of(subject: &Manifest, payload: &bytes::Bytes) -> Manifest {
    let empty = bytes::Bytes::from_static(b"{}");
    manifest(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{ARTIFACT}","config":{},"layers":[{}],"subject":{{"mediaType":"{}","digest":"{}","size":{}}}}}"#,
        descriptor("application/vnd.oci.empty.v1+json", &empty),
        descriptor("text/plain", payload),
        subject.media_type,
        subject.digest,
        subject.bytes.len()
    ))
}

/// [`with_referrer`] plus a referrer of that referrer (a signature on the SBOM).
fn with_nested_referrer(dst_api: bool) -> (Arc<MemoryStores>, Manifest, Manifest, Manifest) {
    let (stores, img, referrer) = with_referrer(dst_api);
    let payload = blob("signature of the sbom");
    let nested = referrer_of(&referrer, &payload);
    let src = stores.store(repo("src.io/team/app").registry());
    src.seed(
        &repo("src.io/team/app"),
        "",
        &[&nested],
        &[bytes::Bytes::from_static(b"{}"), payload],
    );
    (stores, img, referrer, nested)
}

#[tokio::test]
async fn a_referrer_of_a_referrer_comes_too_and_each_registry_is_asked_once_per_digest() {
    let (stores, img, referrer, nested) = with_nested_referrer(true);
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", options()).await;
    assert_eq!(
        outcomes[0].status,
        Status::Copied,
        "{:?}",
        outcomes[0].error
    );
    let digests: Vec<_> = outcomes[0].attached.iter().map(|a| &a.digest).collect();
    assert_eq!(digests, [&referrer.digest, &nested.digest]);
    assert_eq!(outcomes[0].attached[1].subject, referrer.digest);
    let (src, dst) = (
        stores.store(repo("src.io/team/app").registry()),
        stores.store(repo("dst.io/x").registry()),
    );
    let x = repo("dst.io/x/app");
    assert!(
        dst.manifest_bytes(&x, &ManifestRef::Digest(nested.digest.clone()))
            .is_some()
    );
    // The source's API once per digest copied (the image, the referrer, its referrer); the
    // destination's once, to learn that it lists what is put there with a subject.
    assert_eq!(src.referrers_asked(), 3);
    assert_eq!(dst.referrers_asked(), 1);
    assert_eq!(dst.tag(&x, &digest_tag(&img.digest)), None);
    assert_eq!(dst.tag(&x, &digest_tag(&referrer.digest)), None);
}

#[tokio::test]
async fn a_dry_run_lists_a_referrer_of_a_referrer() {
    let (stores, _, referrer, nested) = with_nested_referrer(false);
    let dry = super::ExecuteOptions {
        dry_run: true,
        ..options()
    };
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", dry).await;
    assert_eq!(outcomes[0].status, Status::WouldCopy);
    let digests: Vec<_> = outcomes[0].attached.iter().map(|a| &a.digest).collect();
    assert_eq!(digests, [&referrer.digest, &nested.digest]);
    assert!(
        stores
            .store(repo("dst.io/x").registry())
            .writes()
            .is_empty()
    );
}

#[tokio::test]
async fn referrers_api_to_a_destination_without_it_writes_the_fallback_index() {
    let (stores, img, referrer) = with_referrer(false);
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", options()).await;
    assert_eq!(
        outcomes[0].status,
        Status::Copied,
        "{:?}",
        outcomes[0].error
    );
    let attached = &outcomes[0].attached;
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].kind, Kind::Referrer);
    assert_eq!(attached[0].artifact_type.as_deref(), Some(ARTIFACT));
    assert_eq!(attached[0].digest, referrer.digest);
    let dst = stores.store(repo("dst.io/x").registry());
    let x = repo("dst.io/x/app");
    let by_digest = ManifestRef::Digest(referrer.digest.clone());
    assert_eq!(
        dst.manifest_bytes(&x, &by_digest),
        Some(referrer.bytes.clone())
    );
    let fallback = Tag::parse(&digest_tag(&img.digest)).unwrap_or_else(|e| panic!("{e}"));
    let index = dst
        .manifest_bytes(&x, &ManifestRef::Tag(fallback.clone()))
        .unwrap_or_else(|| panic!("no fallback index"));
    let listed = parse_index(&index).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, referrer.digest);
    assert_eq!(listed[0].artifact_type.as_deref(), Some(ARTIFACT));
    // The referrer and the fallback index go before the image's tag.
    let writes = dst.writes();
    let position = |w: &Written| writes.iter().position(|x| x == w);
    let tag_write = Written::Manifest(
        x.clone(),
        ManifestRef::Tag(Tag::parse("1").unwrap_or_else(|e| panic!("{e}"))),
    );
    assert!(
        position(&Written::Manifest(x.clone(), ManifestRef::Tag(fallback))) < position(&tag_write)
    );
    assert!(position(&Written::Manifest(x.clone(), by_digest)) < position(&tag_write));
}

#[tokio::test]
async fn referrers_api_to_a_destination_with_it_writes_no_fallback_tag() {
    let (stores, img, referrer) = with_referrer(true);
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", options()).await;
    assert_eq!(
        outcomes[0].status,
        Status::Copied,
        "{:?}",
        outcomes[0].error
    );
    let dst = stores.store(repo("dst.io/x").registry());
    let x = repo("dst.io/x/app");
    assert!(
        dst.manifest_bytes(&x, &ManifestRef::Digest(referrer.digest.clone()))
            .is_some()
    );
    assert_eq!(dst.tag(&x, &digest_tag(&img.digest)), None);
}

#[tokio::test]
async fn a_dry_run_lists_referrers_and_writes_nothing() {
    let (stores, _, referrer) = with_referrer(false);
    let dry = super::ExecuteOptions {
        dry_run: true,
        ..options()
    };
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", dry).await;
    assert_eq!(outcomes[0].status, Status::WouldCopy);
    assert_eq!(outcomes[0].attached.len(), 1);
    assert_eq!(outcomes[0].attached[0].digest, referrer.digest);
    assert!(
        stores
            .store(repo("dst.io/x").registry())
            .writes()
            .is_empty()
    );
}

#[tokio::test]
async fn attached_false_copies_the_image_alone() {
    let (stores, _, _) = with_referrer(false);
    let alone = super::ExecuteOptions {
        attached: false,
        ..options()
    };
    let outcomes = run(&stores, "src.io/team/app:1 dst.io/x/app:1", alone).await;
    assert!(outcomes[0].attached.is_empty());
    let dst = stores.store(repo("dst.io/x").registry());
    assert_eq!(
        dst.writes()
            .iter()
            .filter(|w| matches!(w, Written::Manifest(..)))
            .count(),
        1
    );
}
