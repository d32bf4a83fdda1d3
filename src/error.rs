//! Errors, one enum per failure domain, joined in [`Error`].

/// The one-line hint printed whenever no GPU adapter can be found.
pub const INSTALL_HINT: &str = "install a Vulkan driver: on Debian or Ubuntu \
`sudo apt-get install mesa-vulkan-drivers` gives Mesa's software adapter (lavapipe); \
`make test` and `make train` install it for you";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GPU, its driver or a kernel failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// An argument had the wrong shape, size or value.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A file could not be read or written, or does not hold what it should.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Failures of the adapter, the device or a kernel.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuError {
    /// No adapter at all was found.
    #[error("no GPU adapter found (backends: {backends}); {hint}", hint = INSTALL_HINT)]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
    },
    /// `WGPU_ADAPTER_NAME` matched none of the adapters present.
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound {
        /// The name that was asked for.
        wanted: String,
        /// The adapters that were found, comma-separated.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter}: {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// What wgpu said.
        message: String,
    },
    /// A kernel failed to compile or a pipeline failed to build.
    #[error("kernel `{kernel}` failed to build: {message} (the Gpu is still usable)")]
    Kernel {
        /// The kernel's label.
        kernel: String,
        /// What the shader compiler said.
        message: String,
    },
    /// A buffer would exceed the adapter's limits.
    #[error(
        "`{what}` needs {bytes} bytes, over this adapter's limit of {limit} bytes per buffer; \
         use a smaller batch, sequence or model (the Gpu is still usable)"
    )]
    TooLarge {
        /// What the buffer holds.
        what: String,
        /// The bytes it needs.
        bytes: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// Creating a buffer or binding failed (out of device memory, or past a limit wgpu checks).
    #[error(
        "could not create {what}: {message}; nothing was submitted and the Gpu is still \
         usable (use smaller sizes, or drop models and tensors no longer needed)"
    )]
    Creation {
        /// What was being created.
        what: String,
        /// What wgpu said.
        message: String,
    },
    /// A dispatch needs more workgroups in one dimension than the adapter allows.
    #[error(
        "kernel `{kernel}` needs {groups:?} workgroups, over this adapter's {limit} per \
         dimension; use a smaller batch, sequence or model (the Gpu is still usable)"
    )]
    Grid {
        /// The kernel.
        kernel: String,
        /// The workgroups it needed.
        groups: [u32; 3],
        /// The adapter's limit per dimension.
        limit: u32,
    },
    /// The device is gone (a driver reset, a removed GPU, or `destroy`).
    #[error(
        "the GPU device was lost ({reason}); this Gpu and everything made from it are no longer \
         usable: make a new one with Gpu::new"
    )]
    DeviceLost {
        /// What wgpu said.
        reason: String,
    },
    /// Work submitted to the device failed (validation, device lost, out of memory).
    #[error(
        "GPU work `{label}` failed: {message} (its results are not to be trusted; the Gpu goes \
         on unless a later call reports the device lost)"
    )]
    Execution {
        /// What was running.
        label: String,
        /// What wgpu said.
        message: String,
    },
}

/// Arguments that do not fit the model or each other.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A tensor has the wrong shape.
    #[error("`{arg}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The argument's name.
        arg: String,
        /// The shape it should have, in words such as `[T, B, 3]`.
        expected: String,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A dimension is zero.
    #[error(
        "`{arg}` has a zero-sized dimension (shape {shape:?}); every dimension must be at least 1"
    )]
    Empty {
        /// The argument's name.
        arg: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Host data does not hold as many values as the shape says.
    #[error("`{arg}`: shape {shape:?} needs {want} values, got {got}")]
    Length {
        /// The argument's name.
        arg: String,
        /// The shape given.
        shape: Vec<usize>,
        /// Values the shape needs.
        want: usize,
        /// Values given.
        got: usize,
    },
    /// A token id is not below the model's input size.
    #[error(
        "`{arg}` holds token id {id}, out of range for a model of input size {input}; token ids \
         stand for one-hot inputs and must be below input_size"
    )]
    TokenOutOfRange {
        /// The argument's name.
        arg: String,
        /// The largest id.
        id: i64,
        /// The model's input size.
        input: usize,
    },
    /// A class id is not below the number of classes.
    #[error("`{arg}` holds class id {id}, out of range for {classes} output classes")]
    ClassOutOfRange {
        /// The argument's name.
        arg: String,
        /// The first offending id.
        id: i64,
        /// The model's output size.
        classes: usize,
    },
    /// A configuration value is not allowed.
    #[error("invalid `{arg}`: {reason}")]
    Invalid {
        /// The argument's name.
        arg: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The loss and the target disagree (mse needs values, cross-entropy class ids).
    #[error("loss `{loss}` needs {needs} as target")]
    TargetKind {
        /// The loss asked for.
        loss: &'static str,
        /// The target it needs.
        needs: &'static str,
    },
    /// A tensor or optimizer belongs to another device or model.
    #[error("`{arg}` belongs to a different {owner}; create it from the same one")]
    Foreign {
        /// The argument's name.
        arg: String,
        /// "GPU" or "model".
        owner: &'static str,
    },
    /// `backward` was called before any `forward`.
    #[error("backward needs a forward pass of the same shape first")]
    NoForward,
    /// A view the model handed out was overwritten by a later call, or the weights changed
    /// between a forward pass and its backward pass.
    #[error("`{arg}` is stale: {reason}")]
    Stale {
        /// What was stale.
        arg: String,
        /// Which call made it so, and what to do.
        reason: String,
    },
}

/// Failures reading or writing `.safetensors` files; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file.
    #[error(
        "{path}: not a valid safetensors file ({reason}); is it truncated or of another format?"
    )]
    Format {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A tensor the file must hold is absent.
    #[error("{path}: missing tensor `{name}`; the file holds {present}")]
    Missing {
        /// The file.
        path: String,
        /// The tensor's name.
        name: String,
        /// The names it does hold, comma-separated.
        present: String,
    },
    /// A tensor has a dtype this use does not accept.
    #[error("{path}: tensor `{name}` has dtype {got}, expected {expected}")]
    Dtype {
        /// The file.
        path: String,
        /// The tensor's name.
        name: String,
        /// Its dtype.
        got: String,
        /// The dtypes accepted.
        expected: String,
    },
    /// A tensor's shape does not fit the model or the other tensors.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The file.
        path: String,
        /// The tensor's name.
        name: String,
        /// Its shape.
        got: Vec<usize>,
        /// The shape expected, in words such as `[T, B, 3]`.
        expected: String,
    },
    /// A value in a tensor or in the metadata is not allowed.
    #[error("{path}: `{name}`: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The tensor or metadata key.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
