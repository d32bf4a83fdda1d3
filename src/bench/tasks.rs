//! The real-task benchmarks: a character language model's training step on a text, and a
//! sequence classifier's (the loss at the last step only), each beside a baseline measured in
//! the same run.

use super::{Budget, time_runs};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::loss::{Loss, Target};
use crate::model::{Rnn, RnnConfig, SplitMix64};
use crate::ops::Driver;
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::tensor::{ClassIds, Input, Tensor};
use crate::text::{Corpus, Streams};

/// A real task's training step: forward, cross-entropy, backward, clipping at norm 5 and an
/// Adam update, as `train` runs it.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a> {
    /// Next-character prediction at every step over windows of `text` (its own vocabulary
    /// `V`: I = O = V), `steps` characters by `batch` streams, `hidden` units.
    CharLm {
        /// The text.
        text: &'a str,
        /// T.
        steps: usize,
        /// B.
        batch: usize,
        /// H.
        hidden: usize,
    },
    /// One class per sequence of random inputs, its loss counted at the last step only (a
    /// loss mask), `classes` classes.
    SeqClass {
        /// T.
        steps: usize,
        /// B.
        batch: usize,
        /// I.
        input: usize,
        /// H.
        hidden: usize,
        /// O.
        classes: usize,
    },
}

/// One timed form of a task's training step.
#[derive(Debug, Clone)]
pub struct TaskMeasurement {
    /// `char-lm` or `seq-class`.
    pub task: &'static str,
    /// What was timed: `tokens` or `one-hot` inputs (char-lm), or the driver (seq-class).
    pub form: String,
    /// T, B, I, H, O.
    pub shape: [usize; 5],
    /// Median wall time of one training step, milliseconds: the batch's upload, the step,
    /// and waiting for the GPU to finish it.
    pub ms: f64,
    /// Timed steps.
    pub runs: usize,
    /// `T·B / seconds`.
    pub samples_per_s: f64,
    /// The loss after the last timed step (both forms of a task train the same model).
    pub loss: f32,
}

impl TaskMeasurement {
    /// A form of `task` timed at `ms` over `runs` steps; the loss is `rnn`'s latest.
    fn new(
        task: &'static str,
        form: String,
        shape: [usize; 5],
        (ms, runs): (f64, usize),
        rnn: &Rnn,
    ) -> Result<Self> {
        Ok(Self {
            task,
            form,
            shape,
            ms,
            runs,
            samples_per_s: (shape[0] * shape[1]) as f64 / (ms * 1e-3),
            loss: rnn.last_loss()?,
        })
    }

    /// One JSON object, with the speed-up over `baseline` (measured in the same run).
    pub fn to_json(&self, gpu: &Gpu, baseline: Option<&TaskMeasurement>) -> String {
        let [t, b, i, h, o] = self.shape;
        let mut v = serde_json::json!({
            "task": self.task,
            "form": self.form,
            "T": t, "B": b, "I": i, "H": h, "O": o,
            "mode": "train_step",
            "ms": self.ms,
            "samples_per_s": self.samples_per_s,
            "runs": self.runs,
            "loss": self.loss,
            "adapter": gpu.adapter_info().name,
            "kernels": format!("{:?}", gpu.kernel_style()),
        });
        if let Some(base) = baseline {
            v["baseline"] = serde_json::json!(base.form);
            v["speedup_vs_baseline"] = serde_json::json!(base.ms / self.ms);
        }
        v.to_string()
    }
}

/// The optimizer every task step runs: Adam at 2e-3, the global norm clipped to 5.
fn optimizer(rnn: &Rnn) -> Result<Optimizer> {
    Optimizer::new(
        rnn,
        OptimizerConfig {
            clip: Some(5.0),
            ..OptimizerKind::adam(2e-3).into()
        },
    )
}

/// A developer's knob (see `ops::run_timed`), with `RNN_WGPU_TIME_KERNELS` set: GPU time per
/// kernel of a step's forward, loss and backward, to stderr, the least of 9 runs (one run's
/// numbers on a busy 2-core machine varied 2x).
fn kernel_times(rnn: &mut Rnn, x: Input, h0: Option<&Tensor>, target: Target) -> Result<()> {
    if std::env::var_os("RNN_WGPU_TIME_KERNELS").is_none() {
        return Ok(());
    }
    let mut least: Vec<(&str, f64)> = Vec::new();
    for _ in 0..9 {
        for (name, ms) in rnn.time_phases(x, h0, Some((target, Loss::cross_entropy())))? {
            match least.iter_mut().find(|(n, _)| *n == name) {
                Some((_, m)) => *m = m.min(ms),
                None => least.push((name, ms)),
            }
        }
    }
    for (name, ms) in least {
        eprintln!("{ms:9.3} ms  {name}");
    }
    Ok(())
}

