//! The thinker's text decoder: Qwen2 layers with the multimodal rotary embedding.
//!
//! Token (or media) embeddings -> N x [RMSNorm -> grouped-query attention with q/k/v bias and
//! mRoPE -> residual -> RMSNorm -> SwiGLU MLP -> residual] -> final RMSNorm -> lm_head.
//! The same decoder runs the text causal LMs: Qwen2 / Qwen2.5 as it is, Qwen3 without the q/k/v
//! bias and with an RMSNorm over each head's queries and keys before the rotary.
//! The model holds only weights; the key/value cache lives in [`KvCache`], owned by the caller.
//!
//! Decoding ([`TextDecoder::forward_decode`]) reads a prompt's keys and values from one copy
//! shared by all the sequences that continue it (cascade attention, as in Hydragen): the
//! attention over the shared prompt runs for all the queries of a group in one matmul against its
//! keys, the attention over each sequence's own tokens ([`SuffixCache`], written in place, no
//! copy per step) separately, and the two are combined by their log-sum-exp. Grouped-query heads
//! are handled by reshaping the queries, so keys and values are never repeated per head.
//! Training runs the same structure over whole answers ([`TextDecoder::forward_continuations`]),
//! and can keep only each layer's inputs and back-propagate one recomputed layer at a time
//! ([`TextDecoder::forward_continuations_kept`], [`TextDecoder::backward_continuations`]).

pub use crate::nn::accumulation_dtype;
use crate::nn::{blockwise_attention, repeat_kv, rotary, softmax_last, Linear, Pass, RmsNorm};
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

    /// The keys and values of `layer`, `[B, kv_heads, len, head_dim]` each.
    pub fn layer(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer).and_then(|l| l.as_ref())
    }

    /// Bytes held by the cached keys and values.
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(|(k, v)| tensor_bytes(k) + tensor_bytes(v)).sum()
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

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// Each sequence's own keys and values after its (shared) prompt: per layer a `[B, kv_heads,
/// capacity, head_dim]` buffer that new tokens are written into in place, so that a step copies
/// only its own token. The first buffer holds what [`Self::reserve`] asked for (else 16
/// positions); a full one is replaced by one twice its size. Cloning copies the buffers (a
/// clone decodes on its own).
#[derive(Debug, Default)]
pub struct SuffixCache {
    /// Per layer: key and value buffers, and how many positions they hold.
    layers: Vec<Option<(Tensor, Tensor, usize)>>,
    /// Positions the next allocation makes room for.
    reserve: usize,
}

impl Clone for SuffixCache {
    fn clone(&self) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| l.as_ref().and_then(|(k, v, len)| Some((k.copy().ok()?, v.copy().ok()?, *len))))
            .collect();
        Self { layers, reserve: self.reserve }
    }
}

impl SuffixCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], reserve: 0 }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(_, _, len)| *len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `extra` more positions in one allocation (at the next append).
    pub fn reserve(&mut self, extra: usize) {
        self.reserve = self.reserve.max(self.len() + extra);
    }

    /// Bytes held by the buffers (their whole capacity).
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(|(k, v, _)| tensor_bytes(k) + tensor_bytes(v)).sum()
    }

    /// A cache whose sequence `i` is this cache's sequence `rows[i]`.
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v, len)) => Ok(Some((k.index_select(rows, 0)?, v.index_select(rows, 0)?, *len))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, reserve: self.reserve })
    }

    /// Writes one position (`k`, `v`: `[B, kv_heads, 1, head_dim]`) of `layer` and returns views
    /// of everything the layer holds.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, kv, _, hd) = k.dims4()?;
        let (len, capacity) = match &self.layers[layer] {
            Some((kb, _, len)) => (*len, kb.dim(2)?),
            None => (0, 0),
        };
        if len == capacity {
            let grown = if self.reserve > len { self.reserve } else { (2 * capacity).max(16) };
            let kb = Tensor::zeros((b, kv, grown, hd), k.dtype(), k.device())?;
            let vb = Tensor::zeros((b, kv, grown, hd), v.dtype(), v.device())?;
            if let Some((old_k, old_v, _)) = &self.layers[layer] {
                kb.slice_set(&old_k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                vb.slice_set(&old_v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            }
            self.layers[layer] = Some((kb, vb, len));
        }
        let Some((kb, vb, len)) = self.layers[layer].as_mut() else { unreachable!("allocated above") };
        kb.slice_set(&k.contiguous()?, 2, *len)?;
        vb.slice_set(&v.contiguous()?, 2, *len)?;
        *len += 1;
        Ok((kb.narrow(2, 0, *len)?, vb.narrow(2, 0, *len)?))
    }
}

