//! Buffers and recorded plans for one `(T, B)` shape, reused across calls.

use std::collections::HashMap;

use super::params::{B_HH, B_IH, FC_B, FC_W, ParamLayout, W_HH, W_IH};
use super::{Nonlinearity, RnnConfig};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::loss::Loss;
use crate::ops::loss::LossBuffers;
use crate::ops::matmul::{Gemm, MAX_CPU_ROWS, ld_b_fits, matmul, row_sums_fit, tn_row_sums_fit};
use crate::ops::recurrence::{Loop, Recurrence};
use crate::ops::reduce::colsum;
use crate::ops::transpose::{padded, transpose};
use crate::ops::{Plan, PlanBuilder, at};

/// Bytes of `dL/da`, `h_all`, `x` and `dL/do` up to which the weight gradients read them in
/// place with the subgroup kernels (about a CPU core's L2 cache), rather than transposed.
const TN_CACHE_BYTES: usize = 1 << 20;

/// Every buffer a forward and backward pass of `T` steps over `B` rows needs. Scratch buffers
/// (input projections, dL/da) are held only by the plans' bind groups.
pub(crate) struct Workspace {
    pub steps: usize,
    pub batch: usize,
    /// How the serial loop is dispatched in these plans.
    pub lp: Loop,
    /// Inputs `[T, B, I]`, copied in from the caller's tensor.
    pub x: wgpu::Buffer,
    /// Hidden states `[T + 1, B, H]`: slot 0 is h0, slot t + 1 is h(t).
    pub h_all: wgpu::Buffer,
    /// Outputs `[T, B, O]`.
    pub o: wgpu::Buffer,
    /// Targets: f32 `[T, B, O]` or u32 class ids `[T, B]`.
    pub y: wgpu::Buffer,
    /// dL/do `[T, B, O]`.
    pub d_o: wgpu::Buffer,
    /// Per-row losses `[T * B]`.
    pub rows: wgpu::Buffer,
    /// The loss `[1]`.
    pub loss: wgpu::Buffer,
    /// dL/dx `[T, B, I]`.
    pub dx: wgpu::Buffer,
    /// dL/dh0 `[B, H]`.
    pub dh0: wgpu::Buffer,
    pub forward: Plan,
    /// Writes `W`'s layouts for the loops, where they use them; before `forward` whenever `W`
    /// has changed since it last ran.
    pub layouts: Option<Plan>,
    /// `layouts` has run since `W` last changed.
    pub layouts_fresh: bool,
    /// Every parameter gradient.
    pub backward: Plan,
    /// dL/dx and dL/dh0, after `backward`.
    pub input_grad: Plan,
    losses: HashMap<Loss, Plan>,
}

