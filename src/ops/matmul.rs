//! `shaders/matmul.wgsl`: `C = op(A) op(B) (+ C) (+ bias) (+ bias2)`, for every hoisted multiply.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};

pub(crate) static MATMUL: Kernel = Kernel {
    name: "matmul",
    source: include_str!("../../shaders/matmul.wgsl"),
    entry: "matmul",
    binds: &[
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::Uniform,
    ],
    constants: &[],
};

pub(crate) static MATMUL_DIRECT: Kernel = direct("matmul_direct");

/// A direct kernel by name: all share `matmul`'s bindings and parameters.
const fn direct(name: &'static str) -> Kernel {
    Kernel {
        name,
        source: include_str!("../../shaders/matmul.wgsl"),
        entry: name,
        binds: MATMUL.binds,
        constants: &[],
    }
}

pub(crate) static MATMUL_NT4: Kernel = direct("matmul_nt4");
pub(crate) static MATMUL_TN4: Kernel = direct("matmul_tn4");
pub(crate) static MATMUL_NN4: Kernel = direct("matmul_nn4");

/// Output tile edge of one `matmul` workgroup (`TILE` in the shader).
const TILE: usize = 64;
/// Output block of one direct workgroup, rows x columns: one SIMD group of 8 invocations on
/// lavapipe, so even a 64 x 64 weight gradient spreads over 8 workgroups (CPU threads).
const DIRECT_TILE: (usize, usize) = (8, 64);

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
    _pad: [u32; 3],
}

/// One multiply `C[m, n] = op(A)[m, k] op(B)[k, n]`, with its options.
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
        }
    }
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
fn direct_kernel(g: &Gemm) -> &'static Kernel {
    let four = |v: usize| v.is_multiple_of(4);
    let offsets = four(g.a.off) && four(g.b.off);
    match (g.trans_a, g.trans_b) {
        (false, true) if offsets && four(g.k) => &MATMUL_NT4,
        (true, false) if offsets && four(g.m) && four(g.n) => &MATMUL_TN4,
        (false, false) if offsets && four(g.k) && four(g.n) => &MATMUL_NN4,
        _ => &MATMUL_DIRECT,
    }
}

/// Records `g` into `plan`.
pub(crate) fn matmul(plan: &mut PlanBuilder, g: Gemm) -> Result<()> {
    let flags = g.trans_a as u32
        | (g.trans_b as u32) << 1
        | (g.accumulate as u32) << 2
        | (g.bias.is_some() as u32) << 3
        | (g.bias2.is_some() as u32) << 4
        | (vec_store(&g) as u32) << 5;
    // An unused bias binding still needs a buffer: A's serves.
    let bias_buf = g.bias.map_or(g.a.buf, |b| b.buf);
    let params = Params {
        m: u(g.m),
        n: u(g.n),
        k: u(g.k),
        flags,
        a_off: u(g.a.off),
        b_off: u(g.b.off),
        c_off: u(g.c.off),
        bias_off: u(g.bias.map_or(0, |b| b.off)),
        bias2_off: u(g.bias2.map_or(0, |b| b.off)),
        _pad: [0; 3],
    };
    let kernel = if plan.gpu().direct_kernels() {
        direct_kernel(&g)
    } else {
        &MATMUL
    };
    let (rows, cols) = if std::ptr::eq(kernel, &MATMUL) {
        (TILE, TILE)
    } else {
        DIRECT_TILE
    };
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
