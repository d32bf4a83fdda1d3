// Appended to blocks.wgsl (its shared helpers).
// General matrix multiply with transposes, accumulate and bias, for the hoisted phases:
//   C[M, N] = op(A) op(B) (+ C) (+ bias[N]) (+ bias2[N])
// op(A) is A stored [M, K], or with TRANS_A, A stored [K, M] and transposed on load.
// op(B) is B stored [K, N], or with TRANS_B, B stored [N, K] and transposed on load.
// All matrices are dense row-major f32 starting at an element offset of their buffer.
//
// Each workgroup of 16x16 invocations computes a 64x64 tile of C; each invocation keeps a 4x4
// block of accumulators in registers (rows ly + 16i, columns lx + 16j, so reads of the
// workgroup tiles are contiguous across lx). K advances 16 at a time through workgroup memory.
// With k_split > 0 (split-K, for long reductions onto few tiles: weight gradients over all T·B
// rows), workgroup z sums only k in [z * k_split, (z + 1) * k_split) and writes its partial
// tile at c_off + z * M * N; `sum_parts` in reduce.wgsl adds the parts into C.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // 1: TRANS_A, 2: TRANS_B, 4: ACCUMULATE, 8: BIAS, 16: BIAS2, 32: VEC_STORE,
                // 64: ROW_SUMS, 128: ROW_SUMS2 (matmul_nt4, matmul_nt4_sg, matmul_tn4_sg)
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    bias2_off: u32,
    k_split: u32, // matmul only: 0, or the values of k per workgroup along z
    ld_b: u32,    // matmul_nt4 only: B's row stride in elements (0: K)
    ld_a: u32,    // matmul_tn_tex, matmul_nn_tex only: A's row stride in elements (0: M, K)
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>; // [N] at bias_off and bias2_off
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

const TILE: u32 = 64u;
const TK: u32 = 16u;
const WG: u32 = 16u;

var<workgroup> sa: array<f32, 1024>; // [TK][TILE]: sa[kk * TILE + r] = op(A)[row0 + r, k0 + kk]
var<workgroup> sb: array<f32, 1024>; // [TK][TILE]: sb[kk * TILE + c] = op(B)[k0 + kk, col0 + c]

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let l = lid.y * WG + lid.x;
    let trans_a = (p.flags & 1u) != 0u;
    let trans_b = (p.flags & 2u) != 0u;
    var k_begin = 0u;
    var k_end = p.k;
    var c_base = p.c_off;
    if p.k_split > 0u {
        k_begin = wid.z * p.k_split;
        k_end = min(k_begin + p.k_split, p.k);
        c_base += wid.z * p.m * p.n;
    }
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        for (var q = 0u; q < 4u; q++) {
            let idx = l + q * 256u;
            // Consecutive invocations read consecutive addresses of whichever layout A has.
            var r: u32;
            var ka: u32;
            if trans_a {
                r = idx % TILE;
                ka = idx / TILE;
            } else {
                ka = idx % TK;
                r = idx / TK;
            }
            let gr = row0 + r;
            let gka = k0 + ka;
            var va = 0.0;
            if gr < p.m && gka < k_end {
                if trans_a {
                    va = a[p.a_off + gka * p.m + gr];
                } else {
                    va = a[p.a_off + gr * p.k + gka];
                }
            }
            sa[ka * TILE + r] = va;

            var cc: u32;
            var kb: u32;
            if trans_b {
                kb = idx % TK;
                cc = idx / TK;
            } else {
                cc = idx % TILE;
                kb = idx / TILE;
            }
            let gc = col0 + cc;
            let gkb = k0 + kb;
            var vb = 0.0;
            if gc < p.n && gkb < k_end {
                if trans_b {
                    vb = b[p.b_off + gc * p.k + gkb];
                } else {
                    vb = b[p.b_off + gkb * p.n + gc];
                }
            }
            sb[kb * TILE + cc] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let base = kk * TILE;
            let bv = vec4<f32>(
                sb[base + lid.x],
                sb[base + lid.x + WG],
                sb[base + lid.x + 2u * WG],
                sb[base + lid.x + 3u * WG],
            );
            for (var i = 0u; i < 4u; i++) {
                acc[i] += sa[base + lid.y + i * WG] * bv;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + i * WG;
        if r >= p.m {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + j * WG;
            if col >= p.n {
                continue;
            }
            var v = acc[i][j];
            let at = c_base + r * p.n + col;
            if (p.flags & 4u) != 0u {
                v += c[at];
            }
            if (p.flags & 8u) != 0u {
                v += bias[p.bias_off + col];
            }
            if (p.flags & 16u) != 0u {
                v += bias[p.bias2_off + col];
            }
            c[at] = v;
        }
    }
}

