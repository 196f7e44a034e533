//! Tests of the integration-test harness itself (tests/support) against real
//! `docker-registry` processes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::support::*;

const PLATFORMS: &[(&str, &str)] = &[("linux", "amd64"), ("linux", "arm64"), ("linux", "ppc64le")];

fn check_seeded(reg: &Registry, repo: &str, tag: &str, seeded: &Seeded) {
    assert!(seeded.digest.starts_with("sha256:") && seeded.digest.len() == 71);
    assert_eq!(
        reg.manifest_digest(repo, tag).as_deref(),
        Some(seeded.digest.as_str())
    );
    assert_eq!(
        reg.manifest_digest(repo, &seeded.digest).as_deref(),
        Some(seeded.digest.as_str())
    );
    let (content_type, body) = reg.manifest(repo, tag).expect("manifest by tag");
    assert_eq!(content_type, seeded.media_type);
    assert_eq!(sha256_digest(&body), seeded.digest);
    assert!(reg.tags(repo).contains(&tag.to_string()));
    for b in &seeded.blobs {
        assert!(reg.blob_exists(repo, b), "blob {b} missing");
    }
    reg.assert_complete(repo, tag);
    let described = reg.describe(repo, tag).expect("describe");
    assert_eq!(
        &described, seeded,
        "describe() disagrees with what was seeded"
    );
}

#[test]
fn layer_is_deterministic_and_not_trivial() {
    let a = layer(1, 4099);
    assert_eq!(a.len(), 4099);
    assert_eq!(a, layer(1, 4099));
    assert_ne!(a, layer(2, 4099));
    assert!(a.iter().any(|&b| b != 0));
    assert!(
        layer(0, 64).iter().any(|&b| b != 0),
        "seed 0 must not give zeros"
    );
    assert_eq!(
        &layer(7, 100)[..],
        &layer(7, 1000)[..100],
        "prefix stable across sizes"
    );
    // Roughly uniform bytes: many distinct values.
    let mut seen = [false; 256];
    for &b in &a {
        seen[b as usize] = true;
    }
    assert!(seen.iter().filter(|&&s| s).count() > 200);
    assert!(layer(3, 0).is_empty());
}

#[test]
fn access_log_line_parsing() {
    let line = r#"127.0.0.1 - - [23/Nov/2026:11:06:12 +0000] "POST /v2/bar/blobs/uploads/?mount=sha256:2cf2&from=foo HTTP/1.1" 201 0 "" "image-mirror/0.1 (x)""#;
    let r = parse_access_log_line(line).expect("parsed");
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/v2/bar/blobs/uploads/?mount=sha256:2cf2&from=foo");
    assert_eq!(r.path(), "/v2/bar/blobs/uploads/");
    assert_eq!(r.status, 201);
    assert_eq!(r.user_agent, "image-mirror/0.1 (x)");
    assert!(r.is_write() && r.is_mount() && !r.is_harness());
    assert_eq!(r.query_param("from"), Some("foo"));
    assert_eq!(r.query_param("nope"), None);
    assert!(parse_access_log_line("{\"level\":\"info\"}").is_none());
    assert!(parse_access_log_line("").is_none());
}