/// Times `task`'s training step in its forms; the first is the baseline: one-hot inputs for
/// the character model (the token ids' gather against the dense input projection they
/// replace), the naive driver for the classifier. Every form starts from the same seed and
/// runs as many steps as the first, so their losses, printed side by side, agree when both
/// computed the same training.
pub fn measure(gpu: &Gpu, task: Task, budget: &Budget) -> Result<Vec<TaskMeasurement>> {
    let mut budget = *budget;
    // After the baseline: exactly its number of steps.
    let same_steps = |budget: &mut Budget, runs: usize| {
        budget.min_runs = runs;
        budget.max_runs = runs;
        budget.min_time = std::time::Duration::ZERO;
    };
    match task {
        Task::CharLm {
            text,
            steps: t,
            batch: b,
            hidden: h,
        } => {
            let corpus = Corpus::new(text)?;
            let streams = Streams::new(corpus.ids(), b, t)?;
            let v = corpus.vocab().len();
            let mut out = Vec::new();
            for form in ["one-hot", "tokens"] {
                let mut rnn = Rnn::new(gpu, RnnConfig::new(v, h, v), 0)?;
                let mut opt = optimizer(&rnn)?;
                let mut ids = ClassIds::from_slice(gpu, &[t, b], &vec![0; t * b])?;
                let mut y = ClassIds::from_slice(gpu, &[t, b], &vec![0; t * b])?;
                let x = Tensor::zeros(gpu, &[t, b, v])?;
                let h0 = Tensor::zeros(gpu, &[1, b, h])?;
                let (mut xs, mut ys, mut hot) = (Vec::new(), Vec::new(), Vec::new());
                let (ms, runs) = time_runs(&budget, |k| {
                    streams.window(k, &mut xs, &mut ys);
                    y.write(&ys)?;
                    let input = if form == "tokens" {
                        ids.write(&xs)?;
                        Input::Tokens(&ids)
                    } else {
                        hot.clear();
                        hot.resize(t * b * v, 0.0);
                        for (r, &id) in xs.iter().enumerate() {
                            hot[r * v + id as usize] = 1.0;
                        }
                        x.write(&hot)?;
                        Input::Values(&x)
                    };
                    let fw = rnn.train_step(
                        input,
                        Some(&h0),
                        Target::Classes(&y),
                        Loss::cross_entropy(),
                        &mut opt,
                    )?;
                    h0.copy_from(&fw.h_n)?;
                    gpu.wait("benchmark", None)
                })?;
                if form == "tokens" {
                    let target = Target::Classes(&y);
                    kernel_times(&mut rnn, Input::Tokens(&ids), Some(&h0), target)?;
                }
                same_steps(&mut budget, runs);
                let shape = [t, b, v, h, v];
                out.push(TaskMeasurement::new(
                    "char-lm",
                    form.into(),
                    shape,
                    (ms, runs),
                    &rnn,
                )?);
            }
            Ok(out)
        }
        Task::SeqClass {
            steps: t,
            batch: b,
            input: i,
            hidden: h,
            classes: o,
        } => {
            if o < 2 {
                return Err(InputError::Invalid {
                    arg: "classes".into(),
                    reason: format!("{o}: a classifier needs at least 2 classes"),
                }
                .into());
            }
            let mut rng = SplitMix64::new(0);
            let xs: Vec<f32> = (0..t * b * i).map(|_| rng.normal() as f32).collect();
            // Each sequence's class, repeated at every step; the mask counts the last only.
            let classes: Vec<i64> = (0..b)
                .map(|_| (rng.next_f64() * o as f64) as i64 % o as i64)
                .collect();
            let ys: Vec<i64> = (0..t * b).map(|r| classes[r % b]).collect();
            let mask: Vec<f32> = (0..t * b)
                .map(|r| f32::from(u8::from(r / b == t - 1)))
                .collect();
            let x = Tensor::from_slice(gpu, &[t, b, i], &xs)?;
            let y = ClassIds::from_slice(gpu, &[t, b], &ys)?;
            let m = Tensor::from_slice(gpu, &[t, b], &mask)?;
            let mut out = Vec::new();
            for driver in [Driver::Naive, Driver::Auto] {
                let mut rnn = Rnn::new(gpu, RnnConfig::new(i, h, o), 0)?;
                rnn.set_driver(driver);
                let mut opt = optimizer(&rnn)?;
                let target = Target::Classes(&y).with_mask(&m);
                let (ms, runs) = time_runs(&budget, |_| {
                    rnn.train_step(&x, None, target, Loss::cross_entropy(), &mut opt)?;
                    gpu.wait("benchmark", None)
                })?;
                if driver == Driver::Auto {
                    kernel_times(&mut rnn, Input::Values(&x), None, target)?;
                }
                let hp = crate::model::padded_hidden(gpu, rnn.config());
                let form = match driver.resolve(gpu, b, hp)? {
                    _ if driver == Driver::Naive => "naive".to_string(),
                    crate::ops::recurrence::Loop::PerStep => "auto (per_step)".into(),
                    crate::ops::recurrence::Loop::Persistent => "auto (persistent)".into(),
                };
                same_steps(&mut budget, runs);
                let shape = [t, b, i, h, o];
                out.push(TaskMeasurement::new(
                    "seq-class",
                    form,
                    shape,
                    (ms, runs),
                    &rnn,
                )?);
            }
            Ok(out)
        }
    }
}
