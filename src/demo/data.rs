//! The demo dataset: questions whose answers are in media the generator synthesises itself, so
//! that a small model can be trained, adapted and evaluated on a laptop.
//!
//! Seven task families, each answerable only from its media: `beeps` (how many beeps, 1-4),
//! `pitch` (is the tone high or low), `longer` (which of two tones is longer), `colour` (the
//! colour of a shape), `shape` (which shape), `dots` (how many dots, 1-4) and `match` (does the
//! number of beeps match the number of dots, audio and image together). Every item exists in two
//! forms over the same media: multiple choice (`{split}.jsonl`, the answer a letter, answered
//! as `\boxed{X}`) and open-ended (`{split}_open.jsonl`, a short free-text reference such as
//! "three beeps" or "a red circle").
//!
//! Audio is 1.2 s of 16-bit mono PCM WAV at 8 kHz (tones with 5 ms fades over faint noise);
//! images are 84x84 RGB PNGs (one large shape near the centre, or dots each in its own cell of a
//! 3 x 3 grid). Every split draws from its own random stream of the seed, so the
//! files of one split are the same bytes whichever other splits are written with it. Option
//! order is fixed per family (A = "one", B = "two", ...).

use crate::sampling::Rng;
use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// Sample rate of the demo audio.
pub const SAMPLE_RATE: u32 = 8000;
/// Length of every demo clip, in seconds.
pub const CLIP_SECONDS: f64 = 1.2;
/// Width and height of every demo image, in pixels.
pub const IMAGE_SIZE: u32 = 84;

/// The task families, in the order items cycle through them.
pub const FAMILIES: [&str; 7] = ["beeps", "pitch", "longer", "colour", "shape", "dots", "match"];

const NUMBERS: [&str; 4] = ["one", "two", "three", "four"];
const COLOURS: [(&str, [u8; 3]); 4] = [("red", [220, 40, 40]), ("green", [40, 170, 60]), ("blue", [40, 80, 220]), ("yellow", [230, 200, 30])];
const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];

/// How many items each split gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSplits {
    pub train: usize,
    pub test: usize,
    pub heldout: usize,
}

impl Default for DemoSplits {
    fn default() -> Self {
        Self { train: 4200, test: 84, heldout: 84 }
    }
}

/// One generated question, in both forms.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoItem {
    pub id: String,
    pub family: &'static str,
    pub question: String,
    pub choices: Vec<String>,
    /// The letter of the right option.
    pub answer: String,
    pub open_question: String,
    pub open_answer: String,
    /// The multiple-choice reply sft teaches: the media's content, then `\boxed{letter}`.
    pub response: String,
    /// Media paths relative to the split files' folder.
    pub audio: Option<String>,
    pub image: Option<String>,
}

/// Writes the splits (`train`, `test`, `heldout`; a split of size 0 is not written) into `dir`:
/// `{split}.jsonl`, `{split}_open.jsonl` and `media/{split}/`. Refuses a non-empty `dir` unless
/// `overwrite`. Returns the number of items written per split.
pub fn write_demo_data(dir: &Path, seed: u64, splits: &DemoSplits, overwrite: bool) -> Result<Vec<(String, usize)>> {
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.next().is_some();
        if non_empty && !overwrite {
            bail!("{} is not empty; pass --force to write the demo data into it anyway", dir.display());
        }
    }
    let mut written = Vec::new();
    for (index, (name, count)) in [("train", splits.train), ("test", splits.test), ("heldout", splits.heldout)].into_iter().enumerate() {
        if count == 0 {
            continue;
        }
        let media = dir.join("media").join(name);
        std::fs::create_dir_all(&media).with_context(|| format!("cannot create {}", media.display()))?;
        let mut rng = Rng::seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64 + 1));
        let mut mc = Vec::new();
        let mut open = Vec::new();
        for i in 0..count {
            let family = FAMILIES[i % FAMILIES.len()];
            let item = make_item(name, i, family, &mut rng, dir)?;
            let teach = name == "train";
            mc.push(item_json(&item, false, teach));
            open.push(item_json(&item, true, teach));
        }
        write_lines(&dir.join(format!("{name}.jsonl")), &mc)?;
        write_lines(&dir.join(format!("{name}_open.jsonl")), &open)?;
        written.push((name.to_string(), count));
    }
    Ok(written)
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?);
    for l in lines {
        writeln!(f, "{l}")?;
    }
    f.flush().with_context(|| format!("cannot write {}", path.display()))
}

