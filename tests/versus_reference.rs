//! Every GPU result against the f64 reference, over shapes that break the tilings.

use rnn_wgpu::reference::{self, Params, Targets};
use rnn_wgpu::{
    ClassIds, Driver, Gpu, Gradients, KernelStyle, Loss, LossKind, Nonlinearity, Optimizer,
    OptimizerKind, Reduction, Rnn, RnnConfig, Target, Tensor,
};

use crate::common::{assert_close, close_error, gpu, random, swap_leading, to_f32};

pub(crate) const REL: f64 = 1e-4;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    pub(crate) steps: usize,
    pub(crate) batch: usize,
    pub(crate) input: usize,
    pub(crate) hidden: usize,
    pub(crate) output: usize,
    pub(crate) nonlinearity: Nonlinearity,
    pub(crate) bias: bool,
    pub(crate) loss: Loss,
    pub(crate) with_h0: bool,
    pub(crate) layers: usize,
    pub(crate) bidirectional: bool,
}

impl Case {
    /// `L·D`: the first dimension of h0 and h_n.
    pub(crate) fn states(&self) -> usize {
        self.layers * if self.bidirectional { 2 } else { 1 }
    }
}

/// Uploads the reference's parameters into a fresh GPU model.
fn model_from(p: &Params, driver: Driver) -> Rnn {
    model_with(p, driver, KernelStyle::Auto)
}

fn model_with(p: &Params, driver: Driver, kernels: KernelStyle) -> Rnn {
    model_on(&gpu().with_kernels(kernels), p, driver)
}

pub(crate) fn model_on(g: &Gpu, p: &Params, driver: Driver) -> Rnn {
    let mut rnn = Rnn::new(g, p.config, 7).expect("model");
    for (name, v) in p.named() {
        rnn.set_parameter(&name, &to_f32(v)).expect("set parameter");
    }
    rnn.set_driver(driver);
    rnn.set_input_gradients(true);
    rnn
}

fn run(c: Case, seed: u64, driver: Driver) {
    run_with(c, seed, driver, KernelStyle::Auto);
}

/// A case's parameters, inputs and targets, and the reference's answers for them.
pub(crate) struct Setup {
    pub(crate) p: Params,
    pub(crate) x: Vec<f64>,
    pub(crate) h0: Option<Vec<f64>>,
    pub(crate) targets: Targets,
}

/// The case's data from `seed`, or from the first seed after it whose reference gradient
/// reaches the recurrence (a relu layer with no bias and H = 1 can be dead for some draws).
pub(crate) fn setup(c: Case, seed: u64) -> Setup {
    for k in 0..64 {
        let s = setup_from(c, seed + k * 7919);
        let g = reference::loss_and_grads(
            &s.p,
            &s.x,
            s.h0.as_deref(),
            c.steps,
            c.batch,
            &s.targets,
            c.loss,
        )
        .2;
        // Every layer's recurrence must carry gradient.
        let live = |l: &reference::Layer| l.w_hh.iter().any(|v| v.abs() > 1e-9);
        if g.params.layers.iter().all(live) {
            return s;
        }
    }
    panic!("{c:?}: no seed near {seed} gives a live recurrence");
}

fn setup_from(c: Case, seed: u64) -> Setup {
    let config = RnnConfig::new(c.input, c.hidden, c.output)
        .with_nonlinearity(c.nonlinearity)
        .with_bias(c.bias)
        .with_layers(c.layers)
        .with_bidirectional(c.bidirectional);
    // Weights scaled so the recurrence neither saturates nor dies out at any H.
    let mut p = Params::random(config, 1.5 / (c.hidden as f64).sqrt(), seed);
    if c.nonlinearity == Nonlinearity::Relu && c.bias {
        // Positive biases keep most relu units alive, so the recurrent path carries gradient.
        for l in p.layers.iter_mut() {
            for v in l.b_ih.iter_mut().chain(l.b_hh.iter_mut()) {
                *v = v.abs() + 0.1;
            }
        }
    }
    let (t, b) = (c.steps, c.batch);
    let x = random(t * b * c.input, 1.0, seed + 1);
    let h0 = c
        .with_h0
        .then(|| random(c.states() * b * c.hidden, 0.8, seed + 2));
    let targets = match c.loss.kind {
        LossKind::Mse => Targets::Values(random(t * b * c.output, 1.0, seed + 3)),
        LossKind::CrossEntropy => Targets::Classes(
            random(t * b, 1.0, seed + 3)
                .iter()
                .map(|v| (((v + 1.0) / 2.0 * c.output as f64) as usize).min(c.output - 1))
                .collect(),
        ),
    };
    Setup { p, x, h0, targets }
}

/// What one GPU `loss_and_gradients` call returned, downloaded.
pub(crate) struct GpuResult {
    pub(crate) output: Vec<f32>,
    pub(crate) h_n: Vec<f32>,
    pub(crate) loss: f32,
    pub(crate) params: Vec<(String, Vec<f32>)>,
    pub(crate) x: Vec<f32>,
    pub(crate) h0: Vec<f32>,
}

/// Uploads `s`'s inputs and runs forward, then forward + loss + backward on `rnn`.
pub(crate) fn gpu_run(rnn: &mut Rnn, c: Case, s: &Setup) -> (Vec<f32>, Vec<f32>, GpuResult) {
    let g = rnn.gpu().clone();
    let (t, b) = (c.steps, c.batch);
    let xt = Tensor::from_slice(&g, &[t, b, c.input], &to_f32(&s.x)).expect("x");
    let h0t =
        s.h0.as_ref()
            .map(|h| Tensor::from_slice(&g, &[c.states(), b, c.hidden], &to_f32(h)).expect("h0"));
    let yv;
    let yc;
    let target = match &s.targets {
        Targets::Values(y) => {
            yv = Tensor::from_slice(&g, &[t, b, c.output], &to_f32(y)).expect("y");
            Target::Values(&yv)
        }
        Targets::Classes(y) => {
            let ids: Vec<i64> = y.iter().map(|&v| v as i64).collect();
            yc = ClassIds::from_slice(&g, &[t, b], &ids).expect("y");
            Target::Classes(&yc)
        }
    };
    let fw = rnn.forward(&xt, h0t.as_ref()).expect("forward");
    let (fw_o, fw_h) = (fw.output.to_vec().unwrap(), fw.h_n.to_vec().unwrap());
    let (fw, grads) = rnn
        .loss_and_gradients(&xt, h0t.as_ref(), target, c.loss)
        .expect("loss and gradients");
    let result = GpuResult {
        output: fw.output.to_vec().unwrap(),
        h_n: fw.h_n.to_vec().unwrap(),
        loss: rnn.last_loss().expect("loss"),
        params: grads
            .params
            .iter()
            .map(|(n, t)| (n.clone(), t.to_vec().unwrap()))
            .collect(),
        x: grads.x.expect("dL/dx was asked for").to_vec().unwrap(),
        h0: grads.h0.expect("dL/dh0 was asked for").to_vec().unwrap(),
    };
    (fw_o, fw_h, result)
}

