//! Typed wrappers around the WGSL kernels, and the [`Plan`] that records their dispatches.
//!
//! A plan is built once per workspace shape: every dispatch's parameters live in one buffer
//! (bound with a dynamic offset) and every bind group is made up front, so running a
//! plan allocates nothing and only records `set_pipeline`/`set_bind_group`/`dispatch` calls.

pub(crate) mod activation;
pub(crate) mod diagnostics;
pub(crate) mod directions;
pub(crate) mod dropout;
pub(crate) mod embed;
pub(crate) mod layout;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod optim;
pub(crate) mod recurrence;
pub(crate) mod reduce;
mod schedule;
pub(crate) mod spectral;
pub(crate) mod state_texture;
pub(crate) mod transition;
pub(crate) mod transpose;

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::{Bind, Gpu, Kernel, Pipeline};

/// How the serial time loop is driven. Every driver records a whole call (forward, or
/// forward + loss + backward + update) into one command buffer, except the naive baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Driver {
    /// On CPU adapters [`Driver::Persistent`] below 64 batch rows (with subgroups: where also
    /// H ≤ 256, and up to 255 rows where H ≤ 128; or where H is not a multiple of 4) and
    /// [`Driver::PerStep`] above, where its workgroups of 64 rows read `W` once per step for
    /// all of them (measured on lavapipe, ARCHITECTURE.md);
    /// [`Driver::PerStep`] on GPUs (where the tiled per-step kernel won every forward
    /// benchmark on an H200 and lost only two training steps, by 18% and 7%).
    #[default]
    Auto,
    /// One dispatch per time step, all in one compute pass and one submit.
    PerStep,
    /// One dispatch for all time steps, each workgroup owning whole batch rows: on CPU adapters
    /// 8 or 4 rows with register-blocked kernels (H a multiple of 4, any size); elsewhere 4
    /// rows with their state in workgroup memory (H up to 1024, 32 KiB of it).
    Persistent,
    /// One submit-and-wait per time step: the seed's loop, kept as the benchmark baseline.
    Naive,
}

impl Driver {
    /// The name used by `bench --json`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Auto => "auto",
            Driver::PerStep => "per_step",
            Driver::Persistent => "persistent",
            Driver::Naive => "naive",
        }
    }

    /// Every driver, by name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Auto, Self::PerStep, Self::Persistent, Self::Naive]
            .into_iter()
            .find(|d| d.name() == name)
    }

    /// How the loop is dispatched for `batch` rows of `hidden` units on `gpu`; an error when
    /// the persistent kernel is asked for and cannot run.
    pub(crate) fn resolve(
        self,
        gpu: &Gpu,
        batch: usize,
        hidden: usize,
    ) -> Result<recurrence::Loop> {
        use recurrence::{Loop, persistent_unavailable};
        Ok(match self {
            Driver::PerStep | Driver::Naive => Loop::PerStep,
            Driver::Persistent => match persistent_unavailable(gpu, hidden) {
                None => Loop::Persistent,
                Some(why) => {
                    return Err(crate::error::InputError::Invalid {
                        arg: "driver".into(),
                        reason: format!("the persistent kernel cannot run: {why}"),
                    }
                    .into());
                }
            },
            Driver::Auto => {
                // On lavapipe persistent won every training step at B = 8, 16 and 32 (H = 128
                // and 256) and per-step every one at B = 64 (H = 128, 256, 1024); the
                // blocked kernels of both need H % 4 == 0, and the others are slower per step.
                // With subgroups (T = 100, train / forward ms, per-step vs persistent): B = 64
                // and 128 at H = 128 (W in a uniform window) went persistent (45 / 18 vs 38 /
                // 14; 83 / 30 vs 81 / 29), B = 256 did not (58 vs 61 forward), nor B = 16 at H =
                // 512 (75 vs 90 train) nor B = 64 at H = 256 (98 vs 117 train).
                let few_rows = if gpu.subgroup_kernels() {
                    (batch < 64 && hidden <= 256) || (hidden <= 128 && batch < 256)
                } else {
                    batch < 64
                };
                let small = few_rows || !hidden.is_multiple_of(4);
                if gpu.is_cpu() && small && persistent_unavailable(gpu, hidden).is_none() {
                    Loop::Persistent
                } else {
                    Loop::PerStep
                }
            }
        })
    }
}

/// A buffer and an element offset into it: where a matrix or vector starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
}

impl<'a> At<'a> {
    /// The same buffer, `by` elements further on.
    pub(crate) fn plus(self, by: usize) -> At<'a> {
        at(self.buf, self.off + by)
    }
}

/// Shorthand for [`At`].
pub(crate) fn at(buf: &wgpu::Buffer, off: usize) -> At<'_> {
    At { buf, off }
}

/// Element offsets and sizes as the kernels take them. Buffers are capped at 4 GiB
/// ([`Gpu::max_storage_bytes`]), so every element index fits in a `u32`.
pub(crate) fn u(v: usize) -> u32 {
    v as u32
}

/// A grid of workgroups of 64 covering `n` items, folded into y past 65535 groups in x (the
/// kernels index `gid.x + gid.y * num_workgroups.x * 64`).
pub(crate) fn flat_grid(n: usize) -> [u32; 3] {
    let total = groups(n, 64) as usize;
    let x = total.clamp(1, 65535);
    [u(x), u(total.div_ceil(x).max(1)), 1]
}

