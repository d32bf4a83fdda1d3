// Appended to matmul.wgsl (its parameters, bindings, store_cols and store_row_sums8).
// Products whose operands are read from texture mirrors of their buffers.
//
// matmul_tn_tex: C = A^T B for the weight gradients over all T·B rows, A [K, M] and B [K, N]
// read from texture mirrors of their buffers (ops::state_texture: vec4 i is texel
// (i % 1024, i / 1024)), p.a_off and p.b_off counting from the buffers' starts, for CPU
// adapters with 8-lane subgroups. On lavapipe a storage texture's load is a vector gather of
// four values (a storage buffer's a loop over the lanes), and the gathers, not the
// multiply-adds, bound these products: so a subgroup computes 16 rows of C x 64 columns, lane
// l the 8 columns from 8 l, and per 8 values of k each lane gathers 4 (or 5) texels of A (its
// own k's 16 values, handed to the others by shuffles from constant lanes) and 16 of B (its
// 8 columns at each k): 20 gathers for 1024 multiply-adds, where matmul_tn_bc makes 72 scalar
// gathers for 512. One dispatch, no windows.
//
// B's rows must be whole vec4s (N and p.b_off multiples of 4); A may start anywhere
// (ALIGNED_A false: each lane's values shifted out of 5 texels). With ROW_SUMS the sums of
// C's rows of A^T come too (the bias gradients).

override ALIGNED_A: bool = true; // A's rows start at whole vec4s (tn: M and p.a_off, nn: K and p.a_off multiples of 4)

@group(0) @binding(5) var amt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var bmt: texture_storage_2d<rgba32float, read>;

fn a_texel(i: u32) -> vec4<f32> {
    return textureLoad(amt, vec2<u32>(i % 1024u, i / 1024u));
}

fn b_texel(i: u32) -> vec4<f32> {
    return textureLoad(bmt, vec2<u32>(i % 1024u, i / 1024u));
}

// The 4 values from component s of x on (s < 4), continuing into y.
fn shifted(x: vec4<f32>, y: vec4<f32>, s: u32) -> vec4<f32> {
    let one = vec4<f32>(x.yzw, y.x);
    let two = vec4<f32>(x.zw, y.xy);
    let three = vec4<f32>(x.w, y.xyz);
    return select(select(select(x, one, s == 1u), two, s == 2u), three, s == 3u);
}

// C's 16 rows of A^T at one k (4 values of a row in each vec4) times B's values at that k in
// the lane's 8 columns (b_lo, b_hi), into lo and hi (row r's columns 0 .. 3 and 4 .. 7),
// written out so that every index into them is a constant after inlining (see store16).
struct TexAcc {
    lo: array<vec4<f32>, 16>,
    hi: array<vec4<f32>, 16>,
}

// Rows i .. i + 3 (i a constant after inlining), their values of A in v.
fn tex_rows4(acc: ptr<function, TexAcc>, i: u32, v: vec4<f32>, b_lo: vec4<f32>, b_hi: vec4<f32>) {
    (*acc).lo[i] += v.x * b_lo;
    (*acc).hi[i] += v.x * b_hi;
    (*acc).lo[i + 1u] += v.y * b_lo;
    (*acc).hi[i + 1u] += v.y * b_hi;
    (*acc).lo[i + 2u] += v.z * b_lo;
    (*acc).hi[i + 2u] += v.z * b_hi;
    (*acc).lo[i + 3u] += v.w * b_lo;
    (*acc).hi[i + 3u] += v.w * b_hi;
}

// One k: lane j's 16 values of A (shuffles from a constant lane: vector permutes on
// lavapipe) times B's row there, the lane's two texels from cb_lo and cb_hi past row.
fn tex_step(acc: ptr<function, TexAcc>, a: array<vec4<f32>, 4>, j: u32, cb_lo: u32, cb_hi: u32, row: u32) {
    let b_lo = b_texel(cb_lo + row);
    let b_hi = b_texel(cb_hi + row);
    tex_rows4(acc, 0u, subgroupShuffle(a[0], j), b_lo, b_hi);
    tex_rows4(acc, 4u, subgroupShuffle(a[1], j), b_lo, b_hi);
    tex_rows4(acc, 8u, subgroupShuffle(a[2], j), b_lo, b_hi);
    tex_rows4(acc, 12u, subgroupShuffle(a[3], j), b_lo, b_hi);
}