// ---- direct kernels: the same product without workgroup memory -------------------------
//
// For adapters where a barrier costs more than memory traffic: CPU adapters such as lavapipe,
// whose caches stand in for workgroup memory and which run a workgroup's invocations as SIMD
// lanes, paying per load instruction. Each invocation computes an 8x8 block of C in 16 vec4
// accumulators; a workgroup is 8 invocations side by side (64 columns) times DIRECT_ROWS
// (8 x DIRECT_ROWS rows): 8 for large products, 1 (one SIMD group) when the product is too
// small to give every CPU thread several workgroups otherwise. Where
// both operands are laid out so that 4 neighbouring values can be read as one vec4 (sizes and
// offsets multiples of 4), one of three layout-specific kernels reads vec4s; otherwise
// `matmul_direct` reads scalars. Rows and columns past the edge read the last one and are
// never written.

override DIRECT_ROWS: u32 = 8u;

@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;

// Writes the 8x8 block at (r0, c0) with the epilogue: + C, + bias, + bias2. With VEC_STORE
// (flag 32: N and every offset into C and the biases are multiples of 4) a block wholly inside
// C is read and written as vec4s, 16 accesses instead of 64.
fn store_block(r0: u32, c0: u32, lo: array<vec4<f32>, 8>, hi: array<vec4<f32>, 8>) {
    store_cols(r0, c0, lo, hi, 8u);
}

// store_block for the first `width` (4 or 8) columns of the block only (hi unused at 4).
fn store_cols(r0: u32, c0: u32, lo: array<vec4<f32>, 8>, hi: array<vec4<f32>, 8>, width: u32) {
    let vectors = (p.flags & 32u) != 0u && c0 + width <= p.n;
    if vectors {
        var blo = vec4<f32>(0.0);
        var bhi = vec4<f32>(0.0);
        if (p.flags & 8u) != 0u {
            blo += bias4[(p.bias_off + c0) / 4u];
            bhi += bias4[(p.bias_off + c0) / 4u + 1u];
        }
        if (p.flags & 16u) != 0u {
            blo += bias4[(p.bias2_off + c0) / 4u];
            bhi += bias4[(p.bias2_off + c0) / 4u + 1u];
        }
        for (var i = 0u; i < 8u; i++) {
            let r = r0 + i;
            if r >= p.m {
                break;
            }
            let at = (p.c_off + r * p.n + c0) / 4u;
            var vlo = lo[i] + blo;
            var vhi = hi[i] + bhi;
            if (p.flags & 4u) != 0u {
                vlo += c4[at];
                if width > 4u {
                    vhi += c4[at + 1u];
                }
            }
            c4[at] = vlo;
            if width > 4u {
                c4[at + 1u] = vhi;
            }
        }
        return;
    }
    // Elsewhere one value at a time, through the same vec4 views (component access), since an
    // entry point may not bind one buffer twice. The loops run to bounds only known when it
    // runs, so they stay loops: unrolled, they compiled several times slower. None where the
    // vectors served: lavapipe 22.3 runs both sides of an `if` that returns, the lanes masked,
    // so the loops below cost their iterations even then.
    let rows = select(0u, min(8u, p.m - r0), r0 < p.m && !vectors);
    let cols = select(0u, min(width, p.n - c0), c0 < p.n && !vectors);
    // The biases' columns once, not per row: each load from storage is a loop over the lanes
    // on lavapipe (the character model's head, O = 83, 4.5 -> 3.5 ms).
    var bias_lo = vec4<f32>(0.0);
    var bias_hi = vec4<f32>(0.0);
    for (var j = 0u; j < cols; j++) {
        let col = c0 + j;
        var b = 0.0;
        if (p.flags & 8u) != 0u {
            let bi = p.bias_off + col;
            b += bias4[bi / 4u][bi % 4u];
        }
        if (p.flags & 16u) != 0u {
            let bi = p.bias2_off + col;
            b += bias4[bi / 4u][bi % 4u];
        }
        // (Vectors, not an array: a local array read at a varying index cost dO V 10%.)
        let q = vec4<u32>(j & 3u) == vec4<u32>(0u, 1u, 2u, 3u);
        bias_lo = select(bias_lo, vec4<f32>(b), q & vec4<bool>(j < 4u));
        bias_hi = select(bias_hi, vec4<f32>(b), q & vec4<bool>(j >= 4u));
    }
    for (var i = 0u; i < rows; i++) {
        let r = r0 + i;
        let vlo = pick8(lo, i);
        let vhi = pick8(hi, i);
        for (var j = 0u; j < cols; j++) {
            let col = c0 + j;
            let v4 = select(vhi + bias_hi, vlo + bias_lo, j < 4u);
            var v = v4[j & 3u];
            let at = p.c_off + r * p.n + col;
            if (p.flags & 4u) != 0u {
                v += c4[at / 4u][at % 4u];
            }
            c4[at / 4u][at % 4u] = v;
        }
    }
}

