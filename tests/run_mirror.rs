//! `image-mirror run` against real registries (Debian's docker-registry), checked through
//! the registry API: copies, unchanged reruns, dry runs (which fail where the run would),
//! tag wildcards (paged listings, failed listings), a source manifest fetched once for all
//! its destinations, filtered lists.

use crate::support::cli::*;
use crate::support::proxy::{Behaviour, Fault, FaultProxy, Paging};
use crate::support::*;

const TWO_PLATFORMS: &[(&str, &str)] = &[("linux", "amd64"), ("linux", "arm64")];

#[test]
fn every_manifest_kind_is_copied_byte_identical() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let v2 = seed_docker_image(&src, "team/v2", "1.0", &[layer(1, 3000), layer(2, 5000)]);
    let oci = seed_oci_image(&src, "team/oci", "1.0", &[layer(3, 4000)]);
    let index = seed_oci_index(&src, "team/index", "1.0", TWO_PLATFORMS, 10);
    let list = seed_docker_list(&src, "team/list", "1.0", TWO_PLATFORMS, 20);
    let ws = Workspace::new();
    let file = ws.write(
        "mapping_all",
        &format!(
            "# every kind\n{s}/team/v2:1.0 {d}/mirror/v2:1.0\n{s}/team/oci:1.0={d}/mirror/oci:1.0\n\
             {s}/team/index:1.0 {d}/mirror/index\n{s}/team/list:1.0 {d}/mirror/list:stable\n"
        ),
    );
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("4 images copied, 0 unchanged, 0 failed"),
        "{stdout}"
    );
    for (repo, tag, seeded) in [
        ("mirror/v2", "1.0", &v2),
        ("mirror/oci", "1.0", &oci),
        ("mirror/index", "1.0", &index),
        ("mirror/list", "stable", &list),
    ] {
        assert_eq!(
            dst.manifest_digest(repo, tag).as_deref(),
            Some(seeded.digest.as_str()),
            "{repo}:{tag}"
        );
        let (media_type, _) = dst.manifest(repo, tag).expect("manifest");
        assert_eq!(media_type, seeded.media_type);
        dst.assert_complete(repo, tag);
        for child in &seeded.children {
            assert_eq!(
                dst.manifest_digest(repo, child).as_deref(),
                Some(child.as_str())
            );
        }
    }
}

#[test]
fn wildcards_three_destinations_and_shared_layers() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let base = layer(100, 6000);
    for (i, tag) in ["v1.0", "v1.1", "v2.0", "latest"].iter().enumerate() {
        seed_docker_image(
            &src,
            "team/app",
            tag,
            &[base.clone(), layer(200 + i as u64, 1000)],
        );
    }
    let tool = seed_oci_image(&src, "team/tool", "3", &[base.clone(), layer(300, 1000)]);
    let ws = Workspace::new();
    let file = ws.write(
        "mapping_wild",
        &format!("{s}/team/app:v1.* {d}/mirror/app\n{s}/team/tool:3 {d}/a/tool {d}/b/tool:three\t{d}/c/tool:3 # three\n"),
    );
    let mark = dst.mark();
    let out = ws.run(&["--insecure", "--max-per-registry=3", p(&file)]);
    expect_code(&out, 0);
    assert_eq!(dst.tags("mirror/app"), ["v1.0", "v1.1"]);
    for (repo, tag) in [("a/tool", "3"), ("b/tool", "three"), ("c/tool", "3")] {
        assert_eq!(
            dst.manifest_digest(repo, tag).as_deref(),
            Some(tool.digest.as_str()),
            "{repo}"
        );
        dst.assert_complete(repo, tag);
    }
    // The base layer is needed by four destination repositories: uploaded once, mounted
    // (or found) everywhere else.
    let base_digest = sha256_digest(&base);
    let writes = dst.tool_writes_since(mark);
    let param = |r: &Request, name: &str| r.query_param(name).map(|v| v.replace("%3A", ":"));
    let uploads = writes
        .iter()
        .filter(|r| {
            r.method == "PUT" && param(r, "digest").as_deref() == Some(base_digest.as_str())
        })
        .count();
    let mounts = writes
        .iter()
        .filter(|r| {
            r.is_mount()
                && r.status == 201
                && param(r, "mount").as_deref() == Some(base_digest.as_str())
        })
        .count();
    assert_eq!(uploads, 1, "{writes:#?}");
    assert_eq!(mounts, 3, "{writes:#?}");
}

