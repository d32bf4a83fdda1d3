//! The loss curve of a training run, drawn as an SVG or PNG image.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use rnn_wgpu::{Error, FileError};

/// The font every label is drawn with, carried in the binary (Noto Mono, SIL Open Font
/// License: `assets/NotoMono-LICENSE.txt`), so a machine with no fonts installed can plot.
const FONT: &[u8] = include_bytes!("../../assets/NotoMono-Regular.ttf");
const SIZE: (u32, u32) = (900, 540);

/// Draws training (and validation) loss against step on a log scale and writes it to `path`
/// atomically, as SVG or PNG by the file's extension.
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
    static FONT_ONCE: std::sync::Once = std::sync::Once::new();
    let mut font_ok = true;
    FONT_ONCE.call_once(|| {
        font_ok = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
    });
    if !font_ok {
        return Err(err("the built-in font could not be loaded".into()));
    }
    match extension(path).as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            draw(
                SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
                title,
                train,
                valid,
            )
            .map_err(err)?;
            rnn_wgpu::io::write_atomic(path, svg.as_bytes())
        }
        Some("png") => {
            // Drawn into a temporary file beside the target, renamed once complete.
            let tmp = rnn_wgpu::io::temp_sibling(path, "tmp.png")
                .ok_or_else(|| err("not a file name".into()))?;
            let drawn = draw(
                BitMapBackend::new(&tmp, SIZE).into_drawing_area(),
                title,
                train,
                valid,
            );
            let moved = drawn.and_then(|()| {
                std::fs::rename(&tmp, path).map_err(|e| format!("could not write: {e}"))
            });
            if let Err(e) = moved {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(e));
            }
            Ok(())
        }
        _ => Err(err("the image must be a .svg or .png file".into())),
    }
}

/// The lower-case extension of `path`.
pub fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    train: &[(usize, f32)],
    valid: &[(usize, f32)],
) -> Result<(), String> {
    let finite = |v: &&(usize, f32)| v.1.is_finite() && v.1 > 0.0;
    let all: Vec<f32> = train
        .iter()
        .chain(valid)
        .filter(finite)
        .map(|v| v.1)
        .collect();
    if all.is_empty() {
        return Err("no finite, positive loss to plot".into());
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
    let fail = |e: &dyn std::fmt::Display| format!("drawing failed: {e}");

    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(1usize..last, (lo..hi).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss (log scale)")
        .draw()
        .map_err(|e| fail(&e))?;
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
            .map_err(|e| fail(&e))?
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
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
