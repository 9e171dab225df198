//! Parity with transformers: runs a fixture directory (config.json, model.safetensors,
//! inputs.safetensors, expected.safetensors; the format is described in
//! scripts/make_omni_fixtures.py) and compares every expected tensor it holds. Used by
//! `tests/omni_parity.rs` and by `ttrav parity` (which runs it on a GPU with no Rust toolchain).
//!
//! Default tolerances: logits, hidden states, tower outputs and mel features 2e-4 max absolute
//! difference; pixel values exact (ttrav follows the processors' floating-point order, so they
//! match bit for bit); position ids, rope deltas and greedy tokens exact (in bf16/f16, a greedy
//! token may differ at a near-tie: where transformers' step logits put the two tokens within
//! 2 x tolerance; the decoding is fed transformers' tokens throughout). Positions where
//! `attention_mask` is 0 are not compared. An input or expected tensor the harness does not know
//! fails the fixture: nothing passes by being skipped. Every tensor's dtype and shape is checked
//! against the others' (and the config's) before anything runs, so that a mis-shaped or missing
//! tensor is an error naming its file and name, never a panic.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use crate::media::image::{preprocess_image, ImageProcessorConfig};
use crate::media::mel::MelExtractor;
use crate::media::video::{preprocess_frames, video_config_from_file, VideoProcessorConfig};
use crate::omni::config::ThinkerConfig;
use crate::omni::thinker::{AudioFeatures, PrefillOptions, PromptBatch, PromptState, Thinker, VisualFeatures};

fn video_config(dir: &Path) -> Result<VideoProcessorConfig> {
    video_config_from_file(&dir.join("preprocessor_config.json"))
}

/// How a fixture is run and how close it must come.
#[derive(Debug, Clone)]
pub struct ParityOptions {
    pub device: Device,
    pub dtype: DType,
    /// Max |diff| for logits, hidden states, tower outputs and mel features.
    pub tolerance: f32,
    /// Max |diff| for pixel values made from the raw media (0: bit for bit).
    pub pixel_tolerance: f32,
}

impl Default for ParityOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, tolerance: 2e-4, pixel_tolerance: 0.0 }
    }
}

/// Every fixture directory in `roots`: a root that is itself a fixture, and its subdirectories
/// that hold a config.json, in name order.
pub fn fixture_dirs(roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for root in roots {
        if root.join("config.json").is_file() {
            dirs.push(root.clone());
        }
        let entries = std::fs::read_dir(root).with_context(|| format!("fixture root {} cannot be read", root.display()))?;
        let mut found: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("config.json").is_file()).collect();
        found.sort();
        dirs.extend(found);
    }
    Ok(dirs)
}

fn load(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).with_context(|| format!("cannot read {}", path.display()))
}

/// Row-major host copy of a tensor as f32 with a leading batch dimension added when `batched` is
/// false (fixtures of one prompt drop it).
fn with_batch(t: &Tensor, batched: bool) -> Result<Tensor> {
    Ok(if batched { t.clone() } else { t.unsqueeze(0)? })
}

fn ids_of(t: &Tensor) -> Result<Vec<Vec<i64>>> {
    Ok(t.to_dtype(DType::I64)?.to_vec2::<i64>()?)
}

/// Max |a - b| over [B, L, ...] tensors, only where `mask[b][l] != 0`.
fn masked_max_diff(ours: &Tensor, expected: &Tensor, mask: &[Vec<i64>], name: &str) -> Result<f32> {
    if ours.dims() != expected.dims() {
        bail!("{name}: shape {:?}, expected {:?}", ours.dims(), expected.dims());
    }
    let (b, l) = (ours.dim(0)?, ours.dim(1)?);
    let inner = ours.elem_count() / (b * l);
    let a: Vec<f32> = ours.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let e: Vec<f32> = expected.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut max = 0f32;
    for bi in 0..b {
        for li in 0..l {
            if mask[bi][li] == 0 {
                continue;
            }
            let off = (bi * l + li) * inner;
            for k in 0..inner {
                let d = (a[off + k] - e[off + k]).abs();
                if !(d <= max) {
                    max = if d.is_nan() { f32::INFINITY } else { d };
                }
            }
        }
    }
    Ok(max)
}

