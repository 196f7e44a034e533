//! What a CI log shows: Prow and CronJob logs are files holding stdout and stderr together, so
//! log lines must carry no colour escapes there (unless asked), and the run's summary must be
//! the last thing in them — against a real registry, with the binary's streams sent to one
//! file exactly as a job's are.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::cli::*;
use crate::support::*;

const ESC: char = '\u{1b}';

/// Runs the binary with stdout and stderr both sent to one file (one open file description,
/// as `2>&1` makes: the two streams share its offset, so the file holds their true order).
fn run_into_one_file(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let log = ws.path("job.log");
    let file = File::create(&log).expect("log file");
    let mut cmd = image_mirror_process(ws.dir());
    cmd.env("RUST_LOG", "info")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().expect("dup")))
        .stderr(Stdio::from(file));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().expect("run image-mirror");
    let text = std::fs::read_to_string(&log).expect("read log");
    (status.code().unwrap_or(-1), text)
}

/// A mapping file with one image that copies and one whose source tag does not exist, so the
/// run logs at info and warn and ends with a failure summary.
fn one_good_one_missing(ws: &Workspace, src: &Registry, dst: &Registry) -> String {
    let (s, d) = (src.host(), dst.host());
    seed_docker_image(src, "team/app", "1", &[layer(1, 2000)]);
    let file = ws.write(
        "mapping_x",
        &format!("{s}/team/app:1 {d}/app:1\n{s}/team/app:nope {d}/app:nope\n"),
    );
    p(&file).to_owned()
}

fn is_log_line(line: &str) -> bool {
    // tracing's text format: an RFC 3339 timestamp, then the level.
    line.len() > 20
        && line.as_bytes()[0].is_ascii_digit()
        && line.as_bytes()[4] == b'-'
        && ["TRACE", "DEBUG", " INFO", " WARN", "ERROR"]
            .iter()
            .any(|l| line.contains(l))
}

#[test]
fn a_log_file_gets_no_colour_unless_asked_for() {
    let (src, dst) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    let mapping = one_good_one_missing(&ws, &src, &dst);
    let args = ["run", "--insecure", "--retries=0", mapping.as_str()];

    let (code, log) = run_into_one_file(&ws, &args, &[]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("image failed"), "{log}");
    assert!(!log.contains(ESC), "escape codes in a log file:\n{log:?}");

    // The flag wins over NO_COLOR (a user's explicit choice), and it does colour: without
    // this, the assertion above could pass with colouring broken some other way.
    let mut always = args.to_vec();
    always.insert(1, "--color=always");
    let (_, log) = run_into_one_file(&ws, &always, &[("NO_COLOR", "1")]);
    assert!(log.contains(&format!("{ESC}[")), "--color=always:\n{log}");

    let mut never = args.to_vec();
    never.push("--color=never");
    let (_, log) = run_into_one_file(&ws, &never, &[]);
    assert!(!log.contains(ESC), "--color=never:\n{log:?}");
}

/// On a terminal (a pseudo-terminal from util-linux's `script`) `auto` colours, and
/// `NO_COLOR` turns it off.
#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let ws = Workspace::new();
    // No registry needed: a mapping file with an error logs nothing; a run that fails to
    // connect does. 127.0.0.1:9 (discard) refuses at once.
    let mapping = ws.write("mapping_x", "127.0.0.1:9/a:1 127.0.0.1:9/b:1\n");
    let binary = assert_cmd::cargo::cargo_bin("image-mirror");
    let command = format!(
        "{} run --insecure --retries=0 --request-attempts=1 {}",
        p(&binary),
        p(&mapping)
    );
    let on_a_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"])
            .env("RUST_LOG", "info")
            .env("DOCKER_CONFIG", ws.dir())
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("script (util-linux) runs");
        text(&out.stdout)
    };
    let coloured = on_a_terminal(None);
    assert!(coloured.contains("plan ready"), "{coloured}");
    assert!(coloured.contains(&format!("{ESC}[")), "{coloured:?}");
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("plan ready"), "{plain}");
    // The progress bar draws with escapes of its own (cursor movement); log lines must not
    // carry colour: no SGR sequence (`ESC[...m`) around the level.
    for line in plain.lines().filter(|l| l.contains("plan ready")) {
        assert!(!line.contains(ESC), "NO_COLOR=1 on a terminal: {line:?}");
    }
}

/// stdout (the summary) and stderr (the logs) go to one file in a Prow job: the summary must
/// come after every log line, the last one ("JSON report written") included.
#[test]
fn the_summary_is_the_last_thing_in_a_job_log() {
    let (src, dst) = (Registry::start(), Registry::start());
    let ws = Workspace::new();
    let mapping = one_good_one_missing(&ws, &src, &dst);
    let report = ws.path("report.json");
    let (code, log) = run_into_one_file(
        &ws,
        &[
            "run",
            "--insecure",
            "--retries=0",
            "--report",
            p(&report),
            &mapping,
        ],
        &[],
    );
    assert_eq!(code, 1, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let last_log = lines
        .iter()
        .rposition(|l| is_log_line(l))
        .unwrap_or_else(|| panic!("no log line in\n{log}"));
    assert!(
        lines[last_log].contains("JSON report written"),
        "the report is written (and logged) before the summary:\n{log}"
    );
    let summary_start = lines
        .iter()
        .position(|l| l.starts_with("Failures (1):"))
        .unwrap_or_else(|| panic!("no summary in\n{log}"));
    assert!(
        summary_start > last_log,
        "summary before a log line:\n{log}"
    );
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("1 image copied, 0 unchanged, 1 failed"),
        "{log}"
    );
    assert!(Path::new(&report).exists());
}
