//! ‖dL/dh(t)‖ per step and layer (`Rnn::set_grad_norms`): against the reference, and the
//! decay a linear recurrence's eigenvalues predict.

use rnn_wgpu::reference;
use rnn_wgpu::{
    Driver, Loss, Nonlinearity, Optimizer, OptimizerKind, Reduction, Rnn, RnnConfig, Target, Tensor,
};

use crate::common::{assert_close, gpu, random, to_f32};
use crate::versus_reference::{Case, REL, gpu_run, model_on, orthogonal, setup};

#[test]
fn gradient_norms_per_step_match_the_reference() {
    // Odd H (padded on CPU adapters), B = 1 and T = 1, two layers, relu with cross-entropy,
    // under the per-step and persistent drivers; through loss_and_gradients and train_step
    // (the norms are the backward pass's, before the update).
    let g = gpu();
    let base = Case {
        steps: 7,
        batch: 3,
        input: 4,
        hidden: 9,
        output: 5,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 2,
        bidirectional: false,
    };
    let cases = [
        base,
        Case {
            steps: 1,
            batch: 1,
            layers: 1,
            ..base
        },
        Case {
            steps: 12,
            batch: 2,
            hidden: 65,
            nonlinearity: Nonlinearity::Relu,
            loss: Loss::cross_entropy(),
            layers: 1,
            ..base
        },
        Case {
            steps: 5,
            batch: 1,
            hidden: 8,
            layers: 3,
            loss: Loss::mse().with_reduction(Reduction::Sum),
            ..base
        },
        // Both directions: the reverse one's curve in true time.
        Case {
            steps: 6,
            batch: 2,
            hidden: 5,
            layers: 2,
            bidirectional: true,
            ..base
        },
    ];
    for driver in [Driver::PerStep, Driver::Persistent] {
        for (n, &c) in cases.iter().enumerate() {
            let s = setup(c, 61_000 + n as u64);
            let want = reference::loss_and_grads(
                &s.p,
                &s.x,
                s.h0.as_deref(),
                c.steps,
                c.batch,
                &s.targets,
                c.loss,
            )
            .2
            .h_norms;
            let mut rnn = model_on(&g, &s.p, driver);
            rnn.set_grad_norms(true);
            gpu_run(&mut rnn, c, &s);
            let got = rnn.grad_norms().unwrap();
            assert_eq!(
                got.len(),
                c.states(),
                "{c:?}: one curve per layer and direction"
            );
            for (kd, (got, want)) in got.iter().zip(&want).enumerate() {
                // The reference's reverse direction runs in its own time.
                let mut want = want.clone();
                if c.bidirectional && kd % 2 == 1 {
                    want.reverse();
                }
                let what = format!("‖dL/dh(t)‖ layer and direction {kd}, {c:?} {driver:?}");
                assert_close(&what, got, &want, REL);
            }
        }
    }
    // After a training step: the norms of its backward pass.
    let c = cases[0];
    let s = setup(c, 61_100);
    let want = reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), 7, 3, &s.targets, c.loss)
        .2
        .h_norms;
    let mut rnn = model_on(&g, &s.p, Driver::Auto);
    rnn.set_input_gradients(false);
    rnn.set_grad_norms(true);
    let x = Tensor::from_slice(&g, &[7, 3, 4], &to_f32(&s.x)).unwrap();
    let h0 = Tensor::from_slice(&g, &[2, 3, 9], &to_f32(s.h0.as_ref().unwrap())).unwrap();
    let reference::Targets::Values(y) = &s.targets else {
        unreachable!("mse has values")
    };
    let y = Tensor::from_slice(&g, &[7, 3, 5], &to_f32(y)).unwrap();
    let mut opt = Optimizer::new(&rnn, OptimizerKind::sgd(0.1, 0.0)).unwrap();
    rnn.train_step(&x, Some(&h0), Target::Values(&y), c.loss, &mut opt)
        .unwrap();
    for (k, (got, want)) in rnn.grad_norms().unwrap().iter().zip(&want).enumerate() {
        assert_close(&format!("train_step: layer {k}"), got, want, REL);
    }
}