/// Workgroups needed to cover `n` items `per` at a time.
pub(crate) fn groups(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

/// Workgroups of `per` invocations for `n` elements, for a kernel whose grid loops over its
/// elements: a few per CPU thread on a CPU adapter (each workgroup costs lavapipe some
/// microseconds: the character model's token table 0.55 -> 0.38 ms), one per `per`
/// elements elsewhere (at most 65535).
pub(crate) fn looping_groups(gpu: &Gpu, n: usize, per: usize) -> u32 {
    let most = if gpu.is_cpu() {
        4 * gpu.cpu_threads() as u32
    } else {
        65535
    };
    groups(n, per).min(most)
}

struct Pending {
    phase: &'static str,
    pipeline: Arc<Pipeline>,
    kernel: &'static str,
    binds: &'static [Bind],
    /// Where each [`Bind::Constant`] buffer is bound from, in bytes, in binding order (the
    /// last for any past the list's end).
    windows: Vec<u64>,
    buffers: Vec<wgpu::Buffer>,
    /// The views bound at the kernel's texture slots, in binding order.
    textures: Vec<wgpu::TextureView>,
    offset: u32,
    size: u64,
    groups: [u32; 3],
    serial: bool,
    /// Copies recorded before the dispatch, outside any compute pass.
    before: Vec<TextureCopy>,
}

/// A buffer's first floats copied into a texture mirror of it
/// ([`state_texture::StateTexture`]), or back, between two compute passes.
#[derive(Clone)]
pub(crate) struct TextureCopy {
    buffer: wgpu::Buffer,
    texture: wgpu::Texture,
    /// The mirror's view, as the kernels bind it (`schedule` compares them).
    view: wgpu::TextureView,
    /// Into the buffer, from the mirror.
    back: bool,
    /// The mirror's rows copied, from and up to: all where `None`.
    rows: Option<(u32, u32)>,
}

impl TextureCopy {
    /// The copy of the mirror's rows that hold `floats` of the buffer, to it or (`back`) from
    /// it.
    fn range(
        buffer: &wgpu::Buffer,
        mirror: &state_texture::StateTexture,
        floats: std::ops::Range<usize>,
        back: bool,
    ) -> Self {
        let row = 4 * mirror.texture().width() as usize;
        Self {
            buffer: buffer.clone(),
            texture: mirror.texture().clone(),
            view: mirror.view().clone(),
            back,
            rows: Some(((floats.start / row) as u32, floats.end.div_ceil(row) as u32)),
        }
    }

    /// Records the copy: as many of the mirror's rows (of those asked for) as the buffer
    /// holds, then what is left of the buffer, to or from the start of the next row.
    fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let size = self.texture.size();
        let (lo, hi) = self.rows.unwrap_or((0, size.height));
        let row_bytes = u64::from(size.width) * 16;
        let full = (self.buffer.size() / row_bytes).min(u64::from(size.height)) as u32;
        let rest = (self.buffer.size() - u64::from(full) * row_bytes) / 16;
        let mut copy = |first: u32, width: u32, height: u32| {
            let buffer = wgpu::TexelCopyBufferInfo {
                buffer: &self.buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: u64::from(first) * row_bytes,
                    bytes_per_row: Some(row_bytes as u32),
                    rows_per_image: None,
                },
            };
            let texture = wgpu::TexelCopyTextureInfo {
                origin: wgpu::Origin3d {
                    x: 0,
                    y: first,
                    z: 0,
                },
                ..self.texture.as_image_copy()
            };
            let extent = wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            };
            if self.back {
                encoder.copy_texture_to_buffer(texture, buffer, extent);
            } else {
                encoder.copy_buffer_to_texture(buffer, texture, extent);
            }
        };
        if full.min(hi) > lo {
            copy(lo, size.width, full.min(hi) - lo);
        }
        if full < size.height && rest > 0 && (lo..hi).contains(&full) {
            copy(full, rest.min(u64::from(size.width)) as u32, 1);
        }
    }
}

/// Bytes of a buffer bound as a [`Bind::Constant`] uniform: WebGPU's smallest guaranteed
/// uniform binding, the size of the uniform arrays the kernels declare.
pub(crate) const CONSTANT_WINDOW: u64 = 65536;

/// Floats in one [`CONSTANT_WINDOW`].
pub(crate) const WINDOW_FLOATS: usize = CONSTANT_WINDOW as usize / 4;

/// Where a uniform window onto `buf` at or before element `off` may start, in floats (`off`
/// rounded down to the adapter's uniform offset alignment): `None` where the adapter binds
/// less than a window or `buf` ends before the window would. Buffers the kernels read this
/// way carry [`WINDOW_FLOATS`] of slack past their contents.
pub(crate) fn window_start(gpu: &Gpu, buf: &wgpu::Buffer, off: usize) -> Option<usize> {
    let align = window_align(gpu);
    let start = off / align * align;
    (gpu.limits().max_uniform_buffer_binding_size >= CONSTANT_WINDOW
        && ((start + WINDOW_FLOATS) * 4) as u64 <= buf.size())
    .then_some(start)
}

/// The adapter's uniform offset alignment in floats (at least a vec4): how far before an
/// element its window may start.
pub(crate) fn window_align(gpu: &Gpu) -> usize {
    (gpu.limits().min_uniform_buffer_offset_alignment as usize / 4).max(4)
}

/// `x` as the kernels reading it through a window see it: its offset from the window's start,
/// and where the window starts in bytes (for [`PlanBuilder::push_windows`]); `None` where no
/// window holds it ([`window_start`]).
pub(crate) fn in_window<'a>(gpu: &Gpu, x: At<'a>) -> Option<(At<'a>, u64)> {
    let start = window_start(gpu, x.buf, x.off)?;
    Some((at(x.buf, x.off - start), (start * 4) as u64))
}

/// Collects dispatches and their parameters; [`PlanBuilder::finish`] makes the [`Plan`].
pub(crate) struct PlanBuilder<'g> {
    gpu: &'g Gpu,
    label: &'static str,
    phase: &'static str,
    params: Vec<u8>,
    pending: Vec<Pending>,
    align: usize,
    /// Copies to record before the next dispatch.
    before: Vec<TextureCopy>,
    /// Dispatches the plan's variant runs in place of the plan's (by index), with theirs.
    variants: Vec<(usize, Pending)>,
}

