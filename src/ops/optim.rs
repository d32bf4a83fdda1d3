//! `shaders/optim.wgsl`: global gradient norm, SGD with momentum, Adam and AdamW over all
//! parameters.

use super::state_texture::StateTexture;
use super::{PlanBuilder, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

const BINDS: &[Bind] = &[
    Bind::ReadWrite,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Read,
    Bind::Params,
];
const SOURCE: &str = include_str!("../../shaders/optim.wgsl");

pub(crate) static GRAD_NORM: Kernel = Kernel {
    name: "grad_norm",
    source: SOURCE,
    entry: "grad_norm",
    binds: BINDS,
    constants: &[],
};
pub(crate) static SGD: Kernel = Kernel {
    name: "sgd",
    source: SOURCE,
    entry: "sgd",
    binds: BINDS,
    constants: &[],
};
pub(crate) static ADAM: Kernel = Kernel {
    name: "adam",
    source: SOURCE,
    entry: "adam",
    binds: BINDS,
    constants: &[],
};

/// The vec4 forms' bindings: [`BINDS`]' buffers, a uniform window onto the norm (read or
/// not), the parameters, then the mirrors of the parameters, the gradient and both states
/// (read or not).
const BINDS4: &[Bind] = &[
    Bind::ReadWrite,
    Bind::Read,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::ReadWrite,
    Bind::Read,
    Bind::Constant,
    Bind::Params,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::TextureRead,
];

/// The vec4 forms for 8-lane subgroups (`shaders/optim_vec4.wgsl`), reading storage or (with
/// `MIRRORS`) texture mirrors.
const fn vec4(
    name: &'static str,
    entry: &'static str,
    constants: &'static [(&'static str, f64)],
) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/optim.wgsl"),
            include_str!("../../shaders/optim_vec4.wgsl")
        ),
        entry,
        binds: BINDS4,
        constants,
    }
}
const MIRRORS: &[(&str, f64)] = &[("MIRRORS", 1.0)];
pub(crate) static GRAD_NORM4: Kernel = vec4("grad_norm4", "grad_norm4", &[]);
pub(crate) static SGD4: Kernel = vec4("sgd4", "sgd4", &[]);
pub(crate) static ADAM4: Kernel = vec4("adam4", "adam4", &[]);
pub(crate) static GRAD_NORM4_TEX: Kernel = vec4("grad_norm4_tex", "grad_norm4", MIRRORS);
pub(crate) static SGD4_TEX: Kernel = vec4("sgd4_tex", "sgd4", MIRRORS);
pub(crate) static ADAM4_TEX: Kernel = vec4("adam4_tex", "adam4", MIRRORS);

/// Parameters of one update, laid out as the shader's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct UpdateParams {
    pub n: u32,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub clip: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub clip_value: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled: f32,
    /// The update's number, from 1 (recorded when its gradient is not finite).
    pub step: u32,
    pub _pad: [u32; 3],
}

/// Buffers of one optimizer: parameters, gradients, two state vectors and the norm.
pub(crate) struct OptimBuffers<'a> {
    pub param: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub s1: &'a wgpu::Buffer,
    pub s2: &'a wgpu::Buffer,
    pub norm: &'a wgpu::Buffer,
    /// AdamW: 1 where a parameter decays, 0 where not `[N]`.
    pub decay: Option<&'a wgpu::Buffer>,
}

/// Records the norm and the update; returns the byte offsets of their parameters.
pub(crate) fn update(
    plan: &mut PlanBuilder,
    adam: bool,
    params: &UpdateParams,
    b: &OptimBuffers,
) -> Result<[u64; 2]> {
    // The mask binding unread by the other rules still needs a buffer: the gradient serves.
    let bufs = [
        b.param,
        b.grad,
        b.s1,
        b.s2,
        b.norm,
        b.decay.unwrap_or(b.grad),
    ];
    // On lavapipe four parameters per invocation (every buffer is whole vec4s, see
    // `Gpu::storage_buffer`): with Adam over its 38k parameters the character model's step
    // took 49.5 ms against 51.6 on lavapipe.
    let four = plan.gpu().subgroup_kernels();
    let total = (params.n as usize).div_ceil(if four { 1024 } else { 256 });
    // 256 invocations per workgroup (of 4 parameters each in the vec4 forms) on a 2-D grid: x
    // at most 65535 workgroups.
    let x = total.min(65535);
    let grid = [u(x), u(total.div_ceil(x)), 1];
    if !four {
        let norm_offset = plan.push(&GRAD_NORM, &bufs, params, [1, 1, 1], false)?;
        let update_offset =
            plan.push(if adam { &ADAM } else { &SGD }, &bufs, params, grid, false)?;
        return Ok([norm_offset, update_offset]);
    }
    // Where textures serve, what the kernels read from mirrors, copied in first (the norm
    // through a window onto its buffer, which holds one).
    let n = params.n as usize;
    let gpu = plan.gpu().clone();
    let mirrors = if gpu.state_textures() {
        let m = |what: &str, len: usize| StateTexture::new(&gpu, what, len);
        let s2_len = (b.s2.size() / 4) as usize;
        match (
            m("parameters' mirror (optimizer)", n)?,
            m("gradient's mirror", n)?,
            m("optimizer state 1's mirror", n)?,
            m("optimizer state 2's mirror", s2_len.min(n))?,
        ) {
            (Some(a), Some(g), Some(s1), Some(s2)) => Some([a, g, s1, s2]),
            _ => None,
        }
    } else {
        None
    };
    // The norm's kernel writes it; the mirrors' update reads it through a window onto its
    // buffer, so its storage slot (which one dispatch may not bind as both) gets another
    // buffer; the storage forms' update reads it at that slot.
    let unread = gpu.placeholder_window().clone();
    let scratch = gpu.storage_buffer("unused binding", 4)?;
    let window_fits = b.norm.size() >= super::CONSTANT_WINDOW;
    let (kernels, views, (slot, window)) = match mirrors.filter(|_| window_fits) {
        Some(m) => {
            for (buffer, mirror) in [b.param, b.grad, b.s1, b.s2].into_iter().zip(&m) {
                plan.copy_to_mirror(buffer, mirror);
            }
            let views = m.each_ref().map(|t| t.view().clone());
            (
                [&GRAD_NORM4_TEX, &SGD4_TEX, &ADAM4_TEX],
                views,
                (&scratch, b.norm),
            )
        }
        None => {
            let blank = gpu.placeholder_texture().clone();
            let views = std::array::from_fn(|_| blank.clone());
            ([&GRAD_NORM4, &SGD4, &ADAM4], views, (b.norm, &unread))
        }
    };
    let views: Vec<&wgpu::TextureView> = views.iter().collect();
    let norm_bufs = [bufs[0], bufs[1], bufs[2], bufs[3], b.norm, bufs[5], &unread];
    let norm_offset = plan.push_textured(
        kernels[0],
        &norm_bufs,
        &views,
        &[0],
        params,
        [1, 1, 1],
        false,
    )?;
    // AdamW is Adam with a decoupled decay (`UpdateParams::decoupled`).
    let kernel = if adam { kernels[2] } else { kernels[1] };
    let update_bufs = [bufs[0], bufs[1], bufs[2], bufs[3], slot, bufs[5], window];
    let update_offset =
        plan.push_textured(kernel, &update_bufs, &views, &[0], params, grid, false)?;
    Ok([norm_offset, update_offset])
}
