//! Directories as source and destination, against real registries and real directories:
//! registry -> `oci:` / `file://` -> registry with identical digests for every manifest
//! kind, unchanged reruns that write nothing, skopeo reading what we write and us reading
//! what skopeo writes, bad directories refused before anything is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::SystemTime;

use crate::support::cli::*;
use crate::support::*;

const TWO_PLATFORMS: &[(&str, &str)] = &[("linux", "amd64"), ("linux", "arm64")];

fn run(ws: &Workspace, args: &[&str]) -> Output {
    ws.command()
        .current_dir(ws.dir())
        .arg("run")
        .args(args)
        .output()
        .expect("run image-mirror")
}

/// Every file under `dir` with its modification time and size.
fn snapshot(dir: &Path) -> BTreeMap<String, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = std::fs::symlink_metadata(entry.path()).expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(
                    entry.path().display().to_string(),
                    (meta.modified().expect("mtime"), meta.len()),
                );
            }
        }
    }
    out
}

/// Four images of every kind in `src`, under `team/NAME:1.0`.
fn seed_all(src: &Registry) -> Vec<(&'static str, Seeded)> {
    vec![
        (
            "v2",
            seed_docker_image(src, "team/v2", "1.0", &[layer(1, 3000), layer(2, 5000)]),
        ),
        (
            "oci",
            seed_oci_image(src, "team/oci", "1.0", &[layer(3, 4000)]),
        ),
        (
            "index",
            seed_oci_index(src, "team/index", "1.0", TWO_PLATFORMS, 10),
        ),
        (
            "list",
            seed_docker_list(src, "team/list", "1.0", TWO_PLATFORMS, 20),
        ),
    ]
}

fn assert_same(dst: &Registry, repo: &str, tag: &str, seeded: &Seeded) {
    assert_eq!(
        dst.manifest_digest(repo, tag).as_deref(),
        Some(seeded.digest.as_str()),
        "{repo}:{tag}"
    );
    let (media_type, _) = dst.manifest(repo, tag).expect("manifest");
    assert_eq!(media_type, seeded.media_type, "{repo}:{tag}");
    dst.assert_complete(repo, tag);
}

/// Out to a directory and back in, with `to_dir(name)` naming the directory side.
fn round_trip(to_dir: impl Fn(&str) -> String, extra: &[&str]) -> Workspace {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let images = seed_all(&src);
    let ws = Workspace::new();
    let mut out_lines = String::new();
    let mut in_lines = String::new();
    for (name, _) in &images {
        let dir = to_dir(name);
        out_lines.push_str(&format!("{s}/team/{name}:1.0 {dir}:1.0\n"));
        in_lines.push_str(&format!("{dir}:1.0 {d}/mirror/{name}:1.0\n"));
    }
    let out_file = ws.write("mapping_out", &out_lines);
    let in_file = ws.write("mapping_in", &in_lines);
    let check = ws
        .command()
        .args(["check", p(&out_file), p(&in_file)])
        .output()
        .expect("run check");
    expect_code(&check, 0);

    let mut args = vec!["--insecure"];
    args.extend(extra);
    let dry = run(&ws, &[&args[..], &["--dry-run", p(&out_file)]].concat());
    expect_code(&dry, 0);
    assert!(
        text(&dry.stdout).contains("would copy"),
        "{}",
        text(&dry.stdout)
    );
    let written: Vec<_> = std::fs::read_dir(ws.dir())
        .expect("read the workspace")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(written.is_empty(), "a dry run wrote {written:?}");

    let out = run(&ws, &[&args[..], &[p(&out_file)]].concat());
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("4 images copied, 0 unchanged, 0 failed"),
        "{}",
        text(&out.stdout)
    );
    let before = snapshot(ws.dir());
    let mark = src.mark();
    let again = run(&ws, &[&args[..], &[p(&out_file)]].concat());
    expect_code(&again, 0);
    assert!(
        text(&again.stdout).contains("0 images copied, 4 unchanged"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        snapshot(ws.dir()),
        before,
        "an unchanged rerun wrote to the directory"
    );
    // HEADs, and one tag list per source repository (where attached signatures are found).
    let asked = src.tool_requests_since(mark);
    assert!(
        asked.iter().all(|r| r.method == "HEAD"
            || r.path() == "/v2/"
            || (r.method == "GET" && r.path().ends_with("/tags/list"))),
        "{asked:#?}"
    );

    let back = run(&ws, &[&args[..], &[p(&in_file)]].concat());
    expect_code(&back, 0);
    for (name, seeded) in &images {
        assert_same(&dst, &format!("mirror/{name}"), "1.0", seeded);
    }
    let mark = dst.mark();
    let again = run(&ws, &[&args[..], &[p(&in_file)]].concat());
    expect_code(&again, 0);
    assert!(dst.tool_writes_since(mark).is_empty());
    assert_eq!(
        snapshot(ws.dir()),
        before,
        "reading the directory wrote to it"
    );
    ws
}

