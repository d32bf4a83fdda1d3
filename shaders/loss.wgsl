// Losses with their gradient fused in, PyTorch semantics:
//   mse:           rows[r] = sum_o (o[r, o] - y[r, o])^2,      d_o = 2 * scale * (o - y)
//   cross_entropy: rows[r] = logsumexp(o[r, :]) - o[r, y[r]], d_o = scale * (softmax(o[r, :]) - onehot(y[r]))
// then `total` adds the per-row losses: loss = scale * sum_r rows[r].
// scale is 1 for reduction `sum`, 1 / (R * O) for mse `mean` and 1 / R for cross-entropy `mean`.

struct Params {
    rows: u32,  // R = T * B
    cols: u32,  // O
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> o: array<f32>;          // [R, O]
@group(0) @binding(1) var<storage, read> y: array<u32>;          // mse: f32 bits [R, O]; ce: ids [R]
@group(0) @binding(2) var<storage, read_write> d_o: array<f32>;  // [R, O]
@group(0) @binding(3) var<storage, read_write> rows: array<f32>; // [R]
@group(0) @binding(4) var<storage, read_write> loss: array<f32>; // [1]
@group(0) @binding(5) var<storage, read> p: Params;

@compute @workgroup_size(64, 1, 1)
fn mse(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= p.rows {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let i = r * p.cols + c;
        let e = o[i] - bitcast<f32>(y[i]);
        s += e * e;
        d_o[i] = 2.0 * p.scale * e;
    }
    rows[r] = s;
}

@compute @workgroup_size(64, 1, 1)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= p.rows {
        return;
    }
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
    rows[r] = log(z) + mx - o[base + target_class];
    for (var c = 0u; c < p.cols; c++) {
        let sm = exp(o[base + c] - mx) / z;
        d_o[base + c] = p.scale * (sm - select(0.0, 1.0, c == target_class));
    }
}

var<workgroup> partial: array<f32, 256>;

// One workgroup adds all rows: the loss is one number and R is at most a few hundred thousand.
@compute @workgroup_size(256, 1, 1)
fn total(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        s += rows[r];
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step >>= 1u) {
        if lid.x < step {
            partial[lid.x] += partial[lid.x + step];
        }
        workgroupBarrier();
    }
    if lid.x == 0u {
        loss[0] = p.scale * partial[0];
    }
}
