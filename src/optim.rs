//! [`Optimizer`]: SGD with momentum, Adam or AdamW over all parameters in one dispatch, with
//! clipping by global gradient norm.

use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::model::Rnn;
use crate::ops::optim::{OptimBuffers, UpdateParams, update};
use crate::ops::{Plan, PlanBuilder};

/// The update rule and its hyper-parameters (PyTorch's meaning and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD` (dampening 0, no Nesterov).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum factor; 0 for plain SGD.
        momentum: f32,
    },
    /// `torch.optim.Adam`.
    Adam {
        /// Learning rate (PyTorch's default 1e-3).
        lr: f32,
        /// Decay of the first moment (0.9).
        beta1: f32,
        /// Decay of the second moment (0.999).
        beta2: f32,
        /// Added to the denominator (1e-8).
        eps: f32,
    },
    /// `torch.optim.AdamW`: Adam with decoupled weight decay, each decayed parameter shrunk by
    /// `lr · weight_decay` of itself before the update; the biases are left out unless
    /// `decay_biases` (PyTorch decays whatever its param group holds: leaving biases out is
    /// the usual pair of groups, `weight_decay=0` for the biases).
    AdamW {
        /// Learning rate (PyTorch's default 1e-3).
        lr: f32,
        /// Decay of the first moment (0.9).
        beta1: f32,
        /// Decay of the second moment (0.999).
        beta2: f32,
        /// Added to the denominator (1e-8).
        eps: f32,
        /// Decoupled weight decay (PyTorch's default 0.01).
        weight_decay: f32,
        /// Decay the biases too.
        decay_biases: bool,
    },
}

impl OptimizerKind {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f32) -> Self {
        Self::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// AdamW with PyTorch's defaults, learning rate `lr` and decoupled `weight_decay`, the
    /// biases left out.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Self::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decay_biases: false,
        }
    }

    /// SGD with learning rate `lr` and `momentum`.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Self::Sgd { lr, momentum }
    }

    /// Its name: `sgd`, `adam` or `adamw`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam { .. } => "adam",
            Self::AdamW { .. } => "adamw",
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            Self::Adam { lr, .. } | Self::Sgd { lr, .. } | Self::AdamW { lr, .. } => lr,
        }
    }

    /// The same rule with learning rate `lr`.
    pub fn with_lr(self, lr: f32) -> Self {
        match self {
            Self::Adam {
                beta1, beta2, eps, ..
            } => Self::Adam {
                lr,
                beta1,
                beta2,
                eps,
            },
            Self::Sgd { momentum, .. } => Self::Sgd { lr, momentum },
            Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                decay_biases,
                ..
            } => Self::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decay_biases,
            },
        }
    }
}

/// How the learning rate moves over training, as a factor of the starting one (what
/// PyTorch's schedulers do to a param group's `lr`; the optimizer's state is kept).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// A linear warm-up from `1/warmup` over the first `warmup` steps, then a cosine decay
    /// from 1 at the step after them to zero just after step `total` (`LinearLR` then
    /// `CosineAnnealingLR`).
    Cosine { warmup: u64, total: u64 },
    /// Multiplied by `gamma` every `every` steps (`StepLR`), after a linear warm-up of
    /// `warmup` steps.
    Step { warmup: u64, every: u64, gamma: f32 },
}

impl LrSchedule {
    /// The factor for update `step` (counted from 1).
    pub fn factor(&self, step: u64) -> f32 {
        let warm = |warmup: u64| {
            if warmup > 0 && step <= warmup {
                Some(step as f32 / warmup as f32)
            } else {
                None
            }
        };
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { warmup, total } => warm(warmup).unwrap_or_else(|| {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let done = (step.saturating_sub(warmup + 1) as f64 / span).min(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * done).cos())) as f32
            }),
            LrSchedule::Step {
                warmup,
                every,
                gamma,
            } => warm(warmup).unwrap_or_else(|| {
                gamma.powi((step.saturating_sub(warmup) / every.max(1)).min(i32::MAX as u64) as i32)
            }),
        }
    }
}

/// An optimizer with optional clipping and L2 weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Clip the global gradient norm to this value before the update (`clip_grad_norm_`).
    pub clip: Option<f32>,
    /// Clamp every gradient value to `±` this before the update and before the norm
    /// (`clip_grad_value_`, then `clip_grad_norm_` when both are set).
    pub clip_value: Option<f32>,
    /// L2 penalty added to the gradient, as PyTorch's `weight_decay`.
    pub weight_decay: f32,
}

impl From<OptimizerKind> for OptimizerConfig {
    fn from(kind: OptimizerKind) -> Self {
        Self {
            kind,
            clip: None,
            clip_value: None,
            weight_decay: 0.0,
        }
    }
}

/// An optimizer's state on the host, for a checkpoint: updates taken, and its two state
/// vectors over the flat parameter vector (SGD's momentum buffer and nothing; Adam's first and
/// second moments).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Updates taken.
    pub step: u64,
    /// The momentum buffer, or Adam's first moment, `[N]`.
    pub first: Vec<f32>,
    /// Adam's second moment `[N]`; one zero for SGD.
    pub second: Vec<f32>,
}