/// Every parameter gradient in `grads` against the reference's, by PyTorch name.
pub(crate) fn assert_param_grads(ctx: &str, grads: &Gradients, want: &Params) {
    for (name, w) in want.named() {
        let got = grads
            .get(&name)
            .unwrap_or_else(|| panic!("{ctx}: no gradient for {name}"))
            .to_vec()
            .unwrap();
        assert_close(&format!("grad {name}, {ctx}"), &got, w, REL);
    }
}

fn run_with(c: Case, seed: u64, driver: Driver, kernels: KernelStyle) {
    run_on(c, seed, driver, &gpu().with_kernels(kernels));
}

/// Checks case `c` on `g` (its kernel style and CPU threads) under `driver`; returns the
/// kernels that ran.
fn run_on(c: Case, seed: u64, driver: Driver, g: &Gpu) -> Vec<&'static str> {
    check_on(c, &setup(c, seed), seed, driver, g)
}

/// Checks case `c` with the parameters and data of `s` (whose configuration may have more
/// than `c` says: a deeper block) on `g` under `driver`; returns the kernels that ran.
pub(crate) fn check_on(
    c: Case,
    s: &Setup,
    seed: u64,
    driver: Driver,
    g: &Gpu,
) -> Vec<&'static str> {
    let kernels = g.kernel_style();
    let (t, b) = (c.steps, c.batch);
    let (want_loss, trace, want) =
        reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), t, b, &s.targets, c.loss);
    let ctx = format!(
        "{c:?} {:?} driver {driver:?} kernels {kernels:?}",
        s.p.config.deep_output
    );
    // Every case exercises the recurrent path: dL/dW_hh is not zero (a dead relu layer, or
    // T = 1 with no h0, would check nothing of the recurrence).
    for (k, l) in want.params.layers.iter().enumerate() {
        assert!(
            l.w_hh.iter().any(|v| v.abs() > 1e-9),
            "{ctx}: the case never exercises layer {k}'s recurrence (dL/dW_hh is zero)"
        );
    }

    let mut rnn = model_on(g, &s.p, driver);
    // First a call on other data of the same shape, so every result checked below must
    // overwrite what that call left in the buffers, not add to it.
    let other = setup(c, seed + 500);
    gpu_run(&mut rnn, c, &other);
    let (fw_o, fw_h, got) = gpu_run(&mut rnn, c, s);
    assert_close(&format!("output (forward) {ctx}"), &fw_o, &trace.o, REL);
    assert_close(&format!("h_n (forward) {ctx}"), &fw_h, &trace.h_n(), REL);
    assert_close(&format!("output {ctx}"), &got.output, &trace.o, REL);
    assert_close(&format!("h_n {ctx}"), &got.h_n, &trace.h_n(), REL);
    assert_close(&format!("loss {ctx}"), &[got.loss], &[want_loss], REL);
    let named = want.params.named();
    assert_eq!(got.params.len(), named.len(), "{ctx}: parameter count");
    for ((name, g), (wname, w)) in got.params.iter().zip(&named) {
        assert_eq!(name, wname, "{ctx}: parameter order");
        assert_close(&format!("grad {name} {ctx}"), g, w, REL);
    }
    assert_close(&format!("grad x {ctx}"), &got.x, &want.x, REL);
    assert_close(&format!("grad h0 {ctx}"), &got.h0, &want.h0, REL);
    rnn.kernel_names()
}

/// The grid: every H of {1, 3, 64, 65, 257} under every nonlinearity, loss, reduction and
/// h0 choice, with T, B, I, O and bias varied across cases (T = 1, B = 1, O = 1 included).
fn grid() -> Vec<Case> {
    let shapes = [
        (1, 1, 2, 1),
        (5, 3, 7, 4),
        (3, 1, 1, 3),
        (1, 4, 5, 2),
        (9, 2, 3, 1),
    ];
    let mut cases = Vec::new();
    let mut n = 0;
    for hidden in [1, 3, 64, 65, 257] {
        for nonlinearity in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            for loss in [Loss::mse(), Loss::cross_entropy()] {
                for reduction in [Reduction::Mean, Reduction::Sum] {
                    for with_h0 in [false, true] {
                        let (steps, batch, input, mut output) = shapes[n % shapes.len()];
                        if loss.kind == LossKind::CrossEntropy && output == 1 {
                            output = 3; // one class makes cross-entropy identically zero
                        }
                        cases.push(Case {
                            steps,
                            batch,
                            input,
                            hidden,
                            output,
                            nonlinearity,
                            bias: n % 3 != 2,
                            loss: loss.with_reduction(reduction),
                            // With T = 1 and no h0, dL/dW_hh is zero by construction.
                            with_h0: with_h0 || steps == 1,
                            layers: 1,
                            bidirectional: false,
                        });
                        n += 1;
                    }
                }
            }
        }
    }
    cases
}

#[test]
fn forward_and_gradients_match_reference_over_grid() {
    for (i, c) in grid().into_iter().enumerate() {
        run(c, 1000 + i as u64 * 10, Driver::PerStep);
    }
}

#[test]
fn persistent_driver_matches_reference_over_grid() {
    for (i, c) in grid().into_iter().enumerate() {
        run(c, 3000 + i as u64 * 10, Driver::Persistent);
    }
}

#[test]
fn persistent_driver_at_its_largest_hidden_size_matches_reference() {
    // H = 1024 fills the persistent kernel's workgroup memory; B = 5 leaves a partial
    // 4-row workgroup. Per-step too, for the same sizes.
    let c = Case {
        steps: 3,
        batch: 5,
        input: 3,
        hidden: 1024,
        output: 2,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 1,
        bidirectional: false,
    };
    run(c, 77, Driver::Persistent);
    run(c, 78, Driver::PerStep);
    // And with many workgroups at once (B = 64: 16 persistent workgroups, or 16 blocked
    // per-step workgroups of 64 x 64).
    let many = Case {
        steps: 4,
        batch: 64,
        input: 16,
        output: 8,
        ..c
    };
    run(many, 79, Driver::Persistent);
    run(many, 80, Driver::PerStep);
}

