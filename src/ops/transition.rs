//! A deep transition's steps, every layer of a step in one dispatch (the Elman cell's
//! epilogues spliced in for its nonlinearities): `shaders/transition.wgsl` on GPUs,
//! `shaders/transition_subgroup.wgsl` (vec4 register blocks) on CPU adapters.

use std::sync::OnceLock;

use super::recurrence::{Cell, LOOP_BUDGET, assemble};
use super::transpose::padded;
use super::{CONSTANT_WINDOW, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Gpu, Kernel};

/// The most layers a fused transition takes (the `[u32; 8]` arrays of its parameters).
pub(crate) const MAX_LAYERS: usize = 8;
/// Batch rows per workgroup and invocations per workgroup (`ROWS`, `WG` in the shaders), of
/// the 64-wide kernels and of the subgroup ones.
const ROWS: usize = 4;
const WG: usize = 64;
const SUBGROUP_ROWS: usize = 8;
const SUBGROUP_WG: usize = 8;

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
/// The subgroup kernels also bind their two weight buffers as uniform windows.
const SUBGROUP_BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Constant,
    Bind::Constant,
    Bind::Params,
];

/// Which kernels run a fused transition, and how many steps each dispatch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fused {
    /// Steps per dispatch: all of them, as many as a CPU adapter's loop budget allows, or 1
    /// (the per-step driver).
    pub per: usize,
    /// The subgroup kernels (CPU adapters with 8-lane subgroups), which read their own
    /// copies of the weights (see [`Buffers`]).
    pub subgroup: bool,
    /// The subgroup kernels reading those copies through uniform windows, where each fits one.
    pub uniform: bool,
}

/// Every layer's input and output widths, for a transition of `sizes`.
fn layer_sizes((hidden, width, depth, _): (usize, usize, usize, bool)) -> Vec<(usize, usize)> {
    (0..depth)
        .map(|j| {
            let ni = if j == 0 { hidden } else { width };
            let no = if j + 1 == depth { hidden } else { width };
            (ni, no)
        })
        .collect()
}

/// Floats of the transposed copies of a transition of `sizes`: `Wᵀ`, every layer's, `Sᵀ`.
pub(crate) fn transposes_len(sizes: (usize, usize, usize, bool)) -> usize {
    let (hidden, skip) = (sizes.0, sizes.3);
    let inner: usize = layer_sizes(sizes)
        .iter()
        .map(|&(ni, no)| ni * padded(no))
        .sum();
    hidden * padded(hidden) * (1 + usize::from(skip)) + inner
}

/// Floats of the subgroup kernels' padded copies: `W`, every layer's weight and bias, `S`.
pub(crate) fn copies_len(sizes: (usize, usize, usize, bool)) -> usize {
    let (hidden, skip) = (sizes.0, sizes.3);
    let inner: usize = layer_sizes(sizes)
        .iter()
        .map(|&(ni, no)| no * padded(ni) + padded(no))
        .sum();
    hidden * padded(hidden) * (1 + usize::from(skip)) + inner
}

/// The line of a transition shader its products' copies replace.
pub(crate) const PRODUCTS_MARK: &str = "// {{products}}\n";

/// What both transition shaders start with: their parameters and layout helpers.
const SHARED: &str = include_str!("../../shaders/transition_params.wgsl");

/// Two names: a product's rows buffer and matrix buffer, or a kernel pair's entries.
type NamePair = (&'static str, &'static str);

/// Each shader's product template, named `{rows}_{matrix}` for the buffers it reads, and the
/// other (rows, matrix) pairs its entry points call, each a copy of the template.
const PRODUCTS: [(NamePair, &[NamePair]); 2] = [
    (
        ("hs", "tp"),
        &[("xu", "tp"), ("zs", "tp"), ("da", "wts"), ("dp", "wts")],
    ),
    (
        ("hs", "mf"),
        &[("xu", "mf"), ("zs", "mf"), ("da", "mb"), ("dp", "mb")],
    ),
];

