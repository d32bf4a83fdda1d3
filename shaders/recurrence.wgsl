// The serial part of the Elman recurrence, forward and backward, fused with the nonlinearity:
//
//   forward:  h(t)[b, j]  = act(xu(t)[b, j] + sum_k W[j, k] h(t-1)[b, k])
//   backward: da(t)[b, j] = (dh_out(t)[b, j] + sum_k da(t+1)[b, k] W[k, j]) * act'(h(t)[b, j])
//
// xu(t) already holds U x(t) + b_ih + b_hh (one multiply over all steps, before the loop) and
// dh_out(t) holds dL/do(t) V (likewise, after the loss); da is computed in place over dh_out.
// act' is taken from h itself: tanh' = 1 - h^2, relu' = [h > 0], so pre-activations are not kept.
//
// Both directions are the same product: a row of state times a matrix whose columns j are
// contiguous. `weights.wgsl` writes W once per call into `wp` as two [H, HP] matrices padded
// with zero columns to HP = H rounded up to 4, so every invocation reads vec4s of 4
// neighbouring columns: section 0 holds W^T (forward, wp[k][j] = W[j][k]), section 1 (at
// r.sec1) W itself.
//
// Each invocation computes ROWS batch rows x 4 columns, the state values coming as scalars
// (the same for every invocation: a broadcast) and W as vec4s, so each W load feeds 4 * ROWS
// multiply-adds. Two drivers use it (on CPU adapters only where H is not a multiple of 4:
// elsewhere the register-blocked kernels of recurrence_blocked.wgsl run):
//   step_*: one dispatch per time step, reading the state from global memory; no barrier.
//   seq_*:  one dispatch for the whole sequence ("persistent"): a workgroup owns ROWS batch
//           rows (rows are independent, so no workgroup waits for another) and keeps their
//           state in workgroup memory, double-buffered, one barrier per step.

struct Rec {
    batch: u32,
    hidden: u32,
    hp: u32,       // H rounded up to a multiple of 4
    act: u32,      // 0: tanh, 1: relu
    steps: u32,    // T
    t: u32,        // step_*: the time step; seq_*: the first step of this dispatch
    count: u32,    // seq_*: steps in this dispatch (the sequence may come in chunks)
    sec1: u32,     // where section 1 of wp starts, in vec4s
    // Both directions of a bidirectional layer run side by side, one per workgroup row
    // (`dir`, from dir0): these are the distances between their src, dst (in floats) and W
    // layouts (in vec4s); zero for one direction.
    dsrc: u32,
    ddst: u32,
    dwp: u32,
    dir0: u32,
}

// Where this workgroup's direction starts in src and dst (floats) and in wp (vec4s past a
// section's start): set first thing by every entry point, so no inner loop reads a parameter
// for it.
var<private> xoff: u32;
var<private> doff: u32;
var<private> wdir: u32;

// Built with TWO_DIRS only for a bidirectional layer: with one direction every offset is a
// constant zero the compiler folds away.
override TWO_DIRS: bool = false;

fn set_direction(d: u32) {
    if TWO_DIRS {
        let dir = r.dir0 + d;
        xoff = dir * r.dsrc;
        doff = dir * r.ddst;
        wdir = dir * r.dwp;
    } else {
        xoff = 0u;
        doff = 0u;
        wdir = 0u;
    }
}

const ROWS: u32 = 4u;
const WG: u32 = 64u;
// The largest H the persistent kernels hold: 2 buffers x ROWS rows x HMAX floats = 32 KiB.
const HMAX: u32 = 1024u;

// The cell's epilogues, cell_forward and cell_backward (shaders/cell_*.wgsl), go here:
// {{cell}}

// ---- step_*: one time step per dispatch ----------------------------------------------------

@group(0) @binding(0) var<storage, read> wp: array<vec4<f32>>;   // [2, H, HP / 4]
@group(0) @binding(1) var<storage, read> src: array<f32>;        // forward: xu; backward: h_all
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // forward: h_all; backward: da
@group(0) @binding(3) var<storage, read> r_in: Rec;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> r: Rec;

