//! `rnn-wgpu train`: built-in tasks and character-level language models on a text file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rnn_wgpu::io::{self, model_file::keys};
use rnn_wgpu::text::{Corpus, Generator, Streams};
use rnn_wgpu::{
    ClassIds, Error, Gpu, Init, InputError, Loss, LrSchedule, MAX_BLOCK_DEPTH, Mlp, Nonlinearity,
    Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Target, Tensor, task,
};

use super::checkpoint::Checkpointing;
use super::{Act, apply_nonlinearity, bad_arg, check_not_an_input, check_output, open_gpu, plot};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Built-in task: `sine` (next-step prediction of noisy sine waves, mse), `recall`
    /// (repeat the symbol seen --delay steps ago, cross-entropy), or the long-memory probes
    /// `adding` (the sum of two marked values of --seq-len, scored at the last step, mse)
    /// and `copy` (reproduce 10 symbols after --delay blank steps, cross-entropy). Ignored
    /// with --text.
    #[arg(long, value_enum, default_value_t = TaskName::Sine)]
    task: TaskName,
    /// Train a character-level language model on this text file instead.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Hidden units [default: sine 32, recall 64, text 128].
    #[arg(long)]
    hidden: Option<usize>,
    /// Stacked recurrent layers (`num_layers`) [default: 1, or the resumed model's].
    #[arg(long)]
    layers: Option<usize>,
    /// Run every layer in both directions (a new model only; a resumed one keeps its own).
    #[arg(long)]
    bidirectional: bool,
    /// A deep input (Pascanu et al. 2014): this many hidden layers between x and the bottom
    /// recurrent layer (a new model only; float inputs, so not with --text) [default: 0].
    #[arg(long, default_value_t = 0)]
    input_depth: usize,
    /// Units in each layer of the deep input [default: H].
    #[arg(long, requires = "input_depth")]
    input_width: Option<usize>,
    /// The deep input's nonlinearity [default: tanh].
    #[arg(long, value_enum, requires = "input_depth")]
    input_nonlinearity: Option<Act>,
    /// Residual connections in the deep input: every layer after the first adds its input to
    /// its output (needs --input-depth 2 or more).
    #[arg(long)]
    input_residual: bool,
    /// A deep transition (DT-RNN, Pascanu et al. 2014): this many more layers inside every
    /// step of every recurrent layer, from act(a(t)) to h(t) (a new model only) [default: 0].
    #[arg(long, default_value_t = 0)]
    transition_depth: usize,
    /// Units between the deep transition's layers [default: H].
    #[arg(long, requires = "transition_depth")]
    transition_width: Option<usize>,
    /// The deep transition's nonlinearity [default: tanh].
    #[arg(long, value_enum, requires = "transition_depth")]
    transition_nonlinearity: Option<Act>,
    /// A shortcut from h(t-1) into the deep transition's last layer (DT(S)-RNN), so the
    /// shortest path from one state to the next stays one layer.
    #[arg(long)]
    skip: bool,
    /// A deep output (DO-RNN, Pascanu et al. 2014): this many hidden layers between the top
    /// recurrent layer and the head (a new model only) [default: 0, none].
    #[arg(long, default_value_t = 0)]
    output_depth: usize,
    /// Units in each layer of the deep output [default: the top layer's output width, D·H].
    #[arg(long, requires = "output_depth")]
    output_width: Option<usize>,
    /// The deep output's nonlinearity [default: tanh].
    #[arg(long, value_enum, requires = "output_depth")]
    output_nonlinearity: Option<Act>,
    /// Residual connections in the deep output, as --input-residual (needs --output-depth 2
    /// or more).
    #[arg(long)]
    output_residual: bool,
    /// Dropout probability on every layer's output but the last, in training
    /// (torch.nn.RNN's dropout) [default: 0, or the resumed model's].
    #[arg(long, allow_hyphen_values = true)]
    dropout: Option<f32>,
    /// Training steps, one batch each [default: sine 400, recall 500, text 1000].
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Passes over the text (with --text), instead of --steps.
    #[arg(long)]
    epochs: Option<usize>,
    /// Time steps per sequence, the truncation length of back-propagation
    /// [default: sine 64, recall 32, text 64].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Learning rate [default: 0.01; text 0.003].
    #[arg(long, allow_hyphen_values = true)]
    lr: Option<f32>,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    optimizer: OptimizerName,
    /// Weight decay: adamw's decoupled decay of the weights, the biases left out [default:
    /// 0.01]; for adam and sgd PyTorch's L2 term on every parameter [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    weight_decay: Option<f32>,
    /// Momentum (sgd only), in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    momentum: f32,
    /// How the learning rate moves: constant, cosine (down to zero at the last step) or
    /// step:N:G (times G every N steps); each after --warmup steps of linear warm-up. Adam's
    /// moments are kept as it moves.
    #[arg(long, default_value = "constant", value_name = "KIND")]
    lr_schedule: String,
    /// Steps of linear learning-rate warm-up at the start.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Clip the global gradient norm to this value (0: no clipping; 0 or more).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    clip: f32,
    /// Clamp every gradient value to ±this before the update, and before the norm is
    /// clipped (clip_grad_value_; 0: no clamping; 0 or more).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    clip_value: f32,
    /// Hidden nonlinearity [default: tanh, or the resumed model's].
    #[arg(long, value_enum)]
    nonlinearity: Option<Act>,
    /// How every layer's W starts (a new model only): pytorch, orthogonal, identity (W = I
    /// and zero biases: IRNN, with --nonlinearity relu) or scaled:R (PyTorch's draw at
    /// spectral radius R) [default: pytorch].
    #[arg(long, value_name = "KIND")]
    init: Option<Init>,
    /// One layer's start, K=KIND (K from 0; repeatable), over --init.
    #[arg(long = "layer-init", value_name = "K=KIND")]
    layer_init: Vec<String>,
    /// Noise added to the sine inputs (standard deviation, 0 or more).
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    noise: f64,
    /// Distinct symbols of the recall task (2 or more).
    #[arg(long, default_value_t = 4)]
    symbols: usize,
    /// How many steps back the recall task looks (1 to --seq-len - 1), or the copy task's
    /// blank steps between the symbols and the delimiter [default: recall 4, copy 10].
    #[arg(long)]
    delay: Option<usize>,
    /// Fraction of the text held out for validation, in [0, 0.5].
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    valid: f64,
    /// Seed for the data and the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the loss every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Compute the validation loss every this many steps [default: --log-every].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Start from this model file's weights (its sizes must fit the task), with a fresh
    /// optimizer at step 1. To go on with an interrupted run instead, --resume its checkpoint.
    #[arg(long, conflicts_with = "resume")]
    model: Option<PathBuf>,
    /// Save a checkpoint here every --checkpoint-every steps, written atomically: the model
    /// (loadable as a model file), the optimizer's state, the step and the random state.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100, value_name = "N")]
    checkpoint_every: usize,
    /// Go on with the run a --checkpoint file saved: from the step after it, with its weights,
    /// optimizer state and random state, to the parameters the unbroken run reaches (give the
    /// same task, --seed, --steps and training flags as the first run).
    #[arg(long, value_name = "FILE")]
    resume: Option<PathBuf>,
    /// Save the trained model here (.safetensors, PyTorch names; written atomically).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Draw the loss curve to this image (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Record ‖dL/dh(t)‖ for every step t, layer and direction at every --log-every step,
    /// one JSON object a line: {"step": S, "layer": K, "direction": D, "norms": [...]};
    /// with --plot, the last curves are drawn beside it (PLOT-grad-norms.svg or .png).
    #[arg(long, value_name = "FILE")]
    grad_norms: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TaskName {
    Sine,
    Recall,
    Adding,
    Copy,
}

