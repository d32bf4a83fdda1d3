//! Bad files give an error naming the file and tensor, never a panic or a partial file.

use std::collections::HashMap;

use rnn_wgpu::io::{self, HostTensor, TensorFile, Values};
use rnn_wgpu::model::SplitMix64;
use rnn_wgpu::{Error, FileError, LossKind, Reduction};

use crate::common::{Scratch, gpu};
use crate::pytorch::fixture;

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Runs the fixture model `case` on `input` (tensors) and returns the error message.
fn run_error(case: &str, input: Vec<(&str, HostTensor)>, loss: Option<LossKind>) -> String {
    let scratch = Scratch::new();
    let path = scratch.path(&format!("{case}-bad-input.safetensors"));
    let tensors: Vec<(String, HostTensor)> =
        input.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    io::write(&path, &tensors, &HashMap::new()).unwrap();
    let file = TensorFile::read(&path).unwrap();
    let mut m = io::load(&gpu(), fixture(&format!("{case}.model.safetensors"))).unwrap();
    match io::run::run(&mut m.rnn, &file, loss, Reduction::Mean) {
        Err(e @ Error::File(_)) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            msg
        }
        other => panic!("expected a file error, got {other:?}"),
    }
}

fn f32s(shape: &[usize]) -> HostTensor {
    HostTensor::f32(shape, vec![0.1; shape.iter().product()])
}

// The model of `tanh_mse_mean_h0` has I = 4, H = 7, O = 2.
const CASE: &str = "tanh_mse_mean_h0";

#[test]
fn input_disagreeing_with_the_model_names_tensor_and_sizes() {
    let msg = run_error(CASE, vec![("x", f32s(&[5, 3, 6]))], None);
    assert!(
        msg.contains("`x`") && msg.contains("[5, 3, 6]") && msg.contains("[T, B, 4]"),
        "{msg}"
    );
    let msg = run_error(
        CASE,
        vec![("x", f32s(&[5, 3, 4])), ("h0", f32s(&[1, 2, 7]))],
        None,
    );
    assert!(msg.contains("`h0`") && msg.contains("[1, 3, 7]"), "{msg}");
    let msg = run_error(
        CASE,
        vec![("x", f32s(&[5, 3, 4])), ("y", f32s(&[5, 3, 3]))],
        None,
    );
    assert!(msg.contains("`y`") && msg.contains("[5, 3, 2]"), "{msg}");
    // A stacked bidirectional model (L = 2, D = 2, H = 8, I = 5): h0 of one layer's count.
    let msg = run_error(
        "bi2_tanh_mse_batch_first",
        vec![("x", f32s(&[6, 3, 5])), ("h0", f32s(&[2, 3, 8]))],
        None,
    );
    assert!(
        msg.contains("`h0`") && msg.contains("[2, 3, 8]") && msg.contains("[4, 3, 8]"),
        "{msg}"
    );
}

#[test]
fn wrong_dtypes_and_missing_tensors_are_named() {
    let ints = |shape: &[usize], v: i64| HostTensor {
        shape: shape.to_vec(),
        values: Values::I64(vec![v; shape.iter().product()]),
    };
    let msg = run_error(CASE, vec![("x", ints(&[5, 3, 4], 0))], None);
    assert!(
        msg.contains("`x`") && msg.contains("I64") && msg.contains("F32"),
        "{msg}"
    );
    let msg = run_error(CASE, vec![("h0", f32s(&[1, 3, 7]))], None);
    assert!(
        msg.contains("missing tensor `x`") && msg.contains("h0"),
        "{msg}"
    );
    // mse asked for, class ids given.
    let msg = run_error(
        CASE,
        vec![("x", f32s(&[5, 3, 4])), ("y", ints(&[5, 3], 1))],
        Some(LossKind::Mse),
    );
    assert!(msg.contains("`y`") && msg.contains("I64"), "{msg}");
    // A loss asked for, no target.
    let msg = run_error(CASE, vec![("x", f32s(&[5, 3, 4]))], Some(LossKind::Mse));
    assert!(msg.contains("`y`") && msg.contains("missing"), "{msg}");
    // Class ids out of range for O = 2, and negative.
    for bad in [2, -1] {
        let msg = run_error(
            CASE,
            vec![("x", f32s(&[5, 3, 4])), ("y", ints(&[5, 3], bad))],
            None,
        );
        assert!(
            msg.contains("`y`") && msg.contains(&format!("class id {bad}")),
            "{msg}"
        );
    }
}

