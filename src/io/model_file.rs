//! Model files: `.safetensors` with PyTorch's tensor names and the configuration in
//! `__metadata__`, so `torch.nn.RNN` + `torch.nn.Linear` state dicts load here and back.

use std::collections::HashMap;
use std::path::Path;

use super::tensors::{self, HostTensor, TensorFile};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::layer::LayerNames;
use crate::model::params::{FC_B, FC_W};
use crate::model::{MAX_BLOCK_DEPTH, Mlp, Nonlinearity, Rnn, RnnConfig};

/// Metadata keys this crate writes and reads.
pub mod keys {
    /// `"tanh"`, `"relu"` or `"identity"` (ours alone); missing means tanh, as in PyTorch.
    pub const NONLINEARITY: &str = "nonlinearity";
    /// Number of stacked recurrent layers; checked against the tensors when present.
    pub const NUM_LAYERS: &str = "num_layers";
    /// `I`; checked against the weights when present.
    pub const INPUT_SIZE: &str = "input_size";
    /// `H`; checked against the weights when present.
    pub const HIDDEN_SIZE: &str = "hidden_size";
    /// `O`; checked against the weights when present.
    pub const OUTPUT_SIZE: &str = "output_size";
    /// `"true"` or `"false"`: whether every layer runs in both directions; checked against
    /// the tensors (`_reverse`) when present.
    pub const BIDIRECTIONAL: &str = "bidirectional";
    /// Dropout between layers in training, `torch.nn.RNN`'s `dropout`; 0 when missing.
    pub const DROPOUT: &str = "dropout";
    /// `"true"` or `"false"`: whether the recurrent layer has biases.
    pub const BIAS: &str = "bias";
    /// The characters of a character-level model, in class-id order, as one string.
    pub const VOCAB: &str = "vocab";
    /// Layers of the deep output block (`out_mlp.{j}`); checked against the tensors when
    /// present. Written only for a model that has one.
    pub const DEEP_OUTPUT_DEPTH: &str = "deep_output_depth";
    /// Width of the deep output block's layers; checked against the tensors when present.
    pub const DEEP_OUTPUT_WIDTH: &str = "deep_output_width";
    /// The deep output block's nonlinearity, as [`NONLINEARITY`]; tanh when missing.
    pub const DEEP_OUTPUT_NONLINEARITY: &str = "deep_output_nonlinearity";
    /// Layers of the deep input block (`in_mlp.{j}`), as [`DEEP_OUTPUT_DEPTH`].
    pub const DEEP_INPUT_DEPTH: &str = "deep_input_depth";
    /// Width of the deep input block's layers, as [`DEEP_OUTPUT_WIDTH`].
    pub const DEEP_INPUT_WIDTH: &str = "deep_input_width";
    /// The deep input block's nonlinearity, as [`NONLINEARITY`]; tanh when missing.
    pub const DEEP_INPUT_NONLINEARITY: &str = "deep_input_nonlinearity";
    /// Layers of every recurrent layer's deep transition (`trans_l{k}.{j}`), as
    /// [`DEEP_OUTPUT_DEPTH`].
    pub const DEEP_TRANSITION_DEPTH: &str = "deep_transition_depth";
    /// Width between a deep transition's layers (a depth of 1 has none; kept as written).
    pub const DEEP_TRANSITION_WIDTH: &str = "deep_transition_width";
    /// The deep transition's nonlinearity, as [`NONLINEARITY`]; tanh when missing.
    pub const DEEP_TRANSITION_NONLINEARITY: &str = "deep_transition_nonlinearity";
    /// `"true"` when the deep input block's layers after the first are residual; false when
    /// missing.
    pub const DEEP_INPUT_RESIDUAL: &str = "deep_input_residual";
    /// The same for the deep output block.
    pub const DEEP_OUTPUT_RESIDUAL: &str = "deep_output_residual";
    /// `"true"` when the deep transition has its shortcut (`skip_l{k}.weight`); checked
    /// against the tensors.
    pub const SKIP: &str = "skip";
}