/// Where each decoded sequence's query goes in the prefix attention: the queries of the
/// sequences that continue prompt `p` fill slots `p * per_prompt ..` (padded with zero queries
/// when prompts have different numbers of live sequences).
#[derive(Debug, Clone)]
pub struct GroupLayout {
    prompts: usize,
    per_prompt: usize,
    /// For each slot, its sequence (or `rows`, the zero query); None when slot i is sequence i.
    gather: Option<Tensor>,
    /// For each sequence, its slot; None when sequence i is slot i.
    scatter: Option<Tensor>,
}

impl GroupLayout {
    /// The layout of sequences continuing `prompts` prompts, `groups[i]` being sequence i's.
    pub fn new(groups: &[usize], prompts: usize, device: &candle_core::Device) -> Result<Self> {
        let rows = groups.len();
        let mut count = vec![0usize; prompts];
        let mut slot_of = Vec::with_capacity(rows);
        for &g in groups {
            if g >= prompts {
                candle_core::bail!("sequence continues prompt {g} of {prompts}");
            }
            slot_of.push((g, count[g]));
            count[g] += 1;
        }
        let per_prompt = count.iter().copied().max().unwrap_or(0).max(1);
        let slots: Vec<u32> = slot_of.iter().map(|&(g, j)| (g * per_prompt + j) as u32).collect();
        let identity = rows == prompts * per_prompt && slots.iter().enumerate().all(|(i, &s)| s as usize == i);
        if identity {
            return Ok(Self { prompts, per_prompt, gather: None, scatter: None });
        }
        let mut gather = vec![rows as u32; prompts * per_prompt];
        for (row, &s) in slots.iter().enumerate() {
            gather[s as usize] = row as u32;
        }
        Ok(Self {
            prompts,
            per_prompt,
            gather: Some(Tensor::from_vec(gather, prompts * per_prompt, device)?),
            scatter: Some(Tensor::from_vec(slots, rows, device)?),
        })
    }

    /// `[R, kv, g, d]` per sequence -> `[P, kv, per_prompt * g, d]` per prompt.
    fn group(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, kv, g, d) = xs.dims4()?;
        let xs = match &self.gather {
            None => xs.clone(),
            Some(idx) => Tensor::cat(&[xs, &xs.zeros_like()?.narrow(0, 0, 1)?], 0)?.index_select(idx, 0)?,
        };
        xs.reshape((self.prompts, self.per_prompt, kv, g, d))?
            .transpose(1, 2)?
            .reshape((self.prompts, kv, self.per_prompt * g, d))
    }

    /// The inverse of [`Self::group`]: `[P, kv, per_prompt * g, d]` -> `[R, kv, g, d]`.
    fn ungroup(&self, xs: &Tensor, g: usize) -> Result<Tensor> {
        let (_, kv, _, d) = xs.dims4()?;
        let xs = xs
            .reshape((self.prompts, kv, self.per_prompt, g, d))?
            .transpose(1, 2)?
            .reshape((self.prompts * self.per_prompt, kv, g, d))?;
        match &self.scatter {
            None => Ok(xs),
            Some(idx) => xs.index_select(idx, 0),
        }
    }
}

/// Softmax numerator parts over the last axis of `scores`: `(exp(s - m) @ v, m, sum exp(s - m))`,
/// with `m` the row maximum, in the scores' dtype.
/// `m` only keeps the exponentials in range: the result does not depend on it, so it carries no
/// gradient.
fn partial_attention(scores: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let m = scores.max_keepdim(candle_core::D::Minus1)?.detach();
    let e = scores.broadcast_sub(&m)?.exp()?;
    let l = e.sum_keepdim(candle_core::D::Minus1)?;
    let o = e.to_dtype(v.dtype())?.matmul(v)?.to_dtype(scores.dtype())?;
    Ok((o, m, l))
}

