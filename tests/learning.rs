//! It learns: the built-in sine task's loss falls at least tenfold.

use rnn_wgpu::{Loss, Optimizer, OptimizerKind, Rnn, RnnConfig, Target, Tensor, task};

use crate::common::gpu;

#[test]
fn sine_next_step_loss_falls_tenfold() {
    let g = gpu();
    let (t, b) = (48, 16);
    let data = task::sine(t, b, 0.05, 1);
    let x = Tensor::from_slice(&g, &[t, b, 1], &data.x).unwrap();
    let y = Tensor::from_slice(&g, &[t, b, 1], &data.y).unwrap();
    let mut rnn = Rnn::new(&g, RnnConfig::new(1, 32, 1), 3).unwrap();
    let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(0.01)).unwrap();
    let mut first = None;
    for _ in 0..300 {
        rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
            .unwrap();
        if first.is_none() {
            first = Some(rnn.last_loss().unwrap());
        }
    }
    let (first, last) = (first.unwrap(), rnn.last_loss().unwrap());
    eprintln!("sine task: loss {first} -> {last}");
    assert!(
        last.is_finite() && last * 10.0 <= first,
        "loss {first} -> {last}"
    );
}
