//! `rnn-wgpu analyze`: why a model forgets. Every `W`'s spectrum, and how far back the
//! gradient of the last step's output reaches.

use std::path::PathBuf;

use rnn_wgpu::io::{self, TensorFile};
use rnn_wgpu::model::SplitMix64;
use rnn_wgpu::{Error, Tensor, task};

use super::{Act, apply_nonlinearity, bad_arg, check_output, open_gpu, plot};

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// The model (.safetensors, PyTorch names).
    #[arg(long)]
    model: PathBuf,
    /// An input file whose x [T, B, I] (float values) the gradient is measured on [default:
    /// --seq-len steps of one sequence of standard normal values].
    #[arg(long, conflicts_with = "task")]
    input: Option<PathBuf>,
    /// Measure on one sequence of a built-in task, as `train --task` makes it: `adding`
    /// (--seq-len steps, I = 2) or `copy` (--delay blanks, I = 10).
    #[arg(long, value_enum)]
    task: Option<Probe>,
    /// Steps of the default input and of `--task adding`.
    #[arg(long, default_value_t = 100)]
    seq_len: usize,
    /// Blank steps of `--task copy` (the sequence is delay + 20 steps).
    #[arg(long, default_value_t = 100)]
    delay: usize,
    /// Folder for the pictures (made if missing): eigenvalues-layer-K per W and grad-norms.
    #[arg(long, default_value = "analysis")]
    out: PathBuf,
    /// The pictures' format.
    #[arg(long, value_enum, default_value_t = Format::Svg)]
    format: Format,
    /// The hidden nonlinearity, for a model file that does not say (a bare PyTorch
    /// state_dict) [default: the file's, else tanh].
    #[arg(long, value_enum)]
    nonlinearity: Option<Act>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Probe {
    Adding,
    Copy,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Svg,
    Png,
}

/// Largest H whose eigenvalues are computed and drawn (O(H³) on the CPU).
const MAX_EIGEN_H: usize = 1024;

