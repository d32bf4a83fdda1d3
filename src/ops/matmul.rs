//! `shaders/matmul.wgsl`: `C = op(A) op(B) (+ C) (+ bias) (+ bias2)`, for every hoisted multiply.

use super::state_texture::StateTexture;
use super::{At, PlanBuilder, WINDOW_FLOATS, groups, in_window, u, window_align, window_start};
use crate::error::Result;
use crate::gpu::{Bind, Gpu, Kernel};
use std::sync::OnceLock;

pub(crate) static MATMUL: Kernel = Kernel {
    name: "matmul",
    source: concat!(
        include_str!("../../shaders/blocks.wgsl"),
        include_str!("../../shaders/matmul.wgsl")
    ),
    entry: "matmul",
    binds: &[
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Params,
    ],
    constants: &[],
};

/// A direct kernel: all share `matmul`'s bindings and parameters. `narrow` makes workgroups
/// of one row of 8 invocations instead of 8 rows (`DIRECT_ROWS`).
const fn direct(name: &'static str, entry: &'static str, narrow: bool) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/blocks.wgsl"),
            include_str!("../../shaders/matmul.wgsl")
        ),
        entry,
        binds: MATMUL.binds,
        constants: if narrow { &[("DIRECT_ROWS", 1.0)] } else { &[] },
    }
}

pub(crate) static MATMUL_DIRECT: Kernel = direct("matmul_direct", "matmul_direct", false);
pub(crate) static MATMUL_NT4: Kernel = direct("matmul_nt4", "matmul_nt4", false);
pub(crate) static MATMUL_TN4: Kernel = direct("matmul_tn4", "matmul_tn4", false);
pub(crate) static MATMUL_NN4: Kernel = direct("matmul_nn4", "matmul_nn4", false);
pub(crate) static MATMUL_DIRECT_NARROW: Kernel =
    direct("matmul_direct_narrow", "matmul_direct", true);
pub(crate) static MATMUL_NT4_NARROW: Kernel = direct("matmul_nt4_narrow", "matmul_nt4", true);
pub(crate) static MATMUL_TN4_NARROW: Kernel = direct("matmul_tn4_narrow", "matmul_tn4", true);
pub(crate) static MATMUL_NN4_NARROW: Kernel = direct("matmul_nn4_narrow", "matmul_nn4", true);

/// `matmul_nt4` and `matmul_tn4` with 8-lane subgroups sharing their loads
/// (`shaders/matmul_subgroup.wgsl`).
const fn subgroup(name: &'static str, entry: &'static str, narrow: bool) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/blocks.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/matmul_subgroup.wgsl")
        ),
        entry,
        binds: MATMUL.binds,
        constants: if narrow { &[("DIRECT_ROWS", 1.0)] } else { &[] },
    }
}

pub(crate) static MATMUL_NT4_SG: Kernel = subgroup("matmul_nt4_sg", "matmul_nt4_sg", false);
pub(crate) static MATMUL_NT4_SG_NARROW: Kernel =
    subgroup("matmul_nt4_sg_narrow", "matmul_nt4_sg", true);
/// `matmul_nt4_sg` reading an A of any alignment (`UNALIGNED_A`, [`Gemm::unaligned_a`]).
pub(crate) static MATMUL_NT4_SG_UA: Kernel = Kernel {
    name: "matmul_nt4_sg_ua",
    constants: &[("UNALIGNED_A", 1.0)],
    ..MATMUL_NT4_SG
};
pub(crate) static MATMUL_NT4_SG_UA_NARROW: Kernel = Kernel {
    name: "matmul_nt4_sg_ua_narrow",
    constants: &[("DIRECT_ROWS", 1.0), ("UNALIGNED_A", 1.0)],
    ..MATMUL_NT4_SG
};
pub(crate) static MATMUL_TN4_SG: Kernel = subgroup("matmul_tn4_sg", "matmul_tn4_sg", false);
pub(crate) static MATMUL_TN4_SG_NARROW: Kernel =
    subgroup("matmul_tn4_sg_narrow", "matmul_tn4_sg", true);

/// The broadcast kernels (`shaders/matmul_broadcast.wgsl`): `A Bᵀ` and `Aᵀ B` with A and B
/// read through 64 KiB uniform windows and A's values shared by shuffles; 8 or 4 columns per
/// lane.
const fn broadcast(
    name: &'static str,
    entry: &'static str,
    constants: &'static [(&'static str, f64)],
) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/blocks.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/matmul_subgroup.wgsl"),
            include_str!("../../shaders/matmul_broadcast.wgsl")
        ),
        entry,
        binds: &[
            Bind::Constant,
            Bind::Constant,
            Bind::Read,
            Bind::ReadWrite,
            Bind::Params,
        ],
        constants,
    }
}

/// `matmul_nt4_bc`'s bindings: the broadcast kernels', then texture mirrors of A's buffer
/// (read with `A_TEXTURE`) and of B's (with `B_TEXTURE`).
const NT_BC_BINDS: &[Bind] = &[
    Bind::Constant,
    Bind::Constant,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Params,
    Bind::TextureRead,
    Bind::TextureRead,
];

/// `matmul_nt4_bc` with 8 or 4 columns a lane, A read through a window or (`_tex`) from a
/// texture mirror of its buffer.
const fn broadcast_nt(name: &'static str, constants: &'static [(&'static str, f64)]) -> Kernel {
    Kernel {
        binds: NT_BC_BINDS,
        ..broadcast(name, "matmul_nt4_bc", constants)
    }
}

pub(crate) static MATMUL_NT4_BC: Kernel = broadcast_nt("matmul_nt4_bc", &[]);
pub(crate) static MATMUL_NT4_BC4: Kernel = broadcast_nt("matmul_nt4_bc4", &[("BC_COLS", 4.0)]);
pub(crate) static MATMUL_NT4_BC_TEX: Kernel =
    broadcast_nt("matmul_nt4_bc_tex", &[("A_TEXTURE", 1.0)]);
pub(crate) static MATMUL_NT4_BC4_TEX: Kernel = broadcast_nt(
    "matmul_nt4_bc4_tex",
    &[("BC_COLS", 4.0), ("A_TEXTURE", 1.0)],
);
/// `matmul_nt4_bc` with A and B (`_tt`) from texture mirrors of their buffers.
pub(crate) static MATMUL_NT4_BC_TT: Kernel = broadcast_nt(
    "matmul_nt4_bc_tt",
    &[("A_TEXTURE", 1.0), ("B_TEXTURE", 1.0)],
);
pub(crate) static MATMUL_NT4_BC4_TT: Kernel = broadcast_nt(
    "matmul_nt4_bc4_tt",
    &[("BC_COLS", 4.0), ("A_TEXTURE", 1.0), ("B_TEXTURE", 1.0)],
);
pub(crate) static MATMUL_TN_BC: Kernel = broadcast("matmul_tn_bc", "matmul_tn_bc", &[]);
pub(crate) static MATMUL_TN_BC4: Kernel =
    broadcast("matmul_tn_bc4", "matmul_tn_bc", &[("BC_COLS", 4.0)]);

/// The products with A and B read from texture mirrors of their buffers
/// (`shaders/matmul_texture.wgsl`): `Aᵀ B` (`matmul_tn_tex`) and `A B` (`matmul_nn_tex`), B's
/// rows whole vec4s, A's rows aligned or (`_ua`) not.
const fn texture(
    name: &'static str,
    entry: &'static str,
    constants: &'static [(&'static str, f64)],
) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/blocks.wgsl"),
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/matmul_texture.wgsl")
        ),
        entry,
        binds: &[
            Bind::Read,
            Bind::Read,
            Bind::Read,
            Bind::ReadWrite,
            Bind::Params,
            Bind::TextureRead,
            Bind::TextureRead,
        ],
        constants,
    }
}