/// Whether the harness knows an input tensor (an unknown one means a capability it lacks).
fn known_input(key: &str) -> bool {
    matches!(
        key,
        "input_ids"
            | "attention_mask"
            | "input_features"
            | "feature_attention_mask"
            | "pixel_values"
            | "image_grid_thw"
            | "pixel_values_videos"
            | "video_grid_thw"
            | "video_second_per_grid"
            | "use_audio_in_video"
            | "raw_video"
    ) || key.starts_with("raw_waveform")
        || key.starts_with("raw_image")
}

/// The audio clips of a fixture's inputs: the valid frames of each `input_features` row.
fn audio_inputs(inputs: &HashMap<String, Tensor>) -> Result<Vec<AudioFeatures>> {
    let Some(features) = inputs.get("input_features") else { return Ok(Vec::new()) };
    let mask = ids_of(inputs.get("feature_attention_mask").context("input_features without feature_attention_mask")?)?;
    let (n, n_mels, _) = features.dims3()?;
    (0..n)
        .map(|i| {
            let frames = mask[i].iter().filter(|&&m| m != 0).count();
            let mel = features.get(i)?.narrow(1, 0, frames)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            debug_assert_eq!(mel.len(), n_mels * frames);
            Ok(AudioFeatures { mel, frames })
        })
        .collect()
}

/// The images (or videos) of a fixture's inputs, split by their grids.
fn visual_inputs(
    inputs: &HashMap<String, Tensor>,
    pixels_key: &str,
    grid_key: &str,
    seconds_key: Option<&str>,
) -> Result<Vec<VisualFeatures>> {
    let Some(pixels) = inputs.get(pixels_key) else { return Ok(Vec::new()) };
    let grids = ids_of(inputs.get(grid_key).with_context(|| format!("{pixels_key} without {grid_key}"))?)?;
    let seconds: Vec<f32> = match seconds_key.and_then(|k| inputs.get(k)) {
        Some(t) => t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        None => vec![1.0; grids.len()],
    };
    let mut start = 0;
    grids
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let grid = [g[0] as usize, g[1] as usize, g[2] as usize];
            let n = grid.iter().product::<usize>();
            let rows = pixels.narrow(0, start, n)?.to_dtype(DType::F32)?;
            start += n;
            Ok(VisualFeatures { pixel_values: rows.flatten_all()?.to_vec1()?, grid, second_per_grid: seconds[i] })
        })
        .collect()
}

fn rgb_of(t: &Tensor) -> Result<image::RgbImage> {
    let (h, w, _) = t.dims3()?;
    let data: Vec<u8> = t.flatten_all()?.to_vec1()?;
    image::RgbImage::from_raw(w as u32, h as u32, data).context("bad raw image")
}

/// A tensor's values on the host as f32.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// The element type a fixture tensor must have.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Float,
    /// u8 (raw pixels).
    Bytes,
}

/// Checks a tensor's dtype and shape (`None`: any size); the error names the file and tensor.
fn expect_tensor(file: &Path, key: &str, t: &Tensor, kind: Kind, shape: &[Option<usize>]) -> Result<()> {
    let dtype_ok = match kind {
        Kind::Int => t.dtype().is_int(),
        Kind::Float => t.dtype().is_float(),
        Kind::Bytes => t.dtype() == DType::U8,
    };
    if !dtype_ok {
        let want = match kind {
            Kind::Int => "an integer type",
            Kind::Float => "a float type",
            Kind::Bytes => "u8",
        };
        bail!("{}: tensor `{key}` is {:?}, expected {want}", file.display(), t.dtype());
    }
    let dims = t.dims();
    if dims.len() != shape.len() || dims.iter().zip(shape).any(|(d, s)| s.is_some_and(|s| s != *d)) {
        let want: Vec<String> = shape.iter().map(|s| s.map_or("*".to_string(), |s| s.to_string())).collect();
        bail!("{}: tensor `{key}` has shape {dims:?}, expected [{}]", file.display(), want.join(", "));
    }
    Ok(())
}

