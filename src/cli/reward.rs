//! `ttrav reward`: score groups of answers offline with a label-free reward mode.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use ttrav::reward::{default_mode_name, score, Group, Mode, RewardState};

#[derive(Args)]
pub struct RewardArgs {
    /// vote (video_qa), math, medoid (open_ended_video), judge (judge_open_ended), cluster
    /// (simple_cluster), evolrl (evolrl_cluster) [default: $TTRL_TASK_TYPE, else vote].
    #[arg(long)]
    mode: Option<String>,
    /// JSON: {"question", "candidates": [...], "gold"?, "choices"?}, a list of such objects, or JSONL.
    #[arg(long)]
    input: PathBuf,
    /// One JSON object per question and line: rewards, label, anchor, diagnostics.
    #[arg(long)]
    json: bool,
    /// Sentence encoder for the embedding modes [default: $TTRL_OE_ENCODER, else bge].
    #[arg(long)]
    encoder: Option<String>,
    #[arg(long, default_value = "cpu")]
    encoder_device: String,
    /// The judge model (judge mode): a model directory or hub id.
    #[arg(long)]
    judge_model: Option<String>,
    #[command(flatten)]
    options: ttrav::reward::RewardOptions,
}

/// Reads groups from JSON (one object or a list) or JSON lines, naming the line of any error.
pub fn read_groups(path: &std::path::Path) -> Result<Vec<Group>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let values: Vec<(usize, serde_json::Value)> = match (jsonl, serde_json::from_str::<serde_json::Value>(&text)) {
        (false, Ok(serde_json::Value::Array(list))) => list.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect(),
        (false, Ok(v)) => vec![(1, v)],
        // A list, or a single object over several lines, that does not parse: report it whole.
        (false, Err(e)) if text.trim_start().starts_with('[') || text.trim().lines().count() == 1 => {
            bail!("{}: invalid JSON at line {}, column {}: {e}", path.display(), e.line(), e.column())
        }
        _ => {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v = serde_json::from_str(line).map_err(|e| {
                    anyhow::anyhow!("{}:{}: invalid JSON at column {}: {e}", path.display(), i + 1, e.column())
                })?;
                out.push((i + 1, v));
            }
            out
        }
    };
    values
        .into_iter()
        .map(|(item, v)| {
            let at = || format!("{} (item {item})", path.display());
            let question = v.get("question").and_then(|q| q.as_str()).unwrap_or("").to_string();
            let candidates = v
                .get("candidates")
                .and_then(|c| c.as_array())
                .with_context(|| format!("{}: field `candidates` (a list of strings) is missing", at()))?
                .iter()
                .map(|c| c.as_str().map(str::to_string).with_context(|| format!("{}: a candidate is not a string", at())))
                .collect::<Result<Vec<_>>>()?;
            let gold = v.get("gold").and_then(|g| g.as_str()).map(str::to_string);
            let choices = v
                .get("choices")
                .and_then(|c| c.as_array())
                .map(|l| l.iter().map(|c| c.as_str().unwrap_or("").to_string()).collect());
            Ok(Group { question, candidates, gold, choices })
        })
        .collect()
}

fn build_mode(args: &RewardArgs) -> Result<Mode> {
    Mode::with_options(&args.mode.clone().unwrap_or_else(default_mode_name), &args.options)
}

pub fn run(args: RewardArgs) -> Result<()> {
    let mode = build_mode(&args)?;
    let groups = read_groups(&args.input)?;
    let encoder = if mode.needs_embedder() {
        let device = ttrav::device_from_name(&args.encoder_device)?;
        let name = args.encoder.clone().unwrap_or_else(ttrav::embed::default_encoder_name);
        Some(ttrav::Encoder::load(&name, &device)?)
    } else {
        None
    };
    let judge_model = match (&mode, &args.judge_model) {
        (Mode::Judge(_), Some(m)) => {
            let source = ttrav::ModelSource::resolve(m)?;
            let thinker = ttrav::Thinker::load(&source, &candle_core::Device::Cpu, candle_core::DType::F32)?;
            Some((thinker, ttrav::TextTokenizer::load(&source)?))
        }
        (Mode::Judge(_), None) => bail!("the judge mode needs --judge-model (a model directory or hub id)"),
        _ => None,
    };
    let judge = judge_model.as_ref().map(|(t, tok)| ttrav::rl::judge::ThinkerJudge { thinker: t, tokenizer: tok, max_prompt_tokens: 4096, base_model: false });
    let mut state = RewardState::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(out, "{:>4}  {:>7}  {:>7}  {:>7}  {:<30}  rewards", "#", "agree", "empty", "sim", "label")?;
    }
    for (i, g) in groups.iter().enumerate() {
        let scored = score(
            &mode,
            g,
            encoder.as_ref().map(|e| e as &dyn ttrav::reward::Embedder),
            judge.as_ref().map(|j| j as &dyn ttrav::reward::Judge),
            &mut state,
        )
        .with_context(|| format!("{} item {}", args.input.display(), i + 1))?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&scored)?)?;
        } else {
            let label: String = scored.label.clone().unwrap_or_else(|| "-".into()).chars().take(30).collect();
            let rewards: Vec<String> = scored.rewards.iter().map(|r| format!("{r:.3}")).collect();
            let sim = scored.diagnostics.mean_pairwise_similarity.map_or("-".to_string(), |s| format!("{s:.3}"));
            writeln!(
                out,
                "{:>4}  {:>7.3}  {:>7.3}  {:>7}  {:<30}  {}",
                i + 1,
                scored.diagnostics.majority_ratio,
                scored.diagnostics.empty_share,
                sim,
                label.replace('\n', " "),
                rewards.join(" ")
            )?;
        }
    }
    Ok(())
}
