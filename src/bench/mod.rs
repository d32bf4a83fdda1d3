//! The benchmark workload: the shapes (README, BENCHMARKS.md), modes, drivers, timed medians.

use std::time::{Duration, Instant};

pub use crate::ops::recurrence::{Wavefront, wavefront};
pub use tasks::{Task, TaskMeasurement};

pub mod tasks;

use crate::error::Result;
use crate::gpu::{Gpu, describe};
use crate::loss::{Loss, Target};
use crate::model::{Rnn, RnnConfig, SplitMix64};
use crate::ops::Driver;
use crate::tensor::Tensor;

/// One benchmark shape: `T, B, I, H, O`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Its name.
    pub name: &'static str,
    /// Steps `T`.
    pub steps: usize,
    /// Batch `B`.
    pub batch: usize,
    /// Inputs `I`.
    pub input: usize,
    /// Hidden units `H`.
    pub hidden: usize,
    /// Outputs `O`.
    pub output: usize,
    /// Stacked recurrent layers `L`.
    pub layers: usize,
    /// Both directions.
    pub bidirectional: bool,
}

/// The four benchmark shapes (T, B, I, H, O): small, medium, large, long.
pub const SHAPES: [Shape; 4] = [
    Shape::new("small", 64, 16, 32, 64, 32),
    Shape::new("medium", 100, 64, 64, 256, 64),
    Shape::new("large", 100, 64, 256, 1024, 256),
    Shape::new("long", 1000, 8, 32, 128, 32),
];

/// DeepBench's vanilla-RNN shapes (T = 50, one layer, I = H), for real GPUs; the head has
/// one output so it adds next to nothing.
pub const DEEPBENCH: [Shape; 12] = [
    Shape::new("deepbench-h1760-b16", 50, 16, 1760, 1760, 1),
    Shape::new("deepbench-h1760-b32", 50, 32, 1760, 1760, 1),
    Shape::new("deepbench-h1760-b64", 50, 64, 1760, 1760, 1),
    Shape::new("deepbench-h1760-b128", 50, 128, 1760, 1760, 1),
    Shape::new("deepbench-h2048-b16", 50, 16, 2048, 2048, 1),
    Shape::new("deepbench-h2048-b32", 50, 32, 2048, 2048, 1),
    Shape::new("deepbench-h2048-b64", 50, 64, 2048, 2048, 1),
    Shape::new("deepbench-h2048-b128", 50, 128, 2048, 2048, 1),
    Shape::new("deepbench-h2560-b16", 50, 16, 2560, 2560, 1),
    Shape::new("deepbench-h2560-b32", 50, 32, 2560, 2560, 1),
    Shape::new("deepbench-h2560-b64", 50, 64, 2560, 2560, 1),
    Shape::new("deepbench-h2560-b128", 50, 128, 2560, 2560, 1),
];

impl Shape {
    /// A shape from its sizes.
    pub const fn new(
        name: &'static str,
        steps: usize,
        batch: usize,
        input: usize,
        hidden: usize,
        output: usize,
    ) -> Self {
        Self {
            name,
            steps,
            batch,
            input,
            hidden,
            output,
            layers: 1,
            bidirectional: false,
        }
    }

    /// The same shape running both directions when `bidirectional`.
    pub const fn with_bidirectional(self, bidirectional: bool) -> Self {
        Self {
            bidirectional,
            ..self
        }
    }

    /// The same shape with `layers` stacked layers.
    pub const fn with_layers(self, layers: usize) -> Self {
        Self { layers, ..self }
    }

    /// The shape called `name`.
    pub fn by_name(name: &str) -> Option<Shape> {
        SHAPES
            .iter()
            .chain(&DEEPBENCH)
            .copied()
            .find(|s| s.name == name)
    }

    /// The shapes `name` stands for: one shape, `deepbench` for all of [`DEEPBENCH`], or
    /// `stacked` for `medium` with 1, 2 and 4 layers (the cost per layer, in one run).
    pub fn group(name: &str) -> Option<Vec<Shape>> {
        match name {
            "deepbench" => Some(DEEPBENCH.to_vec()),
            "stacked" => Some([1, 2, 4].map(|l| SHAPES[1].with_layers(l)).to_vec()),
            _ => Self::by_name(name).map(|s| vec![s]),
        }
    }

    /// Floating-point operations of the recurrence alone over the sequence, `2·B·H²·T` per
    /// layer and direction, as DeepBench counts them.
    pub fn recurrent_flops(&self) -> f64 {
        let d = if self.bidirectional { 2 } else { 1 };
        2.0 * (d * self.layers * self.batch * self.hidden * self.hidden * self.steps) as f64
    }

    /// The name with the layer count where it is not 1 and `-bi` for both directions:
    /// `medium`, `medium-l2`, `small-bi`.
    pub fn label(&self) -> String {
        let mut s = self.name.to_string();
        if self.layers != 1 {
            s.push_str(&format!("-l{}", self.layers));
        }
        if self.bidirectional {
            s.push_str("-bi");
        }
        s
    }
}

