//! The same maths in f64 on the CPU: the clean, readable reference every GPU result is tested
//! against. Forward and backward of each step sit side by side. Layouts are row-major and
//! time-major: `x[t][b][i]` lives at `(t * B + b) * I + i`.

use crate::loss::{Loss, LossKind, Reduction};
use crate::model::{Mlp, Nonlinearity, RnnConfig, SplitMix64};
use crate::optim::{OptimizerConfig, OptimizerKind};

/// One recurrent layer's parameters in f64 (`torch.nn.RNN`'s for layer k).
#[derive(Debug, Clone)]
pub struct Layer {
    /// U, `rnn.weight_ih_l{k}` `[H, I]` (layer 0) or `[H, H]`.
    pub w_ih: Vec<f64>,
    /// W, `rnn.weight_hh_l{k}` `[H, H]`.
    pub w_hh: Vec<f64>,
    /// `rnn.bias_ih_l{k}` `[H]` (zeros without bias).
    pub b_ih: Vec<f64>,
    /// `rnn.bias_hh_l{k}` `[H]` (zeros without bias).
    pub b_hh: Vec<f64>,
    /// The deep transition's layers, `trans_l{k}.{j}.weight` `[out, in]` and
    /// `trans_l{k}.{j}.bias` `[out]`: φ(a) (H wide) in, h(t) (H wide) out, `width` between;
    /// empty without one.
    pub trans: Vec<(Vec<f64>, Vec<f64>)>,
    /// The shortcut `skip_l{k}.weight` `[H, H]` from h(t-1) into the transition's last layer
    /// (DT(S)); empty without one.
    pub skip: Vec<f64>,
}

/// The deep transition's layers: input and output widths (H in, H out, `width` between).
fn trans_sizes(config: &RnnConfig) -> Vec<(usize, usize)> {
    let m = config.deep_transition;
    let h = config.hidden;
    (0..m.depth)
        .map(|j| {
            let ni = if j == 0 { h } else { m.width };
            let no = if j + 1 == m.depth { h } else { m.width };
            (ni, no)
        })
        .collect()
}

/// One step of the recurrence from the pre-activation `a` `[H]` and `h(t-1)`: every value the
/// transition computes, `[φ(a), z_1, ..., h(t)]` (just `[h(t)]` = `[φ(a)]` without a deep
/// transition).
fn transition(
    l: &Layer,
    (n, tn): (Nonlinearity, Nonlinearity),
    a: &[f64],
    h_prev: &[f64],
) -> Vec<Vec<f64>> {
    let mut zs = vec![a.iter().map(|&v| act(n, v)).collect::<Vec<f64>>()];
    for (j, (w, b)) in l.trans.iter().enumerate() {
        let z = zs.last().expect("at least φ(a)");
        let (no, ni) = (b.len(), z.len());
        let last = j + 1 == l.trans.len();
        let next = (0..no)
            .map(|q| {
                let mut v = b[q] + (0..ni).map(|k| w[q * ni + k] * z[k]).sum::<f64>();
                if last && !l.skip.is_empty() {
                    let nh = h_prev.len();
                    v += (0..nh).map(|k| l.skip[q * nh + k] * h_prev[k]).sum::<f64>();
                }
                act(tn, v)
            })
            .collect();
        zs.push(next);
    }
    zs
}

/// Parameters in f64, named as PyTorch names them.
#[derive(Debug, Clone)]
pub struct Params {
    /// The configuration.
    pub config: RnnConfig,
    /// The recurrent layers, bottom first; with both directions, layer k's forward direction
    /// at `2k` and its reverse one at `2k + 1` (PyTorch's order of `h0`).
    pub layers: Vec<Layer>,
    /// The deep input block's layers, `in_mlp.{j}.weight` `[width, input]` and
    /// `in_mlp.{j}.bias` `[width]`; empty without one.
    pub in_mlp: Vec<(Vec<f64>, Vec<f64>)>,
    /// The deep output block's layers, `out_mlp.{j}.weight` `[width, input]` and
    /// `out_mlp.{j}.bias` `[width]`; empty without one.
    pub out_mlp: Vec<(Vec<f64>, Vec<f64>)>,
    /// V, `fc.weight` `[O, D·H]`, or `[O, width]` after a deep output block.
    pub w_fc: Vec<f64>,
    /// c, `fc.bias` `[O]`.
    pub b_fc: Vec<f64>,
}

/// The width of layer `k`'s input: `I` (or the deep input's width) for the first, `D·H`
/// above it.
fn layer_input(config: &RnnConfig, k: usize) -> usize {
    let d = if config.bidirectional { 2 } else { 1 };
    if k > 0 {
        d * config.hidden
    } else if config.deep_input.depth > 0 {
        config.deep_input.width
    } else {
        config.input
    }
}

/// The deep input block's layers: input and output widths.
fn in_mlp_sizes(config: &RnnConfig) -> Vec<(usize, usize)> {
    let m = config.deep_input;
    (0..m.depth)
        .map(|j| (if j == 0 { config.input } else { m.width }, m.width))
        .collect()
}

/// The deep output block's layers: input and output widths.
fn out_mlp_sizes(config: &RnnConfig) -> Vec<(usize, usize)> {
    let m = config.deep_output;
    (0..m.depth)
        .map(|j| {
            let input = if j == 0 {
                dirs(config) * config.hidden
            } else {
                m.width
            };
            (input, m.width)
        })
        .collect()
}

/// The width the head reads.
fn head_input(config: &RnnConfig) -> usize {
    if config.deep_output.depth > 0 {
        config.deep_output.width
    } else {
        dirs(config) * config.hidden
    }
}

/// `y = act(x Wᵀ + b)` over `rows` rows: one layer of a deeper block.
fn dense(w: &[f64], b: &[f64], x: &[f64], n: Nonlinearity) -> Vec<f64> {
    let (no, ni) = (b.len(), w.len() / b.len());
    let rows = x.len() / ni;
    let mut y = vec![0.0; rows * no];
    for r in 0..rows {
        for q in 0..no {
            let mut v = b[q];
            for j in 0..ni {
                v += w[q * ni + j] * x[r * ni + j];
            }
            y[r * no + q] = act(n, v);
        }
    }
    y
}

