// Appended to loss_subgroup.wgsl, itself appended to loss.wgsl (their parameters, bindings,
// weight, scale, lanes_max and lanes_sum). head_cross_entropy: the head o = h V^T + c and the cross-entropy
// on it in one kernel, for training steps on CPU adapters with 8-lane subgroups (lavapipe)
// where the loops keep texture mirrors. A subgroup owns 16 rows and every one of the head's
// columns, HEAD_BLOCKS blocks of 32, each computed as matmul_nt4_bc4_tt computes it (h's rows
// from the top layer's mirror of h_all, V's from the parameters' mirror, 4 values of k at a
// time, each lane its row's texel handed round by shuffles from constant lanes): the logits
// never leave the lanes before the loss is taken on them, where the separate cross-entropy
// read every one back (a kernel and a copy into the outputs' mirror). The outputs are still
// written, for the caller's view of them.
//
// p.k (H) and the offsets p.a_off (h's first row in its mirror), p.b_off (V in the
// parameters') are whole vec4s; p.c_off (the bias c) may be anywhere. Rows past R read the
// last one and are never written; columns past O read V's last row and drop out of the
// softmax (their logits -3.4e38). One-dimensional: subgroup builtins are only defined there.

// The top layer's mirror of h_all (ops::state_texture: vec4 i is texel (i % 1024, i / 1024)).
@group(0) @binding(8) var hm: texture_storage_2d<rgba32float, read>;
// The parameters' mirror (V and c copied in first).
@group(0) @binding(9) var pm: texture_storage_2d<rgba32float, read>;

// With D_O_TEXELS, dL/do goes into this mirror (the outputs') instead of d_o: row r's values
// from texel r ceil(O / 4), the padding zero, one texel a lane and block, where the backward
// pass's products read them aligned (matmul_texture.wgsl's ld_a) with no copy into the mirror
// (nor the break between passes it needs) first.
@group(0) @binding(10) var dm: texture_storage_2d<rgba32float, write>;

// Blocks of 32 columns: O up to 32 HEAD_BLOCKS (1 to 4).
override HEAD_BLOCKS: u32 = 3u;
override D_O_TEXELS: bool = false;

fn h_texel(i: u32) -> vec4<f32> {
    return textureLoad(hm, vec2<u32>(i % 1024u, i / 1024u));
}

fn p_texel(i: u32) -> vec4<f32> {
    return textureLoad(pm, vec2<u32>(i % 1024u, i / 1024u));
}

// Every lane's x, by lane (shuffles from constant lanes: vector permutes on lavapipe).
fn from_lanes(x: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupShuffle(x, 0u),
        subgroupShuffle(x, 1u),
        subgroupShuffle(x, 2u),
        subgroupShuffle(x, 3u),
        subgroupShuffle(x, 4u),
        subgroupShuffle(x, 5u),
        subgroupShuffle(x, 6u),
        subgroupShuffle(x, 7u),
    );
}

// The logits of 16 rows (lo: r0 .. r0 + 7, hi: r0 + 8 .. r0 + 15) in a lane's 4 columns.
struct Logits {
    lo: array<vec4<f32>, 8>,
    hi: array<vec4<f32>, 8>,
}

// Block b (a constant after inlining) of the logits of rows r0 .. r0 + 15: the lane's columns
// 32 b + 4 lane .. + 3, bias added; -3.4e38 past O.
fn head_block(b: u32, r0: u32, lane: u32) -> Logits {
    let c0 = 32u * b + 4u * lane;
    let k4 = p.k / 4u;
    let e0 = p.a_off / 4u + min(r0 + lane, p.rows - 1u) * k4;
    let e1 = p.a_off / 4u + min(r0 + 8u + lane, p.rows - 1u) * k4;
    let last = p.cols - 1u;
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let q = vec4<u32>(p.b_off / 4u) + cols * k4;
    var o: Logits;
    for (var k = 0u; k < k4; k++) {
        let w0 = p_texel(q.x + k);
        let w1 = p_texel(q.y + k);
        let w2 = p_texel(q.z + k);
        let w3 = p_texel(q.w + k);
        let s = from_lanes(h_texel(e0 + k));
        for (var i = 0u; i < 8u; i++) {
            let v = s[i];
            o.lo[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
        }
        let s2 = from_lanes(h_texel(e1 + k));
        for (var i = 0u; i < 8u; i++) {
            let v = s2[i];
            o.hi[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
        }
    }
    // c's values in the lane's columns, a component of a texel each.
    let ci = vec4<u32>(p.c_off) + cols;
    let bias = vec4<f32>(
        p_texel(ci.x / 4u)[ci.x % 4u],
        p_texel(ci.y / 4u)[ci.y % 4u],
        p_texel(ci.z / 4u)[ci.z % 4u],
        p_texel(ci.w / 4u)[ci.w % 4u],
    );
    let live = vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.cols);
    for (var i = 0u; i < 8u; i++) {
        o.lo[i] = select(vec4<f32>(-3.4e38), o.lo[i] + bias, live);
        o.hi[i] = select(vec4<f32>(-3.4e38), o.hi[i] + bias, live);
    }
    return o;
}

// Row r's loss and gradient from the lane's logits x (block b's in x[b], columns
// 32 b + 4 lane .. + 3), and its outputs written; sc the gradient's scale.
fn row_loss(r: u32, lane: u32, x: array<vec4<f32>, 4>, sc: f32) {
    let rr = min(r, p.rows - 1u);
    let target_class = y[rr];
    let w = weight(rr);
    var mx = -3.4e38;
    for (var b = 0u; b < HEAD_BLOCKS; b++) {
        mx = max(mx, max(max(x[b].x, x[b].y), max(x[b].z, x[b].w)));
    }
    mx = lanes_max(mx);
    var e: array<vec4<f32>, 4>;
    var z = 0.0;
    var picked = 0.0;
    for (var b = 0u; b < HEAD_BLOCKS; b++) {
        e[b] = exp(x[b] - mx);
        z += dot(e[b], vec4<f32>(1.0));
        let c = vec4<u32>(32u * b + 4u * lane) + vec4<u32>(0u, 1u, 2u, 3u);
        picked += dot(select(vec4<f32>(0.0), x[b], c == vec4<u32>(target_class)), vec4<f32>(1.0));
    }
    z = lanes_sum(z);
    picked = lanes_sum(picked);
    if r >= p.rows {
        return;
    }
    if lane == 0u {
        rows[r] = w * (log(z) + mx - picked);
    }
    let g = sc * w;
    for (var b = 0u; b < HEAD_BLOCKS; b++) {
        let c0 = 32u * b + 4u * lane;
        let c = vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u);
        let d = g * (e[b] / z - select(vec4<f32>(0.0), vec4<f32>(1.0), c == vec4<u32>(target_class)));
        let at = r * p.cols + c0;
        for (var j = 0u; j < 4u; j++) {
            if c0 + j < p.cols {
                o[at + j] = x[b][j];
                if !D_O_TEXELS {
                    d_o[at + j] = d[j];
                }
            }
        }
        // Past O, e is 0 and no class matches: d is 0 there.
        if D_O_TEXELS && c0 < p.cols {
            let t = r * ((p.cols + 3u) / 4u) + c0 / 4u;
            textureStore(dm, vec2<u32>(t % 1024u, t / 1024u), d);
        }
    }
}

