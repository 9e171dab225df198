//! `ttrav eval`: how well a model (with or without an adapter) answers a dataset.
//!
//! Multiple choice and math: pass@1 (the mean correctness of the K samples at the run's
//! temperature, as TTRL reports it; greedy when K = 1), greedy accuracy (when asked for besides
//! K samples) and maj@K (the majority answer of the K samples). Open-ended: BLEU, ROUGE-L, exact
//! and contains match against the reference answers, averaged over the samples. Every score is
//! also broken down by the dataset's own grouping fields (MMAU: task, category, difficulty;
//! OP-TTRAV: source; ttrav JSONL: task). Questions are rolled out in batches (one prefill per
//! batch, its cache shared by each question's samples). Items that cannot be used (a malformed
//! line when the file was read, a missing answer, unreadable media, an over-long prompt) are
//! listed with their location and counted. [`answer_items`] gives one answer per item, for
//! `ttrav eval --judge-model` (win rates against reference outputs, in [`crate::winrate`]).

use super::adapt::item_messages;
use super::trainer::rollout_batch;
use crate::data::{Dataset, Item, TaskKind};
use crate::omni::generate::GenerationConfig;
use crate::omni::prompt::Processor;
use crate::omni::thinker::{EncodedPrompt, Thinker};
use crate::reward::extract::{last_boxed, math_equal, AnswerFormat};
use crate::reward::vote::{self, AnswerKind, VoteConfig};
use crate::reward::{metrics, Group};
use crate::sampling::{Rng, Sampling};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Samples per question (1 = greedy unless a temperature is given).
    pub n: usize,
    pub sampling: Sampling,
    pub max_response_tokens: usize,
    pub max_prompt_tokens: usize,
    pub system: Option<String>,
    pub limit: Option<usize>,
    pub answer_format: AnswerFormat,
    pub seed: u64,
    /// Also score one greedy answer per question (besides the `n` samples).
    pub greedy: bool,
    /// Questions rolled out together.
    pub batch_questions: usize,
}

/// Sums of scores over some items.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    pub items: usize,
    pub closed_items: usize,
    pub pass_at_1: f64,
    /// Correctness of the greedy answer (when [`EvalConfig::greedy`]).
    pub greedy: f64,
    pub maj_at_k: f64,
    pub open_items: usize,
    pub bleu: f64,
    pub rouge_l: f64,
    pub exact_match: f64,
    pub contains_match: f64,
    pub response_words: f64,
}

impl Scores {
    fn add(&mut self, other: &Scores) {
        self.items += other.items;
        self.closed_items += other.closed_items;
        self.pass_at_1 += other.pass_at_1;
        self.greedy += other.greedy;
        self.maj_at_k += other.maj_at_k;
        self.open_items += other.open_items;
        self.bleu += other.bleu;
        self.rouge_l += other.rouge_l;
        self.exact_match += other.exact_match;
        self.contains_match += other.contains_match;
        self.response_words += other.response_words;
    }

