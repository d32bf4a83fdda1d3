// The parameters and layout both deep transition kernels share (transition.wgsl for GPUs,
// transition_subgroup.wgsl for CPU adapters): the crate puts this file before each, and each
// binds `p: Tr` last. Offsets
// are in floats; `fwd` is the buffer the forward pass reads its weights from (binding 0: the
// model's parameters, or the subgroup kernel's padded copies), `bwd` the one the backward
// pass reads from (binding 1: their transposes, for the subgroup kernel; the GPU kernel reads
// its forward weights transposed from binding 1 and its backward ones from binding 0).

struct Tr {
    batch: u32,
    hidden: u32,
    width: u32,     // the transition's inner width
    depth: u32,     // its layers, 1..=8
    steps: u32,     // T
    t0: u32,        // the first step of this dispatch (forward) or its last (backward)
    count: u32,     // steps in this dispatch
    act: u32,       // the layer's nonlinearity, on a(t)
    tact: u32,      // the transition's, after each of its layers
    skip: u32,      // 1 with the shortcut S
    x_off: u32,     // xu (act(a) after the forward pass), [T, B, H]
    h_off: u32,     // h_all, [T + 1, B, H]
    da_off: u32,    // da, [T, B, H]
    w: u32,         // W [H, H], in binding 0
    wt: u32,        // Wᵀ [H, pad(H)], in binding 1
    s: u32,         // S [H, H], in binding 0
    st: u32,        // Sᵀ [H, pad(H)], in binding 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lw: array<u32, 8>,   // transition layer j's weight [no, ni], in binding 0
    lwt: array<u32, 8>,  // its transpose [ni, pad(no)], in binding 1
    lb: array<u32, 8>,   // its bias [no], in binding 0
}

// Layer j's input and output widths.
fn n_in(j: u32) -> u32 {
    return select(p.width, p.hidden, j == 0u);
}

fn n_out(j: u32) -> u32 {
    return select(p.width, p.hidden, j + 1u == p.depth);
}

// Where layer j's outputs (zs, [depth - 1][T, B, width]) and pre-activation gradients (dp,
// [depth][T, B, n_out(j)], the layers of width first, then H) of step t start.
fn z_at(j: u32, t: u32) -> u32 {
    return (j * p.steps + t) * p.batch * p.width;
}

fn dp_at(j: u32, t: u32) -> u32 {
    return j * p.steps * p.batch * p.width + t * p.batch * n_out(j);
}
