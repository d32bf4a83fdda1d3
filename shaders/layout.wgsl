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
@group(0) @binding(2) var<storage, read> p_in: Params;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> p: Params;

@compute @workgroup_size(64, 1, 1)
fn swap_leading(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = p_in;
    for (var k = gid.x; k < p.n; k += nwg.x * 64u) {
        // Row r of dst is (j, i): dst[j, i] = src[i, j].
        for (var r = gid.y; r < p.a * p.c; r += nwg.y) {
            let j = r / p.a;
            let i = r % p.a;
            dst[r * p.n + k] = src[(i * p.c + j) * p.n + k];
        }
    }
}

// ---- repack: a matrix copied between two block layouts -----------------------------------
//
// dst [rows_d, blocks * cols_d] from src [rows_s, blocks * cols_s]: each row is `blocks` blocks
// side by side (a bidirectional layer's two directions), and every block keeps its top-left
// corner; what lies outside src comes out zero. It pads a matrix to a width of a multiple of
// 4 for the vec4 kernels (cols_d > cols_s), and crops the padding away again (cols_d < cols_s).
// One invocation per element of dst, on x within rows; rows on y, coming round past the grid.

struct Repack {
    rows_s: u32,
    cols_s: u32,
    rows_d: u32,
    cols_d: u32,
    blocks: u32,
    src_off: u32,
    dst_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> rsrc: array<f32>;
@group(0) @binding(1) var<storage, read_write> rdst: array<f32>;
@group(0) @binding(2) var<storage, read> rp_in: Repack;
// Each entry point first copies its parameters here (ARCHITECTURE.md, "lavapipe's costs").
var<private> rp: Repack;

@compute @workgroup_size(64, 1, 1)
fn repack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rp = rp_in;
    let width = rp.blocks * rp.cols_d;
    for (var k = gid.x; k < width; k += nwg.x * 64u) {
        let block = k / rp.cols_d;
        let c = k % rp.cols_d;
        for (var r = gid.y; r < rp.rows_d; r += nwg.y) {
            var v = 0.0;
            if r < rp.rows_s && c < rp.cols_s {
                v = rsrc[rp.src_off + r * rp.blocks * rp.cols_s + block * rp.cols_s + c];
            }
            rdst[rp.dst_off + r * width + k] = v;
        }
    }
}
