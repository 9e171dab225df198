//! `ttrav adapt`: the test-time RL run.
//!
//! Per step: take the next questions (the data shuffled per epoch from the seed), encode each
//! prompt with its media, prefill them together once and sample `n_votes` answers to each from
//! the shared prefill (one batch for the step), score them with
//! the label-free reward, train on `n_samples` of them with GRPO + LoRA, log a metrics line, and
//! every `save_every` steps write a checkpoint atomically. A bad item (missing media, unreadable
//! line, over-long prompt) is reported and skipped; the run goes on. `--resume` continues from
//! the last checkpoint and gives the same result as a run that was never interrupted.

use super::checkpoint::{self, AdapterConfig};
use super::grpo::{AdvantageKind, KlKind, LossAgg, LossConfig};
use super::optim::{AdamW, AdamWConfig};
use super::trainer::{rollout_batch, update, TrainGroup, UpdateConfig};
use crate::data::{load_dataset, Item, TaskKind};
use crate::embed::Encoder;
use crate::hub::ModelSource;
use crate::nn::Lora;
use crate::omni::generate::GenerationConfig;
use crate::omni::prompt::{ContentItem, Message, Processor};
use crate::omni::thinker::Thinker;
use crate::reward::{self, Group, Mode, RewardState};
use crate::sampling::{Rng, Sampling};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything a run is configured with (saved in the checkpoint and in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptConfig {
    pub model: String,
    pub data: PathBuf,
    pub media_root: Option<PathBuf>,
    pub out: PathBuf,
    pub reward: String,
    pub variant: Option<String>,
    pub encoder: String,
    pub judge: String,
    pub n_votes: usize,
    pub n_samples: usize,
    pub questions_per_step: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub max_prompt_tokens: usize,
    pub max_response_tokens: usize,
    pub kl_coef: f64,
    pub kl: String,
    pub entropy_coef: f64,
    pub clip_low: f64,
    pub clip_high: f64,
    pub loss_agg: String,
    pub advantage: String,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_targets: Vec<String>,
    #[serde(default)]
    pub lora_dropout: f32,
    /// Train every decoder projection's weight instead of LoRA adapters (small models).
    #[serde(default)]
    pub full_finetune: bool,
    pub dedup: bool,
    pub confidence_weighting: bool,
    pub filter_equal_rewards: bool,
    pub system: Option<String>,
    pub seed: u64,
    pub save_every: usize,
}

/// Where the run is in its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataPosition {
    pub epoch: usize,
    pub index: usize,
}

/// What a checkpoint's state.json holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: usize,
    optimizer_step: usize,
    rng: [u64; 4],
    position: DataPosition,
    reward_state: RewardState,
    metrics_lines: usize,
    config: AdaptConfig,
}

/// The data order of an epoch: a permutation from the seed.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = Rng::seed(seed ^ (0x5EED_0000 + epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The prompt of an item: optional system message, then its media, then its text.
pub fn item_messages(item: &Item, system: Option<&str>) -> Vec<Message> {
    let mut content: Vec<ContentItem> = Vec::new();
    content.extend(item.audio.iter().cloned().map(ContentItem::Audio));
    content.extend(item.images.iter().cloned().map(ContentItem::Image));
    if let Some(v) = &item.video {
        content.push(ContentItem::Video(v.clone()));
    }
    content.push(ContentItem::Text(item.prompt_text()));
    Processor::conversation(system, content)
}

/// The reward mode of a run.
pub fn reward_mode(cfg: &AdaptConfig) -> Result<Mode> {
    let mut mode = Mode::from_name(&cfg.reward)?;
    if let (Mode::Cluster(c), Some(v)) = (&mut mode, &cfg.variant) {
        c.variant = reward::cluster::Variant::from_name(v)?;
    }
    if let Mode::Judge(j) = &mut mode {
        j.model = match cfg.judge.as_str() {
            "base" => reward::judge::JudgeModel::Base,
            "policy" => reward::judge::JudgeModel::Policy,
            other => bail!("--judge must be base or policy (got {other})"),
        };
    }
    Ok(mode)
}