pub(crate) static MATMUL_TN_TEX: Kernel = texture("matmul_tn_tex", "matmul_tn_tex", &[]);
pub(crate) static MATMUL_TN_TEX_UA: Kernel =
    texture("matmul_tn_tex_ua", "matmul_tn_tex", &[("ALIGNED_A", 0.0)]);
pub(crate) static MATMUL_NN_TEX: Kernel = texture("matmul_nn_tex", "matmul_nn_tex", &[]);
pub(crate) static MATMUL_NN_TEX_UA: Kernel =
    texture("matmul_nn_tex_ua", "matmul_nn_tex", &[("ALIGNED_A", 0.0)]);

/// Window pairs `matmul_tn_bcw` reads per dispatch (`shaders/matmul_tn_windows.wgsl`).
const TN_WINDOWS: usize = 4;

/// The source of `matmul_tn_bcw`: the broadcast kernels' with their window-pair functions
/// copied for windows 1 .. [`TN_WINDOWS`] - 1 (`au` to `au_1`, `tn_part` to `tn_part_1`, ...),
/// then the entry point's file.
fn tn_windows_source() -> String {
    const BEGIN: &str = "// ---- WINDOW PAIR:";
    const END: &str = "// ---- END OF WINDOW PAIR ----";
    let base = MATMUL_TN_BC.source;
    let (start, end) = match (base.find(BEGIN), base.find(END)) {
        (Some(s), Some(e)) => (s, e),
        // The markers are in the crate's own file; without them the source lacks the entry
        // point, and the kernel validation test (`ops::tests`) fails.
        _ => return base.to_string(),
    };
    let pair = &base[start..end];
    let mut s = base.to_string();
    for w in 1..TN_WINDOWS {
        // bu_at4 before bu_at, which its name contains.
        s += &["bu_at4(", "bu_at(", "bu[", "au[", "tn_step(", "tn_part("]
            .iter()
            .fold(pair.to_string(), |t, from| {
                let (name, open) = from.split_at(from.len() - 1);
                t.replace(from, &format!("{name}_{w}{open}"))
            });
    }
    s + include_str!("../../shaders/matmul_tn_windows.wgsl")
}

/// `matmul_tn_bc` (`wide`: 8 columns a lane, else 4) over [`TN_WINDOWS`] window pairs per
/// dispatch, assembled on first use.
pub(crate) fn tn_bcw(wide: bool) -> &'static Kernel {
    static KERNELS: OnceLock<[Kernel; 2]> = OnceLock::new();
    let [w8, w4] = KERNELS.get_or_init(|| {
        let source: &'static str = Box::leak(tn_windows_source().into_boxed_str());
        let mut binds = vec![Bind::Constant, Bind::Constant, Bind::Read, Bind::ReadWrite];
        binds.extend([Bind::Constant; 2 * (TN_WINDOWS - 1)]);
        binds.push(Bind::Params);
        let binds: &'static [Bind] = Box::leak(binds.into_boxed_slice());
        let w8 = Kernel {
            name: "matmul_tn_bcw",
            source,
            entry: "matmul_tn_bcw",
            binds,
            constants: &[],
        };
        let w4 = Kernel {
            name: "matmul_tn_bcw4",
            constants: &[("BC_COLS", 4.0)],
            ..w8
        };
        [w8, w4]
    });
    if wide { w8 } else { w4 }
}

/// Output tile edge of one `matmul` workgroup (`TILE` in the shader).
const TILE: usize = 64;
/// Output block of one direct workgroup, rows x columns, and of a narrow one (one SIMD group
/// of 8 invocations on lavapipe).
const DIRECT_TILE: (usize, usize) = (64, 64);
const NARROW_TILE: (usize, usize) = (8, 64);
/// The narrow block of the subgroup kernel: one subgroup's 16 x 32.
const NARROW_SG_TILE: (usize, usize) = (16, 32);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    bias2_off: u32,
    k_split: u32,
    ld_b: u32,
    ld_a: u32,
}

/// One multiply `C[m, n] = op(A)[m, k] op(B)[k, n]`, with its options.
#[derive(Clone, Copy)]
pub(crate) struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: At<'a>,
    /// A is stored `[k, m]`.
    pub trans_a: bool,
    pub b: At<'a>,
    /// B is stored `[n, k]`.
    pub trans_b: bool,
    pub c: At<'a>,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// Up to two `[n]` vectors added to every row; both must live in one buffer.
    pub bias: Option<At<'a>>,
    pub bias2: Option<At<'a>>,
    /// Also write the sums of op(A)'s rows `[m]` at this offset of C's buffer, and at the
    /// second one when given: only for `A Bᵀ` on CPU adapters ([`row_sums_fit`]) and `Aᵀ B`
    /// there ([`tn_sums_fit`]), without biases.
    pub row_sums: Option<(usize, Option<usize>)>,
    /// B's row stride when B is a view into wider rows: only for `A Bᵀ` on CPU adapters, a
    /// multiple of 4 ([`ld_b_fits`]).
    pub ld_b: Option<usize>,
    /// A's row stride where A is read from its mirror ([`texture_fits`]): its rows of `k`
    /// (`A B`) or `m` (`Aᵀ B`) values padded to this many.
    pub ld_a: Option<usize>,
    /// A's rows start anywhere (K or A's offset not a multiple of 4) and B is padded along k:
    /// set by [`record_padded`] for the subgroup `A Bᵀ` kernel only.
    pub unaligned_a: bool,
    /// A texture mirror of A's buffer (the same values in the same order, from its start) the
    /// subgroup `A Bᵀ`, `Aᵀ B` and `A B` kernels may read A from instead of through windows.
    pub a_mirror: Option<&'a StateTexture>,
    /// A texture mirror of B's buffer, for `Aᵀ B` and `A B` ([`texture_fits`]) and `A Bᵀ`
    /// ([`nt_b_mirror`]) with both mirrors.
    pub b_mirror: Option<&'a StateTexture>,
}

impl<'a> Gemm<'a> {
    /// `C = A B` with no options.
    pub fn new(m: usize, n: usize, k: usize, a: At<'a>, b: At<'a>, c: At<'a>) -> Self {
        Self {
            m,
            n,
            k,
            a,
            trans_a: false,
            b,
            trans_b: false,
            c,
            accumulate: false,
            bias: None,
            bias2: None,
            row_sums: None,
            ld_b: None,
            ld_a: None,
            unaligned_a: false,
            a_mirror: None,
            b_mirror: None,
        }
    }
}

/// Whether `A Bᵀ` over `k` values can read B from rows `ld` apart, starting at element `off`.
pub(crate) fn ld_b_fits(gpu: &crate::gpu::Gpu, k: usize, ld: usize, off: usize) -> bool {
    gpu.direct_kernels() && k.is_multiple_of(4) && ld.is_multiple_of(4) && off.is_multiple_of(4)
}

/// Whether `A Bᵀ` over `k` values can also write the sums of A's rows on `gpu`: with the
/// direct kernels, within lavapipe's loop limit (the sums take a second pass over k).
pub(crate) fn row_sums_fit(gpu: &crate::gpu::Gpu, k: usize) -> bool {
    gpu.direct_kernels() && k.is_multiple_of(4) && k / 2 <= MAX_CPU_ROWS
}

/// Whether `Aᵀ B` can also write the sums of `Aᵀ`'s rows on `gpu`: on every CPU adapter, in
/// place with the subgroup kernels where they run ([`tn_in_place`]), otherwise
/// through padded transposes into `A Bᵀ` ([`record_padded`]; [`matmul`] cuts a long k into
/// parts within the loop limit first).
pub(crate) fn tn_sums_fit(gpu: &crate::gpu::Gpu) -> bool {
    gpu.direct_kernels()
}

