//! Self-judge (OP-TTRAV's `judge_open_ended`).
//!
//! The reference answer is the embedding medoid; a model (the frozen base model by default, the
//! current policy on request) is asked, greedily and with a few new tokens, how well each candidate
//! matches it in factual content, on a 0-10 scale. The first one- or two-digit number of the reply,
//! clamped to 0..10 and divided by 10, is the reward; a reply without one scores 0.5.

use super::medoid::{self, MedoidConfig};
use super::{Diagnostics, Embedder, Group, Judge, Scored};
use anyhow::Result;

/// Which model judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JudgeModel {
    /// The model with its adapter off (avoids the policy grading itself).
    #[default]
    Base,
    /// The current policy (what OP-TTRAV did during training).
    Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub model: JudgeModel,
    pub max_new_tokens: usize,
    /// Each prompt field is cut to this many characters.
    pub max_field_chars: usize,
    /// Score of a reply without a number.
    pub neutral: f32,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self { model: JudgeModel::Base, max_new_tokens: 8, max_field_chars: 4000, neutral: 0.5 }
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The judge prompt, exactly as the reference builds it.
pub fn judge_prompt(question: &str, reference: &str, candidate: &str, max_chars: usize) -> String {
    let or_empty = |s: &str| if s.is_empty() { "[empty]".to_string() } else { cut(s, max_chars) };
    format!(
        "You are evaluating answers to a video understanding question.\n\nQuestion: {}\n\nReference answer \
         (from majority vote): {}\n\nCandidate answer: {}\n\nHow well does the candidate match the reference in \
         factual content (ignore phrasing, focus on whether the same facts are stated)?\n\nOutput a single integer \
         from 0 (completely different) to 10 (identical in factual content). No explanation. Just the \
         number.\n\nScore:",
        cut(question, max_chars),
        or_empty(reference),
        or_empty(candidate)
    )
}

/// The score in a judge's reply: the first standalone number of one or two digits (`\b\d{1,2}\b`),
/// clamped to 0..10, over 10; `None` when there is none.
/// The value of a Unicode decimal digit (category Nd), as Python's `int()` reads it.
fn digit_value(c: char) -> Option<u32> {
    // Zeros of the Nd blocks (each block holds ten consecutive digits).
    const ZEROS: &[u32] = &[
        0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0,
        0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620,
        0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0,
        0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E950,
    ];
    let u = c as u32;
    ZEROS.iter().find(|&&z| u >= z && u < z + 10).map(|&z| u - z)
}

pub fn parse_score(reply: &str) -> Option<f32> {
    // `\b\d{1,2}\b` matches exactly the word-character runs made of one or two decimal digits.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    reply
        .split(|c: char| !is_word(c))
        .find(|run| (1..=2).contains(&run.chars().count()) && run.chars().all(|c| digit_value(c).is_some()))
        .map(|run| {
            let v = run.chars().fold(0u32, |acc, c| acc * 10 + digit_value(c).unwrap_or(0));
            v.min(10) as f32 / 10.0
        })
}

pub fn score(cfg: &JudgeConfig, group: &Group, embedder: &dyn Embedder, judge: &dyn Judge) -> Result<Scored> {
    let reference = medoid::score(&MedoidConfig::default(), &Group { gold: None, ..group.clone() }, embedder)?;
    let ref_text = reference.label.clone().unwrap_or_default();
    let mut rewards = Vec::with_capacity(group.candidates.len());
    for c in &group.candidates {
        let prompt = judge_prompt(&group.question, &ref_text, c, cfg.max_field_chars);
        let reply = judge.complete(&prompt, cfg.max_new_tokens)?;
        rewards.push(parse_score(&reply).unwrap_or(cfg.neutral));
    }
    let n = rewards.len() as f32;
    let d = Diagnostics {
        majority_ratio: rewards.iter().sum::<f32>() / n,
        ..reference.diagnostics.clone()
    };
    Ok(Scored { rewards, label: reference.label, anchor: reference.anchor, diagnostics: d })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_like_the_reference() {
        let cases = [
            ("7", Some(0.7)),
            ("Score: 7", Some(0.7)),
            ("10/10", Some(1.0)),
            ("11", Some(1.0)),
            ("no number", None),
            (" 3 out of 10", Some(0.3)),
            ("-2", Some(0.2)),
            ("100", None),
            ("007", None),
            ("7.5", Some(0.7)),
            ("x7", None),
            ("_7", None),
            ("99", Some(1.0)),
        ];
        for (reply, want) in cases {
            assert_eq!(parse_score(reply), want, "{reply:?}");
        }
    }

    #[test]
    fn prompt_fields_are_cut_and_empty_marked() {
        let p = judge_prompt("Q?", "", &"x".repeat(5000), 4000);
        assert!(p.contains("Reference answer (from majority vote): [empty]\n"));
        assert!(p.contains(&format!("Candidate answer: {}\n", "x".repeat(4000))));
        assert!(p.ends_with("Score:"));
    }
}
