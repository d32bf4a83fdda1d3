//! Buffers and recorded plans for one `(T, B)` shape, reused across calls.

use std::collections::HashMap;

use super::layer::Layer;
use super::params::{
    FC_B, FC_W, ParamLayout, ParamSpec, in_mlp_layers, out_mlp_layers, skip_name, trans_layers,
};
use super::transition::Transition;
use super::{Mlp, RnnConfig};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::loss::Loss;
use crate::ops::activation;
use crate::ops::diagnostics::step_norms;
use crate::ops::directions::{Unused, concat, merge_reversed, reverse_steps, split};
use crate::ops::dropout;
use crate::ops::embed::{TokenLayout, embed, embed_grad, grad_by_subgroups, tokens_table};
use crate::ops::layout::{Blocks, repack, swap_leading};
use crate::ops::loss::{HEAD_CE_COLS, HeadInputs, LossBuffers, head_loss};
use crate::ops::matmul::{
    Gemm, MAX_CPU_ROWS, ld_b_fits, matmul, nt_b_mirror, row_sums_fit, texture_fits, tn_in_place,
    tn_sums_fit,
};
use crate::ops::recurrence::{Back, LayerMirrors, Loop, Recurrence};
use crate::ops::reduce::{colsum, sum_parts};
use crate::ops::state_texture::StateTexture;
use crate::ops::transition::{Fused, copies_len, fused as transition_fused, transposes_len};
use crate::ops::transpose::{padded, transpose};
use crate::ops::{At, CONSTANT_WINDOW, Plan, PlanBuilder, TextureCopy, WINDOW_FLOATS, at};

/// Bytes of `dL/da`, `h_all`, `x` and `dL/do` up to which the weight gradients read them in
/// place with the subgroup kernels ([`tn_in_place`]) rather than transposed: on lavapipe (AVX2)
/// the character model's step (2.8 MB streamed) 66.6 -> 61.5 ms and the classifier's (9.7 MB)
/// 169 -> 162 ms with `matmul_tn_bc` reading B from storage; `medium` (16.4 MB, H = 256:
/// `matmul_tn4_sg`) 800 ms against 700-740 transposed, in one run.
const TN_BYTES: usize = 12 << 20;

/// One recurrent layer's buffers, each holding every direction's tensor (the reverse
/// direction of a bidirectional layer starts [`Workspace::h_stride`] floats on in `h_all`, and
/// a `[T, B, H]` block, rounded the same way, on in `da`), so that both directions' loops run
/// in the same dispatches.
pub(crate) struct LayerBufs {
    /// Hidden states `[T + 1, B, H]` per direction: slot 0 is h0, slot t + 1 is h(t).
    pub h_all: wgpu::Buffer,
    /// dL/da `[T, B, H]` per direction, first holding dL/dh from above (the head, or the next
    /// layer).
    pub da: wgpu::Buffer,
    /// Texture mirrors of `h_all`, `da`, `xu` and W's layouts the persistent loops write and
    /// read, where [`Recurrence::mirrors_state`] says so and they fit the adapter.
    pub mirrors: Option<LayerMirrors>,
}

/// What a workspace is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Time steps T.
    pub steps: usize,
    /// Rows per step B.
    pub batch: usize,
    /// The input is token ids.
    pub tokens: bool,
    /// One chunk of a longer sequence ([`super::chunked`]): dL/dh(T) comes in from the next
    /// chunk (`dh_in`), the loss's scale from the whole sequence, and H is never padded.
    pub chunk: bool,
    /// Record `grad_norms`: ‖dL/dh(t)‖ of every layer and direction after each backward pass.
    pub norms: bool,
}

/// Every buffer a forward and backward pass of `T` steps over `B` rows needs. Scratch buffers
/// (input projections, transposes, W's layouts) are held only by the plans' bind groups.
pub(crate) struct Workspace {
    pub steps: usize,
    pub batch: usize,
    /// How the serial loop is dispatched in these plans.
    pub lp: Loop,
    /// Inputs `[T, B, I]`, copied in from the caller's tensor; with `tokens`, the caller's ids
    /// and their sorted positions (`ClassIds`' layout, `[T, B]` or `[B, T]` as the caller's).
    pub x: wgpu::Buffer,
    /// The input is token ids: layer 0's input projection is a gather of `W_ih`'s columns and
    /// its gradient a scatter-add, and there is no dL/dx.
    pub tokens: bool,
    /// Every layer's states and gradients, bottom first.
    pub layers: Vec<LayerBufs>,
    /// Directions per layer, and the floats between the two directions' `h_all`.
    pub dirs: usize,
    pub h_stride: usize,
    /// The last hidden state of every layer `[L, B, H]`, copied out after each forward.
    pub h_n: wgpu::Buffer,
    /// Outputs `[T, B, O]`.
    pub o: wgpu::Buffer,
    /// A texture mirror of `o` for the loss kernels, where [`Gpu::state_textures`] says so.
    pub o_mirror: Option<StateTexture>,
    /// Targets: f32 `[T, B, O]` or u32 class ids `[T, B]`.
    pub y: wgpu::Buffer,
    /// dL/do `[T, B, O]`.
    pub d_o: wgpu::Buffer,
    /// Per-row losses `[T * B]`.
    pub rows: wgpu::Buffer,
    /// The loss `[2]` (the loss, then a masked mean's scale).
    pub loss: wgpu::Buffer,
    /// A masked loss's weight per row `[T * B]`, copied in from the caller's mask.
    pub mask: wgpu::Buffer,
    /// dL/dx `[T, B, I]`.
    pub dx: wgpu::Buffer,
    /// dL/dh0 `[L·D, B, H]`.
    pub dh0: wgpu::Buffer,
    /// A chunk's: dL/dh(T) of every layer `[B, H]` from the chunk after it, added into the
    /// layer's dL/dh(T) before its backward loop. Empty when not a chunk.
    pub dh_in: Vec<wgpu::Buffer>,
    /// A chunk of a longer sequence ([`Shape::chunk`]).
    pub chunk: bool,
    pub forward: Plan,
    /// Writes every layer's `W` layouts for the loops, where they use them; before `forward`
    /// whenever a `W` has changed since it last ran.
    pub layouts: Option<Plan>,
    /// `layouts` has run since `W` last changed.
    pub layouts_fresh: bool,
    /// Every parameter gradient.
    pub backward: Plan,
    /// `backward` for dL/do in the outputs' mirror, each row padded to whole texels, where a
    /// fused loss plan writes it there (and not into its buffer): where every reader of dL/do
    /// reads it from the mirror (not the gradient norms' product).
    backward_from_mirror: Option<Plan>,
    /// dL/dx, after `backward` (empty for token ids).
    pub input_grad: Plan,
    /// dL/dh0, after `backward`.
    pub state_grad: Plan,
    /// ‖dL/dh(t)‖ of every layer and direction into `norms` `[L·D, T]` (each direction in its
    /// own time), after `backward`, when asked for.
    pub grad_norms: Option<(Plan, wgpu::Buffer)>,
    /// The loss plans, by loss and whether masked, and whether each computes the head itself
    /// (from `fused_head`).
    losses: HashMap<(Loss, bool), (Plan, bool)>,
    /// Where the head and a cross-entropy can be one kernel ([`FusedHead`]).
    fused_head: Option<FusedHead>,
    /// The batch-first copies, for a `batch_first` model.
    pub batch_first: Option<BatchFirst>,
    /// With H padded to a multiple of 4 ([`padded_hidden`]): the caller's h0 staged here, and
    /// the plan that writes the padded parameters.
    pub padded: Option<Padded>,
    /// Dropout's `[seed, training]` for the next call, when the model has dropout between
    /// layers; written by the model before each call.
    pub dropout_state: Option<wgpu::Buffer>,
}

/// The hidden size the plans run at on `gpu`: with the CPU adapters' kernels, `H` rounded up
/// to a multiple of 4, so that the loops and the products read whole vec4s (an H of 65 or 127
/// otherwise sends the loops to the plain kernels, 1.3-2.6x slower than at 72 or 128 on
/// lavapipe; the tiled GPU kernels take any H as it is). The padding units start at zero and
/// stay there: their weights, biases and states are zero, so every real output and gradient
/// is the model's own. Not with dropout between layers, whose masks are drawn by position in
/// the unpadded layout.
pub(crate) fn padded_hidden(gpu: &Gpu, config: &RnnConfig) -> usize {
    let h = config.hidden;
    if h.is_multiple_of(4) || !gpu.direct_kernels() || (config.dropout > 0.0 && config.layers > 1) {
        h
    } else {
        h.next_multiple_of(4)
    }
}

/// What a workspace with a padded H ([`padded_hidden`]) keeps beside the plans.
pub(crate) struct Padded {
    /// The caller's h0 `[L·D, B, H]`, padded into each layer's `h_all` by the forward plan.
    pub h0: wgpu::Buffer,
    /// Writes the parameters, padded, into the plans' own parameter buffer: before every
    /// forward pass.
    pub params: Plan,
}