#[test]
fn two_registries_seed_every_kind() {
    let t = Instant::now();
    let a = Registry::start();
    let b = Registry::start();
    eprintln!("two registries up in {:?}", t.elapsed());
    assert_ne!(a.host(), b.host());
    assert!(a.host().starts_with("127.0.0.1:"));

    let layers = vec![layer(10, 3000), layer(11, 5000)];
    let docker = seed_docker_image(&a, "team/docker", "v1", &layers);
    assert_eq!(docker.media_type, DOCKER_MANIFEST);
    assert_eq!(docker.blobs.len(), 3, "config + 2 layers");
    assert!(docker.children.is_empty());
    check_seeded(&a, "team/docker", "v1", &docker);

    let oci = seed_oci_image(&b, "oci", "latest", &layers);
    assert_eq!(oci.media_type, OCI_MANIFEST);
    assert_ne!(oci.digest, docker.digest);
    check_seeded(&b, "oci", "latest", &oci);
    let (_, body) = b.manifest("oci", "latest").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["mediaType"], OCI_MANIFEST);
    assert_eq!(json["config"]["mediaType"], OCI_CONFIG);
    let config = b
        .blob("oci", json["config"]["digest"].as_str().unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["rootfs"]["type"], "layers");

    let index = seed_oci_index(&a, "multi/oci", "idx", PLATFORMS, 100);
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(index.children.len(), 3);
    // 3 configs + 1 shared layer + 3 own layers.
    assert_eq!(index.blobs.len(), 7);
    check_seeded(&a, "multi/oci", "idx", &index);
    let (_, body) = a.manifest("multi/oci", "idx").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["manifests"][1]["platform"]["architecture"], "arm64");
    assert_eq!(json["manifests"][1]["platform"]["os"], "linux");
    for child in &index.children {
        let (ct, _) = a.manifest("multi/oci", child).unwrap();
        assert_eq!(ct, OCI_MANIFEST);
    }

    let list = seed_docker_list(&b, "multi/docker", "list", PLATFORMS, 100);
    assert_eq!(list.media_type, DOCKER_MANIFEST_LIST);
    assert_eq!(list.children.len(), 3);
    check_seeded(&b, "multi/docker", "list", &list);
    for child in &list.children {
        let (ct, _) = b.manifest("multi/docker", child).unwrap();
        assert_eq!(ct, DOCKER_MANIFEST);
    }

    // Deterministic: the same seed gives the same digests on another registry.
    let again = seed_docker_image(&b, "copy", "v1", &layers);
    assert_eq!(again, docker);
    let again = seed_oci_index(&b, "copy", "idx", PLATFORMS, 100);
    assert_eq!(again, index);
    assert_eq!(b.tags("copy"), vec!["idx".to_string(), "v1".to_string()]);

    // Unknown things.
    let random = sha256_digest(b"definitely not pushed");
    assert!(!a.blob_exists("team/docker", &random));
    assert!(!a.blob_exists("nowhere", &random));
    assert!(a.blob("team/docker", &random).is_none());
    assert!(a.manifest("team/docker", "nope").is_none());
    assert!(a.manifest_digest("team/docker", "nope").is_none());
    assert!(a.manifest("nowhere", "v1").is_none());
    assert!(a.tags("nowhere").is_empty());
    assert!(a.describe("nowhere", "v1").is_none());
    // Blobs are per repository: an image in one repo is not complete in another.
    assert!(!a.blob_exists("multi/oci", &docker.blobs[0]));

    assert_eq!(
        a.catalog(),
        vec!["multi/oci".to_string(), "team/docker".to_string()]
    );
    eprintln!("two_registries_seed_every_kind took {:?}", t.elapsed());
}

#[test]
fn tags_are_sorted() {
    let r = Registry::start();
    let s = seed_oci_image(&r, "t", "zeta", &[layer(1, 10)]);
    let (_, body) = r.manifest("t", "zeta").unwrap();
    for tag in ["alpha", "10", "9", "beta", "Upper"] {
        assert_eq!(r.push_manifest("t", tag, OCI_MANIFEST, &body), s.digest);
    }
    assert_eq!(
        r.tags("t"),
        vec!["10", "9", "Upper", "alpha", "beta", "zeta"]
    );
}

