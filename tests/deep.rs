//! Deeper blocks (Pascanu et al. 2014): the deep input, deep transition (with and without its
//! shortcut) and deep output against the f64 reference under every driver and kernel style,
//! in chunks, batch-first, with gradient norms, and through model files.

use std::collections::HashMap;

use rnn_wgpu::io::model_file;
use rnn_wgpu::reference::{self, Params};
use rnn_wgpu::{Driver, KernelStyle, Loss, Mlp, Nonlinearity, Reduction, Rnn, RnnConfig, Tensor};

use crate::common::{Scratch, assert_close, gpu, to_f32};
use crate::versus_reference::{Case, REL, Setup, check_on, setup};

/// Case `c`'s data with a deep input block `mi` and a deep output block `mo`: every block
/// layer (and the layer or head above it) drawn in `±1.5/sqrt(fan_in)`, so that no layer
/// saturates or dies at any width.
fn blocks_setup(c: Case, mi: Mlp, mo: Mlp, seed: u64) -> Setup {
    transition_setup(c, (mi, mo), (Mlp::NONE, false), seed)
}

/// [`blocks_setup`] with a deep transition `mt` (and its shortcut when `skip`) too: its layers
/// drawn in `±1.5/sqrt(fan_in)` (a tenth of that for the shortcut, so the step stays
/// contracting).
fn transition_setup(c: Case, (mi, mo): (Mlp, Mlp), (mt, skip): (Mlp, bool), seed: u64) -> Setup {
    let base = setup(c, seed);
    let config = base
        .p
        .config
        .with_deep_input(mi)
        .with_deep_output(mo)
        .with_deep_transition(mt, skip);
    let mut p = Params::random(config, 1.0, seed + 11);
    let scale = |v: &mut Vec<f64>, fan_in: usize| {
        v.iter_mut()
            .for_each(|x| *x *= 1.5 / (fan_in as f64).sqrt())
    };
    // The recurrent layers as the plain case draws them, but for what the bottom one reads
    // and the transition's own weights.
    let fresh = p.layers.clone();
    p.layers = base.p.layers.clone();
    for (l, f) in p.layers.iter_mut().zip(fresh.clone()) {
        l.trans = f.trans;
        l.skip = f.skip;
        for (j, (w, b)) in l.trans.iter_mut().enumerate() {
            let fan_in = if j == 0 { c.hidden } else { mt.width };
            scale(w, fan_in);
            scale(b, fan_in);
            if mt.nonlinearity == Nonlinearity::Relu {
                b.iter_mut().for_each(|v| *v = v.abs() + 0.1);
            }
        }
        scale(&mut l.skip, 10 * 10 * c.hidden);
    }
    if mi.is_some() {
        // Each direction its own bottom W_ih, so a direction mixed up would show.
        for (l, f) in p.layers.iter_mut().zip(&fresh).take(config.directions()) {
            l.w_ih = f.w_ih.clone();
            scale(&mut l.w_ih, mi.width);
        }
    }
    let blocks = [
        (&mut p.in_mlp, mi, c.input),
        (&mut p.out_mlp, mo, config.out_width()),
    ];
    for (layers, m, first) in blocks {
        for (j, (w, b)) in layers.iter_mut().enumerate() {
            let fan_in = if j == 0 { first } else { m.width };
            scale(w, fan_in);
            scale(b, fan_in);
            if m.nonlinearity == Nonlinearity::Relu {
                // Positive biases keep the relu units alive, so every layer carries gradient.
                b.iter_mut().for_each(|v| *v = v.abs() + 0.1);
            }
        }
    }
    if mo.is_some() {
        scale(&mut p.w_fc, mo.width);
    }
    Setup { p, ..base }
}

fn deep_setup(c: Case, m: Mlp, seed: u64) -> Setup {
    blocks_setup(c, Mlp::NONE, m, seed)
}

