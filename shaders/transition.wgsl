// The deep transition (DT-RNN, and DT(S) with its shortcut S; Pascanu et al. 2014), every
// layer of a step fused into one kernel:
//
//   forward:  a(t) = xu(t) + W h(t-1)                 xu(t) = U x(t) + b (hoisted), gets act(a)
//             z_0 = φ(T_0 act(a(t)) + c_0), ..., h(t) = z_{d-1} = φ(T_{d-1} z_{d-2} + c_{d-1}
//                                                                      [+ S h(t-1)])
//   backward: dL/dh(t) = dh_out(t) + dL/da(t+1) W [+ dp_{d-1}(t+1) S]
//             dp_{d-1}(t) = dL/dh(t) φ'(h(t)), dp_{j-1}(t) = (dp_j(t) T_j) φ'(z_{j-1}(t)),
//             dL/da(t) = (dp_0(t) T_0) act'(act(a(t)))     (written over dh_out(t) in `da`)
//
// with act the layer's nonlinearity and φ the transition's (`cell_forward`/`cell_backward` of
// the Elman cell, spliced in at the mark below: both take their derivative from the output).
//
// A workgroup owns ROWS batch rows and every unit of them, so the layers of a step depend on
// nothing another workgroup writes: each stage writes its rows to global memory (where the
// backward pass and the weight gradients read them anyway) and a storage barrier hands them to
// the next stage. One dispatch runs `count` steps: all of them (the persistent driver, in as
// many dispatches as a CPU adapter's loop budget needs) or one (the per-step driver).
//
// Forward products read the transposed copies in `tp` (columns contiguous, so neighbouring
// invocations read neighbouring floats); backward ones the weights themselves in `wts`, whose
// rows are already what they need.

// struct Tr and the layout helpers: transition_params.wgsl, put first.

@group(0) @binding(0) var<storage, read> wts: array<f32>;
@group(0) @binding(1) var<storage, read> tp: array<f32>;
@group(0) @binding(2) var<storage, read_write> xu: array<f32>;
@group(0) @binding(3) var<storage, read_write> hs: array<f32>;
// Every layer's output but the last, [depth - 1][T, B, width].
@group(0) @binding(4) var<storage, read_write> zs: array<f32>;
// Every layer's dL/d(pre-activation), [depth][T, B, no_j] (layers of width first, then H).
@group(0) @binding(5) var<storage, read_write> dp: array<f32>;
@group(0) @binding(6) var<storage, read_write> da: array<f32>;
@group(0) @binding(7) var<storage, read> p_in: Tr;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Tr;

const ROWS: u32 = 4u;
const WG: u32 = 64u;

// {{cell}}

// The first float of each of this workgroup's rows in a [B, n] block from `start`; rows past
// the batch read the last row (valid memory) and are never written.
fn rows_of(start: u32, n: u32, r0: u32) -> array<u32, 4> {
    var base: array<u32, 4>;
    for (var i = 0u; i < ROWS; i++) {
        base[i] = start + min(r0 + i, p.batch - 1u) * n;
    }
    return base;
}

// Sums over k < n of rows[i][k] * m[w + k * pitch + col]: the rows from `hs`, m from `tp`.
// WGSL passes no storage pointers, so this is a template: the crate writes a copy of it for
// each (rows, matrix) pair the entry points call, `xu_tp`, `zs_tp`, `da_wts`, `dp_wts`
// (PRODUCTS in src/ops/transition.rs).
fn hs_tp(b: array<u32, 4>, n: u32, w: u32, pitch: u32, col: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < n; k++) {
        acc += tp[w + k * pitch + col] * vec4<f32>(hs[b[0] + k], hs[b[1] + k], hs[b[2] + k], hs[b[3] + k]);
    }
    return acc;
}

// {{products}}

fn pad4(n: u32) -> u32 {
    return (n + 3u) & ~3u;
}

@compute @workgroup_size(64, 1, 1)
fn transition_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let h = p.hidden;
    let bh = p.batch * h;
    let r0 = wid.x * ROWS;
    let rows = min(ROWS, p.batch - r0);
    for (var s = 0u; s < p.count; s++) {
        let t = p.t0 + s;
        let x = p.x_off + t * bh;
        let prev = rows_of(p.h_off + t * bh, h, r0);
        // act(a(t)) = act(xu(t) + W h(t-1)), over xu(t).
        for (var col = lid.x; col < h; col += WG) {
            let acc = hs_tp(prev, h, p.wt, pad4(h), col);
            for (var i = 0u; i < rows; i++) {
                let o = x + (r0 + i) * h + col;
                xu[o] = cell_forward(xu[o] + acc[i], p.act);
            }
        }
        storageBarrier();
        for (var j = 0u; j < p.depth; j++) {
            let ni = n_in(j);
            let no = n_out(j);
            let last = j + 1u == p.depth;
            // Layer 0 reads act(a(t)) from xu, the others the previous layer from zs.
            let input = rows_of(select(z_at(max(j, 1u) - 1u, t), x, j == 0u), ni, r0);
            let out = select(z_at(j, t), p.h_off + (t + 1u) * bh, last);
            for (var col = lid.x; col < no; col += WG) {
                var acc: vec4<f32>;
                if j == 0u {
                    acc = xu_tp(input, ni, p.lwt[j], pad4(no), col);
                } else {
                    acc = zs_tp(input, ni, p.lwt[j], pad4(no), col);
                }
                if last && p.skip == 1u {
                    acc += hs_tp(prev, h, p.st, pad4(h), col);
                }
                let c = wts[p.lb[j] + col];
                for (var i = 0u; i < rows; i++) {
                    let y = cell_forward(acc[i] + c, p.tact);
                    let o = out + (r0 + i) * no + col;
                    if last {
                        hs[o] = y;
                    } else {
                        zs[o] = y;
                    }
                }
            }
            storageBarrier();
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn transition_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
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
        let next_da = rows_of(here + bh, h, r0);
        let next_dp = rows_of(dp_at(top, t + 1u), h, r0);
        for (var col = lid.x; col < h; col += WG) {
            var acc = vec4<f32>(0.0);
            if later {
                acc = da_wts(next_da, h, p.w, h, col);
                if p.skip == 1u {
                    acc += dp_wts(next_dp, h, p.s, h, col);
                }
            }
            for (var i = 0u; i < rows; i++) {
                let r = (r0 + i) * h + col;
                let y = hs[p.h_off + (t + 1u) * bh + r];
                dp[dp_at(top, t) + r] = cell_backward(da[here + r] + acc[i], y, p.tact);
            }
        }
        storageBarrier();
        for (var jj = 0u; jj < p.depth; jj++) {
            let j = top - jj;
            let ni = n_in(j);
            let no = n_out(j);
            let grads = rows_of(dp_at(j, t), no, r0);
            for (var col = lid.x; col < ni; col += WG) {
                let acc = dp_wts(grads, no, p.lw[j], ni, col);
                for (var i = 0u; i < rows; i++) {
                    let r = (r0 + i) * ni + col;
                    if j == 0u {
                        let y = xu[p.x_off + t * bh + r];
                        da[here + r] = cell_backward(acc[i], y, p.act);
                    } else {
                        let y = zs[z_at(j - 1u, t) + r];
                        dp[dp_at(j - 1u, t) + r] = cell_backward(acc[i], y, p.tact);
                    }
                }
            }
            storageBarrier();
        }
    }
}