#[test]
fn request_log_and_marks() {
    let r = Registry::start();
    let seeded = seed_docker_image(&r, "app", "1.0", &[layer(5, 700)]);

    let all = r.requests();
    assert!(!all.is_empty());
    assert!(all.iter().all(Request::is_harness), "{all:#?}");
    assert!(all.iter().all(|q| !q.uri.contains("harness-log-sync")));
    assert!(
        all.iter()
            .any(|q| q.method == "GET" && q.uri == "/v2/" && q.status == 200)
    );

    let writes = r.write_requests();
    assert!(writes.iter().all(Request::is_write));
    // config + 1 layer: two POST (202) and two PUT (201) for blobs, one manifest PUT.
    let posts: Vec<_> = writes
        .iter()
        .filter(|q| q.method == "POST" && q.uri == "/v2/app/blobs/uploads/")
        .collect();
    assert_eq!(posts.len(), 2, "{writes:#?}");
    assert!(posts.iter().all(|q| q.status == 202));
    for blob in &seeded.blobs {
        assert!(
            writes.iter().any(|q| q.method == "PUT"
                && q.path().starts_with("/v2/app/blobs/uploads/")
                && q.query_param("digest") == Some(blob.as_str())
                && q.status == 201),
            "no upload PUT for {blob}: {writes:#?}"
        );
    }
    assert!(
        writes
            .iter()
            .any(|q| q.method == "PUT" && q.uri == "/v2/app/manifests/1.0" && q.status == 201)
    );
    assert_eq!(writes.len(), 5, "{writes:#?}");

    // Marks: only what came after.
    let mark = r.mark();
    assert_eq!(mark, r.requests().len());
    assert!(r.requests_since(mark).is_empty());
    assert!(r.write_requests_since(mark).is_empty());
    assert!(r.manifest("app", "1.0").is_some());
    assert!(r.manifest("app", "missing").is_none());
    let since = r.requests_since(mark);
    assert_eq!(since.len(), 2, "{since:#?}");
    assert_eq!(
        (
            since[0].method.as_str(),
            since[0].uri.as_str(),
            since[0].status
        ),
        ("GET", "/v2/app/manifests/1.0", 200)
    );
    assert_eq!(
        (
            since[1].method.as_str(),
            since[1].uri.as_str(),
            since[1].status
        ),
        ("GET", "/v2/app/manifests/missing", 404)
    );
    assert!(
        r.write_requests_since(mark).is_empty(),
        "reads are not writes"
    );

    // A HEAD and a write after a second mark.
    let mark2 = r.mark();
    assert_eq!(mark2, mark + 2);
    r.manifest_digest("app", "1.0").unwrap();
    r.push_manifest(
        "app",
        "1.1",
        DOCKER_MANIFEST,
        &r.manifest("app", "1.0").unwrap().1,
    );
    let writes = r.write_requests_since(mark2);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].uri, "/v2/app/manifests/1.1");
    let since = r.requests_since(mark2);
    assert_eq!(since[0].method, "HEAD");
    assert_eq!(since.len(), 3);

    // Cross-repository mount shows up as POST ...?mount=&from= with 201.
    let mark3 = r.mark();
    assert!(r.mount_blob("other", "app", &seeded.blobs[1]));
    let since = r.requests_since(mark3);
    assert_eq!(since.len(), 1);
    assert!(since[0].is_mount());
    assert_eq!(since[0].status, 201);
    assert_eq!(since[0].path(), "/v2/other/blobs/uploads/");
    assert_eq!(
        since[0].query_param("mount"),
        Some(seeded.blobs[1].as_str())
    );
    assert_eq!(since[0].query_param("from"), Some("app"));
    assert!(r.blob_exists("other", &seeded.blobs[1]));
    // Mounting something that is not in the source repo falls back to an upload (202).
    assert!(!r.mount_blob("other", "nowhere", &sha256_digest(b"x")));

    // Requests from another client are recorded with its user agent.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{}; printf 'GET /v2/app/tags/list HTTP/1.0\\r\\nUser-Agent: other-client\\r\\n\\r\\n' >&3; cat <&3",
            r.port()
        ))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 OK"));
    let last = r.requests().pop().unwrap();
    assert_eq!(last.user_agent, "other-client");
    assert!(!last.is_harness());
    assert_eq!((last.uri.as_str(), last.status), ("/v2/app/tags/list", 200));
}