/// Whether `Aᵀ B` of `m` x `n` from element offsets `a_off`, `b_off` fits the subgroup kernel
/// (which also writes row sums): all multiples of 4.
fn tn_sg_fits(m: usize, n: usize, a_off: usize, b_off: usize) -> bool {
    [m, n, a_off, b_off].iter().all(|v| v.is_multiple_of(4))
}

/// The rows of k per dispatch `matmul_tn_bc` (which takes A and B of any layout and also
/// writes row sums) takes for `g` on `gpu` (a multiple of 8, the kernel's step, and at least
/// 64: M and N up to about 250), or `None` where it cannot run: a bias asked for, or A's or
/// B's buffer short of a whole window past some part.
fn tn_window_rows(gpu: &Gpu, g: &Gemm) -> Option<usize> {
    // Whatever a part's alignment, its rows fit the window after the slack before them.
    let rows = (WINDOW_FLOATS.saturating_sub(window_align(gpu)) / g.m.max(g.n).max(1)) / 8 * 8;
    let last = g.k.saturating_sub(1) / rows.max(1) * rows;
    (rows >= 64
        && g.bias.is_none()
        && g.bias2.is_none()
        && window_start(gpu, g.a.buf, g.a.off + last * g.m).is_some()
        && window_start(gpu, g.b.buf, g.b.off + last * g.n).is_some())
    .then_some(rows)
}

/// Whether `Aᵀ B` runs in place on `gpu`, straight from `[K, n]` operands, and so can also
/// write the sums of `Aᵀ`'s rows ([`Gemm::row_sums`]): with subgroups, as `matmul_tn_bc`
/// where B's buffer holds its windows ([`tn_window_rows`]), as `matmul_tn4_sg` where every
/// size is a multiple of 4.
pub(crate) fn tn_in_place(gpu: &crate::gpu::Gpu) -> bool {
    gpu.subgroup_kernels()
}

/// Whether the direct kernels may write C (and read the biases) as vec4s: `VEC_STORE`.
fn vec_store(g: &Gemm) -> bool {
    let four = |v: usize| v.is_multiple_of(4);
    four(g.n)
        && four(g.c.off)
        && g.bias.is_none_or(|b| four(b.off))
        && g.bias2.is_none_or(|b| four(b.off))
}

/// The direct kernel for `g`'s layout: one that reads vec4s when the dimensions it reads
/// along and both offsets are multiples of 4, else the scalar one.
///
/// Each workgroup runs on one CPU thread, so a product that would make too few 64 x 64 blocks
/// to keep every thread busy several times over (the weight gradients of small shapes) takes
/// narrow 8 x 64 workgroups instead: on lavapipe that took `small`'s weight gradients from
/// 2.1 to 1.5 ms. Over long reductions (K > 2048: `long`'s T·B = 8000 rows) the tall blocks
/// stay, since their 8 rows of invocations share every value of B they read (22 ms against
/// 31 ms narrow).
///
/// With `subgroups`, `A Bᵀ` takes the kernel whose subgroups share their loads.
fn direct_kernel(gpu: &Gpu, g: &Gemm) -> (&'static Kernel, (usize, usize)) {
    let subgroups = gpu.subgroup_kernels();
    let four = |v: usize| v.is_multiple_of(4);
    let offsets = four(g.a.off) && four(g.b.off);
    let threads = gpu.cpu_threads();
    let narrow = g.m.div_ceil(64) * g.n.div_ceil(64) < 4 * threads && g.k <= 2048;
    let pick = |wide: &'static Kernel, thin: &'static Kernel| {
        if narrow {
            (thin, NARROW_TILE)
        } else {
            (wide, DIRECT_TILE)
        }
    };
    // The subgroup kernels take narrow 16 x 32 workgroups also where those cover less of the
    // edge than 64 x 64 ones (an N or M of 32: long's dU, dV and head, small's head).
    let cells = |(r, c): (usize, usize)| g.m.next_multiple_of(r) * g.n.next_multiple_of(c);
    let pick_sg = |wide: &'static Kernel, thin: &'static Kernel| {
        if narrow || cells(NARROW_SG_TILE) < cells(DIRECT_TILE) {
            (thin, NARROW_SG_TILE)
        } else {
            (wide, DIRECT_TILE)
        }
    };
    match (g.trans_a, g.trans_b) {
        (false, true) if subgroups && g.unaligned_a => {
            pick_sg(&MATMUL_NT4_SG_UA, &MATMUL_NT4_SG_UA_NARROW)
        }
        (false, true) if subgroups && offsets && four(g.k) => {
            pick_sg(&MATMUL_NT4_SG, &MATMUL_NT4_SG_NARROW)
        }
        (true, false) if subgroups && tn_window_rows(gpu, g).is_some() => {
            if g.n.next_multiple_of(64) <= g.n.next_multiple_of(32) {
                (&MATMUL_TN_BC, (8, 64))
            } else {
                (&MATMUL_TN_BC4, (8, 32))
            }
        }
        (true, false) if subgroups && tn_sg_fits(g.m, g.n, g.a.off, g.b.off) => {
            pick_sg(&MATMUL_TN4_SG, &MATMUL_TN4_SG_NARROW)
        }
        (false, true) if offsets && four(g.k) => pick(&MATMUL_NT4, &MATMUL_NT4_NARROW),
        (true, false) if offsets && four(g.m) && four(g.n) => pick(&MATMUL_TN4, &MATMUL_TN4_NARROW),
        (false, false) if offsets && four(g.k) && four(g.n) => {
            pick(&MATMUL_NN4, &MATMUL_NN4_NARROW)
        }
        _ => pick(&MATMUL_DIRECT, &MATMUL_DIRECT_NARROW),
    }
}

/// Records `g` into `plan`.
///
/// On CPU adapters a product of `Aᵀ B` over more rows than [`MAX_CPU_ROWS`] (weight gradients
/// over `T·B` rows) is cut into several accumulating ones, since lavapipe's shader compiler
/// silently stops an invocation after 65535 loop iterations.
pub(crate) fn matmul(plan: &mut PlanBuilder, g: Gemm) -> Result<()> {
    let strided = g
        .ld_b
        .is_some_and(|ld| !ld_b_fits(plan.gpu(), g.k, ld, g.b.off));
    let not_nt = g.trans_a || !g.trans_b;
    let tn_sums = g.trans_a && !g.trans_b && tn_sums_fit(plan.gpu());
    if strided || (not_nt && (g.ld_b.is_some() || (g.row_sums.is_some() && !tn_sums))) {
        return Err(crate::error::GpuError::Kernel {
            kernel: "matmul_nt4".into(),
            message: "a row stride asked of a product that cannot take one (a bug in rnn-wgpu)"
                .into(),
        }
        .into());
    }
    if g.ld_a.is_some() && texture_fits(plan.gpu(), &g).is_none() {
        return Err(crate::error::GpuError::Kernel {
            kernel: "matmul_tn_tex".into(),
            message: "A's row stride asked of a product not read from mirrors (a bug in rnn-wgpu)"
                .into(),
        }
        .into());
    }
    if g.row_sums.is_some() && !tn_sums && !row_sums_fit(plan.gpu(), g.k) {
        return Err(crate::error::GpuError::Kernel {
            kernel: "matmul_nt4".into(),
            message: "row sums asked of a product that cannot fuse them (a bug in rnn-wgpu)".into(),
        }
        .into());
    }
    if plan.gpu().is_cpu() && loop_len(plan.gpu(), &g) > MAX_CPU_ROWS {
        if !g.trans_a || g.trans_b {
            return Err(crate::error::InputError::Invalid {
                arg: "model".into(),
                reason: format!(
                    "a product over {} values is longer than this CPU adapter's shaders can \
                     loop ({MAX_CPU_ROWS}); use a smaller model",
                    g.k
                ),
            }
            .into());
        }
        let mut k0 = 0;
        while k0 < g.k {
            let k = MAX_CPU_ROWS.min(g.k - k0);
            let part = Gemm {
                k,
                a: At {
                    buf: g.a.buf,
                    off: g.a.off + k0 * g.ld_a.unwrap_or(g.m),
                },
                b: At {
                    buf: g.b.buf,
                    off: g.b.off + k0 * g.n,
                },
                accumulate: g.accumulate || k0 > 0,
                bias: if k0 == 0 { g.bias } else { None },
                bias2: if k0 == 0 { g.bias2 } else { None },
                ..g
            };
            record(plan, part)?;
            k0 += k;
        }
        return Ok(());
    }
    record(plan, g)
}