#[test]
fn a_second_run_moves_nothing_and_writes_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    seed_oci_index(&src, "team/multi", "1", TWO_PLATFORMS, 5);
    let ws = Workspace::new();
    let file = ws.write(
        "m",
        &format!("{s}/team/app:1 {d}/app:1\n{s}/team/multi:* {d}/multi\n"),
    );
    expect_code(&ws.run(&["--insecure", p(&file)]), 0);
    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("0 images copied, 2 unchanged, 0 failed; blobs: 0 uploaded, 0 mounted"),
        "{stdout}"
    );
    assert!(stdout.contains(" 0 B moved"), "{stdout}");
    assert_eq!(dst.tool_writes_since(dst_mark), []);
    assert_eq!(src.tool_writes_since(src_mark), []);
    // One request per unchanged tag at the destination (a HEAD), beyond authentication.
    let heads = dst
        .tool_requests_since(dst_mark)
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .count();
    assert_eq!(heads, 2);
    // At the source, a HEAD per tag and no manifest GET (Docker Hub counts GETs against its
    // pull rate limit); the tags/list GET expands the wildcard.
    let at_source = src.tool_requests_since(src_mark);
    let manifest_gets: Vec<_> = at_source
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/"))
        .collect();
    assert_eq!(manifest_gets, Vec::<&Request>::new());
    let source_heads = at_source.iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(source_heads, 2, "{at_source:?}");
    // Nor does the rehearsal of a run with nothing to do.
    let src_mark = src.mark();
    let out = ws.run(&["--insecure", "--dry-run", p(&file)]);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("2 unchanged"),
        "{}",
        text(&out.stdout)
    );
    let gets: Vec<_> = src
        .tool_requests_since(src_mark)
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/"))
        .collect();
    assert_eq!(gets, Vec::<Request>::new());

    // A source pinned by digest needs no request at the source at all.
    let digest = src.manifest_digest("team/app", "1").expect("seeded digest");
    let pinned = ws.write("pinned", &format!("{s}/team/app@{digest} {d}/app:1\n"));
    let src_mark = src.mark();
    let out = ws.run(&["--insecure", p(&pinned)]);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("1 unchanged"),
        "{}",
        text(&out.stdout)
    );
    // Beyond authentication, only the repository's tag list, once: it says whether anything
    // is attached to the image (signatures added since the copy are copied too).
    let at_source = src.tool_requests_since(src_mark);
    assert!(
        at_source
            .iter()
            .all(|r| r.path() == "/v2/" || r.path() == "/v2/team/app/tags/list"),
        "{at_source:?}"
    );
    assert!(
        at_source
            .iter()
            .filter(|r| r.path().ends_with("/tags/list"))
            .count()
            <= 1,
        "{at_source:?}"
    );
    // With --attached=false, not even that.
    let src_mark = src.mark();
    let out = ws.run(&["--insecure", "--attached=false", p(&pinned)]);
    expect_code(&out, 0);
    let at_source = src.tool_requests_since(src_mark);
    assert!(
        at_source.iter().all(|r| r.path() == "/v2/"),
        "{at_source:?}"
    );
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let app = seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let old = seed_docker_image(&dst, "app", "2", &[layer(9, 100)]);
    seed_docker_image(&src, "team/app", "2", &[layer(2, 2000)]);
    let ws = Workspace::new();
    let file = ws.write(
        "m",
        &format!("{s}/team/app:1 {d}/app:1\n{s}/team/app:2 {d}/app:2\n"),
    );
    for (args, env) in [
        (vec!["--insecure", "--dry-run", p(&file)], vec![]),
        (vec!["--insecure", p(&file)], vec![("dry_run", "TRUE")]),
        (vec!["--insecure", p(&file)], vec![("DRY_RUN", "true")]),
    ] {
        let mark = dst.mark();
        let out = ws.run_with_env(&args, &env);
        expect_code(&out, 0);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "  1  <- {s}/team/app:1  {}  would copy",
                app.digest
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("would overwrite {}", old.digest)),
            "{stdout}"
        );
        assert_eq!(dst.tool_writes_since(mark), []);
        assert_eq!(dst.tags("app"), ["2"]);
    }
    let out = ws.run_with_env(&["--insecure", p(&file)], &[("dry_run", "yes")]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("dry_run"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_source_fails_that_image_only() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let good = seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let ws = Workspace::new();
    let file = ws.write(
        "mapping_x",
        &format!("{s}/team/app:1 {d}/app:1\n{s}/team/app:nope {d}/app:nope\n"),
    );
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 1);
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(good.digest.as_str())
    );
    assert_eq!(dst.tags("app"), ["1"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 image copied, 0 unchanged, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}:2:1", file.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("MANIFEST_UNKNOWN") || stdout.contains("manifest unknown"),
        "{stdout}"
    );
}

