//! `shaders/dropout.wgsl`: dropout between stacked layers, its mask drawn again from a hash.

use super::{At, PlanBuilder, flat_grid, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

const BINDS: &[Bind] = &[Bind::Read, Bind::ReadWrite, Bind::Read, Bind::Params];

pub(crate) static DROPOUT_FORWARD: Kernel = Kernel {
    name: "dropout_forward",
    source: include_str!("../../shaders/dropout.wgsl"),
    entry: "dropout_forward",
    binds: BINDS,
    constants: &[],
};
pub(crate) static DROPOUT_BACKWARD: Kernel = Kernel {
    name: "dropout_backward",
    entry: "dropout_backward",
    ..DROPOUT_FORWARD
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    src_off: u32,
    threshold: u32,
    scale: f32,
    layer: u32,
    reversed: u32,
    steps: u32,
    step_len: u32,
}

/// A value is kept where its hash is at least this: `p · 2³²`.
pub(crate) fn threshold(p: f32) -> u32 {
    (f64::from(p) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32
}

fn params(n: usize, src_off: usize, p: f32, layer: usize) -> Params {
    Params {
        n: u(n),
        src_off: u(src_off),
        threshold: threshold(p),
        scale: 1.0 / (1.0 - p),
        layer: u(layer),
        ..Default::default()
    }
}

/// `dst = src · mask` over `n` values of layer `layer`'s output, where `state` says training.
pub(crate) fn forward(
    plan: &mut PlanBuilder,
    (n, p, layer): (usize, f32, usize),
    src: At,
    dst: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Result<()> {
    let bufs = [src.buf, dst, state];
    plan.push(
        &DROPOUT_FORWARD,
        &bufs,
        &params(n, src.off, p, layer),
        flat_grid(n),
        false,
    )?;
    Ok(())
}

/// `g *= mask` in place over `n` values (the gradient of layer `layer`'s dropped output);
/// with `reversed: Some(steps)`, `g` holds those steps in reverse order.
pub(crate) fn backward(
    plan: &mut PlanBuilder,
    (n, p, layer): (usize, f32, usize),
    reversed: Option<usize>,
    g: &wgpu::Buffer,
    [state, unused]: [&wgpu::Buffer; 2],
) -> Result<()> {
    let bufs = [unused, g, state];
    let mut params = params(n, 0, p, layer);
    if let Some(steps) = reversed {
        params.reversed = 1;
        params.steps = u(steps);
        params.step_len = u(n / steps);
    }
    plan.push(&DROPOUT_BACKWARD, &bufs, &params, flat_grid(n), false)?;
    Ok(())
}
