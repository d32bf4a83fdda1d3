//! `train --checkpoint` and `--resume`: a run cut short and resumed reaches the unbroken run's
//! parameters bit for bit.

use std::path::Path;
use std::process::Command;

use rnn_wgpu::io::TensorFile;

use crate::common::Scratch;

/// Runs `rnn-wgpu train` with `args`; panics with its output unless it succeeds.
fn train(args: &[&str], files: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"));
    cmd.arg("train").args(args);
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().expect("run rnn-wgpu");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "train {args:?} failed: {err}");
    err
}

/// Runs `rnn-wgpu train` with `args` and `file`, which must fail with status 2: its last line.
fn train_error(args: &[&str], (flag, path): (&str, &Path)) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .arg("train")
        .args(args)
        .arg(flag)
        .arg(path)
        .output()
        .expect("run rnn-wgpu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    err.lines().last().unwrap_or_default().to_string()
}

/// Every tensor's values, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let f = TensorFile::read(path).expect("model file");
    let mut names: Vec<String> = f.names().map(str::to_string).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = f.get(&n).and_then(|t| t.to_f32()).expect("f32");
            (n, v)
        })
        .collect()
}

#[test]
fn a_resumed_run_reaches_the_unbroken_runs_parameters_bit_for_bit() {
    // A character model with two layers and dropout between them: the carried hidden state,
    // Adam's moments and the dropout generator all have to come back.
    let dir = Scratch::new();
    let text = dir.path("t.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(80),
    )
    .unwrap();
    let common = [
        "--hidden",
        "16",
        "--seq-len",
        "8",
        "--batch",
        "4",
        "--layers",
        "2",
        "--dropout",
        "0.2",
        "--seed",
        "5",
        "--log-every",
        "100",
        "--eval-every",
        "7",
    ];
    let with =
        |more: &[&'static str]| -> Vec<&str> { common.iter().chain(more).copied().collect() };
    let (full, ck, resumed, fresh) = (
        dir.path("full.safetensors"),
        dir.path("ck.safetensors"),
        dir.path("resumed.safetensors"),
        dir.path("fresh.safetensors"),
    );
    train(
        &with(&["--steps", "24"]),
        &[("--text", &text), ("--save", &full)],
    );
    // Cut short at step 14, the last checkpoint at step 14.
    train(
        &with(&["--steps", "14", "--checkpoint-every", "7"]),
        &[("--text", &text), ("--checkpoint", &ck)],
    );
    train(
        &with(&["--steps", "24"]),
        &[("--text", &text), ("--resume", &ck), ("--save", &resumed)],
    );
    let want = tensors(&full);
    assert_eq!(tensors(&resumed), want, "resumed and unbroken runs differ");
    // The checkpoint loads as a model too; from it with a fresh optimizer (--model) the run
    // goes elsewhere, so the optimizer's state is what carried the resumed run.
    train(
        &with(&["--steps", "10"]),
        &[("--text", &text), ("--model", &ck), ("--save", &fresh)],
    );
    assert_ne!(tensors(&fresh), want);
}

#[test]
fn resuming_a_model_file_or_with_another_optimizer_is_one_clear_error() {
    let dir = Scratch::new();
    let model = dir.path("m.safetensors");
    let ck = dir.path("ck.safetensors");
    train(
        &["--steps", "3", "--log-every", "100"],
        &[("--save", &model)],
    );
    train(
        &[
            "--steps",
            "4",
            "--log-every",
            "100",
            "--checkpoint-every",
            "2",
        ],
        &[("--checkpoint", &ck)],
    );
    let line = train_error(&["--steps", "6", "--optimizer", "sgd"], ("--resume", &ck));
    assert!(
        line.contains("adam optimizer") && line.contains("--optimizer adam"),
        "{line}"
    );
    let line = train_error(&["--steps", "5"], ("--resume", &model));
    assert!(
        line.contains("not a checkpoint") && line.contains("--model"),
        "{line}"
    );
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_saves_exits_130_and_resumes_to_the_unbroken_runs_parameters() {
    // SIGINT once the first checkpoint is on disk: the step finishes, the checkpoint is written
    // at the step reached, and the exit status is 130. Resumed from there for 10 more steps, the
    // run ends where an unbroken run of as many steps ends.
    let dir = Scratch::new();
    let (ck, resumed, full) = (
        dir.path("ck.safetensors"),
        dir.path("resumed.safetensors"),
        dir.path("full.safetensors"),
    );
    let common = [
        "--hidden",
        "12",
        "--batch",
        "8",
        "--seed",
        "9",
        "--log-every",
        "1000",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_rnn-wgpu"))
        .arg("train")
        .args(common)
        .args([
            "--steps",
            "1000000",
            "--checkpoint-every",
            "25",
            "--checkpoint",
        ])
        .arg(&ck)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !ck.exists() {
        assert!(
            t0.elapsed().as_secs() < 120,
            "no checkpoint within 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted after step"), "{err}");
    let f = TensorFile::read(&ck).unwrap();
    let reached: usize = f.metadata()["checkpoint.step"].parse().unwrap();
    assert!(reached >= 25, "checkpoint at step {reached}");
    let total = (reached + 10).to_string();
    let mut args: Vec<&str> = common.to_vec();
    args.extend(["--steps", total.as_str()]);
    train(&args, &[("--resume", &ck), ("--save", &resumed)]);
    train(&args, &[("--save", &full)]);
    assert_eq!(
        tensors(&resumed),
        tensors(&full),
        "interrupted at step {reached}"
    );
}
