//! `ttrav eval`: pass@1 / greedy / maj@K / BLEU / ROUGE-L of a model (and adapter) on a dataset;
//! with `--judge-model`, win rates against reference outputs (AlpacaEval 2's).

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ttrav::reward::extract::AnswerFormat;
use ttrav::rl::adapt::parse_flag;
use ttrav::rl::eval::{answer_items, evaluate, EvalConfig, EvalReport, Scores};
use ttrav::winrate::glm::{Glm, LcData};
use ttrav::winrate::{self, http, Pair, References};

#[derive(Args, Clone)]
pub struct EvalArgs {
    #[arg(long)]
    model: String,
    /// A LoRA adapter directory (PEFT layout; e.g. an adapt run's checkpoint/).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The questions [default with --reference: the reference file's instructions].
    #[arg(long)]
    data: Option<PathBuf>,
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
    #[command(flatten)]
    judge: JudgeArgs,
}

/// Win rates against reference outputs.
#[derive(Args, Clone, Default)]
struct JudgeArgs {
    /// Reference outputs in AlpacaEval's outputs format (e.g. gpt4_1106_preview's): report win rates
    /// against them, judged by --judge-model.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// The judge: a local checkpoint (directory or hub id), or with --judge-url the endpoint's model.
    #[arg(long)]
    judge_model: Option<String>,
    /// An OpenAI-compatible API base (e.g. https://api.openai.com/v1): judge there.
    #[arg(long)]
    judge_url: Option<String>,
    /// The environment variable holding the endpoint's key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    judge_key_env: String,
    /// Tokens of the judge's reply (its text; the preference comes from the first token's
    /// log-probabilities when there are some).
    #[arg(long, default_value_t = 1)]
    judge_max_tokens: usize,
    /// Ask the endpoint for the first token's log-probabilities (AlpacaEval 2's weighted preference,
    /// at temperature 1; off: temperature 0, the reply's text decides).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", value_parser = parse_flag)]
    judge_logprobs: bool,
    /// Seconds per request.
    #[arg(long, default_value_t = 60.0)]
    judge_timeout: f64,
    #[arg(long, default_value_t = 5)]
    judge_retries: usize,
    /// Seconds before the first retry (doubling after each).
    #[arg(long, default_value_t = 1.0)]
    judge_backoff: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    judge_concurrency: usize,
    /// The endpoint's reply cache (JSONL) [default: $XDG_CACHE_HOME/ttrav/judge-cache.jsonl, else
    /// ~/.cache/ttrav/judge-cache.jsonl]; `none` keeps none.
    #[arg(long)]
    judge_cache: Option<PathBuf>,
    /// A local judge's longest prompt (longer ones are skipped).
    #[arg(long, default_value_t = 32768)]
    judge_max_prompt_tokens: usize,
    /// A local judge's weight dtype [default: as --dtype].
    #[arg(long)]
    judge_dtype: Option<String>,
    /// length_controlled_v1, length_controlled_noreg or length_controlled_minimal [default: v1 with
    /// --lc-data, else minimal].
    #[arg(long)]
    lc_glm: Option<Glm>,
    /// AlpacaEval's df_gamed.csv (Hugging Face dataset tatsu-lab/alpaca_eval), for v1 and noreg.
    #[arg(long)]
    lc_data: Option<PathBuf>,
    /// Write the judgements here (AlpacaEval's annotations.json layout).
    #[arg(long)]
    annotations_out: Option<PathBuf>,
    /// The model's name in the annotations [default: --model].
    #[arg(long)]
    generator: Option<String>,
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
        data: Some(data.to_path_buf()),
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
        judge: JudgeArgs::default(),
    };
    report(&args)
}

/// The model (with its adapter), its processor and the eval settings of `args`.
fn load_model(args: &EvalArgs) -> Result<(ttrav::Thinker, ttrav::Processor, EvalConfig)> {
    let device = ttrav::device_from_name(&args.device)?;
    let source = ttrav::ModelSource::resolve(&args.model)?;
    let mut thinker = ttrav::Thinker::load(&source, &device, ttrav::dtype_from_name(args.dtype.as_deref(), &device)?)?;
    if let Some(dir) = &args.adapter {
        ttrav::rl::checkpoint::load_trained(&mut thinker, dir).with_context(|| format!("cannot load adapter {}", dir.display()))?;
    }
    let processor = ttrav::Processor::load(&source)?;
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
    Ok((thinker, processor, cfg))
}

fn report(args: &EvalArgs) -> Result<EvalReport> {
    let data = args.data.as_deref().context("--data is needed (or --reference with --judge-model)")?;
    let (thinker, processor, cfg) = load_model(args)?;
    let dataset = ttrav::data::load_dataset(data, None, args.media_root.as_deref())?;
    let report = evaluate(&thinker, &processor, &dataset, &cfg)?;
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    Ok(report)
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    match (&args.judge.judge_model, &args.judge.reference, &args.judge.judge_url) {
        (Some(_), Some(_), _) => return run_winrate(&args),
        (None, Some(_), _) | (None, None, Some(_)) => bail!("--reference and --judge-url need --judge-model"),
        (Some(_), None, _) => bail!("--judge-model needs --reference (the outputs to compare with)"),
        (None, None, None) => {}
    }
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

/// What `ttrav eval --judge-model` reports.
#[derive(Serialize)]
struct WinRateReport {
    judge: String,
    reference: String,
    glm: Glm,
    #[serde(flatten)]
    summary: winrate::Summary,
    /// Items judged (with or without a preference).
    judged: usize,
    skipped: Vec<String>,
}

/// The judge cache's default place.
fn default_cache() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("ttrav/judge-cache.jsonl"))
}