#[test]
fn every_kernel_style_matches_reference() {
    // Auto picks one style per adapter; the others are checked here on the same adapter, with
    // the per-step and persistent drivers, whose kernels also depend on the style. (Subgroup
    // runs as Direct where the adapter has no 8-lane subgroups.)
    for (i, c) in grid().into_iter().enumerate().step_by(3) {
        run_with(c, 7000 + i as u64 * 10, Driver::PerStep, KernelStyle::Tiled);
        run_with(
            c,
            8000 + i as u64 * 10,
            Driver::PerStep,
            KernelStyle::Direct,
        );
    }
    let wide = Case {
        steps: 40,
        batch: 13,
        input: 70,
        hidden: 100,
        output: 67,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 1,
        bidirectional: false,
    };
    run_with(wide, 44, Driver::PerStep, KernelStyle::Tiled);
    run_with(wide, 45, Driver::PerStep, KernelStyle::Direct);
    // Sizes that are multiples of 4 (so the direct kernels read vec4s) but not of 8 or 64,
    // with T * B = 35 rows: every vec4 layout and its edges.
    for (i, (input, hidden, output)) in [(8, 68, 12), (36, 132, 20), (4, 4, 4)]
        .into_iter()
        .enumerate()
    {
        let c = Case {
            steps: 5,
            batch: 7,
            input,
            hidden,
            output,
            ..wide
        };
        run_with(c, 50 + i as u64, Driver::PerStep, KernelStyle::Direct);
        run_with(c, 60 + i as u64, Driver::PerStep, KernelStyle::Tiled);
        run_with(c, 65 + i as u64, Driver::PerStep, KernelStyle::Subgroup);
    }
    // Multiples of 4 over T * B = 520 rows: products large enough for the tall direct
    // workgroups where the machine has few CPU threads (narrow ones elsewhere).
    let tall = Case {
        input: 8,
        hidden: 132,
        output: 12,
        ..wide
    };
    run_with(tall, 70, Driver::Persistent, KernelStyle::Direct);
    run_with(tall, 71, Driver::Persistent, KernelStyle::Subgroup);
    run_with(tall, 72, Driver::PerStep, KernelStyle::Subgroup);
}

#[test]
fn naive_driver_matches_reference() {
    for (i, c) in grid().into_iter().enumerate().step_by(7) {
        run(c, 5000 + i as u64 * 10, Driver::Naive);
    }
}

#[test]
fn long_sequence_and_wide_batch_match_reference() {
    // Sizes past one workgroup in every direction of every kernel (64-tile GEMMs over
    // T * B = 520 rows, 4-row batch groups with a partial last one).
    let c = Case {
        steps: 40,
        batch: 13,
        input: 70,
        hidden: 100,
        output: 67,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 1,
        bidirectional: false,
    };
    let relu_ce = Case {
        loss: Loss::cross_entropy().with_reduction(Reduction::Sum),
        nonlinearity: Nonlinearity::Relu,
        ..c
    };
    for driver in [Driver::PerStep, Driver::Persistent] {
        run(c, 42, driver);
        run(relu_ce, 43, driver);
    }
    // B = 130 rows of H = 128: the per-step kernels' tall workgroups (64 rows) where the
    // machine has few CPU threads, W read through the uniform window, a partial row block.
    let wide = Case {
        steps: 3,
        batch: 130,
        input: 4,
        hidden: 128,
        output: 2,
        ..c
    };
    run(wide, 44, Driver::PerStep);
}

#[test]
fn both_directions_of_h_128_with_h0_match_reference() {
    // H = 128: on CPU adapters one direction's W fits the uniform window and two do not, so
    // the persistent loops run the directions in dispatches of their own, each through the
    // layer's texture mirrors where the adapter keeps them (filled once before the first
    // direction and copied back once after the last: a copy between them lost the reverse
    // direction's h0). Two layers, so the second reads the first's copied-back states.
    let c = Case {
        steps: 6,
        batch: 5,
        input: 3,
        hidden: 128,
        output: 2,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 2,
        bidirectional: true,
    };
    run(c, 95, Driver::Persistent);
}

#[test]
fn thousand_step_sequences_match_reference() {
    // Long enough that the persistent loop runs in several chunks on CPU adapters (lavapipe
    // stops an invocation after 65535 loop iterations) and the weight-gradient multiplies
    // reduce over 1000 * 9 rows, with H = 128 as in the `long` benchmark shape.
    let c = Case {
        steps: 1000,
        batch: 9,
        input: 8,
        hidden: 128,
        output: 4,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 1,
        bidirectional: false,
    };
    for driver in [Driver::Persistent, Driver::PerStep] {
        run(c, 90, driver);
    }
    // B = 5: the persistent kernels with 4 rows per workgroup where the machine has 2 or
    // more CPU threads (lavapipe), in their own chunks.
    let few = Case { batch: 5, ..c };
    run(few, 92, Driver::Persistent);
    // 72000 rows: past what one invocation may loop over on lavapipe, so the weight gradients
    // are cut into accumulating parts there.
    let rows = Case {
        steps: 8000,
        batch: 9,
        hidden: 12,
        ..c
    };
    run(rows, 91, Driver::Persistent);
    // Both directions over 1000 steps, two layers: the reverse direction's reversed time
    // across the persistent loop's chunks.
    let both = Case {
        batch: 5,
        hidden: 12,
        layers: 2,
        bidirectional: true,
        ..c
    };
    run(both, 93, Driver::Persistent);
    run(both, 94, Driver::PerStep);
}

#[test]
fn backward_from_given_output_gradient_matches_reference() {
    let g = gpu();
    let config = RnnConfig::new(4, 65, 3);
    let p = Params::random(config, 0.2, 9);
    let (t, b) = (6, 5);
    let x = random(t * b * 4, 1.0, 10);
    let d_o = random(t * b * 3, 1.0, 11);
    let trace = reference::forward(&p, &x, None, t, b);
    let want = reference::backward(&p, &x, &trace, &d_o);
    let mut rnn = model_from(&p, Driver::PerStep);
    let xt = Tensor::from_slice(&g, &[t, b, 4], &to_f32(&x)).unwrap();
    let dot = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&d_o)).unwrap();
    // dL/dx only when asked for.
    rnn.set_input_gradients(false);
    rnn.forward(&xt, None).unwrap();
    let without = rnn.backward(&dot).unwrap();
    assert!(without.x.is_none() && without.h0.is_none());
    rnn.set_input_gradients(true);
    rnn.forward(&xt, None).unwrap();
    let grads = rnn.backward(&dot).unwrap();
    assert_param_grads("backward", &grads, &want.params);
    assert_close(
        "x",
        &grads.x.expect("dL/dx was asked for").to_vec().unwrap(),
        &want.x,
        REL,
    );
    let dh0 = grads.h0.as_ref().expect("dL/dh0 was asked for");
    assert_close("h0", &dh0.to_vec().unwrap(), &want.h0, REL);
}

#[test]
fn pytorch_shaped_h0_is_accepted() {
    // h0 as torch.nn.RNN takes it: [num_layers = 1, B, H].
    let g = gpu();
    let config = RnnConfig::new(2, 3, 1);
    let p = Params::random(config, 0.5, 3);
    let x = random(2 * 2 * 2, 1.0, 4);
    let h0 = random(2 * 3, 1.0, 5);
    let trace = reference::forward(&p, &x, Some(&h0), 2, 2);
    let mut rnn = model_from(&p, Driver::PerStep);
    let xt = Tensor::from_slice(&g, &[2, 2, 2], &to_f32(&x)).unwrap();
    let ht = Tensor::from_slice(&g, &[1, 2, 3], &to_f32(&h0)).unwrap();
    let fw = rnn.forward(&xt, Some(&ht)).unwrap();
    assert_close("output", &fw.output.to_vec().unwrap(), &trace.o, REL);
}

