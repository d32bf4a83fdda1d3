// The deep transition fused (as transition.wgsl, whose header gives the equations), for CPU
// adapters with 8-lane subgroups (lavapipe): register blocks read as vec4s, the way
// recurrence_blocked_subgroup.wgsl reads W. lavapipe pays for every storage load once per
// SIMD lane, with a branch each, so a workgroup is one subgroup of 8 invocations (where a
// barrier costs next to nothing) owning 8 batch rows: each lane loads one row's vec4 of the
// state and the others take it by subgroupShuffle, and each lane computes those 8 rows x 4
// units (per 4 steps of k, 5 loads and 8 shuffles feed 128 multiply-adds). Every lane runs
// every iteration of a loop that shuffles; lanes past the edge read the last unit and write
// nothing. Every row of every buffer it reads is a whole number of vec4s: H and the inner
// width are multiples of 4 (the crate runs the unfused transition otherwise).
//
// Each product is out[b, c] = sum_k src[b, k] m[c, k], m's rows running along k: the forward
// pass reads the weights themselves (W, T_j, S) and the backward pass their transposes (Wᵀ,
// T_jᵀ, Sᵀ), each copied by the crate into `mf` or `mb` before the loop, with every layer's
// bias in `mf` beside them.

// struct Tr and the layout helpers: transition_params.wgsl, put first.

@group(0) @binding(0) var<storage, read> mfs: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> mbs: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xu: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> hs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> zs: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dp: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> da: array<vec4<f32>>;
// With W_UNIFORM (where every copy fits 64 KiB), the same two buffers read through uniform
// windows: lavapipe gathers uniform loads with vector instructions where it loads storage
// buffers lane by lane with a branch each. Bound either way.
@group(0) @binding(7) var<uniform> mfu: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> mbu: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<storage, read> p_in: Tr;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Tr;

override W_UNIFORM: bool = false;

// Vec4 i of the forward (mf) and backward (mb) weight copies, through the window or not (an
// override: one branch is compiled away).
fn mf(i: u32) -> vec4<f32> {
    if W_UNIFORM {
        return mfu[i];
    }
    return mfs[i];
}

fn mb(i: u32) -> vec4<f32> {
    if W_UNIFORM {
        return mbu[i];
    }
    return mbs[i];
}

const ROWS: u32 = 8u;
const WG: u32 = 8u;
// This invocation's lane, set first thing by both entry points.
var<private> lane: u32;

// {{cell}}

// The first vec4 of this lane's row of the workgroup's in a [B, n] block from float `start`;
// rows past the batch read the last row and are never written.
fn my_row(start: u32, n: u32, r0: u32) -> u32 {
    return (start + min(r0 + lane, p.batch - 1u) * n) / 4u;
}

// The first vec4 of rows c0 .. c0 + 3 of a matrix [n, k] at float `m` (rows past n read the
// last one).
fn mat_rows(m: u32, n: u32, k: u32, c0: u32) -> vec4<u32> {
    let last = n - 1u;
    return (vec4<u32>(m) + vec4<u32>(min(c0, last), min(c0 + 1u, last), min(c0 + 2u, last),
        min(c0 + 3u, last)) * k) / 4u;
}

// Rows i < 8 of the workgroup's block x units c0 .. c0 + 3: sum over k < 4 * k4s of src row
// i times m rows c0 .. c0 + 3, row i's vec4s loaded by lane i (`mine`: this lane's row): the
// rows from `hs`, m from `mf`. WGSL passes no storage pointers, so this is a template: the
// crate writes a copy of it for each (rows, matrix) pair the entry points call, `xu_mf`,
// `zs_mf`, `da_mb`, `dp_mb` (PRODUCTS in src/ops/transition.rs).
fn hs_mf(mine: u32, w: vec4<u32>, k4s: u32) -> array<vec4<f32>, 8> {
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < k4s; k++) {
        let w0 = mf(w.x + k);
        let w1 = mf(w.y + k);
        let w2 = mf(w.z + k);
        let w3 = mf(w.w + k);
        let v = hs[mine + k];
        for (var i = 0u; i < 8u; i++) {
            let s = subgroupShuffle(v, i);
            o[i] += vec4<f32>(dot(s, w0), dot(s, w1), dot(s, w2), dot(s, w3));
        }
    }
    return o;
}

// {{products}}

