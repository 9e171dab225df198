//! The thinker's text decoder: Qwen2 layers with the multimodal rotary embedding.
//!
//! Token (or media) embeddings -> N x [RMSNorm -> grouped-query attention with q/k/v bias and
//! mRoPE -> residual -> RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> lm_head.
//! The model holds only weights; the key/value cache lives in [`KvCache`], owned by the caller,
//! so that one prompt's cache can be forked into several continuations.

use crate::nn::{repeat_kv, rotary, softmax_last, Linear, Pass, RmsNorm};
use crate::omni::config::TextConfig;
use crate::omni::rope::MultimodalRotary;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

/// Keys and values of every layer for the tokens seen so far: `[B, kv_heads, len, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers] }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(2).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache whose sequence `i` is this cache's sequence `rows[i]` (used to fork one prompt
    /// into several continuations, or to drop finished sequences).
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, nh, nkv, hd) = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        Ok(Self {
            q_proj: Linear::load(h, nh * hd, true, vb.pp("q_proj"))?,
            k_proj: Linear::load(h, nkv * hd, true, vb.pp("k_proj"))?,
            v_proj: Linear::load(h, nkv * hd, true, vb.pp("v_proj"))?,
            o_proj: Linear::load(nh * hd, h, false, vb.pp("o_proj"))?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    /// `xs`: [B, L, H]; `cos`/`sin`: [B, L, hd/2]; `mask`: additive [B, 1, L, past + L].
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
        pass: Pass,
    ) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.apply(xs, pass)?.reshape((b, l, nh, hd))?.transpose(1, 2)?;
        let k = self.k_proj.apply(xs, pass)?.reshape((b, l, nkv, hd))?.transpose(1, 2)?;
        let v = self.v_proj.apply(xs, pass)?.reshape((b, l, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let q = rotary(&q, cos, sin, pass.differentiable)?;
        let k = rotary(&k, cos, sin, pass.differentiable)?;
        let (k, v) = cache.append(layer, k, v)?;
        let k = repeat_kv(&k, nh / nkv)?;
        let v = repeat_kv(&v, nh / nkv)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(accumulation_dtype(v.dtype()))?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(&m.to_dtype(scores.dtype())?)?,
            None => scores,
        };
        let probs = softmax_last(&scores, pass.differentiable)?.to_dtype(v.dtype())?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, nh * hd))?;
        self.o_proj.apply(&out, pass)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::load(h, i, false, vb.pp("gate_proj"))?,
            up_proj: Linear::load(h, i, false, vb.pp("up_proj"))?,
            down_proj: Linear::load(i, h, false, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor, pass: Pass) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.apply(xs, pass)?)?;
        self.down_proj.apply(&(gate * self.up_proj.apply(xs, pass)?)?, pass)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::load(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::load(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::load(cfg, vb.pp("mlp"))?,
        })
    }
}

/// The text decoder's weights.
#[derive(Debug, Clone)]
pub struct TextDecoder {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: MultimodalRotary,
    cfg: TextConfig,
}