    /// Means instead of sums.
    pub fn averaged(&self) -> Scores {
        let c = self.closed_items.max(1) as f64;
        let o = self.open_items.max(1) as f64;
        Scores {
            items: self.items,
            closed_items: self.closed_items,
            pass_at_1: self.pass_at_1 / c,
            greedy: self.greedy / c,
            maj_at_k: self.maj_at_k / c,
            open_items: self.open_items,
            bleu: self.bleu / o,
            rouge_l: self.rouge_l / o,
            exact_match: self.exact_match / o,
            contains_match: self.contains_match / o,
            response_words: self.response_words / self.items.max(1) as f64,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalReport {
    pub overall: Scores,
    /// "field=value" -> scores.
    pub by_group: BTreeMap<String, Scores>,
    pub skipped: Vec<String>,
}

/// Whether `reply` answers a closed-form item (multiple choice or math) with `gold`.
pub fn correct(kind: TaskKind, reply: &str, gold: &str, format: AnswerFormat, choices: Option<&[String]>) -> bool {
    match kind {
        TaskKind::MultipleChoice => crate::reward::extract::choice_letter(reply.trim(), format, choices)
            .is_some_and(|c| gold.trim().eq_ignore_ascii_case(&c.to_string())),
        TaskKind::Math => last_boxed(reply).is_some_and(|a| math_equal(&a, gold)),
        TaskKind::OpenEnded => false,
    }
}

/// The answers [`answer_items`] gives.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// (The item's position in the dataset's items, the answer.)
    pub answers: Vec<(usize, String)>,
    /// The items that could not be used, with their reasons (those skipped when the file was read
    /// included).
    pub skipped: Vec<String>,
}

/// One answer per usable item (one sample with `cfg.sampling`: greedy when that is), for
/// judging against reference outputs. Items need no reference answer here.
pub fn answer_items(thinker: &Thinker, processor: &Processor, data: &Dataset, cfg: &EvalConfig) -> Result<Answers> {
    let mut skipped: Vec<String> = data.skipped.iter().map(|s| s.to_string()).collect();
    let mut usable: Vec<(usize, EncodedPrompt)> = Vec::new();
    for (i, item) in data.items.iter().enumerate().take(cfg.limit.unwrap_or(usize::MAX)) {
        match processor.encode_chat(&item_messages(item, cfg.system.as_deref())) {
            Ok(p) if p.input_ids.len() <= cfg.max_prompt_tokens => usable.push((i, p)),
            Ok(p) => skipped.push(format!("{}: prompt has {} tokens, over {}", item.id, p.input_ids.len(), cfg.max_prompt_tokens)),
            Err(e) => skipped.push(format!("{}: {e:#}", item.id)),
        }
    }
    let gen = GenerationConfig {
        max_new_tokens: cfg.max_response_tokens,
        sampling: cfg.sampling,
        stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
    };
    let mut rng = Rng::seed(cfg.seed);
    let mut answers = Vec::new();
    for chunk in usable.chunks(cfg.batch_questions.max(1)) {
        let prompts: Vec<EncodedPrompt> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let rolled = rollout_batch(thinker, &prompts, processor.tokenizer.end_of_text, 1, &gen, &mut rng)?;
        for ((i, _), r) in chunk.iter().zip(&rolled) {
            answers.push((*i, processor.tokenizer.decode(&r.answers[0])?));
        }
    }
    Ok(Answers { answers, skipped })
}

pub fn evaluate(thinker: &Thinker, processor: &Processor, data: &Dataset, cfg: &EvalConfig) -> Result<EvalReport> {
    let mut report = EvalReport::default();
    report.skipped.extend(data.skipped.iter().map(|s| s.to_string()));
    let mut rng = Rng::seed(cfg.seed);
    let gen = |sampling| GenerationConfig {
        max_new_tokens: cfg.max_response_tokens,
        sampling,
        stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
    };
    // The usable items with their prompts.
    let mut usable: Vec<(&Item, &str, EncodedPrompt)> = Vec::new();
    for item in data.items.iter().take(cfg.limit.unwrap_or(usize::MAX)) {
        let Some(gold) = item.answer.as_deref() else {
            report.skipped.push(format!("{}: no reference answer", item.id));
            continue;
        };
        match processor.encode_chat(&item_messages(item, cfg.system.as_deref())) {
            Ok(p) if p.input_ids.len() <= cfg.max_prompt_tokens => usable.push((item, gold, p)),
            Ok(p) => report.skipped.push(format!("{}: prompt has {} tokens, over {}", item.id, p.input_ids.len(), cfg.max_prompt_tokens)),
            Err(e) => report.skipped.push(format!("{}: {e:#}", item.id)),
        }
    }
    for chunk in usable.chunks(cfg.batch_questions.max(1)) {
        let prompts: Vec<EncodedPrompt> = chunk.iter().map(|(_, _, p)| p.clone()).collect();
        let pad = processor.tokenizer.end_of_text;
        let sampled = rollout_batch(thinker, &prompts, pad, cfg.n.max(1), &gen(cfg.sampling), &mut rng)?;
        // Greedy answers: the samples themselves when they are greedy, else a second pass.
        let sampled_greedy = cfg.sampling == Sampling::Greedy;
        let greedy = if cfg.greedy && !sampled_greedy { Some(rollout_batch(thinker, &prompts, pad, 1, &gen(Sampling::Greedy), &mut rng)?) } else { None };
        for (k, ((item, gold, _), r)) in chunk.iter().zip(&sampled).enumerate() {
            let texts: Vec<String> = r.answers.iter().map(|a| processor.tokenizer.decode(a)).collect::<Result<Vec<_>>>()?;
            let greedy_text = match &greedy {
                Some(g) => Some(processor.tokenizer.decode(&g[k].answers[0])?),
                None if sampled_greedy => texts.first().cloned(),
                None => None,
            };
            let s = score_item(item, gold, &texts, greedy_text.as_deref(), cfg.answer_format);
            report.overall.add(&s);
            for (field, value) in &item.groups {
                if matches!(field.as_str(), "task" | "category" | "sub-category" | "sub_category" | "difficulty" | "source" | "dataset") {
                    report.by_group.entry(format!("{field}={value}")).or_default().add(&s);
                }
            }
        }
    }
    report.overall = report.overall.averaged();
    for v in report.by_group.values_mut() {
        *v = v.averaged();
    }
    Ok(report)
}

/// The scores of one item's sampled answers (and greedy answer, when given).
fn score_item(item: &Item, gold: &str, texts: &[String], greedy: Option<&str>, format: AnswerFormat) -> Scores {
    let mut s = Scores { items: 1, ..Default::default() };
    s.response_words = texts.iter().map(|t| t.split_whitespace().count() as f64).sum::<f64>() / texts.len() as f64;
    match item.kind {
        TaskKind::MultipleChoice | TaskKind::Math => {
            s.closed_items = 1;
            let ok = texts.iter().filter(|t| correct(item.kind, t, gold, format, item.choices.as_deref())).count();
            s.pass_at_1 = ok as f64 / texts.len() as f64;
            s.greedy = greedy.map_or(0.0, |g| f64::from(u8::from(correct(item.kind, g, gold, format, item.choices.as_deref()))));
            let kind = if item.kind == TaskKind::Math { AnswerKind::Math } else { AnswerKind::Choice };
            let voted = vote::score(
                &VoteConfig { kind, format },
                &Group { candidates: texts.to_vec(), gold: Some(gold.to_string()), choices: item.choices.clone(), ..Default::default() },
            );
            s.maj_at_k = voted.diagnostics.label_accuracy.unwrap_or(0.0) as f64;
        }
        TaskKind::OpenEnded => {
            s.open_items = 1;
            let n = texts.len() as f64;
            for t in texts {
                let m = metrics::answer_metrics(t, gold);
                s.bleu += m.bleu / n;
                s.rouge_l += m.rouge_l / n;
                s.exact_match += m.exact_match / n;
                s.contains_match += m.contains_match / n;
            }
        }
    }
    s
}