/// Optimizer state on the GPU for one model's parameters.
pub struct Optimizer {
    gpu: Gpu,
    model: u64,
    config: OptimizerConfig,
    params: UpdateParams,
    step: u64,
    norm: wgpu::Buffer,
    plan: Plan,
    /// Byte offsets of the gradient norm's and the update's parameters in the plan.
    offsets: [u64; 2],
    /// The two state vectors (see [`OptimizerState`]).
    state: [wgpu::Buffer; 2],
    /// The learning rate it was made with, which schedules scale.
    initial_lr: f32,
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Optimizer")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

fn check_positive(arg: &str, v: f32) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(InputError::Invalid {
            arg: arg.into(),
            reason: format!("{v} must be a positive finite number"),
        }
        .into());
    }
    Ok(())
}

fn check_unit(arg: &str, v: f32) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(InputError::Invalid {
            arg: arg.into(),
            reason: format!("{v} must be in [0, 1)"),
        }
        .into());
    }
    Ok(())
}

/// AdamW's mask over the flat parameter vector, on the GPU: 1 where a parameter decays (every
/// weight, and the biases when `decay_biases`), 0 elsewhere; after checking the decay.
fn decay_mask(
    model: &Rnn,
    config: &OptimizerConfig,
    weight_decay: f32,
    decay_biases: bool,
) -> Result<wgpu::Buffer> {
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(InputError::Invalid {
            arg: "weight_decay".into(),
            reason: format!("AdamW's {weight_decay} must be zero or positive"),
        }
        .into());
    }
    if config.weight_decay != 0.0 {
        return Err(InputError::Invalid {
            arg: "weight_decay".into(),
            reason: "AdamW decays in its own way (OptimizerKind::AdamW's weight_decay); leave \
                     the config's L2 weight_decay at 0"
                .into(),
        }
        .into());
    }
    let mask: Vec<f32> = model
        .layout()
        .entries()
        .iter()
        .flat_map(|e| {
            let on = decay_biases || !e.name.contains("bias");
            std::iter::repeat_n(f32::from(u8::from(on)), e.len())
        })
        .collect();
    let gpu = model.gpu();
    let buf = gpu.storage_buffer("weight decay mask", mask.len())?;
    gpu.queue()
        .write_buffer(&buf, 0, bytemuck::cast_slice(&mask));
    Ok(buf)
}

