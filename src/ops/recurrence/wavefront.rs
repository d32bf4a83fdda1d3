//! The wavefront experiment of issue #11: a stack of layers' forward loops run layer after
//! layer (each layer's input projection one multiply over all T·B rows of the layer below,
//! then its persistent loop) against all layers inside one persistent dispatch
//! (`shaders/recurrence_wavefront.wgsl`, the input projections inside the loop). Register-
//! blocked kernels only (H a multiple of 4), one direction, no dropout; random weights.
//! `bench --wavefront` times it; a test checks the two agree.

use std::time::Instant;

use super::{Back, Family, Form, Loop, Prep, Rec, Recurrence, kernel, push_prepare, push_rec};
use crate::error::{InputError, Result};
use crate::gpu::Gpu;
use crate::ops::matmul::{Gemm, matmul};
use crate::ops::{Driver, Plan, PlanBuilder, at, groups, run, u};
use crate::rng::SplitMix64;

/// What the two ways of running a stack's forward loops measured.
#[derive(Debug, Clone, Copy)]
pub struct Wavefront {
    /// Median ms of the layer-after-layer forward (input projections and loops).
    pub layer_by_layer_ms: f64,
    /// Median ms of the wavefront forward (layer 0's input projection, then one dispatch).
    pub wavefront_ms: f64,
    /// The largest difference between the two ways' hidden states.
    pub max_diff: f32,
}

