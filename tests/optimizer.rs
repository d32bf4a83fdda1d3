//! Training steps (loss, backward, clipping, update in one submit) against the reference.

use rnn_wgpu::reference::{self, Params, Targets};
use rnn_wgpu::{Loss, Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Target, Tensor};

use rnn_wgpu::io::TensorFile;

use crate::common::{assert_close, gpu, random, to_f32};
use crate::pytorch::fixture;

/// Runs `steps` training steps on the GPU and the same updates on the host in f64.
fn compare(config: OptimizerConfig, steps: usize) {
    compare_with_lr(config, steps, |_| None);
}

/// [`compare`], setting the learning rate before step k where `lr_at(k)` gives one; with the
/// adapter's texture mirrors (the optimizer reads the parameters, the gradient and its states
/// from them where they serve) and without.
fn compare_with_lr(config: OptimizerConfig, steps: usize, lr_at: impl Fn(usize) -> Option<f32>) {
    for textures in [true, false] {
        compare_on(&gpu().with_state_textures(textures), config, steps, &lr_at);
    }
}

fn compare_on(
    g: &rnn_wgpu::Gpu,
    config: OptimizerConfig,
    steps: usize,
    lr_at: &impl Fn(usize) -> Option<f32>,
) {
    let rc = RnnConfig::new(3, 65, 2);
    let mut p = Params::random(rc, 0.2, 21);
    let (t, b) = (4, 3);
    let x = random(t * b * 3, 1.0, 22);
    let y = random(t * b * 2, 1.0, 23);
    let targets = Targets::Values(y.clone());
    let loss = Loss::mse();

    let mut rnn = Rnn::new(g, rc, 0).unwrap();
    for (name, v) in p.named() {
        rnn.set_parameter(&name, &to_f32(v)).unwrap();
    }
    let mut opt = Optimizer::new(&rnn, config).unwrap();
    let xt = Tensor::from_slice(g, &[t, b, 3], &to_f32(&x)).unwrap();
    let yt = Tensor::from_slice(g, &[t, b, 2], &to_f32(&y)).unwrap();

    let mut host = reference::Optimizer::new(config);
    for step in 1..=steps {
        if let Some(lr) = lr_at(step) {
            opt.set_lr(lr).unwrap();
            host.set_lr(lr);
        }
        rnn.train_step(&xt, None, Target::Values(&yt), loss, &mut opt)
            .unwrap();
        let (want_loss, _, grads) = reference::loss_and_grads(&p, &x, None, t, b, &targets, loss);
        assert_close("loss", &[rnn.last_loss().unwrap()], &[want_loss], 1e-4);
        let norm = host.step(&mut p, &grads.params);
        assert_close("grad norm", &[opt.last_grad_norm().unwrap()], &[norm], 1e-4);
        let got = rnn.parameters().unwrap();
        for (hp, (_, want)) in got.iter().zip(p.named()) {
            assert_close(
                &format!("{} after step {step}", hp.name),
                &hp.values,
                want,
                1e-4,
            );
        }
    }
}

#[test]
fn sgd_with_momentum_matches_reference() {
    compare(OptimizerKind::sgd(0.1, 0.9).into(), 3);
}

#[test]
fn adam_with_clipping_and_weight_decay_matches_reference() {
    compare(
        OptimizerConfig {
            kind: OptimizerKind::adam(0.01),
            clip: Some(0.05),
            clip_value: None,
            weight_decay: 0.01,
        },
        3,
    );
}

#[test]
fn adamw_decays_the_weights_apart_from_the_gradient_and_leaves_the_biases() {
    // Decoupled weight decay, large enough to show: the biases left out by default, then in.
    for decay_biases in [false, true] {
        let kind = OptimizerKind::AdamW {
            lr: 0.02,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.5,
            decay_biases,
        };
        compare(
            OptimizerConfig {
                clip: Some(0.5),
                ..kind.into()
            },
            4,
        );
    }
    // AdamW's decay and an L2 term at once are one clear error.
    let rnn = Rnn::new(&gpu(), RnnConfig::new(2, 3, 1), 0).unwrap();
    let both = OptimizerConfig {
        weight_decay: 0.01,
        ..OptimizerKind::adamw(0.01, 0.01).into()
    };
    let e = Optimizer::new(&rnn, both).unwrap_err().to_string();
    assert!(e.contains("weight_decay"), "{e}");
}

