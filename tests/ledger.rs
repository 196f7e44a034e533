//! The ledger and `prune`, against Debian's registry (deletes enabled, and one with them
//! disabled): a removed line's tag is pruned after the grace period and not before, with its
//! signature; a tag someone else wrote or re-pointed, or whose digest another tag holds, is
//! never pruned; shards writing at once lose nothing; a corrupt or newer ledger prunes
//! nothing; the valve; the ledger costs the same few requests whatever the number of tags.
//! Time is the hidden `--now` flag, never a sleep.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::*;
use crate::support::ferro::Ferro;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

/// The clock of these tests: some day in 2026.
const T0: u64 = 1_780_000_000;
const DAY: u64 = 86_400;

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `run --insecure --ledger LEDGER --now NOW ARGS --report … MAPPING`.
fn run_at(
    ws: &Workspace,
    mapping: &Path,
    ledger: &str,
    now: u64,
    args: &[&str],
) -> (Output, serde_json::Value) {
    let now = now.to_string();
    let base = ["--ledger", ledger, "--now", &now];
    ws.run_insecure(mapping, &[&base[..], args].concat())
}

/// `prune --insecure --ledger LEDGER --now NOW ARGS MAPPING`.
fn prune_at(ws: &Workspace, mapping: &Path, ledger: &str, now: u64, args: &[&str]) -> Output {
    ws.command()
        .args(["prune", "--insecure", "--ledger", ledger, "--now"])
        .arg(now.to_string())
        .args(args)
        .arg(mapping)
        .output()
        .expect("run prune")
}

