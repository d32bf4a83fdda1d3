//! `shaders/diagnostics.wgsl`: the norm of dL/dh(t) at every step, from hoisted products.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static STEP_NORMS: Kernel = Kernel {
    name: "step_norms",
    source: include_str!("../../shaders/diagnostics.wgsl"),
    entry: "step_norms",
    binds: &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    steps: u32,
    n: u32,
    out_off: u32,
    above_off: u32,
}

/// Records `out[t] = ‖above[t] + rec[t]‖` for `t < steps` over `n` values a step (`rec`
/// absent at the last step): ‖dL/dh(t)‖ from what reaches h(t) from above and through the
/// recurrence.
pub(crate) fn step_norms(
    plan: &mut PlanBuilder,
    (steps, n): (usize, usize),
    above: At,
    rec: &wgpu::Buffer,
    out: At,
) -> Result<()> {
    let params = Params {
        steps: u(steps),
        n: u(n),
        out_off: u(out.off),
        above_off: u(above.off),
    };
    let g = groups(steps, 1);
    let (x, y) = if g > 65535 {
        (65535, g.div_ceil(65535))
    } else {
        (g, 1)
    };
    plan.push(
        &STEP_NORMS,
        &[above.buf, rec, out.buf],
        &params,
        [x, y, 1],
        false,
    )?;
    Ok(())
}
