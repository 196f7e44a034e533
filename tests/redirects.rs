//! Blobs a registry keeps elsewhere: a blob GET redirected to another host (a CDN, an object
//! store) under a pre-signed query. When that host refuses, image-mirror must blame it (not
//! the user's pull permission), ask the registry again for a fresh redirect, and never write
//! the signature anywhere — against real registries behind the fault proxy: one proxy plays
//! the registry's redirect, a second one plays the storage host.

use crate::support::cli::*;
use crate::support::proxy::{ACCESS_KEY, EXPIRES, Fault, FaultProxy, SIGNATURE, SIGNED_DATE};
use crate::support::*;

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_refusing_redirect_host_is_blamed_asked_again_and_its_signed_url_stays_secret() {
    // The source registry wants basic auth; its blobs are "stored" on an anonymous registry
    // holding the same content, behind the proxy that plays the CDN.
    let src = Registry::start_with(RegistryConfig {
        htpasswd: vec![("robot".into(), "robot-pass".into())],
        ..Default::default()
    });
    let storage = Registry::start();
    let dst = Registry::start();
    let shared = layer(1, 3000);
    let doomed = layer(2, 3000);
    for reg in [&src, &storage] {
        seed_docker_image(reg, "team/app", "1", std::slice::from_ref(&shared));
    }
    let two = seed_docker_image(&src, "team/app", "2", &[shared.clone(), doomed.clone()]);
    seed_docker_image(&storage, "team/app", "2", &[shared.clone(), doomed.clone()]);
    let doomed_digest = sha256_digest(&doomed);
    assert!(two.blobs.contains(&doomed_digest));

    let cdn = FaultProxy::start(&storage.host());
    let front = FaultProxy::start(&src.host());
    front.add("GET", "/blobs/sha256:", 1000, Fault::Redirect(cdn.host()));
    // One blob the CDN always refuses; the first two other blob GETs refused once each (an
    // expired signature): a fresh redirect from the registry gets them through.
    cdn.add("GET", &doomed_digest, 1000, Fault::RefuseSigned(403));
    cdn.add("GET", "/blobs/", 2, Fault::RefuseSigned(403));

    let (f, d) = (front.host(), dst.host());
    let ws = Workspace::new();
    ws.write(
        "config.json",
        &format!(
            r#"{{"auths": {{"{f}": {{"auth": "{}"}}}}}}"#,
            b64("robot:robot-pass")
        ),
    );
    let mapping = ws.write(
        "mapping_cdn",
        &format!("{f}/team/app:1 {d}/app:1\n{f}/team/app:2 {d}/app:2\n"),
    );
    let report = ws.path("report.json");
    let junit = ws.path("junit.xml");
    let out = ws
        .command()
        .env("RUST_LOG", "trace")
        .args([
            "run",
            "--insecure",
            "--retries=0",
            "--request-attempts=4",
            "--report",
            p(&report),
            "--junit",
            p(&junit),
            p(&mapping),
        ])
        .output()
        .expect("run");
    expect_code(&out, 1);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let report_text = std::fs::read_to_string(&report).expect("report written");
    let junit_text = std::fs::read_to_string(&junit).expect("junit written");

    // The signature and the access key appear nowhere, at trace level included.
    for (name, written) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("report", &report_text),
        ("junit", &junit_text),
    ] {
        assert!(
            !written.contains(SIGNATURE) && !written.contains(ACCESS_KEY),
            "{name} holds the signed URL:\n{written}"
        );
    }
    // ...although the CDN did quote it, and did refuse.
    assert!(cdn.seen().iter().any(|s| s.target.contains(SIGNATURE)));
    assert!(cdn.count("GET", &doomed_digest) >= 2, "{:?}", cdn.seen());

    // Credentials went to the registry, never to the host it redirected to.
    assert!(front.seen().iter().any(|s| s.authorization.is_some()));
    let leaked: Vec<_> = cdn
        .seen()
        .into_iter()
        .filter(|s| s.authorization.is_some())
        .collect();
    assert!(
        leaked.is_empty(),
        "Authorization sent to the CDN: {leaked:?}"
    );

    // The image whose blobs were refused once each was copied: each refusal sent the tool
    // back to the registry for a new redirect, not into a failure.
    dst.assert_complete("app", "1");
    assert_eq!(dst.manifest_digest("app", "2"), None);

    // The failure blames the CDN for the doomed blob, not the user's pull permission.
    let json: serde_json::Value = serde_json::from_str(&report_text).expect("JSON");
    let failed = json["images"]
        .as_array()
        .and_then(|images| images.iter().find(|i| i["status"] == "failed"))
        .unwrap_or_else(|| panic!("no failed image in {json:#}"));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(&cdn.host()), "{error}");
    assert!(error.contains(&doomed_digest), "{error}");
    assert!(error.contains("refused"), "{error}");
    assert!(!error.contains("permission"), "{error}");
    assert_eq!(failed["error_kind"], "transient", "{error}");
    assert!(stdout.contains(&cdn.host()), "{stdout}");
    // Asked the registry again (fresh signatures) within the budget: 4 tries, each redirect
    // refused and asked again where it happened (not by starting the blob copy over).
    assert!(
        stderr.contains("asking") && stderr.contains("for a new redirect"),
        "{stderr}"
    );
    assert_eq!(front.count("GET", &doomed_digest), 4, "{:?}", front.seen());
}

