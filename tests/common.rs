//! Shared helpers: the one GPU of the test run, seeded data, tolerant comparison.

use std::sync::OnceLock;

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

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Largest absolute error of `got` against `want`, relative to `want`'s largest magnitude,
/// must be at most `rel`. On failure names the index and both values.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // The floor keeps all-zero tensors (a dead relu layer, one-class softmax) from demanding
    // exact zeros from f32 arithmetic.
    let tol = rel * scale.max(1e-3);
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        if e > worst || e.is_nan() {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= tol,
        "{what}: index {at}: got {} want {} (error {worst:e} > tolerance {tol:e}, max |want| {scale:e})",
        got[at],
        want[at]
    );
}