impl TrainArgs {
    /// The file the model starts from: `--model`'s weights or `--resume`'s checkpoint.
    fn start_file(&self) -> Option<&PathBuf> {
        self.model.as_ref().or(self.resume.as_ref())
    }

    /// `--delay`, or the task's default.
    fn delay(&self) -> usize {
        self.delay.unwrap_or(match self.task {
            TaskName::Copy => 10,
            _ => 4,
        })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OptimizerName {
    Adam,
    #[value(name = "adamw")]
    AdamW,
    Sgd,
}

/// Sizes and defaults that depend on the task.
struct Plan {
    name: &'static str,
    input: usize,
    output: usize,
    hidden: usize,
    steps: usize,
    seq_len: usize,
    lr: f32,
}

/// Trains, reports, and saves and plots when asked.
/// A problem with the text, named after the file given to `--text`.
fn text_err(a: &TrainArgs, e: Error) -> Error {
    let path = a
        .text
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    let reason = match e {
        Error::Input(InputError::Invalid { reason, .. }) => reason,
        other => other.to_string(),
    };
    bad_arg("--text", format!("{path}: {reason}"))
}

/// `--lr-schedule` and `--warmup` over `total` steps.
fn lr_schedule(a: &TrainArgs, total: u64) -> Result<LrSchedule, Error> {
    let bad = |why: &str| bad_arg("--lr-schedule", format!("`{}`: {why}", a.lr_schedule));
    let warmup = a.warmup;
    Ok(match a.lr_schedule.as_str() {
        "constant" if warmup == 0 => LrSchedule::Constant,
        "constant" => LrSchedule::Step {
            warmup,
            every: u64::MAX,
            gamma: 1.0,
        },
        "cosine" => LrSchedule::Cosine { warmup, total },
        other => {
            let parts: Vec<&str> = other.split(':').collect();
            match parts[..] {
                ["step", n, g] => {
                    let every: u64 = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("N must be a whole number of steps, 1 or more"))?;
                    let gamma: f32 = g
                        .parse()
                        .ok()
                        .filter(|g: &f32| g.is_finite() && *g > 0.0)
                        .ok_or_else(|| bad("G must be a positive number"))?;
                    LrSchedule::Step {
                        warmup,
                        every,
                        gamma,
                    }
                }
                _ => return Err(bad("expected constant, cosine or step:N:G")),
            }
        }
    })
}

/// Sets the learning rate for update `step` of `total` from the schedule.
fn schedule(a: &TrainArgs, opt: &mut Optimizer, step: usize, total: usize) -> Result<(), Error> {
    let sched = lr_schedule(a, total as u64)?;
    if sched != LrSchedule::Constant {
        let base = opt.initial_lr();
        opt.set_lr(base * sched.factor(step as u64))?;
    }
    Ok(())
}

/// `m` with residual connections where `on` (its `flag`), which need two layers or more.
fn residual(flag: &str, depth_flag: &str, m: Mlp, on: bool) -> Result<Mlp, Error> {
    if on && m.depth < 2 {
        return Err(bad_arg(
            flag,
            format!(
                "goes around the block's layers after the first, and it has {} of them; give \
                 {depth_flag} 2 or more",
                m.depth.saturating_sub(1)
            ),
        ));
    }
    Ok(m.with_residual(on))
}

/// The deeper block its flags (depth, width, nonlinearity) ask for; `default_width` when
/// the width is not given.
fn block(
    (depth_flag, width_flag, act_flag): (&str, &str, &str),
    (depth, width, act): (usize, Option<usize>, Option<Act>),
    default_width: usize,
) -> Result<Mlp, Error> {
    if depth == 0 {
        if width.is_some() || act.is_some() {
            return Err(bad_arg(
                depth_flag,
                format!(
                    "is 0 (no block), so {width_flag} and {act_flag} have nothing to shape; give \
                     {depth_flag} 1 or more"
                ),
            ));
        }
        return Ok(Mlp::NONE);
    }
    if depth > MAX_BLOCK_DEPTH {
        return Err(bad_arg(
            depth_flag,
            format!("{depth} is more than {MAX_BLOCK_DEPTH} layers"),
        ));
    }
    let width = width.unwrap_or(default_width);
    if width == 0 {
        return Err(bad_arg(width_flag, "must be at least 1"));
    }
    let act = act.map_or(Nonlinearity::Tanh, Act::into);
    Ok(Mlp::new(depth, width, act))
}

/// `--layer-init`'s K=KIND values, each K a layer of the model's `layers`.
fn layer_inits(a: &TrainArgs, layers: usize) -> Result<Vec<(usize, Init)>, Error> {
    a.layer_init
        .iter()
        .map(|v| {
            let bad = |why: String| bad_arg("--layer-init", format!("`{v}`: {why}"));
            let (k, kind) = v
                .split_once('=')
                .ok_or_else(|| bad("expected K=KIND, such as 1=orthogonal".into()))?;
            let k: usize = k
                .parse()
                .map_err(|_| bad(format!("`{k}` is not a layer number")))?;
            if k >= layers {
                return Err(bad(format!(
                    "the model has {layers} layers, counted from 0"
                )));
            }
            Ok((k, kind.parse::<Init>().map_err(bad)?))
        })
        .collect()
}

/// Every numeric flag within its range, before any work: each message names the flag, the
/// value and what would be accepted.
fn check_ranges(a: &TrainArgs) -> Result<(), Error> {
    let positive = |flag: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(bad_arg(flag, format!("{v} is not a number above 0")))
        }
    };
    let at_least_zero = |flag: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(bad_arg(flag, format!("{v} is not a number, 0 or more")))
        }
    };
    if let Some(lr) = a.lr {
        positive("--lr", f64::from(lr))?;
    }
    at_least_zero("--clip", f64::from(a.clip))?;
    at_least_zero("--clip-value", f64::from(a.clip_value))?;
    lr_schedule(a, 1)?;
    at_least_zero("--noise", a.noise)?;
    if !(0.0..1.0).contains(&a.momentum) {
        return Err(bad_arg(
            "--momentum",
            format!("{} is outside [0, 1)", a.momentum),
        ));
    }
    if !(0.0..=0.5).contains(&a.valid) {
        return Err(bad_arg(
            "--valid",
            format!("{} is outside [0, 0.5]", a.valid),
        ));
    }
    if a.hidden == Some(0) {
        return Err(bad_arg("--hidden", "must be at least 1"));
    }
    if a.symbols < 2 {
        return Err(bad_arg(
            "--symbols",
            format!("{} symbols: the recall task needs at least 2", a.symbols),
        ));
    }
    if a.delay == Some(0) {
        return Err(bad_arg("--delay", "must be at least 1"));
    }
    if a.log_every == 0 {
        return Err(bad_arg("--log-every", "must be at least 1"));
    }
    if a.eval_every == Some(0) {
        return Err(bad_arg("--eval-every", "must be at least 1"));
    }
    Ok(())
}