fn adapter_config(cfg: &AdaptConfig) -> AdapterConfig {
    AdapterConfig {
        peft_type: "LORA".into(),
        r: cfg.lora_rank,
        lora_alpha: cfg.lora_alpha,
        lora_dropout: cfg.lora_dropout as f64,
        target_modules: cfg.lora_targets.clone(),
        bias: "none".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: Some(cfg.model.clone()),
        inference_mode: false,
    }
}

fn params_of(adapters: &[(String, Arc<Lora>)]) -> Vec<(String, candle_core::Var)> {
    adapters
        .iter()
        .flat_map(|(n, l)| [(format!("{n}.lora_A.weight"), l.a.clone()), (format!("{n}.lora_B.weight"), l.b.clone())])
        .collect()
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    pub reward_mean: f64,
    pub majority_ratio: f64,
    /// Share of the sampled answers that are correct (when the data has answers; evaluation
    /// only, never seen by the reward).
    #[serde(default)]
    pub accuracy: Option<f64>,
    pub label_accuracy: Option<f64>,
    pub reward_accuracy: Option<f64>,
    pub mean_pairwise_similarity: Option<f64>,
    pub empty_share: f64,
    pub response_length: f64,
    pub loss: f64,
    pub policy_loss: f64,
    pub kl: f64,
    pub entropy: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub questions: usize,
    pub groups_filtered: usize,
    pub skipped_items: usize,
    pub skip_reasons: Vec<String>,
    pub update_skipped: Option<String>,
    pub tokens_per_s: f64,
    pub rollout_s: f64,
    pub reward_s: f64,
    pub update_s: f64,
    pub step_s: f64,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn mean_opt(v: &[Option<f64>]) -> Option<f64> {
    let xs: Vec<f64> = v.iter().flatten().copied().collect();
    (!xs.is_empty()).then(|| mean(&xs))
}

/// Runs (or resumes) an adaptation. Returns the metrics of every step.
pub fn run(cfg: AdaptConfig, resume: Option<&Path>, device: &candle_core::Device, quiet: bool) -> Result<Vec<StepMetrics>> {
    if cfg.n_samples == 0 || cfg.n_votes == 0 || cfg.n_samples > cfg.n_votes {
        bail!("need 1 <= n_samples ({}) <= n_votes ({})", cfg.n_samples, cfg.n_votes);
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let source = ModelSource::resolve(&cfg.model)?;
    let mut thinker = Thinker::load(&source, device, crate::dtype_from_name(None, device)?)?;
    let processor = Processor::load(&source)?;
    let dataset = load_dataset(&cfg.data, None, cfg.media_root.as_deref())?;
    if dataset.items.is_empty() {
        bail!("{} holds no usable items ({} skipped)", cfg.data.display(), dataset.skipped.len());
    }
    let mode = reward_mode(&cfg)?;
    let encoder = if mode.needs_embedder() { Some(Encoder::load(&cfg.encoder, &candle_core::Device::Cpu)?) } else { None };

    // Adapters, optimizer and state: fresh, or from the checkpoint.
    let checkpoint_dir = cfg.out.join("checkpoint");
    let (trainable, mut opt, mut state) = match resume.and_then(|out| checkpoint::find_checkpoint(&out.join("checkpoint"))) {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join("state.json")).with_context(|| format!("cannot read {}/state.json", dir.display()))?;
            let st: RunState = serde_json::from_str(&text).with_context(|| format!("{}/state.json is corrupt", dir.display()))?;
            let trainable = if cfg.full_finetune {
                Trainable::Full(checkpoint::load_full(&mut thinker, &dir)?)
            } else {
                Trainable::Lora(checkpoint::load_adapter(&mut thinker, &dir)?.0)
            };
            let mut opt = AdamW::new(adamw_config(&cfg), trainable.params())?;
            let (m, v) = checkpoint::load_moments(&dir.join("optimizer.safetensors"), &opt.params, device)?;
            opt.m = m;
            opt.v = v;
            opt.step = st.optimizer_step;
            if !quiet {
                eprintln!("resuming from {} at step {}", dir.display(), st.step);
            }
            (trainable, opt, st)
        }
        None => {
            if resume.is_some() {
                bail!("no checkpoint to resume from in {}", checkpoint_dir.display());
            }
            let mut rng = Rng::seed(cfg.seed);
            let trainable = if cfg.full_finetune {
                Trainable::Full(thinker.make_decoder_trainable()?)
            } else {
                let adapters = thinker.attach_lora(cfg.lora_rank, cfg.lora_alpha, &cfg.lora_targets, 0.0, &mut rng)?;
                thinker.set_lora_dropout(cfg.lora_dropout)?;
                Trainable::Lora(adapters)
            };
            let opt = AdamW::new(adamw_config(&cfg), trainable.params())?;
            let st = RunState {
                step: 0,
                optimizer_step: 0,
                rng: Rng::seed(cfg.seed.wrapping_add(1)).state(),
                position: DataPosition::default(),
                reward_state: RewardState::default(),
                metrics_lines: 0,
                config: cfg.clone(),
            };
            (trainable, opt, st)
        }
    };
    std::fs::write(cfg.out.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    // metrics.jsonl keeps exactly the lines of the steps done so far.
    let metrics_path = cfg.out.join("metrics.jsonl");
    let kept: Vec<String> = std::fs::read_to_string(&metrics_path).unwrap_or_default().lines().take(state.metrics_lines).map(str::to_string).collect();
    let mut all: Vec<StepMetrics> = kept.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    std::fs::write(&metrics_path, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    let mut metrics_file = std::fs::OpenOptions::new().append(true).open(&metrics_path)?;
    for s in &dataset.skipped {
        eprintln!("skipped {}: {}", s.location, s.reason);
    }

    let sampling = Sampling::new(cfg.temperature, cfg.top_p, cfg.top_k)?;
    let gen = GenerationConfig {
        max_new_tokens: cfg.max_response_tokens,
        sampling,
        stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
    };
    let update_cfg = UpdateConfig {
        loss: LossConfig {
            clip_low: cfg.clip_low,
            clip_high: cfg.clip_high,
            dual_clip: 3.0,
            agg: LossAgg::from_name(&cfg.loss_agg)?,
            kl_coef: cfg.kl_coef,
            kl_kind: KlKind::from_name(&cfg.kl)?,
            entropy_coef: cfg.entropy_coef,
            max_response_len: cfg.max_response_tokens,
        },
        advantage: match cfg.advantage.as_str() {
            "grpo" => AdvantageKind::Grpo,
            "drgrpo" | "dr-grpo" => AdvantageKind::DrGrpo,
            other => bail!("--advantage must be grpo or drgrpo (got {other})"),
        },
        temperature: cfg.temperature.max(1e-6),
        grad_clip: cfg.grad_clip,
        filter_equal_rewards: cfg.filter_equal_rewards,
        dropout_seed: 0,
    };
    let progress = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let p = indicatif::ProgressBar::new(cfg.steps as u64);
        p.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        p.set_position(state.step as u64);
        p
    };
    let mut rng = Rng::from_state(state.rng);
    let n_items = dataset.items.len();
    let mut order = (state.position.epoch, epoch_order(n_items, cfg.seed, state.position.epoch));
    while state.step < cfg.steps {
        let t_step = Instant::now();
        let mut m = StepMetrics { step: state.step + 1, ..Default::default() };
        // The step's questions.
        let mut questions: Vec<&Item> = Vec::new();
        while questions.len() < cfg.questions_per_step {
            if order.0 != state.position.epoch {
                order = (state.position.epoch, epoch_order(n_items, cfg.seed, state.position.epoch));
            }
            questions.push(&dataset.items[order.1[state.position.index]]);
            state.position.index += 1;
            if state.position.index == n_items {
                state.position = DataPosition { epoch: state.position.epoch + 1, index: 0 };
            }
        }
        // Rollouts and rewards.
        let (mut rollout_s, mut reward_s, mut generated) = (0.0, 0.0, 0usize);
        let mut rollouts = Vec::new();
        let mut scored_all = Vec::new();
        let mut answer_accuracy: Vec<f64> = Vec::new();
        // Encode every question's prompt (a bad item is reported and skipped) ...
        let t0 = Instant::now();
        let mut usable: Vec<(&Item, crate::omni::thinker::EncodedPrompt)> = Vec::new();
        for item in &questions {
            match processor.encode_chat(&item_messages(item, cfg.system.as_deref())) {
                Ok(p) if p.input_ids.len() > cfg.max_prompt_tokens => m.skip_reasons.push(format!(
                    "{}: prompt has {} tokens, over --max-prompt-tokens {}",
                    item.id,
                    p.input_ids.len(),
                    cfg.max_prompt_tokens
                )),
                Ok(p) => usable.push((item, p)),
                Err(e) => m.skip_reasons.push(format!("{}: {e:#}", item.id)),
            }
        }
        // ... then roll them all out together: one prefill, n_votes continuations each.
        let batch_rollouts = if usable.is_empty() {
            Vec::new()
        } else {
            let prompts: Vec<_> = usable.iter().map(|(_, p)| p.clone()).collect();
            rollout_batch(&thinker, &prompts, processor.tokenizer.end_of_text, cfg.n_votes, &gen, &mut rng)?
        };
        rollout_s += t0.elapsed().as_secs_f64();
        for ((item, _), r) in usable.iter().zip(batch_rollouts) {
            generated += r.answers.iter().map(|a| a.len()).sum::<usize>();
            let t1 = Instant::now();
            let texts: Vec<String> = r.answers.iter().map(|a| processor.tokenizer.decode(a)).collect::<Result<Vec<_>>>()?;
            let group = Group {
                question: item.question.clone(),
                candidates: texts.clone(),
                gold: item.answer.clone(),
                choices: item.choices.clone(),
            };
            let judge = crate::rl::judge::ThinkerJudge {
                thinker: &thinker,
                tokenizer: &processor.tokenizer,
                max_prompt_tokens: 4096,
                base_model: !matches!(&mode, Mode::Judge(j) if j.model == reward::judge::JudgeModel::Policy),
            };
            let scored = match reward::score(
                &mode,
                &group,
                encoder.as_ref().map(|e| e as &dyn reward::Embedder),
                Some(&judge),
                &mut state.reward_state,
            ) {
                Ok(s) => s,
                Err(e) => {
                    m.skip_reasons.push(format!("{}: reward failed: {e:#}", item.id));
                    continue;
                }
            };
            reward_s += t1.elapsed().as_secs_f64();
            if let (Some(gold), true) = (item.answer.as_deref(), is_closed_form(item.kind)) {
                let ok = texts.iter().filter(|t| super::eval::correct(item.kind, t, gold, Default::default(), item.choices.as_deref())).count();
                answer_accuracy.push(ok as f64 / texts.len().max(1) as f64);
            }
            let chosen = reward::select_samples(&texts, cfg.n_samples, cfg.dedup);
            scored_all.push((scored, chosen, item.kind));
            rollouts.push(r);
        }
        m.skipped_items = m.skip_reasons.len();
        m.questions = rollouts.len();
        let t2 = Instant::now();
        let groups: Vec<TrainGroup> = rollouts
            .iter()
            .zip(&scored_all)
            .map(|(r, (s, chosen, _))| TrainGroup {
                rollout: r,
                chosen: chosen.clone(),
                rewards: chosen.iter().map(|&i| s.rewards[i]).collect(),
                weight: if cfg.confidence_weighting { reward::confidence_weight(s) } else { 1.0 },
            })
            .collect();
        let stats = if groups.is_empty() {
            super::trainer::UpdateStats { skipped: Some("no question could be used this step".into()), ..Default::default() }
        } else {
            let step_cfg = UpdateConfig { dropout_seed: cfg.seed.wrapping_mul(0x9E37_79B9).wrapping_add(state.step as u64), ..update_cfg.clone() };
            update(&thinker, &mut opt, &groups, &step_cfg)?
        };
        m.update_s = t2.elapsed().as_secs_f64();
        // Metrics.
        let rewards: Vec<f64> = scored_all.iter().flat_map(|(s, c, _)| c.iter().map(|&i| s.rewards[i] as f64)).collect();
        m.reward_mean = mean(&rewards);
        m.majority_ratio = mean(&scored_all.iter().map(|(s, _, _)| s.diagnostics.majority_ratio as f64).collect::<Vec<_>>());
        m.accuracy = (!answer_accuracy.is_empty()).then(|| mean(&answer_accuracy));
        m.label_accuracy = mean_opt(&scored_all.iter().map(|(s, _, _)| s.diagnostics.label_accuracy.map(|x| x as f64)).collect::<Vec<_>>());
        m.reward_accuracy = mean_opt(&scored_all.iter().map(|(s, _, _)| s.diagnostics.reward_accuracy.map(|x| x as f64)).collect::<Vec<_>>());
        m.mean_pairwise_similarity =
            mean_opt(&scored_all.iter().map(|(s, _, _)| s.diagnostics.mean_pairwise_similarity.map(|x| x as f64)).collect::<Vec<_>>());
        m.empty_share = mean(&scored_all.iter().map(|(s, _, _)| s.diagnostics.empty_share as f64).collect::<Vec<_>>());
        m.response_length = if rollouts.is_empty() { 0.0 } else { generated as f64 / (rollouts.len() * cfg.n_votes) as f64 };
        m.loss = stats.loss;
        m.policy_loss = stats.parts.policy;
        m.kl = stats.parts.kl;
        m.entropy = stats.parts.entropy;
        m.clip_fraction = stats.parts.clip_fraction;
        m.grad_norm = stats.grad_norm;
        m.lr = stats.lr;
        m.groups_filtered = stats.groups_filtered;
        m.update_skipped = stats.skipped.clone();
        m.rollout_s = rollout_s;
        m.reward_s = reward_s;
        m.tokens_per_s = generated as f64 / rollout_s.max(1e-9);
        m.step_s = t_step.elapsed().as_secs_f64();
        if let Some(why) = &m.update_skipped {
            progress.println(format!("step {}: update skipped: {why}", m.step));
        }
        for r in &m.skip_reasons {
            progress.println(format!("step {}: skipped {r}", m.step));
        }
        writeln!(metrics_file, "{}", serde_json::to_string(&m)?)?;
        metrics_file.flush()?;
        state.step += 1;
        state.metrics_lines += 1;
        let acc = m.label_accuracy.map_or(String::new(), |a| format!(" acc {a:.3}"));
        progress.set_message(format!("reward {:.3}{acc}", m.reward_mean));
        progress.set_position(state.step as u64);
        all.push(m);
        if state.step % cfg.save_every.max(1) == 0 || state.step == cfg.steps {
            state.rng = rng.state();
            state.optimizer_step = opt.step;
            save_checkpoint(&checkpoint_dir, &trainable, &opt, &state, &cfg)?;
        }
    }
    progress.finish_and_clear();
    super::plot::write_plot(&cfg.out.join("reward.svg"), &all)?;
    Ok(all)
}

fn adamw_config(cfg: &AdaptConfig) -> AdamWConfig {
    AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, warmup_steps: cfg.warmup_steps, total_steps: cfg.steps, ..Default::default() }
}

/// What a run trains: LoRA adapters, or the decoder projections themselves.
enum Trainable {
    Lora(Vec<(String, Arc<Lora>)>),
    Full(Vec<(String, candle_core::Var)>),
}

impl Trainable {
    fn params(&self) -> Vec<(String, candle_core::Var)> {
        match self {
            Trainable::Lora(a) => params_of(a),
            Trainable::Full(p) => p.clone(),
        }
    }
}

fn save_checkpoint(dir: &Path, trainable: &Trainable, opt: &AdamW, state: &RunState, cfg: &AdaptConfig) -> Result<()> {
    checkpoint::write_atomically(dir, |tmp| {
        match trainable {
            Trainable::Lora(adapters) => checkpoint::save_adapter(tmp, adapters, &adapter_config(cfg))?,
            Trainable::Full(params) => checkpoint::save_full(tmp, params)?,
        }
        checkpoint::save_moments(&tmp.join("optimizer.safetensors"), &opt.m, &opt.v)?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
        Ok(())
    })
}

/// Whether an item's answers can be checked as letters or expressions.
pub fn is_closed_form(kind: TaskKind) -> bool {
    matches!(kind, TaskKind::MultipleChoice | TaskKind::Math)
}
