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

/// A batch of one-hot sequences with a class id to predict at every step.
#[derive(Debug, Clone)]
pub struct ClassBatch {
    /// Steps `T`.
    pub steps: usize,
    /// Rows `B`.
    pub batch: usize,
    /// Input features `I` (one-hot width).
    pub inputs: usize,
    /// Output classes `O`.
    pub classes: usize,
    /// Inputs `[T, B, I]`.
    pub x: Vec<f32>,
    /// Class ids `[T, B]`.
    pub y: Vec<i64>,
}

/// Delayed recall, a memory task: at every step the input is one of `symbols` random symbols
/// (one-hot) and the target is the symbol seen `delay` steps earlier; for the first `delay`
/// steps, when there is nothing to recall yet, the target is the extra class `symbols`
/// ("blank"). Solving it needs the hidden state to carry `delay` symbols.
pub fn recall(steps: usize, batch: usize, symbols: usize, delay: usize, seed: u64) -> ClassBatch {
    let mut rng = SplitMix64::new(seed);
    let k = symbols.max(1);
    let mut x = vec![0.0; steps * batch * k];
    let mut y = vec![0; steps * batch];
    let mut seen = vec![0usize; steps * batch];
    for t in 0..steps {
        for b in 0..batch {
            let s = (rng.next_u64() % k as u64) as usize;
            seen[t * batch + b] = s;
            x[(t * batch + b) * k + s] = 1.0;
            y[t * batch + b] = if t >= delay {
                seen[(t - delay) * batch + b] as i64
            } else {
                k as i64
            };
        }
    }
    ClassBatch {
        steps,
        batch,
        inputs: k,
        classes: k + 1,
        x,
        y,
    }
}
