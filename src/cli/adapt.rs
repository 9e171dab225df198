//! `ttrav adapt`: the test-time RL run.

use super::eval::{eval_model, summary};
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use ttrav::rl::adapt::{run, AdaptConfig};

#[derive(Args)]
pub struct AdaptArgs {
    /// Model directory or hub id.
    #[arg(long)]
    model: String,
    /// Questions: ttrav JSONL, an OP-TTRAV JSON list, MMAU test-mini JSON or AlpacaEval JSON.
    #[arg(long)]
    data: PathBuf,
    /// Evaluated before and after the run (pass@1, maj@K, BLEU/ROUGE-L).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Rewrites absolute media paths from another machine under this folder.
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Reward mode: vote (video_qa), math, medoid (open_ended_video), judge, cluster, evolrl.
    #[arg(long, env = "TTRL_TASK_TYPE", default_value = "vote")]
    reward: String,
    /// Cluster variant: simple, continuous, kde.
    #[arg(long)]
    variant: Option<String>,
    /// Sentence encoder for the embedding rewards.
    #[arg(long, env = "TTRL_OE_ENCODER", default_value = "bge")]
    encoder: String,
    /// Judge mode: base (the frozen model) or policy (the adapted one, as OP-TTRAV did).
    #[arg(long, default_value = "base")]
    judge: String,
    /// Answers sampled per question (they vote).
    #[arg(long, default_value_t = 16)]
    n_votes: usize,
    /// Answers trained on per question (a prefix of the votes, or distinct ones with --dedup).
    #[arg(long, default_value_t = 4)]
    n_samples: usize,
    #[arg(long, default_value_t = 4)]
    questions_per_step: usize,
    /// Number of steps (default: one epoch over the data).
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long, default_value_t = 2e-6)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    #[arg(long, default_value_t = 0.6)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 10000)]
    max_prompt_tokens: usize,
    #[arg(long, default_value_t = 512)]
    max_response_tokens: usize,
    /// KL penalty to the frozen model (0 = off, as in OP-TTRAV's Omni runs).
    #[arg(long, default_value_t = 0.0)]
    kl_coef: f64,
    /// KL estimator: k1, k2, k3 (low_var_kl).
    #[arg(long, default_value = "k3")]
    kl: String,
    #[arg(long, default_value_t = 0.0)]
    entropy_coef: f64,
    #[arg(long, default_value_t = 0.2)]
    clip_low: f64,
    #[arg(long, default_value_t = 0.2)]
    clip_high: f64,
    /// token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm.
    #[arg(long, default_value = "token-mean")]
    loss_agg: String,
    /// grpo (std-normalised) or drgrpo.
    #[arg(long, default_value = "grpo")]
    advantage: String,
    #[arg(long, default_value_t = 16)]
    lora_rank: usize,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// Comma-separated projections to adapt.
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", value_delimiter = ',')]
    lora_targets: Vec<String>,
    /// Dropout on the adapters' input while training (PEFT's lora_dropout).
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f32,
    /// Train every decoder projection instead of LoRA adapters (small models, f32).
    #[arg(long)]
    full_finetune: bool,
    /// Train on distinct answers (OP-TTRAV's TTRL_DEDUP_SAMPLES).
    #[arg(long, env = "TTRL_DEDUP_SAMPLES", default_value_t = false, value_parser = parse_flag)]
    dedup: bool,
    /// Scale advantages by exp(agreement - 1) per question.
    #[arg(long)]
    confidence_weighting: bool,
    /// Keep groups whose rewards are all equal (DAPO drops them by default here).
    #[arg(long)]
    keep_equal_reward_groups: bool,
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint every K steps (and at the end).
    #[arg(long, default_value_t = 10)]
    save_every: usize,
    /// Output folder: metrics.jsonl, checkpoint/, plot.png, plot.svg, config.json.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected 0/1 or true/false, got {other}")),
    }
}

pub fn run_adapt(args: AdaptArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let steps = match args.steps {
        Some(s) => s,
        None => {
            let d = ttrav::data::load_dataset(&args.data, None, args.media_root.as_deref())?;
            let epochs = args.epochs.unwrap_or(1.0);
            ((d.items.len() as f64 * epochs) / args.questions_per_step.max(1) as f64).ceil().max(1.0) as usize
        }
    };
    let cfg = AdaptConfig {
        model: args.model.clone(),
        data: args.data.clone(),
        media_root: args.media_root.clone(),
        out: args.out.clone(),
        reward: args.reward.clone(),
        variant: args.variant.clone(),
        encoder: args.encoder.clone(),
        judge: args.judge.clone(),
        n_votes: args.n_votes,
        n_samples: args.n_samples,
        questions_per_step: args.questions_per_step.max(1),
        steps,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_prompt_tokens: args.max_prompt_tokens,
        max_response_tokens: args.max_response_tokens,
        kl_coef: args.kl_coef,
        kl: args.kl.clone(),
        entropy_coef: args.entropy_coef,
        clip_low: args.clip_low,
        clip_high: args.clip_high,
        loss_agg: args.loss_agg.clone(),
        advantage: args.advantage.clone(),
        lora_rank: args.lora_rank,
        lora_alpha: args.lora_alpha,
        lora_targets: args.lora_targets.clone(),
        lora_dropout: args.lora_dropout,
        full_finetune: args.full_finetune,
        dedup: args.dedup,
        confidence_weighting: args.confidence_weighting,
        filter_equal_rewards: !args.keep_equal_reward_groups,
        system: args.system.clone(),
        seed: args.seed,
        save_every: args.save_every,
    };
    let before = match &args.eval_data {
        Some(p) => Some(eval_model(&args.model, None, p, &args.device, args.max_response_tokens, args.system.as_deref())?),
        None => None,
    };
    let metrics = run(cfg, args.resume.then_some(args.out.as_path()), &device, args.quiet)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{:>6} {:>8} {:>8} {:>9} {:>9} {:>8}", "step", "reward", "acc", "loss", "gradnorm", "skipped")?;
    let every = (metrics.len() / 10).max(1);
    for m in metrics.iter().filter(|m| m.step % every == 0 || m.step == metrics.len()) {
        let acc = m.label_accuracy.map_or("-".into(), |a| format!("{a:.3}"));
        writeln!(out, "{:>6} {:>8.3} {:>8} {:>9.4} {:>9.4} {:>8}", m.step, m.reward_mean, acc, m.loss, m.grad_norm, m.skipped_items)?;
    }
    let skipped: usize = metrics.iter().map(|m| m.skipped_items).sum();
    writeln!(out, "items skipped: {skipped}; metrics in {}; adapter in {}", args.out.join("metrics.jsonl").display(), args.out.join("checkpoint").display())?;
    if let (Some(p), Some(before)) = (&args.eval_data, before) {
        let after = eval_model(&args.model, Some(&args.out.join("checkpoint")), p, &args.device, args.max_response_tokens, args.system.as_deref())?;
        writeln!(out, "eval before: {}", summary(&before))?;
        writeln!(out, "eval after:  {}", summary(&after))?;
    }
    Ok(())
}

