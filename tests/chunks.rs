//! Sequences run in chunks (`Rnn::set_chunk_steps`, or on their own when too long for one
//! pass): the same outputs, loss and gradients as the whole sequence at once.

use rnn_wgpu::reference::{self, Targets};
use rnn_wgpu::{
    ClassIds, Driver, Loss, Nonlinearity, Optimizer, OptimizerConfig, OptimizerKind, Reduction,
    Rnn, RnnConfig, Target, Tensor,
};

use crate::common::{assert_close, gpu, random, to_f32};
use crate::versus_reference::{Case, GpuResult, REL, Setup, gpu_run, model_on, setup};

fn case(steps: usize, batch: usize, (input, hidden, output): (usize, usize, usize)) -> Case {
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
        layers: 1,
        bidirectional: false,
    }
}

/// Everything `gpu_run` returned against the reference.
fn assert_matches_reference(
    ctx: &str,
    c: Case,
    s: &Setup,
    (fw_o, fw_h, r): (Vec<f32>, Vec<f32>, GpuResult),
) {
    let (want_loss, trace, want) = reference::loss_and_grads(
        &s.p,
        &s.x,
        s.h0.as_deref(),
        c.steps,
        c.batch,
        &s.targets,
        c.loss,
    );
    assert_close(&format!("forward output, {ctx}"), &fw_o, &trace.o, REL);
    assert_close(&format!("forward h_n, {ctx}"), &fw_h, &trace.h_n(), REL);
    assert_close(&format!("output, {ctx}"), &r.output, &trace.o, REL);
    assert_close(&format!("h_n, {ctx}"), &r.h_n, &trace.h_n(), REL);
    assert_close(&format!("loss, {ctx}"), &[r.loss], &[want_loss], REL);
    for ((name, got), (want_name, w)) in r.params.iter().zip(want.params.named()) {
        assert_eq!(name, &want_name, "{ctx}: parameter order");
        assert_close(&format!("grad {name}, {ctx}"), got, w, REL);
    }
    assert_close(&format!("dL/dx, {ctx}"), &r.x, &want.x, REL);
    assert_close(&format!("dL/dh0, {ctx}"), &r.h0, &want.h0, REL);
}

#[test]
fn chunked_sequences_match_the_reference_under_every_driver() {
    // Chunk lengths that divide T and that leave a shorter last chunk (down to one step),
    // one step per chunk, B = 1, odd H (never padded in chunks), two layers, cross-entropy.
    let g = gpu();
    let cases = [
        (case(23, 3, (4, 7, 5)), 5, 2, Loss::mse()),
        (case(9, 1, (1, 65, 3)), 4, 1, Loss::cross_entropy()),
        (
            case(12, 2, (3, 8, 2)),
            4,
            1,
            Loss::mse().with_reduction(Reduction::Sum),
        ),
        (case(5, 2, (2, 3, 1)), 1, 2, Loss::mse()),
    ];
    for driver in [Driver::PerStep, Driver::Persistent, Driver::Naive] {
        for (n, &(c, len, layers, loss)) in cases.iter().enumerate() {
            let c = Case { layers, loss, ..c };
            let s = setup(c, 52_000 + n as u64);
            let mut rnn = model_on(&g, &s.p, driver);
            rnn.set_chunk_steps(Some(len)).unwrap();
            let ctx = format!("{c:?} chunks of {len}, {driver:?}");
            assert_matches_reference(&ctx, c, &s, gpu_run(&mut rnn, c, &s));
        }
    }
}

/// A model and its copy, one run in chunks of `len` steps, the other in one piece.
fn pair(config: RnnConfig, len: usize, seed: u64) -> (Rnn, Rnn) {
    let g = gpu();
    let mut chunked = Rnn::new(&g, config, seed).unwrap();
    chunked.set_chunk_steps(Some(len)).unwrap();
    let whole = Rnn::new(&g, config, seed).unwrap();
    (chunked, whole)
}

fn download(t: &Tensor) -> Vec<f64> {
    t.to_vec().unwrap().iter().map(|&v| f64::from(v)).collect()
}

