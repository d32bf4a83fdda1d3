// Appended to matmul.wgsl (WGSL has no includes; it uses that file's parameters, bindings and
// store_block). For CPU adapters whose subgroups are 8 lanes wide (lavapipe), built only where
// the device has subgroups.
//
// matmul_nt4_sg: C = A B^T as matmul_nt4 (A [M, K], B [N, K], both read as vec4s along k),
// but the 8 lanes of a subgroup compute a 16 x 32 block of C together, as 2 x 4 lanes of 8 x 8
// blocks. Each lane loads 2 of the 16 rows of A and 4 of the 32 rows of B and takes the 8 + 8
// it needs from the lanes that loaded them by subgroupShuffle: per 4 steps of k, 6 loads and 16
// shuffles per lane instead of 16 loads, where lavapipe pays for every storage load once per
// lane, with a branch and a bounds check each (large's input projection: 25 -> 43 GFLOP/s).
//
// With UNALIGNED_A (a pipeline constant, so that the aligned kernel carries none of it: K or
// A's offset not a multiple of 4, B padded along k to rows of 4 ceil(K / 4)), A's rows start anywhere in a vec4: each lane reads its rows one aligned vec4
// ahead and shifts the pair into place (one load per step as before, see `a_at`), and the
// values past a row's end are zeroed. No copy of A is made (the input projection of an odd
// input size reads x in place).
//
// A workgroup of DIRECT_ROWS subgroups covers 64 x 64 of C (8 subgroups, 4 down x 2 across) or
// 16 x 32 (1 subgroup, the narrow form for products with few blocks). It is one-dimensional:
// subgroup builtins are only defined there.

override UNALIGNED_A: bool = false;

// Values k .. k + 3 of a row of A starting at element `start`, from `cur`, the aligned vec4
// holding element `start + k`, and `nxt`, the one after it; those at or past `len` are zero.
fn a_at(cur: vec4<f32>, nxt: vec4<f32>, start: u32, k: u32, len: u32) -> vec4<f32> {
    let s = start % 4u;
    var v = cur;
    if s == 1u {
        v = vec4<f32>(cur.yzw, nxt.x);
    } else if s == 2u {
        v = vec4<f32>(cur.zw, nxt.xy);
    } else if s == 3u {
        v = vec4<f32>(cur.w, nxt.xyz);
    }
    let live = vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(len);
    return select(vec4<f32>(0.0), v, live);
}

@compute @workgroup_size(8u * DIRECT_ROWS, 1, 1)
fn matmul_nt4_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let across = select(1u, 2u, DIRECT_ROWS > 1u); // subgroups side by side in a workgroup
    let rg = wid.y * (16u * DIRECT_ROWS / across) + (sg / across) * 16u; // the subgroup's rows
    let cg = wid.x * (32u * across) + (sg % across) * 32u; // and columns
    // This lane's 8 x 8 block of C.
    let r0 = rg + (lane / 4u) * 8u;
    let c0 = cg + (lane % 4u) * 8u;
    let unaligned = UNALIGNED_A;
    let k4 = (p.k + 3u) / 4u;
    let ldb4 = select(k4, p.ld_b / 4u, p.ld_b > 0u);
    // The rows this lane loads for everyone; past the edge, the last row (never written).
    // Unaligned, the element where each starts, and the vec4 holding it.
    let e0 = p.a_off + min(rg + 2u * lane, p.m - 1u) * p.k;
    let e1 = p.a_off + min(rg + 2u * lane + 1u, p.m - 1u) * p.k;
    let a0 = e0 / 4u;
    let a1 = e1 / 4u;
    // The last vec4 of A's buffer: an unaligned row's look-ahead never reads past it.
    let last4 = arrayLength(&a4) - 1u;
    var cur0 = vec4<f32>(0.0);
    var cur1 = vec4<f32>(0.0);
    if unaligned {
        cur0 = a4[a0];
        cur1 = a4[a1];
    }
    let q0 = p.b_off / 4u + min(cg + 4u * lane, p.n - 1u) * ldb4;
    let q1 = p.b_off / 4u + min(cg + 4u * lane + 1u, p.n - 1u) * ldb4;
    let q2 = p.b_off / 4u + min(cg + 4u * lane + 2u, p.n - 1u) * ldb4;
    let q3 = p.b_off / 4u + min(cg + 4u * lane + 3u, p.n - 1u) * ldb4;
    // Row rg + 8 (lane / 4) + i was loaded by lane 4 (lane / 4) + i / 2 (as its i % 2 -th);
    // column cg + 8 (lane % 4) + j by lane 2 (lane % 4) + j / 4 (as its j % 4 -th).
    let ra = (lane / 4u) * 4u;
    let cb = (lane % 4u) * 2u;
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    // ROW_SUMS: the sums of this lane's 8 rows of A, from the values it multiplies anyway;
    // only the lanes of C's first 8 columns write them.
    let sums = (p.flags & 64u) != 0u;
    var rs: array<vec4<f32>, 8>;
    // Every lane runs every iteration (the shuffles need the whole subgroup).
    for (var k = 0u; k < k4; k++) {
        var ma0: vec4<f32>;
        var ma1: vec4<f32>;
        if unaligned {
            let nxt0 = a4[min(a0 + k + 1u, last4)];
            let nxt1 = a4[min(a1 + k + 1u, last4)];
            ma0 = a_at(cur0, nxt0, e0, 4u * k, p.k);
            ma1 = a_at(cur1, nxt1, e1, 4u * k, p.k);
            cur0 = nxt0;
            cur1 = nxt1;
        } else {
            ma0 = a4[a0 + k];
            ma1 = a4[a1 + k];
        }
        let mb0 = b4[q0 + k];
        let mb1 = b4[q1 + k];
        let mb2 = b4[q2 + k];
        let mb3 = b4[q3 + k];
        let b0 = subgroupShuffle(mb0, cb);
        let b1 = subgroupShuffle(mb1, cb);
        let b2 = subgroupShuffle(mb2, cb);
        let b3 = subgroupShuffle(mb3, cb);
        let b4_ = subgroupShuffle(mb0, cb + 1u);
        let b5 = subgroupShuffle(mb1, cb + 1u);
        let b6 = subgroupShuffle(mb2, cb + 1u);
        let b7 = subgroupShuffle(mb3, cb + 1u);
        var av: array<vec4<f32>, 8>;
        av[0] = subgroupShuffle(ma0, ra);
        av[1] = subgroupShuffle(ma1, ra);
        av[2] = subgroupShuffle(ma0, ra + 1u);
        av[3] = subgroupShuffle(ma1, ra + 1u);
        av[4] = subgroupShuffle(ma0, ra + 2u);
        av[5] = subgroupShuffle(ma1, ra + 2u);
        av[6] = subgroupShuffle(ma0, ra + 3u);
        av[7] = subgroupShuffle(ma1, ra + 3u);
        for (var i = 0u; i < 8u; i++) {
            let v = av[i];
            lo[i] += vec4<f32>(dot(v, b0), dot(v, b1), dot(v, b2), dot(v, b3));
            hi[i] += vec4<f32>(dot(v, b4_), dot(v, b5), dot(v, b6), dot(v, b7));
        }
        if sums {
            for (var i = 0u; i < 8u; i++) {
                rs[i] += av[i];
            }
        }
    }
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    store_block(r0, c0, lo, hi);
    if sums && c0 == 0u {
        store_row_sums(r0, rs);
    }
}

