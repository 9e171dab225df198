//! What a run trains in the decoder: LoRA adapters on its projections (PEFT's initialisation and
//! tensor names, seeded dropout), or the projections' weights themselves (full fine-tuning),
//! optionally keeping the original weights as the frozen reference.

use crate::nn::Lora;
use crate::omni::thinker::Thinker;
use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use std::sync::Arc;

/// The PEFT module names LoRA can target.
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Attaches LoRA adapters to the decoder projections named in `targets`. A starts uniform in
/// +-1/sqrt(in) (PEFT's Kaiming init), B at `b_std` (0 as in PEFT); adapters train in f32 (f64
/// for an f64 model) whatever the base weights' dtype. Returns the adapters by their PEFT tensor
/// path (`base_model.model.thinker.model.layers.0.self_attn.q_proj`, without `.lora_A.weight`).
pub fn attach_lora(thinker: &mut Thinker, rank: usize, alpha: f64, targets: &[String], b_std: f32, rng: &mut crate::sampling::Rng) -> Result<Vec<(String, Arc<Lora>)>> {
    if rank == 0 {
        bail!("LoRA rank must be at least 1");
    }
    if let Some(t) = targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!("unknown LoRA target module `{t}`: use {}", TARGETS.join(", "));
    }
    let device = thinker.device().clone();
    let dtype = crate::omni::text::accumulation_dtype(thinker.dtype());
    let mut out = Vec::new();
    for (path, module, linear) in thinker.decoder_projections_mut() {
        if !targets.iter().any(|t| t == module) {
            continue;
        }
        let (out_dim, in_dim) = linear.dims();
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a: Vec<f32> = (0..rank * in_dim).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
        let b: Vec<f32> = if b_std > 0.0 { rng.normal_vec(out_dim * rank, b_std) } else { vec![0.0; out_dim * rank] };
        let lora = Arc::new(Lora {
            a: Var::from_tensor(&Tensor::from_vec(a, (rank, in_dim), &device)?.to_dtype(dtype)?)?,
            b: Var::from_tensor(&Tensor::from_vec(b, (out_dim, rank), &device)?.to_dtype(dtype)?)?,
            scale: alpha / rank as f64,
        });
        linear.set_lora(Some(lora.clone()));
        out.push((format!("base_model.model.{path}"), lora));
    }
    if out.is_empty() {
        bail!("no LoRA target module matched ({})", targets.join(", "));
    }
    Ok(out)
}

/// Sets the dropout on every adapter's input during training (0 = off).
pub fn set_lora_dropout(thinker: &mut Thinker, p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        bail!("LoRA dropout must be in [0, 1) (got {p})");
    }
    for (i, (_, _, linear)) in thinker.decoder_projections_mut().into_iter().enumerate() {
        linear.set_lora_dropout(p, i as u64);
    }
    Ok(())
}

/// Makes every decoder projection's weight trainable (full fine-tuning; f32 or f64 weights);
/// returns them by checkpoint name (`thinker.model.layers.N.self_attn.q_proj.weight`). With
/// `keep_frozen`, each projection also keeps its original weight, which the base-model passes
/// (the KL reference, the base-model judge) then use: the frozen model costs one more copy of
/// the projections, and nothing when not asked for.
pub fn make_decoder_trainable(thinker: &mut Thinker, keep_frozen: bool) -> Result<Vec<(String, Var)>> {
    thinker
        .decoder_projections_mut()
        .into_iter()
        .map(|(path, _, linear)| Ok((format!("{path}.weight"), linear.make_trainable(keep_frozen)?)))
        .collect()
}