impl<'g> PlanBuilder<'g> {
    pub fn new(gpu: &'g Gpu, label: &'static str) -> Self {
        let l = gpu.limits();
        // Parameters are bound as storage (see [`Bind::Params`]).
        let align = l.min_storage_buffer_offset_alignment as usize;
        Self {
            gpu,
            label,
            phase: label,
            params: Vec::new(),
            pending: Vec::new(),
            align,
            before: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// Records `main`, and `alt` in its place in the plan's variant ([`Plan::variant`]): as
    /// many dispatches, after the copies queued before this call and their own.
    pub fn with_variant(
        &mut self,
        main: impl FnOnce(&mut Self) -> Result<()>,
        alt: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let (before, n0) = (self.before.clone(), self.pending.len());
        main(self)?;
        let n1 = self.pending.len();
        let after = std::mem::replace(&mut self.before, before);
        alt(self)?;
        let alts: Vec<Pending> = self.pending.drain(n1..).collect();
        if alts.len() != n1 - n0 || !self.before.is_empty() {
            return Err(crate::error::GpuError::Kernel {
                kernel: self.label.into(),
                message: "a variant that does not match its dispatches (a bug in rnn-wgpu)".into(),
            }
            .into());
        }
        self.before = after;
        self.variants.extend((n0..n1).zip(alts));
        Ok(())
    }

    /// The device the plan is for.
    pub fn gpu(&self) -> &Gpu {
        self.gpu
    }

    /// Copies `buffer`'s first floats, as many as `mirror` holds, into it before the next
    /// dispatch (between compute passes; after any copies asked for before).
    pub fn copy_to_mirror(&mut self, buffer: &wgpu::Buffer, mirror: &state_texture::StateTexture) {
        self.before.push(TextureCopy {
            buffer: buffer.clone(),
            texture: mirror.texture().clone(),
            view: mirror.view().clone(),
            back: false,
            rows: None,
        });
    }

    /// As [`PlanBuilder::copy_to_mirror`], only the mirror's rows that hold `floats` of the
    /// buffer (one tensor of many in it, say).
    pub fn copy_range_to_mirror(
        &mut self,
        buffer: &wgpu::Buffer,
        mirror: &state_texture::StateTexture,
        floats: std::ops::Range<usize>,
    ) {
        self.before
            .push(TextureCopy::range(buffer, mirror, floats, false));
    }

    /// Copies `mirror` back into `buffer`'s first floats (as many as both hold) before the
    /// next dispatch, which the plan must have.
    pub fn copy_from_mirror(
        &mut self,
        mirror: &state_texture::StateTexture,
        buffer: &wgpu::Buffer,
    ) {
        self.before.push(TextureCopy {
            buffer: buffer.clone(),
            texture: mirror.texture().clone(),
            view: mirror.view().clone(),
            back: true,
            rows: None,
        });
    }

    /// Copies (from [`Plan::prefix`]) to record before the next dispatch, after any asked for
    /// already.
    pub fn copies_before_next(&mut self, copies: &[TextureCopy]) {
        self.before.extend_from_slice(copies);
    }

    /// Dispatches recorded so far.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// As [`PlanBuilder::copy_from_mirror`], only the mirror's rows that hold `floats` of the
    /// buffer.
    pub fn copy_range_from_mirror(
        &mut self,
        mirror: &state_texture::StateTexture,
        buffer: &wgpu::Buffer,
        floats: std::ops::Range<usize>,
    ) {
        self.before
            .push(TextureCopy::range(buffer, mirror, floats, true));
    }

    /// Names the phase the following dispatches belong to, for per-phase GPU timing.
    pub fn phase(&mut self, name: &'static str) {
        self.phase = name;
    }

    /// Adds one dispatch of `kernel` over `buffers` (its storage bindings, in order) with
    /// `params` as its parameters; `serial` marks a time step of the recurrence. Returns the
    /// byte offset of `params` in the plan's parameter buffer, for kernels whose parameters
    /// change between runs.
    pub fn push<P: bytemuck::Pod>(
        &mut self,
        kernel: &'static Kernel,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: [u32; 3],
        serial: bool,
    ) -> Result<u64> {
        self.push_windowed(kernel, buffers, 0, params, groups, serial)
    }

    /// As [`PlanBuilder::push`], binding each [`Bind::Constant`] buffer as the
    /// [`CONSTANT_WINDOW`] bytes from byte `window` (a multiple of the adapter's uniform offset
    /// alignment) rather than whole.
    pub fn push_windowed<P: bytemuck::Pod>(
        &mut self,
        kernel: &'static Kernel,
        buffers: &[&wgpu::Buffer],
        window: u64,
        params: &P,
        groups: [u32; 3],
        serial: bool,
    ) -> Result<u64> {
        self.push_windows(kernel, buffers, &[window], params, groups, serial)
    }

    /// As [`PlanBuilder::push_windowed`], the `i`-th [`Bind::Constant`] buffer bound from
    /// byte `windows[i]`.
    pub fn push_windows<P: bytemuck::Pod>(
        &mut self,
        kernel: &'static Kernel,
        buffers: &[&wgpu::Buffer],
        windows: &[u64],
        params: &P,
        groups: [u32; 3],
        serial: bool,
    ) -> Result<u64> {
        self.push_textured(kernel, buffers, &[], windows, params, groups, serial)
    }

    /// As [`PlanBuilder::push_windows`], with `textures` at the kernel's texture slots
    /// ([`Bind::TextureReadWrite`], [`Bind::TextureRead`]) and `buffers` at the others, each
    /// in binding order.
    #[allow(clippy::too_many_arguments)]
    pub fn push_textured<P: bytemuck::Pod>(
        &mut self,
        kernel: &'static Kernel,
        buffers: &[&wgpu::Buffer],
        textures: &[&wgpu::TextureView],
        windows: &[u64],
        params: &P,
        groups: [u32; 3],
        serial: bool,
    ) -> Result<u64> {
        debug_assert_eq!(kernel.binds.len(), buffers.len() + textures.len() + 1);
        debug_assert_eq!(
            kernel.binds.iter().filter(|&&b| b == Bind::Params).count(),
            1
        );
        let limit = self.gpu.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > limit) {
            return Err(crate::error::GpuError::Grid {
                kernel: kernel.name.to_string(),
                groups,
                limit,
            }
            .into());
        }
        let pipeline = self.gpu.pipeline(kernel)?;
        let offset = self.params.len().next_multiple_of(self.align);
        let bytes = bytemuck::bytes_of(params);
        self.params.resize(offset, 0);
        self.params.extend_from_slice(bytes);
        self.pending.push(Pending {
            phase: self.phase,
            pipeline,
            kernel: kernel.name,
            binds: kernel.binds,
            windows: windows.to_vec(),
            buffers: buffers.iter().map(|b| (*b).clone()).collect(),
            textures: textures.iter().map(|t| (*t).clone()).collect(),
            offset: offset as u32,
            size: bytes.len() as u64,
            groups,
            serial,
            before: std::mem::take(&mut self.before),
        });
        Ok(offset as u64)
    }

    pub fn finish(self) -> Result<Plan> {
        if !self.before.is_empty() {
            // Copies ride on the dispatch after them; a plan never ends with a loop.
            return Err(crate::error::GpuError::Kernel {
                kernel: self.label.into(),
                message: "a copy was asked for after the plan's last dispatch (a bug in rnn-wgpu)"
                    .into(),
            }
            .into());
        }
        let size = self.params.len().max(16);
        let params = self.gpu.scoped("a plan's kernel parameters", |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size: size.next_multiple_of(16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.gpu.queue().write_buffer(&params, 0, &self.params);
        let max_uniform = self.gpu.limits().max_uniform_buffer_binding_size;
        let gpu = self.gpu;
        let dispatch = |p: Pending| -> Result<Dispatch> {
            let (mut buffers, mut textures) = (p.buffers.iter(), p.textures.iter());
            let mut constants = 0;
            let mut entries = Vec::with_capacity(p.binds.len());
            for (i, kind) in p.binds.iter().enumerate() {
                let resource = match kind {
                    Bind::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &params,
                        offset: 0,
                        size: wgpu::BufferSize::new(p.size),
                    }),
                    Bind::TextureReadWrite | Bind::TextureRead | Bind::TextureWrite => {
                        wgpu::BindingResource::TextureView(
                            textures.next().expect("a view per texture slot"),
                        )
                    }
                    Bind::Constant => {
                        // This binding's place among the windows.
                        let window = p.windows.get(constants).or(p.windows.last()).copied();
                        constants += 1;
                        // Kernels that read the window need the adapter to bind 64 KiB
                        // (checked where they are chosen); the others bind what it allows.
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: buffers.next().expect("a buffer per buffer slot"),
                            offset: window.unwrap_or(0),
                            size: wgpu::BufferSize::new(CONSTANT_WINDOW.min(max_uniform)),
                        })
                    }
                    Bind::Read | Bind::ReadWrite => buffers
                        .next()
                        .expect("a buffer per buffer slot")
                        .as_entire_binding(),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                });
            }
            let bind_group = gpu.scoped(&format!("`{}`'s bindings", p.kernel), |d| {
                d.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(p.kernel),
                    layout: &p.pipeline.layout,
                    entries: &entries,
                })
            })?;
            Ok(Dispatch {
                phase: p.phase,
                kernel: p.kernel,
                pipeline: p.pipeline,
                bind_group,
                offset: p.offset,
                groups: p.groups,
                serial: p.serial,
                before: p.before,
                access: schedule::Access::of(p.binds, &p.buffers, &p.textures),
            })
        };
        let dispatches = self
            .pending
            .into_iter()
            .map(dispatch)
            .collect::<Result<Vec<_>>>()?;
        let variants = self
            .variants
            .into_iter()
            .map(|(i, p)| Ok((i, dispatch(p)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan {
            dispatches,
            params,
            variants,
        })
    }
}

