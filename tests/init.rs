//! The starts that fight vanishing and exploding gradients (issue #15): orthogonal, identity
//! and scaled `W`, for every layer or one, checked on the weights the GPU holds.

use rnn_wgpu::{Error, HostParam, Init, Nonlinearity, Rnn, RnnConfig};

use crate::common::gpu;

fn params(rnn: &Rnn) -> Vec<HostParam> {
    rnn.parameters().unwrap()
}

fn w_hh(p: &[HostParam]) -> Vec<&HostParam> {
    p.iter().filter(|p| p.name.contains("weight_hh")).collect()
}

/// `max |WᵀW - I|` of the `[n, n]` row-major `w`.
fn orthogonality_error(w: &[f32], n: usize) -> f64 {
    let mut worst = 0.0f64;
    for a in 0..n {
        for b in 0..n {
            let dot: f64 = (0..n)
                .map(|r| f64::from(w[r * n + a]) * f64::from(w[r * n + b]))
                .sum();
            worst = worst.max((dot - if a == b { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

/// The growth rate of `‖Wᵏ v‖` over many steps from a fixed start: an estimate of the
/// spectral radius independent of the crate's (repeated squaring of W).
fn growth_rate(w: &[f32], n: usize, steps: usize) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|i| ((i * 7919 % 97) as f64 - 48.0) / 48.0)
        .collect();
    let mut log = 0.0;
    for _ in 0..steps {
        let next: Vec<f64> = (0..n)
            .map(|r| (0..n).map(|c| f64::from(w[r * n + c]) * v[c]).sum())
            .collect();
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        log += norm.ln();
        v = next.iter().map(|x| x / norm).collect();
    }
    (log / steps as f64).exp()
}

#[test]
fn orthogonal_start_gives_orthogonal_w_and_leaves_the_rest_of_pytorch_draw() {
    let g = gpu();
    for hidden in [1, 3, 65] {
        let config = RnnConfig::new(2, hidden, 3)
            .with_layers(2)
            .with_bidirectional(true);
        let plain = params(&Rnn::new(&g, config, 5).unwrap());
        let orth = params(&Rnn::new(&g, config.with_init(Init::Orthogonal), 5).unwrap());
        let ws = w_hh(&orth);
        assert_eq!(ws.len(), 4, "two layers, two directions");
        for w in &ws {
            let err = orthogonality_error(&w.values, hidden);
            assert!(err < 1e-5, "H = {hidden}: {} has |WᵀW - I| {err}", w.name);
        }
        if hidden > 1 {
            assert_ne!(ws[0].values, ws[1].values, "each direction draws its own");
            assert_ne!(ws[0].values, ws[2].values, "each layer draws its own");
        }
        for (a, b) in plain.iter().zip(&orth) {
            if !a.name.contains("weight_hh") {
                assert_eq!(a.values, b.values, "{} moved", a.name);
            }
        }
    }
}

#[test]
fn identity_start_is_irnn() {
    let g = gpu();
    let config = RnnConfig::new(3, 7, 2)
        .with_nonlinearity(Nonlinearity::Relu)
        .with_init(Init::Identity);
    let p = params(&Rnn::new(&g, config, 1).unwrap());
    for t in &p {
        if t.name.contains("weight_hh") {
            let eye: Vec<f32> = (0..49)
                .map(|i| if i % 8 == 0 { 1.0 } else { 0.0 })
                .collect();
            assert_eq!(t.values, eye, "{}", t.name);
        } else if t.name.starts_with("rnn.bias") {
            assert!(t.values.iter().all(|&v| v == 0.0), "{}", t.name);
        } else {
            assert!(
                t.values.iter().any(|&v| v != 0.0),
                "{} kept its draw",
                t.name
            );
        }
    }
}

#[test]
fn scaled_start_has_the_asked_spectral_radius() {
    let g = gpu();
    for (hidden, radius) in [(64, 0.5), (33, 1.3), (2, 0.9)] {
        let config = RnnConfig::new(1, hidden, 1).with_init(Init::Scaled(radius));
        let p = params(&Rnn::new(&g, config, 3).unwrap());
        let w = &w_hh(&p)[0].values;
        let grown = growth_rate(w, hidden, 4000);
        assert!(
            (grown / radius - 1.0).abs() < 0.01,
            "H = {hidden}: asked {radius}, ‖Wᵏv‖ grows by {grown} a step"
        );
        let w64: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let rho = rnn_wgpu::model::spectral_radius(&w64, hidden);
        assert!((rho / radius - 1.0).abs() < 1e-4, "H = {hidden}: {rho}");
    }
}

#[test]
fn one_layer_can_start_its_own_way() {
    let g = gpu();
    let config = RnnConfig::new(2, 5, 2).with_layers(3);
    let mut rnn = Rnn::new(&g, config, 9).unwrap();
    let before = params(&rnn);
    rnn.init_layer(1, Init::Identity, 9).unwrap();
    let after = params(&rnn);
    for (a, b) in before.iter().zip(&after) {
        let layer1 = a.name.ends_with("_l1");
        let changed = layer1 && (a.name.contains("weight_hh") || a.name.contains("bias"));
        assert_eq!(a.values != b.values, changed, "{}", a.name);
    }
    // And it runs: the layouts of the new W are written before the next forward.
    let x = rnn_wgpu::Tensor::zeros(&g, &[2, 1, 2]).unwrap();
    assert!(rnn.forward(&x, None).is_ok());

    for (layer, init, want) in [
        (3, Init::Orthogonal, "past the model's 3 layers"),
        (0, Init::Scaled(-1.0), "spectral radius"),
    ] {
        match rnn.init_layer(layer, init, 0) {
            Err(e @ Error::Input(_)) => {
                assert!(e.to_string().contains(want), "{e}")
            }
            other => panic!("layer {layer}, {init:?}: {other:?}"),
        }
    }
    let bad = RnnConfig::new(2, 5, 2).with_init(Init::Scaled(f64::NAN));
    assert!(Rnn::new(&g, bad, 0).is_err(), "a NaN radius is refused");
}
