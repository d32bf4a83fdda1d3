// Diagnostics of the backward pass: the norm of dL/dh(t) at every step.
//
// dL/dh(t) = above(t) + W^T da(t + 1): what reaches h(t) from the layer's output (the head's
// dO V, or the layer above's dA U) plus what reaches it through the recurrence. Both are
// hoisted products over all rows, made before this kernel; `rec` holds da(t + 1) W for
// t < T - 1 (none at the last step). One workgroup per step reduces its B * H values in a
// fixed tree, so the norms are the same bits every run.

struct Params {
    steps: u32,
    n: u32,       // B * H values per step
    out_off: u32, // where step 0's norm goes
    above_off: u32,
}

@group(0) @binding(0) var<storage, read> above: array<f32>; // [T, n]
@group(0) @binding(1) var<storage, read> rec: array<f32>;   // [T - 1, n]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn step_norms(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    p = p_in;
    let t = wid.y * nwg.x + wid.x;
    // The whole workgroup leaves together: the barriers below need every invocation.
    if t >= p.steps {
        return;
    }
    let last = t + 1u == p.steps;
    var s = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        var g = above[p.above_off + t * p.n + i];
        if !last {
            g += rec[t * p.n + i];
        }
        s += g * g;
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if lid.x < step {
            partial[lid.x] += partial[lid.x + step];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        out[p.out_off + t] = sqrt(partial[0]);
    }
}
