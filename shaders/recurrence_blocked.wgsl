// Appended to blocks.wgsl (its shared helpers).
// The Elman recurrence for CPU adapters (lavapipe), where H is a multiple of 4, with the same
// register blocking as `matmul_nt4`: one step per dispatch (blocked_*) or the whole sequence
// (blocked_seq_*, below):
//
//   forward:  h(t)[b, j]  = act(xu(t)[b, j] + sum_k h(t-1)[b, k] W[j, k])
//   backward: da(t)[b, j] = (dh_out(t)[b, j] + sum_k da(t+1)[b, k] W[k, j]) * act'(h(t)[b, j])
//
// Both are a product of the state [B, H] with a matrix whose rows j run along k: `wp` holds
// W (section 1, forward) and W^T (section 0, backward) as [H, HP] with zero columns up to HP
// = H rounded to 4, written by `weights.wgsl`. Each invocation computes an 8 x 8 block (8
// batch rows x 8 units) from vec4s along k: per 4 steps of k, 16 loads feed 256 multiply-adds,
// where lavapipe pays for every load once per SIMD lane. A per-step workgroup is 8 invocations
// side by side (64 units) times BLOCK_ROWS (8 x BLOCK_ROWS batch rows), so W is read once per
// step for all its rows; Auto takes it from 64 batch rows up, the persistent kernels below.

