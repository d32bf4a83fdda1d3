//! `shaders/loss.wgsl`: mse and cross-entropy with their gradients, and the total; with a
//! mask, the scale of a masked mean first.

use super::state_texture::StateTexture;
use super::{PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};
use crate::loss::{Loss, LossKind, Reduction};

/// The loss kernels' bindings: `cross_entropy8`'s without its texture slot.
const BINDS: &[Bind] = CE8_BINDS.split_at(CE8_BINDS.len() - 1).0;
const SOURCE: &str = include_str!("../../shaders/loss.wgsl");

pub(crate) static MSE: Kernel = Kernel {
    name: "loss_mse",
    source: SOURCE,
    entry: "mse",
    binds: BINDS,
    constants: &[],
};
pub(crate) static CROSS_ENTROPY: Kernel = Kernel {
    name: "loss_cross_entropy",
    source: SOURCE,
    entry: "cross_entropy",
    binds: BINDS,
    constants: &[],
};
/// Cross-entropy by subgroups, a row at a time (`shaders/loss_subgroup.wgsl`): up to
/// [`CE8_COLS`] classes.
pub(crate) static CROSS_ENTROPY8: Kernel = Kernel {
    name: "loss_cross_entropy8",
    source: concat!(
        include_str!("../../shaders/loss.wgsl"),
        include_str!("../../shaders/loss_subgroup.wgsl")
    ),
    entry: "cross_entropy8",
    binds: CE8_BINDS,
    constants: &[],
};
/// `cross_entropy8` reading the outputs from their texture mirror.
pub(crate) static CROSS_ENTROPY8_TEX: Kernel = Kernel {
    name: "loss_cross_entropy8_tex",
    constants: &[("LOGITS_TEXTURE", 1.0)],
    ..CROSS_ENTROPY8
};
/// `cross_entropy8`'s: the outputs' mirror (read or not) after the parameters.
const CE8_BINDS: &[Bind] = &[
    Bind::ReadWrite,
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Params,
    Bind::TextureRead,
];

/// The head and the cross-entropy on it in one kernel (`shaders/loss_head.wgsl`), by the
/// head's blocks of 32 columns (`HEAD_BLOCKS` 1 to 4): index `O.div_ceil(32) - 1`.
pub(crate) static HEAD_CROSS_ENTROPY: [Kernel; 4] = [
    head_ce("loss_head_cross_entropy32", &[("HEAD_BLOCKS", 1.0)]),
    head_ce("loss_head_cross_entropy64", &[("HEAD_BLOCKS", 2.0)]),
    head_ce("loss_head_cross_entropy96", &[("HEAD_BLOCKS", 3.0)]),
    head_ce("loss_head_cross_entropy128", &[("HEAD_BLOCKS", 4.0)]),
];

/// As [`HEAD_CROSS_ENTROPY`], dL/do written into the outputs' mirror, its rows padded to whole
/// texels (`D_O_TEXELS`).
pub(crate) static HEAD_CROSS_ENTROPY_TO_MIRROR: [Kernel; 4] = [
    head_ce(
        "loss_head_cross_entropy32_to_mirror",
        &[("HEAD_BLOCKS", 1.0), ("D_O_TEXELS", 1.0)],
    ),
    head_ce(
        "loss_head_cross_entropy64_to_mirror",
        &[("HEAD_BLOCKS", 2.0), ("D_O_TEXELS", 1.0)],
    ),
    head_ce(
        "loss_head_cross_entropy96_to_mirror",
        &[("HEAD_BLOCKS", 3.0), ("D_O_TEXELS", 1.0)],
    ),
    head_ce(
        "loss_head_cross_entropy128_to_mirror",
        &[("HEAD_BLOCKS", 4.0), ("D_O_TEXELS", 1.0)],
    ),
];

const fn head_ce(name: &'static str, constants: &'static [(&'static str, f64)]) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/loss.wgsl"),
            include_str!("../../shaders/loss_subgroup.wgsl"),
            include_str!("../../shaders/loss_head.wgsl")
        ),
        entry: "head_cross_entropy",
        binds: HEAD_BINDS,
        constants,
    }
}

/// `cross_entropy8`'s, then the mirrors of h and of the parameters, and the one dL/do may go
/// into.
const HEAD_BINDS: &[Bind] = &[
    Bind::ReadWrite,
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Params,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::TextureWrite,
];

/// The most outputs [`head_loss`] takes.
pub(crate) const HEAD_CE_COLS: usize = 128;

/// What [`head_loss`] reads: the top layer's states from its mirror, V and c from the
/// parameters' (which the caller copies them into first).
pub(crate) struct HeadInputs<'a> {
    pub h_mirror: &'a StateTexture,
    pub params_mirror: &'a StateTexture,
    /// H: the head's inputs per row, a multiple of 4.
    pub hidden: usize,
    /// In floats, whole vec4s: the first row of h in its mirror, and V in the parameters'.
    pub h_off: usize,
    pub v_off: usize,
    /// In floats: c in the parameters' mirror.
    pub c_off: usize,
    /// The outputs' mirror, and whether dL/do goes there instead of its buffer, each row
    /// padded to whole texels (bound either way).
    pub o_mirror: &'a StateTexture,
    pub d_o_to_mirror: bool,
}

