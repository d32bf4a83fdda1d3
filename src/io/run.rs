//! Running a model on an input file: what `rnn-wgpu run` does, as a library call so tests take
//! the same path.

use super::tensors::{HostTensor, TensorFile};
use crate::error::Result;
use crate::loss::{Loss, LossKind, Reduction, Target};
use crate::model::Rnn;
use crate::tensor::{ClassIds, Input, Tensor};

/// Runs `rnn` on the tensors of `input` and returns what an output file holds, in order:
/// `o` `[T, B, O]`, `h_n` `[L, B, H]`, and when `input` has a target `y`: `loss` (a scalar),
/// `grad.<parameter>` for every parameter, `grad.x` and, when `input` has `h0`, `grad.h0`.
///
/// `loss` picks the loss; `None` infers it from `y`'s dtype (float: mse, integer:
/// cross-entropy). A `mask` `[T, B]` (`[B, T]` batch-first) beside `y` counts the loss only
/// at the steps where it is 1 ([`Target::with_mask`]). An integer `x` `[T, B]` is token ids
/// ([`Input::Tokens`]): each stands for the one-hot vector of its id, and there is no `grad.x`.
pub fn run(
    rnn: &mut Rnn,
    input: &TensorFile,
    loss: Option<LossKind>,
    reduction: Reduction,
) -> Result<Vec<(String, HostTensor)>> {
    // Outputs and gradients of the model itself, as PyTorch's `model.eval()`: no dropout.
    rnn.set_training(false);
    let c = *rnn.config();
    let gpu = rnn.gpu().clone();

    let xt = input.require("x")?;
    let xs = xt.shape.clone();
    // With a batch-first model, x, y, o and grad.x put B before T.
    let (_, order) = c.leading([0, 0]);
    let (values, tokens);
    let x = if let Some(ids) = xt.to_i64() {
        if xs.len() != 2 || xs.contains(&0) {
            return Err(input.shape_err(
                "x",
                &xs,
                format!(
                    "[{order}] token ids, as x is {} (integer); values would be F32 [{order}, {}]",
                    xt.dtype_name(),
                    c.input
                ),
            ));
        }
        if let Some(bad) = ids
            .iter()
            .find(|&&id| id < 0 || id as u64 >= c.input as u64)
        {
            return Err(input.invalid(
                "x",
                format!(
                    "token id {bad} is out of range for a model of input size {}",
                    c.input
                ),
            ));
        }
        tokens = ClassIds::from_slice(&gpu, &xs, &ids)?;
        Input::Tokens(&tokens)
    } else {
        let xv = xt.to_f32().ok_or_else(|| {
            input.dtype_err("x", xt, "F32 or F64 (values), or I64 or I32 (token ids)")
        })?;
        if xs.len() != 3 || xs[2] != c.input || xs.contains(&0) {
            return Err(input.shape_err(
                "x",
                &xs,
                format!(
                    "[{order}, {}] (the model's input size), no zero sizes",
                    c.input
                ),
            ));
        }
        values = Tensor::from_slice(&gpu, &xs, &xv)?;
        Input::Values(&values)
    };
    // x's leading dimensions, which y's must repeat, and B from them.
    let (d0, d1) = (xs[0], xs[1]);
    let ([_, b], _) = c.leading([d0, d1]);

    let h0 = match input.floats("h0")? {
        None => None,
        Some((hs, hv)) => {
            if hs != [c.states(), b, c.hidden] && (c.states() != 1 || hs != [b, c.hidden]) {
                return Err(input.shape_err(
                    "h0",
                    &hs,
                    format!(
                        "[{}, {b}, {}] (num_layers x directions, B from x, H of the model)",
                        c.states(),
                        c.hidden
                    ),
                ));
            }
            Some((hs.clone(), Tensor::from_slice(&gpu, &hs, &hv)?))
        }
    };

    let Some(y) = input.get("y") else {
        if input.get("mask").is_some() {
            return Err(input.invalid(
                "mask",
                "a loss mask needs a target y to count the loss against".to_string(),
            ));
        }
        if let Some(kind) = loss {
            let name = Loss { kind, reduction }.name();
            return Err(input.invalid(
                "y",
                format!("missing: a loss ({name}) was asked for, so the input needs a target y"),
            ));
        }
        let out = rnn.forward(x, h0.as_ref().map(|(_, t)| t))?;
        return Ok(vec![
            (
                "o".into(),
                HostTensor::f32(out.output.shape(), out.output.to_vec()?),
            ),
            (
                "h_n".into(),
                HostTensor::f32(&[c.states(), b, c.hidden], out.h_n.to_vec()?),
            ),
        ]);
    };

    let kind = match loss {
        Some(k) => k,
        None if y.to_f32().is_some() => LossKind::Mse,
        None => LossKind::CrossEntropy,
    };
    let loss = Loss { kind, reduction };
    let values;
    let classes;
    let target = match kind {
        LossKind::Mse => {
            let v = y
                .to_f32()
                .ok_or_else(|| input.dtype_err("y", y, "F32 or F64 (targets for mse)"))?;
            if y.shape != [d0, d1, c.output] {
                return Err(input.shape_err(
                    "y",
                    &y.shape,
                    format!(
                        "[{d0}, {d1}, {}] ({order} from x; the model's outputs)",
                        c.output
                    ),
                ));
            }
            values = Tensor::from_slice(&gpu, &y.shape, &v)?;
            Target::Values(&values)
        }
        LossKind::CrossEntropy => {
            let ids = y.to_i64().ok_or_else(|| {
                input.dtype_err("y", y, "I64 or I32 (class ids for cross_entropy)")
            })?;
            if y.shape != [d0, d1] {
                return Err(input.shape_err(
                    "y",
                    &y.shape,
                    format!("[{d0}, {d1}] ({order} from x)"),
                ));
            }
            if let Some(bad) = ids
                .iter()
                .find(|&&id| id < 0 || id as u64 >= c.output as u64)
            {
                return Err(input.invalid(
                    "y",
                    format!(
                        "class id {bad} is out of range for a model with {} outputs",
                        c.output
                    ),
                ));
            }
            classes = ClassIds::from_slice(&gpu, &y.shape, &ids)?;
            Target::Classes(&classes)
        }
    };

    let mask;
    let target = match input.get("mask") {
        None => target,
        Some(m) => {
            let v = m.to_f32().or_else(|| {
                m.to_i64()
                    .map(|ids| ids.iter().map(|&v| v as f32).collect())
            });
            let v = v.ok_or_else(|| {
                input.dtype_err("mask", m, "F32, F64, I32 or I64 (a bool mask as .float())")
            })?;
            if m.shape != [d0, d1] {
                return Err(input.shape_err(
                    "mask",
                    &m.shape,
                    format!("[{d0}, {d1}] ({order} from x)"),
                ));
            }
            if let Some(bad) = v.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(input.invalid(
                    "mask",
                    format!("{bad} is not a weight: 1 where a step's loss counts, 0 where not"),
                ));
            }
            mask = Tensor::from_slice(&gpu, &m.shape, &v)?;
            target.with_mask(&mask)
        }
    };

    rnn.set_input_gradients(true);
    let (fw, grads) = rnn.loss_and_gradients(x, h0.as_ref().map(|(_, t)| t), target, loss)?;
    let mut out = vec![
        (
            "o".to_string(),
            HostTensor::f32(fw.output.shape(), fw.output.to_vec()?),
        ),
        (
            "h_n".into(),
            HostTensor::f32(&[c.states(), b, c.hidden], fw.h_n.to_vec()?),
        ),
        ("loss".into(), HostTensor::f32(&[], vec![rnn.last_loss()?])),
    ];
    for (name, g) in &grads.params {
        out.push((
            format!("grad.{name}"),
            HostTensor::f32(g.shape(), g.to_vec()?),
        ));
    }
    if let Some(dx) = &grads.x {
        out.push(("grad.x".into(), HostTensor::f32(&xs, dx.to_vec()?)));
    }
    if let Some((hs, _)) = &h0 {
        if let Some(dh0) = &grads.h0 {
            out.push(("grad.h0".into(), HostTensor::f32(hs, dh0.to_vec()?)));
        }
    }
    Ok(out)
}