pub fn train(a: &TrainArgs) -> Result<(), Error> {
    check_ranges(a)?;
    if let Some(p) = a.dropout
        && !(0.0..1.0).contains(&p)
    {
        return Err(bad_arg(
            "--dropout",
            format!("{p} is not a probability in [0, 1)"),
        ));
    }
    if a.layers == Some(0) {
        return Err(bad_arg("--layers", "must be at least 1"));
    }
    for (flag, path) in [
        ("--save", &a.save),
        ("--plot", &a.plot),
        ("--checkpoint", &a.checkpoint),
        ("--grad-norms", &a.grad_norms),
    ] {
        if let Some(p) = path {
            check_output(flag, p)?;
            // A run may checkpoint over the file it resumed from; nothing else may.
            let resumed = (flag != "--checkpoint")
                .then_some(a.resume.as_deref())
                .flatten();
            check_not_an_input(
                flag,
                p,
                &[
                    ("--text", a.text.as_deref()),
                    ("--model", a.model.as_deref()),
                    ("--resume", resumed),
                ],
            )?;
        }
    }
    if a.checkpoint.is_some() && a.checkpoint_every == 0 {
        return Err(bad_arg("--checkpoint-every", "must be at least 1"));
    }
    if let Some(p) = &a.plot
        && !matches!(plot::extension(p).as_deref(), Some("svg" | "png"))
    {
        return Err(bad_arg(
            "--plot",
            format!("{}: the image must be a .svg or .png file", p.display()),
        ));
    }
    if a.batch == 0 {
        return Err(bad_arg("--batch", "must be at least 1"));
    }
    if a.steps == Some(0) || a.epochs == Some(0) {
        return Err(bad_arg(
            "--steps",
            "--steps and --epochs must be at least 1",
        ));
    }
    if let (Some(save), Some(plot)) = (&a.save, &a.plot)
        && save == plot
    {
        return Err(bad_arg(
            "--plot",
            format!("{} is also the --save path", plot.display()),
        ));
    }
    if a.epochs.is_some() && a.text.is_none() {
        return Err(bad_arg(
            "--epochs",
            "needs --text; built-in tasks make fresh data every step, use --steps",
        ));
    }
    // Read every file before opening the GPU, so a bad path fails at once.
    let text = match &a.text {
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|source| rnn_wgpu::FileError::Io {
                path: p.display().to_string(),
                source,
            })?,
        ),
        None => None,
    };
    let resume = match a.start_file() {
        Some(p) => Some(io::TensorFile::read(p)?),
        None => None,
    };
    let gpu = open_gpu()?;
    let loaded = match &resume {
        Some(f) => Some(io::model_file::from_file(&gpu, f)?),
        None => None,
    };
    let corpus = match &text {
        Some(t) => Some(match loaded.as_ref().map(|m| m.vocab()) {
            Some(Some(v)) => Corpus::with_vocab(t, v).map_err(|e| text_err(a, e))?,
            Some(None) => {
                return Err(bad_arg(
                    "--model",
                    "has no vocabulary, so it is not a character model; train it with --text",
                ));
            }
            None => Corpus::new(t).map_err(|e| text_err(a, e))?,
        }),
        None => None,
    };
    let plan = match (&corpus, a.task) {
        (Some(c), _) => Plan {
            name: "text",
            input: c.vocab().len(),
            output: c.vocab().len(),
            hidden: 128,
            steps: 1000,
            seq_len: 64,
            lr: 0.003,
        },
        (None, TaskName::Sine) => Plan {
            name: "sine",
            input: 1,
            output: 1,
            hidden: 32,
            steps: 400,
            seq_len: 64,
            lr: 0.01,
        },
        (None, TaskName::Recall) => Plan {
            name: "recall",
            input: a.symbols.max(1),
            output: a.symbols.max(1) + 1,
            hidden: 64,
            steps: 500,
            seq_len: 32,
            lr: 0.01,
        },
        (None, TaskName::Adding) => Plan {
            name: "adding",
            input: 2,
            output: 1,
            hidden: 64,
            steps: 1000,
            seq_len: 30,
            lr: 0.01,
        },
        (None, TaskName::Copy) => {
            if a.seq_len.is_some() {
                return Err(bad_arg(
                    "--seq-len",
                    "the copy task is --delay + 20 steps long; set --delay instead",
                ));
            }
            Plan {
                name: "copy",
                input: task::COPY_CLASSES,
                output: task::COPY_CLASSES,
                hidden: 64,
                steps: 1000,
                seq_len: a.delay() + 20,
                lr: 0.01,
            }
        }
    };
    let mut rnn = match loaded {
        Some(m) => {
            let c = *m.rnn.config();
            let path = a
                .start_file()
                .map_or(String::new(), |p| p.display().to_string());
            if (c.input, c.output) != (plan.input, plan.output) {
                return Err(bad_arg(
                    "--model",
                    format!(
                        "{path} has {} inputs and {} outputs; the {} task needs {} and {}",
                        c.input, c.output, plan.name, plan.input, plan.output
                    ),
                ));
            }
            if a.bidirectional && !c.bidirectional {
                return Err(bad_arg(
                    "--bidirectional",
                    format!("{path} runs one direction; leave --bidirectional out"),
                ));
            }
            if a.layers.is_some_and(|l| l != c.layers) {
                return Err(bad_arg(
                    "--layers",
                    format!("{path} has {} layers; leave --layers out", c.layers),
                ));
            }
            if a.hidden.is_some_and(|h| h != c.hidden) {
                return Err(bad_arg(
                    "--hidden",
                    format!("{path} has {} hidden units; leave --hidden out", c.hidden),
                ));
            }
            for (flag, given) in [
                (
                    "--output-depth",
                    a.output_depth > 0
                        || a.output_width.is_some()
                        || a.output_nonlinearity.is_some()
                        || a.output_residual,
                ),
                (
                    "--input-depth",
                    a.input_depth > 0
                        || a.input_width.is_some()
                        || a.input_nonlinearity.is_some()
                        || a.input_residual,
                ),
                (
                    "--transition-depth",
                    a.transition_depth > 0
                        || a.transition_width.is_some()
                        || a.transition_nonlinearity.is_some()
                        || a.skip,
                ),
            ] {
                if given {
                    return Err(bad_arg(
                        flag,
                        format!("{path} keeps its own blocks; leave {flag} out"),
                    ));
                }
            }
            if a.init.is_some() || !a.layer_init.is_empty() {
                let flag = if a.init.is_some() {
                    "--init"
                } else {
                    "--layer-init"
                };
                return Err(bad_arg(
                    flag,
                    format!("{path} keeps its trained weights; leave {flag} out"),
                ));
            }
            let mut rnn = m.rnn;
            if let Some(p) = a.dropout {
                rnn.set_dropout(p)?;
            }
            if let (Some(f), Some(p)) = (&resume, a.start_file()) {
                apply_nonlinearity(&mut rnn, f, p, a.nonlinearity)?;
            }
            rnn
        }
        None => {
            let hidden = a.hidden.unwrap_or(plan.hidden);
            let top = hidden * if a.bidirectional { 2 } else { 1 };
            let deep_output = block(
                ("--output-depth", "--output-width", "--output-nonlinearity"),
                (a.output_depth, a.output_width, a.output_nonlinearity),
                top,
            )?;
            let deep_input = block(
                ("--input-depth", "--input-width", "--input-nonlinearity"),
                (a.input_depth, a.input_width, a.input_nonlinearity),
                hidden,
            )?;
            let deep_transition = block(
                (
                    "--transition-depth",
                    "--transition-width",
                    "--transition-nonlinearity",
                ),
                (
                    a.transition_depth,
                    a.transition_width,
                    a.transition_nonlinearity,
                ),
                hidden,
            )?;
            let deep_input = residual(
                "--input-residual",
                "--input-depth",
                deep_input,
                a.input_residual,
            )?;
            let deep_output = residual(
                "--output-residual",
                "--output-depth",
                deep_output,
                a.output_residual,
            )?;
            if a.skip && !deep_transition.is_some() {
                return Err(bad_arg(
                    "--skip",
                    "is the shortcut beside a deep transition; give --transition-depth 1 or more",
                ));
            }
            if deep_input.is_some() && corpus.is_some() {
                return Err(bad_arg(
                    "--input-depth",
                    "a character model feeds token ids straight into the bottom layer; a deep \
                     input block takes float inputs (the built-in tasks)",
                ));
            }
            let config = RnnConfig::new(plan.input, hidden, plan.output)
                .with_deep_input(deep_input)
                .with_deep_transition(deep_transition, a.skip)
                .with_deep_output(deep_output)
                .with_layers(a.layers.unwrap_or(1))
                .with_bidirectional(a.bidirectional)
                .with_dropout(a.dropout.unwrap_or(0.0))
                .with_nonlinearity(a.nonlinearity.map_or(Nonlinearity::Tanh, Act::into))
                .with_init(a.init.unwrap_or_default());
            let mut rnn = Rnn::new(&gpu, config, a.seed)?;
            for (k, init) in layer_inits(a, config.layers)? {
                rnn.init_layer(k, init, a.seed)?;
            }
            rnn
        }
    };
    rnn.set_grad_norms(a.grad_norms.is_some());
    // Next-step prediction with both directions: the reverse direction reads x(t + 1), the
    // very target at step t, so the loss falls while nothing is learnt (and a text model's
    // reverse state cannot be carried to the next window).
    if rnn.config().bidirectional && (corpus.is_some() || a.task == TaskName::Sine) {
        let what = if corpus.is_some() {
            "a character model"
        } else {
            "the sine task"
        };
        let flag = if a.bidirectional {
            "--bidirectional"
        } else {
            "--model"
        };
        return Err(bad_arg(
            flag,
            format!(
                "{what} predicts the next value, which a bidirectional model's reverse \
                 direction reads as input; use one direction, or --task recall"
            ),
        ));
    }
    let lr = a.lr.unwrap_or(plan.lr);
    // AdamW's decay is its own; the others take it as PyTorch's L2 term.
    let (kind, l2) = match a.optimizer {
        OptimizerName::Adam => (OptimizerKind::adam(lr), a.weight_decay.unwrap_or(0.0)),
        OptimizerName::AdamW => (
            OptimizerKind::adamw(lr, a.weight_decay.unwrap_or(0.01)),
            0.0,
        ),
        OptimizerName::Sgd => (
            OptimizerKind::sgd(lr, a.momentum),
            a.weight_decay.unwrap_or(0.0),
        ),
    };
    let mut opt = Optimizer::new(
        &rnn,
        OptimizerConfig {
            kind,
            clip: (a.clip > 0.0).then_some(a.clip),
            clip_value: (a.clip_value > 0.0).then_some(a.clip_value),
            weight_decay: l2,
        },
    )?;
    let t = a.seq_len.unwrap_or(plan.seq_len);
    if t == 0 {
        return Err(bad_arg("--seq-len", "must be at least 1"));
    }
    if corpus.is_none() && a.task == TaskName::Recall && a.delay() >= t {
        return Err(bad_arg(
            "--delay",
            format!(
                "{} steps back does not fit sequences of {t} steps (--seq-len): use 1 to {}",
                a.delay(),
                t.saturating_sub(1)
            ),
        ));
    }
    let c = *rnn.config();
    let mut shape = match (c.layers, c.bidirectional) {
        (1, false) => String::new(),
        (l, false) => format!("{l} layers, "),
        (1, true) => "bidirectional, ".to_string(),
        (l, true) => format!("{l} layers, bidirectional, "),
    };
    if c.dropout > 0.0 && c.layers > 1 {
        shape.push_str(&format!("dropout {}, ", c.dropout));
    }
    let transition = if c.skip {
        "deep transition with shortcut"
    } else {
        "deep transition"
    };
    for (what, m) in [
        ("deep input", c.deep_input),
        (transition, c.deep_transition),
        ("deep output", c.deep_output),
    ] {
        if m.is_some() {
            let (d, w, n) = (m.depth, m.width, m.nonlinearity.name());
            let r = if m.residual { " residual" } else { "" };
            shape.push_str(&format!("{what} {d} x {w} {n}{r}, "));
        }
    }
    // How W started, when not PyTorch's draw (a resumed model's start is not known).
    if a.model.is_none() {
        let starts: Vec<String> = std::iter::once(c.init)
            .filter(|i| *i != Init::Pytorch)
            .map(|i| format!("W {}", i.name()))
            .chain(a.layer_init.iter().map(|v| format!("layer {v}")))
            .collect();
        if !starts.is_empty() {
            shape.push_str(&format!("{}, ", starts.join(", ")));
        }
    }
    let model_line = format!(
        "model: {} RNN, {shape}H = {}, {} parameters",
        c.nonlinearity.name(),
        c.hidden,
        rnn.layout().len()
    );

    let mut meta = HashMap::from([("task".to_string(), plan.name.to_string())]);
    match (&corpus, plan.name) {
        (Some(corpus), _) => {
            let vocab: String = corpus.vocab().iter().collect();
            meta.insert(keys::VOCAB.into(), vocab);
        }
        (None, "copy") => {
            meta.insert("delay".into(), a.delay().to_string());
        }
        (None, "recall") => {
            meta.insert("symbols".into(), plan.input.to_string());
            meta.insert("delay".into(), a.delay().to_string());
        }
        _ => {}
    }
    let mut ck = Checkpointing::new(a.checkpoint.clone(), a.checkpoint_every, meta.clone());
    if let (Some(file), Some(_)) = (&resume, &a.resume) {
        ck.resume(file, &mut rnn, &mut opt)?;
    }
    let title;
    let log = match &corpus {
        None if plan.name == "sine" => {
            println!(
                "task: next-step prediction of noisy sine waves (T = {t}, B = {}, noise {}); \
                 {model_line}",
                a.batch, a.noise
            );
            title = format!("sine, H = {}", c.hidden);
            sine(
                a,
                &gpu,
                &mut rnn,
                &mut opt,
                &ck,
                t,
                a.steps.unwrap_or(plan.steps),
            )?
        }
        None if plan.name == "adding" => {
            println!(
                "task: the adding problem (T = {t}, B = {}; always answering 1 scores {:.3}); \
                 {model_line}",
                a.batch,
                task::ADDING_BASELINE
            );
            title = format!("adding (T = {t}), H = {}", c.hidden);
            adding(
                a,
                &gpu,
                &mut rnn,
                &mut opt,
                &ck,
                t,
                a.steps.unwrap_or(plan.steps),
            )?
        }
        None if plan.name == "copy" => {
            let delay = a.delay();
            println!(
                "task: copy memory (delay {delay}, T = {t}, B = {}; the memoryless baseline \
                 scores {:.4} nats a step); {model_line}",
                a.batch,
                task::copy_baseline(delay)
            );
            title = format!("copy (delay {delay}), H = {}", c.hidden);
            copy(
                a,
                &gpu,
                &mut rnn,
                &mut opt,
                &ck,
                delay,
                a.steps.unwrap_or(plan.steps),
            )?
        }
        None => {
            println!(
                "task: recall the symbol seen {} steps ago ({} symbols, T = {t}, B = {}); \
                 {model_line}",
                a.delay(),
                plan.input,
                a.batch
            );
            title = format!("recall (delay {}), H = {}", a.delay(), c.hidden);
            recall(
                a,
                &gpu,
                &mut rnn,
                &mut opt,
                &ck,
                t,
                a.steps.unwrap_or(plan.steps),
            )?
        }
        Some(corpus) => {
            title = format!(
                "{}, H = {}",
                a.text
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                c.hidden
            );
            text_lm(a, &gpu, (&mut rnn, &mut opt, &ck), corpus, t, &model_line)?
        }
    };
    if let Some(path) = &a.save {
        io::save(&rnn, path, &meta)?;
        println!("saved {}", path.display());
    }
    if let Some(path) = &a.plot {
        let log_dirs = rnn.config().directions();
        plot::loss_curve(path, &title, &log.train, &log.valid)?;
        // With --grad-norms, the last recorded curves beside it: PATH-grad-norms.EXT.
        if let (Some(_), (step, curves)) = (&a.grad_norms, &log.last_norms)
            && !curves.is_empty()
        {
            let ext = plot::extension(path).unwrap_or_default();
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default();
            let beside = path.with_file_name(format!("{stem}-grad-norms.{ext}"));
            let named: Vec<(String, Vec<f32>)> = curves
                .iter()
                .enumerate()
                .map(|(kd, c)| {
                    let dirs = log_dirs;
                    let name = if kd % dirs == 1 {
                        format!("layer {} reverse", kd / dirs)
                    } else {
                        format!("layer {}", kd / dirs)
                    };
                    (name, c.clone())
                })
                .collect();
            let title = format!("|dL/dh(t)| of the training loss at step {step}");
            plot::grad_norms(&beside, &title, &named)?;
        }
        println!("loss curve: {}", path.display());
    }
    Ok(())
}

