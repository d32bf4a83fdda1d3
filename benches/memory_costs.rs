//! `cargo bench --bench memory_costs`: what one value costs a kernel on this adapter, by where
//! it lives (storage, uniform, workgroup memory; an address that varies across the lanes or one
//! the compiler sees is the same in all), and what one dispatch costs. Each kernel does nothing
//! but the access it measures, 256 times per invocation over 16 384 invocations; the table gives
//! nanoseconds per value (all cores together; for the multiply-adds, per lane's multiply-add) and each case against the scattered storage
//! load measured in the same run.
//!
//! The numbers decide kernel shapes on CPU adapters: on Mesa 22's lavapipe a storage access at
//! a varying address is a loop over the lanes, a uniform one a gather, an address made of
//! constants one scalar load (ARCHITECTURE.md, "lavapipe's costs"). Run it under another driver
//! with `VK_ICD_FILENAMES` pointing at its manifest.

use std::time::Instant;

use rnn_wgpu::Gpu;
use wgpu::util::DeviceExt;

/// Invocations per dispatch.
const INVOCATIONS: u32 = 16384;
/// Accesses per invocation.
const ACCESSES: u32 = 256;
/// Values in the buffer read from (a 64 KiB uniform window's worth).
const VALUES: usize = 16384;

/// The buffer a case binds at slot 1 (its declaration says how it is accessed).
#[derive(Clone, Copy, PartialEq)]
enum Source {
    Storage,
    Uniform,
    /// An `rgba32float` texture of 64 x 64 texels (the same values), sampled or storage.
    Texture,
    /// An `r32float` texture of 128 x 128 texels, bound as a read-write storage texture.
    TextureR32,
}

/// What a case's kernel reads or writes, and how.
struct Case {
    name: &'static str,
    /// The buffer at slot 1, if any.
    binding: Option<Source>,
    /// WGSL declaration of slot 1.
    decl: &'static str,
    /// The kernel's body: a loop of `ACCESSES` accesses, or [`constant_loads`]' written out.
    body: String,
    /// Values moved per access.
    width: u32,
}

fn kernel(case: &Case) -> String {
    format!(
        "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n{}\n\
         var<workgroup> wg: array<vec4<f32>, 1024>;\n\
         @compute @workgroup_size(64)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>, \
         @builtin(local_invocation_index) l: u32) {{\n\
         let gid = g.x;\n let x = vec4<f32>(f32(gid));\n var acc = vec4<f32>(0.0);\n{}\n\
         out[gid] = acc.x + acc.y + acc.z + acc.w;\n}}\n",
        case.decl, case.body
    )
}

/// `ACCESSES` loads at addresses written as constants, the same in every lane.
fn constant_loads() -> String {
    (0..ACCESSES)
        .map(|i| format!("acc += a[{}u] * x;\n", (i * 97) % (VALUES as u32 / 4)))
        .collect()
}

fn looped(body: &str) -> String {
    format!("for (var i = 0u; i < {ACCESSES}u; i++) {{ {body} }}")
}

