//! `shaders/embed.wgsl`: the input projection of token ids (a gather of U's columns) and its
//! weight gradient (a scatter-add into them).

use super::state_texture::StateTexture;
use super::{At, PlanBuilder, WINDOW_FLOATS, groups, looping_groups, u, window_start};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

/// Rows one `embed` invocation writes (the shader's `EMBED_ROWS`).
const EMBED_ROWS: usize = 32;

pub(crate) static EMBED: Kernel = Kernel {
    name: "embed",
    source: include_str!("../../shaders/embed.wgsl"),
    entry: "embed",
    binds: &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[("EMBED_ROWS", EMBED_ROWS as f64)],
};

pub(crate) static TOKENS_TABLE: Kernel = Kernel {
    name: "tokens_table",
    entry: "tokens_table",
    constants: &[],
    ..EMBED
};

pub(crate) static EMBED_GRAD: Kernel = Kernel {
    name: "embed_grad",
    entry: "embed_grad",
    constants: &[],
    ..EMBED
};

/// `embed` and `embed_grad` for 8-lane subgroups: 4 units per lane as vec4s, what all lanes
/// need loaded once and broadcast (`shaders/embed_broadcast.wgsl`).
const fn broadcast(
    name: &'static str,
    entry: &'static str,
    binds: &'static [Bind],
    constants: &'static [(&'static str, f64)],
) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/embed.wgsl"),
            include_str!("../../shaders/embed_broadcast.wgsl")
        ),
        entry,
        binds,
        constants,
    }
}

/// `embed4`'s bindings: the window onto U's buffer (read or not) and da's mirror (unread)
/// before the parameters.
const WINDOWED: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Constant,
    Bind::TextureRead,
    Bind::Params,
];
/// `embed_grad4`'s: the ids again where `embed4` binds its window (unused), then da's mirror.
const GRAD4_BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Read,
    Bind::TextureRead,
    Bind::Params,
];

/// `embed4` reading U from storage, and through a uniform window.
pub(crate) static EMBED4: Kernel = broadcast("embed4", "embed4", WINDOWED, &[]);
pub(crate) static EMBED4_U: Kernel =
    broadcast("embed4_u", "embed4", WINDOWED, &[("U_UNIFORM", 1.0)]);
/// `embed_grad4` reading da from storage, and from its texture mirror.
pub(crate) static EMBED_GRAD4: Kernel = broadcast("embed_grad4", "embed_grad4", GRAD4_BINDS, &[]);
pub(crate) static EMBED_GRAD4_TEX: Kernel = broadcast(
    "embed_grad4_tex",
    "embed_grad4",
    GRAD4_BINDS,
    &[("DA_TEXTURE", 1.0)],
);
/// `embed_grad4` over the rows in time order, for vocabularies up to [`SEQ_IDS`], reading da
/// from storage, and from its texture mirror.
pub(crate) static EMBED_GRAD4_SEQ: Kernel =
    broadcast("embed_grad4_seq", "embed_grad4_seq", GRAD4_BINDS, &[]);
pub(crate) static EMBED_GRAD4_SEQ_TEX: Kernel = broadcast(
    "embed_grad4_seq_tex",
    "embed_grad4_seq",
    GRAD4_BINDS,
    &[("DA_TEXTURE", 1.0)],
);
/// `tokens_table` a vec4 at a time, U and the biases from the parameters' texture mirror.
pub(crate) static TOKENS_TABLE4_TEX: Kernel =
    broadcast("tokens_table4_tex", "tokens_table4", WINDOWED, &[]);
/// The largest vocabulary `embed_grad4_seq` takes (`SEQ_IDS` in the shader).
const SEQ_IDS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    steps: u32,
    batch: u32,
    hidden: u32,
    input: u32,
    flags: u32,
    w_off: u32,
    bias_off: u32,
    bias2_off: u32,
    out_off: u32,
    _pad: [u32; 3],
}

/// How a layer reads the caller's ids: `[T, B]` time-major or `[B, T]` batch-first, in true
/// or reversed time, for `T` steps of `B` rows, `H` hidden units and `I` ids.
#[derive(Clone, Copy)]
pub(crate) struct TokenLayout {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub input: usize,
    pub batch_first: bool,
    pub reversed: bool,
}

impl TokenLayout {
    fn params(&self, flags: u32, w_off: usize, out_off: usize) -> Params {
        Params {
            steps: u(self.steps),
            batch: u(self.batch),
            hidden: u(self.hidden),
            input: u(self.input),
            flags: flags | self.batch_first as u32 | (self.reversed as u32) << 1,
            w_off: u(w_off),
            bias_off: 0,
            bias2_off: 0,
            out_off: u(out_off),
            _pad: [0; 3],
        }
    }

    /// The parameters of a gather of U's columns from `w_off` into `out_off`, adding the two
    /// biases at `biases` (offsets in U's buffer) where given.
    fn gather_params(
        &self,
        w_off: usize,
        biases: Option<(usize, usize)>,
        out_off: usize,
    ) -> Params {
        let (flags, (b1, b2)) = biases.map_or((0, (0, 0)), |b| (12, b));
        Params {
            bias_off: u(b1),
            bias2_off: u(b2),
            ..self.params(flags, w_off, out_off)
        }
    }
}