/// The report's prune entries as (destination, status).
fn pruned(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = report["prune"]["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no prune section: {report:#}"))
        .iter()
        .map(|t| {
            (
                t["destination"].as_str().unwrap_or_default().to_owned(),
                t["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

/// What [`pruned`] lists for these tags of `DST/mirror/app` and statuses, in that order.
fn statuses(d: &str, tags: &[(&str, &str)]) -> Vec<(String, String)> {
    tags.iter()
        .map(|(tag, status)| (format!("{d}/mirror/app:{tag}"), (*status).to_owned()))
        .collect()
}

/// Seeds `org/app:TAG` at the source for each tag, the first with layer seed `first_seed`
/// and each next with the next seed, a layer of `size` bytes each.
fn seed_tags<const N: usize>(
    src: &Registry,
    tags: [&str; N],
    first_seed: u64,
    size: usize,
) -> [Seeded; N] {
    std::array::from_fn(|i| {
        seed_oci_image(
            src,
            "org/app",
            tags[i],
            &[layer(first_seed + i as u64, size)],
        )
    })
}

/// The mapping lines `SRC/org/app:TAG DST/mirror/app:TAG`, one per tag.
fn app_lines(s: &str, d: &str, tags: &[&str]) -> String {
    tags.iter()
        .map(|t| format!("{s}/org/app:{t} {d}/mirror/app:{t}\n"))
        .collect()
}

/// Writes `lines` as the mapping `name` and mirrors it at T0 with the ledger, which then
/// names every tag it wrote: where each prune starts from. Returns the mapping's path.
#[track_caller]
fn first_run(ws: &Workspace, name: &str, lines: &str, ledger: &str) -> PathBuf {
    let mapping = ws.write(name, lines);
    let (out, _) = run_at(ws, &mapping, ledger, T0, &[]);
    expect_code(&out, 0);
    mapping
}

/// Asserts the summary (stdout) says each of `phrases`.
#[track_caller]
fn assert_says(out: &Output, phrases: &[&str]) {
    let stdout = text(&out.stdout);
    for phrase in phrases {
        assert!(stdout.contains(phrase), "{stdout}");
    }
}

/// Asserts the report pruned `DST/mirror/app:v1` alone, with the one manifest attached to it.
#[track_caller]
fn assert_v1_pruned_with_one_attached(report: &serde_json::Value, d: &str) {
    assert_eq!(pruned(report), statuses(d, &[("v1", "pruned")]));
    assert_eq!(report["prune"]["tags"][0]["attached"], 1, "{report:#}");
}

/// Asserts a prune the valve refused listed each of `tags` (of `DST/mirror/app`) as due,
/// and that each is still there.
#[track_caller]
fn assert_due_not_pruned(out: &Output, dst: &Registry, d: &str, tags: &[&str]) {
    let stdout = text(&out.stdout);
    for tag in tags {
        assert!(
            stdout.contains(&format!("{d}/mirror/app:{tag}  due, not pruned")),
            "{stdout}"
        );
        assert!(
            dst.manifest_digest("mirror/app", tag).is_some(),
            "{tag} deleted"
        );
    }
}

#[test]
fn a_removed_line_is_pruned_after_the_grace_period_with_its_signature() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let [v1, v2] = seed_tags(&src, ["v1", "v2"], 1, 900);
    // Signatures as cosign tags them (any manifest does for the mirror).
    let sig1 = seed_oci_image(
        &src,
        "org/app",
        &format!("sha256-{}.sig", hex(&v1.digest)),
        &[layer(11, 90)],
    );
    let sig2 = seed_oci_image(
        &src,
        "org/app",
        &format!("sha256-{}.sig", hex(&v2.digest)),
        &[layer(12, 90)],
    );
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "both", &app_lines(&s, &d, &["v1", "v2"]), &ledger);
    assert_eq!(dst.tags("mirror/ledger"), ["ledger-all"]);
    assert_eq!(
        dst.manifest_digest("mirror/app", &format!("sha256-{}.sig", hex(&v1.digest))),
        Some(sig1.digest.clone())
    );

    let only_v2 = ws.write("only_v2", &app_lines(&s, &d, &["v2"]));
    // A day later: unwanted for less than --prune-after 3d.
    let (out, report) = run_at(
        &ws,
        &only_v2,
        &ledger,
        T0 + DAY,
        &["--prune", "--prune-after=3d"],
    );
    expect_code(&out, 0);
    assert_eq!(pruned(&report), statuses(&d, &[("v1", "waiting")]));
    assert_says(&out, &["unwanted; pruned in 48 h"]);
    assert_eq!(
        dst.manifest_digest("mirror/app", "v1"),
        Some(v1.digest.clone())
    );

    // Four days after it was last wanted: due. The dry run lists it and writes nothing.
    let mark = dst.mark();
    let (out, report) = run_at(
        &ws,
        &only_v2,
        &ledger,
        T0 + 4 * DAY,
        &["--prune", "--prune-after=3d", "--dry-run"],
    );
    expect_code(&out, 0);
    assert_eq!(pruned(&report), statuses(&d, &[("v1", "would-prune")]));
    assert_says(&out, &[&format!("- {d}/mirror/app:v1  would be pruned")]);
    assert!(
        dst.tool_writes_since(mark).is_empty(),
        "a dry run writes nothing, ledger included"
    );
    let out = prune_at(&ws, &only_v2, &ledger, T0 + 4 * DAY, &["--dry-run"]);
    expect_code(&out, 0);
    assert_says(&out, &["would be pruned"]);
    assert!(dst.tool_writes_since(mark).is_empty());

    let (out, report) = run_at(
        &ws,
        &only_v2,
        &ledger,
        T0 + 4 * DAY,
        &["--prune", "--prune-after=3d"],
    );
    expect_code(&out, 0);
    assert_v1_pruned_with_one_attached(&report, &d);
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None);
    assert_eq!(dst.manifest_digest("mirror/app", &v1.digest), None);
    assert_eq!(
        dst.manifest_digest("mirror/app", &format!("sha256-{}.sig", hex(&v1.digest))),
        None,
        "the pruned digest's signature goes with it"
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", "v2"),
        Some(v2.digest.clone())
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", &format!("sha256-{}.sig", hex(&v2.digest))),
        Some(sig2.digest.clone()),
        "a kept digest's signature stays"
    );

    // Pruned once: the next run has nothing to prune.
    let (out, report) = run_at(
        &ws,
        &only_v2,
        &ledger,
        T0 + 5 * DAY,
        &["--prune", "--prune-after=3d"],
    );
    expect_code(&out, 0);
    assert!(pruned(&report).is_empty(), "{report:#}");
}

/// What is attached goes before its subject: when deleting a signature fails, the image it
/// signs is still there, the error names both, and the next run finishes the job.
#[test]
fn a_failed_attachment_delete_leaves_the_subject_for_the_next_run() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&dst.host());
    let (s, d) = (src.host(), proxy.host());
    let [v1, _] = seed_tags(&src, ["v1", "v2"], 1, 300);
    let sig_tag = format!("sha256-{}.sig", hex(&v1.digest));
    let sig = seed_oci_image(&src, "org/app", &sig_tag, &[layer(11, 90)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "both", &app_lines(&s, &d, &["v1", "v2"]), &ledger);
    assert_eq!(
        dst.manifest_digest("mirror/app", &sig_tag),
        Some(sig.digest.clone())
    );

    // The signature's delete is refused once.
    proxy.add(
        "DELETE",
        &format!("/manifests/{}", sig.digest),
        1,
        Fault::Status {
            code: 400,
            retry_after: None,
        },
    );
    let only_v2 = ws.write("only_v2", &app_lines(&s, &d, &["v2"]));
    let (out, report) = run_at(&ws, &only_v2, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 1);
    assert_eq!(pruned(&report), statuses(&d, &[("v1", "failed")]));
    let error = report["prune"]["tags"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "deleting {d}/mirror/app@{}, attached to it",
            sig.digest
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "{d}/mirror/app@{} and its tags are kept",
            v1.digest
        )),
        "{error}"
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", "v1"),
        Some(v1.digest.clone()),
        "the subject stays when what is attached to it could not be deleted"
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", &sig_tag),
        Some(sig.digest.clone())
    );

    // The next run finishes the job.
    let (out, report) = run_at(&ws, &only_v2, &ledger, T0 + 11 * DAY, &["--prune"]);
    expect_code(&out, 0);
    assert_v1_pruned_with_one_attached(&report, &d);
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None);
    assert_eq!(dst.manifest_digest("mirror/app", &v1.digest), None);
    assert_eq!(dst.manifest_digest("mirror/app", &sig_tag), None);
}

