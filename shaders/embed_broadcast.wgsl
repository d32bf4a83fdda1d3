// Appended to embed.wgsl (WGSL has no includes; it uses that file's Params, ids, position,
// row_of and lower_bound). embed and embed_grad for CPU adapters whose subgroups are 8 lanes
// wide (lavapipe), where every storage access costs a loop over the lanes: a lane owns 4
// hidden units and moves them as one vec4, and what every lane needs alike (a row's id, a
// run's positions) one lane per row loads and shuffles from constant lanes hand on. H and the
// offsets of `out` (embed4) and of da (embed_grad4) are multiples of 4. Lanes past H read the
// last 4 units and write nothing. One-dimensional: subgroup builtins are only defined there.

@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;
// U through a 64 KiB uniform window where it fits one (U_UNIFORM; q.w_off counts from the
// window's start), a vector gather per value where storage would be a loop over the lanes.
@group(0) @binding(3) var<uniform> uw: array<vec4<f32>, 4096>;
// da's texture mirror (ops::state_texture), read by embed_grad4 with DA_TEXTURE: on lavapipe
// a vector gather where src4's loads are a loop over the lanes. Unread otherwise, but bound.
@group(0) @binding(4) var dat: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var<storage, read> p4_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p4: Params;

override U_UNIFORM: bool = false;
override DA_TEXTURE: bool = false;

// vec4 i of da: texel (i % 1024, i / 1024) of its mirror with DA_TEXTURE.
fn da4(i: u32) -> vec4<f32> {
    if DA_TEXTURE {
        return textureLoad(dat, vec2<u32>(i % 1024u, i / 1024u));
    }
    return src4[i];
}

// U[j, v] for `at` = j I + v (from q.w_off).
fn u_at(at: u32) -> f32 {
    let e = p4.w_off + at;
    if U_UNIFORM {
        return uw[e / 4u][e % 4u];
    }
    return src[e];
}

// Every lane's value of `x`, by lane.
fn lanes(x: u32) -> array<u32, 8> {
    return array<u32, 8>(
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

// A subgroup per 8 rows x 32 units at a time; rows past the grid's height loop.
@compute @workgroup_size(8, 1, 1)
fn embed4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p4 = p4_in;
    let j = wid.x * 32u + 4u * lane;
    let jj = min(j, p4.hidden - 4u);
    var add = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (p4.flags & 4u) != 0u {
            add[c] += src[p4.bias_off + jj + c];
        }
        if (p4.flags & 8u) != 0u {
            add[c] += src[p4.bias2_off + jj + c];
        }
    }
    let rows = p4.steps * p4.batch;
    let i = p4.input;
    for (var r0 = wid.y * 8u; r0 < rows; r0 += nwg.y * 8u) {
        let v = lanes(ids[position(p4, min(r0 + lane, rows - 1u))]);
        for (var n = 0u; n < 8u; n++) {
            let r = r0 + n;
            let at = jj * i + v[n];
            let u = vec4<f32>(u_at(at), u_at(at + i), u_at(at + 2u * i), u_at(at + 3u * i));
            if r < rows && j < p4.hidden {
                out4[(p4.out_off + r * p4.hidden + j) / 4u] = u + add;
            }
        }
    }
}

// dU[j .. j + 3, v] = s: column v of U's gradient [H, I] at units j .. j + 3.
fn put_column4(j: u32, v: u32, s: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        out[p4.out_off + (j + c) * p4.input + v] = s[c];
    }
}

// A subgroup per 8 ids x 32 units at a time; ids past the grid's height loop. Lane l
// searches where id v0 + l's run of positions starts, and v0 + l + 1's.
@compute @workgroup_size(8, 1, 1)
fn embed_grad4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p4 = p4_in;
    let j = wid.x * 32u + 4u * lane;
    let jj = min(j, p4.hidden - 4u);
    let n = p4.steps * p4.batch;
    for (var v0 = wid.y * 8u; v0 < p4.input; v0 += nwg.y * 8u) {
        let firsts = lanes(lower_bound(v0 + lane, n));
        let ends = lanes(lower_bound(v0 + lane + 1u, n));
        for (var m = 0u; m < 8u; m++) {
            let v = v0 + m;
            var s = vec4<f32>(0.0);
            let end = ends[m];
            // In runs of at most 8 * 32768 positions, under the 65535 iterations after which
            // lavapipe stops a loop (every row may hold the same id).
            for (var c0 = firsts[m]; c0 < end; c0 += 262144u) {
                let c1 = min(c0 + 262144u, end);
                for (var q0 = c0; q0 < c1; q0 += 8u) {
                    let at = lanes(ids[n + min(q0 + lane, c1 - 1u)]);
                    for (var k = 0u; k < 8u; k++) {
                        if q0 + k < c1 {
                            let row = row_of(p4, at[k]);
                            s += da4((p4.w_off + row * p4.hidden + jj) / 4u);
                        }
                    }
                }
            }
            if v < p4.input && j < p4.hidden {
                put_column4(j, v, s);
            }
        }
    }
}