#[derive(Clone)]
struct Dispatch {
    phase: &'static str,
    kernel: &'static str,
    pipeline: Arc<Pipeline>,
    bind_group: wgpu::BindGroup,
    offset: u32,
    groups: [u32; 3],
    serial: bool,
    before: Vec<TextureCopy>,
    /// What it binds, for moving copies past it.
    access: schedule::Access,
}

/// A recorded sequence of dispatches, ready to encode again and again.
pub(crate) struct Plan {
    dispatches: Vec<Dispatch>,
    params: wgpu::Buffer,
    /// What [`Plan::variant`] puts in place of dispatches ([`PlanBuilder::with_variant`]).
    variants: Vec<(usize, Dispatch)>,
}

impl Plan {
    /// The buffer holding every dispatch's parameters.
    pub fn params(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// The plan's first `n` dispatches as a plan of their own (the same parameters), and the
    /// copies that ride on dispatch `n`: for a caller that replaces the rest, those copies
    /// first ([`PlanBuilder::copies_before_next`]).
    pub fn prefix(&self, n: usize) -> (Plan, Vec<TextureCopy>) {
        let plan = Plan {
            dispatches: self.dispatches[..n].to_vec(),
            params: self.params.clone(),
            variants: Vec::new(),
        };
        let copies = self
            .dispatches
            .get(n)
            .map(|d| d.before.clone())
            .unwrap_or_default();
        (plan, copies)
    }

    /// The plan with the dispatches recorded by [`PlanBuilder::with_variant`] in place (the
    /// same parameters' buffer), or `None` where it has none.
    pub fn variant(&self) -> Option<Plan> {
        (!self.variants.is_empty()).then(|| {
            let mut dispatches = self.dispatches.clone();
            for (i, d) in &self.variants {
                dispatches[*i] = d.clone();
            }
            Plan {
                dispatches,
                params: self.params.clone(),
                variants: Vec::new(),
            }
        })
    }

    /// The name of every kernel dispatched, in order, repeats included.
    pub fn kernel_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.dispatches.iter().map(|d| d.kernel)
    }