/// A tensor of a fixture file, or an error naming the file and the tensor.
fn tensor<'a>(file: &Path, tensors: &'a HashMap<String, Tensor>, key: &str, why: &str) -> Result<&'a Tensor> {
    tensors.get(key).with_context(|| format!("{}: tensor `{key}` is missing ({why})", file.display()))
}

/// Checks the grids `[n, 3]` of one kind of visual input against its pixel rows: every entry
/// positive, height and width multiples of the merge size, rows adding up to the pixel rows.
fn check_grids(file: &Path, key: &str, grids: &Tensor, pixel_rows: usize, merge: usize) -> Result<()> {
    let mut total = 0usize;
    for (i, g) in ids_of(grids)?.iter().enumerate() {
        let bad = |why: String| anyhow::anyhow!("{}: tensor `{key}` row {i} {g:?}: {why}", file.display());
        if g.iter().any(|&x| x < 1 || x as usize > pixel_rows) {
            return Err(bad(format!("entries must lie in 1..={pixel_rows} (the pixel rows)")));
        }
        if g[1] as usize % merge != 0 || g[2] as usize % merge != 0 {
            return Err(bad(format!("height and width must be multiples of the merge size {merge}")));
        }
        let rows = (g[0] as usize).checked_mul(g[1] as usize).and_then(|r| r.checked_mul(g[2] as usize));
        total = rows.and_then(|r| total.checked_add(r)).ok_or_else(|| bad("the grid sizes overflow".into()))?;
    }
    if total != pixel_rows {
        bail!("{}: tensor `{key}` covers {total} patch rows but the pixel values hold {pixel_rows}", file.display());
    }
    Ok(())
}

/// Checks every input tensor's dtype, shape and values against the others and the config;
/// returns (batch, sequence length).
fn check_inputs(file: &Path, inputs: &HashMap<String, Tensor>, config: &ThinkerConfig) -> Result<(usize, usize)> {
    use Kind::*;
    if let Some(key) = inputs.keys().find(|k| !known_input(k)) {
        bail!("{}: tensor `{key}` is an input ttrav does not know how to use", file.display());
    }
    let ids = tensor(file, inputs, "input_ids", "every fixture needs the prompt")?;
    expect_tensor(file, "input_ids", ids, Int, &[None, None])?;
    let (b, len) = ids.dims2()?;
    if b == 0 || len == 0 {
        bail!("{}: tensor `input_ids` has shape [{b}, {len}]: no tokens", file.display());
    }
    let vocab = config.text.vocab_size as i64;
    if let Some(&bad) = ids_of(ids)?.iter().flatten().find(|&&x| x < 0 || x >= vocab) {
        bail!("{}: tensor `input_ids` holds token {bad}, outside the vocabulary (0..{vocab})", file.display());
    }
    let mask = tensor(file, inputs, "attention_mask", "every fixture needs it")?;
    expect_tensor(file, "attention_mask", mask, Int, &[Some(b), Some(len)])?;
    if let Some(features) = inputs.get("input_features") {
        expect_tensor(file, "input_features", features, Float, &[None, None, None])?;
        let (n, _, frames) = features.dims3()?;
        let fmask = tensor(file, inputs, "feature_attention_mask", "input_features need it")?;
        expect_tensor(file, "feature_attention_mask", fmask, Int, &[Some(n), Some(frames)])?;
    }
    let merge = config.vision.as_ref().map_or(2, |v| v.spatial_merge_size);
    let row_len = config.vision.as_ref().map(|v| v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size);
    for (pixels_key, grid_key) in [("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw")] {
        let Some(pixels) = inputs.get(pixels_key) else { continue };
        expect_tensor(file, pixels_key, pixels, Float, &[None, row_len])?;
        let grids = tensor(file, inputs, grid_key, &format!("{pixels_key} need it"))?;
        expect_tensor(file, grid_key, grids, Int, &[None, Some(3)])?;
        check_grids(file, grid_key, grids, pixels.dim(0)?, merge)?;
    }
    if let Some(seconds) = inputs.get("video_second_per_grid") {
        let n = inputs.get("video_grid_thw").map_or(0, |g| g.dims()[0]);
        expect_tensor(file, "video_second_per_grid", seconds, Float, &[Some(n)])?;
        if host(seconds)?.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            bail!("{}: tensor `video_second_per_grid` must hold positive finite seconds", file.display());
        }
    }
    if let Some(flag) = inputs.get("use_audio_in_video") {
        if !flag.dtype().is_int() || flag.elem_count() != 1 {
            bail!("{}: tensor `use_audio_in_video` must be one integer (0 or 1)", file.display());
        }
    }
    for (key, t) in inputs {
        if key.starts_with("raw_waveform") {
            expect_tensor(file, key, t, Float, &[None])?;
        } else if key.starts_with("raw_image") {
            expect_tensor(file, key, t, Bytes, &[None, None, Some(3)])?;
        } else if key == "raw_video" {
            expect_tensor(file, key, t, Bytes, &[None, None, None, Some(3)])?;
        }
    }
    Ok((b, len))
}

