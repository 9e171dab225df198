//! Label-free rewards: each mode scores one question's N sampled answers without a label.
//!
//! Modes: majority `vote` (multiple choice or math), embedding `medoid`, self-`judge`, K-means
//! `cluster` vote (simple, continuous, KDE, EVOL-RL, with an optional novelty bonus). Modes see
//! only text, embeddings (through [`Embedder`]) and a narrow [`Judge`] handle; never the model.
//! A gold answer, when given, is used only for diagnostics (label and reward accuracy).
//!
//! ttrav reproduces OP-TTRAV's rewards on the same answers and embeddings, except where that
//! system's behaviour is a defect (each is listed in the README): unparseable multiple-choice
//! answers get 0 instead of a random reward, a group without any answer has no label instead of
//! a random letter, the novelty buffer is explicit per-run state, EVOL-RL's invalid answers keep
//! the vote's -1, and rewards are per answer (not looked up by text).

pub mod cluster;
pub mod extract;
pub mod judge;
pub mod medoid;
pub mod metrics;
pub mod vote;

use anyhow::{bail, Result};
use serde::Serialize;

/// Turns texts into L2-normalised vectors (implemented by [`crate::embed::Encoder`]).
pub trait Embedder {
    fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

impl Embedder for crate::embed::Encoder {
    fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.embed(texts)
    }
}

/// Completes a prompt greedily (the self-judge's model handle).
pub trait Judge {
    fn complete(&self, prompt: &str, max_new_tokens: usize) -> Result<String>;
}

/// One question and its sampled answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    pub question: String,
    pub candidates: Vec<String>,
    /// For evaluation only: never used by a reward.
    pub gold: Option<String>,
    /// Multiple-choice option texts (A, B, C, D), for lenient answer extraction.
    pub choices: Option<Vec<String>>,
}

/// What a mode returns for one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// One reward per candidate, in candidate order.
    pub rewards: Vec<f32>,
    /// The estimated label (vote) or the anchor answer's text (medoid, judge, cluster).
    pub label: Option<String>,
    /// Index of the anchor answer, where the mode has one.
    pub anchor: Option<usize>,
    pub diagnostics: Diagnostics,
}

/// Diagnostics every mode reports (fields a mode cannot compute are `None`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Diagnostics {
    /// Share of answers that agree with the label (vote), the medoid's mean similarity (medoid),
    /// the mean judge score (judge), or the modal cluster's share of valid answers (cluster).
    pub majority_ratio: f32,
    /// Entropy of the parsed answers in bits over log2(4) (vote only).
    pub vote_entropy: Option<f32>,
    /// Mean cosine over answer pairs (embedding modes).
    pub mean_pairwise_similarity: Option<f32>,
    /// Share of pairs with cosine > 0.95.
    pub high_similarity_pairs: Option<f32>,
    /// The group's answers look collapsed: mean pairwise similarity > 0.92.
    pub collapse_warning: bool,
    /// Share of empty (or, for votes, unparseable) answers.
    pub empty_share: f32,
    /// Mean answer length in whitespace-separated words.
    pub mean_length: f32,
    pub unique_answers: usize,
    /// Clusters found (cluster modes).
    pub clusters: Option<usize>,
    /// With a gold answer: whether the label is right (1/0; a similarity for open-ended modes).
    pub label_accuracy: Option<f32>,
    /// With a gold answer: share of answers whose reward equals what the gold label would give.
    pub reward_accuracy: Option<f32>,
}

/// Common per-group numbers: empty share and mean length.
pub fn length_stats(candidates: &[String]) -> (f32, f32) {
    let n = candidates.len().max(1) as f32;
    let empty = candidates.iter().filter(|c| c.trim().is_empty()).count() as f32 / n;
    let words = candidates.iter().map(|c| c.split_whitespace().count()).sum::<usize>() as f32 / n;
    (empty, words)
}

/// The reward mode and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Vote(vote::VoteConfig),
    Medoid(medoid::MedoidConfig),
    Judge(judge::JudgeConfig),
    Cluster(cluster::ClusterConfig),
    /// A control, not a reward: each answer gets 0 or 1 at random (independent of the answer),
    /// with the vote's diagnostics kept for monitoring.
    Random(vote::VoteConfig),
}

