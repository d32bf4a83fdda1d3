//! `rnn-wgpu bench`: the benchmark shapes, every driver, beside the naive baseline.

use rnn_wgpu::bench::{self, Budget, Mode, SHAPES, Shape, Task};
use rnn_wgpu::model::ParamLayout;
use rnn_wgpu::{Driver, Error, Mlp, Nonlinearity, RnnConfig};

use super::{bad_arg, open_gpu};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this shape (repeatable): small, medium, large, long, stacked (medium at 1, 2 and 4
    /// layers), deepbench (DeepBench's twelve vanilla-RNN shapes, for real GPUs) or one of
    /// them such as deepbench-h1760-b16, or any shape as T,B,I,H,O.
    #[arg(long = "shape")]
    shapes: Vec<String>,
    /// Stacked layers for every shape (repeatable: each count is measured; `--shape
    /// stacked` is medium at 1, 2 and 4).
    #[arg(long = "layers")]
    layers: Vec<usize>,
    /// Run every layer in both directions.
    #[arg(long)]
    bidirectional: bool,
    /// Only this driver (repeatable): naive, per_step, persistent. The naive baseline, and
    /// with it the speed-up column, is measured only when listed or when none is given.
    #[arg(long = "driver")]
    drivers: Vec<String>,
    /// Only this mode.
    #[arg(long, value_enum)]
    mode: Option<ModeName>,
    /// Timed runs at least (medians are reported).
    #[arg(long, default_value_t = 5)]
    min_runs: usize,
    /// Seconds to keep timing at least, per shape, mode and driver.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
    /// Also time each phase on the GPU (input projection, loops, head and loss, weight
    /// gradients), where the adapter has timestamp queries.
    #[arg(long)]
    phases: bool,
    /// Instead: the wavefront experiment, a stack's forward loops layer after layer against
    /// all layers in one persistent dispatch, for every --shape (H a multiple of 4; input
    /// width H) at every --layers (default 2 and 4), register-blocked kernels without
    /// subgroups (RNN_WGPU_KERNELS=subgroup runs layer after layer with them).
    #[arg(long)]
    wavefront: bool,
    /// Instead: each --shape beside the same shape with I, H and O rounded up to multiples of
    /// 8, under each driver (default per_step and persistent) and mode, timed alternately
    /// (--rounds times each, the median of their medians): the time ratio shows the cost of
    /// odd sizes.
    #[arg(long)]
    vs_rounded: bool,
    /// Alternating rounds of --vs-rounded and --chunk.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Instead: each --shape run in chunks of this many steps (the states recomputed on the
    /// way back) beside the same shape in one piece, timed alternately (--rounds), with the
    /// device memory each takes; a shape too long for one piece is timed in chunks alone.
    #[arg(long, value_name = "STEPS")]
    chunk: Option<usize>,
    /// Instead: a real task's training step (forward, cross-entropy, backward, clipping,
    /// Adam) beside a baseline in the same run. char-lm: a character language model on
    /// --text (token ids against one-hot inputs); seq-class: one class per random sequence,
    /// the loss at the last step only (against the naive driver).
    #[arg(long, value_enum)]
    task: Option<TaskName>,
    /// Instead: each --shape with a deep input block of this many layers (and/or
    /// --output-depth), beside the plain model whose H gives the nearest parameter count,
    /// timed alternately (--rounds).
    #[arg(long, default_value_t = 0)]
    input_depth: usize,
    /// Width of the deep input block's layers [default: H].
    #[arg(long, requires = "input_depth")]
    input_width: Option<usize>,
    /// Instead: each --shape with a deep output block of this many layers (see
    /// --input-depth).
    #[arg(long, default_value_t = 0)]
    output_depth: usize,
    /// Width of the deep output block's layers [default: D·H].
    #[arg(long, requires = "output_depth")]
    output_width: Option<usize>,
    /// Instead: each --shape with a deep transition of this many layers (see --input-depth).
    #[arg(long, default_value_t = 0)]
    transition_depth: usize,
    /// Width between the deep transition's layers [default: H].
    #[arg(long, requires = "transition_depth")]
    transition_width: Option<usize>,
    /// With --transition-depth: its shortcut (DT(S)).
    #[arg(long)]
    skip: bool,
    /// The text of `--task char-lm`.
    #[arg(long, value_name = "FILE")]
    text: Option<std::path::PathBuf>,
    /// T of a task [default: char-lm 64, seq-class 256].
    #[arg(long)]
    seq_len: Option<usize>,
    /// B of a task.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// H of a task.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// I of `--task seq-class`.
    #[arg(long, default_value_t = 32)]
    input: usize,
    /// O of `--task seq-class`.
    #[arg(long, default_value_t = 10)]
    classes: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
enum TaskName {
    CharLm,
    SeqClass,
}

/// `--vs-rounded`: every shape against its rounded-up neighbour, alternating.
fn vs_rounded(
    a: &BenchArgs,
    shapes: &[Shape],
    modes: &[Mode],
    drivers: &[Driver],
    budget: &Budget,
) -> Result<(), Error> {
    let gpu = open_gpu()?;
    if !a.json {
        println!(
            "median ms of {} alternating rounds (each a median of timed runs after warm-up); \
             ratio: odd over rounded\n",
            a.rounds.max(1)
        );
        println!(
            "{:<22} {:<22} {:<10} {:<10} {:>10} {:>12} {:>7}",
            "shape (T,B,I,H,O)", "rounded up to 8", "mode", "driver", "ms", "rounded ms", "ratio"
        );
    }
    let up = |v: usize| v.next_multiple_of(8);
    for &s in shapes {
        let r = Shape {
            input: up(s.input),
            hidden: up(s.hidden),
            output: up(s.output),
            ..s
        };
        let label = |s: &Shape| {
            format!(
                "{},{},{},{},{}",
                s.steps, s.batch, s.input, s.hidden, s.output
            )
        };
        let mut odd = bench::Workload::new(&gpu, s)?;
        let mut round = bench::Workload::new(&gpu, r)?;
        // Each driver both shapes can run, of those asked for (default: all).
        let (a_ok, b_ok) = (bench::drivers_for(&gpu, s), bench::drivers_for(&gpu, r));
        let drivers: Vec<Driver> = a_ok
            .into_iter()
            .filter(|d| b_ok.contains(d) && (drivers.is_empty() || drivers.contains(d)))
            .collect();
        for &mode in modes {
            for &d in &drivers {
                let (mut t_odd, mut t_round) = (Vec::new(), Vec::new());
                for _ in 0..a.rounds.max(1) {
                    t_odd.push(odd.measure(mode, d, budget)?.ms);
                    t_round.push(round.measure(mode, d, budget)?.ms);
                }
                let (mo, mr) = (bench::median(t_odd), bench::median(t_round));
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "shape": label(&s), "rounded": label(&r), "mode": mode.name(),
                            "driver": d.name(), "ms": mo, "rounded_ms": mr, "ratio": mo / mr,
                            "rounds": a.rounds.max(1),
                            "adapter": gpu.adapter_info().name,
                        })
                    );
                } else {
                    println!(
                        "{:<22} {:<22} {:<10} {:<10} {:>10.3} {:>12.3} {:>6.2}x",
                        label(&s),
                        label(&r),
                        mode.name(),
                        d.name(),
                        mo,
                        mr,
                        mo / mr
                    );
                }
            }
        }
    }
    Ok(())
}

