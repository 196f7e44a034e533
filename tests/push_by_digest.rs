//! oc's push by digest: a digest source with a repository destination puts the manifest by
//! digest only, writes no tag, and an unchanged rerun is a HEAD by digest and no write.

use crate::support::cli::*;
use crate::support::*;

#[test]
fn a_digest_source_to_a_repository_is_pushed_by_digest_without_a_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let index = seed_oci_index(
        &src,
        "team/index",
        "1.0",
        &[("linux", "amd64"), ("linux", "arm64")],
        30,
    );
    let single = seed_docker_image(&src, "team/one", "1.0", &[layer(40, 2000)]);
    let ws = Workspace::new();
    let file = ws.write(
        "mapping_digest",
        &format!(
            "{s}/team/index@{} {d}/mirror/index\n{s}/team/one@{}={d}/mirror/one\n",
            index.digest, single.digest
        ),
    );
    let out = ws.command().args(["check", p(&file)]).output().unwrap();
    expect_code(&out, 0);

    let dry = ws
        .command()
        .args(["run", "--insecure", "--dry-run", p(&file)])
        .output()
        .unwrap();
    expect_code(&dry, 0);
    let plan = text(&dry.stdout);
    assert!(plan.contains(&format!("@{}  <- ", index.digest)), "{plan}");
    assert!(dst.write_requests().is_empty());

    let report = ws.path("report.json");
    let out = ws
        .command()
        .args(["run", "--insecure", "--report", p(&report), p(&file)])
        .output()
        .unwrap();
    expect_code(&out, 0);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let destinations: Vec<&str> = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        destinations,
        [
            format!("{d}/mirror/index@{}", index.digest),
            format!("{d}/mirror/one@{}", single.digest)
        ]
    );
    for (repo, seeded) in [("mirror/index", &index), ("mirror/one", &single)] {
        assert!(dst.tags(repo).is_empty(), "{repo} got a tag");
        assert_eq!(
            dst.manifest_digest(repo, &seeded.digest).as_deref(),
            Some(seeded.digest.as_str())
        );
        dst.assert_complete(repo, &seeded.digest);
    }

    let mark = dst.mark();
    let out = ws
        .command()
        .args(["run", "--insecure", p(&file)])
        .output()
        .unwrap();
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("0 images copied, 2 unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert!(dst.tool_writes_since(mark).is_empty());
    let heads: Vec<_> = dst
        .tool_requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "HEAD" && r.path().contains("/manifests/sha256:"))
        .collect();
    assert_eq!(heads.len(), 2, "one HEAD by digest per image");
}

#[test]
fn a_destination_tag_is_still_needed_without_a_source_digest() {
    let ws = Workspace::new();
    let file = ws.write(
        "mapping_bad",
        "quay.io/a/b:v1 reg.io/x/b:*\nquay.io/a/b:v* reg.io/x/b:v1\n",
    );
    let out = ws.command().args(["check", p(&file)]).output().unwrap();
    expect_code(&out, 2);
}