/// Softmax attention over two disjoint key sets from their [`partial_attention`] parts:
/// `(o1 e^(m1-m) + o2 e^(m2-m)) / (l1 e^(m1-m) + l2 e^(m2-m))`, `m = max(m1, m2)`.
fn combine_partials((o1, m1, l1): (Tensor, Tensor, Tensor), (o2, m2, l2): (Tensor, Tensor, Tensor)) -> Result<Tensor> {
    let m = m1.maximum(&m2)?;
    let a1 = (m1 - &m)?.exp()?;
    let a2 = (m2 - &m)?.exp()?;
    let num = (o1.broadcast_mul(&a1)? + o2.broadcast_mul(&a2)?)?;
    let den = ((l1 * &a1)? + (l2 * &a2)?)?;
    num.broadcast_div(&den)
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3's per-head RMSNorm of queries and keys (before the rotary).
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, nh, nkv, hd) = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        Ok(Self {
            q_proj: Linear::load(h, nh * hd, cfg.qkv_bias, vb.pp("q_proj"))?,
            k_proj: Linear::load(h, nkv * hd, cfg.qkv_bias, vb.pp("k_proj"))?,
            v_proj: Linear::load(h, nkv * hd, cfg.qkv_bias, vb.pp("v_proj"))?,
            o_proj: Linear::load(nh * hd, h, cfg.o_bias, vb.pp("o_proj"))?,
            q_norm: cfg.qk_norm.then(|| RmsNorm::load(hd, cfg.rms_norm_eps, vb.pp("q_norm"))).transpose()?,
            k_norm: cfg.qk_norm.then(|| RmsNorm::load(hd, cfg.rms_norm_eps, vb.pp("k_norm"))).transpose()?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    /// Queries `[B, heads, L, hd]`, keys and values `[B, kv_heads, L, hd]` of `xs` `[B, L, H]`,
    /// the queries and keys through Qwen3's per-head RMSNorm (when there is one) and the rotary.
    fn project(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, pass: Pass) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, l, _) = xs.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |proj: &Linear, norm: &Option<RmsNorm>, n: usize| -> Result<Tensor> {
            let x = proj.apply(xs, pass)?.reshape((b, l, n, hd))?;
            let x = match norm {
                Some(norm) => norm.apply(&x, pass.differentiable)?,
                None => x,
            };
            rotary(&x.transpose(1, 2)?, cos, sin, pass.differentiable)
        };
        let q = heads(&self.q_proj, &self.q_norm, nh)?;
        let k = heads(&self.k_proj, &self.k_norm, nkv)?;
        let v = self.v_proj.apply(xs, pass)?.reshape((b, l, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        Ok((q, k, v))
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
        let (q, k, v) = self.project(xs, cos, sin, pass)?;
        let (k, v) = cache.append(layer, k, v)?;
        let k = repeat_kv(&k, nh / nkv)?;
        let v = repeat_kv(&v, nh / nkv)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let out = if pass.differentiable {
            // Training: the [heads, L, L] scores are never held (a prompt of 10 000 tokens would
            // need 6 GB per score tensor at 16 heads).
            blockwise_attention(&q, &k, &v, mask, scale, 0)?
        } else {
            let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(accumulation_dtype(v.dtype()))?;
            let scores = match mask {
                Some(m) => scores.broadcast_add(&m.to_dtype(scores.dtype())?)?,
                None => scores,
            };
            softmax_last(&scores, false)?.to_dtype(v.dtype())?.matmul(&v)?
        };
        self.o_proj.apply(&out.transpose(1, 2)?.reshape((b, l, nh * hd))?, pass)
    }
}

impl Attention {
    /// One decode step (`xs`: `[R, 1, H]`) over the prompts' shared keys and values (`prefix`:
    /// `[P, kv, Lp, hd]`, `prefix_mask`: additive `[P, 1, 1, Lp]`) and each sequence's own
    /// (`suffix`, which receives this step's keys and values).
    #[allow(clippy::too_many_arguments)]
    fn forward_decode(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        prefix: &(Tensor, Tensor),
        prefix_mask: Option<&Tensor>,
        suffix: &mut SuffixCache,
        layer: usize,
        layout: &GroupLayout,
        pass: Pass,
    ) -> Result<Tensor> {
        let (r, l, _) = xs.dims3()?;
        if l != 1 {
            candle_core::bail!("decode takes one token per sequence, got {l}");
        }
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let g = nh / nkv;
        let (q, k, v) = self.project(xs, cos, sin, pass)?;
        let q = q.reshape((r, nkv, g, hd))?;
        let (ks, vs) = suffix.append(layer, &k, &v)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let acc = accumulation_dtype(v.dtype());
        // The shared prompt: all the queries of a group against its keys at once.
        let (kp, vp) = prefix;
        let s1 = (layout.group(&q)?.matmul(&kp.t()?)? * scale)?.to_dtype(acc)?;
        let s1 = match prefix_mask {
            Some(m) => s1.broadcast_add(&m.to_dtype(acc)?)?,
            None => s1,
        };
        let (o1, m1, l1) = partial_attention(&s1, vp)?;
        let (o1, m1, l1) = (layout.ungroup(&o1, g)?, layout.ungroup(&m1, g)?, layout.ungroup(&l1, g)?);
        // Each sequence's own tokens.
        let s2 = (q.matmul(&ks.t()?)? * scale)?.to_dtype(acc)?;
        let own = partial_attention(&s2, &vs)?;
        let out = combine_partials((o1, m1, l1), own)?.to_dtype(v.dtype())?.reshape((r, 1, nh * hd))?;
        self.o_proj.apply(&out, pass)
    }

    /// `n` continuations (`xs`: `[n, T, H]`) of one prompt whose keys and values (`prefix`:
    /// `[1, kv, Lp, hd]`) they share: the attention over the prompt runs for all `n x T` queries
    /// in one matmul, the attention over each continuation's own tokens (causal, `mask`: additive
    /// `[n, 1, T, T]`) separately, and the two are combined by their log-sum-exp.
    #[allow(clippy::too_many_arguments)]
    fn forward_continuations(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        prefix: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        pass: Pass,
    ) -> Result<Tensor> {
        let (n, t, _) = xs.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let g = nh / nkv;
        let (q, k, v) = self.project(xs, cos, sin, pass)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let acc = accumulation_dtype(v.dtype());
        // The shared prompt: queries [n, kv, g, T, hd] -> [1, kv, n*g*T, hd] against its keys.
        let (kp, vp) = prefix;
        let grouped = q.reshape((n, nkv, g * t, hd))?.transpose(0, 1)?.reshape((1, nkv, n * g * t, hd))?;
        let s1 = (grouped.matmul(&kp.t()?)? * scale)?.to_dtype(acc)?;
        let ungroup = |x: Tensor| -> Result<Tensor> {
            let last = x.dim(candle_core::D::Minus1)?;
            x.reshape((nkv, n, g * t, last))?.transpose(0, 1)?.reshape((n, nh, t, last))
        };
        let (o1, m1, l1) = partial_attention(&s1, vp)?;
        let shared = (ungroup(o1)?, ungroup(m1)?, ungroup(l1)?);
        // Each continuation's own tokens.
        let (kr, vr) = (repeat_kv(&k, g)?, repeat_kv(&v, g)?);
        let s2 = (q.matmul(&kr.t()?)? * scale)?.to_dtype(acc)?;
        let s2 = match mask {
            Some(m) => s2.broadcast_add(&m.to_dtype(acc)?)?,
            None => s2,
        };
        let own = partial_attention(&s2, &vr)?;
        let out = combine_partials(shared, own)?.to_dtype(v.dtype())?.transpose(1, 2)?.reshape((n, t, nh * hd))?;
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

    /// The layer around its attention (`attend` maps the normed input to the attention output).
    fn forward(&self, xs: &Tensor, pass: Pass, attend: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let attn = attend(&self.input_layernorm.apply(xs, pass.differentiable)?)?;
        let xs1 = (xs + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_layernorm.apply(&xs1, pass.differentiable)?, pass)?;
        xs1 + mlp
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
            xs = layer.forward(&xs, pass, |normed| layer.self_attn.forward(normed, cos, sin, mask, cache, i, pass))?;
        }
        let out = self.norm.apply(&xs, pass.differentiable)?;
        if let Some(h) = hidden_states {
            h.push(out.clone());
        }
        Ok(out)
    }

    /// One decode step: `embeds` `[R, 1, H]` for sequences that continue the prompts held once in
    /// `prefix` (`[P, kv, Lp, hd]` per layer; `prefix_mask` marks its padding), `layout` telling
    /// which prompt each sequence continues; `suffix` holds, and receives, each sequence's own
    /// keys and values. Returns the final-normed hidden states `[R, 1, H]`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_decode(
        &self,
        embeds: &Tensor,
        cos_sin: &(Tensor, Tensor),
        prefix: &KvCache,
        prefix_mask: Option<&Tensor>,
        suffix: &mut SuffixCache,
        layout: &GroupLayout,
        pass: Pass,
    ) -> Result<Tensor> {
        let (cos, sin) = cos_sin;
        let mut xs = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let shared = prefix.layer(i).ok_or_else(|| candle_core::Error::Msg(format!("the prompt cache has no layer {i}")))?;
            xs = layer.forward(&xs, pass, |normed| {
                layer.self_attn.forward_decode(normed, cos, sin, shared, prefix_mask, suffix, i, layout, pass)
            })?;
        }
        self.norm.apply(&xs, pass.differentiable)
    }

    /// `n` continuations of one prompt with the prompt run once: `prompt` `[1, Lp, H]` (no
    /// padding) and `answers` `[n, T, H]` (right-padded; `answer_mask` their additive causal and
    /// padding mask `[n, 1, T, T]`), each with its rotary cosines and sines. At every layer the
    /// prompt's keys and values serve all the continuations (see `Attention::forward_continuations`),
    /// so the prompt costs one forward however many answers follow it; under a differentiable
    /// `pass` the gradients of all the answers reach the prompt's keys and values. Returns the
    /// final-normed hidden states of the prompt's last token `[1, 1, H]` and of the answers
    /// `[n, T, H]`.
    pub fn forward_continuations(
        &self,
        prompt: &Tensor,
        prompt_rope: &(Tensor, Tensor),
        answers: &Tensor,
        answer_rope: &(Tensor, Tensor),
        answer_mask: Option<&Tensor>,
        pass: Pass,
    ) -> Result<(Tensor, Tensor)> {
        let ctx = ContinuationInputs { prompt_rope, answer_rope, answer_mask, pass };
        let (mut xp, mut xa) = (prompt.clone(), answers.clone());
        for i in 0..self.layers.len() {
            (xp, xa) = self.continuation_layer(i, &xp, &xa, &ctx)?;
        }
        self.continuation_heads(&xp, &xa, pass)
    }

    /// The final norm of [`Self::forward_continuations`]: the prompt's last token `[1, 1, H]`
    /// and the answers `[n, T, H]`, from the last layer's outputs.
    pub fn continuation_heads(&self, xp: &Tensor, xa: &Tensor, pass: Pass) -> Result<(Tensor, Tensor)> {
        let lp = xp.dim(1)?;
        let last = self.norm.apply(&xp.narrow(1, lp - 1, 1)?, pass.differentiable)?;
        Ok((last, self.norm.apply(xa, pass.differentiable)?))
    }

    /// Layer `i` of [`Self::forward_continuations`]: the prompt's tokens (`xp`, `[1, Lp, H]`),
    /// then the answers (`xa`) against the prompt's keys and values of this layer.
    fn continuation_layer(&self, i: usize, xp: &Tensor, xa: &Tensor, ctx: &ContinuationInputs) -> Result<(Tensor, Tensor)> {
        let layer = &self.layers[i];
        let lp = xp.dim(1)?;
        let prompt_mask = attention_mask(&[vec![true; lp]], lp, xp.device())?;
        let mut cache = KvCache::new(self.layers.len());
        let (pc, ps) = ctx.prompt_rope;
        let xp = layer.forward(xp, ctx.pass, |normed| layer.self_attn.forward(normed, pc, ps, prompt_mask.as_ref(), &mut cache, i, ctx.pass))?;
        let shared = cache.layer(i).ok_or_else(|| candle_core::Error::Msg(format!("the prompt left no keys at layer {i}")))?;
        let (ac, as_) = ctx.answer_rope;
        let xa = layer.forward(xa, ctx.pass, |normed| layer.self_attn.forward_continuations(normed, ac, as_, shared, ctx.answer_mask, ctx.pass))?;
        Ok((xp, xa))
    }

    /// [`Self::forward_continuations`] without a graph, keeping what a layer-by-layer backward
    /// ([`Self::backward_continuations`]) recomputes from: each layer's inputs (prompt and
    /// answers), and the last layer's outputs (pre-norm). Each layer's activations are freed as
    /// soon as its outputs are known, so the forward holds one layer's worth at a time.
    pub fn forward_continuations_kept(
        &self,
        prompt: &Tensor,
        prompt_rope: &(Tensor, Tensor),
        answers: &Tensor,
        answer_rope: &(Tensor, Tensor),
        answer_mask: Option<&Tensor>,
        pass: Pass,
    ) -> Result<LayerInputs> {
        let ctx = ContinuationInputs { prompt_rope, answer_rope, answer_mask, pass };
        let mut states = vec![(prompt.detach(), answers.detach())];
        for i in 0..self.layers.len() {
            let (xp, xa) = &states[i];
            let (xp, xa) = self.continuation_layer(i, xp, xa, &ctx)?;
            states.push((xp.detach(), xa.detach()));
        }
        Ok(LayerInputs { states })
    }

    /// Back-propagates through the layers of a [`Self::forward_continuations_kept`] run,
    /// recomputing one layer at a time from its kept inputs (activation checkpointing per
    /// decoder layer): `grad` is the gradient of the last layer's outputs (prompt, answers); for
    /// each layer, from the last, the layer is rerun with its inputs as variables and
    /// `sum(outputs * grad)` is back-propagated, which gives that layer's parameter gradients
    /// (handed to `collect`) and the gradient of its inputs (the next `grad`). Returns the
    /// gradient of the first layer's inputs. Peak memory: one layer's activations and graph.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_continuations(
        &self,
        kept: &LayerInputs,
        prompt_rope: &(Tensor, Tensor),
        answer_rope: &(Tensor, Tensor),
        answer_mask: Option<&Tensor>,
        pass: Pass,
        grad: (Tensor, Tensor),
        mut collect: impl FnMut(&candle_core::backprop::GradStore) -> Result<()>,
    ) -> Result<(Tensor, Tensor)> {
        let ctx = ContinuationInputs { prompt_rope, answer_rope, answer_mask, pass };
        let (mut gp, mut ga) = grad;
        for i in (0..self.layers.len()).rev() {
            let (xp, xa) = &kept.states[i];
            let (vp, va) = (candle_core::Var::from_tensor(xp)?, candle_core::Var::from_tensor(xa)?);
            let (op, oa) = self.continuation_layer(i, vp.as_tensor(), va.as_tensor(), &ctx)?;
            let surrogate = ((op * &gp)?.sum_all()?.to_dtype(DType::F64)? + (oa * &ga)?.sum_all()?.to_dtype(DType::F64)?)?;
            let grads = surrogate.backward()?;
            collect(&grads)?;
            gp = grads.get(vp.as_tensor()).cloned().map_or_else(|| xp.zeros_like(), Ok)?;
            ga = grads.get(va.as_tensor()).cloned().map_or_else(|| xa.zeros_like(), Ok)?;
        }
        Ok((gp, ga))
    }

    pub fn new_suffix_cache(&self) -> SuffixCache {
        SuffixCache::new(self.layers.len())
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

/// What every layer of a shared-prompt forward reads besides its inputs.
struct ContinuationInputs<'a> {
    prompt_rope: &'a (Tensor, Tensor),
    answer_rope: &'a (Tensor, Tensor),
    answer_mask: Option<&'a Tensor>,
    pass: Pass,
}

/// The inputs (prompt `[1, Lp, H]`, answers `[n, T, H]`) of every layer of a shared-prompt
/// forward, and after them the last layer's outputs, without a graph
/// ([`TextDecoder::forward_continuations_kept`]).
#[derive(Debug, Clone)]
pub struct LayerInputs {
    states: Vec<(Tensor, Tensor)>,
}

impl LayerInputs {
    /// The last layer's outputs (prompt, answers), before the final norm.
    pub fn last(&self) -> &(Tensor, Tensor) {
        self.states.last().expect("at least the inputs")
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.states.iter().map(|(p, a)| tensor_bytes(p) + tensor_bytes(a)).sum()
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