/// Loop iterations one invocation of `g`'s kernel runs: a quarter of K for the direct kernels
/// that read 4 values of k at a time.
fn loop_len(gpu: &crate::gpu::Gpu, g: &Gemm) -> usize {
    if gpu.direct_kernels() {
        let (kernel, _) = direct_kernel(gpu, g);
        let is = |ks: &[&Kernel]| ks.iter().any(|k| std::ptr::eq(*k, kernel));
        if is(&[&MATMUL_TN4_SG, &MATMUL_TN4_SG_NARROW]) {
            return g.k.div_ceil(2);
        }
        if texture_fits(gpu, g).is_some() {
            return g.k.div_ceil(if g.trans_a { 8 } else { 4 });
        }
        if is(&[&MATMUL_TN_BC, &MATMUL_TN_BC4]) {
            return g.k.div_ceil(8);
        }
        if is(&[
            &MATMUL_NT4,
            &MATMUL_NT4_NARROW,
            &MATMUL_NT4_SG,
            &MATMUL_NT4_SG_NARROW,
            &MATMUL_NT4_SG_UA,
            &MATMUL_NT4_SG_UA_NARROW,
            &MATMUL_NN4,
            &MATMUL_NN4_NARROW,
        ]) {
            return g.k.div_ceil(4);
        }
    }
    g.k
}

/// Into how many parts the tiled kernel splits `g`'s reduction, when it splits it: where the
/// output has too few `tile`×`tile` tiles to fill a GPU (under 256 workgroups) and the
/// reduction is long (the weight gradients over all `T·B` rows), enough parts of at least 128
/// values of k to make about 256 workgroups. Before this `medium`'s weight gradients took 10
/// ms on an H200, 16 workgroups each looping over 6400 rows.
fn split_k(g: &Gemm, tile: usize) -> Option<usize> {
    let tiles = g.m.div_ceil(tile) * g.n.div_ceil(tile);
    let parts = 256usize.div_ceil(tiles).min(g.k / 128).min(64);
    (parts >= 2 && g.bias.is_none() && g.bias2.is_none()).then_some(parts)
}

/// Records `g` with the tiled `kernel` as `parts` partial products into a scratch buffer, and
/// their sum into C.
fn record_split(
    plan: &mut PlanBuilder,
    g: Gemm,
    (kernel, tile): (&'static Kernel, usize),
    parts: usize,
) -> Result<()> {
    let (params, _) = params_of(&g);
    let len = g.m * g.n;
    // Held by the plan's bind groups, like every scratch buffer.
    let scratch = plan
        .gpu()
        .storage_buffer("split-K partial products", parts * len)?;
    // Whole tiles of k per part, so only the last part has a ragged end.
    let chunk = g.k.div_ceil(parts).next_multiple_of(16);
    let parts = g.k.div_ceil(chunk);
    let params = Params {
        c_off: 0,
        flags: params.flags & !4, // the parts never accumulate; sum_parts does
        k_split: u(chunk),
        ..params
    };
    let grid = [groups(g.n, tile), groups(g.m, tile), u(parts)];
    plan.push(
        kernel,
        &[g.a.buf, g.b.buf, g.a.buf, &scratch],
        &params,
        grid,
        false,
    )?;
    super::reduce::sum_parts(plan, len, parts, &scratch, g.c, g.accumulate)
}

/// Longest reduction one direct-kernel invocation runs on a CPU adapter, well under the 65535
/// loop iterations after which lavapipe stops it.
pub(crate) const MAX_CPU_ROWS: usize = 32768;

fn record(plan: &mut PlanBuilder, g: Gemm) -> Result<()> {
    if let Some(mirrors) = texture_fits(plan.gpu(), &g) {
        return record_texture(plan, &g, mirrors);
    }
    if broadcast_fits(plan.gpu(), &g) {
        return record_broadcast(plan, g);
    }
    if plan.gpu().direct_kernels() {
        let (kernel, tile) = direct_kernel(plan.gpu(), &g);
        let is = |ks: &[&Kernel]| ks.iter().any(|k| std::ptr::eq(*k, kernel));
        let scalar = is(&[&MATMUL_DIRECT, &MATMUL_DIRECT_NARROW]);
        // Row sums come only from these; any other product asked for them is padded into one.
        let sums = is(&[
            &MATMUL_NT4,
            &MATMUL_NT4_NARROW,
            &MATMUL_NT4_SG,
            &MATMUL_NT4_SG_NARROW,
            &MATMUL_TN4_SG,
            &MATMUL_TN4_SG_NARROW,
            &MATMUL_TN_BC,
            &MATMUL_TN_BC4,
        ]);
        if (scalar && g.m.min(g.n) >= 4) || (g.row_sums.is_some() && !sums) {
            return record_padded(plan, g);
        }
        if is(&[&MATMUL_TN_BC, &MATMUL_TN_BC4]) {
            return record_tn_windowed(plan, &g, kernel, tile);
        }
        return push(plan, &g, kernel, tile);
    }
    // (A 128×128-tile variant, 8×8 per invocation with vec4 workgroup loads, ran the hoisted
    // products of `large` and DeepBench 1.4–1.6× slower on an H200 than 64×64, and was dropped.)
    match split_k(&g, TILE) {
        Some(parts) => record_split(plan, g, (&MATMUL, TILE), parts),
        None => push(plan, &g, &MATMUL, (TILE, TILE)),
    }
}

/// The mirrors of A and B `g` runs from as `matmul_tn_tex` (`Aᵀ B`, row sums allowed) or
/// `matmul_nn_tex` (`A B`, no options) on `gpu`: under the subgroup kernel style with both
/// mirrors given, B's rows whole vec4s, no bias.
pub(crate) fn texture_fits<'a>(
    gpu: &Gpu,
    g: &Gemm<'a>,
) -> Option<(&'a StateTexture, &'a StateTexture)> {
    let four = |v: usize| v.is_multiple_of(4);
    let form = (g.trans_a || g.row_sums.is_none()) && !g.trans_b;
    let fits = gpu.subgroup_kernels()
        && form
        && four(g.n)
        && four(g.b.off)
        && g.bias.is_none()
        && g.bias2.is_none()
        && g.ld_b.is_none();
    g.a_mirror.zip(g.b_mirror).filter(|_| fits)
}

