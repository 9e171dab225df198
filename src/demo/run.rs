//! `ttrav demo`: the TTRL result in miniature on the bundled model and data.
//!
//! Evaluates the base model on `test` and `heldout` (pass@1 as TTRL reports it: the mean
//! accuracy of 16 sampled answers at the run's temperature; greedy accuracy; maj@16), adapts it
//! on `test` with majority-vote rewards (GRPO + LoRA; the answers are never read), runs the same
//! adaptation with rewards drawn at random as a control, evaluates both, and prints one
//! before/after table with the vote's label accuracy. With `open_ended`, does the same for the
//! free-text form of the questions with the cluster reward and all-MiniLM-L6-v2, scored by
//! ROUGE-L and exact match. Writes each run's metrics, checkpoint and plots under `out`, and
//! `summary.json`.

use crate::data::load_dataset;
use crate::hub::ModelSource;
use crate::omni::prompt::Processor;
use crate::omni::thinker::Thinker;
use crate::rl::adapt::{self, AdaptConfig};
use crate::rl::eval::{evaluate, EvalConfig, Scores};
use crate::sampling::Sampling;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The demo's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub model: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Sampling temperature of the rollouts and of the sampled evaluation.
    pub temperature: f32,
    /// Samples per question (votes, and the evaluation's K).
    pub samples: usize,
    pub steps: usize,
    pub questions_per_step: usize,
    pub n_samples: usize,
    /// Answers per optimizer step (verl's ppo_mini_batch_size; 0 = the whole step).
    pub mini_batch_size: usize,
    pub lr: f64,
    pub lora_rank: usize,
    pub open_ended: bool,
    /// The open-ended variant's encoder (a name `ttrav embed` knows, or a directory).
    pub encoder: String,
    /// The open-ended variant's reward mode.
    pub open_reward: String,
    /// Only the first N questions of each split (a shortened run, e.g. for tests).
    pub limit: Option<usize>,
    pub quiet: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::from("models/ttrav-demo"),
            data: PathBuf::from("data/demo"),
            out: PathBuf::from("runs/demo"),
            seed: 0,
            temperature: 1.5,
            samples: 16,
            steps: 80,
            questions_per_step: 16,
            n_samples: 16,
            mini_batch_size: 64,
            lr: 1.5e-3,
            lora_rank: 8,
            open_ended: false,
            encoder: "minilm".into(),
            open_reward: "cluster".into(),
            limit: None,
            quiet: false,
        }
    }
}

/// One model's scores on one split (fractions in [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measures {
    pub pass_at_1: f64,
    pub greedy: f64,
    pub maj_at_16: f64,
    /// The accuracy of the vote's labels during adaptation (only where a vote was taken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_accuracy: Option<f64>,
}

/// One model's scores on the open-ended form of a split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpenMeasures {
    pub rouge_l: f64,
    pub exact: f64,
}

/// Base, adapted and control scores on one split.
#[derive(Debug, Clone, Serialize)]
pub struct Row<M> {
    pub base: M,
    pub adapted: M,
    pub control: M,
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub test: Row<Measures>,
    pub heldout: Row<Measures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_ended: Option<OpenEnded>,
    pub seconds: f64,
}

/// The open-ended variant's scores.
#[derive(Debug, Clone, Serialize)]
pub struct OpenEnded {
    pub test: Row<OpenMeasures>,
    pub heldout: Row<OpenMeasures>,
}

/// The loaded model with its processor (the demo evaluates it several times).
struct Model {
    source: ModelSource,
    processor: Processor,
}

impl Model {
    fn thinker(&self, adapter: Option<&Path>) -> Result<Thinker> {
        let mut t = Thinker::load(&self.source, &candle_core::Device::Cpu, candle_core::DType::F32)?;
        if let Some(dir) = adapter {
            crate::rl::checkpoint::load_trained(&mut t, dir)?;
        }
        Ok(t)
    }
}

