//! GRPO, as verl's core_algos computes it: group-normalised advantages (or Dr. GRPO's
//! mean-centred ones), the PPO-clip policy loss with dual clip, four loss aggregations, the KL
//! estimators (k1, k2, k3) against the frozen model, and the entropy bonus.

use anyhow::{bail, Result};
use candle_core::{Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvantageKind {
    /// (r - mean) / (std + 1e-6), std unbiased (a group of one: mean 0, std 1).
    Grpo,
    /// r - mean (Dr. GRPO).
    DrGrpo,
}

/// Per-answer advantages of one group.
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

/// Aggregates token values `[n, T]` under `mask` `[n, T]`.
pub fn aggregate(values: &Tensor, mask: &Tensor, agg: LossAgg, max_len: usize) -> Result<Tensor> {
    let masked = (values * mask)?;
    Ok(match agg {
        LossAgg::TokenMean => (masked.sum_all()? / mask.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.max(1.0))?,
        LossAgg::SeqMeanTokenSum => masked.sum(D::Minus1)?.mean_all()?,
        LossAgg::SeqMeanTokenMean => masked.sum(D::Minus1)?.div(&mask.sum(D::Minus1)?.clamp(1.0, f64::MAX)?)?.mean_all()?,
        LossAgg::SeqMeanTokenSumNorm => (masked.sum(D::Minus1)? / max_len.max(1) as f64)?.mean_all()?,
    })
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
    let adv = advantages.unsqueeze(1)?.broadcast_as(logp.shape())?;
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
    /// (logp - ref)^2 / 2
    K2,
    /// exp(ref - logp) - (ref - logp) - 1 (verl's low_var_kl), clamped to +-10
    K3,
}

impl KlKind {
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "k1" | "kl" => Self::K1,
            "k2" | "mse" => Self::K2,
            "k3" | "low_var_kl" => Self::K3,
            other => bail!("unknown KL estimator `{other}`: k1, k2 or k3"),
        })
    }
}

/// The KL estimate per token between the policy and the frozen reference.
pub fn kl_tokens(logp: &Tensor, ref_logp: &Tensor, kind: KlKind) -> Result<Tensor> {
    let diff = (logp - ref_logp)?;
    Ok(match kind {
        KlKind::K1 => diff,
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
        let get = |a| aggregate(&v, &m, a, 10).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(get(LossAgg::TokenMean), 2.5);
        assert_eq!(get(LossAgg::SeqMeanTokenSum), 5.0);
        assert_eq!(get(LossAgg::SeqMeanTokenMean), 3.0);
        assert_eq!(get(LossAgg::SeqMeanTokenSumNorm), 0.5);
        Ok(())
    }
}

/// The settings of the policy loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    pub dual_clip: f64,
    pub agg: LossAgg,
    /// Weight of the KL penalty to the frozen model (0 = off).
    pub kl_coef: f64,
    pub kl_kind: KlKind,
    /// Weight of the entropy bonus (0 = off).
    pub entropy_coef: f64,
    /// The response budget (for seq-mean-token-sum-norm).
    pub max_response_len: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            clip_low: 0.2,
            clip_high: 0.2,
            dual_clip: 3.0,
            agg: LossAgg::TokenMean,
            kl_coef: 0.0,
            kl_kind: KlKind::K3,
            entropy_coef: 0.0,
            max_response_len: 512,
        }
    }
}

/// The parts of a loss, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct LossParts {
    pub policy: f64,
    pub kl: f64,
    pub entropy: f64,
    /// Share of tokens whose ratio was clipped.
    pub clip_fraction: f64,
}

/// `policy - entropy_coef * entropy + kl_coef * kl`, each aggregated over the answers' tokens.
pub fn loss(
    cfg: &LossConfig,
    lp: &crate::omni::thinker::AnswerLogprobs,
    old_logp: &Tensor,
    ref_logp: Option<&Tensor>,
    advantages: &Tensor,
) -> Result<(Tensor, LossParts)> {
    let tokens = policy_loss_tokens(&lp.logp, old_logp, advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip)?;
    let policy = aggregate(&tokens, &lp.mask, cfg.agg, cfg.max_response_len)?;
    let entropy = aggregate(&lp.entropy, &lp.mask, cfg.agg, cfg.max_response_len)?;
    let mut total = (&policy - (&entropy * cfg.entropy_coef)?)?;
    let mut kl_value = 0.0;
    if let (Some(r), true) = (ref_logp, cfg.kl_coef != 0.0) {
        let kl = aggregate(&kl_tokens(&lp.logp, r, cfg.kl_kind)?, &lp.mask, cfg.agg, cfg.max_response_len)?;
        kl_value = kl.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        total = (total + (kl * cfg.kl_coef)?)?;
    }
    let ratio = (&lp.logp - old_logp)?.exp()?;
    let outside = (ratio.gt(1.0 + cfg.clip_high)?.to_dtype(lp.mask.dtype())? + ratio.lt(1.0 - cfg.clip_low)?.to_dtype(lp.mask.dtype())?)?;
    let clip_fraction = ((outside * &lp.mask)?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
        / lp.mask.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.max(1.0);
    let parts = LossParts {
        policy: policy.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        kl: kl_value,
        entropy: entropy.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        clip_fraction,
    };
    Ok((total, parts))
}
