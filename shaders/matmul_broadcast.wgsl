// Appended to matmul_subgroup.wgsl, itself appended to matmul.wgsl (WGSL has no includes;
// it uses their parameters, bindings, store_cols and store_row_sums8). For CPU adapters
// whose subgroups are 8 lanes wide (lavapipe) and which bind 64 KiB of uniforms.
//
// matmul_nt4_bc: C = A B^T where B, with its rows padded to whole vec4s, fits one 64 KiB
// uniform window (a head or an input projection's weights, up to 16384 values) and A's rows
// of a dispatch fit another (the crate cuts M into parts, a dispatch each): a subgroup
// computes 8 rows of C x 64 columns (BC_COLS 8) or 16 x 32 (BC_COLS 4, each lane loading two
// rows of A), lane l the BC_COLS columns from cg + BC_COLS l of every row. Each lane reads one
// (or two) of the rows of A, 4 values of k at a time, and hands them to the others by shuffles
// from constant lanes; the lanes read their own rows of B. On lavapipe a shuffle from a
// constant lane is a vector permute and a uniform load a gather, where a storage load is a
// loop over the lanes with a bounds check per lane: per 4 steps of k a lane makes 4 (or 8) +
// 4 BC_COLS gathers and 8 (or 16) shuffles for 32 BC_COLS multiply-adds, where matmul_nt4_sg
// makes 6 storage loads and 16 shuffles for 256 (the character model's head 12.3 -> 7.2 ms).
//
// p.a_off and p.b_off count from the windows' starts; A's rows may start anywhere (any K).
// One-dimensional: subgroup builtins are only defined there.

override BC_COLS: u32 = 8u; // 8 or 4

@group(0) @binding(1) var<uniform> bu: array<vec4<f32>, 4096>;
// A's rows through a second window.
@group(0) @binding(0) var<uniform> au: array<vec4<f32>, 4096>;

// Element e of A's window.
fn au_at(e: u32) -> f32 {
    return au[e / 4u][e % 4u];
}

// Every lane's x, by lane (shuffles from constant lanes: vector permutes on lavapipe).
fn from_lanes(x: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupShuffle(x, 0u),
        subgroupShuffle(x, 1u),
        subgroupShuffle(x, 2u),
        subgroupShuffle(x, 3u),
        subgroupShuffle(x, 4u),
        subgroupShuffle(x, 5u),
        subgroupShuffle(x, 6u),
        subgroupShuffle(x, 7u),
    );
}

// With A_TEXTURE (matmul_nt4_bc_tex), A's rows from a texture mirror of its buffer
// (ops::state_texture: vec4 i is texel (i % 1024, i / 1024)), p.a_off counting from the
// buffer's start and K a multiple of 4: one vector gather per vec4 where the window takes four
// (on lavapipe storage textures are gathered as uniform buffers are), and no cutting of M
// into windows. Unread otherwise, but bound.
@group(0) @binding(5) var amt: texture_storage_2d<rgba32float, read>;
override A_TEXTURE: bool = false;

// With B_TEXTURE as well (matmul_nt4_bc_tt), B's rows from a texture mirror of their buffer
// too (p.b_off counting from the buffer's start, K and p.b_off multiples of 4): a texel's
// gather loads each lane's 4 values at once, where the window's gathers them one component at
// a time (the character model's head, V from the parameters' mirror: 3.55-3.6 -> 3.33-3.38
// ms). Unread otherwise, but bound.
@group(0) @binding(6) var bmt: texture_storage_2d<rgba32float, read>;
override B_TEXTURE: bool = false;

// vec4 q of B (of its window, or of its buffer's mirror).
fn b_vec4(q: u32) -> vec4<f32> {
    if B_TEXTURE {
        return textureLoad(bmt, vec2<u32>(q % 1024u, q / 1024u));
    }
    return bu[q];
}

// Values k .. k + 3 of the row of A from element e of its window, zero at or past K.
fn a_row4(e: u32, k: u32) -> vec4<f32> {
    if A_TEXTURE {
        let v = (e + k) / 4u;
        return textureLoad(amt, vec2<u32>(v % 1024u, v / 1024u));
    }
    let i = e + k;
    let v = vec4<f32>(au_at(i), au_at(i + 1u), au_at(i + 2u), au_at(i + 3u));
    return select(vec4<f32>(0.0), v, vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(p.k));
}

