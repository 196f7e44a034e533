//! Every view of a run whose quota ran out: deferred images are said to be deferred, with the
//! reason and the window, counted apart from failures, skipped (not failed) in JUnit, and
//! counted per registry in the metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::outcome::{Outcome, Status};
use super::{RunResult, json, junit, metrics, text};
use crate::inputs::mapping::parse_text;
use crate::model::failure::{ErrorKind, Failure};
use crate::plan::plan;
use crate::stats::QuotaState;

const REASON: &str = "docker.io: pull quota spent, 0 of 100 left, window 1 h";

/// Three images from docker.io: one copied, two deferred.
fn run() -> RunResult {
    let mapping = "docker.io/team/app:1 dst.io/m/app:1\n\
                   docker.io/team/app:2 dst.io/m/app:2\n\
                   docker.io/team/app:3 dst.io/m/app:3\n";
    let parsed = parse_text(&Arc::from("mapping"), mapping);
    let expanded = crate::plan::expand_all(parsed.mappings, &HashMap::new());
    let (plan, _) = plan(&expanded.mappings, &HashMap::new());
    let mut outcomes: Vec<Outcome> = plan
        .batches
        .into_iter()
        .flat_map(|b| b.jobs)
        .map(Outcome::new)
        .collect();
    outcomes.sort_by(|a, b| a.job.destination.cmp(&b.job.destination));
    for (i, o) in outcomes.iter_mut().enumerate() {
        if i == 0 {
            o.status = Status::Copied;
        } else {
            o.status = Status::after_failure(ErrorKind::Deferred);
            o.error = Some(Failure {
                kind: ErrorKind::Deferred,
                message: REASON.to_owned(),
            });
        }
    }
    RunResult {
        outcomes,
        quotas: vec![(
            "docker.io".to_owned(),
            QuotaState {
                limit: Some(100),
                left: Some(0),
                window: Some(Duration::from_secs(3600)),
                taken: 100,
                refused: 0,
                spent: true,
            },
        )],
        elapsed: Duration::from_secs(3),
        ..RunResult::default()
    }
}

#[test]
fn the_summary_says_deferred_with_the_reason_and_no_failure() {
    let summary = text::summary(&run());
    assert!(
        summary.contains("Deferred (2 images, not failed: the next window continues):"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("  2 images: {REASON}")),
        "{summary}"
    );
    assert!(!summary.contains("Failures"), "{summary}");
    let last = summary.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("1 image copied, 0 unchanged, 0 failed, 2 deferred;"),
        "{last}"
    );
    assert!(!Status::Deferred.fails_the_run());
}

#[test]
fn the_json_report_has_the_status_the_kind_and_the_quota() {
    let run = run();
    let value = serde_json::to_value(json::json_report(&run)).unwrap_or_default();
    assert_eq!(value["totals"]["deferred"], 2, "{value:#}");
    assert_eq!(value["totals"]["failed"], 0, "{value:#}");
    let deferred: Vec<&serde_json::Value> = value["images"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["status"] == "deferred").collect())
        .unwrap_or_default();
    assert_eq!(deferred.len(), 2, "{value:#}");
    assert_eq!(deferred[0]["error_kind"], "deferred");
    assert_eq!(deferred[0]["error"], REASON);
    let quota = &value["quotas"]["docker.io"];
    assert_eq!(quota["limit"], 100, "{value:#}");
    assert_eq!(quota["left"], 0);
    assert_eq!(quota["window_seconds"], 3600);
    assert_eq!(quota["deferred"], 2);
}

#[test]
fn junit_skips_deferred_images_with_the_reason() {
    let xml = junit::junit_report(&run());
    assert!(
        xml.contains(r#"tests="3" failures="0" errors="0" skipped="2""#),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            r#"<skipped message="deferred: {REASON}; the next window does it"/>"#
        )),
        "{xml}"
    );
}

#[test]
fn metrics_count_deferred_images_and_the_quota_left_per_registry() {
    let text = metrics::render(
        &run(),
        metrics::Ending::now(false),
        &metrics::Carried::default(),
        &[],
    );
    for line in [
        r#"image_mirror_images{status="deferred"} 2"#,
        r#"image_mirror_deferred_images{registry="docker.io"} 2"#,
        r#"image_mirror_quota_remaining{registry="docker.io"} 0"#,
        r#"image_mirror_quota_limit{registry="docker.io"} 100"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[test]
fn how_long_images_have_waited_for_a_quota_is_carried_from_run_to_run() {
    let at = |secs: f64| metrics::Ending {
        at: secs,
        success: false,
    };
    let since = |run: &RunResult, end: f64, before: Option<&str>| {
        metrics::deferred_since(run, at(end), before)
    };
    let write = |run: &RunResult, end: f64, before: &str| {
        let carried = metrics::Carried {
            last_success: None,
            deferred_since: since(run, end, Some(before)),
        };
        metrics::render(run, at(end), &carried, &[("shard", "1")])
    };
    let deferring = run();
    // The first run that defers: since it started (it ran 3 s).
    let first = write(&deferring, 1000.0, "");
    let line = r#"image_mirror_deferred_since_timestamp_seconds{shard="1",registry="docker.io"}"#;
    assert!(first.contains(&format!("{line} 997")), "{first}");
    // The next runs that defer keep it, from the file before.
    let second = write(&deferring, 4600.0, &first);
    assert!(second.contains(&format!("{line} 997")), "{second}");
    // A run that defers nothing there: nothing waits since its end.
    let mut caught_up = run();
    for o in &mut caught_up.outcomes {
        o.status = Status::Copied;
        o.error = None;
    }
    let third = write(&caught_up, 8200.0, &second);
    assert!(third.contains(&format!("{line} 8200")), "{third}");
    // A push leaves it out while images wait (the Pushgateway keeps its own value).
    assert_eq!(since(&deferring, 4600.0, None), None);
    let pushed = since(&caught_up, 8200.0, None).unwrap_or_default();
    assert_eq!(pushed.get("docker.io"), Some(&8200.0));
}