#[test]
fn tags_someone_else_wrote_re_pointed_or_shares_are_never_pruned() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let tags = ["v1", "v2", "v3", "keep"];
    seed_tags(&src, tags, 1, 500);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "all", &app_lines(&s, &d, &tags), &ledger);
    // Someone else: a tag of their own, v2 re-pointed, and another name for v3's digest.
    let theirs = seed_oci_image(&dst, "mirror/app", "theirs", &[layer(9, 500)]);
    let other = seed_oci_image(&dst, "mirror/app", "v2", &[layer(8, 500)]);
    let v3 = dst.manifest_digest("mirror/app", "v3").expect("v3");
    let (_, body) = dst.manifest("mirror/app", "v3").expect("v3 manifest");
    dst.push_manifest("mirror/app", "v3-alias", OCI_MANIFEST, &body);

    let keep = ws.write("keep", &app_lines(&s, &d, &["keep"]));
    let (out, report) = run_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    assert_eq!(
        pruned(&report),
        statuses(
            &d,
            &[("v1", "pruned"), ("v2", "changed"), ("v3", "still-tagged")]
        )
    );
    assert_says(&out, &["kept: it holds", "still tagged v3-alias"]);
    assert_eq!(
        dst.manifest_digest("mirror/app", "theirs"),
        Some(theirs.digest)
    );
    assert_eq!(dst.manifest_digest("mirror/app", "v2"), Some(other.digest));
    assert_eq!(dst.manifest_digest("mirror/app", "v3"), Some(v3.clone()));
    assert_eq!(dst.manifest_digest("mirror/app", "v3-alias"), Some(v3));
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None);
    assert!(dst.manifest_digest("mirror/app", "keep").is_some());
}

/// Seeds the multi-arch `org/app:1.0` (linux/amd64 and linux/arm64) at the source, and its
/// amd64 child tagged `1.0-amd64` too; returns the index and the child's digest.
fn seed_index_with_amd64_tag(src: &Registry) -> (Seeded, String) {
    let index = seed_oci_index(
        src,
        "org/app",
        "1.0",
        &[("linux", "amd64"), ("linux", "arm64")],
        40,
    );
    let amd64 = index.children[0].clone();
    let (_, body) = src.manifest("org/app", &amd64).expect("the amd64 child");
    src.push_manifest("org/app", "1.0-amd64", OCI_MANIFEST, &body);
    (index, amd64)
}

/// `app:1.0-amd64` is the amd64 child of the multi-arch `app:1.0`: pruning the first must
/// not delete by digest what the kept index lists (distribution 2.8 cannot delete the tag
/// alone, so it is kept and reported `referenced`), and `app:1.0` stays whole.
#[test]
fn a_tag_whose_digest_a_kept_index_lists_is_not_deleted_by_digest() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let (index, amd64) = seed_index_with_amd64_tag(&src);
    let gone = seed_oci_image(&src, "org/app", "old", &[layer(7, 300)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(
        &ws,
        "all",
        &format!(
            "{s}/org/app:1.0 {d}/mirror/app:1.0
{s}/org/app:1.0-amd64 {d}/mirror/app:1.0-amd64
             {s}/org/app:old {d}/mirror/app:old
"
        ),
        &ledger,
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", "1.0-amd64"),
        Some(amd64.clone())
    );

    let only_index = ws.write(
        "index",
        &format!(
            "{s}/org/app:1.0 {d}/mirror/app:1.0
"
        ),
    );
    let out = prune_at(&ws, &only_index, &ledger, T0 + 10 * DAY, &["--dry-run"]);
    expect_code(&out, 0);
    assert_says(
        &out,
        &[
            &format!(
                "= {d}/mirror/app:1.0-amd64  kept: its digest is a child of the index tagged 1.0"
            ),
            &format!("- {d}/mirror/app:old  would be pruned"),
        ],
    );

    let (out, report) = run_at(&ws, &only_index, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    assert_eq!(
        pruned(&report),
        statuses(&d, &[("1.0-amd64", "referenced"), ("old", "pruned")])
    );
    assert_says(&out, &["the registry cannot delete the tag alone"]);
    let entry = report["prune"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["status"] == "referenced"))
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(entry["by"], serde_json::json!(["1.0"]), "{report:#}");
    assert_eq!(dst.manifest_digest("mirror/app", "old"), None);
    assert_eq!(dst.manifest_digest("mirror/app", &gone.digest), None);
    // The kept index is whole: itself and every child.
    assert_eq!(
        dst.manifest_digest("mirror/app", "1.0"),
        Some(index.digest.clone())
    );
    for child in &index.children {
        assert_eq!(
            dst.manifest_digest("mirror/app", child),
            Some(child.clone()),
            "a child of the kept index was deleted"
        );
    }
    assert_eq!(
        dst.manifest_digest("mirror/app", "1.0-amd64"),
        Some(amd64),
        "distribution cannot delete a tag alone: it is kept"
    );
}

/// A ledger repository that does not exist yet (the registry answers 404 NAME_UNKNOWN to
/// its tag list) is an empty ledger, not an unreadable one: the first run with a new
/// `--ledger` and `--prune` warns of nothing, and the prune is not refused.
#[test]
fn a_new_ledger_repository_is_an_empty_ledger_not_an_unreadable_one() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_oci_image(&src, "org/app", "v1", &[layer(1, 300)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/new-ledger");
    let mapping = ws.write("m", &app_lines(&s, &d, &["v1"]));
    let (out, report) = run_at(&ws, &mapping, &ledger, T0, &["--prune"]);
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(!stderr.contains("listing the ledger"), "{stderr}");
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("cannot be trusted"), "{stdout}");
    assert!(stdout.contains("Prune: nothing to prune"), "{stdout}");
    assert_eq!(
        report["prune"]["untrusted"],
        serde_json::json!([]),
        "{report:#}"
    );
    assert_eq!(dst.tags("mirror/new-ledger"), ["ledger-all"]);
}

#[test]
fn two_shards_writing_the_ledger_at_once_lose_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let mut lines = String::new();
    for i in 0..6 {
        seed_oci_image(&src, &format!("org/app{i}"), "1", &[layer(i, 300)]);
        lines.push_str(&format!("{s}/org/app{i}:1 {d}/mirror/app{i}:1\n"));
    }
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    let mapping = ws.write("all", &lines);
    let now = T0.to_string();
    let shard = |i: &str| {
        let mut cmd = image_mirror_process(ws.dir());
        cmd.args([
            "run",
            "--insecure",
            "--ledger",
            &ledger,
            "--now",
            &now,
            "--shard",
            i,
        ])
        .arg(&mapping)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("start a shard")
    };
    let (a, b) = (shard("0/2"), shard("1/2"));
    for child in [a, b] {
        let out = child.wait_with_output().expect("shard");
        expect_code(&out, 0);
    }
    assert_eq!(
        dst.tags("mirror/ledger"),
        ["ledger-shard-0-of-2", "ledger-shard-1-of-2"]
    );
    // Every line removed but the first: the five others, written by either shard, are due.
    let first = ws.write("first", &format!("{s}/org/app0:1 {d}/mirror/app0:1\n"));
    let out = prune_at(&ws, &first, &ledger, T0 + 10 * DAY, &["--dry-run"]);
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    for i in 1..6 {
        assert!(
            stdout.contains(&format!("- {d}/mirror/app{i}:1  would be pruned")),
            "app{i}: {stdout}"
        );
    }
    assert_says(&out, &["0 tags pruned, 5 would be pruned"]);
}