/// One JSONL line; the open-ended form carries the id with `-open` appended, so both forms of a
/// split can be concatenated into one file (as the demo recipe does for `ttrav sft`).
fn item_json(item: &DemoItem, open: bool, teach: bool) -> serde_json::Value {
    let mut v = if open {
        json!({"id": format!("{}-open", item.id), "question": item.open_question, "answer": item.open_answer, "kind": "open_ended", "task": item.family})
    } else {
        json!({"id": item.id, "question": item.question, "choices": item.choices, "answer": item.answer, "task": item.family})
    };
    if teach && !open {
        v["response"] = json!(item.response);
    }
    if let Some(a) = &item.audio {
        v["audio"] = json!([a]);
    }
    if let Some(i) = &item.image {
        v["images"] = json!([i]);
    }
    v
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn letter(i: usize) -> String {
    ((b'A' + i as u8) as char).to_string()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("one {word}")
    } else {
        format!("{} {word}s", NUMBERS[n - 1])
    }
}

/// Makes one item of `family` (its media written under `dir/media/{split}/`).
fn make_item(split: &str, index: usize, family: &'static str, rng: &mut Rng, dir: &Path) -> Result<DemoItem> {
    let id = format!("{split}-{family}-{index:04}");
    let audio_rel = format!("media/{split}/{id}.wav");
    let image_rel = format!("media/{split}/{id}.png");
    let numbers: Vec<String> = NUMBERS.iter().map(|s| s.to_string()).collect();
    let (question, choices, correct, open_question, open_answer, audio, image, seen) = match family {
        "beeps" => {
            let k = 1 + below(rng, 4);
            let samples = beeps(k, rng);
            ("How many beeps are in the recording?", numbers, k - 1, "How many beeps are in the recording?", plural(k, "beep"), Some(samples), None, plural(k, "beep"))
        }
        "pitch" => {
            let high = rng.next_u64() % 2 == 0;
            let f = if high { uniform(rng, 1400.0, 2400.0) } else { uniform(rng, 150.0, 350.0) };
            let dur = uniform(rng, 0.3, 0.8);
            let start = uniform(rng, 0.05, CLIP_SECONDS - dur - 0.05);
            let mut s = noise(rng);
            add_tone(&mut s, f, start, dur, uniform(rng, 0.3, 0.6));
            let word = if high { "high" } else { "low" };
            let choices = vec!["high".to_string(), "low".to_string()];
            ("Is the tone high or low?", choices, usize::from(!high), "Is the tone high or low?", format!("a {word} tone"), Some(s), None, format!("a {word} tone"))
        }
        "longer" => {
            let first_longer = rng.next_u64() % 2 == 0;
            let short = uniform(rng, 0.08, 0.18);
            let long = uniform(rng, 0.38, 0.5);
            let (d1, d2) = if first_longer { (long, short) } else { (short, long) };
            let gap = uniform(rng, 0.1, 0.2);
            let start = uniform(rng, 0.03, (CLIP_SECONDS - d1 - d2 - gap - 0.03).max(0.031));
            let f = uniform(rng, 500.0, 1000.0);
            let a = uniform(rng, 0.3, 0.6);
            let mut s = noise(rng);
            add_tone(&mut s, f, start, d1, a);
            add_tone(&mut s, f, start + d1 + gap, d2, a);
            let which = if first_longer { "first" } else { "second" };
            let choices = vec!["the first".to_string(), "the second".to_string()];
            ("Which of the two tones is longer?", choices, usize::from(!first_longer), "Which of the two tones is longer?", format!("the {which} tone"), Some(s), None, format!("the {which} tone is longer"))
        }
        "colour" | "shape" => {
            let c = below(rng, 4);
            let sh = below(rng, 4);
            let img = shape_image(sh, COLOURS[c].1, rng);
            let open_answer = format!("a {} {}", COLOURS[c].0, SHAPES[sh]);
            if family == "colour" {
                let choices = COLOURS.iter().map(|(n, _)| n.to_string()).collect();
                ("What colour is the shape?", choices, c, "Describe the shape in the picture.", open_answer.clone(), None, Some(img), open_answer)
            } else {
                let choices = SHAPES.iter().map(|s| s.to_string()).collect();
                ("Which shape is in the picture?", choices, sh, "Describe the shape in the picture.", open_answer.clone(), None, Some(img), open_answer)
            }
        }
        "dots" => {
            let k = 1 + below(rng, 4);
            let img = dots_image(k, rng);
            ("How many dots are in the picture?", numbers, k - 1, "How many dots are in the picture?", plural(k, "dot"), None, Some(img), plural(k, "dot"))
        }
        "match" => {
            let beeps_n = 1 + below(rng, 4);
            let same = rng.next_u64() % 2 == 0;
            let dots_n = if same { beeps_n } else { 1 + (beeps_n + below(rng, 3)) % 4 };
            let samples = beeps(beeps_n, rng);
            let img = dots_image(dots_n, rng);
            let choices = vec!["yes".to_string(), "no".to_string()];
            let open = if same { "yes, they match" } else { "no, they differ" };
            (
                "Does the number of beeps match the number of dots?",
                choices,
                usize::from(!same),
                "Does the number of beeps match the number of dots?",
                open.to_string(),
                Some(samples),
                Some(img),
                format!("{} and {}", plural(beeps_n, "beep"), plural(dots_n, "dot")),
            )
        }
        other => bail!("unknown demo family {other}"),
    };
    if let Some(s) = &audio {
        write_wav(&dir.join(&audio_rel), s)?;
    }
    if let Some(img) = &image {
        let path = dir.join(&image_rel);
        img.save_with_format(&path, image::ImageFormat::Png).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(DemoItem {
        id,
        family,
        question: question.to_string(),
        choices,
        answer: letter(correct),
        open_question: open_question.to_string(),
        open_answer,
        response: format!("{seen}. \\boxed{{{}}}", letter(correct)),
        audio: audio.map(|_| audio_rel),
        image: image.map(|_| image_rel),
    })
}

/// A clip of faint noise.
fn noise(rng: &mut Rng) -> Vec<f64> {
    let n = (CLIP_SECONDS * SAMPLE_RATE as f64).round() as usize;
    let level = uniform(rng, 0.005, 0.02);
    (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) * level).collect()
}