/// Progress bar, loss lines, and the points of the loss curves.
struct Log {
    bar: ProgressBar,
    start: Instant,
    /// The first step this run takes (after a resumed checkpoint's).
    first: usize,
    total: usize,
    samples_per_step: usize,
    log_every: usize,
    read_every: usize,
    train: Vec<(usize, f32)>,
    valid: Vec<(usize, f32)>,
    /// `--grad-norms`: where each logged step's ‖dL/dh(t)‖ curves go, and the latest, for
    /// `--plot`.
    norms: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    last_norms: (usize, Vec<Vec<f32>>),
    /// Where the wall time went: making and uploading data, recording and submitting the
    /// steps, waiting for the GPU to read the loss back, and validation.
    spent: [std::time::Duration; 4],
}

/// The parts of [`Log::spent`].
#[derive(Clone, Copy)]
enum Part {
    Data = 0,
    Submit = 1,
    Wait = 2,
    Validation = 3,
}

impl Log {
    fn new(
        ck: &Checkpointing,
        total: usize,
        samples_per_step: usize,
        a: &TrainArgs,
    ) -> Result<Self, Error> {
        let log_every = a.log_every;
        let norms = match &a.grad_norms {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|source| rnn_wgpu::FileError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                Some((p.clone(), std::io::BufWriter::new(f)))
            }
            None => None,
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Ok(Self {
            bar,
            start: Instant::now(),
            first: ck.start,
            total,
            samples_per_step,
            log_every: log_every.max(1),
            // About 200 points on the curve; each read waits for the GPU, so not every step.
            read_every: (total / 200).clamp(1, log_every.max(1)),
            train: Vec::new(),
            valid: Vec::new(),
            norms,
            last_norms: (0, Vec::new()),
            spent: Default::default(),
        })
    }