// The same parameters as recurrence.wgsl's (one Rust struct fills both).
struct Rec {
    batch: u32,
    hidden: u32,
    hp: u32,       // H rounded up to a multiple of 4
    act: u32,      // 0: tanh, 1: relu
    steps: u32,    // T
    t: u32,        // the time step
    count: u32,    // blocked_seq_*: steps in this dispatch
    sec1: u32,     // where section 1 of wp starts, in vec4s
    // The distances between the two directions' src, dst (in floats) and W layouts (in
    // vec4s), which run side by side, one per workgroup row (`dir`, from dir0); zero for one
    // direction.
    dsrc: u32,
    ddst: u32,
    dwp: u32,
    dir0: u32,
    tok_ids: u32, // TOKENS: where the row ids start in tu's window, in floats (I H)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Where this workgroup's direction starts in src and dst, where its W layouts start (in vec4s, past the section's
// start) and where the uniform window starts (likewise): set first thing by every entry point,
// so the inner loops read no parameter.
var<private> xoff: u32; // in src, floats
var<private> doff: u32; // in dst, floats
var<private> wdir: u32;
var<private> wwin: u32;

// Built with TWO_DIRS only for a bidirectional layer: with one direction every offset is a
// constant zero the compiler folds away (read from the parameters, they cost medium's
// persistent loops about 12% on lavapipe).
override TWO_DIRS: bool = false;

fn set_direction(d: u32) {
    if TWO_DIRS {
        let dir = r.dir0 + d;
        xoff = dir * r.dsrc;
        doff = dir * r.ddst;
        wdir = dir * r.dwp;
        wwin = r.dir0 * r.dwp;
    } else {
        xoff = 0u;
        doff = 0u;
        wdir = 0u;
        wwin = 0u;
    }
}

@group(0) @binding(0) var<storage, read> wp: array<vec4<f32>>;   // [2, H, HP / 4]
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;  // forward: xu; backward: h_all
// forward: h_all [T + 1, B, H]; backward: da [T, B, H]. Every buffer is read and written as
// vec4s: these kernels run only where H is a multiple of 4.
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
// With W_UNIFORM (H <= 128 on CPU adapters), W's section for this direction is read through a
// uniform buffer bound at its start instead: lavapipe gathers uniform loads with vector
// instructions where it loads storage buffers lane by lane with a branch each (small's
// persistent loop 0.75 -> 0.62 ms). Unused otherwise, but bound all the same.
@group(0) @binding(3) var<uniform> wu: array<vec4<f32>, 4096>;
// With TOKENS (layer 0's forward from token ids), xu comes through this window instead of from
// src: the token table (embed.wgsl's tokens_table), row v = U's column v plus both biases,
// then the rows' ids as floats. One gather per value where xu's storage loads were a loop over
// the lanes (15-23% of the character model's forward loop), and no embedding kernel. Unused
// otherwise, but bound all the same.
@group(0) @binding(4) var<uniform> tu: array<vec4<f32>, 4096>;
// The parameters, and how the kernels read and write the state: in the buffers
// (shaders/state_buffers.wgsl) or in texture mirrors of them (state_textures.wgsl); the crate
// splices one in here.
// {{state}}
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> r: Rec;

override W_UNIFORM: bool = false;
override TOKENS: bool = false;

override BLOCK_ROWS: u32 = 8u;
// Batch rows of each invocation's block: 8, or 4 (blocked_seq_* where B is small).
override BLOCK_M: u32 = 8u;

// The cell's epilogues, cell_forward4 and cell_backward4 (shaders/cell_*.wgsl), go here:
// {{cell}}

struct Block {
    lo: array<vec4<f32>, 8>, // units c0 .. c0 + 3 of rows r0 .. r0 + 7
    hi: array<vec4<f32>, 8>, // units c0 + 4 .. c0 + 7
}

// The 8 x 8 block of sums over k of state[row r0 + i][k] * wp[sec][unit c0 + c][k], the state
// rows [B, H] starting at element `state`.
fn product(sec: u32, state: u32, r0: u32, c0: u32) -> Block {
    let q = r.hp / 4u;
    // Rows and units past the edge read the last one and are never written.
    var sbase: array<u32, 8>;
    var wbase: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        sbase[i] = doff + state + min(r0 + i, r.batch - 1u) * r.hidden;
        wbase[i] = sec + wdir + min(c0 + i, r.hidden - 1u) * q;
    }
    // The uniform window starts at direction dir0's section.
    let win = sec + wwin;
    var o: Block;
    for (var k4 = 0u; k4 < q; k4++) {
        var w0: vec4<f32>;
        var w1: vec4<f32>;
        var w2: vec4<f32>;
        var w3: vec4<f32>;
        var w4: vec4<f32>;
        var w5: vec4<f32>;
        var w6: vec4<f32>;
        var w7: vec4<f32>;
        // An override: one of the two branches is compiled away.
        if W_UNIFORM {
            let u = k4 - win;
            w0 = wu[wbase[0] + u];
            w1 = wu[wbase[1] + u];
            w2 = wu[wbase[2] + u];
            w3 = wu[wbase[3] + u];
            w4 = wu[wbase[4] + u];
            w5 = wu[wbase[5] + u];
            w6 = wu[wbase[6] + u];
            w7 = wu[wbase[7] + u];
        } else {
            w0 = wp[wbase[0] + k4];
            w1 = wp[wbase[1] + k4];
            w2 = wp[wbase[2] + k4];
            w3 = wp[wbase[3] + k4];
            w4 = wp[wbase[4] + k4];
            w5 = wp[wbase[5] + k4];
            w6 = wp[wbase[6] + k4];
            w7 = wp[wbase[7] + k4];
        }
        // A fixed bound, so the loop unrolls and the test on the override folds away.
        for (var i = 0u; i < 8u; i++) {
            if i < BLOCK_M {
                let s = state_at((sbase[i] + k4 * 4u) / 4u);
                o.lo[i] += vec4<f32>(dot(s, w0), dot(s, w1), dot(s, w2), dot(s, w3));
                o.hi[i] += vec4<f32>(dot(s, w4), dot(s, w5), dot(s, w6), dot(s, w7));
            }
        }
    }
    return o;
}

// backward_block's product for step t: zero at the last step.
fn backward_product(t: u32, r0: u32, c0: u32) -> Block {
    var o: Block;
    if t + 1u < r.steps {
        o = product(0u, (t + 1u) * r.batch * r.hidden, r0, c0);
    }
    return o;
}

// One block of the forward step t: rows r0 .. r0 + BLOCK_M - 1 (those in the batch) x units
// c0 .. c0 + 7 of h(t) = act(xu(t) + h(t-1) W^T), from slot t of h_all into slot t + 1, given
// the block's product o of h(t-1) with section 1 of wp (W, rows j along k).
// Where row b's input projection at step t starts in the token table (TOKENS: its id times
// H, looked up once for both halves of a block), else 0.
fn token_row(t: u32, b: u32) -> u32 {
    if TOKENS {
        let at = r.tok_ids + t * r.batch + b;
        return u32(tok_at(at / 4u)[at % 4u]) * r.hidden;
    }
    return 0u;
}

