//! Built-in tasks that need no download.

use crate::model::SplitMix64;

/// A batch of sequences: inputs `[T, B, I]` and targets `[T, B, O]`, row-major.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Steps `T`.
    pub steps: usize,
    /// Rows `B`.
    pub batch: usize,
    /// Inputs `[T, B, 1]`.
    pub x: Vec<f32>,
    /// Targets `[T, B, 1]`.
    pub y: Vec<f32>,
}

/// Next-step prediction of a noisy sine wave: input `sin(φ + ω t) + noise`, target the clean
/// value one step ahead. Each row has its own phase and frequency, so the model must infer
/// both from what it has seen.
pub fn sine(steps: usize, batch: usize, noise: f64, seed: u64) -> Batch {
    let mut rng = SplitMix64::new(seed);
    let mut x = vec![0.0; steps * batch];
    let mut y = vec![0.0; steps * batch];
    for b in 0..batch {
        let phase = rng.next_f64() * std::f64::consts::TAU;
        let omega = 0.15 + 0.25 * rng.next_f64();
        for t in 0..steps {
            let clean = (phase + omega * t as f64).sin();
            x[t * batch + b] = (clean + noise * rng.normal()) as f32;
            y[t * batch + b] = (phase + omega * (t + 1) as f64).sin() as f32;
        }
    }
    Batch { steps, batch, x, y }
}
