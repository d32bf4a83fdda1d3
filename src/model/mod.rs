//! [`Rnn`]: parameters on the GPU, forward, back-propagation through time and training steps.

mod chunked;
mod config;
mod init;
pub(crate) mod layer;
pub(crate) mod params;
mod transition;
mod workspace;

pub(crate) use workspace::padded_hidden;

pub use crate::rng::SplitMix64;
pub use config::{MAX_BLOCK_DEPTH, Mlp, Nonlinearity, RnnConfig};
pub use init::{Init, spectral_radius};
pub use params::{ParamLayout, ParamSpec};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::loss::{Loss, LossKind, Target};
use crate::ops::{self, Driver};
use crate::optim::Optimizer;
use crate::tensor::{Input, Tensor, check_nonempty};
use chunked::{Chunks, Seed};
use workspace::Workspace;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Outputs of a forward pass: views into the model's workspace, valid until its next forward
/// pass (after which using them is an [`InputError::Stale`] error).
#[derive(Debug, Clone)]
pub struct Forward {
    /// Outputs `o(t)` for every step, `[T, B, O]`.
    pub output: Tensor,
    /// The last hidden state `h(T)`, `[B, H]`.
    pub h_n: Tensor,
}

/// Gradients of the loss: views into the model's buffers, valid until its next backward pass
/// (after which using them is an [`InputError::Stale`] error).
#[derive(Debug, Clone)]
pub struct Gradients {
    /// dL/dθ for every parameter, by PyTorch name, in the layout's order.
    pub params: Vec<(String, Tensor)>,
    /// dL/dx, `[T, B, I]`, when asked for with [`Rnn::set_input_gradients`] (never for token
    /// ids, which have no gradient).
    pub x: Option<Tensor>,
    /// dL/dh0, `[B, H]`, likewise.
    pub h0: Option<Tensor>,
}

impl Gradients {
    /// The gradient of the parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// One parameter's values on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParam {
    /// PyTorch's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// An Elman RNN layer with a linear head, its parameters and gradients on the GPU.
pub struct Rnn {
    gpu: Gpu,
    id: u64,
    config: RnnConfig,
    layout: ParamLayout,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    driver: Driver,
    ws: Option<Workspace>,
    /// Sequences longer than this many steps run in chunks (`None`: only those that do not
    /// fit the adapter in one piece).
    chunk_steps: Option<usize>,
    /// The workspaces of a sequence run in chunks, and whether the latest call ran so (its
    /// results are there, not in `ws`).
    chunks: Option<Chunks>,
    chunked: bool,
    /// Backward passes also record ‖dL/dh(t)‖, and the latest one did.
    grad_norms: bool,
    has_norms: bool,
    /// The loss buffer holds a value from the latest call.
    has_loss: bool,
    /// Backward passes also compute dL/dx and dL/dh0.
    input_gradients: bool,
    /// The dx and dh0 buffers hold those of the latest backward pass.
    has_dx: bool,
    /// Training mode: dropout applies (PyTorch's `module.train()`).
    training: bool,
    /// The stream dropout's seeds come from, one per training call.
    dropout_rng: SplitMix64,
    /// The seed of the latest training call's dropout masks.
    dropout_seed: u32,
    /// Calls that overwrote the forward pass's outputs and the gradients: what makes the views
    /// handed out before them stale.
    forward_calls: Arc<AtomicU64>,
    backward_calls: Arc<AtomicU64>,
    /// Changes of the weights (updates, `set_parameter`, `init_layer`), and the value it had
    /// at the latest forward pass, which its backward pass must still see.
    weights_version: u64,
    forward_weights: Option<u64>,
}

impl std::fmt::Debug for Rnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnn")
            .field("config", &self.config)
            .field("driver", &self.driver)
            .finish()
    }
}

/// Whether `x` is token ids.
fn tokens(x: Input) -> bool {
    matches!(x, Input::Tokens(_))
}

fn shape_err(arg: &str, expected: String, got: &[usize]) -> crate::error::Error {
    InputError::Shape {
        arg: arg.to_string(),
        expected,
        got: got.to_vec(),
    }
    .into()
}

impl Rnn {
    /// A model initialised as PyTorch does (uniform in `±1/sqrt(H)`), from `seed`.
    pub fn new(gpu: &Gpu, config: RnnConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        // Buffers first: their size check must come before a host vector of that size.
        // With a uniform window's slack: some kernels read weights through one (ops::window_start).
        let params = gpu.storage_buffer("parameters", layout.len() + ops::WINDOW_FLOATS)?;
        let grads = gpu.storage_buffer("gradients", layout.len())?;
        let values = init::init(&layout, &config, seed);
        gpu.queue()
            .write_buffer(&params, 0, bytemuck::cast_slice(&values));
        Ok(Self {
            gpu: gpu.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            layout,
            params,
            grads,
            driver: Driver::Auto,
            ws: None,
            chunk_steps: None,
            chunks: None,
            chunked: false,
            grad_norms: false,
            has_norms: false,
            has_loss: false,
            input_gradients: false,
            has_dx: false,
            training: true,
            // Its own stream, from the model's seed: the same seed gives the same masks.
            dropout_rng: SplitMix64::new(seed ^ 0xD80F_0E75_EED5_0000),
            dropout_seed: 0,
            forward_calls: Arc::default(),
            backward_calls: Arc::default(),
            weights_version: 0,
            forward_weights: None,
        })
    }

    /// Changes the hidden nonlinearity (for a file that does not say it, as a PyTorch
    /// `state_dict` cannot).
    pub fn set_nonlinearity(&mut self, nonlinearity: Nonlinearity) {
        if self.config.nonlinearity != nonlinearity {
            self.config.nonlinearity = nonlinearity;
            // The loops take it as a parameter recorded in the plans: made again.
            (self.ws, self.chunks) = (None, None);
        }
    }