#[test]
fn registry_to_oci_layouts_and_back_keeps_every_digest() {
    let ws = round_trip(|name| format!("oci:layouts/{name}"), &[]);
    let layout = ws.path("layouts/index");
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    let leftovers: Vec<_> = snapshot(ws.dir())
        .into_keys()
        .filter(|k| k.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // verify walks a layout as it walks a registry's repository.
    let verify = |target: &str| {
        ws.command()
            .current_dir(ws.dir())
            .args(["verify", target])
            .output()
            .unwrap()
    };
    let ok = verify("oci:layouts/index");
    expect_code(&ok, 0);
    assert!(
        text(&ok.stdout).contains("1 tag, all complete"),
        "{}",
        text(&ok.stdout)
    );
    let blobs = layout.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .filter_map(|e| e.ok())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .unwrap();
    std::fs::remove_file(layer.path()).unwrap();
    let bad = verify("oci:layouts/index");
    expect_code(&bad, 1);
    assert!(
        text(&bad.stdout).contains("is missing"),
        "{}",
        text(&bad.stdout)
    );
}

#[test]
fn registry_to_file_layout_and_back_keeps_every_digest() {
    let ws = round_trip(|name| format!("file://mirror/{name}"), &["--dir", "out"]);
    // oc's layout: a tag is a symbolic link to the digest's file in `manifests/`, which is
    // the manifest's blob.
    let manifests = ws.path("out/v2/mirror/index/manifests");
    let target = std::fs::read_link(manifests.join("1.0")).expect("tag symlink");
    let digest = target.to_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        std::fs::read(manifests.join(&digest)).unwrap(),
        std::fs::read(ws.path("out/v2/mirror/index/blobs").join(&digest)).unwrap()
    );
}

#[test]
fn wildcards_and_digests_from_directories() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let a = seed_oci_image(&src, "team/app", "v1", &[layer(5, 1000)]);
    let b = seed_oci_image(&src, "team/app", "v2", &[layer(6, 1000)]);
    let ws = Workspace::new();
    let out = ws.write(
        "mapping_out",
        &format!(
            "{s}/team/app:v* oci:layout\n{s}/team/app:* file://team/app\n{s}/team/app@{} oci:bydigest\n",
            a.digest
        ),
    );
    expect_code(&run(&ws, &["--insecure", p(&out)]), 0);
    let back = ws.write(
        "mapping_in",
        &format!(
            "oci:layout {d}/from-oci/app\nfile://team/app:* {d}/from-file/app\noci:bydigest@{} {d}/by/digest\n",
            a.digest
        ),
    );
    let done = run(&ws, &["--insecure", p(&back)]);
    expect_code(&done, 0);
    for repo in ["from-oci/app", "from-file/app"] {
        assert_eq!(dst.tags(repo), ["v1", "v2"]);
        assert_same(&dst, repo, "v1", &a);
        assert_same(&dst, repo, "v2", &b);
    }
    assert!(dst.tags("by/digest").is_empty());
    assert_eq!(
        dst.manifest_digest("by/digest", &a.digest).as_deref(),
        Some(a.digest.as_str())
    );
}

#[test]
fn skopeo_reads_our_oci_layout_and_we_read_skopeos() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let index = seed_oci_index(&src, "team/index", "1.0", TWO_PLATFORMS, 30);
    let ws = Workspace::new();
    let file = ws.write("mapping", &format!("{s}/team/index:1.0 oci:ours:1.0\n"));
    expect_code(&run(&ws, &["--insecure", p(&file)]), 0);

    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .current_dir(ws.dir())
            .args(args)
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            text(&out.stderr)
        );
        out
    };
    let raw = skopeo(&["inspect", "--raw", "oci:ours:1.0"]);
    assert_eq!(sha256_digest(&raw.stdout), index.digest);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "oci:ours:1.0",
        &format!("docker://{d}/by-skopeo/index:1.0"),
    ]);
    assert_same(&dst, "by-skopeo/index", "1.0", &index);

    // skopeo writes a layout, we read it.
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{s}/team/index:1.0"),
        "oci:theirs:2.0",
    ]);
    let back = ws.write(
        "mapping_in",
        &format!("oci:theirs:2.0 {d}/from-skopeo/index\n"),
    );
    expect_code(&run(&ws, &["--insecure", p(&back)]), 0);
    assert_same(&dst, "from-skopeo/index", "2.0", &index);
}

