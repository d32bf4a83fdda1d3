//! `shaders/directions.wgsl`: between true time and the reverse direction's reversed time, and
//! between the two directions' states and a bidirectional layer's `[T, B, 2H]` outputs.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

const BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Params,
];
const SOURCE: &str = include_str!("../../shaders/directions.wgsl");

pub(crate) static REVERSE_STEPS: Kernel = Kernel {
    name: "reverse_steps",
    source: SOURCE,
    entry: "reverse_steps",
    binds: BINDS,
    constants: &[],
};
pub(crate) static MERGE_REVERSED: Kernel = Kernel {
    name: "merge_reversed",
    entry: "merge_reversed",
    ..REVERSE_STEPS
};
pub(crate) static CONCAT: Kernel = Kernel {
    name: "concat_directions",
    entry: "concat",
    ..REVERSE_STEPS
};
pub(crate) static SPLIT: Kernel = Kernel {
    name: "split_directions",
    entry: "split",
    ..REVERSE_STEPS
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    steps: u32,
    batch: u32,
    hidden: u32,
    n: u32,
    src_off: u32,
    flags: u32,
    rev_off: u32,
    _pad: u32,
}

/// Buffers bound where a kernel has nothing to read or write: one to read, one to write, so
/// no buffer is bound both ways in one dispatch.
pub(crate) struct Unused<'a> {
    pub read: &'a wgpu::Buffer,
    pub write: &'a wgpu::Buffer,
}

/// Values of a step on x, steps on y, each capped at the 65535 workgroups a dimension allows
/// (the kernels come round).
fn grid(steps: usize, n: usize) -> [u32; 3] {
    [groups(n, 64).min(65535), u(steps.min(65535)), 1]
}

/// `dst[T - 1 - t] = src[t]` for `steps` steps of `n` values; `dst` from element 0.
pub(crate) fn reverse_steps(
    plan: &mut PlanBuilder,
    (steps, n): (usize, usize),
    src: At,
    dst: &wgpu::Buffer,
    unused: &Unused,
) -> Result<()> {
    let params = Params {
        steps: u(steps),
        n: u(n),
        src_off: u(src.off),
        ..Default::default()
    };
    let bufs = [src.buf, unused.read, dst, unused.write];
    plan.push(&REVERSE_STEPS, &bufs, &params, grid(steps, n), false)?;
    Ok(())
}

/// `dst[t] = a[t] + b[T - 1 - t]`, `steps` steps of `n` values, all from element 0.
pub(crate) fn merge_reversed(
    plan: &mut PlanBuilder,
    (steps, n): (usize, usize),
    [a, b, dst]: [&wgpu::Buffer; 3],
    unused: &Unused,
) -> Result<()> {
    let params = Params {
        steps: u(steps),
        n: u(n),
        ..Default::default()
    };
    let bufs = [a, b, dst, unused.write];
    plan.push(&MERGE_REVERSED, &bufs, &params, grid(steps, n), false)?;
    Ok(())
}

/// `out[t, b] = [fwd(t), rev(t)]` `[T, B, 2H]` from a bidirectional layer's `h_all`: the
/// forward direction's (true time) from element 0, the reverse direction's (reversed time)
/// from `rev_off`.
pub(crate) fn concat(
    plan: &mut PlanBuilder,
    (steps, batch, hidden): (usize, usize, usize),
    (h_all, rev_off): (&wgpu::Buffer, usize),
    out: &wgpu::Buffer,
    unused: &Unused,
) -> Result<()> {
    let params = Params {
        steps: u(steps),
        batch: u(batch),
        hidden: u(hidden),
        rev_off: u(rev_off),
        ..Default::default()
    };
    let bufs = [h_all, unused.read, out, unused.write];
    plan.push(
        &CONCAT,
        &bufs,
        &params,
        grid(steps, batch * 2 * hidden),
        false,
    )?;
    Ok(())
}

/// From `d_out` `[T, B, 2H]` in true time, plus `d_rev` of the same shape in reversed time
/// when given, dL/dh of the forward direction (true time, from element 0 of `da`) and of the
/// reverse direction (reversed time, from `rev_off`), `[T, B, H]` each.
pub(crate) fn split(
    plan: &mut PlanBuilder,
    (steps, batch, hidden): (usize, usize, usize),
    d_out: &wgpu::Buffer,
    d_rev: Option<&wgpu::Buffer>,
    (da, rev_off): (&wgpu::Buffer, usize),
    unused: &Unused,
) -> Result<()> {
    let params = Params {
        steps: u(steps),
        batch: u(batch),
        hidden: u(hidden),
        flags: u32::from(d_rev.is_some()),
        rev_off: u(rev_off),
        ..Default::default()
    };
    let bufs = [d_out, d_rev.unwrap_or(unused.read), da, unused.write];
    plan.push(
        &SPLIT,
        &bufs,
        &params,
        grid(steps, batch * 2 * hidden),
        false,
    )?;
    Ok(())
}