/// Builds a ledger object by hand: `json` as the config of an artifact tagged `tag`.
fn push_ledger_object(reg: &Registry, repo: &str, tag: &str, json: &[u8]) {
    let digest = reg.push_blob(repo, json);
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"artifactType\":\"application/vnd.image-mirror.ledger.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.image-mirror.ledger.v1+json\",\"digest\":\"{digest}\",\"size\":{}}},\"layers\":[]}}",
        json.len()
    );
    reg.push_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes());
}

#[test]
fn a_corrupt_or_newer_ledger_prunes_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_tags(&src, ["v1", "v2"], 1, 400);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "both", &app_lines(&s, &d, &["v1", "v2"]), &ledger);
    // A newer image-mirror's object beside ours: refused, so nothing is pruned.
    push_ledger_object(
        &dst,
        "mirror/ledger",
        "ledger-shard-0-of-9",
        br#"{"format":99,"writer":"x","written":1}"#,
    );
    let only_v2 = ws.write("only_v2", &app_lines(&s, &d, &["v2"]));
    let (out, report) = run_at(&ws, &only_v2, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    let all = all_output(&out);
    assert!(
        all.contains("nothing pruned, the ledger cannot be trusted"),
        "{all}"
    );
    assert!(
        all.contains("format 99, newer than this image-mirror reads (1)"),
        "{all}"
    );
    assert_eq!(report["prune"]["tags"], serde_json::json!([]), "{report:#}");
    assert!(dst.manifest_digest("mirror/app", "v1").is_some());

    // Our own object corrupt (and the newer one gone): nothing pruned, and the ledger is
    // rebuilt from what the run sees — which no longer names v1, so v1 is never pruned.
    dst.delete_manifest(
        "mirror/ledger",
        &dst.manifest_digest("mirror/ledger", "ledger-shard-0-of-9")
            .expect("newer object"),
    );
    push_ledger_object(
        &dst,
        "mirror/ledger",
        "ledger-all",
        b"{\"format\":1, this is not json",
    );
    let (out, _) = run_at(&ws, &only_v2, &ledger, T0 + 11 * DAY, &["--prune"]);
    expect_code(&out, 0);
    let all = all_output(&out);
    assert!(all.contains("ledger-all: it is not a ledger"), "{all}");
    assert!(all.contains("nothing pruned"), "{all}");
    assert!(dst.manifest_digest("mirror/app", "v1").is_some());
    let (out, report) = run_at(&ws, &only_v2, &ledger, T0 + 12 * DAY, &["--prune"]);
    expect_code(&out, 0);
    assert!(pruned(&report).is_empty(), "{report:#}");
    assert!(dst.manifest_digest("mirror/app", "v1").is_some());
}

