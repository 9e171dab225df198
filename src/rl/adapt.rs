//! `ttrav adapt`: the test-time RL run.
//!
//! Per step: take the next questions (the data shuffled per epoch from the seed; a step never
//! spans two epochs, as verl's `drop_last` loader), encode each prompt with its media, prefill
//! them together once and sample `n_votes` answers to each from the shared prefill, score them
//! with the label-free reward, train on `n_samples` of them with GRPO (LoRA or full
//! fine-tuning; `ppo_epochs` passes in mini-batches), log a metrics line, and every `save_every`
//! steps write a checkpoint atomically. A bad item (missing media, unreadable line, over-long
//! prompt) is reported, counted and skipped; the run goes on. A resumed run gives the same
//! result as one that was never interrupted, and refuses to resume when its settings or data
//! file changed unless told to.

use super::checkpoint::{self, AdapterConfig};
use super::grpo::{AdvantageKind, KlKind, LossAgg, LossConfig};
use super::optim::{AdamW, AdamWConfig};
use super::run::{check_resume, progress_bar, reopen_metrics, write_metrics, DataCursor, DataPosition, Fingerprint, METRICS};
use super::trainer::{rollout_adaptive, rollout_batch, update, Rollout, TrainGroup, UpdateConfig, UpdateStats};
use crate::data::{load_dataset, Item, TaskKind};
use crate::embed::Encoder;
use crate::hub::ModelSource;
use crate::nn::Lora;
use crate::omni::generate::GenerationConfig;
use crate::omni::prompt::{ContentItem, Message, Processor};
use crate::omni::thinker::{EncodedPrompt, Thinker};
use crate::reward::{self, Group, Mode, RewardOptions, RewardState, Scored};
use crate::sampling::{Rng, Sampling};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `true`/`false` (also 1/0, yes/no, on/off) for boolean flags, which may then be set off again
/// by a later flag (`--dedup false`), so that config files and presets can be overridden.
pub fn parse_flag(s: &str) -> std::result::Result<bool, String> {
    match s {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected true/false (or 1/0), got {other}")),
    }
}