// embed_grad4 over the rows in time order, for vocabularies up to SEQ_IDS: a subgroup per
// 32 units (no grid rows), lane l's 4 of them summed for every id in a private array indexed
// by the row's id, written out at the end. Reading da along its rows, where embed_grad4's runs
// of one id jump about it (the character model's 2048 rows: 1.4-1.8 -> 0.4-0.5 ms on lavapipe,
// where the gathers from rows all over da's 1 MB seem to wait on memory).
const SEQ_IDS: u32 = 256u;

@compute @workgroup_size(8, 1, 1)
fn embed_grad4_seq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p4 = p4_in;
    let j = wid.x * 32u + 4u * lane;
    let jj = min(j, p4.hidden - 4u);
    let n = p4.steps * p4.batch;
    var sums: array<vec4<f32>, SEQ_IDS>;
    // In runs of 8 * 32768 rows, under the 65535 iterations after which lavapipe stops a loop.
    for (var c0 = 0u; c0 < n; c0 += 262144u) {
        let c1 = min(c0 + 262144u, n);
        for (var r0 = c0; r0 < c1; r0 += 8u) {
            // Lane l loads row r0 + l's id; every lane takes all 8 by shuffles.
            let v = lanes(ids[position(p4, min(r0 + lane, c1 - 1u))]);
            for (var k = 0u; k < 8u; k++) {
                let r = min(r0 + k, c1 - 1u);
                let live = select(0.0, 1.0, r0 + k < c1);
                let x = da4((p4.w_off + r * p4.hidden + jj) / 4u);
                let id = min(v[k], SEQ_IDS - 1u);
                sums[id] += x * live;
            }
        }
    }
    if j < p4.hidden {
        for (var v = 0u; v < p4.input; v++) {
            put_column4(j, v, sums[min(v, SEQ_IDS - 1u)]);
        }
    }
}

// tokens_table (embed.wgsl) a vec4 of the table at a time (H a multiple of 4, the table at
// out's start), U and the biases gathered from the parameters' texture mirror bound at dat
// (their rows copied in first): on lavapipe a texel's gather per value where tokens_table's
// storage loads are each a loop over the lanes, and one vec4 store where it made four (the
// character model's table 0.37 -> 0.22 ms). The ids after the table one value at a time, as
// there. Elements past the grid loop.
fn mirror_at(i: u32) -> f32 {
    let v = i / 4u;
    return textureLoad(dat, vec2<u32>(v % 1024u, v / 1024u))[i % 4u];
}

@compute @workgroup_size(64, 1, 1)
fn tokens_table4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p4 = p4_in;
    let h4 = p4.hidden / 4u;
    let table = p4.input * h4;
    let n = p4.steps * p4.batch;
    for (var e = gid.x; e < table + (n + 3u) / 4u; e += nwg.x * 64u) {
        if e < table {
            let v = e / h4;
            let j = (e % h4) * 4u;
            let at = vec4<u32>(p4.w_off + v) + vec4<u32>(j, j + 1u, j + 2u, j + 3u) * p4.input;
            var x = vec4<f32>(mirror_at(at.x), mirror_at(at.y), mirror_at(at.z), mirror_at(at.w));
            if (p4.flags & 4u) != 0u {
                let b = p4.bias_off + j;
                x += vec4<f32>(mirror_at(b), mirror_at(b + 1u), mirror_at(b + 2u), mirror_at(b + 3u));
            }
            if (p4.flags & 8u) != 0u {
                let b = p4.bias2_off + j;
                x += vec4<f32>(mirror_at(b), mirror_at(b + 1u), mirror_at(b + 2u), mirror_at(b + 3u));
            }
            out4[e] = x;
        } else {
            let r = (e - table) * 4u;
            for (var c = 0u; c < 4u; c++) {
                if r + c < n {
                    let i = table * 4u + r + c;
                    out4[i / 4u][i % 4u] = f32(ids[position(p4, r + c)]);
                }
            }
        }
    }
}
