//! The copy algorithm against the in-memory store: what it writes, in which order, and
//! what it leaves alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::memory::{MemoryStore, MemoryStores, Written};
use super::{ExecuteOptions, Executor};
use crate::inputs::mapping::parse_text;
use crate::model::failure::ErrorKind;
use crate::model::manifest::Manifest;
use crate::model::reference::{Digest, ManifestRef, Repository, Tag, parse_name};
use crate::plan::plan;
use crate::report::outcome::{Outcome, Status};
use crate::retry::RetryPolicy;
use crate::stats::Stats;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) fn repo(name: &str) -> Repository {
    parse_name(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub(crate) fn blob(text: &str) -> Bytes {
    Bytes::from(format!("blob {text}"))
}

pub(crate) fn descriptor(media_type: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        Digest::of(bytes),
        bytes.len()
    )
}

pub(crate) fn manifest(json: String) -> Manifest {
    let bytes = Bytes::from(json);
    Manifest::parse(bytes.clone(), Digest::of(&bytes)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// An OCI image whose config and layers are `blobs` (the first is the config).
pub(crate) fn image(blobs: &[&Bytes]) -> Manifest {
    let config = descriptor("application/vnd.oci.image.config.v1+json", blobs[0]);
    let layers: Vec<String> = blobs[1..]
        .iter()
        .map(|b| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b))
        .collect();
    manifest(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{}]}}"#,
        layers.join(",")
    ))
}

fn index(children: &[&Manifest]) -> Manifest {
    let entries: Vec<String> = children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"arch{i}"}}}}"#,
                c.digest,
                c.bytes.len()
            )
        })
        .collect();
    manifest(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    ))
}

pub(crate) fn options() -> ExecuteOptions {
    ExecuteOptions {
        dry_run: false,
        force: false,
        max_registry: 4,
        filter_by_os: None,
        retries: 0,
        request_policy: RetryPolicy::requests(3, Duration::from_secs(1)),
        immutable_tags: Vec::new(),
        policy: None,
        attached: true,
    }
}

/// Plans `mapping` (no wildcards) and runs it against `stores`; outcomes by destination.
pub(crate) async fn run(
    stores: &Arc<MemoryStores>,
    mapping: &str,
    options: ExecuteOptions,
) -> Vec<Outcome> {
    let parsed = parse_text(&Arc::from("mapping"), mapping);
    assert!(
        parsed.diagnostics.iter().all(|d| !d.is_error()),
        "{:?}",
        parsed.diagnostics
    );
    let (plan, diagnostics) = plan(
        &crate::plan::expand_all(parsed.mappings, &HashMap::new()).mappings,
        &HashMap::new(),
    );
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let executor = Arc::new(Executor::new(
        stores.clone(),
        options,
        Arc::new(Stats::default()),
        CancellationToken::new(),
    ));
    let mut outcomes = executor.execute(plan).await;
    outcomes.sort_by(|a, b| a.job.destination.cmp(&b.job.destination));
    outcomes
}

fn statuses(outcomes: &[Outcome]) -> Vec<Status> {
    outcomes.iter().map(|o| o.status).collect()
}

/// A source registry `src.io` holding `team/app:1`, an index of two images that share a
/// base layer.
struct Seeded {
    stores: Arc<MemoryStores>,
    src: Arc<MemoryStore>,
    dst: Arc<MemoryStore>,
    children: [Manifest; 2],
    top: Manifest,
    base: Bytes,
}

fn seeded() -> Seeded {
    let stores = Arc::new(MemoryStores::default());
    let src = stores.store(repo("src.io/team/app").registry());
    let dst = stores.store(repo("dst.io/x").registry());
    let (base, a, b, ca, cb) = (blob("base"), blob("a"), blob("b"), blob("ca"), blob("cb"));
    let children = [image(&[&ca, &base, &a]), image(&[&cb, &base, &b])];
    let top = index(&[&children[0], &children[1]]);
    src.seed(
        &repo("src.io/team/app"),
        "1",
        &[&children[0], &children[1], &top],
        &[base.clone(), a, b, ca, cb],
    );
    Seeded {
        stores,
        src,
        dst,
        children,
        top,
        base,
    }
}