@compute @workgroup_size(8, 1, 1)
fn matmul_nt4_bc(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let wide = BC_COLS > 4u;
    // 8 rows x 64 columns, or 16 x 32 (hi holding rows 8 .. 15).
    let r0 = wid.y * select(16u, 8u, wide);
    let c0 = wid.x * 8u * BC_COLS + lane * BC_COLS;
    let k4 = (p.k + 3u) / 4u;
    let ldb4 = select(k4, p.ld_b / 4u, p.ld_b > 0u);
    // Past the edge, the last row of A or B (never written).
    let e = p.a_off + min(r0 + lane, p.m - 1u) * p.k;
    let e2 = p.a_off + min(r0 + 8u + lane, p.m - 1u) * p.k;
    let q0 = p.b_off / 4u + min(c0, p.n - 1u) * ldb4;
    let q1 = p.b_off / 4u + min(c0 + 1u, p.n - 1u) * ldb4;
    let q2 = p.b_off / 4u + min(c0 + 2u, p.n - 1u) * ldb4;
    let q3 = p.b_off / 4u + min(c0 + 3u, p.n - 1u) * ldb4;
    let q4 = p.b_off / 4u + min(c0 + 4u, p.n - 1u) * ldb4;
    let q5 = p.b_off / 4u + min(c0 + 5u, p.n - 1u) * ldb4;
    let q6 = p.b_off / 4u + min(c0 + 6u, p.n - 1u) * ldb4;
    let q7 = p.b_off / 4u + min(c0 + 7u, p.n - 1u) * ldb4;
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < k4; k++) {
        let mine = a_row4(e, 4u * k);
        var mine2 = vec4<f32>(0.0);
        if !wide {
            mine2 = a_row4(e2, 4u * k);
        }
        let w0 = b_vec4(q0 + k);
        let w1 = b_vec4(q1 + k);
        let w2 = b_vec4(q2 + k);
        let w3 = b_vec4(q3 + k);
        var w4 = vec4<f32>(0.0);
        var w5 = vec4<f32>(0.0);
        var w6 = vec4<f32>(0.0);
        var w7 = vec4<f32>(0.0);
        if wide {
            w4 = b_vec4(q4 + k);
            w5 = b_vec4(q5 + k);
            w6 = b_vec4(q6 + k);
            w7 = b_vec4(q7 + k);
        }
        let s = from_lanes(mine);
        for (var i = 0u; i < 8u; i++) {
            let v = s[i];
            lo[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
            if wide {
                hi[i] += vec4<f32>(dot(v, w4), dot(v, w5), dot(v, w6), dot(v, w7));
            }
        }
        if !wide {
            let s2 = from_lanes(mine2);
            for (var i = 0u; i < 8u; i++) {
                let v = s2[i];
                hi[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
            }
        }
    }
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    store_cols(r0, c0, lo, hi, BC_COLS);
    if !wide {
        store_cols(r0 + 8u, c0, hi, hi, 4u);
    }
}

// matmul_tn_bc: C = A^T B, A [K, M] and B [K, N] of any sizes and alignment, over the long
// k of the weight gradients, in place: no transposes. A subgroup computes 8 rows of C x
// 8 BC_COLS columns as above, 8 values of k at a time: lane l loads its 8 values of A's row
// k0 + l (C's 8 rows at that k), and at each of the 8 k every lane takes them from lane
// k - k0 by shuffles from a constant lane and reads its own values of B's row k. Both A and
// B come through uniform windows (p.a_off and p.b_off counting from their starts: the crate
// cuts k into parts whose rows of A and of B each fit one window, a dispatch each, or four
// to a dispatch with matmul_tn_bcw, shaders/matmul_tn_windows.wgsl). Per 8 k a
// lane makes 8 + 8 BC_COLS gathers and 16 shuffles of a vec4 for 64 BC_COLS multiply-adds:
// no storage load (A from storage, 8 per 8 k, had cost more than all of B's gathers). With
// ROW_SUMS the sums of C's rows of A^T come too (the bias gradients).

struct Acc {
    lo: array<vec4<f32>, 8>,
    hi: array<vec4<f32>, 8>,
}

// ---- WINDOW PAIR: the functions that read A and B through au and bu, copied by the crate for
// matmul_tn_bcw's further windows (au_1 and bu_1 with bu_at_1, tn_step_1, tn_part_1; ...) ----

// Element e of the window.
fn bu_at(e: u32) -> f32 {
    return bu[e / 4u][e % 4u];
}

// 4 elements of the window.
fn bu_at4(e: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(bu_at(e.x), bu_at(e.y), bu_at(e.z), bu_at(e.w));
}

// One k of a part of `len` values of k: C's 8 rows of A^T there (a_lo, a_hi) times B's row k,
// whose lane's columns start at elements cb_lo, cb_hi of row 0 in the window. (Read one value
// at a time, so B may have any alignment: lavapipe gathers a vec4 from a window one component
// at a time anyway.)
fn tn_step(
    acc: ptr<function, Acc>,
    k: u32,
    len: u32,
    cb_lo: vec4<u32>,
    cb_hi: vec4<u32>,
    a_lo: vec4<f32>,
    a_hi: vec4<f32>,
) {
    // Past the part's end, A's values are zero (the lanes past it loaded none) and B's row is
    // the last: no branch, which lavapipe would run as a mask blended into every sum after it.
    let row = vec4<u32>(min(k, len - 1u) * p.n);
    let wide = BC_COLS > 4u;
    let b_lo = bu_at4(cb_lo + row);
    var b_hi = vec4<f32>(0.0);
    if wide {
        b_hi = bu_at4(cb_hi + row);
    }
    for (var j = 0u; j < 4u; j++) {
        (*acc).lo[j] += a_lo[j] * b_lo;
        (*acc).lo[j + 4u] += a_hi[j] * b_lo;
        if wide {
            (*acc).hi[j] += a_lo[j] * b_hi;
            (*acc).hi[j + 4u] += a_hi[j] * b_hi;
        }
    }
}

// Part w of the k a dispatch sums (p.k_split values of k each, all p.k when it is 0; none for
// a part past p.k), its rows of A and B through au and bu, p.a_off and p.b_off counting from
// their starts: into acc, and the sums of the lane's k of C's rows of A^T into rs_lo, rs_hi.
fn tn_part(
    acc: ptr<function, Acc>,
    rs_lo: ptr<function, vec4<f32>>,
    rs_hi: ptr<function, vec4<f32>>,
    w: u32,
    r0: u32,
    cb_lo: vec4<u32>,
    cb_hi: vec4<u32>,
    lane: u32,
) {
    let rows = select(p.k, p.k_split, p.k_split > 0u);
    let begin = min(p.k, w * rows);
    let len = min(p.k, begin + rows) - begin;
    for (var k0 = 0u; k0 < len; k0 += 8u) {
        // This lane's k, and C's 8 rows of A^T there (zero past the part).
        let mk = k0 + lane;
        let live = select(0.0, 1.0, mk < len);
        let ar = p.a_off + min(mk, len - 1u) * p.m;
        var m_lo: vec4<f32>;
        var m_hi: vec4<f32>;
        for (var j = 0u; j < 4u; j++) {
            let e = ar + min(r0 + j, p.m - 1u);
            let e2 = ar + min(r0 + 4u + j, p.m - 1u);
            m_lo[j] = au[e / 4u][e % 4u];
            m_hi[j] = au[e2 / 4u][e2 % 4u];
        }
        m_lo *= live;
        m_hi *= live;
        tn_step(acc, k0, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 0u), subgroupShuffle(m_hi, 0u));
        tn_step(acc, k0 + 1u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 1u), subgroupShuffle(m_hi, 1u));
        tn_step(acc, k0 + 2u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 2u), subgroupShuffle(m_hi, 2u));
        tn_step(acc, k0 + 3u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 3u), subgroupShuffle(m_hi, 3u));
        tn_step(acc, k0 + 4u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 4u), subgroupShuffle(m_hi, 4u));
        tn_step(acc, k0 + 5u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 5u), subgroupShuffle(m_hi, 5u));
        tn_step(acc, k0 + 6u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 6u), subgroupShuffle(m_hi, 6u));
        tn_step(acc, k0 + 7u, len, cb_lo, cb_hi, subgroupShuffle(m_lo, 7u), subgroupShuffle(m_hi, 7u));
        *rs_lo += m_lo;
        *rs_hi += m_hi;
    }
}