#[test]
fn model_files_with_wrong_contents_are_rejected_with_the_tensor_named() {
    let scratch = Scratch::new();
    let original = TensorFile::read(fixture(&format!("{CASE}.model.safetensors"))).unwrap();
    let mut tensors: Vec<(String, HostTensor)> = original
        .names()
        .map(|n| (n.to_string(), original.get(n).unwrap().clone()))
        .collect();
    let write = |tensors: &[(String, HostTensor)], meta: &[(&str, &str)]| {
        let path = scratch.path("model.safetensors");
        let meta = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        io::write(&path, tensors, &meta).unwrap();
        io::model_file::config_of(&TensorFile::read(&path).unwrap())
            .unwrap_err()
            .to_string()
    };
    let msg = write(&tensors, &[("num_layers", "2")]);
    assert!(
        msg.contains("num_layers") && msg.contains("says 2") && msg.contains("1 layer"),
        "{msg}"
    );
    // Stacked files gone wrong: a second layer whose input weights do not read H = 7 outputs,
    // a layer skipped, a reverse direction.
    let with = |extra: Vec<(&str, HostTensor)>| {
        let mut t = tensors.clone();
        t.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
        t
    };
    let msg = write(
        &with(vec![
            ("rnn.weight_ih_l1", f32s(&[7, 5])),
            ("rnn.weight_hh_l1", f32s(&[7, 7])),
        ]),
        &[],
    );
    assert!(
        msg.contains("rnn.weight_ih_l1") && msg.contains("[7, 5]") && msg.contains("[7, 7]"),
        "{msg}"
    );
    let msg = write(
        &with(vec![
            ("rnn.weight_ih_l2", f32s(&[7, 7])),
            ("rnn.weight_hh_l2", f32s(&[7, 7])),
        ]),
        &[],
    );
    assert!(msg.contains("missing tensor `rnn.weight_ih_l1`"), "{msg}");
    // Both directions, but layer 1's reverse direction missing; and metadata that denies them.
    let fc = tensors.iter().position(|(n, _)| n == "fc.weight").unwrap();
    let mut bi = with(vec![
        ("rnn.weight_ih_l0_reverse", f32s(&[7, 4])),
        ("rnn.weight_hh_l0_reverse", f32s(&[7, 7])),
        ("rnn.weight_ih_l1", f32s(&[7, 14])),
        ("rnn.weight_hh_l1", f32s(&[7, 7])),
    ]);
    bi[fc].1 = f32s(&[2, 14]);
    let msg = write(&bi, &[]);
    assert!(
        msg.contains("missing tensor `rnn.weight_ih_l1_reverse`"),
        "{msg}"
    );
    let msg = write(&bi, &[("bidirectional", "false")]);
    assert!(
        msg.contains("bidirectional") && msg.contains("_reverse"),
        "{msg}"
    );
    // A second layer reading one direction's width where the layer below has two.
    bi.push(("rnn.weight_ih_l1_reverse".into(), f32s(&[7, 7])));
    bi.push(("rnn.weight_hh_l1_reverse".into(), f32s(&[7, 7])));
    let msg = write(&bi, &[]);
    assert!(
        msg.contains("rnn.weight_ih_l1_reverse") && msg.contains("[7, 14]"),
        "{msg}"
    );
    let msg = write(
        &with(vec![
            ("rnn.weight_ih_l1", f32s(&[7, 7])),
            ("rnn.weight_hh_l1", f32s(&[7, 7])),
            ("rnn.bias_ih_l1", f32s(&[6])),
        ]),
        &[],
    );
    assert!(
        msg.contains("rnn.bias_ih_l1") && msg.contains("[6]"),
        "{msg}"
    );
    let msg = write(&tensors, &[("nonlinearity", "sigmoid")]);
    assert_eq!(
        msg.matches("nonlinearity").count(),
        1,
        "the key once: {msg}"
    );
    assert!(
        msg.contains("nonlinearity") && msg.contains("sigmoid") && msg.contains("relu"),
        "{msg}"
    );
    let msg = write(&tensors, &[("hidden_size", "8")]);
    assert!(msg.contains("hidden_size") && msg.contains('7'), "{msg}");
    // weight_hh of the wrong shape.
    let hh = tensors
        .iter_mut()
        .find(|(n, _)| n == "rnn.weight_hh_l0")
        .unwrap();
    hh.1 = f32s(&[7, 6]);
    let msg = write(&tensors, &[]);
    assert!(
        msg.contains("rnn.weight_hh_l0") && msg.contains("[7, 6]"),
        "{msg}"
    );
    // fc.weight missing.
    tensors.retain(|(n, _)| n != "fc.weight" && n != "rnn.weight_hh_l0");
    tensors.push(("rnn.weight_hh_l0".into(), f32s(&[7, 7])));
    let msg = write(&tensors, &[]);
    assert!(msg.contains("missing tensor `fc.weight`"), "{msg}");
    // A half-precision tensor.
    let mut half = tensors.clone();
    half.push(("fc.weight".into(), f32s(&[2, 7])));
    let path = scratch.path("half.safetensors");
    io::write(&path, &half, &HashMap::new()).unwrap();
    let mut raw = std::fs::read(&path).unwrap();
    // Turn fc.weight's dtype into F16 in the JSON header, keeping its length in bytes valid by
    // doubling the element count: [2, 7] f32 is 56 bytes, [4, 7] f16 is 56 bytes.
    let header_len = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(raw[8..8 + header_len].to_vec()).unwrap();
    let patched = header.replacen(
        r#""fc.weight":{"dtype":"F32","shape":[2,7]"#,
        r#""fc.weight":{"dtype":"F16","shape":[4,7]"#,
        1,
    );
    assert_ne!(header, patched, "header layout changed: {header}");
    raw.splice(8..8 + header_len, patched.bytes());
    let f = TensorFile::from_bytes("half.safetensors", &raw).unwrap();
    let msg = io::model_file::config_of(&f).unwrap_err().to_string();
    assert!(msg.contains("fc.weight") && msg.contains("F16"), "{msg}");
}

#[test]
fn missing_and_corrupt_files_are_errors() {
    let scratch = Scratch::new();
    match TensorFile::read(scratch.path("does-not-exist.safetensors")) {
        Err(Error::File(FileError::Io { path, .. })) => assert!(path.contains("does-not-exist")),
        other => panic!("{other:?}"),
    }
    let good = bytes(&format!("{CASE}.model.safetensors"));
    let msg = TensorFile::from_bytes("cut.safetensors", &good[..good.len() - 3])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cut.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
}

