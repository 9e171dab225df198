//! The thinker's vision tower (Qwen2.5-Omni's ViT with window attention).
//!
//! patches `[N, 3*2*14*14]` -> patch embedding (the Conv3d as one matmul) -> reorder into windows ->
//! blocks (RMSNorm -> attention with 2-D rotary positions, within each window, or within each
//! frame for the `fullatt_block_indexes` blocks -> residual -> RMSNorm -> SwiGLU MLP ->
//! residual) -> merger (RMSNorm, 2x2 patches concatenated, Linear-GELU-Linear) -> back to the
//! original order. One output row per `<|IMAGE|>` / `<|VIDEO|>` token.

use crate::nn::{rotary, softmax_last, Linear, RmsNorm};
use crate::omni::config::VisionConfig;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
struct Block {
    norm1: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    proj: Linear,
    norm2: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Block {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        let a = vb.pp("attn");
        let m = vb.pp("mlp");
        Ok(Self {
            norm1: RmsNorm::load(d, 1e-6, vb.pp("norm1"))?,
            q: Linear::load(d, d, true, a.pp("q"))?,
            k: Linear::load(d, d, true, a.pp("k"))?,
            v: Linear::load(d, d, true, a.pp("v"))?,
            proj: Linear::load(d, d, true, a.pp("proj"))?,
            norm2: RmsNorm::load(d, 1e-6, vb.pp("norm2"))?,
            gate_proj: Linear::load(d, i, true, m.pp("gate_proj"))?,
            up_proj: Linear::load(d, i, true, m.pp("up_proj"))?,
            down_proj: Linear::load(i, d, true, m.pp("down_proj"))?,
        })
    }

    /// `xs`: [N, D] in window order; attention within each `segments` range.
    #[allow(clippy::too_many_arguments)]
    fn forward(&self, xs: &Tensor, cos: &Tensor, sin: &Tensor, segments: &[(usize, usize)], heads: usize, diff: bool) -> Result<Tensor> {
        let (n, d) = xs.dims2()?;
        let hd = d / heads;
        let h = self.norm1.apply(xs, diff)?;
        let split = |t: Tensor| t.reshape((1, n, heads, hd))?.transpose(1, 2)?.contiguous();
        let q = rotary(&split(self.q.forward(&h)?)?, cos, sin, diff)?;
        let k = rotary(&split(self.k.forward(&h)?)?, cos, sin, diff)?;
        let v = split(self.v.forward(&h)?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outs = Vec::with_capacity(segments.len());
        for &(start, len) in segments {
            let (qs, ks, vs) = (q.narrow(2, start, len)?, k.narrow(2, start, len)?, v.narrow(2, start, len)?);
            let scores = (qs.matmul(&ks.t()?)? * scale)?.to_dtype(crate::omni::text::accumulation_dtype(vs.dtype()))?;
            let probs = softmax_last(&scores, diff)?.to_dtype(vs.dtype())?;
            outs.push(probs.matmul(&vs)?);
        }
        let attn = Tensor::cat(&outs, 2)?.transpose(1, 2)?.reshape((n, d))?;
        let xs = (xs + self.proj.forward(&attn)?)?;
        let h = self.norm2.apply(&xs, diff)?;
        let ff = self.down_proj.forward(&(candle_nn::ops::silu(&self.gate_proj.forward(&h)?)? * self.up_proj.forward(&h)?)?)?;
        xs + ff
    }
}

/// The vision tower's weights.
#[derive(Debug, Clone)]
pub struct VisionTower {
    /// The Conv3d kernel flattened to [D, 3*2*14*14].
    patch_embed: Tensor,
    blocks: Vec<Block>,
    ln_q: RmsNorm,
    merger_fc1: Linear,
    merger_fc2: Linear,
    /// Rotary inverse frequencies (head_dim / 4 of them).
    inv_freq: Vec<f32>,
    cfg: VisionConfig,
}

/// Window layout of one or more grids: the merged-token order and the window lengths (in
/// patches), as transformers' `get_vision_window_index` computes them.
pub fn window_index(grids: &[[usize; 3]], cfg: &VisionConfig) -> (Vec<usize>, Vec<usize>) {
    let m = cfg.spatial_merge_size;
    let vws = cfg.window_size / m / cfg.patch_size;
    let mut index = Vec::new();
    let mut lens = Vec::new();
    let mut offset = 0;
    for &[t, h, w] in grids {
        let (lh, lw) = (h / m, w / m);
        let (nwh, nww) = (lh.div_ceil(vws), lw.div_ceil(vws));
        for ti in 0..t {
            for wy in 0..nwh {
                for wx in 0..nww {
                    let before = index.len();
                    for y in wy * vws..((wy + 1) * vws).min(lh) {
                        for x in wx * vws..((wx + 1) * vws).min(lw) {
                            index.push(offset + (ti * lh + y) * lw + x);
                        }
                    }
                    let count = index.len() - before;
                    if count > 0 {
                        lens.push(count * m * m);
                    }
                }
            }
        }
        offset += t * lh * lw;
    }
    (index, lens)
}

impl VisionTower {
    /// Loads `visual.*` from `vb` (scoped to the thinker's prefix).
    pub fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let (c, t, p) = (cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size);
        let kernel = vb.pp("patch_embed.proj").get((d, c, t, p, p), "weight")?.reshape((d, c * t * p * p))?;
        let merged = d * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let hd = d / cfg.num_heads;
        let half = hd / 2;
        let inv_freq = (0..half).step_by(2).map(|i| 1.0 / 10000f32.powf(i as f32 / half as f32)).collect();
        Ok(Self {
            patch_embed: kernel,
            blocks: (0..cfg.depth).map(|i| Block::load(cfg, vb.pp("blocks").pp(i))).collect::<Result<Vec<_>>>()?,
            ln_q: RmsNorm::load(d, 1e-6, vb.pp("merger.ln_q"))?,
            merger_fc1: Linear::load(merged, merged, true, vb.pp("merger.mlp.0"))?,
            merger_fc2: Linear::load(merged, cfg.out_hidden_size, true, vb.pp("merger.mlp.2"))?,
            inv_freq,
            cfg: cfg.clone(),
        })
    }

