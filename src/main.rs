use clap::Parser;
use tracing_subscriber::EnvFilter;

use image_mirror::cli::{Cli, Command, LogFormat};

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match &cli.command {
        Command::Check(args) => image_mirror::check::run(&args.input_spec()),
        Command::Run(args) => image_mirror::run::run(args),
    };
    std::process::exit(code);
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(image_mirror::progress::LogWriter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
