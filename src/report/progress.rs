//! What the operator sees while a run goes on: a progress bar on a terminal, a progress log
//! line every few seconds otherwise (Prow and CronJob logs are not terminals). Big blobs
//! (see [`crate::moving`]) get a bar each on a terminal (bytes, rate, time left), and in a
//! log a line each with every progress line while they move: a 3.5 GiB layer taking
//! minutes shows it advances. Reads only the run's [`Stats`].

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::text::human_bytes;
use crate::duration::human;
use crate::moving::Blob;
use crate::plural::count;
use crate::redact::redact;
use crate::stats::Stats;

const TICK_EVERY: Duration = Duration::from_millis(200);

/// The bars log lines must step around, when they are shown.
static ACTIVE_BAR: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Shows how a run goes from its [`Stats`].
pub struct Progress {
    stats: Arc<Stats>,
}

impl Progress {
    pub fn new(stats: Arc<Stats>) -> Self {
        Progress { stats }
    }

    fn line(&self) -> String {
        let s = self.stats.snapshot();
        format!(
            "{}/{} ({} failed), {} uploaded, {}{}",
            s.images_done,
            count(s.images_planned, "image"),
            s.images_failed,
            human_bytes(s.bytes),
            count(s.transfers, "active transfer"),
            self.waiting()
        )
    }

    /// "; waiting: 127.0.0.1:1: connection refused, retry 3 of 5 in 11 s" while a retry
    /// waits, else nothing: a line that does not move says why.
    fn waiting(&self) -> String {
        self.stats
            .waiting()
            .map(|why| format!("; waiting: {why}"))
            .unwrap_or_default()
    }

    /// Reports until `stop` is cancelled: bars when stderr is a terminal, else log lines
    /// every `log_every`.
    pub async fn report(self, log_every: Duration, stop: CancellationToken) {
        if std::io::stderr().is_terminal() {
            self.bars(stop).await;
        } else {
            let mut rates = Rates::default();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(log_every) => {
                        tracing::info!("progress: {}", self.line());
                        self.log_big_blobs(&mut rates);
                    }
                }
            }
        }
    }

    /// The run's bar, and one per big blob while it moves, until `stop` is cancelled.
    async fn bars(&self, stop: CancellationToken) {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bar = multi.add(ProgressBar::new(
            self.stats.images_planned.load(Ordering::Relaxed),
        ));
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images  {msg}",
        ) {
            bar.set_style(style);
        }
        set_active_bar(Some(multi.clone()));
        let mut blobs = BTreeMap::new();
        loop {
            let s = self.stats.snapshot();
            bar.set_position(s.images_done);
            bar.set_message(format!(
                "{} uploaded, {}{}",
                human_bytes(s.bytes),
                count(s.transfers, "transfer"),
                self.waiting()
            ));
            self.blob_bars(&multi, &mut blobs);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(TICK_EVERY) => {}
            }
        }
        set_active_bar(None);
        for (_, blob_bar) in std::mem::take(&mut blobs) {
            blob_bar.finish_and_clear();
        }
        bar.finish_and_clear();
    }

    /// A bar for each big blob moving now (bytes, rate, time left), each removed when its
    /// blob stops moving.
    fn blob_bars(&self, multi: &MultiProgress, bars: &mut BTreeMap<u64, ProgressBar>) {
        let moving = self.stats.moving.now();
        bars.retain(|id, bar| {
            let still = moving.iter().any(|b| b.id == *id);
            if !still {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            still
        });
        for blob in moving {
            let bar = bars.entry(blob.id).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(blob.size));
                if let Ok(style) = ProgressStyle::with_template(
                    "  {prefix} {bar:30} {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, {eta} left",
                ) {
                    bar.set_style(style);
                }
                bar.set_prefix(format!("{} {}", blob.short_digest, blob.place()));
                bar
            });
            bar.set_position(blob.done());
        }
    }

    /// A log line for each big blob moving now: where from, its short digest, bytes done of
    /// its size, the rate since the last line and the time left at that rate.
    fn log_big_blobs(&self, rates: &mut Rates) {
        let moving = self.stats.moving.now();
        rates
            .seen
            .retain(|id, _| moving.iter().any(|b| b.id == *id));
        let now = Instant::now();
        for blob in moving {
            let done = blob.done();
            let (from, then) = rates
                .seen
                .insert(blob.id, (done, now))
                .unwrap_or((0, blob.started));
            let line = blob_line(&blob, done, done - from.min(done), now - then);
            tracing::info!(
                repository = %blob.place(),
                digest = %blob.short_digest,
                done,
                size = blob.size,
                "{line}"
            );
        }
    }
}

/// Each big blob's bytes done at its last log line, and when.
#[derive(Default)]
struct Rates {
    seen: BTreeMap<u64, (u64, Instant)>,
}

/// "big blob sha256:0123456789ab of quay.io/org/app: 1.2 GiB of 3.5 GiB, 48 MiB/s, 49 s
/// left": `moved` bytes in `over` give the rate, and the rate the time left.
fn blob_line(blob: &Blob, done: u64, moved: u64, over: Duration) -> String {
    let seconds = over.as_secs_f64();
    let rate = if seconds > 0.0 {
        moved as f64 / seconds
    } else {
        0.0
    };
    let left = if rate >= 1.0 && done < blob.size {
        let secs = (blob.size - done) as f64 / rate;
        format!(", {} left", human(Duration::from_secs_f64(secs.min(1e9))))
    } else {
        String::new()
    };
    format!(
        "big blob {} of {}: {} of {}, {}/s{left}",
        blob.short_digest,
        blob.place(),
        human_bytes(done),
        human_bytes(blob.size),
        whole(human_bytes(rate as u64)),
    )
}

/// "48 MiB" rather than "48.0 MiB".
fn whole(text: String) -> String {
    text.replacen(".0 ", " ", 1)
}

fn set_active_bar(bar: Option<MultiProgress>) {
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = bar;
    }
}

/// A tracing writer for stderr that hides the progress bar while a line is written, and
/// passes every line through [`redact`]: whatever a log line quotes from outside (an error
/// body, a challenge, a URL), at whatever level, loses its secrets before it is written.
pub struct LogWriter;

impl Write for LogWriter {
    /// tracing's formatter hands over one whole event per call.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = redact(&String::from_utf8_lossy(buf));
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(line.as_bytes()))?,
            None => std::io::stderr().write_all(line.as_bytes())?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moving::Moving;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn a_big_blobs_line_reads_as_a_person_writes_it() {
        let moving = Moving::default();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let size = 7 * GIB / 2;
        let _following = moving.follow("r.io", "team/app", &digest, size);
        let blob = moving.now().remove(0);
        let done = 12 * GIB / 10;
        assert_eq!(
            blob_line(&blob, done, 480 * 1024 * 1024, Duration::from_secs(10)),
            "big blob sha256:abababababab of r.io/team/app: 1.2 GiB of 3.5 GiB, 48 MiB/s, 49 s left"
        );
        // Nothing moved since the last line: no time left to speak of.
        assert_eq!(
            blob_line(&blob, done, 0, Duration::from_secs(10)),
            "big blob sha256:abababababab of r.io/team/app: 1.2 GiB of 3.5 GiB, 0 B/s"
        );
    }
}
