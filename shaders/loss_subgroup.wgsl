// Appended to loss.wgsl (WGSL has no includes; it uses that file's parameters, bindings,
// weight and scale). Cross-entropy for CPU adapters whose subgroups are 8 lanes wide
// (lavapipe), where every storage access is a loop over the lanes: a subgroup takes one row at
// a time, lane l its columns l, l + 8, ... (up to 128 columns, held in registers), so each
// value is loaded once and stored once, and the row's maximum and sum go across the lanes by
// shuffles. cross_entropy gives each row a lane and reads the row three times. One-dimensional:
// subgroup builtins are only defined there.

// The outputs' texture mirror (ops::state_texture), read with LOGITS_TEXTURE: on lavapipe a
// vector gather where o's loads are a loop over the lanes. Unread otherwise, but bound.
@group(0) @binding(7) var ot: texture_storage_2d<rgba32float, read>;
override LOGITS_TEXTURE: bool = false;

// Output i (of o, or of its mirror: texel (i / 4) % 1024 of row i / 4096, component i % 4).
fn logit(i: u32) -> f32 {
    if LOGITS_TEXTURE {
        let v = textureLoad(ot, vec2<u32>((i / 4u) % 1024u, i / 4096u));
        return v[i % 4u];
    }
    return o[i];
}

// x's maximum, and its sum, over the subgroup.
fn lanes_max(x: f32) -> f32 {
    var v = max(x, subgroupShuffleXor(x, 4u));
    v = max(v, subgroupShuffleXor(v, 2u));
    return max(v, subgroupShuffleXor(v, 1u));
}

fn lanes_sum(x: f32) -> f32 {
    var v = x + subgroupShuffleXor(x, 4u);
    v += subgroupShuffleXor(v, 2u);
    return v + subgroupShuffleXor(v, 1u);
}

// Rows past the grid loop.
@compute @workgroup_size(8, 1, 1)
fn cross_entropy8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let sc = scale();
    for (var r = wid.x; r < p.rows; r += nwg.x) {
        let w = weight(r);
        let base = r * p.cols;
        let target_class = y[r];
        var x: array<f32, 16>;
        var mx = -3.4e38;
        var picked = 0.0;
        for (var j = 0u; j < 16u; j++) {
            let c = lane + 8u * j;
            x[j] = -3.4e38;
            if c < p.cols {
                x[j] = logit(base + c);
            }
            mx = max(mx, x[j]);
            picked += select(0.0, x[j], c == target_class);
        }
        mx = lanes_max(mx);
        var z = 0.0;
        for (var j = 0u; j < 16u; j++) {
            if lane + 8u * j < p.cols {
                z += exp(x[j] - mx);
            }
        }
        z = lanes_sum(z);
        picked = lanes_sum(picked);
        if lane == 0u {
            rows[r] = w * (log(z) + mx - picked);
        }
        let g = sc * w;
        for (var j = 0u; j < 16u; j++) {
            let c = lane + 8u * j;
            if c < p.cols {
                let sm = exp(x[j] - mx) / z;
                d_o[base + c] = g * (sm - select(0.0, 1.0, c == target_class));
            }
        }
    }
}

// total's sum by one subgroup: each lane adds every eighth row, then across the lanes. The
// 256-wide total's barriers cost lavapipe more than the adding (the character model's 2048
// rows: 0.13 ms as a dispatch).
@compute @workgroup_size(8, 1, 1)
fn total8(@builtin(subgroup_invocation_id) lane: u32) {
    p = p_in;
    var s = 0.0;
    for (var r = lane; r < p.rows; r += 8u) {
        s += rows[r];
    }
    let sum = lanes_sum(s);
    if lane == 0u {
        loss[0] = scale() * sum;
    }
}
