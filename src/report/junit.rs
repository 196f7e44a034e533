//! The JUnit XML view, for Prow: a job that writes `$ARTIFACTS/junit*.xml` gets its results
//! shown on the job's page (Spyglass) and counted by TestGrid, one row per test case. Here a
//! test suite is a mapping file and a test case a destination tag, so a failing image shows
//! up under its own name with the registry's answer, and stays findable across runs.
//!
//! Written by hand: the format is small, and the one subtlety — text from registries must be
//! escaped and stripped of characters XML 1.0 forbids — is handled in [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::RunResult;
use super::outcome::{ListingFailure, Outcome, Status};

/// One test case: a destination tag, or a wildcard source that could not be listed.
struct Case<'a> {
    name: String,
    duration: Duration,
    verdict: Verdict<'a>,
    /// What happened, for `<system-out>`.
    out: String,
}

enum Verdict<'a> {
    Passed,
    Failed { kind: &'a str, message: String },
    Skipped(String),
}

/// The report as JUnit XML: one `<testsuite>` per mapping file (sorted by path), one
/// `<testcase>` per destination tag (sorted by destination), named after the destination,
/// with the mapping file as its class name.
pub fn junit_report(run: &RunResult) -> String {
    let mut suites: BTreeMap<&str, Vec<Case<'_>>> = BTreeMap::new();
    for o in &run.outcomes {
        suites
            .entry(&*o.job.origin.file)
            .or_default()
            .push(case_of(o));
    }
    for f in &run.listing_failures {
        suites
            .entry(&*f.origin.file)
            .or_default()
            .push(listing_case(f));
    }
    for cases in suites.values_mut() {
        cases.sort_by(|a, b| a.name.cmp(&b.name));
    }

    let count = |cases: &[Case<'_>], pick: fn(&Verdict<'_>) -> bool| {
        cases.iter().filter(|c| pick(&c.verdict)).count()
    };
    let failed = |v: &Verdict<'_>| matches!(v, Verdict::Failed { .. });
    let skipped = |v: &Verdict<'_>| matches!(v, Verdict::Skipped(_));
    let all: Vec<&Case<'_>> = suites.values().flatten().collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        r#"<testsuites name="image-mirror" tests="{}" failures="{}" errors="0" skipped="{}" time="{:.3}">"#,
        all.len(),
        all.iter().filter(|c| failed(&c.verdict)).count(),
        all.iter().filter(|c| skipped(&c.verdict)).count(),
        run.elapsed.as_secs_f64()
    );
    for (file, cases) in &suites {
        let time: Duration = cases.iter().map(|c| c.duration).sum();
        let _ = writeln!(
            xml,
            r#"  <testsuite name="{}" tests="{}" failures="{}" errors="0" skipped="{}" time="{:.3}">"#,
            escape(file),
            cases.len(),
            count(cases, failed),
            count(cases, skipped),
            time.as_secs_f64()
        );
        for case in cases {
            let _ = write!(
                xml,
                r#"    <testcase name="{}" classname="{}" time="{:.3}">"#,
                escape(&case.name),
                escape(file),
                case.duration.as_secs_f64()
            );
            match &case.verdict {
                Verdict::Passed => {}
                Verdict::Failed { kind, message } => {
                    let first = message.lines().next().unwrap_or_default();
                    let _ = write!(
                        xml,
                        "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                        escape(first),
                        escape(kind),
                        escape(message)
                    );
                }
                Verdict::Skipped(why) => {
                    let _ = write!(xml, "\n      <skipped message=\"{}\"/>", escape(why));
                }
            }
            let _ = writeln!(
                xml,
                "\n      <system-out>{}</system-out>\n    </testcase>",
                escape(&case.out)
            );
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn case_of(o: &Outcome) -> Case<'_> {
    let origin = &o.job.origin;
    let digest = o
        .source_digest
        .as_ref()
        .map_or(String::new(), |d| format!(" ({d})"));
    let mut out = format!(
        "{}: {} <- {}{digest}\nmapping: {origin}\nattempts: {}",
        o.status.label(),
        o.job.destination,
        o.job.source,
        o.attempts
    );
    if let Some(previous) = &o.previous {
        let _ = write!(out, "\nprevious digest: {previous}");
    }
    let verdict = match o.status {
        Status::Failed | Status::Refused => Verdict::Failed {
            kind: o.error.as_ref().map_or("failed", |e| e.kind.as_str()),
            message: format!(
                "{}\nsource: {}\nmapping: {origin}",
                o.error_text().unwrap_or_else(|| "unknown error".to_owned()),
                o.job.source
            ),
        },
        Status::Cancelled => Verdict::Skipped(
            "cancelled: the run was interrupted first; the next run does it".to_owned(),
        ),
        // Skipped, not failed: it waits for the registry's next window.
        Status::Deferred => Verdict::Skipped(format!(
            "deferred: {}; the next window does it",
            o.error_text()
                .unwrap_or_else(|| "pull quota spent".to_owned())
        )),
        // Skipped, not failed: a later run copies it once it is old enough.
        Status::Waiting => Verdict::Skipped(format!(
            "waiting: {}",
            o.error_text()
                .unwrap_or_else(|| "held back by min-age".to_owned())
        )),
        Status::Copied | Status::Unchanged | Status::WouldCopy | Status::WouldOverwrite => {
            Verdict::Passed
        }
    };
    Case {
        name: o.job.destination.to_string(),
        duration: o.duration,
        verdict,
        out,
    }
}

fn listing_case(f: &ListingFailure) -> Case<'_> {
    Case {
        name: format!("{} (listing tags)", f.source),
        duration: Duration::ZERO,
        verdict: Verdict::Failed {
            kind: f.error.kind.as_str(),
            message: format!(
                "listing tags failed: {}\nmapping: {}",
                f.error_text(),
                f.origin
            ),
        },
        out: format!("listing tags of {} failed", f.source),
    }
}

/// Text fit for an XML attribute or element: markup characters escaped, and characters
/// XML 1.0 does not allow at all (control characters, such as a terminal escape a registry
/// might send) dropped, since no escape makes them legal.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_makes_any_registry_text_legal_xml() {
        assert_eq!(
            escape("a<b>&\"c\" 'd'\u{1b}[31m\u{0}"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;[31m"
        );
        assert_eq!(escape("line\nnext\ttab"), "line\nnext\ttab");
    }
}
