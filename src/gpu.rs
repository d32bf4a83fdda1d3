//! The [`Gpu`] handle: adapter, device, queue and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{GpuError, Result};

/// One binding slot of a kernel, in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// The dispatch's parameters: `var<storage, read>` bound with a dynamic offset, so one
    /// buffer serves many dispatches. Not `var<uniform>`: Mesa 22's lavapipe compiles a
    /// variant of a kernel with its uniform values inlined at every dispatch that binds
    /// them and never frees it (about 0.5 MB per training step, issue #9). Every entry point
    /// copies them into a private variable first: read inside a loop or a branch, each field
    /// would cost a loop over the lanes there.
    Params,
    /// `var<uniform>` bound whole.
    Constant,
    /// `texture_storage_2d<rgba32float, read_write>`: a state texture ([`Gpu::state_textures`]).
    TextureReadWrite,
    /// `texture_storage_2d<rgba32float, read>`.
    TextureRead,
    /// `texture_storage_2d<rgba32float, write>`.
    TextureWrite,
}

/// A compute kernel: a WGSL source, an entry point and its bindings (group 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    /// Label shown in errors and captures, also the cache key.
    pub name: &'static str,
    /// The WGSL text, loaded with `include_str!`.
    pub source: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// The bindings, `@binding(0)` first.
    pub binds: &'static [Bind],
    /// Values for the shader's `override` constants, by name.
    pub constants: &'static [(&'static str, f64)],
}

/// A built kernel: its pipeline and the layout its bind groups must use.
#[derive(Debug)]
pub struct Pipeline {
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The layout of bind group 0.
    pub layout: wgpu::BindGroupLayout,
}

struct Inner {
    instance: wgpu::Instance,
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: Mutex<HashMap<&'static str, Arc<Pipeline>>>,
    /// Faults wgpu reports outside any error scope (its default handler panics) and why the
    /// device was lost, if it was: [`Gpu::check_faults`] turns them into errors.
    faults: Arc<Faults>,
    /// The staging buffer small read-backs reuse (the loss, a step's scores), so a long run
    /// that reads every step makes no buffer per read.
    readback: Mutex<Option<wgpu::Buffer>>,
    /// A 1 x 1 `rgba32float` storage texture for texture slots a kernel declares but does not
    /// read in the variant bound ([`Gpu::placeholder_texture`]).
    placeholder: std::sync::OnceLock<wgpu::TextureView>,
    /// A uniform buffer of one window for window slots a kernel's variant does not read
    /// ([`Gpu::placeholder_window`]).
    placeholder_window: std::sync::OnceLock<wgpu::Buffer>,
}

/// Bytes up to which a read-back reuses [`Inner::readback`]; larger ones, rare and large,
/// get a buffer of their own that is freed after the read rather than kept.
const READBACK_KEEP: u64 = 1 << 20;

/// What wgpu reported through its callbacks rather than to a call.
#[derive(Default)]
struct Faults {
    /// The latest error outside any error scope, not yet reported.
    uncaptured: Mutex<Option<String>>,
    /// Why the device was lost.
    lost: Mutex<Option<String>>,
}

/// The GPU: instance, adapter, device, queue and pipeline cache. Cheap to clone.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
    kernels: KernelStyle,
    /// CPU threads the CPU-adapter kernels' workgroup shapes are chosen for; `None`: this
    /// machine's.
    threads: Option<usize>,
    /// Whether the loops may keep their state in textures where the adapter allows it.
    textures: bool,
}