/// Runs the demo and writes `summary.json` (and each run's folder) under `cfg.out`.
pub fn run(cfg: &DemoConfig) -> Result<DemoSummary> {
    let t0 = Instant::now();
    for (what, path) in [("model", &cfg.model), ("data", &cfg.data)] {
        if !path.exists() {
            anyhow::bail!("the demo {what} {} is missing: run `ttrav demo` from the repository root, or pass --{what}", path.display());
        }
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let source = ModelSource::resolve(&cfg.model.display().to_string())?;
    let model = Model { processor: Processor::load(&source)?, source };
    let say = |s: &str| {
        if !cfg.quiet {
            eprintln!("{s}");
        }
    };
    let split = |name: &str| cfg.data.join(format!("{name}.jsonl"));

    say("evaluating the base model on test and heldout ...");
    let base = model.thinker(None)?;
    let (base_test, base_held) = (scores(&model, &base, &split("test"), cfg)?, scores(&model, &base, &split("heldout"), cfg)?);
    say("adapting on test with majority-vote rewards (labels never read) ...");
    let adapted = adapt_on(&split("test"), "vote", &cfg.out.join("adapted"), cfg)?;
    say("the control: the same adaptation with rewards drawn at random ...");
    let control = adapt_on(&split("test"), "random", &cfg.out.join("control"), cfg)?;
    say("evaluating the adapted and control models ...");
    let measure = |s: &Scores, label: Option<f64>| Measures { pass_at_1: s.pass_at_1, greedy: s.greedy, maj_at_16: s.maj_at_k, label_accuracy: label };
    let mut rows = Vec::new();
    for (run, label) in [(&adapted, true), (&control, false)] {
        let t = model.thinker(Some(&run.join("checkpoint")))?;
        let label = if label { vote_label_accuracy(run)? } else { None };
        rows.push((scores(&model, &t, &split("test"), cfg)?, scores(&model, &t, &split("heldout"), cfg)?, label));
    }
    let test = Row { base: measure(&base_test, None), adapted: measure(&rows[0].0, rows[0].2), control: measure(&rows[1].0, None) };
    let heldout = Row { base: measure(&base_held, None), adapted: measure(&rows[0].1, None), control: measure(&rows[1].1, None) };

    let open_ended = if cfg.open_ended {
        say("open-ended variant: base, cluster-reward adaptation, random control ...");
        let open = |s: &Scores| OpenMeasures { rouge_l: s.rouge_l, exact: s.exact_match };
        let (bt, bh) = (scores(&model, &base, &split("test_open"), cfg)?, scores(&model, &base, &split("heldout_open"), cfg)?);
        let a = adapt_on(&split("test_open"), &cfg.open_reward, &cfg.out.join("open_adapted"), cfg)?;
        let c = adapt_on(&split("test_open"), "random", &cfg.out.join("open_control"), cfg)?;
        let (ta, tc) = (model.thinker(Some(&a.join("checkpoint")))?, model.thinker(Some(&c.join("checkpoint")))?);
        Some(OpenEnded {
            test: Row { base: open(&bt), adapted: open(&scores(&model, &ta, &split("test_open"), cfg)?), control: open(&scores(&model, &tc, &split("test_open"), cfg)?) },
            heldout: Row { base: open(&bh), adapted: open(&scores(&model, &ta, &split("heldout_open"), cfg)?), control: open(&scores(&model, &tc, &split("heldout_open"), cfg)?) },
        })
    } else {
        None
    };
    let summary = DemoSummary { test, heldout, open_ended, seconds: t0.elapsed().as_secs_f64() };
    let path = cfg.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(summary)
}

/// Sampled pass@1, greedy accuracy and maj@K of `thinker` on a split (or its ROUGE-L and exact
/// match, for the open-ended form).
fn scores(model: &Model, thinker: &Thinker, data: &Path, cfg: &DemoConfig) -> Result<Scores> {
    let dataset = load_dataset(data, None, None)?;
    let eval = EvalConfig {
        n: cfg.samples,
        sampling: Sampling::new(cfg.temperature, 1.0, 0)?,
        max_response_tokens: 24,
        max_prompt_tokens: 4096,
        system: None,
        limit: cfg.limit,
        answer_format: Default::default(),
        seed: cfg.seed.wrapping_add(7),
        greedy: true,
        batch_questions: 12,
    };
    let report = evaluate(thinker, &model.processor, &dataset, &eval)?;
    if let Some(first) = report.skipped.first() {
        anyhow::bail!("{}: {} items could not be used (first: {first})", data.display(), report.skipped.len());
    }
    Ok(report.overall)
}

/// The demo's adaptation of the model on `data` with `reward` into `out`.
fn adapt_on(data: &Path, reward: &str, out: &Path, cfg: &DemoConfig) -> Result<PathBuf> {
    let mut flags: Vec<String> = [
        "--model", &cfg.model.display().to_string(), "--data", &data.display().to_string(), "--out", &out.display().to_string(),
        "--reward", reward, "--encoder", &cfg.encoder,
        "--n-votes", &cfg.samples.to_string(), "--n-samples", &cfg.n_samples.to_string(),
        "--mini-batch-size", &cfg.mini_batch_size.to_string(),
        "--questions-per-step", &cfg.questions_per_step.to_string(), "--steps", &cfg.steps.to_string(),
        "--lr", &cfg.lr.to_string(), "--lora-rank", &cfg.lora_rank.to_string(), "--lora-alpha", &(2 * cfg.lora_rank).to_string(),
        "--temperature", &cfg.temperature.to_string(), "--top-p", "1.0", "--max-response-tokens", "24",
        "--max-prompt-tokens", "4096", "--seed", &cfg.seed.to_string(), "--save-every", &cfg.steps.to_string(),
        // The demo model's whole graph is a few megabytes: recomputing layers would only cost time.
        "--gradient-checkpointing", "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if cfg.limit.is_some() {
        // A shortened run: the first questions only (written next to the split's media).
        let limited = out.with_extension("questions.jsonl");
        let text = std::fs::read_to_string(data).with_context(|| format!("cannot read {}", data.display()))?;
        let kept: String = text.lines().take(cfg.limit.unwrap_or(usize::MAX)).map(|l| format!("{l}\n")).collect();
        let kept = rebase_media(&kept, data.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&limited, kept).with_context(|| format!("cannot write {}", limited.display()))?;
        flags[3] = limited.display().to_string();
    }
    let config = AdaptConfig::from_flags(&flags)?;
    adapt::run(config, None, false, &candle_core::Device::Cpu, cfg.quiet)?;
    Ok(out.to_path_buf())
}

/// JSONL lines with their relative media paths made absolute against `base`.
fn rebase_media(lines: &str, base: &Path) -> Result<String> {
    let base = base.canonicalize().with_context(|| format!("cannot resolve {}", base.display()))?;
    let mut out = String::new();
    for line in lines.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line)?;
        for key in ["audio", "images"] {
            if let Some(list) = v.get_mut(key).and_then(|l| l.as_array_mut()) {
                for p in list.iter_mut() {
                    if let Some(s) = p.as_str() {
                        *p = serde_json::Value::String(base.join(s).display().to_string());
                    }
                }
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// The mean label accuracy of the vote over an adaptation's steps.
fn vote_label_accuracy(run: &Path) -> Result<Option<f64>> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|m| m.get("label_accuracy").and_then(|v| v.as_f64()))
        .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64))
}

