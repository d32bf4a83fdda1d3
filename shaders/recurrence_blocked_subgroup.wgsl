// Appended to recurrence_blocked.wgsl (WGSL has no includes; it uses that file's parameters,
// bindings, Block and epilogues). The same kernels for CPU adapters whose subgroups are 8 lanes
// wide (lavapipe), built only where the device has subgroups: the lanes of a subgroup load a
// share of the state and W rows they all need and pass them on by subgroup shuffles, where
// lavapipe pays for every storage load once per lane, with a branch and a bounds check each.
// Every lane runs every iteration of a loop that shuffles (the shuffles need the whole
// subgroup); lanes past the edge load the last row or unit and write nothing.

// Row `unit` (clamped to H) of wp's section `sec`, vec4 k4 along k (w_at: from the state
// fragment).
fn w_row(sec: u32, unit: u32, k4: u32) -> vec4<f32> {
    return w_at(sec, wdir + min(unit, r.hidden - 1u) * (r.hp / 4u) + k4);
}

// ---- blocked_*_sg: one time step per dispatch -------------------------------------------
//
// A subgroup computes 16 batch rows x 32 units as 2 x 4 lanes of 8 x 8 blocks: each lane loads
// 2 state rows and 4 W rows and takes the 8 + 8 it needs by subgroupShuffle (per 4 steps of k,
// 6 loads and 16 shuffles per lane instead of 16 loads). A workgroup of BLOCK_ROWS subgroups
// covers 64 x 64 (8 subgroups, 4 down x 2 across) or 16 x 32 (1 subgroup). One-dimensional:
// subgroup builtins are only defined there.

// The products of lane `lane`'s 8 x 8 block of the subgroup's rows rg .. rg + 15 x units
// cg .. cg + 31: state rows [B, H] from element `state`, W rows from section `sec` of wp.
fn product_shared(sec: u32, state: u32, rg: u32, cg: u32, lane: u32) -> Block {
    let q = r.hp / 4u;
    let s0 = (doff + state + min(rg + 2u * lane, r.batch - 1u) * r.hidden) / 4u;
    let s1 = (doff + state + min(rg + 2u * lane + 1u, r.batch - 1u) * r.hidden) / 4u;
    let u0 = cg + 4u * lane;
    // Row rg + 8 (lane / 4) + i was loaded by lane 4 (lane / 4) + i / 2 (its i % 2 -th); unit
    // cg + 8 (lane % 4) + j by lane 2 (lane % 4) + j / 4 (its j % 4 -th).
    let ra = (lane / 4u) * 4u;
    let cb = (lane % 4u) * 2u;
    var o: Block;
    for (var k4 = 0u; k4 < q; k4++) {
        let ma0 = state_at(s0 + k4);
        let ma1 = state_at(s1 + k4);
        let mb0 = w_row(sec, u0, k4);
        let mb1 = w_row(sec, u0 + 1u, k4);
        let mb2 = w_row(sec, u0 + 2u, k4);
        let mb3 = w_row(sec, u0 + 3u, k4);
        let w0 = subgroupShuffle(mb0, cb);
        let w1 = subgroupShuffle(mb1, cb);
        let w2 = subgroupShuffle(mb2, cb);
        let w3 = subgroupShuffle(mb3, cb);
        let w4 = subgroupShuffle(mb0, cb + 1u);
        let w5 = subgroupShuffle(mb1, cb + 1u);
        let w6 = subgroupShuffle(mb2, cb + 1u);
        let w7 = subgroupShuffle(mb3, cb + 1u);
        var s: array<vec4<f32>, 8>;
        s[0] = subgroupShuffle(ma0, ra);
        s[1] = subgroupShuffle(ma1, ra);
        s[2] = subgroupShuffle(ma0, ra + 1u);
        s[3] = subgroupShuffle(ma1, ra + 1u);
        s[4] = subgroupShuffle(ma0, ra + 2u);
        s[5] = subgroupShuffle(ma1, ra + 2u);
        s[6] = subgroupShuffle(ma0, ra + 3u);
        s[7] = subgroupShuffle(ma1, ra + 3u);
        for (var i = 0u; i < 8u; i++) {
            let v = s[i];
            o.lo[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
            o.hi[i] += vec4<f32>(dot(v, w4), dot(v, w5), dot(v, w6), dot(v, w7));
        }
    }
    return o;
}

// The subgroup's first row and unit, and the lane's block within them.
struct Place {
    rg: u32,
    cg: u32,
    r0: u32,
    c0: u32,
}

fn place(wid: vec3<u32>, sg: u32, lane: u32) -> Place {
    let across = select(1u, 2u, BLOCK_ROWS > 1u); // subgroups side by side in a workgroup
    let rg = wid.y * (16u * BLOCK_ROWS / across) + (sg / across) * 16u;
    let cg = wid.x * (32u * across) + (sg % across) * 32u;
    return Place(rg, cg, rg + (lane / 4u) * 8u, cg + (lane % 4u) * 8u);
}

@compute @workgroup_size(8u * BLOCK_ROWS, 1, 1)
fn blocked_forward_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    r = r_in;
    set_direction(wid.z);
    let at = place(wid, sg, lane);
    if at.rg >= r.batch || at.cg >= r.hidden {
        return; // the whole subgroup
    }
    let o = product_shared(r.sec1, r.t * r.batch * r.hidden, at.rg, at.cg, lane);
    if at.r0 < r.batch && at.c0 < r.hidden {
        forward_block(r.t, at.r0, at.c0, o);
    }
}