/// The error of loading a copy of the model file at `path` without the tensor `drop` and with
/// the metadata entry `meta_change` set.
fn faulty_copy(
    g: &rnn_wgpu::Gpu,
    path: &std::path::Path,
    copy: std::path::PathBuf,
    drop: &str,
    meta_change: Option<(&str, &str)>,
) -> String {
    let file = rnn_wgpu::io::TensorFile::read(path).unwrap();
    let kept: Vec<(String, rnn_wgpu::io::HostTensor)> = file
        .names()
        .filter(|n| drop.is_empty() || !n.starts_with(drop))
        .map(|n| (n.to_string(), file.get(n).unwrap().clone()))
        .collect();
    let mut meta = file.metadata().clone();
    if let Some((k, v)) = meta_change {
        meta.insert(k.into(), v.into());
    }
    rnn_wgpu::io::write(&copy, &kept, &meta).unwrap();
    model_file::load(g, &copy).unwrap_err().to_string()
}

/// A shape of the grids: (T, B, I, H, O), layers, both directions, loss.
type GridShape = ((usize, usize, usize, usize, usize), usize, bool, Loss);

/// Every case under every kernel style and each of `drivers`, against the reference: each
/// case meets a different shape under each (style, driver) (`offset` turns the rotation), its
/// data from `setup` with seeds from `seed0` on.
fn check_grid<C>(
    cases: &[C],
    shapes: &[GridShape],
    (drivers, offset, seed0): (&[Driver], usize, u64),
    setup: impl Fn(Case, &C, u64) -> Setup,
) {
    let base = gpu();
    let mut n = 0;
    for style in [
        KernelStyle::Tiled,
        KernelStyle::Direct,
        KernelStyle::Subgroup,
    ] {
        for &driver in drivers {
            for m in cases {
                let (shape, layers, bidirectional, loss) =
                    shapes[(n + offset + n / cases.len()) % shapes.len()];
                let c = Case {
                    loss,
                    ..case(shape, layers, bidirectional)
                };
                let seed = seed0 + n as u64 * 10;
                check_on(
                    c,
                    &setup(c, m, seed),
                    seed,
                    driver,
                    &base.with_kernels(style),
                );
                n += 1;
            }
        }
    }
}

/// Case `c` with the data of `s` run in chunks of `chunk` steps: outputs, loss and every
/// gradient (parameters, x, h0) against the reference on the whole sequence.
fn check_in_chunks(c: Case, s: &Setup, chunk: usize) {
    check_in_chunks_on(c, s, chunk, &gpu());
}

/// [`check_in_chunks`] on `g`.
fn check_in_chunks_on(c: Case, s: &Setup, chunk: usize, g: &rnn_wgpu::Gpu) {
    let (t, b) = (c.steps, c.batch);
    let (want_loss, trace, want) =
        reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), t, b, &s.targets, c.loss);
    let mut rnn = crate::versus_reference::model_on(g, &s.p, Driver::Auto);
    rnn.set_chunk_steps(Some(chunk)).unwrap();
    let (_, _, got) = crate::versus_reference::gpu_run(&mut rnn, c, s);
    let ctx = format!("{c:?} in chunks of {chunk}");
    assert_close(&format!("output {ctx}"), &got.output, &trace.o, REL);
    assert_close(&format!("loss {ctx}"), &[got.loss], &[want_loss], REL);
    for ((name, gv), (_, w)) in got.params.iter().zip(&want.params.named()) {
        assert_close(&format!("grad {name} {ctx}"), gv, w, REL);
    }
    assert_close(&format!("grad x {ctx}"), &got.x, &want.x, REL);
    assert_close(&format!("grad h0 {ctx}"), &got.h0, &want.h0, REL);
}

fn case(shape: (usize, usize, usize, usize, usize), layers: usize, bidirectional: bool) -> Case {
    let (steps, batch, input, hidden, output) = shape;
    Case {
        steps,
        batch,
        input,
        hidden,
        output,
        nonlinearity: Nonlinearity::Tanh,
        bias: true,
        loss: Loss::mse(),
        with_h0: true,
        layers,
        bidirectional,
    }
}

