//! The serial loop over time, with `W` laid out by `shaders/weights.wgsl`: one persistent
//! dispatch for the whole sequence, or one dispatch per step. On CPU adapters the
//! register-blocked kernels of `shaders/recurrence_blocked.wgsl` run both (where H is a
//! multiple of 4, in their subgroup forms where the adapter has 8-lane subgroups; those of
//! `shaders/recurrence.wgsl` otherwise); on GPUs the per-step kernel of
//! `shaders/recurrence_tiled.wgsl` and the persistent one of `shaders/recurrence.wgsl`. Each
//! is a skeleton with the layer's cell spliced in (`kernels.rs` assembles them); this module
//! picks the forms and records them, for any cell.

use super::state_texture::StateTexture;
use super::{At, CONSTANT_WINDOW, PlanBuilder, groups, looping_groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Gpu, Kernel};

mod kernels;
mod wavefront;
#[cfg(test)]
pub(crate) use kernels::{CELL_MARK, all as all_kernels};
pub(crate) use kernels::{Cell, PREPARE, PREPARE_TEX, assemble};
use kernels::{Family, Form, kernel};
pub use wavefront::{Wavefront, compare as wavefront};

/// Batch rows per invocation and invocations per workgroup (`ROWS`, `WG` in the shader).
const ROWS: usize = 4;
const WG: usize = 64;
/// The largest `H` the persistent kernels keep in workgroup memory (`HMAX`), and the
/// workgroup memory that takes.
pub(crate) const SEQ_MAX_HIDDEN: usize = 1024;
const SEQ_WORKGROUP_BYTES: u32 = (2 * ROWS * SEQ_MAX_HIDDEN * 4) as u32;

/// Loop iterations one invocation of a persistent dispatch may spend on a CPU adapter: half
/// of the 65535 after which lavapipe stops it.
pub(crate) const LOOP_BUDGET: usize = 32768;

/// How the serial loop is dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Loop {
    /// One dispatch per time step.
    PerStep,
    /// One dispatch for all steps, the state in workgroup memory.
    Persistent,
}

/// Records one serial dispatch of a recurrence kernel over `wp`, the source and the
/// destination; kernels with a uniform window onto `wp` get it from byte `window`.
fn push_rec(
    plan: &mut PlanBuilder,
    k: &'static Kernel,
    [wp, src, dst]: [&wgpu::Buffer; 3],
    window: u64,
    params: &Rec,
    groups: [u32; 3],
) -> Result<()> {
    push_rec_tokens(
        plan,
        k,
        [wp, src, dst],
        window,
        (None, None),
        params,
        groups,
    )
}

/// [`push_rec`] with the token table `table` (the blocked kernels' `tu`, from its start) where
/// the kernel reads it (elsewhere `wp`'s window is bound there too, unread), and the mirrors'
/// views `textures` ([`Mirrors`]) where it reads them.
fn push_rec_tokens(
    plan: &mut PlanBuilder,
    k: &'static Kernel,
    [wp, src, dst]: [&wgpu::Buffer; 3],
    window: u64,
    (table, textures): (Option<&wgpu::Buffer>, Option<Mirrors>),
    params: &Rec,
    groups: [u32; 3],
) -> Result<()> {
    if k.binds.contains(&Bind::Constant) {
        let (tu, tu_window) = table.map_or((wp, window), |t| (t, 0));
        let textures: Vec<&wgpu::TextureView> = textures.map_or(vec![], |m| m.to_vec());
        plan.push_textured(
            k,
            &[wp, src, dst, wp, tu],
            &textures,
            &[window, tu_window],
            params,
            groups,
            true,
        )?;
    } else {
        plan.push(k, &[wp, src, dst], params, groups, true)?;
    }
    Ok(())
}

/// Texture mirrors' views: the pass's own state's, the other's, wp's and xu's
/// ([`Recurrence::mirrors`]).
type Mirrors<'a> = [&'a wgpu::TextureView; 4];

/// The texture mirrors of one layer's buffers the persistent loops keep and read
/// ([`Recurrence::mirrors_state`]).
pub(crate) struct LayerMirrors {
    /// `h_all`'s, written by the forward loop.
    pub h: StateTexture,
    /// `da`'s: dL/dh from above copied in before the backward loop, which writes dL/da.
    pub da: StateTexture,
    /// `wp`'s (W's layouts), copied in before each loop.
    pub wp: StateTexture,
    /// `xu`'s, copied in before the forward loop (or the token table, where it reads that).
    pub xu: StateTexture,
}