// Writes the 16 rows from r0 of the lane's 8 columns. Constant indices only: one read of acc
// at a varying index keeps all of it in memory, every multiply-add's sum loaded and stored
// lane by lane (30 times slower on lavapipe).
fn store16(r0: u32, c0: u32, a0: TexAcc) {
    store_cols(
        r0,
        c0,
        array<vec4<f32>, 8>(a0.lo[0], a0.lo[1], a0.lo[2], a0.lo[3], a0.lo[4], a0.lo[5], a0.lo[6], a0.lo[7]),
        array<vec4<f32>, 8>(a0.hi[0], a0.hi[1], a0.hi[2], a0.hi[3], a0.hi[4], a0.hi[5], a0.hi[6], a0.hi[7]),
        8u,
    );
    store_cols(
        r0 + 8u,
        c0,
        array<vec4<f32>, 8>(a0.lo[8], a0.lo[9], a0.lo[10], a0.lo[11], a0.lo[12], a0.lo[13], a0.lo[14], a0.lo[15]),
        array<vec4<f32>, 8>(a0.hi[8], a0.hi[9], a0.hi[10], a0.hi[11], a0.hi[12], a0.hi[13], a0.hi[14], a0.hi[15]),
        8u,
    );
}

// The subgroup's first row of C, the lane's first column, B's vec4s per row, and where the
// lane's two vec4s of B's row 0 are (past the edge the last one: never written).
struct TexPlace {
    r0: u32,
    c0: u32,
    n4: u32,
    cb_lo: u32,
    cb_hi: u32,
}

fn tex_place(wid: vec3<u32>, lane: u32) -> TexPlace {
    let c0 = wid.x * 64u + lane * 8u;
    let n4 = p.n / 4u;
    let cb_lo = p.b_off / 4u + min(c0 / 4u, n4 - 1u);
    let cb_hi = p.b_off / 4u + min(c0 / 4u + 1u, n4 - 1u);
    return TexPlace(wid.y * 16u, c0, n4, cb_lo, cb_hi);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tn_tex(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let at = tex_place(wid, lane);
    var acc: TexAcc;
    var sums: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += 8u) {
        // This lane's k and its 16 values of A (zero past K; rows past M are never written).
        let mk = k0 + lane;
        let live = select(0.0, 1.0, mk < p.k);
        let e = p.a_off + min(mk, p.k - 1u) * select(p.m, p.ld_a, p.ld_a != 0u) + at.r0;
        let t = e / 4u;
        var a: array<vec4<f32>, 4>;
        if ALIGNED_A {
            a = array<vec4<f32>, 4>(a_texel(t), a_texel(t + 1u), a_texel(t + 2u), a_texel(t + 3u));
        } else {
            let s = e % 4u;
            let x0 = a_texel(t);
            let x1 = a_texel(t + 1u);
            let x2 = a_texel(t + 2u);
            let x3 = a_texel(t + 3u);
            let x4 = a_texel(t + 4u);
            a = array<vec4<f32>, 4>(shifted(x0, x1, s), shifted(x1, x2, s), shifted(x2, x3, s), shifted(x3, x4, s));
        }
        for (var i = 0u; i < 4u; i++) {
            a[i] *= live;
            sums[i] += a[i];
        }
        // B's rows k0 .. k0 + 7; past K the last (A is zero there).
        let last = p.k - 1u;
        tex_step(&acc, a, 0u, at.cb_lo, at.cb_hi, min(k0, last) * at.n4);
        tex_step(&acc, a, 1u, at.cb_lo, at.cb_hi, min(k0 + 1u, last) * at.n4);
        tex_step(&acc, a, 2u, at.cb_lo, at.cb_hi, min(k0 + 2u, last) * at.n4);
        tex_step(&acc, a, 3u, at.cb_lo, at.cb_hi, min(k0 + 3u, last) * at.n4);
        tex_step(&acc, a, 4u, at.cb_lo, at.cb_hi, min(k0 + 4u, last) * at.n4);
        tex_step(&acc, a, 5u, at.cb_lo, at.cb_hi, min(k0 + 5u, last) * at.n4);
        tex_step(&acc, a, 6u, at.cb_lo, at.cb_hi, min(k0 + 6u, last) * at.n4);
        tex_step(&acc, a, 7u, at.cb_lo, at.cb_hi, min(k0 + 7u, last) * at.n4);
    }
    // Every lane summed its own k: the subgroup's sums are the rows', taken with every lane
    // active, before the lanes part.
    let t0 = subgroupAdd(sums[0]);
    let t1 = subgroupAdd(sums[1]);
    let t2 = subgroupAdd(sums[2]);
    let t3 = subgroupAdd(sums[3]);
    if at.r0 >= p.m || at.c0 >= p.n {
        return;
    }
    store16(at.r0, at.c0, acc);
    if (p.flags & 64u) != 0u && at.c0 == 0u {
        store_row_sums8(at.r0, t0, t1);
        store_row_sums8(at.r0 + 8u, t2, t3);
    }
}

