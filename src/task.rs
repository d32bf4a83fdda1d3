//! Built-in tasks that need no download.

use crate::rng::SplitMix64;

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

/// A batch whose loss counts only at chosen steps: inputs `[T, B, I]`, targets `[T, B, O]` and
/// the mask `[T, B]` (1 where a step's loss counts).
#[derive(Debug, Clone)]
pub struct MaskedBatch {
    /// Steps `T`.
    pub steps: usize,
    /// Rows `B`.
    pub batch: usize,
    /// Inputs `[T, B, I]`.
    pub x: Vec<f32>,
    /// Targets `[T, B, O]`.
    pub y: Vec<f32>,
    /// `[T, B]`: 1 where the loss counts.
    pub mask: Vec<f32>,
}

/// The adding problem (Hochreiter & Schmidhuber 1997, the long-memory probe of Le, Jaitly &
/// Hinton 2015 and Arjovsky, Shah & Bengio 2016): two input channels, a value uniform in
/// `[0, 1)` and a marker that is 1 at one step of each half of the sequence; the target, scored
/// at the last step only, is the sum of the two marked values. Always answering 1 scores the
/// variance of that sum, `1/6 ≈ 0.167`, which [`ADDING_BASELINE`] names.
pub fn adding(steps: usize, batch: usize, seed: u64) -> MaskedBatch {
    let mut rng = SplitMix64::new(seed);
    let mut x = vec![0.0; steps * batch * 2];
    let mut y = vec![0.0; steps * batch];
    let mut mask = vec![0.0; steps * batch];
    let half = (steps / 2).max(1);
    for b in 0..batch {
        for t in 0..steps {
            x[(t * batch + b) * 2] = rng.next_f64() as f32;
        }
        // One marked step in each half (both in the only step when T = 1).
        let first = (rng.next_u64() % half as u64) as usize;
        let second =
            (half + (rng.next_u64() % (steps - half).max(1) as u64) as usize).min(steps - 1);
        let mut sum = 0.0;
        for t in [first, second] {
            let i = (t * batch + b) * 2;
            if x[i + 1] == 0.0 {
                x[i + 1] = 1.0;
                sum += x[i];
            }
        }
        let last = (steps - 1) * batch + b;
        y[last] = sum;
        mask[last] = 1.0;
    }
    MaskedBatch {
        steps,
        batch,
        x,
        y,
        mask,
    }
}

/// The mean squared error of always answering 1 on the adding problem: the variance of the sum
/// of two uniform values, 1/6.
pub const ADDING_BASELINE: f64 = 1.0 / 6.0;

/// Classes of the copy-memory task: 0 blank, 1 to 8 the symbols, 9 the delimiter.
pub const COPY_CLASSES: usize = 10;

/// The copy-memory task (Arjovsky, Shah & Bengio 2016, arXiv 1511.06464): 10 symbols drawn
/// from 8, then `delay - 1` blanks, the delimiter, and 10 more blanks, `delay + 20` steps in
/// all, one-hot; the target is blank at every step but the last 10, which must reproduce the
/// 10 symbols in order. Scored at every step, the memoryless answer (blank, then a uniform
/// guess among the 8 symbols) costs [`copy_baseline`] nats per step.
pub fn copy_memory(delay: usize, batch: usize, seed: u64) -> ClassBatch {
    let mut rng = SplitMix64::new(seed);
    let steps = delay + 20;
    let k = COPY_CLASSES;
    let mut x = vec![0.0; steps * batch * k];
    let mut y = vec![0i64; steps * batch];
    for b in 0..batch {
        let symbols: Vec<usize> = (0..10).map(|_| 1 + (rng.next_u64() % 8) as usize).collect();
        for t in 0..steps {
            let input = if t < 10 {
                symbols[t]
            } else if t == delay + 9 {
                k - 1 // the delimiter, after delay - 1 blanks
            } else {
                0
            };
            x[(t * batch + b) * k + input] = 1.0;
            if t >= delay + 10 {
                y[t * batch + b] = symbols[t - delay - 10] as i64;
            }
        }
    }
    ClassBatch {
        steps,
        batch,
        inputs: k,
        classes: k,
        x,
        y,
    }
}

/// The copy-memory task's memoryless baseline at `delay`: `10 ln 8 / (delay + 20)` nats per
/// step (0.173 at a delay of 100).
pub fn copy_baseline(delay: usize) -> f64 {
    10.0 * 8f64.ln() / (delay + 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_marks_one_step_in_each_half_and_asks_their_sum_at_the_last() {
        let (t, b) = (11, 400);
        let d = adding(t, b, 3);
        let mut always_one = 0.0;
        for row in 0..b {
            let marked: Vec<usize> = (0..t)
                .filter(|&s| d.x[(s * b + row) * 2 + 1] == 1.0)
                .collect();
            assert_eq!(marked.len(), 2, "row {row}");
            assert!(
                marked[0] < t / 2 && marked[1] >= t / 2,
                "row {row}: {marked:?}"
            );
            let sum: f32 = marked.iter().map(|&s| d.x[(s * b + row) * 2]).sum();
            let last = (t - 1) * b + row;
            assert_eq!(d.y[last], sum);
            for s in 0..t {
                assert_eq!(d.mask[s * b + row], f32::from(s == t - 1));
            }
            always_one += f64::from(sum - 1.0).powi(2) / b as f64;
        }
        // The constant answer's error is about the variance of the sum, 1/6.
        assert!((always_one - ADDING_BASELINE).abs() < 0.03, "{always_one}");
    }

    #[test]
    fn copy_memory_reproduces_the_symbols_after_the_delimiter() {
        let (delay, b) = (7, 5);
        let d = copy_memory(delay, b, 9);
        let t = delay + 20;
        assert_eq!(d.steps, t);
        let input = |s: usize, row: usize| {
            (0..COPY_CLASSES)
                .find(|&c| d.x[(s * b + row) * COPY_CLASSES + c] == 1.0)
                .unwrap()
        };
        for row in 0..b {
            for s in 0..t {
                let want_in = match s {
                    0..=9 => input(s, row), // a symbol, checked below
                    _ if s == delay + 9 => COPY_CLASSES - 1,
                    _ => 0,
                };
                assert_eq!(input(s, row), want_in, "row {row} step {s}");
                let y = d.y[s * b + row] as usize;
                if s < delay + 10 {
                    assert_eq!(y, 0, "blank target at step {s}");
                } else {
                    assert_eq!(y, input(s - delay - 10, row), "copied symbol at step {s}");
                    assert!((1..=8).contains(&y));
                }
            }
        }
        assert!((copy_baseline(100) - 0.173).abs() < 1e-3);
    }
}