#[test]
fn deep_output_matches_reference_under_every_driver_and_style() {
    // Depths 1-3 with odd widths (1, 3, 65) and every block nonlinearity, on one layer, a
    // stack and both directions, odd H (padded on CPU adapters) and H = 64, T = 1 and B = 1
    // included; every (driver, style) pair meets each depth.
    let blocks = [
        Mlp::new(1, 5, Nonlinearity::Tanh),
        Mlp::new(2, 3, Nonlinearity::Relu),
        Mlp::new(3, 65, Nonlinearity::Tanh),
        Mlp::new(2, 1, Nonlinearity::Identity),
        Mlp::new(3, 6, Nonlinearity::Tanh).with_residual(true),
    ];
    let shapes = [
        ((4, 3, 5, 7, 3), 1, false, Loss::mse()),
        ((1, 1, 2, 64, 4), 2, false, Loss::cross_entropy()),
        ((5, 2, 3, 9, 2), 1, true, Loss::cross_entropy()),
        (
            (3, 5, 8, 65, 1),
            2,
            true,
            Loss::mse().with_reduction(Reduction::Sum),
        ),
    ];
    let all = [Driver::PerStep, Driver::Persistent, Driver::Naive];
    check_grid(&blocks, &shapes, (&all, 0, 40_000), |c, m, seed| {
        deep_setup(c, *m, seed)
    });
}

#[test]
fn deep_output_in_chunks_matches_reference() {
    // T = 23 in chunks of 5: the block runs on every chunk's rows, its gradients summed.
    let c = case((23, 3, 4, 6, 3), 2, false);
    let m = Mlp::new(2, 7, Nonlinearity::Tanh);
    check_in_chunks(c, &deep_setup(c, m, 777), 5);
}

#[test]
fn a_deep_output_model_file_round_trips_and_bad_ones_say_what_is_wrong() {
    let g = gpu();
    let scratch = Scratch::new();
    let config = RnnConfig::new(3, 5, 2)
        .with_bidirectional(true)
        .with_deep_output(Mlp::new(2, 7, Nonlinearity::Relu).with_residual(true));
    let rnn = Rnn::new(&g, config, 3).unwrap();
    let path = scratch.path("deep.safetensors");
    model_file::save(&rnn, &path, &HashMap::new()).unwrap();
    let loaded = model_file::load(&g, &path).unwrap();
    assert_eq!(*loaded.rnn.config(), config);
    assert_eq!(
        loaded.metadata.get("deep_output_depth").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        loaded
            .metadata
            .get("deep_output_residual")
            .map(String::as_str),
        Some("true")
    );
    for (a, b) in rnn
        .parameters()
        .unwrap()
        .iter()
        .zip(loaded.rnn.parameters().unwrap())
    {
        assert_eq!((&a.name, &a.values), (&b.name, &b.values));
    }
    let names: Vec<String> = rnn
        .parameters()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(names.contains(&"out_mlp.1.bias".to_string()), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("fc.bias"));
    // A plain model's file says nothing of deeper blocks.
    let plain = scratch.path("plain.safetensors");
    let rnn = Rnn::new(&g, RnnConfig::new(3, 5, 2), 3).unwrap();
    model_file::save(&rnn, &plain, &HashMap::new()).unwrap();
    let meta = model_file::load(&g, &plain).unwrap().metadata;
    assert!(meta.keys().all(|k| !k.starts_with("deep_")), "{meta:?}");

    // Each fault, one tensor or key changed from the good file, named in the error.
    let write = |name: &str, drop: &str, meta_change: Option<(&str, &str)>| {
        faulty_copy(&g, &path, scratch.path(name), drop, meta_change)
    };
    let e = write("gap.safetensors", "out_mlp.0.weight", None);
    assert!(e.contains("out_mlp.0.weight"), "{e}");
    let e = write("depth.safetensors", "", Some(("deep_output_depth", "3")));
    assert!(e.contains("deep_output_depth") && e.contains("2"), "{e}");
    let e = write("width.safetensors", "", Some(("deep_output_width", "8")));
    assert!(e.contains("deep_output_width"), "{e}");
    let e = write(
        "act.safetensors",
        "",
        Some(("deep_output_nonlinearity", "gelu")),
    );
    assert!(e.contains("deep_output_nonlinearity"), "{e}");
    let e = write("nobias.safetensors", "out_mlp.1.bias", None);
    assert!(e.contains("out_mlp.1.bias"), "{e}");
    let e = write("res.safetensors", "", Some(("deep_output_residual", "yes")));
    assert!(
        e.contains("deep_output_residual") && e.contains("yes"),
        "{e}"
    );
    // Residual connections need a layer after the first: a one-layer block that says it has
    // them is refused.
    let e = write(
        "res1.safetensors",
        "out_mlp.1.",
        Some(("deep_output_depth", "1")),
    );
    assert!(
        e.contains("deep_output_residual") && e.contains("1 out_mlp layer"),
        "{e}"
    );
}