impl Workspace {
    pub fn new(
        gpu: &Gpu,
        config: &RnnConfig,
        layout: &ParamLayout,
        (params, grads): (&wgpu::Buffer, &wgpu::Buffer),
        steps: usize,
        batch: usize,
        lp: Loop,
    ) -> Result<Self> {
        let (i, h, o) = (config.input, config.hidden, config.output);
        let rows = steps * batch;
        // lavapipe stops any shader invocation after 65535 loop iterations, silently; the
        // column sums loop over a quarter of the rows each.
        if gpu.is_cpu() && rows > MAX_CPU_ROWS * 4 {
            return Err(InputError::Invalid {
                arg: "x".into(),
                reason: format!(
                    "T * B = {rows} rows is more than a CPU adapter's shaders can loop over ({}); \
                     use shorter sequences or smaller batches",
                    MAX_CPU_ROWS * 4
                ),
            }
            .into());
        }
        let x = gpu.storage_buffer("x [T, B, I]", rows * i)?;
        let h_all = gpu.storage_buffer("hidden states [T + 1, B, H]", (steps + 1) * batch * h)?;
        let xu = gpu.storage_buffer("input projections [T, B, H]", rows * h)?;
        let out = gpu.storage_buffer("outputs [T, B, O]", rows * o)?;
        let y = gpu.storage_buffer("targets [T, B, O]", rows * o)?;
        let d_o = gpu.storage_buffer("dL/do [T, B, O]", rows * o)?;
        let row_loss = gpu.storage_buffer("row losses [T * B]", rows)?;
        let loss = gpu.storage_buffer("loss", 1)?;
        let da = gpu.storage_buffer("dL/da [T, B, H]", rows * h)?;
        let dx = gpu.storage_buffer("dL/dx [T, B, I]", rows * i)?;
        let dh0 = gpu.storage_buffer("dL/dh0 [B, H]", batch * h)?;
        let wp = gpu.storage_buffer("padded W layouts", Recurrence::wp_len(h))?;

        let p = |name| at(params, layout.offset(name));
        let g = |name| at(grads, layout.offset(name));
        let rec = Recurrence {
            steps,
            batch,
            hidden: h,
            act: match config.nonlinearity {
                Nonlinearity::Tanh => 0,
                Nonlinearity::Relu => 1,
            },
            w: p(W_HH),
            wp: &wp,
        };
        let bh = batch * h;

        // Forward: XU = X U^T + b_ih + b_hh; h(t) per step; O = H V^T + c.
        let mut fw = PlanBuilder::new(gpu, "forward");
        fw.phase("input projection");
        let mut xu_gemm = Gemm::new(rows, h, i, at(&x, 0), p(W_IH), at(&xu, 0));
        xu_gemm.trans_b = true;
        if config.bias {
            xu_gemm.bias = Some(p(B_IH));
            xu_gemm.bias2 = Some(p(B_HH));
        }
        matmul(&mut fw, xu_gemm)?;
        fw.phase("forward loop");
        rec.forward(&mut fw, lp, &xu, &h_all)?;
        // W's layouts for the loops, in a plan of their own: run only when W has changed.
        let layouts = if Recurrence::uses_layouts(gpu, lp) {
            let mut pb = PlanBuilder::new(gpu, "forward loop");
            rec.prepare(&mut pb)?;
            Some(pb.finish()?)
        } else {
            None
        };
        fw.phase("head");
        let mut head = Gemm::new(rows, o, h, at(&h_all, bh), p(FC_W), at(&out, 0));
        head.trans_b = true;
        head.bias = Some(p(FC_B));
        matmul(&mut fw, head)?;
        let forward = fw.finish()?;

        // Backward: dH_out = dO V; da(t) per step, last to first; then every weight gradient
        // as one multiply over all T * B rows, and dx, dh0.
        let mut bw = PlanBuilder::new(gpu, "backward");
        bw.phase("head");
        let head_back = Gemm::new(rows, h, o, at(&d_o, 0), p(FC_W), at(&da, 0));
        if gpu.subgroup_kernels() && o.is_multiple_of(4) {
            // V transposed to [H, O], so that the product runs as A Bᵀ, the form whose
            // subgroups share their loads (on lavapipe, large's 125 ms became about 70).
            let vt = gpu.storage_buffer("transposed V", h * o)?;
            transpose(&mut bw, o, h, p(FC_W), at(&vt, 0))?;
            let b = at(&vt, 0);
            matmul(
                &mut bw,
                Gemm {
                    b,
                    trans_b: true,
                    ..head_back
                },
            )?;
        } else {
            matmul(&mut bw, head_back)?;
        }
        bw.phase("backward loop");
        rec.backward(&mut bw, lp, &h_all, &da)?;
        bw.phase("weight gradients");
        // With subgroups and operands that stay in cache, Aᵀ B straight from the [T·B, n]
        // operands, the bias gradients as sums inside the products, no transposes: on
        // lavapipe `small`'s training step 3.5 -> 3.1 ms. Past a cache's worth its lanes'
        // strided rows lose to the transposes (`medium`'s weight gradients 35 -> 76 ms).
        let streamed = rows * (2 * h + i + o) * 4;
        let tn = streamed <= TN_CACHE_BYTES
            && tn_row_sums_fit(gpu, o, h, 0, bh)
            && tn_row_sums_fit(gpu, h, h, 0, 0)
            && tn_row_sums_fit(gpu, h, i, 0, 0);
        let bias_sums_done = if tn {
            let tn = |m, n, a, b, c| Gemm {
                trans_a: true,
                ..Gemm::new(m, n, rows, a, b, c)
            };
            let mut dv = tn(o, h, at(&d_o, 0), at(&h_all, bh), g(FC_W));
            dv.row_sums = Some((layout.offset(FC_B), None));
            matmul(&mut bw, dv)?;
            matmul(&mut bw, tn(h, h, at(&da, 0), at(&h_all, 0), g(W_HH)))?;
            let mut du = tn(h, i, at(&da, 0), at(&x, 0), g(W_IH));
            if config.bias {
                du.row_sums = Some((layout.offset(B_IH), Some(layout.offset(B_HH))));
            }
            matmul(&mut bw, du)?;
            true
        } else if gpu.direct_kernels() {
            // CPU adapters: read down their columns, [T·B, n] operands cost a load per value
            // per product, so each is transposed once into rows contiguous along T·B and the
            // products run as A Bᵀ (on lavapipe medium's 66 ms became about 30). dA's
            // transpose serves both dW and dU.
            let kp = padded(rows);
            // With B a multiple of 4, all of h_all is transposed once and both of its views,
            // h(t-1) from column 0 and h(t) from column B, are read from it (rows kp + B long).
            let kh = padded(rows + batch);
            let shared_h = ld_b_fits(gpu, kp, kh, batch) && kh == kp + batch;
            let tb_len = if shared_h { h * kh } else { h * kp };
            let ta = gpu.storage_buffer("transposed dL/do, dL/da", o.max(h) * kp)?;
            let tb = gpu.storage_buffer("transposed h, x", tb_len.max(i * kp))?;
            let nt = |m, n, c| Gemm {
                trans_b: true,
                ..Gemm::new(m, n, kp, at(&ta, 0), at(&tb, 0), c)
            };
            // The bias gradients as sums of the transposed rows, inside the products, where
            // lavapipe's loop limit allows (else column sums below).
            let fused = row_sums_fit(gpu, kp);
            let mut dv = nt(o, h, g(FC_W));
            let mut dw = nt(h, h, g(W_HH));
            if shared_h {
                transpose(&mut bw, rows + batch, h, at(&h_all, 0), at(&tb, 0))?;
                (dv.b, dv.ld_b) = (at(&tb, batch), Some(kh));
                dw.ld_b = Some(kh);
            } else {
                transpose(&mut bw, rows, h, at(&h_all, bh), at(&tb, 0))?;
            }
            transpose(&mut bw, rows, o, at(&d_o, 0), at(&ta, 0))?;
            if fused {
                dv.row_sums = Some((layout.offset(FC_B), None));
            }
            matmul(&mut bw, dv)?;
            transpose(&mut bw, rows, h, at(&da, 0), at(&ta, 0))?;
            if !shared_h {
                transpose(&mut bw, rows, h, at(&h_all, 0), at(&tb, 0))?;
            }
            matmul(&mut bw, dw)?;
            transpose(&mut bw, rows, i, at(&x, 0), at(&tb, 0))?;
            let mut du = nt(h, i, g(W_IH));
            if fused && config.bias {
                du.row_sums = Some((layout.offset(B_IH), Some(layout.offset(B_HH))));
            }
            matmul(&mut bw, du)?;
            fused
        } else {
            // dV = dO^T H_out
            let mut dv = Gemm::new(o, h, rows, at(&d_o, 0), at(&h_all, bh), g(FC_W));
            dv.trans_a = true;
            matmul(&mut bw, dv)?;
            // dU = dA^T X, dW = dA^T H_prev
            let mut du = Gemm::new(h, i, rows, at(&da, 0), at(&x, 0), g(W_IH));
            du.trans_a = true;
            matmul(&mut bw, du)?;
            let mut dw = Gemm::new(h, h, rows, at(&da, 0), at(&h_all, 0), g(W_HH));
            dw.trans_a = true;
            matmul(&mut bw, dw)?;
            false
        };
        if !bias_sums_done {
            colsum(&mut bw, rows, o, at(&d_o, 0), g(FC_B), None)?;
        }
        if config.bias && !bias_sums_done {
            // The two hidden biases enter the sum identically, so their gradients are equal.
            colsum(
                &mut bw,
                rows,
                h,
                at(&da, 0),
                g(B_IH),
                Some(layout.offset(B_HH)),
            )?;
        }
        let backward = bw.finish()?;
        // dx = dA U and dh0 = da(0) W, only when asked for.
        let mut dxp = PlanBuilder::new(gpu, "input gradients");
        let dx_gemm = Gemm::new(rows, i, h, at(&da, 0), p(W_IH), at(&dx, 0));
        let dh0_gemm = Gemm::new(batch, h, h, at(&da, 0), p(W_HH), at(&dh0, 0));
        if gpu.subgroup_kernels() && h.is_multiple_of(4) {
            // As A Bᵀ, the form whose subgroups share their loads: against U transposed, and
            // against Wᵀ, which section 0 of W's layouts already holds (rows H long, as H is a
            // multiple of 4; the layouts of this pass's W, written before its forward loop).
            let ut = gpu.storage_buffer("transposed U", i * h)?;
            transpose(&mut dxp, h, i, p(W_IH), at(&ut, 0))?;
            let (b, trans_b) = (at(&ut, 0), true);
            matmul(
                &mut dxp,
                Gemm {
                    b,
                    trans_b,
                    ..dx_gemm
                },
            )?;
            let b = at(&wp, 0);
            matmul(
                &mut dxp,
                Gemm {
                    b,
                    trans_b,
                    ..dh0_gemm
                },
            )?;
        } else {
            matmul(&mut dxp, dx_gemm)?;
            matmul(&mut dxp, dh0_gemm)?;
        }
        let input_grad = dxp.finish()?;

        Ok(Self {
            steps,
            batch,
            lp,
            x,
            h_all,
            o: out,
            y,
            d_o,
            rows: row_loss,
            loss,
            dx,
            dh0,
            forward,
            layouts,
            layouts_fresh: false,
            backward,
            input_grad,
            losses: HashMap::new(),
        })
    }

    /// The plans of a forward pass: `W`'s layouts first when they are stale.
    pub fn forward_plans(&self) -> Vec<&Plan> {
        match &self.layouts {
            Some(l) if !self.layouts_fresh => vec![l, &self.forward],
            _ => vec![&self.forward],
        }
    }

    /// Records the plan for `loss` unless it exists already.
    pub fn prepare_loss(&mut self, gpu: &Gpu, loss: Loss, outputs: usize) -> Result<()> {
        if !self.losses.contains_key(&loss) {
            let mut b = PlanBuilder::new(gpu, "loss");
            crate::ops::loss::loss(
                &mut b,
                loss,
                self.steps * self.batch,
                outputs,
                &LossBuffers {
                    o: &self.o,
                    y: &self.y,
                    d_o: &self.d_o,
                    rows: &self.rows,
                    loss: &self.loss,
                },
            )?;
            self.losses.insert(loss, b.finish()?);
        }
        Ok(())
    }

    /// The plan for `loss`, recorded by [`Workspace::prepare_loss`].
    pub fn loss_plan(&self, loss: Loss) -> &Plan {
        &self.losses[&loss]
    }
}