#[test]
fn more_than_max_prune_is_refused_whole_with_exit_2_and_the_list() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let tags = ["a", "b", "c", "keep"];
    seed_tags(&src, tags, 0, 300);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "all", &app_lines(&s, &d, &tags), &ledger);
    let keep = ws.write("keep", &app_lines(&s, &d, &["keep"]));
    let out = prune_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--max-prune=2"]);
    expect_code(&out, 2);
    assert_says(
        &out,
        &[
            "3 tags due for pruning, more than --max-prune 2: nothing was deleted",
            "0 tags pruned, 3 held back by --max-prune, 0 kept",
        ],
    );
    assert_due_not_pruned(&out, &dst, &d, &["a", "b", "c"]);
    // A share: 50% of the 4 tags the ledger names is 2.
    let out = prune_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--max-prune=50%"]);
    expect_code(&out, 2);
    assert_says(
        &out,
        &[
            "3 tags due for pruning, more than --max-prune 50% (2 of the 4 tags the ledger \
           names for this run's destinations): nothing was deleted",
        ],
    );
    assert_due_not_pruned(&out, &dst, &d, &["a", "b", "c"]);
    // Given to a run without --prune, it would limit nothing: refused before any contact.
    let mark = dst.mark();
    let (out, _) = run_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--max-prune=75%"]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("--max-prune applies to a prune: give --prune too"),
        "{}",
        text(&out.stderr)
    );
    let (out, _) = run_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--prune-after=1d"]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("--prune-after applies to a prune: give --prune too"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        dst.tool_requests_since(mark).is_empty(),
        "nothing contacted"
    );
    let out = prune_at(&ws, &keep, &ledger, T0 + 10 * DAY, &["--max-prune=75%"]);
    expect_code(&out, 0);
    assert!(dst.manifest_digest("mirror/app", "a").is_none());
}

/// A mapping emptied by mistake makes every tag the ledger names due at once: the default
/// `--max-prune` (10, or half of what the ledger names when that is more) refuses it.
#[test]
fn the_default_max_prune_refuses_pruning_everything_a_larger_mapping_named() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let names: [String; 12] = std::array::from_fn(|i| format!("t{i}"));
    let tags = names.each_ref().map(String::as_str);
    seed_tags(&src, tags, 0, 64);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "all", &app_lines(&s, &d, &tags), &ledger);
    // All lines but one removed by mistake (a merge gone wrong).
    let one_left = ws.write("one", &app_lines(&s, &d, &["t0"]));
    let (out, report) = run_at(&ws, &one_left, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 2);
    assert_says(
        &out,
        &[
            "11 tags due for pruning, more than the default --max-prune (10, or 50% of the 12 \
           tags the ledger names for this run's destinations when that is more: 10): nothing \
           was deleted",
        ],
    );
    assert_eq!(report["prune"]["max_prune_exceeded"], 10, "{report:#}");
    assert_eq!(dst.tags("mirror/app").len(), 12, "nothing deleted");
}

#[test]
fn with_no_mapping_line_at_all_a_prune_is_refused_before_anything_is_contacted() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_tags(&src, ["v1", "v2"], 1, 64);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "both", &app_lines(&s, &d, &["v1", "v2"]), &ledger);
    // An emptied ConfigMap: two tags are within the default valve of a small mirror, but no
    // line at all is no mapping, not a clean-up.
    let emptied = ws.write("emptied", "# every line removed\n");
    let later = T0 + 10 * DAY;
    let mark = dst.mark();
    let (out, _) = run_at(&ws, &emptied, &ledger, later, &["--prune"]);
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no mapping line in ")
            && stderr.contains("a prune would delete every tag the ledger names")
            && stderr.contains("--max-prune 100%"),
        "{stderr}"
    );
    let out = prune_at(&ws, &emptied, &ledger, later, &[]);
    expect_code(&out, 2);
    assert!(
        dst.tool_requests_since(mark).is_empty(),
        "nothing contacted"
    );
    assert_eq!(dst.tags("mirror/app"), vec!["v1", "v2"], "nothing deleted");
    // Said on purpose: pruned.
    let out = prune_at(&ws, &emptied, &ledger, later, &["--max-prune=100%"]);
    expect_code(&out, 0);
    assert!(dst.tags("mirror/app").is_empty(), "{}", text(&out.stdout));
}

#[test]
fn a_registry_without_deletes_gets_a_clear_error_and_the_copies_still_happen() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryConfig {
        delete_disabled: true,
        ..RegistryConfig::default()
    });
    let (s, d) = (src.host(), dst.host());
    let [_, v2] = seed_tags(&src, ["v1", "v2"], 1, 300);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "v1", &app_lines(&s, &d, &["v1"]), &ledger);
    let v2_only = ws.write("v2", &app_lines(&s, &d, &["v2"]));
    let (out, report) = run_at(&ws, &v2_only, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 1);
    assert_eq!(
        dst.manifest_digest("mirror/app", "v2"),
        Some(v2.digest),
        "the copy is done"
    );
    assert_eq!(total(&report, "copied"), 1);
    assert_says(
        &out,
        &[
            &format!("{d} refuses to delete manifests"),
            "storage.delete.enabled",
        ],
    );
    assert!(dst.manifest_digest("mirror/app", "v1").is_some());
}

