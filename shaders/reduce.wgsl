// Column sums: out[n] = sum over m of a[m, n], for the bias gradients (db = colsum(dA),
// dc = colsum(dO)). Optionally written to a second place too, since PyTorch keeps two hidden
// biases (bias_ih, bias_hh) whose gradients are equal.
//
// Each workgroup owns 64 columns; its 4 rows of invocations each sum every 4th row of `a`,
// and the 4 partial sums are added in workgroup memory.

struct Params {
    m: u32,
    n: u32,
    a_off: u32,
    out_off: u32,
    out2_off: u32,
    flags: u32, // 1: also write at out2_off, 2: accumulate into out
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;          // [M, N] at a_off
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // [N] at out_off (and out2_off)
@group(0) @binding(2) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

const COLS: u32 = 64u;
const PARTS: u32 = 4u;

var<workgroup> partial: array<f32, 256>; // [PARTS][COLS]

@compute @workgroup_size(64, 4, 1)
fn colsum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    p = p_in;
    let col = wid.x * COLS + lid.x;
    var s = 0.0;
    if col < p.n {
        for (var r = lid.y; r < p.m; r += PARTS) {
            s += a[p.a_off + r * p.n + col];
        }
    }
    partial[lid.y * COLS + lid.x] = s;
    workgroupBarrier();
    if lid.y == 0u && col < p.n {
        var total = partial[lid.x] + partial[COLS + lid.x] + partial[2u * COLS + lid.x]
            + partial[3u * COLS + lid.x];
        if (p.flags & 2u) != 0u {
            total += out[p.out_off + col];
        }
        out[p.out_off + col] = total;
        if (p.flags & 1u) != 0u {
            out[p.out2_off + col] = total;
        }
    }
}

// ---- sum_parts: the partial products of a split-K matmul, added into C -------------------
//
// out[out_off + i] (+)= sum over z < parts of a[z * len + i], for i < len; flag 2 of `flags`
// accumulates into out as colsum's does.

struct Parts {
    len: u32,
    parts: u32,
    out_off: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(2) var<storage, read> q_in: Parts;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> q: Parts;

@compute @workgroup_size(256, 1, 1)
fn sum_parts(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    q = q_in;
    let i = gid.y * nwg.x * 256u + gid.x;
    if i >= q.len {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < q.parts; z++) {
        s += a[z * q.len + i];
    }
    if (q.flags & 2u) != 0u {
        s += out[q.out_off + i];
    }
    out[q.out_off + i] = s;
}
