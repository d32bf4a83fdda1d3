// Appended to optim.wgsl (WGSL has no includes; it uses that file's parameters, bindings,
// finite and index). The same updates for CPU adapters whose subgroups are 8 lanes wide
// (lavapipe), where every storage access is a loop over the lanes: four parameters per
// invocation as vec4s. Every buffer is read in whole vec4s (the crate allocates in multiples of 16 bytes,
// zeroed): past N the gradient is zero, so the update there is zero too.

@group(0) @binding(0) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> s14: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> s24: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> decay4: array<vec4<f32>>;
// With MIRRORS, what the kernels read comes from texture mirrors of the buffers (copied in
// first: ops::state_texture, vec4 i is texel (i % 1024, i / 1024)), and the norm through a
// uniform window onto its buffer: on lavapipe a texel's gather, and one load, where each
// storage load is a loop over the lanes, even at one address (the character model's 38k
// parameters: grad_norm4 0.49 -> 0.10 ms, adam4 1.17 -> 0.27 ms, the copies 0.1 ms or so).
// Unread otherwise, but bound.
@group(0) @binding(6) var<uniform> norm_u: array<vec4<f32>, 4096>;
// (The parameters after the window, where optim.wgsl's kernels have theirs at 6.)
@group(0) @binding(7) var<storage, read> p4_in: Params;
@group(0) @binding(8) var param_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var grad_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(10) var s1_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var s2_t: texture_storage_2d<rgba32float, read>;
override MIRRORS: bool = false;

fn texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i % 1024u, i / 1024u);
}

fn param_at(i: u32) -> vec4<f32> {
    if MIRRORS {
        return textureLoad(param_t, texel(i));
    }
    return param4[i];
}

fn grad_at(i: u32) -> vec4<f32> {
    if MIRRORS {
        return textureLoad(grad_t, texel(i));
    }
    return grad4[i];
}

fn s1_at(i: u32) -> vec4<f32> {
    if MIRRORS {
        return textureLoad(s1_t, texel(i));
    }
    return s14[i];
}

fn s2_at(i: u32) -> vec4<f32> {
    if MIRRORS {
        return textureLoad(s2_t, texel(i));
    }
    return s24[i];
}

// The global norm grad_norm4 wrote.
fn norm0() -> f32 {
    if MIRRORS {
        return norm_u[0].x;
    }
    return norm[0];
}

// (A NaN passes through unclamped, for the norm to catch.)
fn value_clipped4(i: u32) -> vec4<f32> {
    let g = grad_at(i);
    let c = vec4<f32>(p.clip_value);
    return select(g, clamp(g, -c, c), p.clip_value > 0.0);
}

// One subgroup: each lane sums its vec4s, the lanes' sums added by shuffles.
@compute @workgroup_size(8, 1, 1)
fn grad_norm4(@builtin(subgroup_invocation_id) lane: u32) {
    p = p4_in;
    var s = vec4<f32>(0.0);
    let n4 = (p.n + 3u) / 4u;
    for (var i = lane; i < n4; i += 8u) {
        let g = value_clipped4(i);
        s += g * g;
    }
    var t = s.x + s.y + s.z + s.w;
    t += subgroupShuffleXor(t, 4u);
    t += subgroupShuffleXor(t, 2u);
    t += subgroupShuffleXor(t, 1u);
    if lane == 0u {
        let n = sqrt(t);
        norm[0] = n;
        if !finite(n) && norm[1] == 0.0 {
            norm[1] = f32(p.step);
        }
    }
}

fn clipped4(i: u32, w: vec4<f32>, norm: f32) -> vec4<f32> {
    var scale = 1.0;
    if p.clip > 0.0 {
        scale = min(1.0, p.clip / (norm + 1e-6));
    }
    return value_clipped4(i) * scale + p.weight_decay * w;
}

@compute @workgroup_size(256, 1, 1)
fn sgd4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p4_in;
    let i = index(gid, nwg); // a vec4's
    let n = norm0();
    if 4u * i >= p.n || !finite(n) {
        return;
    }
    let w = param_at(i);
    var g = clipped4(i, w, n);
    if p.momentum != 0.0 {
        g = p.momentum * s1_at(i) + g;
        s14[i] = g;
    }
    param4[i] = w - p.lr * g;
}

@compute @workgroup_size(256, 1, 1)
fn adam4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p4_in;
    let i = index(gid, nwg); // a vec4's
    let n = norm0();
    if 4u * i >= p.n || !finite(n) {
        return;
    }
    var w = param_at(i);
    let g = clipped4(i, w, n);
    let m = p.beta1 * s1_at(i) + (1.0 - p.beta1) * g;
    let v = p.beta2 * s2_at(i) + (1.0 - p.beta2) * g * g;
    s14[i] = m;
    s24[i] = v;
    if p.decoupled != 0.0 {
        w *= 1.0 - p.lr * p.decoupled * decay4[i];
    }
    param4[i] = w - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}
