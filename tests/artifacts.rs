//! Prow's artefacts: with `$ARTIFACTS` set, a run writes `junit_image_mirror.xml` (which the
//! job's page shows) and `image-mirror-report.json` there. The JUnit file is read with Python's
//! junitparser, as CI tooling reads it, and checked against what happened in real registries.
//! The report's `images` are sorted by destination.

use crate::support::cli::*;
use crate::support::junit::read_junit;
use crate::support::*;

#[test]
fn artifacts_get_a_junit_suite_per_mapping_file_and_a_case_per_tag() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    seed_docker_image(&src, "team/app", "2", &[layer(2, 2000)]);
    let ws = Workspace::new();
    let file_a = ws.write(
        "mapping_a",
        &format!("{s}/team/app:1 {d}/app:1\n{s}/team/app:nope {d}/app:nope\n"),
    );
    let file_b = ws.write(
        "mapping_b",
        &format!("{s}/team/app:2 {d}/app:2 {d}/app:two\n{s}/team/gone:v* {d}/gone\n"),
    );
    // Not there yet: the run creates it (a Prow pod's artefacts directory may not exist).
    let artifacts = ws.path("artifacts/run-1");
    let out = ws
        .command()
        .env("ARTIFACTS", &artifacts)
        .args(["run", "--insecure", "--retries=0", p(ws.dir())])
        .output()
        .expect("run");
    expect_code(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(artifacts.join("image-mirror-report.json")).expect("JSON report there"),
    )
    .expect("JSON");
    assert_eq!(report["totals"]["failed"], 2, "{report:#}");
    let junit_path = artifacts.join("junit_image_mirror.xml");
    let raw = std::fs::read_to_string(&junit_path).expect("JUnit report there");
    assert!(raw.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));

    let junit = read_junit(&junit_path);
    assert_eq!(junit["root"], "JUnitXml", "{junit:#}");
    let suites = junit["suites"].as_array().expect("suites");
    let names: Vec<&str> = suites.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        [p(&file_a), p(&file_b)],
        "one suite per mapping file"
    );
    for suite in suites {
        let cases = suite["cases"].as_array().expect("cases");
        // The suite's counts are those of its cases.
        let with = |kind: &str| {
            cases
                .iter()
                .filter(|c| {
                    c["results"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r["kind"] == kind))
                })
                .count()
        };
        assert_eq!(
            suite["tests"].as_u64(),
            Some(cases.len() as u64),
            "{suite:#}"
        );
        assert_eq!(
            suite["failures"].as_u64(),
            Some(with("Failure") as u64),
            "{suite:#}"
        );
        assert_eq!(
            suite["skipped"].as_u64(),
            Some(with("Skipped") as u64),
            "{suite:#}"
        );
        for case in cases {
            assert_eq!(case["classname"], suite["name"], "{case:#}");
            assert!(case["time"].as_f64().is_some_and(|t| t >= 0.0), "{case:#}");
        }
    }
    let case = |suite: usize, name: &str| {
        suites[suite]["cases"]
            .as_array()
            .and_then(|cases| cases.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no case {name} in {junit:#}"))
            .clone()
    };
    // Passed: no result element, and what happened in system-out.
    let copied = case(0, &format!("{d}/app:1"));
    assert_eq!(copied["results"], serde_json::json!([]), "{copied:#}");
    assert!(
        copied["system_out"]
            .as_str()
            .is_some_and(|o| o.starts_with("copied: ")),
        "{copied:#}"
    );
    assert!(
        copied["time"].as_f64().is_some_and(|t| t > 0.0),
        "{copied:#}"
    );
    // Failed: the registry's answer, the kind, the mapping line.
    let failed = case(0, &format!("{d}/app:nope"));
    let failure = &failed["results"][0];
    assert_eq!(failure["kind"], "Failure", "{failed:#}");
    assert_eq!(failure["type"], "not_found", "{failed:#}");
    let text = failure["text"].as_str().unwrap_or_default();
    assert!(text.contains("MANIFEST_UNKNOWN"), "{text}");
    assert!(text.contains(&format!("{}:2:1", p(&file_a))), "{text}");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("MANIFEST_UNKNOWN")),
        "{failed:#}"
    );
    // Both destinations of one line are cases of their own; the unlistable wildcard fails.
    case(1, &format!("{d}/app:2"));
    case(1, &format!("{d}/app:two"));
    // Named as its line writes it (`gone:v*`), not as `gone:*`.
    let listing = case(1, &format!("{s}/team/gone:v* (listing tags)"));
    assert_eq!(listing["results"][0]["kind"], "Failure", "{listing:#}");
    assert_eq!(suites[1]["tests"], 3);

    // --junit and --report win over ARTIFACTS.
    let (junit, json) = (ws.path("elsewhere.xml"), ws.path("elsewhere.json"));
    let rerun = ws
        .command()
        .env("ARTIFACTS", ws.path("unused"))
        .args([
            "run",
            "--insecure",
            "--retries=0",
            "--junit",
            p(&junit),
            "--report",
            p(&json),
        ])
        .arg(&file_a)
        .output()
        .expect("rerun");
    expect_code(&rerun, 1);
    assert!(junit.exists() && json.exists());
    assert!(!ws.path("unused").exists());
    let again = read_junit(&junit);
    let unchanged = again["suites"][0]["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == format!("{d}/app:1")))
        .cloned()
        .unwrap_or_default();
    assert!(
        unchanged["system_out"]
            .as_str()
            .is_some_and(|o| o.starts_with("unchanged: ")),
        "{again:#}"
    );
}

/// "`images`: one entry per destination tag, sorted by destination", whatever the order of
/// the mapping lines and of the copies' ends.
#[test]
fn report_images_are_sorted_by_destination() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(2100, 500)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "m",
        &format!(
            "{s}/team/app:1 {d}/zeta:1\n{s}/team/app:1 {d}/alpha:9\n{s}/team/app:1 {d}/mid:3 {d}/alpha:1\n"
        ),
    );
    let (out, report) = ws.run_report(&mapping, &["--insecure"]);
    expect_code(&out, 0);
    let destinations: Vec<&str> = images(&report)
        .iter()
        .map(|i| i["destination"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = ["alpha:1", "alpha:9", "mid:3", "zeta:1"]
        .iter()
        .map(|t| format!("{d}/{t}"))
        .collect();
    assert_eq!(destinations, expected);
}