// The 4 x 4 block of sums over k of dst[state + row (b0 + i)][k] * wp[sec][k][column j4 * 4 + c].
fn step_product(sec: u32, state: u32, b0: u32, j4: u32) -> array<vec4<f32>, 4> {
    let h = r.hidden;
    let q = r.hp / 4u;
    // Rows past the batch read the last row (valid memory) and are never written.
    var base: array<u32, 4>;
    for (var i = 0u; i < ROWS; i++) {
        base[i] = doff + state + min(b0 + i, r.batch - 1u) * h;
    }
    let ws = sec + wdir;
    var acc: array<vec4<f32>, 4>;
    for (var k = 0u; k < h; k++) {
        let wv = wp[ws + k * q + j4];
        acc[0] += wv * dst[base[0] + k];
        acc[1] += wv * dst[base[1] + k];
        acc[2] += wv * dst[base[2] + k];
        acc[3] += wv * dst[base[3] + k];
    }
    return acc;
}

// forward: h_all[t + 1] = act(xu[t] + h_all[t] W^T); h_all is [T + 1, B, H], xu [T, B, H].
@compute @workgroup_size(64, 1, 1)
fn step_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.z);
    let j4 = wid.x * WG + lid.x;
    let h = r.hidden;
    let q = r.hp / 4u;
    if j4 >= q {
        return;
    }
    let b0 = wid.y * ROWS;
    let bh = r.batch * h;
    let acc = step_product(0u, r.t * bh, b0, j4);
    for (var i = 0u; i < ROWS; i++) {
        let b = b0 + i;
        if b >= r.batch {
            break;
        }
        for (var c = 0u; c < 4u; c++) {
            let j = j4 * 4u + c;
            if j < h {
                let o = r.t * bh + b * h + j;
                dst[doff + o + bh] = cell_forward(src[xoff + o] + acc[i][c], r.act);
            }
        }
    }
}

// backward: da[t] = (da[t] + da[t + 1] W) * act'(h_all[t + 1]); da[T] counts as zero.
@compute @workgroup_size(64, 1, 1)
fn step_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.z);
    let j4 = wid.x * WG + lid.x;
    let h = r.hidden;
    let q = r.hp / 4u;
    if j4 >= q {
        return;
    }
    let b0 = wid.y * ROWS;
    let bh = r.batch * h;
    var acc: array<vec4<f32>, 4>;
    if r.t + 1u < r.steps {
        acc = step_product(r.sec1, (r.t + 1u) * bh, b0, j4); // section 1: W itself
    }
    for (var i = 0u; i < ROWS; i++) {
        let b = b0 + i;
        if b >= r.batch {
            break;
        }
        for (var c = 0u; c < 4u; c++) {
            let j = j4 * 4u + c;
            if j < h {
                let o = r.t * bh + b * h + j;
                let d = doff + o;
                dst[d] = cell_backward(dst[d] + acc[i][c], src[xoff + o + bh], r.act);
            }
        }
    }
}

// ---- seq_*: the whole sequence in one dispatch -------------------------------------------
//
// (Or in a few: lavapipe's shader compiler stops any invocation after 65535 loop iterations
// in all, silently, so on CPU adapters the driver cuts the sequence into chunks that stay
// well under that and each chunk starts from the state the one before left in memory.)
//
// Here the state sits in workgroup memory as vec4s along k, so each invocation takes its 4
// columns of W as 4 vec4s along k too (section 1 read as rows j: W[j][k] for the forward
// step; section 0 read as rows j: W[k][j] for the backward step) and every load feeds 4
// multiply-adds: per 4 steps of k, 8 loads for 64 multiply-adds.

// Invocations per persistent workgroup: 64 on GPUs; 8, one SIMD group, on CPU adapters (on
// lavapipe both widths measured the same; 8 leaves no lane idle at small H).
override SEQ_WG: u32 = 64u;
var<workgroup> state: array<vec4<f32>, 2048>; // [2][ROWS][HMAX / 4]

fn slot(buf: u32, i: u32, k4: u32) -> u32 {
    return (buf * ROWS + i) * (HMAX / 4u) + k4;
}

