//! `shaders/optim.wgsl`: global gradient norm, SGD with momentum, Adam and AdamW over all
//! parameters.

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

/// The vec4 forms for 8-lane subgroups (`shaders/optim_vec4.wgsl`).
const fn vec4(name: &'static str) -> Kernel {
    Kernel {
        name,
        source: concat!(
            include_str!("../../shaders/optim.wgsl"),
            include_str!("../../shaders/optim_vec4.wgsl")
        ),
        entry: name,
        binds: BINDS,
        constants: &[],
    }
}
pub(crate) static GRAD_NORM4: Kernel = vec4("grad_norm4");
pub(crate) static SGD4: Kernel = vec4("sgd4");
pub(crate) static ADAM4: Kernel = vec4("adam4");

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
    let (norm, sgd, adam_k) = if four {
        (&GRAD_NORM4, &SGD4, &ADAM4)
    } else {
        (&GRAD_NORM, &SGD, &ADAM)
    };
    let norm_offset = plan.push(norm, &bufs, params, [1, 1, 1], false)?;
    // AdamW is Adam with a decoupled decay (`UpdateParams::decoupled`).
    let kernel = if adam { adam_k } else { sgd };
    // 256 invocations per workgroup (of 4 parameters each in the vec4 forms) on a 2-D grid: x
    // at most 65535 workgroups.
    let per = if four { 1024 } else { 256 };
    let total = (params.n as usize).div_ceil(per);
    let x = total.min(65535);
    let y = total.div_ceil(x);
    let update_offset = plan.push(kernel, &bufs, params, [u(x), u(y), 1], false)?;
    Ok([norm_offset, update_offset])
}
