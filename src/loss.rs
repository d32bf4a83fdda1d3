//! Losses over all time steps, with PyTorch's reductions.

use crate::tensor::{ClassIds, Tensor};

/// Which loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Mean squared error against f32 targets `[T, B, O]` (`torch.nn.functional.mse_loss`).
    Mse,
    /// Softmax cross-entropy against class ids `[T, B]` (`torch.nn.functional.cross_entropy`
    /// on outputs reshaped to `[T*B, O]`).
    CrossEntropy,
}

/// How per-element losses are combined, as PyTorch's `reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// Average over every element (mse) or every row (cross-entropy); PyTorch's default.
    #[default]
    Mean,
    /// Plain sum: the seed's "loss summed over time steps".
    Sum,
}

/// A loss and its reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loss {
    /// Which loss.
    pub kind: LossKind,
    /// How it is reduced.
    pub reduction: Reduction,
}

impl Loss {
    /// Mean squared error, `mean` reduction.
    pub fn mse() -> Self {
        Self {
            kind: LossKind::Mse,
            reduction: Reduction::Mean,
        }
    }

    /// Cross-entropy, `mean` reduction.
    pub fn cross_entropy() -> Self {
        Self {
            kind: LossKind::CrossEntropy,
            reduction: Reduction::Mean,
        }
    }

    /// The same loss with another reduction.
    pub fn with_reduction(self, reduction: Reduction) -> Self {
        Self { reduction, ..self }
    }

    /// The name used on the command line and in errors.
    pub fn name(&self) -> &'static str {
        match self.kind {
            LossKind::Mse => "mse",
            LossKind::CrossEntropy => "cross_entropy",
        }
    }
}

/// What the outputs are compared with.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// f32 targets `[T, B, O]`, for mse.
    Values(&'a Tensor),
    /// Class ids `[T, B]`, for cross-entropy.
    Classes(&'a ClassIds),
    /// `Values` counted only at chosen steps: see [`Target::with_mask`].
    MaskedValues(&'a Tensor, &'a Tensor),
    /// `Classes` counted only at chosen steps: see [`Target::with_mask`].
    MaskedClasses(&'a ClassIds, &'a Tensor),
}

impl<'a> Target<'a> {
    /// The same target counted only where `mask` (`[T, B]`, or `[B, T]` for a batch-first
    /// model; 1 where a step's loss counts, 0 where not) says: the loss and its gradient are
    /// zero at the other steps, and `mean` divides by what is counted, as PyTorch's mean over
    /// a selection (`loss(o[mask], y[mask])`) does. A mask that counts nothing gives a loss of
    /// 0 (PyTorch's would be NaN). The mask's values weigh each step's loss, so values other
    /// than 0 and 1 weigh it that much.
    pub fn with_mask(self, mask: &'a Tensor) -> Self {
        match self {
            Target::Values(y) | Target::MaskedValues(y, _) => Target::MaskedValues(y, mask),
            Target::Classes(y) | Target::MaskedClasses(y, _) => Target::MaskedClasses(y, mask),
        }
    }

    /// The mask, where there is one.
    pub fn mask(&self) -> Option<&'a Tensor> {
        match *self {
            Target::MaskedValues(_, m) | Target::MaskedClasses(_, m) => Some(m),
            _ => None,
        }
    }

    /// The same target without its mask.
    pub fn unmasked(self) -> Self {
        match self {
            Target::MaskedValues(y, _) => Target::Values(y),
            Target::MaskedClasses(y, _) => Target::Classes(y),
            other => other,
        }
    }
}
