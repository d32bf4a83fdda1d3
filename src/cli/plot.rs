//! Pictures as SVG or PNG images: a training run's loss curve, gradient norms per step, and
//! a matrix's eigenvalues in the complex plane.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use rnn_wgpu::{Error, FileError};

/// The font every label is drawn with, carried in the binary (Noto Mono, SIL Open Font
/// License: `assets/NotoMono-LICENSE.txt`), so a machine with no fonts installed can plot.
const FONT: &[u8] = include_bytes!("../../assets/NotoMono-Regular.ttf");
const SIZE: (u32, u32) = (900, 540);

/// A picture that can be drawn on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `fig` and writes it to `path` atomically, as SVG or PNG by the file's extension.
fn save(path: &Path, fig: &impl Figure) -> Result<(), Error> {
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
            fig.draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())
                .map_err(err)?;
            rnn_wgpu::io::write_atomic(path, svg.as_bytes())
        }
        Some("png") => {
            // Drawn into a temporary file beside the target, renamed once complete.
            let tmp = rnn_wgpu::io::temp_sibling(path, "tmp.png")
                .ok_or_else(|| err("not a file name".into()))?;
            let drawn = fig.draw(BitMapBackend::new(&tmp, SIZE).into_drawing_area());
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

/// [`LogLines`] and its series, as a [`Figure`].
struct Lines<'a>(LogLines<'a>, &'a [Series]);

impl Figure for Lines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_lines(root, &self.0, self.1)
    }
}

/// Draws training (and validation) loss against step on a log scale and writes it to `path`
/// atomically, as SVG or PNG by the file's extension.
pub fn loss_curve(
    path: &Path,
    title: &str,
    train: &[(usize, f32)],
    valid: &[(usize, f32)],
) -> Result<(), Error> {
    let series = [
        ("training loss".to_string(), train.to_vec(), BLUE.to_rgba()),
        ("validation loss".to_string(), valid.to_vec(), RED.to_rgba()),
    ];
    let spec = LogLines {
        title,
        x_desc: "step",
        y_desc: "loss (log scale)",
        what: "loss",
        pad: (0.9, 1.1),
        legend: SeriesLabelPosition::UpperRight,
    };
    save(path, &Lines(spec, &series))
}

/// Draws ‖dL/dh(t)‖ against t, one curve per layer, on a log scale.
pub fn grad_norms(path: &Path, title: &str, curves: &[(String, Vec<f32>)]) -> Result<(), Error> {
    let series: Vec<_> = curves
        .iter()
        .enumerate()
        .map(|(k, (name, c))| {
            let points = c.iter().enumerate().map(|(t, &v)| (t, v)).collect();
            (name.clone(), points, Palette99::pick(k).to_rgba())
        })
        .collect();
    let spec = LogLines {
        title,
        x_desc: "step t",
        y_desc: "|dL/dh(t)| (log scale)",
        what: "gradient norm",
        pad: (0.8, 1.25),
        legend: SeriesLabelPosition::UpperLeft,
    };
    save(path, &Lines(spec, &series))
}

/// Draws eigenvalues `(re, im)` in the complex plane with the unit circle and the circle of
/// radius `radius`.
pub fn eigenvalues(
    path: &Path,
    title: &str,
    values: &[(f64, f64)],
    radius: f64,
) -> Result<(), Error> {
    struct Eig<'a>(&'a str, &'a [(f64, f64)], f64);
    impl Figure for Eig<'_> {
        fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
            draw_eigenvalues(root, self.0, self.1, self.2)
        }
    }
    save(path, &Eig(title, values, radius))
}

