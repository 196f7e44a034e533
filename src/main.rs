use clap::Parser;
use tracing_subscriber::EnvFilter;

use image_mirror::cli::{Cli, Command, LogFormat};

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match &cli.command {
        Command::Check(args) => image_mirror::check::run(&args.input_spec()),
        Command::Run(args) => image_mirror::run::run(args),
        Command::Verify(args) => image_mirror::verify::run(args),
    };
    std::process::exit(code);
}

/// Libraries whose most detailed logs could show a secret, and the most they may log.
/// reqwest logs redirect targets (pre-signed blob URLs are credentials of their own); hyper,
/// h2 and rustls log connection internals at trace; oci-client logs response headers at
/// trace. Our own logs never hold a password or token at any level. These caps are applied
/// after RUST_LOG, so they hold whatever it says.
const SECRET_SAFE_CAPS: [&str; 7] = [
    "reqwest=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "rustls=info",
    "tokio_rustls=info",
    "oci_client=debug",
];

fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for cap in SECRET_SAFE_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(image_mirror::progress::LogWriter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
