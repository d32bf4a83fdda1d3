//! Token-id inputs: the gather of W_ih's columns and its scatter-add gradient against the f64
//! reference on the equivalent one-hot inputs.

use rnn_wgpu::reference::{self, Params, Targets};
use rnn_wgpu::{
    ClassIds, Driver, Error, InputError, Loss, Mlp, Nonlinearity, Optimizer, OptimizerKind, Rnn,
    RnnConfig, Target, Tensor,
};

use crate::common::{assert_close, gpu, random, swap_leading, to_f32};

const REL: f64 = 1e-4;

/// `[T, B]` ids in the caller's layout (`[B, T]` when batch-first) and the time-major one-hot
/// `[T, B, vocab]` values they stand for.
fn ids_and_one_hot(
    (t, b, vocab): (usize, usize, usize),
    batch_first: bool,
    seed: u64,
) -> (Vec<i64>, Vec<f64>) {
    // Skewed draws, so some ids repeat many times and some never occur (their gradient
    // columns must come out zero).
    let time_major: Vec<usize> = random(t * b, 1.0, seed)
        .iter()
        .map(|v| ((v * v * vocab as f64) as usize).min(vocab - 1))
        .collect();
    let mut one_hot = vec![0.0; t * b * vocab];
    for (r, &id) in time_major.iter().enumerate() {
        one_hot[r * vocab + id] = 1.0;
    }
    let ids: Vec<i64> = time_major.iter().map(|&v| v as i64).collect();
    (caller_layout(&ids, (t, b), batch_first), one_hot)
}

/// Time-major `[T, B]` values as the caller lays them out: `[B, T]` when batch-first.
fn caller_layout(v: &[i64], (t, b): (usize, usize), batch_first: bool) -> Vec<i64> {
    if batch_first {
        swap_leading(v, t, b)
    } else {
        v.to_vec()
    }
}

