//! Reading image-mirror's JUnit XML the way CI tooling does: with Python's `junitparser`
//! (installed by `.ci/run`), so a report it cannot read fails the test rather than a Prow
//! job page. Returns what it read as JSON for the test's own assertions.

use std::path::Path;
use std::process::Command;

/// The Python interpreter with junitparser: `IMAGE_MIRROR_TEST_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("IMAGE_MIRROR_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

const READ: &str = r#"
import json, sys
from junitparser import JUnitXml, TestSuite
xml = JUnitXml.fromfile(sys.argv[1])
suites = [xml] if isinstance(xml, TestSuite) else list(xml)
out = {"root": type(xml).__name__, "suites": []}
for suite in suites:
    cases = []
    for case in suite:
        cases.append({
            "name": case.name, "classname": case.classname, "time": case.time,
            "system_out": case.system_out,
            "results": [{"kind": type(r).__name__, "message": r.message, "type": r.type,
                         "text": r.text} for r in case.result],
        })
    out["suites"].append({
        "name": suite.name, "tests": suite.tests, "failures": suite.failures,
        "errors": suite.errors, "skipped": suite.skipped, "time": suite.time,
        "cases": cases,
    })
print(json.dumps(out))
"#;

/// `{"root", "suites": [{"name", "tests", "failures", "errors", "skipped", "time",
/// "cases": [{"name", "classname", "time", "system_out", "results": [{"kind": "Failure" |
/// "Skipped" | "Error", "message", "type", "text"}]}]}]}`, as junitparser reads the file.
pub fn read_junit(path: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .args(["-c", READ])
        .arg(path)
        .output()
        .expect("python3 runs (bash .ci/run installs junitparser)");
    assert!(
        out.status.success(),
        "junitparser could not read {}: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}
