//! `ttrav eval`: pass@1 / maj@K / BLEU / ROUGE-L of a model (and adapter) on a dataset.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use ttrav::rl::eval::{evaluate, EvalConfig, EvalReport};

pub(super) fn summary(r: &EvalReport) -> String {
    let o = &r.overall;
    format!(
        "pass@1 {:.3} maj@k {:.3} ({} closed-form), BLEU {:.3} ROUGE-L {:.3} ({} open-ended)",
        o.pass_at_1, o.maj_at_k, o.closed_items, o.bleu, o.rouge_l, o.open_items
    )
}

pub(super) fn eval_model(model: &str, adapter: Option<&std::path::Path>, data: &std::path::Path, device: &str, max_tokens: usize, system: Option<&str>) -> Result<EvalReport> {
    let device = ttrav::device_from_name(device)?;
    let source = ttrav::ModelSource::resolve(model)?;
    let mut thinker = ttrav::Thinker::load(&source, &device, ttrav::dtype_from_name(None, &device)?)?;
    if let Some(dir) = adapter {
        ttrav::rl::checkpoint::load_trained(&mut thinker, dir)?;
    }
    let processor = ttrav::Processor::load(&source)?;
    let dataset = ttrav::data::load_dataset(data, None, None)?;
    let cfg = EvalConfig {
        n: 1,
        sampling: ttrav::Sampling::Greedy,
        max_response_tokens: max_tokens,
        max_prompt_tokens: 10000,
        system: system.map(str::to_string),
        limit: None,
        answer_format: Default::default(),
        seed: 0,
    };
    evaluate(&thinker, &processor, &dataset, &cfg)
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    model: String,
    /// A LoRA adapter directory (PEFT layout; e.g. an adapt run's checkpoint/).
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Samples per question: 1 = greedy pass@1; K > 1 = sampled pass@1 and maj@K.
    #[arg(long, default_value_t = 1)]
    n: usize,
    #[arg(long, default_value_t = 0.6)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 512)]
    max_response_tokens: usize,
    #[arg(long, default_value_t = 10000)]
    max_prompt_tokens: usize,
    /// Evaluate only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    system: Option<String>,
    /// strict (only \boxed{X}) or lenient.
    #[arg(long, default_value = "strict")]
    answer_format: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let source = ttrav::ModelSource::resolve(&args.model)?;
    let mut thinker = ttrav::Thinker::load(&source, &device, ttrav::dtype_from_name(None, &device)?)?;
    if let Some(dir) = &args.adapter {
        ttrav::rl::checkpoint::load_trained(&mut thinker, dir).with_context(|| format!("cannot load adapter {}", dir.display()))?;
    }
    let processor = ttrav::Processor::load(&source)?;
    let dataset = ttrav::data::load_dataset(&args.data, None, args.media_root.as_deref())?;
    let sampling = if args.n <= 1 { ttrav::Sampling::Greedy } else { ttrav::Sampling::new(args.temperature, args.top_p, 0)? };
    let cfg = EvalConfig {
        n: args.n.max(1),
        sampling,
        max_response_tokens: args.max_response_tokens,
        max_prompt_tokens: args.max_prompt_tokens,
        system: args.system.clone(),
        limit: args.limit,
        answer_format: match args.answer_format.as_str() {
            "lenient" => ttrav::reward::extract::AnswerFormat::Lenient,
            _ => ttrav::reward::extract::AnswerFormat::Strict,
        },
        seed: args.seed,
    };
    let report = evaluate(&thinker, &processor, &dataset, &cfg)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(out, "{:<40} {:>6} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8}", "group", "items", "pass@1", "maj@k", "BLEU", "ROUGE-L", "exact", "contains")?;
    let row = |name: &str, s: &ttrav::rl::eval::Scores| {
        format!(
            "{:<40} {:>6} {:>8.3} {:>8.3} {:>7.3} {:>8.3} {:>7.3} {:>8.3}",
            name.chars().take(40).collect::<String>(),
            s.items,
            s.pass_at_1,
            s.maj_at_k,
            s.bleu,
            s.rouge_l,
            s.exact_match,
            s.contains_match
        )
    };
    writeln!(out, "{}", row("all", &report.overall))?;
    for (g, s) in &report.by_group {
        writeln!(out, "{}", row(g, s))?;
    }
    if !report.skipped.is_empty() {
        writeln!(out, "skipped {} items (first: {})", report.skipped.len(), report.skipped[0])?;
    }
    Ok(())
}
