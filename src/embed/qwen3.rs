//! Qwen3-Embedding (`Qwen/Qwen3-Embedding-0.6B`, `-4B`): a Qwen3 decoder read for its last
//! token's hidden state, with left padding.
//!
//! Qwen3 layers: RMSNorm -> attention (no q/k/v bias, per-head RMSNorm on q and k, rotary
//! positions, grouped-query, causal) -> residual -> RMSNorm -> SwiGLU MLP -> residual; final
//! RMSNorm. Padded positions are masked as keys.

use crate::nn::{apply_rotary, repeat_kv, Linear, RmsNorm};
use crate::omni::rope::{MultimodalRotary, PositionIds};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    1e6
}
fn default_max_pos() -> usize {
    32768
}

impl Qwen3Config {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_layernorm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Layer {
    fn load(cfg: &Qwen3Config, vb: VarBuilder) -> Result<Self> {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let a = vb.pp("self_attn");
        let m = vb.pp("mlp");
        Ok(Self {
            input_layernorm: RmsNorm::load(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            q_proj: Linear::load(h, nh * hd, false, a.pp("q_proj"))?,
            k_proj: Linear::load(h, nkv * hd, false, a.pp("k_proj"))?,
            v_proj: Linear::load(h, nkv * hd, false, a.pp("v_proj"))?,
            o_proj: Linear::load(nh * hd, h, false, a.pp("o_proj"))?,
            q_norm: RmsNorm::load(hd, cfg.rms_norm_eps, a.pp("q_norm"))?,
            k_norm: RmsNorm::load(hd, cfg.rms_norm_eps, a.pp("k_norm"))?,
            post_attention_layernorm: RmsNorm::load(h, cfg.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            gate_proj: Linear::load(h, i, false, m.pp("gate_proj"))?,
            up_proj: Linear::load(h, i, false, m.pp("up_proj"))?,
            down_proj: Linear::load(i, h, false, m.pp("down_proj"))?,
        })
    }
}

/// The Qwen3-Embedding backbone's weights.
#[derive(Debug, Clone)]
pub struct Qwen3Embedder {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rotary: MultimodalRotary,
    cfg: Qwen3Config,
}

impl Qwen3Embedder {
    /// Loads the backbone; tensors with or without the `model.` prefix.
    pub fn load(cfg: &Qwen3Config, vb: VarBuilder) -> Result<Self> {
        let vb = if vb.contains_tensor("model.embed_tokens.weight") { vb.pp("model") } else { vb };
        let hd = cfg.head_dim();
        Ok(Self {
            embed_tokens: candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(cfg, vb.pp("layers").pp(i)))
                .collect::<Result<Vec<_>>>()?,
            norm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            // Plain rotary embedding: every frequency slot driven by the (single) position row.
            rotary: MultimodalRotary::new(hd, cfg.rope_theta, &[hd / 2]),
            cfg: cfg.clone(),
        })
    }

    /// Final-normed hidden states [B, L, H] for left-padded `ids` with `mask`.
    pub fn forward(&self, ids: &[Vec<u32>], mask: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let (b, l) = (ids.len(), ids.first().map_or(0, |r| r.len()));
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim());
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let mut xs = self.embed_tokens.forward(&Tensor::from_vec(flat, (b, l), device)?)?;
        // Positions 0..L for every row, as transformers uses them; rotary attention depends only
        // on differences, so left padding does not shift the result.
        let positions = PositionIds::sequential(&vec![vec![1u32; l]; b]);
        let (cos, sin) = self.rotary.cos_sin(&positions, xs.dtype(), device)?;
        let key_valid: Vec<Vec<bool>> = mask.iter().map(|r| r.iter().map(|&m| m != 0).collect()).collect();
        let bias = crate::omni::text::attention_mask(&key_valid, l, device)?;
        for layer in &self.layers {
            let residual = &xs;
            let h = layer.input_layernorm.forward(&xs)?;
            let q = layer.q_proj.forward(&h)?.reshape((b, l, nh, hd))?;
            let k = layer.k_proj.forward(&h)?.reshape((b, l, nkv, hd))?;
            let v = layer.v_proj.forward(&h)?.reshape((b, l, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = apply_rotary(&layer.q_norm.forward(&q)?.transpose(1, 2)?, &cos, &sin)?;
            let k = apply_rotary(&layer.k_norm.forward(&k)?.transpose(1, 2)?, &cos, &sin)?;
            let k = repeat_kv(&k, nh / nkv)?;
            let v = repeat_kv(&v, nh / nkv)?;
            let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.to_dtype(DType::F32)?;
            let scores = match &bias {
                Some(m) => scores.broadcast_add(m)?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
            let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, nh * hd))?;
            let xs1 = (residual + layer.o_proj.forward(&attn)?)?;
            let h = layer.post_attention_layernorm.forward(&xs1)?;
            let ff = layer.down_proj.forward(&(candle_nn::ops::silu(&layer.gate_proj.forward(&h)?)? * layer.up_proj.forward(&h)?)?)?;
            xs = (xs1 + ff)?;
        }
        self.norm.forward(&xs)
    }
}