/// Checks every expected tensor's dtype and shape against the inputs and the config.
fn check_expected(
    file: &Path,
    expected: &HashMap<String, Tensor>,
    (b, len): (usize, usize),
    config: &ThinkerConfig,
) -> Result<()> {
    use Kind::*;
    let (vocab, hidden) = (Some(config.text.vocab_size), Some(config.text.hidden_size));
    // One-prompt fixtures may drop the batch dimension.
    let batched = |key: &str, t: &Tensor, kind: Kind, rest: &[Option<usize>]| -> Result<()> {
        if b == 1 && t.rank() == rest.len() + 1 {
            expect_tensor(file, key, t, kind, &[&[Some(len)][..], rest].concat())
        } else {
            expect_tensor(file, key, t, kind, &[&[Some(b), Some(len)][..], rest].concat())
        }
    };
    for (key, t) in expected {
        match key.as_str() {
            "logits" => batched(key, t, Float, &[vocab])?,
            k if k.starts_with("hidden_states.") => batched(key, t, Float, &[hidden])?,
            "position_ids" => expect_tensor(file, key, t, Int, &[Some(3), Some(b), Some(len)])?,
            "rope_deltas" => {
                if !t.dtype().is_int() || t.elem_count() != b {
                    bail!("{}: tensor `rope_deltas` must hold {b} integers (one per prompt), it is {:?} {:?}", file.display(), t.dtype(), t.dims());
                }
            }
            "greedy_token_ids" => {
                let shape = if b == 1 && t.rank() == 1 { vec![None] } else { vec![Some(b), None] };
                expect_tensor(file, key, t, Int, &shape)?;
                if t.dims()[t.rank() - 1] == 0 {
                    bail!("{}: tensor `greedy_token_ids` holds no tokens", file.display());
                }
                let steps = Some(t.dims()[t.rank() - 1]);
                if let Some(logits) = expected.get("greedy_step_logits") {
                    let shape = if b == 1 && logits.rank() == 2 { vec![steps, vocab] } else { vec![Some(b), steps, vocab] };
                    expect_tensor(file, "greedy_step_logits", logits, Float, &shape)?;
                }
            }
            k if k == "mel_features" || k.starts_with("mel_features.") => {
                expect_tensor(file, key, t, Float, &[Some(crate::media::mel::N_MELS), None])?
            }
            "audio_tower_output" | "pixel_values" | "pixel_values_videos" | "vision_tower_output"
            | "video_tower_output" | "vision_patch_embed" | "video_patch_embed" => {
                expect_tensor(file, key, t, Float, &[None, None])?
            }
            // greedy_step_logits is checked with greedy_token_ids; unknown names fail below.
            _ => {}
        }
    }
    Ok(())
}