/// A blob the source lost fails its image; the upload session opened for it at the
/// destination (at the same time as the source's GET) is cancelled, and its siblings' copies
/// finish instead of being dropped mid-upload.
#[test]
fn a_blob_missing_at_the_source_leaves_no_upload_behind() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let seeded = seed_docker_image(&src, "team/app", "1", &[layer(1, 3000), layer(2, 3000)]);
    let lost = seeded.blobs.last().expect("a layer");
    assert!(src.delete_blob("team/app", lost));
    let ws = Workspace::new();
    let file = ws.write("mapping_x", &format!("{s}/team/app:1 {d}/app:1\n"));
    let out = ws.run(&["--insecure", "--retries=0", p(&file)]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(lost.as_str()), "{stdout}");
    assert!(
        stdout.contains("0 images copied, 0 unchanged, 1 failed"),
        "{stdout}"
    );
    assert_eq!(dst.manifest_digest("app", "1"), None);
    // Every upload session the tool opened was either committed or cancelled. (The
    // directory is no proof: distribution 2.8 re-creates `hashstates/` after a DELETE.)
    let requests = dst.tool_requests_since(0);
    let count = |method: &str, status: u16| {
        requests
            .iter()
            .filter(|r| {
                r.method == method && r.status == status && r.path().contains("/blobs/uploads/")
            })
            .count()
    };
    let (opened, committed, cancelled) =
        (count("POST", 202), count("PUT", 201), count("DELETE", 204));
    assert_eq!(opened, 3, "config and two layers: {requests:?}");
    assert_eq!(
        committed, 2,
        "the blobs the source still has are copied: {requests:?}"
    );
    assert_eq!(
        cancelled, 1,
        "the lost blob's session is cancelled: {requests:?}"
    );
}

/// A layer named by a sha512 digest and an empty layer: both copied and checked by their
/// own digests.
#[test]
fn sha512_and_empty_layers_are_copied() {
    use sha2::Digest as _;
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = src.push_blob("team/odd", config);
    let data = layer(71, 5000);
    let hex: String = sha2::Sha512::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sha512 = src.push_blob_as("team/odd", &data, &format!("sha512:{hex}"));
    let empty = src.push_blob("team/odd", b"");
    let layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": [
            {"mediaType": layer_type, "size": data.len(), "digest": sha512},
            {"mediaType": layer_type, "size": 0, "digest": empty},
        ],
    });
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest json");
    let digest = src.push_manifest(
        "team/odd",
        "1",
        "application/vnd.docker.distribution.manifest.v2+json",
        &bytes,
    );
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/odd:1 {d}/odd:1\n"));
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 0);
    assert_eq!(
        dst.manifest_digest("odd", "1").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(dst.blob("odd", &sha512).as_deref(), Some(&data[..]));
    assert_eq!(dst.blob("odd", &empty).as_deref(), Some(&b""[..]));
    dst.assert_complete("odd", "1");
}

