//! `ttrav sft`: supervised fine-tuning on labelled items, cross-entropy on the answer tokens
//! only (the prompt, its media and the padding carry no loss).
//!
//! The completion an item teaches is its `response` when the data has one, else its answer as
//! the model should write it: `\boxed{X}` for multiple choice and math, the reference text for
//! open-ended items; then `<|im_end|>`. Full
//! fine-tuning (the default) trains every tensor of the checkpoint, both towers and their
//! projections included, through the differentiable forward; `--lora-rank` trains LoRA adapters
//! on the decoder instead. The run shares adapt's machinery: AdamW with f32 moments, the cosine
//! schedule, gradient clipping, `metrics.jsonl`, the progress bar, atomic checkpoints and exact
//! resume. Items without an answer, with media that cannot be read or over the token limit are
//! reported and skipped (and counted); a file with nothing usable is an error.

use super::checkpoint::{self, AdapterConfig};
use super::optim::{AdamW, AdamWConfig};
use super::run::{check_resume, progress_bar, reopen_metrics, write_metrics, DataCursor, DataPosition, Fingerprint, METRICS};
use crate::data::{load_dataset, Item, TaskKind};
use crate::hub::ModelSource;
use crate::nn::Pass;
use crate::omni::prompt::Processor;
use crate::omni::thinker::{EncodedPrompt, PromptBatch, Thinker};
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything an SFT run is configured with (saved in the checkpoint and in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftConfig {
    pub model: String,
    pub data: PathBuf,
    pub media_root: Option<PathBuf>,
    pub out: PathBuf,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    /// 0 = full fine-tuning.
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_targets: Vec<String>,
    pub lora_dropout: f32,
    pub max_tokens: usize,
    pub system: Option<String>,
    pub seed: u64,
    pub save_every: usize,
}

/// One line of the SFT run's metrics.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct SftMetrics {
    pub step: usize,
    /// Mean cross-entropy per answer token.
    pub loss: f64,
    /// Share of answer tokens the model ranks first.
    pub token_accuracy: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub examples: usize,
    pub answer_tokens: usize,
    pub skipped_items: usize,
    pub skip_reasons: Vec<String>,
    pub update_skipped: Option<String>,
    pub step_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SftState {
    step: usize,
    optimizer_step: usize,
    position: DataPosition,
    metrics_lines: usize,
    data: Fingerprint,
    /// Items skipped when the file was read (reported once, counted in the summary).
    skipped_at_load: usize,
    config: SftConfig,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct SftSummary {
    pub metrics: Vec<SftMetrics>,
    pub skipped_at_load: usize,
    /// The complete fine-tuned model (full fine-tuning) or the adapter (LoRA).
    pub output: PathBuf,
}

/// The completion an item teaches (without the end-of-turn token): its `response` when the data
/// gives one, else its answer as the model should write it.
pub fn completion_text(item: &Item) -> Option<String> {
    if let Some(r) = item.response.as_deref().filter(|r| !r.trim().is_empty()) {
        return Some(r.to_string());
    }
    let answer = item.answer.as_deref()?.trim();
    if answer.is_empty() {
        return None;
    }
    Some(match item.kind {
        TaskKind::MultipleChoice | TaskKind::Math => format!("\\boxed{{{answer}}}"),
        TaskKind::OpenEnded => answer.to_string(),
    })
}

/// What is trained.
enum Trained {
    Full(Vec<(String, Var)>),
    Lora(Vec<(String, std::sync::Arc<crate::nn::Lora>)>, AdapterConfig),
}

impl Trained {
    fn params(&self) -> Vec<(String, Var)> {
        match self {
            Trained::Full(p) => p.clone(),
            Trained::Lora(a, _) => super::adapt::params_of(a),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Trained::Full(p) => save_params(&dir.join("model.safetensors"), p),
            Trained::Lora(a, cfg) => checkpoint::save_adapter(dir, a, cfg),
        }
    }
}

fn save_params(path: &Path, params: &[(String, Var)]) -> Result<()> {
    let t: std::collections::HashMap<String, Tensor> =
        params.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&candle_core::Device::Cpu)?))).collect::<Result<_>>()?;
    candle_core::safetensors::save(&t, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs (or, with `resume`, continues) supervised fine-tuning.
pub fn run(cfg: SftConfig, resume: Option<&Path>, allow_changes: bool, device: &candle_core::Device, quiet: bool) -> Result<SftSummary> {
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let source = ModelSource::resolve(&cfg.model)?;
    let processor = Processor::load(&source)?;
    let dataset = load_dataset(&cfg.data, None, cfg.media_root.as_deref())?;
    for s in &dataset.skipped {
        eprintln!("skipped {s}");
    }
    let mut skipped_at_load = dataset.skipped.len();
    let mut items: Vec<(&Item, String)> = Vec::new();
    for item in &dataset.items {
        match completion_text(item) {
            Some(c) => items.push((item, c)),
            None => {
                eprintln!("skipped {}: no answer to learn", item.id);
                skipped_at_load += 1;
            }
        }
    }
    if items.is_empty() {
        bail!("{} holds no item with an answer to learn ({skipped_at_load} skipped)", cfg.data.display());
    }
    let fingerprint = Fingerprint::of_file(&cfg.data)?;

    // The model and what is trained: fresh, or from the checkpoint.
    let (thinker, trained) = if cfg.lora_rank == 0 {
        let (thinker, params) = Thinker::load_trainable(&source, device, candle_core::DType::F32)?;
        (thinker, Trained::Full(params))
    } else {
        let mut thinker = Thinker::load(&source, device, crate::dtype_from_name(None, device)?)?;
        let adapters = super::lora::attach_lora(&mut thinker, cfg.lora_rank, cfg.lora_alpha, &cfg.lora_targets, 0.0, &mut crate::sampling::Rng::seed(cfg.seed))?;
        super::lora::set_lora_dropout(&mut thinker, cfg.lora_dropout)?;
        let acfg = AdapterConfig {
            peft_type: "LORA".into(),
            r: cfg.lora_rank,
            lora_alpha: cfg.lora_alpha,
            lora_dropout: cfg.lora_dropout as f64,
            target_modules: cfg.lora_targets.clone(),
            bias: "none".into(),
            task_type: "CAUSAL_LM".into(),
            base_model_name_or_path: Some(cfg.model.clone()),
            inference_mode: false,
        };
        (thinker, Trained::Lora(adapters, acfg))
    };
    let params = trained.params();
    let adamw = AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, warmup_steps: cfg.warmup_steps, total_steps: cfg.steps, ..Default::default() };
    let mut opt = AdamW::new(adamw, params.clone())?;
    let checkpoint_dir = cfg.out.join("checkpoint");
    let resume = resume.map(|d| checkpoint::find_checkpoint(d).with_context(|| format!("no checkpoint to resume from in {}", d.display()))).transpose()?;
    let mut state = match &resume {
        Some(dir) => {
            let path = dir.join("state.json");
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let st: SftState = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
            check_resume(dir, &st.config, &cfg, &["steps", "out", "save_every"], Some((&st.data, &fingerprint, &cfg.data)), allow_changes)?;
            match &trained {
                Trained::Full(p) => checkpoint::set_params(&dir.join("model.safetensors"), p)?,
                Trained::Lora(..) => checkpoint::set_params(&dir.join("adapter_model.safetensors"), &params)?,
            }
            let (m, v) = checkpoint::load_moments(&dir.join("optimizer.safetensors"), &opt.params, device)?;
            (opt.m, opt.v, opt.step) = (m, v, st.optimizer_step);
            if !quiet {
                eprintln!("resuming from {} at step {}", dir.display(), st.step);
            }
            SftState { config: cfg.clone(), ..st }
        }
        None => SftState { step: 0, optimizer_step: 0, position: DataPosition::default(), metrics_lines: 0, data: fingerprint, skipped_at_load, config: cfg.clone() },
    };
    std::fs::write(cfg.out.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    let (mut all, mut metrics_file) = reopen_metrics::<SftMetrics>(&cfg.out.join(METRICS), state.metrics_lines, resume.as_deref())?;
    let progress = progress_bar(cfg.steps, state.step, quiet);
    let mut cursor = DataCursor::new(items.len(), cfg.seed, state.position);
    let pad = processor.tokenizer.end_of_text;

    while state.step < cfg.steps {
        let t0 = Instant::now();
        let mut m = SftMetrics { step: state.step + 1, ..Default::default() };
        // The next batch: prompt (with media) + completion tokens; bad items reported and skipped.
        let (batch, lens) = next_examples(&processor, &items, &mut cursor, &cfg, &mut m)?;
        m.skipped_items = m.skip_reasons.len();
        // Cross-entropy on the answer tokens, backward, clip, AdamW.
        let prompts = PromptBatch::from_prompts(&batch, pad)?;
        let pass = Pass { dropout_seed: Some(cfg.seed.wrapping_mul(0x9E37_79B9).wrapping_add(state.step as u64)), ..Pass::TRAIN };
        let out = thinker.completion_logprobs(&prompts, &lens, pass)?;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(t.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?) };
        let tokens = scalar(&out.mask)?;
        let loss = ((&out.logp * &out.mask)?.sum_all()? * (-1.0 / tokens))?;
        m.loss = scalar(&loss)?;
        m.examples = batch.len();
        m.answer_tokens = tokens as usize;
        m.token_accuracy = scalar(&(&out.top1 * &out.mask)?)? / tokens;
        if m.loss.is_finite() {
            let grads = loss.backward()?;
            let g: Vec<Tensor> = opt
                .params
                .iter()
                .map(|(_, p)| grads.get(p.as_tensor()).cloned().map_or_else(|| p.as_tensor().zeros_like(), Ok))
                .collect::<candle_core::Result<_>>()?;
            match opt.step(&g, cfg.grad_clip) {
                Ok((norm, lr)) => (m.grad_norm, m.lr) = (norm, lr),
                Err(e) => m.update_skipped = Some(e.to_string()),
            }
        } else {
            m.update_skipped = Some(format!("non-finite loss ({}); the optimizer state is untouched", m.loss));
        }
        m.step_s = t0.elapsed().as_secs_f64();
        for r in &m.skip_reasons {
            progress.println(format!("step {}: skipped {r}", m.step));
        }
        writeln!(metrics_file, "{}", serde_json::to_string(&m)?)?;
        metrics_file.flush()?;
        (state.step, state.metrics_lines) = (state.step + 1, state.metrics_lines + 1);
        progress.set_message(format!("loss {:.4}", m.loss));
        progress.set_position(state.step as u64);
        all.push(m);
        if state.step % cfg.save_every.max(1) == 0 || state.step == cfg.steps {
            (state.position, state.optimizer_step) = (cursor.position, opt.step);
            checkpoint::write_atomically(&checkpoint_dir, |tmp| {
                write_metrics(&tmp.join(METRICS), &all)?;
                trained.save(tmp)?;
                checkpoint::save_moments(&tmp.join("optimizer.safetensors"), &opt.m, &opt.v)?;
                std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)?)?;
                Ok(())
            })?;
        }
    }
    progress.finish_and_clear();
    let output = match &trained {
        Trained::Full(p) => export_model(&source, p, &cfg.out.join("model"))?,
        Trained::Lora(..) => checkpoint_dir.clone(),
    };
    Ok(SftSummary { metrics: all, skipped_at_load: state.skipped_at_load, output })
}