// Any layout, scalar loads: element (r, k) of op(A) at abase[r] + k * astep, element (k, c)
// of op(B) at bbase[c] + k * bstep.
@compute @workgroup_size(8, DIRECT_ROWS, 1)
fn matmul_direct(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let r0 = (wid.y * DIRECT_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    let trans_a = (p.flags & 1u) != 0u;
    let trans_b = (p.flags & 2u) != 0u;
    var abase: array<u32, 8>;
    var bbase: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        let r = min(r0 + i, p.m - 1u);
        abase[i] = p.a_off + select(r * p.k, r, trans_a);
        let c = min(c0 + i, p.n - 1u);
        bbase[i] = p.b_off + select(c, c * p.k, trans_b);
    }
    let astep = select(1u, p.m, trans_a);
    let bstep = select(p.n, 1u, trans_b);
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < p.k; k++) {
        let kb = k * bstep;
        let b0 = vec4<f32>(b[bbase[0] + kb], b[bbase[1] + kb], b[bbase[2] + kb], b[bbase[3] + kb]);
        let b1 = vec4<f32>(b[bbase[4] + kb], b[bbase[5] + kb], b[bbase[6] + kb], b[bbase[7] + kb]);
        let ka = k * astep;
        for (var i = 0u; i < 8u; i++) {
            let av = a[abase[i] + ka];
            lo[i] += av * b0;
            hi[i] += av * b1;
        }
    }
    store_block(r0, c0, lo, hi);
}

// C = A B^T: A [M, K] and B [N, K] both contiguous along k (the input projection, the head).
@compute @workgroup_size(8, DIRECT_ROWS, 1)
fn matmul_nt4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let r0 = (wid.y * DIRECT_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    let k4 = p.k / 4u;
    // B may be a view into wider rows (the transposed h_all, whose two views are h(t-1), h(t)).
    let ldb4 = select(k4, p.ld_b / 4u, p.ld_b > 0u);
    var abase: array<u32, 8>;
    var bbase: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        abase[i] = p.a_off / 4u + min(r0 + i, p.m - 1u) * k4;
        bbase[i] = p.b_off / 4u + min(c0 + i, p.n - 1u) * ldb4;
    }
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < k4; k++) {
        let b0 = b4[bbase[0] + k];
        let b1 = b4[bbase[1] + k];
        let b2 = b4[bbase[2] + k];
        let b3 = b4[bbase[3] + k];
        let b5 = b4[bbase[4] + k];
        let b6 = b4[bbase[5] + k];
        let b7 = b4[bbase[6] + k];
        let b8 = b4[bbase[7] + k];
        for (var i = 0u; i < 8u; i++) {
            let av = a4[abase[i] + k];
            lo[i] += vec4<f32>(dot(av, b0), dot(av, b1), dot(av, b2), dot(av, b3));
            hi[i] += vec4<f32>(dot(av, b5), dot(av, b6), dot(av, b7), dot(av, b8));
        }
    }
    store_block(r0, c0, lo, hi);
    if (p.flags & 64u) != 0u && c0 == 0u {
        row_sums(r0);
    }
}

// ROW_SUMS: the invocations of C's first column of blocks also write the sums of their 8 rows
// of A [M, K] into C's buffer at bias_off (and bias2_off, with ROW_SUMS2): the bias gradients,
// from the transposed dL/da and dL/do, without a pass of their own. One lane in 8 reads A again.
fn row_sums(r0: u32) {
    let k4 = p.k / 4u;
    var abase: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        abase[i] = p.a_off / 4u + min(r0 + i, p.m - 1u) * k4;
    }
    var s: array<vec4<f32>, 8>;
    for (var k = 0u; k < k4; k++) {
        for (var i = 0u; i < 8u; i++) {
            s[i] += a4[abase[i] + k];
        }
    }
    store_row_sums(r0, s);
}

