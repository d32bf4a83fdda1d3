//! `train --checkpoint FILE --checkpoint-every N` and `--resume FILE`: the model, the
//! optimizer's state, the step and the random state in one file every N steps and when the run
//! is interrupted (SIGINT, SIGTERM: the step finishes, the checkpoint is written, the process
//! exits with status 130), and a run that goes on from it to the parameters an unbroken run
//! with the same seed reaches, bit for bit.
//!
//! The file is the model's `.safetensors` (PyTorch names, loadable as a model) with the rest
//! beside it under [`CHECKPOINT_PREFIX`]: `checkpoint.optimizer.first` and `.second` (the
//! optimizer's state vectors), `checkpoint.h` (a text model's hidden state carried to the next
//! window), and `checkpoint.step` and `checkpoint.dropout_rng` in the metadata. The model file
//! `--save` writes stays a plain state dict.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rnn_wgpu::io::model_file::{CHECKPOINT_PREFIX, save_with};
use rnn_wgpu::io::{HostTensor, TensorFile};
use rnn_wgpu::{Error, Optimizer, OptimizerState, Rnn, Tensor};

use super::bad_arg;

/// Where a run starts and where it saves checkpoints.
pub struct Checkpointing {
    /// The first step to run: 1, or the one after a resumed checkpoint's.
    pub start: usize,
    /// A resumed text model's carried hidden state.
    pub h: Option<Vec<f32>>,
    save: Option<(PathBuf, usize)>,
    meta: HashMap<String, String>,
    /// Set by SIGINT or SIGTERM.
    stop: Arc<AtomicBool>,
}

fn name(part: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{part}")
}

impl Checkpointing {
    /// Saving to `path` every `every` steps (none without a path), starting at step 1;
    /// `meta` is the model file's metadata (the task's).
    pub fn new(path: Option<PathBuf>, every: usize, meta: HashMap<String, String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if path.is_some() {
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // The first signal asks for a checkpoint at the end of the step; a second one,
                // or one outside the steps' loop that nothing answers, ends the process. Where
                // the handlers cannot be set, an interrupt ends the run at once, as by default.
                let _ = signal_hook::flag::register_conditional_shutdown(
                    signal,
                    130,
                    Arc::clone(&stop),
                );
                let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
            }
        }
        Self {
            start: 1,
            h: None,
            save: path.map(|p| (p, every.max(1))),
            meta,
            stop,
        }
    }

    /// Takes a checkpoint file's state into `rnn` and `opt` and starts after its step.
    pub fn resume(
        &mut self,
        file: &TensorFile,
        rnn: &mut Rnn,
        opt: &mut Optimizer,
    ) -> Result<(), Error> {
        let meta = file.metadata();
        let number = |key: &str| -> Result<u64, Error> {
            meta.get(&name(key))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    bad_arg(
                        "--resume",
                        format!(
                            "{} has no {} in its metadata: it is a model file, not a checkpoint \
                             (train from a model with --model)",
                            file.path(),
                            name(key)
                        ),
                    )
                })
        };
        let step = number("step")?;
        let kind = opt.config().kind.name();
        match meta.get(&name("optimizer")) {
            Some(saved) if saved == kind => {}
            saved => {
                return Err(bad_arg(
                    "--resume",
                    format!(
                        "{} was saved with the {} optimizer; resume it with --optimizer {}",
                        file.path(),
                        saved.map_or("an unknown", String::as_str),
                        saved.map_or(kind, String::as_str)
                    ),
                ));
            }
        }
        let vector = |part: &str| -> Result<Vec<f32>, Error> {
            Ok(file
                .floats(&name(part))?
                .map(|(_, v)| v)
                .unwrap_or_default())
        };
        opt.set_state(&OptimizerState {
            step,
            first: vector("optimizer.first")?,
            second: vector("optimizer.second")?,
        })
        .map_err(|e| {
            bad_arg(
                "--resume",
                format!("{}: {e} (train it with the same --optimizer)", file.path()),
            )
        })?;
        rnn.set_dropout_rng_state(number("dropout_rng")?);
        self.h = file.floats(&name("h"))?.map(|(_, v)| v);
        self.start = step as usize + 1;
        Ok(())
    }

    /// After `step`: a checkpoint when one is due, `h` the hidden state carried to the next step.
    pub fn after_step(
        &self,
        step: usize,
        rnn: &Rnn,
        opt: &Optimizer,
        h: Option<&Tensor>,
    ) -> Result<(), Error> {
        // A step whose gradients were not finite is never saved as a state to go on from.
        if self.save.is_some()
            && let Some(bad) = opt.first_nonfinite_step()?
        {
            return Err(bad_arg(
                "training",
                format!(
                    "the loss or its gradients turned NaN or infinite at step {bad}; stopped at \
                     step {step}, and no checkpoint of it was written (a lower --lr, --clip, or \
                     another --init may help)"
                ),
            ));
        }
        let interrupted = self.stop.load(Ordering::Relaxed);
        let Some((path, every)) = &self.save else {
            return Ok(());
        };
        if !step.is_multiple_of(*every) && !interrupted {
            return Ok(());
        }
        let state = opt.state()?;
        let mut more = vec![
            (
                name("optimizer.first"),
                HostTensor::f32(&[state.first.len()], state.first),
            ),
            (
                name("optimizer.second"),
                HostTensor::f32(&[state.second.len()], state.second),
            ),
        ];
        if let Some(h) = h {
            more.push((name("h"), HostTensor::f32(h.shape(), h.to_vec()?)));
        }
        let mut meta = self.meta.clone();
        meta.insert(name("step"), state.step.to_string());
        meta.insert(name("optimizer"), opt.config().kind.name().to_string());
        meta.insert(name("dropout_rng"), rnn.dropout_rng_state().to_string());
        save_with(rnn, path, &meta, more)?;
        if interrupted {
            eprintln!(
                "\ninterrupted after step {step}: checkpoint saved to {} (--resume it to go on)",
                path.display()
            );
            std::process::exit(130);
        }
        Ok(())
    }
}