#[test]
fn bad_deep_output_configurations_are_errors() {
    let g = gpu();
    for (m, says) in [
        (Mlp::new(2, 0, Nonlinearity::Tanh), "width"),
        (Mlp::new(99, 4, Nonlinearity::Tanh), "depth 99"),
        (
            Mlp::new(1, 4, Nonlinearity::Tanh).with_residual(true),
            "a depth of 2 or more",
        ),
    ] {
        let e = Rnn::new(&g, RnnConfig::new(2, 3, 1).with_deep_output(m), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("deep_output") && e.contains(says), "{e}");
    }
    // The block's forward on its own: an output of the right shape.
    let mut rnn = Rnn::new(
        &g,
        RnnConfig::new(2, 3, 4).with_deep_output(Mlp::new(1, 6, Nonlinearity::Tanh)),
        0,
    )
    .unwrap();
    let x = Tensor::from_slice(&g, &[2, 1, 2], &to_f32(&[0.1, 0.2, 0.3, 0.4])).unwrap();
    let out = rnn.forward(&x, None).unwrap();
    assert_eq!(out.output.shape(), &[2, 1, 4]);
}

#[test]
fn gradient_norms_see_through_the_deep_output() {
    // ‖dL/dh(t)‖ of every layer, the top one's reaching it through the block.
    let g = gpu();
    let c = case((6, 3, 4, 7, 3), 2, false);
    let s = deep_setup(c, Mlp::new(2, 5, Nonlinearity::Tanh), 909);
    let (t, b) = (c.steps, c.batch);
    let (_, _, want) =
        reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), t, b, &s.targets, c.loss);
    let mut rnn = crate::versus_reference::model_on(&g, &s.p, Driver::Auto);
    rnn.set_grad_norms(true);
    crate::versus_reference::gpu_run(&mut rnn, c, &s);
    let got = rnn.grad_norms().unwrap();
    assert_eq!(got.len(), want.h_norms.len());
    for (k, (gk, wk)) in got.iter().zip(&want.h_norms).enumerate() {
        assert_close(&format!("layer {k} gradient norms"), gk, wk, REL);
    }
}

#[test]
fn deep_input_matches_reference_under_every_driver_and_style() {
    // Depths 1-3 with odd widths, alone and with a deep output, on one layer, a stack and both
    // directions, odd H and H = 64, T = 1 and B = 1 included.
    let blocks = [
        (Mlp::new(1, 5, Nonlinearity::Tanh), Mlp::NONE),
        (Mlp::new(2, 3, Nonlinearity::Relu), Mlp::NONE),
        (
            Mlp::new(3, 65, Nonlinearity::Tanh),
            Mlp::new(1, 7, Nonlinearity::Tanh),
        ),
        (
            Mlp::new(2, 1, Nonlinearity::Identity),
            Mlp::new(2, 3, Nonlinearity::Relu),
        ),
        (
            Mlp::new(3, 5, Nonlinearity::Relu).with_residual(true),
            Mlp::new(2, 4, Nonlinearity::Identity).with_residual(true),
        ),
    ];
    let shapes = [
        ((4, 3, 5, 7, 3), 1, false, Loss::mse()),
        ((1, 1, 2, 64, 4), 2, false, Loss::cross_entropy()),
        ((5, 2, 3, 9, 2), 1, true, Loss::cross_entropy()),
        ((3, 5, 8, 65, 1), 2, true, Loss::mse()),
    ];
    let all = [Driver::PerStep, Driver::Persistent, Driver::Naive];
    check_grid(&blocks, &shapes, (&all, 0, 50_000), |c, (mi, mo), seed| {
        blocks_setup(c, *mi, *mo, seed)
    });
}

