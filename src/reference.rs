//! The same maths in f64 on the CPU: the clean, readable reference every GPU result is tested
//! against. Forward and backward of each step sit side by side. Layouts are row-major and
//! time-major: `x[t][b][i]` lives at `(t * B + b) * I + i`.

use crate::loss::{Loss, LossKind, Reduction};
use crate::model::{Nonlinearity, RnnConfig, SplitMix64};
use crate::optim::{OptimizerConfig, OptimizerKind};

/// Parameters in f64, named as PyTorch names them.
#[derive(Debug, Clone)]
pub struct Params {
    /// The configuration.
    pub config: RnnConfig,
    /// U, `rnn.weight_ih_l0` `[H, I]`.
    pub w_ih: Vec<f64>,
    /// W, `rnn.weight_hh_l0` `[H, H]`.
    pub w_hh: Vec<f64>,
    /// `rnn.bias_ih_l0` `[H]` (zeros without bias).
    pub b_ih: Vec<f64>,
    /// `rnn.bias_hh_l0` `[H]` (zeros without bias).
    pub b_hh: Vec<f64>,
    /// V, `fc.weight` `[O, H]`.
    pub w_fc: Vec<f64>,
    /// c, `fc.bias` `[O]`.
    pub b_fc: Vec<f64>,
}

impl Params {
    /// Random parameters uniform in `±scale`.
    pub fn random(config: RnnConfig, scale: f64, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let (i, h, o) = (config.input, config.hidden, config.output);
        let mut v = |n: usize| (0..n).map(|_| rng.uniform(scale)).collect::<Vec<_>>();
        let (w_ih, w_hh, w_fc, b_fc) = (v(h * i), v(h * h), v(o * h), v(o));
        let (b_ih, b_hh) = if config.bias {
            (v(h), v(h))
        } else {
            (vec![0.0; h], vec![0.0; h])
        };
        Self {
            config,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            w_fc,
            b_fc,
        }
    }

    /// `(name, values)` for every parameter the configuration has, in PyTorch's `state_dict`
    /// order (`torch.nn.RNN`'s, then the `Linear` head's). The reference keeps its own list,
    /// so a mistake in the GPU side's layout cannot hide behind it.
    pub fn named(&self) -> Vec<(String, &[f64])> {
        let mut v: Vec<(&str, &[f64])> = vec![
            ("rnn.weight_ih_l0", &self.w_ih),
            ("rnn.weight_hh_l0", &self.w_hh),
        ];
        if self.config.bias {
            v.push(("rnn.bias_ih_l0", &self.b_ih));
            v.push(("rnn.bias_hh_l0", &self.b_hh));
        }
        v.push(("fc.weight", &self.w_fc));
        v.push(("fc.bias", &self.b_fc));
        v.into_iter().map(|(n, p)| (n.to_string(), p)).collect()
    }

    /// `(name, shape)` for every parameter, in the order of [`Params::named`].
    pub fn shapes(config: &RnnConfig) -> Vec<(String, Vec<usize>)> {
        let (i, h, o) = (config.input, config.hidden, config.output);
        let mut v = vec![
            ("rnn.weight_ih_l0", vec![h, i]),
            ("rnn.weight_hh_l0", vec![h, h]),
        ];
        if config.bias {
            v.push(("rnn.bias_ih_l0", vec![h]));
            v.push(("rnn.bias_hh_l0", vec![h]));
        }
        v.push(("fc.weight", vec![o, h]));
        v.push(("fc.bias", vec![o]));
        v.into_iter().map(|(n, s)| (n.to_string(), s)).collect()
    }

    /// Mutable access to the parameter `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<f64>> {
        match name {
            "rnn.weight_ih_l0" => Some(&mut self.w_ih),
            "rnn.weight_hh_l0" => Some(&mut self.w_hh),
            "rnn.bias_ih_l0" if self.config.bias => Some(&mut self.b_ih),
            "rnn.bias_hh_l0" if self.config.bias => Some(&mut self.b_hh),
            "fc.weight" => Some(&mut self.w_fc),
            "fc.bias" => Some(&mut self.b_fc),
            _ => None,
        }
    }
}