@compute @workgroup_size(8u * BLOCK_ROWS, 1, 1)
fn blocked_backward_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    r = r_in;
    set_direction(wid.z);
    let at = place(wid, sg, lane);
    if at.rg >= r.batch || at.cg >= r.hidden {
        return; // the whole subgroup
    }
    // At the last step the product is of slot 0 (which no one writes then, unless T = 1) and
    // thrown away: under a branch the loop's loads and shuffles would run masked, which
    // lavapipe makes 5x slower.
    let last = r.t + 1u >= r.steps;
    var o = product_shared(0u, select(r.t + 1u, 0u, last) * r.batch * r.hidden, at.rg, at.cg, lane);
    if last {
        o = Block();
    }
    if at.r0 < r.batch && at.c0 < r.hidden {
        backward_block(r.t, at.r0, at.c0, o);
    }
}

// ---- blocked_seq_*_sg: the whole sequence in one dispatch --------------------------------
//
// As blocked_seq_*: one subgroup per workgroup owns BLOCK_M batch rows for every step, each
// lane 8 units at a time. The lanes share the BLOCK_M state rows: lane i loads row i and
// subgroupBroadcast hands it to the others (per 4 steps of k, 1 + 8 loads instead of 16).
// With COL_PAIRS (H > 64) each pass over k serves two groups of 64 units (a last odd group
// runs alone), so the state is loaded once per 128 units: on lavapipe that load, a loop over
// the lanes per component, was about a quarter of the loop's time.

override COL_PAIRS: bool = false;

// With ROW_PAIRS instead, a workgroup owns 16 batch rows, two halves of 8 that share each
// load of W: per 4 steps of k a lane gathers 8 texels of W and 2 of the state for 512
// multiply-adds, where COL_PAIRS gathers 16 and 1. The crate takes it where there are still
// as many workgroups as CPU threads (lavapipe hands each thread a run of consecutive
// workgroups, so a grid of 4 with two idle would serialise the two busy ones).
override ROW_PAIRS: bool = false;

