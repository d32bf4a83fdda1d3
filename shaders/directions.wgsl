// The two directions of a bidirectional layer. The reverse direction runs the same recurrence
// kernels as the forward one over its inputs reversed in time, so its states and gradients
// are kept in reversed time (slot s + 1 of its h_all is h at time T - 1 - s); these kernels
// move values between that order and true time:
//
// `reverse_steps`: dst[T - 1 - t] = src[t], each step n values (a layer's input, for the
//                  reverse direction's input projection; dL/da of the reverse direction).
// `merge_reversed`: dst[t] = a[t] + b[T - 1 - t] (dL/dx from both directions).
// `concat`:        out[t, b] = [h_fwd(t), h_rev(t)], [T, B, 2H], from a bidirectional
//                  layer's h_all (the reverse direction's at rev_off): what the next layer and
//                  the head read.
// `split`:         from dL/d out [T, B, 2H] in true time, plus (flag 1) one in reversed
//                  time, dL/dh of each direction into the layer's da: the forward's in true
//                  time, the reverse's (at rev_off) reversed.
//
// Values of a step on x, steps on y, each coming round past the grid (65535 workgroups).

struct Params {
    steps: u32,
    batch: u32,
    hidden: u32,
    // Values per step for reverse_steps and merge_reversed.
    n: u32,
    src_off: u32,
    flags: u32,
    // concat, split: where the reverse direction's tensor starts in the layer's buffer.
    rev_off: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read_write> out1: array<f32>;
@group(0) @binding(4) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

@compute @workgroup_size(64, 1, 1)
fn reverse_steps(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    for (var r = gid.x; r < p.n; r += nwg.x * 64u) {
        for (var t = gid.y; t < p.steps; t += nwg.y) {
            out0[(p.steps - 1u - t) * p.n + r] = a[p.src_off + t * p.n + r];
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn merge_reversed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    for (var r = gid.x; r < p.n; r += nwg.x * 64u) {
        for (var t = gid.y; t < p.steps; t += nwg.y) {
            out0[t * p.n + r] = a[t * p.n + r] + b[(p.steps - 1u - t) * p.n + r];
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let h = p.hidden;
    let width = 2u * h;
    let bh = p.batch * h;
    for (var r = gid.x; r < p.batch * width; r += nwg.x * 64u) {
        let row = r / width;
        let c = r % width;
        for (var t = gid.y; t < p.steps; t += nwg.y) {
            var v: f32;
            if c < h {
                v = a[(t + 1u) * bh + row * h + c];
            } else {
                v = a[p.rev_off + (p.steps - t) * bh + row * h + c - h];
            }
            out0[t * p.batch * width + r] = v;
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let h = p.hidden;
    let width = 2u * h;
    let n = p.batch * width;
    let bh = p.batch * h;
    for (var r = gid.x; r < n; r += nwg.x * 64u) {
        let row = r / width;
        let c = r % width;
        for (var t = gid.y; t < p.steps; t += nwg.y) {
            var v = a[t * n + r];
            if (p.flags & 1u) != 0u {
                v += b[(p.steps - 1u - t) * n + r];
            }
            if c < h {
                out0[t * bh + row * h + c] = v;
            } else {
                out0[p.rev_off + (p.steps - 1u - t) * bh + row * h + c - h] = v;
            }
        }
    }
}
