//! [`RnnConfig`]: the sizes and options of one Elman layer with a linear head.

use super::init::Init;
use crate::error::{InputError, Result};

/// The hidden nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Nonlinearity {
    /// `tanh`, PyTorch's default.
    #[default]
    Tanh,
    /// `relu`.
    Relu,
    /// No nonlinearity, `h(t) = W h(t-1) + U x(t) + b`: the linear recurrence of the Deep
    /// Learning Book's section on long-term dependencies. PyTorch's `nn.RNN` has no such
    /// option, so files with it are rnn-wgpu's alone.
    Identity,
}

impl Nonlinearity {
    /// The kernels' code for it: 0 tanh, 1 relu, 2 identity.
    pub(crate) fn code(self) -> u32 {
        match self {
            Nonlinearity::Tanh => 0,
            Nonlinearity::Relu => 1,
            Nonlinearity::Identity => 2,
        }
    }

    /// PyTorch's name: `"tanh"` or `"relu"`.
    pub fn name(self) -> &'static str {
        match self {
            Nonlinearity::Tanh => "tanh",
            Nonlinearity::Relu => "relu",
            Nonlinearity::Identity => "identity",
        }
    }
}

impl std::str::FromStr for Nonlinearity {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        match s {
            "tanh" => Ok(Self::Tanh),
            "relu" => Ok(Self::Relu),
            "identity" => Ok(Self::Identity),
            _ => Err(InputError::Invalid {
                arg: "nonlinearity".into(),
                reason: format!("{s:?} is not \"tanh\", \"relu\" or \"identity\""),
            }),
        }
    }
}

/// A deeper block (Pascanu, Gulcehre, Cho & Bengio 2014, "How to Construct Deep Recurrent
/// Neural Networks"): `depth` hidden layers of `width` units, each a linear map and
/// `nonlinearity`, in place of a single linear map. Depth 0 is no block: the plain model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mlp {
    /// Hidden layers; 0 for none.
    pub depth: usize,
    /// Units in each hidden layer.
    pub width: usize,
    /// The nonlinearity after each hidden layer.
    pub nonlinearity: Nonlinearity,
    /// Residual connections (deep input and output blocks): every layer after the first adds
    /// its input to its output, `z_j = z_{j-1} + φ(T_j z_{j-1} + c_j)`, so the shortest path
    /// through the block is its first layer whatever its depth.
    pub residual: bool,
}

impl Mlp {
    /// No block.
    pub const NONE: Mlp = Mlp {
        depth: 0,
        width: 0,
        nonlinearity: Nonlinearity::Tanh,
        residual: false,
    };

    /// `depth` hidden layers of `width` units with `nonlinearity`.
    pub fn new(depth: usize, width: usize, nonlinearity: Nonlinearity) -> Self {
        Self {
            depth,
            width,
            nonlinearity,
            residual: false,
        }
    }

    /// The same with residual connections around every layer after the first, or without.
    pub fn with_residual(self, residual: bool) -> Self {
        Self { residual, ..self }
    }

    /// Whether there is a block at all.
    pub fn is_some(&self) -> bool {
        self.depth > 0
    }

    /// Rejects a block with layers but no width, or deeper than [`MAX_BLOCK_DEPTH`].
    fn validate(&self, arg: &str) -> Result<()> {
        let bad = |reason: String| -> Result<()> {
            Err(InputError::Invalid {
                arg: format!("RnnConfig::{arg}"),
                reason,
            }
            .into())
        };
        if self.depth > MAX_BLOCK_DEPTH {
            return bad(format!(
                "depth {} is more than {MAX_BLOCK_DEPTH} layers",
                self.depth
            ));
        }
        if self.depth > 0 && self.width == 0 {
            return bad(format!("depth {} needs a width of at least 1", self.depth));
        }
        if self.residual && self.depth < 2 {
            return bad(format!(
                "residual connections go around the layers after the first: depth {} has none; \
                 give a depth of 2 or more",
                self.depth
            ));
        }
        if self.width > 1 << 24 {
            return bad(format!(
                "width {} is more than {} allows",
                self.width,
                1 << 24
            ));
        }
        Ok(())
    }
}

