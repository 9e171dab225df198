//! The thinker: loads the checkpoint and runs prompts through it.
//!
//! `prefill` encodes a (left-padded) batch of prompts once and returns a [`PromptState`] holding
//! the key/value cache; `decode_step` extends it by one token per sequence. A state can be
//! forked so that one prompt's prefill serves many sampled continuations: they all read the
//! prompt's keys and values from one copy, and only their own tokens' from caches of their own.

use crate::hub::ModelSource;
use crate::omni::audio::AudioTower;
use crate::omni::config::ThinkerConfig;
use crate::omni::rope::{MediaLayout, PositionIds, PositionTokens};
use crate::omni::vision::VisionTower;
use crate::omni::text::{accumulation_dtype, attention_mask, GroupLayout, KvCache, LayerInputs, SuffixCache, TextDecoder};
use anyhow::{bail, Context, Result};
use crate::nn::Pass;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use std::path::PathBuf;

/// The log-mel features of one audio clip: `[n_mels, frames]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFeatures {
    pub mel: Vec<f32>,
    pub frames: usize,
}

impl AudioFeatures {
    /// The features of a 16 kHz waveform, computed as Qwen2.5-Omni's feature extractor does.
    pub fn from_waveform(samples: &[f32], extractor: &crate::media::mel::MelExtractor) -> Self {
        let (mel, frames) = extractor.extract(samples);
        Self { mel, frames }
    }

    /// The number of `<|AUDIO|>` tokens these features become.
    pub fn token_count(&self) -> usize {
        crate::omni::audio::audio_token_count(self.frames)
    }
}

/// The patches of one image or video: `[t*h*w, 1176]` row-major, its `[t, h, w]` grid, and for
/// videos the seconds per temporal grid step.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualFeatures {
    pub pixel_values: Vec<f32>,
    pub grid: [usize; 3],
    pub second_per_grid: f32,
}

impl VisualFeatures {
    /// The number of `<|IMAGE|>` / `<|VIDEO|>` tokens (merged 2x2 patches).
    pub fn token_count(&self) -> usize {
        self.grid.iter().product::<usize>() / 4
    }
}

/// One tokenised prompt with the features of its media, in prompt order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EncodedPrompt {
    pub input_ids: Vec<u32>,
    /// Audio clips, including the sound tracks of videos when `use_audio_in_video`.
    pub audio: Vec<AudioFeatures>,
    pub images: Vec<VisualFeatures>,
    pub videos: Vec<VisualFeatures>,
    pub use_audio_in_video: bool,
}

/// A batch of tokenised prompts, left-padded to one length, with their media features.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptBatch {
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
    /// Audio clips of all prompts, in order (prompt 0's clips first).
    pub audio: Vec<AudioFeatures>,
    pub images: Vec<VisualFeatures>,
    pub videos: Vec<VisualFeatures>,
    pub use_audio_in_video: bool,
}