#[test]
fn filter_by_os_keeps_the_matching_platform() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let list = seed_docker_list(&src, "team/multi", "1", TWO_PLATFORMS, 7);
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/multi:1 {d}/multi:1\n"));
    let out = ws.run(&["--insecure", "--filter-by-os=linux/amd64", p(&file)]);
    expect_code(&out, 0);
    let (media_type, body) = dst.manifest("multi", "1").expect("list");
    assert_eq!(media_type, DOCKER_MANIFEST_LIST);
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let platforms: Vec<String> = doc["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or(""),
                m["platform"]["architecture"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64"]);
    assert_ne!(dst.manifest_digest("multi", "1"), Some(list.digest.clone()));
    dst.assert_complete("multi", "1");
    assert!(
        dst.manifest_digest("multi", &list.children[1]).is_none(),
        "arm64 child was copied"
    );
}

#[test]
fn a_64_mib_layer_streams_through() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let big = seed_docker_image(&src, "team/big", "1", &[layer(42, 64 * 1024 * 1024)]);
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/big:1 {d}/big:1\n"));
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 0);
    assert_eq!(
        dst.manifest_digest("big", "1").as_deref(),
        Some(big.digest.as_str())
    );
    dst.assert_complete("big", "1");
    assert!(
        text(&out.stdout).contains("64.0 MiB moved"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_input_exits_2_and_contacts_no_registry() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 100)]);
    let ws = Workspace::new();
    let good = ws.write("a", &format!("{s}/team/app:1 {d}/app:1\n"));
    let bad = ws.write("b", &format!("{s}/team/App:1 {d}/app:2\n"));
    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let out = ws.run(&["--insecure", p(&good), p(&bad)]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains(&format!("{}:1:", bad.display())),
        "{}",
        text(&out.stderr)
    );
    let contacted = |reg: &Registry, mark| reg.tool_requests_since(mark).len();
    assert_eq!(contacted(&src, src_mark), 0);
    assert_eq!(contacted(&dst, dst_mark), 0);
}

#[test]
fn conflicts_found_after_expansion_stop_before_any_write() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/a", "v1", &[layer(1, 100)]);
    seed_docker_image(&src, "team/b", "v1", &[layer(2, 100)]);
    let ws = Workspace::new();
    let file = ws.write(
        "m",
        &format!("{s}/team/a:v* {d}/app\n{s}/team/b:v1 {d}/app:v1\n"),
    );
    let mark = dst.mark();
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 2);
    assert!(
        text(&out.stderr).contains("written by two different sources"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(dst.tool_writes_since(mark), []);
}

#[test]
fn oc_job_flags_are_accepted() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let app = seed_docker_image(&src, "team/app", "1", &[layer(1, 100)]);
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    let config = ws.write("config.json", "{\"auths\":{}}");
    let f = format!("-f={}", file.display());
    let out = ws.run(&[
        "--keep-manifest-list",
        "-a",
        p(&config),
        &f,
        "--skip-multiple-scopes",
        "--continue-on-error",
        "--max-per-registry=3",
        "--dry-run=false",
        "--insecure=true",
    ]);
    expect_code(&out, 0);
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(app.digest.as_str())
    );
    // RUST_LOG=warn (set by Workspace) is obeyed by every library, the capped ones too.
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("DEBUG") && !stderr.contains("INFO"),
        "{stderr}"
    );
}