impl TextDecoder {
    /// Loads `model.*` (and `lm_head.weight` unless `tie_word_embeddings`) from `vb`, which is
    /// already scoped to the thinker's prefix.
    pub fn load(cfg: &TextConfig, tie_word_embeddings: bool, vb: VarBuilder) -> Result<Self> {
        let vb_m = vb.pp("model");
        let embed_weight = vb_m.pp("embed_tokens").get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let embed_tokens = Embedding::new(embed_weight.clone(), cfg.hidden_size);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(cfg, vb_m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, vb_m.pp("norm"))?;
        let lm_head = if tie_word_embeddings {
            Linear::from_weights(embed_weight, None)
        } else {
            Linear::load(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: MultimodalRotary::new(cfg.head_dim, cfg.rope_theta, &cfg.mrope_section),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    pub fn rotary(&self) -> &MultimodalRotary {
        &self.rotary
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Token embeddings `[B, L, H]` for ids `[B, L]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// Runs the layers over `embeds` [B, L, H] appended after what `cache` holds, and returns
    /// the final-normed hidden states [B, L, H]. When `hidden_states` is given it receives, as
    /// transformers numbers them, the input embeddings, the output of each layer but the last,
    /// and the final-normed output.
    pub fn forward(
        &self,
        embeds: &Tensor,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        hidden_states: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        self.forward_pass(embeds, cos_sin, mask, cache, hidden_states, Pass::INFER)
    }

    /// [`Self::forward`] under a given [`Pass`] (differentiable for training, adapters off for
    /// the frozen base model).
    pub fn forward_pass(
        &self,
        embeds: &Tensor,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        mut hidden_states: Option<&mut Vec<Tensor>>,
        pass: Pass,
    ) -> Result<Tensor> {
        let (cos, sin) = cos_sin;
        let mut xs = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(h) = hidden_states.as_deref_mut() {
                h.push(xs.clone());
            }
            let residual = &xs;
            let normed = layer.input_layernorm.apply(&xs, pass.differentiable)?;
            let attn = layer.self_attn.forward(&normed, cos, sin, mask, cache, i, pass)?;
            let xs1 = (residual + attn)?;
            let mlp = layer.mlp.forward(&layer.post_attention_layernorm.apply(&xs1, pass.differentiable)?, pass)?;
            xs = (xs1 + mlp)?;
        }
        let out = self.norm.apply(&xs, pass.differentiable)?;
        if let Some(h) = hidden_states {
            h.push(out.clone());
        }
        Ok(out)
    }

    /// Logits over the vocabulary for hidden states [..., H], in f32 (f64 for an f64 model).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(accumulation_dtype(hidden.dtype()))
    }

    /// The projections LoRA can adapt, by PEFT module name (`q_proj`, ..., `down_proj`), with
    /// their parameter path under the thinker (`model.layers.N.self_attn.q_proj`).
    pub fn adaptable_mut(&mut self) -> Vec<(String, &'static str, &mut Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            let m = &mut layer.mlp;
            let attn = format!("model.layers.{i}.self_attn");
            let mlp = format!("model.layers.{i}.mlp");
            out.push((format!("{attn}.q_proj"), "q_proj", &mut a.q_proj));
            out.push((format!("{attn}.k_proj"), "k_proj", &mut a.k_proj));
            out.push((format!("{attn}.v_proj"), "v_proj", &mut a.v_proj));
            out.push((format!("{attn}.o_proj"), "o_proj", &mut a.o_proj));
            out.push((format!("{mlp}.gate_proj"), "gate_proj", &mut m.gate_proj));
            out.push((format!("{mlp}.up_proj"), "up_proj", &mut m.up_proj));
            out.push((format!("{mlp}.down_proj"), "down_proj", &mut m.down_proj));
        }
        out
    }
}

/// The dtype softmax and logits are computed in: f32, or f64 for an f64 model.
pub fn accumulation_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// The additive attention mask `[B, 1, Lq, Lk]` (0 where a query may attend, a large negative
/// number elsewhere) for `Lq` new tokens that follow `Lk - Lq` cached ones: causal, and no
/// attention to padded keys (`key_valid[b][j] == false`). `None` when nothing is masked.
pub fn attention_mask(key_valid: &[Vec<bool>], lq: usize, device: &candle_core::Device) -> Result<Option<Tensor>> {
    let b = key_valid.len();
    let lk = key_valid.first().map_or(0, |r| r.len());
    let past = lk - lq;
    let any_pad = key_valid.iter().any(|r| r.iter().any(|v| !v));
    if lq == 1 && !any_pad {
        return Ok(None);
    }
    // A large finite value, so that fully masked rows (queries at pad slots) stay finite.
    const MASKED: f32 = -1e30;
    let mut data = Vec::with_capacity(b * lq * lk);
    for row in key_valid {
        for i in 0..lq {
            for (j, &valid) in row.iter().enumerate() {
                data.push(if valid && j <= past + i { 0.0 } else { MASKED });
            }
        }
    }
    Tensor::from_vec(data, (b, 1, lq, lk), device).map(Some)
}