@compute @workgroup_size(8, 1, 1)
fn transition_forward(@builtin(subgroup_invocation_id) sg_lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    lane = sg_lane;
    let h = p.hidden;
    let bh = p.batch * h;
    let r0 = wid.x * ROWS;
    let rows = min(ROWS, p.batch - r0);
    for (var s = 0u; s < p.count; s++) {
        let t = p.t0 + s;
        let x = p.x_off + t * bh;
        let prev = my_row(p.h_off + t * bh, h, r0);
        // act(a(t)) = act(xu(t) + W h(t-1)), over xu(t).
        for (var g0 = 0u; g0 < h; g0 += 4u * WG) {
            let c0 = g0 + 4u * lane;
            let acc = hs_mf(prev, mat_rows(p.w, h, h, c0), h / 4u);
            for (var i = 0u; i < rows; i++) {
                if c0 < h {
                    let o = (x + (r0 + i) * h + c0) / 4u;
                    xu[o] = cell_forward4(xu[o] + acc[i], p.act);
                }
            }
        }
        storageBarrier();
        for (var j = 0u; j < p.depth; j++) {
            let ni = n_in(j);
            let no = n_out(j);
            let last = j + 1u == p.depth;
            // Layer 0 reads act(a(t)) from xu, the others the previous layer from zs.
            let input = my_row(select(z_at(max(j, 1u) - 1u, t), x, j == 0u), ni, r0);
            let out = select(z_at(j, t), p.h_off + (t + 1u) * bh, last);
            for (var g0 = 0u; g0 < no; g0 += 4u * WG) {
                let c0 = g0 + 4u * lane;
                let m = mat_rows(p.lw[j], no, ni, c0);
                var acc: array<vec4<f32>, 8>;
                if j == 0u {
                    acc = xu_mf(input, m, ni / 4u);
                } else {
                    acc = zs_mf(input, m, ni / 4u);
                }
                if last && p.skip == 1u {
                    let sk = hs_mf(prev, mat_rows(p.s, h, h, c0), h / 4u);
                    for (var i = 0u; i < 8u; i++) {
                        acc[i] += sk[i];
                    }
                }
                if c0 < no {
                    let c = mf((p.lb[j] + c0) / 4u);
                    for (var i = 0u; i < rows; i++) {
                        let y = cell_forward4(acc[i] + c, p.tact);
                        let o = (out + (r0 + i) * no + c0) / 4u;
                        if last {
                            hs[o] = y;
                        } else {
                            zs[o] = y;
                        }
                    }
                }
            }
            storageBarrier();
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn transition_backward(@builtin(subgroup_invocation_id) sg_lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    lane = sg_lane;
    let h = p.hidden;
    let bh = p.batch * h;
    let r0 = wid.x * ROWS;
    let rows = min(ROWS, p.batch - r0);
    let top = p.depth - 1u;
    for (var s = 0u; s < p.count; s++) {
        let t = p.t0 - s;
        let here = p.da_off + t * bh;
        let later = t + 1u < p.steps;
        // dp_{d-1}(t) = (dh_out(t) + da(t+1) W [+ dp_{d-1}(t+1) S]) φ'(h(t)).
        let next_da = my_row(here + bh, h, r0);
        let next_dp = my_row(dp_at(top, t + 1u), h, r0);
        for (var g0 = 0u; g0 < h; g0 += 4u * WG) {
            let c0 = g0 + 4u * lane;
            var acc: array<vec4<f32>, 8>;
            if later {
                acc = da_mb(next_da, mat_rows(p.wt, h, h, c0), h / 4u);
                if p.skip == 1u {
                    let sk = dp_mb(next_dp, mat_rows(p.st, h, h, c0), h / 4u);
                    for (var i = 0u; i < 8u; i++) {
                        acc[i] += sk[i];
                    }
                }
            }
            for (var i = 0u; i < rows; i++) {
                if c0 < h {
                    let r = (r0 + i) * h + c0;
                    let y = hs[(p.h_off + (t + 1u) * bh + r) / 4u];
                    let g = da[(here + r) / 4u] + acc[i];
                    dp[(dp_at(top, t) + r) / 4u] = cell_backward4(g, y, p.tact);
                }
            }
        }
        storageBarrier();
        for (var jj = 0u; jj < p.depth; jj++) {
            let j = top - jj;
            let ni = n_in(j);
            let no = n_out(j);
            let grads = my_row(dp_at(j, t), no, r0);
            for (var g0 = 0u; g0 < ni; g0 += 4u * WG) {
                let c0 = g0 + 4u * lane;
                let acc = dp_mb(grads, mat_rows(p.lwt[j], ni, no, c0), no / 4u);
                for (var i = 0u; i < rows; i++) {
                    if c0 < ni {
                        let r = (r0 + i) * ni + c0;
                        if j == 0u {
                            let y = xu[(p.x_off + t * bh + r) / 4u];
                            da[(here + r) / 4u] = cell_backward4(acc[i], y, p.act);
                        } else {
                            let y = zs[(z_at(j - 1u, t) + r) / 4u];
                            dp[(dp_at(j - 1u, t) + r) / 4u] = cell_backward4(acc[i], y, p.tact);
                        }
                    }
                }
            }
            storageBarrier();
        }
    }
}
