//! One GRPO step, in the order the data meets it: roll out N answers per question from one
//! shared prefill (keeping each token's log-probability under the sampling model), score them
//! (by the caller), pick the answers trained on, compute advantages, then for each PPO epoch and
//! mini-batch: recompute the answers' log-probabilities through the differentiable forward
//! (one prompt's answers at a time), take the clipped loss against the rollout's log-probs,
//! accumulate the gradients, clip, and take an AdamW step. With gradient checkpointing the forward
//! keeps only each decoder layer's inputs, and the backward starts from the loss's gradient with
//! respect to the log-probabilities and reruns the head and the layers one at a time.

use super::grpo::{advantages, loss, AdvantageKind, AggScale, LossConfig, LossInputs, LossParts};
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
    /// Per answer, each token's log-probability under the model at the sampling temperature
    /// (before top-k / top-p): the old log-probabilities of the PPO ratio.
    pub logprobs: Vec<Vec<f32>>,
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
                logprobs: group.iter().map(|s| s.logprobs.clone()).collect(),
                finish: group.iter().map(|s| s.finish_reason).collect(),
            })
        })
        .collect()
}

/// [`rollout_batch`] with adaptive votes: each prompt's answers are drawn `round` at a time (one
/// prefill for all, its state forked for the prompts still open), up to `budget`, and a prompt
/// stops once `settled(prompt, its rollout so far)` says so; the saved budget is not spent.
pub fn rollout_adaptive(
    thinker: &Thinker,
    prompts: &[EncodedPrompt],
    pad: u32,
    budget: usize,
    round: usize,
    gen: &GenerationConfig,
    rng: &mut Rng,
    mut settled: impl FnMut(usize, &Rollout) -> Result<bool>,
) -> Result<Vec<Rollout>> {
    if round == 0 || budget == 0 {
        bail!("adaptive votes need a round and a budget of at least 1");
    }
    let batch = PromptBatch::from_prompts(prompts, pad)?;
    let prefill = thinker.prefill(&batch, PrefillOptions::default())?;
    let mut out: Vec<Rollout> = (0..prompts.len())
        .map(|b| Ok(Rollout { context: prefill.context(b)?, answers: Vec::new(), logprobs: Vec::new(), finish: Vec::new() }))
        .collect::<Result<_>>()?;
    // Every open prompt has drawn the same number of answers.
    let (mut open, mut drawn): (Vec<usize>, usize) = ((0..prompts.len()).collect(), 0);
    while !open.is_empty() {
        let n = round.min(budget - drawn);
        let state = prefill.state.select_rows(&open)?.fork(n)?;
        let samples = decode(thinker, state, gen, rng)?;
        for (group, &q) in samples.chunks(n).zip(&open) {
            let r = &mut out[q];
            r.answers.extend(group.iter().map(|s| s.token_ids.clone()));
            r.logprobs.extend(group.iter().map(|s| s.logprobs.clone()));
            r.finish.extend(group.iter().map(|s| s.finish_reason));
        }
        drawn += n;
        let mut still = Vec::new();
        for &q in &open {
            if drawn < budget && !settled(q, &out[q])? {
                still.push(q);
            }
        }
        open = still;
    }
    Ok(out)
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
    /// The sampling temperature (log-probabilities are of logits / temperature, as in verl).
    pub temperature: f32,
    pub grad_clip: f64,
    /// Drop groups whose rewards are all equal (DAPO): they carry no signal.
    pub filter_equal_rewards: bool,
    /// Seed of this update's LoRA dropout masks (used when the adapters have dropout).
    pub dropout_seed: u64,
    /// Passes over the step's answers (verl's `ppo_epochs`).
    pub ppo_epochs: usize,
    /// Answers per optimizer step (verl's mini-batch, in sequences); 0 = all of the step's
    /// answers, one optimizer step per epoch.
    pub mini_batch_size: usize,
    /// Answers of one group per differentiable forward (0 = all of the group's in the
    /// mini-batch); gradients are summed over them, so the update does not depend on it.
    pub micro_batch: usize,
    /// The length answers count as padded to (verl's response length), for
    /// seq-mean-token-sum-norm.
    pub response_len: usize,
    /// Recompute each decoder layer in the backward pass instead of keeping the whole graph
    /// (verl's `enable_gradient_checkpointing`): the forward keeps only every layer's inputs,
    /// the backward reruns one layer at a time, and the full-vocabulary logits exist for
    /// `logits_chunk` tokens at a time. Same gradients, about one more forward of compute.
    pub gradient_checkpointing: bool,
    /// Answer tokens (all of a micro-batch's answers together) whose full-vocabulary logits are
    /// made at once under gradient checkpointing.
    pub logits_chunk: usize,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            loss: LossConfig::default(),
            advantage: AdvantageKind::Grpo,
            temperature: 1.0,
            grad_clip: 1.0,
            filter_equal_rewards: false,
            dropout_seed: 0,
            ppo_epochs: 1,
            mini_batch_size: 0,
            micro_batch: 0,
            response_len: 512,
            gradient_checkpointing: false,
            logits_chunk: 512,
        }
    }
}

