//! `shaders/activation.wgsl`: the nonlinearity between the layers of a deeper block, and its
//! gradient.

use super::{At, PlanBuilder, at, flat_grid, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

const BINDS: &[Bind] = &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params];

pub(crate) static ACT_FORWARD: Kernel = Kernel {
    name: "act_forward",
    source: include_str!("../../shaders/activation.wgsl"),
    entry: "act_forward",
    binds: BINDS,
    constants: &[],
};
pub(crate) static ACT_BACKWARD: Kernel = Kernel {
    name: "act_backward",
    entry: "act_backward",
    ..ACT_FORWARD
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    g_off: u32,
    y_off: u32,
    src_off: u32,
    act: u32,
    copy: u32,
    minus: u32,
    _pad: u32,
}

/// The identity's code (the others: 0 tanh, 1 relu, as the recurrence kernels take them).
pub(crate) const IDENTITY: u32 = 2;

/// `v = act(v)` in place over `n` values (`act` a kernel code; nothing for the identity).
pub(crate) fn forward(
    plan: &mut PlanBuilder,
    n: usize,
    act: u32,
    v: At,
    unused: &wgpu::Buffer,
) -> Result<()> {
    if act == IDENTITY {
        return Ok(());
    }
    let params = Params {
        n: u(n),
        g_off: u(v.off),
        act,
        ..Default::default()
    };
    plan.push(
        &ACT_FORWARD,
        &[unused, unused, v.buf],
        &params,
        flat_grid(n),
        false,
    )?;
    Ok(())
}

/// `g *= act'(y)` in place over `n` values, `y` the activation's outputs at the same offset
/// in their own buffer (nothing for the identity).
pub(crate) fn backward(
    plan: &mut PlanBuilder,
    n: usize,
    act: u32,
    y: &wgpu::Buffer,
    g: At,
) -> Result<()> {
    if act == IDENTITY {
        return Ok(());
    }
    backward_from(plan, n, act, (at(y, g.off), None), g)
}

/// `g = from · act'(y)` over `n` values: `from` is `src` when given, else `g` itself.
pub(crate) fn backward_from(
    plan: &mut PlanBuilder,
    n: usize,
    act: u32,
    (y, src): (At, Option<At>),
    g: At,
) -> Result<()> {
    let params = Params {
        n: u(n),
        g_off: u(g.off),
        y_off: u(y.off),
        src_off: u(src.map_or(0, |s| s.off)),
        act,
        copy: u32::from(src.is_some()),
        ..Default::default()
    };
    push_backward(plan, &params, [y.buf, src.map_or(y.buf, |s| s.buf), g.buf])
}

/// `g *= act'(y - x)` in place over `n` values: the gradient through a residual layer's
/// nonlinearity, whose output `y` is `act(a) + x` (nothing for the identity).
pub(crate) fn backward_residual(
    plan: &mut PlanBuilder,
    n: usize,
    act: u32,
    (y, x): (At, At),
    g: At,
) -> Result<()> {
    if act == IDENTITY {
        return Ok(());
    }
    let params = Params {
        n: u(n),
        g_off: u(g.off),
        y_off: u(y.off),
        src_off: u(x.off),
        act,
        minus: 1,
        ..Default::default()
    };
    push_backward(plan, &params, [y.buf, x.buf, g.buf])
}

/// One `act_backward` dispatch over `params.n` values: `y`, `src`, then `v`.
fn push_backward(plan: &mut PlanBuilder, params: &Params, bufs: [&wgpu::Buffer; 3]) -> Result<()> {
    let grid = flat_grid(params.n as usize);
    plan.push(&ACT_BACKWARD, &bufs, params, grid, false)?;
    Ok(())
}