/// Requests the tool sent to the ledger's repository in its last run.
fn ledger_requests(reg: &Registry, mark: usize) -> usize {
    reg.tool_requests_since(mark)
        .iter()
        .filter(|r| r.path().contains("/mirror/ledger/"))
        .count()
}

#[test]
fn the_ledger_costs_the_same_few_requests_whatever_the_number_of_tags() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let mut costs = Vec::new();
    for tags in [2, 12] {
        let mut lines = String::new();
        for i in 0..tags {
            let tag = format!("n{tags}-{i}");
            seed_oci_image(&src, "org/app", &tag, &[layer(i, 200)]);
            lines.push_str(&format!("{s}/org/app:{tag} {d}/mirror/app{tags}:{tag}\n"));
        }
        let ledger = format!("{d}/mirror/ledger/n{tags}");
        let mapping = first_run(&ws, &format!("m{tags}"), &lines, &ledger);
        // The unchanged rerun: its ledger requests.
        let mark = dst.mark();
        let (out, report) = run_at(&ws, &mapping, &ledger, T0 + 60, &["--prune"]);
        expect_code(&out, 0);
        assert_eq!(total(&report, "unchanged"), tags);
        costs.push(ledger_requests(&dst, mark));
        // It changed nothing: the object's blob is the last run's (no upload, nothing new
        // left for the registry's garbage collection but a manifest), its time beside it.
        let uploads: Vec<String> = dst
            .tool_writes_since(mark)
            .iter()
            .filter(|r| r.path().contains("/mirror/ledger/") && r.path().contains("/blobs/"))
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect();
        assert!(uploads.is_empty(), "{uploads:?}");
    }
    assert_eq!(
        costs[0], costs[1],
        "ledger requests for 2 and 12 tags: {costs:?}"
    );
    // A tag list, the object's manifest and blob; a HEAD of the blob (held) and the
    // manifest PUT.
    assert!(costs[0] <= 5, "{costs:?}");
    eprintln!("ledger requests per run: {costs:?}");

    // The same in a directory: one file per writer, nothing in the registry.
    let dir = ws.path("ledger-dir");
    let mapping = ws.path("m2");
    let mark = dst.mark();
    let (out, _) = run_at(&ws, &mapping, &format!("file:{}", dir.display()), T0, &[]);
    expect_code(&out, 0);
    assert!(dir.join("ledger-all.json").exists());
    assert_eq!(ledger_requests(&dst, mark), 0);
}

#[test]
fn min_age_holds_a_new_tag_back_then_lets_it_through_and_a_moved_tag_restarts_its_clock() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let first = seed_oci_image(&src, "org/app", "v1", &[layer(1, 300)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    let mapping = ws.write(
        "wild",
        &format!("{s}/org/app:v* {d}/mirror/app  # image-mirror: min-age=2d\n"),
    );
    let junit = ws.path("junit.xml");
    let metrics = ws.path("metrics.prom");
    let (out, report) = run_at(
        &ws,
        &mapping,
        &ledger,
        T0,
        &["--junit", p(&junit), "--metrics-file", p(&metrics)],
    );
    expect_code(&out, 0);
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None, "held back");
    assert_eq!(total(&report, "waiting"), 1);
    let image = &images(&report)[0];
    assert_eq!(image["status"], "waiting", "{report:#}");
    assert_eq!(image["error_kind"], "waiting");
    assert!(
        image["error"]
            .as_str()
            .unwrap_or_default()
            .ends_with("48 h left"),
        "{image:#}"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Waiting (1 image, not failed"), "{stdout}");
    assert!(stdout.contains("0 failed, 1 waiting;"), "{stdout}");
    let junit = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        junit.contains("<skipped message=\"waiting: new at the source"),
        "{junit}"
    );
    let metrics = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        metrics.contains("image_mirror_images{status=\"waiting\"} 1"),
        "{metrics}"
    );

    // A day on, the same digest: a day left.
    let (out, report) = run_at(&ws, &mapping, &ledger, T0 + DAY, &[]);
    expect_code(&out, 0);
    assert!(
        images(&report)[0]["error"]
            .as_str()
            .unwrap_or_default()
            .ends_with("24 h left"),
        "{report:#}"
    );
    // The tag moves at the source: its clock starts again.
    let moved = seed_oci_image(&src, "org/app", "v1", &[layer(2, 300)]);
    let (out, report) = run_at(&ws, &mapping, &ledger, T0 + 2 * DAY + 60, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&report)[0]["status"], "waiting", "{report:#}");
    assert!(
        images(&report)[0]["error"]
            .as_str()
            .unwrap_or_default()
            .ends_with("48 h left"),
        "{report:#}"
    );
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None);
    // Two days at the new digest: copied.
    let (out, report) = run_at(&ws, &mapping, &ledger, T0 + 4 * DAY + 60, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&report)[0]["status"], "copied", "{report:#}");
    assert_eq!(
        dst.manifest_digest("mirror/app", "v1"),
        Some(moved.digest.clone())
    );
    assert_ne!(moved.digest, first.digest);
    // Mirrored already: a move is copied at once, as without min-age.
    let again = seed_oci_image(&src, "org/app", "v1", &[layer(3, 300)]);
    let (out, report) = run_at(&ws, &mapping, &ledger, T0 + 4 * DAY + 120, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&report)[0]["status"], "copied", "{report:#}");
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), Some(again.digest));
}

