//! The deep transition (DT-RNN, and DT(S) with its shortcut; Pascanu et al. 2014): more
//! layers inside every step, `h(t) = φ(T_{d-1} ... φ(T_0 act(a(t)) + c_0) ... + c_{d-1}
//! [+ S h(t-1)])` with `a(t) = W h(t-1) + U x(t) + b`.
//!
//! Each step is a handful of products over that step's B rows, recorded into the same plan
//! as everything else (no submit per layer or per step): `a(t)` accumulated onto the input
//! projection, its activation, then each transition layer's product and activation. This is
//! the plain form, not yet fused into the recurrence kernels: one dispatch per product.

use super::Nonlinearity;
use crate::error::Result;
use crate::ops::activation;
use crate::ops::matmul::{Gemm, matmul};
use crate::ops::reduce::{colsum, sum_parts};
use crate::ops::{At, PlanBuilder, at};

/// One direction of one layer's deep transition: its sizes, weights and scratch.
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
    /// The outputs of every transition layer but the last (which is `h(t)`) `[T, B, width]`.
    pub zs: &'a [wgpu::Buffer],
    /// dL/d(every transition layer's pre-activation) `[T, B, no]`.
    pub dpre: &'a [wgpu::Buffer],
    /// `[B, H]` for a product whose input and output would share a buffer (a dispatch may not
    /// read and write one buffer): `S h(t-1)` on the way forward, `da(t + 1) W` back.
    pub scratch: &'a wgpu::Buffer,
}

impl Transition<'_> {
    /// The input of transition layer `j` at step `t`: `act(a(t))` (held in `xu`) or the
    /// previous layer's output.
    fn input<'b>(&'b self, j: usize, t: usize, xu: At<'b>) -> (At<'b>, usize) {
        let bh = self.batch * self.hidden;
        if j == 0 {
            (xu.plus(t * bh), bh)
        } else {
            let n = self.batch * self.layers[j - 1].3;
            (at(&self.zs[j - 1], t * n), n)
        }
    }

    /// Every step forward: `xu` holds `U x(t) + b` `[T, B, H]` on entry and `act(a(t))` after;
    /// `h_all` `[T + 1, B, H]` holds h0 in slot 0 and gets h(t) in slot t + 1.
    pub fn forward(
        &self,
        plan: &mut PlanBuilder,
        xu: At,
        h_all: At,
        unused: &wgpu::Buffer,
    ) -> Result<()> {
        let (b, h) = (self.batch, self.hidden);
        let bh = b * h;
        let depth = self.layers.len();
        for t in 0..self.steps {
            // a(t) = xu(t) + h(t-1) Wᵀ, then act(a(t)) in place.
            let mut rec = Gemm::new(b, h, h, h_all.plus(t * bh), self.w, xu.plus(t * bh));
            rec.trans_b = true;
            rec.accumulate = true;
            matmul(plan, rec)?;
            activation::forward(plan, bh, self.act.code(), xu.plus(t * bh), unused)?;
            for (j, &(w, bias, ni, no)) in self.layers.iter().enumerate() {
                let (input, _) = self.input(j, t, xu);
                let last = j + 1 == depth;
                let out = if last {
                    h_all.plus((t + 1) * bh)
                } else {
                    at(&self.zs[j], t * b * no)
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
            }
        }
        Ok(())
    }

    /// Every step backward, last to first: `da` `[T, B, H]` holds dL/dh(t) from above on
    /// entry and dL/da(t) after; `dpre` gets every transition layer's dL/d(pre-activation).
    pub fn backward(&self, plan: &mut PlanBuilder, xu: At, h_all: At, da: At) -> Result<()> {
        let (b, h) = (self.batch, self.hidden);
        let bh = b * h;
        let depth = self.layers.len();
        let last = &self.dpre[depth - 1];
        for t in (0..self.steps).rev() {
            let here = da.plus(t * bh);
            if t + 1 < self.steps {
                // dL/dh(t) += da(t + 1) W (+ dpre_last(t + 1) S).
                let rec = at(self.scratch, 0);
                let g = Gemm::new(b, h, h, da.plus((t + 1) * bh), self.w, rec);
                matmul(plan, g)?;
                if let Some(s) = self.skip {
                    let mut g = Gemm::new(b, h, h, at(last, (t + 1) * bh), s, rec);
                    g.accumulate = true;
                    matmul(plan, g)?;
                }
                sum_parts(plan, bh, 1, self.scratch, here, true)?;
            }
            // dpre_last(t) = dL/dh(t) · act'(h(t)).
            let y = h_all.plus((t + 1) * bh);
            activation::backward_from(
                plan,
                bh,
                self.tact.code(),
                (y, Some(here)),
                at(last, t * bh),
            )?;
            for (j, &(w, _, ni, no)) in self.layers.iter().enumerate().rev() {
                // dL/d(layer j's input) = dpre_j(t) T_j, then through the activation that made
                // it: into dpre_{j-1}(t), or for j = 0 into da(t).
                let (input, n) = self.input(j, t, xu);
                let out = if j == 0 {
                    here
                } else {
                    at(&self.dpre[j - 1], t * n)
                };
                let g = Gemm::new(b, ni, no, at(&self.dpre[j], t * b * no), w, out);
                matmul(plan, g)?;
                let act = if j == 0 { self.act } else { self.tact };
                if act != Nonlinearity::Identity {
                    activation::backward_from(plan, n, act.code(), (input, None), out)?;
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
        (xu, h_all): (At, At),
        (layers, skip): (&[(At, At)], Option<At>),
    ) -> Result<()> {
        let rows = self.steps * self.batch;
        let depth = self.layers.len();
        for (j, &(_, _, ni, no)) in self.layers.iter().enumerate() {
            let input = if j == 0 { xu } else { at(&self.zs[j - 1], 0) };
            let dpre = at(&self.dpre[j], 0);
            let mut dw = Gemm::new(no, ni, rows, dpre, input, layers[j].0);
            dw.trans_a = true;
            matmul(plan, dw)?;
            colsum(plan, rows, no, dpre, layers[j].1, None)?;
        }
        if let Some(ds) = skip {
            let h = self.hidden;
            let mut g = Gemm::new(h, h, rows, at(&self.dpre[depth - 1], 0), h_all, ds);
            g.trans_a = true;
            matmul(plan, g)?;
        }
        Ok(())
    }

    /// `dst += dpre_last(0) S`: the shortcut's share of dL/dh0.
    pub fn skip_into_dh0(&self, plan: &mut PlanBuilder, dst: At) -> Result<()> {
        if let Some(s) = self.skip {
            let h = self.hidden;
            let last = &self.dpre[self.layers.len() - 1];
            let mut g = Gemm::new(self.batch, h, h, at(last, 0), s, dst);
            g.accumulate = true;
            matmul(plan, g)?;
        }
        Ok(())
    }
}