/// The per-step rate of `norms[..fit]`: exp of the least-squares slope of ln ‖dL/dh(t)‖
/// against t, taken backward in time (the factor from step t + 1 to step t).
fn decay_rate(norms: &[f32], fit: usize) -> f64 {
    let pts: Vec<(f64, f64)> = norms[..fit]
        .iter()
        .enumerate()
        .map(|(t, &v)| (t as f64, f64::from(v).ln()))
        .collect();
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    // ln ‖g(t)‖ grows with t when the gradient decays going back: the factor per step back
    // is exp(-slope).
    (-sxy / sxx).exp()
}

#[test]
fn a_linear_recurrence_gradient_decays_at_its_largest_eigenvalue() {
    // h(t) = W h(t-1) + U x(t) with a symmetric W = Q Λ Qᵀ and the loss at the last step
    // only: dL/dh(t) = (Wᵀ)^(T-1-t) dL/dh(T-1), so going back in time its norm shrinks (or
    // grows) by the largest |eigenvalue| per step once the smaller ones have died out.
    let g = gpu();
    let (n, t) = (8, 60);
    let q = orthogonal(n, 15);
    for lambdas in [
        [0.9, -0.5, 0.4, 0.3, -0.2, 0.1, 0.05, 0.0],
        [-0.8, 0.45, 0.4, 0.3, -0.2, 0.1, 0.05, 0.0],
        [1.05, 0.5, -0.4, 0.3, 0.2, -0.1, 0.05, 0.0],
    ] {
        let mut w = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                w[i * n + j] = (0..n)
                    .map(|k| q[k * n + i] * lambdas[k] * q[k * n + j])
                    .sum();
            }
        }
        let config = RnnConfig::new(2, n, 3).with_nonlinearity(Nonlinearity::Identity);
        let mut rnn = Rnn::new(&g, config, 3).unwrap();
        rnn.set_parameter("rnn.weight_hh_l0", &to_f32(&w)).unwrap();
        rnn.set_grad_norms(true);
        let x = Tensor::from_slice(&g, &[t, 1, 2], &to_f32(&random(2 * t, 1.0, 4))).unwrap();
        let y = Tensor::from_slice(&g, &[t, 1, 3], &to_f32(&random(3 * t, 1.0, 5))).unwrap();
        let mut mask = vec![0.0f32; t];
        mask[t - 1] = 1.0;
        let mask = Tensor::from_slice(&g, &[t, 1], &mask).unwrap();
        rnn.loss_and_gradients(&x, None, Target::Values(&y).with_mask(&mask), Loss::mse())
            .unwrap();
        let norms = &rnn.grad_norms().unwrap()[0];
        // The last 20 steps still carry the smaller eigenvalues ((0.5/0.9)^20 ≈ 1e-5 of it).
        let rate = decay_rate(norms, t - 20);
        let want = lambdas[0].abs();
        assert!(
            (rate - want).abs() <= 0.02 * want,
            "per-step factor {rate} against the largest |eigenvalue| {want} ({lambdas:?}); \
             norms {norms:?}"
        );
    }
}

#[test]
fn gradient_norms_say_when_there_are_none() {
    let g = gpu();
    let mut rnn = Rnn::new(&g, RnnConfig::new(2, 3, 1), 1).unwrap();
    let e = rnn.grad_norms().unwrap_err().to_string();
    assert!(e.contains("set_grad_norms(true)"), "{e}");
    // Switched on, then off: the next backward pass records none.
    rnn.set_grad_norms(true);
    let x = Tensor::zeros(&g, &[4, 1, 2]).unwrap();
    let y = Tensor::zeros(&g, &[4, 1, 1]).unwrap();
    rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
        .unwrap();
    assert_eq!(rnn.grad_norms().unwrap()[0].len(), 4);
    // A call of another length makes a new workspace: none recorded there yet.
    let x5 = Tensor::zeros(&g, &[5, 1, 2]).unwrap();
    rnn.forward(&x5, None).unwrap();
    assert!(
        rnn.grad_norms().is_err(),
        "norms of a workspace no backward pass wrote"
    );
    rnn.set_grad_norms(false);
    rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
        .unwrap();
    assert!(rnn.grad_norms().is_err());
    // Sequences run in chunks record none, and say so before running.
    rnn.set_grad_norms(true);
    rnn.set_chunk_steps(Some(2)).unwrap();
    let e = rnn
        .loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
        .unwrap_err()
        .to_string();
    assert!(e.contains("chunks"), "{e}");
    assert!(rnn.last_step_grad_norms(&x, None).is_err());
}