impl Optimizer {
    /// An optimizer for `model`'s parameters, with zeroed state.
    pub fn new(model: &Rnn, config: impl Into<OptimizerConfig>) -> Result<Self> {
        let config = config.into();
        let gpu = model.gpu().clone();
        let n = model.layout().len();
        // The gradient norm runs in one workgroup of 256 invocations, and lavapipe stops an
        // invocation after 65535 loop iterations, silently.
        let cpu_limit = 256 * 32768;
        if gpu.is_cpu() && n > cpu_limit {
            return Err(InputError::Invalid {
                arg: "model".into(),
                reason: format!(
                    "{n} parameters are more than a CPU adapter can take the gradient norm of \
                     ({cpu_limit}); use a smaller model"
                ),
            }
            .into());
        }
        let mut params = UpdateParams {
            n: n as u32,
            weight_decay: config.weight_decay,
            clip: config.clip.unwrap_or(0.0),
            clip_value: config.clip_value.unwrap_or(0.0),
            ..Default::default()
        };
        if let Some(c) = config.clip {
            check_positive("clip", c)?;
        }
        if let Some(c) = config.clip_value {
            check_positive("clip_value", c)?;
        }
        if !(config.weight_decay.is_finite() && config.weight_decay >= 0.0) {
            return Err(InputError::Invalid {
                arg: "weight_decay".into(),
                reason: format!("{} must be zero or positive", config.weight_decay),
            }
            .into());
        }
        let mut decay = None;
        let adam = match config.kind {
            OptimizerKind::Sgd { lr, momentum } => {
                check_positive("lr", lr)?;
                check_unit("momentum", momentum)?;
                params.lr = lr;
                params.momentum = momentum;
                false
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                eps,
            }
            | OptimizerKind::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                ..
            } => {
                check_positive("lr", lr)?;
                check_unit("beta1", beta1)?;
                check_unit("beta2", beta2)?;
                check_positive("eps", eps)?;
                params.lr = lr;
                params.beta1 = beta1;
                params.beta2 = beta2;
                params.eps = eps;
                if let OptimizerKind::AdamW {
                    weight_decay,
                    decay_biases,
                    ..
                } = config.kind
                {
                    params.decoupled = weight_decay;
                    decay = Some(decay_mask(model, &config, weight_decay, decay_biases)?);
                }
                true
            }
        };
        // Fresh buffers are zeroed, which is the start state of both rules.
        let s1 = gpu.storage_buffer("optimizer state 1", n)?;
        let s2 = gpu.storage_buffer("optimizer state 2", if adam { n } else { 1 })?;
        // (With a uniform window's slack: the update kernels may read the norm through one.)
        let norm = gpu.storage_buffer(
            "gradient norm, first non-finite step",
            2 + crate::ops::WINDOW_FLOATS,
        )?;
        let (param, grad) = model.param_buffers();
        let mut b = PlanBuilder::new(&gpu, "optimizer");
        let offsets = update(
            &mut b,
            adam,
            &params,
            &OptimBuffers {
                param,
                grad,
                s1: &s1,
                s2: &s2,
                norm: &norm,
                decay: decay.as_ref(),
            },
        )?;
        let plan = b.finish()?;
        Ok(Self {
            gpu,
            model: model.id(),
            config,
            params,
            step: 0,
            norm,
            plan,
            offsets,
            state: [s1, s2],
            initial_lr: config.kind.lr(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The learning rate it was made with.
    pub fn initial_lr(&self) -> f32 {
        self.initial_lr
    }

    /// Changes the learning rate for the next updates, keeping the momentum buffer or Adam's
    /// moments and the step count (as a PyTorch scheduler changing `lr`).
    pub fn set_lr(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(InputError::Invalid {
                arg: "lr".into(),
                reason: format!("{lr} must be zero or a positive finite number"),
            }
            .into());
        }
        self.config.kind = self.config.kind.with_lr(lr);
        self.params.lr = lr;
        self.write_params();
        Ok(())
    }

    /// Uploads the parameters both kernels read (the norm's and the update's copies).
    fn write_params(&self) {
        for offset in self.offsets {
            self.gpu.queue().write_buffer(
                self.plan.params(),
                offset,
                bytemuck::bytes_of(&self.params),
            );
        }
    }

    /// Downloads the state (one read-back per vector), for a checkpoint.
    pub fn state(&self) -> Result<OptimizerState> {
        let [n, n2] = self.state_lens();
        let first = self.gpu.read(&self.state[0], 0, n)?;
        let second = self.gpu.read(&self.state[1], 0, n2)?;
        Ok(OptimizerState {
            step: self.step,
            first,
            second,
        })
    }

    /// Restores a state from [`Optimizer::state`] of an optimizer of the same kind over the same
    /// parameters: the next update is the one the saved optimizer would have taken.
    pub fn set_state(&mut self, state: &OptimizerState) -> Result<()> {
        let [n, second] = self.state_lens();
        if state.first.len() != n || state.second.len() != second {
            return Err(InputError::Invalid {
                arg: "optimizer state".into(),
                reason: format!(
                    "holds {} and {} values; this optimizer keeps {n} and {second} (another \
                     model or another kind of optimizer)",
                    state.first.len(),
                    state.second.len()
                ),
            }
            .into());
        }
        let queue = self.gpu.queue();
        queue.write_buffer(&self.state[0], 0, bytemuck::cast_slice(&state.first));
        queue.write_buffer(&self.state[1], 0, bytemuck::cast_slice(&state.second));
        self.step = state.step;
        Ok(())
    }

    /// The lengths of the two state vectors: N, and N for Adam and AdamW or 1 for SGD.
    fn state_lens(&self) -> [usize; 2] {
        let n = self.params.n as usize;
        match self.config.kind {
            OptimizerKind::Sgd { .. } => [n, 1],
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => [n, n],
        }
    }

    /// Downloads the global gradient norm (before clipping) of the latest step.
    pub fn last_grad_norm(&self) -> Result<f32> {
        Ok(self.gpu.read(&self.norm, 0, 1)?[0])
    }

    /// The first update whose gradients held a NaN or an infinity (counted from 1, as
    /// [`Optimizer::steps`]), if any: one read-back. Such an update changes nothing (the
    /// parameters and the optimizer's state stay as they were), so a model whose loss blows up
    /// keeps its last finite parameters; training on is the caller's choice.
    pub fn first_nonfinite_step(&self) -> Result<Option<u64>> {
        let step = self.gpu.read(&self.norm, 1, 1)?[0];
        Ok((step > 0.0).then_some(step as u64))
    }

    pub(crate) fn check_model(&self, model: &Rnn) -> Result<()> {
        if model.id() != self.model {
            return Err(InputError::Foreign {
                arg: "optimizer".into(),
                owner: "model",
            }
            .into());
        }
        Ok(())
    }

    /// Advances the step count, uploads its bias corrections and returns the plan to run.
    pub(crate) fn prepare_step(&mut self) -> Result<&Plan> {
        self.step += 1;
        if let OptimizerKind::Adam { beta1, beta2, .. }
        | OptimizerKind::AdamW { beta1, beta2, .. } = self.config.kind
        {
            let t = self.step.min(i32::MAX as u64) as i32;
            self.params.bc1 = (1.0 - (beta1 as f64).powi(t)) as f32;
            self.params.bc2 = (1.0 - (beta2 as f64).powi(t)) as f32;
        }
        // The gradient norm records this number if the step's gradient is not finite.
        self.params.step = self.step.min(u64::from(u32::MAX)) as u32;
        self.write_params();
        Ok(&self.plan)
    }
}
