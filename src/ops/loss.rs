//! `shaders/loss.wgsl`: mse and cross-entropy with their gradients, and the total.

use super::{PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};
use crate::loss::{Loss, LossKind, Reduction};

const BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Params,
];
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
pub(crate) static TOTAL: Kernel = Kernel {
    name: "loss_total",
    source: SOURCE,
    entry: "total",
    binds: BINDS,
    constants: &[],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

/// Buffers of one loss evaluation.
pub(crate) struct LossBuffers<'a> {
    /// Outputs `[R, O]`.
    pub o: &'a wgpu::Buffer,
    /// Targets: f32 `[R, O]` for mse, u32 `[R]` for cross-entropy.
    pub y: &'a wgpu::Buffer,
    /// Gradient `[R, O]`, written.
    pub d_o: &'a wgpu::Buffer,
    /// Per-row losses `[R]`, scratch.
    pub rows: &'a wgpu::Buffer,
    /// The loss `[1]`, written.
    pub loss: &'a wgpu::Buffer,
}

/// Records the loss of `rows x cols` outputs, its gradient and its total.
pub(crate) fn loss(
    plan: &mut PlanBuilder,
    loss: Loss,
    rows: usize,
    cols: usize,
    b: &LossBuffers,
) -> Result<()> {
    let count = match loss.kind {
        LossKind::Mse => rows * cols,
        LossKind::CrossEntropy => rows,
    };
    let scale = match loss.reduction {
        Reduction::Mean => (1.0 / count as f64) as f32,
        Reduction::Sum => 1.0,
    };
    let params = Params {
        rows: u(rows),
        cols: u(cols),
        scale,
        _pad: 0,
    };
    let kernel = match loss.kind {
        LossKind::Mse => &MSE,
        LossKind::CrossEntropy => &CROSS_ENTROPY,
    };
    let bufs = [b.o, b.y, b.d_o, b.rows, b.loss];
    plan.push(kernel, &bufs, &params, [groups(rows, 64), 1, 1], false)?;
    plan.push(&TOTAL, &bufs, &params, [1, 1, 1], false)?;
    Ok(())
}