/// Records `g` as one `matmul_tn_tex` or `matmul_nn_tex` dispatch reading A and B from
/// `mirrors`: on lavapipe the character model's dW and dV with their bias gradients took
/// 5.0 ms where `matmul_tn_bcw` through windows took 8.3, and dO V 2.7-2.9 ms where
/// `matmul_nt4_bc` (with V transposed) took 3.3.
fn record_texture(
    plan: &mut PlanBuilder,
    g: &Gemm,
    (a_mirror, b_mirror): (&StateTexture, &StateTexture),
) -> Result<()> {
    let four = |v: usize| v.is_multiple_of(4);
    // Where A's rows start: at k m for Aᵀ B, at m k for A B.
    let stride = g.ld_a.unwrap_or(if g.trans_a { g.m } else { g.k });
    let aligned = four(stride) && four(g.a.off);
    let kernel = match (g.trans_a, aligned) {
        (true, true) => &MATMUL_TN_TEX,
        (true, false) => &MATMUL_TN_TEX_UA,
        (false, true) => &MATMUL_NN_TEX,
        (false, false) => &MATMUL_NN_TEX_UA,
    };
    let (params, bias_buf) = params_of(g);
    let grid = [groups(g.n, 64), groups(g.m, 16), 1];
    plan.push_textured(
        kernel,
        &[g.a.buf, g.b.buf, bias_buf, g.c.buf],
        &[a_mirror.view(), b_mirror.view()],
        &[],
        &params,
        grid,
        false,
    )?;
    Ok(())
}

/// Whether `g` runs as `matmul_nt4_bc` on `gpu`: `op(A) = A` stored `[M, K]`, B with its rows
/// padded to whole vec4s within one uniform window, A's buffer holding the windows of its
/// parts ([`nt_window_rows`]), under the subgroup kernel style.
fn broadcast_fits(gpu: &Gpu, g: &Gemm) -> bool {
    // (A B with a row stride, the transposed operands of the weight gradients over T·B, is
    // never small enough to be worth a window.)
    gpu.subgroup_kernels()
        && !g.trans_a
        && g.row_sums.is_none()
        && g.ld_b.is_none()
        && g.n * super::transpose::padded(g.k) <= WINDOW_FLOATS
        && nt_window_rows(gpu, g).is_some()
}

/// The rows of A per dispatch `matmul_nt4_bc` takes for `g` on `gpu` (a multiple of 16, its
/// tallest block), or `None` where A's buffer is short of a whole window past some part or K
/// is past about 1000.
fn nt_window_rows(gpu: &Gpu, g: &Gemm) -> Option<usize> {
    // Whatever a part's alignment, its rows fit the window after the slack before them (K
    // values each, and a row's last vec4 read past its end).
    let rows = (WINDOW_FLOATS.saturating_sub(window_align(gpu) + 4) / g.k.max(1)) / 16 * 16;
    let last = g.m.saturating_sub(1) / rows.max(1) * rows;
    (rows >= 16 && window_start(gpu, g.a.buf, g.a.off + last * g.k).is_some()).then_some(rows)
}

/// The mirror of B `g` reads as `matmul_nt4_bc_tt` on `gpu` (A and B both from mirrors): a
/// broadcast product `A Bᵀ` with both mirrors given, K and both offsets whole vec4s. The caller
/// copies B's buffer into it first.
pub(crate) fn nt_b_mirror<'a>(gpu: &Gpu, g: &Gemm<'a>) -> Option<&'a StateTexture> {
    let four = |v: usize| v.is_multiple_of(4);
    let fits = texture_fits(gpu, g).is_none()
        && broadcast_fits(gpu, g)
        && g.a_mirror.is_some()
        && g.trans_b
        && four(g.k)
        && four(g.a.off)
        && four(g.b.off)
        && !g.unaligned_a;
    g.b_mirror.filter(|_| fits)
}

/// Records `g` as `matmul_nt4_bc`: A and B from their mirrors where [`nt_b_mirror`] says so;
/// else B read in place where a whole window from an aligned offset at or before it holds it,
/// otherwise copied (padded along k) into a window of its own.
fn record_broadcast(plan: &mut PlanBuilder, g: Gemm) -> Result<()> {
    let four = |v: usize| v.is_multiple_of(4);
    let cols8 = g.n.next_multiple_of(64) <= g.n.next_multiple_of(32);
    let tile = if cols8 { (8, 64) } else { (16, 32) };
    if let Some((am, bm)) = g.a_mirror.zip(nt_b_mirror(plan.gpu(), &g)) {
        // One dispatch for all rows; the window slots unread.
        let kernel = if cols8 {
            &MATMUL_NT4_BC_TT
        } else {
            &MATMUL_NT4_BC4_TT
        };
        let (params, bias_buf) = params_of(&g);
        let grid = [groups(g.n, tile.1), groups(g.m, tile.0), 1];
        let unread = plan.gpu().placeholder_window().clone();
        plan.push_textured(
            kernel,
            &[&unread, &unread, bias_buf, g.c.buf],
            &[am.view(), bm.view()],
            &[0, 0],
            &params,
            grid,
            false,
        )?;
        return Ok(());
    }
    let in_place = window_start(plan.gpu(), g.b.buf, g.b.off).filter(|&start| {
        g.trans_b && four(g.k) && four(g.b.off) && g.b.off - start + g.n * g.k <= WINDOW_FLOATS
    });
    let copy;
    let (b, window) = if let Some(start) = in_place {
        (g.b, start)
    } else {
        let kp = super::transpose::padded(g.k);
        copy = plan
            .gpu()
            .storage_buffer("B padded along k, a window", (g.n * kp).max(WINDOW_FLOATS))?;
        if g.trans_b {
            use super::layout::{Blocks, repack};
            let src = Blocks {
                at: g.b,
                rows: g.n,
                cols: g.k,
            };
            let dst = Blocks {
                at: at0(&copy),
                rows: g.n,
                cols: kp,
            };
            repack(plan, 1, src, dst)?;
        } else {
            super::transpose::transpose(plan, g.k, g.n, g.b, at0(&copy))?;
        }
        (at0(&copy), 0)
    };
    let kernel = if cols8 {
        &MATMUL_NT4_BC
    } else {
        &MATMUL_NT4_BC4
    };
    if let Some(mirror) = g
        .a_mirror
        .filter(|_| four(g.k) && four(g.a.off) && !g.unaligned_a)
    {
        // A from its mirror: one dispatch for all rows. (Its window slot binds B's again.)
        let kernel = if cols8 {
            &MATMUL_NT4_BC_TEX
        } else {
            &MATMUL_NT4_BC4_TEX
        };
        let g = Gemm {
            b: At {
                buf: b.buf,
                off: b.off - window,
            },
            trans_b: true,
            ..g
        };
        let (params, bias_buf) = params_of(&g);
        let grid = [groups(g.n, tile.1), groups(g.m, tile.0), 1];
        let w = (window * 4) as u64;
        let unread = plan.gpu().placeholder_texture().clone();
        plan.push_textured(
            kernel,
            &[b.buf, b.buf, bias_buf, g.c.buf],
            &[mirror.view(), &unread],
            &[w, w],
            &params,
            grid,
            false,
        )?;
        return Ok(());
    }
    let Some(part) = nt_window_rows(plan.gpu(), &g) else {
        return Err(misrouted(kernel));
    };
    let mut r0 = 0;
    while r0 < g.m {
        let m = part.min(g.m - r0);
        let p = Gemm {
            m,
            a: g.a.plus(r0 * g.k),
            b: At {
                buf: b.buf,
                off: b.off - window,
            },
            trans_b: true,
            c: g.c.plus(r0 * g.n),
            ..g
        };
        push_in_windows(plan, kernel, p, Some((window * 4) as u64), tile)?;
        r0 += m;
    }
    Ok(())
}