/// A refusal from outside that quotes the signed URL whole loses the URL's whole query in
/// everything image-mirror writes: not only the parameters whose names say secret
/// (`X-Amz-Signature`, `X-Amz-Credential`) but also `X-Amz-Date` and `Expires`, whose names
/// say nothing (the query as a whole is the credential).
#[test]
fn a_quoted_signed_url_loses_its_plainly_named_parameters_too() {
    let src = Registry::start();
    let storage = Registry::start();
    let dst = Registry::start();
    let blob = layer(3, 3000);
    for reg in [&src, &storage] {
        seed_docker_image(reg, "team/app", "1", std::slice::from_ref(&blob));
    }
    let cdn = FaultProxy::start(&storage.host());
    let front = FaultProxy::start(&src.host());
    front.add("GET", "/blobs/sha256:", 1000, Fault::Redirect(cdn.host()));
    cdn.add("GET", "/blobs/", 1000, Fault::RefuseSigned(403));
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {}/app:1\n", front.host(), dst.host()),
    );
    let (report, junit) = (ws.path("report.json"), ws.path("junit.xml"));
    let out = ws
        .command()
        .env("RUST_LOG", "trace")
        .args(["run", "--insecure", "--retries=0", "--request-attempts=1"])
        .args(["--report", p(&report), "--junit", p(&junit), p(&mapping)])
        .output()
        .expect("run");
    expect_code(&out, 1);
    // The CDN was sent them, and quoted them back.
    let sent: Vec<String> = cdn.seen().into_iter().map(|s| s.target).collect();
    assert!(
        sent.iter()
            .any(|t| t.contains(SIGNED_DATE) && t.contains(EXPIRES)),
        "{sent:?}"
    );
    let report_text = std::fs::read_to_string(&report).expect("report written");
    for (name, written) in [
        ("stdout", text(&out.stdout)),
        ("stderr", text(&out.stderr)),
        ("report", report_text.clone()),
        (
            "junit",
            std::fs::read_to_string(&junit).expect("junit written"),
        ),
    ] {
        for secret in [SIGNED_DATE, EXPIRES, SIGNATURE, ACCESS_KEY] {
            assert!(
                !written.contains(secret),
                "{name} holds {secret} of the signed URL:\n{written}"
            );
        }
    }
    // What the CDN said is still there, its URL without the query.
    let json: serde_json::Value = serde_json::from_str(&report_text).expect("JSON");
    let error = images(&json)[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&cdn.host()), "{error}");
}