/// A deeper block's tensor prefix and metadata keys.
struct BlockKeys {
    prefix: &'static str,
    depth: &'static str,
    width: &'static str,
    nonlinearity: &'static str,
    /// Whether its layers after the first are residual, where the block may be.
    residual: Option<&'static str>,
    /// What its first layer reads, for messages.
    reads: &'static str,
}

const DEEP_OUTPUT: BlockKeys = BlockKeys {
    prefix: "out_mlp",
    depth: keys::DEEP_OUTPUT_DEPTH,
    width: keys::DEEP_OUTPUT_WIDTH,
    nonlinearity: keys::DEEP_OUTPUT_NONLINEARITY,
    residual: Some(keys::DEEP_OUTPUT_RESIDUAL),
    reads: "[width, D·H]: it reads the top layer's outputs",
};

const DEEP_TRANSITION: BlockKeys = BlockKeys {
    prefix: "trans_l",
    depth: keys::DEEP_TRANSITION_DEPTH,
    width: keys::DEEP_TRANSITION_WIDTH,
    nonlinearity: keys::DEEP_TRANSITION_NONLINEARITY,
    residual: None,
    reads: "",
};

const DEEP_INPUT: BlockKeys = BlockKeys {
    prefix: "in_mlp",
    depth: keys::DEEP_INPUT_DEPTH,
    width: keys::DEEP_INPUT_WIDTH,
    nonlinearity: keys::DEEP_INPUT_NONLINEARITY,
    residual: Some(keys::DEEP_INPUT_RESIDUAL),
    reads: "[width, I]: it reads x",
};

/// A model read from a file, with the file's metadata (vocabulary and anything else).
#[derive(Debug)]
pub struct LoadedModel {
    /// The model, its parameters on the GPU.
    pub rnn: Rnn,
    /// Every `__metadata__` entry of the file.
    pub metadata: HashMap<String, String>,
}

impl LoadedModel {
    /// The vocabulary of a character model, if the file has one.
    pub fn vocab(&self) -> Option<Vec<char>> {
        self.metadata.get(keys::VOCAB).map(|v| v.chars().collect())
    }
}

/// The prefix of the tensors a training checkpoint adds to a model's (optimizer state, carried
/// hidden state): a model loads from a checkpoint as from a model file.
pub const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// Saves `rnn` to `path` with its configuration and `extra` metadata, atomically.
pub fn save(rnn: &Rnn, path: impl AsRef<Path>, extra: &HashMap<String, String>) -> Result<()> {
    save_with(rnn, path, extra, Vec::new())
}

/// [`save`] with more tensors after the model's (a checkpoint's, named with
/// [`CHECKPOINT_PREFIX`]).
pub fn save_with(
    rnn: &Rnn,
    path: impl AsRef<Path>,
    extra: &HashMap<String, String>,
    more: Vec<(String, HostTensor)>,
) -> Result<()> {
    let c = rnn.config();
    let mut meta = extra.clone();
    for (k, v) in [
        (keys::NONLINEARITY, c.nonlinearity.name().to_string()),
        (keys::NUM_LAYERS, c.layers.to_string()),
        (keys::INPUT_SIZE, c.input.to_string()),
        (keys::HIDDEN_SIZE, c.hidden.to_string()),
        (keys::OUTPUT_SIZE, c.output.to_string()),
        (keys::BIAS, c.bias.to_string()),
        (keys::BIDIRECTIONAL, c.bidirectional.to_string()),
        (keys::DROPOUT, c.dropout.to_string()),
        ("format", "rnn-wgpu".to_string()),
    ] {
        meta.insert(k.to_string(), v);
    }
    // Only a model with a deeper block says so: a plain nn.RNN file stays as it was.
    for (m, k) in [
        (c.deep_output, DEEP_OUTPUT),
        (c.deep_input, DEEP_INPUT),
        (c.deep_transition, DEEP_TRANSITION),
    ] {
        if m.is_some() {
            meta.insert(k.depth.to_string(), m.depth.to_string());
            meta.insert(k.width.to_string(), m.width.to_string());
            meta.insert(
                k.nonlinearity.to_string(),
                m.nonlinearity.name().to_string(),
            );
            if let Some(key) = k.residual {
                meta.insert(key.to_string(), m.residual.to_string());
            }
        }
    }
    if c.deep_transition.is_some() {
        meta.insert(keys::SKIP.to_string(), c.skip.to_string());
    }
    let tensors: Vec<(String, HostTensor)> = rnn
        .parameters()?
        .into_iter()
        .map(|p| (p.name, HostTensor::f32(&p.shape, p.values)))
        .chain(more)
        .collect();
    tensors::write(path, &tensors, &meta)
}

