//! `shaders/spectral.wgsl`: a square matrix's spectral radius by power iteration.

use super::{At, PlanBuilder, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static POWER_ITERATION: Kernel = Kernel {
    name: "power_iteration",
    source: include_str!("../../shaders/spectral.wgsl"),
    entry: "power_iteration",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

/// Power iterations in all.
pub(crate) const ITERATIONS: usize = 1500;
/// Iterations before the growth is counted: the start vector's other directions die out.
pub(crate) const BURN_IN: usize = 300;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    h: u32,
    w_off: u32,
    iters: u32,
    start: u32,
    counted: u32,
    _pad: [u32; 3],
}

/// Floats of the state [`power_iteration`] keeps for an `h x h` matrix.
pub(crate) fn state_len(h: usize) -> usize {
    2 * h + 3
}

/// Records [`ITERATIONS`] power iterations on `w` `[h, h]`, leaving in `state` the summed log
/// growth at `2h`, the iterations counted at `2h + 1` and, at `2h + 2`, 1 if `W v` became zero.
pub(crate) fn power_iteration(
    plan: &mut PlanBuilder,
    h: usize,
    w: At,
    state: &wgpu::Buffer,
) -> Result<()> {
    // Loop iterations per invocation and power iteration: its rows times H, plus the rest.
    let per = h.div_ceil(64) * (h + 2) + 16;
    if plan.gpu().is_cpu() && per > 60_000 {
        // lavapipe would stop one iteration's invocation part-way, silently.
        return Err(crate::error::InputError::Invalid {
            arg: "hidden".into(),
            reason: format!(
                "H = {h} is past what power iteration runs on a CPU adapter (about 1950)"
            ),
        }
        .into());
    }
    let chunk = (30_000 / per).clamp(1, 256);
    let mut start = 0;
    while start < ITERATIONS {
        let iters = chunk.min(ITERATIONS - start);
        let params = Params {
            h: u(h),
            w_off: u(w.off),
            iters: u(iters),
            start: u(start),
            counted: u(BURN_IN),
            _pad: [0; 3],
        };
        plan.push(&POWER_ITERATION, &[w.buf, state], &params, [1, 1, 1], false)?;
        start += iters;
    }
    Ok(())
}

/// The spectral radius from a state [`power_iteration`] left (`2h + 3` floats).
pub(crate) fn radius(state: &[f32], h: usize) -> f32 {
    if state[2 * h + 2] != 0.0 || state[2 * h + 1] == 0.0 {
        return 0.0;
    }
    (f64::from(state[2 * h]) / f64::from(state[2 * h + 1])).exp() as f32
}
