//! Load: many tags of small images across many repositories in one run, with
//! `--max-per-registry 16`: zero failures, every tag complete. Prints wall time and peak
//! RSS (GNU time's `%M`, when /usr/bin/time exists).
//!
//! The cargo test runs a scaled-down load (200 tags in 20 repositories);
//! `bench/load.sh` runs the full one (2,000 tags in 200 repositories) with a release build
//! through `LOAD_TAGS` / `LOAD_REPOS`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::*;
use assert_cmd::cargo::cargo_bin;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn many_small_images_in_one_run() {
    let tags = env_number("LOAD_TAGS", 200);
    let repos = env_number("LOAD_REPOS", 20).max(1);
    let per_repo = tags.div_ceil(repos);
    let src = Registry::start();
    let dst = Registry::start();

    // Seed in parallel: each repository has one layer shared by its tags, and each tag a
    // small layer and config of its own.
    let seeding = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let src = &src;
            scope.spawn(move || {
                for r in (worker..repos).step_by(8) {
                    for t in 0..per_repo {
                        if r * per_repo + t >= tags {
                            break;
                        }
                        let seed = (r * 100_000 + t) as u64;
                        seed_docker_image(
                            src,
                            &format!("load/r{r}"),
                            &format!("t{t}"),
                            &[layer(r as u64, 1024), layer(seed + 7_000_000, 512)],
                        );
                    }
                }
            });
        }
    });
    eprintln!(
        "seeded {tags} tags in {repos} repositories in {:?}",
        seeding.elapsed()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mapping = dir.path().join("mapping");
    let mut text = String::new();
    for r in 0..repos {
        text.push_str(&format!(
            "{}/load/r{r}:t* {}/mirror/r{r}\n",
            src.host(),
            dst.host()
        ));
    }
    std::fs::write(&mapping, text).expect("write mapping");
    let report = dir.path().join("report.json");
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak-rss-kib=%M wall=%e"])
            .arg(cargo_bin("image-mirror"));
        c
    } else {
        Command::new(cargo_bin("image-mirror"))
    };
    cmd.args(["run", "--insecure", "--max-per-registry=16", "--report"])
        .arg(&report)
        .arg(&mapping)
        .env("DOCKER_CONFIG", dir.path())
        .env("RUST_LOG", "warn");
    for name in crate::support::cli::AMBIENT_ENV {
        cmd.env_remove(name);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run image-mirror");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(json["totals"]["images"], tags as u64, "{stdout}");
    assert_eq!(json["totals"]["copied"], tags as u64, "{stdout}");
    assert_eq!(json["totals"]["failed"], 0, "{stdout}");
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?");
    println!(
        "LOAD tags={tags} repos={repos} wall={:.2}s peak_rss_kib={rss} request_retries={} | {}",
        wall.as_secs_f64(),
        json["totals"]["request_retries"],
        stdout.trim()
    );
    // Every tag complete: a sample through the harness, all through `verify`.
    for r in (0..repos).step_by((repos / 5).max(1)) {
        dst.assert_complete(&format!("mirror/r{r}"), "t0");
    }
    let repos_args: Vec<String> = (0..repos)
        .map(|r| format!("{}/mirror/r{r}", dst.host()))
        .collect();
    let verify = crate::support::cli::image_mirror_process(dir.path())
        .args(["verify", "--insecure", "--max-per-registry=16"])
        .args(&repos_args)
        .output()
        .expect("verify");
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{verify_out}");
    assert_eq!(
        verify_out.matches("all complete").count(),
        repos,
        "{verify_out}"
    );
}
