//! The run's plot: the mean reward, the accuracy of the sampled answers and the label accuracy
//! per step, drawn with plotters (axes, a legend) as `plot.png` and `plot.svg` in one folder.
//!
//! A series is drawn through the steps where it has a finite value (the others are skipped); a
//! series with no value at all (accuracy without reference answers) is left out, legend included.
//! Text is set in Hack, embedded by `epaint_default_fonts` and registered with plotters' pure-Rust
//! `ab_glyph` renderer, so no system font or C library is needed.

use super::adapt::StepMetrics;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of both plots, in pixels.
pub const PLOT_SIZE: (u32, u32) = (800, 480);

/// Name, colour and per-step values of one line.
struct Series {
    name: &'static str,
    colour: RGBColor,
    values: Vec<Option<f64>>,
}

/// The lines drawn for a run, with the non-finite values dropped.
fn series_of(metrics: &[StepMetrics]) -> Vec<Series> {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    vec![
        Series { name: "reward", colour: RGBColor(31, 119, 180), values: metrics.iter().map(|m| finite(Some(m.reward_mean))).collect() },
        Series { name: "accuracy", colour: RGBColor(44, 160, 44), values: metrics.iter().map(|m| finite(m.accuracy)).collect() },
        Series { name: "label accuracy", colour: RGBColor(214, 39, 40), values: metrics.iter().map(|m| finite(m.label_accuracy)).collect() },
    ]
}

/// Registers the embedded font as plotters' "sans-serif" (once per process).
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::HACK_REGULAR).is_ok()
    });
    if ok { Ok(()) } else { Err(anyhow!("the embedded plot font (Hack) could not be read")) }
}

/// Writes `plot.png` and `plot.svg` for `metrics` (one entry per step) into `dir`.
pub fn write_plots(dir: &Path, metrics: &[StepMetrics]) -> Result<()> {
    register_font()?;
    let series = series_of(metrics);
    let (w, h) = PLOT_SIZE;

    let png_path = dir.join("plot.png");
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    draw(BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area(), &series)
        .with_context(|| format!("cannot draw {}", png_path.display()))?;
    let image = image::RgbImage::from_raw(w, h, pixels).context("plot buffer of the wrong size")?;
    image.save_with_format(&png_path, image::ImageFormat::Png).with_context(|| format!("cannot write {}", png_path.display()))?;

    let svg_path = dir.join("plot.svg");
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area(), &series)
        .with_context(|| format!("cannot draw {}", svg_path.display()))?;
    std::fs::write(&svg_path, svg).with_context(|| format!("cannot write {}", svg_path.display()))
}

/// The chart: steps 1..=n on x, the values on y (at least 0 to 1), a line and a dot per value.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, series: &[Series]) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("{e}");
    let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0) as i32;
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold((0.0f64, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let pad = (hi - lo) * 0.05;
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("reward and accuracy per step", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0..steps + 1, (lo - pad)..(hi + pad))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("value")
        .x_labels((steps as usize + 2).min(12))
        .x_label_formatter(&|x| if (1..=steps).contains(x) { x.to_string() } else { String::new() })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| fail(&e))?;
    for s in series {
        let points: Vec<(i32, f64)> = s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as i32 + 1, v))).collect();
        if points.is_empty() {
            continue;
        }
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}