// matmul_tn4_sg: C = A^T B, A [K, M] and B [K, N] read as vec4s along m and n (the weight
// gradients over all T * B rows, straight from dL/da, dL/do, x and h_all, without the
// transposes matmul_nt4_sg needs). The same 16 x 32 blocks per subgroup, two values of k per
// iteration: each lane loads one vec4 of A (4 rows of A^T at one k) and two of B (8 columns at
// one k) and takes its 2 x 2 + 2 x 2 by subgroupShuffle: per 2 steps of k, 3 loads and 8
// shuffles per lane for 128 multiply-adds, as matmul_nt4_sg. Each lane walks rows M or N
// floats apart, so this wins only while the operands stay in cache (small shapes; `medium`'s
// weight gradients took 76 ms this way against 35 with the transposes). With ROW_SUMS the lanes
// of C's first 8 columns also write the sums over k of their rows of A^T (the bias gradients).
@compute @workgroup_size(8u * DIRECT_ROWS, 1, 1)
fn matmul_tn4_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    p = p_in;
    let across = select(1u, 2u, DIRECT_ROWS > 1u);
    let rg = wid.y * (16u * DIRECT_ROWS / across) + (sg / across) * 16u;
    let cg = wid.x * (32u * across) + (sg % across) * 32u;
    let ry = lane / 4u;
    let cx = lane % 4u;
    let r0 = rg + ry * 8u;
    let c0 = cg + cx * 8u;
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    // At k = k0 + lane / 4 this lane loads rows rg + 4 cx .. + 3 of A^T and columns
    // cg + 8 cx .. + 7 of B (past the edge, the last ones, never written).
    let am = p.a_off / 4u + min((rg + 4u * cx) / 4u, m4 - 1u);
    let bn = p.b_off / 4u + min((cg + 8u * cx) / 4u, n4 - 1u);
    let bn2 = p.b_off / 4u + min((cg + 8u * cx) / 4u + 1u, n4 - 1u);
    let dk = lane / 4u;
    let sums = (p.flags & 64u) != 0u;
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    var rs0 = vec4<f32>(0.0);
    var rs1 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 2u) {
        let k = k0 + dk;
        let kk = min(k, p.k - 1u);
        // Past K (an odd K), zeros.
        let live = select(0.0, 1.0, k < p.k);
        let ma = a4[am + kk * m4] * live;
        let mb0 = b4[bn + kk * n4];
        let mb1 = b4[bn2 + kk * n4];
        // Rows r0 .. r0 + 7 at k0 are the vec4s of lanes 2 ry, 2 ry + 1; at k0 + 1, of lanes
        // 4 + 2 ry, 5 + 2 ry. Columns c0 .. c0 + 7 at k0 are lane cx's pair; at k0 + 1, 4 + cx's.
        let a00 = subgroupShuffle(ma, 2u * ry);
        let a01 = subgroupShuffle(ma, 2u * ry + 1u);
        let a10 = subgroupShuffle(ma, 4u + 2u * ry);
        let a11 = subgroupShuffle(ma, 5u + 2u * ry);
        let b00 = subgroupShuffle(mb0, cx);
        let b01 = subgroupShuffle(mb1, cx);
        let b10 = subgroupShuffle(mb0, 4u + cx);
        let b11 = subgroupShuffle(mb1, 4u + cx);
        for (var i = 0u; i < 4u; i++) {
            lo[i] += a00[i] * b00 + a10[i] * b10;
            hi[i] += a00[i] * b01 + a10[i] * b11;
            lo[i + 4u] += a01[i] * b00 + a11[i] * b10;
            hi[i + 4u] += a01[i] * b01 + a11[i] * b11;
        }
        if sums {
            rs0 += a00 + a10;
            rs1 += a01 + a11;
        }
    }
    if r0 >= p.m || c0 >= p.n {
        return;
    }
    store_block(r0, c0, lo, hi);
    if sums && c0 == 0u {
        store_row_sums8(r0, rs0, rs1);
    }
}