#[test]
fn bad_directories_are_refused_before_anything_is_written() {
    let ws = Workspace::new();
    ws.write("not-a-dir", "x");
    std::fs::create_dir_all(ws.path("broken")).unwrap();
    ws.write("broken/oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#);
    ws.write("broken/index.json", "{ not json");
    let cases = [
        (
            "file://team/app:v1 oci:out:v1\n",
            vec!["--dir", "not-a-dir"],
            "not a directory",
        ),
        (
            "file://team/app:v1 oci:out:v1\n",
            vec!["--dir", "."],
            "is not in",
        ),
        (
            "oci:broken:v1 file://team/app:v1\n",
            vec![],
            "not an OCI image index",
        ),
        ("oci:nowhere:v1 file://team/app:v1\n", vec![], "cannot read"),
        (
            "quay.io/a/b:v1 s3://bucket/a/b:v1\n",
            vec![],
            "s3:// (oc's S3 destination) is not supported",
        ),
    ];
    for (line, flags, needle) in cases {
        let file = ws.write("mapping", line);
        let mut args = flags.clone();
        args.push(p(&file));
        let out = run(&ws, &args);
        expect_code(&out, 2);
        assert!(
            text(&out.stderr).contains(needle),
            "{line}: {}",
            text(&out.stderr)
        );
        assert!(!ws.path("out").exists() && !ws.path("team").exists());
    }
    // check stays offline: it accepts directories it never looks at.
    let file = ws.write(
        "mapping",
        "oci:nowhere:v1 file://team/app:v1\nfile://x/y:v2 oci:/does/not/exist\n",
    );
    expect_code(&ws.command().args(["check", p(&file)]).output().unwrap(), 0);
}

/// SIGKILL while a blob is half written: no blob file holds bytes that are not its digest's,
/// the tag is not there, and the rerun completes the image.
#[test]
fn a_killed_run_leaves_no_partial_blob_under_its_name() {
    use crate::support::proxy::{Fault, FaultProxy};
    let src = Registry::start();
    let big = layer(70, 4 * 1024 * 1024);
    let seeded = seed_oci_image(&src, "team/big", "1.0", std::slice::from_ref(&big));
    let big_digest = sha256_digest(&big);
    let proxy = FaultProxy::start(&src.host());
    let hex = big_digest.trim_start_matches("sha256:").to_owned();
    // The download is cut after 1 MiB and its resume stalls: the run is stopped mid-blob.
    proxy.add("GET", &hex, 1, Fault::CutAfter(1024 * 1024));
    proxy.add(
        "GET",
        &hex,
        1,
        Fault::Stall(std::time::Duration::from_secs(8)),
    );
    let ws = Workspace::new();
    let file = ws.write(
        "mapping",
        &format!("{}/team/big:1.0 oci:out:1.0\n", proxy.host()),
    );
    let mut child = image_mirror_process(ws.dir())
        .current_dir(ws.dir())
        .args(["run", "--insecure", p(&file)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let blobs = ws.path("out/blobs/sha256");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let partial = loop {
        let found = std::fs::read_dir(&blobs).ok().and_then(|entries| {
            entries.filter_map(|e| e.ok()).find(|e| {
                e.file_name().to_string_lossy().starts_with(".tmp-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        });
        if let Some(f) = found {
            break f.path();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no partial blob appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(std::fs::metadata(&partial).unwrap().len() < big.len() as u64);
    assert!(
        !blobs.join(&hex).exists(),
        "a partial blob under its final name"
    );
    for entry in std::fs::read_dir(&blobs).unwrap().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".tmp-") {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_eq!(sha256_digest(&bytes), format!("sha256:{name}"));
        }
    }
    assert!(
        !ws.path("out/index.json").exists(),
        "the tag was written first"
    );

    let out = run(&ws, &["--insecure", p(&file)]);
    expect_code(&out, 0);
    assert_eq!(std::fs::read(blobs.join(&hex)).unwrap(), big);
    let dst = Registry::start();
    let back = ws.write("mapping_in", &format!("oci:out:1.0 {}/big\n", dst.host()));
    expect_code(&run(&ws, &["--insecure", p(&back)]), 0);
    assert_same(&dst, "big", "1.0", &seeded);
}
