// Optimizer updates over the whole flat parameter vector in one dispatch, with clipping folded
// in (PyTorch's clip_grad_value_, then clip_grad_norm_, then the optimizer step):
//   g     = clamp(grad, -clip_value, clip_value)       (clip_value = 0: no clamping)
//   norm  = sqrt(sum g^2)                              (entry `grad_norm`, one workgroup)
//   g'    = g * min(1, clip / (norm + 1e-6)) + weight_decay * p     (clip = 0: no clipping)
//   sgd:  buf = momentum * buf + g';  p -= lr * buf   (torch.optim.SGD, dampening 0)
//   adam: m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
//         p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)  (torch.optim.Adam)
//   adamw: p *= 1 - lr * decoupled * decay[i] first, then adam's update (torch.optim.AdamW;
//         decay[i] is 0 for the parameters left out, such as biases; decoupled 0 is Adam)
// A step whose gradient norm is not finite (a NaN or an infinity anywhere) updates nothing,
// so the parameters stay the last finite ones, and the first such step is kept in norm[1]
// (its number as a float, exact to 2^24; 0: none yet) for the host to report.

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,     // sgd
    weight_decay: f32,
    clip: f32,
    beta1: f32,        // adam
    beta2: f32,
    eps: f32,
    bc1: f32,          // 1 - beta1^step
    bc2: f32,          // 1 - beta2^step
    clip_value: f32,
    decoupled: f32,    // adamw
    step: u32,         // this update's number, from 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>; // [N]
@group(0) @binding(1) var<storage, read> grad: array<f32>;        // [N]
@group(0) @binding(2) var<storage, read_write> s1: array<f32>;    // [N] momentum buffer or m
@group(0) @binding(3) var<storage, read_write> s2: array<f32>;    // [N] v (adam)
@group(0) @binding(4) var<storage, read_write> norm: array<f32>;  // [2] norm, first bad step
@group(0) @binding(5) var<storage, read> decay: array<f32>;       // [N] adamw: 1 decays, 0 not
@group(0) @binding(6) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn grad_norm(@builtin(local_invocation_id) lid: vec3<u32>) {
    p = p_in;
    var s = 0.0;
    for (var i = lid.x; i < p.n; i += 256u) {
        let g = value_clipped(i);
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
        let n = sqrt(partial[0]);
        norm[0] = n;
        if !finite(n) && norm[1] == 0.0 {
            norm[1] = f32(p.step);
        }
    }
}

// Neither NaN nor infinite: the exponent's bits are not all ones (no arithmetic, which a
// compiler assuming finite math could fold away).
fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// The gradient clamped to ±clip_value, where that is set.
fn value_clipped(i: u32) -> f32 {
    if p.clip_value > 0.0 {
        return clamp(grad[i], -p.clip_value, p.clip_value);
    }
    return grad[i];
}

fn clipped(i: u32) -> f32 {
    var scale = 1.0;
    if p.clip > 0.0 {
        scale = min(1.0, p.clip / (norm[0] + 1e-6));
    }
    return value_clipped(i) * scale + p.weight_decay * param[i];
}

// 2-D grid so that parameter vectors past 65535 workgroups still fit.
fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = index(gid, nwg);
    if i >= p.n || !finite(norm[0]) {
        return;
    }
    var g = clipped(i);
    if p.momentum != 0.0 {
        g = p.momentum * s1[i] + g;
        s1[i] = g;
    }
    param[i] -= p.lr * g;
}

@compute @workgroup_size(256, 1, 1)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = index(gid, nwg);
    if i >= p.n || !finite(norm[0]) {
        return;
    }
    let g = clipped(i);
    let m = p.beta1 * s1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * g * g;
    s1[i] = m;
    s2[i] = v;
    var w = param[i];
    if p.decoupled != 0.0 {
        // AdamW: the parameter shrinks first, where it decays.
        w *= 1.0 - p.lr * p.decoupled * decay[i];
    }
    param[i] = w - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}
