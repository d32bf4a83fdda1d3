//! The loss curve of a training run, drawn as an SVG image.

use std::path::Path;

use plotters::prelude::*;
use rnn_wgpu::{Error, FileError};

/// Draws training (and validation) loss against step on a log scale and writes it to `path`
/// atomically. Only `.svg` is supported: it needs no font files, so it works on any machine.
pub fn loss_curve(
    path: &Path,
    title: &str,
    train: &[(usize, f32)],
    valid: &[(usize, f32)],
) -> Result<(), Error> {
    let err = |reason: String| -> Error {
        FileError::Invalid {
            path: path.display().to_string(),
            name: "plot".into(),
            reason,
        }
        .into()
    };
    let finite = |v: &&(usize, f32)| v.1.is_finite() && v.1 > 0.0;
    let all: Vec<f32> = train
        .iter()
        .chain(valid)
        .filter(finite)
        .map(|v| v.1)
        .collect();
    if all.is_empty() {
        return Err(err("no finite, positive loss to plot".into()));
    }
    let lo = all.iter().copied().fold(f32::INFINITY, f32::min) as f64 * 0.8;
    let hi = all.iter().copied().fold(0.0, f32::max) as f64 * 1.25;
    let last = train
        .iter()
        .chain(valid)
        .map(|v| v.0)
        .max()
        .unwrap_or(1)
        .max(2);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        let draw = |e: &dyn std::fmt::Display| err(format!("drawing failed: {e}"));
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(1usize..last, (lo..hi).log_scale())
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (log scale)")
            .draw()
            .map_err(|e| draw(&e))?;
        let series = [
            ("training loss", train, BLUE),
            ("validation loss", valid, RED),
        ];
        for (name, points, color) in series {
            if points.is_empty() {
                continue;
            }
            let pts: Vec<(usize, f64)> = points
                .iter()
                .filter(finite)
                .map(|&(s, v)| (s, f64::from(v)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| draw(&e))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw(&e))?;
        root.present().map_err(|e| draw(&e))?;
    }
    rnn_wgpu::io::write_atomic(path, svg.as_bytes())
}