fn cases() -> Vec<Case> {
    let vec4s = VALUES / 4;
    let scattered4 = format!("(gid * 7u + i * 97u) & {}u", vec4s - 1);
    let scattered1 = format!("(gid * 7u + i * 97u) & {}u", VALUES - 1);
    vec![
        Case {
            name: "storage vec4 load, address varies by lane",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;",
            body: looped(&format!("acc += a[{scattered4}] * x;")),
            width: 4,
        },
        Case {
            name: "storage f32 load, address varies by lane",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read> a: array<f32>;",
            body: looped(&format!("acc.x += a[{scattered1}] * x.x;")),
            width: 1,
        },
        Case {
            name: "storage f32 load, consecutive lanes",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read> a: array<f32>;",
            body: looped(&format!(
                "acc.x += a[(gid + i * 64u) & {}u] * x.x;",
                VALUES - 1
            )),
            width: 1,
        },
        Case {
            name: "uniform vec4 load, address varies by lane",
            binding: Some(Source::Uniform),
            decl: "@group(0) @binding(1) var<uniform> a: array<vec4<f32>, 4096>;",
            body: looped(&format!("acc += a[{scattered4}] * x;")),
            width: 4,
        },
        Case {
            name: "uniform vec4 load, consecutive lanes",
            binding: Some(Source::Uniform),
            decl: "@group(0) @binding(1) var<uniform> a: array<vec4<f32>, 4096>;",
            body: looped(&format!("acc += a[(gid + i * 97u) & {}u] * x;", vec4s - 1)),
            width: 4,
        },
        Case {
            name: "uniform vec4 load, same address in every lane",
            binding: Some(Source::Uniform),
            decl: "@group(0) @binding(1) var<uniform> a: array<vec4<f32>, 4096>;",
            body: looped(&format!("acc += a[(i * 97u) & {}u] * x;", vec4s - 1)),
            width: 4,
        },
        Case {
            name: "storage vec4 load, same address in every lane",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;",
            body: looped(&format!("acc += a[(i * 97u) & {}u] * x;", vec4s - 1)),
            width: 4,
        },
        Case {
            name: "function-array vec4 load, same index in every lane",
            binding: None,
            decl: "",
            body: format!(
                "var pa: array<vec4<f32>, 64>;\nfor (var j = 0u; j < 64u; j++) {{ pa[j] = x + vec4<f32>(f32(j)); }}\n{}",
                looped("acc += pa[(i * 97u) & 63u] * x;")
            ),
            width: 4,
        },
        Case {
            name: "function-array vec4 load, index varies by lane",
            binding: None,
            decl: "",
            body: format!(
                "var pa: array<vec4<f32>, 64>;\nfor (var j = 0u; j < 64u; j++) {{ pa[j] = x + vec4<f32>(f32(j)); }}\n{}",
                looped("acc += pa[(gid * 7u + i * 97u) & 63u] * x;")
            ),
            width: 4,
        },
        Case {
            name: "workgroup vec4 load, address varies by lane",
            binding: None,
            decl: "",
            body: format!(
                "wg[l] = x; workgroupBarrier();\n{}",
                looped("acc += wg[(l * 7u + i * 97u) & 1023u] * x;")
            ),
            width: 4,
        },
        Case {
            name: "storage vec4 load, constant address",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;",
            body: constant_loads(),
            width: 4,
        },
        Case {
            name: "uniform vec4 load, constant address",
            binding: Some(Source::Uniform),
            decl: "@group(0) @binding(1) var<uniform> a: array<vec4<f32>, 4096>;",
            body: constant_loads(),
            width: 4,
        },
        Case {
            name: "sampled texture rgba32f load, address varies by lane",
            binding: Some(Source::Texture),
            decl: "@group(0) @binding(1) var a: texture_2d<f32>;",
            body: looped(&format!(
                "let at = {scattered4}; acc += textureLoad(a, vec2<u32>(at & 63u, at >> 6u), 0) * x;"
            )),
            width: 4,
        },
        Case {
            name: "storage texture rgba32f read load, address varies by lane",
            binding: Some(Source::Texture),
            decl: "@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read>;",
            body: looped(&format!(
                "let at = {scattered4}; acc += textureLoad(a, vec2<u32>(at & 63u, at >> 6u)) * x;"
            )),
            width: 4,
        },
        Case {
            name: "storage texture rgba32f read_write load, address varies",
            binding: Some(Source::Texture),
            decl: "@group(0) @binding(1) var a: texture_storage_2d<rgba32float, read_write>;",
            body: looped(&format!(
                "let at = {scattered4}; acc += textureLoad(a, vec2<u32>(at & 63u, at >> 6u)) * x;"
            )),
            width: 4,
        },
        Case {
            name: "storage texture rgba32f store, address varies",
            binding: Some(Source::Texture),
            decl: "@group(0) @binding(1) var a: texture_storage_2d<rgba32float, write>;",
            body: looped(&format!(
                "let at = {scattered4}; textureStore(a, vec2<u32>(at & 63u, at >> 6u), x + vec4<f32>(f32(i)));"
            )),
            width: 4,
        },
        Case {
            name: "storage texture r32f read_write load, address varies",
            binding: Some(Source::TextureR32),
            decl: "@group(0) @binding(1) var a: texture_storage_2d<r32float, read_write>;",
            body: looped(&format!(
                "let at = {scattered1}; acc.x += textureLoad(a, vec2<u32>(at & 127u, at >> 7u)).x * x.x;"
            )),
            width: 1,
        },
        Case {
            name: "storage texture r32f store, address varies",
            binding: Some(Source::TextureR32),
            decl: "@group(0) @binding(1) var a: texture_storage_2d<r32float, read_write>;",
            body: looped(&format!(
                "let at = {scattered1}; textureStore(a, vec2<u32>(at & 127u, at >> 7u), vec4<f32>(x.x + f32(i)));"
            )),
            width: 1,
        },
        Case {
            name: "storage vec4 store, address varies by lane",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read_write> a: array<vec4<f32>>;",
            body: looped(&format!("a[{scattered4}] = x + vec4<f32>(f32(i));")),
            width: 4,
        },
        Case {
            name: "storage f32 store, address varies by lane",
            binding: Some(Source::Storage),
            decl: "@group(0) @binding(1) var<storage, read_write> a: array<f32>;",
            body: looped(&format!("a[{scattered1}] = x.x + f32(i);")),
            width: 1,
        },
        Case {
            name: "multiply-add only, one chain (no memory)",
            binding: None,
            decl: "",
            body: looped("acc = acc * x + x;"),
            width: 4,
        },
        Case {
            name: "multiply-add only, 8 chains (no memory)",
            binding: None,
            decl: "",
            body: format!(
                "var c = array<vec4<f32>, 8>();\n{}\nacc = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];",
                looped(
                    "c[0] = c[0] * x + x; c[1] = c[1] * x + x; c[2] = c[2] * x + x; \
                     c[3] = c[3] * x + x; c[4] = c[4] * x + x; c[5] = c[5] * x + x; \
                     c[6] = c[6] * x + x; c[7] = c[7] * x + x;"
                )
            ),
            width: 32,
        },
        chains(2, false),
        chains(32, false),
        chains(8, true),
        chains(32, true),
    ]
}

