//! Texture mirrors of the loops' buffers ([`Gpu::state_textures`]): the persistent subgroup
//! loops write every vec4 of `h_all` (forward) or `da` (backward) to the same place in its
//! mirror, copied back into the buffer after the loop, and read everything they need from
//! mirrors, where lavapipe gathers them with vector instructions rather than lane by lane
//! (`shaders/state_textures.wgsl`).

use crate::error::Result;
use crate::gpu::Gpu;

/// Texels per row of a mirror: vec4 `i` of its buffer is texel `(i % TEXELS, i / TEXELS)`
/// (`TEXELS` in `shaders/state_textures.wgsl`).
pub(crate) const TEXELS: usize = 1024;

/// An `rgba32float` storage texture holding a buffer's first floats, four to a texel.
#[derive(Clone)]
pub(crate) struct StateTexture {
    view: wgpu::TextureView,
    texture: wgpu::Texture,
}

impl StateTexture {
    /// A mirror of a buffer's first `floats` values, or `None` where it would be taller than
    /// the adapter's largest 2D texture (the loops then read the buffer itself).
    pub fn new(gpu: &Gpu, what: &str, floats: usize) -> Result<Option<Self>> {
        let rows = floats.div_ceil(4 * TEXELS).max(1);
        if rows > gpu.limits().max_texture_dimension_2d as usize {
            return Ok(None);
        }
        let texture = gpu.scoped(what, |device| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(what),
                size: wgpu::Extent3d {
                    width: TEXELS as u32,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST
                    | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            })
        })?;
        Ok(Some(Self {
            view: texture.create_view(&Default::default()),
            texture,
        }))
    }

    /// The texture, for copies into and out of it.
    pub fn texture(&self) -> &wgpu::Texture {
        &self.texture
    }

    /// The view the kernels bind.
    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }
}
