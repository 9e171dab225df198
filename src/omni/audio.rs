//! The thinker's audio tower (Qwen2.5-Omni's Whisper-style encoder).
//!
//! log-mel frames -> chunks of `2 * n_window` frames -> conv1 (k3) + GELU -> conv2 (k3, stride 2)
//! + GELU -> sinusoidal positions restarting in every chunk -> transformer layers attending within
//! each chunk -> average pooling of row pairs over the whole clip -> LayerNorm -> projection to
//! the text hidden size. One output row per `<|AUDIO|>` token.

use crate::nn::{softmax_last, Conv1d, LayerNorm, Linear};
use crate::omni::config::AudioConfig;
use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Frames after the stride-2 convolution for `frames` mel frames.
pub fn frames_after_conv(frames: usize) -> usize {
    frames.saturating_sub(1) / 2 + 1
}

/// `<|AUDIO|>` tokens (tower output rows) for a clip of `frames` valid mel frames.
pub fn audio_token_count(frames: usize) -> usize {
    let l1 = frames_after_conv(frames);
    if l1 < 2 {
        0
    } else {
        (l1 - 2) / 2 + 1
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn load(cfg: &AudioConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            q_proj: Linear::load(d, d, true, vb.pp("q_proj"))?,
            k_proj: Linear::load(d, d, false, vb.pp("k_proj"))?,
            v_proj: Linear::load(d, d, true, vb.pp("v_proj"))?,
            out_proj: Linear::load(d, d, true, vb.pp("out_proj"))?,
            heads: cfg.encoder_attention_heads,
        })
    }

    /// `xs`: [chunks, T, D]; `mask`: additive [chunks, 1, 1, T] for padded rows.
    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, differentiable: bool) -> Result<Tensor> {
        let (c, t, d) = xs.dims3()?;
        let hd = d / self.heads;
        let split = |x: Tensor| x.reshape((c, t, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split(self.q_proj.forward(xs)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.to_dtype(crate::omni::text::accumulation_dtype(v.dtype()))?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(&m.to_dtype(scores.dtype())?)?,
            None => scores,
        };
        let probs = softmax_last(&scores, differentiable)?.to_dtype(v.dtype())?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((c, t, d))?;
        self.out_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn_layer_norm: LayerNorm,
    self_attn: Attention,
    final_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl EncoderLayer {
    fn load(cfg: &AudioConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            self_attn_layer_norm: LayerNorm::load(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
            self_attn: Attention::load(cfg, vb.pp("self_attn"))?,
            final_layer_norm: LayerNorm::load(d, 1e-5, vb.pp("final_layer_norm"))?,
            fc1: Linear::load(d, cfg.encoder_ffn_dim, true, vb.pp("fc1"))?,
            fc2: Linear::load(cfg.encoder_ffn_dim, d, true, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, differentiable: bool) -> Result<Tensor> {
        let normed = self.self_attn_layer_norm.apply(xs, differentiable)?;
        let h = (xs + self.self_attn.forward(&normed, mask, differentiable)?)?;
        let ff = self.fc2.forward(&self.fc1.forward(&self.final_layer_norm.apply(&h, differentiable)?)?.gelu_erf()?)?;
        h + ff
    }
}

/// The audio tower's weights.
#[derive(Debug, Clone)]
pub struct AudioTower {
    conv1: Conv1d,
    conv2: Conv1d,
    /// Sinusoidal table [n_window, D] (the first rows of the [max_source_positions, D] one):
    /// sines then cosines.
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    ln_post: LayerNorm,
    proj: Linear,
    cfg: AudioConfig,
}

fn sinusoids(length: usize, channels: usize, device: &Device) -> Result<Tensor> {
    let half = channels / 2;
    let inc = (10000f64).ln() / (half as f64 - 1.0);
    let inv: Vec<f32> = (0..half).map(|i| (-inc * i as f64).exp() as f32).collect();
    let mut data = Vec::with_capacity(length * channels);
    for t in 0..length {
        let row: Vec<f32> = inv.iter().map(|&f| t as f32 * f).collect();
        data.extend(row.iter().map(|a| a.sin()));
        data.extend(row.iter().map(|a| a.cos()));
    }
    Tensor::from_vec(data, (length, channels), device)
}

impl AudioTower {
    /// Loads `audio_tower.*` from `vb` (scoped to the thinker's prefix).
    pub fn load(cfg: &AudioConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            conv1: Conv1d::load(cfg.num_mel_bins, d, 3, 1, 1, vb.pp("conv1"))?,
            conv2: Conv1d::load(d, d, 3, 1, 2, vb.pp("conv2"))?,
            // A chunk uses its first n_window positions only (the config checks n_window <=
            // max_source_positions): the rest of the table is never read.
            positions: sinusoids(cfg.n_window, d, vb.device())?.to_dtype(vb.dtype())?,
            layers: (0..cfg.encoder_layers)
                .map(|i| EncoderLayer::load(cfg, vb.pp("layers").pp(i)))
                .collect::<Result<Vec<_>>>()?,
            ln_post: LayerNorm::load(d, 1e-5, vb.pp("ln_post"))?,
            proj: Linear::load(d, cfg.output_dim, true, vb.pp("proj"))?,
            cfg: cfg.clone(),
        })
    }

    /// Encodes clips given as their valid log-mel frames (`[n_mels, frames]` each); returns one
    /// `[tokens, output_dim]` tensor per clip. `differentiable` uses composed ops instead of the
    /// fused kernels (training).
    pub fn forward(&self, clips: &[Tensor], differentiable: bool) -> Result<Vec<Tensor>> {
        let chunk = 2 * self.cfg.n_window;
        let device = self.positions.device();
        let dtype = self.positions.dtype();
        // 1. Chunks of every clip, right-padded to the longest chunk.
        let mut chunks: Vec<Tensor> = Vec::new();
        let mut lens: Vec<usize> = Vec::new();
        let mut chunks_per_clip: Vec<usize> = Vec::new();
        for clip in clips {
            let frames = clip.dim(1)?;
            if frames == 0 {
                candle_core::bail!("an audio clip has no frames");
            }
            let mut start = 0;
            let mut count = 0;
            while start < frames {
                let len = chunk.min(frames - start);
                chunks.push(clip.narrow(1, start, len)?);
                lens.push(len);
                start += len;
                count += 1;
            }
            chunks_per_clip.push(count);
        }
        let tmax = *lens.iter().max().unwrap_or(&0);
        let padded = chunks
            .iter()
            .zip(&lens)
            .map(|(c, &len)| c.pad_with_zeros(D::Minus1, 0, tmax - len))
            .collect::<Result<Vec<_>>>()?;
        let xs = Tensor::stack(&padded, 0)?.to_dtype(dtype)?;
        // 2. Convolutions; conv1's output is zeroed on padded frames.
        let frame_mask: Vec<f32> =
            lens.iter().flat_map(|&len| (0..tmax).map(move |t| if t < len { 1.0 } else { 0.0 })).collect();
        let frame_mask = Tensor::from_vec(frame_mask, (lens.len(), 1, tmax), device)?.to_dtype(dtype)?;
        let xs = self.conv1.apply(&xs, differentiable)?.gelu_erf()?.broadcast_mul(&frame_mask)?;
        let xs = self.conv2.apply(&xs, differentiable)?.gelu_erf()?.transpose(1, 2)?;
        let t2 = xs.dim(1)?;
        // 3. Positions restart in every chunk.
        let mut xs = xs.broadcast_add(&self.positions.narrow(0, 0, t2)?.unsqueeze(0)?)?;
        // 4. Layers; rows past a chunk's valid length are masked out as keys (and dropped below).
        let valid: Vec<usize> = lens.iter().map(|&l| frames_after_conv(l)).collect();
        let mask = if valid.iter().all(|&v| v == t2) {
            None
        } else {
            let m: Vec<f32> =
                valid.iter().flat_map(|&v| (0..t2).map(move |t| if t < v { 0.0 } else { -1e30 })).collect();
            Some(Tensor::from_vec(m, (valid.len(), 1, 1, t2), device)?)
        };
        for layer in &self.layers {
            xs = layer.forward(&xs, mask.as_ref(), differentiable)?;
        }
        // 5. Per clip: valid rows of its chunks, average pooling of pairs, ln_post, projection.
        let mut outputs = Vec::with_capacity(clips.len());
        let mut c0 = 0;
        for &n in &chunks_per_clip {
            let rows = (c0..c0 + n)
                .map(|c| xs.get(c)?.narrow(0, 0, valid[c]))
                .collect::<Result<Vec<_>>>()?;
            c0 += n;
            let h = Tensor::cat(&rows, 0)?;
            let l1 = h.dim(0)?;
            let tokens = if l1 < 2 { 0 } else { (l1 - 2) / 2 + 1 };
            if tokens == 0 {
                candle_core::bail!("an audio clip is too short to give a single audio token");
            }
            let d = h.dim(1)?;
            let pooled = h.narrow(0, 0, 2 * tokens)?.reshape((tokens, 2, d))?.mean(1)?;
            outputs.push(self.proj.forward(&self.ln_post.apply(&pooled, differentiable)?)?);
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_follow_the_processor() {
        // (frames, tokens) as Qwen2.5-Omni's processor computes them.
        for (frames, tokens) in [(57, 14), (38, 9), (28, 7), (304, 76), (3000, 750), (1, 0), (3, 1)] {
            assert_eq!(audio_token_count(frames), tokens, "{frames} frames");
        }
    }
}
