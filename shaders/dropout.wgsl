// Dropout between stacked layers, as torch.nn.RNN(dropout=p): in training, each value of a
// layer's output is kept with probability 1 - p and scaled by 1 / (1 - p), else zeroed. The
// mask is never stored: `keep` hashes (the step's seed, the layer, the value's index), so the
// backward pass draws the same mask again. `state` holds the step's seed and whether it is a
// training step; out of training both kernels pass values through.
//
// `dropout_forward`: dst[i] = src[src_off + i] * mask(i), for i < n.
// `dropout_backward`: g[i] *= mask(i), in place (dL/d dropped output -> dL/d output); with
//                   `reversed`, g is in the reverse direction's reversed time, steps of
//                   `step_len` values, and value i is the output's value of step T - 1 - t.

struct Params {
    n: u32,
    src_off: u32,
    // A value is kept where its hash is at least `threshold` (p · 2^32).
    threshold: u32,
    scale: f32,
    layer: u32,
    reversed: u32,
    steps: u32,
    step_len: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<u32, 2>; // [seed, training]
@group(0) @binding(3) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

// A 32-bit integer hash (the "lowbias32" finalizer), good enough to decorrelate neighbours.
fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn mask(i: u32) -> f32 {
    let h = mix(mix(mix(state[0]) ^ (p.layer * 0x9e3779b9u)) ^ i);
    return select(0.0, p.scale, h >= p.threshold);
}

@compute @workgroup_size(64, 1, 1)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n {
        return;
    }
    var v = src[p.src_off + i];
    if state[1] != 0u {
        v *= mask(i);
    }
    dst[i] = v;
}

@compute @workgroup_size(64, 1, 1)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n || state[1] == 0u {
        return;
    }
    var k = i;
    if p.reversed != 0u {
        k = (p.steps - 1u - i / p.step_len) * p.step_len + i % p.step_len;
    }
    dst[i] *= mask(k);
}
