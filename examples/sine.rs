//! The README's library example: train on noisy sine waves, then run a forward pass.

use rnn_wgpu::{
    Gpu, Loss, Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig, Target, Tensor,
};

fn main() -> rnn_wgpu::Result<()> {
    let gpu = Gpu::new()?; // see "How the adapter is chosen"
    let (t, b) = (50, 8);
    let mut rnn = Rnn::new(&gpu, RnnConfig::new(1, 32, 1), /* seed */ 0)?;
    let mut opt = Optimizer::new(
        &rnn,
        OptimizerConfig {
            kind: OptimizerKind::adam(1e-2),
            clip: Some(1.0),
            clip_value: None,
            weight_decay: 0.0,
        },
    )?;
    let data = rnn_wgpu::task::sine(t, b, 0.05, 1);
    let x = Tensor::from_slice(&gpu, &[t, b, 1], &data.x)?; // [T, B, I], time-major
    let y = Tensor::from_slice(&gpu, &[t, b, 1], &data.y)?; // [T, B, O]
    for step in 0..200 {
        rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)?;
        if step % 50 == 0 {
            println!("loss {}", rnn.last_loss()?); // reading back is the caller's choice
        }
    }
    let out = rnn.forward(&x, None)?; // outputs [T, B, O] and h_n [L·D, B, H], still on the GPU
    println!("first outputs {:?}", &out.output.to_vec()?[..4]);
    Ok(())
}
