//! Bad input returns an `Error` naming the argument and sizes, never a panic.

use rnn_wgpu::{
    ClassIds, Error, GpuError, InputError, Loss, Optimizer, OptimizerKind, Rnn, RnnConfig, Target,
    Tensor,
};

use crate::common::gpu;

fn model() -> Rnn {
    Rnn::new(&gpu(), RnnConfig::new(3, 5, 4), 0).unwrap()
}

fn input_error(r: Result<impl std::fmt::Debug, Error>) -> (InputError, String) {
    match r {
        Err(Error::Input(e)) => {
            let msg = e.to_string();
            (e, msg)
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn x_with_wrong_feature_count_is_rejected() {
    let g = gpu();
    let x = Tensor::zeros(&g, &[2, 2, 4]).unwrap();
    let (e, msg) = input_error(model().forward(&x, None));
    assert!(
        matches!(e, InputError::Shape { ref arg, .. } if arg == "x"),
        "{e:?}"
    );
    assert!(
        msg.contains("[2, 2, 4]") && msg.contains("[T, B, 3]"),
        "{msg}"
    );
}

#[test]
fn x_of_wrong_rank_is_rejected() {
    let x = Tensor::zeros(&gpu(), &[6, 3]).unwrap();
    let (e, _) = input_error(model().forward(&x, None));
    assert!(matches!(e, InputError::Shape { .. }), "{e:?}");
}

#[test]
fn h0_with_wrong_batch_is_rejected() {
    let g = gpu();
    let x = Tensor::zeros(&g, &[2, 2, 3]).unwrap();
    let h0 = Tensor::zeros(&g, &[3, 5]).unwrap();
    let (e, msg) = input_error(model().forward(&x, Some(&h0)));
    assert!(
        matches!(e, InputError::Shape { ref arg, .. } if arg == "h0"),
        "{e:?}"
    );
    assert!(msg.contains("[3, 5]"), "{msg}");
}

#[test]
fn zero_sized_dimensions_are_rejected() {
    let (e, msg) = input_error(Tensor::from_slice(&gpu(), &[0, 2, 3], &[]));
    assert!(matches!(e, InputError::Empty { .. }), "{e:?}");
    assert!(msg.contains("[0, 2, 3]"), "{msg}");
    let (e, _) = input_error(Rnn::new(&gpu(), RnnConfig::new(3, 0, 4), 0));
    assert!(
        matches!(e, InputError::Invalid { ref arg, .. } if arg.contains("hidden")),
        "{e:?}"
    );
}

#[test]
fn data_length_must_match_shape() {
    let (e, msg) = input_error(Tensor::from_slice(&gpu(), &[2, 3], &[1.0; 5]));
    assert!(
        matches!(
            e,
            InputError::Length {
                want: 6,
                got: 5,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("[2, 3]"), "{msg}");
}

#[test]
fn class_ids_out_of_range_are_rejected() {
    let g = gpu();
    let mut rnn = model();
    let x = Tensor::zeros(&g, &[2, 1, 3]).unwrap();
    let y = ClassIds::from_slice(&g, &[2, 1], &[1, 4]).unwrap();
    let (e, msg) =
        input_error(rnn.loss_and_gradients(&x, None, Target::Classes(&y), Loss::cross_entropy()));
    assert_eq!(
        e,
        InputError::ClassOutOfRange {
            arg: "y".into(),
            id: 4,
            classes: 4
        }
    );
    assert!(msg.contains('4'), "{msg}");
    let (e, _) = input_error(ClassIds::from_slice(&g, &[1], &[-1]));
    assert!(
        matches!(e, InputError::ClassOutOfRange { id: -1, .. }),
        "{e:?}"
    );
}

#[test]
fn target_of_wrong_shape_or_kind_is_rejected() {
    let g = gpu();
    let mut rnn = model();
    let x = Tensor::zeros(&g, &[2, 1, 3]).unwrap();
    let y = Tensor::zeros(&g, &[2, 1, 3]).unwrap();
    let (e, msg) = input_error(rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::mse()));
    assert!(
        matches!(e, InputError::Shape { ref arg, .. } if arg == "y"),
        "{e:?}"
    );
    assert!(msg.contains("[2, 1, 4]"), "{msg}");
    let (e, _) =
        input_error(rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::cross_entropy()));
    assert!(matches!(e, InputError::TargetKind { .. }), "{e:?}");
}

#[test]
fn backward_needs_a_forward_first_and_matching_shape() {
    let g = gpu();
    let mut rnn = model();
    let d = Tensor::zeros(&g, &[2, 1, 4]).unwrap();
    let (e, _) = input_error(rnn.backward(&d));
    assert_eq!(e, InputError::NoForward);
    rnn.forward(&Tensor::zeros(&g, &[3, 1, 3]).unwrap(), None)
        .unwrap();
    let (e, _) = input_error(rnn.backward(&d));
    assert!(
        matches!(e, InputError::Shape { ref arg, .. } if arg == "d_output"),
        "{e:?}"
    );
}

#[test]
fn optimizer_of_another_model_is_rejected() {
    let g = gpu();
    let mut a = model();
    let b = model();
    let mut opt = Optimizer::new(&b, OptimizerKind::adam(0.01)).unwrap();
    let x = Tensor::zeros(&g, &[2, 1, 3]).unwrap();
    let y = Tensor::zeros(&g, &[2, 1, 4]).unwrap();
    let (e, _) = input_error(a.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt));
    assert!(matches!(e, InputError::Foreign { .. }), "{e:?}");
}

#[test]
fn bad_hyper_parameters_are_rejected() {
    let rnn = model();
    let (e, _) = input_error(Optimizer::new(&rnn, OptimizerKind::sgd(-1.0, 0.0)));
    assert!(
        matches!(e, InputError::Invalid { ref arg, .. } if arg == "lr"),
        "{e:?}"
    );
    let (e, _) = input_error(Optimizer::new(&rnn, OptimizerKind::sgd(0.1, 1.5)));
    assert!(
        matches!(e, InputError::Invalid { ref arg, .. } if arg == "momentum"),
        "{e:?}"
    );
}

#[test]
fn unknown_parameter_names_and_lengths_are_rejected() {
    let mut rnn = model();
    let (e, msg) = input_error(rnn.set_parameter("rnn.weight_xx", &[0.0]));
    assert!(matches!(e, InputError::Invalid { .. }), "{e:?}");
    assert!(msg.contains("rnn.weight_hh_l0"), "{msg}");
    let (e, _) = input_error(rnn.set_parameter("fc.bias", &[0.0; 3]));
    assert!(
        matches!(
            e,
            InputError::Length {
                want: 4,
                got: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn sizes_beyond_the_adapter_limit_are_rejected() {
    let g = gpu();
    let limit = g.max_storage_bytes();
    let elems = (limit / 4 + 1) as usize;
    match Tensor::zeros(&g, &[elems]) {
        Err(Error::Gpu(GpuError::TooLarge {
            bytes, limit: l, ..
        })) => {
            assert!(bytes > l);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A model whose recurrent weight alone is over the limit.
    let h = ((limit / 4) as f64).sqrt() as usize + 1;
    match Rnn::new(&g, RnnConfig::new(1, h, 1), 0) {
        Err(Error::Gpu(GpuError::TooLarge { .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn zero_layers_and_dropout_outside_0_1_are_rejected() {
    let g = gpu();
    let err = Rnn::new(&g, RnnConfig::new(2, 3, 1).with_layers(0), 0).unwrap_err();
    assert!(err.to_string().contains("layers"), "{err}");
    for p in [-0.1f32, 1.0, f32::NAN] {
        let err = Rnn::new(
            &g,
            RnnConfig::new(2, 3, 1).with_layers(2).with_dropout(p),
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("dropout"), "{p}: {err}");
        let mut rnn = Rnn::new(&g, RnnConfig::new(2, 3, 1).with_layers(2), 0).unwrap();
        let err = rnn.set_dropout(p).unwrap_err();
        assert!(err.to_string().contains("dropout"), "{p}: {err}");
    }
}

#[test]
fn sizes_whose_product_overflows_are_errors() {
    let g = gpu();
    let err = Tensor::zeros(&g, &[1 << 31, 1 << 31, 4]).unwrap_err();
    assert!(err.to_string().contains("tensor"), "{err}");
    let err = Tensor::zeros(&g, &[usize::MAX, 2]).unwrap_err();
    assert!(err.to_string().contains("tensor"), "{err}");
    let err = Rnn::new(&g, RnnConfig::new(3, 1 << 30, 2), 0).unwrap_err();
    assert!(err.to_string().contains("hidden"), "{err}");
}

#[test]
fn a_loss_mask_of_the_wrong_shape_is_rejected() {
    let g = gpu();
    let mut rnn = model();
    let x = Tensor::zeros(&g, &[2, 3, 3]).unwrap();
    let y = Tensor::zeros(&g, &[2, 3, 4]).unwrap();
    for shape in [&[3, 2][..], &[2, 3, 1], &[6]] {
        let mask = Tensor::zeros(&g, shape).unwrap();
        let target = Target::Values(&y).with_mask(&mask);
        let (e, msg) = input_error(rnn.loss_and_gradients(&x, None, target, Loss::mse()));
        assert!(
            matches!(e, InputError::Shape { ref arg, .. } if arg == "mask"),
            "{shape:?}: {msg}"
        );
        assert!(msg.contains("[2, 3]"), "{msg}");
    }
}

#[test]
fn stale_views_are_errors_and_carrying_the_state_still_works() {
    // The tensors a call returns view the model's buffers: after a later call overwrites them,
    // reading or passing one is a `Stale` error naming what overwrote it, never the new values.
    let g = gpu();
    let mut rnn = model();
    let x = Tensor::from_slice(&g, &[2, 3, 3], &[0.5; 18]).unwrap();
    let y = Tensor::zeros(&g, &[2, 3, 4]).unwrap();
    let stale = |r: Result<Vec<f32>, Error>, arg: &str, by: &str| match r {
        Err(Error::Input(InputError::Stale { arg: a, reason })) => {
            assert_eq!(a, arg);
            assert!(reason.contains(by), "{reason}");
        }
        other => panic!("expected `{arg}` stale, got {other:?}"),
    };

    // Carrying the state: the h_n a call returned, passed straight back as h0.
    let first = rnn.forward(&x, None).unwrap();
    let kept = Tensor::zeros(&g, first.output.shape()).unwrap();
    kept.copy_from(&first.output).unwrap();
    let second = rnn.forward(&x, Some(&first.h_n)).unwrap();
    stale(first.output.to_vec(), "tensor", "forward pass");
    stale(first.h_n.to_vec(), "tensor", "forward pass");
    match rnn.forward(&x, Some(&first.h_n)) {
        Err(Error::Input(InputError::Stale { arg, .. })) => assert_eq!(arg, "h0"),
        other => panic!("a stale h0 was taken: {other:?}"),
    }
    assert!(
        second.output.to_vec().is_ok(),
        "the latest views stay valid"
    );
    assert!(kept.to_vec().is_ok(), "a copy is the caller's own");

    // Gradients: overwritten by the next backward pass.
    let (_, grads) = rnn
        .loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
        .unwrap();
    let bias = grads.get("fc.bias").unwrap().clone();
    assert!(bias.to_vec().is_ok());
    rnn.forward(&x, None).unwrap();
    assert!(
        bias.to_vec().is_ok(),
        "a forward pass leaves the gradients alone"
    );
    rnn.loss_and_gradients(&x, None, Target::Values(&y), Loss::mse())
        .unwrap();
    stale(bias.to_vec(), "tensor", "backward pass");

    // backward after the weights changed: the forward pass's states belong to old weights.
    let mut opt = Optimizer::new(&rnn, OptimizerKind::adam(0.01)).unwrap();
    let d_o = Tensor::zeros(&g, &[2, 3, 4]).unwrap();
    rnn.forward(&x, None).unwrap();
    rnn.train_step(&x, None, Target::Values(&y), Loss::mse(), &mut opt)
        .unwrap();
    let (e, msg) = input_error(rnn.backward(&d_o));
    assert!(matches!(e, InputError::Stale { .. }), "{msg}");
    assert!(msg.contains("optimizer step"), "{msg}");
    rnn.forward(&x, None).unwrap();
    rnn.set_parameter("fc.bias", &[0.0; 4]).unwrap();
    let (e, _) = input_error(rnn.backward(&d_o));
    assert!(matches!(e, InputError::Stale { .. }));
    rnn.forward(&x, None).unwrap();
    assert!(rnn.backward(&d_o).is_ok(), "a fresh forward pass is fine");
}
