//! The bytes a mirror writes into a directory (`oci:` and oc's `file://` layout) are counted
//! as a registry destination's are: the summary's "moved", the JSON report's totals and
//! images, and `image_mirror_sent_bytes` all say how many blob bytes were written.

use std::path::Path;

use crate::support::cli::*;
use crate::support::*;
use serde_json::Value;

/// The value of `series` in a Prometheus text file.
fn metric(path: &Path, series: &str) -> f64 {
    let text = std::fs::read_to_string(path).expect("metrics file");
    let found: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{series} in\n{text}");
    found[0]
}

/// The summary's way of writing a number of bytes ("12 B", "1.5 KiB").
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Mirrors one image of two layers into `to` (a directory destination) and checks every view
/// of the bytes written.
fn the_bytes_written_are_counted(to: &str, extra: &[&str]) {
    let src = Registry::start();
    let s = src.host();
    let image = seed_oci_image(&src, "team/app", "1", &[layer(1, 30_000), layer(2, 20_000)]);
    let written: u64 = image
        .blobs
        .iter()
        .map(|b| src.blob_size("team/app", b).expect("seeded blob"))
        .sum();
    assert!(written >= 50_000);
    let ws = Workspace::new();
    let mapping = ws.write("mapping", &format!("{s}/team/app:1 {to}:1\n"));
    let report = ws.path("report.json");
    let prom = ws.path("image_mirror.prom");
    let out = ws
        .command()
        .current_dir(ws.dir())
        .args([
            "run",
            "--insecure",
            "--report",
            p(&report),
            "--metrics-file",
            p(&prom),
        ])
        .args(extra)
        .arg(p(&mapping))
        .output()
        .expect("run image-mirror");
    expect_code(&out, 0);
    let json: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report json");
    assert_eq!(json["images"][0]["status"], "copied", "{json:#}");
    assert_eq!(
        json["totals"]["blobs_uploaded"],
        image.blobs.len(),
        "{json:#}"
    );
    assert_eq!(json["totals"]["bytes"].as_u64(), Some(written), "{json:#}");
    assert_eq!(
        json["images"][0]["bytes"].as_u64(),
        Some(written),
        "{json:#}"
    );
    assert_eq!(metric(&prom, "image_mirror_sent_bytes"), written as f64);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let moved = format!("{} moved", human(written));
    assert!(output.contains(&moved), "no {moved:?} in:\n{output}");
}

#[test]
fn a_mirror_into_an_oci_layout_counts_the_bytes_it_writes() {
    the_bytes_written_are_counted("oci:layouts/app", &[]);
}

#[test]
fn a_mirror_into_a_file_layout_counts_the_bytes_it_writes() {
    the_bytes_written_are_counted("file://mirror/app", &["--dir", "out"]);
}
