// Appended to recurrence_blocked.wgsl (WGSL has no includes; it uses that file's parameters,
// bindings, product and epilogue). An experiment for issue #11, timed by `bench --wavefront`:
// every layer of a stack inside one persistent dispatch. Each workgroup owns BLOCK_M batch rows
// and, at each step t, runs layer 0 and then every layer above for those rows, layer k's input
// projection U_k h_{k-1}(t) computed inside the loop instead of as one multiply over all T·B
// rows after layer k - 1's loop:
//
//   h_0(t) = act(xu_0(t) + W_0 h_0(t-1))
//   h_k(t) = act(xu_k(t) + U_k h_{k-1}(t) + W_k h_k(t-1)),   xu_k = the biases (k > 0)
//
// The layers' tensors sit one after another in the same buffers (the offsets the directions
// use): src holds xu_k at k · dsrc, dst holds h_all_k at k · ddst, wp holds layer k's layouts
// at k · dwp vec4s: W's two sections (Wᵀ, then W at sec1) and U's two (Uᵀ, then U at 3 sec1).
// `dir0` carries the layer count. Forward only.

@compute @workgroup_size(8, 1, 1)
fn blocked_wave_forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    r = r_in;
    let layers = r.dir0;
    let bh = r.batch * r.hidden;
    let r0 = wid.x * BLOCK_M;
    xoff = 0u;
    wwin = 0u;
    for (var n = 0u; n < r.count; n++) {
        let t = r.t + n;
        for (var k = 0u; k < layers; k++) {
            for (var c0 = lid.x * 8u; c0 < r.hidden; c0 += 64u) {
                // W_k h_k(t-1): layer k's states and layouts.
                doff = k * r.ddst;
                wdir = k * r.dwp;
                var o = product(r.sec1, t * bh, r0, c0);
                if k > 0u {
                    // U_k h_{k-1}(t): the layer below's slot t + 1, U's rows in layer k's
                    // layouts.
                    doff = (k - 1u) * r.ddst;
                    let u = product(3u * r.sec1, (t + 1u) * bh, r0, c0);
                    for (var i = 0u; i < 8u; i++) {
                        o.lo[i] += u.lo[i];
                        o.hi[i] += u.hi[i];
                    }
                    doff = k * r.ddst;
                }
                xoff = k * r.dsrc;
                forward_block(t, r0, c0, o);
            }
            storageBarrier();
        }
    }
}