#[test]
fn forward_after_a_weight_change_uses_the_new_weights() {
    // The loops read W through layouts written only when W has changed (by set_parameter or
    // an optimizer step): a forward after either must see the new W.
    let g = gpu();
    let config = RnnConfig::new(3, 12, 2);
    let (t, b) = (5, 3);
    let x = random(t * b * 3, 1.0, 20);
    let xt = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&x)).unwrap();
    for driver in [Driver::PerStep, Driver::Persistent] {
        let p = Params::random(config, 0.4, 21);
        let mut rnn = model_from(&p, driver);
        rnn.forward(&xt, None).unwrap();
        let q = Params::random(config, 0.4, 22);
        for (name, v) in q.named() {
            rnn.set_parameter(&name, &to_f32(v)).unwrap();
        }
        let got = rnn.forward(&xt, None).unwrap().output.to_vec().unwrap();
        let want = reference::forward(&q, &x, None, t, b);
        assert_close(
            &format!("output after set_parameter, {driver:?}"),
            &got,
            &want.o,
            REL,
        );

        // And after an optimizer step: the next forward matches the updated parameters.
        let y = Tensor::from_slice(&g, &[t, b, 2], &to_f32(&random(t * b * 2, 1.0, 23))).unwrap();
        let config = OptimizerKind::sgd(0.5, 0.0).into();
        let mut opt = Optimizer::new(&rnn, config).unwrap();
        rnn.train_step(&xt, None, Target::Values(&y), Loss::mse(), &mut opt)
            .unwrap();
        let got = rnn.forward(&xt, None).unwrap().output.to_vec().unwrap();
        // The update computed on the host, not read back from the GPU.
        let yv = Targets::Values(y.to_vec().unwrap().iter().map(|&v| f64::from(v)).collect());
        let grads = reference::loss_and_grads(&q, &x, None, t, b, &yv, Loss::mse()).2;
        let mut updated = q.clone();
        reference::Optimizer::new(config).step(&mut updated, &grads.params);
        let want = reference::forward(&updated, &x, None, t, b);
        assert_close(
            &format!("output after a step, {driver:?}"),
            &got,
            &want.o,
            REL,
        );
    }
}

#[test]
fn the_models_parameter_layout_is_pytorchs() {
    // The reference's own list of names and shapes (PyTorch's state_dict order) against the
    // GPU side's flat layout: a layout bug cannot pass on both sides.
    let g = gpu();
    for (bias, layers) in [(true, 1), (false, 1), (true, 3), (false, 2)] {
        let config = RnnConfig::new(3, 5, 2).with_bias(bias).with_layers(layers);
        let rnn = Rnn::new(&g, config, 0).expect("model");
        let got: Vec<(String, Vec<usize>)> = rnn
            .layout()
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect();
        assert_eq!(got, Params::shapes(&config), "bias {bias}, {layers} layers");
        let mut offset = 0;
        for e in rnn.layout().entries() {
            assert_eq!(e.offset, offset, "{}: packed back to back", e.name);
            offset += e.len();
        }
        assert_eq!(rnn.layout().len(), offset);
    }
}

#[test]
fn a_gradient_missing_one_steps_contribution_fails_the_comparison() {
    // The comparison must catch a wrong gradient, not only a wildly wrong one: the GPU's
    // gradients of a long sequence (8000 steps, mean-reduced, so each step's share is small
    // and the largest dL/dh0 is about 1e-5) against a reference that leaves out what one
    // early step's output contributes. Every parameter's comparison must fail.
    let c = Case {
        steps: 8000,
        batch: 9,
        input: 8,
        hidden: 12,
        output: 4,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers: 1,
        bidirectional: false,
    };
    let s = setup(c, 91);
    let (t, b) = (c.steps, c.batch);
    let mut rnn = model_with(&s.p, Driver::Persistent, KernelStyle::Auto);
    let (_, _, got) = gpu_run(&mut rnn, c, &s);
    let trace = reference::forward(&s.p, &s.x, s.h0.as_deref(), t, b);
    let (_, mut d_o) = reference::loss(&trace.o, c.output, &s.targets, c.loss);
    let right = reference::backward(&s.p, &s.x, &trace, &d_o);
    // Step 1 (the second): its output depends on h0, x(0), x(1) and every parameter.
    let row = b * c.output;
    d_o[row..2 * row].fill(0.0);
    let wrong = reference::backward(&s.p, &s.x, &trace, &d_o);
    for ((name, g), ((_, w), (_, r))) in got
        .params
        .iter()
        .zip(wrong.params.named().iter().zip(right.params.named()))
    {
        assert_close(&format!("{name}, the right gradient"), g, r, REL);
        assert!(
            close_error(name, g, w, REL).is_some(),
            "{name}: a gradient missing step 1 passed the comparison"
        );
    }
    assert_close("dL/dh0, the right gradient", &got.h0, &right.h0, REL);
    assert!(
        close_error("h0", &got.h0, &wrong.h0, REL).is_some(),
        "dL/dh0 missing step 1 passed the comparison"
    );
    // And a subtle one: the latest step whose omission still moves dL/dh0 by 0.2% of its root
    // mean square (found by bisection; later steps reach h0 through ever more tanh
    // derivatives). Scaling the tolerance by the tensor's largest value with a floor of 1e-3,
    // as this suite once did, let errors of about 2% through on this tensor.
    let rms = |v: &[f64]| (v.iter().map(|a| a * a).sum::<f64>() / v.len() as f64).sqrt();
    let moved = |t: usize| {
        let mut d = reference::loss(&trace.o, c.output, &s.targets, c.loss).1;
        d[t * row..(t + 1) * row].fill(0.0);
        let w = reference::backward(&s.p, &s.x, &trace, &d);
        let diff: Vec<f64> = w.h0.iter().zip(&right.h0).map(|(a, b)| a - b).collect();
        (rms(&diff) / rms(&right.h0), w.h0)
    };
    let (mut lo, mut hi) = (1, t - 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if moved(mid).0 >= 2e-3 {
            lo = mid
        } else {
            hi = mid
        }
    }
    let (change, wrong_h0) = moved(lo);
    eprintln!("dropping step {lo} moves dL/dh0 by {change:e} of its rms");
    assert!((2e-3..2e-2).contains(&change), "step {lo}: {change}");
    assert!(
        close_error("h0", &got.h0, &wrong_h0, REL).is_some(),
        "dL/dh0 missing step {lo} ({change:e} of its rms) passed the comparison"
    );
}