/// Multiply-adds into `n` independent vec4 sums (`4 n` values a lane carries round the loop:
/// past the 16 vector registers, the rest live on the stack): `a * b + c`, or with `fused`
/// WGSL's `fma`, which the JIT makes one fused instruction where the other is a multiply and
/// an add.
fn chains(n: usize, fused: bool) -> Case {
    let updates: String = (0..n)
        .map(|i| match fused {
            false => format!("c[{i}] = c[{i}] * x + x; "),
            true => format!("c[{i}] = fma(c[{i}], x, x); "),
        })
        .collect();
    let sum: Vec<String> = (0..n).map(|i| format!("c[{i}]")).collect();
    let what = if fused { "fma" } else { "multiply-add" };
    Case {
        name: Box::leak(format!("{what} only, {n} vec4 chains (no memory)").into_boxed_str()),
        binding: None,
        decl: "",
        body: format!(
            "var c = array<vec4<f32>, {n}>();\n{}\nacc = {};",
            looped(&updates),
            sum.join(" + ")
        ),
        width: 4 * n as u32,
    }
}

/// Median seconds of `runs` submissions of `record`'s commands.
fn median_seconds(gpu: &Gpu, runs: usize, record: &dyn Fn(&mut wgpu::CommandEncoder)) -> f64 {
    let once = || {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        record(&mut encoder);
        let t = Instant::now();
        gpu.submit_and_wait("memory_costs", encoder)
            .expect("the probe kernel ran");
        t.elapsed().as_secs_f64()
    };
    once(); // compile and warm up
    let mut times: Vec<f64> = (0..runs).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// `source`'s `main` as a pipeline, with a bind group of `entries` for it.
fn pipeline_with(
    device: &wgpu::Device,
    label: &str,
    source: String,
    entries: &[wgpu::BindGroupEntry],
) -> (wgpu::ComputePipeline, wgpu::BindGroup) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries,
    });
    (pipeline, bind_group)
}

