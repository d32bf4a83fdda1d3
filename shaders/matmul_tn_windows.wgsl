// Appended to matmul_broadcast.wgsl after the crate's copies of its window-pair functions for
// windows 1 .. 3 (tn_part_1 reading au_1 and bu_1, ...). matmul_tn_bc over four window pairs per
// dispatch: parts of p.k_split values of k each, summed in registers, so C is read and written
// once per four parts. Per part lavapipe paid C's read (a loop over the lanes per value) and
// its write: in the character model's weight gradients, 16 parts of 128 k each, about a
// quarter of the product's time.
//
// Bindings: au, bu at 0 and 1 and C at 3 as for matmul_tn_bc; the further windows at 4 .. 9
// and the parameters at 10, past the slots of matmul.wgsl's own (which this entry point does
// not use).

@group(0) @binding(4) var<uniform> au_1: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> bu_1: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> au_2: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> bu_2: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> au_3: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> bu_3: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<storage, read> p_w_in: Params;

@compute @workgroup_size(8, 1, 1)
fn matmul_tn_bcw(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_w_in;
    let r0 = wid.y * 8u;
    let c = tn_cols(wid, lane);
    var acc: Acc;
    var rs_lo = vec4<f32>(0.0);
    var rs_hi = vec4<f32>(0.0);
    tn_part(&acc, &rs_lo, &rs_hi, 0u, r0, c.cb_lo, c.cb_hi, lane);
    tn_part_1(&acc, &rs_lo, &rs_hi, 1u, r0, c.cb_lo, c.cb_hi, lane);
    tn_part_2(&acc, &rs_lo, &rs_hi, 2u, r0, c.cb_lo, c.cb_hi, lane);
    tn_part_3(&acc, &rs_lo, &rs_hi, 3u, r0, c.cb_lo, c.cb_hi, lane);
    tn_store(&acc, rs_lo, rs_hi, r0, c.c0);
}
