//! Memory stays flat over long runs (issue #9): resident memory and wgpu's allocator report
//! after many training steps, forward passes, gradient and evaluation calls and generated
//! characters, against their values after a warm-up. Measured in a child process of its own
//! (this test binary, running only [`measure_in_this_process`]), since tests running beside
//! it allocate too.

use std::process::Command;

use rnn_wgpu::text::Generator;
use rnn_wgpu::{
    Driver, Gpu, KernelStyle, Loss, Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig,
    Target, Tensor, task,
};

use crate::common::gpu;

/// Growth allowed between the warm-up and the last call: "a few megabytes". Today's leak on
/// lavapipe was about 0.5 MB per training step.
const SLACK_BYTES: i64 = 4 << 20;
/// Calls before the first reading.
const WARM_UP: usize = 100;

/// Resident memory of process `pid` (`"self"` for this one), in bytes (Linux:
/// `/proc/PID/status`).
#[cfg(target_os = "linux")]
fn resident_bytes_of(pid: &str) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of this process, in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<i64> {
    resident_bytes_of("self")
}

#[cfg(not(target_os = "linux"))]
fn resident_bytes() -> Option<i64> {
    None
}

/// Resident memory and the bytes wgpu's allocator holds, after all submitted work is done.
fn reading(gpu: &Gpu) -> (Option<i64>, Option<u64>) {
    gpu.wait("memory reading", None).expect("device idle");
    let allocated = gpu
        .device()
        .generate_allocator_report()
        .map(|r| r.total_allocated_bytes);
    (resident_bytes(), allocated)
}

/// Calls `step` `calls` times, reads memory after [`WARM_UP`] calls and after the last, and
/// fails when either grew.
fn check_flat(gpu: &Gpu, what: &str, calls: usize, mut step: impl FnMut()) {
    let start = std::time::Instant::now();
    for _ in 0..WARM_UP {
        step();
    }
    let (rss0, alloc0) = reading(gpu);
    for _ in WARM_UP..calls {
        step();
    }
    let (rss1, alloc1) = reading(gpu);
    let mb = |b: i64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "memory: {what}: resident {} -> {} MB, wgpu allocator {alloc0:?} -> {alloc1:?} bytes \
         (calls {WARM_UP} -> {calls}, {:.1} s)",
        rss0.map_or("?".into(), |b| format!("{:.1}", mb(b))),
        rss1.map_or("?".into(), |b| format!("{:.1}", mb(b))),
        start.elapsed().as_secs_f64()
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        assert!(
            b - a <= SLACK_BYTES,
            "{what}: resident memory grew {:.1} MB over {} calls ({:.0} KB a call)",
            mb(b - a),
            calls - WARM_UP,
            (b - a) as f64 / 1024.0 / (calls - WARM_UP) as f64
        );
    }
    assert!(
        alloc1 <= alloc0,
        "{what}: wgpu's allocator grew from {alloc0:?} to {alloc1:?} bytes"
    );
    assert!(
        rss0.is_some() || alloc0.is_some(),
        "{what}: neither resident memory nor an allocator report can be read on this platform"
    );
}

/// The shape: the sine task, T steps (64 there), B = 32, H = 32 (on lavapipe B = 32
/// is where the uniform-inlining leak showed, at any T).
fn sine(gpu: &Gpu, t: usize) -> (Tensor, Tensor) {
    let b = 32;
    let data = task::sine(t, b, 0.05, 1);
    (
        Tensor::from_slice(gpu, &[t, b, 1], &data.x).expect("x"),
        Tensor::from_slice(gpu, &[t, b, 1], &data.y).expect("y"),
    )
}

fn model(gpu: &Gpu, driver: Driver) -> Rnn {
    let mut rnn = Rnn::new(gpu, RnnConfig::new(1, 32, 1), 7).expect("model");
    rnn.set_driver(driver);
    rnn
}

fn train(gpu: &Gpu, what: &str, t: usize, driver: Driver, kind: OptimizerKind, calls: usize) {
    let (x, y) = sine(gpu, t);
    let mut rnn = model(gpu, driver);
    let mut opt = Optimizer::new(
        &rnn,
        OptimizerConfig {
            kind,
            clip: Some(1.0),
            clip_value: None,
            weight_decay: 1e-4,
        },
    )
    .expect("optimizer");
    let mut n = 0;
    check_flat(gpu, what, calls, || {
        rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
            .expect("train step");
        // The loss read back every tenth step, as `train` logs it.
        n += 1;
        if n % 10 == 0 {
            rnn.last_loss().expect("loss");
        }
    });
}