/// Loads the model file at `path` onto `gpu`.
pub fn load(gpu: &Gpu, path: impl AsRef<Path>) -> Result<LoadedModel> {
    from_file(gpu, &TensorFile::read(path)?)
}

/// Builds a model from an already-read file.
pub fn from_file(gpu: &Gpu, file: &TensorFile) -> Result<LoadedModel> {
    let config = config_of(file)?;
    let mut rnn = Rnn::new(gpu, config, 0)?;
    for spec in rnn.layout().entries().to_vec() {
        let values = match file.floats(&spec.name)? {
            Some((_, v)) => v,
            // A missing optional bias (only one of the two, or the head's) is zero.
            None => vec![0.0; spec.len()],
        };
        rnn.set_parameter(&spec.name, &values)?;
    }
    Ok(LoadedModel {
        rnn,
        metadata: file.metadata().clone(),
    })
}

/// The configuration a model file describes: sizes from the weights' shapes, options from the
/// metadata, every disagreement an error naming the file and tensor.
pub fn config_of(file: &TensorFile) -> Result<RnnConfig> {
    let meta = file.metadata();
    // The layers the tensors hold: rnn.*_l0 .. rnn.*_l{L-1}, with no gap, and `_reverse`
    // ones for a bidirectional model.
    let layer_of = |name: &str| -> Option<usize> {
        let rest = name.strip_prefix("rnn.")?;
        let rest = rest.strip_suffix("_reverse").unwrap_or(rest);
        let (kind, k) = rest.rsplit_once("_l")?;
        // Only PyTorch's spelling: `_l1`, not `_l01` or `_l+1`.
        let n = k.parse::<usize>().ok().filter(|n| n.to_string() == k)?;
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .contains(&kind)
            .then_some(n)
    };
    let is_block = |name: &str| {
        block_layer_of(name, DEEP_OUTPUT.prefix).is_some()
            || block_layer_of(name, DEEP_INPUT.prefix).is_some()
            || transition_layer_of(name).is_some()
            || skip_layer_of(name).is_some()
    };
    for name in file.names() {
        // A training checkpoint's own tensors (`rnn-wgpu train --checkpoint`) sit beside the
        // model's under this prefix.
        if name.starts_with(CHECKPOINT_PREFIX) {
            continue;
        }
        if layer_of(name).is_none() && !is_block(name) && name != FC_W && name != FC_B {
            return Err(file.invalid(
                name,
                format!(
                    "unexpected tensor; a model file holds rnn.weight_ih_l{{k}}, \
                     rnn.weight_hh_l{{k}}, rnn.bias_ih_l{{k}}, rnn.bias_hh_l{{k}} for each layer \
                     k (and the same with _reverse for both directions), in_mlp.{{j}}.weight \
                     and in_mlp.{{j}}.bias for a deep input, trans_l{{k}}.{{j}}.weight, \
                     trans_l{{k}}.{{j}}.bias and skip_l{{k}}.weight for a deep transition, \
                     out_mlp.{{j}}.weight and out_mlp.{{j}}.bias for a deep output, {FC_W} and \
                     {FC_B}"
                ),
            ));
        }
    }
    let layers = file.names().filter_map(layer_of).max().map_or(0, |k| k + 1);
    if layers == 0 {
        file.require(&LayerNames::new(0, 0).w_ih)?;
    }
    if let Some(v) = meta.get(keys::NUM_LAYERS) {
        let n = v
            .parse::<usize>()
            .map_err(|_| file.invalid(keys::NUM_LAYERS, format!("{v:?} is not a whole number")))?;
        if n != layers {
            return Err(file.invalid(
                keys::NUM_LAYERS,
                format!(
                    "says {n}, but the file holds tensors of {layers} layer{}",
                    if layers == 1 { "" } else { "s" }
                ),
            ));
        }
    }
    let bidirectional = file
        .names()
        .any(|n| n.starts_with("rnn.") && n.ends_with("_reverse"));
    match meta.get(keys::BIDIRECTIONAL).map(String::as_str) {
        None => {}
        Some(v) if v == bidirectional.to_string() => {}
        Some(v @ ("true" | "false")) => {
            return Err(file.invalid(
                keys::BIDIRECTIONAL,
                format!(
                    "says {v}, but the file {} _reverse tensors",
                    if bidirectional { "holds" } else { "has no" }
                ),
            ));
        }
        Some(v) => {
            return Err(file.invalid(
                keys::BIDIRECTIONAL,
                format!("{v:?} is neither true nor false"),
            ));
        }
    }
    let nd = if bidirectional { 2 } else { 1 };
    let dims = |name: &str, rank: usize| -> Result<Vec<usize>> {
        let t = file.require(name)?;
        if t.to_f32().is_none() {
            return Err(file.dtype_err(name, t, "F32 or F64"));
        }
        if t.shape.len() != rank || t.shape.contains(&0) {
            let want = if rank == 2 { "[rows, columns]" } else { "[n]" };
            return Err(file.shape_err(name, &t.shape, format!("{want}, no zero sizes")));
        }
        Ok(t.shape.clone())
    };
    let first = LayerNames::new(0, 0);
    let w_ih = dims(&first.w_ih, 2)?;
    // With a deep input block, I is its first layer's input and the bottom layer reads its
    // width.
    let h = w_ih[0];
    let i = match file.get("in_mlp.0.weight") {
        Some(t) if t.shape.len() == 2 => t.shape[1],
        _ => w_ih[1],
    };
    let deep_input = block_of(file, &DEEP_INPUT, i)?;
    if deep_input.is_some() && w_ih[1] != deep_input.width {
        let w = deep_input.width;
        return Err(file.shape_err(
            &first.w_ih,
            &w_ih,
            format!("[{h}, {w}] (the deep input's width, from in_mlp.0.weight)"),
        ));
    }
    let mut has_bias = false;
    for k in 0..layers {
        for d in 0..nd {
            let n = LayerNames::new(k, d);
            // Layer k > 0 reads layer k - 1's outputs, D·H wide. A layer or direction
            // missing its weights (a gap) is named by `require`.
            let want_in = if k == 0 { w_ih[1] } else { nd * h };
            if k > 0 || d > 0 {
                let got = dims(&n.w_ih, 2)?;
                if got != [h, want_in] {
                    let why = if k == 0 {
                        format!("(H and I from {})", first.w_ih)
                    } else {
                        format!(
                            "(H from {}; layer {k} reads layer {}'s outputs)",
                            first.w_ih,
                            k - 1
                        )
                    };
                    return Err(file.shape_err(&n.w_ih, &got, format!("[{h}, {want_in}] {why}")));
                }
            }
            let w_hh = dims(&n.w_hh, 2)?;
            if w_hh != [h, h] {
                return Err(file.shape_err(
                    &n.w_hh,
                    &w_hh,
                    format!("[{h}, {h}] (H from {})", first.w_ih),
                ));
            }
            for name in [&n.b_ih, &n.b_hh] {
                if file.get(name).is_some() {
                    let got = dims(name, 1)?;
                    if got != [h] {
                        return Err(file.shape_err(
                            name,
                            &got,
                            format!("[{h}] (H from {})", first.w_ih),
                        ));
                    }
                    has_bias = true;
                }
            }
        }
    }
    let deep_output = block_of(file, &DEEP_OUTPUT, nd * h)?;
    let (deep_transition, skip) = transition_of(file, (layers, nd), h)?;
    let fc_w = dims(FC_W, 2)?;
    if deep_output.is_some() && fc_w[1] != deep_output.width {
        let w = deep_output.width;
        return Err(file.shape_err(
            FC_W,
            &fc_w,
            format!("[O, {w}] (the deep output's width, from out_mlp.0.weight)"),
        ));
    }
    if !deep_output.is_some() && fc_w[1] != nd * h {
        let what = if nd == 2 { "2H: both directions" } else { "H" };
        return Err(file.shape_err(
            FC_W,
            &fc_w,
            format!("[O, {}] ({what}, H from {})", nd * h, first.w_ih),
        ));
    }
    let o = fc_w[0];
    if file.get(FC_B).is_some() {
        let got = dims(FC_B, 1)?;
        if got != [o] {
            return Err(file.shape_err(FC_B, &got, format!("[{o}]")));
        }
    }
    let nonlinearity = match meta.get(keys::NONLINEARITY) {
        Some(v) => v.parse::<Nonlinearity>().map_err(|_| {
            file.invalid(
                keys::NONLINEARITY,
                format!("{v:?} is neither \"tanh\" nor \"relu\""),
            )
        })?,
        None => Nonlinearity::Tanh,
    };
    let bias = match meta.get(keys::BIAS).map(String::as_str) {
        Some("true") => true,
        Some("false") if has_bias => {
            return Err(file.invalid(
                keys::BIAS,
                "says false, but the file holds recurrent biases".into(),
            ));
        }
        Some("false") => false,
        Some(v) => {
            return Err(file.invalid(keys::BIAS, format!("{v:?} is neither true nor false")));
        }
        None => has_bias,
    };
    for (key, want) in [
        (keys::INPUT_SIZE, i),
        (keys::HIDDEN_SIZE, h),
        (keys::OUTPUT_SIZE, o),
    ] {
        if let Some(v) = meta.get(key)
            && v.parse::<usize>().ok() != Some(want)
        {
            return Err(file.invalid(
                key,
                format!("says {v:?}, but the weights' shapes give {want}"),
            ));
        }
    }
    if let Some(v) = meta.get(keys::VOCAB)
        && v.chars().count() != o
    {
        return Err(file.invalid(
            keys::VOCAB,
            format!(
                "holds {} characters, but the model has {o} outputs",
                v.chars().count()
            ),
        ));
    }
    let dropout = match meta.get(keys::DROPOUT) {
        Some(v) => match v.parse::<f32>() {
            Ok(p) if (0.0..1.0).contains(&p) => p,
            _ => {
                return Err(file.invalid(
                    keys::DROPOUT,
                    format!("{v:?} is not a probability in [0, 1)"),
                ));
            }
        },
        None => 0.0,
    };
    Ok(RnnConfig::new(i, h, o)
        .with_deep_input(deep_input)
        .with_deep_output(deep_output)
        .with_deep_transition(deep_transition, skip)
        .with_dropout(dropout)
        .with_layers(layers)
        .with_bidirectional(bidirectional)
        .with_nonlinearity(nonlinearity)
        .with_bias(bias))
}