/// The fitted factor per step back in time of `norms` (exp of minus the least-squares slope
/// of ln ‖dL/dh(t)‖ against t over its positive values), or `None` with fewer than two.
pub fn decay_per_step(norms: &[f32]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = norms
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite() && **v > 0.0)
        .map(|(t, &v)| (t as f64, f64::from(v).ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    Some((-sxy / sxx).exp())
}

/// Prints every W's spectral radius, the gradient norms' decay per layer, and draws both.
pub fn analyze(a: &AnalyzeArgs) -> Result<(), Error> {
    if a.seq_len == 0 {
        return Err(bad_arg("--seq-len", "must be at least 1"));
    }
    if a.delay == 0 {
        return Err(bad_arg("--delay", "must be at least 1"));
    }
    let model_file = TensorFile::read(&a.model)?;
    let input = a.input.as_ref().map(TensorFile::read).transpose()?;
    std::fs::create_dir_all(&a.out).map_err(|source| rnn_wgpu::FileError::Io {
        path: a.out.display().to_string(),
        source,
    })?;
    let ext = match a.format {
        Format::Svg => "svg",
        Format::Png => "png",
    };
    let image = |name: &str| -> Result<PathBuf, Error> {
        let p = a.out.join(format!("{name}.{ext}"));
        check_output("--out", &p)?;
        Ok(p)
    };
    let gpu = open_gpu()?;
    let mut model = io::model_file::from_file(&gpu, &model_file)?;
    apply_nonlinearity(&mut model.rnn, &model_file, &a.model, a.nonlinearity)?;
    let rnn = &mut model.rnn;
    let config = *rnn.config();
    let (h, dirs) = (config.hidden, config.directions());
    // The gradient of the last step's outputs (dL/do = 1 there, 0 elsewhere), taken back
    // through time: how far back a loss at the end reaches.
    let (x, t, b) = match &input {
        Some(f) => {
            let Some((shape, values)) = f.floats("x")? else {
                return Err(f.invalid("x", "is missing: analyze needs float values x".into()));
            };
            if shape.len() != 3 {
                return Err(f.shape_err("x", &shape, format!("[T, B, {}]", config.input)));
            }
            let (t, b) = if config.batch_first {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            (Tensor::from_slice(&gpu, &shape, &values)?, t, b)
        }
        None if a.task.is_some() => {
            let (x, t, i, name) = match a.task {
                Some(Probe::Copy) => {
                    let d = task::copy_memory(a.delay, 1, 0);
                    (d.x, d.steps, d.inputs, "copy")
                }
                _ => {
                    let d = task::adding(a.seq_len, 1, 0);
                    (d.x, d.steps, 2, "adding")
                }
            };
            if i != config.input {
                return Err(bad_arg(
                    "--task",
                    format!(
                        "{name} has {i} inputs a step but the model takes {}",
                        config.input
                    ),
                ));
            }
            // One sequence: [T, 1, I] and [1, T, I] are the same values.
            let shape = if config.batch_first {
                [1, t, i]
            } else {
                [t, 1, i]
            };
            (Tensor::from_slice(&gpu, &shape, &x)?, t, 1)
        }
        None => {
            let (t, i) = (a.seq_len, config.input);
            let mut rng = SplitMix64::new(0);
            let v: Vec<f32> = (0..t * i).map(|_| rng.normal() as f32).collect();
            let shape = if config.batch_first {
                [1, t, i]
            } else {
                [t, 1, i]
            };
            (Tensor::from_slice(&gpu, &shape, &v)?, t, 1)
        }
    };
    // Spectra: radius by power iteration on the GPU; every eigenvalue on the CPU.
    let radii = rnn.spectral_radii()?;
    let params = rnn.parameters()?;
    let ws: Vec<_> = params
        .iter()
        .filter(|p| p.name.contains("weight_hh"))
        .collect();
    for (kd, (r, w)) in radii.iter().zip(&ws).enumerate() {
        let (k, reverse) = (kd / dirs, kd % dirs == 1);
        let which = if reverse { "reverse " } else { "" };
        println!("layer {k} {which}spectral radius {r:.6}");
        if h <= MAX_EIGEN_H {
            // A spectrum the CPU cannot resolve costs its picture, not the rest of the analysis.
            let eig = match rnn_wgpu::analysis::eigenvalues(&w.values, h) {
                Ok(eig) => eig,
                Err(e) => {
                    println!("layer {k} {which}eigenvalues not drawn: {e}");
                    continue;
                }
            };
            let suffix = if reverse { "-reverse" } else { "" };
            let path = image(&format!("eigenvalues-layer-{k}{suffix}"))?;
            let title = format!("{} eigenvalues ({} of them)", w.name, eig.len());
            plot::eigenvalues(&path, &title, &eig, f64::from(*r))?;
        }
    }
    if h > MAX_EIGEN_H {
        println!("(H = {h}: eigenvalues not drawn above H = {MAX_EIGEN_H})");
    }
    let norms = rnn.last_step_grad_norms(&x, None)?;
    let mut curves = Vec::new();
    for (kd, n) in norms.iter().enumerate() {
        let (k, reverse) = (kd / dirs, kd % dirs == 1);
        if reverse && k + 1 == config.layers {
            // The last step's outputs read the top reverse state where it starts: no curve.
            println!(
                "layer {k} reverse: the last step's outputs read it at its first step only \
                 (no gradient to follow back)"
            );
            continue;
        }
        let name = if reverse {
            format!("layer {k} reverse")
        } else {
            format!("layer {k}")
        };
        let last = n[t - 1];
        let below = (0..t).rev().find(|&s| n[s] < 1e-6 * last);
        let rate = decay_per_step(n);
        let rate_text = rate.map_or("-".into(), |r| format!("{r:.6}"));
        let reach = match (below, rate) {
            (Some(s), _) => format!("falls below 1e-6 of its last-step value at step {s}"),
            (None, Some(r)) if r < 1.0 && r > 0.0 => format!(
                "stays above 1e-6 of its last-step value over all {t} steps (at this rate it \
                 would fall below about {:.0} steps back)",
                (1e-6f64).ln() / r.ln()
            ),
            _ => format!("stays above 1e-6 of its last-step value over all {t} steps"),
        };
        println!("{name} gradient norm: x{rate_text} per step back in time (fitted); {reach}");
        curves.push((name, n.clone()));
    }
    let path = image("grad-norms")?;
    let title = format!("|dL/dh(t)| for dL/do = 1 at the last step (T = {t}, B = {b})");
    plot::grad_norms(&path, &title, &curves)?;
    eprintln!("pictures in {}", a.out.display());
    Ok(())
}