#[test]
fn assert_complete_detects_missing_blob_and_child() {
    let r = Registry::start();
    let s = seed_oci_index(&r, "idx", "v1", &PLATFORMS[..2], 7);
    r.assert_complete("idx", "v1");

    // Unlink one layer from the repository: the index is no longer complete.
    let victim = s.blobs.last().unwrap();
    assert!(r.delete_blob("idx", victim));
    assert!(!r.blob_exists("idx", victim));
    let err = catch_unwind(AssertUnwindSafe(|| r.assert_complete("idx", "v1")))
        .expect_err("assert_complete must fail on a missing blob");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(victim.as_str()), "{msg}");

    // A missing child manifest is detected too.
    let d = seed_docker_list(&r, "list", "v1", &PLATFORMS[..2], 8);
    assert!(r.delete_manifest("list", &d.children[0]));
    let err = catch_unwind(AssertUnwindSafe(|| r.assert_complete("list", "v1")))
        .expect_err("assert_complete must fail on a missing child");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(d.children[0].as_str()), "{msg}");

    // And a missing tag.
    assert!(catch_unwind(AssertUnwindSafe(|| r.assert_complete("list", "nope"))).is_err());
}

/// A 64 MiB layer goes up in one monolithic upload (one POST, one PUT: no chunks), and
/// comes back whole.
#[test]
fn big_layer_push_is_one_upload() {
    let r = Registry::start();
    let big = layer(64, 64 << 20);
    let mark = r.mark();
    let s = seed_oci_image(&r, "big", "v1", &[big]);
    assert_eq!(r.blob_size("big", &s.blobs[1]), Some(64 << 20));
    r.assert_complete("big", "v1");
    let requests = r.requests_since(mark);
    let uploads: Vec<_> = requests
        .iter()
        .filter(|q| q.path().contains("/blobs/uploads/"))
        .collect();
    // Two blobs (the layer and the config), each one POST and one PUT.
    assert_eq!(uploads.len(), 4, "{uploads:#?}");
    assert!(
        !requests.iter().any(|q| q.method == "PATCH"),
        "{requests:#?}"
    );
}

#[test]
fn taken_port_is_reported_not_hung() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Registry::try_start_on(port)
        .err()
        .expect("must fail on a taken port");
    assert!(err.contains("address already in use"), "{err}");
    // start() picks another port.
    let r = Registry::start();
    assert_ne!(r.port(), port);
}

#[test]
fn drop_stops_the_registry() {
    let r = Registry::start();
    let host = r.host();
    let pid = r.pid();
    let dir = r.dir().to_path_buf();
    assert!(port_open(&host));
    assert!(dir.join("access.log").exists());
    drop(r);
    assert!(
        !port_open(&host),
        "registry still accepts connections after drop"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "registry process {pid} still exists after drop"
    );
    assert!(!dir.exists(), "temp dir not removed");
}

