//! Model files: `.safetensors` with PyTorch's tensor names and the configuration in
//! `__metadata__`, so `torch.nn.RNN` + `torch.nn.Linear` state dicts load here and back.

use std::collections::HashMap;
use std::path::Path;

use super::tensors::{self, HostTensor, TensorFile};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::params::{B_HH, B_IH, FC_B, FC_W, W_HH, W_IH};
use crate::model::{Nonlinearity, Rnn, RnnConfig};

/// Metadata keys this crate writes and reads.
pub mod keys {
    /// `"tanh"` or `"relu"`; missing means tanh, as in PyTorch.
    pub const NONLINEARITY: &str = "nonlinearity";
    /// Number of stacked recurrent layers; this version runs one.
    pub const NUM_LAYERS: &str = "num_layers";
    /// `I`; checked against the weights when present.
    pub const INPUT_SIZE: &str = "input_size";
    /// `H`; checked against the weights when present.
    pub const HIDDEN_SIZE: &str = "hidden_size";
    /// `O`; checked against the weights when present.
    pub const OUTPUT_SIZE: &str = "output_size";
    /// `"true"` or `"false"`: whether the recurrent layer has biases.
    pub const BIAS: &str = "bias";
    /// The characters of a character-level model, in class-id order, as one string.
    pub const VOCAB: &str = "vocab";
}

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

/// Saves `rnn` to `path` with its configuration and `extra` metadata, atomically.
pub fn save(rnn: &Rnn, path: impl AsRef<Path>, extra: &HashMap<String, String>) -> Result<()> {
    let c = rnn.config();
    let mut meta = extra.clone();
    for (k, v) in [
        (keys::NONLINEARITY, c.nonlinearity.name().to_string()),
        (keys::NUM_LAYERS, "1".to_string()),
        (keys::INPUT_SIZE, c.input.to_string()),
        (keys::HIDDEN_SIZE, c.hidden.to_string()),
        (keys::OUTPUT_SIZE, c.output.to_string()),
        (keys::BIAS, c.bias.to_string()),
        ("format", "rnn-wgpu".to_string()),
    ] {
        meta.insert(k.to_string(), v);
    }
    let tensors: Vec<(String, HostTensor)> = rnn
        .parameters()?
        .into_iter()
        .map(|p| (p.name, HostTensor::f32(&p.shape, p.values)))
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
    // Stacked layers are the next step of this crate; until then say so plainly.
    let layers = match meta.get(keys::NUM_LAYERS) {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| file.invalid(keys::NUM_LAYERS, format!("{v:?} is not a whole number")))?,
        None => 1,
    };
    if layers != 1 || file.names().any(|n| n.ends_with("_l1")) {
        return Err(file.invalid(
            keys::NUM_LAYERS,
            format!(
                "the file holds a stacked RNN ({} layers); this version runs one layer",
                layers.max(2)
            ),
        ));
    }
    for name in file.names() {
        if ![W_IH, W_HH, B_IH, B_HH, FC_W, FC_B].contains(&name) {
            return Err(file.invalid(
                name,
                format!(
                    "unexpected tensor; a model file holds {W_IH}, {W_HH}, {B_IH}, {B_HH}, \
                     {FC_W}, {FC_B}"
                ),
            ));
        }
    }
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
    let w_ih = dims(W_IH, 2)?;
    let (h, i) = (w_ih[0], w_ih[1]);
    let w_hh = dims(W_HH, 2)?;
    if w_hh != [h, h] {
        return Err(file.shape_err(W_HH, &w_hh, format!("[{h}, {h}] (H from {W_IH})")));
    }
    let fc_w = dims(FC_W, 2)?;
    if fc_w[1] != h {
        return Err(file.shape_err(FC_W, &fc_w, format!("[O, {h}] (H from {W_IH})")));
    }
    let o = fc_w[0];
    let mut has_bias = false;
    for (name, n) in [(B_IH, h), (B_HH, h), (FC_B, o)] {
        if file.get(name).is_some() {
            let got = dims(name, 1)?;
            if got != [n] {
                return Err(file.shape_err(name, &got, format!("[{n}]")));
            }
            has_bias |= name != FC_B;
        }
    }
    let nonlinearity = match meta.get(keys::NONLINEARITY) {
        Some(v) => v
            .parse::<Nonlinearity>()
            .map_err(|e| file.invalid(keys::NONLINEARITY, e.to_string()))?,
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
    Ok(RnnConfig {
        input: i,
        hidden: h,
        output: o,
        nonlinearity,
        bias,
    })
}
