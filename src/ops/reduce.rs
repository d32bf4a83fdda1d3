//! `shaders/reduce.wgsl`: column sums, for the bias gradients.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static COLSUM: Kernel = Kernel {
    name: "colsum",
    source: include_str!("../../shaders/reduce.wgsl"),
    entry: "colsum",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

pub(crate) static SUM_PARTS: Kernel = Kernel {
    name: "sum_parts",
    entry: "sum_parts",
    ..COLSUM
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Parts {
    len: u32,
    parts: u32,
    out_off: u32,
    flags: u32,
    _pad: [u32; 4],
}

/// `out[i] (+)= sum_z parts[z * len + i]` for `i < len`: the partial products of a split-K
/// multiply, added (or, with `accumulate`, added to what `out` holds).
pub(crate) fn sum_parts(
    plan: &mut PlanBuilder,
    len: usize,
    parts: usize,
    src: &wgpu::Buffer,
    out: At,
    accumulate: bool,
) -> Result<()> {
    let params = Parts {
        len: u(len),
        parts: u(parts),
        out_off: u(out.off),
        flags: if accumulate { 2 } else { 0 },
        _pad: [0; 4],
    };
    let n = groups(len, 256);
    let (x, y) = if n > 65535 {
        (65535, n.div_ceil(65535))
    } else {
        (n, 1)
    };
    plan.push(&SUM_PARTS, &[src, out.buf], &params, [x, y, 1], false)?;
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    a_off: u32,
    out_off: u32,
    out2_off: u32,
    flags: u32,
    _pad: [u32; 2],
}

/// `out[n] = sum_m a[m, n]`, written also at `out2` when given (both in `out`'s buffer).
pub(crate) fn colsum(
    plan: &mut PlanBuilder,
    m: usize,
    n: usize,
    a: At,
    out: At,
    out2: Option<usize>,
) -> Result<()> {
    let params = Params {
        m: u(m),
        n: u(n),
        a_off: u(a.off),
        out_off: u(out.off),
        out2_off: u(out2.unwrap_or(0)),
        flags: out2.is_some() as u32,
        _pad: [0; 2],
    };
    plan.push(
        &COLSUM,
        &[a.buf, out.buf],
        &params,
        [groups(n, 64), 1, 1],
        false,
    )?;
    Ok(())
}