/// Records the head `o = h Vᵀ + c` over `rows` rows and the cross-entropy on its `cols`
/// outputs (at most [`HEAD_CE_COLS`]) in one kernel, each row weighed by `mask` where
/// `masked`, then the total: what the head and [`loss`] record, but for a whole sequence only
/// (no chunk's scale). The outputs are written too.
pub(crate) fn head_loss(
    plan: &mut PlanBuilder,
    (loss, masked): (Loss, bool),
    (rows, cols): (usize, usize),
    head: &HeadInputs,
    b: &LossBuffers,
) -> Result<()> {
    debug_assert!(loss.kind == LossKind::CrossEntropy && (1..=HEAD_CE_COLS).contains(&cols));
    let params = Params {
        head: [u(head.hidden), u(head.h_off), u(head.v_off), u(head.c_off)],
        ..Params::new((loss, masked), (rows, cols), false)
    };
    let bufs = [b.o, b.y, b.mask, b.d_o, b.rows, b.loss];
    if masked {
        plan.push(&MASK_SCALE, &bufs, &params, [1, 1, 1], false)?;
    }
    let unread = plan.gpu().placeholder_texture().clone();
    let views = [
        &unread,
        head.h_mirror.view(),
        head.params_mirror.view(),
        head.o_mirror.view(),
    ];
    let kernels = match head.d_o_to_mirror {
        true => &HEAD_CROSS_ENTROPY_TO_MIRROR,
        false => &HEAD_CROSS_ENTROPY,
    };
    let kernel = &kernels[cols.div_ceil(32) - 1];
    let g = [u(rows.div_ceil(16)), 1, 1];
    plan.push_textured(kernel, &bufs, &views, &[0], &params, g, false)?;
    plan.push(total(plan.gpu()), &bufs, &params, [1, 1, 1], false)?;
    Ok(())
}

/// The most classes `cross_entropy8` holds in its lanes' registers.
const CE8_COLS: usize = 128;

pub(crate) static TOTAL: Kernel = Kernel {
    name: "loss_total",
    source: SOURCE,
    entry: "total",
    binds: BINDS,
    constants: &[],
};
/// `total` by one subgroup of 8 lanes (`shaders/loss_subgroup.wgsl`).
pub(crate) static TOTAL8: Kernel = Kernel {
    name: "loss_total8",
    entry: "total8",
    binds: BINDS,
    ..CROSS_ENTROPY8
};

/// The total's kernel on `gpu`.
fn total(gpu: &crate::gpu::Gpu) -> &'static Kernel {
    if gpu.subgroup_kernels() {
        &TOTAL8
    } else {
        &TOTAL
    }
}
pub(crate) static MASK_SCALE: Kernel = Kernel {
    name: "loss_mask_scale",
    source: SOURCE,
    entry: "mask_scale",
    binds: BINDS,
    constants: &[],
};
pub(crate) static MASK_COUNT: Kernel = Kernel {
    name: "loss_mask_count",
    entry: "mask_count",
    ..MASK_SCALE
};
pub(crate) static CHUNK_SCALE: Kernel = Kernel {
    name: "loss_chunk_scale",
    entry: "chunk_scale",
    ..MASK_SCALE
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    mode: u32,
    per: f32,
    /// `head_cross_entropy`'s: H, and where h's rows, V and c start (in floats).
    head: [u32; 4],
    _pad: [u32; 3],
}

impl Params {
    /// The loss kernels' parameters for `loss` over `rows x cols` outputs, masked or not; with
    /// `given_scale` (a chunk of a longer sequence) at the scale `loss[1]` already holds.
    fn new((loss, masked): (Loss, bool), (rows, cols): (usize, usize), given_scale: bool) -> Self {
        let (per, scale) = per_and_scale(loss, rows, cols);
        let mode = match (masked, loss.reduction) {
            (false, _) if given_scale => 3,
            (false, _) => 0,
            (true, _) if given_scale => 1,
            (true, Reduction::Sum) => 1,
            (true, Reduction::Mean) => 2,
        };
        Params {
            rows: u(rows),
            cols: u(cols),
            scale,
            mode,
            per: per as f32,
            head: [0; 4],
            _pad: [0; 3],
        }
    }
}

