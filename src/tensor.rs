//! [`Tensor`]: f32 data on the GPU with a checked shape, [`ClassIds`] for class targets and
//! token inputs, and [`Input`], either of them as a model's input.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{InputError, Result};
use crate::gpu::Gpu;

/// Row-major f32 data on the GPU with a shape; may be a view into a larger buffer.
///
/// The tensors a model returns ([`Forward`](crate::Forward), [`Gradients`](crate::Gradients))
/// are views of its buffers, valid until its next call that overwrites them: reading or
/// passing one after that is an [`InputError::Stale`] error, not a silently different value.
#[derive(Debug, Clone)]
pub struct Tensor {
    gpu: Gpu,
    buffer: wgpu::Buffer,
    offset: usize,
    shape: Vec<usize>,
    guard: Option<Guard>,
}

/// What makes a view stale: a counter of the calls that overwrite it, its value when the view
/// was made, and what those calls are (for the error).
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub counter: Arc<AtomicU64>,
    pub made: u64,
    pub overwritten_by: &'static str,
}

/// Checks that every dimension is at least one.
pub(crate) fn check_nonempty(arg: &str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(InputError::Empty {
            arg: arg.to_string(),
            shape: shape.to_vec(),
        }
        .into());
    }
    Ok(())
}

/// The number of elements of `shape`, or an error when it does not fit a `usize` (an
/// unchecked product would wrap round to a small, wrong size).
pub(crate) fn elements(arg: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            InputError::Invalid {
                arg: arg.to_string(),
                reason: format!("shape {shape:?} has more elements than this machine can count"),
            }
            .into()
        })
}

fn check_len(arg: &str, shape: &[usize], len: usize) -> Result<()> {
    check_nonempty(arg, shape)?;
    let want = elements(arg, shape)?;
    if want != len {
        return Err(InputError::Length {
            arg: arg.to_string(),
            shape: shape.to_vec(),
            want,
            got: len,
        }
        .into());
    }
    Ok(())
}

