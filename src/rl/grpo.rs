//! GRPO, as verl's `core_algos.py` computes it: group-normalised advantages (or Dr. GRPO's
//! mean-centred ones), the PPO-clip policy loss with dual clip, the four loss aggregations of
//! `agg_loss`, the KL estimators of `kl_penalty` against the frozen model, the entropy bonus,
//! and the clip fractions and `ppo_kl` verl logs. Everything takes plain `[B, T]` tensors.
//!
//! A mini-batch may be scored in parts (one prompt's answers at a time, to share the prompt's
//! forward): [`AggScale`] carries the whole mini-batch's token and sequence counts, so that the
//! parts' losses add up to exactly what verl computes on the whole mini-batch at once.

use anyhow::{bail, Result};
use candle_core::{Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvantageKind {
    /// (r - mean) / (std + 1e-6), std unbiased (a group of one: mean 0, std 1).
    Grpo,
    /// r - mean (Dr. GRPO).
    DrGrpo,
}

/// Per-answer advantages of one group, as verl's `compute_grpo_outcome_advantage` (epsilon 1e-6).
/// Computed in f64: verl's f32 mean of equal rewards that f32 does not hold exactly can be one
/// rounding off, which gives such a group a std near 1e-7 and advantages near +-0.056 on some
/// machines; ttrav gives them 0.
pub fn advantages(rewards: &[f32], kind: AdvantageKind) -> Vec<f32> {
    let n = rewards.len();
    if n == 0 {
        return vec![];
    }
    let (mean, std) = if n == 1 {
        (0.0f64, 1.0f64)
    } else {
        let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / n as f64;
        let var = rewards.iter().map(|&r| (r as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var.sqrt())
    };
    rewards
        .iter()
        .map(|&r| match kind {
            AdvantageKind::Grpo => ((r as f64 - mean) / (std + 1e-6)) as f32,
            AdvantageKind::DrGrpo => (r as f64 - mean) as f32,
        })
        .collect()
}

/// How token losses become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossAgg {
    /// Mean over all tokens of the batch.
    TokenMean,
    /// Sum over each answer's tokens, mean over answers.
    SeqMeanTokenSum,
    /// Mean over each answer's tokens, mean over answers.
    SeqMeanTokenMean,
    /// Sum over each answer's tokens divided by a constant (the maximum response length), mean
    /// over answers (Dr. GRPO).
    SeqMeanTokenSumNorm,
}

impl LossAgg {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "token-mean" => Self::TokenMean,
            "seq-mean-token-sum" => Self::SeqMeanTokenSum,
            "seq-mean-token-mean" => Self::SeqMeanTokenMean,
            "seq-mean-token-sum-norm" => Self::SeqMeanTokenSumNorm,
            other => bail!(
                "unknown loss aggregation `{other}`: token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm"
            ),
        })
    }
}

/// The counts a mini-batch's aggregation divides by (verl's `agg_loss` on the whole mini-batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggScale {
    /// Valid (unmasked) tokens of the mini-batch.
    pub tokens: f64,
    /// Sequences of the mini-batch (fully masked ones included, as `torch.mean` counts them).
    pub sequences: f64,
    /// The response length the sequences are padded to (`loss_mask.shape[-1]`; ttrav pads to
    /// the response budget, as verl does).
    pub response_len: f64,
}

impl AggScale {
    /// The counts of one `[B, T]` mask taken as the whole mini-batch.
    pub fn of_mask(mask: &Tensor) -> Result<Self> {
        let (b, t) = mask.dims2()?;
        let tokens = mask.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        Ok(Self { tokens, sequences: b as f64, response_len: t as f64 })
    }
}

