//! Parity with transformers: runs a fixture directory (config.json, model.safetensors,
//! inputs.safetensors, expected.safetensors; the format is described in
//! scripts/make_omni_fixtures.py) and compares every expected tensor it holds. Used by
//! `tests/omni_parity.rs` and by `ttrav parity` (which runs it on a GPU with no Rust toolchain).
//!
//! Default tolerances: logits, hidden states, tower outputs and mel features 2e-4 max absolute
//! difference; pixel values 0.02; position ids, rope deltas and greedy tokens exact. Positions
//! where `attention_mask` is 0 are not compared. An input or expected tensor the harness does not
//! know fails the fixture: nothing passes by being skipped.

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
    /// Max |diff| for pixel values made from the raw media.
    pub pixel_tolerance: f32,
}

impl Default for ParityOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32, tolerance: 2e-4, pixel_tolerance: 0.02 }
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

/// The prompt batch of a fixture directory's `inputs.safetensors` (prompts with their media).
pub fn fixture_batch(dir: &Path) -> Result<PromptBatch> {
    batch_of(&load(&dir.join("inputs.safetensors"))?)
}

fn batch_of(inputs: &HashMap<String, Tensor>) -> Result<PromptBatch> {
    if let Some(key) = inputs.keys().find(|k| !known_input(k)) {
        bail!("inputs.safetensors holds `{key}`, an input ttrav does not know how to use");
    }
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
    let inputs = load(&dir.join("inputs.safetensors"))?;
    let expected = load(&dir.join("expected.safetensors"))?;
    let batch = batch_of(&inputs)?;
    let mask = ids_of(inputs.get("attention_mask").context("inputs.safetensors lacks `attention_mask`")?)?;

    let b = batch.batch_size();
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
            "greedy_token_ids" => check_greedy(&thinker, &out.state, exp, expected.get("greedy_step_logits"), tol)?,
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
                let e: Vec<f32> = exp.flatten_all()?.to_vec1()?;
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
                let e: Vec<f32> = exp.flatten_all()?.to_vec1()?;
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
                let e: Vec<f32> = exp.flatten_all()?.to_vec1()?;
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

/// Greedy decoding from the prefill, no stop token: tokens exact, step logits within tolerance.
fn check_greedy(
    thinker: &Thinker,
    state: &PromptState,
    exp_tokens: &Tensor,
    exp_logits: Option<&Tensor>,
    tol: f32,
) -> Result<()> {
    let batched = exp_tokens.rank() == 2;
    let exp_tokens = ids_of(&with_batch(exp_tokens, batched)?)?;
    let exp_logits = exp_logits.map(|t| with_batch(t, batched)).transpose()?;
    let k = exp_tokens[0].len();
    let mut state = state.clone();
    let b = state.batch_size();
    for step in 0..k {
        let logits: Vec<Vec<f32>> = state.next_logits.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.to_vec2()?;
        if let Some(el) = &exp_logits {
            let el: Vec<Vec<f32>> = el.narrow(1, step, 1)?.squeeze(1)?.to_vec2()?;
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
            if tok as i64 != exp_tokens[bi][step] {
                bail!("greedy token {step} of sequence {bi} is {tok}, expected {}", exp_tokens[bi][step]);
            }
            next.push(tok as u32);
        }
        if step + 1 < k {
            thinker.decode_step(&mut state, &next)?;
        }
    }
    Ok(())
}