#[test]
fn within_one_registry_blobs_are_mounted_not_uploaded() {
    let reg = Registry::start();
    let h = reg.host();
    let app = seed_docker_image(&reg, "team/app", "1", &[layer(1, 4000), layer(2, 4000)]);
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{h}/team/app:1 {h}/mirror/app:1\n"));
    let mark = reg.mark();
    let out = ws.run(&["--insecure", p(&file)]);
    expect_code(&out, 0);
    assert_eq!(
        reg.manifest_digest("mirror/app", "1").as_deref(),
        Some(app.digest.as_str())
    );
    reg.assert_complete("mirror/app", "1");
    let writes = reg.tool_writes_since(mark);
    let mounts = writes
        .iter()
        .filter(|r| r.is_mount() && r.status == 201)
        .count();
    let uploads = writes
        .iter()
        .filter(|r| r.method == "PUT" && r.query_param("digest").is_some())
        .count();
    assert_eq!((mounts, uploads), (app.blobs.len(), 0), "{writes:#?}");
    assert!(
        text(&out.stdout).contains(&format!("blobs: 0 uploaded, {} mounted", app.blobs.len())),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn force_rewrites_what_is_already_there() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let app = seed_docker_image(&src, "team/app", "1", &[layer(1, 4000)]);
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/app:1 {d}/app:1\n"));
    expect_code(&ws.run(&["--insecure", p(&file)]), 0);
    let mark = dst.mark();
    let out = ws.run(&["--insecure", "--force", p(&file)]);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("1 image copied, 0 unchanged"),
        "{}",
        text(&out.stdout)
    );
    let writes = dst.tool_writes_since(mark);
    let manifest_puts = writes
        .iter()
        .filter(|r| r.method == "PUT" && r.path().contains("/manifests/"))
        .count();
    let blob_puts = writes
        .iter()
        .filter(|r| r.method == "PUT" && r.path().contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        (manifest_puts, blob_puts),
        (1, app.blobs.len()),
        "{writes:#?}"
    );
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(app.digest.as_str())
    );
}

#[test]
fn empty_destination_repositories_are_not_asked_blob_by_blob() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let base = layer(7, 3000);
    let one = seed_docker_image(&src, "team/app", "1", &[base.clone(), layer(8, 100)]);
    seed_docker_image(&src, "team/app", "2", &[base.clone(), layer(9, 100)]);
    let ws = Workspace::new();
    let first = ws.write("first", &format!("{s}/team/app:1 {d}/app:1\n"));
    let mark = dst.mark();
    expect_code(&ws.run(&["--insecure", p(&first)]), 0);
    let blob_heads = |mark| {
        dst.tool_requests_since(mark)
            .into_iter()
            .filter(|r| r.method == "HEAD" && r.path().contains("/blobs/"))
            .count()
    };
    assert_eq!(
        blob_heads(mark),
        0,
        "a new repository holds nothing to ask about"
    );
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(one.digest.as_str())
    );
    dst.assert_complete("app", "1");
    // Once it has tags, blobs are asked for, and the shared base layer is found there.
    let second = ws.write("second", &format!("{s}/team/app:2 {d}/app:2\n"));
    let mark = dst.mark();
    let out = ws.run(&["--insecure", p(&second)]);
    expect_code(&out, 0);
    assert!(blob_heads(mark) >= 1);
    assert!(
        text(&out.stdout).contains("1 already present"),
        "{}",
        text(&out.stdout)
    );
    dst.assert_complete("app", "2");
}

/// A registry that pages `tags/list` by `n` and `last=` without a `Link` header (played by a
/// proxy: Debian's registry ignores `n` and never pages): a full page of 1000 is followed by
/// a request for what comes after its last tag.
#[test]
fn a_wildcard_over_more_tags_than_a_page_lists_each_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let pager = crate::support::proxy::FaultProxy::start_with(
        &src.host(),
        crate::support::proxy::Behaviour {
            paging: Some(crate::support::proxy::Paging::LastOnly),
            ..Default::default()
        },
    );
    let (s, d) = (pager.host(), dst.host());
    let image = seed_docker_image(&src, "team/many", "t0000", &[layer(3, 100)]);
    let (media_type, body) = src.manifest("team/many", "t0000").expect("manifest");
    for i in 1..1001 {
        src.push_manifest("team/many", &format!("t{i:04}"), &media_type, &body);
    }
    let ws = Workspace::new();
    let file = ws.write("m", &format!("{s}/team/many:* {d}/many\n"));
    let report = ws.dir().join("report.json");
    let out = ws.run(&["--insecure", "--dry-run", "--report", p(&report), p(&file)]);
    expect_code(&out, 0);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let images = json["images"].as_array().expect("images");
    assert_eq!(images.len(), 1001);
    assert!(
        images
            .iter()
            .all(|i| i["status"] == "would-copy" && i["source_digest"] == image.digest.as_str())
    );
    let listings: Vec<String> = pager
        .seen()
        .into_iter()
        .filter(|r| r.target.contains("/tags/list"))
        .map(|r| r.target)
        .collect();
    assert_eq!(listings.len(), 2, "{listings:#?}");
    assert!(listings[1].contains("last=t0999"), "{listings:#?}");
    // Each tag's manifest asked once, none twice.
    assert_eq!(pager.count("GET", "/manifests/"), 1001);
}

