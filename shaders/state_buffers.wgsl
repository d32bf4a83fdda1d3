// Spliced into recurrence_blocked.wgsl at its state mark: the state in the buffers alone.
@group(0) @binding(5) var<storage, read> r_in: Rec;

// vec4 `at` past the start of section `sec` of wp (both in vec4s): through the uniform window
// with W_UNIFORM (one branch is compiled away).
fn w_at(sec: u32, at: u32) -> vec4<f32> {
    if W_UNIFORM {
        return wu[at - wwin]; // the window starts at direction dir0's section
    }
    return wp[sec + at];
}

// vec4 i of the state the products read (dst: h_all forward, da backward).
fn state_at(i: u32) -> vec4<f32> {
    return dst[i];
}

// Writes vec4 i of dst.
fn put(i: u32, v: vec4<f32>) {
    dst[i] = v;
}

// vec4 i of xu (src), for the forward epilogue.
fn x_at(i: u32) -> vec4<f32> {
    return src[i];
}

// vec4 i of the token table (TOKENS), through its uniform window.
fn tok_at(i: u32) -> vec4<f32> {
    return tu[i];
}

// vec4 i of h_all (src), for the backward epilogue.
fn h_at(i: u32) -> vec4<f32> {
    return src[i];
}

// vec4 i of dL/dh from above, which the backward epilogue adds to its product (in dst, where
// the epilogue then writes dL/da).
fn dh_at(i: u32) -> vec4<f32> {
    return dst[i];
}

// Between steps: what one step wrote, the next reads.
fn state_barrier() {
    storageBarrier();
}

// Nothing to copy before the first step: the state is read where h0 was written.
fn seed_state(r0: u32, lane: u32) {}
