//! What the operator sees while a run goes on: a progress bar on a terminal, a progress log
//! line every few seconds otherwise (Prow and CronJob logs are not terminals).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::registry::Traffic;
use crate::report::human_bytes;

const TICK_EVERY: Duration = Duration::from_millis(200);

/// The bar log lines must step around, when one is shown.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

#[derive(Default)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    transfers: AtomicU64,
}

impl Progress {
    pub fn new(total: usize) -> Arc<Self> {
        let p = Progress::default();
        p.total.store(total as u64, Ordering::Relaxed);
        Arc::new(p)
    }

    pub fn image_done(&self, failed: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an active blob transfer until the guard is dropped.
    pub fn transfer(self: &Arc<Self>) -> TransferGuard {
        self.transfers.fetch_add(1, Ordering::Relaxed);
        TransferGuard(self.clone())
    }

    fn line(&self, traffic: &Traffic) -> String {
        format!(
            "{}/{} images ({} failed), {} uploaded, {} active transfers",
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            human_bytes(traffic.bytes_uploaded.load(Ordering::Relaxed)),
            self.transfers.load(Ordering::Relaxed)
        )
    }

    /// Reports until `stop` is cancelled: a bar when stderr is a terminal, else a log line
    /// every `log_every`.
    pub async fn report(
        self: Arc<Self>,
        traffic: Arc<Traffic>,
        log_every: Duration,
        stop: CancellationToken,
    ) {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(self.total.load(Ordering::Relaxed)),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images  {msg}",
            ) {
                bar.set_style(style);
            }
            set_active_bar(Some(bar.clone()));
            loop {
                bar.set_position(self.done.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{} uploaded, {} transfers",
                    human_bytes(traffic.bytes_uploaded.load(Ordering::Relaxed)),
                    self.transfers.load(Ordering::Relaxed)
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
                    _ = tokio::time::sleep(log_every) => tracing::info!("progress: {}", self.line(&traffic)),
                }
            }
        }
    }
}

pub struct TransferGuard(Arc<Progress>);

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.0.transfers.fetch_sub(1, Ordering::Relaxed);
    }
}

fn set_active_bar(bar: Option<ProgressBar>) {
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = bar;
    }
}

/// A tracing writer for stderr that hides the progress bar while a line is written.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
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
