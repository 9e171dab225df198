//! MPNet (`sentence-transformers/all-mpnet-base-v2`, `paraphrase-mpnet-base-v2`).
//!
//! BERT-like post-LayerNorm layers without token types, position ids that start at
//! `padding_idx + 1` and skip padding, and a relative-position attention bias (32 log-spaced
//! buckets, one table shared by all layers) added to every layer's attention scores.

use crate::nn::Linear;
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct MpNetConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_buckets() -> usize {
    32
}
fn default_pad() -> u32 {
    1
}

#[derive(Debug, Clone)]
struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(cfg: &MpNetConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let attn = vb.pp("attention");
        Ok(Self {
            q: Linear::load(h, h, true, attn.pp("attn.q"))?,
            k: Linear::load(h, h, true, attn.pp("attn.k"))?,
            v: Linear::load(h, h, true, attn.pp("attn.v"))?,
            o: Linear::load(h, h, true, attn.pp("attn.o"))?,
            attention_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, attn.pp("LayerNorm"))?,
            intermediate: Linear::load(h, i, true, vb.pp("intermediate.dense"))?,
            output: Linear::load(i, h, true, vb.pp("output.dense"))?,
            output_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
        })
    }

    /// `bias`: additive [B, heads, L, L] (relative positions and padding).
    fn forward(&self, xs: &Tensor, bias: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, l, h) = xs.dims3()?;
        let hd = h / heads;
        let split = |t: Tensor| t.reshape((b, l, heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split(self.q.forward(xs)?)?;
        let k = split(self.k.forward(xs)?)?;
        let v = split(self.v.forward(xs)?)?;
        let scores = ((q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))? + bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        let xs = self.attention_norm.forward(&(self.o.forward(&attn)? + xs)?)?;
        let ff = self.output.forward(&self.intermediate.forward(&xs)?.gelu_erf()?)?;
        self.output_norm.forward(&(ff + xs)?)
    }
}

/// The MPNet encoder's weights.
#[derive(Debug, Clone)]
pub struct MpNet {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    relative_attention_bias: Tensor,
    cfg: MpNetConfig,
}

/// transformers' `relative_position_bucket` (bidirectional, max distance 128), for `j - i`.
fn bucket(relative: i64, num_buckets: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let large = max_exact
            + ((n as f32 / max_exact as f32).ln() / (128f32 / max_exact as f32).ln() * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

impl MpNet {
    pub fn load(cfg: &MpNetConfig, vb: VarBuilder) -> Result<Self> {
        let vb = if vb.contains_tensor("mpnet.embeddings.word_embeddings.weight") { vb.pp("mpnet") } else { vb };
        let emb = vb.pp("embeddings");
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: candle_nn::embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(cfg.max_position_embeddings, h, emb.pp("position_embeddings"))?,
            embeddings_norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(cfg, vb.pp("encoder.layer").pp(i)))
                .collect::<Result<Vec<_>>>()?,
            relative_attention_bias: vb
                .pp("encoder.relative_attention_bias")
                .get((cfg.relative_attention_num_buckets, cfg.num_attention_heads), "weight")?,
            cfg: cfg.clone(),
        })
    }

    /// Token vectors [B, L, H] for right-padded `ids` with `mask` (1 = token, 0 = padding).
    pub fn forward(&self, ids: &[Vec<u32>], mask: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let (b, l) = (ids.len(), ids.first().map_or(0, |r| r.len()));
        let pad = self.cfg.pad_token_id as i64;
        let positions: Vec<u32> = mask
            .iter()
            .flat_map(|row| {
                let mut count = 0i64;
                row.iter()
                    .map(move |&m| {
                        count += (m != 0) as i64;
                        (if m != 0 { count + pad } else { pad }) as u32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let flat_ids: Vec<u32> = ids.iter().flatten().copied().collect();
        let ids_t = Tensor::from_vec(flat_ids, (b, l), device)?;
        let pos_t = Tensor::from_vec(positions, (b, l), device)?;
        let xs = (self.word_embeddings.forward(&ids_t)? + self.position_embeddings.forward(&pos_t)?)?;
        let mut xs = self.embeddings_norm.forward(&xs)?;
        // Relative-position bias over the padded length, plus the padding mask.
        let heads = self.cfg.num_attention_heads;
        let buckets: Vec<u32> = (0..l)
            .flat_map(|i| (0..l).map(move |j| (i, j)))
            .map(|(i, j)| bucket(j as i64 - i as i64, self.cfg.relative_attention_num_buckets) as u32)
            .collect();
        let buckets = Tensor::from_vec(buckets, l * l, device)?;
        let rel = self.relative_attention_bias.index_select(&buckets, 0)?.reshape((l, l, heads))?.permute((2, 0, 1))?;
        let pad_bias: Vec<f32> = mask.iter().flat_map(|r| r.iter().map(|&m| if m != 0 { 0.0 } else { f32::MIN })).collect();
        let pad_bias = Tensor::from_vec(pad_bias, (b, 1, 1, l), device)?.to_dtype(xs.dtype())?;
        let bias = rel.unsqueeze(0)?.to_dtype(xs.dtype())?.broadcast_add(&pad_bias)?.contiguous()?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &bias, heads)?;
        }
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_match_transformers() {
        // Values from transformers' MPNet relative_position_bucket (num_buckets 32).
        let cases = [(0, 0), (1, 17), (-1, 1), (7, 23), (-7, 7), (8, 24), (-8, 8), (20, 26), (-20, 10), (200, 31), (-200, 15)];
        for (rel, want) in cases {
            assert_eq!(bucket(rel, 32), want, "relative {rel}");
        }
    }
}