/// Documents (and pins) behaviour of distribution 2.8.2 that a mirroring client must cope with.
#[test]
fn registry_quirks() {
    let r = Registry::start();
    let idx = seed_oci_index(&r, "q", "idx", PLATFORMS, 1);
    let list = seed_docker_list(&r, "q", "list", PLATFORMS, 2);
    let img = seed_docker_image(&r, "q", "img", &[layer(3, 10)]);
    let agent = r.agent();
    let u = |p: &str| format!("{}/v2/{p}", r.url());
    let get = |path: &str, accept: Option<&str>| {
        let mut req = agent.get(u(path));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let mut resp = req.call().unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let dcd = resp
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), ct, dcd, body)
    };

    // An OCI index is only served if Accept lists the index type: 404 MANIFEST_UNKNOWN otherwise.
    for accept in [None, Some(DOCKER_MANIFEST), Some(OCI_MANIFEST)] {
        let (status, _, _, body) = get("q/manifests/idx", accept);
        assert_eq!(status, 404, "{accept:?}");
        assert!(body.contains("OCI index found, but accept header does not support OCI indexes"));
    }
    let (status, ct, _, _) = get("q/manifests/idx", Some(OCI_INDEX));
    assert_eq!((status, ct.as_str()), (200, OCI_INDEX));

    // A manifest list requested with only the v2s2 type is rewritten to its linux/amd64 child.
    let (status, ct, dcd, _) = get("q/manifests/list", Some(DOCKER_MANIFEST));
    assert_eq!((status, ct.as_str()), (200, DOCKER_MANIFEST));
    assert_eq!(dcd.as_deref(), Some(list.children[0].as_str()));

    // Without a suitable Accept, v2s2 manifests and lists give 400 MANIFEST_INVALID (the
    // registry tries, and fails, to convert them to schema 1).
    for path in ["q/manifests/img", "q/manifests/list"] {
        let (status, _, _, body) = get(path, None);
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("MANIFEST_INVALID"), "{body}");
    }
    let (status, _, _, _) = get("q/manifests/img", Some(OCI_MANIFEST));
    assert_eq!(status, 400);

    // Tags: no pagination, `n` is ignored, no Link header, order unspecified.
    let mut resp = agent.get(u("q/tags/list?n=1")).call().unwrap();
    assert!(resp.headers().get("link").is_none());
    let body: serde_json::Value =
        serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["tags"].as_array().unwrap().len(), 3);
    // Catalog: n > 1000 is rejected.
    let (status, _, _, body) = get("_catalog?n=1001", None);
    assert_eq!(status, 400);
    assert!(body.contains("PAGINATION_NUMBER_INVALID"));

    // Manifests referencing missing blobs or children are rejected: 400 MANIFEST_BLOB_UNKNOWN.
    let missing = sha256_digest(b"missing");
    let m = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{missing}\",\"size\":7}},\"layers\":[]}}"
    );
    let i = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{missing}\",\"size\":7}}]}}"
    );
    let l = i
        .replace(OCI_INDEX, DOCKER_MANIFEST_LIST)
        .replace(OCI_MANIFEST, DOCKER_MANIFEST);
    for (ct, body) in [
        (OCI_MANIFEST, &m),
        (OCI_INDEX, &i),
        (DOCKER_MANIFEST_LIST, &l),
    ] {
        let mut resp = agent
            .put(u("q/manifests/bad"))
            .content_type(ct)
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{ct}");
        assert!(
            resp.body_mut()
                .read_to_string()
                .unwrap()
                .contains("MANIFEST_BLOB_UNKNOWN")
        );
    }

    // An OCI manifest without a mediaType field is accepted and served as OCI; pushed with
    // a Docker Content-Type it is rejected.
    let (_, body) = r.manifest("q", &idx.children[0]).unwrap();
    let stripped = String::from_utf8(body).unwrap().replacen(
        &format!("\"mediaType\":\"{OCI_MANIFEST}\","),
        "",
        1,
    );
    let d = r.push_manifest("q", "nomt", OCI_MANIFEST, stripped.as_bytes());
    assert_eq!(r.manifest("q", &d).unwrap().0, OCI_MANIFEST);
    let resp = agent
        .put(u("q/manifests/wrongct"))
        .content_type(DOCKER_MANIFEST)
        .send(stripped.as_bytes())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // DELETE by tag is not supported (400 DIGEST_INVALID); by digest it is (202).
    let (status, _) = {
        let mut resp = agent.delete(u("q/manifests/img")).call().unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap(),
        )
    };
    assert_eq!(status, 400);
    assert!(r.delete_manifest("q", &img.digest));
    assert!(r.manifest("q", "img").is_none());

    // Single-request upload (POST ?digest=) is not supported: it just opens a session (202).
    let resp = agent
        .post(u(&format!(
            "q/blobs/uploads/?digest={}",
            sha256_digest(b"abc")
        )))
        .content_type("application/octet-stream")
        .send(&b"abc"[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert!(!r.blob_exists("q", &sha256_digest(b"abc")));
    // A mount without `from` also just opens a session.
    let resp = agent
        .post(u(&format!("q2/blobs/uploads/?mount={}", img.blobs[0])))
        .send_empty()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}