/// The prompt batch of a fixture directory's `inputs.safetensors` (prompts with their media),
/// checked against the directory's `config.json` as `check_fixture` checks it.
pub fn fixture_batch(dir: &Path) -> Result<PromptBatch> {
    let config = ThinkerConfig::from_file(&dir.join("config.json"))?;
    let inputs_file = dir.join("inputs.safetensors");
    let inputs = load(&inputs_file)?;
    check_inputs(&inputs_file, &inputs, &config)?;
    batch_of(&inputs)
}

fn batch_of(inputs: &HashMap<String, Tensor>) -> Result<PromptBatch> {
    let input_ids = ids_of(inputs.get("input_ids").context("inputs.safetensors lacks `input_ids`")?)?;
    let mask = ids_of(inputs.get("attention_mask").context("inputs.safetensors lacks `attention_mask`")?)?;
    Ok(PromptBatch {
        input_ids: input_ids.iter().map(|r| r.iter().map(|&x| x as u32).collect()).collect(),
        attention_mask: mask.iter().map(|r| r.iter().map(|&x| x as u32).collect()).collect(),
        audio: audio_inputs(&inputs)?,
        images: visual_inputs(&inputs, "pixel_values", "image_grid_thw", None)?,
        videos: visual_inputs(&inputs, "pixel_values_videos", "video_grid_thw", Some("video_second_per_grid"))?,
        use_audio_in_video: match inputs.get("use_audio_in_video") {
            Some(t) => t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?.first() == Some(&1),
            None => false,
        },
    })
}