/// A batch-first model's tensors as the caller sees them, `[B, T, ...]`: the plans swap them
/// to and from the time-major buffers the kernels run on.
pub(crate) struct BatchFirst {
    /// Inputs `[B, T, I]`, swapped into `x` at the start of the forward plan.
    pub x: wgpu::Buffer,
    /// Targets `[B, T, O]` or `[B, T]`, swapped into `y` at the start of the loss plan.
    pub y: wgpu::Buffer,
    /// A loss mask `[B, T]`, swapped into `mask` at the start of a masked loss plan.
    pub mask: wgpu::Buffer,
    /// Outputs `[B, T, O]`, swapped from `o` at the end of the forward plan.
    pub o: wgpu::Buffer,
    /// dL/dx `[B, T, I]`, swapped from `dx` at the end of the input-gradient plan.
    pub dx: wgpu::Buffer,
    /// A caller's dL/do `[B, T, O]` for [`Rnn::backward`](crate::Rnn::backward).
    pub d_o: wgpu::Buffer,
    /// Swaps `d_o` into the workspace's dL/do, before a caller's backward pass.
    pub d_o_in: Plan,
}

/// Texture mirrors of one layer's `h_all` and `da` buffers, current after its loops, and of the
/// outputs, which the head's dL/do may be copied into.
#[derive(Clone, Copy)]
struct GradMirrors<'a> {
    h: &'a StateTexture,
    da: &'a StateTexture,
    /// The outputs' mirror, and whether it holds dL/do already.
    o: Option<(&'a StateTexture, bool)>,
}

/// What a cross-entropy loss plan needs to compute the head itself, in one kernel with the
/// loss (`ops::loss::head_loss`), where the top layer's loop keeps a mirror of its states and
/// the head reads V from the parameters' mirror: the forward plan without the head, and where
/// the head reads from.
pub(crate) struct FusedHead {
    /// `forward` up to the head (the copy of the outputs for a batch-first caller left out too).
    body: Plan,
    /// The copies that preceded the head: the loop's mirror (h(T)) back into `h_all`, V and c
    /// into the parameters' mirror.
    copies: Vec<TextureCopy>,
    h_mirror: StateTexture,
    params_mirror: StateTexture,
    hidden: usize,
    /// In floats: h's first row in `h_all`, V and c in the parameters.
    h_off: usize,
    v_off: usize,
    c_off: usize,
}

/// Where one layer's weight gradients read from and write to.
struct LayerGrads<'a> {
    rows: usize,
    batch: usize,
    hidden: usize,
    /// The layer's input width and its values `[T·B, I_k]` (unread with `tokens`).
    width: usize,
    input: At<'a>,
    /// Token ids and how this direction reads them, for layer 0 of a token-input model, and
    /// the texture mirror of its da where the loop keeps one.
    tokens: Option<(TokenLayout, &'a wgpu::Buffer, Option<&'a StateTexture>)>,
    h_all: At<'a>,
    da: At<'a>,
    /// Texture mirrors the weight gradients read in place of the buffers, where the loops
    /// keep them.
    mirrors: Option<GradMirrors<'a>>,
    /// Offsets of dW_ih, dW_hh and, with biases, db_ih and db_hh in the gradient buffer.
    w_ih: usize,
    w_hh: usize,
    biases: Option<(usize, usize)>,
    /// For the top layer, the head's: O, dL/do, and the offsets of dV and dc.
    head: Option<(usize, &'a wgpu::Buffer, usize, usize)>,
    /// Mirrors the loops left their buffers behind (h_all's but h(T), da's), copied back
    /// first where a product here reads a buffer.
    stale: [Option<(&'a StateTexture, &'a wgpu::Buffer)>; 2],
}

/// Records every weight gradient of one layer (and of the head, for the top layer) as
/// multiplies over all T·B rows; returns whether they read dL/do's buffer (where not, the
/// plan's variant reads dL/do's padded rows from the outputs' mirror:
/// `backward_from_mirror`).
fn layer_grads(
    bw: &mut PlanBuilder,
    gpu: &Gpu,
    grads: &wgpu::Buffer,
    l: LayerGrads,
) -> Result<bool> {
    let LayerGrads {
        rows,
        batch,
        hidden: h,
        width: i,
        input,
        tokens,
        h_all,
        da,
        mirrors,
        w_ih,
        w_hh,
        biases,
        head,
        stale,
    } = l;
    // dU by matmul where the input is values; the token ids' scatter-add is below.
    let dense = tokens.is_none();
    let bh = batch * h;
    let g = |off: usize| at(grads, off);
    let o = head.map_or(0, |hd| hd.0);
    // h(t) for t = 1..=T, the head's input.
    let h_out = h_all.plus(bh);
    // With subgroups, Aᵀ B straight from the [T·B, n] operands, the bias gradients as sums
    // inside the products, no transposes: on lavapipe `small`'s training step 3.5 -> 3.1 ms
    // (matmul_tn4_sg). Past some megabytes the lanes' strided rows lost to the transposes
    // (`medium`'s weight gradients 35 -> 76 ms with matmul_tn4_sg).
    // Token ids are not streamed: no x.
    let streamed = rows * (2 * h + if dense { i } else { 0 } + o) * 4;
    let tn = tn_in_place(gpu) && streamed <= TN_BYTES;
    // Whether every product reads h and dL/da from the mirrors (else the stale buffers are
    // copied back first).
    let on_mirrors = tn
        && !dense
        && (biases.is_none() || tn_sums_fit(gpu))
        && mirrors.as_ref().is_some_and(|m| {
            let dw = Gemm {
                trans_a: true,
                a_mirror: Some(m.da),
                b_mirror: Some(m.h),
                ..Gemm::new(h, h, rows, da, h_all, g(w_hh))
            };
            let dv = head.is_none_or(|(o, d_o, fc_w, _)| {
                texture_fits(
                    gpu,
                    &Gemm {
                        trans_a: true,
                        a_mirror: m.o.map(|(om, _)| om),
                        b_mirror: Some(m.h),
                        ..Gemm::new(o, h, rows, at(d_o, 0), h_out, g(fc_w))
                    },
                )
                .is_some()
            });
            texture_fits(gpu, &dw).is_some() && dv
        })
        && tokens
            .is_none_or(|(tl, _, mirror)| mirror.is_some() && grad_by_subgroups(gpu, tl, da.off));
    if !on_mirrors {
        for (mirror, buffer) in stale.into_iter().flatten() {
            bw.copy_from_mirror(mirror, buffer);
        }
    }
    // Whether dL/do's buffer is read (by any path but dV from the mirror holding it).
    let mut reads_d_o = head.is_some();
    // Whether the head's and the layer's bias gradients came as row sums inside the products.
    let (head_sums, bias_sums) = if tn {
        let tn = |m, n, a, b, c| Gemm {
            trans_a: true,
            ..Gemm::new(m, n, rows, a, b, c)
        };
        // dV and dU each in place where its sizes allow; an odd O or I takes that one product
        // through padded transposes (`matmul`), the bias gradient still fused where it can.
        let head_fits = head.is_some() && tn_sums_fit(gpu);
        if let Some((o, d_o, fc_w, fc_b)) = head {
            let mut dv = tn(o, h, at(d_o, 0), h_out, g(fc_w));
            if head_fits {
                dv.row_sums = Some((fc_b, None));
            }
            // The variant's, from dL/do's padded rows in the mirror.
            let mut padded = None;
            // dL/do from the outputs' mirror (their cross-entropy has read them already).
            if let Some(GradMirrors {
                h,
                o: Some((o_mirror, holds_d_o)),
                ..
            }) = mirrors
            {
                let textured = Gemm {
                    a_mirror: Some(o_mirror),
                    b_mirror: Some(h),
                    ..dv
                };
                if texture_fits(gpu, &textured).is_some() {
                    if holds_d_o {
                        reads_d_o = !head_fits;
                        padded = Some(Gemm {
                            ld_a: Some(o.next_multiple_of(4)),
                            ..textured
                        });
                    } else {
                        bw.copy_to_mirror(d_o, o_mirror);
                    }
                    dv = textured;
                }
            }
            match padded {
                Some(alt) => bw.with_variant(|bw| matmul(bw, dv), |bw| matmul(bw, alt))?,
                None => matmul(bw, dv)?,
            }
        }
        // The hidden biases' gradients are the sums of dAᵀ's rows: with token ids (no dU
        // product) they come with dW's.
        let mut dw = tn(h, h, da, h_all, g(w_hh));
        if let Some(m) = mirrors {
            (dw.a_mirror, dw.b_mirror) = (Some(m.da), Some(m.h));
        }
        let w_fits = !dense && tn_sums_fit(gpu);
        if w_fits && let Some((b_ih, b_hh)) = biases {
            dw.row_sums = Some((b_ih, Some(b_hh)));
        }
        matmul(bw, dw)?;
        let u_fits = dense && tn_sums_fit(gpu);
        if dense {
            let mut du = tn(h, i, da, input, g(w_ih));
            if u_fits && let Some((b_ih, b_hh)) = biases {
                du.row_sums = Some((b_ih, Some(b_hh)));
            }
            matmul(bw, du)?;
        }
        (head_fits, u_fits || w_fits)
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
        let tb_x = if dense { i * kp } else { 0 };
        let tb = gpu.storage_buffer("transposed h, x", tb_len.max(tb_x))?;
        let nt = |m, n, c| Gemm {
            trans_b: true,
            ..Gemm::new(m, n, kp, at(&ta, 0), at(&tb, 0), c)
        };
        // The bias gradients as sums of the transposed rows, inside the products, where
        // lavapipe's loop limit allows (else column sums below).
        let fused = row_sums_fit(gpu, kp);
        let mut dw = nt(h, h, g(w_hh));
        if shared_h {
            transpose(bw, rows + batch, h, h_all, at(&tb, 0))?;
            dw.ld_b = Some(kh);
        } else if head.is_some() {
            transpose(bw, rows, h, h_out, at(&tb, 0))?;
        }
        if let Some((o, d_o, fc_w, fc_b)) = head {
            let mut dv = nt(o, h, g(fc_w));
            if shared_h {
                (dv.b, dv.ld_b) = (at(&tb, batch), Some(kh));
            }
            transpose(bw, rows, o, at(d_o, 0), at(&ta, 0))?;
            if fused {
                dv.row_sums = Some((fc_b, None));
            }
            matmul(bw, dv)?;
        }
        transpose(bw, rows, h, da, at(&ta, 0))?;
        if !shared_h {
            transpose(bw, rows, h, h_all, at(&tb, 0))?;
        }
        // (With token ids, dW's row sums would be the hidden biases' gradients, but the
        // second pass over k they take here cost more than the column sums below on lavapipe:
        // 5 ms against 3 for the character model.)
        matmul(bw, dw)?;
        if dense {
            transpose(bw, rows, i, input, at(&tb, 0))?;
            let mut du = nt(h, i, g(w_ih));
            if fused && let Some((b_ih, b_hh)) = biases {
                du.row_sums = Some((b_ih, Some(b_hh)));
            }
            matmul(bw, du)?;
        }
        (fused, fused && dense)
    } else {
        if let Some((o, d_o, fc_w, _)) = head {
            // dV = dO^T H_out
            let mut dv = Gemm::new(o, h, rows, at(d_o, 0), h_out, g(fc_w));
            dv.trans_a = true;
            matmul(bw, dv)?;
        }
        // dU = dA^T X, dW = dA^T H_prev
        if dense {
            let mut du = Gemm::new(h, i, rows, da, input, g(w_ih));
            du.trans_a = true;
            matmul(bw, du)?;
        }
        let mut dw = Gemm::new(h, h, rows, da, h_all, g(w_hh));
        dw.trans_a = true;
        matmul(bw, dw)?;
        (false, false)
    };
    if let Some((tl, ids, mirror)) = tokens {
        embed_grad(bw, tl, ids, (da, mirror), g(w_ih))?;
    }
    if !head_sums && let Some((o, d_o, _, fc_b)) = head {
        colsum(bw, rows, o, at(d_o, 0), g(fc_b), None)?;
    }
    if !bias_sums && let Some((b_ih, b_hh)) = biases {
        // The two hidden biases enter the sum identically, so their gradients are equal.
        colsum(bw, rows, h, da, g(b_ih), Some(b_hh))?;
    }
    Ok(reads_d_o)
}