@compute @workgroup_size(8, 1, 1)
fn head_cross_entropy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let sc = scale();
    let r0 = wid.x * 16u;
    // The blocks one after the other, each held (constant indices only) until the loss.
    let b0 = head_block(0u, r0, lane);
    var b1: Logits;
    var b2: Logits;
    var b3: Logits;
    if HEAD_BLOCKS > 1u {
        b1 = head_block(1u, r0, lane);
    }
    if HEAD_BLOCKS > 2u {
        b2 = head_block(2u, r0, lane);
    }
    if HEAD_BLOCKS > 3u {
        b3 = head_block(3u, r0, lane);
    }
    row_loss(r0, lane, array<vec4<f32>, 4>(b0.lo[0], b1.lo[0], b2.lo[0], b3.lo[0]), sc);
    row_loss(r0 + 1u, lane, array<vec4<f32>, 4>(b0.lo[1], b1.lo[1], b2.lo[1], b3.lo[1]), sc);
    row_loss(r0 + 2u, lane, array<vec4<f32>, 4>(b0.lo[2], b1.lo[2], b2.lo[2], b3.lo[2]), sc);
    row_loss(r0 + 3u, lane, array<vec4<f32>, 4>(b0.lo[3], b1.lo[3], b2.lo[3], b3.lo[3]), sc);
    row_loss(r0 + 4u, lane, array<vec4<f32>, 4>(b0.lo[4], b1.lo[4], b2.lo[4], b3.lo[4]), sc);
    row_loss(r0 + 5u, lane, array<vec4<f32>, 4>(b0.lo[5], b1.lo[5], b2.lo[5], b3.lo[5]), sc);
    row_loss(r0 + 6u, lane, array<vec4<f32>, 4>(b0.lo[6], b1.lo[6], b2.lo[6], b3.lo[6]), sc);
    row_loss(r0 + 7u, lane, array<vec4<f32>, 4>(b0.lo[7], b1.lo[7], b2.lo[7], b3.lo[7]), sc);
    row_loss(r0 + 8u, lane, array<vec4<f32>, 4>(b0.hi[0], b1.hi[0], b2.hi[0], b3.hi[0]), sc);
    row_loss(r0 + 9u, lane, array<vec4<f32>, 4>(b0.hi[1], b1.hi[1], b2.hi[1], b3.hi[1]), sc);
    row_loss(r0 + 10u, lane, array<vec4<f32>, 4>(b0.hi[2], b1.hi[2], b2.hi[2], b3.hi[2]), sc);
    row_loss(r0 + 11u, lane, array<vec4<f32>, 4>(b0.hi[3], b1.hi[3], b2.hi[3], b3.hi[3]), sc);
    row_loss(r0 + 12u, lane, array<vec4<f32>, 4>(b0.hi[4], b1.hi[4], b2.hi[4], b3.hi[4]), sc);
    row_loss(r0 + 13u, lane, array<vec4<f32>, 4>(b0.hi[5], b1.hi[5], b2.hi[5], b3.hi[5]), sc);
    row_loss(r0 + 14u, lane, array<vec4<f32>, 4>(b0.hi[6], b1.hi[6], b2.hi[6], b3.hi[6]), sc);
    row_loss(r0 + 15u, lane, array<vec4<f32>, 4>(b0.hi[7], b1.hi[7], b2.hi[7], b3.hi[7]), sc);
}
