//! Sequences run in chunks of steps: back-propagation through all of time with device memory
//! for one chunk and the states at the chunks' edges, not for every step.
//!
//! The forward sweep runs the chunks first to last, keeping only each chunk's starting states
//! (`[n + 1, L, B, H]`) and the outputs. The backward sweep runs them last to first: each chunk's
//! states are computed again from its starting states (gradient checkpointing), its loss and
//! backward pass run with dL/dh at its end coming in from the chunk after it, its parameter
//! gradients are added into the model's, and its dL/dh0 goes on to the chunk before it. The
//! gradients are those of the whole sequence at once, up to the order of float additions: each
//! chunk's products sum over its own rows, and the chunks' sums are added last to first.
//!
//! One submit per chunk and sweep, none per step; the number of chunks is about `sqrt(T)` by
//! default, so memory is O(chunk + T / chunk) per layer beside the caller's own inputs,
//! targets and outputs, which hold all `T` steps anyway.

use std::collections::HashMap;

use super::RnnConfig;
use super::params::ParamLayout;
use super::workspace::{Shape, Workspace};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::loss::{Loss, Target};
use crate::ops::matmul::MAX_CPU_ROWS;
use crate::ops::recurrence::Loop;
use crate::ops::reduce::sum_parts;
use crate::ops::{self, Driver, Plan, PlanBuilder, at};
use crate::tensor::Tensor;

/// The most steps one workspace of `b` rows holds on `gpu`: CPU adapters loop over at most
/// 131072 rows, and no buffer may pass the adapter's binding limit.
fn most_steps(gpu: &Gpu, config: &RnnConfig, b: usize, tokens: bool) -> usize {
    // Floats per row of the widest buffer: the input (none for token ids), the outputs, every
    // direction's states or gradients, a bidirectional layer's concatenated outputs and its
    // scratch for dL/d(input), the deep output block's layers.
    let (h, d) = (config.hidden, config.directions());
    let i = if tokens { 2 } else { config.input };
    let mut widest = i
        .max(config.output)
        .max(h * d)
        .max(config.deep_output.width)
        .max(config.deep_input.width)
        .max(config.deep_transition.width);
    if d == 2 {
        widest = widest.max(2 * h.max(i).max(config.deep_input.width));
    }
    // h_all holds one step more than the others.
    let by_bytes = (gpu.max_storage_bytes() / (4 * (b * widest) as u64)).saturating_sub(1);
    let by_rows = if gpu.is_cpu() {
        MAX_CPU_ROWS * 4 / b
    } else {
        usize::MAX
    };
    (by_bytes as usize).min(by_rows).max(1)
}

/// The chunk length for a sequence of `t` steps over `b` rows: the caller's `chosen` length
/// when `t` is longer, else `None` (one piece) unless the whole sequence would not fit the
/// adapter, then about `sqrt(t)` steps (at least 64), as far as the adapter allows.
pub(crate) fn chunk_steps(
    gpu: &Gpu,
    config: &RnnConfig,
    (t, b): (usize, usize),
    tokens: bool,
    chosen: Option<usize>,
) -> Option<usize> {
    let most = most_steps(gpu, config, b, tokens);
    match chosen {
        Some(c) if t > c => Some(c.min(most)),
        _ if t > most => Some(t.isqrt().max(64).min(most)),
        _ => None,
    }
}

/// Why a model cannot run in chunks, if it cannot.
pub(crate) fn unsupported(config: &RnnConfig, tokens: bool) -> Option<&'static str> {
    if config.directions() == 2 {
        Some("a bidirectional layer reads the whole sequence before its first output")
    } else if config.dropout > 0.0 && config.layers > 1 {
        Some("dropout masks are drawn by position in the whole sequence")
    } else if tokens {
        Some("token ids are sorted over the whole sequence on upload; pass one-hot values")
    } else {
        None
    }
}

/// Where one chunk lies: its first step, its length, and which workspace runs it.
#[derive(Clone, Copy)]
struct Piece {
    first: usize,
    len: usize,
    tail: bool,
}

