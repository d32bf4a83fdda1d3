//! `rnn-wgpu info`: every adapter wgpu finds, and the one chosen.

use rnn_wgpu::gpu::describe;
use rnn_wgpu::{Error, Gpu, GpuError};

/// Lists every adapter with backend, device type, driver and the limits that matter here.
pub fn info() -> Result<(), Error> {
    let adapters = Gpu::enumerate();
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter {
            backends: "all".into(),
        }
        .into());
    }
    for (info, l, features) in adapters {
        println!("{}", describe(&info));
        println!(
            "  max buffer {} B, max storage binding {} B, max uniform binding {} B \
             ({} per kernel), workgroup memory {} B, {} invocations per workgroup, {} workgroups per dimension, \
             timestamp queries: {}, subgroups: {}",
            l.max_buffer_size,
            l.max_storage_buffer_binding_size,
            l.max_uniform_buffer_binding_size,
            l.max_uniform_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
                "yes"
            } else {
                "no"
            },
            if features.contains(wgpu::Features::SUBGROUP) {
                format!(
                    "{}-{} lanes",
                    info.subgroup_min_size, info.subgroup_max_size
                )
            } else {
                "no".into()
            }
        );
    }
    match Gpu::new() {
        Ok(g) => println!(
            "chosen: {} ({:?} kernels)",
            describe(&g.adapter_info()),
            g.kernel_style()
        ),
        Err(e) => println!("chosen: none ({e})"),
    }
    Ok(())
}
