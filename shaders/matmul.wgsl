// General matrix multiply with transposes, accumulate and bias, for the hoisted phases:
//   C[M, N] = op(A) op(B) (+ C) (+ bias[N]) (+ bias2[N])
// op(A) is A stored [M, K], or with TRANS_A, A stored [K, M] and transposed on load.
// op(B) is B stored [K, N], or with TRANS_B, B stored [N, K] and transposed on load.
// All matrices are dense row-major f32 starting at an element offset of their buffer.
//
// Each workgroup of 16x16 invocations computes a 64x64 tile of C; each invocation keeps a 4x4
// block of accumulators in registers (rows ly + 16i, columns lx + 16j, so reads of the
// workgroup tiles are contiguous across lx). K advances 16 at a time through workgroup memory.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32, // 1: TRANS_A, 2: TRANS_B, 4: ACCUMULATE, 8: BIAS, 16: BIAS2
    a_off: u32,
    b_off: u32,
    c_off: u32,
    bias_off: u32,
    bias2_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>; // [N] at bias_off and bias2_off
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = 64u;
const TK: u32 = 16u;
const WG: u32 = 16u;

var<workgroup> sa: array<f32, 1024>; // [TK][TILE]: sa[kk * TILE + r] = op(A)[row0 + r, k0 + kk]
var<workgroup> sb: array<f32, 1024>; // [TK][TILE]: sb[kk * TILE + c] = op(B)[k0 + kk, col0 + c]

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let l = lid.y * WG + lid.x;
    let trans_a = (p.flags & 1u) != 0u;
    let trans_b = (p.flags & 2u) != 0u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
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
            if gr < p.m && gka < p.k {
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
            if gc < p.n && gkb < p.k {
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
            let at = p.c_off + r * p.n + col;
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

// The same product without workgroup memory, for adapters where barriers cost more than
// memory traffic (CPU adapters such as lavapipe, whose caches stand in for workgroup memory).
// Each invocation computes an 8x8 block of C, rows ly*8.. and columns lx*8..; a workgroup of
// 8x8 invocations covers 64 rows x 64 columns. Each step of k loads 16 values for 64
// multiply-adds: on lavapipe the per-step cost, not the registers, bounds the speed.
@compute @workgroup_size(8, 8, 1)
fn matmul_direct(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let r0 = wid.y * 64u + lid.y * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    let trans_a = (p.flags & 1u) != 0u;
    let trans_b = (p.flags & 2u) != 0u;
    // Element (r, k) of op(A) is at abase[r] + k * astep, element (k, c) of op(B) at
    // bbase[c] + k * bstep; rows and columns past the edge read the last one, never written.
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
    for (var i = 0u; i < 8u; i++) {
        let r = r0 + i;
        if r >= p.m {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            let col = c0 + j;
            if col >= p.n {
                break;
            }
            var v: f32;
            if j < 4u {
                v = lo[i][j];
            } else {
                v = hi[i][j - 4u];
            }
            let at = p.c_off + r * p.n + col;
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
