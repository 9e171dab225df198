//! Win rates against reference outputs, as AlpacaEval 2 computes them.
//!
//! Each of the model's answers is paired with the reference output for the same instruction
//! (AlpacaEval's outputs format, e.g. `gpt4_1106_preview`'s; matched by the instruction's text,
//! its position in that file being AlpacaEval's `index`) and shown to a judge with AlpacaEval 2's
//! pairwise prompt ([`judge_messages`], the `alpaca_eval_clf_gpt4_turbo` template of its
//! `weighted_alpaca_eval_gpt4_turbo` annotator): the two outputs named `m` and `M`, in the order
//! AlpacaEval's seeded switch gives them ([`is_switched`]), and the judge asked for the better
//! one's name. The reply becomes a preference ([`prompt_first_probability`]): with log-
//! probabilities (a local judge's, or an HTTP judge's that returns them), AlpacaEval's own
//! `P(m) / (P(m) + P(M))` over the first token's alternatives; otherwise the reply's first word,
//! `m` (1) or `M` (0), a reply that names neither giving no preference. In AlpacaEval's convention the preference is
//! then `2 - P(first shown is better)`, mirrored (`3 - x`) when the outputs were switched: 1 means
//! the reference is better, 2 the model's output; identical outputs are a draw (1.5) without
//! asking the judge, as in AlpacaEval. [`summarize`] turns the annotations into
//! AlpacaEval's numbers: the win rate (100 x the mean of `preference - 1` over the items with a
//! preference, a 0 counting as a draw of 1.5), its standard error, wins (> 1.5), losses (< 1.5),
//! draws, the discrete win rate (each preference rounded), the mean output length in characters,
//! and the length-controlled win rate of [`glm`].
//!
//! Judges ([`PairJudge`]): a local checkpoint ([`LocalJudge`], `m`'s and `M`'s probabilities from
//! its next-token distribution), or an OpenAI-compatible endpoint ([`http::HttpJudge`], with
//! retries and an on-disk cache). A judgement that fails (a judge error after its retries) is
//! reported with the item and the reason and skipped; every finished judgement is kept.

pub mod glm;
pub mod http;
mod order;

pub use order::is_switched;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// AlpacaEval 2's judge system message.
pub const SYSTEM_PROMPT: &str = "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on the quality of their responses to a given instruction. This process will be used to create a leaderboard reflecting the most accurate and human-preferred answers.";

/// AlpacaEval 2's judge user message for an instruction and the two outputs in the order shown.
pub fn judge_messages(instruction: &str, first: &str, second: &str) -> (String, String) {
    let user = format!(
        "I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.\n\n\
         ## Instruction\n\n{{\n    \"instruction\": \"\"\"{instruction}\"\"\",\n}}\n\n\
         ## Model Outputs\n\nHere are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.\n\n\
         {{\n    {{\n        \"model_identifier\": \"m\",\n        \"output\": \"\"\"{first}\"\"\"\n    }},\n    {{\n        \"model_identifier\": \"M\",\n        \"output\": \"\"\"{second}\"\"\"\n    }}\n}}\n\n\
         ## Task\n\nEvaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.\n\n\
         ## Best Model Identifier"
    );
    (SYSTEM_PROMPT.to_string(), user)
}

/// The two messages as one ChatML prompt with the assistant's turn opened (how AlpacaEval's
/// template is written, for a local judge that completes raw text).
pub fn chatml(system: &str, user: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// A judge's reply: its text and, when the judge gives them, the log-probabilities of the first
/// token's most likely alternatives.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    #[serde(default)]
    pub top_logprobs: Vec<(String, f64)>,
}

/// The probability that the output shown first (`m`) is the better one: from the first token's
/// top log-probabilities when they hold `m` or `M` (`P(m) / (P(m) + P(M))`, a missing one counting
/// as 0, as AlpacaEval's `logprob_parser`), else from the text: its first word (after spaces,
/// quotes, backticks and asterisks) being exactly `m` gives 1, `M` gives 0; `None` otherwise.
pub fn prompt_first_probability(reply: &Reply) -> Option<f64> {
    let lp = |name: &str| reply.top_logprobs.iter().find(|(t, _)| t == name).map(|(_, l)| *l);
    match (lp("m"), lp("M")) {
        (None, None) => {}
        (m, big) => {
            let (pm, pbig) = (m.map_or(0.0, f64::exp), big.map_or(0.0, f64::exp));
            if pm + pbig > 0.0 {
                return Some(pm / (pm + pbig));
            }
        }
    }
    let text = reply.text.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '*'));
    let word: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    match word.as_str() {
        "m" => Some(1.0),
        "M" => Some(0.0),
        _ => None,
    }
}