/// One state `[B, from_w]` at `from` into `[B, to_w]` at `to`: padded with zeros or cropped.
fn repack_state(
    plan: &mut PlanBuilder,
    batch: usize,
    (from, from_w): (At, usize),
    (to, to_w): (At, usize),
) -> Result<()> {
    let src = Blocks {
        at: from,
        rows: batch,
        cols: from_w,
    };
    let dst = Blocks {
        at: to,
        rows: batch,
        cols: to_w,
    };
    repack(plan, 1, src, dst)
}

/// One parameter of `from`'s layout and its place in `to`'s, as [`repack`] sides: H-wide blocks
/// side by side (`user_h` the caller's H), the block count from the columns that differ.
fn param_blocks<'a>(
    (from, from_buf): (&ParamSpec, &'a wgpu::Buffer),
    (to, to_buf): (&ParamSpec, &'a wgpu::Buffer),
    user_h: usize,
) -> (usize, Blocks<'a>, Blocks<'a>) {
    // [rows, cols], or a vector as one row.
    let dims = |sp: &ParamSpec| match sp.shape[..] {
        [r, c] => (r, c),
        _ => (1, sp.len()),
    };
    let ((fr, fc), (tr, tc)) = (dims(from), dims(to));
    // Widths that differ hold whole H-wide blocks (W_hh: one, W_ih above layer 0 and the
    // head: one per direction); equal widths (W_ih of layer 0) are one block.
    let blocks = if fc == tc { 1 } else { fc.min(tc) / user_h };
    let side = |sp: &ParamSpec, buf, rows, cols: usize| Blocks {
        at: at(buf, sp.offset),
        rows,
        cols: cols / blocks,
    };
    (
        blocks,
        side(from, from_buf, fr, fc),
        side(to, to_buf, tr, tc),
    )
}

/// Records `out = da · m` for `m` `[H, n]` at `m_at` (dL/d(input) = dA U, dL/dh0 = da(0) W),
/// `rows` rows; with subgroups as A Bᵀ against `m` transposed (`mt`, when given, already
/// holds it), the form whose subgroups share their loads.
fn times_weights(
    plan: &mut PlanBuilder,
    rows: usize,
    (h, n): (usize, usize),
    da: At,
    m_at: At,
    mt: Option<At>,
    out: At,
) -> Result<()> {
    times_weights_into(plan, rows, (h, n), da, (m_at, mt), (out, false))
}

/// [`times_weights`], adding to what `out` holds where `accumulate`.
fn times_weights_into(
    plan: &mut PlanBuilder,
    rows: usize,
    (h, n): (usize, usize),
    da: At,
    (m_at, mt): (At, Option<At>),
    (out, accumulate): (At, bool),
) -> Result<()> {
    let gpu = plan.gpu().clone();
    let mut gemm = Gemm::new(rows, n, h, da, m_at, out);
    gemm.accumulate = accumulate;
    if gpu.subgroup_kernels() && h.is_multiple_of(4) {
        let b = match mt {
            Some(b) => b,
            None => {
                let t = gpu.storage_buffer("transposed weights", h * n)?;
                transpose(plan, h, n, m_at, at(&t, 0))?;
                // The bind groups keep `t` alive.
                return matmul(
                    plan,
                    Gemm {
                        b: at(&t, 0),
                        trans_b: true,
                        ..gemm
                    },
                );
            }
        };
        matmul(
            plan,
            Gemm {
                b,
                trans_b: true,
                ..gemm
            },
        )
    } else {
        matmul(plan, gemm)
    }
}

/// Where a parameter lives in the plans' parameter buffer, by name.
type ParamAt<'a, 'p> = &'a dyn Fn(&str) -> At<'p>;

/// A deeper block hoisted over all rows (the deep input or the deep output): its layers
/// (names, input and output widths), their nonlinearity's kernel code, whether the layers
/// after the first are residual, every layer's outputs and their gradients `[T, B, width]`.
struct Block<'a> {
    layers: &'a [(String, String, usize, usize)],
    act: u32,
    residual: bool,
    zs: &'a [wgpu::Buffer],
    dzs: &'a [wgpu::Buffer],
}

impl<'a> Block<'a> {
    fn new(
        layers: &'a [(String, String, usize, usize)],
        m: Mlp,
        zs: &'a [wgpu::Buffer],
        dzs: &'a [wgpu::Buffer],
    ) -> Self {
        Self {
            layers,
            act: m.nonlinearity.code(),
            residual: m.residual,
            zs,
            dzs,
        }
    }

    /// Each layer's `act(input Wᵀ + b)` into its `zs`, from `input`.
    fn forward<'p>(
        &self,
        plan: &mut PlanBuilder,
        rows: usize,
        input: At,
        p: ParamAt<'_, 'p>,
        unused: &wgpu::Buffer,
    ) -> Result<()> {
        for (j, ((w, b, ni, nw), z)) in self.layers.iter().zip(self.zs).enumerate() {
            let from = if j == 0 {
                input
            } else {
                at(&self.zs[j - 1], 0)
            };
            let mut g = Gemm::new(rows, *nw, *ni, from, p(w), at(z, 0));
            g.trans_b = true;
            g.bias = Some(p(b));
            matmul(plan, g)?;
            activation::forward(plan, rows * nw, self.act, at(z, 0), unused)?;
            if self.residual && j > 0 {
                sum_parts(plan, rows * nw, 1, &self.zs[j - 1], at(z, 0), true)?;
            }
        }
        Ok(())
    }

    /// Back down the block from dL/d(its output) in the last `dzs`: every layer's weight and
    /// bias gradients into `grads`, and dL/d(`input`) into `below` when given.
    fn backward<'p>(
        &self,
        plan: &mut PlanBuilder,
        rows: usize,
        input: At,
        (grads, layout, p): (&wgpu::Buffer, &ParamLayout, ParamAt<'_, 'p>),
        below: Option<At>,
    ) -> Result<()> {
        for (j, (w, b, ni, nw)) in self.layers.iter().enumerate().rev() {
            let (dz, from) = (
                at(&self.dzs[j], 0),
                if j == 0 {
                    input
                } else {
                    at(&self.zs[j - 1], 0)
                },
            );
            let n = rows * nw;
            let residual = self.residual && j > 0;
            if residual {
                // dL/dz_{j-1} = dL/dz_j (the path around the layer) + dL/da_j T_j (below).
                sum_parts(plan, n, 1, &self.dzs[j], at(&self.dzs[j - 1], 0), false)?;
                let y = at(&self.zs[j], 0);
                activation::backward_residual(plan, n, self.act, (y, from), dz)?;
            } else {
                activation::backward(plan, n, self.act, &self.zs[j], dz)?;
            }
            let mut dw = Gemm::new(*nw, *ni, rows, dz, from, at(grads, layout.offset(w)));
            dw.trans_a = true;
            matmul(plan, dw)?;
            colsum(plan, rows, *nw, dz, at(grads, layout.offset(b)), None)?;
            let to = if j == 0 {
                below
            } else {
                Some(at(&self.dzs[j - 1], 0))
            };
            if let Some(to) = to {
                let m = (p(w), None);
                times_weights_into(plan, rows, (*nw, *ni), dz, m, (to, residual))?;
            }
        }
        Ok(())
    }
}