/// Records the part `g` of a product with a broadcast `kernel` whose workgroups cover
/// `rows` x `cols` of C: A through the window that holds it (every part's ends before the last
/// one's, which the caller checked), B through its own, from byte `b_window` when its offset
/// already counts from a window's start, else the one that holds it.
fn push_in_windows(
    plan: &mut PlanBuilder,
    kernel: &'static Kernel,
    g: Gemm,
    b_window: Option<u64>,
    (rows, cols): (usize, usize),
) -> Result<()> {
    let gpu = plan.gpu();
    let (a, a_window) = in_window(gpu, g.a).ok_or_else(|| misrouted(kernel))?;
    let (b, b_window) = match b_window {
        Some(w) => (g.b, w),
        None => in_window(gpu, g.b).ok_or_else(|| misrouted(kernel))?,
    };
    let g = Gemm { a, b, ..g };
    let (params, bias_buf) = params_of(&g);
    let grid = [groups(g.n, cols), groups(g.m, rows), 1];
    // Texture slots this variant does not read.
    let unread = plan.gpu().placeholder_texture().clone();
    let slots = kernel
        .binds
        .iter()
        .filter(|&&b| b == Bind::TextureRead)
        .count();
    let textures = vec![&unread; slots];
    plan.push_textured(
        kernel,
        &[g.a.buf, g.b.buf, bias_buf, g.c.buf],
        &textures,
        &[a_window, b_window],
        &params,
        grid,
        false,
    )?;
    Ok(())
}

/// The error for a broadcast kernel chosen for a product whose windows it cannot have.
fn misrouted(kernel: &Kernel) -> crate::error::Error {
    crate::error::GpuError::Kernel {
        kernel: kernel.name.into(),
        message: "chosen for a product it cannot run (a bug in rnn-wgpu)".into(),
    }
    .into()
}

/// Records `g` (`Aᵀ B` for `matmul_tn_bc`, `tile` of C per workgroup) as one dispatch per
/// part of k whose rows of A and of B each fit one uniform window, each adding into C after
/// the first: lavapipe reads a window as branchless gathers where a storage load is a loop
/// over the lanes (the character model's dV and dW together 24 -> 12.4 ms, against
/// transposes and matmul_nt4_sg).
fn record_tn_windowed(
    plan: &mut PlanBuilder,
    g: &Gemm,
    kernel: &'static Kernel,
    tile: (usize, usize),
) -> Result<()> {
    let Some(rows) = tn_window_rows(plan.gpu(), g) else {
        return Err(misrouted(kernel));
    };
    // Several parts to a dispatch where each part's windows sit at the same offsets (rows a
    // multiple of the windows' alignment), so one p.a_off and one p.b_off serve them all, and
    // the adapter binds that many uniform buffers (lavapipe 15; WebGPU's baseline 12).
    let gpu = plan.gpu();
    let group = if g.k > rows
        && rows.is_multiple_of(window_align(gpu))
        && gpu.limits().max_uniform_buffers_per_shader_stage as usize >= 2 * TN_WINDOWS
    {
        TN_WINDOWS
    } else {
        1
    };
    let mut k0 = 0;
    while k0 < g.k {
        let k = (group * rows).min(g.k - k0);
        let part = Gemm {
            k,
            a: g.a.plus(k0 * g.m),
            b: g.b.plus(k0 * g.n),
            accumulate: g.accumulate || k0 > 0,
            ..*g
        };
        if group == 1 {
            push_in_windows(plan, kernel, part, None, tile)?;
        } else {
            push_tn_windows(plan, part, rows, std::ptr::eq(kernel, &MATMUL_TN_BC), tile)?;
        }
        k0 += k;
    }
    Ok(())
}

/// Records `g` as one `matmul_tn_bcw` dispatch: its k in parts of `rows`, part w through
/// window pair w (a part past K binds the first pair again and reads nothing).
fn push_tn_windows(
    plan: &mut PlanBuilder,
    g: Gemm,
    rows: usize,
    wide: bool,
    (tile_rows, tile_cols): (usize, usize),
) -> Result<()> {
    let kernel = tn_bcw(wide);
    let gpu = plan.gpu();
    let mut windows = Vec::with_capacity(2 * TN_WINDOWS);
    let mut offsets = None;
    for w in 0..TN_WINDOWS {
        let k0 = (w * rows).min(g.k.saturating_sub(1) / rows * rows);
        let (a, a_window) = in_window(gpu, g.a.plus(k0 * g.m)).ok_or_else(|| misrouted(kernel))?;
        let (b, b_window) = in_window(gpu, g.b.plus(k0 * g.n)).ok_or_else(|| misrouted(kernel))?;
        // Every part's rows start at the same offsets in their windows (the caller's rows).
        if *offsets.get_or_insert((a.off, b.off)) != (a.off, b.off) {
            return Err(misrouted(kernel));
        }
        windows.extend([a_window, b_window]);
    }
    let Some((a_off, b_off)) = offsets else {
        return Err(misrouted(kernel));
    };
    let windowed = Gemm {
        a: At { off: a_off, ..g.a },
        b: At { off: b_off, ..g.b },
        ..g
    };
    let (mut params, bias_buf) = params_of(&windowed);
    params.k_split = u(rows);
    let mut buffers = vec![g.a.buf, g.b.buf, bias_buf, g.c.buf];
    for _ in 1..TN_WINDOWS {
        buffers.extend([g.a.buf, g.b.buf]);
    }
    let grid = [groups(g.n, tile_cols), groups(g.m, tile_rows), 1];
    plan.push_windows(kernel, &buffers, &windows, &params, grid, false)?;
    Ok(())
}

/// Records `g`, whose layout the vec4 kernels cannot read (a K, M or N that is not a multiple
/// of 4, or an offset that is not), as `A Bᵀ` over K rounded up to a multiple of 4: each
/// operand that needs it copied once into scratch, zero-padded along k (rows of A or B
/// padded, or transposed with their padding). The copies cost O((M + N) K) against the
/// product's O(M N K); the scalar kernel they replace read one value per load, and ran
/// odd-sized products 1.5-3x slower than their rounded-up neighbours on lavapipe.
fn record_padded(plan: &mut PlanBuilder, g: Gemm) -> Result<()> {
    let kp = super::transpose::padded(g.k);
    // The subgroup kernel reads an A stored [M, K] where it lies, whatever its alignment;
    // copying it (the input projection's x, T·B rows) cost as much as the product on lavapipe.
    let unaligned_a = !g.trans_a && plan.gpu().subgroup_kernels() && g.row_sums.is_none();
    let pa = if unaligned_a {
        None
    } else {
        pad_along_k(plan, g.a, (g.m, g.k), !g.trans_a, "A padded along k")?
    };
    let pb = pad_along_k(plan, g.b, (g.n, g.k), g.trans_b, "B padded along k")?;
    let nt = Gemm {
        k: if unaligned_a { g.k } else { kp },
        unaligned_a,
        a: pa.as_ref().map_or(g.a, at0),
        trans_a: false,
        b: pb.as_ref().map_or(g.b, at0),
        trans_b: true,
        ..g
    };
    let (kernel, tile) = direct_kernel(plan.gpu(), &nt);
    // The bind groups keep the scratch buffers alive.
    push(plan, &nt, kernel, tile)
}

/// Operand `x` of `rows` rows over `k` (stored `[rows, k]` when `along_k`, else `[k, rows]`)
/// as `[rows, padded(k)]` from element 0 of a new buffer, zero-padded; `None` when it already
/// is contiguous along k with k and its offset multiples of 4, and can be read in place.
fn pad_along_k(
    plan: &mut PlanBuilder,
    x: At,
    (rows, k): (usize, usize),
    along_k: bool,
    what: &str,
) -> Result<Option<wgpu::Buffer>> {
    use super::layout::{Blocks, repack};
    use super::transpose::{padded, transpose};
    if along_k && k.is_multiple_of(4) && x.off.is_multiple_of(4) {
        return Ok(None);
    }
    let kp = padded(k);
    let buf = plan.gpu().storage_buffer(what, rows * kp)?;
    if along_k {
        let src = Blocks {
            at: x,
            rows,
            cols: k,
        };
        let dst = Blocks {
            at: at0(&buf),
            rows,
            cols: kp,
        };
        repack(plan, 1, src, dst)?;
    } else {
        transpose(plan, k, rows, x, at0(&buf))?;
    }
    Ok(Some(buf))
}