impl Tensor {
    /// Uploads `data` (row-major) as a tensor of `shape`.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Self> {
        check_len("tensor", shape, data.len())?;
        let buffer = gpu.storage_buffer("tensor", data.len())?;
        gpu.queue()
            .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        Ok(Self {
            gpu: gpu.clone(),
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            guard: None,
        })
    }

    /// A tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Self> {
        check_nonempty("tensor", shape)?;
        let len = elements("tensor", shape)?;
        let buffer = gpu.storage_buffer("tensor", len)?;
        Ok(Self {
            gpu: gpu.clone(),
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            guard: None,
        })
    }

    /// A view of `shape` starting at element `offset` of `buffer`.
    pub(crate) fn view(gpu: &Gpu, buffer: &wgpu::Buffer, offset: usize, shape: &[usize]) -> Self {
        Self {
            gpu: gpu.clone(),
            buffer: buffer.clone(),
            offset,
            shape: shape.to_vec(),
            guard: None,
        }
    }

    /// The same view, stale once `counter` moves on from its value now.
    pub(crate) fn guarded(self, counter: &Arc<AtomicU64>, overwritten_by: &'static str) -> Self {
        Self {
            guard: Some(Guard {
                counter: counter.clone(),
                made: counter.load(Ordering::Acquire),
                overwritten_by,
            }),
            ..self
        }
    }

    /// An error when this is a model's view that a later call has overwritten.
    pub(crate) fn check_fresh(&self, arg: &str) -> Result<()> {
        match &self.guard {
            Some(g) if g.counter.load(Ordering::Acquire) != g.made => Err(InputError::Stale {
                arg: arg.to_string(),
                reason: format!(
                    "the model's buffers it views were overwritten by a later {}; read it \
                     (to_vec) or copy it before the next call",
                    g.overwritten_by
                ),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor holds no element (never, for tensors this crate makes).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Downloads the values, row-major.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.check_fresh("tensor")?;
        self.gpu.read(&self.buffer, self.offset, self.len())
    }

    /// Overwrites the values from the host.
    pub fn write(&self, data: &[f32]) -> Result<()> {
        self.check_fresh("tensor")?;
        check_len("tensor", &self.shape, data.len())?;
        self.gpu.queue().write_buffer(
            &self.buffer,
            self.offset as u64 * 4,
            bytemuck::cast_slice(data),
        );
        Ok(())
    }

    /// Overwrites the values with `src`'s, on the GPU (one small submit, no read-back).
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        src.check_fresh("src")?;
        self.check_fresh("tensor")?;
        if src.shape != self.shape {
            return Err(InputError::Shape {
                arg: "src".into(),
                expected: format!("{:?} (the destination's shape)", self.shape),
                got: src.shape.clone(),
            }
            .into());
        }
        if !src.gpu.same_device(&self.gpu) {
            return Err(InputError::Foreign {
                arg: "src".into(),
                owner: "GPU",
            }
            .into());
        }
        let mut enc = self
            .gpu
            .device()
            .create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(
            &src.buffer,
            src.offset as u64 * 4,
            &self.buffer,
            self.offset as u64 * 4,
            self.len() as u64 * 4,
        );
        self.gpu.submit("copy", enc)
    }

    pub(crate) fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

/// Integer class ids on the GPU, shape `[T, B]` (`[B, T]` for a batch-first model): targets
/// for cross-entropy, or token inputs ([`Input::Tokens`]).
#[derive(Debug, Clone)]
pub struct ClassIds {
    pub(crate) gpu: Gpu,
    pub(crate) buffer: wgpu::Buffer,
    shape: Vec<usize>,
    /// Largest id, kept so range checks need no read-back.
    max: u32,
}

impl ClassIds {
    /// Uploads class ids; negative ids are rejected.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], ids: &[i64]) -> Result<Self> {
        check_len("class ids", shape, ids.len())?;
        let (data, max) = to_u32(ids)?;
        let buffer = gpu.storage_buffer("class ids and their sorted positions", data.len())?;
        gpu.queue()
            .write_buffer(&buffer, 0, bytemuck::cast_slice(&data));
        Ok(Self {
            gpu: gpu.clone(),
            buffer,
            shape: shape.to_vec(),
            max,
        })
    }

    /// The shape, `[T, B]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Overwrites the ids from the host, keeping the shape.
    pub fn write(&mut self, ids: &[i64]) -> Result<()> {
        check_len("class ids", &self.shape, ids.len())?;
        let (data, max) = to_u32(ids)?;
        self.gpu
            .queue()
            .write_buffer(&self.buffer, 0, bytemuck::cast_slice(&data));
        self.max = max;
        Ok(())
    }

    /// The largest id.
    pub fn max_id(&self) -> u32 {
        self.max
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no ids (never: shapes are checked to be non-empty).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A model's input: f32 values `[T, B, I]`, or token ids `[T, B]` below `I` that stand for
/// one-hot vectors of width `I` (the input projection becomes a gather of `W_ih`'s columns, as
/// `nn.Embedding` would compute it, and no one-hot matrix is ever made). Both batch-first
/// where the model is.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Values `[T, B, I]`.
    Values(&'a Tensor),
    /// Token ids `[T, B]`, each below the model's input size.
    Tokens(&'a ClassIds),
}

impl<'a> From<&'a Tensor> for Input<'a> {
    fn from(t: &'a Tensor) -> Self {
        Input::Values(t)
    }
}

impl<'a> From<&'a ClassIds> for Input<'a> {
    fn from(ids: &'a ClassIds) -> Self {
        Input::Tokens(ids)
    }
}

/// Class ids as the kernels take them, followed by their positions sorted by id (ties in
/// position order: the token-input gradient's fixed order of summation), and the largest id;
/// negative ids are rejected.
fn to_u32(ids: &[i64]) -> Result<(Vec<u32>, u32)> {
    let mut max = 0u32;
    let mut data = Vec::with_capacity(2 * ids.len());
    for &id in ids {
        let v = u32::try_from(id).map_err(|_| InputError::ClassOutOfRange {
            arg: "class ids".into(),
            id,
            classes: u32::MAX as usize,
        })?;
        max = max.max(v);
        data.push(v);
    }
    let n = u32::try_from(ids.len()).map_err(|_| InputError::Invalid {
        arg: "class ids".into(),
        reason: format!("{} ids are more than a GPU buffer can index", ids.len()),
    })?;
    let mut sorted: Vec<u32> = (0..n).collect();
    // Stable, so equal ids keep their positions' order.
    sorted.sort_by_key(|&q| data[q as usize]);
    data.extend_from_slice(&sorted);
    Ok((data, max))
}
