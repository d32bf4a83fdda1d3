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
    Train(Box<cli::train::TrainArgs>),
    /// Run a model file on an input file; write outputs (and the loss's gradients) to a file.
    Run(cli::run::RunArgs),
    /// Generate text from a character model trained with `train --text`.
    Sample(cli::sample::SampleArgs),
    /// Why a model forgets: every W's spectral radius and eigenvalues, and how far back the
    /// gradient of the last step reaches (pictures in --out).
    Analyze(cli::analyze::AnalyzeArgs),
    /// Time forward and training steps on the benchmark shapes, beside the naive driver.
    Bench(cli::bench::BenchArgs),
    /// List every adapter wgpu finds, with the limits that matter here.
    Info,
}

/// Mesa's device-selection layer (`VK_LAYER_MESA_device_select`, an implicit Vulkan layer that
/// comes with Debian's `mesa-vulkan-drivers`) connects to Wayland when the instance is made, to
/// find the display's GPU, and on a machine with no session (CI, cron, ssh) libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice. A compute program
/// shows nothing and picks its adapter itself, so the layer is switched off with its own
/// variable, unless the user asked it for a device (`MESA_VK_DEVICE_SELECT`). Only the
/// environment can do it (the layer is loaded by the Vulkan loader, not by wgpu), so it is
/// done here, before any thread exists.
#[cfg(target_os = "linux")]
fn quiet_device_select_layer() {
    use std::env::var_os;
    if var_os("NODEVICE_SELECT").is_none() && var_os("MESA_VK_DEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

#[cfg(not(target_os = "linux"))]
fn quiet_device_select_layer() {}

fn main() -> ExitCode {
    quiet_device_select_layer();
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
        Command::Analyze(a) => cli::analyze::analyze(&a),
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
