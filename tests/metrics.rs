//! Metrics of the batch job, against the real consumers: the file is checked by Prometheus'
//! own `promtool check metrics` (Debian's `prometheus`), and pushes go to a real Pushgateway
//! (Debian's `prometheus-pushgateway`, started here on a free port) and are read back from
//! its `/metrics` — over runs that succeed, fail, throttle and are sharded.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::*;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::*;

/// A Pushgateway process for one test, killed when dropped.
struct Pushgateway {
    child: Child,
    port: u16,
}

impl Pushgateway {
    fn start() -> Pushgateway {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("/usr/bin/prometheus-pushgateway")
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--persistence.file=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway (bash .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_open(&format!("127.0.0.1:{port}")) {
            assert!(Instant::now() < deadline, "the Pushgateway never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pushgateway { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the Pushgateway exposes for Prometheus to scrape: our samples only.
    fn scraped(&self) -> Vec<String> {
        let body = ureq::get(&format!("{}/metrics", self.url()))
            .call()
            .expect("GET /metrics")
            .body_mut()
            .read_to_string()
            .expect("body");
        body.lines()
            .filter(|l| l.starts_with("image_mirror_"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` on the file: exit 0 and no lint complaint.
fn promtool_accepts(path: &Path) {
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (bash .ci/run installs prometheus)");
    let text = std::fs::read(path).expect("metrics file");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&text)
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{}",
        text_of(&out.stdout),
        text_of(&out.stderr),
        String::from_utf8_lossy(&text)
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of the one sample whose line starts with `series` followed by a space.
fn value(lines: &[String], series: &str) -> f64 {
    let found: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{series} in\n{}", lines.join("\n"));
    found[0]
}

fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("metrics file")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_reach_the_textfile_and_the_pushgateway_and_keep_the_last_success() {
    let pgw = Pushgateway::start();
    let (src, dst) = (Registry::start(), Registry::start());
    // The source behind a proxy that throttles one manifest request: a 429 to count.
    let proxy = FaultProxy::start(&src.host());
    proxy.add(
        "GET",
        "/manifests/1",
        1,
        Fault::Status {
            code: 429,
            retry_after: Some("0".into()),
        },
    );
    let (s, d) = (proxy.host(), dst.host());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let ws = Workspace::new();
    let good = ws.write("mapping_good", &format!("{s}/team/app:1 {d}/app:1\n"));
    let bad = ws.write("mapping_bad", &format!("{s}/team/app:nope {d}/app:nope\n"));
    std::fs::create_dir(ws.path("textfile")).expect("dir");
    let prom = ws.path("textfile/image_mirror.prom");
    let run = |mapping: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--insecure",
            "--retries=0",
            "--metrics-file",
            p(&prom),
            "--pushgateway",
        ];
        let url = pgw.url();
        args.push(&url);
        args.extend(extra);
        args.push(p(mapping));
        ws.command().args(&args).output().expect("run")
    };

    // A run that mirrors everything.
    let out = run(&good, &[]);
    expect_code(&out, 0);
    promtool_accepts(&prom);
    let first = file_lines(&prom);
    let ran = value(&first, "image_mirror_last_run_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - ran).abs() < 120.0, "{ran} vs {now}");
    assert_eq!(
        value(&first, "image_mirror_last_success_timestamp_seconds"),
        ran
    );
    assert_eq!(value(&first, "image_mirror_run_success"), 1.0);
    assert_eq!(
        value(&first, r#"image_mirror_images{status="copied"}"#),
        1.0
    );
    assert_eq!(
        value(&first, r#"image_mirror_images{status="failed"}"#),
        0.0
    );
    assert_eq!(
        value(&first, r#"image_mirror_blobs{result="uploaded"}"#),
        2.0
    );
    assert!(value(&first, "image_mirror_sent_bytes") >= 2000.0);
    assert!(value(&first, "image_mirror_run_duration_seconds") > 0.0);
    assert_eq!(
        value(
            &first,
            &format!(r#"image_mirror_throttled_requests{{registry="{s}"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &first,
            &format!(r#"image_mirror_request_retries{{registry="{s}"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &first,
            &format!(r#"image_mirror_throttled_requests{{registry="{d}"}}"#)
        ),
        0.0
    );
    let src_requests = value(
        &first,
        &format!(r#"image_mirror_requests{{registry="{s}"}}"#),
    );
    // Every request the proxy saw was counted (and the TLS probe of --insecure, which it
    // could not read as one).
    assert!(
        src_requests as usize >= proxy.seen().len(),
        "{:?}",
        proxy.seen()
    );
    assert!(
        src_requests as usize <= proxy.seen().len() + 1,
        "{:?}",
        proxy.seen()
    );
    assert!(
        value(
            &first,
            &format!(r#"image_mirror_requests{{registry="{d}"}}"#)
        ) > 0.0
    );
    // Round trips one after another: at least the first contact and a copy's requests, and
    // never more than the requests sent.
    let trips = value(&first, "image_mirror_round_trips");
    assert!(
        trips >= 2.0
            && trips
                <= src_requests
                    + value(
                        &first,
                        &format!(r#"image_mirror_requests{{registry="{d}"}}"#)
                    ),
        "{trips}"
    );
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(ws.path("textfile"))
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names, ["image_mirror.prom"]);

    let group = r#"instance="",job="image-mirror""#;
    let pushed = pgw.scraped();
    assert_eq!(
        value(
            &pushed,
            &format!("image_mirror_last_success_timestamp_seconds{{{group}}}")
        ),
        ran
    );
    assert_eq!(
        value(
            &pushed,
            &format!(r#"image_mirror_images{{{group},status="copied"}}"#)
        ),
        1.0
    );

    // A run that fails: the last success stays where it was, in the file and the Pushgateway.
    std::thread::sleep(Duration::from_millis(1100));
    let out = run(&bad, &[]);
    expect_code(&out, 1);
    promtool_accepts(&prom);
    let second = file_lines(&prom);
    assert!(value(&second, "image_mirror_last_run_timestamp_seconds") > ran);
    assert_eq!(
        value(&second, "image_mirror_last_success_timestamp_seconds"),
        ran
    );
    assert_eq!(value(&second, "image_mirror_run_success"), 0.0);
    assert_eq!(
        value(&second, r#"image_mirror_images{status="failed"}"#),
        1.0
    );
    let pushed = pgw.scraped();
    assert_eq!(
        value(
            &pushed,
            &format!("image_mirror_last_success_timestamp_seconds{{{group}}}")
        ),
        ran
    );
    assert_eq!(
        value(&pushed, &format!("image_mirror_run_success{{{group}}}")),
        0.0
    );
    assert_eq!(
        value(
            &pushed,
            &format!(r#"image_mirror_images{{{group},status="failed"}}"#)
        ),
        1.0
    );

    // A shard pushes to a group of its own, and labels its file's samples.
    let out = run(&good, &["--shard", "1/2"]);
    expect_code(&out, 0);
    promtool_accepts(&prom);
    assert_eq!(
        value(&file_lines(&prom), r#"image_mirror_run_success{shard="1"}"#),
        1.0
    );
    let pushed = pgw.scraped();
    assert_eq!(
        value(
            &pushed,
            &format!(r#"image_mirror_run_success{{{group},shard="1"}}"#)
        ),
        1.0
    );
    // The unsharded group is untouched by the shard's push.
    assert_eq!(
        value(&pushed, &format!("image_mirror_run_success{{{group}}}")),
        0.0
    );

    // A dry run (a rehearsal with the same flags) publishes nothing.
    let before = std::fs::read_to_string(&prom).expect("file");
    let out = run(&bad, &["--dry-run"]);
    expect_code(&out, 1);
    assert_eq!(std::fs::read_to_string(&prom).expect("file"), before);
    assert_eq!(pgw.scraped(), pushed);
}

/// A Pushgateway that is down costs the run nothing but an error line: the images were
/// mirrored (and the alert on the last success catches a lasting outage).
#[test]
fn an_unreachable_pushgateway_is_an_error_line_not_a_failed_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    seed_docker_image(&src, "team/app", "1", &[layer(1, 2000)]);
    let ws = Workspace::new();
    let mapping = ws.write(
        "mapping",
        &format!("{}/team/app:1 {}/app:1\n", src.host(), dst.host()),
    );
    let out = ws
        .command()
        .args([
            "run",
            "--insecure",
            "--pushgateway",
            "http://127.0.0.1:9/",
            p(&mapping),
        ])
        .output()
        .expect("run");
    expect_code(&out, 0);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("metrics not pushed"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

/// The example alert in deploy/ fires after three hours without a success (per shard), not
/// before, and also when no success was ever recorded: `promtool test rules` evaluates it.
#[test]
fn the_example_alert_fires_after_three_hours_without_success() {
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/image-mirror-alerts.yaml");
    let ws = Workspace::new();
    // Shard 0 succeeded at t=0 and never again; shard 1 succeeds every hour.
    let test = ws.write(
        "alerts_test.yaml",
        &format!(
            r#"rule_files:
- {rules}
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'image_mirror_last_success_timestamp_seconds{{job="image-mirror",shard="0"}}'
    values: '0+0x300'
  - series: 'image_mirror_last_success_timestamp_seconds{{job="image-mirror",shard="1"}}'
    values: '0+0x59 3600+0x59 7200+0x59 10800+0x59 14400+0x59'
  alert_rule_test:
  - eval_time: 2h
    alertname: ImageMirrorNoSuccess
    exp_alerts: []
  - eval_time: 3h5m
    alertname: ImageMirrorNoSuccess
    exp_alerts: []
  - eval_time: 3h15m
    alertname: ImageMirrorNoSuccess
    exp_alerts:
    - exp_labels:
        severity: warning
        job: image-mirror
        shard: "0"
      exp_annotations:
        summary: image-mirror has not mirrored every image for over 3 hours
        description: The last run of image-mirror (shard 0) that mirrored every image ended 3h 15m 0s ago. Read the job's last log or its JUnit report for the failing images and the registries' answers.
  - eval_time: 3h15m
    alertname: ImageMirrorNeverSucceeded
    exp_alerts: []
- interval: 1m
  input_series:
  - series: 'image_mirror_last_run_timestamp_seconds{{job="image-mirror"}}'
    values: '0+60x300'
  alert_rule_test:
  - eval_time: 2h
    alertname: ImageMirrorNeverSucceeded
    exp_alerts: []
  - eval_time: 3h1m
    alertname: ImageMirrorNeverSucceeded
    exp_alerts:
    - exp_labels:
        severity: warning
      exp_annotations:
        summary: no image-mirror run has reported a success for 3 hours
        description: "image_mirror_last_success_timestamp_seconds is absent: either no run mirrored every image yet, or the metrics do not reach Prometheus (check --metrics-file or --pushgateway, and image_mirror_last_run_timestamp_seconds)."
"#,
            rules = rules.display()
        ),
    );
    let out = Command::new("/usr/bin/promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .expect("promtool (bash .ci/run installs prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        text_of(&out.stdout),
        text_of(&out.stderr)
    );
}

/// `run --prune`: the unwanted tags by what prune made of them, and what held a prune back,
/// in a file promtool accepts.
#[test]
fn a_prune_is_counted_in_the_metrics() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.host(), dst.host());
    for (n, tag) in (1..).zip(["v1", "v2", "v3"]) {
        seed_oci_image(&src, "org/app", tag, &[layer(n, 64)]);
    }
    let ws = Workspace::new();
    let line = |tag: &str| format!("{s}/org/app:{tag} {d}/mirror/app:{tag}\n");
    let ledger = format!("{d}/mirror/ledger");
    let day = 86_400;
    let t0 = 1_780_000_000u64;
    let at = |t: u64| {
        [
            "--ledger".to_owned(),
            ledger.clone(),
            "--now".to_owned(),
            t.to_string(),
        ]
    };
    let all = ws.write("all", &(line("v1") + &line("v2") + &line("v3")));
    let (out, _) = ws.run_insecure(&all, &at(t0).each_ref().map(String::as_str));
    expect_code(&out, 0);
    // v2 leaves the mapping after the first run, v1 two days later: four days on, v2 is
    // pruned and v1 still within --prune-after (3 days).
    let metrics = ws.path("prune.prom");
    let only_v3 = ws.write("v3", &line("v3"));
    let two = ws.write("two", &(line("v1") + &line("v3")));
    let (out, _) = ws.run_insecure(&two, &at(t0 + 2 * day).each_ref().map(String::as_str));
    expect_code(&out, 0);
    let mut args: Vec<String> = at(t0 + 4 * day).to_vec();
    args.extend([
        "--prune".to_owned(),
        format!("--metrics-file={}", metrics.display()),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _) = ws.run_insecure(&only_v3, &args);
    expect_code(&out, 0);
    promtool_accepts(&metrics);
    let lines = file_lines(&metrics);
    assert_eq!(
        value(&lines, r#"image_mirror_prune_tags{status="pruned"}"#),
        1.0
    );
    assert_eq!(
        value(&lines, r#"image_mirror_prune_tags{status="waiting"}"#),
        1.0
    );
    assert_eq!(
        value(&lines, r#"image_mirror_prune_tags{status="failed"}"#),
        0.0
    );
    assert_eq!(
        value(&lines, r#"image_mirror_prune_held{reason="max-prune"}"#),
        0.0
    );
    assert_eq!(
        value(&lines, r#"image_mirror_prune_held{reason="untrusted"}"#),
        0.0
    );
    assert_eq!(dst.tags("mirror/app"), vec!["v1", "v3"]);
    // Without --prune there is no prune to count.
    let plain = ws.path("plain.prom");
    let (out, _) = ws.run_insecure(&only_v3, &["--metrics-file", &plain.display().to_string()]);
    expect_code(&out, 0);
    assert!(
        !file_lines(&plain)
            .iter()
            .any(|l| l.contains("image_mirror_prune")),
        "{:?}",
        file_lines(&plain)
    );
}
