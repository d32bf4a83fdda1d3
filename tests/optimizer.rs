//! Training steps (loss, backward, clipping, update in one submit) against the reference.

use rnn_wgpu::reference::{self, Params, Targets};
use rnn_wgpu::{Loss, Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Target, Tensor};

use crate::common::{assert_close, gpu, random, to_f32};

/// Runs `steps` training steps on the GPU and the same updates on the host in f64.
fn compare(config: OptimizerConfig, steps: usize) {
    let g = gpu();
    let rc = RnnConfig::new(3, 65, 2);
    let mut p = Params::random(rc, 0.2, 21);
    let (t, b) = (4, 3);
    let x = random(t * b * 3, 1.0, 22);
    let y = random(t * b * 2, 1.0, 23);
    let targets = Targets::Values(y.clone());
    let loss = Loss::mse();

    let mut rnn = Rnn::new(&g, rc, 0).unwrap();
    for (name, v) in p.named() {
        rnn.set_parameter(&name, &to_f32(v)).unwrap();
    }
    let mut opt = Optimizer::new(&rnn, config).unwrap();
    let xt = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&x)).unwrap();
    let yt = Tensor::from_slice(&g, &[t, b, 2], &to_f32(&y)).unwrap();

    let names: Vec<String> = p.named().into_iter().map(|(n, _)| n).collect();
    let mut s1: Vec<Vec<f64>> = p.named().iter().map(|(_, v)| vec![0.0; v.len()]).collect();
    let mut s2 = s1.clone();
    for step in 1..=steps {
        rnn.train_step(&xt, None, Target::Values(&yt), loss, &mut opt)
            .unwrap();
        let (want_loss, _, grads) = reference::loss_and_grads(&p, &x, None, t, b, &targets, loss);
        assert_close("loss", &[rnn.last_loss().unwrap()], &[want_loss], 1e-4);
        let gnamed = grads.params.named();
        let norm = gnamed
            .iter()
            .flat_map(|(_, v)| v.iter())
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt();
        assert_close("grad norm", &[opt.last_grad_norm().unwrap()], &[norm], 1e-4);
        let scale = config
            .clip
            .map_or(1.0, |c| (c as f64 / (norm + 1e-6)).min(1.0));
        for (k, name) in names.iter().enumerate() {
            let gv = gnamed[k].1.to_vec();
            let pv = p.get_mut(name).unwrap();
            for i in 0..pv.len() {
                let gi = gv[i] * scale + config.weight_decay as f64 * pv[i];
                match config.kind {
                    OptimizerKind::Sgd { lr, momentum } => {
                        s1[k][i] = momentum as f64 * s1[k][i] + gi;
                        pv[i] -= lr as f64 * s1[k][i];
                    }
                    OptimizerKind::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                    } => {
                        let (b1, b2) = (beta1 as f64, beta2 as f64);
                        s1[k][i] = b1 * s1[k][i] + (1.0 - b1) * gi;
                        s2[k][i] = b2 * s2[k][i] + (1.0 - b2) * gi * gi;
                        let mh = s1[k][i] / (1.0 - b1.powi(step as i32));
                        let vh = s2[k][i] / (1.0 - b2.powi(step as i32));
                        pv[i] -= lr as f64 * mh / (vh.sqrt() + eps as f64);
                    }
                }
            }
        }
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
            weight_decay: 0.01,
        },
        3,
    );
}

#[test]
fn sgd_with_clipping_matches_reference() {
    compare(
        OptimizerConfig {
            kind: OptimizerKind::sgd(0.5, 0.0),
            clip: Some(0.1),
            weight_decay: 0.0,
        },
        2,
    );
}