/// The gradients of [`dense`] from `dy` = dL/dy: adds dW and db into `g`, returns dL/dx.
fn dense_backward(
    (w, n): (&[f64], Nonlinearity),
    x: &[f64],
    y: &[f64],
    dy: &[f64],
    (gw, gb): (&mut [f64], &mut [f64]),
) -> Vec<f64> {
    let (no, ni) = (gb.len(), w.len() / gb.len());
    let rows = x.len() / ni;
    let mut dx = vec![0.0; x.len()];
    for r in 0..rows {
        for q in 0..no {
            let d = dy[r * no + q] * act_grad(n, y[r * no + q]);
            gb[q] += d;
            for j in 0..ni {
                gw[q * ni + j] += d * x[r * ni + j];
                dx[r * ni + j] += w[q * ni + j] * d;
            }
        }
    }
    dx
}

/// A deeper block's layers over `x`: every layer's output, each after the first plus its input
/// where the block is residual.
fn block_forward(layers: &[(Vec<f64>, Vec<f64>)], x: &[f64], m: Mlp) -> Vec<Vec<f64>> {
    let mut zs: Vec<Vec<f64>> = Vec::new();
    for (w, b) in layers {
        let input = zs.last().map_or(x, Vec::as_slice);
        let mut z = dense(w, b, input, m.nonlinearity);
        if m.residual && !zs.is_empty() {
            z.iter_mut().zip(input).for_each(|(z, x)| *z += x);
        }
        zs.push(z);
    }
    zs
}

/// Back down [`block_forward`] from `d` = dL/d(its output): adds every layer's gradients into
/// `g`, returns dL/dx.
fn block_backward(
    layers: &[(Vec<f64>, Vec<f64>)],
    m: Mlp,
    (x, zs): (&[f64], &[Vec<f64>]),
    mut d: Vec<f64>,
    g: &mut [(Vec<f64>, Vec<f64>)],
) -> Vec<f64> {
    for j in (0..layers.len()).rev() {
        let input = if j == 0 { x } else { &zs[j - 1] };
        let residual = m.residual && j > 0;
        // The nonlinearity's own output: the layer's, less the input a residual layer added.
        let y: Vec<f64> = if residual {
            zs[j].iter().zip(input).map(|(z, x)| z - x).collect()
        } else {
            zs[j].clone()
        };
        let (gw, gb) = &mut g[j];
        let mut dx = dense_backward((&layers[j].0, m.nonlinearity), input, &y, &d, (gw, gb));
        if residual {
            dx.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        d = dx;
    }
    d
}

/// Directions `D`.
fn dirs(config: &RnnConfig) -> usize {
    if config.bidirectional { 2 } else { 1 }
}

/// PyTorch's suffix for direction `d`.
fn suffix(d: usize) -> &'static str {
    if d == 1 { "_reverse" } else { "" }
}