impl Mode {
    /// A mode by its ttrav name or OP-TTRAV's `TTRL_TASK_TYPE` alias.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "vote" | "video_qa" => Mode::Vote(vote::VoteConfig::default()),
            "math" => Mode::Vote(vote::VoteConfig { kind: vote::AnswerKind::Math, ..Default::default() }),
            "medoid" | "open_ended_video" => Mode::Medoid(medoid::MedoidConfig::default()),
            "judge" | "judge_open_ended" => Mode::Judge(judge::JudgeConfig::default()),
            "cluster" | "simple_cluster" => Mode::Cluster(cluster::ClusterConfig::default()),
            "evolrl" | "evolrl_cluster" => Mode::Cluster(cluster::ClusterConfig {
                variant: cluster::Variant::Evolrl,
                ..Default::default()
            }),
            "random" => Mode::Random(vote::VoteConfig::default()),
            other => bail!(
                "unknown reward mode `{other}`: use vote (video_qa), math, medoid (open_ended_video), \
                 judge (judge_open_ended), cluster (simple_cluster), evolrl (evolrl_cluster) or random (a control)"
            ),
        })
    }

    /// Whether the mode needs an embedding encoder.
    pub fn needs_embedder(&self) -> bool {
        !matches!(self, Mode::Vote(_) | Mode::Random(_))
    }
}

/// Every reward mode's settings, as `ttrav reward` and `ttrav adapt` take them (each mode reads
/// the ones it has). Defaults are OP-TTRAV's.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, clap::Args)]
pub struct RewardOptions {
    /// Cluster variant: simple, continuous, kde [default: from TTRL_CLUSTER_KDE /
    /// TTRL_CLUSTER_CONTINUOUS, else simple].
    #[arg(long)]
    pub variant: Option<String>,
    /// Multiple-choice answers: strict (only \boxed{X}, the reference's rule) or lenient.
    #[arg(long, default_value = "strict")]
    pub answer_format: String,
    /// Medoid mode: compare with the medoid answer or the centroid of all answers.
    #[arg(long, default_value = "medoid")]
    pub anchor: String,
    /// Medoid mode: answers with fewer words get their reward multiplied by 0.7 (0 = off).
    #[arg(long, env = "TTRL_OE_MIN_LEN_TOKENS", default_value_t = 0)]
    pub min_words: usize,
    /// Cluster mode: weight of the novelty bonus against earlier anchors (0 = off).
    #[arg(long, env = "TTRL_NOVELTY_BETA", default_value_t = 0.0)]
    pub novelty_beta: f32,
    /// Cluster mode: the range of K tried.
    #[arg(long, env = "TTRL_CLUSTER_K_MIN", default_value_t = 2)]
    pub k_min: usize,
    #[arg(long, env = "TTRL_CLUSTER_K_MAX", default_value_t = 4)]
    pub k_max: usize,
    /// Cluster mode: K-means initialisations per K.
    #[arg(long, default_value_t = 4)]
    pub n_init: usize,
    /// Cluster mode: the K-means seed.
    #[arg(long, env = "TTRL_CLUSTER_SEED", default_value_t = 0)]
    pub cluster_seed: u64,
    /// KDE variant: the kernel width.
    #[arg(long, env = "TTRL_CLUSTER_KDE_TAU", default_value_t = 0.2)]
    pub kde_tau: f32,
}

impl Default for RewardOptions {
    fn default() -> Self {
        Self {
            variant: None,
            answer_format: "strict".into(),
            anchor: "medoid".into(),
            min_words: 0,
            novelty_beta: 0.0,
            k_min: 2,
            k_max: 4,
            n_init: 4,
            cluster_seed: 0,
            kde_tau: 0.2,
        }
    }
}

impl Mode {
    /// The mode named `name` (see [`Mode::from_name`]) with `opts` applied; an unknown option
    /// value is an error naming the flag. Without a variant, the cluster mode reads OP-TTRAV's
    /// `TTRL_CLUSTER_KDE` / `TTRL_CLUSTER_CONTINUOUS`.
    pub fn with_options(name: &str, opts: &RewardOptions) -> Result<Self> {
        let mut mode = Mode::from_name(name)?;
        let format: extract::AnswerFormat = opts.answer_format.parse().map_err(|e| anyhow::anyhow!("--answer-format: {e}"))?;
        match &mut mode {
            Mode::Vote(cfg) | Mode::Random(cfg) => cfg.format = format,
            Mode::Medoid(cfg) => {
                cfg.anchor = match opts.anchor.as_str() {
                    "medoid" => medoid::Anchor::Medoid,
                    "centroid" => medoid::Anchor::Centroid,
                    other => bail!("--anchor must be medoid or centroid (got {other})"),
                };
                cfg.min_words = opts.min_words;
            }
            Mode::Judge(_) => {}
            Mode::Cluster(cfg) => {
                let env_on = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
                if cfg.variant != cluster::Variant::Evolrl {
                    cfg.variant = match &opts.variant {
                        Some(v) => cluster::Variant::from_name(v)?,
                        None if env_on("TTRL_CLUSTER_KDE") => cluster::Variant::Kde,
                        None if env_on("TTRL_CLUSTER_CONTINUOUS") => cluster::Variant::Continuous,
                        None => cluster::Variant::Simple,
                    };
                }
                if opts.k_min < 2 || opts.k_max < opts.k_min {
                    bail!("the K range must have 2 <= --k-min <= --k-max (got {} and {})", opts.k_min, opts.k_max);
                }
                if opts.n_init == 0 {
                    bail!("--n-init must be at least 1");
                }
                cfg.novelty_beta = opts.novelty_beta;
                cfg.k_min = opts.k_min;
                cfg.k_max = opts.k_max;
                cfg.n_init = opts.n_init;
                cfg.seed = opts.cluster_seed;
                cfg.kde_tau = opts.kde_tau;
            }
        }
        Ok(mode)
    }
}

