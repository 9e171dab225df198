//! Embedding medoid (OP-TTRAV's `open_ended_video`).
//!
//! Every answer is embedded (an empty one as " "); the medoid is the answer with the highest mean
//! cosine to the others (empty answers never win). Each answer's reward is the cosine between its
//! embedding and the medoid's, clamped to [0, 1], after `\boxed{...}` wrappers are lifted from
//! both (OP-TTRAV's Omni reward lifts twice from the answer). `--anchor centroid` compares with the
//! normalised mean of the answers instead. An optional length penalty multiplies the reward of
//! answers shorter than a minimum number of words.

use super::{check_finite, dot, length_stats, Diagnostics, Embedder, Group, Scored};
use anyhow::Result;

/// What each answer is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anchor {
    /// The answer closest to all others (the reference's choice).
    #[default]
    Medoid,
    /// The normalised mean of the non-empty answers' vectors.
    Centroid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MedoidConfig {
    pub anchor: Anchor,
    /// Answers with fewer words than this get their reward multiplied by `short_penalty` (0 = off).
    pub min_words: usize,
    pub short_penalty: f32,
}

impl Default for MedoidConfig {
    fn default() -> Self {
        Self { anchor: Anchor::Medoid, min_words: 0, short_penalty: 0.7 }
    }
}

/// OP-TTRAV's box lifting: the first `\boxed{...}` without nested braces is replaced by its
/// content wherever that exact text occurs; the result is trimmed.
pub fn lift_box(text: &str) -> String {
    let t = text.trim();
    if let Some(start) = t.find("\\boxed{") {
        let inner_start = start + 7;
        if let Some(close) = t[inner_start..].find('}') {
            let whole = &t[start..inner_start + close + 1];
            let inner = &t[inner_start..inner_start + close];
            return t.replace(whole, inner).trim().to_string();
        }
    }
    t.to_string()
}

/// Mean cosine of each answer to the others; -1 for empty answers.
pub fn medoid_scores(sim: &[Vec<f32>], empty: &[bool]) -> Vec<f32> {
    let n = sim.len();
    (0..n)
        .map(|i| {
            if empty[i] {
                -1.0
            } else if n == 1 {
                0.0
            } else {
                let row: f32 = sim[i].iter().sum();
                (row - sim[i][i]) / (n - 1) as f32
            }
        })
        .collect()
}

/// Pairwise statistics over i != j: mean, share above 0.95.
pub fn pair_stats(sim: &[Vec<f32>]) -> (f32, f32) {
    let n = sim.len();
    if n < 2 {
        return (0.0, 0.0);
    }
    let mut sum = 0f64;
    let mut high = 0usize;
    let mut count = 0usize;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                sum += sim[i][j] as f64;
                high += (sim[i][j] > 0.95) as usize;
                count += 1;
            }
        }
    }
    ((sum / count as f64) as f32, high as f32 / count as f32)
}

