//! AdamW with f32 moments, a cosine learning-rate schedule with linear warm-up, and global-norm
//! gradient clipping, written out so that every step of the update is visible.

use anyhow::Result;
use candle_core::{DType, Tensor, Var};

#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Final learning rate as a share of `lr` (0 = decay to 0).
    pub min_lr_ratio: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 2e-6, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, warmup_steps: 0, total_steps: 1, min_lr_ratio: 0.0 }
    }
}

/// The learning rate at `step` (0-based), as verl's `get_cosine_schedule_with_warmup` (half a
/// cosine cycle): a linear warm-up from `min_lr_ratio` (so the first warm-up step has the
/// smallest rate), then cosine decay to `min_lr_ratio`.
pub fn learning_rate(cfg: &AdamWConfig, step: usize) -> f64 {
    let min = cfg.min_lr_ratio;
    if step < cfg.warmup_steps {
        return cfg.lr * (min + (1.0 - min) * step as f64 / cfg.warmup_steps.max(1) as f64);
    }
    let decay_steps = cfg.total_steps.saturating_sub(cfg.warmup_steps).max(1);
    let progress = (step - cfg.warmup_steps) as f64 / decay_steps as f64;
    let x = (std::f64::consts::PI * progress).cos();
    cfg.lr * (x * (1.0 - min) * 0.5 + (1.0 + min) * 0.5).max(min)
}

/// AdamW state: one first and second moment per parameter (f32), and the step count.
#[derive(Debug)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub params: Vec<(String, Var)>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Optimizer steps taken (Adam's bias correction counts these).
    pub step: usize,
    /// The step the learning-rate schedule is at, when the caller sets it (verl steps its
    /// scheduler once per training step, however many optimizer steps that holds); else `step`.
    pub schedule_step: Option<usize>,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig, params: Vec<(String, Var)>) -> Result<Self> {
        let m = params.iter().map(|(_, p)| p.as_tensor().zeros_like()?.to_dtype(DType::F32)).collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self { cfg, params, m, v, step: 0, schedule_step: None })
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(grads: &[Tensor]) -> Result<f64> {
        let mut total = 0f64;
        for g in grads {
            total += g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(total.sqrt())
    }

    /// One update with `grads` (one per parameter, in order): clip to `max_norm` (0 = off),
    /// then AdamW. Returns (grad norm before clipping, learning rate). A non-finite gradient
    /// leaves the parameters and the moments untouched and is reported as an error.
    pub fn step(&mut self, grads: &[Tensor], max_norm: f64) -> Result<(f64, f64)> {
        let norm = Self::grad_norm(grads)?;
        if !norm.is_finite() {
            anyhow::bail!("non-finite gradient norm ({norm}); the step is skipped");
        }
        let clip = if max_norm > 0.0 && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 };
        let lr = learning_rate(&self.cfg, self.schedule_step.unwrap_or(self.step));
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bias1 = 1.0 - b1.powi(t);
        let bias2 = 1.0 - b2.powi(t);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let g = (grads[i].to_dtype(DType::F32)? * clip)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / bias1)?;
            let v_hat = (&self.v[i] / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + self.cfg.eps)?)?;
            let w = p.as_tensor().to_dtype(DType::F32)?;
            let w = ((&w * (1.0 - lr * self.cfg.weight_decay))? - (update * lr)?)?;
            p.set(&w.to_dtype(p.dtype())?)?;
        }
        Ok((norm, lr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays() {
        // verl: warm-up step/warmup from 0, then half a cosine over the remaining steps.
        let cfg = AdamWConfig { lr: 1.0, warmup_steps: 2, total_steps: 12, ..Default::default() };
        assert_eq!(learning_rate(&cfg, 0), 0.0);
        assert_eq!(learning_rate(&cfg, 1), 0.5);
        assert!((learning_rate(&cfg, 2) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&cfg, 7) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&cfg, 12).abs() < 1e-12);
        let floor = AdamWConfig { min_lr_ratio: 0.1, ..cfg };
        assert!((learning_rate(&floor, 0) - 0.1).abs() < 1e-12 && (learning_rate(&floor, 12) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn adamw_first_step_moves_by_lr() -> Result<()> {
        let p = Var::from_tensor(&Tensor::new(&[1.0f32, -1.0], &Device::Cpu)?)?;
        let cfg = AdamWConfig { lr: 0.1, weight_decay: 0.0, ..Default::default() };
        let mut opt = AdamW::new(cfg, vec![("p".into(), p.clone())])?;
        let g = Tensor::new(&[2.0f32, -0.5], &Device::Cpu)?;
        opt.step(&[g], 0.0)?;
        let w: Vec<f32> = p.as_tensor().to_vec1()?;
        // The first Adam step is lr * sign(g).
        assert!((w[0] - 0.9).abs() < 1e-5 && (w[1] + 0.9).abs() < 1e-5, "{w:?}");
        // Clipping: a gradient of norm 5 clipped to 1.
        let norm = AdamW::grad_norm(&[Tensor::new(&[3.0f32, 4.0], &Device::Cpu)?])?;
        assert!((norm - 5.0).abs() < 1e-9);
        let nan = Tensor::new(&[f32::NAN, 0.0], &Device::Cpu)?;
        assert!(opt.step(&[nan], 1.0).is_err());
        assert_eq!(opt.step, 1, "a skipped step does not count");
        Ok(())
    }
}
