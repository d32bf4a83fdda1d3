// What the register-blocked kernels of CPU adapters share (WGSL has no includes: the crate
// puts this file before `matmul.wgsl` and `recurrence_blocked.wgsl`).

// Row i of an 8-row block of accumulators, by selects. Indexed by a variable (in a loop that
// stops at a matrix's edge, so does not unroll), a block is lowered by lavapipe to a cascade of
// branches over all its elements: seconds to compile (Mesa 25: 13 s for matmul_nt4_bc4, whose
// general epilogue did so), and on Mesa 22.3, where an `if` never branches, run after every
// block even where that path is not taken (the products 25-40% slower).
fn pick8(a: array<vec4<f32>, 8>, i: u32) -> vec4<f32> {
    var v = a[0];
    v = select(v, a[1], i == 1u);
    v = select(v, a[2], i == 2u);
    v = select(v, a[3], i == 3u);
    v = select(v, a[4], i == 4u);
    v = select(v, a[5], i == 5u);
    v = select(v, a[6], i == 6u);
    v = select(v, a[7], i == 7u);
    return v;
}
