//! `rnn-wgpu run`: a model file on an input file, outputs to an output file.

use std::collections::HashMap;
use std::path::PathBuf;

use rnn_wgpu::io::{self, TensorFile};
use rnn_wgpu::{Error, LossKind, Reduction};

use super::{Act, apply_nonlinearity, check_not_an_input, check_output, open_gpu};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The model (.safetensors, PyTorch names).
    #[arg(long)]
    model: PathBuf,
    /// The input: x [T, B, I] ([B, T, I] with --batch-first); optionally h0 [L·D, B, H] and a
    /// target y.
    #[arg(long)]
    input: PathBuf,
    /// Where to write o, h_n and, with a target, loss and grad.* (written atomically).
    #[arg(long)]
    output: PathBuf,
    /// The loss; by default mse for a float y, cross_entropy for integer class ids.
    #[arg(long, value_enum)]
    loss: Option<LossName>,
    /// How the loss is reduced, as PyTorch's `reduction`.
    #[arg(long, value_enum, default_value_t = ReductionName::Mean)]
    reduction: ReductionName,
    /// The hidden nonlinearity, for a model file that does not say (a bare PyTorch
    /// state_dict); an error if the file says otherwise [default: the file's, else tanh].
    #[arg(long, value_enum)]
    nonlinearity: Option<Act>,
    /// x, y, o and grad.x put the batch first, [B, T, ...], as PyTorch's batch_first=True.
    #[arg(long)]
    batch_first: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum LossName {
    Mse,
    #[value(alias = "cross-entropy")]
    CrossEntropy,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReductionName {
    Mean,
    Sum,
}

/// Loads, runs and writes; nothing is written unless everything succeeded.
pub fn run(a: &RunArgs) -> Result<(), Error> {
    // Read both files and check the output's folder before touching the GPU.
    check_output("--output", &a.output)?;
    check_not_an_input(
        "--output",
        &a.output,
        &[("--model", Some(&a.model)), ("--input", Some(&a.input))],
    )?;
    let model_file = TensorFile::read(&a.model)?;
    let input = TensorFile::read(&a.input)?;
    let gpu = open_gpu()?;
    let mut model = io::model_file::from_file(&gpu, &model_file)?;
    model.rnn.set_batch_first(a.batch_first);
    apply_nonlinearity(&mut model.rnn, &model_file, &a.model, a.nonlinearity)?;
    let loss = a.loss.map(|l| match l {
        LossName::Mse => LossKind::Mse,
        LossName::CrossEntropy => LossKind::CrossEntropy,
    });
    let reduction = match a.reduction {
        ReductionName::Mean => Reduction::Mean,
        ReductionName::Sum => Reduction::Sum,
    };
    let out = io::run::run(&mut model.rnn, &input, loss, reduction)?;
    io::write(&a.output, &out, &HashMap::new())?;
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("wrote {}: {}", a.output.display(), names.join(", "));
    Ok(())
}
