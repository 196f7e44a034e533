//! The commands a user runs — `check`, `run`, `verify`, `import` — and what they share: the
//! argument definitions ([`cli`]), the exit codes, loading the mapping files, starting the
//! runtime. The top of the crate: glue between the stages, no stage logic of its own.

pub mod check;
pub mod cli;
pub mod import;
pub mod ledger;
pub mod listing;
pub mod owned;
pub mod planning;
pub mod publish;
pub mod run;
pub mod stores;
pub mod verify;

use std::io::Write;

use crate::inputs::{self, InputSpec, MappingSet};

/// How a command ends, as its process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything done — or all that is not done is deferred: a source registry's pull
    /// quota could not cover it in this window. Deferred work is not a failure (a CronJob
    /// must not page, nor retry its pod into the same spent quota, every hour), but it is no
    /// success either: the metrics' last-success timestamp is not advanced and
    /// `image_mirror_deferred_images` counts it, so a set that never completes is seen.
    Ok,
    /// Some images failed (the others still ran to the end), or a check found a problem.
    Failed,
    /// Bad input, credentials or usage: nothing was contacted.
    Usage,
    /// Interrupted by SIGINT.
    Interrupted,
    /// Stopped by SIGTERM.
    Terminated,
}

impl ExitCode {
    /// 128 + the signal for signals, as shells report them.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::Usage => 2,
            ExitCode::Interrupted => 130,
            ExitCode::Terminated => 143,
        }
    }
}

/// What `check` and `run` share: find, read and validate the files. Prints every diagnostic
/// to `err`. Returns `None` (after printing why) when the input is unusable.
pub fn load_and_report(spec: &InputSpec, err: &mut dyn Write) -> Option<MappingSet> {
    let set = match inputs::discover(spec).and_then(|files| inputs::load(&files)) {
        Ok(set) => set,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return None;
        }
    };
    for d in &set.diagnostics {
        let _ = writeln!(err, "{d}");
    }
    Some(set)
}

/// Runs a command's async part to its value, or the exit code that ended it early.
pub fn on_runtime_value<T>(
    command: impl Future<Output = Result<T, ExitCode>>,
) -> Result<T, ExitCode> {
    block_on(command).and_then(|value| value)
}

/// How long the runtime's leftover tasks (a best-effort cleanup still in flight) get to stop
/// once a command's async part is done.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `command` on a multi-threaded runtime and shuts the runtime down before returning, so
/// no task of it can log a line after what the caller prints next (the run's summary must be
/// the last thing in a log that holds both stdout and stderr).
pub fn block_on<T>(command: impl Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let value = runtime.block_on(command);
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
            Ok(value)
        }
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            Err(ExitCode::Failed)
        }
    }
}