/// Everything a run is configured with: the flags of `ttrav adapt` (and the keys of its
/// `--config` files), saved in `config.json` and in each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct AdaptConfig {
    /// Model directory or hub id.
    #[arg(long)]
    pub model: String,
    /// Questions: ttrav JSONL, an OP-TTRAV JSON list, MMAU test-mini JSON or AlpacaEval JSON.
    #[arg(long)]
    pub data: PathBuf,
    /// Rewrites absolute media paths from another machine under this folder.
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Output folder: metrics.jsonl, checkpoint/, plot.png, plot.svg, config.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Reward mode: vote (video_qa), math, medoid (open_ended_video), judge, cluster, evolrl, or
    /// random (a control: rewards drawn at random).
    #[arg(long, env = "TTRL_TASK_TYPE", default_value = "vote")]
    pub reward: String,
    #[command(flatten)]
    #[serde(flatten)]
    pub reward_options: RewardOptions,
    /// Sentence encoder for the embedding rewards.
    #[arg(long, env = "TTRL_OE_ENCODER", default_value = "bge")]
    pub encoder: String,
    /// Device of the sentence encoder: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub encoder_device: String,
    /// Judge mode: base (the frozen model) or policy (the adapted one, as OP-TTRAV did).
    #[arg(long, default_value = "base")]
    pub judge: String,
    /// Answers sampled per question (they vote).
    #[arg(long, default_value_t = 16)]
    pub n_votes: usize,
    /// Answers trained on per question (a prefix of the votes, or distinct ones with --dedup).
    #[arg(long, default_value_t = 4)]
    pub n_samples: usize,
    #[arg(long, default_value_t = 4)]
    pub questions_per_step: usize,
    /// Draw each question's votes in rounds of --vote-round and stop once the vote is settled
    /// (vote and math rewards; see the README for the rule), up to --n-votes.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    #[serde(default)]
    pub adaptive_votes: bool,
    #[arg(long, default_value_t = 4)]
    #[serde(default = "default_vote_round")]
    pub vote_round: usize,
    /// Draw every vote, but record how many adaptive votes would have drawn and whether their
    /// label equals the full budget's (metrics `votes_needed`, `early_label_agreement`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    #[serde(default)]
    pub adaptive_votes_audit: bool,
    /// Steps to run, and the learning-rate schedule's length (verl's total_training_steps);
    /// with --epochs, at most that many epochs' steps are run.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Passes over the data [default: 1 when --steps is not given].
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Linear warm-up steps [default: --warmup-ratio of the schedule's steps].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Warm-up as a share of the schedule's steps (verl's lr_warmup_steps_ratio).
    #[arg(long, default_value_t = 0.0)]
    pub warmup_ratio: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 = no top-k.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 10000)]
    pub max_prompt_tokens: usize,
    #[arg(long, default_value_t = 512)]
    pub max_response_tokens: usize,
    /// KL penalty to the frozen model (0 = off, as in OP-TTRAV's Omni runs).
    #[arg(long, default_value_t = 0.0)]
    pub kl_coef: f64,
    /// KL estimator: k1 (kl), abs, k2 (mse), k3 (low_var_kl).
    #[arg(long, default_value = "k3")]
    pub kl: String,
    #[arg(long, default_value_t = 0.0)]
    pub entropy_coef: f64,
    #[arg(long, default_value_t = 0.2)]
    pub clip_low: f64,
    #[arg(long, default_value_t = 0.2)]
    pub clip_high: f64,
    /// Dual clip: for negative advantages the loss is at most -A * c (verl's clip_ratio_c).
    #[arg(long, default_value_t = 3.0)]
    pub clip_ratio_c: f64,
    /// token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm.
    #[arg(long, default_value = "token-mean")]
    pub loss_agg: String,
    /// grpo (std-normalised) or drgrpo.
    #[arg(long, default_value = "grpo")]
    pub advantage: String,
    /// Passes over each step's answers (verl's ppo_epochs).
    #[arg(long, default_value_t = 1)]
    pub ppo_epochs: usize,
    /// Answers per optimizer step (0 = all of the step's answers).
    #[arg(long, default_value_t = 0)]
    pub mini_batch_size: usize,
    /// Answers of one question run through the differentiable forward together (they share one
    /// forward of the prompt; gradients are accumulated over the micro-batches). Fewer answers at
    /// once bound the update's activation memory; the update is the same. Default: all of a
    /// question's trained answers in the mini-batch at once.
    #[arg(long, value_name = "N")]
    pub micro_batch: Option<usize>,
    /// Recompute each decoder layer in the update's backward pass instead of keeping the whole
    /// graph (verl's enable_gradient_checkpointing, on in OP-TTRAV's scripts): the update holds
    /// one layer's activations and graph plus every layer's inputs, for about one more forward
    /// of compute; the gradients are the same. `--gradient-checkpointing false` keeps the graph.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_parser = parse_flag)]
    #[serde(default = "default_true")]
    pub gradient_checkpointing: bool,
    /// Answer tokens (all of a micro-batch's answers counted) whose full-vocabulary logits the
    /// update makes at once under gradient checkpointing; fewer bound its memory, the result is
    /// the same.
    #[arg(long, default_value_t = 512, value_name = "TOKENS")]
    #[serde(default = "default_logits_chunk")]
    pub logits_chunk: usize,
    #[arg(long, default_value_t = 16)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 32.0)]
    pub lora_alpha: f64,
    /// Comma-separated projections to adapt.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Dropout on the adapters' input while training (PEFT's lora_dropout).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f32,
    /// Train every decoder projection instead of LoRA adapters (small models, f32).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    pub full_finetune: bool,
    /// Train on distinct answers (OP-TTRAV's TTRL_DEDUP_SAMPLES).
    #[arg(long, env = "TTRL_DEDUP_SAMPLES", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    pub dedup: bool,
    /// Scale advantages by exp(agreement - 1) per question.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    pub confidence_weighting: bool,
    /// Keep groups whose rewards are all equal (DAPO drops them by default here; verl keeps them).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    pub keep_equal_reward_groups: bool,
    /// Video frames per second (MP4 files are sampled at this rate).
    #[arg(long, default_value_t = 2.0)]
    pub fps: f32,
    /// Most frames kept per video.
    #[arg(long, default_value_t = 768)]
    pub max_frames: usize,
    /// Feed each MP4's sound track too (as Qwen2.5-Omni's processor does).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_flag)]
    pub use_audio_in_video: bool,
    /// Largest image size in pixels after resizing [default: preprocessor_config.json's].
    #[arg(long)]
    pub max_pixels: Option<usize>,
    #[arg(long)]
    pub system: Option<String>,
    /// Weight dtype: f32, bf16, f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    pub dtype: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every K steps (and at the end).
    #[arg(long, default_value_t = 10)]
    pub save_every: usize,
}