/// The persistent kernels for one shape and how they split the batch.
struct Seq {
    forward: &'static Kernel,
    backward: &'static Kernel,
    /// Batch rows per workgroup.
    rows: usize,
    /// Loop iterations one invocation spends per step, and before the first.
    per_step: usize,
    setup: usize,
}

/// The persistent kernels on `gpu` for `batch` rows of `hidden` units, `dirs` directions side
/// by side in each dispatch, of a layer with two directions where `two`.
///
/// On CPU adapters (the direct style), where H is a multiple of 4, the register-blocked ones
/// of `recurrence_blocked.wgsl`, which read the state back from global memory (on lavapipe
/// twice as fast as from workgroup memory): 16 rows per workgroup (subgroup style) or 8 where
/// that still gives every CPU thread a workgroup (counting both directions'), else 4; reading
/// W through a uniform window where it fits one (H ≤ 128). Otherwise those of `recurrence.wgsl`, one SIMD group wide
/// on CPU adapters and 64 invocations wide on GPUs.
fn seq_kernels(
    gpu: &Gpu,
    cell: Cell,
    batch: usize,
    hidden: usize,
    (dirs, two): (usize, bool),
    (tokens, textured): (bool, bool),
) -> Seq {
    let q = Recurrence::hp(hidden) / 4;
    if gpu.direct_kernels() && hidden.is_multiple_of(4) {
        let threads = gpu.cpu_threads();
        let eight = dirs * batch.div_ceil(8) >= threads;
        let uniform = Recurrence::uniform_w(gpu, hidden, dirs);
        let subgroup = gpu.subgroup_kernels();
        // 16 rows a workgroup (W's loads shared by both halves) where that still gives every
        // CPU thread one: the character model's loops 5.2 -> 4.3 and 4.7-4.9 -> 3.8-3.9 ms.
        let sixteen = subgroup && batch > 8 && dirs * batch.div_ceil(16) >= threads;
        let form = |backward| Form {
            four: !eight,
            uniform,
            subgroup,
            // Two groups of 64 units per pass over the state where there are two.
            pairs: subgroup && hidden > 64 && !sixteen,
            row_pairs: sixteen,
            two,
            textured: textured && subgroup,
            ..Form::of(Family::BlockedSeq, backward)
        };
        // Per step: groups of 8 units 64 apart, each a product over q and an epilogue of
        // at most 8 rows (16 with row pairs), plus the step loop itself.
        let epilogue = if sixteen { 16 } else { 8 };
        let per_step = hidden.div_ceil(64) * (q + epilogue + 2) + 2;
        let forward = Form {
            tokens,
            ..form(false)
        };
        return Seq {
            forward: kernel(forward, cell),
            backward: kernel(form(true), cell),
            rows: match (sixteen, eight) {
                (true, _) => 16,
                (_, true) => 8,
                _ => 4,
            },
            per_step,
            // With mirrors, the forward pass first copies h0's rows into its mirror (each
            // half's with row pairs).
            setup: if textured {
                (q + 1) * if sixteen { 2 } else { 1 }
            } else {
                0
            },
        };
    }
    let narrow = gpu.direct_kernels();
    let wg = if narrow { 8 } else { WG };
    let form = |backward| Form {
        narrow,
        two,
        ..Form::of(Family::Seq, backward)
    };
    let (forward, backward) = (kernel(form(false), cell), kernel(form(true), cell));
    // Per step: column groups of 4 units, each a product over q and an epilogue of 4 rows x
    // 4 columns; before the steps, clearing 2048 vec4s of state and loading its rows.
    Seq {
        forward,
        backward,
        rows: ROWS,
        per_step: q.div_ceil(wg) * (q + 2 * ROWS * 4 + 2) + 2,
        setup: 2048 / wg + ROWS * (hidden.div_ceil(wg) + 1),
    }
}

