//! The `image-mirror` binary: parses the command line, sets up logging (with caps that keep
//! other crates' trace logs from printing secrets), runs the command, exits with its code.

use std::io::IsTerminal;

use clap::Parser;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use image_mirror::commands::cli::{Cli, Command, ENV_NO_COLOR, LogFormat};

fn main() {
    let cli = Cli::parse();
    let ansi = cli.color.enabled(
        std::io::stderr().is_terminal(),
        std::env::var_os(ENV_NO_COLOR).as_deref(),
    );
    init_logging(cli.log_format, ansi);
    let code = match &cli.command {
        Command::Check(args) => image_mirror::commands::check::run(args),
        Command::Run(args) => image_mirror::commands::run::run(args),
        Command::Prune(args) => image_mirror::commands::run::prune(args),
        Command::Verify(args) => image_mirror::commands::verify::run(args),
        Command::Import(args) => image_mirror::commands::import::run(args),
    };
    std::process::exit(code.code());
}

/// Libraries whose most detailed logs could show a secret, and the most they may log.
/// reqwest logs redirect targets (pre-signed blob URLs are credentials of their own); hyper,
/// h2 and rustls log connection internals at trace. Our own logs never hold a password or
/// token at any level. These caps are a second filter after RUST_LOG: they lower what it
/// allows, never raise it.
const SECRET_SAFE_CAPS: [(&str, Level); 6] = [
    ("reqwest", Level::INFO),
    ("hyper", Level::INFO),
    ("hyper_util", Level::INFO),
    ("h2", Level::INFO),
    ("rustls", Level::INFO),
    ("tokio_rustls", Level::INFO),
];

/// `ansi`: whether text lines carry colour escapes (never for JSON, whose consumers parse it).
fn init_logging(format: LogFormat, ansi: bool) {
    let wanted = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let caps = SECRET_SAFE_CAPS.iter().fold(
        Targets::new().with_default(Level::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    );
    let filter = wanted.and(caps);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(image_mirror::report::progress::LogWriter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.with_ansi(false).json().with_filter(filter))
            .init(),
    }
}