/// The deepest block a model takes.
pub const MAX_BLOCK_DEPTH: usize = 8;

/// Sizes and options of an Elman RNN (`torch.nn.RNN`) with a linear head (`torch.nn.Linear`)
/// applied at every step of its top layer.
///
/// Made with [`RnnConfig::new`] and changed field by field or with the `with_` methods (new
/// options come as new fields, so it cannot be written as a literal outside the crate).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RnnConfig {
    /// Input features `I`.
    pub input: usize,
    /// Hidden units `H`.
    pub hidden: usize,
    /// Outputs `O` (classes, for cross-entropy).
    pub output: usize,
    /// The hidden nonlinearity.
    pub nonlinearity: Nonlinearity,
    /// Whether the recurrent layer has its biases `b_ih`, `b_hh` (`torch.nn.RNN(bias=...)`);
    /// the head always has one.
    pub bias: bool,
    /// Stacked recurrent layers `L` (`num_layers`): layer k + 1 reads layer k's outputs.
    pub layers: usize,
    /// Each layer runs in both directions (`bidirectional`, D = 2), its output the two
    /// directions' states side by side, `[T, B, 2H]`.
    pub bidirectional: bool,
    /// Inputs, targets and outputs put the batch first (`[B, T, ...]`, PyTorch's
    /// `batch_first`); `h0` and `h_n` stay `[L·D, B, H]`.
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training only
    /// (`torch.nn.RNN(dropout=p)`), in `[0, 1)`.
    pub dropout: f32,
    /// How every layer's `W` starts ([`Rnn::init_layer`](crate::Rnn::init_layer) sets one
    /// layer's); PyTorch's draw by default.
    pub init: Init,
    /// A deep output (DO-RNN): an MLP from the top layer's output to the head, over all
    /// rows at once; [`Mlp::NONE`] by default. Its layers are `out_mlp.{j}.weight` and
    /// `out_mlp.{j}.bias` in the file.
    pub deep_output: Mlp,
    /// A deep input: an MLP from `x(t)` into the bottom layer, over all rows at once;
    /// [`Mlp::NONE`] by default. Its layers are `in_mlp.{j}.weight` and `in_mlp.{j}.bias`.
    pub deep_input: Mlp,
    /// A deep transition (DT-RNN): `depth` more layers inside every step, from `act(a(t))`
    /// (H wide) through `width`-wide layers to `h(t)` (H wide), each a linear map and the
    /// block's nonlinearity; [`Mlp::NONE`] by default. Its layers are `trans_l{k}.{j}.weight`
    /// and `trans_l{k}.{j}.bias` for every layer k (and `_reverse` direction).
    pub deep_transition: Mlp,
    /// With a deep transition, a shortcut `skip_l{k}.weight` `[H, H]` from h(t-1) into its
    /// last layer (DT(S)-RNN), so the shortest path from h(t-1) to h(t) stays one layer.
    pub skip: bool,
}

impl RnnConfig {
    /// A tanh RNN with biases.
    pub fn new(input: usize, hidden: usize, output: usize) -> Self {
        Self {
            input,
            hidden,
            output,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            layers: 1,
            bidirectional: false,
            batch_first: false,
            dropout: 0.0,
            init: Init::Pytorch,
            deep_output: Mlp::NONE,
            deep_input: Mlp::NONE,
            deep_transition: Mlp::NONE,
            skip: false,
        }
    }

    /// The same with a deep transition block, and its shortcut when `skip`.
    pub fn with_deep_transition(self, deep_transition: Mlp, skip: bool) -> Self {
        Self {
            deep_transition,
            skip,
            ..self
        }
    }

    /// The same with a deep input block.
    pub fn with_deep_input(self, deep_input: Mlp) -> Self {
        Self { deep_input, ..self }
    }

    /// The same with a deep output block.
    pub fn with_deep_output(self, deep_output: Mlp) -> Self {
        Self {
            deep_output,
            ..self
        }
    }