/// Records `times` dispatches of `groups` workgroups of the pipeline in one compute pass.
fn in_one_pass(
    encoder: &mut wgpu::CommandEncoder,
    (pipeline, bind_group): (&wgpu::ComputePipeline, &wgpu::BindGroup),
    times: u32,
    groups: u32,
) {
    let mut pass = encoder.begin_compute_pass(&Default::default());
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    for _ in 0..times {
        pass.dispatch_workgroups(groups, 1, 1);
    }
}

fn main() {
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    println!("adapter: {}", rnn_wgpu::gpu::describe(&gpu.adapter_info()));
    let device = gpu.device();
    let data: Vec<f32> = (0..VALUES).map(|i| i as f32 * 1e-3).collect();
    let make = |usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("memory_costs"),
            contents: bytemuck::cast_slice(&data),
            usage,
        })
    };
    let storage = make(wgpu::BufferUsages::STORAGE);
    let uniform = make(wgpu::BufferUsages::UNIFORM);
    let texture = |format, side: u32, usage| {
        let t = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("memory_costs texture"),
            size: wgpu::Extent3d {
                width: side,
                height: side,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        });
        t.create_view(&Default::default())
    };
    let rgba = texture(
        wgpu::TextureFormat::Rgba32Float,
        64,
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
    );
    let r32 = texture(
        wgpu::TextureFormat::R32Float,
        128,
        wgpu::TextureUsages::STORAGE_BINDING,
    );
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("memory_costs out"),
        size: u64::from(INVOCATIONS) * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });

    println!(
        "\nkernel (256 accesses per invocation, 16 384 invocations)        ns/value  vs first row"
    );
    let mut baseline = None;
    for case in cases() {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: out.as_entire_binding(),
        }];
        if let Some(source) = case.binding {
            let resource = match source {
                Source::Storage => storage.as_entire_binding(),
                Source::Uniform => uniform.as_entire_binding(),
                Source::Texture => wgpu::BindingResource::TextureView(&rgba),
                Source::TextureR32 => wgpu::BindingResource::TextureView(&r32),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: 1,
                resource,
            });
        }
        let (pipeline, bind_group) = pipeline_with(device, case.name, kernel(&case), &entries);
        let reps = 4;
        let seconds = median_seconds(&gpu, 5, &|encoder| {
            in_one_pass(encoder, (&pipeline, &bind_group), reps, INVOCATIONS / 64);
        }) / f64::from(reps);
        let values = f64::from(INVOCATIONS) * f64::from(ACCESSES) * f64::from(case.width);
        let ns = seconds * 1e9 / values;
        let base = *baseline.get_or_insert(ns);
        println!("{:<60} {:>9.3} {:>9.2}x", case.name, ns, ns / base);
    }

    // A dispatch of one small workgroup, many times: in one compute pass, and a pass each.
    let (pipeline, bind_group) = pipeline_with(
        device,
        "dispatch",
        "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n\
         @compute @workgroup_size(8)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>) { out[g.x] = f32(g.x); }"
            .into(),
        &[wgpu::BindGroupEntry {
            binding: 0,
            resource: out.as_entire_binding(),
        }],
    );
    let n = 2000;
    let one_pass = median_seconds(&gpu, 5, &|encoder| {
        in_one_pass(encoder, (&pipeline, &bind_group), n, 1);
    }) / f64::from(n);
    let pass_each = median_seconds(&gpu, 5, &|encoder| {
        for _ in 0..n {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }) / f64::from(n);
    println!(
        "\ndispatch of one 8-lane workgroup                                  us each  vs first row"
    );
    println!(
        "{:<60} {:>9.2} {:>9.2}x",
        "2000 in one compute pass",
        one_pass * 1e6,
        1.0
    );
    println!(
        "{:<60} {:>9.2} {:>9.2}x",
        "2000, a compute pass each",
        pass_each * 1e6,
        pass_each / one_pass
    );
}
