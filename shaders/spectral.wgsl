// The spectral radius of W [H, H] by power iteration: v <- W v / |W v|, the log of the growth
// |W v| / |v| added up over the iterations after a burn-in. Its mean is log rho: for a
// dominant complex pair the growth of single steps swings, but its mean over many steps still
// tends to log |lambda|. One workgroup; `iters` iterations per dispatch (lavapipe stops an
// invocation after 65535 loop iterations in all), the state carried in `state` between them.

struct Params {
    h: u32,
    w_off: u32,
    iters: u32,   // iterations in this dispatch
    start: u32,   // the first one's index over all dispatches
    counted: u32, // iterations from this index on are counted
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<f32>;
// [v (H), u (H), sum of log growth, counted iterations, 1 once W v was zero]
@group(0) @binding(1) var<storage, read_write> state: array<f32>;
@group(0) @binding(2) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

// The sum of `x` over the workgroup, in a fixed tree.
fn total(lid: u32, x: f32) -> f32 {
    partial[lid] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    // Uniform, so that the iteration may stop on it: every invocation stops together.
    let t = workgroupUniformLoad(&partial[0]);
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(64, 1, 1)
fn power_iteration(@builtin(local_invocation_id) lid3: vec3<u32>) {
    p = p_in;
    let lid = lid3.x;
    let h = p.h;
    if p.start == 0u {
        // A fixed start with no special direction: hashed values in [0.5, 1.5).
        for (var j = lid; j < h; j += WG) {
            var x = j * 747796405u + 2891336453u;
            x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
            state[j] = 0.5 + f32(x >> 8u) / 16777216.0;
        }
        if lid == 0u {
            state[2u * h] = 0.0;
            state[2u * h + 1u] = 0.0;
            state[2u * h + 2u] = 0.0;
        }
        storageBarrier();
        workgroupBarrier();
    }
    for (var it = 0u; it < p.iters; it++) {
        var uu = 0.0;
        var vv = 0.0;
        for (var j = lid; j < h; j += WG) {
            var s = 0.0;
            let row = p.w_off + j * h;
            for (var k = 0u; k < h; k++) {
                s += w[row + k] * state[k];
            }
            state[h + j] = s;
            uu += s * s;
            vv += state[j] * state[j];
        }
        storageBarrier();
        let nu = sqrt(total(lid, uu));
        let nv = sqrt(total(lid, vv));
        if nu == 0.0 || nv == 0.0 {
            // W v = 0: every eigenvalue W reaches from here is zero.
            if lid == 0u {
                state[2u * h + 2u] = 1.0;
            }
            return;
        }
        if lid == 0u && p.start + it >= p.counted {
            state[2u * h] += log(nu / nv);
            state[2u * h + 1u] += 1.0;
        }
        for (var j = lid; j < h; j += WG) {
            state[j] = state[h + j] / nu;
        }
        storageBarrier();
        workgroupBarrier();
    }
}