/// The next batch of examples: at most one epoch's batches are tried before a file whose items
/// all fail is an error.
fn next_examples(
    processor: &Processor,
    items: &[(&Item, String)],
    cursor: &mut DataCursor,
    cfg: &SftConfig,
    m: &mut SftMetrics,
) -> Result<(Vec<EncodedPrompt>, Vec<usize>)> {
    let (im_end, mut batch, mut lens) = (processor.tokenizer.im_end, Vec::new(), Vec::new());
    for _ in 0..=items.len() / cfg.batch_size.max(1) + 1 {
        for i in cursor.next_batch(cfg.batch_size) {
            let (item, completion) = &items[i];
            match encode_example(processor, item, completion, im_end, cfg.system.as_deref(), cfg.max_tokens) {
                Ok((p, n)) => {
                    batch.push(p);
                    lens.push(n);
                }
                Err(e) => m.skip_reasons.push(format!("{}: {e:#}", item.id)),
            }
        }
        if !batch.is_empty() {
            return Ok((batch, lens));
        }
    }
    bail!("no item of {} can be used (the first reason: {})", cfg.data.display(), m.skip_reasons.first().map_or("none", String::as_str))
}

/// The prompt of an item followed by its completion and `<|im_end|>`; returns the sequence and
/// the number of completion tokens.
fn encode_example(processor: &Processor, item: &Item, completion: &str, im_end: u32, system: Option<&str>, max_tokens: usize) -> Result<(EncodedPrompt, usize)> {
    let mut p = processor.encode_chat(&super::adapt::item_messages(item, system))?;
    let mut answer = processor.tokenizer.encode(completion)?;
    answer.push(im_end);
    if p.input_ids.len() + answer.len() > max_tokens {
        bail!("prompt and answer have {} tokens, over --max-tokens {max_tokens}", p.input_ids.len() + answer.len());
    }
    let n = answer.len();
    p.input_ids.extend(answer);
    Ok((p, n))
}

/// Writes a complete model directory: the source's config, tokenizer and processor files, and
/// the fine-tuned weights as `model.safetensors`.
pub fn export_model(source: &ModelSource, params: &[(String, Var)], dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in MODEL_SIDE_FILES {
        if let Some(path) = source.get_optional(name)? {
            std::fs::copy(&path, dir.join(name)).with_context(|| format!("cannot copy {} into {}", path.display(), dir.display()))?;
        }
    }
    save_params(&dir.join("model.safetensors"), params)?;
    Ok(dir.to_path_buf())
}

/// The files of a model directory besides its weights.
pub const MODEL_SIDE_FILES: [&str; 8] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];
