//! The run's plot (`ttrav::rl::plot`): `plot.png` decodes at the expected size and shows the
//! series' colours on a white background, `plot.svg` is well-formed and carries the axis and
//! legend text, and a series without values is left out of both.

use std::collections::HashSet;
use std::path::Path;
use ttrav::rl::adapt::StepMetrics;
use ttrav::rl::plot::{write_plots, PLOT_SIZE};

const REWARD: [u8; 3] = [31, 119, 180];
const ACCURACY: [u8; 3] = [44, 160, 44];
const LABEL_ACCURACY: [u8; 3] = [214, 39, 40];

fn step(step: usize, reward: f64, accuracy: Option<f64>, label_accuracy: Option<f64>) -> StepMetrics {
    StepMetrics { step, reward_mean: reward, accuracy, label_accuracy, ..Default::default() }
}

/// The PNG's pixels (checked to be `PLOT_SIZE`) as a set of colours, and the share that is white.
fn png_colours(path: &Path) -> (HashSet<[u8; 3]>, f64) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display())).to_rgb8();
    assert_eq!(img.dimensions(), PLOT_SIZE, "{}", path.display());
    let white = img.pixels().filter(|p| p.0 == [255, 255, 255]).count() as f64 / (PLOT_SIZE.0 * PLOT_SIZE.1) as f64;
    (img.pixels().map(|p| p.0).collect(), white)
}

/// Checks that every tag is closed in order (`<a>..</a>`, `<b/>`), and returns the text between tags.
fn well_formed_text(svg: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    let mut texts = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let text = rest[..start].trim();
        if !text.is_empty() {
            texts.push(text.to_string());
        }
        let end = rest[start..].find('>').expect("unclosed '<'") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name.trim()), "closing tag </{name}> out of order");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            open.push(tag.split_whitespace().next().expect("tag name").to_string());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed tags {open:?}");
    texts
}

#[test]
fn plots_show_every_series_with_axes_and_legend() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: Vec<StepMetrics> = (1..=8)
        .map(|i| {
            let x = i as f64 / 8.0;
            // Step 3 has no accuracy and a NaN reward: both are skipped, the lines go on.
            let reward = if i == 3 { f64::NAN } else { 0.2 + 0.6 * x };
            step(i, reward, (i != 3).then_some(0.5 * x), Some(x * x))
        })
        .collect();
    write_plots(dir.path(), &metrics).unwrap();

    let (colours, white) = png_colours(&dir.path().join("plot.png"));
    for (name, c) in [("reward", REWARD), ("accuracy", ACCURACY), ("label accuracy", LABEL_ACCURACY)] {
        assert!(colours.contains(&c), "no {name} pixels ({c:?}) in plot.png");
    }
    assert!(colours.contains(&[0, 0, 0]), "no black axes");
    assert!(white > 0.5 && white < 0.99, "white share {white}");
    // Anti-aliased glyphs blend into many shades: the text was rendered.
    assert!(colours.len() > 30, "only {} colours", colours.len());

    let svg = std::fs::read_to_string(dir.path().join("plot.svg")).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    let texts = well_formed_text(&svg);
    for want in ["reward and accuracy per step", "step", "value", "reward", "accuracy", "label accuracy", "1", "8", "0.50"] {
        assert!(texts.iter().any(|t| t == want), "no text {want:?} in plot.svg: {texts:?}");
    }
    assert!(!texts.iter().any(|t| t == "9" || t == "0"), "x ticks are the steps 1-8: {texts:?}");
    for c in [REWARD, ACCURACY, LABEL_ACCURACY] {
        let hex = format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]);
        assert!(svg.to_uppercase().contains(&hex), "no {hex} in plot.svg");
    }
    // Each series is one 2-pixel line through its finite values (step 3 skipped where missing),
    // and one 3-pixel stroke in the legend.
    for (c, points) in [(REWARD, 7), (ACCURACY, 7), (LABEL_ACCURACY, 8)] {
        let hex = format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]);
        let lines: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{hex}\""))).collect();
        assert_eq!(lines.len(), 2, "{hex}: {lines:?}");
        let line = lines.iter().find(|l| l.contains("stroke-width=\"2\"")).expect("the series line");
        let pts = line.split("points=\"").nth(1).expect("points").split('"').next().expect("points");
        assert_eq!(pts.split_whitespace().count(), points, "{hex}: {line}");
        assert!(lines.iter().any(|l| l.contains("stroke-width=\"3\"")), "{hex}: no legend stroke");
    }
}

#[test]
fn a_series_without_values_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: Vec<StepMetrics> = (1..=3).map(|i| step(i, -0.5 + 0.25 * i as f64, None, None)).collect();
    write_plots(dir.path(), &metrics).unwrap();
    let (colours, _) = png_colours(&dir.path().join("plot.png"));
    assert!(colours.contains(&REWARD));
    assert!(!colours.contains(&ACCURACY) && !colours.contains(&LABEL_ACCURACY), "an empty series was drawn");
    let svg = std::fs::read_to_string(dir.path().join("plot.svg")).unwrap();
    let texts = well_formed_text(&svg);
    assert!(texts.iter().any(|t| t == "reward"));
    assert!(!texts.iter().any(|t| t.contains("accuracy") && t != "reward and accuracy per step"), "{texts:?}");
    // A negative reward widens the axis below 0.
    assert!(texts.iter().any(|t| t.starts_with('-')), "{texts:?}");

    // No steps at all still gives both files.
    let empty = tempfile::tempdir().unwrap();
    write_plots(empty.path(), &[]).unwrap();
    png_colours(&empty.path().join("plot.png"));
    well_formed_text(&std::fs::read_to_string(empty.path().join("plot.svg")).unwrap());
}