/// Row 4 (`Link`): a registry that pages `tags/list` two tags at a time with `Link: <…>;
/// rel="next"` (as quay.io and Docker Hub do) has every page read. (`last=` paging without
/// `Link`: `run_mirror::a_wildcard_over_more_tags_than_a_page_lists_each_once`.)
#[test]
fn a_wildcard_follows_link_pagination() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/many", "t1", &[layer(105, 100)]);
    let (media_type, body) = src.manifest("team/many", "t1").expect("manifest");
    for i in 2..=5 {
        src.push_manifest("team/many", &format!("t{i}"), &media_type, &body);
    }
    let proxy = FaultProxy::start_with(
        &src.host(),
        Behaviour {
            paging: Some(Paging::Link(2)),
            ..Default::default()
        },
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{}/team/many:* {}/many\n", proxy.host(), dst.host()),
    );
    let (out, report) = ws.run_report_with_env(&mapping, &["--insecure", "--dry-run"], &[]);
    expect_code(&out, 0);
    let tags: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["destination"].as_str().unwrap_or_default())
        .map(|d| d.rsplit(':').next().unwrap_or_default())
        .collect();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"], "{report:#}");
    assert!(
        images(&report)
            .iter()
            .all(|i| i["source_digest"] == image.digest.as_str())
    );
    assert_eq!(
        proxy.count("GET", "/tags/list"),
        3,
        "three pages: {:#?}",
        proxy.seen()
    );
}

/// Row 5: a wildcard whose tags cannot be listed fails the run (exit 1) with a
/// `listing_failures` entry naming the source and its line; the other images still run.
#[test]
fn a_failed_wildcard_listing_fails_the_run_and_is_reported() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        "/team/gone/tags/list",
        100,
        Fault::Status {
            code: 403,
            retry_after: None,
        },
    );
    seed_docker_image(&src, "team/gone", "1", &[layer(106, 100)]);
    let app = seed_docker_image(&src, "team/app", "1", &[layer(107, 100)]);
    let (s, x, d) = (src.host(), proxy.host(), dst.host());
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{x}/team/gone:* {d}/gone\n{s}/team/app:1 {d}/app:1\n"),
    );
    let (out, report) = ws.run_report_with_env(&mapping, &["--insecure"], &[]);
    expect_code(&out, 1);
    let failures = report["listing_failures"]
        .as_array()
        .unwrap_or_else(|| panic!("listing_failures: {report:#}"));
    assert_eq!(failures.len(), 1, "{report:#}");
    assert!(
        failures[0]["source"]
            .as_str()
            .is_some_and(|s| s.contains("team/gone")),
        "{report:#}"
    );
    assert_eq!(failures[0]["line"], 1, "{report:#}");
    assert!(total(&report, "failed") >= 1, "{report:#}");
    assert_eq!(
        dst.manifest_digest("app", "1").as_deref(),
        Some(app.digest.as_str()),
        "the other image still ran"
    );
    assert!(dst.tags("gone").is_empty());
}