/// Element 0 of `buf`.
fn at0(buf: &wgpu::Buffer) -> At<'_> {
    At { buf, off: 0 }
}

/// The kernel parameters of `g`, and the buffer bound as the biases.
fn params_of<'a>(g: &Gemm<'a>) -> (Params, &'a wgpu::Buffer) {
    let flags = g.trans_a as u32
        | (g.trans_b as u32) << 1
        | (g.accumulate as u32) << 2
        | (g.bias.is_some() as u32) << 3
        | (g.bias2.is_some() as u32) << 4
        | (vec_store(g) as u32) << 5
        | (g.row_sums.is_some() as u32) << 6
        | (g.row_sums.is_some_and(|(_, two)| two.is_some()) as u32) << 7;
    let params = Params {
        m: u(g.m),
        n: u(g.n),
        k: u(g.k),
        flags,
        a_off: u(g.a.off),
        b_off: u(g.b.off),
        c_off: u(g.c.off),
        bias_off: u(g.row_sums.map_or(g.bias.map_or(0, |b| b.off), |(o, _)| o)),
        bias2_off: u(g
            .row_sums
            .and_then(|(_, two)| two)
            .unwrap_or(g.bias2.map_or(0, |b| b.off))),
        k_split: 0,
        ld_b: u(g.ld_b.unwrap_or(0)),
        ld_a: u(g.ld_a.unwrap_or(0)),
    };
    // An unused bias binding still needs a buffer: A's serves.
    (params, g.bias.map_or(g.a.buf, |b| b.buf))
}

