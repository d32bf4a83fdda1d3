//! `rnn-wgpu`: train on the built-in task, benchmark, and list adapters.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use rnn_wgpu::bench::{self, Budget, Mode, SHAPES, Shape};
use rnn_wgpu::gpu::describe;
use rnn_wgpu::{
    Error, Gpu, Loss, Nonlinearity, Optimizer, OptimizerConfig, OptimizerKind, Rnn, RnnConfig,
    Target, Tensor, task,
};

#[derive(Parser)]
#[command(
    name = "rnn-wgpu",
    version,
    about = "Elman RNNs trained and run on any GPU wgpu reaches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train on the built-in task: next-step prediction of noisy sine waves.
    Train(TrainArgs),
    /// Time forward and training steps on the benchmark shapes, beside the naive driver.
    Bench(BenchArgs),
    /// List every adapter wgpu finds, with the limits that matter here.
    Info,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerName {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Act {
    Tanh,
    Relu,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Hidden units.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Training steps (one batch each).
    #[arg(long, default_value_t = 400)]
    steps: usize,
    /// Time steps per sequence.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f32,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    optimizer: OptimizerName,
    /// Momentum (sgd only).
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Hidden nonlinearity.
    #[arg(long, value_enum, default_value_t = Act::Tanh)]
    nonlinearity: Act,
    /// Noise added to the inputs (standard deviation).
    #[arg(long, default_value_t = 0.05)]
    noise: f64,
    /// Seed for the data and the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the loss every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this shape (repeatable): small, medium, large, long.
    #[arg(long = "shape")]
    shapes: Vec<String>,
    /// Only this mode.
    #[arg(long, value_enum)]
    mode: Option<ModeName>,
    /// Timed runs at least (medians are reported).
    #[arg(long, default_value_t = 5)]
    min_runs: usize,
    /// Seconds to keep timing at least, per shape, mode and driver.
    #[arg(long, default_value_t = 1.0)]
    min_seconds: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeName {
    Forward,
    TrainStep,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train(&a),
        Command::Bench(a) => run_bench(&a),
        Command::Info => info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn open_gpu() -> Result<Gpu, Error> {
    let gpu = Gpu::new()?;
    eprintln!("adapter: {}", describe(&gpu.adapter_info()));
    Ok(gpu)
}

fn train(a: &TrainArgs) -> Result<(), Error> {
    let gpu = open_gpu()?;
    let config = RnnConfig {
        input: 1,
        hidden: a.hidden,
        output: 1,
        nonlinearity: match a.nonlinearity {
            Act::Tanh => Nonlinearity::Tanh,
            Act::Relu => Nonlinearity::Relu,
        },
        bias: true,
    };
    let mut rnn = Rnn::new(&gpu, config, a.seed)?;
    let kind = match a.optimizer {
        OptimizerName::Adam => OptimizerKind::adam(a.lr),
        OptimizerName::Sgd => OptimizerKind::sgd(a.lr, a.momentum),
    };
    let mut opt = Optimizer::new(
        &rnn,
        OptimizerConfig {
            kind,
            clip: (a.clip > 0.0).then_some(a.clip),
            weight_decay: 0.0,
        },
    )?;
    let (t, b) = (a.seq_len, a.batch);
    println!(
        "task: next-step prediction of noisy sine waves (T = {t}, B = {b}, noise {}); \
         model: {} RNN, H = {}, {} parameters",
        a.noise,
        config.nonlinearity.name(),
        a.hidden,
        rnn.layout().len()
    );
    let x = Tensor::zeros(&gpu, &[t, b, 1])?;
    let y = Tensor::zeros(&gpu, &[t, b, 1])?;
    let start = Instant::now();
    let mut first = None;
    for step in 1..=a.steps {
        // A fresh batch every step, so the model learns sine waves, not these sequences.
        let data = task::sine(t, b, a.noise, a.seed.wrapping_mul(1_000_003) + step as u64);
        x.write(&data.x)?;
        y.write(&data.y)?;
        rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)?;
        if step == 1 || step % a.log_every.max(1) == 0 || step == a.steps {
            let loss = rnn.last_loss()?;
            first.get_or_insert(loss);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "step {step:>5}  loss {loss:.5}  grad norm {:.4}  {:.0} timestep-samples/s",
                opt.last_grad_norm()?,
                (step * t * b) as f64 / secs
            );
        }
    }
    let last = rnn.last_loss()?;
    // Held-out sequences the model never saw, against the naive guess "same as now".
    let test = task::sine(t, b, a.noise, u64::MAX - a.seed);
    let xt = Tensor::from_slice(&gpu, &[t, b, 1], &test.x)?;
    let out = rnn.forward(&xt, None)?.output.to_vec()?;
    let mse = |pred: &[f32]| {
        pred.iter()
            .zip(&test.y)
            .map(|(p, y)| ((p - y) as f64).powi(2))
            .sum::<f64>()
            / test.y.len() as f64
    };
    let model_mse = mse(&out);
    let persistence_mse = mse(&test.x);
    let first = first.unwrap_or(f32::NAN);
    println!(
        "done in {:.1}s: training loss {first:.5} -> {last:.5}",
        start.elapsed().as_secs_f64(),
    );
    println!(
        "held-out mse {model_mse:.5} vs {persistence_mse:.5} for repeating the current input \
         ({:.1}x better)",
        persistence_mse / model_mse
    );
    println!("last steps of one held-out sequence (input, prediction, target):");
    for s in t.saturating_sub(5)..t {
        let i = s * b;
        println!(
            "  t={s:<4} {:>8.4} {:>8.4} {:>8.4}",
            test.x[i], out[i], test.y[i]
        );
    }
    Ok(())
}

fn run_bench(a: &BenchArgs) -> Result<(), Error> {
    let shapes: Vec<Shape> = if a.shapes.is_empty() {
        SHAPES.to_vec()
    } else {
        a.shapes
            .iter()
            .map(|n| {
                Shape::by_name(n).ok_or_else(|| {
                    Error::Input(rnn_wgpu::InputError::Invalid {
                        arg: "--shape".into(),
                        reason: format!("{n:?} is not one of small, medium, large, long"),
                    })
                })
            })
            .collect::<Result<_, _>>()?
    };
    let modes = match a.mode {
        Some(ModeName::Forward) => vec![Mode::Forward],
        Some(ModeName::TrainStep) => vec![Mode::TrainStep],
        None => vec![Mode::Forward, Mode::TrainStep],
    };
    let budget = Budget {
        min_runs: a.min_runs.max(1),
        min_time: std::time::Duration::from_secs_f64(a.min_seconds.max(0.0)),
        ..Budget::default()
    };
    let gpu = open_gpu()?;
    let info = gpu.adapter_info();
    if !a.json {
        println!(
            "{:<7} {:<10} {:<9} {:>10} {:>16} {:>9}",
            "shape", "mode", "driver", "ms", "samples/s", "vs naive"
        );
    }
    bench::run(&gpu, &shapes, &modes, &budget, |m, base| {
        if a.json {
            println!("{}", m.to_json(&info, base));
        } else {
            let ratio = base.map_or("1.00x".to_string(), |b| format!("{:.2}x", b.ms / m.ms));
            println!(
                "{:<7} {:<10} {:<9} {:>10.3} {:>16.0} {:>9}",
                m.shape.name,
                m.mode.name(),
                m.driver.name(),
                m.ms,
                m.samples_per_s,
                ratio
            );
        }
    })?;
    Ok(())
}

fn info() -> Result<(), Error> {
    let adapters = Gpu::enumerate();
    if adapters.is_empty() {
        return Err(rnn_wgpu::GpuError::NoAdapter {
            backends: "all".into(),
        }
        .into());
    }
    for (info, l) in adapters {
        println!("{}", describe(&info));
        println!(
            "  max buffer {} B, max storage binding {} B, workgroup memory {} B, \
             {} invocations per workgroup, {} workgroups per dimension",
            l.max_buffer_size,
            l.max_storage_buffer_binding_size,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
    }
    match Gpu::new() {
        Ok(g) => println!("chosen: {}", describe(&g.adapter_info())),
        Err(e) => println!("chosen: none ({e})"),
    }
    Ok(())
}