/// AlpacaEval's preference (1 = the reference is better, 2 = the model's output) from the
/// probability that the output shown first is better.
pub fn preference(first_is_better: f64, switched: bool) -> f64 {
    let shown = 2.0 - first_is_better;
    if switched {
        3.0 - shown
    } else {
        shown
    }
}

/// A judge of two outputs.
pub trait PairJudge: Sync {
    /// The judge's name in the annotations (AlpacaEval's `annotator`).
    fn name(&self) -> String;
    /// The reply to AlpacaEval's two messages; an error is the reason the item is skipped.
    fn reply(&self, system: &str, user: &str) -> Result<Reply>;
    /// How many judgements may run at once.
    fn concurrency(&self) -> usize {
        1
    }
    /// Why the judge cannot go on (e.g. an endpoint that refuses the key), if so.
    fn stopped(&self) -> Option<String> {
        None
    }
}

/// A local checkpoint as the judge: one prefill of the ChatML prompt ([`chatml`]), whose
/// next-token distribution gives `m`'s and `M`'s log-probabilities (over the whole vocabulary:
/// AlpacaEval 2's weighted preference with nothing cut to a top 5), then the greedy reply from
/// the same cache (its text, for the annotations and for a judge whose identifiers are not one
/// token each). A prompt longer than `max_prompt_tokens` is an error (skipped), not cut.
pub struct LocalJudge<'a> {
    pub name: String,
    pub thinker: &'a crate::Thinker,
    pub tokenizer: &'a crate::TextTokenizer,
    pub max_prompt_tokens: usize,
    pub max_new_tokens: usize,
}

impl LocalJudge<'_> {
    /// The token id of an identifier the tokenizer keeps whole, else `None`.
    fn single_token(&self, identifier: &str) -> Result<Option<u32>> {
        let ids = self.tokenizer.encode(identifier)?;
        Ok(match ids.as_slice() {
            [id] => Some(*id),
            _ => None,
        })
    }
}

impl PairJudge for LocalJudge<'_> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn reply(&self, system: &str, user: &str) -> Result<Reply> {
        use crate::omni::generate::{decode, GenerationConfig};
        let ids = self.tokenizer.encode(&chatml(system, user))?;
        if ids.len() > self.max_prompt_tokens {
            bail!("the judge prompt has {} tokens, over --judge-max-prompt-tokens {}", ids.len(), self.max_prompt_tokens);
        }
        let batch = crate::PromptBatch::left_padded(&[ids], self.tokenizer.end_of_text)?;
        let prefill = self.thinker.prefill(&batch, crate::PrefillOptions::default())?;
        let logits: Vec<f32> = prefill.state.next_logits.get(0)?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_sum = max + logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
        let mut top_logprobs = Vec::new();
        for identifier in ["m", "M"] {
            if let Some(&l) = self.single_token(identifier)?.and_then(|id| logits.get(id as usize)) {
                top_logprobs.push((identifier.to_string(), l as f64 - log_sum));
            }
        }
        let cfg = GenerationConfig {
            max_new_tokens: self.max_new_tokens.max(1),
            sampling: crate::Sampling::Greedy,
            stop_tokens: vec![self.tokenizer.im_end, self.tokenizer.end_of_text],
        };
        let out = decode(self.thinker, prefill.state, &cfg, &mut crate::Rng::seed(0))?;
        let text = self.tokenizer.decode(&out.first().context("the judge generated nothing")?.token_ids)?;
        Ok(Reply { text, top_logprobs })
    }
}

/// One reference output.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceOutput {
    /// Position in the file (AlpacaEval's `index`).
    pub index: usize,
    pub instruction: String,
    pub output: String,
    pub generator: String,
}

/// Reference outputs (AlpacaEval's outputs format: a JSON list of `{instruction, output,
/// generator, ...}`), by instruction.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub outputs: Vec<ReferenceOutput>,
    by_instruction: HashMap<String, usize>,
    by_trimmed: HashMap<String, usize>,
    /// Entries that cannot be used, with their position and the reason.
    pub skipped: Vec<String>,
}

