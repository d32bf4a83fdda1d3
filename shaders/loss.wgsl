// Losses with their gradient fused in, PyTorch semantics:
//   mse:           rows[r] = m[r] sum_o (o[r, o] - y[r, o])^2,      d_o = 2 * scale * m[r] * (o - y)
//   cross_entropy: rows[r] = m[r] (logsumexp(o[r, :]) - o[r, y[r]]), d_o = scale * m[r] * (softmax(o[r, :]) - onehot(y[r]))
// then `total` adds the per-row losses: loss = scale * sum_r rows[r].
//
// Unmasked (mode 0), m[r] = 1 and scale is fixed when the plan is made: 1 for reduction `sum`,
// 1 / (R * O) for mse `mean` and 1 / R for cross-entropy `mean`. Masked (mode 1 `sum`, 2
// `mean`), m is the caller's mask [R] and `mask_scale` first writes the scale into loss[1]:
// 1 for `sum`, 1 / (sum_r m[r] * per) for `mean` (per = O for mse, 1 for cross-entropy: the
// counted elements, as PyTorch's mean over a selection), 0 when nothing is counted.
//
// A sequence run in chunks (the model's `chunked` driver) takes its scale from loss[1] in every
// chunk, written there from the whole sequence's count: mode 1 with the mask, mode 3 without.
// `mask_count` adds one chunk's counted rows into loss[1] of the chunks' totals, and
// `chunk_scale` turns the count into the scale at loss[2] (and, for a loss computed at scale
// 1, multiplies it into loss[0]).

struct Params {
    rows: u32,  // R = T * B
    cols: u32,  // O
    scale: f32, // mode 0
    mode: u32,  // 0 unmasked, 1 masked sum, 2 masked mean, 3 unmasked with loss[1]'s scale
    per: f32,   // mode 2: elements per counted row
    // head_cross_entropy only (loss_head.wgsl): H, and where h's rows, V and c start.
    k: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> o: array<f32>;    // [R, O] (written by head_cross_entropy)
@group(0) @binding(1) var<storage, read> y: array<u32>;          // mse: f32 bits [R, O]; ce: ids [R]
@group(0) @binding(2) var<storage, read> m: array<f32>;          // [R], read in modes 1 and 2
@group(0) @binding(3) var<storage, read_write> d_o: array<f32>;  // [R, O]
@group(0) @binding(4) var<storage, read_write> rows: array<f32>; // [R]
@group(0) @binding(5) var<storage, read_write> loss: array<f32>; // [2]: the loss, the masked scale (chunks' totals: [4])
@group(0) @binding(6) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

// Row r's weight and the gradient's scale.
fn weight(r: u32) -> f32 {
    if p.mode == 0u || p.mode == 3u {
        return 1.0;
    }
    return m[r];
}

fn scale() -> f32 {
    if p.mode == 0u {
        return p.scale;
    }
    return loss[1];
}

@compute @workgroup_size(64, 1, 1)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = p_in;
    let r = gid.x;
    if r >= p.rows {
        return;
    }
    let w = weight(r);
    let g = 2.0 * scale() * w;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let i = r * p.cols + c;
        let e = o[i] - bitcast<f32>(y[i]);
        s += e * e;
        d_o[i] = g * e;
    }
    rows[r] = w * s;
}

@compute @workgroup_size(64, 1, 1)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = p_in;
    let r = gid.x;
    if r >= p.rows {
        return;
    }
    let w = weight(r);
    let g = scale() * w;
    let base = r * p.cols;
    var mx = o[base];
    for (var c = 1u; c < p.cols; c++) {
        mx = max(mx, o[base + c]);
    }
    var z = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        z += exp(o[base + c] - mx);
    }
    let target_class = y[r];
    rows[r] = w * (log(z) + mx - o[base + target_class]);
    for (var c = 0u; c < p.cols; c++) {
        let sm = exp(o[base + c] - mx) / z;
        d_o[base + c] = g * (sm - select(0.0, 1.0, c == target_class));
    }
}

var<workgroup> partial: array<f32, 256>;

// The sum over `partial`, in a fixed tree (the same bits every run).
fn reduce(lid: u32) -> f32 {
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if lid < step {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    return partial[0];
}

// The mask's sum over its rows, by a workgroup of 256.
fn counted(lid: u32) -> f32 {
    var s = 0.0;
    for (var r = lid; r < p.rows; r += 256u) {
        s += m[r];
    }
    partial[lid] = s;
    return reduce(lid);
}

// One workgroup: the masked scale into loss[1], before the rows.
@compute @workgroup_size(256, 1, 1)
fn mask_scale(@builtin(local_invocation_id) lid: vec3<u32>) {
    p = p_in;
    let counted = counted(lid.x);
    if lid.x == 0u {
        var sc = 1.0;
        if p.mode == 2u {
            sc = select(0.0, 1.0 / (counted * p.per), counted > 0.0);
        }
        loss[1] = sc;
    }
}

// One workgroup adds all rows: the loss is one number and R is at most a few hundred thousand.
@compute @workgroup_size(256, 1, 1)
fn total(@builtin(local_invocation_id) lid: vec3<u32>) {
    p = p_in;
    var s = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        s += rows[r];
    }
    partial[lid.x] = s;
    let sum = reduce(lid.x);
    if lid.x == 0u {
        loss[0] = scale() * sum;
    }
}

// One workgroup: the counted rows of a chunk's mask, added into loss[1].
@compute @workgroup_size(256, 1, 1)
fn mask_count(@builtin(local_invocation_id) lid: vec3<u32>) {
    p = p_in;
    let c = counted(lid.x);
    if lid.x == 0u {
        loss[1] += c;
    }
}

// The whole sequence's scale at loss[2]: from the count at loss[1] for a masked mean (mode 2),
// else p.scale; with cols = 1, loss[0] (a sum at scale 1) is scaled too.
@compute @workgroup_size(1, 1, 1)
fn chunk_scale() {
    p = p_in;
    var sc = p.scale;
    if p.mode == 2u {
        sc = select(0.0, 1.0 / (loss[1] * p.per), loss[1] > 0.0);
    }
    loss[2] = sc;
    if p.cols == 1u {
        loss[0] *= sc;
    }
}