#[tokio::test]
async fn blobs_come_before_child_manifests_before_the_tag() {
    let s = seeded();
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1\n",
        options(),
    )
    .await;
    assert_eq!(statuses(&outcomes), [Status::Copied]);
    let dst = repo("dst.io/mirror/app");
    assert_eq!(s.dst.tag(&dst, "1"), Some(s.top.digest.clone()));
    let writes = s.dst.writes();
    let position = |w: &Written| {
        writes
            .iter()
            .position(|x| x == w)
            .unwrap_or_else(|| panic!("{w:?} not written: {writes:#?}"))
    };
    let tag = position(&Written::Manifest(
        dst.clone(),
        ManifestRef::Tag(Tag::parse("1").unwrap_or_else(|e| panic!("{e}"))),
    ));
    assert_eq!(
        tag,
        writes.len() - 1,
        "the tag is written last: {writes:#?}"
    );
    for child in &s.children {
        let child_at = position(&Written::Manifest(
            dst.clone(),
            ManifestRef::Digest(child.digest.clone()),
        ));
        let crate::model::manifest::Content::Image { blobs } = &child.content else {
            panic!("an image")
        };
        for b in blobs {
            let placed = writes.iter().position(|w| {
                matches!(w, Written::Blob(r, d) | Written::Mounted(r, d) if r == &dst && d == &b.digest)
            });
            assert!(
                placed.is_some_and(|p| p < child_at),
                "blob {} before child {}: {writes:#?}",
                b.digest,
                child.digest
            );
        }
    }
}

#[tokio::test]
async fn a_pull_quota_goes_to_tags_the_destination_lacks_before_tags_that_moved() {
    let stores = Arc::new(MemoryStores::default());
    let (from, to) = (repo("src.io/team/app"), repo("dst.io/mirror/app"));
    let src = stores.store(from.registry());
    let dst = stores.store(to.registry());
    let (old_config, old_layer) = (blob("old config"), blob("old layer"));
    let old = image(&[&old_config, &old_layer]);
    // a1 and a2 moved at the source (the destination holds an older image under them),
    // b1 and b2 the destination lacks; the plan lists a1, a2, b1, b2.
    for tag in ["a1", "a2", "b1", "b2"] {
        let (config, layer) = (
            blob(&format!("config {tag}")),
            blob(&format!("layer {tag}")),
        );
        src.seed(&from, tag, &[&image(&[&config, &layer])], &[config, layer]);
    }
    for tag in ["a1", "a2"] {
        dst.seed(&to, tag, &[&old], &[old_config.clone(), old_layer.clone()]);
    }
    // The quota covers two images of the four.
    src.limit_manifest_reads(2);
    let mapping: String = ["a1", "a2", "b1", "b2"]
        .iter()
        .map(|t| format!("src.io/team/app:{t} dst.io/mirror/app:{t}\n"))
        .collect();
    let outcomes = run(&stores, &mapping, options()).await;
    let status = |tag: &str| {
        outcomes
            .iter()
            .find(|o| o.job.destination.tag().is_some_and(|t| t.as_str() == tag))
            .map(|o| o.status)
    };
    assert_eq!(
        ["b1", "b2", "a1", "a2"].map(status),
        [
            Some(Status::Copied),
            Some(Status::Copied),
            Some(Status::Deferred),
            Some(Status::Deferred)
        ],
        "{outcomes:#?}"
    );
    assert_eq!(
        dst.tag(&to, "a1"),
        Some(old.digest.clone()),
        "left as it was"
    );
}

#[tokio::test]
async fn a_shared_blob_is_uploaded_once_per_registry_and_mounted_elsewhere() {
    let s = seeded();
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/one/app:1 dst.io/two/app:1\n",
        options(),
    )
    .await;
    assert_eq!(statuses(&outcomes), [Status::Copied, Status::Copied]);
    let base = Digest::of(&s.base);
    let writes = s.dst.writes();
    let uploads = writes
        .iter()
        .filter(|w| matches!(w, Written::Blob(_, d) if d == &base))
        .count();
    let mounts = writes
        .iter()
        .filter(|w| matches!(w, Written::Mounted(_, d) if d == &base))
        .count();
    assert_eq!((uploads, mounts), (1, 1), "{writes:#?}");
    // Within one image the shared base is placed once, however many children name it.
    assert_eq!(s.src.opened(&base), 1);
    for r in ["dst.io/one/app", "dst.io/two/app"] {
        assert!(s.dst.has_blob(&repo(r), &base));
        assert_eq!(s.dst.tag(&repo(r), "1"), Some(s.top.digest.clone()));
    }
}