impl References {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read reference outputs {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("reference outputs {} are not JSON: {e}", path.display()))?;
        let Value::Array(list) = doc else { bail!("reference outputs {} are not a JSON list", path.display()) };
        let mut refs = References::default();
        for (index, v) in list.iter().enumerate() {
            let at = format!("{} item {index}", path.display());
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            let (Some(instruction), Some(output)) = (field("instruction"), field("output")) else {
                refs.skipped.push(format!("{at}: no \"instruction\" and \"output\" strings"));
                continue;
            };
            if refs.by_instruction.contains_key(&instruction) {
                refs.skipped.push(format!("{at}: the instruction is given again"));
                continue;
            }
            let n = refs.outputs.len();
            refs.by_instruction.insert(instruction.clone(), n);
            refs.by_trimmed.entry(instruction.trim().to_string()).or_insert(n);
            refs.outputs.push(ReferenceOutput { index, instruction, output, generator: field("generator").unwrap_or_else(|| "reference".into()) });
        }
        Ok(refs)
    }

    /// The reference for an instruction: the same text, else the same text trimmed.
    pub fn find(&self, instruction: &str) -> Option<&ReferenceOutput> {
        self.by_instruction.get(instruction).or_else(|| self.by_trimmed.get(instruction.trim())).map(|&i| &self.outputs[i])
    }
}

/// One judgement (AlpacaEval's annotation fields, and the switch and position it used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub instruction: String,
    /// The reference output.
    pub output_1: String,
    pub generator_1: String,
    /// The model's output.
    pub output_2: String,
    pub generator_2: String,
    pub annotator: String,
    /// 1 = the reference is better, 2 = the model's output; `None` when the reply named neither.
    pub preference: Option<f64>,
    pub raw_completion: String,
    #[serde(default)]
    pub is_switched_outputs: bool,
    /// The instruction's position in the reference outputs (AlpacaEval's `index`).
    #[serde(default)]
    pub index: usize,
}

/// Reads annotations in AlpacaEval's `annotations.json` layout (a JSON list; `preference` a
/// number, a numeric string or null; `raw_completion` anything, kept as text); the position in
/// the list is the index.
pub fn load_annotations(path: &Path) -> Result<Vec<Annotation>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read annotations {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("annotations {} are not JSON: {e}", path.display()))?;
    let Value::Array(list) = doc else { bail!("annotations {} are not a JSON list", path.display()) };
    list.iter()
        .enumerate()
        .map(|(index, v)| {
            let at = || format!("{} item {index}", path.display());
            let text_of = |k: &str| -> Result<String> {
                match v.get(k) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    None | Some(Value::Null) if k.starts_with("generator") || k == "annotator" => Ok(String::new()),
                    _ => bail!("{}: field {k:?} is not a string", at()),
                }
            };
            let preference = match v.get("preference") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("nan") => None,
                Some(Value::String(s)) => Some(s.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("{}: preference {s:?} is not a number", at()))?),
                Some(other) => bail!("{}: preference {other} is not a number", at()),
            };
            Ok(Annotation {
                instruction: text_of("instruction")?,
                output_1: text_of("output_1")?,
                generator_1: text_of("generator_1")?,
                output_2: text_of("output_2")?,
                generator_2: text_of("generator_2")?,
                annotator: text_of("annotator")?,
                preference,
                raw_completion: match v.get("raw_completion") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                },
                is_switched_outputs: v.get("is_switched_outputs").and_then(Value::as_bool).unwrap_or(false),
                index,
            })
        })
        .collect()
}

/// One comparison to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The item's id in the evaluated dataset.
    pub id: String,
    pub instruction: String,
    pub output: String,
    pub generator: String,
    pub reference: ReferenceOutput,
}

/// The annotations of the pairs judged, and the pairs that were not, with their reasons.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// In the order of the pairs.
    pub annotations: Vec<Annotation>,
    pub skipped: Vec<String>,
    /// Why judging stopped early ([`PairJudge::stopped`]), if it did.
    pub stopped: Option<String>,
}

/// Judges every pair (up to `judge.concurrency()` at once). A judge error skips the pair with its
/// reason; a reply that names neither output is kept with no preference (AlpacaEval's NaN) and
/// reported too; a judge that stops ([`PairJudge::stopped`]) leaves the rest unjudged. `done` is
/// called after each pair.
pub fn judge_pairs(pairs: &[Pair], judge: &dyn PairJudge, done: &(dyn Fn() + Sync)) -> Judged {
    let results: Vec<Mutex<Option<std::result::Result<Annotation, String>>>> = pairs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let annotator = judge.name();
    let work = || loop {
        if judge.stopped().is_some() {
            break;
        }
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some(pair) = pairs.get(i) else { break };
        let outcome = judge_one(pair, judge, &annotator);
        if let Ok(mut slot) = results[i].lock() {
            *slot = Some(outcome);
        }
        done();
    };
    std::thread::scope(|s| {
        for _ in 0..judge.concurrency().clamp(1, pairs.len().max(1)) {
            s.spawn(work);
        }
    });
    let mut judged = Judged { stopped: judge.stopped(), ..Default::default() };
    for (pair, slot) in pairs.iter().zip(results) {
        match slot.into_inner().ok().flatten() {
            Some(Ok(a)) => {
                if a.preference.is_none() {
                    judged.skipped.push(format!("{}: the judge's reply {:?} names neither m nor M (no preference)", pair.id, cut(&a.raw_completion, 80)));
                }
                judged.annotations.push(a);
            }
            Some(Err(why)) => judged.skipped.push(format!("{}: judge failed: {why}", pair.id)),
            None => judged.skipped.push(format!("{}: not judged", pair.id)),
        }
    }
    judged
}