impl AdaptConfig {
    /// The settings `ttrav adapt` would run with given these flags (e.g. `["--model", "m",
    /// "--data", "d", "--out", "o", "--lr", "1e-3"]`), every other setting at its default.
    pub fn from_flags<I: AsRef<str>>(flags: &[I]) -> Result<Self> {
        use clap::{Args, FromArgMatches};
        let cmd = Self::augment_args(clap::Command::new("adapt").no_binary_name(true));
        let matches = cmd.try_get_matches_from(flags.iter().map(|f| f.as_ref())).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

fn default_true() -> bool {
    true
}

fn default_logits_chunk() -> usize {
    512
}

fn default_vote_round() -> usize {
    4
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
    data: Fingerprint,
    /// Items skipped when the data file was read (reported once; counted in the summary).
    skipped_at_load: usize,
    config: AdaptConfig,
}

/// The step and schedule lengths of a run over `n_items` questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Questions per step (the step size, or all of a smaller dataset).
    pub questions: usize,
    /// Steps run.
    pub steps: usize,
    /// The learning-rate schedule's length.
    pub horizon: usize,
    pub warmup: usize,
}

impl Schedule {
    /// verl's arithmetic: `floor(n / questions)` steps per epoch, steps run =
    /// `min(--steps, that x --epochs)`, the cosine horizon `--steps` when given, warm-up
    /// `--warmup-steps` or `floor(ratio x horizon)`.
    pub fn of(cfg: &AdaptConfig, n_items: usize) -> Self {
        let questions = cfg.questions_per_step.min(n_items).max(1);
        let per_epoch = (n_items / questions).max(1);
        let by_epochs = cfg.epochs.map(|e| ((per_epoch as f64 * e).floor() as usize).max(1));
        let steps = match (cfg.steps, by_epochs) {
            (Some(s), Some(e)) => s.min(e),
            (Some(s), None) => s,
            (None, Some(e)) => e,
            (None, None) => per_epoch,
        };
        let horizon = cfg.steps.unwrap_or(steps);
        let warmup = cfg.warmup_steps.unwrap_or((cfg.warmup_ratio * horizon as f64) as usize);
        Self { questions, steps, horizon, warmup }
    }
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
    let mut mode = Mode::with_options(&cfg.reward, &cfg.reward_options)?;
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

pub(crate) fn params_of(adapters: &[(String, Arc<Lora>)]) -> Vec<(String, candle_core::Var)> {
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
    /// Votes drawn per question (fewer than --n-votes with adaptive votes).
    #[serde(default)]
    pub votes_drawn: f64,
    /// Tokens generated by the step's rollouts.
    #[serde(default)]
    pub rollout_tokens: usize,
    /// With the audit: votes adaptive votes would have drawn per question, and the share of
    /// questions whose early label equals the full budget's.
    #[serde(default)]
    pub votes_needed: Option<f64>,
    #[serde(default)]
    pub early_label_agreement: Option<f64>,
    pub loss: f64,
    pub policy_loss: f64,
    pub kl: f64,
    pub entropy: f64,
    pub clip_fraction: f64,
    #[serde(default)]
    pub clip_fraction_lower: f64,
    #[serde(default)]
    pub ppo_kl: f64,
    pub grad_norm: f64,
    pub lr: f64,
    #[serde(default)]
    pub optimizer_steps: usize,
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

/// What a run reports when it ends.
#[derive(Debug, Clone)]
pub struct AdaptSummary {
    pub metrics: Vec<StepMetrics>,
    /// Items skipped when the data file was read.
    pub skipped_at_load: usize,
}

impl AdaptSummary {
    /// Every item skipped: when the file was read, and during the steps.
    pub fn skipped_items(&self) -> usize {
        self.skipped_at_load + self.metrics.iter().map(|m| m.skipped_items).sum::<usize>()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn mean_opt(v: &[Option<f64>]) -> Option<f64> {
    let xs: Vec<f64> = v.iter().flatten().copied().collect();
    (!xs.is_empty()).then(|| mean(&xs))
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

/// Everything the loop works with.
struct Run {
    cfg: AdaptConfig,
    thinker: Thinker,
    processor: Processor,
    items: Vec<Item>,
    mode: Mode,
    encoder: Option<Encoder>,
    trainable: Trainable,
    opt: AdamW,
    state: RunState,
    schedule: Schedule,
    gen: GenerationConfig,
    update: UpdateConfig,
}

/// Runs an adaptation, or continues one from the checkpoint directory `resume`. Returns the
/// metrics of every step.
pub fn run(cfg: AdaptConfig, resume: Option<&Path>, allow_changes: bool, device: &candle_core::Device, quiet: bool) -> Result<AdaptSummary> {
    let (mut run, resumed_from) = set_up(cfg, resume, allow_changes, device, quiet)?;
    let out = run.cfg.out.clone();
    let (mut all, mut metrics_file) = reopen_metrics::<StepMetrics>(&out.join(METRICS), run.state.metrics_lines, resumed_from.as_deref())?;
    let progress = progress_bar(run.schedule.steps, run.state.step, quiet);
    let mut rng = Rng::from_state(run.state.rng);
    let mut cursor = DataCursor::new(run.items.len(), run.cfg.seed, run.state.position);
    while run.state.step < run.schedule.steps {
        let t_step = Instant::now();
        let mut m = StepMetrics { step: run.state.step + 1, ..Default::default() };
        let questions: Vec<usize> = cursor.next_batch(run.schedule.questions);
        let prompts = encode_prompts(&run, &questions, &mut m);
        let t0 = Instant::now();
        let rollouts = roll_out(&run, &prompts, &mut rng)?;
        m.rollout_s = t0.elapsed().as_secs_f64();
        let scored = score(&mut run, &prompts, &rollouts, &mut m)?;
        let t2 = Instant::now();
        let stats = train(&mut run, &rollouts, &scored)?;
        m.update_s = t2.elapsed().as_secs_f64();
        record(&mut m, &rollouts, &scored, &stats);
        m.step_s = t_step.elapsed().as_secs_f64();
        for why in m.update_skipped.iter().map(|w| format!("update skipped: {w}")).chain(m.skip_reasons.iter().map(|r| format!("skipped {r}"))) {
            progress.println(format!("step {}: {why}", m.step));
        }
        writeln!(metrics_file, "{}", serde_json::to_string(&m)?)?;
        metrics_file.flush()?;
        run.state.step += 1;
        run.state.metrics_lines += 1;
        progress.set_message(m.label_accuracy.map_or(format!("reward {:.3}", m.reward_mean), |a| format!("reward {:.3} label acc {a:.3}", m.reward_mean)));
        progress.set_position(run.state.step as u64);
        all.push(m);
        if run.state.step % run.cfg.save_every.max(1) == 0 || run.state.step == run.schedule.steps {
            (run.state.rng, run.state.position, run.state.optimizer_step) = (rng.state(), cursor.position, run.opt.step);
            save_checkpoint(&out.join("checkpoint"), &run, &all)?;
        }
    }
    progress.finish_and_clear();
    super::plot::write_plots(&out, &all)?;
    Ok(AdaptSummary { metrics: all, skipped_at_load: run.state.skipped_at_load })
}

/// Loads the model, data, reward and optimizer, fresh or from the checkpoint `resume`.
fn set_up(cfg: AdaptConfig, resume: Option<&Path>, allow_changes: bool, device: &candle_core::Device, quiet: bool) -> Result<(Run, Option<PathBuf>)> {
    if cfg.n_samples == 0 || cfg.n_votes == 0 || cfg.n_samples > cfg.n_votes {
        bail!("need 1 <= n_samples ({}) <= n_votes ({})", cfg.n_samples, cfg.n_votes);
    }
    if cfg.questions_per_step == 0 || cfg.ppo_epochs == 0 {
        bail!("--questions-per-step and --ppo-epochs must be at least 1");
    }
    if cfg.logits_chunk == 0 {
        bail!("--logits-chunk must be at least 1 token");
    }
    match cfg.micro_batch {
        Some(0) => bail!("--micro-batch must be at least 1 (leave it out to run all of a question's answers at once)"),
        Some(m) if m > cfg.n_samples => {
            bail!("--micro-batch {m} is larger than a question's {} trained answers (--n-samples)", cfg.n_samples)
        }
        _ => {}
    }
    if cfg.mini_batch_size > cfg.questions_per_step * cfg.n_samples {
        bail!("--mini-batch-size {} is larger than a step's {} trained answers", cfg.mini_batch_size, cfg.questions_per_step * cfg.n_samples);
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let source = ModelSource::resolve(&cfg.model)?;
    let mut thinker = Thinker::load(&source, device, crate::dtype_from_name(cfg.dtype.as_deref(), device)?)?;
    let mut processor = Processor::load(&source)?;
    processor.fps = cfg.fps;
    processor.max_frames = cfg.max_frames;
    processor.use_audio_in_video = cfg.use_audio_in_video;
    if let Some(p) = cfg.max_pixels {
        processor.image.max_pixels = p;
    }
    let dataset = load_dataset(&cfg.data, None, cfg.media_root.as_deref())?;
    if dataset.items.is_empty() {
        bail!("{} holds no usable items ({} skipped)", cfg.data.display(), dataset.skipped.len());
    }
    let fingerprint = Fingerprint::of_file(&cfg.data)?;
    let mode = reward_mode(&cfg)?;
    if (cfg.adaptive_votes || cfg.adaptive_votes_audit) && !matches!(mode, Mode::Vote(_)) {
        bail!("--adaptive-votes needs a vote or math reward (got {})", cfg.reward);
    }
    if cfg.vote_round == 0 {
        bail!("--vote-round must be at least 1");
    }
    let encoder = if mode.needs_embedder() { Some(Encoder::load(&cfg.encoder, &crate::device_from_name(&cfg.encoder_device)?)?) } else { None };
    let schedule = Schedule::of(&cfg, dataset.items.len());

    let resume = resume
        .map(|d| checkpoint::find_checkpoint(d).with_context(|| format!("no checkpoint to resume from in {}", d.display())))
        .transpose()?;
    // Full fine-tuning keeps the original projections when the frozen model is needed.
    let base_judge = matches!(&mode, Mode::Judge(j) if j.model == reward::judge::JudgeModel::Base);
    let keep_frozen = cfg.kl_coef != 0.0 || base_judge;
    let (trainable, state) = match &resume {
        Some(dir) => {
            let path = dir.join("state.json");
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let st: RunState = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
            check_resume(dir, &st.config, &cfg, &["out", "save_every"], Some((&st.data, &fingerprint, &cfg.data)), allow_changes)?;
            let trainable = if cfg.full_finetune {
                Trainable::Full(checkpoint::load_full(&mut thinker, dir, keep_frozen)?)
            } else {
                Trainable::Lora(checkpoint::load_adapter(&mut thinker, dir)?.0)
            };
            if !quiet {
                eprintln!("resuming from {} at step {}", dir.display(), st.step);
            }
            (trainable, RunState { config: cfg.clone(), data: fingerprint, ..st })
        }
        None => {
            let mut rng = Rng::seed(cfg.seed);
            let trainable = if cfg.full_finetune {
                Trainable::Full(super::lora::make_decoder_trainable(&mut thinker, keep_frozen)?)
            } else {
                let adapters = super::lora::attach_lora(&mut thinker, cfg.lora_rank, cfg.lora_alpha, &cfg.lora_targets, 0.0, &mut rng)?;
                super::lora::set_lora_dropout(&mut thinker, cfg.lora_dropout)?;
                Trainable::Lora(adapters)
            };
            for s in &dataset.skipped {
                eprintln!("skipped {s}");
            }
            let st = RunState {
                step: 0,
                optimizer_step: 0,
                rng: Rng::seed(cfg.seed.wrapping_add(1)).state(),
                position: DataPosition::default(),
                reward_state: RewardState::default(),
                metrics_lines: 0,
                data: fingerprint,
                skipped_at_load: dataset.skipped.len(),
                config: cfg.clone(),
            };
            (trainable, st)
        }
    };
    let adamw = AdamWConfig {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        warmup_steps: schedule.warmup,
        total_steps: schedule.horizon,
        ..Default::default()
    };
    let mut opt = AdamW::new(adamw, trainable.params())?;
    if let Some(dir) = &resume {
        let (m, v) = checkpoint::load_moments(&dir.join("optimizer.safetensors"), &opt.params, device)?;
        (opt.m, opt.v, opt.step) = (m, v, state.optimizer_step);
    }
    std::fs::write(cfg.out.join("config.json"), serde_json::to_string_pretty(&cfg)? + "\n")?;
    let gen = GenerationConfig {
        max_new_tokens: cfg.max_response_tokens,
        sampling: Sampling::new(cfg.temperature, cfg.top_p, cfg.top_k)?,
        stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
    };
    let update = UpdateConfig {
        loss: LossConfig {
            clip_low: cfg.clip_low,
            clip_high: cfg.clip_high,
            dual_clip: cfg.clip_ratio_c,
            agg: LossAgg::from_name(&cfg.loss_agg)?,
            kl_coef: cfg.kl_coef,
            kl_kind: KlKind::from_name(&cfg.kl)?,
            entropy_coef: cfg.entropy_coef,
        },
        advantage: match cfg.advantage.as_str() {
            "grpo" => AdvantageKind::Grpo,
            "drgrpo" | "dr-grpo" => AdvantageKind::DrGrpo,
            other => bail!("--advantage must be grpo or drgrpo (got {other})"),
        },
        temperature: cfg.temperature.max(1e-6),
        grad_clip: cfg.grad_clip,
        filter_equal_rewards: !cfg.keep_equal_reward_groups,
        dropout_seed: 0,
        ppo_epochs: cfg.ppo_epochs,
        mini_batch_size: cfg.mini_batch_size,
        micro_batch: cfg.micro_batch.unwrap_or(0),
        response_len: cfg.max_response_tokens,
        gradient_checkpointing: cfg.gradient_checkpointing,
        logits_chunk: cfg.logits_chunk,
    };
    Ok((Run { cfg, thinker, processor, items: dataset.items, mode, encoder, trainable, opt, state, schedule, gen, update }, resume))
}

/// The prompts of the step's questions; a question that cannot be used is reported and skipped.
fn encode_prompts(run: &Run, questions: &[usize], m: &mut StepMetrics) -> Vec<(usize, EncodedPrompt)> {
    let mut usable = Vec::new();
    for &q in questions {
        let item = &run.items[q];
        match run.processor.encode_chat(&item_messages(item, run.cfg.system.as_deref())) {
            Ok(p) if p.input_ids.len() > run.cfg.max_prompt_tokens => m.skip_reasons.push(format!(
                "{}: prompt has {} tokens, over --max-prompt-tokens {}",
                item.id,
                p.input_ids.len(),
                run.cfg.max_prompt_tokens
            )),
            Ok(p) => usable.push((q, p)),
            Err(e) => m.skip_reasons.push(format!("{}: {e:#}", item.id)),
        }
    }
    usable
}

/// One prefill of all the step's prompts, `n_votes` continuations each (or, with adaptive votes,
/// rounds of `vote_round` until each question's vote is settled).
fn roll_out(run: &Run, prompts: &[(usize, EncodedPrompt)], rng: &mut Rng) -> Result<Vec<Rollout>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let batch: Vec<EncodedPrompt> = prompts.iter().map(|(_, p)| p.clone()).collect();
    let pad = run.processor.tokenizer.end_of_text;
    if !run.cfg.adaptive_votes {
        return rollout_batch(&run.thinker, &batch, pad, run.cfg.n_votes, &run.gen, rng);
    }
    rollout_adaptive(&run.thinker, &batch, pad, run.cfg.n_votes, run.cfg.vote_round, &run.gen, rng, |q, r| {
        let item = &run.items[prompts[q].0];
        Ok(vote_settled(run, item, &decode_all(run, &r.answers)?, run.cfg.n_votes))
    })
}

fn decode_all(run: &Run, answers: &[Vec<u32>]) -> Result<Vec<String>> {
    answers.iter().map(|a| run.processor.tokenizer.decode(a)).collect()
}

/// The adaptive-votes rule ([`reward::vote::settled`]) for the run's vote.
fn vote_settled(run: &Run, item: &Item, texts: &[String], budget: usize) -> bool {
    match &run.mode {
        Mode::Vote(v) => reward::vote::settled(v, texts, item.choices.as_deref(), budget),
        _ => false,
    }
}

/// With the audit: the votes adaptive votes would have drawn (in rounds) and whether the label
/// of those equals the label of all `texts`.
fn audit_votes(run: &Run, item: &Item, texts: &[String]) -> Option<(usize, bool)> {
    let Mode::Vote(v) = &run.mode else { return None };
    let round = run.cfg.vote_round;
    let mut k = round.min(texts.len());
    while k < texts.len() && !vote_settled(run, item, &texts[..k], texts.len()) {
        k = (k + round).min(texts.len());
    }
    let label = |t: &[String]| reward::vote::score(v, &Group { candidates: t.to_vec(), choices: item.choices.clone(), ..Default::default() }).label;
    Some((k, label(&texts[..k]) == label(texts)))
}

/// A question's scored answers: the reward's verdict, the answers trained on, their accuracy.
struct ScoredQuestion {
    scored: Option<Scored>,
    chosen: Vec<usize>,
    accuracy: Option<f64>,
    /// With the audit: the votes adaptive votes would have drawn, and whether its label agreed.
    audit: Option<(usize, bool)>,
}

/// Scores every question's answers with the label-free reward (labels only for the metrics).
fn score(run: &mut Run, prompts: &[(usize, EncodedPrompt)], rollouts: &[Rollout], m: &mut StepMetrics) -> Result<Vec<ScoredQuestion>> {
    let t = Instant::now();
    let mut out = Vec::new();
    for ((q, _), r) in prompts.iter().zip(rollouts) {
        let item = &run.items[*q];
        let texts: Vec<String> = r.answers.iter().map(|a| run.processor.tokenizer.decode(a)).collect::<Result<Vec<_>>>()?;
        let group = Group { question: item.question.clone(), candidates: texts.clone(), gold: item.answer.clone(), choices: item.choices.clone() };
        let judge = crate::rl::judge::ThinkerJudge {
            thinker: &run.thinker,
            tokenizer: &run.processor.tokenizer,
            max_prompt_tokens: 4096,
            base_model: !matches!(&run.mode, Mode::Judge(j) if j.model == reward::judge::JudgeModel::Policy),
        };
        let embedder = run.encoder.as_ref().map(|e| e as &dyn reward::Embedder);
        let scored = match reward::score(&run.mode, &group, embedder, Some(&judge), &mut run.state.reward_state) {
            Ok(s) => Some(s),
            Err(e) => {
                m.skip_reasons.push(format!("{}: reward failed: {e:#}", item.id));
                None
            }
        };
        let accuracy = match (item.answer.as_deref(), is_closed_form(item.kind)) {
            (Some(gold), true) => Some(
                texts.iter().filter(|t| super::eval::correct(item.kind, t, gold, Default::default(), item.choices.as_deref())).count() as f64
                    / texts.len().max(1) as f64,
            ),
            _ => None,
        };
        let chosen = reward::select_samples(&texts, run.cfg.n_samples, run.cfg.dedup);
        let audit = if run.cfg.adaptive_votes_audit { audit_votes(run, item, &texts) } else { None };
        out.push(ScoredQuestion { scored, chosen, accuracy, audit });
    }
    m.reward_s = t.elapsed().as_secs_f64();
    Ok(out)
}

/// The GRPO update on the scored questions.
fn train(run: &mut Run, rollouts: &[Rollout], scored: &[ScoredQuestion]) -> Result<UpdateStats> {
    let groups: Vec<TrainGroup> = rollouts
        .iter()
        .zip(scored)
        .filter_map(|(r, q)| {
            let s = q.scored.as_ref()?;
            Some(TrainGroup {
                rollout: r,
                chosen: q.chosen.clone(),
                rewards: q.chosen.iter().map(|&i| s.rewards[i]).collect(),
                weight: if run.cfg.confidence_weighting { reward::confidence_weight(s) } else { 1.0 },
            })
        })
        .collect();
    if groups.is_empty() {
        return Ok(UpdateStats { skipped: Some("no question could be used this step".into()), ..Default::default() });
    }
    let step = run.state.step;
    let cfg = UpdateConfig { dropout_seed: run.cfg.seed.wrapping_mul(0x9E37_79B9).wrapping_add(step as u64), ..run.update.clone() };
    run.opt.schedule_step = Some(step);
    update(&run.thinker, &mut run.opt, &groups, &cfg)
}

/// Fills the step's metrics line.
fn record(m: &mut StepMetrics, rollouts: &[Rollout], scored: &[ScoredQuestion], stats: &UpdateStats) {
    let ok: Vec<&Scored> = scored.iter().filter_map(|q| q.scored.as_ref()).collect();
    let rewards: Vec<f64> = scored
        .iter()
        .filter_map(|q| q.scored.as_ref().map(|s| (q, s)))
        .flat_map(|(q, s)| q.chosen.iter().map(move |&i| f64::from(s.rewards[i])))
        .collect();
    m.questions = ok.len();
    m.skipped_items = m.skip_reasons.len();
    m.reward_mean = mean(&rewards);
    m.majority_ratio = mean(&ok.iter().map(|s| s.diagnostics.majority_ratio as f64).collect::<Vec<_>>());
    m.accuracy = mean_opt(&scored.iter().map(|q| q.accuracy).collect::<Vec<_>>());
    m.label_accuracy = mean_opt(&ok.iter().map(|s| s.diagnostics.label_accuracy.map(f64::from)).collect::<Vec<_>>());
    m.reward_accuracy = mean_opt(&ok.iter().map(|s| s.diagnostics.reward_accuracy.map(f64::from)).collect::<Vec<_>>());
    m.mean_pairwise_similarity = mean_opt(&ok.iter().map(|s| s.diagnostics.mean_pairwise_similarity.map(f64::from)).collect::<Vec<_>>());
    m.empty_share = mean(&ok.iter().map(|s| s.diagnostics.empty_share as f64).collect::<Vec<_>>());
    let generated: usize = rollouts.iter().flat_map(|r| r.answers.iter().map(Vec::len)).sum();
    let votes: usize = rollouts.iter().map(|r| r.answers.len()).sum();
    m.response_length = if votes == 0 { 0.0 } else { generated as f64 / votes as f64 };
    m.votes_drawn = if rollouts.is_empty() { 0.0 } else { votes as f64 / rollouts.len() as f64 };
    m.rollout_tokens = generated;
    m.votes_needed = mean_opt(&scored.iter().map(|q| q.audit.map(|(k, _)| k as f64)).collect::<Vec<_>>());
    m.early_label_agreement = mean_opt(&scored.iter().map(|q| q.audit.map(|(_, same)| f64::from(u8::from(same)))).collect::<Vec<_>>());
    m.tokens_per_s = generated as f64 / m.rollout_s.max(1e-9);
    m.loss = stats.loss;
    m.policy_loss = stats.parts.policy;
    m.kl = stats.parts.kl;
    m.entropy = stats.parts.entropy;
    m.clip_fraction = stats.parts.clip_fraction;
    m.clip_fraction_lower = stats.parts.clip_fraction_lower;
    m.ppo_kl = stats.parts.ppo_kl;
    m.grad_norm = stats.grad_norm;
    m.lr = stats.lr;
    m.optimizer_steps = stats.optimizer_steps;
    m.groups_filtered = stats.groups_filtered;
    m.update_skipped = stats.skipped.clone();
}

fn save_checkpoint(dir: &Path, run: &Run, metrics: &[StepMetrics]) -> Result<()> {
    checkpoint::write_atomically(dir, |tmp| {
        write_metrics(&tmp.join(METRICS), metrics)?;
        match &run.trainable {
            Trainable::Lora(adapters) => checkpoint::save_adapter(tmp, adapters, &adapter_config(&run.cfg))?,
            Trainable::Full(params) => checkpoint::save_full(tmp, params)?,
        }
        checkpoint::save_moments(&tmp.join("optimizer.safetensors"), &run.opt.m, &run.opt.v)?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&run.state)?)?;
        Ok(())
    })
}

/// Whether an item's answers can be checked as letters or expressions.
pub fn is_closed_form(kind: TaskKind) -> bool {
    matches!(kind, TaskKind::MultipleChoice | TaskKind::Math)
}
