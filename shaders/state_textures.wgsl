// Spliced into recurrence_blocked.wgsl at its state mark, for the persistent subgroup loops
// where the crate keeps texture mirrors of h_all, da, W's layouts and xu
// (Gpu::state_textures): every vec4 the loops write goes to the same vec4 of st, copied back
// into dst after the loop, and everything they read comes from the mirrors (W's layouts, xu
// and dL/dh copied in first). On Mesa 22's lavapipe a storage-buffer
// load at an address that varies by lane is a loop over the lanes (about 5.5 ns a value on
// this project's machines), a storage-texture load a vector gather (about 0.45): `cargo bench
// --bench memory_costs`. vec4 i of a buffer is texel (i % TEXELS, i / TEXELS) of its mirror.

// This pass's state mirror (forward: h_all's, backward: da's), read and written.
@group(0) @binding(5) var st: texture_storage_2d<rgba32float, read_write>;
// The other mirror, read: h_all's in the backward pass (the forward pass does not read it).
@group(0) @binding(6) var ht: texture_storage_2d<rgba32float, read>;
// wp's mirror, copied from it before each loop.
@group(0) @binding(7) var wt: texture_storage_2d<rgba32float, read>;
// xu's mirror, copied from it before the forward loop (unread by the backward loop, and where
// the forward loop gathers its input from the token table).
@group(0) @binding(8) var xt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var<storage, read> r_in: Rec;

// Texels per row of a mirror (ops::state_texture::TEXELS).
const TEXELS: u32 = 1024u;

fn texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i % TEXELS, i / TEXELS);
}

fn w_at(sec: u32, at: u32) -> vec4<f32> {
    return textureLoad(wt, texel(sec + at));
}

fn state_at(i: u32) -> vec4<f32> {
    return textureLoad(st, texel(i));
}

// The mirror only: the crate copies it back into dst after the loop (one store per value here
// instead of two, about 10% of the character model's loops on 22.3).
fn put(i: u32, v: vec4<f32>) {
    textureStore(st, texel(i), v);
}

fn x_at(i: u32) -> vec4<f32> {
    return textureLoad(xt, texel(i));
}

// vec4 i of the token table (TOKENS), copied into xu's mirror instead of xu: a texel's gather
// where the window gathers a vec4 one component at a time.
fn tok_at(i: u32) -> vec4<f32> {
    return textureLoad(xt, texel(i));
}

fn h_at(i: u32) -> vec4<f32> {
    return textureLoad(ht, texel(i));
}

// dL/dh from above, copied into the backward pass's mirror before the loop
// (PlanBuilder::copy_to_mirror); step t's is overwritten with dL/da(t) only after it is read.
fn dh_at(i: u32) -> vec4<f32> {
    return textureLoad(st, texel(i));
}

fn state_barrier() {
    storageBarrier();
    textureBarrier();
}

// Before the first forward step: slot 0 of h_all (h0, which the crate writes into the buffer)
// for this workgroup's rows, into the mirror. A loop that runs no iteration at a later chunk,
// where a branch would run masked on lavapipe.
fn seed_state(r0: u32, lane: u32) {
    let q = r.hidden / 4u;
    let n = select(0u, BLOCK_M * q, r.t == 0u);
    for (var i = lane; i < n; i += 8u) {
        let b = min(r0 + i / q, r.batch - 1u);
        let at = (doff + b * r.hidden) / 4u + i % q;
        textureStore(st, texel(at), dst[at]);
    }
    textureBarrier();
}
