//! The thinker: loads the checkpoint and runs prompts through it.
//!
//! `prefill` encodes a (left-padded) batch of prompts once and returns a [`PromptState`] holding
//! the key/value cache; `decode_step` extends it by one token per sequence. A state can be
//! forked so that one prompt's prefill serves many sampled continuations.

use crate::hub::ModelSource;
use crate::omni::config::ThinkerConfig;
use crate::omni::rope::PositionIds;
use crate::omni::text::{attention_mask, KvCache, TextDecoder};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::PathBuf;

/// A batch of tokenised prompts, left-padded to one length.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptBatch {
    pub input_ids: Vec<Vec<u32>>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
}

impl PromptBatch {
    /// Left-pads prompts of different lengths with `pad_id`.
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
        Ok(Self { input_ids, attention_mask })
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

/// What a prefill keeps for decoding: the cache, which cached slots are real tokens, and the
/// rotary position bookkeeping, plus the logits for the next token.
#[derive(Debug, Clone)]
pub struct PromptState {
    pub cache: KvCache,
    /// Per sequence, per cached slot: false for padding.
    pub key_valid: Vec<Vec<bool>>,
    /// Per sequence: real tokens seen so far.
    pub n_valid: Vec<usize>,
    /// Per sequence: `max(position) + 1 - n_valid` after the prompt.
    pub rope_deltas: Vec<i64>,
    /// Logits for the next token, `[B, V]`, f32.
    pub next_logits: Tensor,
}

impl PromptState {
    pub fn batch_size(&self) -> usize {
        self.n_valid.len()
    }

    /// A state whose sequence `i` continues this state's sequence `rows[i]`.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        let device = self.next_logits.device();
        let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), device)?;
        Ok(Self {
            cache: self.cache.select_rows(&idx)?,
            key_valid: rows.iter().map(|&r| self.key_valid[r].clone()).collect(),
            n_valid: rows.iter().map(|&r| self.n_valid[r]).collect(),
            rope_deltas: rows.iter().map(|&r| self.rope_deltas[r]).collect(),
            next_logits: self.next_logits.index_select(&idx, 0)?,
        })
    }

    /// Repeats every sequence `n` times (sequence `b` becomes rows `b*n .. b*n+n`), sharing the
    /// prompt's prefill among `n` continuations.
    pub fn fork(&self, n: usize) -> Result<Self> {
        let rows: Vec<usize> = (0..self.batch_size()).flat_map(|b| std::iter::repeat(b).take(n)).collect();
        self.select_rows(&rows)
    }
}

/// Options for a prefill.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrefillOptions {
    /// Return the logits of every position (parity checks), not only the last.
    pub all_logits: bool,
    /// Return the hidden states as transformers' `output_hidden_states` numbers them.
    pub hidden_states: bool,
}

/// The outputs of a prefill.
#[derive(Debug)]
pub struct PrefillOutput {
    pub state: PromptState,
    pub position_ids: PositionIds,
    /// `[B, L, V]` when requested.
    pub logits: Option<Tensor>,
    pub hidden_states: Vec<Tensor>,
}

/// A loaded Qwen2.5-Omni thinker.
#[derive(Debug)]
pub struct Thinker {
    config: ThinkerConfig,
    text: TextDecoder,
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
    pub fn from_files(mut config: ThinkerConfig, files: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        let names = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
        for f in files {
            check_safetensors_header(f)?;
        }
        // SAFETY: the files are memory-mapped read-only; ttrav never writes to them while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .with_context(|| format!("cannot read weights from {names}"))?;
        config.weight_prefix = if vb.contains_tensor("thinker.model.embed_tokens.weight") {
            "thinker.".into()
        } else if vb.contains_tensor("model.embed_tokens.weight") {
            String::new()
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
        let text = TextDecoder::load(&config.text, config.tie_word_embeddings, vb)
            .map_err(|e| anyhow::anyhow!("{names}: {e}"))?;
        Ok(Self { config, text, device: device.clone(), dtype })
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

    /// Encodes a batch of text prompts once; the returned state continues them.
    pub fn prefill(&self, batch: &PromptBatch, opts: PrefillOptions) -> Result<PrefillOutput> {
        let (b, l) = (batch.batch_size(), batch.len());
        if b == 0 || l == 0 {
            bail!("cannot prefill an empty batch");
        }
        let vocab = self.config.text.vocab_size as u32;
        if let Some(bad) = batch.input_ids.iter().flatten().find(|&&t| t >= vocab) {
            bail!("token id {bad} is outside the model's vocabulary (size {vocab})");
        }
        for (i, t) in [self.config.token_ids.audio, self.config.token_ids.image, self.config.token_ids.video]
            .iter()
            .enumerate()
        {
            if batch.input_ids.iter().flatten().any(|x| x == t) {
                let what = ["audio", "image", "video"][i];
                bail!("the prompt holds {what} placeholder tokens, but {what} input is not supported yet");
            }
        }
        let ids: Vec<u32> = batch.input_ids.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let embeds = self.text.embed(&ids)?;
        let position_ids = PositionIds::sequential(&batch.attention_mask);
        let cos_sin = self.text.rotary().cos_sin(&position_ids, self.dtype, &self.device)?;
        let key_valid: Vec<Vec<bool>> = batch.attention_mask.iter().map(|r| r.iter().map(|&m| m != 0).collect()).collect();
        let mask = attention_mask(&key_valid, l, &self.device)?.map(|m| m.to_dtype(DType::F32)).transpose()?;
        let mut cache = self.text.new_cache();
        let mut hidden_states = Vec::new();
        let hidden = self.text.forward(
            &embeds,
            &cos_sin,
            mask.as_ref(),
            &mut cache,
            opts.hidden_states.then_some(&mut hidden_states),
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
            cache,
            key_valid,
            n_valid,
            rope_deltas: position_ids.rope_deltas.clone(),
            next_logits,
        };
        Ok(PrefillOutput { state, position_ids, logits, hidden_states })
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
        for (valid, n) in state.key_valid.iter_mut().zip(state.n_valid.iter_mut()) {
            valid.push(true);
            *n += 1;
        }
        let mask = attention_mask(&state.key_valid, 1, &self.device)?;
        let hidden = self.text.forward(&embeds, &cos_sin, mask.as_ref(), &mut state.cache, None)?;
        state.next_logits = self.text.logits(&hidden)?.squeeze(1)?;
        Ok(())
    }
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