/// Dropout's mask for value `index` of layer `layer`'s output (true time, `[T, B, D·H]`)
/// under `seed`: `1 / (1 - p)` where kept, else 0. The GPU draws the same one from the same
/// hash (`shaders/dropout.wgsl`), so the reference can follow a training step exactly.
pub fn dropout_mask(seed: u32, layer: u32, index: u32, p: f32) -> f64 {
    fn mix(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        x
    }
    let h = mix(mix(mix(seed) ^ layer.wrapping_mul(0x9e37_79b9)) ^ index);
    let threshold = (f64::from(p) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32;
    if h >= threshold {
        1.0 / (1.0 - f64::from(p))
    } else {
        0.0
    }
}

/// `v` (`steps` steps of `n` values) with its steps in reverse order.
fn reversed(v: &[f64], steps: usize) -> Vec<f64> {
    let n = v.len() / steps.max(1);
    (0..steps)
        .rev()
        .flat_map(|t| v[t * n..(t + 1) * n].iter().copied())
        .collect()
}

impl Params {
    /// Zeros of `config`'s shapes.
    pub fn zeros(config: RnnConfig) -> Self {
        let (h, o) = (config.hidden, config.output);
        Self {
            config,
            layers: (0..config.layers * dirs(&config))
                .map(|kd| Layer {
                    w_ih: vec![0.0; h * layer_input(&config, kd / dirs(&config))],
                    w_hh: vec![0.0; h * h],
                    b_ih: vec![0.0; h],
                    b_hh: vec![0.0; h],
                    trans: trans_sizes(&config)
                        .into_iter()
                        .map(|(ni, no)| (vec![0.0; no * ni], vec![0.0; no]))
                        .collect(),
                    skip: if config.skip {
                        vec![0.0; h * h]
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            in_mlp: in_mlp_sizes(&config)
                .into_iter()
                .map(|(ni, no)| (vec![0.0; no * ni], vec![0.0; no]))
                .collect(),
            out_mlp: out_mlp_sizes(&config)
                .into_iter()
                .map(|(ni, no)| (vec![0.0; no * ni], vec![0.0; no]))
                .collect(),
            w_fc: vec![0.0; o * head_input(&config)],
            b_fc: vec![0.0; o],
        }
    }

    /// Random parameters uniform in `±scale`.
    pub fn random(config: RnnConfig, scale: f64, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut p = Self::zeros(config);
        let mut fill = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x = rng.uniform(scale));
        for l in p.layers.iter_mut() {
            fill(&mut l.w_ih);
            fill(&mut l.w_hh);
            for (w, b) in l.trans.iter_mut() {
                fill(w);
                fill(b);
            }
            fill(&mut l.skip);
        }
        for (w, b) in p.in_mlp.iter_mut().chain(p.out_mlp.iter_mut()) {
            fill(w);
            fill(b);
        }
        fill(&mut p.w_fc);
        fill(&mut p.b_fc);
        if config.bias {
            for l in p.layers.iter_mut() {
                fill(&mut l.b_ih);
                fill(&mut l.b_hh);
            }
        }
        p
    }

    /// `(name, values)` for every parameter the configuration has, in PyTorch's `state_dict`
    /// order (`torch.nn.RNN`'s, layer by layer, then the `Linear` head's). The reference keeps
    /// its own list, so a mistake in the GPU side's layout cannot hide behind it.
    pub fn named(&self) -> Vec<(String, &[f64])> {
        let mut v: Vec<(String, &[f64])> = Vec::new();
        for (j, (w, b)) in self.in_mlp.iter().enumerate() {
            v.push((format!("in_mlp.{j}.weight"), w));
            v.push((format!("in_mlp.{j}.bias"), b));
        }
        let nd = dirs(&self.config);
        for (kd, l) in self.layers.iter().enumerate() {
            let (k, r) = (kd / nd, suffix(kd % nd));
            v.push((format!("rnn.weight_ih_l{k}{r}"), &l.w_ih));
            v.push((format!("rnn.weight_hh_l{k}{r}"), &l.w_hh));
            if self.config.bias {
                v.push((format!("rnn.bias_ih_l{k}{r}"), &l.b_ih));
                v.push((format!("rnn.bias_hh_l{k}{r}"), &l.b_hh));
            }
        }
        for (kd, l) in self.layers.iter().enumerate() {
            let (k, r) = (kd / nd, suffix(kd % nd));
            for (j, (w, b)) in l.trans.iter().enumerate() {
                v.push((format!("trans_l{k}{r}.{j}.weight"), w));
                v.push((format!("trans_l{k}{r}.{j}.bias"), b));
            }
            if !l.skip.is_empty() {
                v.push((format!("skip_l{k}{r}.weight"), &l.skip));
            }
        }
        for (j, (w, b)) in self.out_mlp.iter().enumerate() {
            v.push((format!("out_mlp.{j}.weight"), w));
            v.push((format!("out_mlp.{j}.bias"), b));
        }
        v.push(("fc.weight".into(), &self.w_fc));
        v.push(("fc.bias".into(), &self.b_fc));
        v
    }

    /// `(name, shape)` for every parameter, in the order of [`Params::named`].
    pub fn shapes(config: &RnnConfig) -> Vec<(String, Vec<usize>)> {
        let (h, o) = (config.hidden, config.output);
        let mut v = Vec::new();
        for (j, (ni, no)) in in_mlp_sizes(config).into_iter().enumerate() {
            v.push((format!("in_mlp.{j}.weight"), vec![no, ni]));
            v.push((format!("in_mlp.{j}.bias"), vec![no]));
        }
        for k in 0..config.layers {
            v.push((
                format!("rnn.weight_ih_l{k}"),
                vec![h, layer_input(config, k)],
            ));
            v.push((format!("rnn.weight_hh_l{k}"), vec![h, h]));
            if config.bias {
                v.push((format!("rnn.bias_ih_l{k}"), vec![h]));
                v.push((format!("rnn.bias_hh_l{k}"), vec![h]));
            }
        }
        for k in 0..config.layers {
            for (j, (ni, no)) in trans_sizes(config).into_iter().enumerate() {
                v.push((format!("trans_l{k}.{j}.weight"), vec![no, ni]));
                v.push((format!("trans_l{k}.{j}.bias"), vec![no]));
            }
            if config.skip {
                v.push((format!("skip_l{k}.weight"), vec![h, h]));
            }
        }
        for (j, (ni, no)) in out_mlp_sizes(config).into_iter().enumerate() {
            v.push((format!("out_mlp.{j}.weight"), vec![no, ni]));
            v.push((format!("out_mlp.{j}.bias"), vec![no]));
        }
        v.push(("fc.weight".into(), vec![o, head_input(config)]));
        v.push(("fc.bias".into(), vec![o]));
        v
    }

    /// Mutable access to the parameter `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<f64>> {
        match name {
            "fc.weight" => return Some(&mut self.w_fc),
            "fc.bias" => return Some(&mut self.b_fc),
            _ => {}
        }
        if let Some(rest) = name.strip_prefix("trans_l") {
            let (kr, rest) = rest.split_once('.')?;
            let (j, kind) = rest.split_once('.')?;
            let layer = self.layer_mut(kr)?;
            let (w, b) = layer.trans.get_mut(j.parse::<usize>().ok()?)?;
            return match kind {
                "weight" => Some(w),
                "bias" => Some(b),
                _ => None,
            };
        }
        if let Some(kr) = name
            .strip_prefix("skip_l")
            .and_then(|r| r.strip_suffix(".weight"))
        {
            let layer = self.layer_mut(kr)?;
            return (!layer.skip.is_empty()).then_some(&mut layer.skip);
        }
        let block = if name.starts_with("in_mlp.") {
            Some(("in_mlp.", &mut self.in_mlp))
        } else if name.starts_with("out_mlp.") {
            Some(("out_mlp.", &mut self.out_mlp))
        } else {
            None
        };
        if let Some((prefix, block)) = block {
            let rest = name.strip_prefix(prefix)?;
            let (j, kind) = rest.split_once('.')?;
            let (w, b) = block.get_mut(j.parse::<usize>().ok()?)?;
            return match kind {
                "weight" => Some(w),
                "bias" => Some(b),
                _ => None,
            };
        }
        let rest = name.strip_prefix("rnn.")?;
        let (rest, d) = match rest.strip_suffix("_reverse") {
            Some(r) if self.config.bidirectional => (r, 1),
            Some(_) => return None,
            None => (rest, 0),
        };
        let (kind, k) = rest.rsplit_once("_l")?;
        let kd = k.parse::<usize>().ok()? * dirs(&self.config) + d;
        let layer = self.layers.get_mut(kd)?;
        match kind {
            "weight_ih" => Some(&mut layer.w_ih),
            "weight_hh" => Some(&mut layer.w_hh),
            "bias_ih" if self.config.bias => Some(&mut layer.b_ih),
            "bias_hh" if self.config.bias => Some(&mut layer.b_hh),
            _ => None,
        }
    }
}

impl Params {
    /// The layer `k` or `k_reverse` names, as in `trans_l{k}{_reverse}`.
    fn layer_mut(&mut self, kr: &str) -> Option<&mut Layer> {
        let (k, d) = match kr.strip_suffix("_reverse") {
            Some(k) if self.config.bidirectional => (k, 1),
            Some(_) => return None,
            None => (kr, 0),
        };
        let kd = k.parse::<usize>().ok()? * dirs(&self.config) + d;
        self.layers.get_mut(kd)
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
    /// Every layer's (and direction's, as in [`Params::layers`]) hidden states
    /// `[T + 1, B, H]`; slot 0 is its h0. The reverse direction's run in reversed time: slot
    /// s + 1 is its h at time T - 1 - s.
    pub h: Vec<Vec<f64>>,
    /// Every layer's outputs in true time, `[T, B, D·H]`, after dropout: what the layer
    /// above (or the head) reads.
    pub out: Vec<Vec<f64>>,
    /// Each layer's dropout mask (scaled), where one was applied.
    pub masks: Vec<Option<Vec<f64>>>,
    /// The deep input block's layer outputs `[T, B, width]`, bottom first.
    pub zin: Vec<Vec<f64>>,
    /// The deep output block's layer outputs `[T, B, width]`, bottom first.
    pub z: Vec<Vec<f64>>,
    /// Outputs `[T, B, O]`.
    pub o: Vec<f64>,
}

impl Trace {
    /// The last hidden state of every layer, `[L, B, H]` (PyTorch's `h_n`).
    pub fn h_n(&self) -> Vec<f64> {
        self.h
            .iter()
            .flat_map(|h| {
                let bh = h.len() / (self.steps + 1);
                h[self.steps * bh..].iter().copied()
            })
            .collect()
    }
}

fn act(n: Nonlinearity, a: f64) -> f64 {
    match n {
        Nonlinearity::Tanh => a.tanh(),
        Nonlinearity::Relu => a.max(0.0),
        Nonlinearity::Identity => a,
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
        Nonlinearity::Identity => 1.0,
    }
}

/// `a = b_ih + b_hh + W h(t-1) + U x(t)` for one row.
fn pre_activation(l: &Layer, x: &[f64], h_prev: &[f64]) -> Vec<f64> {
    let (nh, ni) = (l.b_ih.len(), x.len());
    (0..nh)
        .map(|j| {
            let u: f64 = (0..ni).map(|k| l.w_ih[j * ni + k] * x[k]).sum();
            let w: f64 = (0..nh).map(|k| l.w_hh[j * nh + k] * h_prev[k]).sum();
            l.b_ih[j] + l.b_hh[j] + u + w
        })
        .collect()
}

/// One layer over `T` steps: `h(t) = act(b_ih + b_hh + W h(t-1) + U x(t))` (then through the
/// deep transition, where there is one) for inputs `x`
/// `[T, B, ni]` from `h0` `[B, H]`; returns `[T + 1, B, H]` with h0 in slot 0.
fn layer_forward(
    l: &Layer,
    n: (Nonlinearity, Nonlinearity),
    x: &[f64],
    ni: usize,
    h0: &[f64],
    steps: usize,
    batch: usize,
) -> Vec<f64> {
    let nh = l.b_ih.len();
    let mut h = vec![0.0; (steps + 1) * batch * nh];
    h[..batch * nh].copy_from_slice(h0);
    for t in 0..steps {
        for b in 0..batch {
            let row = t * batch + b;
            let prev = t * batch * nh + b * nh; // h(t-1)[b] lives in slot t
            let cur = (t + 1) * batch * nh + b * nh; // h(t)[b] in slot t + 1
            let a = pre_activation(l, &x[row * ni..(row + 1) * ni], &h[prev..prev + nh]);
            let zs = transition(l, n, &a, &h[prev..prev + nh]);
            h[cur..cur + nh].copy_from_slice(zs.last().expect("h(t)"));
        }
    }
    h
}

/// Forward over `T` steps through every layer (layer k + 1 reads layer k's outputs; a
/// bidirectional layer's output is both directions' states side by side, the reverse one run
/// over the inputs reversed in time), then the head `o(t) = c + V out(t)` on the top layer.
/// `h0` is `[L·D, B, H]`, zeros when `None`.
pub fn forward(p: &Params, x: &[f64], h0: Option<&[f64]>, steps: usize, batch: usize) -> Trace {
    forward_with_dropout(p, x, h0, steps, batch, None)
}

/// [`forward`] in training, with dropout `p.config.dropout` on every layer's output but the
/// last, its masks drawn from `seed` as the GPU draws them ([`dropout_mask`]); `None`: none.
pub fn forward_with_dropout(
    p: &Params,
    x: &[f64],
    h0: Option<&[f64]>,
    steps: usize,
    batch: usize,
    seed: Option<u32>,
) -> Trace {
    let c = p.config;
    let (nh, no, nd) = (c.hidden, c.output, dirs(&c));
    let bh = batch * nh;
    let zeros = vec![0.0; c.layers * nd * bh];
    let h0 = h0.unwrap_or(&zeros);
    let mut h: Vec<Vec<f64>> = Vec::new();
    let mut out: Vec<Vec<f64>> = Vec::new();
    let mut masks = Vec::new();
    // The deep input block, over every row, before the bottom layer.
    let zin = block_forward(&p.in_mlp, x, c.deep_input);
    let x = zin.last().map_or(x, Vec::as_slice);
    for k in 0..c.layers {
        let input = if k == 0 { x } else { &out[k - 1] };
        let ni = layer_input(&c, k);
        let mut layer_out = vec![0.0; steps * batch * nd * nh];
        for d in 0..nd {
            let kd = k * nd + d;
            let seq = if d == 0 {
                input.to_vec()
            } else {
                reversed(input, steps)
            };
            let hk = layer_forward(
                &p.layers[kd],
                (c.nonlinearity, c.deep_transition.nonlinearity),
                &seq,
                ni,
                &h0[kd * bh..(kd + 1) * bh],
                steps,
                batch,
            );
            for t in 0..steps {
                // The reverse direction's state for time t is in slot T - t.
                let slot = if d == 0 { t + 1 } else { steps - t };
                for b in 0..batch {
                    for j in 0..nh {
                        layer_out[(t * batch + b) * nd * nh + d * nh + j] =
                            hk[slot * bh + b * nh + j];
                    }
                }
            }
            h.push(hk);
        }
        let mask = match seed {
            Some(seed) if c.dropout > 0.0 && k + 1 < c.layers => Some(
                (0..layer_out.len())
                    .map(|i| dropout_mask(seed, k as u32, i as u32, c.dropout))
                    .collect::<Vec<f64>>(),
            ),
            _ => None,
        };
        if let Some(m) = &mask {
            layer_out.iter_mut().zip(m).for_each(|(v, m)| *v *= m);
        }
        masks.push(mask);
        out.push(layer_out);
    }
    // The deep output block, then the head on what it gives.
    let z = block_forward(&p.out_mlp, &out[c.layers - 1], c.deep_output);
    let top = z.last().unwrap_or(&out[c.layers - 1]);
    let width = head_input(&c);
    let mut o = vec![0.0; steps * batch * no];
    for row in 0..steps * batch {
        for q in 0..no {
            let mut v = p.b_fc[q];
            for j in 0..width {
                v += p.w_fc[q * width + j] * top[row * width + j];
            }
            o[row * no + q] = v;
        }
    }
    Trace {
        steps,
        batch,
        h,
        out,
        masks,
        zin,
        z,
        o,
    }
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

/// The loss counted only at the rows where `mask` `[R]` says (a weight per row, 1 where a
/// step counts): the rows' losses and gradients weighed by it, and `mean` dividing by the
/// elements counted (Σ mask · O for mse, Σ mask for cross-entropy), PyTorch's mean over a
/// selection; 0 where nothing is counted.
pub fn masked_loss(
    o: &[f64],
    outputs: usize,
    targets: &Targets,
    mask: &[f64],
    l: Loss,
) -> (f64, Vec<f64>) {
    let rows = o.len() / outputs;
    assert_eq!(
        mask.len(),
        rows,
        "reference::masked_loss: one weight per row"
    );
    // Each row's own loss and gradient, unreduced (`sum` over that row alone).
    let sum = l.with_reduction(Reduction::Sum);
    let mut total = 0.0;
    let mut d = vec![0.0; o.len()];
    for r in 0..rows {
        let row = &o[r * outputs..(r + 1) * outputs];
        let one = match targets {
            Targets::Values(y) => Targets::Values(y[r * outputs..(r + 1) * outputs].to_vec()),
            Targets::Classes(y) => Targets::Classes(vec![y[r]]),
        };
        let (lr, dr) = loss(row, outputs, &one, sum);
        total += mask[r] * lr;
        for c in 0..outputs {
            d[r * outputs + c] = mask[r] * dr[c];
        }
    }
    let counted: f64 = mask.iter().sum::<f64>()
        * match l.kind {
            LossKind::Mse => outputs as f64,
            LossKind::CrossEntropy => 1.0,
        };
    let scale = match l.reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean if counted > 0.0 => 1.0 / counted,
        Reduction::Mean => 0.0,
    };
    d.iter_mut().for_each(|v| *v *= scale);
    (total * scale, d)
}

/// Gradients from the reference backward pass.
#[derive(Debug, Clone)]
pub struct Grads {
    /// dL/dθ with the same names and shapes as [`Params`].
    pub params: Params,
    /// dL/dx `[T, B, I]`.
    pub x: Vec<f64>,
    /// dL/dh0 `[L, B, H]`.
    pub h0: Vec<f64>,
    /// ‖dL/dh(t)‖ over the batch for t = 0..T, of every layer and direction (`[L·D][T]`,
    /// each direction in its own time).
    pub h_norms: Vec<Vec<f64>>,
}

/// Back-propagation through time of one layer: from `d_out` = dL/dh(t) arriving from above
/// (the head, or the next layer's input) for every step, the layer's parameter gradients
/// (added into `g`), dL/d(its input) `[T, B, ni]`, dL/dh0 `[B, H]` and ‖dL/dh(t)‖ `[T]`.
fn layer_backward(
    l: &Layer,
    (n, tn): (Nonlinearity, Nonlinearity),
    (x, ni): (&[f64], usize),
    h: &[f64],
    d_out: &[f64],
    g: &mut Layer,
    batch: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let nh = l.b_ih.len();
    let steps = h.len() / (batch * nh) - 1;
    let mut dx = vec![0.0; x.len()];
    let mut norms = vec![0.0; steps];
    // da_next[b][j] = dL/da(t+1)[b][j], and dL/d(the transition's last pre-activation) at
    // t + 1 for the shortcut; zero past the last step.
    let mut da_next = vec![0.0; batch * nh];
    let mut da = vec![0.0; batch * nh];
    let mut ds_next = vec![0.0; batch * nh];
    let mut ds = vec![0.0; batch * nh];
    for t in (0..steps).rev() {
        for b in 0..batch {
            let row = t * batch + b;
            let prev = t * batch * nh + b * nh;
            let cur = (t + 1) * batch * nh + b * nh;
            // dh(t) = (from above) + W^T da(t+1) (+ S^T ds(t+1) through the shortcut)
            let mut dh = vec![0.0; nh];
            for j in 0..nh {
                dh[j] = d_out[row * nh + j];
                for k in 0..nh {
                    dh[j] += l.w_hh[k * nh + j] * da_next[b * nh + k];
                    if !l.skip.is_empty() {
                        dh[j] += l.skip[k * nh + j] * ds_next[b * nh + k];
                    }
                }
                norms[t] += dh[j] * dh[j];
            }
            if l.trans.is_empty() {
                for j in 0..nh {
                    da[b * nh + j] = dh[j] * act_grad(n, h[cur + j]);
                }
            } else {
                // Back through the transition, its values computed again from a(t).
                let h_prev = &h[prev..prev + nh];
                let a = pre_activation(l, &x[row * ni..(row + 1) * ni], h_prev);
                let zs = transition(l, (n, tn), &a, h_prev);
                let top = zs.len() - 1;
                let mut gz: Vec<f64> = (0..nh).map(|j| dh[j] * act_grad(tn, zs[top][j])).collect();
                ds[b * nh..(b + 1) * nh].copy_from_slice(&gz);
                for jl in (0..l.trans.len()).rev() {
                    let (w, _) = &l.trans[jl];
                    let (gw, gb) = &mut g.trans[jl];
                    let z = &zs[jl];
                    let ni_t = z.len();
                    let mut dz = vec![0.0; ni_t];
                    for q in 0..gz.len() {
                        gb[q] += gz[q];
                        for k in 0..ni_t {
                            gw[q * ni_t + k] += gz[q] * z[k];
                            dz[k] += w[q * ni_t + k] * gz[q];
                        }
                    }
                    if jl + 1 == l.trans.len() && !l.skip.is_empty() {
                        for (q, gq) in gz.iter().enumerate() {
                            for (k, hk) in h_prev.iter().enumerate() {
                                g.skip[q * nh + k] += gq * hk;
                            }
                        }
                    }
                    let act_here = if jl == 0 { n } else { tn };
                    gz = dz
                        .iter()
                        .zip(z)
                        .map(|(d, z)| d * act_grad(act_here, *z))
                        .collect();
                }
                da[b * nh..(b + 1) * nh].copy_from_slice(&gz);
            }
            for j in 0..nh {
                let d = da[b * nh + j];
                g.b_ih[j] += d;
                g.b_hh[j] += d;
                for k in 0..ni {
                    g.w_ih[j * ni + k] += d * x[row * ni + k];
                    dx[row * ni + k] += l.w_ih[j * ni + k] * d;
                }
                for k in 0..nh {
                    g.w_hh[j * nh + k] += d * h[prev + k];
                }
            }
        }
        std::mem::swap(&mut da, &mut da_next);
        std::mem::swap(&mut ds, &mut ds_next);
    }
    // After the loop da_next holds da(0); dh0 = W^T da(0) (+ S^T ds(0)).
    let mut dh0 = vec![0.0; batch * nh];
    for b in 0..batch {
        for j in 0..nh {
            for k in 0..nh {
                dh0[b * nh + j] += l.w_hh[k * nh + j] * da_next[b * nh + k];
                if !l.skip.is_empty() {
                    dh0[b * nh + j] += l.skip[k * nh + j] * ds_next[b * nh + k];
                }
            }
        }
    }
    norms.iter_mut().for_each(|v| *v = v.sqrt());
    (dx, dh0, norms)
}

/// Back-propagation through time of `d_o` = dL/do through the pass recorded in `trace`: the
/// head, then every layer from the top down, each direction in its own time.
pub fn backward(p: &Params, x: &[f64], trace: &Trace, d_o: &[f64]) -> Grads {
    let c = p.config;
    let (nh, no, nd) = (c.hidden, c.output, dirs(&c));
    let (steps, batch) = (trace.steps, trace.batch);
    let bh = batch * nh;
    let width = head_input(&c);
    let mut g = Params::zeros(c);
    // The head: dV, dc, and dL/d(its input) = V^T do(t).
    let top = trace.z.last().unwrap_or(&trace.out[c.layers - 1]);
    let mut d_out = vec![0.0; top.len()];
    for row in 0..steps * batch {
        for q in 0..no {
            let d = d_o[row * no + q];
            g.b_fc[q] += d;
            for j in 0..width {
                g.w_fc[q * width + j] += d * top[row * width + j];
                d_out[row * width + j] += p.w_fc[q * width + j] * d;
            }
        }
    }
    // Down through the deep output block to dL/d(top output).
    let top = &trace.out[c.layers - 1];
    d_out = block_backward(
        &p.out_mlp,
        c.deep_output,
        (top, &trace.z),
        d_out,
        &mut g.out_mlp,
    );
    let width = nd * nh;
    let mut dh0 = vec![0.0; c.layers * nd * bh];
    let mut h_norms = vec![Vec::new(); c.layers * nd];
    let x_in = x;
    let x = trace.zin.last().map_or(x, Vec::as_slice);
    for k in (0..c.layers).rev() {
        let input = if k == 0 { x } else { &trace.out[k - 1] };
        let ni = layer_input(&c, k);
        let mut d_in = vec![0.0; input.len()];
        for d in 0..nd {
            let kd = k * nd + d;
            // This direction's share of dL/d out, in its own time.
            let mut d_dir = vec![0.0; steps * bh];
            for t in 0..steps {
                let s = if d == 0 { t } else { steps - 1 - t };
                for b in 0..batch {
                    for j in 0..nh {
                        d_dir[(s * batch + b) * nh + j] =
                            d_out[(t * batch + b) * width + d * nh + j];
                    }
                }
            }
            let seq = if d == 0 {
                input.to_vec()
            } else {
                reversed(input, steps)
            };
            let (dx, d_h0, norms) = layer_backward(
                &p.layers[kd],
                (c.nonlinearity, c.deep_transition.nonlinearity),
                (&seq, ni),
                &trace.h[kd],
                &d_dir,
                &mut g.layers[kd],
                batch,
            );
            let dx = if d == 0 { dx } else { reversed(&dx, steps) };
            d_in.iter_mut().zip(&dx).for_each(|(a, b)| *a += b);
            dh0[kd * bh..(kd + 1) * bh].copy_from_slice(&d_h0);
            h_norms[kd] = norms;
        }
        // Through the dropout on layer k - 1's output, where there was one.
        if k > 0
            && let Some(m) = &trace.masks[k - 1]
        {
            d_in.iter_mut().zip(m).for_each(|(v, m)| *v *= m);
        }
        d_out = d_in;
    }
    // Down through the deep input block to dL/dx.
    d_out = block_backward(
        &p.in_mlp,
        c.deep_input,
        (x_in, &trace.zin),
        d_out,
        &mut g.in_mlp,
    );
    if !c.bias {
        for l in g.layers.iter_mut() {
            l.b_ih.fill(0.0);
            l.b_hh.fill(0.0);
        }
    }
    Grads {
        params: g,
        x: d_out,
        h0: dh0,
        h_norms,
    }
}

/// [`loss_and_grads`] with the loss counted where `mask` `[T * B]` says ([`masked_loss`]).
pub fn masked_loss_and_grads(
    p: &Params,
    (x, h0): (&[f64], Option<&[f64]>),
    (steps, batch): (usize, usize),
    targets: &Targets,
    mask: &[f64],
    l: Loss,
) -> (f64, Trace, Grads) {
    let trace = forward(p, x, h0, steps, batch);
    let (value, d_o) = masked_loss(&trace.o, p.config.output, targets, mask, l);
    let grads = backward(p, x, &trace, &d_o);
    (value, trace, grads)
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

    /// Changes the learning rate, keeping the state (as a PyTorch scheduler does).
    pub fn set_lr(&mut self, lr: f32) {
        self.config.kind = self.config.kind.with_lr(lr);
    }

    /// One update of `p` with the gradients `grads`; returns the norm before clipping.
    pub fn step(&mut self, p: &mut Params, grads: &Params) -> f64 {
        // clip_grad_value_ first: every value clamped, and the norm taken of what is left.
        let mut clamped = grads.clone();
        if let Some(v) = self.config.clip_value {
            let v = f64::from(v);
            for name in grads.named().into_iter().map(|(n, _)| n) {
                for g in clamped.get_mut(&name).expect("the same configuration") {
                    *g = g.clamp(-v, v);
                }
            }
        }
        let grads = &clamped;
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
                    }
                    | OptimizerKind::AdamW {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        ..
                    } => {
                        if let OptimizerKind::AdamW {
                            weight_decay,
                            decay_biases,
                            ..
                        } = self.config.kind
                            && (decay_biases || !name.contains("bias"))
                        {
                            // Decoupled: the parameter shrinks first, unless left out.
                            v[i] *= 1.0 - f64::from(lr) * f64::from(weight_decay);
                        }
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
        let h0: Vec<f64> = (0..config.layers * config.directions() * batch * config.hidden)
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
        for nonlinearity in [
            Nonlinearity::Tanh,
            Nonlinearity::Relu,
            Nonlinearity::Identity,
        ] {
            for l in [Loss::mse(), Loss::cross_entropy()] {
                for reduction in [Reduction::Mean, Reduction::Sum] {
                    for (steps, batch, bias, with_h0, layers, bidirectional) in [
                        (1, 1, true, false, 1, false),
                        (4, 3, true, true, 1, false),
                        (3, 2, false, true, 2, false),
                        (2, 2, true, true, 3, false),
                        (3, 2, true, true, 1, true),
                        (2, 1, false, false, 2, true),
                    ] {
                        let mut config = RnnConfig::new(3, 4, 3)
                            .with_layers(layers)
                            .with_bidirectional(bidirectional);
                        config.nonlinearity = nonlinearity;
                        config.bias = bias;
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
    fn deep_input_and_output_gradients_match_finite_differences() {
        let mut seed = 500;
        let none = crate::Mlp::NONE;
        for (depth, width, act, layers, bidirectional, input_block) in [
            (1, 5, Nonlinearity::Tanh, 1, false, none),
            (2, 3, Nonlinearity::Relu, 2, false, none),
            (3, 1, Nonlinearity::Tanh, 1, true, none),
            (2, 6, Nonlinearity::Identity, 1, false, none),
            (
                0,
                0,
                Nonlinearity::Tanh,
                1,
                false,
                crate::Mlp::new(1, 5, Nonlinearity::Tanh),
            ),
            (
                0,
                0,
                Nonlinearity::Tanh,
                2,
                true,
                crate::Mlp::new(2, 3, Nonlinearity::Relu),
            ),
            (
                1,
                4,
                Nonlinearity::Tanh,
                1,
                false,
                crate::Mlp::new(3, 2, Nonlinearity::Identity),
            ),
        ] {
            for l in [Loss::mse(), Loss::cross_entropy()] {
                let config = RnnConfig::new(3, 4, 3)
                    .with_layers(layers)
                    .with_bidirectional(bidirectional)
                    .with_deep_input(input_block)
                    .with_deep_output(crate::Mlp::new(depth, width, act));
                check(config, 3, 2, l, true, seed);
                seed += 1;
            }
        }
        // Residual blocks: the layers after the first add their inputs to their outputs.
        let residual = |d, w, n| crate::Mlp::new(d, w, n).with_residual(true);
        for (input_block, output_block, layers, bidirectional) in [
            (
                residual(3, 3, Nonlinearity::Tanh),
                residual(2, 4, Nonlinearity::Relu),
                1,
                false,
            ),
            (residual(2, 5, Nonlinearity::Identity), none, 2, true),
            (none, residual(3, 2, Nonlinearity::Tanh), 1, true),
        ] {
            let config = RnnConfig::new(3, 4, 3)
                .with_layers(layers)
                .with_bidirectional(bidirectional)
                .with_deep_input(input_block)
                .with_deep_output(output_block);
            check(config, 3, 2, Loss::mse(), true, seed);
            seed += 1;
        }
    }

    #[test]
    fn deep_transition_gradients_match_finite_differences() {
        let mut seed = 700;
        for (depth, width, act, skip, layers, bidirectional, n) in [
            (
                1,
                4,
                Nonlinearity::Tanh,
                false,
                1,
                false,
                Nonlinearity::Tanh,
            ),
            (2, 3, Nonlinearity::Tanh, true, 1, false, Nonlinearity::Relu),
            (3, 5, Nonlinearity::Relu, true, 2, false, Nonlinearity::Tanh),
            (
                2,
                1,
                Nonlinearity::Identity,
                false,
                1,
                true,
                Nonlinearity::Tanh,
            ),
            (1, 4, Nonlinearity::Tanh, true, 2, true, Nonlinearity::Tanh),
        ] {
            for l in [Loss::mse(), Loss::cross_entropy()] {
                let config = RnnConfig::new(3, 4, 3)
                    .with_layers(layers)
                    .with_bidirectional(bidirectional)
                    .with_nonlinearity(n)
                    .with_deep_transition(crate::Mlp::new(depth, width, act), skip);
                check(config, 3, 2, l, true, seed);
                seed += 1;
            }
        }
    }

    #[test]
    fn masked_loss_gradients_match_finite_differences_and_an_all_ones_mask_changes_nothing() {
        let mut rng = SplitMix64::new(77);
        let (rows, outputs) = (7, 3);
        let o: Vec<f64> = (0..rows * outputs).map(|_| rng.uniform(2.0)).collect();
        let mask = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        for l in [Loss::mse(), Loss::cross_entropy()] {
            let targets = match l.kind {
                LossKind::Mse => {
                    Targets::Values((0..rows * outputs).map(|_| rng.uniform(1.0)).collect())
                }
                LossKind::CrossEntropy => {
                    Targets::Classes((0..rows).map(|r| r % outputs).collect())
                }
            };
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let l = l.with_reduction(reduction);
                let (_, d) = masked_loss(&o, outputs, &targets, &mask, l);
                for i in 0..o.len() {
                    let (mut op, mut om) = (o.clone(), o.clone());
                    op[i] += 1e-6;
                    om[i] -= 1e-6;
                    let num = (masked_loss(&op, outputs, &targets, &mask, l).0
                        - masked_loss(&om, outputs, &targets, &mask, l).0)
                        / 2e-6;
                    assert!((num - d[i]).abs() < 1e-7, "{l:?} o[{i}]: {num} vs {}", d[i]);
                    if mask[i / outputs] == 0.0 {
                        assert_eq!(d[i], 0.0, "a step the mask leaves out has no gradient");
                    }
                }
                let ones = vec![1.0; rows];
                let (a, da) = masked_loss(&o, outputs, &targets, &ones, l);
                let (b, db) = loss(&o, outputs, &targets, l);
                assert!(
                    (a - b).abs() < 1e-12 && da.iter().zip(&db).all(|(x, y)| (x - y).abs() < 1e-12)
                );
                assert_eq!(
                    masked_loss(&o, outputs, &targets, &[0.0; 7], l),
                    (0.0, vec![0.0; 21])
                );
            }
        }
    }

    #[test]
    fn dropout_masks_keep_one_minus_p_and_gradients_follow_them() {
        for p in [0.1f32, 0.5, 0.9] {
            let n = 200_000;
            let kept = (0..n).filter(|&i| dropout_mask(7, 1, i, p) > 0.0).count();
            let want = (1.0 - f64::from(p)) * f64::from(n);
            // Binomial standard deviation is at most 224 here; allow 5 of them.
            assert!(
                (kept as f64 - want).abs() < 1200.0,
                "p {p}: kept {kept} of {n}"
            );
            assert_eq!(dropout_mask(7, 1, 3, p), dropout_mask(7, 1, 3, p));
        }
        // Finite differences through fixed masks (a 3-layer model, both directions).
        let config = RnnConfig::new(3, 4, 2)
            .with_layers(3)
            .with_bidirectional(true)
            .with_dropout(0.5);
        let (steps, batch) = (3, 2);
        let p = Params::random(config, 0.6, 11);
        let mut rng = SplitMix64::new(12);
        let x: Vec<f64> = (0..steps * batch * 3).map(|_| rng.uniform(1.0)).collect();
        let y: Vec<f64> = (0..steps * batch * 2).map(|_| rng.uniform(1.0)).collect();
        let targets = Targets::Values(y);
        let l = Loss::mse();
        let eval = |p: &Params| {
            let tr = forward_with_dropout(p, &x, None, steps, batch, Some(99));
            loss(&tr.o, 2, &targets, l).0
        };
        let trace = forward_with_dropout(&p, &x, None, steps, batch, Some(99));
        assert!(trace.masks[0].as_ref().unwrap().contains(&0.0));
        let d_o = loss(&trace.o, 2, &targets, l).1;
        let g = backward(&p, &x, &trace, &d_o);
        let eps = 1e-6;
        for (name, grad) in g.params.named() {
            for (i, &ana) in grad.iter().enumerate() {
                let mut plus = p.clone();
                plus.get_mut(&name).unwrap()[i] += eps;
                let mut minus = p.clone();
                minus.get_mut(&name).unwrap()[i] -= eps;
                let num = (eval(&plus) - eval(&minus)) / (2.0 * eps);
                assert!(
                    (num - ana).abs() <= 1e-6 + 1e-5 * ana.abs(),
                    "{name}[{i}]: finite difference {num} vs analytic {ana}"
                );
            }
        }
    }

    #[test]
    fn forward_matches_hand_computed_step() {
        // One unit, one input, one output: h = tanh(0.5 + 0.25 + 2 * 0.1 + 0.3 * 1), o = 1.5 h - 1.
        let config = RnnConfig::new(1, 1, 1);
        let p = Params {
            config,
            layers: vec![Layer {
                trans: Vec::new(),
                skip: Vec::new(),
                w_ih: vec![2.0],
                w_hh: vec![0.3],
                b_ih: vec![0.5],
                b_hh: vec![0.25],
            }],
            in_mlp: Vec::new(),
            out_mlp: Vec::new(),
            w_fc: vec![1.5],
            b_fc: vec![-1.0],
        };
        let tr = forward(&p, &[0.1], Some(&[1.0]), 1, 1);
        let h = (0.5f64 + 0.25 + 0.2 + 0.3).tanh();
        assert!((tr.h_n()[0] - h).abs() < 1e-15);
        assert!((tr.o[0] - (1.5 * h - 1.0)).abs() < 1e-15);
    }
}
