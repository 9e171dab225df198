//! The run's plot: reward and label accuracy per step.

use super::adapt::StepMetrics;
use anyhow::{Context, Result};
use std::path::Path;

/// An SVG line chart of the mean reward (and label accuracy, when known) per step.
pub fn write_plot(path: &Path, metrics: &[StepMetrics]) -> Result<()> {
    let (w, h, pad) = (640.0, 360.0, 48.0);
    let n = metrics.len().max(1) as f64;
    let series: Vec<(&str, &str, Vec<Option<f64>>)> = vec![
        ("reward", "#1f77b4", metrics.iter().map(|m| Some(m.reward_mean)).collect()),
        ("label accuracy", "#d62728", metrics.iter().map(|m| m.label_accuracy).collect()),
    ];
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten().copied())
        .fold((0.0f64, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let x = |i: usize| pad + (w - 2.0 * pad) * if n > 1.0 { i as f64 / (n - 1.0) } else { 0.5 };
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo).max(1e-9);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n<text x=\"{pad}\" y=\"{}\" text-anchor=\"end\">{hi:.2}</text>\n<text x=\"{pad}\" y=\"{}\" text-anchor=\"end\">{lo:.2}</text>\n",
        h - pad, w - pad, h - pad, h - pad, w / 2.0, h - 12.0, pad - 4.0, h - pad
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let pts: Vec<String> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect();
        if pts.is_empty() {
            continue;
        }
        svg += &format!("<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n", pts.join(" "));
        svg += &format!("<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n", w - pad - 120.0, pad + 16.0 * k as f64);
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