// ---- END OF WINDOW PAIR ----

// This lane's first column of C, and where its columns of B start in row 0 of B's window
// (past the edge, the last column; never written).
struct TnCols {
    c0: u32,
    cb_lo: vec4<u32>,
    cb_hi: vec4<u32>,
}

fn tn_cols(wid: vec3<u32>, lane: u32) -> TnCols {
    let c0 = wid.x * 8u * BC_COLS + lane * BC_COLS;
    let cols = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
    let last = vec4<u32>(p.n - 1u);
    let cb_lo = vec4<u32>(p.b_off) + min(cols, last);
    let cb_hi = vec4<u32>(p.b_off) + min(cols + vec4<u32>(4u), last);
    return TnCols(c0, cb_lo, cb_hi);
}

// Writes (or adds) the lane's block of C and, with ROW_SUMS, the rows' sums of A^T (every lane
// summed its own k: the subgroup's sum is the row's, taken with every lane active, before the
// lanes part).
fn tn_store(acc: ptr<function, Acc>, rs_lo: vec4<f32>, rs_hi: vec4<f32>, r0: u32, c0: u32) {
    let t_lo = subgroupAdd(rs_lo);
    let t_hi = subgroupAdd(rs_hi);
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    store_cols(r0, c0, (*acc).lo, (*acc).hi, BC_COLS);
    if (p.flags & 64u) != 0u && c0 == 0u {
        store_row_sums8(r0, t_lo, t_hi);
    }
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tn_bc(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let r0 = wid.y * 8u;
    let c = tn_cols(wid, lane);
    var acc: Acc;
    var rs_lo = vec4<f32>(0.0);
    var rs_hi = vec4<f32>(0.0);
    tn_part(&acc, &rs_lo, &rs_hi, 0u, r0, c.cb_lo, c.cb_hi, lane);
    tn_store(&acc, rs_lo, rs_hi, r0, c.c0);
}