impl PromptBatch {
    /// Left-pads encoded prompts (with their media) to one length with `pad_id`.
    pub fn from_prompts(prompts: &[EncodedPrompt], pad_id: u32) -> Result<Self> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.input_ids.clone()).collect();
        let mut batch = Self::left_padded(&ids, pad_id)?;
        batch.audio = prompts.iter().flat_map(|p| p.audio.iter().cloned()).collect();
        batch.images = prompts.iter().flat_map(|p| p.images.iter().cloned()).collect();
        batch.videos = prompts.iter().flat_map(|p| p.videos.iter().cloned()).collect();
        batch.use_audio_in_video = prompts.iter().any(|p| p.use_audio_in_video);
        if batch.use_audio_in_video && prompts.iter().any(|p| !p.use_audio_in_video && !p.videos.is_empty()) {
            bail!("prompts with and without audio-in-video cannot share a batch");
        }
        Ok(batch)
    }

    /// Left-pads text-only prompts of different lengths with `pad_id`.
    pub fn left_padded(prompts: &[Vec<u32>], pad_id: u32) -> Result<Self> {
        let len = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            bail!("cannot run an empty prompt");
        }
        let mut input_ids = Vec::with_capacity(prompts.len());
        let mut attention_mask = Vec::with_capacity(prompts.len());
        for p in prompts {
            let pad = len - p.len();
            input_ids.push(std::iter::repeat(pad_id).take(pad).chain(p.iter().copied()).collect());
            attention_mask.push(std::iter::repeat(0).take(pad).chain(std::iter::repeat(1).take(p.len())).collect());
        }
        Ok(Self { input_ids, attention_mask, audio: Vec::new(), images: Vec::new(), videos: Vec::new(), use_audio_in_video: false })
    }

    pub fn batch_size(&self) -> usize {
        self.input_ids.len()
    }

    pub fn len(&self) -> usize {
        self.input_ids.first().map_or(0, |r| r.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a prefill keeps for decoding: each prompt's key/value cache (once), each sequence's own
/// cache after it, which prompt each sequence continues, the rotary position bookkeeping, and the
/// logits for the next token. Right after a prefill sequence `i` is prompt `i`; [`Self::fork`]
/// makes several sequences continue one prompt without copying its cache.
#[derive(Debug, Clone)]
pub struct PromptState {
    /// Each prompt's keys and values, `[P, kv_heads, prompt_len, head_dim]` per layer, read by
    /// every sequence that continues it.
    prefix: KvCache,
    /// Per prompt, per prefix slot: false for padding.
    prefix_valid: Vec<Vec<bool>>,
    /// The additive mask of the prefix's padding, `[P, 1, 1, prompt_len]` (None without padding).
    prefix_mask: Option<Tensor>,
    /// Each sequence's keys and values after its prompt.
    suffix: SuffixCache,
    /// Per sequence: the prompt it continues.
    groups: Vec<usize>,
    /// Per sequence: real tokens seen so far.
    pub n_valid: Vec<usize>,
    /// Per sequence: `max(position) + 1 - n_valid` after the prompt.
    pub rope_deltas: Vec<i64>,
    /// Logits for the next token, `[B, V]`, f32.
    pub next_logits: Tensor,
    /// Adapters on or off for this state's forward passes.
    pub pass: Pass,
}

impl PromptState {
    /// The number of sequences.
    pub fn batch_size(&self) -> usize {
        self.groups.len()
    }

    /// The number of prompts whose caches the sequences read.
    pub fn prompt_count(&self) -> usize {
        self.prefix_valid.len()
    }

    /// Bytes held by the key/value caches (the prompts' and the sequences' own).
    pub fn cache_bytes(&self) -> usize {
        self.prefix.bytes() + self.suffix.bytes()
    }

    /// A state whose sequence `i` continues this state's sequence `rows[i]` (rows may repeat).
    /// Only the sequences' own caches are copied; a prompt no sequence continues any more is
    /// dropped.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch_size()) {
            bail!("sequence {bad} does not exist (the state has {})", self.batch_size());
        }
        let device = self.next_logits.device();
        let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), device)?;
        let mut live: Vec<usize> = rows.iter().map(|&r| self.groups[r]).collect();
        live.sort_unstable();
        live.dedup();
        let mut state = Self {
            prefix: self.prefix.clone(),
            prefix_valid: self.prefix_valid.clone(),
            prefix_mask: self.prefix_mask.clone(),
            suffix: if self.suffix.is_empty() { self.suffix.clone() } else { self.suffix.select_rows(&idx)? },
            groups: rows.iter().map(|&r| self.groups[r]).collect(),
            n_valid: rows.iter().map(|&r| self.n_valid[r]).collect(),
            rope_deltas: rows.iter().map(|&r| self.rope_deltas[r]).collect(),
            next_logits: self.next_logits.index_select(&idx, 0)?,
            pass: self.pass,
        };
        if live.len() < self.prompt_count() {
            state.keep_prompts(&live)?;
        }
        Ok(state)
    }

    /// Keeps only the prompts `live` (sorted), renumbering the sequences' groups.
    fn keep_prompts(&mut self, live: &[usize]) -> Result<()> {
        let idx = Tensor::from_vec(live.iter().map(|&p| p as u32).collect::<Vec<_>>(), live.len(), self.next_logits.device())?;
        self.prefix = self.prefix.select_rows(&idx)?;
        self.prefix_mask = self.prefix_mask.as_ref().map(|m| m.index_select(&idx, 0)).transpose()?;
        self.prefix_valid = live.iter().map(|&p| self.prefix_valid[p].clone()).collect();
        for g in &mut self.groups {
            *g = live.binary_search(g).map_err(|_| anyhow::anyhow!("sequence continues a dropped prompt"))?;
        }
        Ok(())
    }

    /// Repeats every sequence `n` times (sequence `b` becomes rows `b*n .. b*n+n`): `n`
    /// continuations read one copy of their prompt's cache.
    pub fn fork(&self, n: usize) -> Result<Self> {
        let rows: Vec<usize> = (0..self.batch_size()).flat_map(|b| std::iter::repeat(b).take(n)).collect();
        self.select_rows(&rows)
    }

    /// The same state with a private copy of its prompt's cache for every sequence (the layout
    /// before prompts were shared: N samples store and read the prompt N times). For
    /// comparisons: it decodes to the same values.
    pub fn unshared(&self) -> Result<Self> {
        let device = self.next_logits.device();
        let idx = Tensor::from_vec(self.groups.iter().map(|&g| g as u32).collect::<Vec<_>>(), self.groups.len(), device)?;
        Ok(Self {
            prefix: self.prefix.select_rows(&idx)?,
            prefix_valid: self.groups.iter().map(|&g| self.prefix_valid[g].clone()).collect(),
            prefix_mask: self.prefix_mask.as_ref().map(|m| m.index_select(&idx, 0)).transpose()?,
            groups: (0..self.groups.len()).collect(),
            ..self.clone()
        })
    }

    /// Makes room in the sequences' own caches for `extra` more tokens in one allocation.
    pub fn reserve(&mut self, extra: usize) {
        self.suffix.reserve(extra);
    }
}

/// The additive mask `[P, 1, 1, L]` of padded prompt slots, None when nothing is padded.
fn prefix_padding_mask(valid: &[Vec<bool>], device: &Device) -> Result<Option<Tensor>> {
    if valid.iter().all(|r| r.iter().all(|&v| v)) {
        return Ok(None);
    }
    let l = valid.first().map_or(0, |r| r.len());
    let data: Vec<f32> = valid.iter().flatten().map(|&v| if v { 0.0 } else { -1e30 }).collect();
    Ok(Some(Tensor::from_vec(data, (valid.len(), 1, 1, l), device)?))
}

/// Options for a prefill.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrefillOptions {
    /// Return the logits of every position (parity checks), not only the last.
    pub all_logits: bool,
    /// Return the hidden states as transformers' `output_hidden_states` numbers them.
    pub hidden_states: bool,
    /// Run the frozen base model (LoRA adapters off); decoding from the state does the same.
    pub base_model: bool,
}

