//! The periodic-job side of `run`: JSON report, shards, interruption (SIGTERM: exit 143,
//! SIGINT: 130), default mapping directory handling — against real registries.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cli::*;
use crate::support::*;

fn base_command(dir: &Path) -> assert_cmd::Command {
    image_mirror(dir)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report is JSON")
}

#[test]
fn the_json_report_lists_every_tag_with_its_line() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let app = seed_docker_image(&src, "team/app", "1", &[layer(1, 3000)]);
    seed_docker_image(&dst, "same", "1", &[layer(2, 3000)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file_a = write(
        dir.path(),
        "mapping_a",
        &format!("# a\n{s}/team/app:1 {d}/app:1 {d}/same:1\n"),
    );
    let file_b = write(
        dir.path(),
        "mapping_b",
        &format!("{s}/team/app:missing {d}/app:missing\n"),
    );
    let report = dir.path().join("report.json");
    let out = base_command(dir.path())
        .args([
            "run",
            "--insecure",
            "--retries=0",
            "--report",
            p(&report),
            p(dir.path()),
        ])
        .output()
        .expect("run");
    expect_code(&out, 1);
    let json = read_json(&report);
    assert_eq!(json["version"], 1);
    assert_eq!(json["dry_run"], false);
    let totals = &json["totals"];
    assert_eq!(
        (
            totals["images"].as_u64(),
            totals["copied"].as_u64(),
            totals["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(totals["unchanged"], 0, "`same` held a different image");
    let images = json["images"].as_array().expect("images");
    let find = |dest: &str| {
        images
            .iter()
            .find(|i| i["destination"] == dest)
            .unwrap_or_else(|| panic!("{dest} not in {json:#}"))
    };
    let copied = find(&format!("{d}/app:1"));
    assert_eq!(copied["status"], "copied");
    assert_eq!(copied["source"], format!("{s}/team/app:1"));
    assert_eq!(copied["source_digest"], app.digest);
    assert_eq!(copied["file"], p(&file_a));
    assert_eq!(copied["line"], 2);
    // Both destinations share the source's blobs: whichever copy uploaded them carries the
    // bytes, and the images' bytes add up to the total.
    let image_bytes: u64 = images.iter().filter_map(|i| i["bytes"].as_u64()).sum();
    assert!(image_bytes >= 3000, "{json:#}");
    assert_eq!(Some(image_bytes), totals["bytes"].as_u64(), "{json:#}");
    let failed = find(&format!("{d}/app:missing"));
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["file"], p(&file_b));
    assert_eq!(failed["line"], 1);
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("team/app:missing"),
        "{failed}"
    );
    let overwritten = find(&format!("{d}/same:1"));
    assert_eq!(overwritten["status"], "copied");
    assert!(
        overwritten["previous_digest"]
            .as_str()
            .is_some_and(|p| p != app.digest)
    );

    // A dry run reports what it would do.
    let out = base_command(dir.path())
        .args([
            "run",
            "--insecure",
            "--dry-run",
            "--report",
            p(&report),
            p(&file_a),
        ])
        .output()
        .expect("run");
    expect_code(&out, 0);
    let json = read_json(&report);
    assert_eq!(json["dry_run"], true);
    let statuses: Vec<&str> = json["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["status"].as_str())
        .collect();
    assert_eq!(statuses, ["unchanged", "unchanged"]);
}

#[test]
fn shards_split_the_work_and_together_cover_it() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let mut mapping = String::new();
    for i in 0..12 {
        seed_oci_image(&src, &format!("team/app{i}"), "v1", &[layer(i, 500)]);
        mapping.push_str(&format!("{s}/team/app{i}:v1 {d}/mirror/app{i}:v1\n"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "m", &mapping);
    let mut copied_per_shard = Vec::new();
    for index in 0..3 {
        let report = dir.path().join(format!("r{index}.json"));
        let out = base_command(dir.path())
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("RUST_LOG", "info")
            .args([
                "run",
                "--insecure",
                "--shard-count=3",
                "--log-format=json",
                "--report",
                p(&report),
                p(&file),
            ])
            .output()
            .expect("run");
        expect_code(&out, 0);
        // The log names the shard the pod took.
        let stderr = text(&out.stderr);
        assert!(
            stderr.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|j| j["fields"]["shard"] == format!("{index}/3").as_str())
            }),
            "{stderr}"
        );
        let json = read_json(&report);
        let copied = json["totals"]["copied"].as_u64().unwrap_or(0);
        assert_eq!(
            copied,
            json["totals"]["images"].as_u64().unwrap_or(99),
            "a shard only plans its own part"
        );
        copied_per_shard.push(copied);
    }
    assert_eq!(
        copied_per_shard.iter().sum::<u64>(),
        12,
        "{copied_per_shard:?}"
    );
    assert!(
        copied_per_shard.iter().all(|&c| c < 12),
        "one shard did everything: {copied_per_shard:?}"
    );
    for i in 0..12 {
        assert_eq!(dst.tags(&format!("mirror/app{i}")), ["v1"]);
    }
}

#[test]
fn sigterm_stops_cleanly_and_the_next_run_finishes() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let mut mapping = String::new();
    for i in 0..16 {
        seed_docker_image(
            &src,
            &format!("team/big{i}"),
            "1",
            &[layer(1000 + i, 8 * 1024 * 1024)],
        );
        mapping.push_str(&format!("{s}/team/big{i}:1 {d}/big{i}:1\n"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "m", &mapping);
    let report = dir.path().join("report.json");
    let junit = dir.path().join("junit.xml");
    let mark = dst.mark();
    let child = image_mirror_process(dir.path())
        .args([
            "run",
            "--insecure",
            "--max-per-registry=2",
            "--report",
            p(&report),
            "--junit",
            p(&junit),
            p(&file),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the first blob upload has started at the destination, then stop the job.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dst
        .tool_requests_since(mark)
        .iter()
        .any(|r| r.method == "POST")
    {
        assert!(Instant::now() < deadline, "the run never started uploading");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The job is frozen (SIGSTOP) before the mark is taken and the SIGTERM sent, then let
    // go (SIGCONT) with the SIGTERM pending: nothing it starts between the mark and the
    // signal is counted as after, however long kill(1) takes on a busy machine.
    freeze(child.id());
    let at_signal = dst.mark();
    send_signal(child.id(), "TERM");
    send_signal(child.id(), "CONT");
    let out = child.wait_with_output().expect("wait");
    expect_code(&out, 143);
    // It stops instead of finishing the job: no new upload or tag after the signal, only
    // what was in flight when it was frozen (two writes at most, --max-per-registry=2), and
    // at most one more for each of those two slots, started by a task let go in the instant
    // before the signal is handled.
    let after: Vec<_> = dst
        .tool_writes_since(at_signal)
        .into_iter()
        .filter(|r| r.method != "DELETE")
        .collect();
    assert!(after.len() <= 4, "{after:#?}");
    let json = read_json(&report);
    assert_eq!(json["interrupted"], true);
    let cancelled = json["totals"]["cancelled"].as_u64().unwrap_or(0);
    assert!(cancelled > 0, "{json:#}");
    // The JUnit view says the same: the cancelled images are skipped test cases.
    let xml = crate::support::junit::read_junit(&junit);
    let skipped: Vec<&serde_json::Value> = xml["suites"][0]["cases"]
        .as_array()
        .map(|cases| {
            cases
                .iter()
                .filter(|c| c["results"][0]["kind"] == "Skipped")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(skipped.len() as u64, cancelled, "{xml:#}");
    assert_eq!(
        xml["suites"][0]["skipped"].as_u64(),
        Some(cancelled),
        "{xml:#}"
    );
    // Whatever was tagged is complete.
    for i in 0..16 {
        let repo = format!("big{i}");
        if !dst.tags(&repo).is_empty() {
            dst.assert_complete(&repo, "1");
        }
    }
    // The next run completes the mirror without redoing what was done.
    let out = base_command(dir.path())
        .args(["run", "--insecure", "--report", p(&report), p(&file)])
        .output()
        .expect("rerun");
    expect_code(&out, 0);
    let json = read_json(&report);
    let t = &json["totals"];
    assert_eq!(
        t["copied"].as_u64().unwrap_or(0) + t["unchanged"].as_u64().unwrap_or(0),
        16
    );
    assert_eq!(t["copied"].as_u64(), Some(cancelled), "{json:#}");
    for i in 0..16 {
        dst.assert_complete(&format!("big{i}"), "1");
    }
}

#[test]
fn mapping_directories_honour_the_prefix_variable() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 100)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let maps = dir.path().join("maps");
    std::fs::create_dir(&maps).expect("mkdir");
    write(
        &maps,
        "mapping_ours",
        &format!("{s}/team/app:1 {d}/ours:1\n"),
    );
    write(
        &maps,
        "other_theirs",
        &format!("{s}/team/app:1 {d}/theirs:1\n"),
    );
    let out = base_command(dir.path())
        .env("MAPPING_FILE_PREFIX", "mapping_")
        .args(["run", "--insecure", p(&maps)])
        .output()
        .expect("run");
    expect_code(&out, 0);
    assert_eq!(dst.tags("ours"), ["1"]);
    assert!(dst.tags("theirs").is_empty());
}

/// "143 / 130 after SIGTERM / SIGINT": SIGINT once the first upload has started.
#[test]
fn sigint_stops_the_run_with_exit_130() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    let mut mapping = String::new();
    for i in 0..8 {
        seed_docker_image(
            &src,
            &format!("team/big{i}"),
            "1",
            &[layer(2000 + i, 4 * 1024 * 1024)],
        );
        mapping.push_str(&format!("{s}/team/big{i}:1 {d}/big{i}:1\n"));
    }
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
    let report = ws.path("report.json");
    let mark = dst.mark();
    let child = image_mirror_process(ws.dir())
        .args(["run", "--insecure", "--max-per-registry=2", "--report"])
        .arg(&report)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dst
        .tool_requests_since(mark)
        .iter()
        .any(|r| r.method == "POST")
    {
        assert!(Instant::now() < deadline, "the run never started uploading");
        std::thread::sleep(Duration::from_millis(5));
    }
    send_signal(child.id(), "INT");
    let out = child.wait_with_output().expect("wait");
    expect_code(&out, 130);
    let json = read_report(&report);
    assert_eq!(json["interrupted"], true, "{json:#}");
    assert!(
        json["totals"]["cancelled"].as_u64().unwrap_or(0) > 0,
        "{json:#}"
    );
}
