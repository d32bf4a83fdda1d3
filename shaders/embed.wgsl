// Token inputs: the input projection of class ids, and its weight gradient, without one-hot
// matrices. U [H, I] times the one-hot vector of id v is column v of U, so
//   embed:      out[r, j] = U[j, id(r)] (+ bias[j]) (+ bias2[j])
//   embed_grad: dU[j, v]  = sum over the rows r whose id is v of da[r, j]
// exactly what nn.RNN computes on the one-hot input, and its gradient. Rows are time-major
// (r = t B + b). The caller's ids are [T, B], or [B, T] with flag 1 (batch-first); with flag 2
// the rows run in reversed time (a bidirectional layer's reverse direction).
//
// `ids` holds the caller's n ids, then their n positions sorted by id (ties in position order,
// so every sum below adds in one fixed order: the result is the same on every run).
// embed_grad binary-searches each v's run of positions, so its work is n H, not n H I.

struct Params {
    steps: u32,
    batch: u32,
    hidden: u32,
    input: u32,
    flags: u32, // 1: batch-first ids, 2: reversed time, 4: + bias, 8: + bias2
    w_off: u32, // embed: U; embed_grad: da [T, B, H]
    bias_off: u32,
    bias2_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> src: array<f32>; // U and the biases, or da
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

// Where row (t, b) of the loop's time finds its id among the caller's, under parameters q.
fn position(q: Params, r: u32) -> u32 {
    // Time-major in true time (the usual case): the row itself. (A GPU skips the divisions
    // below then; lavapipe runs both sides of a branch, masked, and measured no difference.)
    if (q.flags & 3u) == 0u {
        return r;
    }
    var t = r / q.batch;
    let b = r % q.batch;
    if (q.flags & 2u) != 0u {
        t = q.steps - 1u - t;
    }
    if (q.flags & 1u) != 0u {
        return b * q.steps + t;
    }
    return t * q.batch + b;
}

// The time-major row of the caller's position `at`, in the loop's time.
fn row_of(q: Params, at: u32) -> u32 {
    if (q.flags & 3u) == 0u {
        return at;
    }
    var t = at / q.batch;
    var b = at % q.batch;
    if (q.flags & 1u) != 0u {
        t = at % q.steps;
        b = at / q.steps;
    }
    if (q.flags & 2u) != 0u {
        t = q.steps - 1u - t;
    }
    return t * q.batch + b;
}

// One invocation per hidden unit j and run of EMBED_ROWS rows (a workgroup per row cost more
// in dispatch than in copying on lavapipe); runs past the grid's height loop.
override EMBED_ROWS: u32 = 32u; // set by the crate, which sizes the grid by it

@compute @workgroup_size(64, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let j = gid.x;
    if j >= p.hidden {
        return;
    }
    var add = 0.0;
    if (p.flags & 4u) != 0u {
        add += src[p.bias_off + j];
    }
    if (p.flags & 8u) != 0u {
        add += src[p.bias2_off + j];
    }
    let rows = p.steps * p.batch;
    for (var r0 = gid.y * EMBED_ROWS; r0 < rows; r0 += nwg.y * EMBED_ROWS) {
        for (var r = r0; r < min(r0 + EMBED_ROWS, rows); r++) {
            let v = ids[position(p, r)];
            out[p.out_off + r * p.hidden + j] = src[p.w_off + j * p.input + v] + add;
        }
    }
}

// The token table of the fused forward loops (recurrence_blocked.wgsl, TOKENS), from out_off:
// element v H + j = U[j, v] (+ bias[j]) (+ bias2[j]) for every id v, then the rows' ids in
// time-major order as floats (exact below 2^24). Elements past the grid loop.
@compute @workgroup_size(64, 1, 1)
fn tokens_table(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let table = p.input * p.hidden;
    let n = p.steps * p.batch;
    for (var e = gid.x; e < table + n; e += nwg.x * 64u) {
        if e < table {
            let v = e / p.hidden;
            let j = e % p.hidden;
            var x = src[p.w_off + j * p.input + v];
            if (p.flags & 4u) != 0u {
                x += src[p.bias_off + j];
            }
            if (p.flags & 8u) != 0u {
                x += src[p.bias2_off + j];
            }
            out[p.out_off + e] = x;
        } else {
            out[p.out_off + e] = f32(ids[position(p, e - table)]);
        }
    }
}

// The first of the sorted positions (at n .. 2n of `ids`) whose id is at least v.
fn lower_bound(v: u32, n: u32) -> u32 {
    // (A loop over storage loads every lane makes alike; embed_grad4 spreads its searches over
    // the lanes.)
    var lo = 0u;
    var hi = n;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if ids[ids[n + mid]] < v {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// One invocation per hidden unit j and id v; ids past the grid's height loop.
@compute @workgroup_size(64, 1, 1)
fn embed_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    let j = gid.x;
    if j >= p.hidden {
        return;
    }
    let n = p.steps * p.batch;
    for (var v = gid.y; v < p.input; v += nwg.y) {
        let first = lower_bound(v, n);
        let end = lower_bound(v + 1u, n);
        var s = 0.0;
        // In runs of at most 32768, under the 65535 iterations after which lavapipe stops a
        // loop (every row may hold the same id).
        for (var q0 = first; q0 < end; q0 += 32768u) {
            let q1 = min(q0 + 32768u, end);
            for (var q = q0; q < q1; q++) {
                s += src[p.w_off + row_of(p, ids[n + q]) * p.hidden + j];
            }
        }
        out[p.out_off + j * p.input + v] = s;
    }
}