/// A file that loaded is well-formed: every tensor holds as many values as its shape says.
fn assert_well_formed(f: &TensorFile) {
    for name in f.names() {
        let t = f.get(name).expect("listed");
        let n: usize = t.shape.iter().product();
        let len = match &t.values {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::Other(_) => n,
        };
        assert_eq!(len, n, "{name}: {len} values for shape {:?}", t.shape);
    }
}

/// `n` copies of `good`, each with one to four bytes overwritten (mostly in the header, where a
/// flipped byte changes meaning).
fn corruptions(good: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let mut b = good.to_vec();
            for _ in 0..1 + rng.next_u64() % 4 {
                let span = if rng.next_u64().is_multiple_of(4) {
                    b.len()
                } else {
                    8 + 200.min(b.len() - 8)
                };
                let i = (rng.next_u64() % span as u64) as usize;
                b[i] = rng.next_u64() as u8;
            }
            b
        })
        .collect()
}

/// Every truncation, many random corruptions of real model files, and random bytes: each is
/// an error or a well-formed file, never a panic; a corrupt model file that still loads goes
/// to the GPU, whose parameters must then be the file's values.
#[test]
fn loader_never_panics_on_truncated_or_random_bytes() {
    let g = gpu();
    let try_load = |b: &[u8]| {
        let Ok(f) = TensorFile::from_bytes("fuzz", b) else {
            return;
        };
        assert_well_formed(&f);
        if io::model_file::config_of(&f).is_err() {
            return;
        }
        let Ok(m) = io::model_file::from_file(&g, &f) else {
            return;
        };
        for p in m.rnn.parameters().expect("download") {
            if let Some(want) = f.get(&p.name).and_then(|t| t.to_f32()) {
                assert_eq!(p.values, want, "{}: uploaded values", p.name);
            }
        }
    };
    let mut loaded = 0;
    for case in [CASE, "relu_ce_sum_i32", "tanh_nobias_mse"] {
        let good = bytes(&format!("{case}.model.safetensors"));
        for n in 0..good.len() {
            assert!(
                TensorFile::from_bytes("fuzz", &good[..n]).is_err(),
                "{case} truncated to {n} bytes loaded"
            );
        }
        for b in corruptions(&good, 700, 7) {
            loaded += usize::from(TensorFile::from_bytes("fuzz", &b).is_ok());
            try_load(&b);
        }
    }
    // Some corruptions (in the data, or harmless in the header) must load, or the GPU side of
    // this test checks nothing.
    eprintln!("{loaded} corrupted model files loaded");
    assert!(loaded > 100, "only {loaded} corrupted files loaded");
    let mut rng = SplitMix64::new(8);
    for _ in 0..500 {
        let n = (rng.next_u64() % 300) as usize;
        let mut b: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        if n >= 8 && rng.next_u64().is_multiple_of(2) {
            // A plausible header length, so the parser gets to the JSON.
            b[..8].copy_from_slice(&((n as u64 - 8) / 2).to_le_bytes());
        }
        try_load(&b);
    }
}

/// Corrupted input files run through `run` (the model of each case): an error naming the
/// file, or a result of the right shapes; never a panic.
#[test]
fn corrupt_input_files_are_errors_or_run() {
    let g = gpu();
    let mut ran = 0;
    for case in [CASE, "relu_ce_sum_i32"] {
        let good = bytes(&format!("{case}.input.safetensors"));
        let mut m = io::load(&g, fixture(&format!("{case}.model.safetensors"))).unwrap();
        for b in corruptions(&good, 300, 9) {
            let Ok(f) = TensorFile::from_bytes("fuzz-input", &b) else {
                continue;
            };
            assert_well_formed(&f);
            match io::run::run(&mut m.rnn, &f, None, Reduction::Mean) {
                Ok(out) => {
                    ran += 1;
                    let x = f.get("x").expect("ran, so x is there");
                    let o = &out.iter().find(|(n, _)| n == "o").expect("o written").1;
                    assert_eq!(o.shape[..2], x.shape[..2], "{case}: o follows x's T, B");
                }
                Err(e) => assert!(e.to_string().contains("fuzz-input"), "{e}"),
            }
        }
    }
    eprintln!("{ran} corrupted input files ran");
    assert!(ran > 20, "only {ran} corrupted inputs ran");
}