/// Which family of kernels runs the matrix multiplies and the per-step recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KernelStyle {
    /// Tiled on GPUs, subgroup (else direct) on CPU adapters;
    /// `RNN_WGPU_KERNELS=tiled|direct|subgroup` overrides it.
    #[default]
    Auto,
    /// Many workgroups staging their operands through workgroup memory (64x64 GEMM tiles,
    /// 8x32 recurrence tiles): the choice for GPUs, where it keeps memory latency hidden.
    Tiled,
    /// Blocks per invocation straight from memory with no barrier, reading vec4s: the choice
    /// for CPU adapters such as lavapipe, where a barrier costs more than a cache hit.
    Direct,
    /// `Direct`, with the lanes of each 8-wide subgroup loading a share of the values they all
    /// need and passing them on by subgroup shuffles: the choice for CPU adapters with 8-lane
    /// subgroups (lavapipe), where every load costs once per lane. `Direct` elsewhere.
    Subgroup,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.adapter_info())
            .finish()
    }
}

/// How much an adapter type is preferred when nothing else decides (lower wins).
fn rank(device_type: wgpu::DeviceType, power: Option<wgpu::PowerPreference>) -> u8 {
    use wgpu::DeviceType::*;
    match (power, device_type) {
        (Some(wgpu::PowerPreference::LowPower), IntegratedGpu) => 0,
        (Some(wgpu::PowerPreference::LowPower), DiscreteGpu) => 1,
        (_, DiscreteGpu) => 0,
        (_, IntegratedGpu) => 1,
        (_, VirtualGpu) => 2,
        (_, Other) => 3,
        (_, Cpu) => 4,
    }
}

/// One line describing an adapter: name, type, backend, driver.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {} {})",
        info.name, info.device_type, info.backend, info.driver, info.driver_info
    )
}