/// Records `g` with `kernel`, whose workgroups cover `rows` x `cols` of C.
fn push(
    plan: &mut PlanBuilder,
    g: &Gemm,
    kernel: &'static Kernel,
    (rows, cols): (usize, usize),
) -> Result<()> {
    let (params, bias_buf) = params_of(g);
    let grid = [groups(g.n, cols), groups(g.m, rows), 1];
    plan.push(
        kernel,
        &[g.a.buf, g.b.buf, bias_buf, g.c.buf],
        &params,
        grid,
        false,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Gpu, KernelStyle};
    use crate::ops::{Driver, at, run};

    /// Values in ±0.5 from a linear congruential sequence seeded with `seed`.
    fn values(mut seed: u64) -> impl FnMut(usize) -> Vec<f32> {
        move |len| {
            (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        }
    }

    /// `v` in a new buffer.
    fn upload(gpu: &Gpu, v: &[f32]) -> wgpu::Buffer {
        let t = gpu.storage_buffer("test", v.len()).expect("buffer");
        gpu.queue().write_buffer(&t, 0, bytemuck::cast_slice(v));
        t
    }

    /// `C = op(A) op(B) (+ C) (+ bias)` in f64 on the CPU, for the stored layouts.
    #[allow(clippy::too_many_arguments)]
    fn cpu(
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        c0: &[f32],
        acc: bool,
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for r in 0..m {
            for col in 0..n {
                let mut s = 0.0f64;
                for kk in 0..k {
                    let av = if ta { a[kk * m + r] } else { a[r * k + kk] };
                    let bv = if tb { b[col * k + kk] } else { b[kk * n + col] };
                    s += f64::from(av) * f64::from(bv);
                }
                if acc {
                    s += f64::from(c0[r * n + col]);
                }
                if let Some(bias) = bias {
                    s += f64::from(bias[col]);
                }
                c[r * n + col] = s;
            }
        }
        c
    }

    /// The tiled kernel, whole and split along k, for every layout, against the CPU: sizes
    /// that divide no tile, accumulate and bias included. (Whether a product is split is a
    /// heuristic for GPUs; this checks both on whatever adapter runs the tests.)
    #[test]
    fn tiled_kernel_matches_cpu_for_every_layout_and_split() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_kernels(KernelStyle::Tiled);
        let (m, n, k) = (133, 201, 300);
        let mut rand = values(1);
        let (a, b, c0, bias) = (rand(m * k), rand(k * n), rand(m * n), rand(n));
        let buf = |v: &[f32]| upload(&gpu, v);
        let (ab, bb, biasb) = (buf(&a), buf(&b), buf(&bias));
        for (kernel, tile) in [(&MATMUL, TILE)] {
            for parts in [None, Some(3)] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    // Split products take no bias; whole ones take both options.
                    let (acc, with_bias) = (true, parts.is_none());
                    let cb = buf(&c0);
                    let g = Gemm {
                        trans_a: ta,
                        trans_b: tb,
                        accumulate: acc,
                        bias: with_bias.then(|| at(&biasb, 0)),
                        ..Gemm::new(m, n, k, at(&ab, 0), at(&bb, 0), at(&cb, 0))
                    };
                    let mut plan = PlanBuilder::new(&gpu, "test");
                    match parts {
                        Some(p) => record_split(&mut plan, g, (kernel, tile), p),
                        None => push(&mut plan, &g, kernel, (tile, tile)),
                    }
                    .expect("record");
                    let plan = plan.finish().expect("plan");
                    run(&gpu, "test", Driver::PerStep, |_| {}, &[&plan], |_| {}).expect("run");
                    let got = gpu.read(&cb, 0, m * n).expect("read");
                    let want = cpu(
                        (m, n, k),
                        &a,
                        ta,
                        &b,
                        tb,
                        &c0,
                        acc,
                        with_bias.then_some(&bias[..]),
                    );
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{} parts {parts:?} trans {ta} {tb}: C[{i}] = {g}, want {w}",
                            kernel.name
                        );
                    }
                }
            }
        }
    }

    /// Every product through [`matmul`] under the CPU adapters' direct and subgroup kernels,
    /// against the CPU: odd sizes (1 and 3 included) and odd offsets, which the vec4 kernels
    /// reach by padding along k, and aligned ones, which they read in place; every layout,
    /// accumulating with a bias.
    #[test]
    fn direct_products_of_any_size_and_offset_match_cpu() {
        let base = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
        let mut rand = values(7);
        for style in [KernelStyle::Direct, KernelStyle::Subgroup] {
            let gpu = base.with_kernels(style);
            for (n_case, &(m, n, k, off)) in [
                (1, 1, 1, 0),
                (3, 5, 7, 1),
                (65, 33, 86, 3),
                (130, 7, 257, 0),
                (64, 32, 88, 0),
                (9, 130, 128, 0),
                (200, 3, 64, 4),
                (83, 128, 100, 0),
                (7, 36, 33, 4),
                (5, 16, 9, 64),
                (9, 128, 300, 4),
            ]
            .iter()
            .enumerate()
            {
                let (a, b, c0, bias) = (rand(off + m * k), rand(off + k * n), rand(m * n), rand(n));
                let buf = |v: &[f32]| upload(&gpu, v);
                let biasb = buf(&bias);
                // A and B alone, and with a uniform window's slack after them (where
                // matmul_tn_bc reads both through windows, and matmul_nt4_bc B in place when its
                // layout allows; B is copied into a window otherwise).
                let slack = |v: &[f32]| {
                    let mut v = v.to_vec();
                    v.resize(v.len() + super::super::WINDOW_FLOATS, 0.0);
                    v
                };
                let (a_slack, b_slack) = (slack(&a), slack(&b));
                // Accumulating or not, with a bias or not: a product cut into parts adds all but
                // the first, and the parts take no bias.
                for (((ta, tb), (ab, bb)), (acc, with_bias)) in
                    [(false, false), (true, false), (false, true), (true, true)]
                        .into_iter()
                        .flat_map(|t| [(t, (&a, &b)), (t, (&a_slack, &b_slack))])
                        .flat_map(|tb| {
                            [
                                (tb, (true, true)),
                                (tb, (true, false)),
                                (tb, (false, false)),
                            ]
                        })
                        .map(|((t, (va, vb)), acc)| ((t, (buf(va), buf(vb))), acc))
                {
                    let cb = buf(&c0);
                    let g = Gemm {
                        trans_a: ta,
                        trans_b: tb,
                        accumulate: acc,
                        bias: with_bias.then(|| at(&biasb, 0)),
                        ..Gemm::new(m, n, k, at(&ab, off), at(&bb, off), at(&cb, 0))
                    };
                    let mut plan = PlanBuilder::new(&gpu, "test");
                    matmul(&mut plan, g).expect("record");
                    let plan = plan.finish().expect("plan");
                    run(&gpu, "test", Driver::PerStep, |_| {}, &[&plan], |_| {}).expect("run");
                    let got = gpu.read(&cb, 0, m * n).expect("read");
                    let want = cpu(
                        (m, n, k),
                        &a[off..],
                        ta,
                        &b[off..],
                        tb,
                        &c0,
                        acc,
                        with_bias.then_some(&bias[..]),
                    );
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{style:?} case {n_case} ({m}, {n}, {k}) offset {off} accumulate {acc} bias {with_bias} trans {ta} \
                             {tb}: C[{i}] = {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    /// `Aᵀ B` and `A B` from texture mirrors of A and B (`matmul_tn_tex`, `matmul_nn_tex`:
    /// the weight gradients and dO V where the loops keep mirrors) against the CPU: A's rows of
    /// any length from any offset (the shifted reads), N a multiple of 4 from an aligned offset,
    /// K of 1, odd and past a workgroup's rows; accumulating, `Aᵀ B` with both row sums.
    /// `A Bᵀ + bias` with A and B from mirrors (`matmul_nt4_bc_tt`, both column widths), B's
    /// mirror holding only the rows copied for B's floats (`copy_range_to_mirror`), B starting
    /// inside a mirror row and, in the last cases, ending in the buffer's partial last row.
    #[test]
    fn nt_from_two_mirrors_matches_cpu() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_kernels(KernelStyle::Subgroup);
        assert!(
            gpu.state_textures(),
            "this adapter has no rgba32float storage textures for the mirrors"
        );
        let mut rand = values(17);
        // (m, n, k, a_off, b_off, floats of B's buffer past B)
        for &(m, n, k, a_off, b_off, past) in &[
            (1, 1, 4, 0, 0, 4097),
            (3, 7, 8, 4, 4100, 5000),
            (65, 83, 128, 0, 8196, 4100),
            (257, 33, 36, 8, 12, 0),
            (2048, 83, 128, 4, 4092, 0),
        ] {
            let a = rand(a_off + m * k + WINDOW_FLOATS);
            let b = rand(b_off + n * k + past);
            let (bias, c0) = (rand(n), rand(m * n));
            let (ab, bb, biasb, cb) = (
                upload(&gpu, &a),
                upload(&gpu, &b),
                upload(&gpu, &bias),
                upload(&gpu, &c0),
            );
            let mirror = |len: usize| {
                StateTexture::new(&gpu, "test mirror", len)
                    .expect("texture")
                    .expect("a mirror this small fits")
            };
            let (am, bm) = (mirror(a.len()), mirror(b.len()));
            let g = Gemm {
                trans_b: true,
                bias: Some(at(&biasb, 0)),
                a_mirror: Some(&am),
                b_mirror: Some(&bm),
                ..Gemm::new(m, n, k, at(&ab, a_off), at(&bb, b_off), at(&cb, 0))
            };
            assert!(
                nt_b_mirror(&gpu, &g).is_some(),
                "({m}, {n}, {k}) not from two mirrors"
            );
            let mut plan = PlanBuilder::new(&gpu, "test");
            plan.copy_to_mirror(&ab, &am);
            plan.copy_range_to_mirror(&bb, &bm, b_off..b_off + n * k);
            matmul(&mut plan, g).expect("record");
            let plan = plan.finish().expect("plan");
            run(&gpu, "test", Driver::PerStep, |_| {}, &[&plan], |_| {}).expect("run");
            let got = gpu.read(&cb, 0, m * n).expect("read");
            let want = cpu(
                (m, n, k),
                &a[a_off..],
                false,
                &b[b_off..],
                true,
                &c0,
                false,
                Some(&bias),
            );
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "({m}, {n}, {k}) offsets {a_off}, {b_off}: value {i} = {g}, want {w}"
                );
            }
        }
    }

    #[test]
    fn texture_products_match_cpu() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_kernels(KernelStyle::Subgroup);
        assert!(
            gpu.state_textures(),
            "this adapter has no rgba32float storage textures for the mirrors"
        );
        let mut rand = values(11);
        for &(m, n, k, a_off, b_off) in &[
            (1, 4, 1, 0, 0),
            (3, 4, 9, 1, 4),
            (16, 64, 8, 0, 0),
            (83, 128, 257, 0, 128),
            (128, 128, 300, 4, 0),
            (17, 68, 65, 3, 8),
            (33, 12, 2053, 2, 4),
            (2048, 128, 83, 0, 4),
        ] {
            for ta in [true, false] {
                let (a, b) = (rand(a_off + m * k), rand(b_off + k * n));
                let (c0, sums0) = (rand(m * n), rand(2 * m));
                let buf = |v: &[f32]| upload(&gpu, v);
                let (ab, bb, cb) = (buf(&a), buf(&b), buf(&[c0.clone(), sums0.clone()].concat()));
                let mirror = |v: &[f32]| {
                    StateTexture::new(&gpu, "test mirror", v.len())
                        .expect("texture")
                        .expect("a mirror this small fits")
                };
                let (am, bm) = (mirror(&a), mirror(&b));
                let g = Gemm {
                    trans_a: ta,
                    accumulate: true,
                    row_sums: ta.then_some((m * n, Some(m * n + m))),
                    a_mirror: Some(&am),
                    b_mirror: Some(&bm),
                    ..Gemm::new(m, n, k, at(&ab, a_off), at(&bb, b_off), at(&cb, 0))
                };
                assert!(
                    texture_fits(&gpu, &g).is_some(),
                    "({m}, {n}, {k}) not textured"
                );
                let mut plan = PlanBuilder::new(&gpu, "test");
                plan.copy_to_mirror(&ab, &am);
                plan.copy_to_mirror(&bb, &bm);
                matmul(&mut plan, g).expect("record");
                let plan = plan.finish().expect("plan");
                run(&gpu, "test", Driver::PerStep, |_| {}, &[&plan], |_| {}).expect("run");
                let got = gpu.read(&cb, 0, m * n + 2 * m).expect("read");
                let mut want = cpu(
                    (m, n, k),
                    &a[a_off..],
                    ta,
                    &b[b_off..],
                    false,
                    &c0,
                    true,
                    None,
                );
                for part in 0..2 {
                    for r in 0..m {
                        let s: f64 = if ta {
                            (0..k).map(|kk| f64::from(a[a_off + kk * m + r])).sum()
                        } else {
                            0.0
                        };
                        want.push(s + f64::from(sums0[part * m + r]));
                    }
                }
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "trans_a {ta} ({m}, {n}, {k}) offsets {a_off}, {b_off}: value {i} = {g}, want {w}"
                    );
                }
            }
        }
    }
}