/// What one timed run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward over the whole sequence, outputs at every step.
    Forward,
    /// Forward + mse loss + backward producing every parameter gradient (no update, as the
    /// peers measure it).
    TrainStep,
}

impl Mode {
    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::TrainStep => "train_step",
        }
    }
}

/// How long and how often to time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Untimed runs first.
    pub warmup: usize,
    /// At least this many timed runs...
    pub min_runs: usize,
    /// ...and at least this long, unless `max_runs` is reached.
    pub min_time: Duration,
    /// At most this many timed runs.
    pub max_runs: usize,
    /// Also time each phase on the GPU (timestamp queries), where the adapter can.
    pub phases: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            warmup: 1,
            min_runs: 5,
            min_time: Duration::from_secs(1),
            max_runs: 50,
            phases: false,
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The shape.
    pub shape: Shape,
    /// The mode.
    pub mode: Mode,
    /// The driver.
    pub driver: Driver,
    /// Median wall time of one run, milliseconds (submit to completion).
    pub ms: f64,
    /// Timed runs.
    pub runs: usize,
    /// `T * B / seconds`.
    pub samples_per_s: f64,
    /// GPU milliseconds per phase when asked for: `Some(None)` when the adapter has no
    /// timestamp queries.
    pub phases: Option<Option<Vec<(&'static str, f64)>>>,
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `run(k)` for k = 0, 1, ...: the budget's warm-up runs, then timed runs; returns the
/// median in milliseconds and the number of timed runs.
pub(crate) fn time_runs(
    budget: &Budget,
    mut run: impl FnMut(usize) -> Result<()>,
) -> Result<(f64, usize)> {
    let mut k = 0;
    for _ in 0..budget.warmup {
        run(k)?;
        k += 1;
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < budget.min_runs
        || (start.elapsed() < budget.min_time && times.len() < budget.max_runs)
    {
        let t = Instant::now();
        run(k)?;
        k += 1;
        times.push(t.elapsed().as_secs_f64());
    }
    let runs = times.len();
    Ok((median(times) * 1e3, runs))
}

/// Inputs and a model for one shape, made once and timed under every driver.
pub struct Workload {
    gpu: Gpu,
    shape: Shape,
    rnn: Rnn,
    x: Tensor,
    y: Tensor,
}

impl Workload {
    /// Random inputs and targets and a fresh tanh model of `shape`.
    pub fn new(gpu: &Gpu, shape: Shape) -> Result<Self> {
        let config = RnnConfig::new(shape.input, shape.hidden, shape.output)
            .with_layers(shape.layers)
            .with_bidirectional(shape.bidirectional);
        Self::with_config(gpu, shape, config)
    }

    /// Random inputs and targets of `shape` and a fresh model of `config` (whose sizes are
    /// the shape's I and O; H and the blocks may differ).
    pub fn with_config(gpu: &Gpu, shape: Shape, config: RnnConfig) -> Result<Self> {
        let Shape {
            steps: t,
            batch: b,
            input: i,
            output: o,
            ..
        } = shape;
        let mut rng = SplitMix64::new(0);
        let mut rand = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>();
        let x = Tensor::from_slice(gpu, &[t, b, i], &rand(t * b * i))?;
        let y = Tensor::from_slice(gpu, &[t, b, o], &rand(t * b * o))?;
        let rnn = Rnn::new(gpu, config, 0)?;
        Ok(Self {
            gpu: gpu.clone(),
            shape,
            rnn,
            x,
            y,
        })
    }

    /// Runs sequences longer than `steps` in chunks ([`Rnn::set_chunk_steps`]).
    pub fn set_chunk_steps(&mut self, steps: Option<usize>) -> Result<()> {
        self.rnn.set_chunk_steps(steps)
    }

    /// The chunk length this shape runs at with `chosen` chunk steps, or `None` for one piece.
    pub fn chunk_len(&self, chosen: Option<usize>) -> Option<usize> {
        self.rnn
            .chunk_len_for(self.shape.steps, self.shape.batch, chosen)
    }

    fn once(&mut self, mode: Mode) -> Result<()> {
        match mode {
            Mode::Forward => {
                self.rnn.forward(&self.x, None)?;
            }
            Mode::TrainStep => {
                self.rnn
                    .loss_and_gradients(&self.x, None, Target::Values(&self.y), Loss::mse())?;
            }
        }
        self.gpu.wait("benchmark", None)
    }

    /// GPU milliseconds per phase of `mode` under `driver` (medians of `runs` timed runs),
    /// or `None` when the adapter has no timestamp queries.
    pub fn phases(
        &mut self,
        mode: Mode,
        driver: Driver,
        runs: usize,
    ) -> Result<Option<Vec<(&'static str, f64)>>> {
        if !self.gpu.has_timestamps() {
            return Ok(None);
        }
        self.rnn.set_driver(driver);
        let mut samples: Vec<Vec<(&'static str, f64)>> = Vec::new();
        for _ in 0..runs.max(1) + 1 {
            let target = match mode {
                Mode::Forward => None,
                Mode::TrainStep => Some((Target::Values(&self.y), Loss::mse())),
            };
            samples.push(self.rnn.time_phases((&self.x).into(), None, target)?);
        }
        samples.remove(0); // warm-up
        let names: Vec<&'static str> = samples[0].iter().map(|p| p.0).collect();
        Ok(Some(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, median(samples.iter().map(|s| s[i].1).collect())))
                .collect(),
        ))
    }

    /// Times `mode` under `driver`: the median of the budget's runs after warm-up.
    pub fn measure(&mut self, mode: Mode, driver: Driver, budget: &Budget) -> Result<Measurement> {
        self.rnn.set_driver(driver);
        let (ms, runs) = time_runs(budget, |_| self.once(mode))?;
        Ok(Measurement {
            shape: self.shape,
            mode,
            driver,
            ms,
            runs,
            samples_per_s: (self.shape.steps * self.shape.batch) as f64 / (ms * 1e-3),
            phases: if budget.phases {
                Some(self.phases(mode, driver, 3)?)
            } else {
                None
            },
        })
    }
}

impl Measurement {
    /// One JSON object: shape, mode, driver, ms, samples_per_s, runs, adapter, backend, the
    /// kernel family and, given the baseline measured in the same run, the speed-up over it.
    pub fn to_json(&self, gpu: &Gpu, baseline: Option<&Measurement>) -> String {
        use serde_json::{Value, json};
        let adapter = gpu.adapter_info();
        let sh = &self.shape;
        let mut v = json!({
            "shape": sh.name,
            "T": sh.steps,
            "B": sh.batch,
            "I": sh.input,
            "H": sh.hidden,
            "O": sh.output,
            "layers": sh.layers,
            "bidirectional": sh.bidirectional,
            "mode": self.mode.name(),
            "driver": self.driver.name(),
            "ms": self.ms,
            "samples_per_s": self.samples_per_s,
            "runs": self.runs,
            "adapter": adapter.name,
            "backend": format!("{:?}", adapter.backend),
            "kernels": format!("{:?}", gpu.kernel_style()),
        });
        if self.mode == Mode::Forward {
            v["recurrent_tflops"] = json!(sh.recurrent_flops() / (self.ms * 1e-3) / 1e12);
        }
        match &self.phases {
            Some(Some(phases)) => {
                let map = phases
                    .iter()
                    .map(|(name, ms)| (name.to_string(), json!(ms)))
                    .collect();
                v["phases_ms"] = Value::Object(map);
            }
            Some(None) => v["phases_ms"] = Value::Null,
            None => {}
        }
        if let Some(b) = baseline {
            v["baseline"] = json!(b.driver.name());
            v["speedup_vs_baseline"] = json!(b.ms / self.ms);
        }
        v.to_string()
    }
}

/// Measures every mode of `shapes` under the naive baseline and every faster driver that can
/// run the shape (per-step, and persistent where H fits), and
/// calls `report` with each measurement and the baseline it is compared with.
///
/// `only` restricts the faster drivers measured (the naive baseline is skipped too unless
/// listed); empty means all.
pub fn run(
    gpu: &Gpu,
    shapes: &[Shape],
    modes: &[Mode],
    only: &[Driver],
    budget: &Budget,
    mut report: impl FnMut(&Measurement, Option<&Measurement>),
) -> Result<Vec<Measurement>> {
    let wanted = |d: Driver| only.is_empty() || only.contains(&d);
    let mut all = Vec::new();
    for &shape in shapes {
        let mut w = Workload::new(gpu, shape)?;
        let mut drivers = drivers_for(gpu, shape);
        drivers.retain(|&d| wanted(d));
        for &mode in modes {
            let base = if wanted(Driver::Naive) {
                let base = w.measure(mode, Driver::Naive, budget)?;
                report(&base, None);
                Some(base)
            } else {
                None
            };
            for &d in &drivers {
                let fast = w.measure(mode, d, budget)?;
                report(&fast, base.as_ref());
                all.push(fast);
            }
            all.extend(base);
        }
    }
    Ok(all)
}

/// The faster drivers that can run `shape` on `gpu`: per-step, and persistent where its
/// hidden size (as the plans run it, padded on CPU adapters) fits.
pub fn drivers_for(gpu: &Gpu, shape: Shape) -> Vec<Driver> {
    let config = RnnConfig::new(shape.input, shape.hidden, shape.output);
    let h = crate::model::padded_hidden(gpu, &config);
    let mut drivers = vec![Driver::PerStep];
    if crate::ops::recurrence::persistent_unavailable(gpu, h).is_none() {
        drivers.push(Driver::Persistent);
    }
    drivers
}

/// The adapter line printed above every benchmark: the adapter and the kernel family.
pub fn adapter_line(gpu: &Gpu) -> String {
    format!(
        "{} ({:?} kernels)",
        describe(&gpu.adapter_info()),
        gpu.kernel_style()
    )
}
