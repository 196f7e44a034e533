//! `image-mirror import`: a file of each other tool's format (written after their public
//! documentation, pointed at a real registry), translated, then `check`ed and rehearsed with
//! a dry run against the real registries.

use std::collections::BTreeSet;

use crate::support::cli::*;
use crate::support::*;

/// `import --from FORMAT [--to TO] FILE`, then `check` and a dry run of its output; returns
/// the destinations the dry run would copy.
fn import_check_rehearse(
    ws: &Workspace,
    format: &str,
    to: Option<&str>,
    text: &str,
) -> BTreeSet<String> {
    let file = ws.write(&format!("{format}.input"), text);
    let out = ws.import(format, to, &file);
    expect_code(&out, 0);
    let mapping = ws.write(&format!("{format}.mapping"), &text_of(&out.stdout));
    let check = ws
        .command()
        .arg("check")
        .arg(&mapping)
        .output()
        .expect("check");
    expect_code(&check, 0);
    let report = ws.path(&format!("{format}.json"));
    let dry = ws
        .command()
        .args(["run", "--insecure", "--dry-run", "--report"])
        .arg(&report)
        .arg(&mapping)
        .output()
        .expect("dry run");
    expect_code(&dry, 0);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    report["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == "would-copy")
        .filter_map(|i| i["destination"].as_str().map(str::to_owned))
        .collect()
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

#[test]
fn each_format_imports_checks_and_rehearses() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    for (repo, tags) in [
        ("calico/cni", &["v3.22.0"][..]),
        ("bitnami/keycloak", &["9.0.3"][..]),
        (
            "argoproj/argocd",
            &["v2.12.0", "v2.13.0", "v2.13.1-rc1", "v2.13.1"][..],
        ),
        (
            "library/alpine",
            &["3.11.0", "3.12.1", "3.13.0-rc1", "latest"][..],
        ),
    ] {
        for (i, tag) in tags.iter().enumerate() {
            seed_docker_image(&src, repo, tag, &[layer(200 + i as u64, 256)]);
        }
    }
    let busybox = seed_docker_image(&src, "library/busybox", "1.32.0", &[layer(300, 256)]);
    let ws = Workspace::new();

    let rancher = import_check_rehearse(
        &ws,
        "rancher",
        None,
        &format!(
            "# rancher/image-mirror images-list\n{s}/calico/cni {d}/rancher/mirrored-calico-cni v3.22.0\n"
        ),
    );
    assert_eq!(
        rancher,
        set(&[format!("{d}/rancher/mirrored-calico-cni:v3.22.0")])
    );

    let kyma = import_check_rehearse(
        &ws,
        "kyma",
        None,
        &format!(
            "targetRepoPrefix: \"{d}/kyma/external/\"\nimages:\n- source: \"{s}/bitnami/keycloak:9.0.3\"\n- source: \"{s}/library/busybox@{}\"\n  tag: \"1.32.0-v1\"\n  amd64Only: true\n",
            busybox.digest
        ),
    );
    assert_eq!(
        kyma,
        set(&[
            format!("{d}/kyma/external/bitnami/keycloak:9.0.3"),
            format!("{d}/kyma/external/library/busybox:1.32.0-v1"),
        ])
    );

    let skopeo = import_check_rehearse(
        &ws,
        "skopeo-sync",
        Some(&format!("{d}/sync")),
        &format!(
            "{s}:\n  images-by-semver:\n    library/alpine: \">= 3.12.0\"\n  images-by-tag-regex:\n    argoproj/argocd: ^v2\\.13\\.[0-9]+$\n  tls-verify: false\n"
        ),
    );
    assert_eq!(
        skopeo,
        set(&[
            format!("{d}/sync/library/alpine:3.12.1"),
            format!("{d}/sync/argoproj/argocd:v2.13.0"),
            format!("{d}/sync/argoproj/argocd:v2.13.1"),
        ])
    );

    let operator = import_check_rehearse(
        &ws,
        "image-operator",
        None,
        &format!(
            "apiVersion: skopeo.io/v1alpha1\nkind: Image\nmetadata:\n  name: argocd-2-13-rc\nspec:\n  allowCandidateRelease: true\n  mode: OneShot\n  source:\n    name: {s}/argoproj/argocd\n    version: v2.13.x\n  destination:\n    name: {d}/tchoupinax/argoproj/argocd\n    version: v2.13.x\n"
        ),
    );
    assert_eq!(
        operator,
        set(&[
            format!("{d}/tchoupinax/argoproj/argocd:v2.13.0"),
            format!("{d}/tchoupinax/argoproj/argocd:v2.13.1"),
            format!("{d}/tchoupinax/argoproj/argocd:v2.13.1-rc1"),
        ])
    );
    // Rehearsals only: nothing was written.
    assert!(dst.catalog().is_empty(), "{:?}", dst.catalog());
}

#[test]
fn what_cannot_be_translated_is_an_error_naming_the_entry_and_prints_nothing() {
    let ws = Workspace::new();
    let file = ws.write(
        "sync.yaml",
        "registry.example.com:\n  images:\n    redis:\n      - \"1.0\"\n      - \"sha256:0000000000000000000000000000000011111111111111111111111111111111\"\n  images-by-semver:\n    alpine: \"1.2 || 2.0\"\n",
    );
    let out = ws.import("skopeo-sync", Some("mirror.example.com/x"), &file);
    expect_code(&out, 2);
    assert!(out.stdout.is_empty(), "{}", text_of(&out.stdout));
    let err = text_of(&out.stderr);
    assert!(
        err.contains("images: redis") && err.contains("redis@sha256:0000"),
        "{err}"
    );
    assert!(
        err.contains("images-by-semver: alpine") && err.contains("||"),
        "{err}"
    );
}
