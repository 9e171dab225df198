//! One GRPO step, in the order the data meets it: roll out N answers per question from one
//! shared prefill, score them (by the caller), pick the answers trained on, compute advantages,
//! recompute log-probabilities through the differentiable forward, accumulate the gradients of
//! the loss over the questions, clip, and take an AdamW step.

use super::grpo::{advantages, loss, AdvantageKind, LossConfig, LossParts};
use super::optim::AdamW;
use crate::nn::Pass;
use crate::omni::generate::{decode, FinishReason, GenerationConfig};
use crate::omni::thinker::{EncodedPrompt, PrefillOptions, PromptBatch, PromptContext, Thinker};
use crate::sampling::Rng;
use anyhow::{bail, Result};
use candle_core::Tensor;

/// N sampled answers to one prompt, with what training needs of the prompt.
pub struct Rollout {
    pub context: PromptContext,
    pub answers: Vec<Vec<u32>>,
    pub finish: Vec<FinishReason>,
}

/// Samples `n` answers from one prefill of `prompt`.
pub fn rollout(thinker: &Thinker, prompt: &EncodedPrompt, pad: u32, n: usize, gen: &GenerationConfig, rng: &mut Rng) -> Result<Rollout> {
    Ok(rollout_batch(thinker, std::slice::from_ref(prompt), pad, n, gen, rng)?.remove(0))
}

/// Samples `n` answers to each of several prompts: one prefill of the (left-padded) batch, its
/// cache forked `n` ways per prompt, and all `prompts.len() * n` sequences decoded together.
pub fn rollout_batch(
    thinker: &Thinker,
    prompts: &[EncodedPrompt],
    pad: u32,
    n: usize,
    gen: &GenerationConfig,
    rng: &mut Rng,
) -> Result<Vec<Rollout>> {
    let batch = PromptBatch::from_prompts(prompts, pad)?;
    let prefill = thinker.prefill(&batch, PrefillOptions::default())?;
    let state = prefill.state.fork(n)?;
    let samples = decode(thinker, state, gen, rng)?;
    samples
        .chunks(n)
        .enumerate()
        .map(|(b, group)| {
            Ok(Rollout {
                context: prefill.context(b)?,
                answers: group.iter().map(|s| s.token_ids.clone()).collect(),
                finish: group.iter().map(|s| s.finish_reason).collect(),
            })
        })
        .collect()
}

/// What one question contributes to an update.
pub struct TrainGroup<'a> {
    pub rollout: &'a Rollout,
    /// Indices (into the rollout's answers) of the answers trained on.
    pub chosen: Vec<usize>,
    /// Their rewards.
    pub rewards: Vec<f32>,
    /// Multiplies the group's advantages (confidence weighting; 1 = off).
    pub weight: f32,
}

/// Settings of an update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateConfig {
    pub loss: LossConfig,
    pub advantage: AdvantageKind,
    pub temperature: f32,
    pub grad_clip: f64,
    /// Drop groups whose rewards are all equal (DAPO): they carry no signal.
    pub filter_equal_rewards: bool,
    /// Seed of this update's LoRA dropout masks (used when the adapters have dropout).
    pub dropout_seed: u64,
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UpdateStats {
    pub loss: f64,
    pub parts: LossParts,
    pub grad_norm: f64,
    pub lr: f64,
    pub groups_used: usize,
    pub groups_filtered: usize,
    /// Set when the step was skipped (non-finite loss or gradient), with the reason.
    pub skipped: Option<String>,
}

fn answers_of(g: &TrainGroup) -> Vec<Vec<u32>> {
    g.chosen.iter().map(|&i| g.rollout.answers[i].clone()).map(|a| if a.is_empty() { vec![0] } else { a }).collect()
}

/// One optimizer step over `groups` (each a micro-batch; the loss is their mean).
pub fn update(thinker: &Thinker, opt: &mut AdamW, groups: &[TrainGroup], cfg: &UpdateConfig) -> Result<UpdateStats> {
    let mut stats = UpdateStats::default();
    let used: Vec<&TrainGroup> = groups
        .iter()
        .filter(|g| {
            let equal = g.rewards.iter().all(|&r| (r - g.rewards[0]).abs() < 1e-9);
            !(cfg.filter_equal_rewards && equal) && !g.chosen.is_empty()
        })
        .collect();
    stats.groups_filtered = groups.len() - used.len();
    stats.groups_used = used.len();
    if used.is_empty() {
        stats.skipped = Some("no group with a learning signal".into());
        return Ok(stats);
    }
    let mut accumulated: Option<Vec<Tensor>> = None;
    let mut total_loss = 0.0;
    let mut parts_sum = LossParts::default();
    for g in &used {
        let answers = answers_of(g);
        let adv: Vec<f32> = advantages(&g.rewards, cfg.advantage).iter().map(|a| a * g.weight).collect();
        let old = thinker.answer_logprobs(&g.rollout.context, &answers, cfg.temperature, Pass::INFER)?.logp.detach();
        let reference = if cfg.loss.kl_coef != 0.0 {
            Some(thinker.answer_logprobs(&g.rollout.context, &answers, cfg.temperature, Pass::BASE)?.logp.detach())
        } else {
            None
        };
        let pass = Pass { dropout_seed: Some(cfg.dropout_seed), ..Pass::TRAIN };
        let lp = thinker.answer_logprobs(&g.rollout.context, &answers, cfg.temperature, pass)?;
        let adv = Tensor::from_vec(adv, answers.len(), thinker.device())?.to_dtype(lp.logp.dtype())?;
        let (l, parts) = loss(&cfg.loss, &lp, &old, reference.as_ref(), &adv)?;
        let l = (l / used.len() as f64)?;
        let value = l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            stats.skipped = Some(format!("non-finite loss ({value}); the optimizer state is untouched"));
            return Ok(stats);
        }
        total_loss += value;
        parts_sum.policy += parts.policy / used.len() as f64;
        parts_sum.kl += parts.kl / used.len() as f64;
        parts_sum.entropy += parts.entropy / used.len() as f64;
        parts_sum.clip_fraction += parts.clip_fraction / used.len() as f64;
        let grads = l.backward()?;
        let these: Vec<Tensor> = opt
            .params
            .iter()
            .map(|(_, p)| grads.get(p.as_tensor()).cloned().map_or_else(|| p.as_tensor().zeros_like(), Ok))
            .collect::<candle_core::Result<Vec<_>>>()?;
        accumulated = Some(match accumulated {
            None => these,
            Some(acc) => acc.iter().zip(&these).map(|(a, b)| a + b).collect::<candle_core::Result<Vec<_>>>()?,
        });
    }
    let grads = match accumulated {
        Some(g) => g,
        None => bail!("no gradients"),
    };
    stats.loss = total_loss;
    stats.parts = parts_sum;
    match opt.step(&grads, cfg.grad_clip) {
        Ok((norm, lr)) => {
            stats.grad_norm = norm;
            stats.lr = lr;
        }
        Err(e) => stats.skipped = Some(e.to_string()),
    }
    Ok(stats)
}