#[test]
fn a_deep_input_model_round_trips_and_refuses_token_ids() {
    let g = gpu();
    let scratch = Scratch::new();
    let config = RnnConfig::new(3, 5, 2)
        .with_deep_input(Mlp::new(2, 4, Nonlinearity::Relu))
        .with_deep_output(Mlp::new(1, 6, Nonlinearity::Tanh));
    let mut rnn = Rnn::new(&g, config, 3).unwrap();
    let path = scratch.path("deep-input.safetensors");
    model_file::save(&rnn, &path, &HashMap::new()).unwrap();
    let loaded = model_file::load(&g, &path).unwrap();
    assert_eq!(*loaded.rnn.config(), config);
    let names: Vec<String> = rnn
        .parameters()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names[0], "in_mlp.0.weight", "{names:?}");
    let ids = rnn_wgpu::ClassIds::from_slice(&g, &[2, 1], &[0, 2]).unwrap();
    let e = rnn.forward(&ids, None).unwrap_err().to_string();
    assert!(e.contains("deep input"), "{e}");
}

#[test]
fn deep_transition_matches_reference_under_every_driver_and_style() {
    // Depths 1-3 with odd widths, with and without the shortcut, alone and beside the other
    // blocks, on one layer, a stack and both directions, odd H and H = 64, T = 1 and B = 1.
    let tanh = Nonlinearity::Tanh;
    let cases = [
        (Mlp::new(1, 4, tanh), false, (Mlp::NONE, Mlp::NONE)),
        (
            Mlp::new(1, 6, tanh),
            true,
            (Mlp::new(2, 3, tanh), Mlp::NONE),
        ),
        (
            Mlp::new(2, 3, Nonlinearity::Relu),
            true,
            (Mlp::NONE, Mlp::NONE),
        ),
        (
            Mlp::new(3, 65, tanh),
            true,
            (Mlp::new(1, 5, tanh), Mlp::new(1, 7, tanh)),
        ),
        (
            Mlp::new(2, 1, Nonlinearity::Identity),
            false,
            (Mlp::NONE, Mlp::new(2, 3, tanh)),
        ),
        // Widths a multiple of 4, which the blocked kernels of CPU adapters take.
        (Mlp::new(3, 8, tanh), true, (Mlp::NONE, Mlp::NONE)),
        (
            Mlp::new(2, 4, Nonlinearity::Relu),
            false,
            (Mlp::new(1, 4, tanh), Mlp::NONE),
        ),
    ];
    let shapes = [
        ((4, 3, 5, 7, 3), 1, false, Loss::mse()),
        ((1, 1, 2, 64, 4), 2, false, Loss::cross_entropy()),
        ((5, 2, 3, 9, 2), 1, true, Loss::cross_entropy()),
        ((3, 5, 8, 65, 1), 2, true, Loss::mse()),
    ];
    // The transition runs its own steps whatever the driver; the drivers differ in the W
    // layouts dL/dh0 reads.
    let drivers = [Driver::PerStep, Driver::Persistent];
    check_grid(
        &cases,
        &shapes,
        (&drivers, 2, 60_000),
        |c, (mt, skip, blocks), seed| transition_setup(c, *blocks, (*mt, *skip), seed),
    );
}

#[test]
fn a_deep_transition_too_wide_for_one_fused_step_matches_reference() {
    // The tiled style fuses the transition, but on a CPU adapter one fused step of H = 1000
    // with the shortcut passes the loop budget lavapipe allows an invocation, so there each
    // product runs as a dispatch of its own: the unfused path under the tiled style, with an
    // inner layer between two others. (On a GPU the fused kernel runs this shape; the direct
    // styles run every transition unfused, checked in the grid above.)
    let c = case((3, 2, 3, 1000, 2), 1, false);
    let s = transition_setup(
        c,
        (Mlp::NONE, Mlp::NONE),
        (Mlp::new(3, 3, Nonlinearity::Tanh), true),
        919,
    );
    let tiled = gpu().with_kernels(KernelStyle::Tiled);
    check_on(c, &s, 919, Driver::Persistent, &tiled);
}