/// Targets for the reference loss.
#[derive(Debug, Clone)]
pub enum Targets {
    /// `[T, B, O]` values, for mse.
    Values(Vec<f64>),
    /// `[T, B]` class ids, for cross-entropy.
    Classes(Vec<usize>),
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Steps `T`.
    pub steps: usize,
    /// Batch `B`.
    pub batch: usize,
    /// Hidden states `[T + 1, B, H]`; slot 0 is h0.
    pub h: Vec<f64>,
    /// Outputs `[T, B, O]`.
    pub o: Vec<f64>,
}

impl Trace {
    /// The last hidden state `[B, H]`.
    pub fn h_n(&self) -> &[f64] {
        let bh = self.h.len() / (self.steps + 1);
        &self.h[self.steps * bh..]
    }
}

fn act(n: Nonlinearity, a: f64) -> f64 {
    match n {
        Nonlinearity::Tanh => a.tanh(),
        Nonlinearity::Relu => a.max(0.0),
    }
}

/// d act / d a, written in terms of h = act(a).
fn act_grad(n: Nonlinearity, h: f64) -> f64 {
    match n {
        Nonlinearity::Tanh => 1.0 - h * h,
        Nonlinearity::Relu => {
            if h > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// Forward over `T` steps: `h(t) = act(b_ih + b_hh + W h(t-1) + U x(t))`, `o(t) = c + V h(t)`.
pub fn forward(p: &Params, x: &[f64], h0: Option<&[f64]>, steps: usize, batch: usize) -> Trace {
    let RnnConfig {
        input: ni,
        hidden: nh,
        output: no,
        nonlinearity,
        ..
    } = p.config;
    let mut h = vec![0.0; (steps + 1) * batch * nh];
    if let Some(h0) = h0 {
        h[..batch * nh].copy_from_slice(h0);
    }
    let mut o = vec![0.0; steps * batch * no];
    for t in 0..steps {
        for b in 0..batch {
            let row = t * batch + b;
            let prev = t * batch * nh + b * nh; // h(t-1)[b] lives in slot t
            let cur = (t + 1) * batch * nh + b * nh; // h(t)[b] in slot t + 1
            for j in 0..nh {
                let mut a = p.b_ih[j] + p.b_hh[j];
                for k in 0..ni {
                    a += p.w_ih[j * ni + k] * x[row * ni + k];
                }
                for k in 0..nh {
                    a += p.w_hh[j * nh + k] * h[prev + k];
                }
                h[cur + j] = act(nonlinearity, a);
            }
            for q in 0..no {
                let mut v = p.b_fc[q];
                for j in 0..nh {
                    v += p.w_fc[q * nh + j] * h[cur + j];
                }
                o[row * no + q] = v;
            }
        }
    }
    Trace { steps, batch, h, o }
}

/// The loss of outputs `o` `[R, O]` and its gradient dL/do, PyTorch's semantics.
pub fn loss(o: &[f64], outputs: usize, targets: &Targets, loss: Loss) -> (f64, Vec<f64>) {
    let rows = o.len() / outputs;
    let mut d = vec![0.0; o.len()];
    let mut total = 0.0;
    match (loss.kind, targets) {
        (LossKind::Mse, Targets::Values(y)) => {
            let scale = match loss.reduction {
                Reduction::Mean => 1.0 / o.len() as f64,
                Reduction::Sum => 1.0,
            };
            for i in 0..o.len() {
                let e = o[i] - y[i];
                total += e * e;
                d[i] = 2.0 * scale * e;
            }
            total *= scale;
        }
        (LossKind::CrossEntropy, Targets::Classes(y)) => {
            let scale = match loss.reduction {
                Reduction::Mean => 1.0 / rows as f64,
                Reduction::Sum => 1.0,
            };
            for r in 0..rows {
                let row = &o[r * outputs..(r + 1) * outputs];
                let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|v| (v - mx).exp()).sum();
                total += z.ln() + mx - row[y[r]];
                for c in 0..outputs {
                    let sm = (row[c] - mx).exp() / z;
                    d[r * outputs + c] = scale * (sm - if c == y[r] { 1.0 } else { 0.0 });
                }
            }
            total *= scale;
        }
        _ => panic!("reference::loss: mse needs Targets::Values, cross-entropy Targets::Classes"),
    }
    (total, d)
}

/// Gradients from the reference backward pass.
#[derive(Debug, Clone)]
pub struct Grads {
    /// dL/dθ with the same names and shapes as [`Params`].
    pub params: Params,
    /// dL/dx `[T, B, I]`.
    pub x: Vec<f64>,
    /// dL/dh0 `[B, H]`.
    pub h0: Vec<f64>,
}

/// Back-propagation through time of `d_o` = dL/do through the pass recorded in `trace`.
pub fn backward(p: &Params, x: &[f64], trace: &Trace, d_o: &[f64]) -> Grads {
    let RnnConfig {
        input: ni,
        hidden: nh,
        output: no,
        nonlinearity,
        ..
    } = p.config;
    let (steps, batch) = (trace.steps, trace.batch);
    let mut g = Params {
        config: p.config,
        w_ih: vec![0.0; nh * ni],
        w_hh: vec![0.0; nh * nh],
        b_ih: vec![0.0; nh],
        b_hh: vec![0.0; nh],
        w_fc: vec![0.0; no * nh],
        b_fc: vec![0.0; no],
    };
    let mut dx = vec![0.0; x.len()];
    // da_next[b][j] = dL/da(t+1)[b][j]; zero past the last step.
    let mut da_next = vec![0.0; batch * nh];
    let mut da = vec![0.0; batch * nh];
    for t in (0..steps).rev() {
        for b in 0..batch {
            let row = t * batch + b;
            let prev = t * batch * nh + b * nh;
            let cur = (t + 1) * batch * nh + b * nh;
            for j in 0..nh {
                // dh(t) = V^T do(t) + W^T da(t+1)
                let mut dh = 0.0;
                for q in 0..no {
                    dh += p.w_fc[q * nh + j] * d_o[row * no + q];
                }
                for k in 0..nh {
                    dh += p.w_hh[k * nh + j] * da_next[b * nh + k];
                }
                da[b * nh + j] = dh * act_grad(nonlinearity, trace.h[cur + j]);
            }
            for q in 0..no {
                g.b_fc[q] += d_o[row * no + q];
                for j in 0..nh {
                    g.w_fc[q * nh + j] += d_o[row * no + q] * trace.h[cur + j];
                }
            }
            for j in 0..nh {
                let d = da[b * nh + j];
                g.b_ih[j] += d;
                g.b_hh[j] += d;
                for k in 0..ni {
                    g.w_ih[j * ni + k] += d * x[row * ni + k];
                    dx[row * ni + k] += p.w_ih[j * ni + k] * d;
                }
                for k in 0..nh {
                    g.w_hh[j * nh + k] += d * trace.h[prev + k];
                }
            }
        }
        std::mem::swap(&mut da, &mut da_next);
    }
    // After the loop da_next holds da(0); dh0 = W^T da(0).
    let mut dh0 = vec![0.0; batch * nh];
    for b in 0..batch {
        for j in 0..nh {
            for k in 0..nh {
                dh0[b * nh + j] += p.w_hh[k * nh + j] * da_next[b * nh + k];
            }
        }
    }
    Grads {
        params: g,
        x: dx,
        h0: dh0,
    }
}

/// Forward, loss and backward: the loss and every gradient.
pub fn loss_and_grads(
    p: &Params,
    x: &[f64],
    h0: Option<&[f64]>,
    steps: usize,
    batch: usize,
    targets: &Targets,
    l: Loss,
) -> (f64, Trace, Grads) {
    let trace = forward(p, x, h0, steps, batch);
    let (value, d_o) = loss(&trace.o, p.config.output, targets, l);
    let grads = backward(p, x, &trace, &d_o);
    (value, trace, grads)
}

/// An optimizer on the host, written from PyTorch's documented algorithms (`torch.optim.SGD`
/// with dampening 0 and no Nesterov, `torch.optim.Adam` without amsgrad), with
/// `torch.nn.utils.clip_grad_norm_` before each step: what the GPU's update must match.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// Updates taken.
    step: i32,
    /// Per parameter (in [`Params::named`] order): the momentum buffer or Adam's first moment.
    first: Vec<Vec<f64>>,
    /// Adam's second moment.
    second: Vec<Vec<f64>>,
}

impl Optimizer {
    /// Fresh state for `config`.
    pub fn new(config: OptimizerConfig) -> Self {
        Self {
            config,
            step: 0,
            first: Vec::new(),
            second: Vec::new(),
        }
    }

    /// The global norm of `grads` (before clipping), as `clip_grad_norm_` returns it.
    pub fn norm(grads: &Params) -> f64 {
        grads
            .named()
            .iter()
            .flat_map(|(_, g)| g.iter())
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt()
    }

    /// One update of `p` with the gradients `grads`; returns the norm before clipping.
    pub fn step(&mut self, p: &mut Params, grads: &Params) -> f64 {
        let norm = Self::norm(grads);
        // clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
        let scale = match self.config.clip {
            Some(max) => (f64::from(max) / (norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        let wd = f64::from(self.config.weight_decay);
        self.step += 1;
        let names: Vec<(String, Vec<f64>)> = grads
            .named()
            .into_iter()
            .map(|(n, g)| (n, g.to_vec()))
            .collect();
        if self.first.is_empty() {
            self.first = names.iter().map(|(_, g)| vec![0.0; g.len()]).collect();
            self.second = self.first.clone();
        }
        for (k, (name, g)) in names.iter().enumerate() {
            let v = p.get_mut(name).expect("the same configuration");
            for i in 0..v.len() {
                // Weight decay as PyTorch's L2 term: added to the (clipped) gradient.
                let gi = g[i] * scale + wd * v[i];
                match self.config.kind {
                    OptimizerKind::Sgd { lr, momentum } => {
                        let mu = f64::from(momentum);
                        let d = if mu == 0.0 {
                            gi
                        } else if self.step == 1 {
                            // The buffer starts as the first gradient itself.
                            self.first[k][i] = gi;
                            gi
                        } else {
                            self.first[k][i] = mu * self.first[k][i] + gi;
                            self.first[k][i]
                        };
                        v[i] -= f64::from(lr) * d;
                    }
                    OptimizerKind::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                    } => {
                        let (b1, b2) = (f64::from(beta1), f64::from(beta2));
                        let (m, s) = (&mut self.first[k][i], &mut self.second[k][i]);
                        *m = b1 * *m + (1.0 - b1) * gi;
                        *s = b2 * *s + (1.0 - b2) * gi * gi;
                        let m_hat = *m / (1.0 - b1.powi(self.step));
                        let s_hat = *s / (1.0 - b2.powi(self.step));
                        v[i] -= f64::from(lr) * m_hat / (s_hat.sqrt() + f64::from(eps));
                    }
                }
            }
        }
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences of the loss against every analytic gradient.
    fn check(config: RnnConfig, steps: usize, batch: usize, l: Loss, with_h0: bool, seed: u64) {
        let p = Params::random(config, 0.6, seed);
        let mut rng = SplitMix64::new(seed + 100);
        let x: Vec<f64> = (0..steps * batch * config.input)
            .map(|_| rng.uniform(1.0))
            .collect();
        let h0: Vec<f64> = (0..batch * config.hidden)
            .map(|_| rng.uniform(0.5))
            .collect();
        let h0 = with_h0.then_some(h0.as_slice());
        let targets = match l.kind {
            LossKind::Mse => Targets::Values(
                (0..steps * batch * config.output)
                    .map(|_| rng.uniform(1.0))
                    .collect(),
            ),
            LossKind::CrossEntropy => Targets::Classes(
                (0..steps * batch)
                    .map(|_| (rng.next_u64() % config.output as u64) as usize)
                    .collect(),
            ),
        };
        let eval = |p: &Params, x: &[f64], h0: Option<&[f64]>| {
            let tr = forward(p, x, h0, steps, batch);
            loss(&tr.o, config.output, &targets, l).0
        };
        let (_, _, g) = loss_and_grads(&p, &x, h0, steps, batch, &targets, l);
        let eps = 1e-6;
        let close = |num: f64, ana: f64, what: &str| {
            assert!(
                (num - ana).abs() <= 1e-6 + 1e-5 * ana.abs(),
                "{what}: finite difference {num} vs analytic {ana} ({config:?}, {l:?})"
            );
        };
        for (name, grad) in g.params.named() {
            for (i, &ana) in grad.iter().enumerate() {
                let mut plus = p.clone();
                plus.get_mut(&name).expect("named parameter")[i] += eps;
                let mut minus = p.clone();
                minus.get_mut(&name).expect("named parameter")[i] -= eps;
                let num = (eval(&plus, &x, h0) - eval(&minus, &x, h0)) / (2.0 * eps);
                close(num, ana, &format!("{name}[{i}]"));
            }
        }
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let num = (eval(&p, &xp, h0) - eval(&p, &xm, h0)) / (2.0 * eps);
            close(num, g.x[i], &format!("x[{i}]"));
        }
        if let Some(h0) = h0 {
            for i in 0..h0.len() {
                let (mut hp, mut hm) = (h0.to_vec(), h0.to_vec());
                hp[i] += eps;
                hm[i] -= eps;
                let num = (eval(&p, &x, Some(&hp)) - eval(&p, &x, Some(&hm))) / (2.0 * eps);
                close(num, g.h0[i], &format!("h0[{i}]"));
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut seed = 1;
        for nonlinearity in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            for l in [Loss::mse(), Loss::cross_entropy()] {
                for reduction in [Reduction::Mean, Reduction::Sum] {
                    for (steps, batch, bias, with_h0) in
                        [(1, 1, true, false), (4, 3, true, true), (3, 2, false, true)]
                    {
                        let config = RnnConfig {
                            input: 3,
                            hidden: 4,
                            output: 3,
                            nonlinearity,
                            bias,
                        };
                        check(
                            config,
                            steps,
                            batch,
                            l.with_reduction(reduction),
                            with_h0,
                            seed,
                        );
                        seed += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn forward_matches_hand_computed_step() {
        // One unit, one input, one output: h = tanh(0.5 + 0.25 + 2 * 0.1 + 0.3 * 1), o = 1.5 h - 1.
        let config = RnnConfig::new(1, 1, 1);
        let p = Params {
            config,
            w_ih: vec![2.0],
            w_hh: vec![0.3],
            b_ih: vec![0.5],
            b_hh: vec![0.25],
            w_fc: vec![1.5],
            b_fc: vec![-1.0],
        };
        let tr = forward(&p, &[0.1], Some(&[1.0]), 1, 1);
        let h = (0.5f64 + 0.25 + 0.2 + 0.3).tanh();
        assert!((tr.h_n()[0] - h).abs() < 1e-15);
        assert!((tr.o[0] - (1.5 * h - 1.0)).abs() < 1e-15);
    }
}