fn cut(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push_str("...");
    }
    out
}

/// One pair's annotation; identical outputs are a draw (1.5) without asking, as AlpacaEval does.
fn judge_one(pair: &Pair, judge: &dyn PairJudge, annotator: &str) -> std::result::Result<Annotation, String> {
    let switched = is_switched(&pair.reference.instruction);
    let (first, second) = if switched { (&pair.output, &pair.reference.output) } else { (&pair.reference.output, &pair.output) };
    let (pref, raw) = if pair.output == pair.reference.output {
        (Some(1.5), String::new())
    } else {
        let (system, user) = judge_messages(&pair.reference.instruction, first, second);
        let reply = judge.reply(&system, &user).map_err(|e| format!("{e:#}"))?;
        (prompt_first_probability(&reply).map(|p| preference(p, switched)), reply.text)
    };
    Ok(Annotation {
        instruction: pair.reference.instruction.clone(),
        output_1: pair.reference.output.clone(),
        generator_1: pair.reference.generator.clone(),
        output_2: pair.output.clone(),
        generator_2: pair.generator.clone(),
        annotator: annotator.to_string(),
        preference: pref,
        raw_completion: raw,
        is_switched_outputs: switched,
        index: pair.reference.index,
    })
}

/// AlpacaEval's head-to-head numbers (`AbsoluteScoringRule.describe_head2head` and the
/// `ZeroOneScoringRule` win rate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WinRate {
    pub win_rate: f64,
    pub standard_error: Option<f64>,
    pub n_wins: usize,
    pub n_wins_base: usize,
    pub n_draws: usize,
    pub n_total: usize,
    pub discrete_win_rate: f64,
}

/// The win rate of preferences on AlpacaEval's scale (see the module documentation).
pub fn win_rate(preferences: &[Option<f64>]) -> WinRate {
    let is_draw = |p: f64| p == 1.5 || p == 0.0;
    let n_draws = preferences.iter().flatten().filter(|&&p| is_draw(p)).count();
    let valid: Vec<f64> = preferences.iter().flatten().map(|&p| if p == 0.0 { 1.5 } else { p }).filter(|p| (1.0..=2.0).contains(p)).collect();
    let shifted: Vec<f64> = valid.iter().map(|p| p - 1.0).collect();
    let (mean, sem) = glm::mean_and_sem(&shifted);
    let discrete: Vec<f64> = valid.iter().map(|&p| if p == 1.5 { 0.5 } else { p.round() - 1.0 }).collect();
    WinRate {
        win_rate: 100.0 * mean,
        standard_error: sem.map(|s| 100.0 * s),
        n_wins: shifted.iter().filter(|&&p| p > 0.5).count(),
        n_wins_base: shifted.iter().filter(|&&p| p < 0.5).count(),
        n_draws,
        n_total: valid.len(),
        discrete_win_rate: 100.0 * glm::mean_and_sem(&discrete).0,
    }
}

/// Everything `ttrav eval` reports about a model's win rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub win_rate: WinRate,
    /// The mean length of the model's outputs in characters, truncated (AlpacaEval's
    /// `avg_length`).
    pub avg_length: usize,
    pub length_controlled_winrate: Option<f64>,
    pub lc_standard_error: Option<f64>,
    /// The GLM, its weights and C; `None` when it could not be fitted (see `lc_note`).
    pub lc: Option<glm::LcResult>,
    pub lc_note: Option<String>,
}