/// A transition shader as the crate builds it: after the shared parameters, its product
/// template copied for every pair at [`PRODUCTS_MARK`], the Elman cell's epilogues at the
/// cell mark.
pub(crate) fn assemble_source(source: &str) -> String {
    let mut s = format!("{SHARED}\n{source}");
    for ((rows, matrix), pairs) in PRODUCTS {
        let head = format!("fn {rows}_{matrix}(");
        let Some(start) = s.find(&head) else {
            continue;
        };
        let len = s[start..].find("\n}\n").map_or(0, |e| e + 3);
        let template = s[start..start + len].to_string();
        let copies: String = pairs
            .iter()
            .map(|(r, m)| {
                template
                    .replace(&head, &format!("fn {r}_{m}("))
                    .replace(&format!("{rows}["), &format!("{r}["))
                    .replace(&format!("{matrix}["), &format!("{m}["))
                    .replace(&format!("{matrix}("), &format!("{m}("))
                    + "\n"
            })
            .collect();
        s = s.replacen(PRODUCTS_MARK, &copies, 1);
    }
    assemble(&s, None, Cell::Elman)
}

/// The forward and backward kernels of `transition.wgsl`, then of `transition_subgroup.wgsl`
/// without and with uniform windows, assembled on first use.
pub(crate) fn kernels() -> [&'static Kernel; 6] {
    static KERNELS: OnceLock<[Kernel; 6]> = OnceLock::new();
    let [f, b, sf, sb, uf, ub] = KERNELS.get_or_init(|| {
        let pair = |file: &str, (name, back): NamePair, binds| {
            let source: &'static str = Box::leak(assemble_source(file).into_boxed_str());
            let forward = Kernel {
                name,
                source,
                entry: "transition_forward",
                binds,
                constants: &[],
            };
            let backward = Kernel {
                name: back,
                entry: "transition_backward",
                ..forward
            };
            [forward, backward]
        };
        let [f, b] = pair(
            include_str!("../../shaders/transition.wgsl"),
            ("transition_forward", "transition_backward"),
            BINDS,
        );
        let [sf, sb] = pair(
            include_str!("../../shaders/transition_subgroup.wgsl"),
            (
                "transition_subgroup_forward",
                "transition_subgroup_backward",
            ),
            SUBGROUP_BINDS,
        );
        let windowed = |k: Kernel, name| Kernel {
            name,
            constants: &[("W_UNIFORM", 1.0)],
            ..k
        };
        let uf = windowed(sf, "transition_subgroup_forward_u");
        let ub = windowed(sb, "transition_subgroup_backward_u");
        [f, b, sf, sb, uf, ub]
    });
    [f, b, sf, sb, uf, ub]
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

/// The buffers every kernel binds: the model's parameters (the 64-wide kernels' biases and
/// backward weights) or, for the subgroup kernels, their padded copies (forward weights and
/// biases); the transposes (the 64-wide kernels' forward weights, the subgroup kernels'
/// backward ones); xu, h_all, the inner layers' outputs, their gradients, da.
pub(crate) type Buffers<'a> = [&'a wgpu::Buffer; 7];

/// Loop iterations one invocation spends on a step, in the larger of the two passes: for
/// each group of units it owns in each stage (one unit of 64 invocations, or 4 of 8 in the
/// subgroup kernels), the product's steps along k (vec4s in the subgroup kernels, each with an
/// inner loop of 8 shuffles, counted in case it is not unrolled) and the epilogue's rows.
fn per_step(subgroup: bool, (hidden, width, depth, skip): (usize, usize, usize, bool)) -> usize {
    let (units, rows, along, per_k) = if subgroup {
        (4 * SUBGROUP_WG, SUBGROUP_ROWS, 4, 9)
    } else {
        (WG, ROWS, 1, 1)
    };
    let groups = |n: usize| n.div_ceil(units);
    let product = |n: usize| n.div_ceil(along) * per_k;
    let shortcut = if skip { product(hidden) } else { 0 };
    let (mut fw, mut bw) = (
        groups(hidden) * (product(hidden) + rows + 1),
        groups(hidden) * (product(hidden) + shortcut + rows + 1),
    );
    for (j, (ni, no)) in layer_sizes((hidden, width, depth, skip))
        .into_iter()
        .enumerate()
    {
        let extra = if j + 1 == depth { shortcut } else { 0 };
        fw += groups(no) * (product(ni) + extra + rows + 1) + 1;
        bw += groups(ni) * (product(no) + rows + 1) + 1;
    }
    fw.max(bw) + 1
}