fn product_broadcast(sec: u32, state: u32, r0: u32, c0: u32, lane: u32) -> Block {
    let q = r.hp / 4u;
    let srow = (doff + state + min(r0 + min(lane, BLOCK_M - 1u), r.batch - 1u) * r.hidden) / 4u;
    var o: Block;
    for (var k4 = 0u; k4 < q; k4++) {
        let w0 = w_row(sec, c0, k4);
        let w1 = w_row(sec, c0 + 1u, k4);
        let w2 = w_row(sec, c0 + 2u, k4);
        let w3 = w_row(sec, c0 + 3u, k4);
        let w4 = w_row(sec, c0 + 4u, k4);
        let w5 = w_row(sec, c0 + 5u, k4);
        let w6 = w_row(sec, c0 + 6u, k4);
        let w7 = w_row(sec, c0 + 7u, k4);
        let mine = state_at(srow + k4);
        var s: array<vec4<f32>, 8>;
        s[0] = subgroupBroadcast(mine, 0u);
        s[1] = subgroupBroadcast(mine, 1u);
        s[2] = subgroupBroadcast(mine, 2u);
        s[3] = subgroupBroadcast(mine, 3u);
        // An override: the same in every lane.
        if BLOCK_M > 4u {
            s[4] = subgroupBroadcast(mine, 4u);
            s[5] = subgroupBroadcast(mine, 5u);
            s[6] = subgroupBroadcast(mine, 6u);
            s[7] = subgroupBroadcast(mine, 7u);
        }
        for (var i = 0u; i < 8u; i++) {
            if i < BLOCK_M {
                let v = s[i];
                o.lo[i] += vec4<f32>(dot(v, w0), dot(v, w1), dot(v, w2), dot(v, w3));
                o.hi[i] += vec4<f32>(dot(v, w4), dot(v, w5), dot(v, w6), dot(v, w7));
            }
        }
    }
    return o;
}

struct Block2 {
    a: Block, // units c0 .. c0 + 7
    b: Block, // units c0 + 64 .. c0 + 71
}

// Where the pairs of groups of 64 units end: a last odd group, if any, runs alone (a pair
// there would multiply a whole group of units past H).
fn pairs_end() -> u32 {
    return (r.hidden + 63u) / 128u * 128u;
}

// product_broadcast for units c0 and c0 + 64 at once, from one load of the state. (Written out
// rather than built from helpers shared with product_broadcast: that form, the blocks passed by
// value, measured 5% slower in the character model's loops on Mesa 22.3.)
fn product_broadcast2(sec: u32, state: u32, r0: u32, c0: u32, lane: u32) -> Block2 {
    let q = r.hp / 4u;
    let srow = (doff + state + min(r0 + min(lane, BLOCK_M - 1u), r.batch - 1u) * r.hidden) / 4u;
    let c1 = c0 + 64u;
    var o: Block2;
    for (var k4 = 0u; k4 < q; k4++) {
        let mine = state_at(srow + k4);
        var s: array<vec4<f32>, 8>;
        s[0] = subgroupBroadcast(mine, 0u);
        s[1] = subgroupBroadcast(mine, 1u);
        s[2] = subgroupBroadcast(mine, 2u);
        s[3] = subgroupBroadcast(mine, 3u);
        if BLOCK_M > 4u {
            s[4] = subgroupBroadcast(mine, 4u);
            s[5] = subgroupBroadcast(mine, 5u);
            s[6] = subgroupBroadcast(mine, 6u);
            s[7] = subgroupBroadcast(mine, 7u);
        }
        var w: array<vec4<f32>, 8>;
        for (var c = 0u; c < 8u; c++) {
            w[c] = w_row(sec, c0 + c, k4);
        }
        for (var i = 0u; i < 8u; i++) {
            if i < BLOCK_M {
                let v = s[i];
                o.a.lo[i] += vec4<f32>(dot(v, w[0]), dot(v, w[1]), dot(v, w[2]), dot(v, w[3]));
                o.a.hi[i] += vec4<f32>(dot(v, w[4]), dot(v, w[5]), dot(v, w[6]), dot(v, w[7]));
            }
        }
        for (var c = 0u; c < 8u; c++) {
            w[c] = w_row(sec, c1 + c, k4);
        }
        for (var i = 0u; i < 8u; i++) {
            if i < BLOCK_M {
                let v = s[i];
                o.b.lo[i] += vec4<f32>(dot(v, w[0]), dot(v, w[1]), dot(v, w[2]), dot(v, w[3]));
                o.b.hi[i] += vec4<f32>(dot(v, w[4]), dot(v, w[5]), dot(v, w[6]), dot(v, w[7]));
            }
        }
    }
    return o;
}