// The 4 x 4 block of sums over k of state[cur][row i][k] * wp[sec][column j4 * 4 + c][k].
fn seq_product(sec: u32, cur: u32, j4: u32) -> array<vec4<f32>, 4> {
    let q = r.hp / 4u;
    // Columns past H are zero rows of the padded matrix only up to HP; clamp to row H - 1.
    let last = r.hidden - 1u;
    let ws = sec + wdir;
    let w0 = ws + min(j4 * 4u, last) * q;
    let w1 = ws + min(j4 * 4u + 1u, last) * q;
    let w2 = ws + min(j4 * 4u + 2u, last) * q;
    let w3 = ws + min(j4 * 4u + 3u, last) * q;
    var acc: array<vec4<f32>, 4>;
    for (var k4 = 0u; k4 < q; k4++) {
        let c0 = wp[w0 + k4];
        let c1 = wp[w1 + k4];
        let c2 = wp[w2 + k4];
        let c3 = wp[w3 + k4];
        for (var i = 0u; i < ROWS; i++) {
            let s = state[slot(cur, i, k4)];
            acc[i] += vec4<f32>(dot(s, c0), dot(s, c1), dot(s, c2), dot(s, c3));
        }
    }
    return acc;
}

// Zeroes both state buffers, so padding columns (k >= H) contribute nothing.
fn seq_clear(lid: u32) {
    for (var n = lid; n < 2u * ROWS * (HMAX / 4u); n += SEQ_WG) {
        state[n] = vec4<f32>(0.0);
    }
}

// Loads rows b0.. of the [B, H] matrix at element `base` of dst into state buffer 0.
fn seq_load(lid: u32, b0: u32, base: u32) {
    let h = r.hidden;
    for (var i = 0u; i < ROWS; i++) {
        let b = b0 + i;
        if b >= r.batch {
            break;
        }
        for (var k = lid; k < h; k += SEQ_WG) {
            state[slot(0u, i, k / 4u)][k % 4u] = dst[doff + base + b * h + k];
        }
    }
}

// forward over steps t0 .. t0 + count - 1; workgroup x owns batch rows 4x .. 4x + 3.
@compute @workgroup_size(SEQ_WG, 1, 1)
fn seq_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.y);
    let h = r.hidden;
    let q = r.hp / 4u;
    let b0 = wid.x * ROWS;
    let bh = r.batch * h;
    let wn = r.sec1; // section 1: W, rows j along k
    seq_clear(lid.x);
    workgroupBarrier();
    // h(t0 - 1), slot t0 of h_all (h0 when t0 = 0); rows past the batch stay zero and are
    // never written back.
    seq_load(lid.x, b0, r.t * bh);
    workgroupBarrier();
    for (var n = 0u; n < r.count; n++) {
        let t = r.t + n;
        let cur = n % 2u;
        for (var j4 = lid.x; j4 < q; j4 += SEQ_WG) {
            let acc = seq_product(wn, cur, j4);
            for (var i = 0u; i < ROWS; i++) {
                let b = b0 + i;
                if b >= r.batch {
                    break;
                }
                for (var c = 0u; c < 4u; c++) {
                    let j = j4 * 4u + c;
                    if j < h {
                        let o = t * bh + b * h + j;
                        let v = cell_forward(src[xoff + o] + acc[i][c], r.act);
                        dst[doff + o + bh] = v;
                        state[slot(1u - cur, i, j4)][c] = v;
                    }
                }
            }
        }
        workgroupBarrier();
    }
}

// backward over steps t0 down to t0 - count + 1, in place over da.
@compute @workgroup_size(SEQ_WG, 1, 1)
fn seq_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.y);
    let h = r.hidden;
    let q = r.hp / 4u;
    let b0 = wid.x * ROWS;
    let bh = r.batch * h;
    // da(t0 + 1), from the chunk before; zero at the last step (da(T) is zero); rows past
    // the batch stay zero and are never written back.
    seq_clear(lid.x);
    workgroupBarrier();
    if r.t + 1u < r.steps {
        seq_load(lid.x, b0, (r.t + 1u) * bh);
    }
    workgroupBarrier();
    for (var n = 0u; n < r.count; n++) {
        let t = r.t - n;
        let cur = n % 2u;
        for (var j4 = lid.x; j4 < q; j4 += SEQ_WG) {
            let acc = seq_product(0u, cur, j4); // section 0: W^T, rows j along k
            for (var i = 0u; i < ROWS; i++) {
                let b = b0 + i;
                if b >= r.batch {
                    break;
                }
                for (var c = 0u; c < 4u; c++) {
                    let j = j4 * 4u + c;
                    if j < h {
                        let o = doff + t * bh + b * h + j;
                        let s = xoff + t * bh + b * h + j;
                        let d = cell_backward(dst[o] + acc[i][c], src[s + bh], r.act);
                        dst[o] = d;
                        state[slot(1u - cur, i, j4)][c] = d;
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
