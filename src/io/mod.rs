//! `.safetensors` files: models under PyTorch's names, and the input and output files of `run`.

pub mod model_file;
pub mod run;
pub mod tensors;

pub use model_file::{LoadedModel, load, save};
pub use tensors::{HostTensor, TensorFile, Values, temp_sibling, write, write_atomic};