    /// Changes the dropout between layers ([`RnnConfig::dropout`]), which PyTorch's files do
    /// not keep: an error outside `[0, 1)`.
    pub fn set_dropout(&mut self, p: f32) -> Result<()> {
        let config = self.config.with_dropout(p);
        config.validate()?;
        if config != self.config {
            self.config = config;
            // Dropout adds buffers and dispatches: the plans are made again.
            (self.ws, self.chunks) = (None, None);
        }
        Ok(())
    }

    /// Training mode (the default, as a PyTorch module's): dropout between layers applies in
    /// `forward`, `loss_and_gradients` and `train_step`, with fresh masks each call. Off, no
    /// call drops anything ([`Rnn::evaluate`] never does).
    pub fn set_training(&mut self, on: bool) {
        self.training = on;
    }

    /// Whether the model is in training mode.
    pub fn training(&self) -> bool {
        self.training
    }

    /// The seed of the latest training call's dropout masks, as
    /// [`reference::dropout_mask`](crate::reference::dropout_mask) draws them.
    pub fn dropout_seed(&self) -> u32 {
        self.dropout_seed
    }

    /// Tells the workspace's dropout kernels this call's seed and mode: a fresh seed for a
    /// training call, pass-through otherwise.
    fn draw_dropout(&mut self, training_call: bool) {
        let train = training_call && self.training;
        if train {
            self.dropout_seed = self.dropout_rng.next_u64() as u32;
        }
        if let Some(state) = self.ws.as_ref().and_then(|ws| ws.dropout_state.as_ref()) {
            let words = [self.dropout_seed, u32::from(train)];
            self.gpu
                .queue()
                .write_buffer(state, 0, bytemuck::cast_slice(&words));
        }
    }

    /// Where the generator of dropout masks stands (for a checkpoint).
    pub fn dropout_rng_state(&self) -> u64 {
        self.dropout_rng.state()
    }

    /// Puts the generator of dropout masks back where [`Rnn::dropout_rng_state`] found it, so a
    /// resumed run draws the masks an uninterrupted one would.
    pub fn set_dropout_rng_state(&mut self, state: u64) {
        self.dropout_rng = SplitMix64::new(state);
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Where each parameter lives in the flat vector.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The GPU the model lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// How the time loop is driven.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Whether backward passes also compute dL/dx and dL/dh0 (`Gradients::x`, `h0`): off by
    /// default, as for PyTorch inputs without `requires_grad`, since dL/dx is one more multiply
    /// over all steps.
    pub fn set_input_gradients(&mut self, on: bool) {
        self.input_gradients = on;
    }

    /// Whether backward passes compute dL/dx and dL/dh0.
    pub fn input_gradients(&self) -> bool {
        self.input_gradients
    }

    /// Whether inputs, targets and outputs put the batch first (`[B, T, ...]`), as
    /// [`RnnConfig::batch_first`]: how the caller lays out its tensors, not part of the model.
    pub fn set_batch_first(&mut self, on: bool) {
        if self.config.batch_first != on {
            self.config.batch_first = on;
            // The plans swap the layouts, so they are made again for the next call.
            (self.ws, self.chunks) = (None, None);
        }
    }

    /// Chooses how the time loop is driven.
    pub fn set_driver(&mut self, driver: Driver) {
        self.driver = driver;
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn param_buffers(&self) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.params, &self.grads)
    }