/// The win rates and length-controlled win rate of a model's annotations (see [`glm`]).
pub fn summarize(annotations: &[Annotation], lc_glm: glm::Glm, lc_data: Option<&glm::LcData>) -> Summary {
    let prefs: Vec<Option<f64>> = annotations.iter().map(|a| a.preference).collect();
    let lengths: usize = annotations.iter().map(|a| a.output_2.chars().count()).sum();
    let items: Vec<glm::LcItem> = annotations
        .iter()
        .map(|a| glm::LcItem { index: a.index, preference: a.preference, reference_chars: a.output_1.chars().count(), output_chars: a.output_2.chars().count() })
        .collect();
    let (lc, lc_note) = match glm::length_controlled(&items, lc_glm, lc_data) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    Summary {
        win_rate: win_rate(&prefs),
        avg_length: lengths.checked_div(annotations.len()).unwrap_or(0),
        length_controlled_winrate: lc.as_ref().map(|r| r.length_controlled_winrate),
        lc_standard_error: lc.as_ref().and_then(|r| r.lc_standard_error),
        lc,
        lc_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_probabilities() {
        let text = |t: &str| Reply { text: t.into(), top_logprobs: Vec::new() };
        assert_eq!(prompt_first_probability(&text("m")), Some(1.0));
        assert_eq!(prompt_first_probability(&text("M")), Some(0.0));
        assert_eq!(prompt_first_probability(&text("  \"M\"\n")), Some(0.0));
        assert_eq!(prompt_first_probability(&text("**m**")), Some(1.0));
        assert_eq!(prompt_first_probability(&text("Model M")), None);
        assert_eq!(prompt_first_probability(&text("mM")), None);
        assert_eq!(prompt_first_probability(&text("")), None);
        // Log-probabilities win over the text; a missing alternative counts as 0.
        let lp = Reply { text: "M".into(), top_logprobs: vec![("M".into(), (0.25f64).ln()), ("m".into(), (0.5f64).ln()), ("The".into(), -1.0)] };
        assert!((prompt_first_probability(&lp).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let only = Reply { text: "x".into(), top_logprobs: vec![("M".into(), -0.1)] };
        assert_eq!(prompt_first_probability(&only), Some(0.0));
        let neither = Reply { text: "m".into(), top_logprobs: vec![("The".into(), -0.1)] };
        assert_eq!(prompt_first_probability(&neither), Some(1.0));
    }

    #[test]
    fn preferences_follow_alpaca_evals_convention() {
        // Not switched: m is the reference; m better -> 1 (the reference wins).
        assert_eq!(preference(1.0, false), 1.0);
        assert_eq!(preference(0.0, false), 2.0);
        // Switched: m is the model's output; m better -> 2.
        assert_eq!(preference(1.0, true), 2.0);
        assert_eq!(preference(0.25, true), 1.25);
    }

    #[test]
    fn win_rates_count_as_alpaca_eval_does() {
        let prefs = [Some(2.0), Some(1.0), Some(1.5), Some(0.0), Some(1.75), None, Some(1.2), Some(3.0)];
        let w = win_rate(&prefs);
        // Valid: 2, 1, 1.5, 1.5 (the 0), 1.75, 1.2 -> minus 1: 1, 0, .5, .5, .75, .2.
        assert_eq!((w.n_total, w.n_wins, w.n_wins_base, w.n_draws), (6, 2, 2, 2));
        assert!((w.win_rate - 100.0 * 2.95 / 6.0).abs() < 1e-12);
        let m = 2.95 / 6.0;
        let var = [1.0, 0.0, 0.5, 0.5, 0.75, 0.2].iter().map(|x: &f64| (x - m).powi(2)).sum::<f64>() / 5.0;
        assert!((w.standard_error.unwrap() - 100.0 * (var / 6.0).sqrt()).abs() < 1e-12);
        // Discrete: 1, 0, .5, .5, 1, 0.
        assert!((w.discrete_win_rate - 100.0 * 3.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn the_prompt_is_alpaca_evals() {
        let (system, user) = judge_messages("Say hi.", "Hi!", "Hello.");
        assert!(system.starts_with("You are a highly efficient assistant, who evaluates and selects"));
        assert!(user.contains("{\n    \"instruction\": \"\"\"Say hi.\"\"\",\n}"), "{user}");
        assert!(user.contains("\"model_identifier\": \"m\",\n        \"output\": \"\"\"Hi!\"\"\"\n    },"), "{user}");
        assert!(user.contains("\"model_identifier\": \"M\",\n        \"output\": \"\"\"Hello.\"\"\"\n    }\n}"), "{user}");
        assert!(user.ends_with("m or M.\n\n## Best Model Identifier"), "{user}");
        assert!(chatml(&system, &user).ends_with("## Best Model Identifier<|im_end|>\n<|im_start|>assistant\n"));
    }
}