/// `--chunk`: every shape in chunks of `len` steps against the same shape in one piece.
fn chunked(
    a: &BenchArgs,
    len: usize,
    shapes: &[Shape],
    modes: &[Mode],
    budget: &Budget,
) -> Result<(), Error> {
    if len == 0 {
        return Err(bad_arg("--chunk", "a chunk needs at least one step"));
    }
    let gpu = open_gpu()?;
    if !a.json {
        println!(
            "median ms of {} alternating rounds (each a median of timed runs after warm-up), \
             device memory each model took (MB, wgpu's allocator); ratio: chunked over whole\n",
            a.rounds.max(1)
        );
        println!(
            "{:<24} {:>6} {:<10} {:>11} {:>10} {:>7} {:>11} {:>9}",
            "shape (T,B,I,H,O)",
            "chunk",
            "mode",
            "chunked ms",
            "whole ms",
            "ratio",
            "chunked MB",
            "whole MB"
        );
    }
    let mb = |v: Option<u64>| v.map_or("?".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
    if let Some(s) = shapes.iter().find(|s| s.steps <= len) {
        return Err(bad_arg(
            "--chunk",
            format!(
                "{len} steps is not shorter than T = {} of {}",
                s.steps,
                s.label()
            ),
        ));
    }
    for &s in shapes {
        // Each model's memory: what the allocator holds more after its first run.
        let made = |chunk| -> Result<(bench::Workload, Option<u64>), Error> {
            let before = gpu.allocated_bytes()?;
            let mut w = bench::Workload::new(&gpu, s)?;
            w.set_chunk_steps(chunk)?;
            let once = Budget {
                warmup: 0,
                min_runs: 1,
                min_time: std::time::Duration::ZERO,
                max_runs: 1,
                phases: false,
            };
            w.measure(Mode::Forward, Driver::Auto, &once)?;
            let after = gpu.allocated_bytes()?;
            Ok((w, before.zip(after).map(|(b, a)| a.saturating_sub(b))))
        };
        let (mut c, c_mem) = made(Some(len))?;
        // A sequence too long for one piece runs in chunks anyway: then there is no whole.
        let (mut w, w_mem) = if c.chunk_len(None).is_none() {
            let (w, m) = made(None)?;
            (Some(w), m)
        } else {
            (None, None)
        };
        for &mode in modes {
            let (mut tc, mut tw) = (Vec::new(), Vec::new());
            for _ in 0..a.rounds.max(1) {
                tc.push(c.measure(mode, Driver::Auto, budget)?.ms);
                if let Some(w) = w.as_mut() {
                    tw.push(w.measure(mode, Driver::Auto, budget)?.ms);
                }
            }
            let mc = bench::median(tc);
            let mw = (!tw.is_empty()).then(|| bench::median(tw));
            let label = format!(
                "{},{},{},{},{}",
                s.steps, s.batch, s.input, s.hidden, s.output
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "shape": label, "chunk": len, "mode": mode.name(),
                        "chunked_ms": mc, "whole_ms": mw, "ratio": mw.map(|m| mc / m),
                        "chunked_bytes": c_mem, "whole_bytes": w_mem,
                        "rounds": a.rounds.max(1), "adapter": gpu.adapter_info().name,
                    })
                );
            } else {
                println!(
                    "{:<24} {:>6} {:<10} {:>11.3} {:>10} {:>7} {:>11} {:>9}",
                    label,
                    len,
                    mode.name(),
                    mc,
                    mw.map_or("-".into(), |m| format!("{m:.3}")),
                    mw.map_or("-".into(), |m| format!("{:.2}x", mc / m)),
                    mb(c_mem),
                    if w.is_some() { mb(w_mem) } else { "-".into() },
                );
            }
        }
    }
    Ok(())
}