// matmul_nn_tex: C = A B, A [M, K] (rows anywhere) and B [K, N] (rows whole vec4s) from
// texture mirrors, no options: dL/dh = dO V, V straight from a mirror of the parameters, where
// matmul_nt4_bc read dO through windows and V transposed into one. A subgroup computes 16 rows
// x 64 columns: per 4 values of k each lane gathers its two rows' 4 values of A (rows
// r0 + 2 l and r0 + 2 l + 1: a texel each, and where rows start anywhere the texel before
// carried from the step before to shift them out of) and hands them round by shuffles from
// constant lanes, and its 8 columns of B's 4 rows there.

// A row's values k .. k + 3 in v, zero at or past K.
fn a_row4(v: vec4<f32>, k: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(p.k));
}

// Component q (a constant after inlining) of the 16 rows' values a, times B's row there,
// the lane's two texels from cb_lo and cb_hi past row.
fn nn_q(acc: ptr<function, TexAcc>, a: array<vec4<f32>, 16>, q: u32, cb_lo: u32, cb_hi: u32, row: u32) {
    let b_lo = b_texel(cb_lo + row);
    let b_hi = b_texel(cb_hi + row);
    tex_rows4(acc, 0u, vec4<f32>(a[0][q], a[1][q], a[2][q], a[3][q]), b_lo, b_hi);
    tex_rows4(acc, 4u, vec4<f32>(a[4][q], a[5][q], a[6][q], a[7][q]), b_lo, b_hi);
    tex_rows4(acc, 8u, vec4<f32>(a[8][q], a[9][q], a[10][q], a[11][q]), b_lo, b_hi);
    tex_rows4(acc, 12u, vec4<f32>(a[12][q], a[13][q], a[14][q], a[15][q]), b_lo, b_hi);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_nn_tex(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let at = tex_place(wid, lane);
    // This lane's two rows of A (past M the last: never written).
    let lda = select(p.k, p.ld_a, p.ld_a != 0u);
    let e0 = p.a_off + min(at.r0 + 2u * lane, p.m - 1u) * lda;
    let e1 = p.a_off + min(at.r0 + 2u * lane + 1u, p.m - 1u) * lda;
    let last = p.k - 1u;
    // Each row's texels from its first: one gathered per step, unaligned the one before
    // carried.
    let t0 = e0 / 4u;
    let t1 = e1 / 4u;
    var x0 = a_texel(t0);
    var x1 = a_texel(t1);
    var acc: TexAcc;
    for (var k = 0u; k < p.k; k += 4u) {
        var m0: vec4<f32>;
        var m1: vec4<f32>;
        if ALIGNED_A {
            m0 = a_row4(a_texel(t0 + k / 4u), k);
            m1 = a_row4(a_texel(t1 + k / 4u), k);
        } else {
            let y0 = a_texel(t0 + k / 4u + 1u);
            let y1 = a_texel(t1 + k / 4u + 1u);
            m0 = a_row4(shifted(x0, y0, e0 % 4u), k);
            m1 = a_row4(shifted(x1, y1, e1 % 4u), k);
            x0 = y0;
            x1 = y1;
        }
        // Row r0 + i's values: lane i / 2's m(i % 2).
        let a = array<vec4<f32>, 16>(
            subgroupShuffle(m0, 0u), subgroupShuffle(m1, 0u),
            subgroupShuffle(m0, 1u), subgroupShuffle(m1, 1u),
            subgroupShuffle(m0, 2u), subgroupShuffle(m1, 2u),
            subgroupShuffle(m0, 3u), subgroupShuffle(m1, 3u),
            subgroupShuffle(m0, 4u), subgroupShuffle(m1, 4u),
            subgroupShuffle(m0, 5u), subgroupShuffle(m1, 5u),
            subgroupShuffle(m0, 6u), subgroupShuffle(m1, 6u),
            subgroupShuffle(m0, 7u), subgroupShuffle(m1, 7u),
        );
        // B's rows k .. k + 3; past K the last (A is zero there).
        nn_q(&acc, a, 0u, at.cb_lo, at.cb_hi, min(k, last) * at.n4);
        nn_q(&acc, a, 1u, at.cb_lo, at.cb_hi, min(k + 1u, last) * at.n4);
        nn_q(&acc, a, 2u, at.cb_lo, at.cb_hi, min(k + 2u, last) * at.n4);
        nn_q(&acc, a, 3u, at.cb_lo, at.cb_hi, min(k + 3u, last) * at.n4);
    }
    if at.r0 >= p.m || at.c0 >= p.n {
        return;
    }
    store16(at.r0, at.c0, acc);
}