/// Adds a sine tone with 5 ms linear fades.
fn add_tone(samples: &mut [f64], freq: f64, start: f64, duration: f64, amplitude: f64) {
    let sr = SAMPLE_RATE as f64;
    let (s0, len) = ((start * sr).round() as usize, (duration * sr).round() as usize);
    let fade = (0.005 * sr) as usize;
    for i in 0..len {
        let Some(x) = samples.get_mut(s0 + i) else { break };
        let env = (i.min(len - 1 - i) as f64 / fade as f64).min(1.0);
        *x += amplitude * env * (2.0 * std::f64::consts::PI * freq * i as f64 / sr).sin();
    }
}

/// `k` beeps of one pitch at random, non-overlapping times.
fn beeps(k: usize, rng: &mut Rng) -> Vec<f64> {
    let mut s = noise(rng);
    let f = uniform(rng, 600.0, 1200.0);
    let a = uniform(rng, 0.3, 0.6);
    let dur = uniform(rng, 0.08, 0.12);
    // k beeps and k - 1 gaps of at least 0.12 s; the slack is spread at random.
    let min_gap = 0.12;
    let slack = CLIP_SECONDS - 0.1 - k as f64 * dur - (k - 1) as f64 * min_gap;
    let mut cuts: Vec<f64> = (0..k + 1).map(|_| rng.next_f64()).collect();
    let total: f64 = cuts.iter().sum();
    cuts.iter_mut().for_each(|c| *c *= slack / total);
    let mut t = 0.05 + cuts[0];
    for cut in cuts.iter().skip(1).take(k) {
        add_tone(&mut s, f, t, dur, a);
        t += dur + min_gap + cut;
    }
    s
}