/// The default mode name: `TTRL_TASK_TYPE` when set, else `vote` (OP-TTRAV's `video_qa`).
pub fn default_mode_name() -> String {
    std::env::var("TTRL_TASK_TYPE").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "vote".into())
}

/// State a run carries from group to group (the cluster novelty buffer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RewardState {
    /// The last anchors of the cluster vote (at most 100), oldest first.
    pub novelty_buffer: Vec<Vec<f32>>,
    /// Groups scored by the random control so far (its draws follow from this count).
    #[serde(default)]
    pub random_draws: u64,
}

/// Scores one group with `mode`.
pub fn score(
    mode: &Mode,
    group: &Group,
    embedder: Option<&dyn Embedder>,
    judge: Option<&dyn Judge>,
    state: &mut RewardState,
) -> Result<Scored> {
    if group.candidates.is_empty() {
        bail!("the question has no candidate answers to score");
    }
    let need = || embedder.ok_or_else(|| anyhow::anyhow!("this reward mode needs an embedding encoder"));
    match mode {
        Mode::Vote(cfg) => Ok(vote::score(cfg, group)),
        Mode::Medoid(cfg) => medoid::score(cfg, group, need()?),
        Mode::Judge(cfg) => {
            let j = judge.ok_or_else(|| anyhow::anyhow!("the judge mode needs a judge model"))?;
            judge::score(cfg, group, need()?, j)
        }
        Mode::Cluster(cfg) => cluster::score(cfg, group, need()?, state),
        Mode::Random(cfg) => {
            let mut scored = vote::score(cfg, group);
            let mut rng = crate::sampling::Rng::seed(0x5EED_C0DE ^ state.random_draws.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            state.random_draws += 1;
            scored.rewards = group.candidates.iter().map(|_| (rng.next_u64() & 1) as f32).collect();
            scored.diagnostics.reward_accuracy = None;
            Ok(scored)
        }
    }
}

/// Checks that every vector is finite (a broken encoder must not become rewards silently).
pub fn check_finite(vectors: &[Vec<f32>]) -> Result<()> {
    if let Some(i) = vectors.iter().position(|v| v.iter().any(|x| !x.is_finite())) {
        bail!("embedding {i} holds NaN or infinite values: the encoder is broken; no rewards were computed");
    }
    Ok(())
}

/// Dot product of two vectors (cosine for unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The rollouts trained on: the first `n_samples` of the `n_votes` answers, or with `dedup` the
/// first `n_samples` distinct non-empty ones (trimmed text), topped up in order with the rest
/// when there are too few (as OP-TTRAV's TTRL_DEDUP_SAMPLES does).
pub fn select_samples(candidates: &[String], n_samples: usize, dedup: bool) -> Vec<usize> {
    let n_samples = n_samples.min(candidates.len());
    if !dedup {
        return (0..n_samples).collect();
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut chosen: Vec<usize> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let t = c.trim();
        if !t.is_empty() && !seen.contains(&t) {
            seen.push(t);
            chosen.push(i);
            if chosen.len() == n_samples {
                return chosen;
            }
        }
    }
    for i in 0..candidates.len() {
        if chosen.len() == n_samples {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen
}

/// The confidence-weighting factor of a group's advantages, exp(conf - 1), with conf the mode's
/// agreement measure (`majority_ratio`). Applied per question (OP-TTRAV mixed them up across
/// questions).
pub fn confidence_weight(scored: &Scored) -> f32 {
    (scored.diagnostics.majority_ratio - 1.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_distinct_answers_first() {
        let c: Vec<String> = ["a", " a ", "", "b", "a", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(select_samples(&c, 3, true), vec![0, 3, 5]);
        // Too few distinct ones: topped up in index order.
        assert_eq!(select_samples(&c, 5, true), vec![0, 3, 5, 1, 2]);
        assert_eq!(select_samples(&c, 2, false), vec![0, 1]);
    }

    #[test]
    fn confidence_weight_is_one_at_full_agreement() {
        let mut s = Scored { rewards: vec![], label: None, anchor: None, diagnostics: Diagnostics::default() };
        s.diagnostics.majority_ratio = 1.0;
        assert!((confidence_weight(&s) - 1.0).abs() < 1e-7);
        s.diagnostics.majority_ratio = 0.5;
        assert!((confidence_weight(&s) - (-0.5f32).exp()).abs() < 1e-7);
    }
}
