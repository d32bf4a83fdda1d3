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
@group(0) @binding(1) var<storage, read_write> wp: array<f32>;
@group(0) @binding(2) var<storage, read> p_in: Prep;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Prep;

// One invocation per element of [H, HP]; the grid is 2-D when it needs over 65535 groups.
@compute @workgroup_size(64, 1, 1)
fn prepare(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = p_in;
    let i = gid.x + gid.y * 65535u * 64u;
    let h = p.hidden;
    let hp = p.hp;
    if i >= h * hp {
        return;
    }
    let k = i / hp;
    let j = i % hp;
    var wt = 0.0;
    var wn = 0.0;
    if j < h {
        wt = w[p.w_off + j * h + k];
        wn = w[p.w_off + k * h + j];
    }
    wp[p.sec0 + i] = wt;
    wp[p.sec1 + i] = wn;
}
