//! How a recurrent layer's weights start: PyTorch's uniform draw, or one of the remedies for
//! vanishing and exploding gradients that fix the spectrum of `W` (`weight_hh`).

use super::RnnConfig;
use super::layer::Layer;
use super::params::ParamLayout;
use crate::error::{InputError, Result};
use crate::rng::SplitMix64;

/// How a layer's hidden-to-hidden weights `W` start.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Init {
    /// PyTorch's: uniform in `±1/sqrt(H)`, as every other parameter.
    #[default]
    Pytorch,
    /// A random orthogonal `W` (every eigenvalue on the unit circle; Saxe, McClelland &
    /// Ganguli 2014): the QR factor of a Gaussian matrix.
    Orthogonal,
    /// `W = I` and the layer's biases zero (IRNN: with relu, Le, Jaitly & Hinton 2015).
    Identity,
    /// PyTorch's draw rescaled to the given spectral radius (largest `|eigenvalue|`).
    Scaled(f64),
}

impl Init {
    /// Its name as `train --init` and files write it.
    pub fn name(&self) -> String {
        match self {
            Init::Pytorch => "pytorch".into(),
            Init::Orthogonal => "orthogonal".into(),
            Init::Identity => "identity".into(),
            Init::Scaled(r) => format!("scaled:{r}"),
        }
    }

    /// Rejects a spectral radius that is not a positive finite number.
    pub fn validate(&self) -> Result<()> {
        if let Init::Scaled(r) = *self
            && !(r.is_finite() && r > 0.0)
        {
            return Err(InputError::Invalid {
                arg: "init".into(),
                reason: format!("scaled:{r}: the spectral radius must be a positive number"),
            }
            .into());
        }
        Ok(())
    }

    /// `W` `[H, H]` row-major for this initialisation, from PyTorch's draw `drawn` and a
    /// stream of its own (`rng`) where it needs one.
    pub(crate) fn weights(&self, hidden: usize, drawn: &[f32], rng: &mut SplitMix64) -> Vec<f32> {
        match *self {
            Init::Pytorch => drawn.to_vec(),
            Init::Identity => {
                let mut w = vec![0.0; hidden * hidden];
                for j in 0..hidden {
                    w[j * hidden + j] = 1.0;
                }
                w
            }
            Init::Orthogonal => orthogonal(hidden, rng),
            Init::Scaled(r) => {
                let w: Vec<f64> = drawn.iter().map(|&v| f64::from(v)).collect();
                let rho = spectral_radius(&w, hidden);
                // A zero draw (H = 1 and a zero value) has no direction to scale.
                let s = if rho > 0.0 { r / rho } else { 0.0 };
                w.iter().map(|&v| (v * s) as f32).collect()
            }
        }
    }
}

/// Start values as PyTorch draws them: every RNN parameter and the head (`fan_in = H`)
/// uniform in `±1/sqrt(H)`, a deeper block's layers (and the head above a deep output) in
/// `±1/sqrt(fan_in)` of their own inputs; then every layer's `W` as `config.init` makes it
/// (from a stream of its own, so every other value is the same as PyTorch's draw from this
/// seed).
pub(crate) fn init(layout: &ParamLayout, config: &RnnConfig, seed: u64) -> Vec<f32> {
    let bound = 1.0 / (config.hidden as f64).sqrt();
    let mut rng = SplitMix64::new(seed);
    let mut values: Vec<f32> = (0..layout.len())
        .map(|_| rng.uniform(bound) as f32)
        .collect();
    if config.init != Init::Pytorch {
        for layer in Layer::all(config) {
            init_layer(layout, &layer, config.init, seed, &mut values);
        }
    }
    // A deeper block's layers and the head above a deep output draw as `nn.Linear` does, in
    // `±1/sqrt(fan_in)` of their own inputs: the same draw, rescaled.
    if config.deep_output.is_some()
        || config.deep_input.is_some()
        || config.deep_transition.is_some()
    {
        for e in layout.entries() {
            let trans_in = |name: &str| {
                let j = name.split('.').nth(1)?.parse::<usize>().ok()?;
                name.starts_with("trans_l").then_some(if j == 0 {
                    config.hidden
                } else {
                    config.deep_transition.width
                })
            };
            let fan_in = if let Some(f) = trans_in(&e.name) {
                f
            } else if e.name.starts_with("in_mlp.0.") {
                config.input
            } else if e.name.starts_with("in_mlp.") {
                config.deep_input.width
            } else if !config.deep_output.is_some() {
                continue;
            } else if e.name.starts_with("out_mlp.0.") {
                config.out_width()
            } else if e.name.starts_with("out_mlp.") || e.name.starts_with("fc.") {
                config.deep_output.width
            } else {
                continue;
            };
            let scale = (1.0 / (fan_in as f64).sqrt() / bound) as f32;
            values[e.offset..e.offset + e.len()]
                .iter_mut()
                .for_each(|v| *v *= scale);
        }
    }
    values
}

/// Writes `layer`'s `W` as `init` makes it from PyTorch's draw already in `values` (and, for
/// [`Init::Identity`], zeroes its biases), its random stream drawn from `seed`, the layer and
/// the direction.
pub(crate) fn init_layer(
    layout: &ParamLayout,
    layer: &Layer,
    init: Init,
    seed: u64,
    values: &mut [f32],
) {
    let h = layer.hidden;
    let Some(w) = layout.get(&layer.names.w_hh) else {
        return;
    };
    let mut rng = SplitMix64::new(seed ^ (0x1A1E_0000 + (layer.k as u64) * 2 + layer.d as u64));
    let range = w.offset..w.offset + w.len();
    let new = init.weights(h, &values[range.clone()], &mut rng);
    values[range].copy_from_slice(&new);
    if init == Init::Identity {
        for name in [&layer.names.b_ih, &layer.names.b_hh] {
            if let Some(b) = layout.get(name) {
                values[b.offset..b.offset + b.len()].fill(0.0);
            }
        }
    }
}