/// Whether the persistent kernels can run `hidden` units on `gpu`, and if not, why. (The
/// register-blocked ones for CPU adapters run any H that is a multiple of 4.)
pub(crate) fn persistent_unavailable(gpu: &Gpu, hidden: usize) -> Option<String> {
    if gpu.direct_kernels() && hidden.is_multiple_of(4) {
        return None;
    }
    let have = gpu.limits().max_compute_workgroup_storage_size;
    if hidden > SEQ_MAX_HIDDEN {
        Some(format!(
            "H = {hidden} is over the {SEQ_MAX_HIDDEN} units it keeps in workgroup memory"
        ))
    } else if have < SEQ_WORKGROUP_BYTES {
        Some(format!(
            "it needs {SEQ_WORKGROUP_BYTES} bytes of workgroup memory and this adapter has {have}"
        ))
    } else {
        None
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Rec {
    batch: u32,
    hidden: u32,
    hp: u32,
    act: u32,
    steps: u32,
    t: u32,
    count: u32,
    sec1: u32,
    dsrc: u32,
    ddst: u32,
    dwp: u32,
    dir0: u32,
    tok_ids: u32,
    _pad: [u32; 3],
}

/// Parameters of the tiled per-step kernels (`Step` in `recurrence_tiled.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TiledStep {
    batch: u32,
    hidden: u32,
    act: u32,
    w_off: u32,
    src_off: u32,
    prev_off: u32,
    out_off: u32,
    has_prev: u32,
    dw: u32,
    dsrc: u32,
    ddst: u32,
    dir0: u32,
}

/// Hidden units and batch rows one tiled workgroup covers (`TJ`, `TB` in the shader).
const TILED_TJ: usize = 32;
const TILED_TB: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Prep {
    hidden: u32,
    hp: u32,
    w_off: u32,
    sec0: u32,
    sec1: u32,
}

/// What of a persistent loop's texture mirror goes back into its buffer after the loop (the
/// loops write their mirror only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Back {
    /// All of it.
    All,
    /// The floats in this range only (h(T), for h_n, where the rest is read from the mirror).
    Floats(std::ops::Range<usize>),
    /// None: every later reader of the buffer copies the mirror back first.
    Later,
}

/// Records `PREPARE` (or `PREPARE_TEX`, W from `mirror`) with `params` over `w` into `wp`,
/// whose sections' offsets are multiples of 4: one invocation per vec4 of a section, a few
/// workgroups per thread on a CPU adapter.
fn push_prepare(
    plan: &mut PlanBuilder,
    (w, wp): (&wgpu::Buffer, &wgpu::Buffer),
    params: &Prep,
    mirror: Option<&StateTexture>,
) -> Result<()> {
    debug_assert!(
        [params.hp, params.sec0, params.sec1]
            .iter()
            .all(|v| v.is_multiple_of(4))
    );
    let vec4s = params.hidden as usize * params.hp as usize / 4;
    let grid = [looping_groups(plan.gpu(), vec4s, 64), 1, 1];
    let (kernel, view) = match mirror {
        Some(m) => (&PREPARE_TEX, m.view().clone()),
        None => (&PREPARE, plan.gpu().placeholder_texture().clone()),
    };
    plan.push_textured(kernel, &[w, wp], &[&view], &[0], params, grid, false)?;
    Ok(())
}

/// The serial loop of one layer over one sequence shape: one direction, or both side by side
/// in the same dispatches (a bidirectional layer), each direction's tensors
/// [`Recurrence::stride`] apart in the same buffers.
pub(crate) struct Recurrence<'a> {
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    /// The cell whose epilogues the kernels run, and its nonlinearity as the shaders take it
    /// (0 tanh, 1 relu, 2 identity).
    pub cell: Cell,
    pub act: u32,
    /// Directions: 1, or 2 side by side.
    pub dirs: usize,
    /// `W` (`weight_hh`) of direction 0, `[H, H]`; direction 1's is `w_stride` floats on.
    pub w: At<'a>,
    pub w_stride: usize,
    /// Scratch for the padded layouts of every direction's `W`, [`Recurrence::wp_len`] floats.
    pub wp: &'a wgpu::Buffer,
    /// Layer 0's token table (`ops::embed::tokens_table`) and where its ids start, given only
    /// where the forward loops read it in place of `xu` ([`Recurrence::reads_tokens`]).
    pub tokens: Option<(&'a wgpu::Buffer, usize)>,
    /// The layer's texture mirrors the persistent loops write beside `h_all` and `da` and read
    /// from, given only where [`Recurrence::mirrors_state`] says they do.
    pub mirrors: Option<&'a LayerMirrors>,
}