#[test]
fn clipping_by_value_then_norm_matches_reference() {
    // Every gradient value clamped to ±0.02 (clip_grad_value_), with and without the norm
    // clipped after it.
    for clip in [None, Some(0.05)] {
        compare(
            OptimizerConfig {
                kind: OptimizerKind::sgd(0.5, 0.0),
                clip,
                clip_value: Some(0.02),
                weight_decay: 0.0,
            },
            2,
        );
    }
}

#[test]
fn changing_the_learning_rate_keeps_the_optimizers_state() {
    // As a PyTorch scheduler does: Adam's moments and step count, SGD's momentum buffer,
    // carry on at the new rate (the reference keeps them too; starting afresh would differ).
    for kind in [OptimizerKind::adam(0.02), OptimizerKind::sgd(0.2, 0.9)] {
        compare_with_lr(kind.into(), 5, |k| match k {
            3 => Some(0.004),
            5 => Some(0.05),
            _ => None,
        });
    }
    let g = gpu();
    let rnn = Rnn::new(&g, RnnConfig::new(1, 2, 1), 0).unwrap();
    let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(0.1)).unwrap();
    assert!(opt.set_lr(-1.0).is_err() && opt.set_lr(f32::NAN).is_err());
    assert!(
        opt.set_lr(0.0).is_ok(),
        "a rate of zero makes no update, as in PyTorch"
    );
    assert_eq!(opt.initial_lr(), 0.1);
}

#[test]
fn learning_rate_schedules_warm_up_and_decay() {
    use rnn_wgpu::LrSchedule;
    let cos = LrSchedule::Cosine {
        warmup: 4,
        total: 104,
    };
    assert_eq!([1, 2, 4, 5].map(|s| cos.factor(s)), [0.25, 0.5, 1.0, 1.0]);
    assert!(
        (cos.factor(55) - 0.5).abs() < 1e-6,
        "half way: {}",
        cos.factor(55)
    );
    // Still above zero at the last step, zero after it.
    assert!(cos.factor(104) > 0.0 && cos.factor(104) < 1e-3);
    assert!(cos.factor(105).abs() < 1e-6 && cos.factor(200).abs() < 1e-6);
    let step = LrSchedule::Step {
        warmup: 0,
        every: 10,
        gamma: 0.5,
    };
    assert_eq!(
        [1, 9, 10, 25].map(|s| step.factor(s)),
        [1.0, 1.0, 0.5, 0.25]
    );
    assert_eq!(LrSchedule::Constant.factor(1000), 1.0);
}

#[test]
fn sgd_with_clipping_matches_reference() {
    compare(
        OptimizerConfig {
            kind: OptimizerKind::sgd(0.5, 0.0),
            clip: Some(0.1),
            clip_value: None,
            weight_decay: 0.0,
        },
        2,
    );
}

/// The optimizer cases `tests/fixtures/make_fixtures.py` writes (its `OPTIM_CASES`).
const PYTORCH_CASES: &[&str] = &[
    "sgd_momentum_wd",
    "adam_clip_wd",
    "sgd_clip",
    "adam_clip_value",
    "adamw_clip",
];