#[tokio::test]
async fn an_unchanged_tag_makes_no_write() {
    let s = seeded();
    let mapping = "src.io/team/app:1 dst.io/mirror/app:1\n";
    run(&s.stores, mapping, options()).await;
    let before = s.dst.writes().len();
    let outcomes = run(&s.stores, mapping, options()).await;
    assert_eq!(statuses(&outcomes), [Status::Unchanged]);
    assert_eq!(s.dst.writes().len(), before, "{:#?}", s.dst.writes());
}

#[tokio::test]
async fn only_tags_the_destination_lists_are_asked_for() {
    let s = seeded();
    run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1\n",
        options(),
    )
    .await;
    let dst = repo("dst.io/mirror/app");
    let before = s.dst.heads(&dst);
    // Tag 1 is held (one HEAD says it is unchanged); tag 2 is not listed, so it is copied
    // without asking; tag 3 is immutable and not listed: asked for all the same, since a
    // registry's listing may miss what an immutable tag must never overwrite.
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1 dst.io/mirror/app:2\n\
         src.io/team/app:1 dst.io/mirror/app:3 # image-mirror: immutable\n",
        options(),
    )
    .await;
    assert_eq!(
        statuses(&outcomes),
        [Status::Unchanged, Status::Copied, Status::Copied]
    );
    assert_eq!(s.dst.heads(&dst) - before, 2, "HEADs for tags 1 and 3 only");
    assert_eq!(s.dst.tag(&dst, "2"), Some(s.top.digest.clone()));
}

#[tokio::test]
async fn a_failed_blob_leaves_no_tag_and_its_siblings_land() {
    let s = seeded();
    let broken = Digest::of(&blob("b"));
    s.src.break_blob(&broken, ErrorKind::Permanent);
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1\n",
        options(),
    )
    .await;
    assert_eq!(statuses(&outcomes), [Status::Failed]);
    let failure = outcomes[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("an error"));
    assert_eq!(failure.kind, ErrorKind::Permanent);
    let dst = repo("dst.io/mirror/app");
    assert_eq!(s.dst.tag(&dst, "1"), None);
    assert!(!s.dst.writes().iter().any(
        |w| matches!(w, Written::Manifest(_, r) if r == &ManifestRef::Digest(s.children[1].digest.clone()))
    ));
    // The other child's blobs still arrived: the next run needs them.
    assert!(s.dst.has_blob(&dst, &Digest::of(&blob("a"))));
    // A permanent failure is not retried.
    assert_eq!(s.src.opened(&broken), 1);
}

/// The copy checks every blob's bytes on their way to the destination (the stores commit
/// what ends without error): bytes that do not match their digest are never committed,
/// fail the image as corrupt, and are not read again.
#[tokio::test]
async fn a_corrupt_blob_is_never_committed_and_not_retried() {
    let s = seeded();
    let corrupt = Digest::of(&blob("b"));
    s.src.corrupt_blob(&repo("src.io/team/app"), &corrupt);
    let options = ExecuteOptions {
        retries: 2,
        ..options()
    };
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1\n",
        options,
    )
    .await;
    assert_eq!(statuses(&outcomes), [Status::Failed]);
    let failure = outcomes[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("an error"));
    assert_eq!(failure.kind, ErrorKind::Corrupt);
    assert!(
        failure.message.contains("digest mismatch"),
        "{}",
        failure.message
    );
    let dst = repo("dst.io/mirror/app");
    assert!(!s.dst.has_blob(&dst, &corrupt));
    assert_eq!(s.dst.tag(&dst, "1"), None);
    assert_eq!(s.src.opened(&corrupt), 1);
}