    /// Patch embeddings [N, D] (before the blocks).
    pub fn patch_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor> {
        pixel_values.to_dtype(self.patch_embed.dtype())?.matmul(&self.patch_embed.t()?)
    }

    /// Rotary cos/sin [1, N, head_dim/2] for the patches of `grids`, in merge-block order.
    fn rotary(&self, grids: &[[usize; 3]], device: &Device, dtype: DType) -> Result<(Tensor, Tensor)> {
        let m = self.cfg.spatial_merge_size;
        let q = self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for &[t, h, w] in grids {
            for _ in 0..t {
                for bh in 0..h / m {
                    for bw in 0..w / m {
                        for mh in 0..m {
                            for mw in 0..m {
                                let (hp, wp) = ((bh * m + mh) as f32, (bw * m + mw) as f32);
                                for k in 0..2 * q {
                                    let a = if k < q { hp * self.inv_freq[k] } else { wp * self.inv_freq[k - q] };
                                    cos.push(a.cos());
                                    sin.push(a.sin());
                                }
                            }
                        }
                    }
                }
            }
        }
        let n = cos.len() / (2 * q);
        Ok((
            Tensor::from_vec(cos, (1, n, 2 * q), device)?.to_dtype(dtype)?,
            Tensor::from_vec(sin, (1, n, 2 * q), device)?.to_dtype(dtype)?,
        ))
    }

    /// Encodes images or videos: `pixel_values` [N, 1176] for all grids, in order; returns the
    /// merged tokens [N / 4, out_hidden] in the original (row-major per frame) order.
    /// `differentiable` uses composed ops instead of the fused kernels (training).
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]], differentiable: bool) -> Result<Tensor> {
        let n = pixel_values.dim(0)?;
        let expected: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
        if n != expected {
            candle_core::bail!("{n} patches given for grids holding {expected}");
        }
        let device = pixel_values.device();
        let unit = self.cfg.spatial_merge_size * self.cfg.spatial_merge_size;
        let xs = self.patch_embeddings(pixel_values)?;
        let dtype = xs.dtype();
        let d = xs.dim(1)?;
        // Move groups of `unit` patches into window order.
        let (windex, window_lens) = window_index(grids, &self.cfg);
        let patch_order: Vec<u32> =
            windex.iter().flat_map(|&g| (0..unit).map(move |u| (g * unit + u) as u32)).collect();
        let patch_order = Tensor::from_vec(patch_order, n, device)?;
        let mut xs = xs.index_select(&patch_order, 0)?;
        let (cos, sin) = self.rotary(grids, device, dtype)?;
        let cos = cos.index_select(&patch_order, 1)?.contiguous()?;
        let sin = sin.index_select(&patch_order, 1)?.contiguous()?;
        let to_segments = |lens: &[usize]| {
            let mut start = 0;
            lens.iter()
                .map(|&l| {
                    let s = (start, l);
                    start += l;
                    s
                })
                .collect::<Vec<_>>()
        };
        let windows = to_segments(&window_lens);
        let frame_lens: Vec<usize> = grids.iter().flat_map(|&[t, h, w]| std::iter::repeat(h * w).take(t)).collect();
        let frames = to_segments(&frame_lens);
        for (i, block) in self.blocks.iter().enumerate() {
            let segments = if self.cfg.fullatt_block_indexes.contains(&i) { &frames } else { &windows };
            xs = block.forward(&xs, &cos, &sin, segments, self.cfg.num_heads, differentiable)?;
        }
        let merged = self.ln_q.apply(&xs, differentiable)?.reshape((n / unit, unit * d))?;
        let out = self.merger_fc2.forward(&self.merger_fc1.forward(&merged)?.gelu_erf()?)?;
        // Back to the original merged-token order.
        let mut reverse = vec![0u32; windex.len()];
        for (pos, &g) in windex.iter().enumerate() {
            reverse[g] = pos as u32;
        }
        out.index_select(&Tensor::from_vec(reverse, windex.len(), device)?, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VisionConfig {
        VisionConfig {
            depth: 1,
            hidden_size: 16,
            num_heads: 2,
            intermediate_size: 32,
            patch_size: 14,
            temporal_patch_size: 2,
            spatial_merge_size: 2,
            window_size: 112,
            fullatt_block_indexes: vec![],
            out_hidden_size: 32,
            in_channels: 3,
        }
    }

    #[test]
    fn windows_tile_the_merged_grid_with_partial_edges() {
        // 10x14 patches -> 5x7 merged tokens -> windows of 4x4: 2 rows x 2 columns of windows.
        let (index, lens) = window_index(&[[1, 10, 14]], &cfg());
        assert_eq!(index.len(), 35);
        assert_eq!(lens, vec![16 * 4, 12 * 4, 4 * 4, 3 * 4]);
        assert_eq!(&index[..5], &[0, 1, 2, 3, 7]);
        // Every merged token appears once.
        let mut sorted = index.clone();
        sorted.sort();
        assert_eq!(sorted, (0..35).collect::<Vec<_>>());
    }
}