#[test]
fn chunked_and_whole_agree_on_masked_batch_first_losses_and_given_gradients() {
    // Where both fit: a batch-first model (chunks cut out of [B, T, ...] row by row), a mask
    // that counts a few steps (the mean divides by the whole sequence's count), evaluate, and
    // a caller's dL/do through `backward` after a chunked forward.
    let g = gpu();
    let (t, b, i, h, o) = (19, 3, 2, 5, 4);
    let config = RnnConfig::new(i, h, o)
        .with_layers(2)
        .with_batch_first(true);
    let (mut chunked, mut whole) = pair(config, 6, 3);
    for m in [&mut chunked, &mut whole] {
        m.set_input_gradients(true);
    }
    let x = Tensor::from_slice(&g, &[b, t, i], &to_f32(&random(t * b * i, 1.0, 1))).unwrap();
    let h0 = Tensor::from_slice(&g, &[2, b, h], &to_f32(&random(2 * b * h, 0.5, 2))).unwrap();
    let ids: Vec<i64> = (0..t * b).map(|k| (k * 7 % o) as i64).collect();
    let y = ClassIds::from_slice(&g, &[b, t], &ids).unwrap();
    // [B, T]: the last step of every row and every fifth element.
    let mask: Vec<f32> = (0..b * t)
        .map(|k| f32::from(u8::from(k % t == t - 1 || k % 5 == 0)))
        .collect();
    let mask = Tensor::from_slice(&g, &[b, t], &mask).unwrap();
    let target = Target::Classes(&y).with_mask(&mask);
    let loss = Loss::cross_entropy();
    let mut results = Vec::new();
    for m in [&mut chunked, &mut whole] {
        let (fw, grads) = m.loss_and_gradients(&x, Some(&h0), target, loss).unwrap();
        let mut r = vec![
            ("output", download(&fw.output)),
            ("h_n", download(&fw.h_n)),
            ("loss", vec![f64::from(m.last_loss().unwrap())]),
            ("dL/dx", download(grads.x.as_ref().unwrap())),
            ("dL/dh0", download(grads.h0.as_ref().unwrap())),
        ];
        for (_, gt) in &grads.params {
            r.push(("gradient", download(gt)));
        }
        let (_, value) = m.evaluate(&x, Some(&h0), target, loss).unwrap();
        r.push(("evaluate", vec![f64::from(value)]));
        // A caller's dL/do after evaluate leaves its loss readable.
        let d_o = Tensor::from_slice(&g, &[b, t, o], &vec![0.5; b * t * o]).unwrap();
        m.backward(&d_o).unwrap();
        r.push((
            "loss after backward",
            vec![f64::from(m.last_loss().unwrap())],
        ));
        // A caller's dL/do, after a forward pass.
        let d_o = Tensor::from_slice(&g, &[b, t, o], &to_f32(&random(b * t * o, 1.0, 9))).unwrap();
        m.forward(&x, None).unwrap();
        let grads = m.backward(&d_o).unwrap();
        for (_, gt) in &grads.params {
            r.push(("given dL/do: gradient", download(gt)));
        }
        r.push(("given dL/do: dL/dx", download(grads.x.as_ref().unwrap())));
        results.push(r);
    }
    for ((what, got), (_, want)) in results[0].iter().zip(&results[1]) {
        assert_close(&format!("chunked {what}"), &to_f32(got), want, REL);
    }
}