/// The recurrence kernels `style` (as it resolves on this adapter) and `driver` must run for
/// `hidden` units: (forward, backward) name prefixes, and whether the subgroup forms.
fn expected_loop(
    style: KernelStyle,
    driver: Driver,
    hidden: usize,
) -> (&'static str, &'static str) {
    let persistent = driver == Driver::Persistent;
    match (style, hidden.is_multiple_of(4), persistent) {
        (KernelStyle::Tiled, _, false) => ("recurrence_tiled_forward", "recurrence_tiled_backward"),
        (KernelStyle::Tiled, _, true) => ("recurrence_seq_forward", "recurrence_seq_backward"),
        (_, true, false) => ("recurrence_blocked_forward", "recurrence_blocked_backward"),
        (_, true, true) => (
            "recurrence_blocked_seq_forward",
            "recurrence_blocked_seq_backward",
        ),
        (_, false, false) => ("recurrence_step_forward", "recurrence_step_backward"),
        (_, false, true) => (
            "recurrence_seq_forward_narrow",
            "recurrence_seq_backward_narrow",
        ),
    }
}

#[test]
fn every_driver_under_every_kernel_style_and_thread_count_matches_reference() {
    // Every (driver, kernel style) pair the code can select, and the CPU-thread counts that
    // switch the CPU-adapter kernels' shapes (1: tall workgroups, 8-row persistent groups;
    // 16: narrow ones, 4-row groups), each checked for which kernels actually ran.
    let base = gpu();
    let subgroups =
        base.with_kernels(KernelStyle::Subgroup).kernel_style() == KernelStyle::Subgroup;
    eprintln!("8-lane subgroups on this adapter: {subgroups}");
    let cases = [
        // H not a multiple of 4: padded to 4 for the CPU-adapter kernels, which then run
        // their blocked forms (a model with dropout between layers runs the plain ones:
        // dropout_between_layers_matches_reference).
        Case {
            steps: 4,
            batch: 5,
            input: 3,
            hidden: 3,
            output: 2,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            loss: Loss::mse(),
            with_h0: true,
            layers: 1,
            bidirectional: false,
        },
        // H = 64: W through the uniform window; B = 5, a partial row group.
        Case {
            steps: 5,
            batch: 5,
            input: 4,
            hidden: 64,
            output: 3,
            nonlinearity: Nonlinearity::Relu,
            bias: true,
            loss: Loss::cross_entropy(),
            with_h0: false,
            layers: 1,
            bidirectional: false,
        },
        // H = 132 (past the window), B = 70 (more than one 64-row block).
        Case {
            steps: 3,
            batch: 70,
            input: 8,
            hidden: 132,
            output: 4,
            nonlinearity: Nonlinearity::Tanh,
            bias: false,
            loss: Loss::mse().with_reduction(Reduction::Sum),
            with_h0: true,
            layers: 1,
            bidirectional: false,
        },
    ];
    let mut seed = 9000;
    for style in [
        KernelStyle::Tiled,
        KernelStyle::Direct,
        KernelStyle::Subgroup,
    ] {
        for driver in [Driver::PerStep, Driver::Persistent, Driver::Naive] {
            for c in cases {
                let mut seen = Vec::new();
                for threads in [1, 16] {
                    // With 16 threads the loops keep their state in the buffers alone, so that
                    // both the textured persistent kernels and the others meet the reference.
                    let g = base
                        .with_kernels(style)
                        .with_cpu_threads(threads)
                        .with_state_textures(threads == 1);
                    let resolved = g.kernel_style();
                    if style == KernelStyle::Subgroup && !subgroups {
                        assert_eq!(resolved, KernelStyle::Direct, "the fallback is Direct");
                    } else {
                        assert_eq!(resolved, style);
                    }
                    seed += 10;
                    let names = run_on(c, seed, driver, &g);
                    let ctx = format!("{style:?} {driver:?} threads {threads} {c:?}: {names:?}");
                    let (fwd, bwd) = expected_loop(resolved, driver, c.hidden.next_multiple_of(4));
                    let ran = |prefix: &str| names.iter().find(|n| n.starts_with(prefix)).copied();
                    let (Some(f), Some(b)) = (ran(fwd), ran(bwd)) else {
                        panic!("expected {fwd}* and {bwd}*: {ctx}");
                    };
                    // Only the subgroup style runs subgroup kernels, and it runs them for the
                    // blocked loops (H a multiple of 4).
                    let sg = resolved == KernelStyle::Subgroup;
                    let any_sg = names.iter().any(|n| n.contains("_sg"));
                    assert!(sg || !any_sg, "subgroup kernels outside their style: {ctx}");
                    if fwd.starts_with("recurrence_blocked") {
                        // Recurrence kernels are named for their form, then `+` the cell.
                        let form = |n: &'static str| n.split('+').next().unwrap_or(n);
                        assert_eq!(form(f).contains("_sg"), sg, "{ctx}");
                        assert_eq!(form(b).contains("_sg"), sg, "{ctx}");
                        let tex = |n: &'static str| form(n).ends_with("_tex");
                        assert!(threads == 1 || !tex(f) && !tex(b), "{ctx}");
                    }
                    if resolved == KernelStyle::Tiled {
                        assert!(
                            names
                                .iter()
                                .all(|n| !n.starts_with("matmul_") && !n.starts_with("transpose")),
                            "the tiled style runs the tiled multiply only: {ctx}"
                        );
                    }
                    seen.push(names);
                }
                // On CPU-adapter kernels the thread count changes the shapes chosen somewhere
                // in the grid; record that it did for the persistent blocked loop.
                if style != KernelStyle::Tiled && driver == Driver::Persistent && c.hidden == 64 {
                    assert_ne!(
                        seen[0], seen[1],
                        "{style:?}: 1 and 16 threads ran the same kernels"
                    );
                }
            }
        }
    }
}