#[test]
fn min_age_needs_a_ledger_and_a_malformed_one_is_a_check_error_at_its_place() {
    let ws = Workspace::new();
    let good = ws.write(
        "good",
        "quay.io/org/app:v* reg.example/org/app  # image-mirror: min-age=3d\n",
    );
    let out = ws
        .command()
        .args(["run", "--dry-run", p(&good)])
        .output()
        .unwrap();
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("min-age at "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("needs --ledger"),
        "{}",
        text(&out.stderr)
    );
    let bad = ws.write(
        "bad",
        "quay.io/org/app:v* reg.example/org/app  # image-mirror: min-age=3x\n",
    );
    let out = ws.command().args(["check", p(&bad)]).output().unwrap();
    expect_code(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:1:57", bad.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("min-age: duration \"3x\": unknown unit \"x\""),
        "{stderr}"
    );
}

/// An SBOM referrer of `subject` (as ORAS pushes one), by digest, listed by the fallback
/// index at a registry without the referrers API.
fn push_sbom_referrer(reg: &Registry, repo: &str, subject: &str) -> String {
    let size = reg.manifest(repo, subject).expect("the subject").1.len();
    let document = format!(r#"{{"spdxVersion":"SPDX-2.3","name":"{subject}"}}"#);
    push_sbom(reg, repo, subject, size, &document, true)
}

/// A registry with the referrers API (ferro-oci-server): the pruned image's referrer, found
/// by the API, goes with it; the kept image's stays.
#[test]
fn at_a_registry_with_the_referrers_api_a_pruned_images_referrers_go_with_it() {
    let src = Registry::start();
    let dst = Ferro::start();
    let (s, d) = (src.host(), dst.host());
    let [v1, v2] = seed_tags(&src, ["v1", "v2"], 1, 300);
    let sbom1 = push_sbom_referrer(&src, "org/app", &v1.digest);
    let sbom2 = push_sbom_referrer(&src, "org/app", &v2.digest);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    first_run(&ws, "both", &app_lines(&s, &d, &["v1", "v2"]), &ledger);
    assert_eq!(
        dst.referrer_digests("mirror/app", &v1.digest),
        std::slice::from_ref(&sbom1)
    );
    let only_v2 = ws.write("only_v2", &app_lines(&s, &d, &["v2"]));
    let before = dst.requests();
    let (out, report) = run_at(&ws, &only_v2, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    // ferro has no tag delete (405): the tag is tried alone, then the image and its
    // referrer go by digest.
    let deletes = dst.requests().since(&before);
    assert_eq!(deletes.count(Some("DELETE"), "manifests"), 3, "{deletes:?}");
    assert_v1_pruned_with_one_attached(&report, &d);
    assert_eq!(dst.manifest_digest("mirror/app", "v1"), None);
    assert_eq!(dst.manifest_digest("mirror/app", &v1.digest), None);
    assert_eq!(
        dst.manifest_digest("mirror/app", &sbom1),
        None,
        "the referrer goes"
    );
    assert_eq!(
        dst.manifest_digest("mirror/app", "v2"),
        Some(v2.digest.clone())
    );
    assert_eq!(
        dst.referrer_digests("mirror/app", &v2.digest),
        [sbom2],
        "the kept one's stays"
    );
}

/// Directory destinations are pruned as registries are: `oci:` (the tag's entry leaves
/// `index.json`) and `file://` (the tag's link leaves `manifests/`), each with the pruned
/// digest's signature tag; what is still wanted stays.
#[test]
fn directory_destinations_are_pruned_too() {
    let src = Registry::start();
    let s = src.host();
    let [v1, _] = seed_tags(&src, ["v1", "v2"], 1, 300);
    let sig1 = format!("sha256-{}.sig", hex(&v1.digest));
    seed_oci_image(&src, "org/app", &sig1, &[layer(11, 90)]);
    let ws = Workspace::new();
    let layout = ws.path("layout");
    let out_dir = ws.path("out");
    let ledger = format!("file:{}", ws.path("ledger").display());
    let lines = |tags: &[&str]| {
        tags.iter()
            .map(|t| {
                format!(
                    "{s}/org/app:{t} oci:{}:{t}\n{s}/org/app:{t} file://team/app:{t}\n",
                    layout.display()
                )
            })
            .collect::<String>()
    };
    let dir = ["--dir", p(&out_dir)];
    let (out, _) = run_at(
        &ws,
        &ws.write("both", &lines(&["v1", "v2"])),
        &ledger,
        T0,
        &dir,
    );
    expect_code(&out, 0);
    let oci_tags = || {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
                .expect("index.json");
        let mut tags: Vec<String> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .map(str::to_owned)
            .collect();
        tags.sort();
        tags
    };
    let file_tag = |tag: &str| {
        out_dir
            .join("v2/team/app/manifests")
            .join(tag)
            .symlink_metadata()
            .is_ok()
    };
    assert_eq!(oci_tags(), [sig1.clone(), "v1".to_owned(), "v2".to_owned()]);
    assert!(file_tag("v1") && file_tag(&sig1));

    let only_v2 = ws.write("only_v2", &lines(&["v2"]));
    let (out, report) = run_at(
        &ws,
        &only_v2,
        &ledger,
        T0 + 10 * DAY,
        &[&["--prune"][..], &dir].concat(),
    );
    expect_code(&out, 0);
    let layout_name = format!("oci:{}:v1", layout.display());
    assert_eq!(
        pruned(&report),
        [
            ("file://team/app:v1".to_owned(), "pruned".to_owned()),
            (layout_name, "pruned".to_owned()),
        ]
    );
    assert_eq!(oci_tags(), ["v2"]);
    assert!(
        !file_tag("v1") && !file_tag(&sig1),
        "the tag and its signature's go"
    );
    assert!(file_tag("v2"));
}

/// oc's push by digest leaves no tag: the ledger names the digest, and prune deletes the
/// manifest by digest once no mapping pushes it — unless a tag points at it.
#[test]
fn a_push_by_digest_no_mapping_wants_is_pruned_unless_tagged() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let one = seed_oci_image(&src, "org/app", "one", &[layer(1, 300)]);
    let two = seed_oci_image(&src, "org/app", "two", &[layer(2, 300)]);
    let keep = seed_oci_image(&src, "org/app", "keep", &[layer(3, 300)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    let all = ws.write(
        "all",
        &format!(
            "{s}/org/app@{} {d}/mirror/bydigest\n{s}/org/app@{} {d}/mirror/bydigest\n{s}/org/app@{} {d}/mirror/bydigest\n",
            one.digest, two.digest, keep.digest
        ),
    );
    let (out, _) = run_at(&ws, &all, &ledger, T0, &[]);
    expect_code(&out, 0);
    // Someone tags the second image.
    let (_, body) = dst
        .manifest("mirror/bydigest", &two.digest)
        .expect("pushed");
    dst.push_manifest("mirror/bydigest", "theirs", OCI_MANIFEST, &body);
    let only_keep = ws.write(
        "keep",
        &format!("{s}/org/app@{} {d}/mirror/bydigest\n", keep.digest),
    );
    let (out, report) = run_at(&ws, &only_keep, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    let mut expected = vec![
        (
            format!("{d}/mirror/bydigest@{}", one.digest),
            "pruned".to_owned(),
        ),
        (
            format!("{d}/mirror/bydigest@{}", two.digest),
            "still-tagged".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(pruned(&report), expected);
    assert_eq!(dst.manifest_digest("mirror/bydigest", &one.digest), None);
    assert_eq!(
        dst.manifest_digest("mirror/bydigest", "theirs"),
        Some(two.digest.clone())
    );
    assert!(
        dst.manifest_digest("mirror/bydigest", &keep.digest)
            .is_some()
    );
}

/// A push by digest that stays keeps what a delete by digest would take from it: its own
/// digest (a due tag holding it is kept) and, for an index, its children (a due tag on a
/// child is kept as referenced).
#[test]
fn a_push_by_digest_that_stays_keeps_its_digest_and_its_indexs_children() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let (index, _) = seed_index_with_amd64_tag(&src);
    let image = seed_oci_image(&src, "org/app", "x", &[layer(9, 300)]);
    let ws = Workspace::new();
    let ledger = format!("{d}/mirror/ledger");
    let pushes = format!(
        "{s}/org/app@{} {d}/mirror/app\n{s}/org/app@{} {d}/mirror/app\n",
        index.digest, image.digest
    );
    let tags =
        format!("{s}/org/app:1.0-amd64 {d}/mirror/app:1.0-amd64\n{s}/org/app:x {d}/mirror/app:x\n");
    first_run(&ws, "all", &(pushes.clone() + &tags), &ledger);

    let only_pushes = ws.write("pushes", &pushes);
    let (out, report) = run_at(&ws, &only_pushes, &ledger, T0 + 10 * DAY, &["--prune"]);
    expect_code(&out, 0);
    assert_eq!(
        pruned(&report),
        statuses(&d, &[("1.0-amd64", "referenced"), ("x", "still-tagged")])
    );
    let short = |digest: &str| digest[..19].to_owned();
    assert_says(
        &out,
        &[
            &format!(
                "= {d}/mirror/app:x  kept: its digest is still pushed by digest ({})",
                short(&image.digest)
            ),
            &format!(
                "= {d}/mirror/app:1.0-amd64  kept: its digest is a child of the index pushed by \
                 digest ({})",
                short(&index.digest)
            ),
        ],
    );
    // Both pushes are whole: the index with every child, and the image.
    for digest in index.children.iter().chain([&index.digest, &image.digest]) {
        assert_eq!(
            dst.manifest_digest("mirror/app", digest),
            Some(digest.clone()),
            "{digest} was deleted"
        );
    }
}
