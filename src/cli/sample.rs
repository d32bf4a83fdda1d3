//! `rnn-wgpu sample`: text from a character model, one step at a time.

use std::io::Write;
use std::path::PathBuf;

use rnn_wgpu::Error;
use rnn_wgpu::io;
use rnn_wgpu::text::Generator;

use super::{Act, apply_nonlinearity, bad_arg, open_gpu};

#[derive(clap::Args)]
pub struct SampleArgs {
    /// A character model saved by `train --text ... --save`.
    #[arg(long)]
    model: PathBuf,
    /// Text to start from (every character must be in the model's vocabulary).
    #[arg(long)]
    prime: String,
    /// Characters to generate after the prime.
    #[arg(long, default_value_t = 200)]
    len: usize,
    /// Softmax temperature: lower is more conservative, 0 always takes the likeliest.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// The hidden nonlinearity, for a model file that does not say; an error if the file says
    /// otherwise [default: the file's, else tanh].
    #[arg(long, value_enum)]
    nonlinearity: Option<Act>,
    /// Seed for the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Prints the prime and the generated text as it is made.
pub fn sample(a: &SampleArgs) -> Result<(), Error> {
    if a.prime.is_empty() {
        return Err(bad_arg("--prime", "must hold at least one character"));
    }
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        return Err(bad_arg(
            "--temperature",
            format!("{} is not a finite number >= 0", a.temperature),
        ));
    }
    let file = io::TensorFile::read(&a.model)?;
    let gpu = open_gpu()?;
    let mut model = io::model_file::from_file(&gpu, &file)?;
    apply_nonlinearity(&mut model.rnn, &file, &a.model, a.nonlinearity)?;
    let vocab = model.vocab().ok_or_else(|| {
        bad_arg(
            "--model",
            format!(
                "{} has no vocabulary; sample needs a character model saved by \
                 `train --text FILE --save M.safetensors`",
                a.model.display()
            ),
        )
    })?;
    if let Some(ch) = a.prime.chars().find(|c| !vocab.contains(c)) {
        return Err(bad_arg(
            "--prime",
            format!("{ch:?} is not in the model's vocabulary"),
        ));
    }
    let mut g = Generator::new(&mut model.rnn, vocab, a.seed)?;
    for ch in a.prime.chars() {
        g.feed(ch)?;
    }
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", a.prime);
    for _ in 0..a.len {
        let ch = g.next_char(a.temperature)?;
        let _ = write!(out, "{ch}");
        let _ = out.flush();
    }
    let _ = writeln!(out);
    Ok(())
}
