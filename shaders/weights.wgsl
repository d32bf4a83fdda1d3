// The two layouts of W [H, H] that the recurrence kernels read as vec4s: two [H, HP] matrices
// with HP = H rounded up to 4 and zero padding columns; section 0 (at 0) is W^T (wp[0][k][j] =
// W[j][k]), section 1 is W (wp[1][k][j] = W[k][j]). A bidirectional layer keeps both
// directions' layouts in one buffer, section by section ([section][direction], each at a
// multiple of 64 floats, so a uniform window from either section's start takes both
// directions where they fit). Written whenever W has changed, so the serial loop
// never reads W with a stride.

struct Prep {
    hidden: u32,
    hp: u32,
    w_off: u32,
    sec0: u32, // where section 0 of this direction starts, in floats
    sec1: u32, // where section 1 of this direction starts, in floats
}

@group(0) @binding(0) var<storage, read> w: array<f32>;
// Written a vec4 at a time: HP and both sections' offsets are multiples of 4 (on lavapipe a
// store is a loop over the lanes, a vec4's costing less than two scalars').
@group(0) @binding(1) var<storage, read_write> wp: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> p_in: Prep;
// With W_TEXTURE, W from the parameters' mirror (ops::state_texture: vec4 i is texel
// (i % 1024, i / 1024)), copied in first: on lavapipe a texel's gather where a storage load at
// an address that varies by lane is a loop over the lanes (with the vec4 stores, the character
// model's W 0.40 -> 0.20 ms). Unread otherwise, but bound.
@group(0) @binding(3) var pm: texture_storage_2d<rgba32float, read>;
override W_TEXTURE: bool = false;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Prep;

// Element i of the buffer holding W.
fn w_at(i: u32) -> f32 {
    if W_TEXTURE {
        let v = i / 4u;
        return textureLoad(pm, vec2<u32>(v % 1024u, v / 1024u))[i % 4u];
    }
    return w[i];
}

// One invocation per vec4 of [H, HP], the grid looping over them (a few workgroups per
// thread on a CPU adapter, each of which costs some microseconds there).
@compute @workgroup_size(64, 1, 1)
fn prepare(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let h = p.hidden;
    let q4 = p.hp / 4u;
    for (var i = gid.x; i < h * q4; i += nwg.x * 64u) {
        let k = i / q4;
        let j0 = (i % q4) * 4u;
        var wt = vec4<f32>(0.0);
        var wn = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            // Padding columns (j past H) are zero; their loads read W's last column.
            let j = min(j0 + c, h - 1u);
            let live = j0 + c < h;
            wt[c] = select(0.0, w_at(p.w_off + j * h + k), live);
            wn[c] = select(0.0, w_at(p.w_off + k * h + j), live);
        }
        wp[p.sec0 / 4u + i] = wt;
        wp[p.sec1 / 4u + i] = wn;
    }
}