    /// Appends step `step`'s ‖dL/dh(t)‖ curves to the `--grad-norms` file.
    fn write_norms(&mut self, step: usize, rnn: &Rnn) -> Result<(), Error> {
        let Some((path, out)) = self.norms.as_mut() else {
            return Ok(());
        };
        let io = |source| rnn_wgpu::FileError::Io {
            path: path.display().to_string(),
            source,
        };
        let curves = rnn.grad_norms()?;
        let dirs = rnn.config().directions();
        for (kd, curve) in curves.iter().enumerate() {
            let (k, d) = (kd / dirs, kd % dirs);
            let line =
                serde_json::json!({"step": step, "layer": k, "direction": d, "norms": curve});
            std::io::Write::write_all(out, format!("{line}\n").as_bytes()).map_err(io)?;
        }
        std::io::Write::flush(out).map_err(io)?;
        self.last_norms = (step, curves);
        Ok(())
    }

    /// Runs `f`, counting its wall time towards `part`.
    fn timed<T>(&mut self, part: Part, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.spent[part as usize] += t0.elapsed();
        out
    }

    fn rate(&self, step: usize) -> f64 {
        ((step + 1).saturating_sub(self.first) * self.samples_per_step) as f64
            / self.start.elapsed().as_secs_f64()
    }