/// What an update did (loss parts averaged over its optimizer steps).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UpdateStats {
    pub loss: f64,
    pub parts: LossParts,
    /// Before clipping, averaged over the optimizer steps.
    pub grad_norm: f64,
    pub lr: f64,
    pub groups_used: usize,
    pub groups_filtered: usize,
    pub optimizer_steps: usize,
    /// Set when the update (or one of its optimizer steps) was skipped, with the reason.
    pub skipped: Option<String>,
}

/// One trained answer: its group, its index among the group's rollout answers, its advantage.
struct Trained {
    group: usize,
    answer: usize,
    advantage: f32,
}

/// The update of one step: `ppo_epochs` passes over the chosen answers of `groups` in
/// mini-batches of `mini_batch_size`, one optimizer step each; within a mini-batch, each group's
/// answers go through the differentiable forward `micro_batch` at a time (sharing one forward of
/// their prompt), their gradients summed. A mini-batch whose loss or gradient is not finite in
/// any micro-batch is skipped with the optimizer state untouched (and reported).
pub fn update(thinker: &Thinker, opt: &mut AdamW, groups: &[TrainGroup], cfg: &UpdateConfig) -> Result<UpdateStats> {
    if cfg.ppo_epochs == 0 {
        bail!("--ppo-epochs must be at least 1");
    }
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
    let mut trained: Vec<Trained> = Vec::new();
    for (gi, g) in used.iter().enumerate() {
        for (&answer, adv) in g.chosen.iter().zip(advantages(&g.rewards, cfg.advantage)) {
            trained.push(Trained { group: gi, answer, advantage: adv * g.weight });
        }
    }
    // The frozen model's log-probabilities, once (they do not change with the policy).
    let reference: Vec<Option<Tensor>> = used
        .iter()
        .map(|g| {
            if cfg.loss.kl_coef == 0.0 {
                return Ok(None);
            }
            let answers: Vec<Vec<u32>> = g.chosen.iter().map(|&i| g.rollout.answers[i].clone()).collect();
            let context = &g.rollout.context;
            Ok(Some(if cfg.gradient_checkpointing {
                thinker.answer_logprobs_kept(context, &answers, cfg.temperature, Pass::BASE, cfg.logits_chunk)?.0.logp
            } else {
                thinker.answer_logprobs(context, &answers, cfg.temperature, Pass::BASE)?.logp.detach()
            }))
        })
        .collect::<Result<_>>()?;
    let mb = if cfg.mini_batch_size == 0 { trained.len() } else { cfg.mini_batch_size };
    let (mut sum_loss, mut sum_norm, mut sum_parts) = (0.0, 0.0, LossParts::default());
    for epoch in 0..cfg.ppo_epochs {
        for (k, batch) in trained.chunks(mb).enumerate() {
            let seed = cfg.dropout_seed.wrapping_add((epoch * 1_000 + k) as u64 * 0x9E37_79B9);
            match mini_batch_step(thinker, opt, &used, &reference, batch, cfg, seed)? {
                Ok((l, parts, norm, lr)) => {
                    sum_loss += l;
                    sum_norm += norm;
                    stats.lr = lr;
                    add_parts(&mut sum_parts, &parts);
                    stats.optimizer_steps += 1;
                }
                Err(why) => stats.skipped = Some(why),
            }
        }
    }
    let n = stats.optimizer_steps.max(1) as f64;
    stats.loss = sum_loss / n;
    stats.grad_norm = sum_norm / n;
    stats.parts = scale_parts(&sum_parts, 1.0 / n);
    Ok(stats)
}