pub fn score(cfg: &MedoidConfig, group: &Group, embedder: &dyn Embedder) -> Result<Scored> {
    let n = group.candidates.len();
    let cleaned: Vec<String> = group.candidates.iter().map(|c| c.trim().to_string()).collect();
    let empty: Vec<bool> = cleaned.iter().map(|c| c.is_empty()).collect();
    let (empty_share, mean_length) = length_stats(&group.candidates);
    let mut unique: Vec<&String> = cleaned.iter().filter(|c| !c.is_empty()).collect();
    unique.sort();
    unique.dedup();
    let mut d = Diagnostics { empty_share, mean_length, unique_answers: unique.len(), ..Default::default() };
    if empty.iter().all(|&e| e) {
        d.mean_pairwise_similarity = Some(0.0);
        d.high_similarity_pairs = Some(0.0);
        return Ok(Scored { rewards: vec![0.0; n], label: None, anchor: None, diagnostics: d });
    }
    let inputs: Vec<String> = cleaned.iter().map(|c| if c.is_empty() { " ".to_string() } else { c.clone() }).collect();
    let vectors = embedder.embed_texts(&inputs)?;
    check_finite(&vectors)?;
    let sim: Vec<Vec<f32>> = vectors.iter().map(|a| vectors.iter().map(|b| dot(a, b)).collect()).collect();
    let scores = medoid_scores(&sim, &empty);
    // First maximum.
    let medoid = (0..n).fold(0, |best, i| if scores[i] > scores[best] { i } else { best });
    let (mean_sim, high) = pair_stats(&sim);
    d.mean_pairwise_similarity = Some(mean_sim);
    d.high_similarity_pairs = Some(high);
    d.collapse_warning = mean_sim > 0.92;
    d.majority_ratio = scores[medoid];

    // Rewards: the lifted answers against the lifted anchor (the reference's Omni reward lifts
    // the answer's boxes twice; the centroid anchor, ttrav's own, lifts once).
    let lifted: Vec<String> = match cfg.anchor {
        Anchor::Medoid => cleaned.iter().map(|c| lift_box(&lift_box(c))).collect(),
        Anchor::Centroid => cleaned.iter().map(|c| lift_box(c)).collect(),
    };
    let to_embed: Vec<String> = lifted.iter().filter(|t| !t.is_empty()).cloned().collect();
    let lifted_vecs = embedder.embed_texts(&to_embed)?;
    check_finite(&lifted_vecs)?;
    let mut lifted_iter = lifted_vecs.into_iter();
    let answer_vecs: Vec<Option<Vec<f32>>> =
        lifted.iter().map(|t| if t.is_empty() { None } else { lifted_iter.next() }).collect();
    let anchor_vec: Vec<f32> = match cfg.anchor {
        Anchor::Medoid => {
            let t = lift_box(&cleaned[medoid]);
            embedder.embed_texts(&[t])?.remove(0)
        }
        Anchor::Centroid => {
            let dim = vectors[0].len();
            let mut mean = vec![0f32; dim];
            for (v, _) in vectors.iter().zip(&empty).filter(|(_, e)| !**e) {
                for (m, x) in mean.iter_mut().zip(v) {
                    *m += x;
                }
            }
            let norm = dot(&mean, &mean).sqrt().max(1e-12);
            mean.iter().map(|x| x / norm).collect()
        }
    };
    let anchor_norm = dot(&anchor_vec, &anchor_vec).sqrt();
    let rewards: Vec<f32> = answer_vecs
        .iter()
        .zip(&lifted)
        .map(|(v, text)| match v {
            None => 0.0,
            Some(v) => {
                let norm = dot(v, v).sqrt();
                let cos = if norm == 0.0 || anchor_norm == 0.0 { 0.0 } else { dot(v, &anchor_vec) / (norm * anchor_norm) };
                let mut r = cos.clamp(0.0, 1.0);
                if cfg.min_words > 0 && text.split_whitespace().count() < cfg.min_words {
                    r *= cfg.short_penalty;
                }
                r
            }
        })
        .collect();
    if let Some(gold) = group.gold.as_deref().filter(|g| !g.trim().is_empty()) {
        let g = embedder.embed_texts(&[lift_box(gold), lift_box(&cleaned[medoid])])?;
        d.label_accuracy = Some(dot(&g[0], &g[1]).clamp(0.0, 1.0));
        let gold_rewards: Vec<f32> =
            answer_vecs.iter().map(|v| v.as_ref().map_or(0.0, |v| dot(v, &g[0]).clamp(0.0, 1.0))).collect();
        let agree = rewards.iter().zip(&gold_rewards).filter(|(r, gr)| (*r - *gr).abs() < 1e-4).count();
        d.reward_accuracy = Some(agree as f32 / n as f32);
    }
    let label = match cfg.anchor {
        Anchor::Medoid => Some(cleaned[medoid].clone()),
        Anchor::Centroid => None,
    };
    Ok(Scored { rewards, label, anchor: Some(medoid), diagnostics: d })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_lifting_matches_the_reference() {
        assert_eq!(lift_box("  The answer is \\boxed{a cat}. "), "The answer is a cat.");
        // No nesting: the first `}` closes the box.
        assert_eq!(lift_box("\\boxed{\\frac{1}{2}}"), "\\frac{1{2}}");
        // Every occurrence of the same box text is replaced.
        assert_eq!(lift_box("\\boxed{x} and \\boxed{x}"), "x and x");
        assert_eq!(lift_box("\\boxed{x} and \\boxed{y}"), "x and \\boxed{y}");
        assert_eq!(lift_box(&lift_box("\\boxed{x} and \\boxed{y}")), "x and y");
    }
}