// product_broadcast for rows r0 .. r0 + 7 (a) and r0 + 8 .. r0 + 15 (b) at once, from one
// load of W's 8 rows (ROW_PAIRS). Rows past B read the last one and are never written. (The
// halves written out, as in product_broadcast2: a helper would take a pointer to o.a or o.b,
// which naga 30's SPIR-V writer rejects, or the blocks by value, which measured slower.)
fn product_rows2(sec: u32, state: u32, r0: u32, c0: u32, lane: u32) -> Block2 {
    let q = r.hp / 4u;
    let srow0 = (doff + state + min(r0 + lane, r.batch - 1u) * r.hidden) / 4u;
    let srow1 = (doff + state + min(r0 + 8u + lane, r.batch - 1u) * r.hidden) / 4u;
    var o: Block2;
    for (var k4 = 0u; k4 < q; k4++) {
        var w: array<vec4<f32>, 8>;
        for (var c = 0u; c < 8u; c++) {
            w[c] = w_row(sec, c0 + c, k4);
        }
        let mine0 = state_at(srow0 + k4);
        let mine1 = state_at(srow1 + k4);
        var s: array<vec4<f32>, 8>;
        s[0] = subgroupBroadcast(mine0, 0u);
        s[1] = subgroupBroadcast(mine0, 1u);
        s[2] = subgroupBroadcast(mine0, 2u);
        s[3] = subgroupBroadcast(mine0, 3u);
        s[4] = subgroupBroadcast(mine0, 4u);
        s[5] = subgroupBroadcast(mine0, 5u);
        s[6] = subgroupBroadcast(mine0, 6u);
        s[7] = subgroupBroadcast(mine0, 7u);
        for (var i = 0u; i < 8u; i++) {
            let v = s[i];
            o.a.lo[i] += vec4<f32>(dot(v, w[0]), dot(v, w[1]), dot(v, w[2]), dot(v, w[3]));
            o.a.hi[i] += vec4<f32>(dot(v, w[4]), dot(v, w[5]), dot(v, w[6]), dot(v, w[7]));
        }
        s[0] = subgroupBroadcast(mine1, 0u);
        s[1] = subgroupBroadcast(mine1, 1u);
        s[2] = subgroupBroadcast(mine1, 2u);
        s[3] = subgroupBroadcast(mine1, 3u);
        s[4] = subgroupBroadcast(mine1, 4u);
        s[5] = subgroupBroadcast(mine1, 5u);
        s[6] = subgroupBroadcast(mine1, 6u);
        s[7] = subgroupBroadcast(mine1, 7u);
        for (var i = 0u; i < 8u; i++) {
            let v = s[i];
            o.b.lo[i] += vec4<f32>(dot(v, w[0]), dot(v, w[1]), dot(v, w[2]), dot(v, w[3]));
            o.b.hi[i] += vec4<f32>(dot(v, w[4]), dot(v, w[5]), dot(v, w[6]), dot(v, w[7]));
        }
    }
    return o;
}

// forward_block for rows r0 .. r0 + 7, their token rows (TOKENS) in lanes 0 .. 7 of `rows`
// (row r0 + i's in lane i, handed round by a shuffle): looked up once a step for the whole
// block, where forward_block gathers each row's id once for every block of 8 units (on
// lavapipe, 0.3-0.4 ms of the character model's forward loop).
fn forward_block_sg(t: u32, r0: u32, c0: u32, o: Block, rows: u32) {
    let h = r.hidden;
    let bh = r.batch * h;
    for (var i = 0u; i < 8u; i++) {
        let b = r0 + i;
        let row = subgroupShuffle(rows, i);
        if b >= r.batch {
            break;
        }
        let e = (t * bh + b * h + c0) / 4u;
        let d = e + (doff + bh) / 4u;
        let x = e + xoff / 4u;
        put(d, cell_forward4(x_in(x, row, c0) + pick8(o.lo, i), r.act));
        if c0 + 4u < h {
            put(d + 1u, cell_forward4(x_in(x + 1u, row, c0 + 4u) + pick8(o.hi, i), r.act));
        }
    }
}

