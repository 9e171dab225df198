//! `ttrav adapt`: the test-time RL run.

use super::eval::{eval_model, summary, EvalSettings};
use super::presets;
use anyhow::Result;
use clap::{Args, CommandFactory};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use ttrav::rl::adapt::{run, AdaptConfig};

#[derive(Args)]
pub struct AdaptArgs {
    #[command(flatten)]
    run: AdaptConfig,
    /// Evaluated (greedy) before and after the run: pass@1, maj@K, BLEU/ROUGE-L.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Continue from the checkpoint in --out, or from the checkpoint directory given.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    resume: Option<Option<PathBuf>>,
    /// Resume even when the settings or the data file differ from the saved run's.
    #[arg(long)]
    allow_changes: bool,
    /// One of OP-TTRAV's recipes (see the README's preset table); flags given override it.
    #[arg(long)]
    preset: Option<String>,
    /// Settings from a TOML or JSON file (keys are flag names; a run's config.json repeats that
    /// run); flags given override it, and it overrides --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The command line with `--preset`'s and `--config`'s settings inserted before the user's own
/// flags (later flags win), for `ttrav adapt`.
pub fn with_preset_and_config(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let user = &args[2..];
    let known: Vec<String> = super::Cli::command()
        .find_subcommand("adapt")
        .map(|c| c.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut settings: Vec<OsString> = Vec::new();
    let config = presets::flag_value(user, "config").map(PathBuf::from);
    let from_config = match &config {
        Some(path) => presets::config_tokens(path, &known)?,
        None => Vec::new(),
    };
    let preset = presets::flag_value(user, "preset").or_else(|| presets::flag_value(&from_config, "preset"));
    if let Some(name) = preset {
        settings.extend(presets::preset_tokens(&name)?);
    }
    settings.extend(from_config.into_iter().filter(|t| !t.to_string_lossy().starts_with("--preset=")));
    Ok(args[..2].iter().cloned().chain(settings).chain(user.iter().cloned()).collect())
}

pub fn run_adapt(args: AdaptArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let cfg = args.run.clone();
    let eval_settings = EvalSettings {
        device: &args.device,
        dtype: cfg.dtype.as_deref(),
        media_root: cfg.media_root.as_deref(),
        max_prompt_tokens: cfg.max_prompt_tokens,
        max_response_tokens: cfg.max_response_tokens,
        system: cfg.system.as_deref(),
    };
    let before = match &args.eval_data {
        Some(p) => Some(eval_model(&cfg.model, None, p, &eval_settings)?),
        None => None,
    };
    let resume = args.resume.map(|d| d.unwrap_or_else(|| cfg.out.join("checkpoint")));
    let summary_ = run(cfg.clone(), resume.as_deref(), args.allow_changes, &device, args.quiet)?;
    let metrics = &summary_.metrics;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8}", "step", "reward", "acc", "label_acc", "loss", "gradnorm", "skipped")?;
    let every = (metrics.len() / 10).max(1);
    for m in metrics.iter().filter(|m| m.step % every == 0 || m.step == metrics.len()) {
        let opt = |v: Option<f64>| v.map_or("-".into(), |a| format!("{a:.3}"));
        writeln!(
            out,
            "{:>6} {:>8.3} {:>8} {:>9} {:>9.4} {:>9.4} {:>8}",
            m.step,
            m.reward_mean,
            opt(m.accuracy),
            opt(m.label_accuracy),
            m.loss,
            m.grad_norm,
            m.skipped_items
        )?;
    }
    writeln!(
        out,
        "items skipped: {} ({} when the data was read); metrics in {}; adapter in {}",
        summary_.skipped_items(),
        summary_.skipped_at_load,
        cfg.out.join("metrics.jsonl").display(),
        cfg.out.join("checkpoint").display()
    )?;
    if let (Some(p), Some(before)) = (&args.eval_data, before) {
        let after = eval_model(&cfg.model, Some(&cfg.out.join("checkpoint")), p, &eval_settings)?;
        writeln!(out, "eval before: {}", summary(&before))?;
        writeln!(out, "eval after:  {}", summary(&after))?;
    }
    Ok(())
}