#[test]
fn a_long_deep_transition_over_many_workgroups_matches_reference() {
    // B = 11: two workgroups of 8 rows in the subgroup kernel, three of 4 in the 64-wide one;
    // T = 50 of H = 64 with three layers and the shortcut passes the subgroup kernel's loop
    // budget per dispatch (about 39 steps), so its persistent loop runs in two dispatches.
    let c = case((50, 11, 3, 64, 2), 1, false);
    let t = Mlp::new(3, 8, Nonlinearity::Tanh);
    let s = transition_setup(c, (Mlp::NONE, Mlp::NONE), (t, true), 929);
    for style in [KernelStyle::Subgroup, KernelStyle::Tiled] {
        check_on(c, &s, 929, Driver::Persistent, &gpu().with_kernels(style));
    }
    // H = 128 with the shortcut: W and S alone pass 64 KiB, so the subgroup kernel reads its
    // weight copies from storage rather than through uniform windows.
    let c = case((6, 11, 3, 128, 2), 1, false);
    let s = transition_setup(c, (Mlp::NONE, Mlp::NONE), (t, true), 931);
    for driver in [Driver::Persistent, Driver::PerStep] {
        check_on(
            c,
            &s,
            931,
            driver,
            &gpu().with_kernels(KernelStyle::Subgroup),
        );
    }
}

#[test]
fn deep_transition_in_chunks_matches_reference() {
    // An inner width of 5 (unfused on lavapipe's subgroup style) and of 8 (fused there), and
    // the 64-wide fused kernel of the tiled style.
    let c = case((23, 3, 4, 8, 3), 2, false);
    for (width, style) in [
        (5, KernelStyle::Auto),
        (8, KernelStyle::Auto),
        (8, KernelStyle::Tiled),
    ] {
        let t = Mlp::new(2, width, Nonlinearity::Tanh);
        let s = transition_setup(c, (Mlp::NONE, Mlp::NONE), (t, true), 717);
        check_in_chunks_on(c, &s, 5, &gpu().with_kernels(style));
    }
}

#[test]
fn a_deep_transition_model_round_trips_and_bad_ones_say_what_is_wrong() {
    let g = gpu();
    let scratch = Scratch::new();
    let config = RnnConfig::new(3, 5, 2)
        .with_layers(2)
        .with_bidirectional(true)
        .with_deep_transition(Mlp::new(2, 4, Nonlinearity::Relu), true);
    let rnn = Rnn::new(&g, config, 3).unwrap();
    let path = scratch.path("dt.safetensors");
    model_file::save(&rnn, &path, &HashMap::new()).unwrap();
    let loaded = model_file::load(&g, &path).unwrap();
    assert_eq!(*loaded.rnn.config(), config);
    let names: Vec<String> = rnn
        .parameters()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    for n in ["trans_l1_reverse.1.bias", "skip_l0_reverse.weight"] {
        assert!(names.contains(&n.to_string()), "{n}: {names:?}");
    }

    let write = |name: &str, drop: &str, meta_change: Option<(&str, &str)>| {
        faulty_copy(&g, &path, scratch.path(name), drop, meta_change)
    };
    let e = write("gap.safetensors", "trans_l1.0.weight", None);
    assert!(e.contains("trans_l1.0.weight"), "{e}");
    let e = write("noskip.safetensors", "skip_l1_reverse.weight", None);
    assert!(e.contains("skip_l1_reverse.weight"), "{e}");
    let e = write("skipmeta.safetensors", "", Some(("skip", "false")));
    assert!(e.contains("skip") && e.contains("holds"), "{e}");
    let e = write(
        "depth.safetensors",
        "",
        Some(("deep_transition_depth", "1")),
    );
    assert!(e.contains("deep_transition_depth"), "{e}");
    let e = write(
        "deep.safetensors",
        "",
        Some(("deep_transition_depth", "99")),
    );
    assert!(e.contains("deep_transition_depth"), "{e}");

    // A depth of 1 has no width between its layers: the file's metadata keeps it.
    let one =
        RnnConfig::new(3, 5, 2).with_deep_transition(Mlp::new(1, 11, Nonlinearity::Tanh), false);
    let rnn = Rnn::new(&g, one, 3).unwrap();
    let path = scratch.path("dt1.safetensors");
    model_file::save(&rnn, &path, &HashMap::new()).unwrap();
    assert_eq!(*model_file::load(&g, &path).unwrap().rnn.config(), one);

    // A shortcut needs a transition to stand beside.
    let e = Rnn::new(
        &g,
        RnnConfig::new(2, 3, 1).with_deep_transition(Mlp::NONE, true),
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("skip") && e.contains("deep_transition"), "{e}");
}

