//! `shaders/transition.wgsl`: a deep transition's steps, every layer of a step in one
//! dispatch (the Elman cell's epilogues spliced in for its nonlinearities).

use std::sync::OnceLock;

use super::recurrence::{Cell, LOOP_BUDGET, assemble};
use super::{PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Gpu, Kernel};

/// The most layers a fused transition takes (the `[u32; 8]` arrays of its parameters).
pub(crate) const MAX_LAYERS: usize = 8;
/// Batch rows per workgroup and invocations per workgroup (`ROWS`, `WG` in the shader).
const ROWS: usize = 4;
const WG: usize = 64;

const BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Params,
];

/// The forward and backward kernels, assembled on first use.
pub(crate) fn kernels() -> [&'static Kernel; 2] {
    static KERNELS: OnceLock<[Kernel; 2]> = OnceLock::new();
    let [f, b] = KERNELS.get_or_init(|| {
        let source: &'static str = Box::leak(
            assemble(
                include_str!("../../shaders/transition.wgsl"),
                None,
                Cell::Elman,
            )
            .into_boxed_str(),
        );
        let forward = Kernel {
            name: "transition_forward",
            source,
            entry: "transition_forward",
            binds: BINDS,
            constants: &[],
        };
        let backward = Kernel {
            name: "transition_backward",
            entry: "transition_backward",
            ..forward
        };
        [forward, backward]
    });
    [f, b]
}

/// The kernels' parameters (`Tr` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub batch: u32,
    pub hidden: u32,
    pub width: u32,
    pub depth: u32,
    pub steps: u32,
    pub t0: u32,
    pub count: u32,
    pub act: u32,
    pub tact: u32,
    pub skip: u32,
    pub x_off: u32,
    pub h_off: u32,
    pub da_off: u32,
    pub w: u32,
    pub wt: u32,
    pub s: u32,
    pub st: u32,
    pub _pad: [u32; 3],
    pub lw: [u32; MAX_LAYERS],
    pub lwt: [u32; MAX_LAYERS],
    pub lb: [u32; MAX_LAYERS],
}

/// The buffers both kernels bind: parameters, transposed copies, xu, h_all, the inner
/// layers' outputs, their gradients, da.
pub(crate) type Buffers<'a> = [&'a wgpu::Buffer; 7];

/// Loop iterations one invocation spends on a step, in the larger of the two passes: for
/// each column it owns in each stage, the product's length and the epilogue's rows.
fn per_step((hidden, width, depth, skip): (usize, usize, usize, bool)) -> usize {
    let cols = |n: usize| n.div_ceil(WG);
    let shortcut = if skip { hidden } else { 0 };
    let (mut fw, mut bw) = (
        cols(hidden) * (hidden + ROWS + 1),
        cols(hidden) * (hidden + shortcut + ROWS + 1),
    );
    for j in 0..depth {
        let ni = if j == 0 { hidden } else { width };
        let (no, extra) = if j + 1 == depth {
            (hidden, shortcut)
        } else {
            (width, 0)
        };
        fw += cols(no) * (ni + extra + ROWS + 1) + 1;
        bw += cols(ni) * (no + ROWS + 1) + 1;
    }
    fw.max(bw) + 1
}

/// Steps one dispatch of the fused kernels runs for a transition of `sizes` (H, width,
/// depth, shortcut), or `None` where each product runs as a dispatch of its own instead.
///
/// Fused with the tiled kernel style (GPUs): one dispatch per step or per sequence where the
/// unfused form needs four or more per step. On lavapipe, forced to that style, the fused
/// transition ran `small`'s training step 2.7-3.1x faster than the unfused one (BENCHMARKS.md).
/// Unfused with the direct styles (CPU adapters): there the fused kernel, whose loads lavapipe
/// makes lane by lane, ran 4x slower than the register-blocked products. On CPU adapters a
/// dispatch runs as many steps as the loop budget allows (lavapipe stops an invocation after
/// 65535 iterations), and where not one step fits, the transition runs unfused.
/// `RNN_WGPU_TRANSITION=fused|unfused` overrides the style's choice (not the budget), for
/// measuring both on a new adapter.
pub(crate) fn steps_per_dispatch(
    gpu: &Gpu,
    steps: usize,
    sizes: (usize, usize, usize, bool),
) -> Option<usize> {
    let fused = match std::env::var("RNN_WGPU_TRANSITION").as_deref() {
        Ok("fused") => true,
        Ok("unfused") => false,
        _ => !gpu.direct_kernels(),
    };
    if !fused || sizes.2 > MAX_LAYERS {
        return None;
    }
    if !gpu.is_cpu() {
        return Some(steps);
    }
    let each = per_step(sizes);
    (each <= LOOP_BUDGET).then(|| (LOOP_BUDGET / each).clamp(1, steps))
}

/// Records the forward steps `[t0, t0 + count)` (`backward` false) or the backward ones from
/// `t0` down `count` steps, over `params` with its `t0` and `count` set here.
pub(crate) fn record(
    plan: &mut PlanBuilder,
    backward: bool,
    bufs: Buffers,
    params: Params,
    (t0, count): (usize, usize),
) -> Result<()> {
    let kernel = kernels()[usize::from(backward)];
    let params = Params {
        t0: u(t0),
        count: u(count),
        ..params
    };
    let groups = [groups(params.batch as usize, ROWS), 1, 1];
    plan.push(kernel, &bufs, &params, groups, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_budget_fits_many_steps_of_common_sizes_and_not_one_of_h_1000() {
        // H = 128 with three layers of 128 and the shortcut: dozens of steps per dispatch.
        assert!(per_step((128, 128, 3, true)) * 20 < LOOP_BUDGET);
        // H = 1000 with the shortcut: not one step (the unfused path's test relies on it).
        assert!(per_step((1000, 3, 3, true)) > LOOP_BUDGET);
    }
}
