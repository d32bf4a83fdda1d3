//! Elman recurrent neural networks (Deep Learning Book, chapter 10) trained and run on any GPU
//! that wgpu reaches, every numeric kernel written in WGSL.
//!
//! ```text
//! a(t) = b + W h(t-1) + U x(t),   h(t) = tanh(a(t)),   o(t) = c + V h(t),   L = Σ_t L(t)
//! ```
//!
//! Input projections, the output head and every weight gradient run as one multiply over all
//! time steps; only the recurrence itself is serial, one fused dispatch per step, and a whole
//! training step is one command buffer submitted once.
//!
//! ```no_run
//! use rnn_wgpu::{Gpu, Loss, Optimizer, OptimizerKind, Rnn, RnnConfig, Target, Tensor};
//!
//! # fn main() -> rnn_wgpu::Result<()> {
//! let gpu = Gpu::new()?;
//! println!("adapter: {}", rnn_wgpu::gpu::describe(&gpu.adapter_info()));
//! let (t, b) = (16, 4);
//! let mut rnn = Rnn::new(&gpu, RnnConfig::new(1, 32, 1), 0)?;
//! let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(1e-2))?;
//! let x = Tensor::from_slice(&gpu, &[t, b, 1], &vec![0.5; t * b])?;
//! let y = Tensor::from_slice(&gpu, &[t, b, 1], &vec![0.25; t * b])?;
//! for _ in 0..100 {
//!     rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)?;
//! }
//! println!("loss {}", rnn.last_loss()?);
//! let out = rnn.forward(&x, None)?.output.to_vec()?; // [T, B, O]
//! # let _ = out;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "eigen")]
pub mod analysis;
pub mod bench;
pub mod error;
pub mod gpu;
pub mod io;
pub mod loss;
pub mod model;
mod ops;
pub mod optim;
pub mod reference;
mod rng;
pub mod task;
pub mod tensor;
pub mod text;

pub use error::{Error, FileError, GpuError, InputError, Result};
pub use gpu::{Gpu, KernelStyle};
pub use loss::{Loss, LossKind, Reduction, Target};
pub use model::{
    Forward, Gradients, HostParam, Init, MAX_BLOCK_DEPTH, Mlp, Nonlinearity, Rnn, RnnConfig,
};
pub use ops::Driver;
pub use optim::{LrSchedule, Optimizer, OptimizerConfig, OptimizerKind, OptimizerState};
pub use tensor::{ClassIds, Input, Tensor};
