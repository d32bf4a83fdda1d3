//! The deep transition (DT-RNN, and DT(S) with its shortcut; Pascanu et al. 2014): more
//! layers inside every step, `h(t) = φ(T_{d-1} ... φ(T_0 act(a(t)) + c_0) ... + c_{d-1}
//! [+ S h(t-1)])` with `a(t) = W h(t-1) + U x(t) + b`.
//!
//! Fused, every layer of a step runs in one dispatch (`ops::transition`: the 64-wide kernel
//! on GPUs, the subgroup one on lavapipe), and the persistent driver runs all steps in one (or
//! as few as a CPU adapter's loop budget allows), recorded into the same plan as everything
//! else. Unfused (where [`fused::fused`] says so), each product and activation is a dispatch
//! of its own.

use super::Nonlinearity;
use crate::error::Result;
use crate::ops::matmul::{Gemm, matmul};
use crate::ops::reduce::{colsum, sum_parts};
use crate::ops::transition::{self as fused, Fused, MAX_LAYERS};
use crate::ops::transpose::{padded, transpose};
use crate::ops::{At, PlanBuilder, activation, at, u};

/// One direction of one layer's deep transition: its sizes, weights and buffers.
pub(crate) struct Transition<'a> {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    /// The layer's nonlinearity (on `a(t)`) and the transition's (after each of its layers).
    pub act: Nonlinearity,
    pub tact: Nonlinearity,
    /// `W_hh` of this direction.
    pub w: At<'a>,
    /// Each transition layer: weight `[no, ni]`, bias `[no]`, `ni`, `no`.
    pub layers: Vec<(At<'a>, At<'a>, usize, usize)>,
    /// The shortcut `S` `[H, H]`, for DT(S).
    pub skip: Option<At<'a>>,
    /// `U x(t) + b` `[T, B, H]` before the forward pass, `act(a(t))` after it.
    pub xu: At<'a>,
    /// h0 in slot 0 and h(t) in slot t + 1, `[T + 1, B, H]`.
    pub h_all: At<'a>,
    /// dL/dh(t) from above before the backward pass, dL/da(t) after it, `[T, B, H]`.
    pub da: At<'a>,
    /// The outputs of every transition layer but the last (which is `h(t)`),
    /// `[depth - 1][T, B, width]`.
    pub zs: &'a wgpu::Buffer,
    /// dL/d(every transition layer's pre-activation), `[depth - 1][T, B, width]` then
    /// `[T, B, H]`.
    pub dpre: &'a wgpu::Buffer,
    /// The transposed weights ([`fused::transposes_len`]): what the 64-wide fused kernel's
    /// forward pass reads, and the subgroup one's backward pass.
    pub tp: &'a wgpu::Buffer,
    /// The weights and biases with rows padded to vec4s ([`fused::copies_len`]): what the
    /// subgroup kernel's forward pass reads.
    pub tpf: &'a wgpu::Buffer,
    /// How the fused kernels run (steps per dispatch: 1 for the per-step driver); `None` runs
    /// one dispatch per product instead.
    pub fused: Option<Fused>,
    /// `[B, max(H, width)]` for a product whose input and output would share a buffer (a
    /// dispatch may not read and write one buffer), unfused only.
    pub scratch: &'a wgpu::Buffer,
}