#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use crate::common::assert_close;
    use std::process::Command;

    fn rnn_wgpu(args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn run_writes_what_pytorch_computed() {
        let scratch = Scratch::new();
        // A single layer; and a stacked bidirectional model with batch-first tensors.
        for (case, flags) in [
            ("tanh_ce_mean_h0", &[][..]),
            ("bi2_tanh_mse_batch_first", &["--batch-first"][..]),
        ] {
            let out = scratch.path("run-ok.safetensors");
            let model = fixture(&format!("{case}.model.safetensors"));
            let input = fixture(&format!("{case}.input.safetensors"));
            let mut args = vec![
                "run",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ];
            args.extend(flags);
            let (code, _, err) = rnn_wgpu(&args);
            assert_eq!(code, 0, "{case}: {err}");
            let got = TensorFile::read(&out).unwrap();
            let want = TensorFile::read(fixture(&format!("{case}.expected.safetensors"))).unwrap();
            assert_eq!(
                got.names().collect::<Vec<_>>(),
                want.names().collect::<Vec<_>>(),
                "{case}"
            );
            // Every tensor: o, h_n, the loss and every gradient, against PyTorch's float64.
            for name in want.names() {
                let (g, w) = (got.get(name).unwrap(), want.get(name).unwrap());
                assert_eq!(g.shape, w.shape, "{case}: shape of {name}");
                assert_close(
                    &format!("rnn-wgpu run {case}: {name}"),
                    &g.to_f32().expect("f32 output"),
                    &w.to_f64().expect("float fixture"),
                    1e-4,
                );
            }
            assert!(
                want.names().count() >= 9,
                "{case}: o, h_n, loss, parameter gradients, x, h0"
            );
        }
    }

    /// On a headless machine (no `XDG_RUNTIME_DIR`, nothing set by hand) stderr holds only
    /// the program's own lines: no window-system probing by the Vulkan layers (issue #11.7).
    #[test]
    fn headless_runs_print_only_their_own_lines() {
        let scratch = Scratch::new();
        let model = fixture("tanh_mse_mean_h0.model.safetensors");
        let input = fixture("tanh_mse_mean_h0.input.safetensors");
        let out = scratch.path("headless.safetensors");
        let runs: [&[&str]; 2] = [
            &["info"],
            &[
                "run",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
        ];
        for args in runs {
            let result = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
                .args(args)
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("NODEVICE_SELECT")
                .env_remove("MESA_VK_DEVICE_SELECT")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&result.stderr);
            assert!(result.status.success(), "{args:?}: {err}");
            for line in err.lines() {
                assert!(
                    line.starts_with("adapter: ") || line.starts_with("wrote "),
                    "{args:?}: a line on stderr that is not the program's: {line:?}\n{err}"
                );
            }
        }
    }

    #[test]
    fn bad_files_exit_2_with_one_line_and_leave_no_output() {
        let scratch = Scratch::new();
        let corrupt = scratch.path("corrupt.safetensors");
        let good = bytes("tanh_mse_mean_h0.model.safetensors");
        std::fs::write(&corrupt, &good[..good.len() / 2]).unwrap();
        let input = fixture("tanh_mse_mean_h0.input.safetensors");
        let out = scratch.path("never-written.safetensors");
        // The model of another case has I = 2 while this x has I = 4.
        let other = fixture("relu_ce_sum_i32.model.safetensors");
        let input = input.to_str().unwrap();
        let cases = [
            (corrupt.to_str().unwrap(), "corrupt.safetensors"),
            ("/nonexistent/m.safetensors", "/nonexistent/m.safetensors"),
            (other.to_str().unwrap(), "`x`"),
        ];
        for (model, named) in cases {
            let (code, _, err) = rnn_wgpu(&[
                "run",
                "--model",
                model,
                "--input",
                input,
                "--output",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code, 2, "{err}");
            let line = err
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or_default();
            assert!(line.contains(named), "{err}");
            assert!(!err.contains("panicked"), "{err}");
            assert!(!out.exists(), "an output file was left behind");
        }
        // An unknown flag value: clap's own one-line error, exit status 2.
        let (code, _, err) = rnn_wgpu(&[
            "run", "--model", "m", "--input", "i", "--output", "o", "--loss", "l1",
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("l1"), "{err}");
    }

    /// An error's one line on stderr (exit status 2, nothing else written).
    fn one_line_error(args: &[&str]) -> String {
        let (code, _, err) = rnn_wgpu(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        lines[0].to_string()
    }

    #[test]
    fn outputs_that_are_inputs_are_refused_before_any_work() {
        let scratch = Scratch::new();
        // A copy of a fixture, so nothing real is at risk; reached also through a link.
        let dir = scratch.dir().to_path_buf();
        let model = dir.join("model.safetensors");
        let input = dir.join("input.safetensors");
        std::fs::copy(fixture("tanh_mse_mean_h0.model.safetensors"), &model).unwrap();
        std::fs::copy(fixture("tanh_mse_mean_h0.input.safetensors"), &input).unwrap();
        let link = dir.join("link.safetensors");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&input, &link).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&input, &link).unwrap();
        let before = std::fs::read(&input).unwrap();
        let text = dir.join("text.txt");
        std::fs::write(
            &text,
            "the quick brown fox jumps over the lazy dog ".repeat(40),
        )
        .unwrap();
        let (m, i, l, t) = (
            model.to_str().unwrap(),
            input.to_str().unwrap(),
            link.to_str().unwrap(),
            text.to_str().unwrap(),
        );
        let mut cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["run", "--model", m, "--input", i, "--output", i],
                "--output",
            ),
            (
                vec!["run", "--model", m, "--input", i, "--output", m],
                "--output",
            ),
            (
                vec!["train", "--text", t, "--save", t, "--steps", "1"],
                "--save",
            ),
            (
                vec!["train", "--text", t, "--plot", t, "--steps", "1"],
                "--plot",
            ),
            (
                vec!["train", "--model", m, "--save", m, "--steps", "1"],
                "--save",
            ),
        ];
        if cfg!(unix) {
            cases.push((
                vec!["run", "--model", m, "--input", l, "--output", i],
                "--output",
            ));
        }
        for (args, flag) in cases {
            let line = one_line_error(&args);
            assert!(
                line.contains(flag) && line.contains("destroy"),
                "{args:?}: {line}"
            );
        }
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "the input is untouched"
        );
    }

    #[test]
    fn numeric_flags_out_of_range_name_the_flag_and_the_range() {
        for (args, flag, says) in [
            (&["train", "--valid", "0.7"][..], "--valid", "[0, 0.5]"),
            (&["train", "--valid", "-0.1"][..], "--valid", "[0, 0.5]"),
            (&["train", "--noise", "-1"][..], "--noise", "0 or more"),
            (&["train", "--clip", "-1"][..], "--clip", "0 or more"),
            (
                &["train", "--clip-value", "-1"][..],
                "--clip-value",
                "0 or more",
            ),
            (&["train", "--lr", "-1"][..], "--lr", "above 0"),
            (&["train", "--lr", "nan"][..], "--lr", "above 0"),
            (&["train", "--momentum", "1"][..], "--momentum", "[0, 1)"),
            (&["train", "--hidden", "0"][..], "--hidden", "at least 1"),
            (
                &["train", "--task", "recall", "--symbols", "1"][..],
                "--symbols",
                "at least 2",
            ),
            (
                &["train", "--log-every", "0"][..],
                "--log-every",
                "at least 1",
            ),
            (
                &["train", "--task", "recall", "--delay", "100"][..],
                "--delay",
                "1 to 31",
            ),
            (
                &["train", "--layers", "2", "--dropout", "1"][..],
                "--dropout",
                "[0, 1)",
            ),
            (&["train", "--layers", "0"][..], "--layers", "at least 1"),
            (
                &["train", "--bidirectional"][..],
                "--bidirectional",
                "next value",
            ),
            (
                &["train", "--init", "scaled:0"][..],
                "--init",
                "spectral radius",
            ),
            (
                &["train", "--task", "copy", "--seq-len", "30"][..],
                "--seq-len",
                "--delay + 20",
            ),
            (
                &["train", "--task", "copy", "--delay", "0"][..],
                "--delay",
                "at least 1",
            ),
            (
                &["train", "--lr-schedule", "step:0:0.5"][..],
                "--lr-schedule",
                "N must be",
            ),
            (
                &["train", "--lr-schedule", "linear"][..],
                "--lr-schedule",
                "constant, cosine or step:N:G",
            ),
            (&["train", "--init", "glorot"][..], "--init", "orthogonal"),
            (
                &["train", "--layer-init", "1=identity"][..],
                "--layer-init",
                "1 layers, counted from 0",
            ),
            (
                &["train", "--layer-init", "identity"][..],
                "--layer-init",
                "K=KIND",
            ),
        ] {
            let line = one_line_error(args);
            assert!(
                line.contains(flag) && line.contains(says),
                "{args:?}: {line}"
            );
        }
    }

    #[test]
    fn train_follows_a_learning_rate_schedule() {
        for schedule in ["cosine", "step:2:0.5"] {
            let (code, out, err) = rnn_wgpu(&[
                "train",
                "--task",
                "adding",
                "--lr-schedule",
                schedule,
                "--warmup",
                "2",
                "--steps",
                "5",
                "--batch",
                "4",
                "--hidden",
                "8",
                "--seq-len",
                "6",
            ]);
            assert_eq!(code, 0, "{schedule}: {err}");
            assert!(out.contains("held-out mse"), "{out}");
        }
    }

    #[test]
    fn train_starts_each_layer_as_told() {
        let (code, out, err) = rnn_wgpu(&[
            "train",
            "--task",
            "recall",
            "--layers",
            "2",
            "--nonlinearity",
            "relu",
            "--init",
            "orthogonal",
            "--layer-init",
            "1=identity",
            "--steps",
            "3",
            "--seq-len",
            "8",
            "--batch",
            "2",
            "--hidden",
            "8",
            "--log-every",
            "1",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("loss"), "{out}");
    }

    #[test]
    fn deeper_blocks_train_from_the_command_line_and_bad_ones_are_one_line() {
        let scratch = Scratch::new();
        let model = scratch.path("deep.safetensors");
        let m = model.to_str().unwrap();
        let (code, out, err) = rnn_wgpu(&[
            "train",
            "--task",
            "adding",
            "--seq-len",
            "6",
            "--steps",
            "3",
            "--batch",
            "4",
            "--hidden",
            "5",
            "--input-depth",
            "1",
            "--input-width",
            "3",
            "--transition-depth",
            "2",
            "--transition-width",
            "7",
            "--skip",
            "--output-depth",
            "2",
            "--output-residual",
            "--save",
            m,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("deep input 1 x 3")
                && out.contains("deep transition with shortcut 2 x 7")
                && out.contains("deep output 2 x 5 tanh residual"),
            "{out}"
        );
        let text = scratch.path("text.txt");
        std::fs::write(&text, "abcdefgh ".repeat(400)).unwrap();
        let t = text.to_str().unwrap();
        for (args, says) in [
            (
                &["--output-depth", "1", "--output-width", "0"][..],
                "--output-width",
            ),
            (&["--skip"][..], "--skip"),
            (
                &["--transition-depth", "0", "--transition-width", "4"][..],
                "--transition-depth",
            ),
            (&["--input-depth", "9"][..], "--input-depth"),
            (
                &["--input-depth", "1", "--input-residual"][..],
                "--input-residual",
            ),
            (&["--output-residual"][..], "--output-residual"),
            (&["--text", t, "--input-depth", "1"][..], "--input-depth"),
            (
                &["--task", "adding", "--model", m, "--output-depth", "1"][..],
                "--output-depth",
            ),
            (
                &["--task", "adding", "--model", m, "--input-residual"][..],
                "--input-depth",
            ),
        ] {
            let mut all = vec!["train", "--steps", "1"];
            all.extend(args);
            let line = one_line_error(&all);
            assert!(line.contains(says), "{args:?}: {line}");
        }
    }

    #[test]
    fn the_long_memory_tasks_train_and_report_their_baselines() {
        for (args, says) in [
            (
                &["train", "--task", "adding", "--seq-len", "9"][..],
                // 32 batches of 4, both scored on the same sequences.
                "for always answering 1 (128 sequences;",
            ),
            (
                &["train", "--task", "copy", "--delay", "3"][..],
                "vs 0.9041 for the memoryless baseline",
            ),
        ] {
            let mut all = args.to_vec();
            all.extend(["--steps", "3", "--batch", "4", "--hidden", "8"]);
            let (code, out, err) = rnn_wgpu(&all);
            assert_eq!(code, 0, "{args:?}: {err}");
            assert!(out.contains(says), "{args:?}: {out}");
        }
    }

    #[test]
    fn train_records_the_gradient_norm_curves() {
        // One JSON line per layer at every logged step (1, 4 and 8 here), a norm per step.
        let scratch = Scratch::new();
        let path = scratch.path("norms.jsonl");
        let p = path.to_str().unwrap();
        let args = [
            "train",
            "--task",
            "adding",
            "--seq-len",
            "12",
            "--steps",
            "8",
            "--log-every",
            "4",
            "--batch",
            "4",
            "--hidden",
            "8",
            "--layers",
            "2",
            "--grad-norms",
            p,
        ];
        let (code, _, err) = rnn_wgpu(&args);
        assert_eq!(code, 0, "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let seen: Vec<(u64, u64, u64)> = lines
            .iter()
            .map(|v| {
                let n = |k: &str| v[k].as_u64().unwrap();
                (n("step"), n("layer"), n("direction"))
            })
            .collect();
        let want = [
            (1, 0, 0),
            (1, 1, 0),
            (4, 0, 0),
            (4, 1, 0),
            (8, 0, 0),
            (8, 1, 0),
        ];
        assert_eq!(seen, want, "{text}");
        for v in &lines {
            let norms = v["norms"].as_array().unwrap();
            assert_eq!(norms.len(), 12, "{v}");
            assert!(norms.iter().all(|n| n.as_f64().unwrap().is_finite()), "{v}");
            // The adding task's loss is at the last step: its gradient is there.
            assert!(norms[11].as_f64().unwrap() > 0.0, "{v}");
        }
        // Both directions, and the curves drawn beside the loss with --plot.
        let plot = scratch.path("loss.svg");
        let args = [
            "train",
            "--task",
            "adding",
            "--seq-len",
            "6",
            "--steps",
            "2",
            "--batch",
            "2",
            "--hidden",
            "4",
            "--bidirectional",
            "--grad-norms",
            p,
            "--plot",
            plot.to_str().unwrap(),
        ];
        let (code, _, err) = rnn_wgpu(&args);
        assert_eq!(code, 0, "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().any(|l| l.contains("\"direction\":1")),
            "{text}"
        );
        let beside = std::fs::read_to_string(scratch.path("loss-grad-norms.svg")).unwrap();
        assert!(
            beside.contains("layer 0 reverse"),
            "the reverse curve is drawn"
        );
    }

    #[test]
    fn analyze_reports_each_spectral_radius_and_how_far_the_gradient_reaches() {
        // A linear recurrence whose W has eigenvalues 0.8, -0.5 and 0.3 (symmetric, made from
        // an orthonormal basis): spectral radius 0.8, and the last step's gradient shrinks by
        // 0.8 a step going back: below 1e-6 of its last value after about 62 steps.
        let scratch = Scratch::new();
        let g = crate::common::gpu();
        let config =
            rnn_wgpu::RnnConfig::new(2, 3, 1).with_nonlinearity(rnn_wgpu::Nonlinearity::Identity);
        let mut rnn = rnn_wgpu::Rnn::new(&g, config, 1).unwrap();
        let q = crate::versus_reference::orthogonal(3, 8);
        let lambdas = [0.8, -0.5, 0.3];
        let w: Vec<f32> = (0..9)
            .map(|ij| {
                let (i, j) = (ij / 3, ij % 3);
                (0..3)
                    .map(|k| q[k * 3 + i] * lambdas[k] * q[k * 3 + j])
                    .sum::<f64>() as f32
            })
            .collect();
        rnn.set_parameter("rnn.weight_hh_l0", &w).unwrap();
        let model = scratch.path("linear.safetensors");
        rnn_wgpu::io::model_file::save(&rnn, &model, &HashMap::new()).unwrap();
        let out = scratch.path("pictures");
        let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
        let (code, stdout, err) =
            rnn_wgpu(&["analyze", "--model", m, "--out", o, "--seq-len", "120"]);
        assert_eq!(code, 0, "{err}");
        let radius: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("layer 0 spectral radius "))
            .unwrap_or_else(|| panic!("no radius line: {stdout}"))
            .parse()
            .unwrap();
        assert!((radius - 0.8).abs() < 1e-3, "{stdout}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("layer 0 gradient norm: x"))
            .unwrap_or_else(|| panic!("no gradient line: {stdout}"));
        let rate: f64 = line["layer 0 gradient norm: x".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((rate - 0.8).abs() < 0.02, "{line}");
        // 0.8^62 < 1e-6 < 0.8^61: step 119 - 62 = 57 is the first below, near enough.
        let step: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((55..=58).contains(&step), "{line}");
        for name in ["eigenvalues-layer-0.svg", "grad-norms.svg"] {
            let svg = std::fs::read_to_string(out.join(name)).unwrap();
            assert!(svg.starts_with("<svg") && svg.len() > 1000, "{name}");
        }
        // Both directions: a reverse line for each layer; a file without x is one line.
        let bi = rnn_wgpu::Rnn::new(
            &g,
            rnn_wgpu::RnnConfig::new(2, 5, 1).with_bidirectional(true),
            2,
        )
        .unwrap();
        let bi_path = scratch.path("bi.safetensors");
        rnn_wgpu::io::model_file::save(&bi, &bi_path, &HashMap::new()).unwrap();
        let (code, stdout, err) =
            rnn_wgpu(&["analyze", "--model", bi_path.to_str().unwrap(), "--out", o]);
        assert_eq!(code, 0, "{err}");
        assert!(
            stdout.contains("layer 0 spectral radius ")
                && stdout.contains("layer 0 reverse spectral radius "),
            "{stdout}"
        );
        let line = one_line_error(&["analyze", "--model", m, "--input", m, "--out", o]);
        assert!(line.contains("x"), "{line}");
        // A built-in task's sequence: the adding problem has the model's 2 inputs, the copy
        // task's 10 do not.
        let (code, stdout, err) = rnn_wgpu(&[
            "analyze",
            "--model",
            m,
            "--out",
            o,
            "--task",
            "adding",
            "--seq-len",
            "90",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("layer 0 gradient norm: x"), "{stdout}");
        let line = one_line_error(&["analyze", "--model", m, "--out", o, "--task", "copy"]);
        assert!(
            line.contains("--task") && line.contains("10 inputs"),
            "{line}"
        );
    }

    #[test]
    fn text_too_short_names_the_file() {
        let scratch = Scratch::new();
        let text = scratch.path("one.txt");
        std::fs::write(&text, "a").unwrap();
        let t = text.to_str().unwrap();
        let line = one_line_error(&["train", "--text", t, "--steps", "1"]);
        assert!(line.contains("--text") && line.contains(t), "{line}");
    }

    #[test]
    fn a_bare_state_dict_runs_as_tanh_with_a_note_or_as_told() {
        let scratch = Scratch::new();
        // bi2_tanh_ce_raw has no metadata: tanh with a note; --nonlinearity tanh quietly (and
        // the same outputs); relu changes the outputs; a flag against a file's metadata fails.
        let model = fixture("bi2_tanh_ce_raw.model.safetensors");
        let input = fixture("bi2_tanh_ce_raw.input.safetensors");
        let (m, i) = (model.to_str().unwrap(), input.to_str().unwrap());
        let run = |extra: &[&str]| {
            let out = scratch.path("nl.safetensors");
            let mut args = vec![
                "run",
                "--model",
                m,
                "--input",
                i,
                "--output",
                out.to_str().unwrap(),
            ];
            args.extend(extra);
            let (code, _, err) = rnn_wgpu(&args);
            assert_eq!(code, 0, "{err}");
            let o = TensorFile::read(&out)
                .unwrap()
                .get("o")
                .unwrap()
                .to_f32()
                .unwrap();
            (o, err)
        };
        let (o_default, err) = run(&[]);
        assert!(err.contains("assuming") || err.contains("as tanh"), "{err}");
        assert!(err.contains("--nonlinearity"), "{err}");
        let (o_tanh, err) = run(&["--nonlinearity", "tanh"]);
        assert!(!err.contains("note:"), "{err}");
        assert_eq!(o_default, o_tanh);
        let (o_relu, _) = run(&["--nonlinearity", "relu"]);
        assert_ne!(o_default, o_relu);
        let stated = fixture("relu_ce_sum_i32.model.safetensors");
        let stated_in = fixture("relu_ce_sum_i32.input.safetensors");
        let out = scratch.path("nl-bad.safetensors");
        let line = one_line_error(&[
            "run",
            "--model",
            stated.to_str().unwrap(),
            "--input",
            stated_in.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--nonlinearity",
            "tanh",
        ]);
        assert!(
            line.contains("--nonlinearity") && line.contains("relu"),
            "{line}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn the_same_seed_gives_the_same_model_file() {
        let scratch = Scratch::new();
        let (a, b) = (scratch.path("a.safetensors"), scratch.path("b.safetensors"));
        for path in [&a, &b] {
            let (code, _, err) = rnn_wgpu(&[
                "train",
                "--steps",
                "5",
                "--layers",
                "2",
                "--save",
                path.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{err}");
        }
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "two runs with one seed wrote different files"
        );
    }
}

/// Property tests over the loader with structured headers (issue #16 item 7): any tensor
/// names, dtypes, shapes and data offsets (overlapping, past the data, huge), any header
/// length and data length, and files laid out consistently from such entries. Parsing and
/// loading are an error or a well-formed file, never a panic.
mod header_properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    const NAMES: [&str; 10] = [
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "rnn.weight_hh_l1",
        "rnn.weight_hh_l0_reverse",
        "fc.weight",
        "fc.bias",
        "x",
        "",
    ];
    const DTYPES: [(&str, u64); 10] = [
        ("F32", 4),
        ("F64", 8),
        ("I32", 4),
        ("I64", 8),
        ("BOOL", 1),
        ("F16", 2),
        ("U8", 1),
        ("BF16", 2),
        ("f32", 4),
        ("", 4),
    ];

    /// One tensor entry: name, dtype, shape and data offsets.
    type Entry = (usize, usize, Vec<u64>, (u64, u64));

    fn entry() -> impl Strategy<Value = Entry> {
        let dim = prop_oneof![8 => 0u64..6, 1 => Just(1u64 << 40), 1 => Just(u64::MAX)];
        let offset = prop_oneof![9 => 0u64..300, 1 => Just(u64::MAX - 3)];
        (
            0..NAMES.len(),
            0..DTYPES.len(),
            prop::collection::vec(dim, 0..4),
            (offset.clone(), offset),
        )
    }

    /// The file: 8-byte header length (the true one, or another), the JSON header, the data;
    /// with `consistent`, offsets laid end to end from the shapes and exactly that much data.
    fn file() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(entry(), 0..5),
            prop::collection::vec(any::<u8>(), 0..300),
            prop_oneof![3 => Just(None), 1 => (0u64..400).prop_map(Some)],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(entries, mut data, wrong_len, metadata, consistent)| {
                let mut end = 0u64;
                let mut fields: Vec<String> = Vec::new();
                for (n, d, shape, (a, b)) in &entries {
                    let (dtype, size) = DTYPES[*d];
                    let (a, b) = if consistent {
                        let bytes = shape
                            .iter()
                            .try_fold(size, |acc, &x| acc.checked_mul(x))
                            .filter(|&b| b <= 4096)
                            .unwrap_or(0);
                        let start = end;
                        end += bytes;
                        (start, end)
                    } else {
                        (*a, *b)
                    };
                    fields.push(format!(
                        "\"{}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{a},{b}]}}",
                        NAMES[*n]
                    ));
                }
                if consistent {
                    data.resize(end as usize, 0x3f);
                }
                if metadata {
                    fields.push("\"__metadata__\":{\"num_layers\":\"2\"}".into());
                }
                let header = format!("{{{}}}", fields.join(","));
                let len = wrong_len.unwrap_or(header.len() as u64);
                let mut b = len.to_le_bytes().to_vec();
                b.extend_from_slice(header.as_bytes());
                b.extend_from_slice(&data);
                b
            })
    }

    /// Parses, checks and (where it is a model) loads `bytes`; true when it parsed.
    fn check(bytes: &[u8]) -> bool {
        let Ok(f) = TensorFile::from_bytes("prop", bytes) else {
            return false;
        };
        assert_well_formed(&f);
        // What the loader decoded came out of the file: whatever the header claims, it never
        // holds more values than the file has bytes for (no allocation sized by a header).
        let held: usize = f
            .names()
            .filter_map(|n| f.get(n))
            .map(|t| match &t.values {
                Values::F32(v) => 4 * v.len(),
                Values::F64(v) => 8 * v.len(),
                Values::I32(v) => 4 * v.len(),
                Values::I64(v) => 8 * v.len(),
                Values::Other(_) => 0,
            })
            .sum();
        assert!(
            held <= bytes.len(),
            "{held} bytes of values from a {}-byte file",
            bytes.len()
        );
        if io::model_file::config_of(&f).is_ok() {
            let _ = io::model_file::from_file(&gpu(), &f);
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn structured_headers_never_panic(bytes in file()) {
            check(&bytes);
        }
    }

    /// The property above reaches files that parse, not only rejections.
    #[test]
    fn the_generated_files_include_ones_that_parse() {
        let mut runner = TestRunner::deterministic();
        let parsed = (0..500)
            .filter(|_| check(&file().new_tree(&mut runner).expect("a file").current()))
            .count();
        eprintln!("{parsed} of 500 generated files parsed");
        assert!(parsed > 50, "only {parsed} of 500 generated files parsed");
    }
}

#[test]
fn run_takes_token_ids_as_x_and_answers_as_for_their_one_hot_vectors() {
    // The fixture model (I = 4) on i64 ids [T, B] and on the one-hot f32 x they stand for,
    // with a target: the same outputs, loss and parameter gradients, and no grad.x for ids.
    // An id past the input size and an integer x of three dimensions are one clear error each.
    let (t, b, i) = (5, 3, 4);
    let ids: Vec<i64> = (0..t * b).map(|r| ((r * 7 + r / 4) % i) as i64).collect();
    let mut hot = vec![0.0f32; t * b * i];
    for (r, &id) in ids.iter().enumerate() {
        hot[r * i + id as usize] = 1.0;
    }
    let y = f32s(&[t, b, 2]);
    let run = |x: HostTensor| {
        let scratch = Scratch::new();
        let path = scratch.path("input.safetensors");
        let tensors = vec![("x".to_string(), x), ("y".to_string(), y.clone())];
        io::write(&path, &tensors, &HashMap::new()).unwrap();
        let file = TensorFile::read(&path).unwrap();
        let mut m = io::load(&gpu(), fixture(&format!("{CASE}.model.safetensors"))).unwrap();
        io::run::run(&mut m.rnn, &file, None, Reduction::Mean).unwrap()
    };
    let from_ids = run(HostTensor {
        shape: vec![t, b],
        values: Values::I64(ids.clone()),
    });
    let from_hot = run(HostTensor::f32(&[t, b, i], hot));
    let names: Vec<&str> = from_ids.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"grad.x"), "{names:?}");
    for (name, got) in &from_ids {
        let (_, want) = from_hot.iter().find(|(n, _)| n == name).unwrap();
        let (got, want) = (got.to_f32().unwrap(), want.to_f32().unwrap());
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{name}: {g} vs {w}"
            );
        }
    }
    let bad = HostTensor {
        shape: vec![t, b],
        values: Values::I64(ids.iter().map(|&v| v + 1).collect()),
    };
    let msg = run_error(CASE, vec![("x", bad)], None);
    assert!(
        msg.contains("token id 4") && msg.contains("input size 4"),
        "{msg}"
    );
    let cube = HostTensor {
        shape: vec![t, b, 1],
        values: Values::I32(vec![0; t * b]),
    };
    let msg = run_error(CASE, vec![("x", cube)], None);
    assert!(
        msg.contains("token ids") && msg.contains("[5, 3, 1]"),
        "{msg}"
    );
}