/// The outputs of a prefill.
#[derive(Debug)]
pub struct PrefillOutput {
    pub state: PromptState,
    pub position_ids: PositionIds,
    /// The input embeddings `[B, L, H]` with the media features in place (no gradient; the
    /// training forward reuses them instead of running the towers again).
    pub embeds: Tensor,
    /// `[B, L, V]` when requested.
    pub logits: Option<Tensor>,
    pub hidden_states: Vec<Tensor>,
}

/// What training needs of one prefilled prompt: its input embeddings without padding (media
/// features in place; no gradient), their 3-D positions, and where the answer's positions start.
#[derive(Debug, Clone)]
pub struct PromptContext {
    /// `[1, L, H]`.
    pub embeds: Tensor,
    /// (temporal, height, width) per prompt token.
    pub positions: Vec<[i64; 3]>,
    pub next_position: i64,
}

impl PrefillOutput {
    /// The context of sequence `row` of the prefill, its padding removed.
    pub fn context(&self, row: usize) -> Result<PromptContext> {
        let key_valid = &self.state.prefix_valid[row];
        let valid: Vec<usize> = (0..key_valid.len()).filter(|&l| key_valid[l]).collect();
        let idx = Tensor::from_vec(valid.iter().map(|&l| l as u32).collect::<Vec<_>>(), valid.len(), self.embeds.device())?;
        let embeds = self.embeds.get(row)?.index_select(&idx, 0)?.unsqueeze(0)?.detach();
        let positions =
            valid.iter().map(|&l| [0, 1, 2].map(|r| self.position_ids.get(r, row, l))).collect();
        Ok(PromptContext {
            embeds,
            positions,
            next_position: self.state.n_valid[row] as i64 + self.state.rope_deltas[row],
        })
    }
}

/// Per-token log-probabilities of answers, their entropies, and the mask of real tokens.
#[derive(Debug, Clone)]
pub struct AnswerLogprobs {
    pub logp: Tensor,
    pub entropy: Tensor,
    pub mask: Tensor,
}

/// Per-token log-probabilities of completions ([`Thinker::completion_logprobs`]): each `[B, T]`.
#[derive(Debug, Clone)]
pub struct CompletionLogprobs {
    pub logp: Tensor,
    /// 1 for completion tokens, 0 for what precedes them.
    pub mask: Tensor,
    /// 1 where the token is the model's most likely one (no gradient).
    pub top1: Tensor,
}

/// A loaded Qwen2.5-Omni thinker, or a Qwen2 / Qwen3 text causal LM (the same decoder, no towers).
#[derive(Debug)]
pub struct Thinker {
    config: ThinkerConfig,
    text: TextDecoder,
    audio: Option<AudioTower>,
    vision: Option<VisionTower>,
    device: Device,
    dtype: DType,
}

impl Thinker {
    /// Loads the thinker from a model directory or hub id (talker and token2wav weights are
    /// never read). Weights are memory-mapped and converted to `dtype`.
    pub fn load(model: &ModelSource, device: &Device, dtype: DType) -> Result<Self> {
        let config_path = model.get("config.json")?;
        let config = ThinkerConfig::from_file(&config_path)?;
        let files = model.weight_files()?;
        Self::from_files(config, &files, device, dtype)
    }

    /// Builds the thinker from a resolved config and its safetensors files.
    pub fn from_files(config: ThinkerConfig, files: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        let names = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        for f in files {
            check_safetensors_header(f)?;
        }
        // SAFETY: the files are memory-mapped read-only; ttrav never writes to them while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .with_context(|| format!("cannot read weights from {names}"))?;
        Self::from_var_builder(config, vb, &names, device, dtype)
    }

