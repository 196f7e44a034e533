//! How image-mirror speaks to registries on a real network's terms: HTTP/2 where the
//! registry offers it over TLS, and fewer requests in flight when a registry answers 429.

mod support;

use support::cli::*;
use support::proxy::{Fault, FaultProxy};
use support::*;

/// Over TLS, distribution offers HTTP/2 (ALPN): checks, manifests and tag lists go that way,
/// multiplexed; blob bodies go over HTTP/1.1, a connection each (multiplexed they would share
/// one flow-control window), and so does the first contact (`GET /v2/`, whose TLS refusals
/// HTTP/1.1 reads back); plain HTTP stays HTTP/1.1.
#[test]
fn http2_is_spoken_where_the_registry_offers_it() {
    let ca = support::tls::TestCa::new("image-mirror test registry CA");
    let tls_reg = Registry::start_with(RegistryConfig {
        tls: Some(ca.server_cert()),
        ..Default::default()
    });
    let plain = Registry::start();
    let img = seed_docker_image(&plain, "team/app", "1", &[layer(80, 3000), layer(81, 5000)]);
    let ws = Workspace::new();
    let dir = ws.path("certs.d").join(tls_reg.host());
    std::fs::create_dir_all(&dir).expect("certs.d dir");
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("write CA");
    let mapping = ws.write(
        "m",
        &format!(
            "{}/team/app:1 {}/mirror/app:1\n",
            plain.host(),
            tls_reg.host()
        ),
    );
    let out = ws
        .command()
        .env("IMAGE_MIRROR_CERTS_DIRS", ws.path("certs.d"))
        .args(["run", &format!("--insecure-registry={}", plain.host())])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    assert_eq!(
        tls_reg.manifest_digest("mirror/app", "1").as_deref(),
        Some(img.digest.as_str())
    );
    // The access-log lines of image-mirror's own requests.
    let ours = |log: String| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("\"image-mirror/"))
            .map(str::to_owned)
            .collect()
    };
    let tls_lines = ours(tls_reg.access_log());
    let (uploads, others): (Vec<&String>, Vec<&String>) = tls_lines
        .iter()
        .filter(|l| !l.contains("\"GET /v2/ "))
        .partition(|l| l.contains("/blobs/uploads/"));
    assert!(
        tls_lines
            .iter()
            .any(|l| l.contains("\"GET /v2/ HTTP/1.1\"")),
        "{tls_lines:#?}"
    );
    assert!(
        !uploads.is_empty() && uploads.iter().all(|l| l.contains(" HTTP/1.1\"")),
        "{uploads:#?}"
    );
    assert!(
        others.len() >= 2 && others.iter().all(|l| l.contains(" HTTP/2.0\"")),
        "{others:#?}"
    );
    let plain_lines = ours(plain.access_log());
    assert!(
        !plain_lines.is_empty() && plain_lines.iter().all(|l| l.contains(" HTTP/1.1\"")),
        "{plain_lines:#?}"
    );
}

/// A registry that answers a storm of 429s gets fewer requests at once (said once per
/// change in the log), and the run still completes.
#[test]
fn a_429_storm_lowers_concurrency_and_the_run_completes() {
    let src = Registry::start();
    let dst = Registry::start();
    let mut images = Vec::new();
    for i in 0..8 {
        images.push(seed_docker_image(
            &src,
            "team/app",
            &format!("v{i}"),
            &[layer(90 + i, 1000)],
        ));
    }
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "HEAD",
        "/manifests/",
        6,
        Fault::Status {
            code: 429,
            retry_after: Some("0".into()),
        },
    );
    let ws = Workspace::new();
    // A destination that already has a tag, so that the source is asked with HEADs.
    seed_docker_image(&dst, "mirror/app", "old", &[layer(99, 100)]);
    let mapping = ws.write(
        "m",
        &format!("{}/team/app:v* {}/mirror/app\n", proxy.host(), dst.host()),
    );
    let out = ws
        .command()
        .args(["run", "--insecure", "--max-retry-wait=1"])
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    assert_eq!(proxy.injected(), 6);
    let stderr = text(&out.stderr);
    let lowered = stderr
        .lines()
        .filter(|l| l.contains("answers 429: fewer checks at once"))
        .count();
    // Once per change, never more than once per 429 (six of them).
    assert!((1..=6).contains(&lowered), "{stderr}");
    for (i, image) in images.iter().enumerate() {
        assert_eq!(
            dst.manifest_digest("mirror/app", &format!("v{i}"))
                .as_deref(),
            Some(image.digest.as_str())
        );
    }
}
