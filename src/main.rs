use clap::Parser;

use image_mirror::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Check(args) => image_mirror::check::run(&args.input_spec()),
        Command::Run(_) => {
            eprintln!("error: run is not implemented yet");
            2
        }
    };
    std::process::exit(code);
}
