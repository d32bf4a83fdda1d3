//! Where each parameter lives in the flat parameter (and gradient) vector, and its start values.

use super::RnnConfig;
use super::layer::Layer;

/// One named parameter: PyTorch name, shape, element offset in the flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// PyTorch's name, such as `rnn.weight_hh_l0` or `fc.bias`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Element offset in the flat vector.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a zero-sized parameter (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The layout of all parameters in one flat vector, so one dispatch can update them all and
/// gradients share the same offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamSpec>,
    len: usize,
}

/// PyTorch's names for the head.
pub(crate) const FC_W: &str = "fc.weight";
pub(crate) const FC_B: &str = "fc.bias";

/// The names of layer `j` of the deep output block: its weight `[width, input]` and bias.
pub(crate) fn out_mlp_names(j: usize) -> (String, String) {
    (format!("out_mlp.{j}.weight"), format!("out_mlp.{j}.bias"))
}

/// The names of layer `j` of the deep input block: its weight `[width, input]` and bias.
pub(crate) fn in_mlp_names(j: usize) -> (String, String) {
    (format!("in_mlp.{j}.weight"), format!("in_mlp.{j}.bias"))
}

/// Every layer of the deep input block: its names and its input and output widths.
pub(crate) fn in_mlp_layers(config: &RnnConfig) -> Vec<(String, String, usize, usize)> {
    let m = config.deep_input;
    (0..m.depth)
        .map(|j| {
            let (w, b) = in_mlp_names(j);
            let input = if j == 0 { config.input } else { m.width };
            (w, b, input, m.width)
        })
        .collect()
}

/// Layer `j` of layer `k`'s deep transition in direction `d`: its names, input and output
/// widths (H in, H out, the block's width between).
pub(crate) fn trans_layers(
    config: &RnnConfig,
    (k, d): (usize, usize),
) -> Vec<(String, String, usize, usize)> {
    let m = config.deep_transition;
    let h = config.hidden;
    let r = if d == 1 { "_reverse" } else { "" };
    (0..m.depth)
        .map(|j| {
            let ni = if j == 0 { h } else { m.width };
            let no = if j + 1 == m.depth { h } else { m.width };
            (
                format!("trans_l{k}{r}.{j}.weight"),
                format!("trans_l{k}{r}.{j}.bias"),
                ni,
                no,
            )
        })
        .collect()
}

/// The shortcut of layer `k`'s deep transition in direction `d`, `[H, H]`.
pub(crate) fn skip_name((k, d): (usize, usize)) -> String {
    let r = if d == 1 { "_reverse" } else { "" };
    format!("skip_l{k}{r}.weight")
}

/// Every layer of the deep output block: its names and its input and output widths.
pub(crate) fn out_mlp_layers(config: &RnnConfig) -> Vec<(String, String, usize, usize)> {
    let m = config.deep_output;
    (0..m.depth)
        .map(|j| {
            let (w, b) = out_mlp_names(j);
            let input = if j == 0 { config.out_width() } else { m.width };
            (w, b, input, m.width)
        })
        .collect()
}

impl ParamLayout {
    /// The layout of `config`'s parameters, in PyTorch's `state_dict` order: every layer's
    /// (`weight_ih`, `weight_hh`, then the biases; the reverse direction's after the
    /// forward's), bottom first, after the deep input block's (`in_mlp.{j}`); then every
    /// layer's deep transition (`trans_l{k}.{j}`, `skip_l{k}`), the deep output block's
    /// (`out_mlp.{j}`), and the head's.
    pub fn new(config: &RnnConfig) -> Self {
        let o = config.output;
        let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
        for (w, b, input, width) in in_mlp_layers(config) {
            shapes.push((w, vec![width, input]));
            shapes.push((b, vec![width]));
        }
        shapes.extend(Layer::all(config).iter().flat_map(Layer::params));
        for l in Layer::all(config) {
            for (w, b, ni, no) in trans_layers(config, (l.k, l.d)) {
                shapes.push((w, vec![no, ni]));
                shapes.push((b, vec![no]));
            }
            if config.skip {
                shapes.push((skip_name((l.k, l.d)), vec![config.hidden, config.hidden]));
            }
        }
        for (w, b, input, width) in out_mlp_layers(config) {
            shapes.push((w, vec![width, input]));
            shapes.push((b, vec![width]));
        }
        shapes.push((FC_W.to_string(), vec![o, config.head_input()]));
        shapes.push((FC_B.to_string(), vec![o]));
        let mut offset = 0;
        let entries = shapes
            .into_iter()
            .map(|(name, shape)| {
                let spec = ParamSpec {
                    name,
                    shape,
                    offset,
                };
                offset += spec.len();
                spec
            })
            .collect();
        Self {
            entries,
            len: offset,
        }
    }

    /// Every parameter, in order.
    pub fn entries(&self) -> &[ParamSpec] {
        &self.entries
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no parameters (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Offset of a parameter this crate itself defines.
    pub(crate) fn offset(&self, name: &str) -> usize {
        self.get(name).map_or(0, |e| e.offset)
    }
}
