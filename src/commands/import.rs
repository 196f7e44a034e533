//! `image-mirror import`: another tool's configuration file as mapping lines on stdout.

use super::ExitCode;
use super::cli::{ImportArgs, ImportFormat};
use crate::inputs::import::{Format, translate};

/// Runs `import`.
pub fn run(args: &ImportArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::Usage;
        }
    };
    let format = match args.format {
        ImportFormat::Rancher => Format::Rancher,
        ImportFormat::Kyma => Format::Kyma,
        ImportFormat::SkopeoSync => Format::SkopeoSync,
        ImportFormat::ImageOperator => Format::ImageOperator,
    };
    let translation = translate(format, &text, args.to.as_deref());
    for note in &translation.notes {
        eprintln!("note: {note}");
    }
    if !translation.errors.is_empty() {
        for error in &translation.errors {
            eprintln!("error: {}: {error}", args.file.display());
        }
        eprintln!(
            "{} could not be translated; nothing was printed",
            crate::plural::count_as(translation.errors.len(), "entry", "entries")
        );
        return ExitCode::Usage;
    }
    println!(
        "# imported by image-mirror from {} ({:?})",
        args.file.display(),
        args.format
    );
    for line in &translation.lines {
        println!("{line}");
    }
    ExitCode::Ok
}