#[tokio::test]
async fn force_rewrites_an_unchanged_tag() {
    let s = seeded();
    let mapping = "src.io/team/app:1 dst.io/mirror/app:1\n";
    run(&s.stores, mapping, options()).await;
    let before = s.dst.writes().len();
    let forced = ExecuteOptions {
        force: true,
        ..options()
    };
    let outcomes = run(&s.stores, mapping, forced).await;
    assert_eq!(statuses(&outcomes), [Status::Copied]);
    let again = &s.dst.writes()[before..];
    assert!(
        again
            .iter()
            .any(|w| matches!(w, Written::Manifest(_, ManifestRef::Tag(_)))),
        "{again:#?}"
    );
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_says_what_it_would_do() {
    let s = seeded();
    let old = image(&[&blob("old config"), &blob("old layer")]);
    s.dst.seed(
        &repo("dst.io/mirror/app"),
        "2",
        &[&old],
        &[blob("old config"), blob("old layer")],
    );
    let dry = ExecuteOptions {
        dry_run: true,
        ..options()
    };
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1 dst.io/mirror/app:2\n",
        dry,
    )
    .await;
    assert_eq!(
        statuses(&outcomes),
        [Status::WouldCopy, Status::WouldOverwrite]
    );
    assert_eq!(outcomes[1].previous, Some(old.digest.clone()));
    assert!(s.dst.writes().is_empty(), "{:#?}", s.dst.writes());
}

/// A dry run counts the bytes the run would send: the blobs the destination repository
/// lacks, through an index's children (one the destination has is complete), each blob once
/// per destination registry however many repositories lack it (the run mounts it there).
#[tokio::test]
async fn a_dry_run_counts_the_bytes_it_would_send() {
    let s = seeded();
    let held = repo("dst.io/mirror/app");
    let [ca, base, a, cb, b] = ["ca", "base", "a", "cb", "b"].map(blob);
    s.dst.seed(
        &held,
        "0",
        &[&s.children[0]],
        &[ca.clone(), base.clone(), a.clone()],
    );
    let dry = ExecuteOptions {
        dry_run: true,
        ..options()
    };
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1\n",
        dry.clone(),
    )
    .await;
    assert_eq!(statuses(&outcomes), [Status::WouldCopy]);
    // The first child is there whole, the base layer too: the second child's own blobs.
    let size = |blobs: &[&Bytes]| blobs.iter().map(|b| b.len() as u64).sum::<u64>();
    assert_eq!(outcomes[0].would_move, Some(size(&[&cb, &b])));
    // A new repository lacks everything; the same blobs for two repositories of one registry
    // are sent once.
    let outcomes = run(
        &s.stores,
        "src.io/team/app:1 dst.io/mirror/app:1 dst.io/other/app:1 dst.io/third/app:1\n",
        dry,
    )
    .await;
    let total: u64 = outcomes.iter().filter_map(|o| o.would_move).sum();
    assert_eq!(total, size(&[&ca, &base, &a, &cb, &b]));
    assert!(s.dst.writes().is_empty(), "{:#?}", s.dst.writes());
}

