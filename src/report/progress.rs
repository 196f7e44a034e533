//! What the operator sees while a run goes on: a progress bar on a terminal, a progress log
//! line every few seconds otherwise (Prow and CronJob logs are not terminals). Reads only
//! the run's [`Stats`].

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::text::human_bytes;
use crate::plural::count;
use crate::redact::redact;
use crate::stats::Stats;

const TICK_EVERY: Duration = Duration::from_millis(200);

/// The bar log lines must step around, when one is shown.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

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

    /// Reports until `stop` is cancelled: a bar when stderr is a terminal, else a log line
    /// every `log_every`.
    pub async fn report(self, log_every: Duration, stop: CancellationToken) {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(self.stats.images_planned.load(Ordering::Relaxed)),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images  {msg}",
            ) {
                bar.set_style(style);
            }
            set_active_bar(Some(bar.clone()));
            loop {
                let s = self.stats.snapshot();
                bar.set_position(s.images_done);
                bar.set_message(format!(
                    "{} uploaded, {}{}",
                    human_bytes(s.bytes),
                    count(s.transfers, "transfer"),
                    self.waiting()
                ));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(TICK_EVERY) => {}
                }
            }
            set_active_bar(None);
            bar.finish_and_clear();
        } else {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(log_every) => tracing::info!("progress: {}", self.line()),
                }
            }
        }
    }
}

fn set_active_bar(bar: Option<ProgressBar>) {
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