/// `Qᵀ Λ Q` with `Q`'s rows the eigenvectors: a symmetric matrix with eigenvalues `lambdas`.
fn symmetric(q: &[f64], lambdas: &[f64]) -> Vec<f64> {
    let n = lambdas.len();
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            w[i * n + j] = (0..n)
                .map(|k| q[k * n + i] * lambdas[k] * q[k * n + j])
                .sum();
        }
    }
    w
}

#[test]
fn spectral_radii_by_power_iteration_match_the_eigenvalues() {
    let g = gpu();
    let n = 8;
    let q = orthogonal(n, 21);
    // Symmetric, with the largest |eigenvalue| negative, then above 1.
    for (lambdas, want) in [
        ([-0.9, 0.5, 0.4, 0.3, -0.2, 0.1, 0.05, 0.0], 0.9),
        ([1.2, 0.5, -0.4, 0.3, 0.2, -0.1, 0.05, 0.0], 1.2),
    ] {
        let mut rnn = Rnn::new(&g, RnnConfig::new(1, n, 1), 0).unwrap();
        let w = symmetric(&q, &lambdas);
        rnn.set_parameter("rnn.weight_hh_l0", &to_f32(&w)).unwrap();
        let r = rnn.spectral_radii().unwrap();
        assert!(
            (f64::from(r[0]) - want).abs() < 1e-3 * want,
            "{r:?} against {want}"
        );
    }
    // A dominant complex pair: 0.8 times a rotation, beside smaller real eigenvalues, turned
    // by Q (not symmetric: the growth of single steps swings).
    let mut block = vec![0.0; n * n];
    let (c, s) = (0.8 * 0.6f64.cos(), 0.8 * 0.6f64.sin());
    block[0] = c;
    block[1] = -s;
    block[n] = s;
    block[n + 1] = c;
    for (k, v) in [0.5, -0.4, 0.3, 0.2, -0.1, 0.05].iter().enumerate() {
        block[(k + 2) * n + k + 2] = *v;
    }
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            w[i * n + j] = (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .map(|(a, b)| q[a * n + i] * block[a * n + b] * q[b * n + j])
                .sum();
        }
    }
    let mut rnn = Rnn::new(&g, RnnConfig::new(1, n, 1), 0).unwrap();
    rnn.set_parameter("rnn.weight_hh_l0", &to_f32(&w)).unwrap();
    let r = rnn.spectral_radii().unwrap()[0];
    assert!(
        (f64::from(r) - 0.8).abs() < 5e-3,
        "complex pair: {r} against 0.8"
    );
    // PyTorch's start at odd H, two layers, both directions: every W against the CPU's
    // repeated squaring, in h0's order.
    let config = RnnConfig::new(3, 65, 2)
        .with_layers(2)
        .with_bidirectional(true);
    let rnn = Rnn::new(&g, config, 5).unwrap();
    let got = rnn.spectral_radii().unwrap();
    let ws: Vec<_> = rnn
        .parameters()
        .unwrap()
        .into_iter()
        .filter(|p| p.name.contains("weight_hh"))
        .collect();
    assert_eq!(got.len(), 4);
    for (r, p) in got.iter().zip(&ws) {
        let w: Vec<f64> = p.values.iter().map(|&v| f64::from(v)).collect();
        let want = rnn_wgpu::model::spectral_radius(&w, 65);
        assert!(
            (f64::from(*r) - want).abs() < 1e-2 * want,
            "{}: {r} against {want}",
            p.name
        );
    }
}