/// Layer j of the block under `prefix`, for `{prefix}.{j}.weight` and `{prefix}.{j}.bias`
/// (PyTorch's spelling of j only).
fn block_layer_of(name: &str, prefix: &str) -> Option<usize> {
    let (j, kind) = name
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .split_once('.')?;
    // No deeper than a model can be: a name past that is an unexpected tensor.
    let n = j
        .parse::<usize>()
        .ok()
        .filter(|n| n.to_string() == j && *n < MAX_BLOCK_DEPTH)?;
    ["weight", "bias"].contains(&kind).then_some(n)
}

/// The deeper block a file holds under `k.prefix`: its depth from the tensors (no gap), its
/// width from layer 0's weight `[width, first]`, every shape and the metadata checked
/// against them.
fn block_of(file: &TensorFile, k: &BlockKeys, first: usize) -> Result<Mlp> {
    let depth = file
        .names()
        .filter_map(|n| block_layer_of(n, k.prefix))
        .max()
        .map_or(0, |j| j + 1);
    let number = |key: &str| meta_number(file, key);
    if let Some(n) = number(k.depth)?
        && n != depth
    {
        return Err(file.invalid(
            k.depth,
            format!("says {n}, but the file holds {depth} {} layers", k.prefix),
        ));
    }
    if depth == 0 {
        return Ok(Mlp::NONE);
    }
    let mut width = 0;
    for j in 0..depth {
        let (w, b) = (
            format!("{}.{j}.weight", k.prefix),
            format!("{}.{j}.bias", k.prefix),
        );
        let t = file.require(&w)?;
        if t.to_f32().is_none() {
            return Err(file.dtype_err(&w, t, "F32 or F64"));
        }
        if j == 0 {
            width = t.shape.first().copied().unwrap_or(0);
        }
        let input = if j == 0 { first } else { width };
        if t.shape != [width, input] || width == 0 {
            let why = if j == 0 {
                k.reads.to_string()
            } else {
                format!("[width, width], the width from {}.0.weight", k.prefix)
            };
            return Err(file.shape_err(&w, &t.shape, format!("[{width}, {input}] ({why})")));
        }
        let t = file.require(&b)?;
        if t.to_f32().is_none() {
            return Err(file.dtype_err(&b, t, "F32 or F64"));
        }
        if t.shape != [width] {
            return Err(file.shape_err(&b, &t.shape, format!("[{width}]")));
        }
    }
    if let Some(n) = number(k.width)?
        && n != width
    {
        return Err(file.invalid(
            k.width,
            format!("says {n}, but {}.0.weight gives {width}", k.prefix),
        ));
    }
    let nonlinearity = meta_nonlinearity(file, k.nonlinearity)?;
    let meta = file.metadata();
    let residual = match k
        .residual
        .map(|key| (key, meta.get(key).map(String::as_str)))
    {
        None | Some((_, None | Some("false"))) => false,
        Some((_, Some("true"))) if depth > 1 => true,
        Some((key, Some("true"))) => {
            return Err(file.invalid(
                key,
                format!(
                    "says true, but residual connections go around the layers after the first \
                     and the file holds {depth} {} layer",
                    k.prefix
                ),
            ));
        }
        Some((key, Some(v))) => {
            return Err(file.invalid(key, format!("{v:?} is neither true nor false")));
        }
    };
    Ok(Mlp::new(depth, width, nonlinearity).with_residual(residual))
}

