//! `shaders/reduce.wgsl`: column sums, for the bias gradients.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static COLSUM: Kernel = Kernel {
    name: "colsum",
    source: include_str!("../../shaders/reduce.wgsl"),
    entry: "colsum",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Uniform],
    constants: &[],
};

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
