//! Majority vote (OP-TTRAV's `video_qa` and `math`).
//!
//! Each answer is reduced to a letter (`\boxed{X}`, X in A-D; lenient forms on request) or a math
//! expression (the last `\boxed{...}`, normalised). The estimated label is the most common answer
//! (ties: the one seen first); an answer earns 1 if it equals the label (math: equal as
//! expressions or numbers), else 0. Unparseable answers earn 0; a group where nothing parses has
//! no label.

use super::extract::{choice_letter, last_boxed, math_equal, normalise_math, AnswerFormat};
use super::{length_stats, Diagnostics, Group, Scored};

/// What kind of answer is voted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerKind {
    #[default]
    Choice,
    Math,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VoteConfig {
    pub kind: AnswerKind,
    pub format: AnswerFormat,
}

/// The parsed answer of one reply.
pub fn parse(cfg: &VoteConfig, reply: &str, choices: Option<&[String]>) -> Option<String> {
    match cfg.kind {
        AnswerKind::Choice => choice_letter(reply.trim(), cfg.format, choices).map(|c| c.to_string()),
        AnswerKind::Math => last_boxed(reply).map(|b| normalise_math(&b)),
    }
}

/// Whether a vote over `replies` is settled with `budget` answers in all (adaptive votes): every
/// answer so far parses to the same answer (Early-Stopping Self-Consistency's unanimous window,
/// the window being all the answers drawn), or the leading answer is ahead of the runner-up by
/// more than the answers still to come, so that the full budget's label cannot differ.
pub fn settled(cfg: &VoteConfig, replies: &[String], choices: Option<&[String]>, budget: usize) -> bool {
    if replies.len() >= budget {
        return true;
    }
    let parsed: Vec<Option<String>> = replies.iter().map(|r| parse(cfg, r, choices)).collect();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in parsed.iter().flatten() {
        match counts.iter_mut().find(|(k, _)| same(cfg, k, a)) {
            Some((_, c)) => *c += 1,
            None => counts.push((a.clone(), 1)),
        }
    }
    if counts.len() == 1 && counts[0].1 == replies.len() {
        return true;
    }
    let mut tallies: Vec<usize> = counts.iter().map(|(_, c)| *c).collect();
    tallies.sort_unstable_by(|a, b| b.cmp(a));
    let (lead, second) = (tallies.first().copied().unwrap_or(0), tallies.get(1).copied().unwrap_or(0));
    lead > second + (budget - replies.len())
}

fn same(cfg: &VoteConfig, a: &str, b: &str) -> bool {
    match cfg.kind {
        AnswerKind::Choice => a.trim().eq_ignore_ascii_case(b.trim()),
        AnswerKind::Math => math_equal(a, b),
    }
}

pub fn score(cfg: &VoteConfig, group: &Group) -> Scored {
    let n = group.candidates.len();
    let parsed: Vec<Option<String>> =
        group.candidates.iter().map(|c| parse(cfg, c, group.choices.as_deref())).collect();
    // Count in first-seen order; the first maximum wins ties.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for a in parsed.iter().flatten() {
        match counts.iter_mut().find(|(k, _)| k == a) {
            Some((_, c)) => *c += 1,
            None => counts.push((a.clone(), 1)),
        }
    }
    let n_parsed: usize = counts.iter().map(|(_, c)| c).sum();
    let label = counts.iter().fold(None::<&(String, usize)>, |best, e| match best {
        Some(b) if b.1 >= e.1 => Some(b),
        _ => Some(e),
    });
    let rewards: Vec<f32> = parsed
        .iter()
        .map(|a| match (a, label) {
            (Some(a), Some((l, _))) if same(cfg, a, l) => 1.0,
            _ => 0.0,
        })
        .collect();
    let entropy = if n_parsed == 0 {
        0.0
    } else {
        let h: f64 = counts
            .iter()
            .map(|(_, c)| {
                let p = *c as f64 / n_parsed as f64;
                -p * p.log2()
            })
            .sum();
        (h / 4f64.log2()) as f32
    };
    let (_, mean_length) = length_stats(&group.candidates);
    let mut d = Diagnostics {
        majority_ratio: label.map_or(0.0, |(_, c)| *c as f32 / n as f32),
        vote_entropy: Some(entropy),
        empty_share: (n - parsed.iter().flatten().count()) as f32 / n as f32,
        mean_length,
        unique_answers: counts.len(),
        ..Default::default()
    };
    if let Some(gold) = &group.gold {
        // The gold answer may itself be a reply (\boxed{..}) or a bare letter / expression.
        let gold = parse(cfg, gold, group.choices.as_deref()).unwrap_or_else(|| gold.trim().to_string());
        d.label_accuracy = Some(match label {
            Some((l, _)) if same(cfg, l, &gold) => 1.0,
            _ => 0.0,
        });
        let gold_rewards: Vec<f32> =
            parsed.iter().map(|a| if a.as_deref().is_some_and(|a| same(cfg, a, &gold)) { 1.0 } else { 0.0 }).collect();
        let agree = rewards.iter().zip(&gold_rewards).filter(|(r, g)| (*r - *g).abs() < 1e-4).count();
        d.reward_accuracy = Some(agree as f32 / n as f32);
    }
    Scored { rewards, label: label.map(|(l, _)| l.clone()), anchor: None, diagnostics: d }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| format!("so \\boxed{{{x}}}")).collect()
    }

    #[test]
    fn a_vote_settles_when_unanimous_or_out_of_reach() {
        let cfg = VoteConfig::default();
        assert!(settled(&cfg, &r(&["A", "A", "A", "A"]), None, 16), "unanimous");
        assert!(!settled(&cfg, &r(&["A", "A", "A", "B"]), None, 16), "3-1 with 12 to come");
        // 9 to 3 with 4 to come: B cannot reach A.
        let mut v = r(&["A"; 9]);
        v.extend(r(&["B", "B", "B"]));
        assert!(settled(&cfg, &v, None, 16));
        // 8 to 4 with 4 to come: B could tie.
        let mut v = r(&["A"; 8]);
        v.extend(r(&["B"; 4]));
        assert!(!settled(&cfg, &v, None, 16));
        // An unparseable answer breaks unanimity, and counts for no one.
        let mut v = r(&["A", "A", "A"]);
        v.push("no idea".into());
        assert!(!settled(&cfg, &v, None, 16));
        assert!(settled(&cfg, &v, None, 4), "the budget is spent");
    }
}