#[test]
fn pytorch_optimizers_give_pytorchs_parameters() {
    // torch.optim.SGD (momentum, weight decay) and Adam (past its first steps, with clipping
    // and weight decay) trained in float64 by PyTorch from the same float32 start: the
    // parameters after every step.
    let g = gpu();
    for case in PYTORCH_CASES {
        let f = TensorFile::read(fixture(&format!("optim_{case}.safetensors")))
            .unwrap_or_else(|e| panic!("fixture {case}: {e}"));
        let meta = f.metadata();
        let num = |k: &str| -> f32 {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{case}: metadata {k}"))
        };
        let (lr, momentum, wd, clip) =
            (num("lr"), num("momentum"), num("weight_decay"), num("clip"));
        // AdamW's decay is its own (decoupled, the biases left out, as the fixture's groups);
        // the others' is PyTorch's L2 weight_decay.
        let (kind, l2) = match meta.get("optimizer").map(String::as_str) {
            Some("sgd") => (OptimizerKind::sgd(lr, momentum), wd),
            Some("adam") => (OptimizerKind::adam(lr), wd),
            Some("adamw") => (OptimizerKind::adamw(lr, wd), 0.0),
            other => panic!("{case}: optimizer {other:?}"),
        };
        let config = OptimizerConfig {
            kind,
            clip: (clip > 0.0).then_some(clip),
            // clip_grad_value_ before clip_grad_norm_, where the case says.
            clip_value: meta.get("clip_value").and_then(|v| v.parse().ok()),
            weight_decay: l2,
        };
        let tensor = |name: &str| {
            let t = f.get(name).unwrap_or_else(|| panic!("{case}: no {name}"));
            (t.shape.clone(), t.to_f32().expect("f32"))
        };
        let (xs, x) = tensor("x");
        let (ys, y) = tensor("y");
        let mut rnn = Rnn::new(&g, RnnConfig::new(xs[2], 9, ys[2]), 0).unwrap();
        let names: Vec<String> = rnn
            .layout()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        for name in &names {
            rnn.set_parameter(name, &tensor(name).1).unwrap();
        }
        let mut opt = Optimizer::new(&rnn, config).unwrap();
        let xt = Tensor::from_slice(&g, &xs, &x).unwrap();
        let yt = Tensor::from_slice(&g, &ys, &y).unwrap();
        let steps: usize = meta["steps"].parse().unwrap();
        for step in 1..=steps {
            rnn.train_step(&xt, None, Target::Values(&yt), Loss::mse(), &mut opt)
                .unwrap();
            for hp in rnn.parameters().unwrap() {
                let want = f
                    .get(&format!("step{step}.{}", hp.name))
                    .and_then(|t| t.to_f64())
                    .unwrap_or_else(|| panic!("{case}: step {step} {}", hp.name));
                assert_close(
                    &format!("{case}: {} after step {step}", hp.name),
                    &hp.values,
                    &want,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn the_same_seed_trains_to_the_same_bits() {
    // Two models from one seed, trained on the same data (Adam with clipping, a stacked
    // bidirectional model with dropout, so the masks come from the seed too): bit-identical
    // parameters after every step. No kernel reduces in an order that depends on timing
    // (no atomics; every sum has a fixed order), so the same adapter gives the same bits.
    let g = gpu();
    let (t, b) = (6, 4);
    let config = RnnConfig::new(3, 8, 2)
        .with_layers(2)
        .with_bidirectional(true)
        .with_dropout(0.3);
    let x = random(t * b * 3, 1.0, 1);
    let y = random(t * b * 2, 1.0, 2);
    let xt = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&x)).unwrap();
    let yt = Tensor::from_slice(&g, &[t, b, 2], &to_f32(&y)).unwrap();
    let train = || {
        let mut rnn = Rnn::new(&g, config, 42).unwrap();
        let mut opt = Optimizer::new(
            &rnn,
            OptimizerConfig {
                kind: OptimizerKind::adam(0.01),
                clip: Some(0.5),
                clip_value: None,
                weight_decay: 0.0,
            },
        )
        .unwrap();
        let mut history = Vec::new();
        for _ in 0..20 {
            rnn.train_step(&xt, None, Target::Values(&yt), Loss::mse(), &mut opt)
                .unwrap();
            let bits: Vec<u32> = rnn
                .parameters()
                .unwrap()
                .iter()
                .flat_map(|p| p.values.iter().map(|v| v.to_bits()))
                .collect();
            history.push(bits);
        }
        history
    };
    let (a, b) = (train(), train());
    assert_eq!(a.len(), b.len());
    for (step, (pa, pb)) in a.iter().zip(&b).enumerate() {
        assert!(pa == pb, "parameters differ after step {}", step + 1);
    }
    assert_ne!(a[0], a[19], "training changed the parameters");
}

/// The handles can be shared between threads.
#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<rnn_wgpu::Gpu>();
    check::<Rnn>();
    check::<Tensor>();
    check::<Optimizer>();
    check::<rnn_wgpu::ClassIds>();
}

#[test]
fn two_models_train_at_once_from_two_threads_on_one_gpu() {
    // One Gpu shared by two threads, each training its own model (its own shape, driver and
    // data): each ends with the very bits it reaches alone.
    let g = gpu();
    let train = |g: &rnn_wgpu::Gpu, seed: u64| -> Vec<u32> {
        let (t, b, i, h, o) = (5 + seed as usize, 3, 2, 9 + seed as usize, 2);
        let mut rnn =
            Rnn::new(g, RnnConfig::new(i, h, o).with_layers(seed as usize), seed).unwrap();
        let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(0.01)).unwrap();
        let x = Tensor::from_slice(g, &[t, b, i], &to_f32(&random(t * b * i, 1.0, seed))).unwrap();
        let y =
            Tensor::from_slice(g, &[t, b, o], &to_f32(&random(t * b * o, 1.0, seed + 9))).unwrap();
        for _ in 0..25 {
            rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
                .unwrap();
        }
        rnn.parameters()
            .unwrap()
            .iter()
            .flat_map(|p| p.values.iter().map(|v| v.to_bits()))
            .collect()
    };
    let alone = [train(&g, 1), train(&g, 2)];
    let together = std::thread::scope(|s| {
        let a = s.spawn(|| train(&g, 1));
        let b = s.spawn(|| train(&g, 2));
        [a.join().expect("thread 1"), b.join().expect("thread 2")]
    });
    assert_eq!(together[0], alone[0], "model 1 trained beside model 2");
    assert_eq!(together[1], alone[1], "model 2 trained beside model 1");
}

/// A relu model whose W has spectral radius 4 over 64 steps: its outputs overflow f32.
fn exploding(g: &rnn_wgpu::Gpu) -> (Rnn, Tensor, Tensor) {
    let config = RnnConfig::new(1, 16, 1)
        .with_nonlinearity(rnn_wgpu::Nonlinearity::Relu)
        .with_init(rnn_wgpu::Init::Scaled(4.0));
    let rnn = Rnn::new(g, config, 3).unwrap();
    let (t, b) = (64, 4);
    let x = Tensor::from_slice(g, &[t, b, 1], &vec![1.0; t * b]).unwrap();
    let y = Tensor::from_slice(g, &[t, b, 1], &vec![0.0; t * b]).unwrap();
    (rnn, x, y)
}

#[test]
fn a_step_whose_gradients_are_not_finite_changes_nothing_and_is_reported() {
    // Without clipping the gradients are infinite or NaN: no update happens (the parameters
    // stay their finite starting values), and the first such step is reported. With clipping
    // by value they are finite numbers and training goes on.
    let g = gpu();
    let (mut rnn, x, y) = exploding(&g);
    let start = rnn.parameters().unwrap();
    let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(0.01)).unwrap();
    assert_eq!(opt.first_nonfinite_step().unwrap(), None);
    for _ in 0..3 {
        rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
            .unwrap();
    }
    let loss = rnn.last_loss().unwrap();
    assert!(
        !loss.is_finite(),
        "the model was meant to explode: loss {loss}"
    );
    assert_eq!(opt.first_nonfinite_step().unwrap(), Some(1));
    for (before, after) in start.iter().zip(rnn.parameters().unwrap()) {
        assert!(after.values.iter().all(|v| v.is_finite()), "{}", after.name);
        assert_eq!(before.values, after.values, "{} changed", after.name);
    }

    // A linear recurrence of spectral radius 1.3 over 64 steps: finite but huge gradients. SGD
    // steps into overflow within a few updates; clipped to norm 1 it keeps training.
    for (clip, blows_up) in [(None, true), (Some(1.0), false)] {
        let config = RnnConfig::new(1, 16, 1)
            .with_nonlinearity(rnn_wgpu::Nonlinearity::Identity)
            .with_init(rnn_wgpu::Init::Scaled(1.3));
        let mut rnn = Rnn::new(&g, config, 3).unwrap();
        let start = rnn.parameters().unwrap();
        let sgd = OptimizerConfig {
            clip,
            ..OptimizerKind::sgd(0.1, 0.0).into()
        };
        let mut opt = Optimizer::new(&rnn, sgd).unwrap();
        for _ in 0..6 {
            rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
                .unwrap();
        }
        let after = rnn.parameters().unwrap();
        let what = format!("clip {clip:?}");
        assert!(
            after.iter().all(|p| p.values.iter().all(|v| v.is_finite())),
            "{what}"
        );
        assert_ne!(start[1].values, after[1].values, "{what}: W never moved");
        assert_eq!(
            opt.first_nonfinite_step().unwrap().is_some(),
            blows_up,
            "{what}"
        );
    }
}

#[test]
fn train_stops_at_a_non_finite_loss_and_keeps_the_saved_file() {
    let dir = crate::common::Scratch::new();
    let save = dir.path("kept.safetensors");
    std::fs::write(&save, b"an earlier model").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args([
            "train",
            "--nonlinearity",
            "relu",
            "--init",
            "scaled:4",
            "--clip",
            "0",
        ])
        .args(["--lr", "5", "--steps", "50", "--log-every", "10", "--save"])
        .arg(&save)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("NaN or infinite at step") && line.contains("no file was written"),
        "{err}"
    );
    assert_eq!(std::fs::read(&save).unwrap(), b"an earlier model");
}
