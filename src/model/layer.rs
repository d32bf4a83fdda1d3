//! A recurrent layer as a unit the workspace composes: its cell, its parameters (PyTorch's
//! names and shapes) and the epilogues its per-step recurrence runs. Stacking and both
//! directions are lists of these; a gated cell (GRU, LSTM) is another [`CellKind`] whose
//! products are `gates()` hidden-sized blocks wide, with its own epilogues.

use super::RnnConfig;
use crate::ops::recurrence::Cell;

/// The kind of cell a recurrent layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// `h(t) = act(b + W h(t-1) + U x(t))` (`nn.RNN`).
    Elman,
}

/// PyTorch's names for one layer's parameters.
#[derive(Debug, Clone)]
pub(crate) struct LayerNames {
    pub w_ih: String,
    pub w_hh: String,
    pub b_ih: String,
    pub b_hh: String,
}

impl LayerNames {
    /// Layer `k`'s names in direction `d` (1: the reverse one, `_reverse`).
    pub fn new(k: usize, d: usize) -> Self {
        let r = if d == 1 { "_reverse" } else { "" };
        Self {
            w_ih: format!("rnn.weight_ih_l{k}{r}"),
            w_hh: format!("rnn.weight_hh_l{k}{r}"),
            b_ih: format!("rnn.bias_ih_l{k}{r}"),
            b_hh: format!("rnn.bias_hh_l{k}{r}"),
        }
    }
}

/// One layer in one direction: where it sits, its sizes and its cell.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// Its layer index k (from the bottom) and direction d (1: reverse).
    pub k: usize,
    pub d: usize,
    /// Its input width (I, or the deep input's width, for layer 0; D·H above) and hidden
    /// size.
    pub input: usize,
    pub hidden: usize,
    pub bias: bool,
    pub cell: CellKind,
    pub names: LayerNames,
}

impl Layer {
    /// Every layer of `config`, in PyTorch's order (k·D + d).
    pub fn all(config: &RnnConfig) -> Vec<Layer> {
        (0..config.layers)
            .flat_map(|k| (0..config.directions()).map(move |d| (k, d)))
            .map(|(k, d)| Layer {
                k,
                d,
                input: config.layer_input(k),
                hidden: config.hidden,
                bias: config.bias,
                cell: CellKind::Elman,
                names: LayerNames::new(k, d),
            })
            .collect()
    }

    /// Hidden-sized blocks in its input and recurrent products (one pre-activation for an
    /// Elman cell; a GRU would have 3, an LSTM 4).
    pub fn gates(&self) -> usize {
        match self.cell {
            CellKind::Elman => 1,
        }
    }

    /// Its parameters in PyTorch's `state_dict` order: names and shapes.
    pub fn params(&self) -> Vec<(String, Vec<usize>)> {
        let g = self.gates() * self.hidden;
        let n = &self.names;
        let mut p = vec![
            (n.w_ih.clone(), vec![g, self.input]),
            (n.w_hh.clone(), vec![g, self.hidden]),
        ];
        if self.bias {
            p.push((n.b_ih.clone(), vec![g]));
            p.push((n.b_hh.clone(), vec![g]));
        }
        p
    }

    /// The epilogues its recurrence kernels run.
    pub fn kernel_cell(&self) -> Cell {
        match self.cell {
            CellKind::Elman => Cell::Elman,
        }
    }
}