impl Workspace {
    pub fn new(
        gpu: &Gpu,
        config: &RnnConfig,
        layout: &ParamLayout,
        (params, grads): (&wgpu::Buffer, &wgpu::Buffer),
        Shape {
            steps,
            batch,
            tokens,
            chunk,
            norms,
        }: Shape,
        lp: Loop,
    ) -> Result<Self> {
        // With a padded H the plans run on a model of H' = padded_hidden units, in parameter and
        // gradient buffers of their own; the caller's are padded into and cropped out of them.
        // A chunk's states and their gradients cross to the next chunk at the caller's H.
        let user = (config, layout, params, grads);
        let hp = if chunk {
            config.hidden
        } else {
            padded_hidden(gpu, config)
        };
        let (padded_config, padded_layout, padded_bufs);
        let (config, layout, params, grads) = if hp != config.hidden {
            padded_config = RnnConfig {
                hidden: hp,
                ..*config
            };
            padded_layout = ParamLayout::new(&padded_config);
            padded_bufs = (
                gpu.storage_buffer(
                    "parameters, H padded",
                    padded_layout.len() + crate::ops::WINDOW_FLOATS,
                )?,
                gpu.storage_buffer("gradients, H padded", padded_layout.len())?,
            );
            (
                &padded_config,
                &padded_layout,
                &padded_bufs.0,
                &padded_bufs.1,
            )
        } else {
            user
        };
        let pad = hp != user.0.hidden;
        let (i, h, o, nl) = (config.input, config.hidden, config.output, config.layers);
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
        let bh = batch * h;
        let nd = config.directions();
        let two = nd == 2;
        // Token ids need no [T, B, I] values, no dL/dx and no reversed copy of the input: each
        // takes one float instead.
        let x = if tokens {
            gpu.storage_buffer("token ids and their sorted positions [2 T B]", 2 * rows)?
        } else {
            gpu.storage_buffer("x [T, B, I]", rows * i + WINDOW_FLOATS)?
        };
        let xi = if tokens { 0 } else { i };
        // The deep input block: each layer's outputs and their gradients `[T, B, width]`; the
        // bottom layer reads the last.
        let in_mlp = in_mlp_layers(config);
        if tokens && !in_mlp.is_empty() {
            return Err(InputError::Invalid {
                arg: "x".into(),
                reason: "token ids feed the bottom layer's weight_ih directly; a model with a \
                         deep input block takes float inputs [T, B, I] (one-hot for tokens)"
                    .into(),
            }
            .into());
        }
        let mut zin = Vec::with_capacity(in_mlp.len());
        let mut dzin = Vec::with_capacity(in_mlp.len());
        for _ in &in_mlp {
            let n = rows * config.deep_input.width;
            zin.push(gpu.storage_buffer("deep input layer [T, B, width]", n)?);
            dzin.push(gpu.storage_buffer("dL/d deep input layer [T, B, width]", n)?);
        }
        // What the bottom layer reads per row: I (none for ids), or the deep input's width.
        let l0 = if in_mlp.is_empty() {
            xi
        } else {
            config.layer_input(0)
        };
        // Every layer's buffers, both directions' in each: the reverse direction's `hs` (h_all)
        // or `ts` (xu, da) floats on.
        let hs = Recurrence::stride((steps + 1) * bh);
        let ts = Recurrence::stride(rows * h);
        let mut layers = Vec::with_capacity(nl);
        let mirrored = !config.deep_transition.is_some() && Recurrence::mirrors_state(gpu, lp, h);
        for _ in 0..nl {
            let (h_len, da_len) = ((nd - 1) * hs + (steps + 1) * bh, (nd - 1) * ts + rows * h);
            let mirrors = if mirrored {
                let h_tex = StateTexture::new(gpu, "hidden states' mirror", h_len)?;
                let da_tex = StateTexture::new(gpu, "dL/da's mirror", da_len)?;
                let wp_tex =
                    StateTexture::new(gpu, "W layouts' mirror", Recurrence::layouts_len(h, nd))?;
                // xu as long as da: [D][T, B, H], and at least a window: the token table's
                // size, which the forward loop reads from here in xu's place.
                let xu_len = da_len.max(WINDOW_FLOATS);
                let xu_tex = StateTexture::new(gpu, "input projections' mirror", xu_len)?;
                match (h_tex, da_tex, wp_tex, xu_tex) {
                    (Some(h), Some(da), Some(wp), Some(xu)) => Some(LayerMirrors { h, da, wp, xu }),
                    _ => None,
                }
            } else {
                None
            };
            layers.push(LayerBufs {
                // With a uniform window's slack (here, in da and d_o, x): the weight
                // gradients read them through windows (ops::matmul's record_tn_windowed).
                h_all: gpu
                    .storage_buffer("hidden states [D][T + 1, B, H]", h_len + WINDOW_FLOATS)?,
                da: gpu.storage_buffer("dL/da [D][T, B, H]", da_len + WINDOW_FLOATS)?,
                mirrors,
            });
        }
        // The caller's H in h_n and dh0, whatever the plans run at.
        let user_bh = batch * user.0.hidden;
        let h_n = gpu.storage_buffer("last hidden states [L·D, B, H]", nl * nd * user_bh)?;
        // A deep transition keeps each layer's input projections in buffers of its own.
        let xu_len = if config.deep_transition.is_some() {
            1
        } else {
            (nd - 1) * ts + rows * h
        };
        let xu = gpu.storage_buffer("input projections [D][T, B, H]", xu_len)?;
        // Layer 0's token table, read through one uniform window by a forward loop that
        // gathers its input projection there, where it can (`Recurrence::reads_tokens`) and
        // the table fits.
        let table = (tokens
            && !config.deep_transition.is_some()
            && Recurrence::reads_tokens(gpu, lp, h, nd)
            && i * h + rows <= WINDOW_FLOATS)
            .then(|| gpu.storage_buffer("token table [I, H] and ids", WINDOW_FLOATS))
            .transpose()?;
        let out = gpu.storage_buffer("outputs [T, B, O]", rows * o)?;
        // The subgroup cross-entropy's view of the outputs (ops::loss), where textures serve.
        // (Also dL/do's, its rows padded to whole texels: `Workspace::backward_from_mirror`.)
        let o_mirror = if gpu.state_textures() {
            StateTexture::new(gpu, "outputs' mirror", rows * o.next_multiple_of(4))?
        } else {
            None
        };
        // A mirror of the parameters where textures serve: V for the head and for dO V.
        let params_mirror = if o_mirror.is_some() {
            StateTexture::new(gpu, "parameters' mirror", layout.len())?
        } else {
            None
        };
        let y = gpu.storage_buffer("targets [T, B, O]", rows * o)?;
        let d_o = gpu.storage_buffer("dL/do [T, B, O]", rows * o + WINDOW_FLOATS)?;
        let row_loss = gpu.storage_buffer("row losses [T * B]", rows)?;
        let loss = gpu.storage_buffer("loss and masked scale", 2)?;
        let mask = gpu.storage_buffer("loss mask [T * B]", rows)?;
        let dx = gpu.storage_buffer("dL/dx [T, B, I]", (rows * xi).max(1))?;
        let dh0 = gpu.storage_buffer("dL/dh0 [L·D, B, H]", nl * nd * user_bh)?;
        let dh0_padded = if pad {
            Some(gpu.storage_buffer("dL/dh0, H padded", nl * nd * bh)?)
        } else {
            None
        };
        let mut dh_in = Vec::new();
        if chunk {
            for _ in 0..nl * nd {
                dh_in.push(gpu.storage_buffer("dL/dh(T) from the next chunk [B, H]", bh)?);
            }
        }
        let mut wps = Vec::with_capacity(nl);
        for _ in 0..nl {
            wps.push(gpu.storage_buffer("padded W layouts", Recurrence::wp_len(h, nd))?);
        }
        // Both directions: every layer's input reversed in time (the reverse direction's
        // input, kept for its weight gradients), every layer's output [T, B, 2H], and scratch
        // for dL/d(output) from the forward and the reverse direction.
        let mut reversed = Vec::new();
        let mut cats = Vec::new();
        let mut scratch = Vec::new();
        if two {
            for k in 0..nl {
                let width = if k == 0 { l0 } else { config.layer_input(k) };
                reversed.push(gpu.storage_buffer("input reversed in time", (rows * width).max(1))?);
                cats.push(gpu.storage_buffer("layer outputs [T, B, 2H]", rows * 2 * h)?);
            }
            for _ in 0..2 {
                scratch
                    .push(gpu.storage_buffer("dL/d layer outputs", rows * 2 * h.max(xi).max(l0))?);
            }
        }
        // Dropout between layers: each dropped output, read by the layer above.
        let dropping = config.dropout > 0.0 && nl > 1;
        let dropout_state = if dropping {
            Some(gpu.storage_buffer("dropout seed and mode", 2)?)
        } else {
            None
        };
        let mut drops = Vec::new();
        if dropping {
            for _ in 0..nl - 1 {
                drops.push(gpu.storage_buffer("dropped layer outputs", rows * config.out_width())?);
            }
        }
        let unused_r = gpu.storage_buffer("unused binding", 4)?;
        let unused_w = gpu.storage_buffer("unused binding", 4)?;
        let unused = Unused {
            read: &unused_r,
            write: &unused_w,
        };

        let p = |name: &str| at(params, layout.offset(name));
        let units = Layer::all(config);
        let names: Vec<_> = units.iter().map(|l| l.names.clone()).collect();
        // The deep transition: per layer its own input projections (act(a(t)) after the
        // forward pass, read again by the backward one), and per layer and direction every
        // transition layer's outputs but the last and their gradients.
        let dt = config.deep_transition.is_some();
        let mut u0s = Vec::new();
        // Per unit: the inner layers' outputs, every layer's gradients, the weights laid out
        // for the fused kernels.
        let m = config.deep_transition;
        let fused = transition_fused(gpu, steps, (h, m.width, m.depth, config.skip)).map(|f| {
            if lp == Loop::PerStep {
                Fused { per: 1, ..f }
            } else {
                f
            }
        });
        let mut tbufs: Vec<[wgpu::Buffer; 4]> = Vec::new();
        if dt {
            for _ in 0..nl {
                u0s.push(gpu.storage_buffer("act(a(t)) [D][T, B, H]", (nd - 1) * ts + rows * h)?);
            }
            let sizes = (h, m.width, m.depth, config.skip);
            // The weights' layouts only where a fused kernel reads them; the subgroup kernels
            // bind both through uniform windows too, which need a whole window of buffer.
            let window = CONSTANT_WINDOW as usize / 4;
            let (tp, tpf) = match fused {
                Some(f) if f.subgroup => (
                    transposes_len(sizes).max(window),
                    copies_len(sizes).max(window),
                ),
                Some(_) => (transposes_len(sizes), 1),
                None => (1, 1),
            };
            for _ in &units {
                let inner = (m.depth - 1) * rows * m.width;
                tbufs.push([
                    gpu.storage_buffer("transition layers [depth - 1][T, B, width]", inner)?,
                    gpu.storage_buffer("dL/d transition layers", inner + rows * h)?,
                    gpu.storage_buffer("transition weights transposed", tp)?,
                    gpu.storage_buffer("transition weights padded", tpf)?,
                ]);
            }
        }
        let t_scratch = gpu.storage_buffer(
            "transition scratch [B, max(H, width)]",
            if dt {
                batch * h.max(config.deep_transition.width)
            } else {
                1
            },
        )?;
        let xu_of = |k: usize| if dt { &u0s[k] } else { &xu };
        let tact = config.deep_transition.nonlinearity;
        let layer_act = config.nonlinearity;
        let transition = |kd: usize| {
            let (k, d) = (kd / nd, kd % nd);
            Transition {
                steps,
                batch,
                hidden: h,
                act: layer_act,
                tact,
                w: p(&names[kd].w_hh),
                layers: trans_layers(config, (k, d))
                    .iter()
                    .map(|(w, b, ni, no)| (p(w), p(b), *ni, *no))
                    .collect(),
                skip: config.skip.then(|| p(&skip_name((k, d)))),
                xu: at(xu_of(k), d * ts),
                h_all: at(&layers[k].h_all, d * hs),
                da: at(&layers[k].da, d * ts),
                zs: &tbufs[kd][0],
                dpre: &tbufs[kd][1],
                tp: &tbufs[kd][2],
                tpf: &tbufs[kd][3],
                fused,
                scratch: &t_scratch,
            }
        };
        let act = config.nonlinearity.code();
        // One loop per layer, both directions side by side.
        let recs: Vec<Recurrence> = (0..nl)
            .map(|k| Recurrence {
                steps,
                batch,
                hidden: h,
                cell: units[k * nd].kernel_cell(),
                act,
                dirs: nd,
                w: p(&names[k * nd].w_hh),
                w_stride: if two {
                    // The reverse direction's tensors come after the forward one's.
                    layout.offset(&names[k * nd + 1].w_hh) - layout.offset(&names[k * nd].w_hh)
                } else {
                    0
                },
                wp: &wps[k],
                tokens: table.as_ref().filter(|_| k == 0).map(|t| (t, i * h)),
                mirrors: layers[k].mirrors.as_ref(),
            })
            .collect();
        // Layer k's input: x, or layer k - 1's outputs (h(1..=T), or both directions'), after
        // dropout where there is some.
        let input = |k: usize| {
            if k == 0 {
                at(zin.last().unwrap_or(&x), 0)
            } else if dropping {
                at(&drops[k - 1], 0)
            } else if two {
                at(&cats[k - 1], 0)
            } else {
                at(&layers[k - 1].h_all, bh)
            }
        };
        // What direction d of layer k reads: its input, reversed for the reverse direction.
        let dir_input = |k: usize, d: usize| {
            if d == 1 {
                at(&reversed[k], 0)
            } else {
                input(k)
            }
        };
        let top = if two {
            at(&cats[nl - 1], 0)
        } else {
            at(&layers[nl - 1].h_all, bh)
        };
        let width = config.out_width();
        // The deep output block: each layer's outputs and their gradients `[T, B, width]`,
        // and dL/d(top output) from its bottom layer.
        let mlp = out_mlp_layers(config);
        let mut zs = Vec::with_capacity(mlp.len());
        let mut dzs = Vec::with_capacity(mlp.len());
        for _ in &mlp {
            let n = rows * config.deep_output.width;
            zs.push(gpu.storage_buffer("deep output layer [T, B, width]", n)?);
            dzs.push(gpu.storage_buffer("dL/d deep output layer [T, B, width]", n)?);
        }
        let d_top = if mlp.is_empty() {
            None
        } else {
            Some(gpu.storage_buffer("dL/d top layer outputs [T, B, D·H]", rows * width)?)
        };
        let head_width = config.head_input();
        // The head: the top layer's states (or the deep output block's) times Vᵀ, plus c; the
        // top layer's states straight from the loop's mirror of them, where it keeps one, and
        // V from the parameters' mirror (copied in first), where the head reads both.
        let head_in = zs.last().map_or(top, |z| at(z, 0));
        let head_gemm = || {
            let mut head = Gemm::new(rows, o, head_width, head_in, p(FC_W), at(&out, 0));
            head.trans_b = true;
            head.bias = Some(p(FC_B));
            if !two && zs.is_empty() {
                head.a_mirror = layers[nl - 1].mirrors.as_ref().map(|m| &m.h);
            }
            head.b_mirror = params_mirror.as_ref();
            head
        };
        // Then of the top layer's states only h(T) goes back into their buffer after the
        // forward loop (for h_n): the head reads the mirror, and the weight gradients copy the
        // rest back first where they cannot (`LayerGrads::stale`).
        let top_stale = layers[nl - 1]
            .mirrors
            .as_ref()
            .filter(|_| nt_b_mirror(gpu, &head_gemm()).is_some());

        // A batch-first caller's tensors, swapped at the plans' edges.
        let batch_first = if config.batch_first {
            let d_o_bf = gpu.storage_buffer("dL/do [B, T, O]", rows * o)?;
            let mut pb = PlanBuilder::new(gpu, "backward");
            swap_leading(&mut pb, (batch, steps, o), &d_o_bf, &d_o)?;
            Some(BatchFirst {
                x: gpu.storage_buffer("x [B, T, I]", (rows * xi).max(1))?,
                y: gpu.storage_buffer("targets [B, T, O]", rows * o)?,
                mask: gpu.storage_buffer("loss mask [B, T]", rows)?,
                o: gpu.storage_buffer("outputs [B, T, O]", rows * o)?,
                dx: gpu.storage_buffer("dL/dx [B, T, I]", (rows * xi).max(1))?,
                d_o: d_o_bf,
                d_o_in: pb.finish()?,
            })
        } else {
            None
        };
        // Forward: the deep input block, if any; layer by layer, XU = X U^T + b_ih + b_hh and
        // h(t) per step (through the deep transition, if any), each direction in its own
        // time; then the deep output block, if any, and the head O = out V^T + c.
        let mut fw = PlanBuilder::new(gpu, "forward");
        // A padded H: every state's h0 `[B, H]` into its `[B, H']` slot, the padding zero.
        let user_h = user.0.hidden;
        let h0_staged = if pad {
            Some(gpu.storage_buffer("h0 [L·D, B, H]", nl * nd * user_bh)?)
        } else {
            None
        };
        if let Some(h0s) = &h0_staged {
            fw.phase("padding");
            for (kd, &Layer { k, d, .. }) in units.iter().enumerate() {
                let from = (at(h0s, kd * user_bh), user_h);
                repack_state(&mut fw, batch, from, (at(&layers[k].h_all, d * hs), h))?;
            }
        }
        if let Some(bf) = batch_first.as_ref().filter(|_| !tokens) {
            fw.phase("input projection");
            swap_leading(&mut fw, (batch, steps, i), &bf.x, &x)?;
        }
        // The deep input block, layer by layer over all rows.
        if !in_mlp.is_empty() {
            fw.phase("input projection");
            let block = Block::new(&in_mlp, config.deep_input, &zin, &dzin);
            block.forward(&mut fw, rows, at(&x, 0), &p, &unused_r)?;
        }
        // How direction d of layer 0 reads token ids.
        let token_layout = |d: usize| TokenLayout {
            steps,
            batch,
            hidden: h,
            input: i,
            batch_first: config.batch_first,
            reversed: d == 1,
        };
        let biases = |kd: usize| {
            let n = &names[kd];
            config
                .bias
                .then(|| (layout.offset(&n.b_ih), layout.offset(&n.b_hh)))
        };
        for k in 0..nl {
            let ni = config.layer_input(k);
            for d in 0..nd {
                let kd = k * nd + d;
                fw.phase("input projection");
                if k == 0 && tokens {
                    let w = p(&names[kd].w_ih);
                    match &table {
                        Some(t) => {
                            let table = (t, params_mirror.as_ref());
                            tokens_table(&mut fw, token_layout(d), &x, w, biases(kd), table)?
                        }
                        None => {
                            let out = at(xu_of(k), d * ts);
                            embed(&mut fw, token_layout(d), &x, w, biases(kd), out)?;
                        }
                    }
                    continue;
                }
                if d == 1 {
                    reverse_steps(
                        &mut fw,
                        (steps, batch * ni),
                        input(k),
                        &reversed[k],
                        &unused,
                    )?;
                }
                let mut xu_gemm = Gemm::new(
                    rows,
                    h,
                    ni,
                    dir_input(k, d),
                    p(&names[kd].w_ih),
                    at(xu_of(k), d * ts),
                );
                xu_gemm.trans_b = true;
                if config.bias {
                    xu_gemm.bias = Some(p(&names[kd].b_ih));
                    xu_gemm.bias2 = Some(p(&names[kd].b_hh));
                }
                matmul(&mut fw, xu_gemm)?;
            }
            fw.phase("forward loop");
            if dt {
                for d in 0..nd {
                    transition(k * nd + d).forward(&mut fw, &unused_r)?;
                }
            } else {
                let back = match top_stale {
                    Some(_) if k + 1 == nl => Back::Floats(steps * bh..(steps + 1) * bh),
                    _ => Back::All,
                };
                recs[k].forward(&mut fw, lp, &xu, &layers[k].h_all, back)?;
            }
            if two {
                let h_all = (&layers[k].h_all, hs);
                concat(&mut fw, (steps, batch, h), h_all, &cats[k], &unused)?;
            }
            if let Some(state) = dropout_state.as_ref().filter(|_| k + 1 < nl) {
                let src = if two {
                    at(&cats[k], 0)
                } else {
                    at(&layers[k].h_all, bh)
                };
                let n = rows * config.out_width();
                dropout::forward(&mut fw, (n, config.dropout, k), src, &drops[k], state)?;
            }
        }
        // W's layouts for the loops, in a plan of their own: run only when W has changed.
        let layouts = if Recurrence::uses_layouts(gpu, lp) {
            let mut pb = PlanBuilder::new(gpu, "forward loop");
            for rec in &recs {
                rec.prepare(&mut pb, params_mirror.as_ref())?;
            }
            Some(pb.finish()?)
        } else {
            None
        };
        if pad {
            // h(T) of every state, cropped into h_n.
            for (kd, &Layer { k, d, .. }) in units.iter().enumerate() {
                let from = (at(&layers[k].h_all, d * hs + steps * bh), h);
                repack_state(&mut fw, batch, from, (at(&h_n, kd * user_bh), user_h))?;
            }
        }
        fw.phase("head");
        // The deep output block, layer by layer over all rows, then the head on its output.
        let out_block = Block::new(&mlp, config.deep_output, &zs, &dzs);
        out_block.forward(&mut fw, rows, top, &p, &unused_r)?;
        let head = head_gemm();
        // V's floats of the parameters, and c's (which the fused head reads from the mirror).
        let c_off = layout.offset(FC_B);
        let v_floats = head.b.off.min(c_off)..(head.b.off + o * head_width).max(c_off + o);
        // Then a cross-entropy's plan may take the head's place (its one dispatch, and the
        // batch-first copy of the outputs after it).
        let fusable = nt_b_mirror(gpu, &head)
            .zip(head.a_mirror)
            .filter(|_| {
                !chunk && o <= HEAD_CE_COLS && rows.div_ceil(16) <= 65535 && o_mirror.is_some()
            })
            .map(|(pm, hm)| (pm.clone(), hm.clone(), head.a.off, head.b.off));
        let head_start = fw.len();
        if let Some(pm) = nt_b_mirror(gpu, &head) {
            fw.copy_range_to_mirror(params, pm, v_floats.clone());
        }
        matmul(&mut fw, head)?;
        if let Some(bf) = &batch_first {
            swap_leading(&mut fw, (steps, batch, o), &out, &bf.o)?;
        }
        let forward = fw.finish()?;
        let fused_head = fusable.map(|(params_mirror, h_mirror, h_off, v_off)| {
            let (body, copies) = forward.prefix(head_start);
            FusedHead {
                body,
                copies,
                h_mirror,
                params_mirror,
                hidden: head_width,
                h_off,
                v_off,
                c_off,
            }
        });

        // Backward: dL/d(top output) = dO V into the top layer's da (both directions': split
        // into each direction's time); then from the top down, each direction's steps last to
        // first, its weight gradients as multiplies over all T * B rows, and dL/d(its input)
        // = dA U into the layer below's da.
        let mut bw = PlanBuilder::new(gpu, "backward");
        // The bottom layer's dL/da likewise stays in its loop's mirror where nothing after the
        // loop in this plan needs the buffer but its weight gradients (token ids: no dU, no
        // dL/dx; one direction; no deep input block): it goes back in the later plans that read
        // it (dh0, the gradient norms), and in the weight gradients where they must.
        let da_stale = layers[0]
            .mirrors
            .as_ref()
            .filter(|_| tokens && !two && dzin.is_empty());
        bw.phase("head");
        let head_out = if let Some(last) = dzs.last() {
            at(last, 0)
        } else if two {
            at(&scratch[0], 0)
        } else {
            at(&layers[nl - 1].da, 0)
        };
        let head_back = Gemm::new(rows, head_width, o, at(&d_o, 0), p(FC_W), head_out);
        // dL/do and V from texture mirrors where textures serve: of the outputs (which the
        // cross-entropy has read already) and of the parameters (copied again: a caller may
        // change them between the passes).
        let textured = o_mirror
            .as_ref()
            .zip(params_mirror.as_ref())
            .and_then(|(om, pm)| {
                let g = Gemm {
                    a_mirror: Some(om),
                    b_mirror: Some(pm),
                    ..head_back
                };
                texture_fits(gpu, &g).is_some().then_some((g, om, pm))
            });
        // Whether dL/do sits in the outputs' mirror from here on.
        let d_o_mirrored = textured.is_some();
        // Whether any product or sum reads dL/do's buffer rather than the mirror (where none
        // does, a fused loss plan writes it into the mirror alone: `backward_from_mirror`).
        let mut d_o_read = !d_o_mirrored;
        if let Some((g, om, pm)) = textured {
            bw.copy_range_to_mirror(params, pm, v_floats);
            // The variant's dL/do is in the mirror already, its rows padded to whole texels
            // (`backward_from_mirror`).
            let padded = Gemm {
                ld_a: Some(o.next_multiple_of(4)),
                ..g
            };
            bw.with_variant(
                |bw| {
                    bw.copy_to_mirror(&d_o, om);
                    matmul(bw, g)
                },
                |bw| matmul(bw, padded),
            )?;
        } else if gpu.subgroup_kernels() && o.is_multiple_of(4) {
            // V transposed to [D·H, O], so that the product runs as A Bᵀ, the form whose
            // subgroups share their loads (on lavapipe, large's 125 ms became about 70).
            let vt = gpu.storage_buffer("transposed V", head_width * o)?;
            transpose(&mut bw, o, head_width, p(FC_W), at(&vt, 0))?;
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
        if d_top.is_some() || two {
            // The head's own gradients, from what it read (the deep output block's last layer,
            // or both directions' outputs), when the top layer's weight gradients cannot take
            // them in with theirs.
            d_o_read = true;
            bw.phase("weight gradients");
            let (dv_at, dc_at) = (
                at(grads, layout.offset(FC_W)),
                at(grads, layout.offset(FC_B)),
            );
            let mut dv = Gemm::new(o, head_width, rows, at(&d_o, 0), head_in, dv_at);
            dv.trans_a = true;
            matmul(&mut bw, dv)?;
            colsum(&mut bw, rows, o, at(&d_o, 0), dc_at, None)?;
        }
        // dL/d(top output) into the top layer's da: down through the deep output block first,
        // and split into each direction's time for both directions.
        let from_head = match &d_top {
            Some(d_top) => {
                out_block.backward(&mut bw, rows, top, (grads, layout, &p), Some(at(d_top, 0)))?;
                Some(d_top)
            }
            None => two.then(|| &scratch[0]),
        };
        bw.phase("head");
        match from_head {
            Some(g) if two => {
                let da = (&layers[nl - 1].da, ts);
                split(&mut bw, (steps, batch, h), g, None, da, &unused)?;
            }
            Some(g) => {
                sum_parts(&mut bw, rows * h, 1, g, at(&layers[nl - 1].da, 0), false)?;
            }
            None => {}
        }
        for k in (0..nl).rev() {
            let ni = config.layer_input(k);
            let l = &layers[k];
            bw.phase("backward loop");
            if let Some(g) = dh_in.get(k) {
                // dL/dh(T) from the next chunk joins the last step's (one direction: chunks
                // are refused for bidirectional models).
                sum_parts(&mut bw, bh, 1, g, at(&l.da, (steps - 1) * bh), true)?;
            }
            if dt {
                for d in 0..nd {
                    transition(k * nd + d).backward(&mut bw)?;
                }
            } else {
                let back = match da_stale {
                    Some(_) if k == 0 => Back::Later,
                    _ => Back::All,
                };
                recs[k].backward(&mut bw, lp, &l.h_all, &l.da, back)?;
            }
            for d in 0..nd {
                let kd = k * nd + d;
                bw.phase("weight gradients");
                let off = |name: &str| layout.offset(name);
                if dt {
                    let g = |name: &str| at(grads, layout.offset(name));
                    let tl: Vec<_> = trans_layers(config, (k, d))
                        .iter()
                        .map(|(w, b, _, _)| (g(w), g(b)))
                        .collect();
                    let skip = config.skip.then(|| g(&skip_name((k, d))));
                    transition(kd).weight_grads(&mut bw, (&tl, skip))?;
                }
                d_o_read |= layer_grads(
                    &mut bw,
                    gpu,
                    grads,
                    LayerGrads {
                        rows,
                        batch,
                        hidden: h,
                        width: ni,
                        input: dir_input(k, d),
                        tokens: (k == 0 && tokens).then(|| {
                            let mirror = l.mirrors.as_ref().filter(|_| !dt).map(|m| &m.da);
                            (token_layout(d), &x, mirror)
                        }),
                        h_all: at(&l.h_all, d * hs),
                        da: at(&l.da, d * ts),
                        mirrors: l.mirrors.as_ref().filter(|_| !dt).map(|m| GradMirrors {
                            h: &m.h,
                            da: &m.da,
                            o: o_mirror.as_ref().map(|om| (om, d_o_mirrored)),
                        }),
                        w_ih: off(&names[kd].w_ih),
                        w_hh: off(&names[kd].w_hh),
                        biases: biases(kd),
                        head: (k == nl - 1 && !two && d_top.is_none())
                            .then(|| (o, &d_o, off(FC_W), off(FC_B))),
                        stale: [
                            top_stale.filter(|_| k + 1 == nl).map(|m| (&m.h, &l.h_all)),
                            da_stale.filter(|_| k == 0).map(|m| (&m.da, &l.da)),
                        ],
                    },
                )?;
            }
            if k > 0 {
                bw.phase("backward loop");
                if two {
                    // dL/d(layer k - 1's outputs): the forward direction's dA U in true time
                    // plus the reverse one's in reversed time, split into layer k - 1's two
                    // directions.
                    for (d, out) in scratch.iter().enumerate() {
                        let kd = 2 * k + d;
                        times_weights(
                            &mut bw,
                            rows,
                            (h, ni),
                            at(&layers[k].da, d * ts),
                            p(&names[kd].w_ih),
                            None,
                            at(out, 0),
                        )?;
                    }
                    if let Some(state) = &dropout_state {
                        // Through the dropout on layer k - 1's output: both addends, the
                        // second in reversed time.
                        let n = rows * 2 * h;
                        let p = (n, config.dropout, k - 1);
                        dropout::backward(&mut bw, p, None, &scratch[0], [state, &unused_r])?;
                        dropout::backward(
                            &mut bw,
                            p,
                            Some(steps),
                            &scratch[1],
                            [state, &unused_r],
                        )?;
                    }
                    split(
                        &mut bw,
                        (steps, batch, h),
                        &scratch[0],
                        Some(&scratch[1]),
                        (&layers[k - 1].da, ts),
                        &unused,
                    )?;
                } else {
                    times_weights(
                        &mut bw,
                        rows,
                        (h, h),
                        at(&layers[k].da, 0),
                        p(&names[k].w_ih),
                        None,
                        at(&layers[k - 1].da, 0),
                    )?;
                    if let Some(state) = &dropout_state {
                        let g = &layers[k - 1].da;
                        dropout::backward(
                            &mut bw,
                            (rows * h, config.dropout, k - 1),
                            None,
                            g,
                            [state, &unused_r],
                        )?;
                    }
                }
            }
        }
        if let Some(top) = dzin.last() {
            // dL/d(the block's output) = the bottom layer's dA U (both directions', merged in
            // true time), then down through the block; its first layer's dL/dx comes with the
            // input gradients.
            bw.phase("weight gradients");
            let w0 = config.layer_input(0);
            if two {
                for d in 0..2 {
                    let (da, u) = (at(&layers[0].da, d * ts), p(&names[d].w_ih));
                    times_weights(&mut bw, rows, (h, w0), da, u, None, at(&scratch[d], 0))?;
                }
                let bufs = [&scratch[0], &scratch[1], top];
                merge_reversed(&mut bw, (steps, batch * w0), bufs, &unused)?;
            } else {
                let (da, u) = (at(&layers[0].da, 0), p(&names[0].w_ih));
                times_weights(&mut bw, rows, (h, w0), da, u, None, at(top, 0))?;
            }
            let block = Block::new(&in_mlp, config.deep_input, &zin, &dzin);
            block.backward(&mut bw, rows, at(&x, 0), (grads, layout, &p), None)?;
        }
        if pad {
            // Every gradient, cropped into the caller's buffer.
            bw.phase("weight gradients");
            for (src, dst) in layout.entries().iter().zip(user.1.entries()) {
                let (blocks, src, dst) = param_blocks((src, grads), (dst, user.3), user_h);
                repack(&mut bw, blocks, src, dst)?;
            }
        }
        let backward = bw.finish()?;
        // (The gradient norms' dO V reads the buffer too.)
        let backward_from_mirror = backward.variant().filter(|_| !d_o_read && !norms);
        // dx = dA U of the bottom layer (both directions', merged in true time) and every
        // layer's dh0 = da(0) W, only when asked for.
        let mut dxp = PlanBuilder::new(gpu, "input gradients");
        if tokens {
            // Ids have no gradient.
        } else if let Some((w, _, _, nw)) = in_mlp.first() {
            // dL/dx through the deep input block's first layer, whose dL/da the backward pass
            // left.
            times_weights(
                &mut dxp,
                rows,
                (*nw, i),
                at(&dzin[0], 0),
                p(w),
                None,
                at(&dx, 0),
            )?;
        } else if two {
            for d in 0..2 {
                times_weights(
                    &mut dxp,
                    rows,
                    (h, i),
                    at(&layers[0].da, d * ts),
                    p(&names[d].w_ih),
                    None,
                    at(&scratch[d], 0),
                )?;
            }
            merge_reversed(
                &mut dxp,
                (steps, batch * i),
                [&scratch[0], &scratch[1], &dx],
                &unused,
            )?;
        } else {
            times_weights(
                &mut dxp,
                rows,
                (h, i),
                at(&layers[0].da, 0),
                p(&names[0].w_ih),
                None,
                at(&dx, 0),
            )?;
        }
        if let Some(bf) = batch_first.as_ref().filter(|_| !tokens) {
            swap_leading(&mut dxp, (steps, batch, i), &dx, &bf.dx)?;
        }
        let input_grad = dxp.finish()?;
        let mut dxp = PlanBuilder::new(gpu, "input gradients");
        if let Some(m) = da_stale {
            dxp.copy_from_mirror(&m.da, &layers[0].da);
        }
        for (kd, &Layer { k, d, .. }) in units.iter().enumerate() {
            // Against Wᵀ, which section 0 of W's layouts already holds (rows H long, as H is
            // a multiple of 4 where the subgroup kernels run; the layouts of this pass's W,
            // written before its forward loop).
            let wt = Recurrence::uses_layouts(gpu, lp)
                .then(|| at(&wps[k], Recurrence::section(h, nd, 0, d)));
            times_weights(
                &mut dxp,
                batch,
                (h, h),
                at(&layers[k].da, d * ts),
                p(&names[kd].w_hh),
                wt,
                at(dh0_padded.as_ref().unwrap_or(&dh0), kd * bh),
            )?;
            if dt {
                let dst = at(dh0_padded.as_ref().unwrap_or(&dh0), kd * bh);
                transition(kd).skip_into_dh0(&mut dxp, dst)?;
            }
        }
        if let Some(dh0p) = &dh0_padded {
            for kd in 0..nl * nd {
                let from = (at(dh0p, kd * bh), h);
                repack_state(&mut dxp, batch, from, (at(&dh0, kd * user_bh), user_h))?;
            }
        }
        let state_grad = dxp.finish()?;
        // ‖dL/dh(t)‖ = ‖above(t) + da(t + 1) W (+ dpre_last(t + 1) S)‖: what reaches h(t) from
        // the head or the layer above, computed again as one product over all rows (the loop
        // overwrote it with dL/da), plus what reaches it through the recurrence (and a deep
        // transition's shortcut), one product over the rows of steps 1..T.
        let grad_norms = if norms {
            let mut np = PlanBuilder::new(gpu, "gradient norms");
            if let Some(m) = da_stale {
                np.copy_from_mirror(&m.da, &layers[0].da);
            }
            // Both directions' (the reverse one's in its own time), as `da` holds them.
            let above =
                gpu.storage_buffer("dL/dh(t) from above [D][T, B, H]", (nd - 1) * ts + rows * h)?;
            let rec = gpu.storage_buffer("da(t + 1) W [T - 1, B, H]", (steps - 1) * bh)?;
            let out = gpu.storage_buffer("gradient norms [L·D, T]", nl * nd * steps)?;
            for k in 0..nl {
                if k + 1 == nl
                    && let Some(d_top) = &d_top
                {
                    // What the deep output block's backward pass left.
                    if two {
                        split(
                            &mut np,
                            (steps, batch, h),
                            d_top,
                            None,
                            (&above, ts),
                            &unused,
                        )?;
                    } else {
                        sum_parts(&mut np, rows * h, 1, d_top, at(&above, 0), false)?;
                    }
                } else if k + 1 == nl {
                    // dO V: the head's gradient into each direction's outputs.
                    let dst = if two {
                        at(&scratch[0], 0)
                    } else {
                        at(&above, 0)
                    };
                    matmul(
                        &mut np,
                        Gemm::new(rows, width, o, at(&d_o, 0), p(FC_W), dst),
                    )?;
                    if two {
                        split(
                            &mut np,
                            (steps, batch, h),
                            &scratch[0],
                            None,
                            (&above, ts),
                            &unused,
                        )?;
                    }
                } else if two {
                    // dA U of both directions of layer k + 1, through its dropout, split into
                    // layer k's directions (as the backward pass does).
                    for (d, buf) in scratch.iter().enumerate() {
                        let kd = 2 * (k + 1) + d;
                        times_weights(
                            &mut np,
                            rows,
                            (h, config.layer_input(k + 1)),
                            at(&layers[k + 1].da, d * ts),
                            p(&names[kd].w_ih),
                            None,
                            at(buf, 0),
                        )?;
                    }
                    if let Some(state) = &dropout_state {
                        let n = (rows * 2 * h, config.dropout, k);
                        dropout::backward(&mut np, n, None, &scratch[0], [state, &unused_r])?;
                        dropout::backward(
                            &mut np,
                            n,
                            Some(steps),
                            &scratch[1],
                            [state, &unused_r],
                        )?;
                    }
                    split(
                        &mut np,
                        (steps, batch, h),
                        &scratch[0],
                        Some(&scratch[1]),
                        (&above, ts),
                        &unused,
                    )?;
                } else {
                    times_weights(
                        &mut np,
                        rows,
                        (h, h),
                        at(&layers[k + 1].da, 0),
                        p(&names[k + 1].w_ih),
                        None,
                        at(&above, 0),
                    )?;
                    if let Some(state) = &dropout_state {
                        let n = (rows * h, config.dropout, k);
                        dropout::backward(&mut np, n, None, &above, [state, &unused_r])?;
                    }
                }
                for d in 0..nd {
                    let kd = k * nd + d;
                    if steps > 1 {
                        times_weights(
                            &mut np,
                            rows - batch,
                            (h, h),
                            at(&layers[k].da, d * ts + bh),
                            p(&names[kd].w_hh),
                            None,
                            at(&rec, 0),
                        )?;
                        if dt && config.skip {
                            // Through the deep transition's shortcut: + dpre_last(t + 1) S.
                            let tr = transition(kd);
                            let s = p(&skip_name((k, d)));
                            let mut g =
                                Gemm::new(rows - batch, h, h, tr.last_dpre(1), s, at(&rec, 0));
                            g.accumulate = true;
                            matmul(&mut np, g)?;
                        }
                    }
                    let dst = at(&out, kd * steps);
                    step_norms(&mut np, (steps, bh), at(&above, d * ts), &rec, dst)?;
                }
            }
            Some((np.finish()?, out))
        } else {
            None
        };
        let padded = match h0_staged {
            Some(h0) => {
                let mut pb = PlanBuilder::new(gpu, "padding");
                for (src, dst) in user.1.entries().iter().zip(layout.entries()) {
                    let (blocks, src, dst) = param_blocks((src, user.2), (dst, params), user_h);
                    repack(&mut pb, blocks, src, dst)?;
                }
                Some(Padded {
                    h0,
                    params: pb.finish()?,
                })
            }
            None => None,
        };

        Ok(Self {
            steps,
            batch,
            lp,
            x,
            tokens,
            layers,
            dirs: nd,
            h_stride: hs,
            h_n,
            o: out,
            o_mirror,
            y,
            d_o,
            rows: row_loss,
            loss,
            mask,
            dx,
            dh0,
            dh_in,
            chunk,
            forward,
            layouts,
            layouts_fresh: false,
            backward,
            backward_from_mirror,
            input_grad,
            state_grad,
            grad_norms,
            losses: HashMap::new(),
            fused_head,
            batch_first,
            padded,
            dropout_state,
        })
    }

    /// Where every layer's and direction's `h_all` starts, in PyTorch's order of `h0`
    /// (layer k, direction d at k·D + d): the buffer and its byte offset.
    pub fn state_slots(&self) -> impl Iterator<Item = (&wgpu::Buffer, u64)> {
        self.layers.iter().flat_map(move |l| {
            (0..self.dirs).map(move |d| (&l.h_all, (d * self.h_stride) as u64 * 4))
        })
    }

    /// The plans of a forward pass: the padded parameters and `W`'s layouts first when they
    /// are stale.
    pub fn forward_plans(&self) -> Vec<&Plan> {
        let mut plans = Vec::new();
        if let Some(p) = &self.padded {
            // Every call: cheap (the parameters once), and the caller may have set them.
            plans.push(&p.params);
        }
        match &self.layouts {
            Some(l) if !self.layouts_fresh => plans.extend([l, &self.forward]),
            _ => plans.push(&self.forward),
        }
        plans
    }

    /// Records the plan for `loss` (reading the mask where `masked`) unless it exists already.
    pub fn prepare_loss(&mut self, gpu: &Gpu, key: (Loss, bool), outputs: usize) -> Result<()> {
        if !self.losses.contains_key(&key) {
            let (loss, masked) = key;
            let mut b = PlanBuilder::new(gpu, "loss");
            if let Some(bf) = &self.batch_first {
                // Class ids are one word per row, values O.
                let n = match loss.kind {
                    crate::loss::LossKind::Mse => outputs,
                    crate::loss::LossKind::CrossEntropy => 1,
                };
                swap_leading(&mut b, (self.batch, self.steps, n), &bf.y, &self.y)?;
                if masked {
                    swap_leading(&mut b, (self.batch, self.steps, 1), &bf.mask, &self.mask)?;
                }
            }
            let fused = self
                .fused_head
                .as_ref()
                .filter(|_| loss.kind == crate::loss::LossKind::CrossEntropy);
            if let Some(f) = fused {
                b.copies_before_next(&f.copies);
                let head = HeadInputs {
                    h_mirror: &f.h_mirror,
                    params_mirror: &f.params_mirror,
                    hidden: f.hidden,
                    h_off: f.h_off,
                    v_off: f.v_off,
                    c_off: f.c_off,
                    o_mirror: self
                        .o_mirror
                        .as_ref()
                        .expect("a fused head has the outputs' mirror"),
                    d_o_to_mirror: self.backward_from_mirror.is_some(),
                };
                let rows = self.steps * self.batch;
                let bufs = self.loss_buffers(&self.loss);
                head_loss(&mut b, key, (rows, outputs), &head, &bufs)?;
                if let Some(bf) = &self.batch_first {
                    swap_leading(&mut b, (self.steps, self.batch, outputs), &self.o, &bf.o)?;
                }
            } else {
                crate::ops::loss::loss(
                    &mut b,
                    key,
                    (self.steps * self.batch, outputs),
                    self.chunk,
                    &self.loss_buffers(&self.loss),
                )?;
            }
            let fused = fused.is_some();
            self.losses.insert(key, (b.finish()?, fused));
        }
        Ok(())
    }

    /// The loss kernels' buffers, with `loss` as the total they write.
    pub fn loss_buffers<'a>(&'a self, loss: &'a wgpu::Buffer) -> LossBuffers<'a> {
        LossBuffers {
            o: &self.o,
            y: &self.y,
            mask: &self.mask,
            d_o: &self.d_o,
            rows: &self.rows,
            loss,
            o_mirror: self.o_mirror.as_ref(),
        }
    }

    /// The plan for `key`, recorded by [`Workspace::prepare_loss`], after the whole of
    /// [`Workspace::forward_plans`] (a chunk's: never one that computes the head itself).
    pub fn loss_plan(&self, key: (Loss, bool)) -> &Plan {
        let (plan, fused) = &self.losses[&key];
        debug_assert!(!fused, "a loss plan that computes the head, after the head");
        plan
    }

    /// The forward pass and the loss for `key` (recorded by [`Workspace::prepare_loss`]): the
    /// forward plan without its head where the loss plan computes it.
    pub fn step_plans(&self, key: (Loss, bool)) -> Vec<&Plan> {
        let (loss, fused) = &self.losses[&key];
        let mut plans = self.forward_plans();
        if let (true, Some(f)) = (fused, &self.fused_head) {
            // forward_plans ends with the forward plan.
            plans.pop();
            plans.push(&f.body);
        }
        plans.push(loss);
        plans
    }

    /// The backward pass after [`Workspace::step_plans`] for `key`: from dL/do in the outputs'
    /// mirror where its loss plan wrote it there.
    pub fn backward_after(&self, key: (Loss, bool)) -> &Plan {
        match (&self.losses[&key], &self.backward_from_mirror) {
            ((_, true), Some(b)) => b,
            _ => &self.backward,
        }
    }
}