#[test]
fn stacked_and_bidirectional_layers_match_reference_under_every_driver_and_style() {
    // L = 2 and 3 (layer k + 1 reads layer k's outputs; h0 and h_n are [L·D, B, H]), and both
    // directions at L = 1 and 2, under every driver and kernel style, over odd and blocked
    // sizes, T = 1 and B = 1 included: each (driver, style) pair meets every layer count,
    // both direction counts and both H kinds (12 combinations over 5 shapes).
    let base = gpu();
    let shapes = [
        // (T, B, I, H, O, nonlinearity, bias, loss)
        (4, 3, 5, 7, 3, Nonlinearity::Tanh, true, Loss::mse()),
        (
            1,
            1,
            2,
            64,
            2,
            Nonlinearity::Relu,
            true,
            Loss::cross_entropy(),
        ),
        (
            6,
            5,
            3,
            12,
            4,
            // The linear recurrence, ours alone (not in PyTorch's nn.RNN).
            Nonlinearity::Identity,
            false,
            Loss::cross_entropy(),
        ),
        (
            3,
            9,
            8,
            65,
            1,
            Nonlinearity::Relu,
            true,
            Loss::mse().with_reduction(Reduction::Sum),
        ),
        // H = 100 on CPU adapters: W's uniform window holds one direction's layouts but not
        // two, so the directions run one dispatch each (side by side otherwise).
        (3, 2, 4, 100, 2, Nonlinearity::Tanh, true, Loss::mse()),
    ];
    let mut n = 0;
    for style in [
        KernelStyle::Tiled,
        KernelStyle::Direct,
        KernelStyle::Subgroup,
    ] {
        for driver in [Driver::PerStep, Driver::Persistent, Driver::Naive] {
            for (layers, bidirectional) in [(2, false), (3, false), (1, true), (2, true)] {
                let (steps, batch, input, hidden, output, nonlinearity, bias, loss) =
                    shapes[n % shapes.len()];
                let c = Case {
                    steps,
                    batch,
                    input,
                    hidden,
                    output,
                    nonlinearity,
                    bias,
                    loss,
                    // T = 1 needs h0 for a live recurrence; otherwise alternate.
                    with_h0: steps == 1 || n % 2 == 0,
                    layers,
                    bidirectional,
                };
                run_on(c, 12_000 + n as u64 * 10, driver, &base.with_kernels(style));
                n += 1;
            }
        }
    }
}

#[test]
fn carrying_the_state_is_passing_h_n_back() {
    // `forward(&x, Some(&previous.h_n))`: the h_n a call returned, given back as h0 (once a
    // GPU validation error, as h_n was a view of the buffer h0 is copied into), for every
    // layer count and driver; also through loss_and_gradients and train_step.
    let g = gpu();
    for layers in [1, 2, 3] {
        for driver in [Driver::PerStep, Driver::Persistent, Driver::Naive] {
            let config = RnnConfig::new(3, 8, 2).with_layers(layers);
            let p = Params::random(config, 0.5, 40 + layers as u64);
            let (t, b) = (4, 3);
            let x1 = random(t * b * 3, 1.0, 41);
            let x2 = random(t * b * 3, 1.0, 42);
            let first = reference::forward(&p, &x1, None, t, b);
            let second = reference::forward(&p, &x2, Some(&first.h_n()), t, b);
            let mut rnn = model_from(&p, driver);
            let x1t = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&x1)).unwrap();
            let x2t = Tensor::from_slice(&g, &[t, b, 3], &to_f32(&x2)).unwrap();
            let out = rnn.forward(&x1t, None).unwrap();
            assert_eq!(out.h_n.shape(), [layers, b, 8]);
            let h_n = out.h_n.clone();
            let out = rnn
                .forward(&x2t, Some(&h_n))
                .expect("h_n passed back as h0");
            let ctx = format!("{layers} layers, {driver:?}");
            assert_close(
                &format!("o, {ctx}"),
                &out.output.to_vec().unwrap(),
                &second.o,
                REL,
            );
            assert_close(
                &format!("h_n, {ctx}"),
                &out.h_n.to_vec().unwrap(),
                &second.h_n(),
                REL,
            );
            let y = Tensor::zeros(&g, &[t, b, 2]).unwrap();
            let h_n = out.h_n.clone();
            rnn.loss_and_gradients(&x1t, Some(&h_n), Target::Values(&y), Loss::mse())
                .expect("through loss_and_gradients");
            let mut opt = Optimizer::new(&rnn, OptimizerKind::sgd(0.01, 0.0)).unwrap();
            let h_n = rnn.forward(&x1t, None).unwrap().h_n;
            rnn.train_step(&x2t, Some(&h_n), Target::Values(&y), Loss::mse(), &mut opt)
                .expect("through train_step");
        }
    }
}

#[test]
fn batch_first_tensors_match_reference() {
    // x, y, o and dL/dx as [B, T, ...] (h0, h_n stay [L·D, B, H]): forward, loss and
    // gradients, and backward from a caller's batch-first dL/do, under the per-step and
    // persistent drivers, one and two directions, both losses.
    let g = gpu();
    for (n, (driver, bidirectional, loss)) in [
        (Driver::PerStep, false, Loss::mse()),
        (Driver::Persistent, true, Loss::cross_entropy()),
        (
            Driver::Naive,
            true,
            Loss::mse().with_reduction(Reduction::Sum),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Case {
            steps: 5,
            batch: 3,
            input: 4,
            hidden: 8,
            output: 3,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            loss,
            with_h0: true,
            layers: 2,
            bidirectional,
        };
        let s = setup(c, 300 + n as u64);
        let (t, b) = (c.steps, c.batch);
        let (want_loss, trace, want) =
            reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), t, b, &s.targets, c.loss);
        let mut rnn = model_on(&g, &s.p, driver);
        rnn.set_batch_first(true);
        let xt =
            Tensor::from_slice(&g, &[b, t, c.input], &to_f32(&swap_leading(&s.x, t, b))).unwrap();
        let h0 = s.h0.as_ref().unwrap();
        let h0t = Tensor::from_slice(&g, &[c.states(), b, c.hidden], &to_f32(h0)).unwrap();
        let yv;
        let yc;
        let target = match &s.targets {
            Targets::Values(y) => {
                let y = to_f32(&swap_leading(y, t, b));
                yv = Tensor::from_slice(&g, &[b, t, c.output], &y).unwrap();
                Target::Values(&yv)
            }
            Targets::Classes(y) => {
                let ids: Vec<i64> = swap_leading(y, t, b).iter().map(|&v| v as i64).collect();
                yc = ClassIds::from_slice(&g, &[b, t], &ids).unwrap();
                Target::Classes(&yc)
            }
        };
        let ctx = format!("batch-first {driver:?} bidirectional {bidirectional}");
        let (fw, grads) = rnn
            .loss_and_gradients(&xt, Some(&h0t), target, c.loss)
            .unwrap();
        assert_eq!(fw.output.shape(), [b, t, c.output]);
        let want_o = swap_leading(&trace.o, t, b);
        assert_close(
            &format!("o, {ctx}"),
            &fw.output.to_vec().unwrap(),
            &want_o,
            REL,
        );
        assert_close(
            &format!("h_n, {ctx}"),
            &fw.h_n.to_vec().unwrap(),
            &trace.h_n(),
            REL,
        );
        assert_close(
            &format!("loss, {ctx}"),
            &[rnn.last_loss().unwrap()],
            &[want_loss],
            REL,
        );
        assert_param_grads(&ctx, &grads, &want.params);
        let dx = grads.x.expect("asked for");
        assert_eq!(dx.shape(), [b, t, c.input]);
        let want_dx = swap_leading(&want.x, t, b);
        assert_close(&format!("dx, {ctx}"), &dx.to_vec().unwrap(), &want_dx, REL);
        // backward from a batch-first dL/do of the caller's.
        let d_o = random(t * b * c.output, 1.0, 77);
        let back = reference::backward(&s.p, &s.x, &trace, &d_o);
        let d_ot =
            Tensor::from_slice(&g, &[b, t, c.output], &to_f32(&swap_leading(&d_o, t, b))).unwrap();
        rnn.forward(&xt, Some(&h0t)).unwrap();
        let grads = rnn.backward(&d_ot).unwrap();
        assert_param_grads(&format!("backward, {ctx}"), &grads, &back.params);
        let dx = grads.x.expect("asked for").to_vec().unwrap();
        assert_close(
            &format!("backward dx, {ctx}"),
            &dx,
            &swap_leading(&back.x, t, b),
            REL,
        );
    }
}

