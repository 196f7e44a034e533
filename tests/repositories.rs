//! Repository wildcards against a real registry's `_catalog` (paged: the registry holds at
//! most two repositories a page): which repositories and tags arrive, `**` across nested
//! paths, a registry that refuses its catalog, and `--max-images`.

use std::collections::BTreeSet;

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

/// A source paging its catalog two at a time, holding `team/a` (v1.0, v1.1, v2.0),
/// `team/b` (v1.0), `team/nested/c` (v1.5) and `other/x` (v1.0).
fn source() -> Registry {
    let src = Registry::start_with(RegistryConfig {
        catalog_max_entries: Some(2),
        ..RegistryConfig::default()
    });
    let mut seed = 0;
    for (repo, tags) in [
        ("team/a", &["v1.0", "v1.1", "v2.0"][..]),
        ("team/b", &["v1.0"][..]),
        ("team/nested/c", &["v1.5"][..]),
        ("other/x", &["v1.0"][..]),
    ] {
        for tag in tags {
            seed += 1;
            seed_docker_image(&src, repo, tag, &[layer(500 + seed, 300)]);
        }
    }
    src
}

fn run(ws: &Workspace, text: &str, args: &[&str]) -> (std::process::Output, serde_json::Value) {
    ws.run_insecure(&ws.mapping(text), args)
}

/// `repo:tag` for every tag of every repository of `dst`.
fn content(dst: &Registry) -> BTreeSet<String> {
    dst.catalog()
        .into_iter()
        .flat_map(|r| dst.tags(&r).into_iter().map(move |t| format!("{r}:{t}")))
        .collect()
}

/// Runs `team/** {dst}/all/**` from a fresh [`source`] into a fresh registry with `args`;
/// returns that registry, the output and the report.
fn mirror_all_of_team(args: &[&str]) -> (Registry, std::process::Output, serde_json::Value) {
    let src = source();
    let dst = Registry::start();
    let ws = Workspace::new();
    let (out, report) = run(
        &ws,
        &format!("{}/team/** {}/all/**\n", src.host(), dst.host()),
        args,
    );
    (dst, out, report)
}

/// What `team/** {dst}/all/**` mirrors of [`source`], as [`content`] lists it.
const ALL_OF_TEAM: [&str; 5] = [
    "all/a:v1.0",
    "all/a:v1.1",
    "all/a:v2.0",
    "all/b:v1.0",
    "all/nested/c:v1.5",
];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_repository_wildcard_mirrors_exactly_the_matching_repositories_and_tags() {
    let src = source();
    let dst = Registry::start();
    let ws = Workspace::new();
    let line = format!("{}/team/*:v1.* {}/mirror/team/*\n", src.host(), dst.host());

    let (dry, _) = run(&ws, &line, &["--dry-run"]);
    expect_code(&dry, 0);
    let stdout = text(&dry.stdout);
    assert!(
        stdout.contains(&format!("{}/team/* (", src.host()))
            && stdout.contains("2 repositories x 3 tags"),
        "{stdout}"
    );
    assert!(dst.catalog().is_empty(), "a dry run wrote");

    let (out, report) = run(&ws, &line, &[]);
    expect_code(&out, 0);
    assert_eq!(
        content(&dst),
        set(&[
            "mirror/team/a:v1.0",
            "mirror/team/a:v1.1",
            "mirror/team/b:v1.0"
        ]),
        "{report:#}"
    );
    for (from, to, tag) in [
        ("team/a", "mirror/team/a", "v1.0"),
        ("team/b", "mirror/team/b", "v1.0"),
    ] {
        assert_eq!(src.manifest_digest(from, tag), dst.manifest_digest(to, tag));
    }
    // The catalog was read a page at a time, from the pattern's prefix on.
    let catalog_reads: Vec<_> = src
        .requests()
        .into_iter()
        .filter(|r| r.path().ends_with("/_catalog") && !r.is_harness())
        .collect();
    assert!(catalog_reads.len() >= 2, "{catalog_reads:#?}");
    assert!(
        catalog_reads
            .iter()
            .all(|r| r.query_param("last").is_some()),
        "{catalog_reads:#?}"
    );
}

#[test]
fn two_stars_cross_path_segments() {
    let (dst, out, _) = mirror_all_of_team(&[]);
    expect_code(&out, 0);
    assert_eq!(content(&dst), set(&ALL_OF_TEAM));
}

#[test]
fn a_registry_refusing_its_catalog_fails_the_line_clearly() {
    let src = source();
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        "/v2/_catalog",
        100,
        Fault::Status {
            code: 404,
            retry_after: None,
        },
    );
    let dst = Registry::start();
    let ws = Workspace::new();
    let (out, report) = run(
        &ws,
        &format!(
            "{}/team/* {}/m/*\n{}/other/x:v1.0 {}/other/x:v1.0\n",
            proxy.host(),
            dst.host(),
            src.host(),
            dst.host()
        ),
        &[],
    );
    expect_code(&out, 1);
    let failure = &report["listing_failures"][0];
    assert_eq!(
        failure["source"],
        format!("{}/team/*", proxy.host()),
        "{report:#}"
    );
    let error = failure["error"].as_str().unwrap_or("");
    assert!(
        error.contains("404") && error.contains("lister="),
        "{error}"
    );
    // The other line still ran.
    assert_eq!(dst.tags("other/x"), ["v1.0"]);
}

#[test]
fn max_images_refuses_a_plan_too_large_before_copying() {
    let (dst, out, _) = mirror_all_of_team(&["--max-images", "4"]);
    expect_code(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("5 images") && err.contains("--max-images 4"),
        "{err}"
    );
    assert!(dst.catalog().is_empty());
}

/// `--max-images N` is the most a plan may hold: a plan of exactly N images runs, all of it.
#[test]
fn max_images_runs_a_plan_of_exactly_that_many_images() {
    let (dst, out, report) = mirror_all_of_team(&["--max-images", "5"]);
    expect_code(&out, 0);
    assert_eq!(total(&report, "copied"), 5, "{report:#}");
    assert_eq!(content(&dst), set(&ALL_OF_TEAM));
}
