//! Against PyTorch: fixtures written by `tests/fixtures/make_fixtures.py` (float64 reference),
//! run through the same code path as `rnn-wgpu run`, and model files round-tripped bit for bit.

use std::path::PathBuf;

use rnn_wgpu::io::{self, TensorFile};
use rnn_wgpu::{LossKind, Reduction};

use crate::common::{assert_close, gpu};

/// The cases the fixture script writes (its `CASES`, `STACKED_CASES`, `MASKED_CASES` and
/// `DEEP_CASES`).
const CASES: &[&str] = &[
    "tanh_mse_mean_h0",
    "relu_mse_sum_t1_b1",
    "tanh_ce_mean_h0",
    "relu_ce_sum_i32",
    "tanh_forward_only",
    "tanh_nobias_mse",
    "tanh_ce_long_h65",
    "stacked2_tanh_mse_h0",
    "stacked3_relu_ce_sum",
    "stacked2_raw_nobias_ce",
    "bi1_tanh_mse_h0",
    "bi2_tanh_ce_raw",
    "bi2_relu_mse",
    "bi2_tanh_mse_batch_first",
    "stacked2_relu_ce_batch_first",
    // Its `MASKED_CASES`: the loss counted where the input's `mask` says.
    "masked_tanh_mse_last_step",
    "masked_bi2_relu_ce_sum_batch_first",
    "masked_stacked2_ce_mean",
    // Its `DEEP_CASES`: deeper blocks, through `python/deep_rnn.py`.
    "deep_output1_tanh_mse",
    "deep_output2_relu_ce_stacked",
    "deep_output3_bi_mse",
    "deep_input2_output1_bi_ce",
    "deep_input1_mse",
    "deep_transition1_tanh_mse",
    "deep_transition2_skip_stacked_ce",
    "deep_transition3_skip_bi_all_blocks",
    "deep_residual_input3_output2_bi_ce",
];

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> TensorFile {
    TensorFile::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

#[test]
fn pytorch_models_give_pytorch_outputs_loss_and_gradients() {
    let gpu = gpu();
    for case in CASES {
        let model = read(&format!("{case}.model.safetensors"));
        let input = read(&format!("{case}.input.safetensors"));
        let expected = read(&format!("{case}.expected.safetensors"));
        let meta = expected.metadata();
        let loss = match meta.get("loss").map(String::as_str) {
            Some("mse") => Some(LossKind::Mse),
            Some("cross_entropy") => Some(LossKind::CrossEntropy),
            _ => None,
        };
        let reduction = match meta.get("reduction").map(String::as_str) {
            Some("sum") => Reduction::Sum,
            _ => Reduction::Mean,
        };
        let mut m = io::model_file::from_file(&gpu, &model).unwrap();
        // `run --batch-first`: x, y, o and grad.x with B before T.
        m.rnn
            .set_batch_first(meta.get("batch_first").is_some_and(|v| v == "true"));
        if m.rnn.config().layers > 1 {
            // `run` is the model itself, as PyTorch's eval(): dropout must not apply.
            m.rnn.set_dropout(0.5).unwrap();
        }
        let out = io::run::run(&mut m.rnn, &input, loss, reduction).unwrap();
        let got: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = expected.names().collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, want, "{case}: tensors written");
        for (name, t) in &out {
            let w = expected.get(name).unwrap();
            assert_eq!(t.shape, w.shape, "{case}: shape of {name}");
            let g = t.to_f32().unwrap();
            assert_close(&format!("{case}: {name}"), &g, &w.to_f64().unwrap(), 1e-4);
        }
    }
}

#[test]
fn model_files_round_trip_bit_for_bit() {
    let gpu = gpu();
    let scratch = crate::common::Scratch::new();
    let dir = scratch.dir();
    for case in [
        "tanh_mse_mean_h0",
        "relu_ce_sum_i32",
        "tanh_nobias_mse",
        "stacked3_relu_ce_sum",
        "stacked2_raw_nobias_ce",
        "bi1_tanh_mse_h0",
        "bi2_tanh_ce_raw",
        "bi2_relu_mse",
    ] {
        let original = read(&format!("{case}.model.safetensors"));
        let m = io::model_file::from_file(&gpu, &original).unwrap();
        let path = dir.join(format!("{case}.safetensors"));
        io::save(&m.rnn, &path, &Default::default()).unwrap();
        let saved = TensorFile::read(&path).unwrap();
        assert_eq!(
            saved.names().collect::<Vec<_>>(),
            original.names().collect::<Vec<_>>(),
            "{case}: names"
        );
        for name in original.names() {
            assert_eq!(saved.get(name), original.get(name), "{case}: {name} bits");
        }
        // Saved with the configuration, also where the original was a bare state_dict.
        let c = m.rnn.config();
        let meta = saved.metadata();
        assert_eq!(
            meta.get("nonlinearity").map(String::as_str),
            Some(c.nonlinearity.name())
        );
        assert_eq!(
            meta.get("num_layers"),
            Some(&c.layers.to_string()),
            "{case}"
        );
        if let Some(n) = original.metadata().get("nonlinearity") {
            assert_eq!(meta.get("nonlinearity"), Some(n), "{case}");
        }
        // And back in: the same configuration.
        let again = io::load(&gpu, &path).unwrap();
        assert_eq!(again.rnn.config(), m.rnn.config(), "{case}: config");
    }
}