#[test]
fn dropout_between_layers_matches_reference() {
    // In training, every layer's output but the last is dropped with the masks the reference
    // draws from the same hash and seed (Rnn::dropout_seed): outputs, loss and every gradient
    // match, one and two directions, under every driver; out of training nothing is dropped.
    let g = gpu();
    for (n, (driver, bidirectional, layers)) in [
        (Driver::PerStep, false, 2),
        (Driver::Persistent, false, 3),
        (Driver::Naive, true, 2),
        (Driver::Persistent, true, 3),
    ]
    .into_iter()
    .enumerate()
    {
        // H = 7 in the first two: odd, with dropout between layers, so it runs unpadded on
        // the plain CPU-adapter loop kernels (per step and persistent).
        let c = Case {
            steps: 4,
            batch: 3,
            input: 5,
            hidden: [7, 7, 8, 8][n],
            output: 3,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            loss: Loss::mse(),
            with_h0: true,
            layers,
            bidirectional,
        };
        let mut s = setup(c, 600 + n as u64);
        s.p.config = s.p.config.with_dropout(0.4);
        let (t, b) = (c.steps, c.batch);
        let mut rnn = model_on(&g, &s.p, driver);
        let xt = Tensor::from_slice(&g, &[t, b, c.input], &to_f32(&s.x)).unwrap();
        let h0 = s.h0.as_ref().unwrap();
        let h0t = Tensor::from_slice(&g, &[c.states(), b, c.hidden], &to_f32(h0)).unwrap();
        let Targets::Values(y) = &s.targets else {
            unreachable!("mse")
        };
        let yt = Tensor::from_slice(&g, &[t, b, c.output], &to_f32(y)).unwrap();
        let ctx = format!("dropout, {driver:?}, bidirectional {bidirectional}, L = {layers}");
        let mut seeds = Vec::new();
        for call in 0..2 {
            let (fw, grads) = rnn
                .loss_and_gradients(&xt, Some(&h0t), Target::Values(&yt), c.loss)
                .unwrap();
            let seed = rnn.dropout_seed();
            seeds.push(seed);
            let trace = reference::forward_with_dropout(&s.p, &s.x, Some(h0), t, b, Some(seed));
            assert!(
                trace.masks[0].as_ref().unwrap().contains(&0.0),
                "{ctx}: the mask drops something"
            );
            let (want_loss, d_o) = reference::loss(&trace.o, c.output, &s.targets, c.loss);
            let want = reference::backward(&s.p, &s.x, &trace, &d_o);
            let ctx = format!("{ctx}, call {call}");
            assert_close(
                &format!("o, {ctx}"),
                &fw.output.to_vec().unwrap(),
                &trace.o,
                REL,
            );
            assert_close(
                &format!("loss, {ctx}"),
                &[rnn.last_loss().unwrap()],
                &[want_loss],
                REL,
            );
            assert_param_grads(&ctx, &grads, &want.params);
            let dx = grads.x.expect("asked for").to_vec().unwrap();
            assert_close(&format!("dx, {ctx}"), &dx, &want.x, REL);
        }
        assert_ne!(seeds[0], seeds[1], "{ctx}: fresh masks each call");
        // Out of training: the plain reference.
        rnn.set_training(false);
        let got = rnn
            .forward(&xt, Some(&h0t))
            .unwrap()
            .output
            .to_vec()
            .unwrap();
        let want = reference::forward(&s.p, &s.x, Some(h0), t, b);
        assert_close(&format!("o out of training, {ctx}"), &got, &want.o, REL);
    }
}

/// An orthogonal `[n, n]` matrix (rows orthonormal) from random vectors, by Gram-Schmidt.
pub(crate) fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut q = random(n * n, 1.0, seed);
    for i in 0..n {
        for j in 0..i {
            let d: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
            for k in 0..n {
                q[i * n + k] -= d * q[j * n + k];
            }
        }
        let norm = (0..n).map(|k| q[i * n + k].powi(2)).sum::<f64>().sqrt();
        for k in 0..n {
            q[i * n + k] /= norm;
        }
    }
    q
}

#[test]
fn a_linear_recurrence_raises_each_eigenvalue_to_the_power_t() {
    // The seed's example: with no nonlinearity and no input, h(t) = W h(t-1), and for a
    // symmetric W = Q Λ Qᵀ, h(t) = Q Λᵗ Qᵀ h(0). The head is the identity, so o(t) = h(t) at
    // every step; the expected values come from the eigenvalues, not from multiplying by W.
    let g = gpu();
    let (n, t) = (8, 30);
    let q = orthogonal(n, 5); // rows are the eigenvectors
    let h0 = random(n, 1.0, 6);
    for (what, lambdas) in [
        ("below 1", [0.9, 0.8, 0.7, -0.6, 0.5, 0.3, -0.2, 0.1]),
        ("at 1", [1.0, -1.0, 0.9, 0.5, 0.2, -0.3, 0.1, 0.05]),
        ("above 1", [1.08, 1.02, 0.95, -0.9, 0.4, 0.2, -0.1, 0.0]),
    ] {
        // W = Qᵀ Λ Q with Q's rows the eigenvectors.
        let mut w = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                w[i * n + j] = (0..n)
                    .map(|k| q[k * n + i] * lambdas[k] * q[k * n + j])
                    .sum();
            }
        }
        let config = RnnConfig::new(1, n, n)
            .with_nonlinearity(Nonlinearity::Identity)
            .with_bias(false);
        let mut identity = vec![0.0f32; n * n];
        (0..n).for_each(|i| identity[i * n + i] = 1.0);
        for (driver, style) in [
            (Driver::PerStep, KernelStyle::Auto),
            (Driver::Persistent, KernelStyle::Auto),
            (Driver::PerStep, KernelStyle::Tiled),
        ] {
            let mut rnn = Rnn::new(&g.with_kernels(style), config, 0).unwrap();
            rnn.set_driver(driver);
            rnn.set_parameter("rnn.weight_ih_l0", &[0.0; 8]).unwrap();
            rnn.set_parameter("rnn.weight_hh_l0", &to_f32(&w)).unwrap();
            rnn.set_parameter("fc.weight", &identity).unwrap();
            rnn.set_parameter("fc.bias", &[0.0; 8]).unwrap();
            let x = Tensor::zeros(&g, &[t, 1, 1]).unwrap();
            let h0t = Tensor::from_slice(&g, &[1, 1, n], &to_f32(&h0)).unwrap();
            let o = rnn
                .forward(&x, Some(&h0t))
                .unwrap()
                .output
                .to_vec()
                .unwrap();
            // Qᵀ... : coordinates of h0 in the eigenbasis, each scaled by λᵗ.
            let coords: Vec<f64> = (0..n)
                .map(|k| (0..n).map(|j| q[k * n + j] * h0[j]).sum())
                .collect();
            let mut want = Vec::with_capacity(t * n);
            for step in 1..=t {
                for j in 0..n {
                    let v: f64 = (0..n)
                        .map(|k| q[k * n + j] * lambdas[k].powi(step as i32) * coords[k])
                        .sum();
                    want.push(v);
                }
            }
            assert_close(
                &format!("h(t), eigenvalues {what}, {driver:?} {style:?}"),
                &o,
                &want,
                1e-4,
            );
        }
    }
}