#[test]
fn token_ids_match_the_reference_on_one_hot_inputs() {
    // Odd vocabularies (1 and 3 included), B = 1 and T = 1, stacked and bidirectional layers,
    // batch-first ids, no biases, every driver: outputs, h_n, the loss and every parameter
    // gradient as the reference computes them on the one-hot inputs.
    let g = gpu();
    let cases = [
        // (T, B, vocab, H, layers, bidirectional, batch_first, bias, driver, deeper blocks)
        (1, 1, 1, 3, 1, false, false, true, Driver::PerStep, false),
        (
            7,
            3,
            65,
            33,
            1,
            false,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        (5, 4, 3, 17, 2, false, true, true, Driver::PerStep, false),
        (
            6,
            1,
            86,
            65,
            1,
            true,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        (4, 5, 257, 8, 2, true, true, false, Driver::Naive, false),
        (9, 2, 31, 12, 1, true, true, true, Driver::PerStep, false),
        // The largest vocabulary the in-order embedding gradient takes (embed_grad4_seq).
        (
            3,
            2,
            256,
            12,
            1,
            false,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        // W_ih past one 64 KiB uniform window (64 x 300 > 16384 values): read from storage.
        (
            3,
            9,
            300,
            64,
            1,
            false,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        // The forward loops that gather from the token table (one direction, H a multiple of 4
        // on CPU adapters): T = 1 and B = 1, batch-first ids without biases, a second layer
        // reading the first's states, and H past 64 (the paired loops).
        (1, 1, 5, 8, 1, false, true, false, Driver::Persistent, false),
        (
            9,
            4,
            40,
            24,
            2,
            false,
            true,
            true,
            Driver::Persistent,
            false,
        ),
        (
            4,
            3,
            20,
            72,
            1,
            false,
            false,
            false,
            Driver::Persistent,
            false,
        ),
        // Past the 12 MiB the weight gradients stream in place (T·B·(2H + O) floats): they
        // read transposed buffers, not the loops' mirrors, so the states and dL/da the loops
        // left in their mirrors must be copied back first.
        (
            200,
            120,
            20,
            64,
            1,
            false,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        // A deep transition with its shortcut and a deep output read the gathered columns too.
        (6, 3, 29, 10, 2, false, false, true, Driver::PerStep, true),
        (5, 2, 7, 9, 1, true, true, true, Driver::Persistent, true),
    ];
    for (n, case) in cases.iter().enumerate() {
        check_case(&g, n, *case);
    }
}

/// (T, B, vocab, H, layers, bidirectional, batch_first, bias, driver, deeper blocks)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    bool,
    bool,
    bool,
    Driver,
    bool,
);

/// Case `n` on `g`: outputs, h_n, the loss and every parameter gradient of token ids against
/// the reference on the one-hot inputs (after a call with other ids, which every result must
/// overwrite).
fn check_case(g: &rnn_wgpu::Gpu, n: usize, case: Case) -> Rnn {
    let (t, b, vocab, h, layers, bi, batch_first, bias, driver, deep) = case;
    let mut config = RnnConfig::new(vocab, h, 5)
        .with_layers(layers)
        .with_bidirectional(bi)
        .with_bias(bias)
        .with_nonlinearity(Nonlinearity::Tanh);
    if deep {
        config = config
            .with_deep_transition(Mlp::new(2, 6, Nonlinearity::Tanh), true)
            .with_deep_output(Mlp::new(1, 4, Nonlinearity::Tanh));
    }
    let seed = 40_000 + 100 * n as u64;
    let p = Params::random(config, 1.5 / (h as f64).sqrt(), seed);
    let (ids, one_hot) = ids_and_one_hot((t, b, vocab), batch_first, seed + 1);
    let classes: Vec<usize> = random(t * b, 1.0, seed + 2)
        .iter()
        .map(|v| (((v + 1.0) / 2.0 * 5.0) as usize).min(4))
        .collect();
    let loss = Loss::cross_entropy();
    let targets = Targets::Classes(classes.clone());
    let (want_loss, trace, want) =
        reference::loss_and_grads(&p, &one_hot, None, t, b, &targets, loss);

    let mut rnn = Rnn::new(g, config, 1).unwrap();
    for (name, v) in p.named() {
        rnn.set_parameter(&name, &to_f32(v)).unwrap();
    }
    rnn.set_driver(driver);
    rnn.set_batch_first(batch_first);
    let lead = if batch_first { [b, t] } else { [t, b] };
    let classes: Vec<i64> = classes.iter().map(|&v| v as i64).collect();
    let caller_classes = caller_layout(&classes, (t, b), batch_first);
    let y = ClassIds::from_slice(g, &lead, &caller_classes).unwrap();
    // Other ids first, so every result below must overwrite what that call left.
    let other = ClassIds::from_slice(g, &lead, &vec![0; t * b]).unwrap();
    rnn.loss_and_gradients(&other, None, Target::Classes(&y), loss)
        .unwrap();
    let x = ClassIds::from_slice(g, &lead, &ids).unwrap();
    let ctx = format!(
        "case {n}: T {t} B {b} vocab {vocab} H {h} L {layers} bi {bi} bf {batch_first} bias {bias} {driver:?} deep {deep}"
    );
    let (fw, grads) = rnn
        .loss_and_gradients(&x, None, Target::Classes(&y), loss)
        .unwrap();
    let want_o = if batch_first {
        swap_leading(&trace.o, t, b)
    } else {
        trace.o.clone()
    };
    assert_close(
        &format!("output {ctx}"),
        &fw.output.to_vec().unwrap(),
        &want_o,
        REL,
    );
    assert_close(
        &format!("h_n {ctx}"),
        &fw.h_n.to_vec().unwrap(),
        &trace.h_n(),
        REL,
    );
    assert_close(
        &format!("loss {ctx}"),
        &[rnn.last_loss().unwrap()],
        &[want_loss],
        REL,
    );
    for (name, w) in want.params.named() {
        let got = grads.get(&name).unwrap().to_vec().unwrap();
        assert_close(&format!("grad {name} {ctx}"), &got, w, REL);
    }
    assert!(grads.x.is_none(), "{ctx}: token ids have no gradient");
    rnn
}

#[test]
fn the_token_loops_over_16_rows_match_the_reference() {
    // The character model's loops (16 batch rows a workgroup, the input projection gathered
    // from the token table), shaped as for two CPU threads so that B = 17 .. 33 takes them:
    // a last workgroup with 1 row or 2, H past 64 (two groups of 64 units) and not (lanes past
    // H), and batch-first ids.
    let g = gpu().with_cpu_threads(2);
    let cases: [Case; 3] = [
        (
            5,
            33,
            11,
            72,
            1,
            false,
            false,
            true,
            Driver::Persistent,
            false,
        ),
        (
            3,
            18,
            7,
            36,
            1,
            false,
            true,
            true,
            Driver::Persistent,
            false,
        ),
        (
            1,
            17,
            3,
            8,
            1,
            false,
            false,
            false,
            Driver::Persistent,
            false,
        ),
    ];
    for (n, case) in cases.into_iter().enumerate() {
        let rnn = check_case(&g, 50 + n, case);
        // On lavapipe (the kernels for 8-lane subgroups), that these were the loops run.
        let names = rnn.kernel_names();
        if names.iter().any(|k| k.contains("_sg")) {
            assert!(
                names
                    .iter()
                    .any(|k| k.contains("_rows16") && k.contains("_tok")),
                "case {n}: the 16-row token loops did not run: {names:?}"
            );
        }
    }
}

#[test]
fn token_ids_give_the_references_dh0_and_gradient_norms() {
    // dL/dh0 and the per-step gradient norms read dL/da after the backward pass, which the
    // persistent loops may leave in their texture mirror only (for token ids): both against
    // the reference on the one-hot inputs, every driver, H a multiple of 4 and not.
    let g = gpu();
    for (n, (t, b, vocab, h)) in [(7, 3, 11, 12), (5, 2, 4, 9), (1, 1, 3, 8)]
        .into_iter()
        .enumerate()
    {
        // With the norms and without (their plan runs before dh0's).
        for (driver, norms) in [
            (Driver::Persistent, true),
            (Driver::Persistent, false),
            (Driver::PerStep, true),
        ] {
            let config = RnnConfig::new(vocab, h, 4);
            let seed = 47_000 + 10 * n as u64;
            let p = Params::random(config, 1.5 / (h as f64).sqrt(), seed);
            let (ids, one_hot) = ids_and_one_hot((t, b, vocab), false, seed + 1);
            let h0 = random(b * h, 0.8, seed + 2);
            let classes: Vec<usize> = random(t * b, 1.0, seed + 3)
                .iter()
                .map(|v| (((v + 1.0) / 2.0 * 4.0) as usize).min(3))
                .collect();
            let loss = Loss::cross_entropy();
            let (_, _, want) = reference::loss_and_grads(
                &p,
                &one_hot,
                Some(&h0),
                t,
                b,
                &Targets::Classes(classes.clone()),
                loss,
            );
            let mut rnn = Rnn::new(&g, config, 1).unwrap();
            for (name, v) in p.named() {
                rnn.set_parameter(&name, &to_f32(v)).unwrap();
            }
            rnn.set_driver(driver);
            rnn.set_input_gradients(true);
            rnn.set_grad_norms(norms);
            let classes: Vec<i64> = classes.iter().map(|&v| v as i64).collect();
            let y = ClassIds::from_slice(&g, &[t, b], &classes).unwrap();
            let x = ClassIds::from_slice(&g, &[t, b], &ids).unwrap();
            let h0t = Tensor::from_slice(&g, &[1, b, h], &to_f32(&h0)).unwrap();
            let ctx = format!("T {t} B {b} vocab {vocab} H {h} {driver:?} norms {norms}");
            let (_, grads) = rnn
                .loss_and_gradients(&x, Some(&h0t), Target::Classes(&y), loss)
                .unwrap();
            let dh0 = grads.h0.as_ref().expect("dL/dh0 was asked for");
            assert_close(
                &format!("grad h0 {ctx}"),
                &dh0.to_vec().unwrap(),
                &want.h0,
                REL,
            );
            if norms {
                let norms = rnn.grad_norms().unwrap();
                assert_eq!(norms.len(), 1, "{ctx}: one curve");
                assert_close(
                    &format!("gradient norms {ctx}"),
                    &norms[0],
                    &want.h_norms[0],
                    REL,
                );
            }
        }
    }
}

#[test]
fn training_on_token_ids_follows_training_on_one_hot_values() {
    // Three Adam steps each way from the same start: the parameters agree, so the optimizer
    // sees the same gradients through either input (and a workspace switch between the two
    // kinds of input leaves nothing behind).
    let g = gpu();
    let (t, b, vocab) = (6, 4, 11);
    let config = RnnConfig::new(vocab, 9, vocab);
    let (ids, one_hot) = ids_and_one_hot((t, b, vocab), false, 77);
    let y = ClassIds::from_slice(
        &g,
        &[t, b],
        &ids.iter().map(|v| (v + 1) % 11).collect::<Vec<_>>(),
    )
    .unwrap();
    let x_ids = ClassIds::from_slice(&g, &[t, b], &ids).unwrap();
    let x_hot = Tensor::from_slice(&g, &[t, b, vocab], &to_f32(&one_hot)).unwrap();
    let mut a = Rnn::new(&g, config, 5).unwrap();
    let mut c = Rnn::new(&g, config, 5).unwrap();
    let mut oa = Optimizer::new(&a, OptimizerKind::adam(0.01)).unwrap();
    let mut oc = Optimizer::new(&c, OptimizerKind::adam(0.01)).unwrap();
    let loss = Loss::cross_entropy();
    for _ in 0..3 {
        a.train_step(&x_ids, None, Target::Classes(&y), loss, &mut oa)
            .unwrap();
        c.train_step(&x_hot, None, Target::Classes(&y), loss, &mut oc)
            .unwrap();
    }
    // A values call on the token model too: the workspace is remade for the other input.
    a.forward(&x_hot, None).unwrap();
    for (pa, pc) in a.parameters().unwrap().iter().zip(c.parameters().unwrap()) {
        let want: Vec<f64> = pc.values.iter().map(|&v| f64::from(v)).collect();
        assert_close(&pa.name, &pa.values, &want, 1e-4);
    }
}

#[test]
fn token_ids_out_of_range_or_misshapen_are_errors() {
    let g = gpu();
    let mut rnn = Rnn::new(&g, RnnConfig::new(4, 3, 2), 1).unwrap();
    let high = ClassIds::from_slice(&g, &[2, 1], &[1, 4]).unwrap();
    match rnn.forward(&high, None) {
        Err(Error::Input(InputError::TokenOutOfRange {
            id: 4, input: 4, ..
        })) => {}
        other => panic!("an id of 4 for input size 4: {other:?}"),
    }
    let flat = ClassIds::from_slice(&g, &[2], &[1, 2]).unwrap();
    match rnn.forward(&flat, None) {
        Err(Error::Input(InputError::Shape { arg, .. })) => assert_eq!(arg, "x"),
        other => panic!("ids of shape [2]: {other:?}"),
    }
}