#[test]
fn training_in_chunks_follows_training_whole() {
    // Adam with clipping, three steps: the parameters stay with the whole sequence's.
    let g = gpu();
    let (t, b, i, h, o) = (30, 2, 3, 6, 2);
    let config = RnnConfig::new(i, h, o);
    let (mut chunked, mut whole) = pair(config, 7, 11);
    let x = Tensor::from_slice(&g, &[t, b, i], &to_f32(&random(t * b * i, 1.0, 4))).unwrap();
    let y = Tensor::from_slice(&g, &[t, b, o], &to_f32(&random(t * b * o, 1.0, 5))).unwrap();
    let short_x = Tensor::from_slice(&g, &[4, b, i], &to_f32(&random(4 * b * i, 1.0, 6))).unwrap();
    let short_y = Tensor::from_slice(&g, &[4, b, o], &to_f32(&random(4 * b * o, 1.0, 7))).unwrap();
    let config = OptimizerConfig {
        clip: Some(0.5),
        ..OptimizerKind::adam(0.01).into()
    };
    let mut params = Vec::new();
    for m in [&mut chunked, &mut whole] {
        let mut opt = Optimizer::new(m, config).unwrap();
        let mut losses = Vec::new();
        for _ in 0..3 {
            m.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
                .unwrap();
            losses.push(f64::from(m.last_loss().unwrap()));
            // A short sequence in one piece between steps, as validation does: the chunks
            // must still see the updated W afterwards.
            let (_, v) = m
                .evaluate(&short_x, None, Target::Values(&short_y), Loss::mse())
                .unwrap();
            losses.push(f64::from(v));
        }
        let p: Vec<f64> = m
            .parameters()
            .unwrap()
            .iter()
            .flat_map(|p| p.values.iter().map(|&v| f64::from(v)))
            .collect();
        params.push((losses, p));
    }
    assert_close("losses", &to_f32(&params[0].0), &params[1].0, REL);
    assert_close(
        "parameters after training",
        &to_f32(&params[0].1),
        &params[1].1,
        REL,
    );
}

#[test]
fn two_hundred_thousand_steps_match_the_reference() {
    // T = 200 000 with B = 1: past what one pass holds on a CPU adapter (131 072 rows), so
    // the model chunks on its own; h_n and every weight gradient against the f64 reference.
    let g = gpu();
    let (t, b, i, h, o) = (200_000, 1, 2, 64, 1);
    let c = Case {
        with_h0: false,
        ..case(t, b, (i, h, o))
    };
    let config = RnnConfig::new(i, h, o);
    // PyTorch's initial scale: a contracting recurrence, so f32 and f64 stay together.
    let p = reference::Params::random(config, 1.0 / (h as f64).sqrt(), 77);
    let x = random(t * b * i, 1.0, 78);
    let targets = Targets::Values(random(t * b * o, 1.0, 79));
    let s = Setup {
        p,
        x,
        h0: None,
        targets,
    };
    let mut rnn = model_on(&g, &s.p, Driver::Auto);
    let xt = Tensor::from_slice(&g, &[t, b, i], &to_f32(&s.x)).unwrap();
    let Targets::Values(yv) = &s.targets else {
        unreachable!()
    };
    let yt = Tensor::from_slice(&g, &[t, b, o], &to_f32(yv)).unwrap();
    let (fw, grads) = rnn
        .loss_and_gradients(&xt, None, Target::Values(&yt), c.loss)
        .unwrap();
    let (want_loss, trace, want) =
        reference::loss_and_grads(&s.p, &s.x, None, t, b, &s.targets, c.loss);
    assert_close("h_n", &fw.h_n.to_vec().unwrap(), &trace.h_n(), REL);
    assert_close("loss", &[rnn.last_loss().unwrap()], &[want_loss], REL);
    for (name, w) in want.params.named() {
        let got = grads.get(&name).unwrap().to_vec().unwrap();
        assert_close(&format!("grad {name}, T = {t}"), &got, w, REL);
    }
}