// forward over steps t .. t + count - 1.
@compute @workgroup_size(8, 1, 1)
fn blocked_seq_forward_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    r = r_in;
    set_direction(wid.y);
    if ROW_PAIRS {
        let r0 = wid.x * 16u;
        seed_state(r0, lane);
        seed_state(r0 + 8u, lane);
        for (var n = 0u; n < r.count; n++) {
            let t = r.t + n;
            // This lane's rows' token rows (rows past B: the last's, never written).
            let rows0 = token_row(t, min(r0 + lane, r.batch - 1u));
            let rows1 = token_row(t, min(r0 + 8u + lane, r.batch - 1u));
            for (var cg = 0u; cg < r.hidden; cg += 64u) {
                let c0 = cg + lane * 8u;
                let o = product_rows2(r.sec1, t * r.batch * r.hidden, r0, c0, lane);
                if c0 < r.hidden {
                    forward_block_sg(t, r0, c0, o.a, rows0);
                    forward_block_sg(t, r0 + 8u, c0, o.b, rows1);
                }
            }
            state_barrier();
        }
        return;
    }
    let r0 = wid.x * BLOCK_M;
    seed_state(r0, lane);
    for (var n = 0u; n < r.count; n++) {
        let t = r.t + n;
        var single = 0u;
        if COL_PAIRS {
            single = pairs_end();
            for (var cg = 0u; cg < single; cg += 128u) {
                let c0 = cg + lane * 8u;
                let o = product_broadcast2(r.sec1, t * r.batch * r.hidden, r0, c0, lane);
                forward_block(t, r0, c0, o.a);
                if c0 + 64u < r.hidden {
                    forward_block(t, r0, c0 + 64u, o.b);
                }
            }
        }
        for (var cg = single; cg < r.hidden; cg += 64u) {
            let c0 = cg + lane * 8u;
            let o = product_broadcast(r.sec1, t * r.batch * r.hidden, r0, c0, lane);
            if c0 < r.hidden {
                forward_block(t, r0, c0, o);
            }
        }
        state_barrier();
    }
}

// backward over steps t down to t - count + 1, in place over da.
@compute @workgroup_size(8, 1, 1)
fn blocked_seq_backward_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    r = r_in;
    set_direction(wid.y);
    if ROW_PAIRS {
        let r0 = wid.x * 16u;
        for (var n = 0u; n < r.count; n++) {
            let t = r.t - n;
            let last = t + 1u >= r.steps;
            let next = select(t + 1u, t, last) * r.batch * r.hidden;
            for (var cg = 0u; cg < r.hidden; cg += 64u) {
                let c0 = cg + lane * 8u;
                var o = product_rows2(0u, next, r0, c0, lane);
                if last {
                    o = Block2();
                }
                if c0 < r.hidden {
                    backward_block(t, r0, c0, o.a);
                    backward_block(t, r0 + 8u, c0, o.b);
                }
            }
            state_barrier();
        }
        return;
    }
    let r0 = wid.x * BLOCK_M;
    for (var n = 0u; n < r.count; n++) {
        let t = r.t - n;
        // At the last step there is no da(t + 1): the product runs on step t's (any state
        // inside the buffer) and is dropped. Inside a branch lavapipe would blend a mask into
        // every one of its sums instead.
        let last = t + 1u >= r.steps;
        let next = select(t + 1u, t, last) * r.batch * r.hidden;
        var single = 0u;
        if COL_PAIRS {
            single = pairs_end();
            for (var cg = 0u; cg < single; cg += 128u) {
                let c0 = cg + lane * 8u;
                var o = product_broadcast2(0u, next, r0, c0, lane);
                if last {
                    o = Block2();
                }
                backward_block(t, r0, c0, o.a);
                if c0 + 64u < r.hidden {
                    backward_block(t, r0, c0 + 64u, o.b);
                }
            }
        }
        for (var cg = single; cg < r.hidden; cg += 64u) {
            let c0 = cg + lane * 8u;
            var o = product_broadcast(0u, next, r0, c0, lane);
            if last {
                o = Block();
            }
            if c0 < r.hidden {
                backward_block(t, r0, c0, o);
            }
        }
        state_barrier();
    }
}