/// `--task`: the task's forms, the first the baseline.
fn task(a: &BenchArgs, name: TaskName, budget: &Budget) -> Result<(), Error> {
    if [a.batch, a.hidden, a.input, a.classes].contains(&0) || a.seq_len == Some(0) {
        return Err(bad_arg(
            "--task",
            "--seq-len, --batch, --hidden, --input and --classes must be at least 1",
        ));
    }
    let text = match (name, &a.text) {
        (TaskName::CharLm, Some(p)) => {
            std::fs::read_to_string(p).map_err(|source| rnn_wgpu::FileError::Io {
                path: p.display().to_string(),
                source,
            })?
        }
        (TaskName::CharLm, None) => {
            return Err(bad_arg(
                "--task",
                "char-lm needs --text FILE (any UTF-8 text)",
            ));
        }
        (TaskName::SeqClass, _) => String::new(),
    };
    let task = match name {
        TaskName::CharLm => Task::CharLm {
            text: &text,
            steps: a.seq_len.unwrap_or(64),
            batch: a.batch,
            hidden: a.hidden,
        },
        TaskName::SeqClass => Task::SeqClass {
            steps: a.seq_len.unwrap_or(256),
            batch: a.batch,
            input: a.input,
            hidden: a.hidden,
            classes: a.classes,
        },
    };
    let gpu = open_gpu()?;
    let all = rnn_wgpu::bench::tasks::measure(&gpu, task, budget)?;
    let base = &all[0];
    if !a.json {
        println!(
            "training step (forward, cross-entropy, backward, clipping, Adam), median ms after \
             warm-up; speed-up over the first row, measured in this run\n"
        );
        println!(
            "{:<10} {:<18} {:<24} {:>10} {:>12} {:>9} {:>9}",
            "task", "form", "T,B,I,H,O", "ms", "samples/s", "speed-up", "loss"
        );
    }
    for m in &all {
        if a.json {
            println!("{}", m.to_json(&gpu, (m.form != base.form).then_some(base)));
        } else {
            let shape: Vec<String> = m.shape.iter().map(|v| v.to_string()).collect();
            println!(
                "{:<10} {:<18} {:<24} {:>10.3} {:>12.0} {:>8.2}x {:>9.4}",
                m.task,
                m.form,
                shape.join(","),
                m.ms,
                m.samples_per_s,
                base.ms / m.ms,
                m.loss
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum ModeName {
    Forward,
    #[value(alias = "train-step")]
    TrainStep,
}

/// A shape given as `T,B,I,H,O` (all at least 1), named after itself.
fn custom_shape(s: &str) -> Option<Shape> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [t, b, i, h, o] if !v.contains(&0) => {
            // The name lives as long as the program, which runs one benchmark and exits.
            let name: &'static str = Box::leak(s.to_string().into_boxed_str());
            Some(Shape::new(name, t, b, i, h, o))
        }
        _ => None,
    }
}

/// `--wavefront`: each shape's stack both ways, medians of alternating runs.
fn wavefront(a: &BenchArgs, gpu: &rnn_wgpu::Gpu, shapes: &[Shape]) -> Result<(), Error> {
    // The wavefront kernel is register-blocked without subgroups: layer by layer runs the same
    // family, unless RNN_WGPU_KERNELS picks another style for it (subgroup: the default on
    // lavapipe).
    let gpu = if std::env::var_os("RNN_WGPU_KERNELS").is_some() {
        gpu.clone()
    } else {
        gpu.with_kernels(rnn_wgpu::KernelStyle::Direct)
    };
    println!(
        "adapter: {}\nforward of L stacked tanh layers (input width H), medians of {} \
         alternating runs: layer by layer (each layer's input projection one multiply over all \
         T·B rows, then its persistent loop) against one persistent dispatch for every layer \
         (the projections inside the loop)\n",
        rnn_wgpu::gpu::describe(&gpu.adapter_info()),
        a.min_runs.max(1)
    );
    println!(
        "shape (T, B, H)      L   layer by layer ms   wavefront ms   wavefront / layers   max |diff|"
    );
    let layers = if a.layers.is_empty() {
        vec![2, 4]
    } else {
        a.layers.clone()
    };
    // --layers already multiplied the shapes: each (T, B, H) once.
    let mut seen = Vec::new();
    for s in shapes {
        if seen.contains(&(s.steps, s.batch, s.hidden)) {
            continue;
        }
        seen.push((s.steps, s.batch, s.hidden));
        for &l in &layers {
            let r = bench::wavefront(&gpu, (s.steps, s.batch, s.hidden, l), a.min_runs.max(1))?;
            println!(
                "{:<20} {l:>2} {:>19.3} {:>14.3} {:>19.2}x {:>12.1e}",
                format!("{}, {}, {}", s.steps, s.batch, s.hidden),
                r.layer_by_layer_ms,
                r.wavefront_ms,
                r.wavefront_ms / r.layer_by_layer_ms,
                r.max_diff
            );
        }
    }
    Ok(())
}

/// Runs the benchmarks and prints a table or JSON lines.
pub fn bench(a: &BenchArgs) -> Result<(), Error> {
    let shapes: Vec<Shape> = if a.shapes.is_empty() {
        SHAPES.to_vec()
    } else {
        let mut all = Vec::new();
        for n in &a.shapes {
            if let Some(custom) = custom_shape(n) {
                all.push(custom);
                continue;
            }
            all.extend(Shape::group(n).ok_or_else(|| {
                bad_arg(
                    "--shape",
                    format!(
                        "{n:?} is not one of small, medium, large, long, stacked, deepbench, \
                         deepbench-h<1760|2048|2560>-b<16|32|64|128>, or T,B,I,H,O"
                    ),
                )
            })?);
        }
        all
    };
    if a.layers.contains(&0) {
        return Err(bad_arg("--layers", "must be at least 1"));
    }
    let shapes: Vec<Shape> = if a.layers.is_empty() {
        shapes
    } else {
        shapes
            .iter()
            .flat_map(|s| a.layers.iter().map(|&l| s.with_layers(l)))
            .collect()
    };
    let shapes: Vec<Shape> = shapes
        .into_iter()
        .map(|s| s.with_bidirectional(a.bidirectional || s.bidirectional))
        .collect();
    let modes = match a.mode {
        Some(ModeName::Forward) => vec![Mode::Forward],
        Some(ModeName::TrainStep) => vec![Mode::TrainStep],
        None => vec![Mode::Forward, Mode::TrainStep],
    };
    let drivers = a
        .drivers
        .iter()
        .map(|n| {
            Driver::from_name(n)
                .filter(|d| *d != Driver::Auto)
                .ok_or_else(|| {
                    bad_arg(
                        "--driver",
                        format!("{n:?} is not naive, per_step or persistent"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let budget = Budget {
        min_runs: a.min_runs.max(1),
        min_time: std::time::Duration::from_secs_f64(a.min_seconds.max(0.0)),
        phases: a.phases,
        ..Budget::default()
    };
    let blocks_asked = a.input_depth > 0 || a.output_depth > 0 || a.transition_depth > 0 || a.skip;
    if blocks_asked && (a.task.is_some() || a.vs_rounded || a.chunk.is_some() || a.wavefront) {
        return Err(bad_arg(
            "--input-depth",
            "the deeper blocks are timed on their own: leave out --task, --vs-rounded, --chunk \
             and --wavefront",
        ));
    }
    if blocks_asked && !a.drivers.is_empty() {
        return Err(bad_arg(
            "--driver",
            "the deeper blocks are timed under the automatic driver: leave --driver out",
        ));
    }
    if let Some(name) = a.task {
        return task(a, name, &budget);
    }
    if a.vs_rounded {
        return vs_rounded(a, &shapes, &modes, &drivers, &budget);
    }
    if let Some(len) = a.chunk {
        return chunked(a, len, &shapes, &modes, &budget);
    }
    if blocks_asked {
        return blocks(a, &shapes, &modes, &budget);
    }
    let gpu = open_gpu()?;
    if a.wavefront {
        return wavefront(a, &gpu, &shapes);
    }
    if a.phases && !gpu.has_timestamps() {
        eprintln!("this adapter has no timestamp queries: phases are not timed, wall time only");
    }
    if !a.json {
        println!(
            "ms: median wall time of one call, submit to completion, after a warm-up; \
             samples/s: T·B per second;\n\
             vs naive: the naive driver's time (one submit and wait per step) over this one's, \
             in this run;\n\
             rec. TFLOP/s (forward only): the recurrence's 2·B·H²·T per layer and direction \
             per second, as DeepBench counts.\n"
        );
        println!(
            "{:<24} {:<10} {:<10} {:>10} {:>12} {:>9} {:>12}",
            "shape", "mode", "driver", "ms", "samples/s", "vs naive", "rec. TFLOP/s"
        );
    }
    let mut last_shape = String::new();
    bench::run(&gpu, &shapes, &modes, &drivers, &budget, |m, base| {
        if a.json {
            println!("{}", m.to_json(&gpu, base));
        } else {
            let label = m.shape.label();
            if label != last_shape {
                let sh = &m.shape;
                println!(
                    "{label}: T = {}, B = {}, I = {}, H = {}, O = {}",
                    sh.steps, sh.batch, sh.input, sh.hidden, sh.output
                );
                last_shape = label;
            }
            let ratio = match (base, m.driver) {
                (Some(b), _) => format!("{:.2}x", b.ms / m.ms),
                (None, Driver::Naive) => "1.00x".to_string(),
                (None, _) => "-".to_string(),
            };
            let tflops = match m.mode {
                Mode::Forward => format!("{:.4}", m.shape.recurrent_flops() / m.ms / 1e9),
                Mode::TrainStep => String::new(),
            };
            println!(
                "{:<24} {:<10} {:<10} {:>10.3} {:>12.0} {:>9} {:>12}",
                m.shape.label(),
                m.mode.name(),
                m.driver.name(),
                m.ms,
                m.samples_per_s,
                ratio,
                tflops
            );
            if let Some(Some(phases)) = &m.phases {
                let parts: Vec<String> = phases
                    .iter()
                    .map(|(name, ms)| format!("{name} {ms:.3}"))
                    .collect();
                println!("    GPU ms per phase: {}", parts.join(", "));
            }
        }
    })?;
    Ok(())
}

/// Each shape with the deeper blocks the flags ask for, beside the plain model of the nearest
/// parameter count (its H searched) and the plain model of the same H, timed alternately;
/// the blocks' extra time over the same-H model against the FLOPs they add.
fn blocks(a: &BenchArgs, shapes: &[Shape], modes: &[Mode], budget: &Budget) -> Result<(), Error> {
    for (flag, width_flag, depth, width) in [
        (
            "--input-depth",
            "--input-width",
            a.input_depth,
            a.input_width,
        ),
        (
            "--transition-depth",
            "--transition-width",
            a.transition_depth,
            a.transition_width,
        ),
        (
            "--output-depth",
            "--output-width",
            a.output_depth,
            a.output_width,
        ),
    ] {
        if depth > rnn_wgpu::MAX_BLOCK_DEPTH {
            return Err(bad_arg(
                flag,
                format!("{depth} is more than {} layers", rnn_wgpu::MAX_BLOCK_DEPTH),
            ));
        }
        if width == Some(0) {
            return Err(bad_arg(width_flag, "must be at least 1"));
        }
    }
    if a.skip && a.transition_depth == 0 {
        return Err(bad_arg(
            "--skip",
            "is the shortcut beside a deep transition; give --transition-depth 1 or more",
        ));
    }
    let gpu = open_gpu()?;
    if !a.json {
        println!(
            "median ms of {} alternating rounds (each a median of timed runs after warm-up); \
             plain: the model without blocks whose H gives the nearest parameter count, ratio \
             the blocks' time over it; same H: the plain model of the blocks' H; extra \
             GFLOP/s: the FLOPs the blocks add (forward, or forward and backward at 3x) over \
             the time they add to the same-H model\n",
            a.rounds.max(1)
        );
        println!(
            "{:<20} {:<22} {:<10} {:>7} {:>9} {:>7} {:>7} {:>9} {:>7} {:>9} {:>8}",
            "shape (T,B,I,H,O)",
            "blocks",
            "mode",
            "params",
            "ms",
            "plain H",
            "params",
            "plain ms",
            "ratio",
            "same H ms",
            "extra GF/s"
        );
    }
    for &s in shapes {
        let plain = |h: usize| {
            RnnConfig::new(s.input, h, s.output)
                .with_layers(s.layers)
                .with_bidirectional(s.bidirectional)
        };
        let top = s.hidden * if s.bidirectional { 2 } else { 1 };
        let mlp = |depth: usize, width: Option<usize>, default: usize| {
            if depth == 0 {
                Mlp::NONE
            } else {
                Mlp::new(depth, width.unwrap_or(default), Nonlinearity::Tanh)
            }
        };
        let deep = plain(s.hidden)
            .with_deep_input(mlp(a.input_depth, a.input_width, s.hidden))
            .with_deep_transition(
                mlp(a.transition_depth, a.transition_width, s.hidden),
                a.skip,
            )
            .with_deep_output(mlp(a.output_depth, a.output_width, top));
        let count = |c: &RnnConfig| ParamLayout::new(c).len();
        let want = count(&deep);
        let h_plain = (1..=8 * s.hidden)
            .min_by_key(|&h| count(&plain(h)).abs_diff(want))
            .unwrap_or(s.hidden);
        // Forward FLOPs the blocks add per row (every layer's product, 2 per multiply-add).
        let block_flops = {
            let d = if s.bidirectional { 2 } else { 1 };
            let linear = |m: Mlp, first: usize, last: Option<usize>| -> usize {
                (0..m.depth)
                    .map(|j| {
                        let ni = if j == 0 { first } else { m.width };
                        let no = match last {
                            Some(l) if j + 1 == m.depth => l,
                            _ => m.width,
                        };
                        2 * ni * no
                    })
                    .sum()
            };
            let t = deep.deep_transition;
            let skip = if deep.skip {
                2 * s.hidden * s.hidden
            } else {
                0
            };
            // The bottom layer's and the head's products change width with the blocks: their
            // difference counts too (negative where a block narrows them).
            let f = |v: usize| v as f64;
            let i_extra = f(linear(deep.deep_input, s.input, None))
                + 2.0 * f(s.hidden * d) * (f(deep.layer_input(0)) - f(s.input));
            let o_extra = f(linear(deep.deep_output, top, None))
                + 2.0 * f(s.output) * (f(deep.head_input()) - f(top));
            let t_extra = f(s.layers * d * (linear(t, s.hidden, Some(s.hidden)) + skip));
            i_extra + t_extra + o_extra
        };
        let mut with_blocks = bench::Workload::with_config(&gpu, s, deep)?;
        let mut without = bench::Workload::with_config(&gpu, s, plain(h_plain))?;
        let mut same_h = bench::Workload::with_config(&gpu, s, plain(s.hidden))?;
        let t = deep.deep_transition;
        let label = format!(
            "i{}x{} t{}x{}{} o{}x{}",
            deep.deep_input.depth,
            deep.deep_input.width,
            t.depth,
            t.width,
            if deep.skip { "s" } else { "" },
            deep.deep_output.depth,
            deep.deep_output.width
        );
        for &mode in modes {
            let (mut bt, mut pt, mut st) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..a.rounds.max(1) {
                bt.push(with_blocks.measure(mode, Driver::Auto, budget)?.ms);
                pt.push(without.measure(mode, Driver::Auto, budget)?.ms);
                st.push(same_h.measure(mode, Driver::Auto, budget)?.ms);
            }
            let (b_ms, p_ms, s_ms) = (bench::median(bt), bench::median(pt), bench::median(st));
            let passes = if mode == Mode::Forward { 1.0 } else { 3.0 };
            let flops = block_flops * passes * (s.steps * s.batch) as f64;
            let extra_ms = b_ms - s_ms;
            let gflops = if extra_ms > 0.0 {
                flops / (extra_ms * 1e-3) / 1e9
            } else {
                f64::INFINITY
            };
            let shape = format!(
                "{},{},{},{},{}",
                s.steps, s.batch, s.input, s.hidden, s.output
            );
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "shape": shape, "layers": s.layers, "bidirectional": s.bidirectional,
                        "deep_input": [deep.deep_input.depth, deep.deep_input.width],
                        "deep_transition": [t.depth, t.width], "skip": deep.skip,
                        "deep_output": [deep.deep_output.depth, deep.deep_output.width],
                        "mode": mode.name(), "params": want, "ms": b_ms,
                        "plain_hidden": h_plain, "plain_params": count(&plain(h_plain)),
                        "plain_ms": p_ms, "ratio": b_ms / p_ms, "same_hidden_ms": s_ms,
                        "extra_flops": flops, "extra_gflops_per_s": gflops,
                        "rounds": a.rounds.max(1), "adapter": gpu.adapter_info().name,
                    })
                );
            } else {
                println!(
                    "{:<20} {:<22} {:<10} {:>7} {:>9.2} {:>7} {:>7} {:>9.2} {:>6.2}x {:>9.2} {:>8.2}",
                    shape,
                    label,
                    mode.name(),
                    want,
                    b_ms,
                    h_plain,
                    count(&plain(h_plain)),
                    p_ms,
                    b_ms / p_ms,
                    s_ms,
                    gflops
                );
            }
        }
    }
    Ok(())
}