impl Recurrence<'_> {
    /// `H` rounded up to a multiple of 4.
    fn hp(hidden: usize) -> usize {
        hidden.next_multiple_of(4)
    }

    /// Floats one padded layout of `W` takes: `[H, HP]` rounded up to 64 floats (256 bytes,
    /// a uniform binding's offset alignment).
    fn sec_len(hidden: usize) -> usize {
        (hidden * Self::hp(hidden)).next_multiple_of(64)
    }

    /// Where section `s` (0: `Wᵀ`, 1: `W`) of direction `d`'s layouts starts in `wp`, in
    /// floats: sections first, directions within them, so a uniform window from a section's
    /// start holds every direction's where they fit.
    pub fn section(hidden: usize, dirs: usize, s: usize, d: usize) -> usize {
        (s * dirs + d) * Self::sec_len(hidden)
    }

    /// Floats the padded layouts of `dirs` directions' `W` take, with room for a whole
    /// uniform window from the start of either section.
    pub fn wp_len(hidden: usize, dirs: usize) -> usize {
        Self::layouts_len(hidden, dirs) + CONSTANT_WINDOW as usize / 4
    }

    /// Floats the padded layouts of `dirs` directions' `W` take themselves (what their
    /// mirror holds).
    pub fn layouts_len(hidden: usize, dirs: usize) -> usize {
        2 * dirs * Self::sec_len(hidden)
    }

    /// Where direction 1's tensor of `n` floats starts after direction 0's in one buffer (a
    /// multiple of 64 floats, so both directions' rows stay aligned for vec4 reads).
    pub fn stride(n: usize) -> usize {
        n.next_multiple_of(64)
    }

    /// Whether `dirs` directions' W sections fit the uniform window of the `_u` kernels on
    /// `gpu`.
    fn uniform_w(gpu: &Gpu, hidden: usize, dirs: usize) -> bool {
        let l = gpu.limits();
        let floats = (dirs - 1) * Self::sec_len(hidden) + hidden * Self::hp(hidden);
        floats * 4 <= CONSTANT_WINDOW as usize
            && l.max_uniform_buffer_binding_size >= CONSTANT_WINDOW
            && 256 % l.min_uniform_buffer_offset_alignment as usize == 0
    }

    /// The strides between directions of `xu` or `da` (`[T, B, H]`) and of `h_all`
    /// (`[T + 1, B, H]`).
    fn strides(&self) -> (usize, usize) {
        let bh = self.batch * self.hidden;
        (
            Self::stride(self.steps * bh),
            Self::stride((self.steps + 1) * bh),
        )
    }

    /// The dispatches' directions, as (first direction, directions side by side): both in
    /// the same dispatches, except on CPU adapters where that would lose the uniform window
    /// onto W that one direction alone fits (H = 128: one direction at a time measured
    /// faster on lavapipe, BENCHMARKS.md).
    fn dispatches(&self, gpu: &Gpu) -> Vec<(usize, usize)> {
        let h = self.hidden;
        let apart = self.dirs > 1
            && gpu.direct_kernels()
            && h.is_multiple_of(4)
            && Self::uniform_w(gpu, h, 1)
            && !Self::uniform_w(gpu, h, self.dirs);
        if apart {
            (0..self.dirs).map(|d| (d, 1)).collect()
        } else {
            vec![(0, self.dirs)]
        }
    }

    /// The parameters of step `t` (forward: `xu` into `h_all`; backward: `h_all` into `da`),
    /// from direction `d0`.
    fn params(&self, t: usize, forward: bool, d0: usize) -> Rec {
        let (s_td, s_h) = self.strides();
        let (dsrc, ddst) = if forward { (s_td, s_h) } else { (s_h, s_td) };
        let two = self.dirs == 2;
        Rec {
            batch: u(self.batch),
            hidden: u(self.hidden),
            hp: u(Self::hp(self.hidden)),
            act: self.act,
            steps: u(self.steps),
            t: u(t),
            count: 0,
            sec1: u(Self::section(self.hidden, self.dirs, 1, 0) / 4),
            dsrc: if two { u(dsrc) } else { 0 },
            ddst: if two { u(ddst) } else { 0 },
            dwp: if two {
                u(Self::sec_len(self.hidden) / 4)
            } else {
                0
            },
            dir0: u(d0),
            tok_ids: 0,
            _pad: [0; 3],
        }
    }

    /// Whether a forward loop of `hidden` units in `dirs` directions on `gpu` can read its
    /// input projection from a token table ([`Recurrence::tokens`]) rather than from `xu`,
    /// which then need not be written: the persistent subgroup kernels of one direction, where
    /// H is a multiple of 4.
    pub fn reads_tokens(gpu: &Gpu, lp: Loop, hidden: usize, dirs: usize) -> bool {
        lp == Loop::Persistent
            && dirs == 1
            && gpu.subgroup_kernels()
            && hidden.is_multiple_of(4)
            && Self::uses_layouts(gpu, lp)
    }

    /// Whether loops of `hidden` units on `gpu` keep texture mirrors of their state
    /// ([`Recurrence::mirrors`], [`Gpu::state_textures`]): the persistent subgroup kernels, where
    /// H is a multiple of 4. (Where a mirror would be larger than the adapter's largest texture
    /// the workspace gives none, and the loops read the buffers.)
    pub fn mirrors_state(gpu: &Gpu, lp: Loop, hidden: usize) -> bool {
        lp == Loop::Persistent
            && gpu.state_textures()
            && hidden.is_multiple_of(4)
            && Self::uses_layouts(gpu, lp)
    }

    /// Whether the loops read `W` through the padded layouts in `wp` (all but the tiled
    /// per-step kernels of GPUs), which [`Recurrence::prepare`] must then write first.
    pub fn uses_layouts(gpu: &Gpu, lp: Loop) -> bool {
        lp == Loop::Persistent || gpu.direct_kernels()
    }

    /// Writes the padded layouts of every direction's current `W` into `wp`: before a
    /// forward loop whenever `W` has changed since it was last written. W is read from
    /// `mirror` (the parameters' texture mirror, W's rows copied in first) where given.
    pub fn prepare(&self, plan: &mut PlanBuilder, mirror: Option<&StateTexture>) -> Result<()> {
        let hp = Self::hp(self.hidden);
        if let Some(m) = mirror {
            let end = self.w.off + (self.dirs - 1) * self.w_stride + self.hidden * self.hidden;
            plan.copy_range_to_mirror(self.w.buf, m, self.w.off..end);
        }
        for d in 0..self.dirs {
            let params = Prep {
                hidden: u(self.hidden),
                hp: u(hp),
                w_off: u(self.w.off + d * self.w_stride),
                sec0: u(Self::section(self.hidden, self.dirs, 0, d)),
                sec1: u(Self::section(self.hidden, self.dirs, 1, d)),
            };
            push_prepare(plan, (self.w.buf, self.wp), &params, mirror)?;
        }
        Ok(())
    }

    fn tiled(
        &self,
        src_off: usize,
        prev_off: usize,
        out_off: usize,
        has_prev: bool,
        forward: bool,
    ) -> TiledStep {
        let (s_td, s_h) = self.strides();
        let (dsrc, ddst) = if forward { (s_td, s_h) } else { (s_h, s_td) };
        let two = self.dirs == 2;
        TiledStep {
            batch: u(self.batch),
            hidden: u(self.hidden),
            act: self.act,
            w_off: u(self.w.off),
            src_off: u(src_off),
            prev_off: u(prev_off),
            out_off: u(out_off),
            has_prev: has_prev as u32,
            dw: if two { u(self.w_stride) } else { 0 },
            dsrc: if two { u(dsrc) } else { 0 },
            ddst: if two { u(ddst) } else { 0 },
            dir0: 0,
        }
    }

    fn tiled_groups(&self) -> [u32; 3] {
        [
            groups(self.hidden, TILED_TJ),
            groups(self.batch, TILED_TB),
            u(self.dirs),
        ]
    }

    /// The persistent dispatches, as (first step, steps): one for the whole sequence, except
    /// on CPU adapters, whose shader compiler (lavapipe's) silently stops an invocation after
    /// 65535 loop iterations in all; there each chunk keeps an invocation to about half that.
    fn chunks(&self, gpu: &Gpu, n: usize) -> Vec<(usize, usize)> {
        let per_chunk = if gpu.is_cpu() {
            let seq = seq_kernels(
                gpu,
                self.cell,
                self.batch,
                self.hidden,
                (n, self.dirs > 1),
                (false, self.mirrors.is_some()),
            );
            (LOOP_BUDGET.saturating_sub(seq.setup) / seq.per_step).max(1)
        } else {
            self.steps
        };
        (0..self.steps)
            .step_by(per_chunk)
            .map(|t0| (t0, per_chunk.min(self.steps - t0)))
            .collect()
    }

    /// The per-step kernels for CPU adapters (forward, backward) and their grid: blocked
    /// ones, in workgroups of 64 units x 64 batch rows, or of 64 x 8 where that would leave
    /// CPU threads idle, reading W through a uniform window where it fits one, when H is a
    /// multiple of 4 (they read vec4s along H); else ones of 4
    /// units x 4 rows per invocation.
    fn per_step(&self, gpu: &Gpu, n: usize) -> (&'static Kernel, &'static Kernel, [u32; 3]) {
        let dirs = u(n);
        if !self.hidden.is_multiple_of(4) {
            let g = [
                groups(Self::hp(self.hidden) / 4, WG),
                groups(self.batch, ROWS),
                dirs,
            ];
            let two = self.dirs > 1;
            let step = |backward| {
                kernel(
                    Form {
                        two,
                        ..Form::of(Family::Step, backward)
                    },
                    self.cell,
                )
            };
            return (step(false), step(true), g);
        }
        let threads = gpu.cpu_threads();
        let units = groups(self.hidden, 64);
        let narrow = (units as usize) * self.batch.div_ceil(64) * n < 2 * threads;
        let form = |backward| Form {
            narrow,
            uniform: Self::uniform_w(gpu, self.hidden, n),
            subgroup: gpu.subgroup_kernels(),
            two: self.dirs > 1,
            ..Form::of(Family::Blocked, backward)
        };
        // Workgroups cover 64 units x 64 rows, or narrow ones 64 x 8 (a subgroup's 32 x 16
        // in the subgroup form).
        let g = match (narrow, gpu.subgroup_kernels()) {
            (false, _) => [units, groups(self.batch, 64), dirs],
            (true, false) => [units, groups(self.batch, 8), dirs],
            (true, true) => [groups(self.hidden, 32), groups(self.batch, 16), dirs],
        };
        (
            kernel(form(false), self.cell),
            kernel(form(true), self.cell),
            g,
        )
    }

    /// Every step forward: `h_all[t + 1] = act(xu[t] + W h_all[t])`; `h_all` is
    /// `[T + 1, B, H]` with `h0` in slot 0. Reads `wp` where [`Recurrence::uses_layouts`].
    pub fn forward(
        &self,
        plan: &mut PlanBuilder,
        lp: Loop,
        xu: &wgpu::Buffer,
        h_all: &wgpu::Buffer,
        back: Back,
    ) -> Result<()> {
        let bh = self.batch * self.hidden;
        if !Self::uses_layouts(plan.gpu(), lp) {
            for t in 0..self.steps {
                let params = self.tiled(t * bh, t * bh, (t + 1) * bh, true, true);
                let buffers = [self.w.buf, xu, h_all];
                let k = kernel(Form::of(Family::Tiled, false), self.cell);
                plan.push(k, &buffers, &params, self.tiled_groups(), true)?;
            }
            return Ok(());
        }
        self.sweep(plan, lp, false, [xu, h_all], back)
    }

    /// Every step backward, last to first, in place over `da` (holding `dL/do V`), with the
    /// layouts of `W` that were current for the forward pass (the `W` that made its states).
    pub fn backward(
        &self,
        plan: &mut PlanBuilder,
        lp: Loop,
        h_all: &wgpu::Buffer,
        da: &wgpu::Buffer,
        back: Back,
    ) -> Result<()> {
        let bh = self.batch * self.hidden;
        if !Self::uses_layouts(plan.gpu(), lp) {
            for t in (0..self.steps).rev() {
                let has_next = t + 1 < self.steps;
                let params = self.tiled((t + 1) * bh, (t + 1) * bh, t * bh, has_next, false);
                let buffers = [self.w.buf, h_all, da];
                plan.push(
                    kernel(Form::of(Family::Tiled, true), self.cell),
                    &buffers,
                    &params,
                    self.tiled_groups(),
                    true,
                )?;
            }
            return Ok(());
        }
        self.sweep(plan, lp, true, [h_all, da], back)
    }

    /// The loops that read W's layouts, forward (`xu` into `h_all`, first step first) or
    /// backward (`h_all` into `da`, last step first): per step, or persistent in chunks.
    fn sweep(
        &self,
        plan: &mut PlanBuilder,
        lp: Loop,
        backward: bool,
        [src, dst]: [&wgpu::Buffer; 2],
        back: Back,
    ) -> Result<()> {
        let forward = !backward;
        // The persistent loops' mirrors, filled once before the first direction's dispatch and
        // copied back once after the last (the loops write their mirror only: a copy between
        // two directions dispatched apart would overwrite one direction's results, or the
        // other's h0, with stale values).
        let mirrors = self
            .mirrors
            .filter(|_| Self::mirrors_state(plan.gpu(), lp, self.hidden));
        let table = self
            .tokens
            .filter(|_| forward && Self::reads_tokens(plan.gpu(), lp, self.hidden, self.dirs));
        if let Some(m) = mirrors {
            // W's layouts as the layouts plan last wrote them.
            plan.copy_to_mirror(self.wp, &m.wp);
            if backward {
                // dL/dh from above, which the loop reads as its epilogue's input.
                plan.copy_to_mirror(dst, &m.da);
            } else if let Some((t, _)) = table {
                // The token table and ids in xu's place (state_textures.wgsl's tok_at).
                plan.copy_to_mirror(t, &m.xu);
            } else {
                plan.copy_to_mirror(src, &m.xu);
            }
        }
        let views = mirrors.map(|m| {
            if backward {
                [m.da.view(), m.h.view(), m.wp.view(), m.xu.view()]
            } else {
                [m.h.view(), m.da.view(), m.wp.view(), m.xu.view()]
            }
        });
        for (d0, n) in self.dispatches(plan.gpu()) {
            // The blocked kernels read their section (forward: 1, W; backward: 0, Wᵀ) also
            // through a uniform window from its start (direction d0's).
            let section = usize::from(forward);
            let window = Self::section(self.hidden, self.dirs, section, d0) as u64 * 4;
            let push = |plan: &mut PlanBuilder, k: &'static Kernel, params: &Rec, g: [u32; 3]| {
                push_rec(plan, k, [self.wp, src, dst], window, params, g)
            };
            match lp {
                Loop::PerStep => {
                    let (f, b, g) = self.per_step(plan.gpu(), n);
                    let k = if backward { b } else { f };
                    let mut steps: Vec<usize> = (0..self.steps).collect();
                    if backward {
                        steps.reverse();
                    }
                    for t in steps {
                        push(plan, k, &self.params(t, forward, d0), g)?;
                    }
                }
                Loop::Persistent => {
                    let seq = seq_kernels(
                        plan.gpu(),
                        self.cell,
                        self.batch,
                        self.hidden,
                        (n, self.dirs > 1),
                        (table.is_some(), views.is_some()),
                    );
                    let g = [groups(self.batch, seq.rows), u(n), 1];
                    let k = if backward { seq.backward } else { seq.forward };
                    let mut chunks = self.chunks(plan.gpu(), n);
                    if backward {
                        // The same chunks, last first, each starting from its last step.
                        chunks.reverse();
                    }
                    for (t0, count) in chunks {
                        let t = if backward { t0 + count - 1 } else { t0 };
                        let params = Rec {
                            count: u(count),
                            tok_ids: u(table.map_or(0, |(_, ids)| ids)),
                            ..self.params(t, forward, d0)
                        };
                        push_rec_tokens(
                            plan,
                            k,
                            [self.wp, src, dst],
                            window,
                            (table.map(|(t, _)| t), views),
                            &params,
                            g,
                        )?;
                    }
                }
            }
        }
        if let Some(m) = mirrors {
            // The loops wrote their mirror only.
            let mirror = if backward { &m.da } else { &m.h };
            match back {
                Back::All => plan.copy_from_mirror(mirror, dst),
                Back::Floats(floats) => plan.copy_range_from_mirror(mirror, dst, floats),
                Back::Later => {}
            }
        }
        Ok(())
    }
}
