//! `shaders/embed.wgsl`: the input projection of token ids (a gather of U's columns) and its
//! weight gradient (a scatter-add into them).

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

/// Rows one `embed` invocation writes (the shader's `EMBED_ROWS`).
const EMBED_ROWS: usize = 32;

pub(crate) static EMBED: Kernel = Kernel {
    name: "embed",
    source: include_str!("../../shaders/embed.wgsl"),
    entry: "embed",
    binds: &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[("EMBED_ROWS", EMBED_ROWS as f64)],
};

pub(crate) static EMBED_GRAD: Kernel = Kernel {
    name: "embed_grad",
    entry: "embed_grad",
    constants: &[],
    ..EMBED
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    steps: u32,
    batch: u32,
    hidden: u32,
    input: u32,
    flags: u32,
    w_off: u32,
    bias_off: u32,
    bias2_off: u32,
    out_off: u32,
    _pad: [u32; 3],
}

/// How a layer reads the caller's ids: `[T, B]` time-major or `[B, T]` batch-first, in true
/// or reversed time, for `T` steps of `B` rows, `H` hidden units and `I` ids.
#[derive(Clone, Copy)]
pub(crate) struct TokenLayout {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub input: usize,
    pub batch_first: bool,
    pub reversed: bool,
}

impl TokenLayout {
    fn params(&self, flags: u32, w_off: usize, out_off: usize) -> Params {
        Params {
            steps: u(self.steps),
            batch: u(self.batch),
            hidden: u(self.hidden),
            input: u(self.input),
            flags: flags | self.batch_first as u32 | (self.reversed as u32) << 1,
            w_off: u(w_off),
            bias_off: 0,
            bias2_off: 0,
            out_off: u(out_off),
            _pad: [0; 3],
        }
    }
}

/// `out[r, :] = U[:, id(r)] (+ bias) (+ bias2)` for every row, `U` `[H, I]`; `ids` holds
/// the ids and their sorted positions (`ClassIds`' layout). The biases live in `u`'s buffer.
pub(crate) fn embed(
    plan: &mut PlanBuilder,
    tl: TokenLayout,
    ids: &wgpu::Buffer,
    w: At,
    biases: Option<(usize, usize)>,
    out: At,
) -> Result<()> {
    let mut params = tl.params(if biases.is_some() { 12 } else { 0 }, w.off, out.off);
    if let Some((b1, b2)) = biases {
        params.bias_off = u(b1);
        params.bias2_off = u(b2);
    }
    let rows = tl.steps * tl.batch;
    let grid = [
        groups(tl.hidden, 64),
        groups(rows, EMBED_ROWS).min(65535),
        1,
    ];
    plan.push(&EMBED, &[ids, w.buf, out.buf], &params, grid, false)?;
    Ok(())
}

/// `dU[:, v] = sum of da[r, :]` over the rows `r` whose id is `v`, for every `v` (zero where
/// none), written over `du` `[H, I]`.
pub(crate) fn embed_grad(
    plan: &mut PlanBuilder,
    tl: TokenLayout,
    ids: &wgpu::Buffer,
    da: At,
    du: At,
) -> Result<()> {
    let params = tl.params(0, da.off, du.off);
    let grid = [groups(tl.hidden, 64), u(tl.input.min(65535)), 1];
    plan.push(&EMBED_GRAD, &[ids, da.buf, du.buf], &params, grid, false)?;
    Ok(())
}
