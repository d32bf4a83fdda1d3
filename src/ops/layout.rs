//! `shaders/layout.wgsl`: batch-first `[B, T, ...]` to time-major `[T, B, ...]` and back, and
//! matrices repacked between block layouts (padded for the vec4 kernels, or cropped back).

use super::{At, PlanBuilder, groups, u};
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

pub(crate) static REPACK: Kernel = Kernel {
    name: "repack",
    entry: "repack",
    ..SWAP_LEADING
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Repack {
    rows_s: u32,
    cols_s: u32,
    rows_d: u32,
    cols_d: u32,
    blocks: u32,
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

/// One side of a [`repack`]: a matrix of `rows` rows, each `blocks` blocks of `cols` values.
#[derive(Clone, Copy)]
pub(crate) struct Blocks<'a> {
    pub at: At<'a>,
    pub rows: usize,
    pub cols: usize,
}

/// `dst` from `src`, both `blocks` blocks wide: each block's top-left corner copied, the rest
/// of `dst` zero. Pads a matrix for the vec4 kernels, or crops the padding off again.
pub(crate) fn repack(
    plan: &mut PlanBuilder,
    blocks: usize,
    src: Blocks,
    dst: Blocks,
) -> Result<()> {
    let params = Repack {
        rows_s: u(src.rows),
        cols_s: u(src.cols),
        rows_d: u(dst.rows),
        cols_d: u(dst.cols),
        blocks: u(blocks),
        src_off: u(src.at.off),
        dst_off: u(dst.at.off),
        _pad: 0,
    };
    let grid = [
        groups(blocks * dst.cols, 64).min(65535),
        u(dst.rows.min(65535)),
        1,
    ];
    plan.push(&REPACK, &[src.at.buf, dst.at.buf], &params, grid, false)?;
    Ok(())
}