#[test]
fn gradient_norms_see_through_the_deep_transition_and_its_shortcut() {
    let g = gpu();
    for (n, (layers, bidirectional, skip)) in [(2, false, true), (1, true, true), (1, false, false)]
        .into_iter()
        .enumerate()
    {
        let c = case((6, 3, 4, 7, 3), layers, bidirectional);
        let t = Mlp::new(2, 5, Nonlinearity::Tanh);
        let s = transition_setup(c, (Mlp::NONE, Mlp::NONE), (t, skip), 919 + n as u64);
        let (steps, b) = (c.steps, c.batch);
        let (_, _, want) =
            reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), steps, b, &s.targets, c.loss);
        let mut rnn = crate::versus_reference::model_on(&g, &s.p, Driver::Auto);
        rnn.set_grad_norms(true);
        crate::versus_reference::gpu_run(&mut rnn, c, &s);
        let got = rnn.grad_norms().unwrap();
        for (kd, (gk, wk)) in got.iter().zip(&want.h_norms).enumerate() {
            // The library gives the reverse direction's curve in true time, the reference in
            // its own.
            let wk: Vec<f64> = if bidirectional && kd % 2 == 1 {
                wk.iter().rev().copied().collect()
            } else {
                wk.clone()
            };
            assert_close(
                &format!("{c:?} skip {skip}: state {kd} gradient norms"),
                gk,
                &wk,
                REL,
            );
        }
    }
}

#[test]
fn every_block_batch_first_and_in_chunks_matches_reference() {
    // Batch-first float inputs through all three blocks, and a deep input in chunks.
    let g = gpu();
    let tanh = Nonlinearity::Tanh;
    let c = case((7, 3, 4, 6, 3), 2, false);
    let s = transition_setup(
        c,
        (Mlp::new(2, 5, tanh), Mlp::new(1, 4, tanh)),
        (Mlp::new(1, 6, tanh), true),
        4242,
    );
    let (t, b) = (c.steps, c.batch);
    let (_, trace, want) =
        reference::loss_and_grads(&s.p, &s.x, s.h0.as_deref(), t, b, &s.targets, c.loss);
    let mut rnn = crate::versus_reference::model_on(&g, &s.p, Driver::Auto);
    rnn.set_batch_first(true);
    let bf = |v: &[f64], width: usize| -> Vec<f32> {
        let mut out = vec![0.0; v.len()];
        for tt in 0..t {
            for bb in 0..b {
                for k in 0..width {
                    out[(bb * t + tt) * width + k] = v[(tt * b + bb) * width + k] as f32;
                }
            }
        }
        out
    };
    let x = Tensor::from_slice(&g, &[b, t, c.input], &bf(&s.x, c.input)).unwrap();
    let h0 = s.h0.as_ref().unwrap();
    let h0 = Tensor::from_slice(&g, &[c.states(), b, c.hidden], &to_f32(h0)).unwrap();
    let rnn_wgpu::reference::Targets::Values(y) = &s.targets else {
        panic!("mse targets")
    };
    let y = Tensor::from_slice(&g, &[b, t, c.output], &bf(y, c.output)).unwrap();
    let (fw, grads) = rnn
        .loss_and_gradients(&x, Some(&h0), rnn_wgpu::Target::Values(&y), c.loss)
        .unwrap();
    let want_o: Vec<f64> = bf(&trace.o, c.output)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    assert_close(
        "batch-first output",
        &fw.output.to_vec().unwrap(),
        &want_o,
        REL,
    );
    crate::versus_reference::assert_param_grads("batch-first", &grads, &want.params);

    let c = case((19, 2, 5, 7, 2), 1, false);
    check_in_chunks(
        c,
        &blocks_setup(c, Mlp::new(2, 3, tanh), Mlp::NONE, 4343),
        4,
    );
}