fn run_winrate(args: &EvalArgs) -> Result<()> {
    let j = &args.judge;
    let (Some(judge_model), Some(reference)) = (&j.judge_model, &j.reference) else { bail!("--judge-model needs --reference") };
    let glm = j.lc_glm.unwrap_or(if j.lc_data.is_some() { Glm::V1 } else { Glm::Minimal });
    let lc_data = j.lc_data.as_deref().map(LcData::load).transpose()?;
    if glm != Glm::Minimal && lc_data.is_none() {
        bail!("--lc-glm {glm} needs --lc-data (AlpacaEval's df_gamed.csv)");
    }
    let refs = References::load(reference)?;
    let mut skipped: Vec<String> = refs.skipped.clone();
    let data = args.data.clone().unwrap_or_else(|| reference.clone());
    let dataset = ttrav::data::load_dataset(&data, None, args.media_root.as_deref())?;
    let (thinker, processor, cfg) = load_model(args)?;
    let answered = answer_items(&thinker, &processor, &dataset, &cfg)?;
    skipped.extend(answered.skipped);
    let generator = j.generator.clone().unwrap_or_else(|| args.model.clone());
    let mut pairs = Vec::new();
    for (i, output) in answered.answers {
        let item = &dataset.items[i];
        match refs.find(&item.question) {
            Some(r) => pairs.push(Pair { id: item.id.clone(), instruction: item.question.clone(), output, generator: generator.clone(), reference: r.clone() }),
            None => skipped.push(format!("{}: no reference output for this instruction in {}", item.id, reference.display())),
        }
    }
    drop(thinker);
    let progress = if args.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(pairs.len() as u64) };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} judged [{elapsed_precise}<{eta_precise}]").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = || progress.inc(1);
    let judged = match &j.judge_url {
        Some(url) => {
            let cache = match &j.judge_cache {
                Some(p) if p.as_os_str() == "none" => None,
                Some(p) => Some(p.clone()),
                None => default_cache(),
            };
            let cfg = http::HttpConfig {
                url: url.clone(),
                model: judge_model.clone(),
                key: std::env::var(&j.judge_key_env).ok().filter(|k| !k.is_empty()),
                timeout: Duration::from_secs_f64(j.judge_timeout.max(0.001)),
                retries: j.judge_retries,
                backoff: Duration::from_secs_f64(j.judge_backoff.max(0.0)),
                max_tokens: j.judge_max_tokens,
                logprobs: j.judge_logprobs,
                concurrency: j.judge_concurrency,
                cache,
            };
            let (judge, unreadable) = http::HttpJudge::new(cfg)?;
            if unreadable > 0 {
                eprintln!("judge cache: {unreadable} unreadable lines ignored");
            }
            winrate::judge_pairs(&pairs, &judge, &done)
        }
        None => {
            let device = ttrav::device_from_name(&args.device)?;
            let source = ttrav::ModelSource::resolve(judge_model)?;
            let dtype = ttrav::dtype_from_name(j.judge_dtype.as_deref().or(args.dtype.as_deref()), &device)?;
            let thinker = ttrav::Thinker::load(&source, &device, dtype).with_context(|| format!("cannot load the judge {judge_model}"))?;
            let tokenizer = ttrav::TextTokenizer::load(&source)?;
            let judge = winrate::LocalJudge {
                name: format!("local:{judge_model}"),
                thinker: &thinker,
                tokenizer: &tokenizer,
                max_prompt_tokens: j.judge_max_prompt_tokens,
                max_new_tokens: j.judge_max_tokens,
            };
            winrate::judge_pairs(&pairs, &judge, &done)
        }
    };
    progress.finish_and_clear();
    if let Some(path) = &j.annotations_out {
        std::fs::write(path, serde_json::to_string_pretty(&judged.annotations)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(why) = &judged.stopped {
        bail!("{why} ({} items judged before it stopped)", judged.annotations.len());
    }
    skipped.extend(judged.skipped.iter().cloned());
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    let judge_name = match &j.judge_url {
        Some(url) => format!("{judge_model} ({url})"),
        None => format!("{judge_model} (local)"),
    };
    let report = WinRateReport {
        judge: judge_name,
        reference: reference.display().to_string(),
        glm,
        summary: winrate::summarize(&judged.annotations, glm, lc_data.as_ref()),
        judged: judged.annotations.len(),
        skipped,
    };
    print_winrate(&report, args.json)
}

fn print_winrate(r: &WinRateReport, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
        return Ok(());
    }
    let w = &r.summary.win_rate;
    let se = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.3}"));
    let rate = |v: f64| if v.is_finite() { format!("{v:.3}") } else { "-".to_string() };
    writeln!(out, "judge         {}", r.judge)?;
    writeln!(out, "reference     {}", r.reference)?;
    writeln!(
        out,
        "win rate      {} (standard error {}; {} judged with a preference: {} wins, {} losses, {} draws; discrete {})",
        rate(w.win_rate),
        se(w.standard_error),
        w.n_total,
        w.n_wins,
        w.n_wins_base,
        w.n_draws,
        rate(w.discrete_win_rate)
    )?;
    match (&r.summary.lc, &r.summary.lc_note) {
        (Some(lc), _) => writeln!(out, "LC win rate   {:.3} (standard error {}; {}, C {:.4})", lc.length_controlled_winrate, se(lc.lc_standard_error), lc.glm, lc.c)?,
        (None, note) => writeln!(out, "LC win rate   - ({})", note.as_deref().unwrap_or("not computed"))?,
    }
    writeln!(out, "avg length    {} characters", r.summary.avg_length)?;
    writeln!(out, "items skipped: {} (each listed above on stderr)", r.skipped.len())?;
    Ok(())
}