    /// The width the head (`fc`) reads: the deep output's, else the top layer's `D·H`.
    pub fn head_input(&self) -> usize {
        if self.deep_output.is_some() {
            self.deep_output.width
        } else {
            self.out_width()
        }
    }

    /// The same with every layer's `W` started as `init`.
    pub fn with_init(self, init: Init) -> Self {
        Self { init, ..self }
    }

    /// The same with dropout `p` between layers.
    pub fn with_dropout(self, dropout: f32) -> Self {
        Self { dropout, ..self }
    }

    /// The same, with batch-first inputs, targets and outputs when `batch_first`.
    pub fn with_batch_first(self, batch_first: bool) -> Self {
        Self {
            batch_first,
            ..self
        }
    }

    /// The same, running both directions when `bidirectional`.
    pub fn with_bidirectional(self, bidirectional: bool) -> Self {
        Self {
            bidirectional,
            ..self
        }
    }

    /// Directions `D`: 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// The leading dimensions of inputs, targets and outputs as the caller lays them out,
    /// `[T, B]` or, batch-first, `[B, T]`, and their names. The swap is its own inverse:
    /// given the caller's `[first, second]` it gives back `[T, B]`.
    pub(crate) fn leading(&self, [a, b]: [usize; 2]) -> ([usize; 2], &'static str) {
        if self.batch_first {
            ([b, a], "B, T")
        } else {
            ([a, b], "T, B")
        }
    }

    /// Hidden states carried between calls, `L·D`: the first dimension of `h0` and `h_n`.
    pub fn states(&self) -> usize {
        self.layers * self.directions()
    }

    /// The width of every layer's output, what the next layer reads (and the head, without a
    /// deep output): `D·H`.
    pub fn out_width(&self) -> usize {
        self.directions() * self.hidden
    }

    /// The same with `layers` stacked layers.
    pub fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// The same with `nonlinearity`.
    pub fn with_nonlinearity(self, nonlinearity: Nonlinearity) -> Self {
        Self {
            nonlinearity,
            ..self
        }
    }

    /// The same with or without the recurrent biases.
    pub fn with_bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }

    /// The width of layer `k`'s input: `I` (or the deep input's width) for the first layer,
    /// `D·H` above it.
    pub fn layer_input(&self, k: usize) -> usize {
        if k > 0 {
            self.out_width()
        } else if self.deep_input.is_some() {
            self.deep_input.width
        } else {
            self.input
        }
    }

    /// Rejects zero sizes.
    pub fn validate(&self) -> Result<()> {
        for (arg, v) in [
            ("input", self.input),
            ("hidden", self.hidden),
            ("output", self.output),
            ("layers", self.layers),
        ] {
            if v == 0 {
                return Err(InputError::Invalid {
                    arg: format!("RnnConfig::{arg}"),
                    reason: "must be at least 1".into(),
                }
                .into());
            }
            // Far past any adapter's buffers, and small enough that every product of two
            // sizes fits a usize: an error here, not a wrapped-round size later.
            if v > 1 << 24 {
                return Err(InputError::Invalid {
                    arg: format!("RnnConfig::{arg}"),
                    reason: format!("{v} is more than {} allows", 1 << 24),
                }
                .into());
            }
        }
        self.init.validate()?;
        self.deep_output.validate("deep_output")?;
        self.deep_input.validate("deep_input")?;
        self.deep_transition.validate("deep_transition")?;
        if self.deep_transition.residual {
            return Err(InputError::Invalid {
                arg: "RnnConfig::deep_transition".into(),
                reason: "residual connections go around the deep input and output blocks; the \
                         deep transition's path around its layers is the shortcut (skip)"
                    .into(),
            }
            .into());
        }
        if self.skip && !self.deep_transition.is_some() {
            return Err(InputError::Invalid {
                arg: "RnnConfig::skip".into(),
                reason: "a shortcut runs beside a deep transition: give deep_transition a \
                         depth of 1 or more"
                    .into(),
            }
            .into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(InputError::Invalid {
                arg: "RnnConfig::dropout".into(),
                reason: format!("{} is outside [0, 1)", self.dropout),
            }
            .into());
        }
        Ok(())
    }
}
