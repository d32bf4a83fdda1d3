// Batch-first tensors: swaps the first two dimensions, dst [C, A, n] = src [A, C, n], moving
// 32-bit words unchanged (f32 values and u32 class ids alike). Inputs `[B, T, ...]` become the
// time-major `[T, B, ...]` the kernels run on, and outputs go back the other way.
//
// Words of a row on x, rows of dst on y, each coming round past the grid (65535 workgroups).

struct Params {
    // src is [a, c, n].
    a: u32,
    c: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> p: Params;

@compute @workgroup_size(64, 1, 1)
fn swap_leading(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var k = gid.x; k < p.n; k += nwg.x * 64u) {
        // Row r of dst is (j, i): dst[j, i] = src[i, j].
        for (var r = gid.y; r < p.a * p.c; r += nwg.y) {
            let j = r / p.a;
            let i = r % p.a;
            dst[r * p.n + k] = src[(i * p.c + j) * p.n + k];
        }
    }
}