fn draw_eigenvalues<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    values: &[(f64, f64)],
    radius: f64,
) -> Result<(), String> {
    let reach = values
        .iter()
        .map(|v| v.0.abs().max(v.1.abs()))
        .fold(radius.max(1.0), f64::max)
        * 1.1;
    let fail = |e: &dyn std::fmt::Display| format!("drawing failed: {e}");
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    // Square plotting area, so the circles look round.
    let side = SIZE.1 as i32 - 40;
    let area = root.margin(
        10,
        10,
        (SIZE.0 as i32 - side) / 2,
        (SIZE.0 as i32 - side) / 2,
    );
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 22))
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-reach..reach, -reach..reach)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("real")
        .y_desc("imaginary")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| fail(&e))?;
    let circle = |r: f64| {
        (0..=360).map(move |d| {
            let a = f64::from(d).to_radians();
            (r * a.cos(), r * a.sin())
        })
    };
    chart
        .draw_series(LineSeries::new(circle(1.0), BLACK.stroke_width(2)))
        .map_err(|e| fail(&e))?
        .label("unit circle")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(circle(radius), RED.stroke_width(1)))
        .map_err(|e| fail(&e))?
        .label(format!("spectral radius {radius:.4}"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(1)));
    chart
        .draw_series(
            values
                .iter()
                .map(|&(re, im)| Circle::new((re, im), 3, BLUE.filled())),
        )
        .map_err(|e| fail(&e))?
        .label("eigenvalues")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// The lower-case extension of `path`.
pub fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase)
}

/// One line of a [`LogLines`] chart: its name, its `(step, value)` points and its colour.
type Series = (String, Vec<(usize, f32)>, RGBAColor);

/// A chart of lines against the step on a log y axis.
struct LogLines<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// What the values are, for the error when none can be drawn.
    what: &'a str,
    /// The y range's margins below the smallest and above the largest value, as factors.
    pad: (f64, f64),
    legend: SeriesLabelPosition,
}