// Writes the row sums of rows r0 .. r0 + 7 (each a vec4 of partial sums) for ROW_SUMS, added
// to what is there with ACCUMULATE (a product cut along k into parts).
fn store_row_sums(r0: u32, s: array<vec4<f32>, 8>) {
    let add = (p.flags & 4u) != 0u;
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + i;
        if r >= p.m {
            break;
        }
        let v = s[i].x + s[i].y + s[i].z + s[i].w;
        let at = p.bias_off + r;
        c4[at / 4u][at % 4u] = v + select(0.0, c4[at / 4u][at % 4u], add);
        if (p.flags & 128u) != 0u {
            let at2 = p.bias2_off + r;
            c4[at2 / 4u][at2 % 4u] = v + select(0.0, c4[at2 / 4u][at2 % 4u], add);
        }
    }
}

// store_row_sums of 8 rows' sums given as two vec4s (rows r0 .. r0 + 3, r0 + 4 .. r0 + 7).
fn store_row_sums8(r0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    var s: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        s[i] = vec4<f32>(lo[i], 0.0, 0.0, 0.0);
        s[i + 4u] = vec4<f32>(hi[i], 0.0, 0.0, 0.0);
    }
    store_row_sums(r0, s);
}

// C = A^T B: A [K, M] contiguous along m, B [K, N] contiguous along n (weight gradients over
// all T * B rows): per k, an outer product of two vec4 pairs.
@compute @workgroup_size(8, DIRECT_ROWS, 1)
fn matmul_tn4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let r0 = (wid.y * DIRECT_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    // r0 < M and c0 < N, so the first vec4 of each is inside; the second may be past the
    // edge (M, N multiples of 4 here) and then reads the last one.
    let ra = p.a_off / 4u + r0 / 4u;
    let ra2 = p.a_off / 4u + min(r0 / 4u + 1u, m4 - 1u);
    let rb = p.b_off / 4u + c0 / 4u;
    let rb2 = p.b_off / 4u + min(c0 / 4u + 1u, n4 - 1u);
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < p.k; k++) {
        let a0 = a4[ra + k * m4];
        let a1 = a4[ra2 + k * m4];
        let b0 = b4[rb + k * n4];
        let b1 = b4[rb2 + k * n4];
        lo[0] += a0.x * b0;
        hi[0] += a0.x * b1;
        lo[1] += a0.y * b0;
        hi[1] += a0.y * b1;
        lo[2] += a0.z * b0;
        hi[2] += a0.z * b1;
        lo[3] += a0.w * b0;
        hi[3] += a0.w * b1;
        lo[4] += a1.x * b0;
        hi[4] += a1.x * b1;
        lo[5] += a1.y * b0;
        hi[5] += a1.y * b1;
        lo[6] += a1.z * b0;
        hi[6] += a1.z * b1;
        lo[7] += a1.w * b0;
        hi[7] += a1.w * b1;
    }
    store_block(r0, c0, lo, hi);
}

// C = A B: A [M, K] contiguous along k, B [K, N] contiguous along n (dL/dx, dL/dh from the
// head): per 4 steps of k, one vec4 of A per row against four vec4 pairs of B.
@compute @workgroup_size(8, DIRECT_ROWS, 1)
fn matmul_nn4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let r0 = (wid.y * DIRECT_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    var abase: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        abase[i] = p.a_off / 4u + min(r0 + i, p.m - 1u) * k4;
    }
    let cb0 = p.b_off / 4u + c0 / 4u;
    let cb1 = p.b_off / 4u + min(c0 / 4u + 1u, n4 - 1u);
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < k4; k++) {
        let row = 4u * k * n4;
        let b00 = b4[cb0 + row];
        let b01 = b4[cb1 + row];
        let b10 = b4[cb0 + row + n4];
        let b11 = b4[cb1 + row + n4];
        let b20 = b4[cb0 + row + 2u * n4];
        let b21 = b4[cb1 + row + 2u * n4];
        let b30 = b4[cb0 + row + 3u * n4];
        let b31 = b4[cb1 + row + 3u * n4];
        for (var i = 0u; i < 8u; i++) {
            let av = a4[abase[i] + k];
            lo[i] += av.x * b00 + av.y * b10 + av.z * b20 + av.w * b30;
            hi[i] += av.x * b01 + av.y * b11 + av.z * b21 + av.w * b31;
        }
    }
    store_block(r0, c0, lo, hi);
}