/// `(k, direction, j)` of a deep transition tensor `trans_l{k}[_reverse].{j}.weight|bias`.
fn transition_layer_of(name: &str) -> Option<(usize, usize, usize)> {
    let rest = name.strip_prefix("trans_l")?;
    let (kr, rest) = rest.split_once('.')?;
    let (k, d) = match kr.strip_suffix("_reverse") {
        Some(k) => (k, 1),
        None => (kr, 0),
    };
    let k = k.parse::<usize>().ok().filter(|n| n.to_string() == k)?;
    let (j, kind) = rest.split_once('.')?;
    let j = j
        .parse::<usize>()
        .ok()
        .filter(|n| n.to_string() == j && *n < MAX_BLOCK_DEPTH)?;
    ["weight", "bias"].contains(&kind).then_some((k, d, j))
}

/// `(k, direction)` of a shortcut `skip_l{k}[_reverse].weight`.
fn skip_layer_of(name: &str) -> Option<(usize, usize)> {
    let kr = name.strip_prefix("skip_l")?.strip_suffix(".weight")?;
    let (k, d) = match kr.strip_suffix("_reverse") {
        Some(k) => (k, 1),
        None => (kr, 0),
    };
    let k = k.parse::<usize>().ok().filter(|n| n.to_string() == k)?;
    Some((k, d))
}

