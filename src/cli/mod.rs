//! The subcommands of the `rnn-wgpu` program, one module each.

pub mod bench;
pub mod info;
pub mod plot;
pub mod run;
pub mod sample;
pub mod train;

use rnn_wgpu::{Error, Gpu, InputError};

/// Opens the adapter and says which one, on stderr so stdout stays data.
pub fn open_gpu() -> Result<Gpu, Error> {
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", rnn_wgpu::bench::adapter_line(&gpu));
    Ok(gpu)
}

/// An error about a command-line argument.
pub fn bad_arg(arg: &str, reason: impl Into<String>) -> Error {
    InputError::Invalid {
        arg: arg.into(),
        reason: reason.into(),
    }
    .into()
}

/// Fails early, before any work, when the folder that `path` (an output of `flag`) would be
/// written into does not exist.
pub fn check_output(flag: &str, path: &std::path::Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(bad_arg(
            flag,
            format!(
                "{}: folder {} does not exist",
                path.display(),
                dir.display()
            ),
        ))
    }
}