/// How a transition of `sizes` (H, width, depth, shortcut) runs fused over `steps`, or
/// `None` where each product runs as a dispatch of its own instead.
///
/// The 64-wide kernel with the tiled kernel style (GPUs): there the unfused form needs four or
/// more dispatches per step, and on lavapipe, forced to that style, the fused one ran
/// `small`'s training step 2.7-3.1x faster. The subgroup kernel with the subgroup style
/// (lavapipe), where H and the inner width are multiples of 4 and the adapter binds 64 KiB
/// uniform windows: training steps 1.2x (H = 128) to 2.6x (H = 64) faster than unfused there,
/// through the windows where its weight copies fit them. Unfused with the direct style without
/// subgroups, where the 64-wide kernel, whose loads lavapipe makes lane by lane, ran 4x slower
/// than the unfused products (BENCHMARKS.md, "The deep transition fused"). On CPU adapters a
/// dispatch runs as many steps as the loop budget allows (lavapipe stops an invocation after 65535 iterations), and where
/// not one step fits, the transition runs unfused. `RNN_WGPU_TRANSITION=unfused` runs it
/// unfused anywhere, for measuring both on a new adapter.
pub(crate) fn fused(gpu: &Gpu, steps: usize, sizes: (usize, usize, usize, bool)) -> Option<Fused> {
    let (hidden, width, depth, _) = sizes;
    let subgroup = gpu.subgroup_kernels();
    let fits = hidden.is_multiple_of(4) && (depth == 1 || width.is_multiple_of(4));
    let unfused = std::env::var("RNN_WGPU_TRANSITION").as_deref() == Ok("unfused");
    // The subgroup kernels declare 64 KiB uniform windows, which the adapter must bind.
    let windows = gpu.limits().max_uniform_buffer_binding_size >= CONSTANT_WINDOW;
    let runs = if subgroup {
        fits && windows
    } else {
        !gpu.direct_kernels()
    };
    if unfused || depth > MAX_LAYERS || !runs {
        return None;
    }
    let per = if gpu.is_cpu() {
        let each = per_step(subgroup, sizes);
        if each > LOOP_BUDGET {
            return None;
        }
        (LOOP_BUDGET / each).clamp(1, steps)
    } else {
        steps
    };
    let window = CONSTANT_WINDOW as usize / 4;
    let uniform = subgroup && transposes_len(sizes) <= window && copies_len(sizes) <= window;
    Some(Fused {
        per,
        subgroup,
        uniform,
    })
}

/// Records the forward steps `[t0, t0 + count)` (`backward` false) or the backward ones from
/// `t0` down `count` steps, over `params` with its `t0` and `count` set here.
pub(crate) fn record(
    plan: &mut PlanBuilder,
    (how, backward): (Fused, bool),
    bufs: Buffers,
    params: Params,
    (t0, count): (usize, usize),
) -> Result<()> {
    let form = match (how.subgroup, how.uniform) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    };
    let kernel = kernels()[form * 2 + usize::from(backward)];
    let subgroup = how.subgroup;
    let params = Params {
        t0: u(t0),
        count: u(count),
        ..params
    };
    let rows = if subgroup { SUBGROUP_ROWS } else { ROWS };
    let groups = [groups(params.batch as usize, rows), 1, 1];
    if subgroup {
        // The two weight buffers again, as the windows (from their first byte).
        let all = [&bufs[..], &bufs[..2]].concat();
        plan.push_windowed(kernel, &all, 0, &params, groups, true)?;
    } else {
        plan.push(kernel, &bufs, &params, groups, true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_budget_fits_many_steps_of_common_sizes_and_not_one_of_h_1000() {
        // H = 128 with three layers of 128 and the shortcut: several steps per dispatch.
        for subgroup in [false, true] {
            assert!(per_step(subgroup, (128, 128, 3, true)) * 4 < LOOP_BUDGET);
        }
        // H = 1000 with the shortcut, 64 wide: not one step (the unfused path's test relies on
        // it).
        assert!(per_step(false, (1000, 3, 3, true)) > LOOP_BUDGET);
        // T = 50 of H = 64, three layers of 8 and the shortcut: more than one dispatch of the
        // subgroup kernel (the test of a long transition relies on it).
        let per = LOOP_BUDGET / per_step(true, (64, 8, 3, true));
        assert!((25..50).contains(&per), "{per}");
    }
}