/// The deep transition a file holds: its depth from `trans_l0.{j}` (no gap), its width from
/// `trans_l0.0.weight` (or the metadata, for a depth of 1), every layer and direction's
/// tensors and the metadata checked against them; and whether it has its shortcut.
fn transition_of(file: &TensorFile, (layers, nd): (usize, usize), h: usize) -> Result<(Mlp, bool)> {
    let meta = file.metadata();
    let k = &DEEP_TRANSITION;
    let depth = file
        .names()
        .filter_map(transition_layer_of)
        .map(|(_, _, j)| j + 1)
        .max()
        .unwrap_or(0);
    let number = |key: &str| meta_number(file, key);
    if let Some(n) = number(k.depth)?
        && n != depth
    {
        return Err(file.invalid(
            k.depth,
            format!("says {n}, but the file holds {depth} trans_l0 layers"),
        ));
    }
    let has_skip = file.names().any(|n| skip_layer_of(n).is_some());
    match meta.get(keys::SKIP).map(String::as_str) {
        None => {}
        Some(v) if v == has_skip.to_string() => {}
        Some(v @ ("true" | "false")) => {
            return Err(file.invalid(
                keys::SKIP,
                format!(
                    "says {v}, but the file {} skip_l{{k}}.weight tensors",
                    if has_skip { "holds" } else { "has no" }
                ),
            ));
        }
        Some(v) => {
            return Err(file.invalid(keys::SKIP, format!("{v:?} is neither true nor false")));
        }
    }
    if depth == 0 {
        if has_skip {
            return Err(file.invalid(
                "skip_l0.weight",
                "is a deep transition's shortcut, but the file has no trans_l{k} layers".into(),
            ));
        }
        return Ok((Mlp::NONE, false));
    }
    // The width between layers: trans_l0.0.weight's rows when there is more than one layer.
    let width = if depth > 1 {
        file.require("trans_l0.0.weight")?
            .shape
            .first()
            .copied()
            .unwrap_or(0)
    } else {
        number(k.width)?.unwrap_or(h)
    };
    if let Some(n) = number(k.width)?
        && n != width
    {
        return Err(file.invalid(
            k.width,
            format!("says {n}, but trans_l0.0.weight gives {width}"),
        ));
    }
    for l in 0..layers {
        for d in 0..nd {
            let r = if d == 1 { "_reverse" } else { "" };
            for j in 0..depth {
                let ni = if j == 0 { h } else { width };
                let no = if j + 1 == depth { h } else { width };
                for (name, want) in [
                    (format!("trans_l{l}{r}.{j}.weight"), vec![no, ni]),
                    (format!("trans_l{l}{r}.{j}.bias"), vec![no]),
                ] {
                    let t = file.require(&name)?;
                    if t.to_f32().is_none() {
                        return Err(file.dtype_err(&name, t, "F32 or F64"));
                    }
                    if t.shape != want || width == 0 {
                        return Err(file.shape_err(
                            &name,
                            &t.shape,
                            format!("{want:?} (H = {h}, width {width} between the layers)"),
                        ));
                    }
                }
            }
            if has_skip {
                let name = format!("skip_l{l}{r}.weight");
                let t = file.require(&name)?;
                if t.to_f32().is_none() {
                    return Err(file.dtype_err(&name, t, "F32 or F64"));
                }
                if t.shape != [h, h] {
                    return Err(file.shape_err(&name, &t.shape, format!("[{h}, {h}]")));
                }
            }
        }
    }
    // Tensors of layers or directions the model does not have.
    if let Some(name) = file.names().find(|n| {
        transition_layer_of(n)
            .map(|(l, d, _)| (l, d))
            .or_else(|| skip_layer_of(n))
            .is_some_and(|(l, d)| l >= layers || d >= nd)
    }) {
        return Err(file.invalid(
            name,
            format!("belongs to a layer or direction the model ({layers} layers) does not have"),
        ));
    }
    let nonlinearity = meta_nonlinearity(file, k.nonlinearity)?;
    Ok((Mlp::new(depth, width, nonlinearity), has_skip))
}

/// The whole number under `key` in the file's metadata, if there is one.
fn meta_number(file: &TensorFile, key: &str) -> Result<Option<usize>> {
    file.metadata()
        .get(key)
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| file.invalid(key, format!("{v:?} is not a whole number")))
        })
        .transpose()
}

/// The nonlinearity under `key` in the file's metadata; tanh when missing.
fn meta_nonlinearity(file: &TensorFile, key: &str) -> Result<Nonlinearity> {
    match file.metadata().get(key) {
        Some(v) => v.parse::<Nonlinearity>().map_err(|_| {
            file.invalid(
                key,
                format!("{v:?} is not \"tanh\", \"relu\" or \"identity\""),
            )
        }),
        None => Ok(Nonlinearity::Tanh),
    }
}
