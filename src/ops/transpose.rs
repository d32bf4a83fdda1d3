//! `shaders/transpose.wgsl`: `[rows, cols]` to `[cols, kp]`, zero-padded to `kp` columns.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static TRANSPOSE: Kernel = Kernel {
    name: "transpose",
    source: include_str!("../../shaders/transpose.wgsl"),
    entry: "transpose",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

pub(crate) static TRANSPOSE4: Kernel = Kernel {
    name: "transpose4",
    entry: "transpose4",
    ..TRANSPOSE
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    src_off: u32,
    dst_off: u32,
    kp: u32,
    _pad: [u32; 3],
}

/// `rows` rounded up to a multiple of 4: the row length of a transpose.
pub(crate) fn padded(rows: usize) -> usize {
    rows.next_multiple_of(4)
}

/// Writes `src` `[rows, cols]` transposed into `dst` (element offset a multiple of 4) as
/// `[cols, padded(rows)]`, the padding zero.
pub(crate) fn transpose(
    plan: &mut PlanBuilder,
    rows: usize,
    cols: usize,
    src: At,
    dst: At,
) -> Result<()> {
    debug_assert!(dst.off.is_multiple_of(4));
    let kp = padded(rows);
    let params = Params {
        rows: u(rows),
        cols: u(cols),
        src_off: u(src.off),
        dst_off: u(dst.off / 4),
        kp: u(kp),
        _pad: [0; 3],
    };
    let (kernel, ys) = if cols.is_multiple_of(4) && src.off.is_multiple_of(4) {
        (&TRANSPOSE4, cols / 4)
    } else {
        (&TRANSPOSE, cols)
    };
    plan.push(
        kernel,
        &[src.buf, dst.buf],
        &params,
        [groups(kp / 4, 64), u(ys.min(65535)), 1],
        false,
    )?;
    Ok(())
}
