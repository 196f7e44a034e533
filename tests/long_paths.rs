//! Long paths (issue 29): the number of blob transfers in flight follows the round trip.
//! Each registry here sits behind a delay proxy of the tests' own (`crate::support::delay`), which
//! holds every request a while and counts the transfers in flight at once. Counts, never
//! times: the proxy's count is what a registry would see.

use std::time::Duration;

use crate::support::cli::*;
use crate::support::delay::DelayProxy;
use crate::support::*;

/// A round trip long enough that queueing at the registry (microseconds here) is lost in it.
const LONG: Duration = Duration::from_millis(150);

/// `count` images of two blobs each at `src` (`team/pN:1`), and the mapping that mirrors
/// them through `s` to `d`.
fn seed(src: &Registry, count: u64, first: u64, s: &str, d: &str) -> String {
    let mut mapping = String::new();
    for i in 0..count {
        seed_docker_image(
            src,
            &format!("team/p{i}"),
            "1",
            &[
                layer(first + 2 * i, 2_000),
                layer(first + 2 * i + 1, 30_000),
            ],
        );
        mapping.push_str(&format!("{s}/team/p{i}:1 {d}/p{i}:1\n"));
    }
    mapping
}

/// What the JSON report says a registry's limit in one direction reached.
fn reached<'a>(
    report: &'a serde_json::Value,
    host: &str,
    direction: &str,
) -> &'a serde_json::Value {
    &report["concurrency"][host][direction]
}

#[test]
fn over_a_long_path_more_than_six_transfers_run_at_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = DelayProxy::start(&src.host(), LONG);
    let (s, d) = (proxy.host(), dst.host());
    let mapping = seed(&src, 32, 7100, &s, &d);
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
    let (out, report) = ws.run_report(&file, &["--insecure"]);
    expect_code(&out, 0);
    for i in 0..32 {
        dst.assert_complete(&format!("p{i}"), "1");
    }
    let counts = proxy.counts();
    assert_eq!(counts.refused, 0);
    // The proxy may count one more than the client holds, at a boundary (a transfer's
    // last byte read and the next one sent before the count went down): more than 6 + 1.
    assert!(
        counts.max > 6 + 1,
        "at most {} transfers in flight at the source: the limit did not grow beyond oc's six",
        counts.max
    );
    // The report says so, and why it stopped.
    let reads = reached(&report, &s, "reads");
    assert!(reads["limit"].as_u64().unwrap_or(0) > 6, "{report:#}");
    assert!(reads["in_flight"].as_u64().unwrap_or(0) > 6, "{report:#}");
    assert_eq!(reads["ceiling"], 64, "the default ceiling: {report:#}");
    assert!(reads["stopped"].is_string(), "{report:#}");
    // The text summary names the registry and what it reached.
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{s}: up to ")) && stdout.contains("transfers at once reading"),
        "{stdout}"
    );
}

#[test]
fn an_explicit_max_per_registry_is_never_exceeded_however_long_the_path() {
    let src = Registry::start();
    let dst = Registry::start();
    let src_proxy = DelayProxy::start(&src.host(), LONG);
    let dst_proxy = DelayProxy::start(&dst.host(), LONG);
    let (s, d) = (src_proxy.host(), dst_proxy.host());
    let mapping = seed(&src, 16, 7300, &s, &d);
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
    let (out, report) = ws.run_report(&file, &["--insecure", "--max-per-registry=3"]);
    expect_code(&out, 0);
    for i in 0..16 {
        dst.assert_complete(&format!("p{i}"), "1");
    }
    // The proxy counts a transfer until it has written the answer's last byte, and the
    // client may have read it and started the next one before that count goes down: one
    // more at a boundary is the measurement, not the client.
    let slack = 1;
    for (name, proxy) in [("source", &src_proxy), ("destination", &dst_proxy)] {
        let max = proxy.counts().max;
        assert!(max <= 3 + slack, "{max} transfers in flight at the {name}");
    }
    assert!(src_proxy.counts().max >= 3, "the bound was reached");
    let reads = reached(&report, &s, "reads");
    assert_eq!(reads["limit"], 3, "{report:#}");
    assert_eq!(reads["stopped"], "ceiling", "{report:#}");
}

#[test]
fn a_registry_that_refuses_is_not_pushed_beyond_what_it_admitted() {
    // It takes eight transfers at once and answers 429 to more. The limit grows from six
    // until it is refused (the one overshoot), then stays at or below six, within what
    // the registry admitted, for the rest of the run.
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = DelayProxy::admitting(&src.host(), LONG, 8);
    let (s, d) = (proxy.host(), dst.host());
    let mapping = seed(&src, 48, 7500, &s, &d);
    let ws = Workspace::new();
    let file = ws.write("m", &mapping);
    let (out, report) = ws.run_report(&file, &["--insecure"]);
    expect_code(&out, 0);
    for i in 0..48 {
        dst.assert_complete(&format!("p{i}"), "1");
    }
    let counts = proxy.counts();
    assert!(counts.refused > 0, "the registry never refused: {counts:?}");
    // Once told no, never more in flight than it admitted (its refusals counted too).
    assert!(counts.max_after_refusal <= 8, "{counts:?}");
    // One overshoot (from 12 to 8), never a second doubling.
    assert!(counts.max <= 12, "{counts:?}");
    let reads = reached(&report, &s, "reads");
    assert_eq!(reads["stopped"], "throttled", "{report:#}");
    assert!(
        reads["limit_at_end"].as_u64().unwrap_or(99) <= 6,
        "{report:#}"
    );
    // 429s are counted per registry, as before.
    let stdout = text(&out.stdout);
    assert!(stdout.contains("the registry answered 429"), "{stdout}");
}