/// Buffers of one loss evaluation.
pub(crate) struct LossBuffers<'a> {
    /// Outputs `[R, O]`.
    pub o: &'a wgpu::Buffer,
    /// Targets: f32 `[R, O]` for mse, u32 `[R]` for cross-entropy.
    pub y: &'a wgpu::Buffer,
    /// Each row's weight `[R]`, read when the loss is masked.
    pub mask: &'a wgpu::Buffer,
    /// Gradient `[R, O]`, written.
    pub d_o: &'a wgpu::Buffer,
    /// Per-row losses `[R]`, scratch.
    pub rows: &'a wgpu::Buffer,
    /// The loss `[2]` (and the masked scale after it), written.
    pub loss: &'a wgpu::Buffer,
    /// A texture mirror of `o` the subgroup cross-entropy reads the outputs from (copied in
    /// first), where the workspace keeps one.
    pub o_mirror: Option<&'a StateTexture>,
}

/// Elements per row a mean divides by, and the scale of an unmasked loss over `rows` rows.
fn per_and_scale(loss: Loss, rows: usize, cols: usize) -> (usize, f32) {
    let per = match loss.kind {
        LossKind::Mse => cols,
        LossKind::CrossEntropy => 1,
    };
    let scale = match loss.reduction {
        Reduction::Mean => (1.0 / (rows * per) as f64) as f32,
        Reduction::Sum => 1.0,
    };
    (per, scale)
}

/// Records the loss of `rows x cols` outputs, its gradient and its total, each row weighed
/// by `mask` where `masked`; with `given_scale` (a chunk of a longer sequence) at the scale
/// `loss[1]` already holds.
pub(crate) fn loss(
    plan: &mut PlanBuilder,
    (loss, masked): (Loss, bool),
    (rows, cols): (usize, usize),
    given_scale: bool,
    b: &LossBuffers,
) -> Result<()> {
    let params = Params::new((loss, masked), (rows, cols), given_scale);
    let kernel = match loss.kind {
        LossKind::Mse => &MSE,
        LossKind::CrossEntropy => &CROSS_ENTROPY,
    };
    let bufs = [b.o, b.y, b.mask, b.d_o, b.rows, b.loss];
    if masked && !given_scale {
        plan.push(&MASK_SCALE, &bufs, &params, [1, 1, 1], false)?;
    }
    if loss.kind == LossKind::CrossEntropy && cols <= CE8_COLS && plan.gpu().subgroup_kernels() {
        // 64 workgroups or more, each looping over rows (lavapipe's cost per workgroup), within
        // the loop budget per invocation: the character model's loss 2.9 -> 2.1 ms.
        let grid = 64.max(rows.div_ceil(1024)).min(rows).min(65535);
        let (kernel, view) = match b.o_mirror {
            Some(m) => {
                plan.copy_to_mirror(b.o, m);
                (&CROSS_ENTROPY8_TEX, m.view().clone())
            }
            None => (&CROSS_ENTROPY8, plan.gpu().placeholder_texture().clone()),
        };
        let g = [u(grid), 1, 1];
        plan.push_textured(kernel, &bufs, &[&view], &[0], &params, g, false)?;
    } else {
        plan.push(kernel, &bufs, &params, [groups(rows, 64), 1, 1], false)?;
    }
    plan.push(total(plan.gpu()), &bufs, &params, [1, 1, 1], false)?;
    Ok(())
}

/// Records `totals[1] += sum(mask[..rows])`: one chunk's counted rows, for a masked mean over
/// a sequence run in chunks.
pub(crate) fn mask_count(plan: &mut PlanBuilder, rows: usize, b: &LossBuffers) -> Result<()> {
    let params = Params {
        rows: u(rows),
        cols: 0,
        scale: 1.0,
        mode: 0,
        per: 1.0,
        head: [0; 4],
        _pad: [0; 3],
    };
    let bufs = [b.o, b.y, b.mask, b.d_o, b.rows, b.loss];
    plan.push(&MASK_COUNT, &bufs, &params, [1, 1, 1], false)?;
    Ok(())
}

/// Records the scale of `loss` over a whole sequence of `rows x cols` outputs into `totals[2]`
/// (from the count [`mask_count`] left in `totals[1]` where `masked`); with `apply`, also
/// `totals[0] *= scale` for a total added up at scale 1.
pub(crate) fn chunk_scale(
    plan: &mut PlanBuilder,
    (loss, masked): (Loss, bool),
    (rows, cols): (usize, usize),
    apply: bool,
    b: &LossBuffers,
) -> Result<()> {
    let (per, scale) = per_and_scale(loss, rows, cols);
    // A masked mean's scale comes from the count (mode 2); a masked sum's is 1.
    let mean = loss.reduction == Reduction::Mean;
    let params = Params {
        rows: u(rows),
        cols: u32::from(apply),
        scale: if masked { 1.0 } else { scale },
        mode: if masked && mean { 2 } else { 0 },
        per: per as f32,
        head: [0; 4],
        _pad: [0; 3],
    };
    let bufs = [b.o, b.y, b.mask, b.d_o, b.rows, b.loss];
    plan.push(&CHUNK_SCALE, &bufs, &params, [1, 1, 1], false)?;
    Ok(())
}