/// Buffers and small plans shared by the chunks.
struct Shared {
    steps: usize,
    batch: usize,
    len: usize,
    /// `[I, O, H]` of the caller, layers, and whether tensors are `[B, T, ...]`.
    widths: [usize; 3],
    layers: usize,
    batch_first: bool,
    /// The whole input `[T, B, I]` (caller's layout), kept for a later `backward`.
    x: wgpu::Buffer,
    /// Every chunk's starting states `[n + 1][L, B, H]`; the last are `h_n`.
    states: wgpu::Buffer,
    /// Outputs `[T, B, O]` (caller's layout).
    output: wgpu::Buffer,
    /// The last states `[L, B, H]`.
    h_n: wgpu::Buffer,
    /// dL/dh at the current chunk edge `[L, B, H]`; dL/dh0 after the backward sweep.
    carry: wgpu::Buffer,
    /// dL/dx `[T, B, I]` (caller's layout).
    dx: wgpu::Buffer,
    /// `[loss, counted rows, scale, 1]`: the loss added up over chunks, the mask's count, the
    /// whole sequence's scale, and the scale a loss summed at scale 1 is computed at.
    totals: wgpu::Buffer,
    /// Adds a chunk's parameter gradients into the model's.
    add_grads: Plan,
    /// Per workspace (main, tail): adds its loss into `totals[0]`, and its mask's count into
    /// `totals[1]`.
    add_loss: Vec<Plan>,
    count: Vec<Plan>,
    /// The whole sequence's scale into `totals[2]`, by loss, masked, and applied to `totals[0]`.
    scales: HashMap<(Loss, bool, bool), Plan>,
    /// The chunks' own parameter gradients, written by their backward plans.
    _grads: wgpu::Buffer,
}

/// A sequence of `steps` steps over `batch` rows, run in chunks of `len` steps.
pub(crate) struct Chunks {
    main: Workspace,
    /// The last, shorter chunk, when `len` does not divide `steps`.
    tail: Option<Workspace>,
    shared: Shared,
    /// How the serial loop is dispatched in the chunks' plans.
    pub lp: Loop,
}

/// A tensor's place: buffer, element offset, and the steps along its time axis.
#[derive(Clone, Copy)]
struct Steps<'a> {
    buf: &'a wgpu::Buffer,
    off: usize,
    steps: usize,
}

/// Copies steps `[from, from + len)` of `src` to steps `[to, to + len)` of `dst`, each
/// `[T, B, e]` (or `[B, T, e]` when `batch_first`, one copy per row).
fn copy_steps(
    enc: &mut wgpu::CommandEncoder,
    (src, from): (Steps, usize),
    (dst, to): (Steps, usize),
    (len, batch, e): (usize, usize, usize),
    batch_first: bool,
) {
    let bytes = |n: usize| n as u64 * 4;
    if batch_first {
        for b in 0..batch {
            enc.copy_buffer_to_buffer(
                src.buf,
                bytes(src.off + (b * src.steps + from) * e),
                dst.buf,
                bytes(dst.off + (b * dst.steps + to) * e),
                bytes(len * e),
            );
        }
    } else {
        enc.copy_buffer_to_buffer(
            src.buf,
            bytes(src.off + from * batch * e),
            dst.buf,
            bytes(dst.off + to * batch * e),
            bytes(len * batch * e),
        );
    }
}