#[test]
fn all_eigenvalues_on_the_cpu() {
    let n = 6;
    let q = orthogonal(n, 23);
    let lambdas = [0.95, -0.7, 0.4, 0.25, -0.1, 0.0];
    let got = rnn_wgpu::analysis::eigenvalues(&to_f32(&symmetric(&q, &lambdas)), n).unwrap();
    for ((re, im), want) in got.iter().zip(lambdas) {
        assert!(
            (re - want).abs() < 1e-5 && im.abs() < 1e-5,
            "{got:?} against {lambdas:?}"
        );
    }
    // A rotation by 0.6 scaled by 0.8, and 0.3: 0.8 e^(±0.6i) first, then 0.3.
    let (c, s) = (0.8 * 0.6f64.cos(), 0.8 * 0.6f64.sin());
    let w = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 0.3];
    let got = rnn_wgpu::analysis::eigenvalues(&to_f32(&w), 3).unwrap();
    assert!(
        (got[0].0 - c).abs() < 1e-6 && (got[0].1.abs() - s).abs() < 1e-6,
        "{got:?}"
    );
    assert!(
        (got[0].1 + got[1].1).abs() < 1e-6 && (got[2].0 - 0.3).abs() < 1e-6,
        "{got:?}"
    );
    let e = rnn_wgpu::analysis::eigenvalues(&[1.0; 5], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 2]"), "{e}");
    // A trained IRNN's W (tests/fixtures/irnn_trained_w.safetensors): the identity moved by
    // training, its eigenvalues clustered near 1, on which QR sweeps at a tolerance of ε alone
    // stall. All 64 come back, summing to the trace.
    let file =
        rnn_wgpu::io::TensorFile::read(crate::pytorch::fixture("irnn_trained_w.safetensors"))
            .unwrap();
    let (shape, w) = file.floats("w").unwrap().unwrap();
    let n = shape[0];
    let got = rnn_wgpu::analysis::eigenvalues(&w, n).unwrap();
    let trace: f64 = (0..n).map(|i| f64::from(w[i * n + i])).sum();
    let (re, im): (f64, f64) = got.iter().fold((0.0, 0.0), |a, e| (a.0 + e.0, a.1 + e.1));
    assert_eq!(got.len(), n);
    assert!(
        (re - trace).abs() < 1e-6 && im.abs() < 1e-6,
        "{re} {im} against {trace}"
    );
}

#[test]
fn last_step_gradient_norms_match_the_reference() {
    // dL/do = 1 at the last step only, whatever the training loss: two layers, B = 2.
    let g = gpu();
    let c = Case {
        steps: 9,
        batch: 2,
        input: 3,
        hidden: 6,
        output: 2,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 2,
        bidirectional: false,
    };
    let s = setup(c, 63_000);
    let trace = reference::forward(&s.p, &s.x, s.h0.as_deref(), c.steps, c.batch);
    let mut d_o = vec![0.0; c.steps * c.batch * c.output];
    let last = (c.steps - 1) * c.batch * c.output;
    d_o[last..].fill(1.0);
    let want = reference::backward(&s.p, &s.x, &trace, &d_o).h_norms;
    let mut rnn = model_on(&g, &s.p, Driver::Auto);
    let x = Tensor::from_slice(&g, &[9, 2, 3], &to_f32(&s.x)).unwrap();
    let h0 = Tensor::from_slice(&g, &[2, 2, 6], &to_f32(s.h0.as_ref().unwrap())).unwrap();
    let got = rnn.last_step_grad_norms(&x, Some(&h0)).unwrap();
    for (k, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("last-step norms, layer {k}"), got, want, REL);
    }
    // It leaves the model's own setting as it was.
    assert!(rnn.grad_norms().is_ok());
    let y = Tensor::zeros(&g, &[9, 2, 2]).unwrap();
    rnn.loss_and_gradients(&x, Some(&h0), Target::Values(&y), Loss::mse())
        .unwrap();
    assert!(
        rnn.grad_norms().is_err(),
        "grad norms stay off after the call"
    );
}