/// One optimizer step on a mini-batch; `Ok(Err(reason))` when it was skipped.
#[allow(clippy::type_complexity)]
fn mini_batch_step(
    thinker: &Thinker,
    opt: &mut AdamW,
    groups: &[&TrainGroup],
    reference: &[Option<Tensor>],
    batch: &[Trained],
    cfg: &UpdateConfig,
    dropout_seed: u64,
) -> Result<std::result::Result<(f64, LossParts, f64, f64), String>> {
    if batch.is_empty() {
        bail!("an empty mini-batch");
    }
    let lens: Vec<usize> = batch.iter().map(|t| groups[t.group].rollout.answers[t.answer].len().max(1)).collect();
    let scale = AggScale { tokens: lens.iter().sum::<usize>() as f64, sequences: batch.len() as f64, response_len: cfg.response_len as f64 };
    let device = thinker.device();
    let mut grads: Vec<Tensor> = opt.params.iter().map(|(_, p)| p.as_tensor().zeros_like()).collect::<candle_core::Result<_>>()?;
    let mut add_grads = |store: &candle_core::backprop::GradStore| -> candle_core::Result<()> {
        for (acc, (_, p)) in grads.iter_mut().zip(&opt.params) {
            if let Some(g) = store.get(p.as_tensor()) {
                *acc = (&*acc + g)?;
            }
        }
        Ok(())
    };
    let (mut total, mut parts) = (0.0, LossParts::default());
    let mut order: Vec<usize> = batch.iter().map(|t| t.group).collect();
    order.dedup();
    let chunks = order.into_iter().flat_map(|gi| {
        let mine: Vec<&Trained> = batch.iter().filter(|t| t.group == gi).collect();
        let size = if cfg.micro_batch == 0 { mine.len() } else { cfg.micro_batch };
        mine.chunks(size.max(1)).map(|c| (gi, c.to_vec())).collect::<Vec<_>>()
    });
    for (gi, mine) in chunks {
        let g = groups[gi];
        let answers: Vec<Vec<u32>> = mine.iter().map(|t| g.rollout.answers[t.answer].clone()).map(|a| if a.is_empty() { vec![0] } else { a }).collect();
        let pass = Pass { dropout_seed: Some(dropout_seed), ..Pass::TRAIN };
        // With checkpointing the log-probs come without a graph and the loss is differentiated
        // with respect to them (leaf variables) first; else the whole graph is kept.
        let (lp, kept) = if cfg.gradient_checkpointing {
            let (values, kept) = thinker.answer_logprobs_kept(&g.rollout.context, &answers, cfg.temperature, pass, cfg.logits_chunk)?;
            (values, Some(kept))
        } else {
            (thinker.answer_logprobs(&g.rollout.context, &answers, cfg.temperature, pass)?, None)
        };
        let logp = candle_core::Var::from_tensor(&lp.logp)?;
        let entropy = candle_core::Var::from_tensor(&lp.entropy)?;
        let (logp_in, entropy_in) = match kept {
            Some(_) => (logp.as_tensor().clone(), entropy.as_tensor().clone()),
            // Without an entropy bonus the entropy's graph (two [n, T, V] tensors) is not kept
            // through the backward pass.
            None if cfg.loss.entropy_coef == 0.0 => (lp.logp.clone(), lp.entropy.detach()),
            None => (lp.logp.clone(), lp.entropy.clone()),
        };
        let t = lp.logp.dim(1)?;
        let old: Vec<f32> = mine.iter().flat_map(|x| padded(&g.rollout.logprobs[x.answer], t)).collect();
        let old = Tensor::from_vec(old, (mine.len(), t), device)?.to_dtype(lp.logp.dtype())?;
        let adv = Tensor::from_vec(mine.iter().map(|x| x.advantage).collect::<Vec<_>>(), mine.len(), device)?.to_dtype(lp.logp.dtype())?;
        let chosen_pos: Vec<u32> = mine.iter().map(|x| g.chosen.iter().position(|&c| c == x.answer).unwrap_or(0) as u32).collect();
        let reference = match &reference[gi] {
            Some(r) => Some(r.index_select(&Tensor::from_vec(chosen_pos, mine.len(), device)?, 0)?.narrow(1, 0, t)?),
            None => None,
        };
        let inputs = LossInputs { logp: &logp_in, old_logp: &old, advantages: &adv, mask: &lp.mask, ref_logp: reference.as_ref(), entropy: Some(&entropy_in) };
        let (l, p) = loss(&cfg.loss, &inputs, &scale)?;
        let value = l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Ok(Err(format!("non-finite loss ({value}); the optimizer state is untouched")));
        }
        total += value;
        add_parts(&mut parts, &p);
        let loss_grads = l.backward()?;
        match kept {
            None => add_grads(&loss_grads)?,
            Some(kept) => {
                let g_logp = loss_grads.get(logp.as_tensor()).cloned().map_or_else(|| lp.logp.zeros_like(), Ok)?;
                let g_entropy = if cfg.loss.entropy_coef == 0.0 { None } else { loss_grads.get(entropy.as_tensor()).cloned() };
                thinker.backward_answer_logprobs(&kept, &g_logp, g_entropy.as_ref(), &mut add_grads)?;
            }
        }
    }
    Ok(match opt.step(&grads, cfg.grad_clip) {
        Ok((norm, lr)) => Ok((total, parts, norm, lr)),
        Err(e) => Err(e.to_string()),
    })
}

/// `values` padded with zeros (or cut) to `t`.
fn padded(values: &[f32], t: usize) -> Vec<f32> {
    values.iter().copied().chain(std::iter::repeat(0.0)).take(t).collect()
}

fn add_parts(sum: &mut LossParts, p: &LossParts) {
    sum.policy += p.policy;
    sum.kl += p.kl;
    sum.entropy += p.entropy;
    sum.clip_fraction += p.clip_fraction;
    sum.clip_fraction_lower += p.clip_fraction_lower;
    sum.ppo_kl += p.ppo_kl;
}

fn scale_parts(p: &LossParts, k: f64) -> LossParts {
    LossParts {
        policy: p.policy * k,
        kl: p.kl * k,
        entropy: p.entropy * k,
        clip_fraction: p.clip_fraction * k,
        clip_fraction_lower: p.clip_fraction_lower * k,
        ppo_kl: p.ppo_kl * k,
    }
}