/// `agg_loss` of token values `[B, T]` under `mask`, for the part of a mini-batch these rows
/// are (`scale` counts the whole mini-batch; the parts' results add up to the whole's).
pub fn aggregate(values: &Tensor, mask: &Tensor, agg: LossAgg, scale: &AggScale) -> Result<Tensor> {
    let masked = (values * mask)?;
    Ok(match agg {
        // masked_mean: sum / (count + 1e-8).
        LossAgg::TokenMean => (masked.sum_all()? / (scale.tokens + 1e-8))?,
        LossAgg::SeqMeanTokenSum => (masked.sum(D::Minus1)?.sum_all()? / scale.sequences)?,
        LossAgg::SeqMeanTokenMean => (masked.sum(D::Minus1)?.div(&mask.sum(D::Minus1)?)?.sum_all()? / scale.sequences)?,
        LossAgg::SeqMeanTokenSumNorm => (masked.sum_all()? / scale.response_len)?,
    })
}

/// verl's `masked_mean` over the whole mini-batch, for this part.
fn masked_mean_part(values: &Tensor, mask: &Tensor, scale: &AggScale) -> Result<f64> {
    let v = (values.to_dtype(mask.dtype())? * mask)?.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    Ok(v / (scale.tokens + 1e-8))
}

/// The PPO-clip loss per token: `max(-A r, -A clip(r, 1-low, 1+high))`, and for A < 0 at most
/// `-A c` (dual clip), with `r = exp(clamp(logp - old, -20, 20))`.
pub fn policy_loss_tokens(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    clip_low: f64,
    clip_high: f64,
    dual_clip: f64,
) -> Result<Tensor> {
    let adv = if advantages.rank() == 1 { advantages.unsqueeze(1)?.broadcast_as(logp.shape())? } else { advantages.clone() };
    let ratio = (logp - old_logp)?.clamp(-20.0, 20.0)?.exp()?;
    let neg_adv = adv.neg()?;
    let l1 = (&neg_adv * &ratio)?;
    let l2 = (&neg_adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)?)?;
    let clipped = l1.maximum(&l2)?;
    let l3 = (&neg_adv * dual_clip)?;
    let dual = clipped.minimum(&l3)?;
    let negative = adv.lt(0.0)?;
    Ok(negative.where_cond(&dual, &clipped)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlKind {
    /// logp - ref
    K1,
    /// |logp - ref|
    Abs,
    /// (logp - ref)^2 / 2
    K2,
    /// exp(ref - logp) - (ref - logp) - 1 (verl's low_var_kl), clamped to +-10
    K3,
}

impl KlKind {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "k1" | "kl" => Self::K1,
            "abs" => Self::Abs,
            "k2" | "mse" => Self::K2,
            "k3" | "low_var_kl" => Self::K3,
            other => bail!("unknown KL estimator `{other}`: k1 (kl), abs, k2 (mse) or k3 (low_var_kl)"),
        })
    }
}

