//! `shaders/layout.wgsl`: batch-first `[B, T, ...]` to time-major `[T, B, ...]` and back.

use super::{PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static SWAP_LEADING: Kernel = Kernel {
    name: "swap_leading",
    source: include_str!("../../shaders/layout.wgsl"),
    entry: "swap_leading",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: u32,
    c: u32,
    n: u32,
    _pad: u32,
}

/// `dst` `[c, a, n]` = `src` `[a, c, n]`, 32-bit words, both from element 0.
pub(crate) fn swap_leading(
    plan: &mut PlanBuilder,
    (a, c, n): (usize, usize, usize),
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<()> {
    let params = Params {
        a: u(a),
        c: u(c),
        n: u(n),
        _pad: 0,
    };
    // Each dimension capped at 65535 workgroups; the kernel comes round.
    let grid = [groups(n, 64).min(65535), u((a * c).min(65535)), 1];
    plan.push(&SWAP_LEADING, &[src, dst], &params, grid, false)?;
    Ok(())
}