// xu(t)[b, c .. c + 3], which is src's vec4 x: with TOKENS, from row `row` of the token table.
fn x_in(x: u32, row: u32, c: u32) -> vec4<f32> {
    if TOKENS {
        return tok_at((row + c) / 4u);
    }
    return x_at(x);
}

fn forward_block(t: u32, r0: u32, c0: u32, o: Block) {
    let h = r.hidden;
    let bh = r.batch * h;
    for (var i = 0u; i < BLOCK_M; i++) {
        let b = r0 + i;
        if b >= r.batch {
            break;
        }
        // Units c0 .. c0 + 3, then c0 + 4 .. c0 + 7 when inside H (a multiple of 4).
        let e = (t * bh + b * h + c0) / 4u;
        let d = e + (doff + bh) / 4u;
        let x = e + xoff / 4u;
        let row = token_row(t, b);
        put(d, cell_forward4(x_in(x, row, c0) + pick8(o.lo, i), r.act));
        if c0 + 4u < h {
            put(d + 1u, cell_forward4(x_in(x + 1u, row, c0 + 4u) + pick8(o.hi, i), r.act));
        }
    }
}

// The same block of the backward step t, in place over da:
// da(t) = (da(t) + da(t + 1) W) * act'(h(t)), given the block's product o of da(t + 1) with
// section 0 of wp (W^T, rows j along k), zero at t = T - 1.
fn backward_block(t: u32, r0: u32, c0: u32, o: Block) {
    let h = r.hidden;
    let bh = r.batch * h;
    for (var i = 0u; i < BLOCK_M; i++) {
        let b = r0 + i;
        if b >= r.batch {
            break;
        }
        let e = (t * bh + b * h + c0) / 4u;
        let d = e + doff / 4u;
        let hs = e + (xoff + bh) / 4u;
        put(d, cell_backward4(dh_at(d) + pick8(o.lo, i), h_at(hs), r.act));
        if c0 + 4u < h {
            put(d + 1u, cell_backward4(dh_at(d + 1u) + pick8(o.hi, i), h_at(hs + 1u), r.act));
        }
    }
}

// ---- blocked_*: one time step per dispatch ----------------------------------------------

@compute @workgroup_size(8, BLOCK_ROWS, 1)
fn blocked_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.z);
    let r0 = (wid.y * BLOCK_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 < r.batch && c0 < r.hidden {
        forward_block(r.t, r0, c0, product(r.sec1, r.t * r.batch * r.hidden, r0, c0));
    }
}

@compute @workgroup_size(8, BLOCK_ROWS, 1)
fn blocked_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.z);
    let r0 = (wid.y * BLOCK_ROWS + lid.y) * 8u;
    let c0 = wid.x * 64u + lid.x * 8u;
    if r0 < r.batch && c0 < r.hidden {
        backward_block(r.t, r0, c0, backward_product(r.t, r0, c0));
    }
}

// ---- blocked_seq_*: the whole sequence in one dispatch -----------------------------------
//
// Each workgroup, one SIMD group of 8 invocations, owns 8 batch rows for every step: the
// state it reads is the slot its own invocations wrote the step before, so a storage barrier
// between steps is all the synchronisation needed (rows are independent). Each invocation
// takes 8 units at a time, as above. (lavapipe runs an invocation at most 65535 loop
// iterations: the driver cuts the sequence into chunks, each starting from the slot the one
// before left.)

// forward over steps t .. t + count - 1.
@compute @workgroup_size(8, 1, 1)
fn blocked_seq_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.y);
    for (var n = 0u; n < r.count; n++) {
        let t = r.t + n;
        let r0 = wid.x * BLOCK_M;
        for (var c0 = lid.x * 8u; c0 < r.hidden; c0 += 64u) {
            forward_block(t, r0, c0, product(r.sec1, t * r.batch * r.hidden, r0, c0));
        }
        state_barrier();
    }
}

// backward over steps t down to t - count + 1, in place over da.
@compute @workgroup_size(8, 1, 1)
fn blocked_seq_backward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    set_direction(wid.y);
    for (var n = 0u; n < r.count; n++) {
        let t = r.t - n;
        let r0 = wid.x * BLOCK_M;
        for (var c0 = lid.x * 8u; c0 < r.hidden; c0 += 64u) {
            backward_block(t, r0, c0, backward_product(t, r0, c0));
        }
        state_barrier();
    }
}