#[test]
fn masked_losses_match_reference_under_every_driver() {
    // The loss counted at chosen steps (a mask [T, B], as sequence classification and the
    // long-memory tasks need): every loss and reduction, batch-first too, a mask that counts
    // one step only and one with weights other than 0 and 1, under every driver.
    let g = gpu();
    let mut n = 0;
    for driver in [Driver::PerStep, Driver::Persistent, Driver::Naive] {
        for (loss, batch_first) in [
            (Loss::mse(), false),
            (Loss::cross_entropy().with_reduction(Reduction::Sum), true),
            (Loss::cross_entropy(), false),
            (Loss::mse().with_reduction(Reduction::Sum), true),
        ] {
            let (t, b) = (5, 3);
            let c = Case {
                steps: t,
                batch: b,
                input: 3,
                hidden: 9,
                output: 4,
                nonlinearity: Nonlinearity::Tanh,
                bias: true,
                loss,
                with_h0: n % 2 == 0,
                layers: 1 + n % 2,
                bidirectional: n % 3 == 0,
            };
            let s = setup(c, 31_000 + n as u64);
            // [T, B]: only the last step counts in the first two cases; weights in the others.
            let mask: Vec<f64> = (0..t * b)
                .map(|i| match n % 4 {
                    0 | 1 => f64::from(i / b == t - 1),
                    _ => [0.0, 1.0, 0.5][i % 3],
                })
                .collect();
            let (want_loss, trace, want) = reference::masked_loss_and_grads(
                &s.p,
                (&s.x, s.h0.as_deref()),
                (t, b),
                &s.targets,
                &mask,
                loss,
            );
            let mut rnn = model_on(&g, &s.p, driver);
            rnn.set_batch_first(batch_first);
            // The caller's layout: [B, T, ...] when batch-first.
            let lay = |v: &[f64]| -> Vec<f32> {
                if batch_first {
                    to_f32(&swap_leading(v, t, b))
                } else {
                    to_f32(v)
                }
            };
            let lead = if batch_first { [b, t] } else { [t, b] };
            let xt = Tensor::from_slice(&g, &[lead[0], lead[1], c.input], &lay(&s.x)).unwrap();
            let h0t = s
                .h0
                .as_ref()
                .map(|h| Tensor::from_slice(&g, &[c.states(), b, c.hidden], &to_f32(h)).unwrap());
            let mt = Tensor::from_slice(&g, &lead, &lay(&mask)).unwrap();
            let (yv, yc);
            let target = match &s.targets {
                Targets::Values(y) => {
                    yv = Tensor::from_slice(&g, &[lead[0], lead[1], c.output], &lay(y)).unwrap();
                    Target::Values(&yv)
                }
                Targets::Classes(y) => {
                    let y = if batch_first {
                        swap_leading(y, t, b)
                    } else {
                        y.clone()
                    };
                    let ids: Vec<i64> = y.iter().map(|&v| v as i64).collect();
                    yc = ClassIds::from_slice(&g, &lead, &ids).unwrap();
                    Target::Classes(&yc)
                }
            };
            let ctx = format!("{c:?} {driver:?} batch-first {batch_first} mask {n}");
            // An unmasked call first: the masked one must not reuse its plan or its scale.
            rnn.loss_and_gradients(&xt, h0t.as_ref(), target, loss)
                .unwrap();
            let (_, grads) = rnn
                .loss_and_gradients(&xt, h0t.as_ref(), target.with_mask(&mt), loss)
                .unwrap();
            assert_close(
                &format!("loss {ctx}"),
                &[rnn.last_loss().unwrap()],
                &[want_loss],
                REL,
            );
            assert_param_grads(&ctx, &grads, &want.params);
            let _ = trace;
            // evaluate counts the same steps.
            let (_, value) = rnn
                .evaluate(&xt, h0t.as_ref(), target.with_mask(&mt), loss)
                .unwrap();
            assert_close(&format!("evaluate {ctx}"), &[value], &[want_loss], REL);
            n += 1;
        }
    }
}

#[test]
fn the_wavefront_experiment_computes_what_layer_after_layer_does() {
    // `bench --wavefront` times every layer of a stack in one persistent dispatch against the
    // layers one after another; its timing means something only if both give the same states
    // (odd B and T, H a multiple of 4 but not of 64, 1 to 3 layers, chunked on lavapipe).
    let g = gpu().with_kernels(KernelStyle::Direct);
    for (t, b, h, l) in [(1, 1, 4, 1), (7, 3, 12, 2), (150, 9, 68, 3)] {
        let r = rnn_wgpu::bench::wavefront(&g, (t, b, h, l), 1).expect("wavefront");
        assert!(r.max_diff < 1e-4, "T {t} B {b} H {h} L {l}: {}", r.max_diff);
    }
}

#[test]
fn the_head_and_cross_entropy_in_one_kernel_match_reference_at_every_width() {
    // Where the loops keep texture mirrors (lavapipe), a cross-entropy plan computes the head
    // itself, in blocks of 32 outputs (1 to 4 of them, up to O = 128; 129 takes the separate
    // kernels): every block count, O at and past each block's edge, rows not a multiple of
    // the kernel's 16 (one row, 15, 35, 51), both reductions. The other drivers check the
    // same answers by the separate head and loss.
    let shapes = [(1, 1), (5, 3), (7, 5), (3, 17)];
    for (n, output) in [2, 31, 33, 64, 65, 97, 128, 129].into_iter().enumerate() {
        let (steps, batch) = shapes[n % shapes.len()];
        let reduction = [Reduction::Mean, Reduction::Sum][n % 2];
        let c = Case {
            steps,
            batch,
            input: 3 + n,
            hidden: [4, 12, 20][n % 3],
            output,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            loss: Loss::cross_entropy().with_reduction(reduction),
            with_h0: true,
            layers: 1,
            bidirectional: false,
        };
        run(c, 41_000 + n as u64 * 10, Driver::Persistent);
        run(c, 41_005 + n as u64 * 10, Driver::Naive);
    }
}