    /// Loads the thinker with every tensor of the checkpoint as a trainable variable (full
    /// fine-tuning of the decoder, both towers and their projections); returns the variables by
    /// their checkpoint names.
    pub fn load_trainable(model: &ModelSource, device: &Device, dtype: DType) -> Result<(Self, Vec<(String, Var)>)> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            bail!("full fine-tuning needs f32 (or f64) weights, not {dtype:?}");
        }
        let config = ThinkerConfig::from_file(&model.get("config.json")?)?;
        let files = model.weight_files()?;
        let names = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        for f in &files {
            check_safetensors_header(f)?;
        }
        let (vb, vars) = crate::weights::trainable(&files, dtype, device).with_context(|| format!("cannot read weights from {names}"))?;
        let thinker = Self::from_var_builder(config, vb, &names, device, dtype)?;
        Ok((thinker, vars.take()))
    }

    fn from_var_builder(mut config: ThinkerConfig, vb: VarBuilder, names: &str, device: &Device, dtype: DType) -> Result<Self> {
        config.weight_prefix = if vb.contains_tensor("thinker.model.embed_tokens.weight") {
            "thinker.".into()
        } else if vb.contains_tensor("model.embed_tokens.weight") {
            String::new()
        } else if config.family.is_text_only() {
            bail!(
                "{names}: tensor `model.embed_tokens.weight` not found: this is not a `{}` checkpoint \
                 (or the weights are missing)",
                config.family.model_type()
            );
        } else {
            bail!(
                "{names}: tensor `thinker.model.embed_tokens.weight` not found: this is not a Qwen2.5-Omni \
                 checkpoint (or the weights are missing)"
            );
        };
        let prefix = config.weight_prefix.trim_end_matches('.').to_string();
        let vb = if prefix.is_empty() { vb } else { vb.pp(&prefix) };
        if !config.tie_word_embeddings && !vb.contains_tensor("lm_head.weight") {
            bail!(
                "{names}: tensor `{}lm_head.weight` is missing and the thinker config has \
                 tie_word_embeddings = false; the checkpoint is incomplete",
                config.weight_prefix
            );
        }
        let text = TextDecoder::load(&config.text, config.tie_word_embeddings, vb.clone())
            .map_err(|e| anyhow::anyhow!("{names}: {e}"))?;
        let audio = match &config.audio {
            Some(cfg) if vb.contains_tensor("audio_tower.conv1.weight") => Some(
                AudioTower::load(cfg, vb.pp("audio_tower")).map_err(|e| anyhow::anyhow!("{names}: {e}"))?,
            ),
            _ => None,
        };
        let vision = match &config.vision {
            Some(cfg) if vb.contains_tensor("visual.patch_embed.proj.weight") => Some(
                VisionTower::load(cfg, vb.pp("visual")).map_err(|e| anyhow::anyhow!("{names}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self { config, text, audio, vision, device: device.clone(), dtype })
    }

    /// A thinker with random weights of the config's sizes (normal, std 0.02; norms at 1, biases
    /// at 0; each tensor's values depend only on `seed` and its name), with both towers when the
    /// config has them: for models trained from scratch, and for benchmarks and device checks at
    /// the real sizes, where no real checkpoint is at hand. Returns the tensors too, by
    /// checkpoint name (without the `thinker.` prefix), so that they can be saved.
    pub fn random(config: ThinkerConfig, seed: u64, device: &Device, dtype: DType) -> Result<(Self, Vec<(String, Tensor)>)> {
        let tied = config.tie_word_embeddings;
        let absent = move |name: &str| name.starts_with("thinker.") || (tied && name == "lm_head.weight");
        let (vb, tensors) = crate::weights::random(seed, absent, dtype, device);
        let thinker = Self::from_var_builder(config, vb, "random weights", device, dtype)?;
        Ok((thinker, tensors.take()))
    }

    pub fn config(&self) -> &ThinkerConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn text_decoder(&self) -> &TextDecoder {
        &self.text
    }

    /// Runs the audio tower over clips; one `[tokens, hidden]` tensor per clip.
    pub fn encode_audio(&self, clips: &[AudioFeatures]) -> Result<Vec<Tensor>> {
        self.encode_audio_pass(clips, false)
    }

    /// [`Self::encode_audio`], through composed (differentiable) ops when `differentiable`.
    fn encode_audio_pass(&self, clips: &[AudioFeatures], differentiable: bool) -> Result<Vec<Tensor>> {
        let tower = self.audio.as_ref().context(
            "this checkpoint has no audio tower (no `audio_config` or no `audio_tower.*` weights), so it cannot take audio",
        )?;
        let n_mels = self.config.audio.as_ref().map_or(128, |a| a.num_mel_bins);
        let mels = clips
            .iter()
            .map(|c| {
                if c.mel.len() != n_mels * c.frames {
                    bail!("audio features hold {} values, expected {n_mels} x {} frames", c.mel.len(), c.frames);
                }
                Ok(Tensor::from_slice(&c.mel, (n_mels, c.frames), &self.device)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(tower.forward(&mels, differentiable)?)
    }

    /// The vision tower's patch embeddings of images (before its blocks), for checks.
    pub fn vision_patch_embeddings(&self, items: &[VisualFeatures]) -> Result<Tensor> {
        let tower = self.vision.as_ref().context("this checkpoint has no vision tower")?;
        let pixels: Vec<f32> = items.iter().flat_map(|v| v.pixel_values.iter().copied()).collect();
        let n: usize = items.iter().map(|v| v.grid.iter().product::<usize>()).sum();
        let row = pixels.len() / n.max(1);
        Ok(tower.patch_embeddings(&Tensor::from_vec(pixels, (n, row), &self.device)?)?)
    }

    /// Runs the vision tower over images (or videos); one tensor of merged tokens for all.
    pub fn encode_visual(&self, items: &[VisualFeatures]) -> Result<Tensor> {
        self.encode_visual_pass(items, false)
    }

    /// [`Self::encode_visual`], through composed (differentiable) ops when `differentiable`.
    fn encode_visual_pass(&self, items: &[VisualFeatures], differentiable: bool) -> Result<Tensor> {
        let tower = self.vision.as_ref().context(
            "this checkpoint has no vision tower (no `vision_config` or no `visual.*` weights), so it cannot take images or video",
        )?;
        let pixels: Vec<f32> = items.iter().flat_map(|v| v.pixel_values.iter().copied()).collect();
        let row = pixels.len() / items.iter().map(|v| v.grid.iter().product::<usize>()).sum::<usize>().max(1);
        let n = pixels.len() / row.max(1);
        let grids: Vec<[usize; 3]> = items.iter().map(|v| v.grid).collect();
        Ok(tower.forward(&Tensor::from_vec(pixels, (n, row), &self.device)?, &grids, differentiable)?)
    }

    /// Token embeddings with the media features scattered into their placeholder positions
    /// (the towers through differentiable ops when `differentiable`).
    fn input_embeddings(&self, batch: &PromptBatch, differentiable: bool) -> Result<Tensor> {
        let (b, l) = (batch.batch_size(), batch.len());
        let ids: Vec<u32> = batch.input_ids.iter().flatten().copied().collect();
        let embeds = self.text.embed(&Tensor::from_vec(ids.clone(), (b, l), &self.device)?)?;
        let n = b * l;
        let h = embeds.dim(2)?;
        let mut index: Vec<u32> = (0..n as u32).collect();
        let mut tables = vec![embeds.reshape((n, h))?];
        let mut next_row = n;
        let t = &self.config.token_ids;
        for (name, token, count) in [
            ("<|AUDIO|>", t.audio, batch.audio.len()),
            ("<|IMAGE|>", t.image, batch.images.len()),
            ("<|VIDEO|>", t.video, batch.videos.len()),
        ] {
            let slots: Vec<usize> = (0..n).filter(|&i| ids[i] == token).collect();
            if slots.is_empty() && count == 0 {
                continue;
            }
            let features = match token {
                x if x == t.audio => Tensor::cat(&self.encode_audio_pass(&batch.audio, differentiable)?, 0)?,
                x if x == t.image => self.encode_visual_pass(&batch.images, differentiable)?,
                _ => self.encode_visual_pass(&batch.videos, differentiable)?,
            }
            .to_dtype(embeds.dtype())?;
            let rows = features.dim(0)?;
            if rows != slots.len() {
                bail!("the prompts hold {} {name} tokens but their {count} media item(s) give {rows} feature rows", slots.len());
            }
            // Slot k of this placeholder takes row k of its features.
            for (k, &slot) in slots.iter().enumerate() {
                index[slot] = (next_row + k) as u32;
            }
            next_row += rows;
            tables.push(features);
        }
        if tables.len() == 1 {
            return Ok(embeds);
        }
        let table = Tensor::cat(&tables, 0)?;
        let index = Tensor::from_vec(index, n, &self.device)?;
        Ok(table.index_select(&index, 0)?.reshape((b, l, h))?)
    }

    /// The 3-D position ids of a batch.
    pub fn position_ids(&self, batch: &PromptBatch) -> Result<PositionIds> {
        let t = &self.config.token_ids;
        let media = MediaLayout {
            image_grids: batch.images.iter().map(|v| v.grid).collect(),
            video_grids: batch.videos.iter().map(|v| v.grid).collect(),
            video_second_per_grid: batch.videos.iter().map(|v| v.second_per_grid).collect(),
            audio_frames: batch.audio.iter().map(|a| a.frames).collect(),
            use_audio_in_video: batch.use_audio_in_video,
        };
        let tokens = PositionTokens {
            image: t.image,
            video: t.video,
            audio: t.audio,
            vision_start: t.vision_start,
            audio_start: t.audio_start,
            spatial_merge: self.config.vision.as_ref().map_or(2, |v| v.spatial_merge_size),
            position_id_per_seconds: self.config.position_id_per_seconds,
            seconds_per_chunk: self.config.seconds_per_chunk,
        };
        PositionIds::multimodal(&batch.input_ids, &batch.attention_mask, &media, &tokens).map_err(|e| anyhow::anyhow!(e))
    }

    /// Encodes a batch of prompts (with their media) once; the returned state continues them.
    pub fn prefill(&self, batch: &PromptBatch, opts: PrefillOptions) -> Result<PrefillOutput> {
        let (b, l) = (batch.batch_size(), batch.len());
        if b == 0 || l == 0 {
            bail!("cannot prefill an empty batch");
        }
        let vocab = self.config.text.vocab_size as u32;
        if let Some(bad) = batch.input_ids.iter().flatten().find(|&&t| t >= vocab) {
            bail!("token id {bad} is outside the model's vocabulary (size {vocab})");
        }
        let embeds = self.input_embeddings(batch, false)?;
        let position_ids = self.position_ids(batch)?;
        let cos_sin = self.text.rotary().cos_sin(&position_ids, self.dtype, &self.device)?;
        let key_valid: Vec<Vec<bool>> = batch.attention_mask.iter().map(|r| r.iter().map(|&m| m != 0).collect()).collect();
        let mask = attention_mask(&key_valid, l, &self.device)?.map(|m| m.to_dtype(DType::F32)).transpose()?;
        let mut cache = self.text.new_cache();
        let mut hidden_states = Vec::new();
        let pass = if opts.base_model { Pass::BASE } else { Pass::INFER };
        let hidden = self.text.forward_pass(
            &embeds,
            &cos_sin,
            mask.as_ref(),
            &mut cache,
            opts.hidden_states.then_some(&mut hidden_states),
            pass,
        )?;
        let (logits, next_logits) = if opts.all_logits {
            let all = self.text.logits(&hidden)?;
            let last = all.narrow(1, l - 1, 1)?.squeeze(1)?;
            (Some(all), last)
        } else {
            (None, self.text.logits(&hidden.narrow(1, l - 1, 1)?)?.squeeze(1)?)
        };
        let n_valid = key_valid.iter().map(|r| r.iter().filter(|&&v| v).count()).collect();
        let state = PromptState {
            prefix: cache,
            prefix_mask: prefix_padding_mask(&key_valid, &self.device)?,
            prefix_valid: key_valid,
            suffix: self.text.new_suffix_cache(),
            groups: (0..b).collect(),
            n_valid,
            rope_deltas: position_ids.rope_deltas.clone(),
            next_logits,
            pass,
        };
        Ok(PrefillOutput { state, position_ids, embeds, logits, hidden_states })
    }

    /// Appends one token per sequence and updates `state.next_logits`.
    pub fn decode_step(&self, state: &mut PromptState, tokens: &[u32]) -> Result<()> {
        let b = state.batch_size();
        if tokens.len() != b {
            bail!("decode_step got {} tokens for {} sequences", tokens.len(), b);
        }
        let ids = Tensor::from_vec(tokens.to_vec(), (b, 1), &self.device)?;
        let embeds = self.text.embed(&ids)?;
        // Under left padding the next position is (real tokens so far) + rope delta.
        let mut ids3 = Vec::with_capacity(3 * b);
        for _row in 0..3 {
            for i in 0..b {
                ids3.push(state.n_valid[i] as i64 + state.rope_deltas[i]);
            }
        }
        let positions = PositionIds { batch: b, len: 1, ids: ids3, rope_deltas: state.rope_deltas.clone() };
        let cos_sin = self.text.rotary().cos_sin(&positions, self.dtype, &self.device)?;
        state.n_valid.iter_mut().for_each(|n| *n += 1);
        let layout = GroupLayout::new(&state.groups, state.prompt_count(), &self.device)?;
        let hidden = self.text.forward_decode(
            &embeds,
            &cos_sin,
            &state.prefix,
            state.prefix_mask.as_ref(),
            &mut state.suffix,
            &layout,
            state.pass,
        )?;
        state.next_logits = self.text.logits(&hidden)?.squeeze(1)?;
        Ok(())
    }

    /// The decoder's projections LoRA and full fine-tuning train, with their checkpoint path
    /// (`thinker.model.layers.N.self_attn.q_proj`) and PEFT module name (`q_proj`, ...).
    pub fn decoder_projections_mut(&mut self) -> Vec<(String, &'static str, &mut crate::nn::Linear)> {
        let prefix = self.config.weight_prefix.clone();
        self.text.adaptable_mut().into_iter().map(|(path, module, linear)| (format!("{prefix}{path}"), module, linear)).collect()
    }

    /// Log-probabilities of the last `completion_lens[b]` tokens of each (left-padded) sequence
    /// of `batch`, each given everything before it, with the media through the towers: the
    /// whole forward under `pass` (differentiable for supervised fine-tuning). Returns `[B, T]`
    /// tensors (`T` = the longest completion; each row right-aligned): the log-probabilities,
    /// the mask of completion tokens, and 1 where the token is the model's first choice.
    pub fn completion_logprobs(&self, batch: &PromptBatch, completion_lens: &[usize], pass: Pass) -> Result<CompletionLogprobs> {
        let (b, l) = (batch.batch_size(), batch.len());
        if completion_lens.len() != b {
            bail!("{} completion lengths for {b} sequences", completion_lens.len());
        }
        let t = completion_lens.iter().copied().max().unwrap_or(0);
        let shortest_prompt = batch.attention_mask.iter().zip(completion_lens).map(|(m, c)| m.iter().filter(|&&v| v != 0).count().saturating_sub(*c)).min().unwrap_or(0);
        if t == 0 || shortest_prompt == 0 {
            bail!("every sequence needs at least one prompt token and one completion token");
        }
        let embeds = self.input_embeddings(batch, pass.differentiable)?;
        let position_ids = self.position_ids(batch)?;
        let cos_sin = self.text.rotary().cos_sin(&position_ids, self.dtype, &self.device)?;
        let key_valid: Vec<Vec<bool>> = batch.attention_mask.iter().map(|r| r.iter().map(|&m| m != 0).collect()).collect();
        let mask = attention_mask(&key_valid, l, &self.device)?;
        let hidden = self.text.forward_pass(&embeds, &cos_sin, mask.as_ref(), &mut self.text.new_cache(), None, pass)?;
        // Position l - 1 - t + k predicts token l - t + k.
        let logits = self.text.logits(&hidden.narrow(1, l - 1 - t, t)?)?;
        let logp_all = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
        let targets: Vec<u32> = batch.input_ids.iter().flat_map(|r| r[l - t..].to_vec()).collect();
        let targets = Tensor::from_vec(targets, (b, t, 1), &self.device)?;
        let logp = logp_all.gather(&targets, 2)?.squeeze(2)?;
        let top1 = logits.detach().argmax(candle_core::D::Minus1)?.eq(&targets.squeeze(2)?)?.to_dtype(logp.dtype())?;
        let mask: Vec<f32> = completion_lens.iter().flat_map(|&c| (0..t).map(move |k| if k >= t - c { 1.0 } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?.to_dtype(logp.dtype())?;
        Ok(CompletionLogprobs { logp, mask, top1 })
    }

    /// Log-probabilities (and entropies) of `answers` after one prompt (its [`PromptContext`]),
    /// through the differentiable forward: `[n, T]` each, with a `[n, T]` mask of real
    /// (unpadded) answer tokens. Logits are divided by `temperature` first. The prompt runs once
    /// for all the answers, which read its keys and values from one copy
    /// ([`TextDecoder::forward_continuations`]); the result equals running each prompt + answer
    /// on its own. The whole graph is kept: see [`Self::answer_logprobs_kept`] for the update
    /// that recomputes it a layer at a time.
    pub fn answer_logprobs(
        &self,
        prompt: &PromptContext,
        answers: &[Vec<u32>],
        temperature: f32,
        pass: Pass,
    ) -> Result<AnswerLogprobs> {
        let x = self.continuation_inputs(prompt, answers)?;
        let (prompt_last, hidden) = self.text.forward_continuations(
            &prompt.embeds.detach(),
            &x.prompt_rope,
            &self.text.embed(&x.ids)?,
            &x.answer_rope,
            x.answer_mask.as_ref(),
            pass,
        )?;
        let (logp, entropy) = self.answer_head(&prompt_last, &hidden, &x.ids, 0, x.t, temperature)?;
        Ok(AnswerLogprobs { logp, entropy, mask: x.mask })
    }

    /// [`Self::answer_logprobs`] without a graph (values only), keeping what
    /// [`Self::backward_answer_logprobs`] needs to back-propagate through it later one decoder
    /// layer at a time: the inputs of every layer ([`LayerInputs`]). The full-vocabulary logits
    /// are made `logits_chunk` answer tokens at a time (all the answers' tokens counted), so they
    /// never exist for all the tokens at once.
    pub fn answer_logprobs_kept(
        &self,
        prompt: &PromptContext,
        answers: &[Vec<u32>],
        temperature: f32,
        pass: Pass,
        logits_chunk: usize,
    ) -> Result<(AnswerLogprobs, KeptForward)> {
        let x = self.continuation_inputs(prompt, answers)?;
        let kept = self.text.forward_continuations_kept(
            &prompt.embeds,
            &x.prompt_rope,
            &self.text.embed(&x.ids)?.detach(),
            &x.answer_rope,
            x.answer_mask.as_ref(),
            pass,
        )?;
        let (xp, xa) = kept.last();
        let (prompt_last, hidden) = self.text.continuation_heads(xp, xa, pass)?;
        let cols = token_chunk_columns(logits_chunk, answers.len());
        let (mut logp, mut entropy) = (Vec::new(), Vec::new());
        for k0 in (0..x.t).step_by(cols) {
            let k1 = (k0 + cols).min(x.t);
            let (l, e) = self.answer_head(&prompt_last, &hidden, &x.ids, k0, k1, temperature)?;
            logp.push(l.detach());
            entropy.push(e.detach());
        }
        let values = AnswerLogprobs { logp: Tensor::cat(&logp, 1)?, entropy: Tensor::cat(&entropy, 1)?, mask: x.mask.clone() };
        Ok((values, KeptForward { inputs: x, layers: kept, temperature, pass, cols }))
    }

    /// The backward pass of an [`Self::answer_logprobs_kept`] forward, given the gradient of
    /// the loss with respect to its log-probabilities (`grad_logp`, `[n, T]`) and, when the
    /// loss uses them, its entropies: the head (final norm, lm_head, log-softmax) runs again a
    /// token chunk at a time, then each decoder layer is recomputed from its kept inputs, from
    /// the last, and back-propagated on its own (see [`TextDecoder::backward_continuations`]),
    /// then the answers' embeddings. `collect` receives each piece's gradients; together they
    /// are the gradients of the whole forward (the prompt's embeddings, which come from the
    /// rollout, get none).
    pub fn backward_answer_logprobs(
        &self,
        kept: &KeptForward,
        grad_logp: &Tensor,
        grad_entropy: Option<&Tensor>,
        mut collect: impl FnMut(&candle_core::backprop::GradStore) -> candle_core::Result<()>,
    ) -> Result<()> {
        let x = &kept.inputs;
        let (xp, xa) = kept.layers.last();
        let (vp, va) = (Var::from_tensor(xp)?, Var::from_tensor(xa)?);
        let (mut gp, mut ga) = (xp.zeros_like()?, xa.zeros_like()?);
        for k0 in (0..x.t).step_by(kept.cols) {
            let k1 = (k0 + kept.cols).min(x.t);
            let (prompt_last, hidden) = self.text.continuation_heads(vp.as_tensor(), va.as_tensor(), kept.pass)?;
            let (logp, entropy) = self.answer_head(&prompt_last, &hidden, &x.ids, k0, k1, kept.temperature)?;
            let mut surrogate = (logp * grad_logp.narrow(1, k0, k1 - k0)?)?.sum_all()?;
            if let Some(ge) = grad_entropy {
                surrogate = (surrogate + (entropy * ge.narrow(1, k0, k1 - k0)?)?.sum_all()?)?;
            }
            let grads = surrogate.backward()?;
            collect(&grads)?;
            if let Some(g) = grads.get(vp.as_tensor()) {
                gp = (gp + g)?;
            }
            if let Some(g) = grads.get(va.as_tensor()) {
                ga = (ga + g)?;
            }
        }
        let (_, ga) = self.text.backward_continuations(
            &kept.layers,
            &x.prompt_rope,
            &x.answer_rope,
            x.answer_mask.as_ref(),
            kept.pass,
            (gp, ga),
            &mut collect,
        )?;
        // Trainable embeddings (full fine-tuning of every tensor) take the first layer's.
        let embeds = self.text.embed(&x.ids)?;
        Ok(collect(&(embeds * ga)?.sum_all()?.backward()?)?)
    }

    /// The ids, rotary tables and masks of `answers` after `prompt`, as the shared-prompt
    /// forward takes them.
    fn continuation_inputs(&self, prompt: &PromptContext, answers: &[Vec<u32>]) -> Result<ContinuationBatch> {
        let n = answers.len();
        let t = answers.iter().map(|a| a.len()).max().unwrap_or(0);
        if n == 0 || t == 0 {
            bail!("no answer tokens to score");
        }
        let lp = prompt.embeds.dim(1)?;
        let pad = 0u32;
        let ids: Vec<u32> = answers.iter().flat_map(|a| a.iter().copied().chain(std::iter::repeat(pad).take(t - a.len()))).collect();
        let ids = Tensor::from_vec(ids, (n, t), &self.device)?;
        // Positions: the prompt's (3-D), then the answers continuing from the prompt.
        let mut pos = vec![0i64; 3 * lp];
        for row in 0..3 {
            for l in 0..lp {
                pos[row * lp + l] = prompt.positions[l][row];
            }
        }
        let prompt_positions = PositionIds { batch: 1, len: lp, ids: pos, rope_deltas: vec![0] };
        let start = prompt.next_position;
        let answer_pos: Vec<i64> = (0..3 * n).flat_map(|_| (0..t).map(|k| start + k as i64)).collect();
        let answer_positions = PositionIds { batch: n, len: t, ids: answer_pos, rope_deltas: vec![0; n] };
        let rotary = self.text.rotary();
        let prompt_rope = rotary.cos_sin(&prompt_positions, self.dtype, &self.device)?;
        let answer_rope = rotary.cos_sin(&answer_positions, self.dtype, &self.device)?;
        let key_valid: Vec<Vec<bool>> = answers.iter().map(|a| (0..t).map(|k| k < a.len()).collect()).collect();
        let answer_mask = attention_mask(&key_valid, t, &self.device)?;
        let mask: Vec<f32> = answers.iter().flat_map(|a| (0..t).map(move |k| if k < a.len() { 1.0 } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (n, t), &self.device)?.to_dtype(accumulation_dtype(self.dtype))?;
        Ok(ContinuationBatch { ids, t, prompt_rope, answer_rope, answer_mask, mask })
    }

    /// Log-probabilities and entropies `[n, k1 - k0]` of answer tokens `k0..k1`, from the
    /// final-normed hidden states of the prompt's last token and of the answers: the prompt's
    /// last token predicts answer token 0, answer token k - 1 predicts token k.
    fn answer_head(&self, prompt_last: &Tensor, hidden: &Tensor, ids: &Tensor, k0: usize, k1: usize, temperature: f32) -> Result<(Tensor, Tensor)> {
        let n = hidden.dim(0)?;
        let predicting = if k0 == 0 {
            let first = prompt_last.broadcast_as((n, 1, prompt_last.dim(2)?))?;
            if k1 == 1 {
                first.contiguous()?
            } else {
                Tensor::cat(&[&first, &hidden.narrow(1, 0, k1 - 1)?], 1)?
            }
        } else {
            hidden.narrow(1, k0 - 1, k1 - k0)?
        };
        let logits = (self.text.logits(&predicting)? / temperature as f64)?;
        let logp_all = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
        let logp = logp_all.gather(&ids.narrow(1, k0, k1 - k0)?.contiguous()?.unsqueeze(2)?, 2)?.squeeze(2)?;
        let entropy = (logp_all.exp()? * &logp_all)?.sum(candle_core::D::Minus1)?.neg()?;
        Ok((logp, entropy))
    }
}

/// Answer ids `[n, T]` (right-padded), the rotary tables of the prompt and of the answers, the
/// answers' causal mask, and the `[n, T]` mask of real tokens.
pub struct ContinuationBatch {
    ids: Tensor,
    t: usize,
    prompt_rope: (Tensor, Tensor),
    answer_rope: (Tensor, Tensor),
    answer_mask: Option<Tensor>,
    mask: Tensor,
}

/// What [`Thinker::answer_logprobs_kept`] keeps for [`Thinker::backward_answer_logprobs`].
pub struct KeptForward {
    inputs: ContinuationBatch,
    layers: LayerInputs,
    temperature: f32,
    pass: Pass,
    /// Answer tokens (columns) per head chunk.
    cols: usize,
}

impl KeptForward {
    /// Bytes of the kept layer inputs.
    pub fn bytes(&self) -> usize {
        self.layers.bytes()
    }
}

/// Columns of `[n, T]` answer tokens per chunk so that a chunk holds about `chunk_tokens` tokens
/// (at least one column).
fn token_chunk_columns(chunk_tokens: usize, n: usize) -> usize {
    (chunk_tokens / n.max(1)).max(1)
}

/// Reads a safetensors header so that a truncated or corrupt file gives an error naming it
/// (instead of a failure deep inside the mmap loader).
fn check_safetensors_header(path: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open weights file {}", path.display()))?;
    let file_len = f.metadata()?.len();
    let mut len_bytes = [0u8; 8];
    f.read_exact(&mut len_bytes)
        .with_context(|| format!("{} is not a safetensors file (shorter than its header)", path.display()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) || header_len > 100_000_000 {
        bail!("{} is not a valid safetensors file (header length {header_len} exceeds the file)", path.display());
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header)?;
    let meta: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{} has a corrupt safetensors header", path.display()))?;
    let data_len = file_len - 8 - header_len;
    if let Some(map) = meta.as_object() {
        for (name, info) in map {
            if name == "__metadata__" {
                continue;
            }
            let end = info.get("data_offsets").and_then(|o| o.get(1)).and_then(|v| v.as_u64()).unwrap_or(0);
            if end > data_len {
                bail!(
                    "{} is truncated: tensor `{name}` ends at byte {end} of the data section, which holds {data_len} bytes",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