    /// After training step `step` (from 1): reads the loss when a point or a line is due.
    fn step(&mut self, step: usize, rnn: &Rnn, opt: &Optimizer) -> Result<(), Error> {
        self.bar.set_position(step as u64);
        let line = step == 1 || step.is_multiple_of(self.log_every) || step == self.total;
        if !line && !step.is_multiple_of(self.read_every) {
            return Ok(());
        }
        let loss = self.timed(Part::Wait, || rnn.last_loss())?;
        // A step whose gradients were not finite changed nothing (the optimizer skips it): stop
        // there, with the last finite parameters, and write nothing.
        if let Some(bad) = self.timed(Part::Wait, || opt.first_nonfinite_step())? {
            self.bar.finish_and_clear();
            return Err(rnn_wgpu::InputError::Invalid {
                arg: "training".into(),
                reason: format!(
                    "the loss or its gradients turned NaN or infinite at step {bad}; stopped at \
                     step {step} with the last finite parameters, and no file was written (a \
                     lower --lr, --clip, or another --init may help)"
                ),
            }
            .into());
        }
        self.train.push((step, loss));
        let rate = self.rate(step);
        self.bar
            .set_message(format!("loss {loss:.4}  {rate:.0} timestep-samples/s"));
        if line {
            self.write_norms(step, rnn)?;
            let norm = self.timed(Part::Wait, || opt.last_grad_norm())?;
            self.bar.suspend(|| {
                println!(
                    "step {step:>5}  loss {loss:.5}  grad norm {norm:.4}  {rate:.0} \
                     timestep-samples/s"
                )
            });
        }
        Ok(())
    }

    fn validation(&mut self, step: usize, loss: f32) {
        self.valid.push((step, loss));
        self.bar
            .suspend(|| println!("step {step:>5}  validation loss {loss:.5}"));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        let first = self.train.first().map_or(f32::NAN, |v| v.1);
        let last = self.train.last().map_or(f32::NAN, |v| v.1);
        println!(
            "done in {:.1}s: training loss {first:.5} -> {last:.5}",
            self.start.elapsed().as_secs_f64()
        );
        let [data, submit, wait, valid] = self.spent.map(|d| d.as_secs_f64());
        println!(
            "time: data {data:.2}s, recording and submitting steps {submit:.2}s, waiting for \
             the GPU at loss read-backs {wait:.2}s, validation {valid:.2}s (the GPU runs behind \
             the submits: its work shows as waiting, or as submitting once the driver's queue \
             is full)"
        );
    }
}

fn sine(
    a: &TrainArgs,
    gpu: &Gpu,
    rnn: &mut Rnn,
    opt: &mut Optimizer,
    ck: &Checkpointing,
    t: usize,
    steps: usize,
) -> Result<Log, Error> {
    let b = a.batch;
    let mut log = Log::new(ck, steps, t * b, a)?;
    let x = Tensor::zeros(gpu, &[t, b, 1])?;
    let y = Tensor::zeros(gpu, &[t, b, 1])?;
    for step in ck.start..=steps {
        // A fresh batch every step, so the model learns sine waves, not these sequences.
        log.timed(Part::Data, || {
            let data = task::sine(t, b, a.noise, a.seed.wrapping_mul(1_000_003) + step as u64);
            x.write(&data.x)?;
            y.write(&data.y)
        })?;
        schedule(a, opt, step, steps)?;
        log.timed(Part::Submit, || {
            rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), opt)
        })?;
        log.step(step, rnn, opt)?;
        ck.after_step(step, rnn, opt, None)?;
    }
    log.finish();
    // Held-out sequences the model never saw, against the naive guess "same as now".
    let test = task::sine(t, b, a.noise, u64::MAX - a.seed);
    let xt = Tensor::from_slice(gpu, &[t, b, 1], &test.x)?;
    rnn.set_training(false);
    let out = rnn.forward(&xt, None)?.output.to_vec()?;
    let mse = |pred: &[f32]| {
        pred.iter()
            .zip(&test.y)
            .map(|(p, y)| ((p - y) as f64).powi(2))
            .sum::<f64>()
            / test.y.len() as f64
    };
    let (model_mse, persistence_mse) = (mse(&out), mse(&test.x));
    println!(
        "held-out mse {model_mse:.5} vs {persistence_mse:.5} for repeating the current input \
         ({:.1}x better)",
        persistence_mse / model_mse
    );
    println!("last steps of one held-out sequence (input, prediction, target):");
    for s in t.saturating_sub(5)..t {
        let i = s * b;
        println!(
            "  t={s:<4} {:>8.4} {:>8.4} {:>8.4}",
            test.x[i], out[i], test.y[i]
        );
    }
    Ok(log)
}

