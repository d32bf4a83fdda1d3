// One time step of the Elman recurrence per dispatch, forward and backward, fused with the
// nonlinearity: the per-step kernel for GPUs (`recurrence.wgsl` has the barrier-free one for
// CPU adapters and the persistent kernels). Many small workgroups that stage their operands
// through workgroup memory keep a GPU's memory latency hidden.
//
// forward:  h(t)[b, j]  = act(xu(t)[b, j] + sum_k W[j, k] h(t-1)[b, k])
// backward: da(t)[b, j] = (dh_out(t)[b, j] + sum_k da(t+1)[b, k] W[k, j]) * act'(h(t)[b, j])
//
// xu(t) already holds U x(t) + b_ih + b_hh (one multiply over all steps, before the loop) and
// dh_out(t) holds dL/do(t) V (likewise, after the loss); da is computed in place over dh_out.
// act' is taken from h itself: tanh' = 1 - h^2, relu' = [h > 0], so pre-activations are not kept.
//
// Each workgroup computes an 8 (batch) x 32 (hidden) tile of the step; the recurrent multiply
// runs through workgroup memory in chunks of 32 along k.

struct Step {
    batch: u32,
    hidden: u32,
    act: u32,      // 0: tanh, 1: relu
    w_off: u32,    // W [H, H] in `w`
    src_off: u32,  // forward: xu(t) in `src`; backward: h(t) in `src`
    prev_off: u32, // forward: h(t-1) in `dst`; backward: da(t+1) in `dst`
    out_off: u32,  // forward: h(t) in `dst`; backward: da(t) in `dst` (holding dh_out(t))
    has_prev: u32, // backward: 0 at the last step, where there is no da(t+1)
    // The distances between the two directions' W, src and dst, which run side by side, one
    // per workgroup layer (dir0 + workgroup_id.z); zero for one direction.
    dw: u32,
    dsrc: u32,
    ddst: u32,
    dir0: u32,
}

@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;       // [B, H] at src_off
@group(0) @binding(2) var<storage, read_write> dst: array<f32>; // [B, H] at prev_off and out_off
@group(0) @binding(3) var<storage, read> s_in: Step;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> s: Step;

// The cell's epilogues, cell_forward and cell_backward (shaders/cell_*.wgsl), go here:
// {{cell}}

const TJ: u32 = 32u;
const TB: u32 = 8u;
const TK: u32 = 32u;
const PAD: u32 = 33u; // row stride of the W tile, padded against bank conflicts

// This workgroup's direction's offsets, set first thing by both entry points.
var<private> w_off: u32;
var<private> src_off: u32;
var<private> prev_off: u32;
var<private> out_off: u32;

fn set_direction(dir: u32) {
    w_off = s.w_off + dir * s.dw;
    src_off = s.src_off + dir * s.dsrc;
    prev_off = s.prev_off + dir * s.ddst;
    out_off = s.out_off + dir * s.ddst;
}

var<workgroup> sv: array<f32, 256>;  // [TB][TK]: the h(t-1) or da(t+1) tile
var<workgroup> sw: array<f32, 1056>; // [32][PAD]: the W tile

fn load_vec_tile(b0: u32, k0: u32, lid: vec3<u32>) {
    let b = b0 + lid.y;
    let k = k0 + lid.x;
    var v = 0.0;
    if b < s.batch && k < s.hidden {
        v = dst[prev_off + b * s.hidden + k];
    }
    sv[lid.y * TK + lid.x] = v;
}

@compute @workgroup_size(32, 8, 1)
fn tiled_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    s = s_in;
    set_direction(s.dir0 + wid.z);
    let j0 = wid.x * TJ;
    let b0 = wid.y * TB;
    let l = lid.y * TJ + lid.x;
    let h = s.hidden;
    var acc = 0.0;
    for (var k0 = 0u; k0 < h; k0 += TK) {
        load_vec_tile(b0, k0, lid);
        for (var q = 0u; q < 4u; q++) {
            // sw[jj * PAD + kk] = W[j0 + jj, k0 + kk], read along k.
            let idx = l + q * 256u;
            let jj = idx / TK;
            let kk = idx % TK;
            var v = 0.0;
            if j0 + jj < h && k0 + kk < h {
                v = w[w_off + (j0 + jj) * h + k0 + kk];
            }
            sw[jj * PAD + kk] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            acc += sv[lid.y * TK + kk] * sw[lid.x * PAD + kk];
        }
        workgroupBarrier();
    }
    let b = b0 + lid.y;
    let j = j0 + lid.x;
    if b < s.batch && j < h {
        dst[out_off + b * h + j] = cell_forward(src[src_off + b * h + j] + acc, s.act);
    }
}

@compute @workgroup_size(32, 8, 1)
fn tiled_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    s = s_in;
    set_direction(s.dir0 + wid.z);
    let j0 = wid.x * TJ;
    let b0 = wid.y * TB;
    let l = lid.y * TJ + lid.x;
    let h = s.hidden;
    var acc = 0.0;
    if s.has_prev != 0u {
        for (var k0 = 0u; k0 < h; k0 += TK) {
            load_vec_tile(b0, k0, lid);
            for (var q = 0u; q < 4u; q++) {
                // sw[kk * PAD + jj] = W[k0 + kk, j0 + jj], read along j.
                let idx = l + q * 256u;
                let kk = idx / TJ;
                let jj = idx % TJ;
                var v = 0.0;
                if k0 + kk < h && j0 + jj < h {
                    v = w[w_off + (k0 + kk) * h + j0 + jj];
                }
                sw[kk * PAD + jj] = v;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < TK; kk++) {
                acc += sv[lid.y * TK + kk] * sw[kk * PAD + lid.x];
            }
            workgroupBarrier();
        }
    }
    let b = b0 + lid.y;
    let j = j0 + lid.x;
    if b < s.batch && j < h {
        let at = out_off + b * h + j;
        dst[at] = cell_backward(dst[at] + acc, src[src_off + b * h + j], s.act);
    }
}