/// Row 7: a source manifest named by three destinations is fetched once.
#[test]
fn a_source_manifest_is_fetched_once_for_every_destination() {
    let src = Registry::start();
    let dst = Registry::start();
    let other = Registry::start();
    let (s, d, o) = (src.host(), dst.host(), other.host());
    let image = seed_oci_index(
        &src,
        "team/app",
        "1",
        &[("linux", "amd64"), ("linux", "arm64")],
        109,
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!("{s}/team/app:1 {d}/a:1 {d}/b:1 {o}/c:1\n{s}/team/app:1={d}/a:2\n"),
    );
    let mark = src.mark();
    let (out, _) = ws.run_report_with_env(&mapping, &["--insecure"], &[]);
    expect_code(&out, 0);
    for (reg, repo, tag) in [(&dst, "a", "1"), (&dst, "b", "1"), (&other, "c", "1")] {
        assert_eq!(
            reg.manifest_digest(repo, tag).as_deref(),
            Some(image.digest.as_str())
        );
    }
    let requests = src.tool_requests_since(mark);
    let manifest_gets: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/"))
        .collect();
    // The index and its two children, once each.
    assert_eq!(
        manifest_gets.len(),
        1 + image.children.len(),
        "{manifest_gets:#?}"
    );
}

/// Row 8: with `--filter-by-os`, a second run finds the filtered list unchanged: nothing
/// written, status `unchanged`.
#[test]
fn an_unchanged_filtered_list_is_recognised_as_unchanged() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_list(
        &src,
        "team/multi",
        "1",
        &[("linux", "amd64"), ("linux", "arm64")],
        110,
    );
    let ws = Workspace::new();
    let mapping = ws.write("m", &format!("{s}/team/multi:1 {d}/multi:1\n"));
    let args = ["--insecure", "--filter-by-os=linux/amd64"];
    let (out, first) = ws.run_report_with_env(&mapping, &args, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&first)[0]["status"], "copied", "{first:#}");
    let written = dst.manifest_digest("multi", "1");
    let mark = dst.mark();
    let (out, second) = ws.run_report_with_env(&mapping, &args, &[]);
    expect_code(&out, 0);
    assert_eq!(images(&second)[0]["status"], "unchanged", "{second:#}");
    assert_eq!(
        images(&second)[0]["source_digest"].as_str(),
        written.as_deref()
    );
    let writes = dst.tool_writes_since(mark);
    assert!(writes.is_empty(), "{writes:#?}");
}

/// "A tag that differs is fetched and parsed in a dry run too, so the rehearsal fails where
/// the run would": a source whose manifest comes back corrupt, and a missing one.
#[test]
fn the_dry_run_fails_where_the_run_would() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = FaultProxy::start(&src.host());
    let (s, d) = (proxy.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(2400, 500)]);
    seed_docker_image(&src, "team/ok", "1", &[layer(2401, 500)]);
    // A destination repository with a tag: the source's digest is asked first (HEAD), and
    // the manifest fetched only because it differs.
    seed_docker_image(&dst, "app", "old", &[layer(2402, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!(
            "{s}/team/app:1 {d}/app:1\n{s}/team/app:missing {d}/app:2\n{s}/team/ok:1 {d}/ok:1\n"
        ),
    );
    let mut outcomes = Vec::new();
    for dry in [true, false] {
        proxy.add("GET", "/team/app/manifests/1", 100, Fault::FlipByte(20));
        let mark = dst.mark();
        let args: &[&str] = if dry {
            &["--insecure", "--dry-run", "--retries=0"]
        } else {
            &["--insecure", "--retries=0"]
        };
        let (out, report) = ws.run_report(&mapping, args);
        expect_code(&out, 1);
        let statuses: Vec<(String, String)> = images(&report)
            .iter()
            .map(|i| {
                (
                    i["destination"].as_str().unwrap_or_default().to_owned(),
                    i["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if dry {
            assert_eq!(dst.tool_writes_since(mark), []);
        }
        outcomes.push(statuses);
    }
    let failed = |statuses: &Vec<(String, String)>| -> Vec<String> {
        statuses
            .iter()
            .filter(|(_, s)| s == "failed")
            .map(|(d, _)| d.clone())
            .collect()
    };
    assert_eq!(failed(&outcomes[0]), failed(&outcomes[1]), "{outcomes:#?}");
    assert_eq!(failed(&outcomes[0]).len(), 2, "{outcomes:#?}");
}
