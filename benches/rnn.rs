//! `cargo bench`: the four shapes of DESIGN §6, forward and training step, every driver beside
//! the naive one-submit-per-step baseline measured in the same run.
//! Extra arguments name shapes to keep (`cargo bench -- small long`).

use rnn_wgpu::Gpu;
use rnn_wgpu::bench::{self, Budget, Mode, SHAPES, Shape};

fn main() {
    // cargo passes `--bench`; every other argument names a shape.
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let shapes: Vec<Shape> = if names.is_empty() {
        SHAPES.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Shape::by_name(n).unwrap_or_else(|| {
                    eprintln!("unknown shape {n:?}; known: small, medium, large, long");
                    std::process::exit(2)
                })
            })
            .collect()
    };
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    println!("adapter: {}", bench::adapter_line(&gpu));
    let result = bench::run(
        &gpu,
        &shapes,
        &[Mode::Forward, Mode::TrainStep],
        &[],
        &Budget::default(),
        |m, base| println!("{}", m.to_json(&gpu, base)),
    );
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