impl Transition<'_> {
    /// The inner width (every layer's output but the last).
    fn width(&self) -> usize {
        self.layers[0].3
    }

    /// Where layer `j`'s output of step `t` starts in `zs` (`j` below the last).
    fn z(&self, j: usize, t: usize) -> At<'_> {
        let n = self.batch * self.width();
        at(self.zs, (j * self.steps + t) * n)
    }

    /// Where layer `j`'s dL/d(pre-activation) of step `t` starts in `dpre`.
    fn dp(&self, j: usize, t: usize) -> At<'_> {
        let base = j * self.steps * self.batch * self.width();
        at(self.dpre, base + t * self.batch * self.layers[j].3)
    }

    /// The input of transition layer `j` at step `t`, `act(a(t))` or the previous layer's
    /// output, and its length.
    fn input(&self, j: usize, t: usize) -> (At<'_>, usize) {
        let n = self.batch * self.layers[j].2;
        if j == 0 {
            (self.xu.plus(t * n), n)
        } else {
            (self.z(j - 1, t), n)
        }
    }

    /// The fused kernels' parameters: transposes in `tp`; the forward weights in the model's
    /// parameters, or for the subgroup kernels in `tpf`, padded.
    fn params(&self, subgroup: bool) -> fused::Params {
        let h = self.hidden;
        let mut p = fused::Params {
            batch: u(self.batch),
            hidden: u(h),
            width: u(self.width()),
            depth: u(self.layers.len()),
            steps: u(self.steps),
            act: self.act.code(),
            tact: self.tact.code(),
            skip: u32::from(self.skip.is_some()),
            x_off: u(self.xu.off),
            h_off: u(self.h_all.off),
            da_off: u(self.da.off),
            w: u(self.w.off),
            ..Default::default()
        };
        // Transposes: Wᵀ, each layer's, Sᵀ.
        let mut next = h * padded(h);
        for (j, &(w, b, ni, no)) in self.layers.iter().enumerate() {
            p.lw[j] = u(w.off);
            p.lb[j] = u(b.off);
            p.lwt[j] = u(next);
            next += ni * padded(no);
        }
        if let Some(s) = self.skip {
            p.s = u(s.off);
            p.st = u(next);
        }
        if subgroup {
            // Copies: W, then each layer's weight and bias, then S.
            p.w = 0;
            let mut next = h * padded(h);
            for (j, &(_, _, ni, no)) in self.layers.iter().enumerate() {
                p.lw[j] = u(next);
                next += no * padded(ni);
                p.lb[j] = u(next);
                next += padded(no);
            }
            if self.skip.is_some() {
                p.s = u(next);
            }
        }
        p
    }

    fn buffers(&self, subgroup: bool) -> fused::Buffers<'_> {
        [
            if subgroup { self.tpf } else { self.w.buf },
            self.tp,
            self.xu.buf,
            self.h_all.buf,
            self.zs,
            self.dpre,
            self.da.buf,
        ]
    }

    /// This call's weights laid out for the fused kernels: transposed into `tp`, and for the
    /// subgroup kernels transposed back from there into `tpf`, rows padded to vec4s.
    fn lay_out(&self, plan: &mut PlanBuilder, p: &fused::Params, subgroup: bool) -> Result<()> {
        let h = self.hidden;
        let tp = |off: u32| at(self.tp, off as usize);
        let tpf = |off: u32| at(self.tpf, off as usize);
        transpose(plan, h, h, self.w, tp(0))?;
        for (j, &(w, _, ni, no)) in self.layers.iter().enumerate() {
            transpose(plan, no, ni, w, tp(p.lwt[j]))?;
        }
        if let Some(s) = self.skip {
            transpose(plan, h, h, s, tp(p.st))?;
        }
        if subgroup {
            // [cols, padded(rows)] of [rows, cols]: back from each transpose, and a bias
            // [no] read as [no, 1] into [1, padded(no)].
            transpose(plan, h, h, tp(0), tpf(p.w))?;
            for (j, &(_, b, ni, no)) in self.layers.iter().enumerate() {
                transpose(plan, ni, no, tp(p.lwt[j]), tpf(p.lw[j]))?;
                transpose(plan, no, 1, b, tpf(p.lb[j]))?;
            }
            if self.skip.is_some() {
                transpose(plan, h, h, tp(p.st), tpf(p.s))?;
            }
        }
        Ok(())
    }

    /// Every step forward: `xu` holds `U x(t) + b` on entry and `act(a(t))` after; `h_all`
    /// gets h(t) in slot t + 1.
    pub fn forward(&self, plan: &mut PlanBuilder, unused: &wgpu::Buffer) -> Result<()> {
        let Some(how @ Fused { per, subgroup, .. }) = self.fused else {
            return self.forward_unfused(plan, unused);
        };
        let params = self.params(subgroup);
        self.lay_out(plan, &params, subgroup)?;
        let mut t = 0;
        while t < self.steps {
            let n = per.min(self.steps - t);
            let bufs = self.buffers(subgroup);
            fused::record(plan, (how, false), bufs, params, (t, n))?;
            t += n;
        }
        Ok(())
    }

    /// Every step backward, last to first: `da` holds dL/dh(t) from above on entry and
    /// dL/da(t) after; `dpre` gets every transition layer's dL/d(pre-activation). Reads the
    /// layouts [`Transition::forward`] wrote.
    pub fn backward(&self, plan: &mut PlanBuilder) -> Result<()> {
        let Some(how @ Fused { per, subgroup, .. }) = self.fused else {
            return self.backward_unfused(plan);
        };
        let params = self.params(subgroup);
        let mut left = self.steps;
        while left > 0 {
            let n = per.min(left);
            let bufs = self.buffers(subgroup);
            fused::record(plan, (how, true), bufs, params, (left - 1, n))?;
            left -= n;
        }
        Ok(())
    }

    /// [`Transition::forward`] with one dispatch per product and activation.
    fn forward_unfused(&self, plan: &mut PlanBuilder, unused: &wgpu::Buffer) -> Result<()> {
        let (b, h) = (self.batch, self.hidden);
        let bh = b * h;
        let depth = self.layers.len();
        let (xu, h_all) = (self.xu, self.h_all);
        for t in 0..self.steps {
            // a(t) = xu(t) + h(t-1) Wᵀ, then act(a(t)) in place.
            let mut rec = Gemm::new(b, h, h, h_all.plus(t * bh), self.w, xu.plus(t * bh));
            rec.trans_b = true;
            rec.accumulate = true;
            matmul(plan, rec)?;
            activation::forward(plan, bh, self.act.code(), xu.plus(t * bh), unused)?;
            for (j, &(w, bias, ni, no)) in self.layers.iter().enumerate() {
                let (input, _) = self.input(j, t);
                let last = j + 1 == depth;
                // An inner layer after the first reads and writes `zs`, which one dispatch may
                // not do: it is made in the scratch buffer and copied.
                let inner = j > 0 && !last;
                let out = if last {
                    h_all.plus((t + 1) * bh)
                } else if inner {
                    at(self.scratch, 0)
                } else {
                    self.z(j, t)
                };
                let mut g = Gemm::new(b, no, ni, input, w, out);
                g.trans_b = true;
                g.bias = Some(bias);
                matmul(plan, g)?;
                if let (true, Some(s)) = (last, self.skip) {
                    let mut sk = Gemm::new(b, h, h, h_all.plus(t * bh), s, at(self.scratch, 0));
                    sk.trans_b = true;
                    matmul(plan, sk)?;
                    sum_parts(plan, bh, 1, self.scratch, out, true)?;
                }
                activation::forward(plan, b * no, self.tact.code(), out, unused)?;
                if inner {
                    let z = self.z(j, t);
                    sum_parts(plan, b * no, 1, self.scratch, z, false)?;
                }
            }
        }
        Ok(())
    }

    /// [`Transition::backward`] with one dispatch per product and activation.
    fn backward_unfused(&self, plan: &mut PlanBuilder) -> Result<()> {
        let (b, h) = (self.batch, self.hidden);
        let bh = b * h;
        let top = self.layers.len() - 1;
        for t in (0..self.steps).rev() {
            let here = self.da.plus(t * bh);
            if t + 1 < self.steps {
                // dL/dh(t) += da(t + 1) W (+ dpre_last(t + 1) S).
                let rec = at(self.scratch, 0);
                let g = Gemm::new(b, h, h, self.da.plus((t + 1) * bh), self.w, rec);
                matmul(plan, g)?;
                if let Some(s) = self.skip {
                    let mut g = Gemm::new(b, h, h, self.dp(top, t + 1), s, rec);
                    g.accumulate = true;
                    matmul(plan, g)?;
                }
                sum_parts(plan, bh, 1, self.scratch, here, true)?;
            }
            // dpre_last(t) = dL/dh(t) · act'(h(t)).
            let y = self.h_all.plus((t + 1) * bh);
            let tact = self.tact.code();
            activation::backward_from(plan, bh, tact, (y, Some(here)), self.dp(top, t))?;
            for (j, &(w, _, ni, no)) in self.layers.iter().enumerate().rev() {
                // dL/d(layer j's input) = dpre_j(t) T_j, then through the activation that made
                // it: into dpre_{j-1}(t), or for j = 0 into da(t).
                // Above the first layer the product reads and writes `dpre`, which one dispatch
                // may not do: it goes through the scratch buffer.
                let (input, n) = self.input(j, t);
                if j == 0 {
                    matmul(plan, Gemm::new(b, ni, no, self.dp(j, t), w, here))?;
                    if self.act != Nonlinearity::Identity {
                        activation::backward_from(plan, n, self.act.code(), (input, None), here)?;
                    }
                } else {
                    let rec = at(self.scratch, 0);
                    matmul(plan, Gemm::new(b, ni, no, self.dp(j, t), w, rec))?;
                    let to = self.dp(j - 1, t);
                    activation::backward_from(plan, n, self.tact.code(), (input, Some(rec)), to)?;
                }
            }
        }
        Ok(())
    }

    /// The transition's weight gradients over all rows, after [`Transition::backward`]:
    /// `dT_j = dpre_jᵀ (layer j's inputs)`, `dc_j` their column sums, `dS = dpre_lastᵀ
    /// h(t-1)`; `grads` gives each tensor's place (weights and biases, then the shortcut's).
    pub fn weight_grads(
        &self,
        plan: &mut PlanBuilder,
        (layers, skip): (&[(At, At)], Option<At>),
    ) -> Result<()> {
        let rows = self.steps * self.batch;
        let top = self.layers.len() - 1;
        for (j, &(_, _, ni, no)) in self.layers.iter().enumerate() {
            let (input, _) = self.input(j, 0);
            let dpre = self.dp(j, 0);
            let mut dw = Gemm::new(no, ni, rows, dpre, input, layers[j].0);
            dw.trans_a = true;
            matmul(plan, dw)?;
            colsum(plan, rows, no, dpre, layers[j].1, None)?;
        }
        if let Some(ds) = skip {
            let h = self.hidden;
            let mut g = Gemm::new(h, h, rows, self.dp(top, 0), self.h_all, ds);
            g.trans_a = true;
            matmul(plan, g)?;
        }
        Ok(())
    }

    /// dL/d(the last layer's pre-activation) from step `t` on, `[T - t, B, H]`: what the
    /// shortcut carries back.
    pub fn last_dpre(&self, t: usize) -> At<'_> {
        self.dp(self.layers.len() - 1, t)
    }

    /// `dst += dpre_last(0) S`: the shortcut's share of dL/dh0.
    pub fn skip_into_dh0(&self, plan: &mut PlanBuilder, dst: At) -> Result<()> {
        if let Some(s) = self.skip {
            let h = self.hidden;
            let mut g = Gemm::new(self.batch, h, h, self.last_dpre(0), s, dst);
            g.accumulate = true;
            matmul(plan, g)?;
        }
        Ok(())
    }
}

/// Checks at compile time that the fused kernels take as many layers as a block may have.
const _: () = assert!(super::config::MAX_BLOCK_DEPTH <= MAX_LAYERS);