#[test]
fn chunking_says_what_it_cannot_run() {
    let g = gpu();
    let mut rnn = Rnn::new(&g, RnnConfig::new(2, 3, 1).with_bidirectional(true), 1).unwrap();
    let e = rnn.set_chunk_steps(Some(0)).unwrap_err().to_string();
    assert!(
        e.contains("chunk_steps") && e.contains("at least one step"),
        "{e}"
    );
    // A model that cannot run in chunks runs a sequence that fits in one piece anyway.
    rnn.set_chunk_steps(Some(4)).unwrap();
    let x = Tensor::from_slice(&g, &[9, 1, 2], &to_f32(&random(18, 1.0, 3))).unwrap();
    let with = rnn.forward(&x, None).unwrap().output.to_vec().unwrap();
    rnn.set_chunk_steps(None).unwrap();
    let without = rnn.forward(&x, None).unwrap().output.to_vec().unwrap();
    assert_eq!(with, without);
    // One that does not fit is refused, saying why (on adapters where 140000 rows do not fit
    // one pass: CPU adapters).
    let one = Rnn::new(&g, RnnConfig::new(2, 3, 1), 1).unwrap();
    if one.chunk_len_for(140_000, 1, None).is_some() {
        let t = 140_000;
        let x = Tensor::zeros(&g, &[t, 1, 2]).unwrap();
        let e = rnn.forward(&x, None).unwrap_err().to_string();
        assert!(
            e.contains("T = 140000") && e.contains("bidirectional"),
            "{e}"
        );
        // A chosen length longer than the sequence still chunks what does not fit.
        let auto = one.chunk_len_for(200_000, 1, None);
        assert!(auto.is_some());
        assert_eq!(one.chunk_len_for(200_000, 1, Some(1_000_000)), auto);
    }
}

#[test]
fn a_batch_too_wide_for_one_pass_runs_in_shorter_chunks() {
    // B = 4096 rows: on a CPU adapter at most 32 steps fit one pass, fewer than the 64 the
    // automatic length starts from.
    let g = gpu();
    let (t, b) = (40, 4096);
    let mut rnn = Rnn::new(&g, RnnConfig::new(1, 2, 1), 1).unwrap();
    let x = Tensor::from_slice(&g, &[t, b, 1], &to_f32(&random(t * b, 1.0, 5))).unwrap();
    let out = rnn.forward(&x, None).unwrap().output.to_vec().unwrap();
    // The first 8 rows of every step, against the same rows run alone (rows are independent).
    let xv = x.to_vec().unwrap();
    let first: Vec<f32> = (0..t).flat_map(|s| xv[s * b..s * b + 8].to_vec()).collect();
    let xs = Tensor::from_slice(&g, &[t, 8, 1], &first).unwrap();
    let mut whole = Rnn::new(&g, RnnConfig::new(1, 2, 1), 1).unwrap();
    let part = whole.forward(&xs, None).unwrap().output.to_vec().unwrap();
    let got: Vec<f32> = (0..t)
        .flat_map(|s| out[s * b..s * b + 8].to_vec())
        .collect();
    let want: Vec<f64> = part.iter().map(|&v| f64::from(v)).collect();
    assert_close("first rows", &got, &want, REL);
}

#[test]
fn changing_the_model_makes_its_chunks_again() {
    // A chunked call, then a new nonlinearity or layout: the next chunked call uses it.
    let g = gpu();
    let (t, b, i, h, o) = (13, 2, 3, 4, 2);
    let config = RnnConfig::new(i, h, o);
    let (mut chunked, _) = pair(config, 5, 21);
    let x = Tensor::from_slice(&g, &[t, b, i], &to_f32(&random(t * b * i, 1.0, 6))).unwrap();
    chunked.forward(&x, None).unwrap();
    chunked.set_nonlinearity(Nonlinearity::Relu);
    let got = download(&chunked.forward(&x, None).unwrap().output);
    let mut relu = Rnn::new(&g, config.with_nonlinearity(Nonlinearity::Relu), 21).unwrap();
    let want = download(&relu.forward(&x, None).unwrap().output);
    assert_close("relu after tanh", &to_f32(&got), &want, REL);
    // Batch-first: the same numbers, laid out [B, T, ...].
    chunked.set_batch_first(true);
    relu.set_batch_first(true);
    let xb = Tensor::from_slice(&g, &[b, t, i], &to_f32(&random(t * b * i, 1.0, 7))).unwrap();
    let got = download(&chunked.forward(&xb, None).unwrap().output);
    let want = download(&relu.forward(&xb, None).unwrap().output);
    assert_close("batch-first after time-major", &to_f32(&got), &want, REL);
}