fn write_wav(path: &Path, samples: &[f64]) -> Result<()> {
    let data: Vec<u8> = samples.iter().flat_map(|&x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes()).collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// A pale background with a little noise.
fn background(rng: &mut Rng) -> RgbImage {
    let base = [uniform(rng, 225.0, 255.0), uniform(rng, 225.0, 255.0), uniform(rng, 225.0, 255.0)];
    let mut img = RgbImage::new(IMAGE_SIZE, IMAGE_SIZE);
    for p in img.pixels_mut() {
        let n = uniform(rng, -6.0, 6.0);
        *p = Rgb(base.map(|b| (b + n).clamp(0.0, 255.0) as u8));
    }
    img
}

fn jitter(colour: [u8; 3], rng: &mut Rng) -> [u8; 3] {
    colour.map(|c| (c as f64 + uniform(rng, -20.0, 20.0)).clamp(0.0, 255.0) as u8)
}

/// One large shape (circle, square, triangle or cross) of `colour`, near the centre.
fn shape_image(shape: usize, colour: [u8; 3], rng: &mut Rng) -> RgbImage {
    let mut img = background(rng);
    let r = uniform(rng, 24.0, 34.0);
    let size = IMAGE_SIZE as f64;
    let (cx, cy) = (size / 2.0 + uniform(rng, -6.0, 6.0), size / 2.0 + uniform(rng, -6.0, 6.0));
    let colour = jitter(colour, rng);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
        let inside = match shape {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            // An upward triangle: below the two slanted edges and above the base.
            2 => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
            _ => (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r),
        };
        if inside {
            *p = Rgb(colour);
        }
    }
    img
}

/// `k` dots in one colour, each in its own cell of a 3 x 3 grid (a cell is the 28 x 28 pixels
/// the vision tower merges into one token), at a random place inside it.
fn dots_image(k: usize, rng: &mut Rng) -> RgbImage {
    let mut img = background(rng);
    let colour = jitter(COLOURS[below(rng, 4)].1, rng);
    let cell = IMAGE_SIZE as f64 / 3.0;
    let mut cells: Vec<usize> = (0..9).collect();
    for i in (1..9).rev() {
        cells.swap(i, below(rng, i + 1));
    }
    let centres: Vec<(f64, f64, f64)> = cells[..k]
        .iter()
        .map(|&c| {
            let r = uniform(rng, 6.0, 9.0);
            let (x0, y0) = ((c % 3) as f64 * cell, (c / 3) as f64 * cell);
            (x0 + uniform(rng, r + 1.0, cell - r - 1.0), y0 + uniform(rng, r + 1.0, cell - r - 1.0), r)
        })
        .collect();
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
        if centres.iter().any(|&(cx, cy, r)| (px - cx).powi(2) + (py - cy).powi(2) <= r * r) {
            *p = Rgb(colour);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_reproducible_and_independent() -> Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        write_demo_data(a.path(), 7, &DemoSplits { train: 5, test: 9, heldout: 0 }, false)?;
        write_demo_data(b.path(), 7, &DemoSplits { train: 0, test: 9, heldout: 3 }, false)?;
        for f in ["test.jsonl", "test_open.jsonl", "media/test/test-beeps-0000.wav", "media/test/test-match-0006.png"] {
            assert_eq!(std::fs::read(a.path().join(f))?, std::fs::read(b.path().join(f))?, "{f}");
        }
        assert!(!b.path().join("train.jsonl").exists());
        assert!(write_demo_data(a.path(), 7, &DemoSplits::default(), false).is_err(), "a non-empty folder is refused");
        Ok(())
    }

    #[test]
    fn dots_and_beeps_are_what_the_answer_says() -> Result<()> {
        let mut rng = Rng::seed(3);
        for k in 1..=4 {
            // Count connected runs of loud samples.
            let s = beeps(k, &mut rng);
            let loud: Vec<bool> = s.chunks(80).map(|c| c.iter().map(|x| x.abs()).fold(0.0, f64::max) > 0.2).collect();
            let runs = loud.windows(2).filter(|w| !w[0] && w[1]).count() + usize::from(loud[0]);
            assert_eq!(runs, k, "beeps");
            let img = dots_image(k, &mut rng);
            let bg = img.get_pixel(0, 0)[0] as i32;
            let dark = img.pixels().filter(|p| (p[0] as i32 - bg).abs() > 40 || (p[2] as i32 - img.get_pixel(0, 0)[2] as i32).abs() > 40).count();
            // Each dot covers between pi*6^2 and pi*9^2 pixels.
            assert!(dark as f64 >= k as f64 * 100.0 && dark as f64 <= k as f64 * 270.0, "{k} dots: {dark} pixels");
        }
        Ok(())
    }
}