impl Gpu {
    /// Opens the adapter chosen by `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`,
    /// else the most capable hardware adapter, else a software one.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Async form of [`Gpu::new`].
    pub async fn new_async() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = choose_adapter(&instance).await?;
        let info = adapter.get_info();
        // The adapter's own limits, not the WebGPU defaults: the large shapes need buffers past
        // the default 128 MiB binding size on hardware that allows it.
        let limits = adapter.limits();
        // Timestamps let `bench --phases` time each phase on the GPU itself; optional.
        // Subgroups let the CPU-adapter kernels share loads between lanes; optional.
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SUBGROUP
                | wgpu::Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("rnn-wgpu"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            *f.uncaptured.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }));
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            *f.lost.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        Ok(Self {
            inner: Arc::new(Inner {
                instance,
                adapter,
                device,
                queue,
                pipelines: Mutex::new(HashMap::new()),
                faults,
                readback: Mutex::new(None),
                placeholder: std::sync::OnceLock::new(),
                placeholder_window: std::sync::OnceLock::new(),
            }),
            kernels: KernelStyle::Auto,
            threads: None,
            textures: std::env::var("RNN_WGPU_STATE_TEXTURES").as_deref() != Ok("off"),
        })
    }

    /// The same device with another kernel style (for models made from the returned handle).
    pub fn with_kernels(&self, kernels: KernelStyle) -> Gpu {
        Gpu {
            kernels,
            ..self.clone()
        }
    }

    /// The same device, with the kernels for CPU adapters shaped as for a machine with
    /// `threads` CPU threads (lavapipe runs one workgroup per thread; by default the shapes
    /// follow this machine's thread count). For tests and tuning: the results are the same,
    /// only which kernels and workgroup shapes run changes.
    pub fn with_cpu_threads(&self, threads: usize) -> Gpu {
        Gpu {
            threads: Some(threads.max(1)),
            ..self.clone()
        }
    }

    /// The same device, its persistent loops keeping their state in buffers only (`false`)
    /// even where [`Gpu::state_textures`] would say yes. For tests and tuning, as
    /// `RNN_WGPU_STATE_TEXTURES=off`.
    pub fn with_state_textures(&self, allowed: bool) -> Gpu {
        Gpu {
            textures: allowed,
            ..self.clone()
        }
    }

    /// Whether the persistent subgroup loops keep their state, and read what else they need,
    /// in `rgba32float` storage-texture mirrors of their buffers: where the subgroup kernels
    /// run and the adapter reads and writes such textures. On Mesa 22's lavapipe a texture
    /// load is a vector gather where a storage-buffer load is a loop over the lanes, 12x the
    /// cost (`cargo bench --bench memory_costs`).
    pub(crate) fn state_textures(&self) -> bool {
        self.textures
            && self.subgroup_kernels()
            && self
                .device()
                .features()
                .contains(wgpu::Features::TEXTURE_ADAPTER_SPECIFIC_FORMAT_FEATURES)
            && self
                .inner
                .adapter
                .get_texture_format_features(wgpu::TextureFormat::Rgba32Float)
                .flags
                .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_WRITE)
    }

    /// A 1 x 1 `rgba32float` storage texture to bind where a kernel's variant does not read
    /// its texture slot.
    pub(crate) fn placeholder_texture(&self) -> &wgpu::TextureView {
        self.inner.placeholder.get_or_init(|| {
            self.device()
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some("unread texture slot"),
                    size: wgpu::Extent3d {
                        width: 1,
                        height: 1,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::STORAGE_BINDING,
                    view_formats: &[],
                })
                .create_view(&Default::default())
        })
    }

    /// A uniform buffer of one window (`ops::CONSTANT_WINDOW` bytes) to bind where a kernel's
    /// variant does not read its window slots.
    pub(crate) fn placeholder_window(&self) -> &wgpu::Buffer {
        self.inner.placeholder_window.get_or_init(|| {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("unread window slot"),
                size: crate::ops::CONSTANT_WINDOW,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: false,
            })
        })
    }

    /// The CPU threads the CPU-adapter kernels' workgroup shapes are chosen for.
    pub fn cpu_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Whether the adapter is a CPU (lavapipe and the like): its kernels are chosen
    /// differently, and lavapipe stops a shader invocation after 65535 loop iterations,
    /// silently, so long loops are cut or refused there.
    pub(crate) fn is_cpu(&self) -> bool {
        self.adapter_info().device_type == wgpu::DeviceType::Cpu
    }

    /// The kernel style that runs, resolving [`KernelStyle::Auto`] and falling back from
    /// [`KernelStyle::Subgroup`] where the device has no 8-lane subgroups.
    pub fn kernel_style(&self) -> KernelStyle {
        let style = match self.kernels {
            KernelStyle::Auto => match std::env::var("RNN_WGPU_KERNELS").as_deref() {
                Ok("direct") => KernelStyle::Direct,
                Ok("tiled") => KernelStyle::Tiled,
                Ok("subgroup") => KernelStyle::Subgroup,
                _ if self.is_cpu() => KernelStyle::Subgroup,
                _ => KernelStyle::Tiled,
            },
            style => style,
        };
        if style == KernelStyle::Subgroup && !self.has_subgroups_of_8() {
            return KernelStyle::Direct;
        }
        style
    }

    /// Whether the direct kernels run (with or without subgroups).
    pub(crate) fn direct_kernels(&self) -> bool {
        matches!(
            self.kernel_style(),
            KernelStyle::Direct | KernelStyle::Subgroup
        )
    }

    /// Whether the direct kernels that share loads through subgroups run.
    pub(crate) fn subgroup_kernels(&self) -> bool {
        self.kernel_style() == KernelStyle::Subgroup
    }

    /// Whether the device runs subgroup operations in subgroups of exactly 8 lanes, the width
    /// the subgroup kernels are written for.
    fn has_subgroups_of_8(&self) -> bool {
        let info = self.adapter_info();
        self.device().features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8
    }

    /// Every adapter wgpu finds for the backends `WGPU_BACKEND` allows, with its limits and
    /// features.
    pub fn enumerate() -> Vec<(wgpu::AdapterInfo, wgpu::Limits, wgpu::Features)> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(|a| (a.get_info(), a.limits(), a.features()))
            .collect()
    }

    /// Name, type, backend and driver of the adapter in use.
    pub fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.inner.adapter.get_info()
    }

    /// The device's limits.
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The wgpu instance.
    pub fn instance(&self) -> &wgpu::Instance {
        &self.inner.instance
    }

    /// True when both handles share one device.
    pub fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Largest buffer, in bytes, that can be bound as storage on this device (at most
    /// 4 GiB, so that kernels can index every element with a `u32`).
    pub fn max_storage_bytes(&self) -> u64 {
        let l = self.limits();
        l.max_buffer_size
            .min(l.max_storage_buffer_binding_size)
            .min(u32::MAX as u64 + 1)
    }

    /// A storage buffer of `len` f32-sized elements, checked against the adapter's limits.
    pub fn storage_buffer(&self, what: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) as u64).saturating_mul(4);
        let limit = self.max_storage_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: what.to_string(),
                bytes,
                limit,
            }
            .into());
        }
        self.scoped(what, |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                // Whole vec4s, so any buffer can be bound as an array of vec4 by the kernels
                // that read four values at a time.
                size: bytes.next_multiple_of(16),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Runs `make` inside error scopes for out-of-memory and validation errors, so that what
    /// wgpu would hand to its uncaptured-error handler (which panics) comes back as an
    /// [`GpuError::Creation`] naming `what`.
    pub(crate) fn scoped<T>(&self, what: &str, make: impl FnOnce(&wgpu::Device) -> T) -> Result<T> {
        self.check_faults(what)?;
        let device = self.device();
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let made = make(device);
        // Scopes pop in the reverse order of their pushes.
        let invalid = pollster::block_on(validation.pop());
        let out_of_memory = pollster::block_on(oom.pop());
        match out_of_memory.or(invalid) {
            Some(e) => Err(GpuError::Creation {
                what: what.to_string(),
                message: e.to_string(),
            }
            .into()),
            None => Ok(made),
        }
    }

    /// The cached pipeline for `kernel`, building it on first use.
    pub(crate) fn pipeline(&self, kernel: &Kernel) -> Result<Arc<Pipeline>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut cache = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(kernel.name) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.build(kernel)?);
        cache.insert(kernel.name, p.clone());
        Ok(p)
    }

    fn build(&self, kernel: &Kernel) -> Result<Pipeline> {
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        };
        let module = if self.adapter_info().backend == wgpu::Backend::Vulkan {
            // SAFETY: every loop in the crate's shaders has a bound set by the host from
            // checked shapes, so wgpu's injected loop counters only cost time (about 10% on
            // lavapipe), and Vulkan's robust buffer access, which wgpu enables, keeps every
            // buffer access in bounds without naga's clamps. Other backends keep both.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            device.create_shader_module(desc)
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Read | Bind::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *b == Bind::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Constant => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Params => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    Bind::TextureReadWrite | Bind::TextureRead | Bind::TextureWrite => {
                        wgpu::BindingType::StorageTexture {
                            access: match b {
                                Bind::TextureRead => wgpu::StorageTextureAccess::ReadOnly,
                                Bind::TextureWrite => wgpu::StorageTextureAccess::WriteOnly,
                                _ => wgpu::StorageTextureAccess::ReadWrite,
                            },
                            format: wgpu::TextureFormat::Rgba32Float,
                            view_dimension: wgpu::TextureViewDimension::D2,
                        }
                    }
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: kernel.constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Kernel {
                kernel: kernel.name.to_string(),
                message: e.to_string(),
            }
            .into());
        }
        Ok(Pipeline { pipeline, layout })
    }

    /// Submits `encoder` and blocks until the device has finished it, reporting any error.
    pub fn submit_and_wait(&self, label: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        let scope = self
            .device()
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let index = self.queue().submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Execution {
                label: label.to_string(),
                message: e.to_string(),
            }
            .into());
        }
        self.wait(label, Some(index))
    }

    /// Submits `encoder` without waiting, reporting validation errors.
    pub fn submit(&self, label: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.check_faults(label)?;
        let scope = self
            .device()
            .push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue().submit([encoder.finish()]);
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(GpuError::Execution {
                label: label.to_string(),
                message: e.to_string(),
            }
            .into()),
            None => self.check_faults(label),
        }
    }

    /// An error when the device was lost (the `Gpu` is then unusable) or wgpu reported a
    /// fault outside any error scope since the last check (work submitted since may be
    /// wrong; the `Gpu` may go on).
    pub(crate) fn check_faults(&self, label: &str) -> Result<()> {
        let f = &self.inner.faults;
        if let Some(reason) = f.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(GpuError::DeviceLost { reason }.into());
        }
        if let Some(message) = f
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(GpuError::Execution {
                label: label.to_string(),
                message,
            }
            .into());
        }
        Ok(())
    }

    /// Bytes of device memory wgpu's allocator holds once all submitted work is done, where
    /// the backend reports it (Vulkan, DX12, Metal).
    pub fn allocated_bytes(&self) -> Result<Option<u64>> {
        self.wait("memory reading", None)?;
        Ok(self
            .device()
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes))
    }

    /// Blocks until `index` (or all work, when `None`) has finished.
    pub fn wait(&self, label: &str, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device()
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| GpuError::Execution {
                label: label.to_string(),
                message: e.to_string(),
            })?;
        self.check_faults(label)
    }

    /// Whether the device can write GPU timestamps between compute passes.
    pub fn has_timestamps(&self) -> bool {
        self.device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Copies `len` f32 values starting at element `offset` of `buffer` back to the host.
    pub fn read(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.read_bytes(buffer, offset as u64 * 4, len as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copies `bytes` bytes starting at byte `offset` of `buffer` back to the host.
    pub(crate) fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        // Held for the whole read: the shared staging buffer serves one read at a time. A
        // poisoned lock means a read panicked part-way, perhaps with the buffer still mapped:
        // that buffer is not reused.
        let mut kept = self.inner.readback.lock().unwrap_or_else(|e| {
            let mut kept = e.into_inner();
            *kept = None;
            kept
        });
        let make = |size: u64| {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let staging = if bytes <= READBACK_KEEP {
            if kept.as_ref().is_none_or(|b| b.size() < bytes) {
                // Grown in powers of two, so a few sizes settle on one buffer.
                *kept = Some(make(bytes.next_power_of_two().max(256)));
            }
            kept.as_ref().expect("just made").clone()
        } else {
            make(bytes)
        };
        let result = (|| {
            let mut encoder = self.device().create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
            self.submit("read-back", encoder)?;
            let slice = staging.slice(..bytes);
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                tx.send(r).ok();
            });
            self.wait("read-back", None)?;
            let mapped = pollster::block_on(rx.receive());
            let fail = |message: String| GpuError::Execution {
                label: "read-back".into(),
                message,
            };
            match mapped {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(fail(e.to_string()).into()),
                None => return Err(fail("mapping was cancelled".into()).into()),
            }
            let data = {
                let view = slice.get_mapped_range().map_err(|e| fail(e.to_string()))?;
                view.to_vec()
            };
            staging.unmap();
            Ok(data)
        })();
        if result.is_err() {
            // The buffer may still be mapped or awaiting its mapping: not for reuse.
            *kept = None;
        }
        result
    }
}

async fn choose_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let adapters = instance.enumerate_adapters(backends).await;
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter {
            backends: format!("{backends:?}"),
        }
        .into());
    }
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let lower = wanted.to_lowercase();
        return adapters
            .iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&lower))
            .cloned()
            .ok_or_else(|| {
                let available: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                GpuError::AdapterNotFound {
                    wanted,
                    available: available.join(", "),
                }
                .into()
            });
    }
    let power = wgpu::PowerPreference::from_env();
    let best = adapters
        .iter()
        .min_by_key(|a| rank(a.get_info().device_type, power))
        .cloned();
    best.ok_or_else(|| {
        GpuError::NoAdapter {
            backends: format!("{backends:?}"),
        }
        .into()
    })
}
