//! The subcommands of the `rnn-wgpu` program, one module each.

pub mod analyze;
pub mod bench;
pub mod checkpoint;
pub mod info;
pub mod plot;
pub mod run;
pub mod sample;
pub mod train;

use rnn_wgpu::io::TensorFile;
use rnn_wgpu::io::model_file::keys;
use rnn_wgpu::{Error, Gpu, InputError, Nonlinearity, Rnn};

/// `--nonlinearity`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Act {
    Tanh,
    Relu,
    /// No nonlinearity: a linear recurrence (not in PyTorch's nn.RNN).
    Identity,
}

impl From<Act> for Nonlinearity {
    fn from(a: Act) -> Self {
        match a {
            Act::Tanh => Nonlinearity::Tanh,
            Act::Relu => Nonlinearity::Relu,
            Act::Identity => Nonlinearity::Identity,
        }
    }
}

/// Gives `rnn`, loaded from `file` (at `path`, the value of `--model`), its nonlinearity: the
/// file's where its metadata says, `flag` where it does not (a bare PyTorch `state_dict`
/// cannot), else tanh with one line on stderr naming the assumption and the flag. A flag that
/// disagrees with the file is an error.
pub fn apply_nonlinearity(
    rnn: &mut Rnn,
    file: &TensorFile,
    path: &std::path::Path,
    flag: Option<Act>,
) -> Result<(), Error> {
    let stated = file.metadata().get(keys::NONLINEARITY);
    match (stated, flag) {
        (Some(s), Some(f)) if s != Nonlinearity::from(f).name() => Err(bad_arg(
            "--nonlinearity",
            format!(
                "{} says {s}, but --nonlinearity says {}; leave the flag out",
                path.display(),
                Nonlinearity::from(f).name()
            ),
        )),
        (Some(_), _) => Ok(()),
        (None, Some(f)) => {
            rnn.set_nonlinearity(f.into());
            Ok(())
        }
        (None, None) => {
            eprintln!(
                "note: {} does not say its nonlinearity (a PyTorch state_dict cannot): running \
                 it as tanh; pass --nonlinearity relu for a relu model",
                path.display()
            );
            Ok(())
        }
    }
}

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

/// Whether `a` and `b` name the same existing file, through whatever path or link.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Fails early, before any work, when `path` (an output of `flag`) is one of the files the
/// command only reads (`inputs`: flag and path): writing it would destroy that file.
pub fn check_not_an_input(
    flag: &str,
    path: &std::path::Path,
    inputs: &[(&str, Option<&std::path::Path>)],
) -> Result<(), Error> {
    for (input_flag, input) in inputs {
        if let Some(input) = input
            && same_file(path, input)
        {
            return Err(bad_arg(
                flag,
                format!(
                    "{} is the file given to {input_flag} ({}); writing it would destroy it, \
                     choose another path",
                    path.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
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
