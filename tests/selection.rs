//! Choosing tags by rule and guarding what was written, against a real registry: the
//! `# image-mirror:` options of a mapping line (semver ranges, pre-releases, the newest N,
//! exclusions, regular expressions, platforms, immutable tags) and `--immutable-tags`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::*;
use crate::support::*;

/// Tags a release-minded repository holds: releases, pre-releases, and tags that are no
/// versions at all.
const TAGS: [&str; 12] = [
    "v2.12.9",
    "v2.13.0",
    "v2.13.1",
    "v2.13.2-rc1",
    "v2.14.0",
    "1.25",
    "1.25.3",
    "1.25.4-perl",
    "1.26.0",
    "latest",
    "main",
    "sha-abc",
];

/// `repo` with every tag of [`TAGS`], each a different small image.
fn seed_tags(reg: &Registry, repo: &str) {
    for (i, tag) in TAGS.iter().enumerate() {
        seed_docker_image(reg, repo, tag, &[layer(100 + i as u64, 300)]);
    }
}

struct Run {
    out: Output,
    report: serde_json::Value,
}

fn run(ws: &Workspace, mapping: &Path, args: &[&str]) -> Run {
    let (out, report) = ws.run_insecure(mapping, args);
    Run { out, report }
}

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

fn tags_of(reg: &Registry, repo: &str) -> BTreeSet<String> {
    reg.tags(repo).into_iter().collect()
}