/// `out[r, :] = U[:, id(r)] (+ bias) (+ bias2)` for every row, `U` `[H, I]`; `ids` holds
/// the ids and their sorted positions (`ClassIds`' layout). The biases live in `u`'s buffer.
pub(crate) fn embed(
    plan: &mut PlanBuilder,
    tl: TokenLayout,
    ids: &wgpu::Buffer,
    w: At,
    biases: Option<(usize, usize)>,
    out: At,
) -> Result<()> {
    let params = tl.gather_params(w.off, biases, out.off);
    let rows = tl.steps * tl.batch;
    let four = |v: usize| v.is_multiple_of(4);
    let window = window_start(plan.gpu(), w.buf, w.off);
    if let (true, Some(start)) = (plan.gpu().subgroup_kernels(), window)
        && four(tl.hidden)
        && four(out.off)
    {
        let fits = w.off - start + tl.hidden * tl.input <= WINDOW_FLOATS;
        let params = Params {
            w_off: u(if fits { w.off - start } else { w.off }),
            ..params
        };
        // Workgroups of 16 row blocks or more each: lavapipe's cost per workgroup made 1024
        // of one block 2.1 ms against 1.6 for 64 of 16 (the character model); within the
        // loop budget per invocation.
        let blocks = groups(rows, 8).min(16).max(groups(rows, 8 * 32768));
        let grid = [groups(tl.hidden, 32), blocks, 1];
        let kernel = if fits { &EMBED4_U } else { &EMBED4 };
        let bufs = [ids, w.buf, out.buf, w.buf];
        let unread = plan.gpu().placeholder_texture().clone();
        let window = [(start * 4) as u64];
        plan.push_textured(kernel, &bufs, &[&unread], &window, &params, grid, false)?;
        return Ok(());
    }
    let grid = [
        groups(tl.hidden, 64),
        groups(rows, EMBED_ROWS).min(65535),
        1,
    ];
    plan.push(&EMBED, &[ids, w.buf, out.buf], &params, grid, false)?;
    Ok(())
}

/// The token table of the forward loops that gather their input projection
/// (`Recurrence::reads_tokens`), into `table` from its start: row `v` is `U[:, v]` (+ bias)
/// (+ bias2), `[I, H]`, then the rows' ids as floats in time-major order.
pub(crate) fn tokens_table(
    plan: &mut PlanBuilder,
    tl: TokenLayout,
    ids: &wgpu::Buffer,
    w: At,
    biases: Option<(usize, usize)>,
    (table, mirror): (&wgpu::Buffer, Option<&StateTexture>),
) -> Result<()> {
    let params = tl.gather_params(w.off, biases, 0);
    let n = tl.input * tl.hidden + tl.steps * tl.batch;
    match mirror.filter(|_| tl.hidden.is_multiple_of(4)) {
        Some(m) => {
            // U's and the biases' rows of the parameters' mirror, a vec4 of the table each.
            let (b1, b2) = biases.unwrap_or((w.off, w.off));
            let lo = w.off.min(b1).min(b2);
            let hi = (w.off + tl.hidden * tl.input).max(b1.max(b2) + tl.hidden);
            plan.copy_range_to_mirror(w.buf, m, lo..hi);
            let grid = [looping_groups(plan.gpu(), n.div_ceil(4), 64), 1, 1];
            let window = plan.gpu().placeholder_window().clone();
            let bufs = [ids, w.buf, table, &window];
            plan.push_textured(
                &TOKENS_TABLE4_TEX,
                &bufs,
                &[m.view()],
                &[0],
                &params,
                grid,
                false,
            )?;
        }
        None => {
            let grid = [looping_groups(plan.gpu(), n, 64), 1, 1];
            plan.push(&TOKENS_TABLE, &[ids, w.buf, table], &params, grid, false)?;
        }
    }
    Ok(())
}

/// Whether [`embed_grad`] takes the subgroup kernels for `tl` with da at `da_off` on `gpu`,
/// which read da from its mirror where given.
pub(crate) fn grad_by_subgroups(gpu: &crate::gpu::Gpu, tl: TokenLayout, da_off: usize) -> bool {
    gpu.subgroup_kernels() && tl.hidden.is_multiple_of(4) && da_off.is_multiple_of(4)
}

/// `dU[:, v] = sum of da[r, :]` over the rows `r` whose id is `v`, for every `v` (zero where
/// none), written over `du` `[H, I]`; reading da from `mirror` (its buffer's texture mirror,
/// holding the same values) where given.
pub(crate) fn embed_grad(
    plan: &mut PlanBuilder,
    tl: TokenLayout,
    ids: &wgpu::Buffer,
    (da, mirror): (At, Option<&StateTexture>),
    du: At,
) -> Result<()> {
    let params = tl.params(0, da.off, du.off);
    if grad_by_subgroups(plan.gpu(), tl, da.off) {
        // In time order where the vocabulary fits the kernel's sums: the character model's
        // 1.4-1.8 ms became 0.4-0.5 on lavapipe. (H / 32 workgroups only: a CPU adapter with
        // many more threads than that might want the runs of ids back; not measured.)
        let seq = tl.input <= SEQ_IDS;
        let grid = if seq {
            [groups(tl.hidden, 32), 1, 1]
        } else {
            [groups(tl.hidden, 32), groups(tl.input, 8).min(65535), 1]
        };
        let bufs = [ids, da.buf, du.buf, ids];
        let (kernel, view) = match (mirror, seq) {
            (Some(m), true) => (&EMBED_GRAD4_SEQ_TEX, m.view().clone()),
            (Some(m), false) => (&EMBED_GRAD4_TEX, m.view().clone()),
            (None, true) => (&EMBED_GRAD4_SEQ, plan.gpu().placeholder_texture().clone()),
            (None, false) => (&EMBED_GRAD4, plan.gpu().placeholder_texture().clone()),
        };
        plan.push_textured(kernel, &bufs, &[&view], &[0], &params, grid, false)?;
        return Ok(());
    }
    let grid = [groups(tl.hidden, 64), u(tl.input.min(65535)), 1];
    plan.push(&EMBED_GRAD, &[ids, da.buf, du.buf], &params, grid, false)?;
    Ok(())
}
