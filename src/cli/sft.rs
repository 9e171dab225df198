//! `ttrav sft`: supervised fine-tuning on labelled items.

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use ttrav::rl::sft::{run, SftConfig};

#[derive(Args)]
pub struct SftArgs {
    /// Model directory or hub id.
    #[arg(long)]
    model: String,
    /// Labelled items (ttrav JSONL or any format `adapt` reads); each needs an `answer`.
    #[arg(long)]
    data: PathBuf,
    /// Rewrites absolute media paths from another machine under this folder.
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Optimiser steps.
    #[arg(long)]
    steps: usize,
    /// Items per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    /// Train LoRA adapters of this rank on the decoder instead of every tensor (0 = full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    #[arg(long, default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", value_delimiter = ',')]
    lora_targets: Vec<String>,
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f32,
    /// Longest prompt + answer, in tokens (longer items are reported and skipped).
    #[arg(long, default_value_t = 4096)]
    max_tokens: usize,
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint every K steps (and at the end).
    #[arg(long, default_value_t = 100)]
    save_every: usize,
    /// Output folder: metrics.jsonl, checkpoint/, config.json, and model/ (full fine-tuning).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the checkpoint in --out, or from the checkpoint directory given.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    resume: Option<Option<PathBuf>>,
    /// Resume even when the settings or the data file differ from the saved run's.
    #[arg(long)]
    allow_changes: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run_sft(args: SftArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let cfg = SftConfig {
        model: args.model,
        data: args.data,
        media_root: args.media_root,
        out: args.out.clone(),
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        weight_decay: args.weight_decay,
        grad_clip: args.grad_clip,
        lora_rank: args.lora_rank,
        lora_alpha: args.lora_alpha,
        lora_targets: args.lora_targets,
        lora_dropout: args.lora_dropout,
        max_tokens: args.max_tokens,
        system: args.system,
        seed: args.seed,
        save_every: args.save_every,
    };
    let resume = args.resume.map(|d| d.unwrap_or_else(|| args.out.join("checkpoint")));
    let summary = run(cfg, resume.as_deref(), args.allow_changes, &device, args.quiet)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>6} {:>9} {:>9} {:>9} {:>8}", "step", "loss", "tok_acc", "gradnorm", "skipped")?;
    let n = summary.metrics.len();
    let every = (n / 10).max(1);
    for m in summary.metrics.iter().filter(|m| m.step % every == 0 || m.step == n) {
        writeln!(out, "{:>6} {:>9.4} {:>9.3} {:>9.4} {:>8}", m.step, m.loss, m.token_accuracy, m.grad_norm, m.skipped_items)?;
    }
    let skipped: usize = summary.metrics.iter().map(|m| m.skipped_items).sum::<usize>() + summary.skipped_at_load;
    writeln!(out, "items skipped: {skipped}; metrics in {}; trained model in {}", args.out.join("metrics.jsonl").display(), summary.output.display())?;
    Ok(())
}
