//! The retry budget, against a real registry behind a fault proxy: a blob whose GETs always
//! answer 503 is asked for at most `--request-attempts × (--retries + 1)` times, however
//! many layers of the client could retry it, and no tag is written.

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

#[test]
fn a_blob_that_always_answers_503_is_asked_for_attempts_times_retries_plus_one() {
    let src = Registry::start();
    let dst = Registry::start();
    let image = seed_docker_image(&src, "team/app", "1", &[layer(7, 4000), layer(8, 9000)]);
    let broken = image.blobs[2].clone();
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        &format!("/blobs/{broken}"),
        1000,
        Fault::Status {
            code: 503,
            retry_after: Some("0".into()),
        },
    );
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {}/app:1\n", proxy.host(), dst.host()),
    );
    let report = ws.path("report.json");
    let out = ws
        .command()
        .args(["run", "--insecure", "--max-retry-wait=1"])
        .args(["--request-attempts=3", "--retries=1", "--report"])
        .arg(&report)
        .arg(&mapping)
        .output()
        .expect("run image-mirror");
    expect_code(&out, 1);
    assert_eq!(
        proxy.count("GET", &format!("/blobs/{broken}")),
        3 * 2,
        "{:#?}",
        proxy.seen()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(report["images"][0]["attempts"], 2, "{report:#}");
    assert_eq!(report["images"][0]["error_kind"], "transient", "{report:#}");
    let error = report["images"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("503"), "{error}");
    assert_eq!(dst.manifest_digest("app", "1"), None);
}
