//! `rnn-wgpu`: train, run model files, sample text, benchmark, and list adapters.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rnn-wgpu",
    version,
    about = "Elman RNNs trained and run on any GPU wgpu reaches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on a built-in task (sine, recall) or a text file (--text), with a progress bar.
    Train(cli::train::TrainArgs),
    /// Run a model file on an input file; write outputs (and the loss's gradients) to a file.
    Run(cli::run::RunArgs),
    /// Generate text from a character model trained with `train --text`.
    Sample(cli::sample::SampleArgs),
    /// Time forward and training steps on the benchmark shapes, beside the naive driver.
    Bench(cli::bench::BenchArgs),
    /// List every adapter wgpu finds, with the limits that matter here.
    Info,
}

/// Mesa's Vulkan drivers probe Wayland when they load and print `error: XDG_RUNTIME_DIR is
/// invalid or not set` on a machine without a session (CI, cron, ssh without login), a line
/// that looks like this program's own errors. Give them a private directory instead, as a
/// login session would.
#[cfg(target_os = "linux")]
fn ensure_runtime_dir() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let dir = std::env::temp_dir().join(format!("rnn-wgpu-runtime-{uid}"));
    let private = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)));
    if private.is_ok() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

#[cfg(not(target_os = "linux"))]
fn ensure_runtime_dir() {}

fn main() -> ExitCode {
    ensure_runtime_dir();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line, like every other error: clap's message without its hint lines.
            let text = e.render().to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect();
            eprintln!("{}", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Train(a) => cli::train::train(&a),
        Command::Run(a) => cli::run::run(&a),
        Command::Sample(a) => cli::sample::sample(&a),
        Command::Bench(a) => cli::bench::bench(&a),
        Command::Info => cli::info::info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