/// The retry budget: a blob whose download always fails transiently is asked for at most
/// `request_attempts` times per image attempt, `request_attempts × (retries + 1)` in all.
#[tokio::test(start_paused = true)]
async fn a_failing_blob_is_tried_attempts_times_retries_plus_one() {
    let s = seeded();
    let broken = Digest::of(&blob("a"));
    s.src.break_blob(&broken, ErrorKind::Transient);
    let options = ExecuteOptions {
        retries: 1,
        request_policy: RetryPolicy::requests(3, Duration::from_secs(1)),
        ..options()
    };
    // Virtual time: the waits pass at once, and a retry loop without end meets this limit.
    let outcomes = tokio::time::timeout(
        Duration::from_secs(24 * 3600),
        run(
            &s.stores,
            "src.io/team/app:1 dst.io/mirror/app:1\n",
            options,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("the retries never ended"));
    assert_eq!(statuses(&outcomes), [Status::Failed]);
    assert_eq!(outcomes[0].attempts, 2);
    assert_eq!(s.src.opened(&broken), 3 * 2);
    assert_eq!(s.dst.tag(&repo("dst.io/mirror/app"), "1"), None);
}

/// A transfer takes its destination's slot after its source's only when no registry is both
/// read and written: two transfers going opposite ways would each hold what the other waits
/// for.
#[test]
fn slots_are_taken_one_end_at_a_time_only_one_way() {
    let planned = |text: &str| {
        let parsed = parse_text(&Arc::from("mapping"), text);
        plan(
            &crate::plan::expand_all(parsed.mappings, &HashMap::new()).mappings,
            &HashMap::new(),
        )
        .0
    };
    assert!(super::one_way(&planned(
        "a.io/x:1 b.io/y:1\na.io/z:1 c.io/y:1\n"
    )));
    assert!(!super::one_way(&planned(
        "a.io/x:1 b.io/y:1\nb.io/z:1 a.io/y:1\n"
    )));
    assert!(!super::one_way(&planned(
        "a.io/x:1 b.io/y:1\nb.io/z:1 c.io/y:1\nc.io/w:1 a.io/w:1\n"
    )));
    // A copy within one registry takes both its slots at once.
    assert!(super::one_way(&planned(
        "a.io/x:1 a.io/y:1\na.io/x:1 b.io/y:1\n"
    )));
}

/// `min-age`: a tag the destination lacks waits (nothing written) until its source tag has
/// been seen at its digest long enough; a tag the destination holds is updated at once.
#[tokio::test]
async fn min_age_holds_back_only_what_the_destination_lacks() {
    use crate::ledger::model::{Ledger, Quarantine, Stamp};
    let s = seeded();
    let day = Duration::from_secs(86_400);
    let run_at = |ledger: &Ledger, now: u64| {
        let parsed = parse_text(
            &Arc::from("mapping"),
            "src.io/team/app:1 dst.io/mirror/app:1\n",
        );
        let (plan, _) = plan(
            &crate::plan::expand_all(parsed.mappings, &HashMap::new()).mappings,
            &HashMap::new(),
        );
        let executor = Arc::new(Executor::new(
            s.stores.clone(),
            options(),
            Arc::new(Stats::default()),
            CancellationToken::new(),
        ));
        executor.quarantine(Quarantine::new(ledger, Stamp(now), Some(day)));
        async move { executor.execute(plan).await }
    };
    let mut ledger = Ledger::default();
    let held = run_at(&ledger, 1000).await;
    assert_eq!(statuses(&held), [Status::Waiting]);
    assert_eq!(held[0].source_digest, Some(s.top.digest.clone()));
    assert!(s.dst.writes().is_empty(), "{:?}", s.dst.writes());
    let error = held[0].error.as_ref().map(|e| (e.kind, e.message.clone()));
    assert!(
        matches!(&error, Some((ErrorKind::Waiting, m)) if m.ends_with("24 h left")),
        "{error:?}"
    );
    ledger.record(&held, Stamp(1000));
    let still = run_at(&ledger, 1000 + 3600).await;
    assert_eq!(statuses(&still), [Status::Waiting]);
    let through = run_at(&ledger, 1000 + 86_400).await;
    assert_eq!(statuses(&through), [Status::Copied]);
    let dst = repo("dst.io/mirror/app");
    assert_eq!(s.dst.tag(&dst, "1"), Some(s.top.digest.clone()));
    // Held now: a new digest at the source is copied at once, never seen before or not.
    let newer = image(&[&blob("c2"), &s.base]);
    s.src
        .seed(&repo("src.io/team/app"), "1", &[&newer], &[blob("c2")]);
    let updated = run_at(&Ledger::default(), 1000 + 86_401).await;
    assert_eq!(statuses(&updated), [Status::Copied]);
    assert_eq!(s.dst.tag(&dst, "1"), Some(newer.digest.clone()));
}

/// `min-age` at a source that tells no digest without the manifest: the manifest read to
/// learn the digest serves the copy too (a pull quota of exactly the image's reads, the
/// index and its two children, is enough).
#[tokio::test]
async fn min_age_reads_the_manifest_it_needed_for_the_digest_once() {
    use crate::ledger::model::{Ledger, Quarantine, Stamp};
    let s = seeded();
    s.src.answer_heads_without_digest();
    s.src.limit_manifest_reads(3);
    let parsed = parse_text(
        &Arc::from("mapping"),
        "src.io/team/app:1 dst.io/mirror/app:1\n",
    );
    let (plan, _) = plan(
        &crate::plan::expand_all(parsed.mappings, &HashMap::new()).mappings,
        &HashMap::new(),
    );
    let executor = Arc::new(Executor::new(
        s.stores.clone(),
        options(),
        Arc::new(Stats::default()),
        CancellationToken::new(),
    ));
    let mut ledger = Ledger::default();
    ledger.saw(
        "src.io/team/app:1".to_owned(),
        s.top.digest.clone(),
        Stamp(0),
    );
    executor.quarantine(Quarantine::new(
        &ledger,
        Stamp(86_400 * 2),
        Some(Duration::from_secs(86_400)),
    ));
    let outcomes = executor.execute(plan).await;
    assert_eq!(statuses(&outcomes), [Status::Copied], "{outcomes:?}");
}