/// Where the backward sweep's dL/do comes from.
#[derive(Clone, Copy)]
pub(crate) enum Seed<'a> {
    /// The loss against a target, computed in each chunk.
    Loss(Target<'a>, Loss),
    /// The caller's dL/do `[T, B, O]`.
    Given(&'a Tensor),
}

impl Chunks {
    /// Workspaces for chunks of `len` steps of a `steps`-step sequence over `batch` rows.
    pub fn new(
        gpu: &Gpu,
        config: &RnnConfig,
        layout: &ParamLayout,
        (params, grads): (&wgpu::Buffer, &wgpu::Buffer),
        (steps, batch, len): (usize, usize, usize),
        lp: Loop,
    ) -> Result<Self> {
        let chunk_grads = gpu.storage_buffer("a chunk's gradients", layout.len())?;
        let shape = |steps| Shape {
            steps,
            batch,
            tokens: false,
            chunk: true,
            norms: false,
        };
        let ws = |steps| {
            Workspace::new(
                gpu,
                config,
                layout,
                (params, &chunk_grads),
                shape(steps),
                lp,
            )
        };
        let main = ws(len)?;
        let tail = match steps % len {
            0 => None,
            r => Some(ws(r)?),
        };
        let (i, h, o, l) = (config.input, config.hidden, config.output, config.layers);
        let n = steps.div_ceil(len);
        let lbh = l * batch * h;
        let rows = steps * batch;
        let totals = gpu.storage_buffer("chunked loss totals [4]", 4)?;
        gpu.queue()
            .write_buffer(&totals, 12, bytemuck::bytes_of(&1.0f32));
        let mut pb = PlanBuilder::new(gpu, "chunk gradients");
        sum_parts(&mut pb, layout.len(), 1, &chunk_grads, at(grads, 0), true)?;
        let add_grads = pb.finish()?;
        let mut add_loss = Vec::new();
        let mut count = Vec::new();
        for w in std::iter::once(&main).chain(&tail) {
            let mut pb = PlanBuilder::new(gpu, "chunk loss");
            sum_parts(&mut pb, 1, 1, &w.loss, at(&totals, 0), true)?;
            add_loss.push(pb.finish()?);
            let mut pb = PlanBuilder::new(gpu, "chunk loss");
            // The count does not depend on the order: a batch-first mask is counted as staged.
            let bufs = crate::ops::loss::LossBuffers {
                mask: w.batch_first.as_ref().map_or(&w.mask, |b| &b.mask),
                ..w.loss_buffers(&totals)
            };
            ops::loss::mask_count(&mut pb, w.steps * batch, &bufs)?;
            count.push(pb.finish()?);
        }
        Ok(Self {
            shared: Shared {
                steps,
                batch,
                len,
                widths: [i, o, h],
                layers: l,
                batch_first: config.batch_first,
                x: gpu.storage_buffer("the whole input [T, B, I]", rows * i)?,
                states: gpu.storage_buffer("chunk edge states [n + 1, L, B, H]", (n + 1) * lbh)?,
                output: gpu.storage_buffer("outputs [T, B, O]", rows * o)?,
                h_n: gpu.storage_buffer("last hidden states [L, B, H]", lbh)?,
                carry: gpu.storage_buffer("dL/dh at a chunk edge [L, B, H]", lbh)?,
                dx: gpu.storage_buffer("dL/dx [T, B, I]", rows * i)?,
                totals,
                add_grads,
                add_loss,
                count,
                scales: HashMap::new(),
                _grads: chunk_grads,
            },
            main,
            tail,
            lp,
        })
    }

    /// Total steps, rows per step and steps per chunk.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.shared.steps, self.shared.batch, self.shared.len)
    }

    /// The outputs `[T, B, O]` of the latest forward sweep.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.shared.output
    }

    /// The last states `[L, B, H]` of the latest forward sweep.
    pub fn h_n(&self) -> &wgpu::Buffer {
        &self.shared.h_n
    }

    /// dL/dh0 `[L, B, H]` of the latest backward sweep.
    pub fn dh0(&self) -> &wgpu::Buffer {
        &self.shared.carry
    }

    /// dL/dx `[T, B, I]` of the latest backward sweep that computed it.
    pub fn dx(&self) -> &wgpu::Buffer {
        &self.shared.dx
    }

    /// `[loss, counted rows, scale, 1]`: the latest loss first.
    pub fn totals(&self) -> &wgpu::Buffer {
        &self.shared.totals
    }

    /// W's layouts must be written again before the next forward pass.
    pub fn set_layouts_fresh(&mut self, fresh: bool) {
        self.main.layouts_fresh = fresh;
        if let Some(t) = self.tail.as_mut() {
            t.layouts_fresh = fresh;
        }
    }

    /// The workspace that runs `p` (and its index among main and tail), and the shared parts.
    fn piece(&mut self, p: Piece) -> (&mut Workspace, usize, &Shared) {
        match self.tail.as_mut() {
            Some(t) if p.tail => (t, 1, &self.shared),
            _ => (&mut self.main, 0, &self.shared),
        }
    }

    fn pieces(&self) -> Vec<Piece> {
        let (steps, len) = (self.shared.steps, self.shared.len);
        (0..steps.div_ceil(len))
            .map(|c| {
                let first = c * len;
                Piece {
                    first,
                    len: len.min(steps - first),
                    tail: steps - first < len,
                }
            })
            .collect()
    }

    /// Records the loss plans (chunk and whole-sequence scale) for `key` where missing.
    fn prepare_loss(&mut self, gpu: &Gpu, key: (Loss, bool), apply: bool) -> Result<()> {
        let o = self.shared.widths[1];
        self.main.prepare_loss(gpu, key, o)?;
        if let Some(t) = self.tail.as_mut() {
            t.prepare_loss(gpu, key, o)?;
        }
        let s = &mut self.shared;
        if !s.scales.contains_key(&(key.0, key.1, apply)) {
            let mut pb = PlanBuilder::new(gpu, "chunk loss");
            let rows = s.steps * s.batch;
            ops::loss::chunk_scale(
                &mut pb,
                key,
                (rows, o),
                apply,
                &self.main.loss_buffers(&s.totals),
            )?;
            s.scales.insert((key.0, key.1, apply), pb.finish()?);
        }
        Ok(())
    }

    /// Copies steps `first..first + len` of the caller's `src` (`e` floats a step and row)
    /// into a chunk's buffer `dst`.
    fn stage(
        s: &Shared,
        enc: &mut wgpu::CommandEncoder,
        p: Piece,
        (src, off): (&wgpu::Buffer, usize),
        dst: &wgpu::Buffer,
        e: usize,
    ) {
        let from = Steps {
            buf: src,
            off,
            steps: s.steps,
        };
        let to = Steps {
            buf: dst,
            off: 0,
            steps: p.len,
        };
        copy_steps(
            enc,
            (from, p.first),
            (to, 0),
            (p.len, s.batch, e),
            s.batch_first,
        );
    }

    /// Copies a chunk's `src` out into steps `first..first + len` of the whole `dst`.
    fn unstage(
        s: &Shared,
        enc: &mut wgpu::CommandEncoder,
        p: Piece,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        e: usize,
    ) {
        let from = Steps {
            buf: src,
            off: 0,
            steps: p.len,
        };
        let to = Steps {
            buf: dst,
            off: 0,
            steps: s.steps,
        };
        copy_steps(
            enc,
            (from, 0),
            (to, p.first),
            (p.len, s.batch, e),
            s.batch_first,
        );
    }

    /// Stages chunk `c`'s input, starting states and, with a target, its target and mask.
    fn stage_chunk(
        s: &Shared,
        ws: &Workspace,
        enc: &mut wgpu::CommandEncoder,
        (c, p): (usize, Piece),
        target: Option<Target>,
        mask_only: bool,
    ) {
        let [i, o, h] = s.widths;
        let bf = ws.batch_first.as_ref();
        Self::stage(s, enc, p, (&s.x, 0), bf.map_or(&ws.x, |b| &b.x), i);
        let lbh = (s.layers * s.batch * h) as u64 * 4;
        let bh = (s.batch * h) as u64 * 4;
        for (k, (h_all, off)) in ws.state_slots().enumerate() {
            enc.copy_buffer_to_buffer(&s.states, c as u64 * lbh + k as u64 * bh, h_all, off, bh);
        }
        if let Some(mask) = target.and_then(|t| t.mask()) {
            let dst = bf.map_or(&ws.mask, |b| &b.mask);
            Self::stage(s, enc, p, (mask.buffer(), mask.offset()), dst, 1);
        }
        if mask_only {
            return;
        }
        match target.map(Target::unmasked) {
            Some(Target::Values(y)) => {
                let dst = bf.map_or(&ws.y, |b| &b.y);
                Self::stage(s, enc, p, (y.buffer(), y.offset()), dst, o);
            }
            Some(Target::Classes(y)) => {
                let dst = bf.map_or(&ws.y, |b| &b.y);
                Self::stage(s, enc, p, (&y.buffer, 0), dst, 1);
            }
            _ => {}
        }
    }

    /// Runs every chunk forward from `h0` (zeros when `None`), keeping the chunk edges' states
    /// and the outputs. With `count`, also counts a masked mean's rows and records the whole
    /// sequence's scale for `loss`; with `evaluate`, adds up the loss too.
    pub fn forward(
        &mut self,
        gpu: &Gpu,
        driver: Driver,
        x: &Tensor,
        h0: Option<&Tensor>,
        loss: Option<(Target, Loss)>,
        evaluate: bool,
    ) -> Result<()> {
        let key = loss.map(|(t, l)| (l, t.mask().is_some()));
        if let Some(key) = key {
            self.prepare_loss(gpu, key, evaluate)?;
        }
        let pieces = self.pieces();
        let n = pieces.len();
        let [_, o, h] = self.shared.widths;
        let lbh = (self.shared.layers * self.shared.batch * h) as u64 * 4;
        let bh = (self.shared.batch * h) as u64 * 4;
        for (c, &p) in pieces.iter().enumerate() {
            let (ws, w, s) = self.piece(p);
            let target = loss.map(|(t, _)| t);
            let counting = key.is_some_and(|(_, masked)| masked);
            let prepare = |enc: &mut wgpu::CommandEncoder| {
                if c == 0 {
                    enc.copy_buffer_to_buffer(
                        x.buffer(),
                        x.offset() as u64 * 4,
                        &s.x,
                        0,
                        x.len() as u64 * 4,
                    );
                    match h0 {
                        Some(h0) => enc.copy_buffer_to_buffer(
                            h0.buffer(),
                            h0.offset() as u64 * 4,
                            &s.states,
                            0,
                            h0.len() as u64 * 4,
                        ),
                        None => enc.clear_buffer(&s.states, 0, Some(lbh)),
                    }
                    enc.clear_buffer(&s.totals, 0, Some(12));
                }
                Self::stage_chunk(s, ws, enc, (c, p), target, !evaluate);
                if evaluate {
                    // The loss at scale 1, scaled once summed.
                    enc.copy_buffer_to_buffer(&s.totals, 12, &ws.loss, 4, 4);
                }
            };
            let mut plans = ws.forward_plans();
            if counting {
                plans.push(&s.count[w]);
            }
            if let (Some(key), true) = (key, evaluate) {
                plans.extend([ws.loss_plan(key), &s.add_loss[w]]);
            }
            if let Some(key) = key.filter(|_| c + 1 == n) {
                plans.push(&s.scales[&(key.0, key.1, evaluate)]);
            }
            let finish = |enc: &mut wgpu::CommandEncoder| {
                for (k, (h_all, off)) in ws.state_slots().enumerate() {
                    let last = off + (p.len as u64) * bh;
                    enc.copy_buffer_to_buffer(
                        h_all,
                        last,
                        &s.states,
                        (c + 1) as u64 * lbh + k as u64 * bh,
                        bh,
                    );
                }
                let out = ws.batch_first.as_ref().map_or(&ws.o, |b| &b.o);
                Self::unstage(s, enc, p, out, &s.output, o);
                if c + 1 == n {
                    enc.copy_buffer_to_buffer(&s.states, n as u64 * lbh, &s.h_n, 0, lbh);
                }
            };
            ops::run(gpu, "chunked forward", driver, prepare, &plans, finish)?;
            ws.layouts_fresh = true;
        }
        Ok(())
    }

    /// Runs every chunk backward, last to first, after [`Chunks::forward`]: recomputes its
    /// states, back-propagates `loss` (or the caller's dL/do) with dL/dh at its end from the
    /// chunk after it, and adds its gradients into the model's `grads`. With `dx`, dL/dx too;
    /// `after` runs once the gradients are complete (an optimizer's update).
    pub fn backward(
        &mut self,
        gpu: &Gpu,
        driver: Driver,
        grads: &wgpu::Buffer,
        seed: Seed,
        dx: bool,
        after: &[&Plan],
    ) -> Result<()> {
        let key = match seed {
            Seed::Loss(t, l) => Some((l, t.mask().is_some())),
            Seed::Given(_) => None,
        };
        if let Some(key) = key {
            self.prepare_loss(gpu, key, false)?;
        }
        let pieces = self.pieces();
        let n = pieces.len();
        let [i, o, h] = self.shared.widths;
        let lbh = (self.shared.layers * self.shared.batch * h) as u64 * 4;
        let bh = (self.shared.batch * h) as u64 * 4;
        for (c, &p) in pieces.iter().enumerate().rev() {
            let (ws, w, s) = self.piece(p);
            let target = match seed {
                Seed::Loss(t, _) => Some(t),
                Seed::Given(_) => None,
            };
            let prepare = |enc: &mut wgpu::CommandEncoder| {
                if c + 1 == n {
                    enc.clear_buffer(grads, 0, None);
                    // The loss is added up again; a caller's dL/do leaves the latest one.
                    if key.is_some() {
                        enc.clear_buffer(&s.totals, 0, Some(4));
                    }
                    for g in &ws.dh_in {
                        enc.clear_buffer(g, 0, None);
                    }
                } else {
                    for (k, g) in ws.dh_in.iter().enumerate() {
                        enc.copy_buffer_to_buffer(&s.carry, k as u64 * bh, g, 0, bh);
                    }
                }
                Self::stage_chunk(s, ws, enc, (c, p), target, false);
                match seed {
                    // The whole sequence's scale, from the forward sweep.
                    Seed::Loss(..) => enc.copy_buffer_to_buffer(&s.totals, 8, &ws.loss, 4, 4),
                    Seed::Given(d_o) => {
                        let dst = ws.batch_first.as_ref().map_or(&ws.d_o, |b| &b.d_o);
                        Self::stage(s, enc, p, (d_o.buffer(), d_o.offset()), dst, o);
                    }
                }
            };
            let mut plans = ws.forward_plans();
            match key {
                Some(key) => plans.extend([ws.loss_plan(key), &s.add_loss[w]]),
                None => plans.extend(ws.batch_first.as_ref().map(|b| &b.d_o_in)),
            }
            plans.extend([&ws.backward, &ws.state_grad]);
            if dx {
                plans.push(&ws.input_grad);
            }
            plans.push(&s.add_grads);
            if c == 0 {
                plans.extend(after);
            }
            let finish = |enc: &mut wgpu::CommandEncoder| {
                enc.copy_buffer_to_buffer(&ws.dh0, 0, &s.carry, 0, lbh);
                if dx {
                    let src = ws.batch_first.as_ref().map_or(&ws.dx, |b| &b.dx);
                    Self::unstage(s, enc, p, src, &s.dx, i);
                }
            };
            ops::run(gpu, "chunked backward", driver, prepare, &plans, finish)?;
            ws.layouts_fresh = true;
        }
        Ok(())
    }
}

/// The error for a sequence that needs chunks on a model that cannot run them.
pub(crate) fn refused(t: usize, why: &str) -> crate::error::Error {
    InputError::Invalid {
        arg: "x".into(),
        reason: format!(
            "T = {t} steps do not fit one pass on this adapter and must run in chunks, but {why}; \
             use shorter sequences"
        ),
    }
    .into()
}