/// The KL estimate per token between the policy and the frozen reference.
pub fn kl_tokens(logp: &Tensor, ref_logp: &Tensor, kind: KlKind) -> Result<Tensor> {
    let diff = (logp - ref_logp)?;
    Ok(match kind {
        KlKind::K1 => diff,
        KlKind::Abs => diff.abs()?,
        KlKind::K2 => (diff.sqr()? * 0.5)?,
        KlKind::K3 => {
            let x = diff.neg()?.clamp(-20.0, 20.0)?;
            ((x.exp()? - &x)? - 1.0)?.clamp(-10.0, 10.0)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn advantages_follow_verl() {
        let a = advantages(&[1.0, 0.0, 0.0, 1.0], AdvantageKind::Grpo);
        let std = (1.0f64 / 3.0).sqrt(); // unbiased std of [1,0,0,1]
        assert!((a[0] as f64 - 0.5 / (std + 1e-6)).abs() < 1e-5);
        assert!((advantages(&[0.7], AdvantageKind::Grpo)[0] - 0.7).abs() < 1e-5);
        assert_eq!(advantages(&[1.0, 0.0], AdvantageKind::DrGrpo), vec![0.5, -0.5]);
        assert!(advantages(&[1.0, 1.0, 1.0], AdvantageKind::Grpo).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn clipping_and_dual_clip() -> Result<()> {
        let dev = Device::Cpu;
        // ratio = e^1 ~ 2.718 for A = +1: clipped at 1.2 -> loss -1 * max(...) = -1.2? max(-2.718, -1.2) = -1.2
        let logp = Tensor::new(&[[1.0f32], [1.0], [-3.0]], &dev)?;
        let old = Tensor::new(&[[0.0f32], [0.0], [0.0]], &dev)?;
        let adv = Tensor::new(&[1.0f32, -1.0, -1.0], &dev)?;
        let l: Vec<Vec<f32>> = policy_loss_tokens(&logp, &old, &adv, 0.2, 0.2, 3.0)?.to_vec2()?;
        assert!((l[0][0] + 1.2).abs() < 1e-5, "{l:?}");
        // A = -1, ratio e: max(e, 1.2) = e, then min(e, 3) = e.
        assert!((l[1][0] - std::f32::consts::E).abs() < 1e-5);
        // A = -1, ratio e^-3: max(0.0498, 0.8) = 0.8.
        assert!((l[2][0] - 0.8).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn kl_estimators() -> Result<()> {
        let dev = Device::Cpu;
        let lp = Tensor::new(&[[-1.0f32, -2.0]], &dev)?;
        let rf = Tensor::new(&[[-1.5f32, -2.0]], &dev)?;
        let k1: Vec<Vec<f32>> = kl_tokens(&lp, &rf, KlKind::K1)?.to_vec2()?;
        let k3: Vec<Vec<f32>> = kl_tokens(&lp, &rf, KlKind::K3)?.to_vec2()?;
        assert!((k1[0][0] - 0.5).abs() < 1e-6 && k1[0][1] == 0.0);
        assert!((k3[0][0] - ((-0.5f32).exp() + 0.5 - 1.0)).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn aggregations() -> Result<()> {
        let dev = Device::Cpu;
        let v = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 0.0, 0.0]], &dev)?;
        let m = Tensor::new(&[[1.0f32, 1.0, 1.0], [1.0, 0.0, 0.0]], &dev)?;
        let scale = AggScale { tokens: 4.0, sequences: 2.0, response_len: 10.0 };
        let get = |a| aggregate(&v, &m, a, &scale).unwrap().to_scalar::<f32>().unwrap();
        assert!((get(LossAgg::TokenMean) - 2.5).abs() < 1e-6);
        assert_eq!(get(LossAgg::SeqMeanTokenSum), 5.0);
        assert_eq!(get(LossAgg::SeqMeanTokenMean), 3.0);
        // verl: the sum of the sequence losses over the response length, (6 + 4) / 10.
        assert_eq!(get(LossAgg::SeqMeanTokenSumNorm), 1.0);
        // Two parts of a mini-batch add up to the whole.
        let (top, bottom) = (v.narrow(0, 0, 1)?, v.narrow(0, 1, 1)?);
        let (mt, mb) = (m.narrow(0, 0, 1)?, m.narrow(0, 1, 1)?);
        for a in [LossAgg::TokenMean, LossAgg::SeqMeanTokenSum, LossAgg::SeqMeanTokenMean, LossAgg::SeqMeanTokenSumNorm] {
            let parts = (aggregate(&top, &mt, a, &scale)? + aggregate(&bottom, &mb, a, &scale)?)?.to_scalar::<f32>()?;
            assert!((parts - get(a)).abs() < 1e-6, "{a:?}");
        }
        Ok(())
    }
}

/// The settings of the policy loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    /// verl's `clip_ratio_c` (dual clip): for A < 0 the loss is at most `-A c`.
    /// `f64::INFINITY` turns it off (the plain PPO-clip loss; `clip_fraction_lower` is 0).
    pub dual_clip: f64,
    pub agg: LossAgg,
    /// Weight of the KL penalty to the frozen model (the trainer computes no reference when 0).
    pub kl_coef: f64,
    pub kl_kind: KlKind,
    /// Weight of the entropy bonus (0 = off).
    pub entropy_coef: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { clip_low: 0.2, clip_high: 0.2, dual_clip: 3.0, agg: LossAgg::TokenMean, kl_coef: 0.0, kl_kind: KlKind::K3, entropy_coef: 0.0 }
    }
}

/// The parts of a loss, for the metrics (verl's `actor/*` names in comments).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct LossParts {
    /// pg_loss
    pub policy: f64,
    /// kl_loss (0 when the KL penalty is off)
    pub kl: f64,
    /// entropy_loss (the aggregated entropy; 0 when not computed)
    pub entropy: f64,
    /// pg_clipfrac: share of tokens whose clipped loss is the larger one.
    pub clip_fraction: f64,
    /// pg_clipfrac_lower: share of tokens where the dual clip bites (A < 0).
    pub clip_fraction_lower: f64,
    /// ppo_kl: the masked mean of old_logp - logp.
    pub ppo_kl: f64,
}

/// What the loss of some answers is computed from: `[B, T]` tensors (advantages `[B]` or
/// `[B, T]`); `ref_logp` when the KL penalty is on (verl's `use_kl_loss`: given, it is
/// aggregated into `kl` even at weight 0), `entropy` when its bonus is (used only at a nonzero
/// weight, as verl computes `entropy_loss` only then).
pub struct LossInputs<'a> {
    pub logp: &'a Tensor,
    pub old_logp: &'a Tensor,
    pub advantages: &'a Tensor,
    pub mask: &'a Tensor,
    pub ref_logp: Option<&'a Tensor>,
    pub entropy: Option<&'a Tensor>,
}

/// `pg_loss - entropy_coef * entropy_loss + kl_coef * kl_loss`, as verl's actor combines them,
/// each aggregated with `cfg.agg` for the part of a mini-batch `scale` describes.
pub fn loss(cfg: &LossConfig, x: &LossInputs, scale: &AggScale) -> Result<(Tensor, LossParts)> {
    let mask = x.mask;
    let tokens = policy_loss_tokens(x.logp, x.old_logp, x.advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip)?;
    let policy = aggregate(&tokens, mask, cfg.agg, scale)?;
    let value = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?) };
    let mut parts = LossParts { policy: value(&policy)?, ..Default::default() };
    let mut total = policy;
    if let (Some(e), true) = (x.entropy, cfg.entropy_coef != 0.0) {
        let entropy = aggregate(e, mask, cfg.agg, scale)?;
        parts.entropy = value(&entropy)?;
        total = (total - (entropy * cfg.entropy_coef)?)?;
    }
    // verl's use_kl_loss: kl_loss is computed (and reported) whenever the reference is given,
    // whatever its weight.
    if let Some(r) = x.ref_logp {
        let kl = aggregate(&kl_tokens(x.logp, r, cfg.kl_kind)?, mask, cfg.agg, scale)?;
        parts.kl = value(&kl)?;
        total = (total + (kl * cfg.kl_coef)?)?;
    }
    // The metrics, as compute_policy_loss defines them (no gradient).
    let (logp, old) = (x.logp.detach(), x.old_logp.detach());
    let adv = if x.advantages.rank() == 1 { x.advantages.unsqueeze(1)?.broadcast_as(logp.shape())? } else { x.advantages.clone() };
    let neg_kl = (&logp - &old)?.clamp(-20.0, 20.0)?;
    let ratio = neg_kl.exp()?;
    let l1 = (adv.neg()? * &ratio)?;
    let l2 = (adv.neg()? * ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high)?)?;
    let clipped = l1.maximum(&l2)?;
    let l3 = (adv.neg()? * cfg.dual_clip)?;
    parts.ppo_kl = masked_mean_part(&neg_kl.neg()?, mask, scale)?;
    parts.clip_fraction = masked_mean_part(&l2.gt(&l1)?, mask, scale)?;
    parts.clip_fraction_lower = masked_mean_part(&(clipped.gt(&l3)?.to_dtype(mask.dtype())? * adv.lt(0.0)?.to_dtype(mask.dtype())?)?, mask, scale)?;
    Ok((total, parts))
}