    fn encode_one(d: &Dispatch, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&d.pipeline.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[d.offset]);
        let [x, y, z] = d.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Runs `plans` after `prepare` (copies and clears that must precede the dispatches) and
/// before `finish` (copies of their results).
///
/// Every driver but [`Driver::Naive`] records everything into one command buffer and submits
/// once without waiting; [`Driver::Naive`] submits and waits after every time step.
pub(crate) fn run(
    gpu: &Gpu,
    label: &str,
    driver: Driver,
    prepare: impl FnOnce(&mut wgpu::CommandEncoder),
    plans: &[&Plan],
    finish: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<()> {
    let new_encoder = || {
        gpu.device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    };
    let mut encoder = new_encoder();
    prepare(&mut encoder);
    match driver {
        Driver::Auto | Driver::PerStep | Driver::Persistent => {
            let all: Vec<&Dispatch> = plans.iter().flat_map(|p| &p.dispatches).collect();
            // Copies between passes, as few places as they allow (`schedule`).
            let copies = schedule::schedule(&all);
            copies[0].iter().for_each(|c| c.encode(&mut encoder));
            {
                let begin = |encoder: &mut wgpu::CommandEncoder| {
                    encoder
                        .begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some(label),
                            timestamp_writes: None,
                        })
                        .forget_lifetime()
                };
                let mut pass = begin(&mut encoder);
                for (i, d) in all.iter().enumerate() {
                    if i > 0 && !copies[i].is_empty() {
                        // Copies end the pass; the dispatches go on in a new one.
                        drop(pass);
                        copies[i].iter().for_each(|c| c.encode(&mut encoder));
                        pass = begin(&mut encoder);
                    }
                    Plan::encode_one(d, &mut pass);
                }
            }
            copies[all.len()]
                .iter()
                .for_each(|c| c.encode(&mut encoder));
            finish(&mut encoder);
            gpu.submit(label, encoder)
        }
        Driver::Naive => {
            let all: Vec<&Dispatch> = plans.iter().flat_map(|p| &p.dispatches).collect();
            let mut i = 0;
            while i < all.len() {
                // Non-serial dispatches up to the next time step share one submit; each
                // time step is then submitted on its own and waited for.
                {
                    let begin = |encoder: &mut wgpu::CommandEncoder| {
                        encoder
                            .begin_compute_pass(&Default::default())
                            .forget_lifetime()
                    };
                    let mut pass = begin(&mut encoder);
                    let mut step = false;
                    while i < all.len() && !step {
                        step = all[i].serial;
                        if !all[i].before.is_empty() {
                            drop(pass);
                            all[i].before.iter().for_each(|c| c.encode(&mut encoder));
                            pass = begin(&mut encoder);
                        }
                        Plan::encode_one(all[i], &mut pass);
                        i += 1;
                    }
                }
                gpu.submit_and_wait(label, std::mem::replace(&mut encoder, new_encoder()))?;
            }
            finish(&mut encoder);
            gpu.submit(label, encoder)
        }
    }
}

/// Runs `plans` once with a GPU timestamp around each phase (a run of dispatches with the same
/// [`PlanBuilder::phase`], each in its own compute pass) and returns milliseconds per phase,
/// in order, phases of the same name summed. Needs [`Gpu::has_timestamps`].
///
/// With `RNN_WGPU_TIME_KERNELS` set (a developer's knob, for tuning), each kernel is timed
/// instead of each phase: the names are kernel names; `=wall` times each by the host's clock
/// instead of timestamps ([`wall_times`]).
pub(crate) fn run_timed(
    gpu: &Gpu,
    prepare: impl FnOnce(&mut wgpu::CommandEncoder),
    plans: &[&Plan],
    finish: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<Vec<(&'static str, f64)>> {
    let all: Vec<&Dispatch> = plans.iter().flat_map(|p| &p.dispatches).collect();
    let knob = std::env::var("RNN_WGPU_TIME_KERNELS").ok();
    let by_kernel = knob.is_some();
    // `each`: every dispatch timed alone (its kernel and grid printed to stderr).
    let each = knob.as_deref() == Some("each");
    let name = |d: &Dispatch| if by_kernel { d.kernel } else { d.phase };
    let mut runs: Vec<&[&Dispatch]> = Vec::new();
    let mut start = 0;
    for i in 1..=all.len() {
        // A dispatch with a copy before it starts a pass (the copy is not timed).
        if i == all.len() || each || name(all[i]) != name(all[start]) || !all[i].before.is_empty() {
            runs.push(&all[start..i]);
            start = i;
        }
    }
    let times = if knob.as_deref() == Some("wall") {
        wall_times(gpu, prepare, &runs, finish)?
    } else {
        gpu_times(gpu, prepare, &runs, finish)?
    };
    let mut phases: Vec<(&'static str, f64)> = Vec::new();
    for (run, ms) in runs.iter().zip(times) {
        if each {
            eprintln!("{:8.3} ms  {} {:?}", ms, run[0].kernel, run[0].groups);
        }
        match phases.iter_mut().find(|(p, _)| *p == name(run[0])) {
            Some((_, total)) => *total += ms,
            None => phases.push((name(run[0]), ms)),
        }
    }
    Ok(phases)
}

/// Milliseconds of each run in `runs`, from GPU timestamps at its compute pass's start and end.
fn gpu_times(
    gpu: &Gpu,
    prepare: impl FnOnce(&mut wgpu::CommandEncoder),
    runs: &[&[&Dispatch]],
    finish: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<Vec<f64>> {
    let count = (2 * runs.len()).max(2) as u32;
    let queries = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("phase timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolved = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("phase timestamps"),
        size: u64::from(count) * 8,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    prepare(&mut encoder);
    for (n, run) in runs.iter().enumerate() {
        run[0].before.iter().for_each(|c| c.encode(&mut encoder));
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(run[0].phase),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * n as u32),
                end_of_pass_write_index: Some(2 * n as u32 + 1),
            }),
        });
        for d in run.iter() {
            Plan::encode_one(d, &mut pass);
        }
    }
    finish(&mut encoder);
    encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
    gpu.submit("timed run", encoder)?;
    let ticks: Vec<u64> =
        bytemuck::pod_collect_to_vec(&gpu.read_bytes(&resolved, 0, u64::from(count) * 8)?);
    let ns_per_tick = f64::from(gpu.queue().get_timestamp_period());
    Ok((0..runs.len())
        .map(|n| ticks[2 * n + 1].saturating_sub(ticks[2 * n]) as f64 * ns_per_tick / 1e6)
        .collect())
}