/// Checks one fixture; returns the names of the expected tensors compared.
pub fn check_fixture(dir: &Path, opts: &ParityOptions) -> Result<Vec<String>> {
    let (tol, pixel_tol) = (opts.tolerance, opts.pixel_tolerance);
    let config = ThinkerConfig::from_file(&dir.join("config.json"))?;
    let (inputs_file, expected_file) = (dir.join("inputs.safetensors"), dir.join("expected.safetensors"));
    let inputs = load(&inputs_file)?;
    let expected = load(&expected_file)?;
    let (b, len) = check_inputs(&inputs_file, &inputs, &config)?;
    check_expected(&expected_file, &expected, (b, len), &config)?;
    let batch = batch_of(&inputs)?;
    let mask = ids_of(inputs.get("attention_mask").context("inputs.safetensors lacks `attention_mask`")?)?;
    let thinker = Thinker::from_files(config, &[dir.join("model.safetensors")], &opts.device, opts.dtype)?;
    let needs_hidden = expected.keys().any(|k| k.starts_with("hidden_states."));
    let out = thinker.prefill(&batch, PrefillOptions { all_logits: true, hidden_states: needs_hidden, base_model: false })?;

    let mut checked = Vec::new();
    let mut keys: Vec<&String> = expected.keys().collect();
    keys.sort();
    for key in keys {
        let exp = &expected[key];
        match key.as_str() {
            "logits" => {
                let exp = with_batch(exp, exp.rank() == 3)?;
                let d = masked_max_diff(out.logits.as_ref().context("no logits")?, &exp, &mask, key)?;
                if d > tol {
                    bail!("logits differ: max |diff| = {d:e} > {tol:e}");
                }
            }
            k if k.starts_with("hidden_states.") => {
                let n: usize = k["hidden_states.".len()..].parse().with_context(|| format!("bad key {k}"))?;
                let ours = out.hidden_states.get(n).with_context(|| {
                    format!("{k}: ttrav produced {} hidden states", out.hidden_states.len())
                })?;
                let exp = with_batch(exp, exp.rank() == 3)?;
                let d = masked_max_diff(ours, &exp, &mask, k)?;
                if d > tol {
                    bail!("{k} differs: max |diff| = {d:e} > {tol:e}");
                }
            }
            "position_ids" => {
                let exp: Vec<Vec<Vec<i64>>> = exp.to_dtype(DType::I64)?.to_vec3()?;
                for row in 0..3 {
                    for bi in 0..b {
                        for li in 0..batch.len() {
                            if mask[bi][li] == 0 {
                                continue;
                            }
                            let ours = out.position_ids.get(row, bi, li);
                            if ours != exp[row][bi][li] {
                                bail!("position_ids[{row}, {bi}, {li}] = {ours}, expected {}", exp[row][bi][li]);
                            }
                        }
                    }
                }
            }
            "rope_deltas" => {
                let exp: Vec<i64> = exp.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?;
                if out.state.rope_deltas != exp {
                    bail!("rope_deltas = {:?}, expected {:?}", out.state.rope_deltas, exp);
                }
            }
            "greedy_token_ids" => {
                let near_ties = opts.dtype != DType::F32;
                check_greedy(&thinker, &out.state, exp, expected.get("greedy_step_logits"), tol, near_ties)?
            }
            k if k == "mel_features" || k.starts_with("mel_features.") => {
                let wave_key = k.replacen("mel_features", "raw_waveform", 1);
                let wave: Vec<f32> = inputs
                    .get(&wave_key)
                    .with_context(|| format!("{k} needs `{wave_key}` in inputs.safetensors"))?
                    .to_dtype(DType::F32)?
                    .to_vec1()?;
                let ours = AudioFeatures::from_waveform(&wave, &MelExtractor::new());
                let (n_mels, frames) = exp.dims2()?;
                if ours.frames != frames || ours.mel.len() != n_mels * frames {
                    bail!("{k}: ttrav made {} frames, expected {frames}", ours.frames);
                }
                let e = host(exp)?;
                let d = ours.mel.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                if !(d <= tol) {
                    bail!("{k} differs: max |diff| = {d:e} > {tol:e}");
                }
            }
            "audio_tower_output" => {
                let ours = Tensor::cat(&thinker.encode_audio(&batch.audio)?, 0)?;
                let all = vec![vec![1i64; ours.dim(0)?]];
                let d = masked_max_diff(&ours.unsqueeze(0)?, &exp.unsqueeze(0)?, &all, key)?;
                if d > tol {
                    bail!("audio_tower_output differs: max |diff| = {d:e} > {tol:e}");
                }
            }
            "pixel_values" => {
                let cfg = ImageProcessorConfig::from_file(&dir.join("preprocessor_config.json"))?;
                let mut raws: Vec<&String> = inputs.keys().filter(|k| k.starts_with("raw_image")).collect();
                raws.sort();
                if raws.is_empty() {
                    bail!("pixel_values expected but no raw_image in inputs.safetensors");
                }
                let mut ours = Vec::new();
                for key in raws {
                    let (px, _) = preprocess_image(&rgb_of(&inputs[key])?, &cfg).map_err(|e| anyhow::anyhow!(e))?;
                    ours.extend(px);
                }
                let e = host(exp)?;
                if ours.len() != e.len() {
                    bail!("pixel_values: ttrav made {} values, expected {}", ours.len(), e.len());
                }
                let d = max_abs(&ours, &e);
                if !(d <= pixel_tol) {
                    bail!("pixel_values differ: max |diff| = {d:e} > {pixel_tol}");
                }
            }
            "pixel_values_videos" => {
                let raw = inputs.get("raw_video").context("pixel_values_videos expected but no raw_video")?;
                let (t, _, _, _) = raw.dims4()?;
                let frames = (0..t).map(|i| rgb_of(&raw.get(i)?)).collect::<Result<Vec<_>>>()?;
                let cfg = video_config(dir)?;
                let fps = 2.0 / batch.videos.first().map_or(1.0, |v| v.second_per_grid);
                let ours = preprocess_frames(&frames, &cfg, fps).map_err(|e| anyhow::anyhow!(e))?;
                let e = host(exp)?;
                if ours.pixel_values.len() != e.len() {
                    bail!("pixel_values_videos: ttrav made {} values, expected {}", ours.pixel_values.len(), e.len());
                }
                let d = max_abs(&ours.pixel_values, &e);
                if !(d <= pixel_tol) {
                    bail!("pixel_values_videos differ: max |diff| = {d:e} > {pixel_tol}");
                }
            }
            "vision_tower_output" | "video_tower_output" => {
                let items = if key == "vision_tower_output" { &batch.images } else { &batch.videos };
                let ours = thinker.encode_visual(items)?;
                let d = max_abs(&host(&ours)?, &host(exp)?);
                if ours.dims() != exp.dims() || !(d <= tol) {
                    bail!("{key} differs: shape {:?} vs {:?}, max |diff| = {d:e}", ours.dims(), exp.dims());
                }
            }
            "vision_patch_embed" | "video_patch_embed" => {
                let items = if key == "vision_patch_embed" { &batch.images } else { &batch.videos };
                let ours = thinker.vision_patch_embeddings(items)?;
                let d = max_abs(&host(&ours)?, &host(exp)?);
                if ours.dims() != exp.dims() || !(d <= tol) {
                    bail!("{key} differs: shape {:?} vs {:?}, max |diff| = {d:e}", ours.dims(), exp.dims());
                }
            }
            "greedy_step_logits" => {
                if !expected.contains_key("greedy_token_ids") {
                    bail!("greedy_step_logits without greedy_token_ids");
                }
            }
            other => bail!("unknown expected tensor `{other}`: the harness does not know how to check it"),
        }
        checked.push(key.clone());
    }
    Ok(checked)
}

