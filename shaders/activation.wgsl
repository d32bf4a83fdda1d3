// The nonlinearity between the layers of a deeper block (an MLP in place of the input, output
// or transition block, Pascanu et al. 2014), applied to values a product has just written.
//
// `act_forward`:  v[g_off + i] = act(v[g_off + i]), for i < n, in place.
// `act_backward`: v[g_off + i] = from(i) * act'(y[y_off + i]), for i < n: dL/d(output) into
//                 dL/d(pre-activation), act' written in terms of the output y = act(a);
//                 from(i) is v[g_off + i] itself, or src[src_off + i] when `copy` is set.
//                 With `minus` set, y[y_off + i] - src[src_off + i] is the output instead: a
//                 residual layer's, which added its input src to act(a).
// `act`: 0 tanh, 1 relu, 2 identity.

struct Params {
    n: u32,
    g_off: u32,
    y_off: u32,
    src_off: u32,
    act: u32,
    copy: u32,
    minus: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

@compute @workgroup_size(64, 1, 1)
fn act_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n {
        return;
    }
    let a = v[p.g_off + i];
    var r = a;
    if p.act == 0u {
        r = tanh(a);
    } else if p.act == 1u {
        r = max(a, 0.0);
    }
    v[p.g_off + i] = r;
}

@compute @workgroup_size(64, 1, 1)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n {
        return;
    }
    var h = y[p.y_off + i];
    if p.minus != 0u {
        h -= src[p.src_off + i];
    }
    var d = 1.0;
    if p.act == 0u {
        d = 1.0 - h * h;
    } else if p.act == 1u {
        d = select(0.0, 1.0, h > 0.0);
    }
    var g = v[p.g_off + i];
    if p.copy != 0u {
        g = src[p.src_off + i];
    }
    v[p.g_off + i] = g * d;
}
