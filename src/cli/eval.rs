//! `ttrav eval`: pass@1 / greedy / maj@K / BLEU / ROUGE-L of a model (and adapter) on a dataset.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use ttrav::reward::extract::AnswerFormat;
use ttrav::rl::eval::{evaluate, EvalConfig, EvalReport, Scores};

#[derive(Args, Clone)]
pub struct EvalArgs {
    #[arg(long)]
    model: String,
    /// A LoRA adapter directory (PEFT layout; e.g. an adapt run's checkpoint/).
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[arg(long)]
    data: PathBuf,
    /// Rewrites absolute media paths from another machine under this folder.
    #[arg(long)]
    media_root: Option<PathBuf>,
    /// Samples per question: 1 = greedy pass@1; K > 1 = sampled pass@1 and maj@K.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Also score one greedy answer per question (with --n K > 1).
    #[arg(long)]
    greedy: bool,
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
    answer_format: AnswerFormat,
    /// Questions rolled out together (one prefill per batch).
    #[arg(long, default_value_t = 8)]
    batch_questions: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Weight dtype: f32, bf16, f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    dtype: Option<String>,
}

/// How `adapt --eval-data` evaluates before and after: greedy, with the run's media root,
/// prompt limit, response budget and system prompt.
pub(super) struct EvalSettings<'a> {
    pub device: &'a str,
    pub dtype: Option<&'a str>,
    pub media_root: Option<&'a Path>,
    pub max_prompt_tokens: usize,
    pub max_response_tokens: usize,
    pub system: Option<&'a str>,
}

pub(super) fn summary(r: &EvalReport) -> String {
    let o = &r.overall;
    format!(
        "pass@1 {:.3} maj@k {:.3} ({} closed-form), BLEU {:.3} ROUGE-L {:.3} ({} open-ended), {} items skipped",
        o.pass_at_1,
        o.maj_at_k,
        o.closed_items,
        o.bleu,
        o.rouge_l,
        o.open_items,
        r.skipped.len()
    )
}

pub(super) fn eval_model(model: &str, adapter: Option<&Path>, data: &Path, s: &EvalSettings) -> Result<EvalReport> {
    let args = EvalArgs {
        model: model.to_string(),
        adapter: adapter.map(Path::to_path_buf),
        data: data.to_path_buf(),
        media_root: s.media_root.map(Path::to_path_buf),
        n: 1,
        greedy: false,
        temperature: 0.0,
        top_p: 1.0,
        max_response_tokens: s.max_response_tokens,
        max_prompt_tokens: s.max_prompt_tokens,
        limit: None,
        system: s.system.map(str::to_string),
        answer_format: AnswerFormat::Strict,
        batch_questions: 8,
        seed: 0,
        json: false,
        device: s.device.to_string(),
        dtype: s.dtype.map(str::to_string),
    };
    report(&args)
}

fn report(args: &EvalArgs) -> Result<EvalReport> {
    let device = ttrav::device_from_name(&args.device)?;
    let source = ttrav::ModelSource::resolve(&args.model)?;
    let mut thinker = ttrav::Thinker::load(&source, &device, ttrav::dtype_from_name(args.dtype.as_deref(), &device)?)?;
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
        answer_format: args.answer_format,
        seed: args.seed,
        greedy: args.greedy,
        batch_questions: args.batch_questions,
    };
    let report = evaluate(&thinker, &processor, &dataset, &cfg)?;
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    Ok(report)
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let report = report(&args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<40} {:>6} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>8}",
        "group", "items", "pass@1", "greedy", "maj@k", "BLEU", "ROUGE-L", "exact", "contains"
    )?;
    let row = |name: &str, s: &Scores| {
        let greedy = if args.greedy || args.n <= 1 { format!("{:.3}", s.greedy) } else { "-".into() };
        format!(
            "{:<40} {:>6} {:>8.3} {:>8} {:>8.3} {:>7.3} {:>8.3} {:>7.3} {:>8.3}",
            name.chars().take(40).collect::<String>(),
            s.items,
            s.pass_at_1,
            greedy,
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
    writeln!(out, "items skipped: {} (each listed above on stderr)", report.skipped.len())?;
    Ok(())
}
