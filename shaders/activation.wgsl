// The nonlinearity between the layers of a deeper block (an MLP in place of the input or
// output block, Pascanu et al. 2014), applied to values a product has just written.
//
// `act_forward`:  v[off + i] = act(v[off + i]), for i < n, in place.
// `act_backward`: g[off + i] *= act'(y[off + i]), for i < n: dL/d(post-activation) into
//                 dL/d(pre-activation), act' written in terms of the output y = act(a).
// `act`: 0 tanh, 1 relu (2, identity, is never dispatched).

struct Params {
    n: u32,
    off: u32,
    act: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> v: array<f32>;
@group(0) @binding(2) var<storage, read> p: Params;

@compute @workgroup_size(64, 1, 1)
fn act_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n {
        return;
    }
    let a = v[p.off + i];
    v[p.off + i] = select(max(a, 0.0), tanh(a), p.act == 0u);
}

@compute @workgroup_size(64, 1, 1)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n {
        return;
    }
    let h = y[p.off + i];
    let d = select(select(0.0, 1.0, h > 0.0), 1.0 - h * h, p.act == 0u);
    v[p.off + i] *= d;
}