/// Greedy decoding from the prefill, no stop token, fed transformers' tokens: step logits within
/// tolerance, tokens equal. With `near_ties` (reduced precision), a token may differ where
/// transformers' own step logits put the two tokens within 2 x tolerance of each other (a tie
/// that rounding decides); without step logits to show that, it may not.
fn check_greedy(
    thinker: &Thinker,
    state: &PromptState,
    exp_tokens: &Tensor,
    exp_logits: Option<&Tensor>,
    tol: f32,
    near_ties: bool,
) -> Result<()> {
    let batched = exp_tokens.rank() == 2;
    let exp_tokens = ids_of(&with_batch(exp_tokens, batched)?)?;
    let exp_logits = exp_logits.map(|t| with_batch(t, batched)).transpose()?;
    let k = exp_tokens[0].len();
    let mut state = state.clone();
    let b = state.batch_size();
    for step in 0..k {
        let logits: Vec<Vec<f32>> = state.next_logits.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2()?;
        let step_logits: Option<Vec<Vec<f32>>> = match &exp_logits {
            Some(el) => Some(el.narrow(1, step, 1)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec2()?),
            None => None,
        };
        if let Some(el) = &step_logits {
            for bi in 0..b {
                let d = logits[bi].iter().zip(&el[bi]).map(|(a, e)| (a - e).abs()).fold(0f32, f32::max);
                if !(d <= tol) {
                    bail!("greedy_step_logits[{bi}, {step}] differ: max |diff| = {d:e}");
                }
            }
        }
        let mut next = Vec::with_capacity(b);
        for bi in 0..b {
            let row = &logits[bi];
            let tok = (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            let want = exp_tokens[bi][step];
            if tok as i64 != want {
                let margin = step_logits.as_ref().map(|el| el[bi][want as usize] - el[bi][tok]);
                match margin {
                    Some(m) if near_ties && m <= 2.0 * tol => {}
                    _ => bail!(
                        "greedy token {step} of sequence {bi} is {tok}, expected {want}{}",
                        margin.map_or(String::new(), |m| format!(" (transformers' margin between them: {m:e})"))
                    ),
                }
            }
            next.push(want as u32);
        }
        if step + 1 < k {
            thinker.decode_step(&mut state, &next)?;
        }
    }
    Ok(())
}