/// Trains on a class task, a fresh batch from `make(seed)` each step, validating on `held`;
/// returns the log, the model's held-out scores `[T, B, classes]` and its held-out loss.
fn class_task(
    a: &TrainArgs,
    gpu: &Gpu,
    (rnn, opt): (&mut Rnn, &mut Optimizer),
    ck: &Checkpointing,
    steps: usize,
    held: &task::ClassBatch,
    make: impl Fn(u64) -> task::ClassBatch,
) -> Result<(Log, Vec<f32>, f32), Error> {
    let (t, b, k) = (held.steps, held.batch, held.inputs);
    let mut log = Log::new(ck, steps, t * b, a)?;
    let x = Tensor::zeros(gpu, &[t, b, k])?;
    let mut y = ClassIds::from_slice(gpu, &[t, b], &held.y)?;
    let xv = Tensor::from_slice(gpu, &[t, b, k], &held.x)?;
    let yv = ClassIds::from_slice(gpu, &[t, b], &held.y)?;
    let eval_every = a.eval_every.unwrap_or(a.log_every).max(1);
    for step in ck.start..=steps {
        log.timed(Part::Data, || {
            let data = make(a.seed.wrapping_mul(1_000_003) + step as u64);
            x.write(&data.x)?;
            y.write(&data.y)
        })?;
        schedule(a, opt, step, steps)?;
        log.timed(Part::Submit, || {
            rnn.train_step(&x, None, Target::Classes(&y), Loss::cross_entropy(), opt)
        })?;
        log.step(step, rnn, opt)?;
        ck.after_step(step, rnn, opt, None)?;
        if step % eval_every == 0 || step == steps {
            let (_, v) = log.timed(Part::Validation, || {
                rnn.evaluate(&xv, None, Target::Classes(&yv), Loss::cross_entropy())
            })?;
            log.validation(step, v);
        }
    }
    log.finish();
    rnn.set_training(false);
    let (fw, loss) = rnn.evaluate(&xv, None, Target::Classes(&yv), Loss::cross_entropy())?;
    Ok((log, fw.output.to_vec()?, loss))
}

/// The share of `rows` whose highest of `classes` scores is the target in `y`.
fn accuracy(scores: &[f32], y: &[i64], classes: usize, rows: std::ops::Range<usize>) -> f64 {
    let n = rows.len();
    let right = rows
        .filter(|&r| {
            let row = &scores[r * classes..(r + 1) * classes];
            let guess = (0..classes).fold(0, |m, i| if row[i] > row[m] { i } else { m });
            guess as i64 == y[r]
        })
        .count();
    right as f64 / n.max(1) as f64
}

fn recall(
    a: &TrainArgs,
    gpu: &Gpu,
    rnn: &mut Rnn,
    opt: &mut Optimizer,
    ck: &Checkpointing,
    t: usize,
    steps: usize,
) -> Result<Log, Error> {
    let (b, k, delay) = (a.batch, a.symbols.max(1), a.delay());
    let held = task::recall(t, b, k, delay, u64::MAX - a.seed);
    let (log, out, _) = class_task(a, gpu, (rnn, opt), ck, steps, &held, |seed| {
        task::recall(t, b, k, delay, seed)
    })?;
    if delay < t {
        println!(
            "held-out accuracy {:.1}% on steps t >= {delay} (chance {:.1}%)",
            100.0 * accuracy(&out, &held.y, k + 1, delay * b..t * b),
            100.0 / k as f64
        );
    }
    Ok(log)
}

/// The adding problem: a fresh batch each step, the loss at the last step only (a mask);
/// held-out mse against always answering 1.
fn adding(
    a: &TrainArgs,
    gpu: &Gpu,
    rnn: &mut Rnn,
    opt: &mut Optimizer,
    ck: &Checkpointing,
    t: usize,
    steps: usize,
) -> Result<Log, Error> {
    let b = a.batch;
    let mut log = Log::new(ck, steps, t * b, a)?;
    let (x, y, mask) = (
        Tensor::zeros(gpu, &[t, b, 2])?,
        Tensor::zeros(gpu, &[t, b, 1])?,
        Tensor::zeros(gpu, &[t, b])?,
    );
    let held = task::adding(t, b, u64::MAX - a.seed);
    let xv = Tensor::from_slice(gpu, &[t, b, 2], &held.x)?;
    let yv = Tensor::from_slice(gpu, &[t, b, 1], &held.y)?;
    let mv = Tensor::from_slice(gpu, &[t, b], &held.mask)?;
    let eval_every = a.eval_every.unwrap_or(a.log_every).max(1);
    for step in ck.start..=steps {
        log.timed(Part::Data, || {
            let data = task::adding(t, b, a.seed.wrapping_mul(1_000_003) + step as u64);
            x.write(&data.x)?;
            y.write(&data.y)?;
            mask.write(&data.mask)
        })?;
        schedule(a, opt, step, steps)?;
        log.timed(Part::Submit, || {
            let target = Target::Values(&y).with_mask(&mask);
            rnn.train_step(&x, None, target, Loss::mse(), opt)
        })?;
        log.step(step, rnn, opt)?;
        ck.after_step(step, rnn, opt, None)?;
        if step % eval_every == 0 || step == steps {
            let (_, v) = log.timed(Part::Validation, || {
                rnn.evaluate(&xv, None, Target::Values(&yv).with_mask(&mv), Loss::mse())
            })?;
            log.validation(step, v);
        }
    }
    log.finish();
    rnn.set_training(false);
    // The final score over many batches: one batch's mse swings by a third from seed to seed,
    // more than the differences between models. Both scores on the same sequences.
    let (mut mse, mut always_one) = (0.0, 0.0);
    for i in 0..ADDING_HELD_OUT_BATCHES {
        let held = task::adding(t, b, u64::MAX - a.seed - i as u64);
        xv.write(&held.x)?;
        yv.write(&held.y)?;
        mv.write(&held.mask)?;
        let target = Target::Values(&yv).with_mask(&mv);
        mse += f64::from(rnn.evaluate(&xv, None, target, Loss::mse())?.1);
        always_one += held.y[(t - 1) * b..]
            .iter()
            .map(|&y| (f64::from(y) - 1.0).powi(2))
            .sum::<f64>()
            / b as f64;
    }
    let n = ADDING_HELD_OUT_BATCHES as f64;
    let (mse, always_one) = (mse / n, always_one / n);
    let ratio = always_one / mse;
    let verdict = if ratio >= 1.0 {
        format!("{ratio:.1}x better")
    } else {
        "no better yet".to_string()
    };
    println!(
        "held-out mse at the last step {mse:.4} vs {always_one:.4} for always answering 1 \
         ({} sequences; {verdict})",
        ADDING_HELD_OUT_BATCHES * b
    );
    Ok(log)
}

/// Batches in the adding task's final held-out score.
const ADDING_HELD_OUT_BATCHES: usize = 32;

