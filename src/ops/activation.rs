//! `shaders/activation.wgsl`: the nonlinearity between the layers of a deeper block, and its
//! gradient.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};
use crate::model::Nonlinearity;

const BINDS: &[Bind] = &[Bind::Read, Bind::ReadWrite, Bind::Params];

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
    off: u32,
    act: u32,
    _pad: u32,
}

fn code(n: Nonlinearity) -> Option<u32> {
    match n {
        Nonlinearity::Tanh => Some(0),
        Nonlinearity::Relu => Some(1),
        Nonlinearity::Identity => None,
    }
}

fn grid(n: usize) -> [u32; 3] {
    let total = groups(n, 64) as usize;
    let x = total.clamp(1, 65535);
    [u(x), u(total.div_ceil(x).max(1)), 1]
}

/// `v = act(v)` in place over `n` values (nothing for the identity).
pub(crate) fn forward(
    plan: &mut PlanBuilder,
    n: usize,
    act: Nonlinearity,
    v: At,
    unused: &wgpu::Buffer,
) -> Result<()> {
    let Some(act) = code(act) else {
        return Ok(());
    };
    let params = Params {
        n: u(n),
        off: u(v.off),
        act,
        _pad: 0,
    };
    plan.push(&ACT_FORWARD, &[unused, v.buf], &params, grid(n), false)?;
    Ok(())
}

/// `g *= act'(y)` in place over `n` values, `y` the activation's outputs at the same offset
/// in their own buffer (nothing for the identity).
pub(crate) fn backward(
    plan: &mut PlanBuilder,
    n: usize,
    act: Nonlinearity,
    y: &wgpu::Buffer,
    g: At,
) -> Result<()> {
    let Some(act) = code(act) else {
        return Ok(());
    };
    let params = Params {
        n: u(n),
        off: u(g.off),
        act,
        _pad: 0,
    };
    plan.push(&ACT_BACKWARD, &[y, g.buf], &params, grid(n), false)?;
    Ok(())
}