    /// Starts layer `layer`'s `W` (both directions') afresh as `init` makes it from PyTorch's
    /// draw with `seed`, and for [`Init::Identity`] zeroes the layer's biases: a per-layer
    /// choice on top of [`RnnConfig::init`].
    pub fn init_layer(&mut self, layer: usize, init: Init, seed: u64) -> Result<()> {
        init.validate()?;
        if layer >= self.config.layers {
            return Err(InputError::Invalid {
                arg: "layer".into(),
                reason: format!(
                    "{layer} is past the model's {} layers (counted from 0)",
                    self.config.layers
                ),
            }
            .into());
        }
        let mut values = self.gpu.read(&self.params, 0, self.layout.len())?;
        for unit in layer::Layer::all(&self.config)
            .iter()
            .filter(|u| u.k == layer)
        {
            init::restart_layer(&self.layout, unit, init, seed, &mut values);
        }
        self.gpu
            .queue()
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&values));
        self.weights_changed();
        Ok(())
    }

    /// Downloads every parameter, in the layout's order.
    pub fn parameters(&self) -> Result<Vec<HostParam>> {
        let all = self.gpu.read(&self.params, 0, self.layout.len())?;
        Ok(self
            .layout
            .entries()
            .iter()
            .map(|e| HostParam {
                name: e.name.clone(),
                shape: e.shape.clone(),
                values: all[e.offset..e.offset + e.len()].to_vec(),
            })
            .collect())
    }

    /// Overwrites the parameter `name` with `values` (row-major, of its shape).
    pub fn set_parameter(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let spec = self.layout.get(name).ok_or_else(|| InputError::Invalid {
            arg: name.to_string(),
            reason: format!(
                "no such parameter; this model has {}",
                self.layout
                    .entries()
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if values.len() != spec.len() {
            return Err(InputError::Length {
                arg: name.to_string(),
                shape: spec.shape.clone(),
                want: spec.len(),
                got: values.len(),
            }
            .into());
        }
        self.gpu.queue().write_buffer(
            &self.params,
            spec.offset as u64 * 4,
            bytemuck::cast_slice(values),
        );
        self.weights_changed();
        Ok(())
    }

    /// The weights changed: W's layouts are written again before the next forward, and a
    /// backward pass of an earlier forward is refused.
    fn weights_changed(&mut self) {
        self.weights_version += 1;
        self.set_layouts_fresh(false);
    }

    /// The views of the forward pass's outputs (and, with `backward`, of the gradients)
    /// handed out so far become stale: this call overwrites them.
    fn overwrites(&self, backward: bool) {
        self.forward_calls.fetch_add(1, Ordering::AcqRel);
        if backward {
            self.backward_calls.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records whether the one-piece workspace's layouts of `W` match the parameters now (after
    /// it ran: `true`), or that no workspace's do (`W` changed: `false`). The chunks' workspaces
    /// mark their own fresh as they run.
    fn set_layouts_fresh(&mut self, fresh: bool) {
        if let Some(ws) = self.ws.as_mut() {
            ws.layouts_fresh = fresh;
        }
        if let Some(ch) = self.chunks.as_mut().filter(|_| !fresh) {
            ch.set_layouts_fresh(false);
        }
    }

    /// Runs sequences longer than `steps` time steps in chunks of that many: the states at
    /// the chunks' edges are kept and each chunk's are computed again on the way back, so
    /// device memory grows with the chunk and the number of chunks, not with T, and the
    /// gradients are still those of the whole sequence. `None` (the default) chunks only a
    /// sequence that does not fit the adapter in one piece, in chunks of about `sqrt(T)`
    /// steps. Not for bidirectional models, dropout between layers or token ids.
    pub fn set_chunk_steps(&mut self, steps: Option<usize>) -> Result<()> {
        if steps == Some(0) {
            return Err(InputError::Invalid {
                arg: "chunk_steps".into(),
                reason: "a chunk needs at least one step".into(),
            }
            .into());
        }
        self.chunk_steps = steps;
        Ok(())
    }

    /// Makes every backward pass also record ‖dL/dh(t)‖ for every step, layer and direction,
    /// read with [`Rnn::grad_norms`]: how far back the loss's gradient reaches (vanishing or
    /// exploding gradients). Costs two products over all rows per layer and direction after
    /// each backward pass; not recorded for a sequence run in chunks.
    pub fn set_grad_norms(&mut self, on: bool) {
        self.grad_norms = on;
    }

    /// ‖dL/dh(t)‖ for t = 0..T of every layer and direction, in `h0`'s order (layer k,
    /// direction d at k·D + d), each indexed by true time t (the reverse direction's too), from
    /// the latest backward pass (of [`Rnn::train_step`], [`Rnn::loss_and_gradients`] or
    /// [`Rnn::backward`]) after [`Rnn::set_grad_norms`]. One read-back.
    pub fn grad_norms(&self) -> Result<Vec<Vec<f32>>> {
        let recorded = self
            .ws
            .as_ref()
            .and_then(|ws| ws.grad_norms.as_ref().map(|(_, b)| (b, ws.steps)))
            .filter(|_| self.has_norms && !self.chunked);
        let Some((buf, t)) = recorded else {
            return Err(InputError::Invalid {
                arg: "grad_norms".into(),
                reason: "no gradient norms were recorded: call set_grad_norms(true), then a \
                         backward pass (train_step, loss_and_gradients or backward) of a \
                         sequence that runs in one piece"
                    .into(),
            }
            .into());
        };
        let dirs = self.config.directions();
        let all = self.gpu.read(buf, 0, self.config.states() * t)?;
        Ok(all
            .chunks(t)
            .enumerate()
            .map(|(kd, c)| {
                let mut c = c.to_vec();
                // The reverse direction's step s is the sequence's T - 1 - s.
                if kd % dirs == 1 {
                    c.reverse();
                }
                c
            })
            .collect())
    }

    /// ‖dL/dh(t)‖ as [`Rnn::grad_norms`] gives it, for L the sum of the last step's outputs
    /// (dL/do = 1 at step T - 1 of every sequence, 0 elsewhere) on `x` from `h0`: how far back
    /// a loss at the end of a sequence reaches, whatever the training loss. One forward and
    /// one backward pass of its own; like any call, it overwrites the views of the latest
    /// outputs and gradients. Not for token ids or sequences run in chunks.
    pub fn last_step_grad_norms<'x>(
        &mut self,
        x: impl Into<Input<'x>>,
        h0: Option<&Tensor>,
    ) -> Result<Vec<Vec<f32>>> {
        let x = x.into();
        let (t, b) = self.check_inputs(x, h0)?;
        let in_chunks = self.chunking(x, (t, b))?.is_some();
        let was = self.grad_norms;
        self.grad_norms = true;
        if in_chunks {
            let refused = self.no_chunked_norms();
            self.grad_norms = was;
            refused?;
        }
        let norms = (|| {
            self.forward(x, h0)?;
            let o = self.config.output;
            let ([d0, d1], _) = self.config.leading([t, b]);
            let mut d_o = vec![0.0f32; t * b * o];
            for bi in 0..b {
                let row = if self.config.batch_first {
                    bi * t + t - 1
                } else {
                    (t - 1) * b + bi
                };
                d_o[row * o..(row + 1) * o].fill(1.0);
            }
            self.backward(&Tensor::from_slice(&self.gpu, &[d0, d1, o], &d_o)?)?;
            self.grad_norms()
        })();
        self.grad_norms = was;
        norms
    }

    /// The spectral radius (largest |eigenvalue|) of every layer's and direction's `W_hh`, in
    /// `h0`'s order (layer k, direction d at k·D + d), by power iteration on the GPU: the
    /// factor per step by which a linear recurrence's states and gradients grow or shrink
    /// in the long run. Accurate to about 1e-3 relative; slower to settle when the two
    /// largest |eigenvalues| are close. One submit and one read-back.
    pub fn spectral_radii(&self) -> Result<Vec<f32>> {
        let h = self.config.hidden;
        let units = layer::Layer::all(&self.config);
        let n = ops::spectral::state_len(h);
        let states = self
            .gpu
            .storage_buffer("power iteration states", units.len() * n)?;
        let mut pb = ops::PlanBuilder::new(&self.gpu, "spectral radius");
        let mut views = Vec::new();
        for (kd, unit) in units.iter().enumerate() {
            // Each in a buffer of its own: the kernel's state starts at element 0.
            let state = self.gpu.storage_buffer("power iteration state", n)?;
            let w = ops::at(&self.params, self.layout.offset(&unit.names.w_hh));
            ops::spectral::power_iteration(&mut pb, h, w, &state)?;
            views.push((kd, state));
        }
        let plan = pb.finish()?;
        ops::run(
            &self.gpu,
            "spectral radius",
            Driver::PerStep,
            |_| {},
            &[&plan],
            |enc| {
                for (kd, state) in &views {
                    let bytes = (n * 4) as u64;
                    enc.copy_buffer_to_buffer(state, 0, &states, *kd as u64 * bytes, bytes);
                }
            },
        )?;
        let all = self.gpu.read(&states, 0, units.len() * n)?;
        Ok(all.chunks(n).map(|s| ops::spectral::radius(s, h)).collect())
    }

    /// The chunk length set with [`Rnn::set_chunk_steps`].
    pub fn chunk_steps(&self) -> Option<usize> {
        self.chunk_steps
    }

    /// The chunk length a sequence of `steps` steps over `batch` rows of f32 inputs runs at on
    /// this adapter with `chosen` as the [`Rnn::set_chunk_steps`] setting, or `None` for one
    /// piece.
    pub fn chunk_len_for(
        &self,
        steps: usize,
        batch: usize,
        chosen: Option<usize>,
    ) -> Option<usize> {
        chunked::chunk_steps(&self.gpu, &self.config, (steps, batch), false, chosen)
    }

    /// The chunk length a call on `x` of `(t, b)` runs at, or `None` for one piece; an error
    /// when the sequence needs chunks this model cannot run.
    fn chunking<'x>(&self, x: Input<'x>, (t, b): (usize, usize)) -> Result<Option<&'x Tensor>> {
        let (gpu, config, ids) = (&self.gpu, &self.config, tokens(x));
        if chunked::chunk_steps(gpu, config, (t, b), ids, self.chunk_steps).is_none() {
            return Ok(None);
        }
        if let Some(why) = chunked::unsupported(config, ids) {
            // A model that cannot run in chunks runs a sequence that fits in one piece.
            if chunked::chunk_steps(gpu, config, (t, b), ids, None).is_none() {
                return Ok(None);
            }
            return Err(chunked::refused(t, why));
        }
        match x {
            Input::Values(x) => Ok(Some(x)),
            Input::Tokens(_) => Err(chunked::refused(t, "token ids cannot be")),
        }
    }

    /// An error when gradient norms are asked for a sequence run in chunks.
    fn no_chunked_norms(&self) -> Result<()> {
        if self.grad_norms {
            return Err(InputError::Invalid {
                arg: "grad_norms".into(),
                reason: "gradient norms per step are not recorded for a sequence run in chunks; \
                         use shorter sequences or set_grad_norms(false)"
                    .into(),
            }
            .into());
        }
        Ok(())
    }

    /// The chunks' workspaces for `(t, b)`, made when needed.
    fn chunks(&mut self, (t, b): (usize, usize)) -> Result<&mut Chunks> {
        let len = chunked::chunk_steps(&self.gpu, &self.config, (t, b), false, self.chunk_steps)
            .unwrap_or(t);
        let lp = self.driver.resolve(&self.gpu, b, self.config.hidden)?;
        let fits = self
            .chunks
            .as_ref()
            .is_some_and(|c| c.shape() == (t, b, len) && c.lp == lp);
        if !fits {
            self.chunks = None;
            self.chunks = Some(Chunks::new(
                &self.gpu,
                &self.config,
                &self.layout,
                (&self.params, &self.grads),
                (t, b, len),
                lp,
            )?);
        }
        Ok(self.chunks.as_mut().expect("chunks were just made"))
    }

    fn check_gpu(&self, arg: &str, t: &Tensor) -> Result<()> {
        t.check_fresh(arg)?;
        if !t.gpu().same_device(&self.gpu) {
            return Err(InputError::Foreign {
                arg: arg.into(),
                owner: "GPU",
            }
            .into());
        }
        Ok(())
    }

    /// Checks `x` and `h0`, returns `(T, B)`.
    fn check_inputs(&self, x: Input, h0: Option<&Tensor>) -> Result<(usize, usize)> {
        let (_, order) = self.config.leading([0, 0]);
        let s = match x {
            Input::Values(x) => {
                self.check_gpu("x", x)?;
                let s = x.shape();
                check_nonempty("x", s)?;
                if s.len() != 3 || s[2] != self.config.input {
                    let want = format!("[{order}, {}]", self.config.input);
                    return Err(shape_err("x", want, s));
                }
                s
            }
            Input::Tokens(ids) => {
                if !ids.gpu.same_device(&self.gpu) {
                    return Err(InputError::Foreign {
                        arg: "x".into(),
                        owner: "GPU",
                    }
                    .into());
                }
                let s = ids.shape();
                if s.len() != 2 {
                    return Err(shape_err("x", format!("[{order}] token ids"), s));
                }
                if ids.max_id() as usize >= self.config.input {
                    return Err(InputError::TokenOutOfRange {
                        arg: "x".into(),
                        id: ids.max_id() as i64,
                        input: self.config.input,
                    }
                    .into());
                }
                s
            }
        };
        let ([t, b], _) = self.config.leading([s[0], s[1]]);
        if let Some(h0) = h0 {
            self.check_gpu("h0", h0)?;
            let hs = h0.shape();
            let (l, hid) = (self.config.states(), self.config.hidden);
            // PyTorch's [num_layers * directions, B, H], or [B, H] for a single layer.
            let ok = hs == [l, b, hid] || (l == 1 && hs == [b, hid]);
            if !ok {
                return Err(shape_err(
                    "h0",
                    format!("[{l}, {b}, {hid}] (layers x directions, B from x, H)"),
                    hs,
                ));
            }
        }
        Ok((t, b))
    }

    fn check_target(&self, target: Target, loss: Loss, t: usize, b: usize) -> Result<()> {
        let o = self.config.output;
        // The target's leading dimensions, as the caller lays them out.
        let ([d0, d1], order) = self.config.leading([t, b]);
        if let Some(mask) = target.mask() {
            self.check_gpu("mask", mask)?;
            if mask.shape() != [d0, d1] {
                return Err(shape_err(
                    "mask",
                    format!("[{d0}, {d1}] ({order} from x)"),
                    mask.shape(),
                ));
            }
        }
        match (loss.kind, target.unmasked()) {
            (LossKind::Mse, Target::Values(y)) => {
                self.check_gpu("y", y)?;
                if y.shape() != [d0, d1, o] {
                    return Err(shape_err(
                        "y",
                        format!("[{d0}, {d1}, {o}] ({order} from x)"),
                        y.shape(),
                    ));
                }
            }
            (LossKind::CrossEntropy, Target::Classes(y)) => {
                if !y.gpu.same_device(&self.gpu) {
                    return Err(InputError::Foreign {
                        arg: "y".into(),
                        owner: "GPU",
                    }
                    .into());
                }
                if y.shape() != [d0, d1] {
                    return Err(shape_err(
                        "y",
                        format!("[{d0}, {d1}] ({order} from x)"),
                        y.shape(),
                    ));
                }
                if y.max_id() as usize >= o {
                    return Err(InputError::ClassOutOfRange {
                        arg: "y".into(),
                        id: y.max_id() as i64,
                        classes: o,
                    }
                    .into());
                }
            }
            (LossKind::Mse, _) => {
                return Err(InputError::TargetKind {
                    loss: "mse",
                    needs: "f32 values `Target::Values` [T, B, O]",
                }
                .into());
            }
            (LossKind::CrossEntropy, _) => {
                return Err(InputError::TargetKind {
                    loss: "cross_entropy",
                    needs: "class ids `Target::Classes` [T, B]",
                }
                .into());
            }
        }
        Ok(())
    }

    /// The workspace for `(t, b)`, made (once per shape) when needed, with its dropout set
    /// for this call: fresh masks for a call that trains (`training_call`, in training mode),
    /// none otherwise.
    fn workspace(
        &mut self,
        t: usize,
        b: usize,
        tokens: bool,
        training_call: bool,
    ) -> Result<&mut Workspace> {
        let lp = self.driver.resolve(
            &self.gpu,
            b,
            workspace::padded_hidden(&self.gpu, &self.config),
        )?;
        let fits = self.ws.as_ref().is_some_and(|w| {
            w.steps == t
                && w.batch == b
                && w.lp == lp
                && w.tokens == tokens
                && w.grad_norms.is_some() == self.grad_norms
        });
        if !fits {
            // Drop the old one first, so two full workspaces never coexist.
            (self.ws, self.has_norms) = (None, false);
            self.ws = Some(Workspace::new(
                &self.gpu,
                &self.config,
                &self.layout,
                (&self.params, &self.grads),
                workspace::Shape {
                    steps: t,
                    batch: b,
                    tokens,
                    chunk: false,
                    norms: self.grad_norms,
                },
                lp,
            )?);
        }
        self.draw_dropout(training_call);
        Ok(self.ws.as_mut().expect("workspace was just made"))
    }

    /// Copies x, h0 (or zeros) and the target into the workspace.
    fn stage<'a>(
        ws: &'a Workspace,
        x: Input<'a>,
        h0: Option<&'a Tensor>,
        target: Option<Target<'a>>,
        hidden: usize,
    ) -> impl FnOnce(&mut wgpu::CommandEncoder) + 'a {
        move |enc: &mut wgpu::CommandEncoder| {
            let bytes = |n: usize| n as u64 * 4;
            // A batch-first model's inputs and targets land in its [B, T, ...] buffers; its
            // plans swap them.
            let (x_dst, y_dst) = match &ws.batch_first {
                Some(bf) => (&bf.x, &bf.y),
                None => (&ws.x, &ws.y),
            };
            match x {
                Input::Values(x) => enc.copy_buffer_to_buffer(
                    x.buffer(),
                    bytes(x.offset()),
                    x_dst,
                    0,
                    bytes(x.len()),
                ),
                // The ids and their sorted positions, read in the caller's layout.
                Input::Tokens(ids) => {
                    enc.copy_buffer_to_buffer(&ids.buffer, 0, &ws.x, 0, bytes(2 * ids.len()))
                }
            }
            let bh = bytes(ws.batch * hidden);
            if let Some(padded) = &ws.padded {
                // The forward plan pads it into the states.
                match h0 {
                    Some(h0) => enc.copy_buffer_to_buffer(
                        h0.buffer(),
                        bytes(h0.offset()),
                        &padded.h0,
                        0,
                        bytes(h0.len()),
                    ),
                    None => enc.clear_buffer(&padded.h0, 0, None),
                }
            }
            for (kd, (h_all, off)) in ws.state_slots().enumerate().filter(|_| ws.padded.is_none()) {
                match h0 {
                    Some(h0) => enc.copy_buffer_to_buffer(
                        h0.buffer(),
                        bytes(h0.offset()) + kd as u64 * bh,
                        h_all,
                        off,
                        bh,
                    ),
                    None => enc.clear_buffer(h_all, off, Some(bh)),
                }
            }
            if let Some(mask) = target.and_then(|t| t.mask()) {
                let dst = ws.batch_first.as_ref().map_or(&ws.mask, |bf| &bf.mask);
                let n = bytes(mask.len());
                enc.copy_buffer_to_buffer(mask.buffer(), bytes(mask.offset()), dst, 0, n);
            }
            match target.map(Target::unmasked) {
                Some(Target::Values(y)) => enc.copy_buffer_to_buffer(
                    y.buffer(),
                    bytes(y.offset()),
                    y_dst,
                    0,
                    bytes(y.len()),
                ),
                Some(Target::Classes(y)) => enc.copy_buffer_to_buffer(
                    &y.buffer,
                    0,
                    y_dst,
                    0,
                    bytes(y.shape().iter().product()),
                ),
                // `unmasked` leaves none.
                Some(Target::MaskedValues(..) | Target::MaskedClasses(..)) | None => {}
            }
        }
    }

    /// Copies every layer's last state into `h_n`, after a forward pass.
    fn gather_h_n(ws: &Workspace, hidden: usize) -> impl FnOnce(&mut wgpu::CommandEncoder) + '_ {
        move |enc: &mut wgpu::CommandEncoder| {
            let bh = (ws.batch * hidden) as u64 * 4;
            // With a padded H the forward plan crops them into h_n itself.
            for (kd, (h_all, off)) in ws.state_slots().enumerate().filter(|_| ws.padded.is_none()) {
                enc.copy_buffer_to_buffer(
                    h_all,
                    off + ws.steps as u64 * bh,
                    &ws.h_n,
                    kd as u64 * bh,
                    bh,
                );
            }
        }
    }

    fn forward_views(&self) -> Forward {
        let (o_buf, h_n, t, b) = match (&self.chunks, &self.ws) {
            (Some(ch), _) if self.chunked => {
                let (t, b, _) = ch.shape();
                (ch.output(), ch.h_n(), t, b)
            }
            (_, Some(ws)) => {
                let o = ws.batch_first.as_ref().map_or(&ws.o, |bf| &bf.o);
                (o, &ws.h_n, ws.steps, ws.batch)
            }
            _ => unreachable!("forward ran"),
        };
        let (h, o) = (self.config.hidden, self.config.output);
        let ([d0, d1], _) = self.config.leading([t, b]);
        let by = "forward pass (forward, evaluate, loss_and_gradients or train_step)";
        Forward {
            output: Tensor::view(&self.gpu, o_buf, 0, &[d0, d1, o])
                .guarded(&self.forward_calls, by),
            h_n: Tensor::view(&self.gpu, h_n, 0, &[self.config.states(), b, h])
                .guarded(&self.forward_calls, by),
        }
    }

    fn gradient_views(&self) -> Gradients {
        // Where dL/dx and dL/dh0 are, the steps and rows, and whether x is token ids.
        let (dx, dh0, t, b, ids) = match (&self.chunks, &self.ws) {
            (Some(ch), _) if self.chunked => {
                let (t, b, _) = ch.shape();
                (ch.dx(), ch.dh0(), t, b, false)
            }
            (_, Some(ws)) => {
                let dx = ws.batch_first.as_ref().map_or(&ws.dx, |bf| &bf.dx);
                (dx, &ws.dh0, ws.steps, ws.batch, ws.tokens)
            }
            _ => unreachable!("backward ran"),
        };
        let by = "backward pass (backward, loss_and_gradients or train_step)";
        let guard = |t: Tensor| t.guarded(&self.backward_calls, by);
        let params = self
            .layout
            .entries()
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    guard(Tensor::view(&self.gpu, &self.grads, e.offset, &e.shape)),
                )
            })
            .collect();
        Gradients {
            params,
            x: (self.has_dx && !ids).then(|| {
                let ([d0, d1], _) = self.config.leading([t, b]);
                guard(Tensor::view(&self.gpu, dx, 0, &[d0, d1, self.config.input]))
            }),
            h0: self.has_dx.then(|| {
                let shape = [self.config.states(), b, self.config.hidden];
                guard(Tensor::view(&self.gpu, dh0, 0, &shape))
            }),
        }
    }

    /// Runs the sequence `x` (values `[T, B, I]`, or token ids `[T, B]`: [`Input`]) from `h0`
    /// `[B, H]` (zeros when `None`).
    ///
    /// One submit; nothing is read back. The result stays on the GPU until downloaded.
    pub fn forward<'x>(&mut self, x: impl Into<Input<'x>>, h0: Option<&Tensor>) -> Result<Forward> {
        let x = x.into();
        let (t, b) = self.check_inputs(x, h0)?;
        let (driver, hidden) = (self.driver, self.config.hidden);
        let gpu = self.gpu.clone();
        if let Some(xv) = self.chunking(x, (t, b))? {
            self.overwrites(false);
            self.forward_weights = Some(self.weights_version);
            self.chunks((t, b))?
                .forward(&gpu, driver, xv, h0, None, false)?;
            (self.chunked, self.has_loss) = (true, false);
            return Ok(self.forward_views());
        }
        self.chunked = false;
        self.overwrites(false);
        self.forward_weights = Some(self.weights_version);
        let ws = self.workspace(t, b, tokens(x), true)?;
        ops::run(
            &gpu,
            "forward",
            driver,
            Self::stage(ws, x, h0, None, hidden),
            &ws.forward_plans(),
            Self::gather_h_n(ws, hidden),
        )?;
        ws.layouts_fresh = true;
        self.has_loss = false;
        Ok(self.forward_views())
    }

    /// Back-propagates `d_output` = dL/do `[T, B, O]` through the latest forward pass.
    pub fn backward(&mut self, d_output: &Tensor) -> Result<Gradients> {
        self.check_gpu("d_output", d_output)?;
        let (steps, batch) = match (&self.chunks, &self.ws) {
            (Some(ch), _) if self.chunked => (ch.shape().0, ch.shape().1),
            (_, Some(ws)) if !self.chunked => (ws.steps, ws.batch),
            _ => return Err(InputError::NoForward.into()),
        };
        if self.forward_weights != Some(self.weights_version) {
            return Err(InputError::Stale {
                arg: "backward".into(),
                reason: "the weights changed after the latest forward pass (an optimizer \
                         step, set_parameter or init_layer), so its states belong to other \
                         weights; run forward again first"
                    .into(),
            }
            .into());
        }
        let ([d0, d1], _) = self.config.leading([steps, batch]);
        let want = [d0, d1, self.config.output];
        if d_output.shape() != want {
            return Err(shape_err(
                "d_output",
                format!("{want:?} (the latest forward's outputs)"),
                d_output.shape(),
            ));
        }
        self.backward_calls.fetch_add(1, Ordering::AcqRel);
        if self.chunked {
            self.no_chunked_norms()?;
            let (gpu, driver, dx) = (self.gpu.clone(), self.driver, self.input_gradients);
            let ch = self
                .chunks
                .as_mut()
                .expect("the latest forward ran in chunks");
            ch.backward(&gpu, driver, &self.grads, Seed::Given(d_output), dx, &[])?;
            (self.has_dx, self.has_norms) = (dx, false);
            return Ok(self.gradient_views());
        }
        let Some(ws) = self.ws.as_ref() else {
            return Err(InputError::NoForward.into());
        };
        let prepare = |enc: &mut wgpu::CommandEncoder| {
            let dst = ws.batch_first.as_ref().map_or(&ws.d_o, |bf| &bf.d_o);
            enc.copy_buffer_to_buffer(
                d_output.buffer(),
                d_output.offset() as u64 * 4,
                dst,
                0,
                d_output.len() as u64 * 4,
            );
        };
        let mut plans = Vec::new();
        if let Some(bf) = &ws.batch_first {
            plans.push(&bf.d_o_in);
        }
        plans.push(&ws.backward);
        plans.extend(ws.grad_norms.as_ref().map(|(p, _)| p));
        if self.input_gradients {
            plans.extend([&ws.input_grad, &ws.state_grad]);
        }
        ops::run(&self.gpu, "backward", self.driver, prepare, &plans, |_| {})?;
        self.has_dx = self.input_gradients;
        self.has_norms = ws.grad_norms.is_some();
        Ok(self.gradient_views())
    }

    /// Forward, loss and backward in one submit; the loss is read with [`Rnn::last_loss`].
    pub fn loss_and_gradients<'x>(
        &mut self,
        x: impl Into<Input<'x>>,
        h0: Option<&Tensor>,
        target: Target,
        loss: Loss,
    ) -> Result<(Forward, Gradients)> {
        self.run_step(x.into(), h0, target, loss, None)?;
        Ok((self.forward_views(), self.gradient_views()))
    }

    /// Forward and loss only, no gradients: returns the loss (one read-back), for validation.
    pub fn evaluate<'x>(
        &mut self,
        x: impl Into<Input<'x>>,
        h0: Option<&Tensor>,
        target: Target,
        loss: Loss,
    ) -> Result<(Forward, f32)> {
        let x = x.into();
        let (t, b) = self.check_inputs(x, h0)?;
        self.check_target(target, loss, t, b)?;
        let (driver, hidden, outputs) = (self.driver, self.config.hidden, self.config.output);
        let gpu = self.gpu.clone();
        self.overwrites(false);
        self.forward_weights = Some(self.weights_version);
        if let Some(xv) = self.chunking(x, (t, b))? {
            self.chunks((t, b))?
                .forward(&gpu, driver, xv, h0, Some((target, loss)), true)?;
            (self.chunked, self.has_loss) = (true, true);
            return Ok((self.forward_views(), self.last_loss()?));
        }
        self.chunked = false;
        let ws = self.workspace(t, b, tokens(x), false)?;
        let key = (loss, target.mask().is_some());
        ws.prepare_loss(&gpu, key, outputs)?;
        let ws = &*ws;
        ops::run(
            &gpu,
            "evaluate",
            driver,
            Self::stage(ws, x, h0, Some(target), hidden),
            &ws.step_plans(key),
            Self::gather_h_n(ws, hidden),
        )?;
        self.set_layouts_fresh(true);
        self.has_loss = true;
        Ok((self.forward_views(), self.last_loss()?))
    }

    /// One training step: forward, loss, backward, gradient clipping and the optimizer's
    /// update, recorded into one command buffer and submitted once. Nothing is read back;
    /// call [`Rnn::last_loss`] when the loss is wanted. Returns views of the forward pass
    /// (outputs and `h_n`, before the update), for carrying the state to the next window.
    pub fn train_step<'x>(
        &mut self,
        x: impl Into<Input<'x>>,
        h0: Option<&Tensor>,
        target: Target,
        loss: Loss,
        optimizer: &mut Optimizer,
    ) -> Result<Forward> {
        self.run_step(x.into(), h0, target, loss, Some(optimizer))?;
        Ok(self.forward_views())
    }

    fn run_step(
        &mut self,
        x: Input,
        h0: Option<&Tensor>,
        target: Target,
        loss: Loss,
        optimizer: Option<&mut Optimizer>,
    ) -> Result<()> {
        let (t, b) = self.check_inputs(x, h0)?;
        self.check_target(target, loss, t, b)?;
        if let Some(opt) = optimizer.as_ref() {
            opt.check_model(self)?;
        }
        let (driver, hidden, outputs) = (self.driver, self.config.hidden, self.config.output);
        let dx = self.input_gradients && optimizer.is_none();
        let updates = optimizer.is_some();
        let gpu = self.gpu.clone();
        self.overwrites(true);
        self.forward_weights = Some(self.weights_version);
        if let Some(xv) = self.chunking(x, (t, b))? {
            self.no_chunked_norms()?;
            self.chunks((t, b))?
                .forward(&gpu, driver, xv, h0, Some((target, loss)), false)?;
            let update;
            let mut after = Vec::new();
            if let Some(opt) = optimizer {
                update = opt.prepare_step()?;
                after.push(update);
            }
            let ch = self.chunks.as_mut().expect("chunks were just made");
            ch.backward(
                &gpu,
                driver,
                &self.grads,
                Seed::Loss(target, loss),
                dx,
                &after,
            )?;
            (self.chunked, self.has_loss, self.has_dx) = (true, true, dx);
            self.has_norms = false;
            if updates {
                self.weights_changed();
            }
            return Ok(());
        }
        self.chunked = false;
        let ws = self.workspace(t, b, tokens(x), true)?;
        let key = (loss, target.mask().is_some());
        ws.prepare_loss(&gpu, key, outputs)?;
        let ws = &*ws;
        let mut plans = ws.step_plans(key);
        plans.push(ws.backward_after(key));
        plans.extend(ws.grad_norms.as_ref().map(|(p, _)| p));
        let norms = ws.grad_norms.is_some();
        // dL/dx only where it is returned, and before an update changes U.
        if dx {
            plans.extend([&ws.input_grad, &ws.state_grad]);
        }
        let update;
        if let Some(opt) = optimizer {
            update = opt.prepare_step()?;
            plans.push(update);
        }
        ops::run(
            &gpu,
            "train_step",
            driver,
            Self::stage(ws, x, h0, Some(target), hidden),
            &plans,
            Self::gather_h_n(ws, hidden),
        )?;
        self.has_loss = true;
        self.has_dx = dx;
        self.has_norms = norms;
        // The update changed W; its layouts are written again before the next forward.
        if updates {
            self.weights_changed();
        } else {
            self.set_layouts_fresh(true);
        }
        Ok(())
    }

    /// GPU milliseconds of each phase of one forward (no `target`) or forward + loss +
    /// backward, each phase in its own timed compute pass. Needs [`Gpu::has_timestamps`].
    pub(crate) fn time_phases(
        &mut self,
        x: Input,
        h0: Option<&Tensor>,
        target: Option<(Target, Loss)>,
    ) -> Result<Vec<(&'static str, f64)>> {
        let (t, b) = self.check_inputs(x, h0)?;
        if let Some((y, loss)) = target {
            self.check_target(y, loss, t, b)?;
        }
        if self.chunking(x, (t, b))?.is_some() {
            return Err(InputError::Invalid {
                arg: "x".into(),
                reason: format!(
                    "phases are timed for sequences that run in one piece; T = {t} \
                                 runs in chunks"
                ),
            }
            .into());
        }
        let (hidden, outputs) = (self.config.hidden, self.config.output);
        let dx = self.input_gradients;
        let gpu = self.gpu.clone();
        self.overwrites(target.is_some());
        self.forward_weights = Some(self.weights_version);
        self.chunked = false;
        let ws = self.workspace(t, b, tokens(x), true)?;
        let key = target.map(|(y, loss)| (loss, y.mask().is_some()));
        if let Some(key) = key {
            ws.prepare_loss(&gpu, key, outputs)?;
        }
        let ws = &*ws;
        let mut plans = match key {
            Some(key) => ws.step_plans(key),
            None => ws.forward_plans(),
        };
        if let Some(key) = key {
            plans.push(ws.backward_after(key));
            if dx {
                plans.extend([&ws.input_grad, &ws.state_grad]);
            }
        }
        let phases = ops::run_timed(
            &gpu,
            Self::stage(ws, x, h0, target.map(|(y, _)| y), hidden),
            &plans,
            Self::gather_h_n(ws, hidden),
        )?;
        self.has_loss = target.is_some();
        self.set_layouts_fresh(true);
        Ok(phases)
    }

    /// The kernels this model's plans for the latest shape dispatch: W's layouts, the forward
    /// pass, the backward pass and the input gradients (not the loss's or the optimizer's),
    /// each name once, in order; empty before the first call. Which ones run depends on the
    /// adapter, the [`KernelStyle`](crate::KernelStyle), the [`Driver`] and the shape.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let Some(ws) = &self.ws else {
            return Vec::new();
        };
        let mut names: Vec<&'static str> = Vec::new();
        let plans =
            ws.layouts
                .iter()
                .chain([&ws.forward, &ws.backward, &ws.input_grad, &ws.state_grad]);
        for name in plans.flat_map(|p| p.kernel_names()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Downloads the loss of the latest [`Rnn::train_step`] or [`Rnn::loss_and_gradients`].
    pub fn last_loss(&self) -> Result<f32> {
        match (&self.ws, &self.chunks, self.has_loss) {
            (_, Some(ch), true) if self.chunked => Ok(self.gpu.read(ch.totals(), 0, 1)?[0]),
            (Some(ws), _, true) => Ok(self.gpu.read(&ws.loss, 0, 1)?[0]),
            _ => Err(InputError::Invalid {
                arg: "last_loss".into(),
                reason: "no loss has been computed since the latest forward; call train_step \
                         or loss_and_gradients first"
                    .into(),
            }
            .into()),
        }
    }
}