/// Milliseconds of each run in `runs` by the host's clock (`RNN_WGPU_TIME_KERNELS=wall`): each
/// run submitted alone and waited for, less an empty submit's time; its copies go in a submit
/// of their own before it. For adapters whose timestamps do not wait for the work (lavapipe's,
/// in some plans: ARCHITECTURE.md, "lavapipe's costs").
fn wall_times(
    gpu: &Gpu,
    prepare: impl FnOnce(&mut wgpu::CommandEncoder),
    runs: &[&[&Dispatch]],
    finish: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<Vec<f64>> {
    let encoder = || gpu.device().create_command_encoder(&Default::default());
    let mut first = encoder();
    prepare(&mut first);
    gpu.submit_and_wait("timed run", first)?;
    let t = std::time::Instant::now();
    gpu.submit_and_wait("timed run", encoder())?;
    let empty = t.elapsed().as_secs_f64();
    let mut times = Vec::with_capacity(runs.len());
    for run in runs {
        if !run[0].before.is_empty() {
            let mut copies = encoder();
            run[0].before.iter().for_each(|c| c.encode(&mut copies));
            gpu.submit_and_wait("timed run", copies)?;
        }
        let mut e = encoder();
        {
            let mut pass = e.begin_compute_pass(&Default::default());
            for d in run.iter() {
                Plan::encode_one(d, &mut pass);
            }
        }
        let t = std::time::Instant::now();
        gpu.submit_and_wait("timed run", e)?;
        times.push((t.elapsed().as_secs_f64() - empty).max(0.0) * 1e3);
    }
    let mut last = encoder();
    finish(&mut last);
    gpu.submit_and_wait("timed run", last)?;
    Ok(times)
}

/// Every kernel the crate dispatches.
#[cfg(test)]
pub(crate) fn all_kernels() -> Vec<&'static Kernel> {
    vec![
        &matmul::MATMUL,
        &matmul::MATMUL_DIRECT,
        &matmul::MATMUL_NT4,
        &matmul::MATMUL_TN4,
        &matmul::MATMUL_NN4,
        &matmul::MATMUL_DIRECT_NARROW,
        &matmul::MATMUL_NT4_NARROW,
        &matmul::MATMUL_NT4_SG,
        &matmul::MATMUL_NT4_SG_NARROW,
        &matmul::MATMUL_NT4_SG_UA,
        &matmul::MATMUL_NT4_SG_UA_NARROW,
        &matmul::MATMUL_TN4_SG,
        &matmul::MATMUL_TN4_SG_NARROW,
        &matmul::MATMUL_NT4_BC,
        &matmul::MATMUL_NT4_BC4,
        &matmul::MATMUL_NT4_BC_TEX,
        &matmul::MATMUL_NT4_BC4_TEX,
        &matmul::MATMUL_NT4_BC_TT,
        &matmul::MATMUL_NT4_BC4_TT,
        &loss::HEAD_CROSS_ENTROPY[0],
        &loss::HEAD_CROSS_ENTROPY[1],
        &loss::HEAD_CROSS_ENTROPY[2],
        &loss::HEAD_CROSS_ENTROPY[3],
        &loss::HEAD_CROSS_ENTROPY_TO_MIRROR[0],
        &loss::HEAD_CROSS_ENTROPY_TO_MIRROR[1],
        &loss::HEAD_CROSS_ENTROPY_TO_MIRROR[2],
        &loss::HEAD_CROSS_ENTROPY_TO_MIRROR[3],
        &matmul::MATMUL_TN_BC,
        &matmul::MATMUL_TN_BC4,
        matmul::tn_bcw(true),
        matmul::tn_bcw(false),
        &matmul::MATMUL_TN_TEX,
        &matmul::MATMUL_TN_TEX_UA,
        &matmul::MATMUL_NN_TEX,
        &matmul::MATMUL_NN_TEX_UA,
        &matmul::MATMUL_TN4_NARROW,
        &matmul::MATMUL_NN4_NARROW,
        &recurrence::PREPARE,
        &recurrence::PREPARE_TEX,
        &reduce::COLSUM,
        &reduce::SUM_PARTS,
        &transpose::TRANSPOSE,
        &transpose::TRANSPOSE4,
        &loss::MSE,
        &loss::CROSS_ENTROPY,
        &loss::CROSS_ENTROPY8,
        &loss::CROSS_ENTROPY8_TEX,
        &loss::TOTAL,
        &loss::TOTAL8,
        &loss::MASK_SCALE,
        &loss::MASK_COUNT,
        &loss::CHUNK_SCALE,
        &diagnostics::STEP_NORMS,
        &spectral::POWER_ITERATION,
        &optim::GRAD_NORM,
        &optim::GRAD_NORM4,
        &optim::GRAD_NORM4_TEX,
        &optim::SGD4_TEX,
        &optim::ADAM4_TEX,
        &optim::SGD4,
        &optim::ADAM4,
        &optim::SGD,
        &optim::ADAM,
        &directions::REVERSE_STEPS,
        &directions::MERGE_REVERSED,
        &directions::CONCAT,
        &directions::SPLIT,
        &layout::SWAP_LEADING,
        &layout::REPACK,
        &dropout::DROPOUT_FORWARD,
        &dropout::DROPOUT_BACKWARD,
        &embed::EMBED,
        &embed::EMBED_GRAD,
        &embed::TOKENS_TABLE,
        &embed::TOKENS_TABLE4_TEX,
        &embed::EMBED4,
        &embed::EMBED4_U,
        &embed::EMBED_GRAD4,
        &embed::EMBED_GRAD4_TEX,
        &embed::EMBED_GRAD4_SEQ,
        &embed::EMBED_GRAD4_SEQ_TEX,
        &activation::ACT_FORWARD,
        &activation::ACT_BACKWARD,
    ]
    .into_iter()
    .chain(transition::kernels())
    .chain(recurrence::all_kernels())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, GpuError};

    /// A shader that does not build and a dispatch past the adapter's grid come back as
    /// errors naming the kernel, and the `Gpu` goes on working.
    #[test]
    fn a_broken_shader_and_a_grid_past_the_limit_are_errors_and_the_gpu_goes_on() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("this test needs an adapter and none could be opened: {e}"));
        static BROKEN: Kernel = Kernel {
            name: "broken_on_purpose",
            source: "@compute @workgroup_size(1) fn main( { }",
            entry: "main",
            binds: &[Bind::Params],
            constants: &[],
        };
        match gpu.pipeline(&BROKEN) {
            Err(Error::Gpu(GpuError::Kernel { kernel, .. })) => {
                assert_eq!(kernel, "broken_on_purpose")
            }
            other => panic!("a broken shader built: {other:?}"),
        }
        let bufs: Vec<wgpu::Buffer> = (0..4)
            .map(|_| gpu.storage_buffer("grid test", 64).unwrap())
            .collect();
        let refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
        let limit = gpu.limits().max_compute_workgroups_per_dimension;
        let mut plan = PlanBuilder::new(&gpu, "grid test");
        let params = [0u32; 8];
        for groups in [[limit + 1, 1, 1], [1, 1, limit + 1]] {
            match plan.push(&directions::REVERSE_STEPS, &refs, &params, groups, false) {
                Err(Error::Gpu(GpuError::Grid {
                    kernel, limit: l, ..
                })) => {
                    assert_eq!((kernel.as_str(), l), ("reverse_steps", limit))
                }
                other => panic!("{groups:?} workgroups were taken: {other:?}"),
            }
        }
        // Still usable: a plan runs and a tensor round-trips.
        plan.push(&directions::REVERSE_STEPS, &refs, &params, [1, 1, 1], false)
            .unwrap();
        let plan = plan.finish().unwrap();
        run(&gpu, "after errors", Driver::Auto, |_| {}, &[&plan], |_| {}).unwrap();
        let t = crate::Tensor::from_slice(&gpu, &[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(t.to_vec().unwrap(), [1.0, 2.0, 3.0]);
    }

    /// A lost device (here destroyed on purpose, on a `Gpu` of its own) makes every later call
    /// an error that says the `Gpu` is no longer usable, never a panic or a hang.
    #[test]
    fn a_lost_device_is_an_error_on_every_later_call() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("this test needs an adapter and none could be opened: {e}"));
        let t = crate::Tensor::from_slice(&gpu, &[2, 1, 1], &[1.0, 2.0]).unwrap();
        let mut rnn = crate::Rnn::new(&gpu, crate::RnnConfig::new(1, 3, 1), 0).unwrap();
        rnn.forward(&t, None).unwrap();
        gpu.device().destroy();
        let lost = |r: Result<()>, what: &str| match r {
            Err(Error::Gpu(GpuError::DeviceLost { .. })) => {}
            other => panic!("{what} after the device was lost: {other:?}"),
        };
        lost(t.to_vec().map(drop), "to_vec");
        lost(crate::Tensor::zeros(&gpu, &[4]).map(drop), "zeros");
        lost(rnn.forward(&t, None).map(drop), "forward");
        let msg = t.to_vec().unwrap_err().to_string();
        assert!(
            msg.contains("no longer usable") && msg.contains("Gpu::new"),
            "{msg}"
        );
    }

    /// Parses and validates `source`, with subgroup operations (in compute shaders, as the
    /// device asks for them) only when `subgroups`: the other kernels must build without.
    fn validate(name: &str, source: &str, subgroups: bool) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let caps = if subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        module_info(name, source, &module, caps);
        module
    }

    /// Validates `module` (parsed from `source`) with compute-stage subgroups and `caps`, and
    /// returns what naga learnt of it (which globals each entry point uses); panics naming
    /// `name` where it is invalid.
    fn module_info(
        name: &str,
        source: &str,
        module: &naga::Module,
        caps: naga::valid::Capabilities,
    ) -> naga::valid::ModuleInfo {
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all())
            .validate(module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)))
    }

    /// Every file in `shaders/` parses and validates, with no adapter needed.
    #[test]
    fn every_shader_file_validates() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("shaders/ exists") {
            let path = entry.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "wgsl") {
                let mut source = std::fs::read_to_string(&path).expect("readable shader");
                // The transition kernels' shared start is validated inside each of them, and
                // matmul_tn_bcw's entry point only after the crate's copies of the functions
                // it calls (`matmul::tn_bcw`, among all_kernels()).
                // The state fragments are validated inside every blocked recurrence kernel
                // (`recurrence::assemble_state`, among all_kernels()).
                if path.ends_with("transition_params.wgsl")
                    || path.ends_with("matmul_tn_windows.wgsl")
                    || path.ends_with("state_buffers.wgsl")
                    || path.ends_with("state_textures.wgsl")
                {
                    continue;
                }
                // A file that continues another (the subgroup kernels) is validated after it,
                // as its kernels build, with subgroups; other files without, unless named as
                // subgroup kernels (below).
                // (A continued file may itself continue another.)
                let continues = |text: &str| {
                    text.strip_prefix("// Appended to ")
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(|b| b.trim_end_matches(',').to_owned())
                };
                let base = continues(&source);
                let mut next = base.clone();
                while let Some(b) = next {
                    let text = std::fs::read_to_string(format!("{dir}/{b}"))
                        .unwrap_or_else(|e| panic!("{}: {b}: {e}", path.display()));
                    next = continues(&text);
                    source = text + &source;
                }
                // A skeleton is validated with every cell spliced in, as the crate builds it;
                // a transition kernel file as its kernels are assembled.
                let sources: Vec<String> = if source.contains(transition::PRODUCTS_MARK) {
                    vec![transition::assemble_source(&source)]
                } else if source.contains(recurrence::CELL_MARK) {
                    recurrence::Cell::ALL
                        .iter()
                        .map(|&c| recurrence::assemble(&source, None, c))
                        .collect()
                } else {
                    vec![source]
                };
                // So is a file of subgroup kernels of its own (`*_subgroup.wgsl`).
                let subgroups = base.is_some()
                    || path
                        .file_stem()
                        .is_some_and(|s| s.to_string_lossy().ends_with("_subgroup"));
                for source in sources {
                    validate(&path.display().to_string(), &source, subgroups);
                }
                n += 1;
            }
        }
        assert!(
            n >= 5,
            "expected every kernel family in shaders/, found {n} files"
        );
    }

    /// Every kernel validates with the `override` values it is built with (the validation of
    /// each file above sees only their defaults), and every value it sets names an override.
    #[test]
    fn every_kernel_validates_with_its_override_values() {
        let mut with_values = 0;
        for k in all_kernels() {
            let module = validate(k.name, k.source, true);
            for (name, _) in k.constants {
                assert!(
                    module
                        .overrides
                        .iter()
                        .any(|(_, o)| o.name.as_deref() == Some(*name)),
                    "{}: sets `{name}`, which its source does not declare",
                    k.name
                );
            }
            let info = module_info(k.name, k.source, &module, naga::valid::Capabilities::all());
            let constants: naga::back::PipelineConstants = k
                .constants
                .iter()
                .map(|(n, v)| ((*n).to_string(), *v))
                .collect();
            let (resolved, _) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, k.entry)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{}: overrides {:?}: {e}", k.name, k.constants));
            let what = format!("{} with {:?}", k.name, k.constants);
            module_info(&what, k.source, &resolved, naga::valid::Capabilities::all());
            with_values += usize::from(!k.constants.is_empty());
        }
        assert!(
            with_values >= 10,
            "only {with_values} kernels set overrides"
        );
    }

    /// `k`'s module, validated, with its analysis and the index of `k`'s entry point.
    fn parsed(k: &Kernel) -> (naga::Module, naga::valid::ModuleInfo, usize) {
        let module = validate(k.name, k.source, true);
        let info = module_info(k.name, k.source, &module, naga::valid::Capabilities::all());
        let index = module
            .entry_points
            .iter()
            .position(|e| e.name == k.entry)
            .unwrap_or_else(|| panic!("{}: no entry point `{}`", k.name, k.entry));
        (module, info, index)
    }

    /// Every kernel reads its parameters once, in its entry point's first statement, into a
    /// private copy that everything else reads: on Mesa 22's lavapipe a storage load inside a
    /// loop or a branch is a loop over the lanes even at a constant address, and at the start
    /// one scalar load (ARCHITECTURE.md, "lavapipe's costs").
    #[test]
    fn kernels_copy_their_parameters_first() {
        use naga::{AddressSpace, Expression, Statement};
        for k in all_kernels() {
            let (module, info, index) = parsed(k);
            let ep = &module.entry_points[index];
            let uses = info.get_entry_point(index);
            let slot = k
                .binds
                .iter()
                .position(|&b| b == Bind::Params)
                .expect("every kernel has a parameter slot") as u32;
            let params = module
                .global_variables
                .iter()
                .find(|(h, v)| {
                    !uses[*h].is_empty() && v.binding.as_ref().is_some_and(|b| b.binding == slot)
                })
                .map(|(h, _)| h)
                .unwrap_or_else(|| panic!("{}: no parameters at binding {slot}", k.name));
            let global = |f: &naga::Function, e: naga::Handle<Expression>| match f.expressions[e] {
                Expression::GlobalVariable(g) => Some(g),
                _ => None,
            };
            let is_params = |f: &naga::Function, e| global(f, e) == Some(params);
            let reads = |f: &naga::Function| {
                f.expressions
                    .iter()
                    .filter(|(h, _)| is_params(f, *h))
                    .count()
            };
            for (_, f) in module.functions.iter() {
                assert_eq!(
                    reads(f),
                    0,
                    "{}: function {:?} reads the parameters' binding, not the private copy",
                    k.name,
                    f.name
                );
            }
            let f = &ep.function;
            assert_eq!(
                reads(f),
                1,
                "{}: the parameters' binding read more than once",
                k.name
            );
            let first = f.body.iter().find(|s| !matches!(s, Statement::Emit(_)));
            let copied = match first {
                Some(Statement::Store { pointer, value }) => {
                    let private = |g: naga::Handle<naga::GlobalVariable>| {
                        module.global_variables[g].space == AddressSpace::Private
                    };
                    let to_private = global(f, *pointer).is_some_and(private);
                    let from_params = match f.expressions[*value] {
                        Expression::Load { pointer } => is_params(f, pointer),
                        _ => false,
                    };
                    to_private && from_params
                }
                _ => false,
            };
            assert!(
                copied,
                "{}: the entry point's first statement must copy the parameters to a private",
                k.name
            );
        }
    }

    /// Every kernel's entry point exists, and the bindings it uses agree with the layout
    /// declared in Rust: each of the declared kind, the parameters (a read-only storage
    /// struct, never `var<uniform>`: see [`Bind::Params`]) read, after every buffer.
    #[test]
    fn kernels_match_their_declared_bindings() {
        for k in all_kernels() {
            let (module, info, index) = parsed(k);
            let ep = &module.entry_points[index];
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}", k.name);
            let uses = info.get_entry_point(index);
            let mut params_read = false;
            for (handle, var) in module.global_variables.iter() {
                // A file may hold kernels with bindings of their own: only this entry
                // point's count.
                let Some(binding) = var.binding.as_ref().filter(|_| !uses[handle].is_empty())
                else {
                    continue;
                };
                assert_eq!(binding.group, 0, "{}", k.name);
                let declared = k.binds.get(binding.binding as usize).unwrap_or_else(|| {
                    panic!(
                        "{}: binding {} is read but the kernel declares {}",
                        k.name,
                        binding.binding,
                        k.binds.len()
                    )
                });
                let is_struct =
                    matches!(module.types[var.ty].inner, naga::TypeInner::Struct { .. });
                let want = match var.space {
                    naga::AddressSpace::Uniform => Bind::Constant,
                    naga::AddressSpace::Storage { access } => {
                        if access.contains(naga::StorageAccess::STORE) {
                            Bind::ReadWrite
                        } else if is_struct {
                            Bind::Params
                        } else {
                            Bind::Read
                        }
                    }
                    naga::AddressSpace::Handle => match module.types[var.ty].inner {
                        naga::TypeInner::Image {
                            class: naga::ImageClass::Storage { access, .. },
                            ..
                        } if access == naga::StorageAccess::STORE => Bind::TextureWrite,
                        naga::TypeInner::Image {
                            class: naga::ImageClass::Storage { access, .. },
                            ..
                        } if access.contains(naga::StorageAccess::STORE) => Bind::TextureReadWrite,
                        naga::TypeInner::Image {
                            class: naga::ImageClass::Storage { .. },
                            ..
                        } => Bind::TextureRead,
                        ref other => panic!("{}: unexpected handle {other:?}", k.name),
                    },
                    other => panic!("{}: unexpected address space {other:?}", k.name),
                };
                assert_eq!(*declared, want, "{}: binding {}", k.name, binding.binding);
                if want == Bind::Params {
                    // After every buffer; only textures may follow.
                    let after = &k.binds[binding.binding as usize + 1..];
                    assert!(
                        after.iter().all(|b| {
                            matches!(
                                b,
                                Bind::TextureRead | Bind::TextureReadWrite | Bind::TextureWrite
                            )
                        }),
                        "{}: only textures may follow the parameters",
                        k.name
                    );
                    params_read = true;
                }
            }
            assert!(params_read, "{}: never reads its parameters", k.name);
            let params = k.binds.iter().filter(|&&b| b == Bind::Params).count();
            assert_eq!(params, 1, "{}: one parameter slot", k.name);
        }
    }
}
