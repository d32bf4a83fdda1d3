//! Shared helpers: the one GPU of the test run, seeded data, tolerant comparison.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rnn_wgpu::Gpu;
use rnn_wgpu::model::SplitMix64;

/// The test run's GPU. Fails, never skips, when there is no adapter.
pub fn gpu() -> Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            eprintln!(
                "tests run on: {}",
                rnn_wgpu::gpu::describe(&g.adapter_info())
            );
            g
        }
        Err(e) => panic!("GPU tests need an adapter and none could be opened: {e}"),
    })
    .clone()
}

/// `n` values uniform in `±scale`.
pub fn random(n: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.uniform(scale)).collect()
}

/// `v` `[a, c, n]` as `[c, a, n]`.
pub fn swap_leading<T: Copy>(v: &[T], a: usize, c: usize) -> Vec<T> {
    let n = v.len() / (a * c);
    let mut out = Vec::with_capacity(v.len());
    for j in 0..c {
        for i in 0..a {
            out.extend_from_slice(&v[(i * c + j) * n..(i * c + j + 1) * n]);
        }
    }
    out
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Where `got` is not within tolerance of `want`, a message naming the worst element; `None`
/// when every element is.
///
/// Element `i` may be off by `rel * (|want[i]| + rms(want))`: relative to itself, plus the same
/// fraction of the tensor's typical magnitude (its root mean square), which is what f32
/// rounding of the sums that made it scales with. No absolute floor: a tensor of small values
/// (a mean-reduced gradient over many steps) is held to the same relative accuracy as one of
/// large values, and an all-zero tensor must come out zero.
pub fn close_error(what: &str, got: &[f32], want: &[f64], rel: f64) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len().max(1) as f64).sqrt();
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        let tol = rel * (w.abs() + rms);
        // NaN fails too: `err <= tol` is false for it.
        let within = err <= tol;
        let ratio = err / tol.max(f64::MIN_POSITIVE);
        if !within && worst.is_none_or(|(_, r, _)| ratio > r || ratio.is_nan()) {
            worst = Some((i, ratio, tol));
        }
    }
    worst.map(|(i, _, tol)| {
        format!(
            "{what}: index {i}: got {} want {} (error {:e} > tolerance {tol:e}; rms of want \
             {rms:e}, rel {rel:e})",
            got[i],
            want[i],
            (f64::from(got[i]) - want[i]).abs()
        )
    })
}

/// Panics with [`close_error`]'s message unless `got` is within tolerance of `want`.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    if let Some(e) = close_error(what, got, want, rel) {
        panic!("{e}");
    }
}

/// A folder of its own under cargo's scratch directory for test files (tests run in
/// parallel, so no two share one), removed with everything in it when dropped: a test run
/// leaves nothing behind.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("rnn-wgpu-files-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
