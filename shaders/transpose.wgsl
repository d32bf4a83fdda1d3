// Transpose with zero padding: dst[c, r] = src[r, c] for r < rows, zero for rows <= r < kp,
// where kp (a multiple of 4) is the row length of dst. On CPU adapters the weight gradients
// Aᵀ B over all T·B rows run as products of two such transposes, whose rows are
// contiguous along the reduction (see `matmul_nt4`): faster there than reading A and B down
// their columns.
//
// `transpose`: each invocation writes one vec4 of dst, 4 neighbouring rows of one column of
// src. `transpose4`, where cols and src_off are multiples of 4: a 4 x 4 block, read as 4 vec4s
// and written as 4 (on lavapipe, which pays per load per SIMD lane, about 2.5x fewer).

struct Params {
    rows: u32,
    cols: u32,
    src_off: u32,
    dst_off: u32, // in vec4s
    kp: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;              // [rows, cols] at src_off
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;       // the same, as vec4s
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;  // [cols, kp] at dst_off
@group(0) @binding(2) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

@compute @workgroup_size(64, 1, 1)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let r4 = gid.x;
    if r4 * 4u >= p.kp {
        return;
    }
    // Columns past the grid's 65535 rows of workgroups come round again.
    for (var c = gid.y; c < p.cols; c += nwg.y) {
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            let r = r4 * 4u + i;
            if r < p.rows {
                v[i] = src[p.src_off + r * p.cols + c];
            }
        }
        dst[p.dst_off + c * (p.kp / 4u) + r4] = v;
    }
}

@compute @workgroup_size(64, 1, 1)
fn transpose4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let r4 = gid.x;
    if r4 * 4u >= p.kp {
        return;
    }
    let q = p.cols / 4u;
    for (var c4 = gid.y; c4 < q; c4 += nwg.y) {
        var m: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            let r = r4 * 4u + i;
            if r < p.rows {
                m[i] = src4[p.src_off / 4u + r * q + c4];
            }
        }
        let row = p.dst_off + c4 * 4u * (p.kp / 4u) + r4;
        dst[row] = vec4<f32>(m[0].x, m[1].x, m[2].x, m[3].x);
        dst[row + p.kp / 4u] = vec4<f32>(m[0].y, m[1].y, m[2].y, m[3].y);
        dst[row + p.kp / 2u] = vec4<f32>(m[0].z, m[1].z, m[2].z, m[3].z);
        dst[row + 3u * (p.kp / 4u)] = vec4<f32>(m[0].w, m[1].w, m[2].w, m[3].w);
    }
}