/// The measurement itself; run alone in a child process by [`memory_stays_flat`].
#[test]
#[ignore = "run in a process of its own by memory_stays_flat"]
fn measure_in_this_process() {
    let gpu = gpu();
    let adam = OptimizerKind::adam(1e-3);
    let sgd = OptimizerKind::sgd(1e-2, 0.9);
    // The paths a long run repeats, 1000 calls each.
    train(&gpu, "train_step, Adam, auto", 64, Driver::Auto, adam, 1000);
    train(
        &gpu,
        "train_step, SGD, per-step",
        64,
        Driver::PerStep,
        sgd,
        1000,
    );
    let (x, y) = sine(&gpu, 64);
    let mut rnn = model(&gpu, Driver::Auto);
    check_flat(&gpu, "forward", 1000, || {
        rnn.forward(&x, None).expect("forward");
    });
    check_flat(&gpu, "loss_and_gradients", 1000, || {
        rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
            .expect("gradients");
    });
    check_flat(&gpu, "evaluate", 1000, || {
        rnn.evaluate(&x, None, Target::Values(&y), Loss::mse())
            .expect("evaluate");
    });
    // `sample`'s generator: one forward, one copy and one read-back per character.
    let vocab: Vec<char> = "abcdefg".chars().collect();
    let mut lm = Rnn::new(&gpu, RnnConfig::new(vocab.len(), 24, vocab.len()), 3).expect("lm");
    let mut g = Generator::new(&mut lm, vocab, 5).expect("generator");
    g.feed('a').expect("prime");
    check_flat(&gpu, "generated characters", 1000, || {
        g.next_char(0.8).expect("next character");
    });
    // Token-id inputs (the gather and scatter-add kernels, ids and their sorted positions
    // uploaded every step) on an odd H (the padded plans: parameters padded in, gradients
    // cropped out, every step).
    {
        let (t, b, v) = (32, 8, 11);
        let mut lm = Rnn::new(&gpu, RnnConfig::new(v, 13, v), 4).expect("model");
        let mut opt = Optimizer::new(&lm, OptimizerKind::adam(1e-3)).expect("optimizer");
        let mut ids = rnn_wgpu::ClassIds::from_slice(&gpu, &[t, b], &vec![0; t * b]).expect("x");
        let y = rnn_wgpu::ClassIds::from_slice(&gpu, &[t, b], &vec![1; t * b]).expect("y");
        let mut k = 0i64;
        check_flat(&gpu, "train_step on token ids, H = 13 padded", 300, || {
            k += 1;
            let xs: Vec<i64> = (0..(t * b) as i64).map(|r| (r + k) % v as i64).collect();
            ids.write(&xs).expect("ids");
            lm.train_step(
                &ids,
                None,
                Target::Classes(&y),
                Loss::cross_entropy(),
                &mut opt,
            )
            .expect("train step");
        });
    }
    // A stacked bidirectional model with dropout (its plans add direction and dropout
    // kernels and a dropout seed written every step).
    {
        let (x, y) = sine(&gpu, 16);
        let config = RnnConfig::new(1, 16, 1)
            .with_layers(2)
            .with_bidirectional(true)
            .with_dropout(0.2);
        let mut rnn = Rnn::new(&gpu, config, 9).expect("model");
        let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(1e-3)).expect("optimizer");
        check_flat(
            &gpu,
            "train_step, 2 layers, bidirectional, dropout",
            300,
            || {
                rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
                    .expect("train step");
            },
        );
    }
    // Every deeper block at once: the fused deep transition with its shortcut (its weights laid
    // out again every step), residual deep input and output blocks.
    {
        let (x, y) = sine(&gpu, 16);
        let tanh = rnn_wgpu::Nonlinearity::Tanh;
        let config = RnnConfig::new(1, 16, 1)
            .with_deep_input(rnn_wgpu::Mlp::new(2, 8, tanh).with_residual(true))
            .with_deep_transition(rnn_wgpu::Mlp::new(2, 8, tanh), true)
            .with_deep_output(rnn_wgpu::Mlp::new(2, 8, tanh).with_residual(true));
        let mut rnn = Rnn::new(&gpu, config, 10).expect("model");
        let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(1e-3)).expect("optimizer");
        check_flat(&gpu, "train_step, deeper blocks", 300, || {
            rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
                .expect("train step");
        });
    }
    // A sequence run in chunks (a shorter tail chunk too), with a masked mean: both sweeps,
    // the counted rows, the whole sequence's scale and the gradients added up every step.
    {
        let (x, y) = sine(&gpu, 70);
        let mask = Tensor::from_slice(&gpu, &[70, 32], &vec![0.5; 70 * 32]).expect("mask");
        let mut rnn = model(&gpu, Driver::Auto);
        rnn.set_chunk_steps(Some(16)).expect("chunks");
        let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(1e-3)).expect("optimizer");
        let target = Target::Values(&y).with_mask(&mask);
        check_flat(&gpu, "train_step in chunks of 16 steps", 300, || {
            rnn.train_step(&x, None, target, Loss::mse(), &mut opt)
                .expect("train step");
        });
    }
    // `run` on an input file, as the command does it (the model and input loaded once).
    {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let model =
            rnn_wgpu::io::TensorFile::read(dir.join("bi2_tanh_mse_batch_first.model.safetensors"))
                .expect("fixture");
        let input =
            rnn_wgpu::io::TensorFile::read(dir.join("bi2_tanh_mse_batch_first.input.safetensors"))
                .expect("fixture");
        let mut m = rnn_wgpu::io::model_file::from_file(&gpu, &model).expect("model");
        m.rnn.set_batch_first(true);
        check_flat(&gpu, "run on an input file", 300, || {
            rnn_wgpu::io::run::run(&mut m.rnn, &input, None, rnn_wgpu::Reduction::Mean)
                .expect("run");
        });
    }
    // Every driver under every kernel style, shorter (the leak was as large at any T).
    for style in [KernelStyle::Auto, KernelStyle::Direct, KernelStyle::Tiled] {
        let g = gpu.with_kernels(style);
        for driver in [Driver::Persistent, Driver::PerStep, Driver::Naive] {
            let what = format!("train_step, Adam, {driver:?}, {style:?} kernels");
            train(&g, &what, 8, driver, adam, 300);
        }
    }
}

