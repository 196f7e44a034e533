//! `image-mirror verify` against a real registry: complete images pass, missing blobs and
//! missing index children are found.

mod support;

use support::cli::*;
use support::*;

fn verify(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = image_mirror(dir.path())
        .arg("verify")
        .args(args)
        .output()
        .expect("run");
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

#[test]
fn complete_and_incomplete_repositories() {
    let reg = Registry::start();
    let h = reg.host();
    seed_docker_image(&reg, "good", "1", &[layer(1, 1000)]);
    seed_oci_index(
        &reg,
        "good",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        3,
    );
    let (code, out) = verify(&["--insecure", &format!("{h}/good")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 tags, all complete"), "{out}");

    let broken = seed_docker_image(&reg, "broken", "1", &[layer(5, 1000), layer(6, 1000)]);
    let missing = broken.blobs.last().expect("a layer").clone();
    assert!(reg.delete_blob("broken", &missing));
    let index = seed_oci_index(
        &reg,
        "broken",
        "multi",
        &[("linux", "amd64"), ("linux", "arm64")],
        7,
    );
    assert!(reg.delete_manifest("broken", &index.children[1]));
    let (code, out) = verify(&["--insecure", &format!("{h}/good"), &format!("{h}/broken")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{h}/good: 2 tags, all complete")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{h}/broken: 2 tags, 2 problems")),
        "{out}"
    );
    assert!(
        out.contains(&format!("blob {missing} of {} is missing", broken.digest)),
        "{out}"
    );
    assert!(out.contains(&index.children[1]), "{out}");

    let (code, out) = verify(&["--insecure", "not a repo"]);
    assert_eq!(code, 2, "{out}");
}