/// Starts `layer`'s `W` afresh: PyTorch's draw (uniform in `±1/sqrt(H)`) from a stream of
/// `seed`, the layer and the direction, then [`init_layer`].
pub(crate) fn restart_layer(
    layout: &ParamLayout,
    layer: &Layer,
    init: Init,
    seed: u64,
    values: &mut [f32],
) {
    if let Some(w) = layout.get(&layer.names.w_hh) {
        let bound = 1.0 / (layer.hidden as f64).sqrt();
        let mut rng = SplitMix64::new(seed ^ (0xD7A0_0000 + layer.k as u64 * 2 + layer.d as u64));
        for v in &mut values[w.offset..w.offset + w.len()] {
            *v = rng.uniform(bound) as f32;
        }
    }
    init_layer(layout, layer, init, seed, values);
}

impl std::str::FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let init = match s {
            "pytorch" => Init::Pytorch,
            "orthogonal" => Init::Orthogonal,
            "identity" => Init::Identity,
            _ => match s.strip_prefix("scaled:").map(str::parse::<f64>) {
                Some(Ok(r)) => Init::Scaled(r),
                _ => {
                    return Err(format!(
                        "`{s}`: expected pytorch, orthogonal, identity or scaled:R (R a \
                         spectral radius such as 0.9)"
                    ));
                }
            },
        };
        init.validate().map_err(|e| e.to_string())?;
        Ok(init)
    }
}

/// A random orthogonal `[n, n]` matrix: Gram–Schmidt (twice, for accuracy) on the columns of
/// a standard normal one, each column's sign fixed as the QR factor's with a positive
/// diagonal of R, so the result is Haar-distributed.
fn orthogonal(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
    // Columns of the Gaussian matrix, each of length n.
    let mut q: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| rng.normal()).collect())
        .collect();
    for j in 0..n {
        for _ in 0..2 {
            for i in 0..j {
                let (done, rest) = q.split_at_mut(j);
                let (qi, qj) = (&done[i], &mut rest[0]);
                let dot: f64 = qi.iter().zip(qj.iter()).map(|(a, b)| a * b).sum();
                for (v, u) in qj.iter_mut().zip(qi) {
                    *v -= dot * u;
                }
            }
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        for v in &mut q[j] {
            *v /= norm;
        }
    }
    // Row-major W[r][c] = q[c][r].
    (0..n * n).map(|i| q[i % n][i / n] as f32).collect()
}

/// The spectral radius (largest `|eigenvalue|`) of the row-major `[n, n]` matrix `w`, by
/// Gelfand's formula: `ρ = lim ‖W^k‖^(1/k)`, with `k = 2^m` reached by squaring `m` times,
/// renormalising each square (its scale kept as a logarithm). The error shrinks like `1/k`
/// in the exponent (for a normal matrix `ρ n^(1/2k)`): at `k = 2^20`, a relative 1e-6 for
/// n up to about 10⁶, below f32's resolution. `O(20 n³)`.
pub fn spectral_radius(w: &[f64], n: usize) -> f64 {
    let norm = |a: &[f64]| a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let s0 = norm(w);
    if s0 == 0.0 {
        return 0.0;
    }
    let mut a: Vec<f64> = w.iter().map(|v| v / s0).collect();
    // W^(2^m) = exp(log_scale) · a.
    let mut log_scale = s0.ln();
    let mut k = 1.0f64;
    let mut sq = vec![0.0; n * n];
    for _ in 0..20 {
        sq.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            for l in 0..n {
                let ail = a[i * n + l];
                if ail != 0.0 {
                    for j in 0..n {
                        sq[i * n + j] += ail * a[l * n + j];
                    }
                }
            }
        }
        let s = norm(&sq);
        if s == 0.0 {
            return 0.0; // nilpotent: every eigenvalue is zero
        }
        for (dst, v) in a.iter_mut().zip(&sq) {
            *dst = v / s;
        }
        log_scale = 2.0 * log_scale + s.ln();
        k *= 2.0;
    }
    (log_scale / k).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_radius_of_known_matrices() {
        // Diagonal: the largest |entry|.
        assert!((spectral_radius(&[0.5, 0.0, 0.0, -2.0], 2) - 2.0).abs() < 1e-9);
        // A rotation by 0.3 scaled by 0.9: complex eigenvalues of modulus 0.9.
        let (c, s) = (0.3f64.cos() * 0.9, 0.3f64.sin() * 0.9);
        assert!((spectral_radius(&[c, -s, s, c], 2) - 0.9).abs() < 1e-6);
        // A Jordan block: eigenvalue 0.7 twice, norm growth polynomial on top.
        assert!((spectral_radius(&[0.7, 1.0, 0.0, 0.7], 2) - 0.7).abs() < 1e-3);
        // Nilpotent.
        assert_eq!(spectral_radius(&[0.0, 1.0, 0.0, 0.0], 2), 0.0);
    }

    #[test]
    fn init_names_parse_back_and_bad_ones_say_what_is_expected() {
        for init in [
            Init::Pytorch,
            Init::Orthogonal,
            Init::Identity,
            Init::Scaled(0.9),
        ] {
            assert_eq!(init.name().parse::<Init>(), Ok(init));
        }
        for bad in ["scaled:0", "scaled:-1", "scaled:x", "glorot", "scaled:inf"] {
            let e = bad.parse::<Init>().unwrap_err();
            assert!(e.contains("spectral radius"), "{bad}: {e}");
        }
    }
}