/// Draws `series` (a name, its points and colour each; empty ones left out) as `spec` says.
fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    spec: &LogLines,
    series: &[Series],
) -> Result<(), String> {
    let ok = |v: f32| v.is_finite() && v > 0.0;
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().filter(|p| ok(p.1)).map(|p| f64::from(p.1)))
        .collect();
    if all.is_empty() {
        return Err(format!("no finite, positive {} to plot", spec.what));
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min) * spec.pad.0;
    let hi = all.iter().copied().fold(0.0, f64::max) * spec.pad.1;
    let ticks = y_ticks(lo, hi);
    let keys: Vec<f64> = ticks.iter().map(|t| t.0).collect();
    let label = |v: &f64| {
        ticks
            .iter()
            .find(|t| (t.0 - v).abs() <= 1e-9 * v.abs())
            .map_or_else(|| format!("{v}"), |t| t.1.clone())
    };
    let steps = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let first = steps.clone().min().unwrap_or(0);
    let last = steps.max().unwrap_or(1).max(first + 1);
    let fail = |e: &dyn std::fmt::Display| format!("drawing failed: {e}");

    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(spec.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(56)
        .y_label_area_size(110)
        .build_cartesian_2d(first..last, (lo..hi).log_scale().with_key_points(keys))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .y_label_formatter(&label)
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| fail(&e))?;
    for (name, points, color) in series.iter().filter(|s| !s.1.is_empty()) {
        let color = *color;
        let pts: Vec<(usize, f64)> = points
            .iter()
            .filter(|p| ok(p.1))
            .map(|&(s, v)| (s, f64::from(v)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(spec.legend.clone())
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// Labelled ticks for a log axis over `[lo, hi]`, with their labels: 1, 2 and 5 times powers of
/// ten across a decade or more (only the powers where those would crowd, every other power
/// past eight decades), else evenly spaced round numbers, so a curve within one decade still
/// gets numbers. Each label is written to the precision of its step: `0.3`, not
/// `0.30000000000000004`.
fn y_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let decades = (hi / lo).log10();
    let mut ticks = Vec::new();
    if decades >= 1.0 {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let stride = if decades > 8.0 { 2 } else { 1 };
        let mantissas: &[f64] = if decades > 3.0 {
            &[1.0]
        } else {
            &[1.0, 2.0, 5.0]
        };
        for k in (k0..=k1).filter(|k| (k - k0) % stride == 0) {
            for &m in mantissas {
                let v = m * 10f64.powi(k);
                if (lo..=hi).contains(&v) {
                    ticks.push((v, tick_label(v, k)));
                }
            }
        }
    } else {
        // The finest step of 1, 2 or 5 times a power of ten that gives at most eight ticks.
        let span = hi - lo;
        let unit = 10f64.powi(span.log10().floor() as i32 - 1);
        let step = [1.0, 2.0, 5.0, 10.0, 20.0]
            .into_iter()
            .map(|m| m * unit)
            .find(|s| span / s <= 8.0)
            .unwrap_or(20.0 * unit);
        let exp = step.log10().floor() as i32;
        let mut n = (lo / step).ceil();
        while n * step <= hi {
            let v = n * step;
            ticks.push((v, tick_label(v, exp)));
            n += 1.0;
        }
    }
    ticks
}

/// `v` written with as many decimals as a step of `10^exp` needs; very large or small values
/// in scientific notation.
fn tick_label(v: f64, exp: i32) -> String {
    let mag = v.abs().log10().floor();
    if v != 0.0 && !(-4.0..5.0).contains(&mag) {
        return format!("{v:.0e}");
    }
    let decimals = (-exp).max(0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tick labels an SVG holds: every text that reads as a number.
    fn numbers_in(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = t.split('>').nth(1)?.split('<').next()?.trim().to_string();
                body.parse::<f64>().ok().map(|_| body)
            })
            .collect()
    }

    fn render(values: &[f32]) -> String {
        let path = std::env::temp_dir().join(format!(
            "rnn-wgpu-plot-{}-{}.svg",
            std::process::id(),
            values.len()
        ));
        let train: Vec<(usize, f32)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i + 1, v))
            .collect();
        loss_curve(&path, "test", &train, &[]).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("svg");
        std::fs::remove_file(&path).ok();
        svg
    }

    /// Curves spanning a tenth of a decade, one decade and four decades: labelled ticks
    /// inside the range, each once, written to their precision.
    #[test]
    fn every_range_gets_readable_tick_labels() {
        let span = |lo: f32, hi: f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| hi * (lo / hi).powf(i as f32 / (n - 1) as f32))
                .collect()
        };
        for (values, want) in [
            (span(2.0, 2.5, 40), &["2.0", "2.2", "2.4"][..]),
            (span(2.2, 4.3, 40), &["2.5", "3.0", "3.5", "4.0"][..]),
            (span(0.03, 0.3, 40), &["0.05", "0.1", "0.2"][..]),
            (span(0.0001, 1.0, 60), &["0.001", "0.01", "0.1"][..]),
        ] {
            let labels = numbers_in(&render(&values));
            for w in want {
                assert!(labels.iter().any(|l| l == w), "{w} missing from {labels:?}");
            }
            for l in &labels {
                assert!(l.len() <= 7, "an unrounded label: {l}");
            }
            let y_labels: Vec<&String> = labels.iter().filter(|l| l.contains('.')).collect();
            let mut unique = y_labels.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                y_labels.len(),
                "a label drawn twice: {labels:?}"
            );
            assert!(y_labels.len() >= 3, "too few labels: {labels:?}");
        }
    }

    #[test]
    fn tick_labels_are_written_to_their_precision() {
        assert_eq!(tick_label(0.30000000000000004, -1), "0.3");
        assert_eq!(tick_label(2.0, 0), "2");
        assert_eq!(tick_label(0.05, -2), "0.05");
        assert_eq!(tick_label(1e-6, -6), "1e-6");
        let t = y_ticks(2.0, 2.5);
        assert!(t.len() >= 4, "{t:?}");
    }
}