/// The before/after table the demo prints.
pub fn table(s: &DemoSummary) -> String {
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let mut out = format!("{:<9} {:<8} {:>7} {:>7} {:>7} {:>10}\n", "split", "model", "pass@1", "greedy", "maj@16", "label acc");
    for (name, row) in [("test", &s.test), ("heldout", &s.heldout)] {
        for (which, m) in [("base", &row.base), ("adapted", &row.adapted), ("control", &row.control)] {
            let label = m.label_accuracy.map_or("-".into(), pct);
            out += &format!("{:<9} {:<8} {:>7} {:>7} {:>7} {:>10}\n", name, which, pct(m.pass_at_1), pct(m.greedy), pct(m.maj_at_16), label);
        }
    }
    if let Some(o) = &s.open_ended {
        out += &format!("\n{:<14} {:<8} {:>8} {:>7}\n", "open-ended", "model", "ROUGE-L", "exact");
        for (name, row) in [("test_open", &o.test), ("heldout_open", &o.heldout)] {
            for (which, m) in [("base", &row.base), ("adapted", &row.adapted), ("control", &row.control)] {
                out += &format!("{:<14} {:<8} {:>8} {:>7}\n", name, which, pct(m.rouge_l), pct(m.exact));
            }
        }
    }
    out + &format!("({:.0} s; pass@1 = mean accuracy of the 16 sampled answers; label acc = the vote's pseudo-labels during adaptation)\n", s.seconds)
}