/// The copy-memory task: a fresh batch each step, the loss at every step; held-out loss
/// against the memoryless baseline and accuracy on the copied symbols.
fn copy(
    a: &TrainArgs,
    gpu: &Gpu,
    rnn: &mut Rnn,
    opt: &mut Optimizer,
    ck: &Checkpointing,
    delay: usize,
    steps: usize,
) -> Result<Log, Error> {
    let (b, t) = (a.batch, delay + 20);
    let held = task::copy_memory(delay, b, u64::MAX - a.seed);
    let (log, out, loss) = class_task(a, gpu, (rnn, opt), ck, steps, &held, |seed| {
        task::copy_memory(delay, b, seed)
    })?;
    let copied = accuracy(&out, &held.y, task::COPY_CLASSES, (delay + 10) * b..t * b);
    println!(
        "held-out loss {loss:.4} nats a step vs {:.4} for the memoryless baseline; {:.1}% of \
         the copied symbols right (chance 12.5%)",
        task::copy_baseline(delay),
        100.0 * copied
    );
    Ok(log)
}

fn text_lm(
    a: &TrainArgs,
    gpu: &Gpu,
    (rnn, opt, ck): (&mut Rnn, &mut Optimizer, &Checkpointing),
    corpus: &Corpus,
    t: usize,
    model_line: &str,
) -> Result<Log, Error> {
    let (train_ids, valid_ids) = corpus.split(a.valid);
    let b = a.batch;
    let train = Streams::new(train_ids, b, t)?;
    // Validation in the same shape when the held-out part is long enough, so the model's
    // buffers are reused; otherwise in fewer streams.
    let vb = (valid_ids.len() / (t + 1)).min(b);
    let valid = if vb > 0 {
        Some(Streams::new(valid_ids, vb, t)?)
    } else {
        None
    };
    let steps = match (a.epochs, a.steps) {
        (Some(e), _) => e * train.windows(),
        (None, Some(s)) => s,
        (None, None) => 1000,
    };
    let v = corpus.vocab().len();
    println!(
        "task: character language model on {} ({} characters, vocabulary {v}, {} held out; \
         T = {t}, B = {b}, {} windows per epoch); {model_line}",
        a.text
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string()),
        corpus.ids().len(),
        valid_ids.len(),
        train.windows()
    );
    if valid.is_none() {
        println!(
            "note: the held-out part ({} characters) is shorter than one window of {}; no \
             validation loss",
            valid_ids.len(),
            t + 1
        );
    }
    let mut log = Log::new(ck, steps, t * b, a)?;
    let mut x = ClassIds::from_slice(gpu, &[t, b], &vec![0; t * b])?;
    let mut y = ClassIds::from_slice(gpu, &[t, b], &vec![0; t * b])?;
    let (layers, hidden) = (rnn.config().states(), rnn.config().hidden);
    let h = Tensor::zeros(gpu, &[layers, b, hidden])?;
    let zeros = vec![0.0; layers * b * hidden];
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let eval_every = a.eval_every.unwrap_or(a.log_every).max(1);
    let loss = Loss::cross_entropy();
    // The validation batch's tensors, made once: a long run validates many times.
    let mut held = match &valid {
        Some(_) => Some((
            ClassIds::from_slice(gpu, &[t, vb], &vec![0; t * vb])?,
            ClassIds::from_slice(gpu, &[t, vb], &vec![0; t * vb])?,
            Tensor::zeros(gpu, &[layers, vb, hidden])?,
        )),
        None => None,
    };
    let zeros_v = vec![0.0; layers * vb * hidden];
    let mut validate = |rnn: &mut Rnn| -> Result<Option<f32>, Error> {
        let (Some(vs), Some((xv, yv, hv))) = (&valid, held.as_mut()) else {
            return Ok(None);
        };
        let n = vs.windows().min(20);
        hv.write(&zeros_v)?;
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        let mut sum = 0.0;
        for k in 0..n {
            vs.window(k, &mut xs, &mut ys);
            xv.write(&xs)?;
            yv.write(&ys)?;
            let (fw, l) = rnn.evaluate(&*xv, Some(hv), Target::Classes(yv), loss)?;
            hv.copy_from(&fw.h_n)?;
            sum += l;
        }
        Ok(Some(sum / n as f32))
    };
    if let Some(saved) = &ck.h {
        // A resumed run's state carried from the checkpoint's window.
        if saved.len() != zeros.len() {
            return Err(bad_arg(
                "--resume",
                format!(
                    "its hidden state holds {} values; --batch {b} needs {} (give the first \
                     run's --batch)",
                    saved.len(),
                    zeros.len()
                ),
            ));
        }
        h.write(saved)?;
    }
    for step in ck.start..=steps {
        let k = step - 1;
        if k % train.windows() == 0 {
            // A new pass over the text starts from a zero state.
            h.write(&zeros)?;
        }
        log.timed(Part::Data, || {
            train.window(k, &mut xs, &mut ys);
            x.write(&xs)?;
            y.write(&ys)
        })?;
        schedule(a, opt, step, steps)?;
        log.timed(Part::Submit, || {
            let fw = rnn.train_step(&x, Some(&h), Target::Classes(&y), loss, opt)?;
            // Truncated BPTT: the state goes on to the next window, its gradient does not.
            h.copy_from(&fw.h_n)
        })?;
        log.step(step, rnn, opt)?;
        ck.after_step(step, rnn, opt, Some(&h))?;
        if step % eval_every == 0 || step == steps {
            if let Some(vl) = log.timed(Part::Validation, || validate(rnn))? {
                log.validation(step, vl);
            }
        }
    }
    log.finish();
    if let Some(&(_, vl)) = log.valid.last() {
        let base = unigram_loss(train_ids, valid_ids, v);
        println!(
            "validation loss {vl:.4} nats/char ({:.3} bits/char) vs {base:.4} for letter \
             frequencies alone",
            vl / std::f32::consts::LN_2
        );
    }
    let prime = corpus.vocab()[valid_ids.first().copied().unwrap_or(0) as usize];
    let mut g = Generator::new(rnn, corpus.vocab().to_vec(), a.seed)?;
    g.feed(prime)?;
    let mut sample = String::from(prime);
    for _ in 0..160 {
        sample.push(g.next_char(0.8)?);
    }
    println!("sample (temperature 0.8):\n{sample}");
    Ok(log)
}

/// Cross-entropy of the held-out text under the training text's character frequencies
/// (add-one smoothed): the loss of a model that ignores context.
fn unigram_loss(train: &[u32], valid: &[u32], v: usize) -> f32 {
    let mut counts = vec![1.0f64; v];
    for &id in train {
        counts[id as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let nll: f64 = valid
        .iter()
        .map(|&id| -(counts[id as usize] / total).ln())
        .sum();
    (nll / valid.len().max(1) as f64) as f32
}