/// Times `layers` stacked tanh layers of `hidden` units (input width `hidden` too) over
/// `steps` x `batch`, `runs` times each way, alternating; on `gpu` with its kernels as
/// they are (the register-blocked ones must be its choice: CPU adapters, or the direct style).
pub fn compare(
    gpu: &Gpu,
    (steps, batch, hidden, layers): (usize, usize, usize, usize),
    runs: usize,
) -> Result<Wavefront> {
    if !hidden.is_multiple_of(4) || layers == 0 || !gpu.direct_kernels() {
        return Err(InputError::Invalid {
            arg: "wavefront".into(),
            reason: "the experiment runs the register-blocked kernels: H a multiple of 4, at \
                     least one layer, a CPU adapter or the direct kernel style"
                .into(),
        }
        .into());
    }
    let (t, b, h, l) = (steps, batch, hidden, layers);
    let (bh, rows) = (b * h, t * b);
    let mut rng = SplitMix64::new(11);
    let mut draw =
        |n: usize, scale: f64| -> Vec<f32> { (0..n).map(|_| rng.uniform(scale) as f32).collect() };
    // Per layer: W [H, H], U [H, H], b [H]; then x [T, B, H].
    let s = 1.0 / (h as f64).sqrt();
    let per = 2 * h * h + h;
    let mut host = Vec::with_capacity(l * per);
    for _ in 0..l {
        host.extend(draw(2 * h * h, s));
        host.extend(draw(h, 0.1));
    }
    let weights = gpu.storage_buffer("wavefront weights", host.len())?;
    gpu.queue()
        .write_buffer(&weights, 0, bytemuck::cast_slice(&host));
    let (w_at, u_at, b_at) = (
        |k: usize| k * per,
        |k: usize| k * per + h * h,
        |k: usize| k * per + 2 * h * h,
    );
    let x = gpu.storage_buffer("wavefront x", rows * h)?;
    gpu.queue()
        .write_buffer(&x, 0, bytemuck::cast_slice(&draw(rows * h, 1.0)));

    // Layer after layer, as the workspace records a stack.
    let hs = Recurrence::stride((t + 1) * bh);
    let ts = Recurrence::stride(rows * h);
    let xu = gpu.storage_buffer("layer-by-layer projections", rows * h)?;
    let mut wps = Vec::new();
    let mut h_lbl = Vec::new();
    for _ in 0..l {
        wps.push(gpu.storage_buffer("layer W layouts", Recurrence::wp_len(h, 1))?);
        h_lbl.push(gpu.storage_buffer("layer states", (t + 1) * bh)?);
    }
    let rec = |k: usize| Recurrence {
        steps: t,
        batch: b,
        hidden: h,
        cell: super::Cell::Elman,
        act: 0,
        dirs: 1,
        w: at(&weights, w_at(k)),
        w_stride: 0,
        wp: &wps[k],
        tokens: None,
        mirrors: None,
    };
    let mut prep = PlanBuilder::new(gpu, "layouts");
    for k in 0..l {
        rec(k).prepare(&mut prep, None)?;
    }
    let mut lbl = PlanBuilder::new(gpu, "layer by layer");
    for k in 0..l {
        let input = if k == 0 {
            at(&x, 0)
        } else {
            at(&h_lbl[k - 1], bh)
        };
        let mut g = Gemm::new(rows, h, h, input, at(&weights, u_at(k)), at(&xu, 0));
        g.trans_b = true;
        g.bias = Some(at(&weights, b_at(k)));
        matmul(&mut lbl, g)?;
        rec(k).forward(&mut lbl, Loop::Persistent, &xu, &h_lbl[k], Back::All)?;
    }

    // The wavefront: layer 0's projection hoisted, every layer above's biases in its xu.
    let h_wave = gpu.storage_buffer("wavefront states", l * hs)?;
    let xu_wave = gpu.storage_buffer("wavefront projections", l * ts)?;
    for k in 1..l {
        let bias = &host[b_at(k)..b_at(k) + h];
        let rows_of_bias: Vec<f32> = (0..rows).flat_map(|_| bias.iter().copied()).collect();
        gpu.queue().write_buffer(
            &xu_wave,
            (k * ts * 4) as u64,
            bytemuck::cast_slice(&rows_of_bias),
        );
    }
    let hp = h.next_multiple_of(4);
    let sl = (h * hp).next_multiple_of(64);
    let wp_wave = gpu.storage_buffer(
        "wavefront layouts",
        l * 4 * sl + super::CONSTANT_WINDOW as usize / 4,
    )?;
    for k in 0..l {
        for (m, off) in [(0, w_at(k)), (2, u_at(k))] {
            let params = Prep {
                hidden: u(h),
                hp: u(hp),
                w_off: u(off),
                sec0: u((4 * k + m) * sl),
                sec1: u((4 * k + m + 1) * sl),
            };
            push_prepare(&mut prep, (&weights, &wp_wave), &params, None)?;
        }
    }
    let mut wave = PlanBuilder::new(gpu, "wavefront");
    let mut g = Gemm::new(
        rows,
        h,
        h,
        at(&x, 0),
        at(&weights, u_at(0)),
        at(&xu_wave, 0),
    );
    g.trans_b = true;
    g.bias = Some(at(&weights, b_at(0)));
    matmul(&mut wave, g)?;
    let k = kernel(Form::of(Family::BlockedWave, false), super::Cell::Elman);
    // lavapipe stops an invocation after 65535 loop iterations: chunks of steps, as the
    // single-layer loops (per step, per layer: 8-unit groups 64 apart, two products).
    let q = hp / 4;
    let per_step = l * (h.div_ceil(64) * (2 * q + 8 + 2) + 2);
    let chunk = if gpu.is_cpu() {
        (super::LOOP_BUDGET / per_step).max(1)
    } else {
        t
    };
    for t0 in (0..t).step_by(chunk) {
        let params = Rec {
            batch: u(b),
            hidden: u(h),
            hp: u(hp),
            act: 0,
            steps: u(t),
            t: u(t0),
            count: u(chunk.min(t - t0)),
            sec1: u(sl / 4),
            dsrc: u(ts),
            ddst: u(hs),
            dwp: u(sl),
            dir0: u(l),
            tok_ids: 0,
            _pad: [0; 3],
        };
        push_rec(
            &mut wave,
            k,
            [&wp_wave, &xu_wave, &h_wave],
            0,
            &params,
            [groups(b, 8), 1, 1],
        )?;
    }
    let (prep, lbl, wave) = (prep.finish()?, lbl.finish()?, wave.finish()?);
    run(gpu, "layouts", Driver::Persistent, |_| {}, &[&prep], |_| {})?;

    let time = |plan: &Plan| -> Result<f64> {
        let start = Instant::now();
        run(
            gpu,
            "wavefront experiment",
            Driver::Persistent,
            |_| {},
            &[plan],
            |_| {},
        )?;
        // `run` only submits: to completion.
        gpu.wait("wavefront experiment", None)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    // Warm-up, then alternating runs.
    time(&lbl)?;
    time(&wave)?;
    let (mut a, mut w) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        a.push(time(&lbl)?);
        w.push(time(&wave)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut max_diff = 0.0f32;
    for (k, layer) in h_lbl.iter().enumerate() {
        let got = gpu.read(&h_wave, k * hs + bh, rows * h)?;
        let want = gpu.read(layer, bh, rows * h)?;
        for (g, w) in got.iter().zip(&want) {
            max_diff = max_diff.max((g - w).abs());
        }
    }
    Ok(Wavefront {
        layer_by_layer_ms: median(a),
        wavefront_ms: median(w),
        max_diff,
    })
}