/// The destinations (tags) the report lists under `repo`, by status.
fn reported(report: &serde_json::Value, repo: &str, status: &str) -> BTreeSet<String> {
    report["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == status)
        .filter_map(|i| i["destination"].as_str())
        .filter_map(|d| d.strip_prefix(&format!("{repo}:")).map(str::to_owned))
        .collect()
}

fn mapping(ws: &Workspace, text: &str) -> PathBuf {
    ws.write("mapping", text)
}

#[test]
fn each_example_line_selects_exactly_its_tags_in_a_dry_run_and_a_run() {
    let src = Registry::start();
    let dst = Registry::start();
    for repo in ["argoproj/argocd", "library/nginx", "org/app"] {
        seed_tags(&src, repo);
    }
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let file = mapping(
        &ws,
        &format!(
            "{s}/argoproj/argocd:v2.* {d}/argoproj/argocd   # image-mirror: semver=\">=2.13.0, <2.14.0\" prerelease=true\n\
             {s}/library/nginx {d}/library/nginx   # image-mirror: semver=\"^1.25\" latest=3 exclude=\"*-perl,*-otel\"\n\
             {s}/org/app:v* {d}/org/app   # image-mirror: regex=\"^v[0-9]+\\.[0-9]+\\.[0-9]+$\" immutable\n"
        ),
    );
    let expected = [
        (
            "argoproj/argocd",
            set(&["v2.13.0", "v2.13.1", "v2.13.2-rc1"]),
        ),
        ("library/nginx", set(&["1.25", "1.25.3", "1.26.0"])),
        (
            "org/app",
            set(&["v2.12.9", "v2.13.0", "v2.13.1", "v2.14.0"]),
        ),
    ];

    let dry = run(&ws, &file, &["--dry-run"]);
    expect_code(&dry.out, 0);
    for (repo, tags) in &expected {
        assert_eq!(
            &reported(&dry.report, &format!("{d}/{repo}"), "would-copy"),
            tags,
            "{repo}: {:#}",
            dry.report
        );
        assert!(dst.tags(repo).is_empty(), "a dry run wrote to {repo}");
    }
    let stdout = text(&dry.out.stdout);
    assert!(stdout.contains("v2.13.2-rc1  selected"), "{stdout}");
    assert!(
        stdout.contains("1.25.4-perl  excluded: excluded by *-perl"),
        "{stdout}"
    );
    assert!(
        stdout.contains("latest  excluded: not a version"),
        "{stdout}"
    );
    assert!(
        stdout.contains("v2.12.9  excluded: outside the semver range"),
        "{stdout}"
    );
    let nginx = dry.report["selections"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|sel| sel["source"] == format!("{s}/library/nginx"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(nginx["line"], 2, "{nginx:#}");
    assert!(
        nginx["excluded"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["tag"] == "v2.14.0" && e["reason"] == "outside the semver range"),
        "{nginx:#}"
    );

    let real = run(&ws, &file, &[]);
    expect_code(&real.out, 0);
    for (repo, tags) in &expected {
        assert_eq!(&tags_of(&dst, repo), tags, "{repo}");
        for tag in tags {
            assert_eq!(
                dst.manifest_digest(repo, tag),
                src.manifest_digest(repo, tag),
                "{repo}:{tag}"
            );
        }
    }
}

#[test]
fn immutable_tags_are_never_overwritten_and_new_tags_still_arrive() {
    let src = Registry::start();
    let dst = Registry::start();
    seed_docker_image(&src, "org/app", "v1.0.0", &[layer(1, 500)]);
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let line = |options: &str| format!("{s}/org/app:v* {d}/org/app {options}\n");
    let file = mapping(&ws, &line("# image-mirror: immutable"));
    expect_code(&run(&ws, &file, &[]).out, 0);
    let first = dst.manifest_digest("org/app", "v1.0.0");
    assert!(first.is_some());

    // The source's v1.0.0 moves; v1.1.0 is new.
    let moved = seed_docker_image(&src, "org/app", "v1.0.0", &[layer(2, 500)]);
    let new = seed_docker_image(&src, "org/app", "v1.1.0", &[layer(3, 500)]);
    for dry_run in [true, false] {
        let args: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
        let r = run(&ws, &file, args);
        expect_code(&r.out, 1);
        let image = r.report["images"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["destination"] == format!("{d}/org/app:v1.0.0"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(image["status"], "refused", "{image:#}");
        assert_eq!(image["error_kind"], "refused", "{image:#}");
        let error = image["error"].as_str().unwrap_or("");
        assert!(
            error.contains(first.as_deref().unwrap_or("?"))
                && error.contains(&moved.digest)
                && error.contains("immutable tags are never overwritten"),
            "{error}"
        );
        assert_eq!(r.report["totals"]["refused"], 1, "{:#}", r.report);
        assert!(
            text(&r.out.stdout).contains("1 refused"),
            "{}",
            text(&r.out.stdout)
        );
    }
    assert_eq!(dst.manifest_digest("org/app", "v1.0.0"), first);
    assert_eq!(
        dst.manifest_digest("org/app", "v1.1.0").as_deref(),
        Some(new.digest.as_str())
    );

    // Without the option the tag is overwritten; --immutable-tags guards it from the
    // command line.
    let plain = mapping(&ws, &line(""));
    let r = run(&ws, &plain, &["--immutable-tags", "v1.0.*"]);
    expect_code(&r.out, 1);
    assert_eq!(dst.manifest_digest("org/app", "v1.0.0"), first);
    let r = run(&ws, &plain, &["--immutable-tags", "v9.*"]);
    expect_code(&r.out, 0);
    assert_eq!(
        dst.manifest_digest("org/app", "v1.0.0").as_deref(),
        Some(moved.digest.as_str())
    );
}

#[test]
fn platforms_mirror_a_subset_of_an_index_on_one_line() {
    let src = Registry::start();
    let dst = Registry::start();
    let index = seed_oci_index(
        &src,
        "org/tool",
        "1.0",
        &[("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")],
        40,
    );
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let file = mapping(
        &ws,
        &format!(
            "{s}/org/tool@{} {d}/org/tool:1.0   # image-mirror: immutable platforms=linux/amd64\n",
            index.digest
        ),
    );
    let r = run(&ws, &file, &[]);
    expect_code(&r.out, 0);
    let written = dst
        .describe("org/tool", "1.0")
        .unwrap_or_else(|| panic!("no tag written"));
    assert_eq!(written.children.len(), 1, "{written:?}");
    assert_eq!(written.children[0], index.children[0]);
    assert_ne!(written.digest, index.digest);
    // Unchanged on the next run: the filtered index is recognised.
    let again = run(&ws, &file, &[]);
    expect_code(&again.out, 0);
    assert_eq!(again.report["totals"]["unchanged"], 1, "{:#}", again.report);
}

#[test]
fn bad_options_are_check_errors_with_their_place() {
    let ws = Workspace::new();
    let file = mapping(
        &ws,
        "quay.io/org/app:v* mirror.example.com/org/app  # image-mirror: semver=\">=1\" colour=red\n\
         quay.io/org/tool@sha256:0123456789012345678901234567890123456789012345678901234567890123 mirror.example.com/org/tool:1.0  # image-mirror: latest=3\n\
         quay.io/org/x:v* mirror.example.com/org/x  # image-mirror: latest=0\n\
         quay.io/org/y:v* mirror.example.com/org/y  # just a comment: latest=0\n",
    );
    let out = ws
        .command()
        .arg("check")
        .arg(&file)
        .output()
        .expect("run check");
    expect_code(&out, 2);
    let err = text(&out.stderr);
    let at = |line: usize, column: usize, what: &str| {
        assert!(
            err.lines().any(
                |l| l.contains(&format!("mapping:{line}:{column}: error:")) && l.contains(what)
            ),
            "{line}:{column} {what}: {err}"
        );
    };
    at(1, 77, "unknown option \"colour\"");
    at(2, 139, "names one image");
    at(3, 60, "latest=0");
    assert_eq!(err.matches("error:").count(), 3, "{err}");
}

/// `latest=N` of many more versions than N + 1: the N highest in version order (`v1.10.0`
/// above `v1.9.0`), pre-releases and tags that are no versions left out.
#[test]
fn latest_keeps_the_n_highest_of_many_versions() {
    let src = Registry::start();
    let dst = Registry::start();
    let tags = [
        "v1.0.0",
        "v1.1.0",
        "v1.2.0",
        "v1.3.0",
        "v1.4.0",
        "v1.5.0",
        "v1.6.0",
        "v1.7.0",
        "v1.8.0",
        "v1.9.0",
        "v1.10.0",
        "v1.11.0-rc1",
        "latest",
        "main",
    ];
    for (i, tag) in tags.iter().enumerate() {
        seed_docker_image(&src, "org/app", tag, &[layer(700 + i as u64, 300)]);
    }
    let (s, d) = (src.host(), dst.host());
    let ws = Workspace::new();
    let file = mapping(
        &ws,
        &format!("{s}/org/app {d}/org/app   # image-mirror: latest=3\n"),
    );
    let dry = run(&ws, &file, &["--dry-run"]);
    expect_code(&dry.out, 0);
    let chosen = set(&["v1.8.0", "v1.9.0", "v1.10.0"]);
    assert_eq!(
        reported(&dry.report, &format!("{d}/org/app"), "would-copy"),
        chosen,
        "{:#}",
        dry.report
    );
    let done = run(&ws, &file, &[]);
    expect_code(&done.out, 0);
    assert_eq!(tags_of(&dst, "org/app"), chosen);
}