/// Starts [`measure_in_this_process`] in a child process and fails with its output when any
/// reading grew.
#[test]
fn memory_stays_flat() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "memory::measure_in_this_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("start the measuring process");
    let text = String::from_utf8_lossy(&out.stderr);
    let readings: Vec<&str> = text.lines().filter(|l| l.starts_with("memory:")).collect();
    eprintln!("{}", readings.join("\n"));
    assert!(
        out.status.success(),
        "memory grew (or the measuring process failed): {}\n{}",
        out.status,
        text
    );
    assert!(
        readings.len() >= 16,
        "the measuring process took fewer readings than it should:\n{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the measuring test did not run:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A whole run of the command-line program on the built-in task: its resident memory when it
/// prints step 100 and when it prints its last step. `RNN_WGPU_MEMORY_STEPS` sets the steps
/// (2000 here; BENCHMARKS.md has a 10 000-step run).
#[cfg(all(target_os = "linux", feature = "cli"))]
#[test]
fn train_command_memory_stays_flat() {
    use std::io::BufRead;
    let steps: usize = std::env::var("RNN_WGPU_MEMORY_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .args(["train", "--steps", &steps.to_string(), "--log-every", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rnn-wgpu train");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("piped stdout");
    // (step, resident bytes) read as each loss line appears: the step's loss was read back
    // just before, so the GPU has finished it.
    let mut readings: Vec<(usize, i64)> = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("utf-8 output");
        let step = line
            .strip_prefix("step ")
            .filter(|rest| rest.contains(" loss "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(step) = step
            && let Some(rss) = resident_bytes_of(&pid)
        {
            readings.push((step, rss));
        }
    }
    let out = child.wait_with_output().expect("train finishes");
    assert!(
        out.status.success(),
        "rnn-wgpu train failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let at = |s: usize| readings.iter().find(|r| r.0 == s).map(|r| r.1);
    let (Some(first), Some(last)) = (at(100), at(steps)) else {
        panic!("no resident-memory readings at steps 100 and {steps}: {readings:?}");
    };
    let mb = |b: i64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "memory: rnn-wgpu train: resident {:.1} MB at step 100, {:.1} MB at step {steps}",
        mb(first),
        mb(last)
    );
    assert!(
        last - first <= SLACK_BYTES,
        "rnn-wgpu train grew {:.1} MB between steps 100 and {steps}",
        mb(last - first)
    );
}
