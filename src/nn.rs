//! Shared building blocks for the model code: linear layers, RMS normalisation and the rotary
//! embedding, each with the fast Candle kernel for inference.
//!
//! Candle's fused kernels (`rms_norm`, `softmax_last_dim`, `rope`) carry no gradient; the training
//! path (which needs composed, differentiable ops) is kept beside the fast one so that both share
//! weights and structure. Two custom ops give the training path gradients that Candle's autograd
//! would make too costly: a frozen linear layer's input gradient (no weight gradient), and
//! blockwise attention's backward (no `[heads, L, L]` scores held).

use candle_core::{DType, Module, Result, Tensor, Var, D};
use candle_nn::VarBuilder;
use std::sync::Arc;

/// The dtype softmax, norms and logits are computed in: f32, or f64 for an f64 model.
pub fn accumulation_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// How a forward pass runs: fused kernels or differentiable ops, adapters on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Composed, differentiable ops (training) instead of the fused kernels (inference).
    pub differentiable: bool,
    /// Apply the LoRA adapters (off: the frozen base model).
    pub adapters: bool,
    /// LoRA dropout on, with this seed (training only; the mask is a function of the seed, so
    /// runs are reproducible and resumable).
    pub dropout_seed: Option<u64>,
}

impl Pass {
    /// Fast inference with adapters.
    pub const INFER: Pass = Pass { differentiable: false, adapters: true, dropout_seed: None };
    /// Training: differentiable, with adapters.
    pub const TRAIN: Pass = Pass { differentiable: true, adapters: true, dropout_seed: None };
    /// The frozen base model (KL reference, base-model judge).
    pub const BASE: Pass = Pass { differentiable: false, adapters: false, dropout_seed: None };
}

/// A dropout mask (0, or 1/(1-p) to keep the expectation) of `shape`, computed on the device from
/// a hash of the element index and `seed`: deterministic on every device (Candle's CPU random
/// generator cannot be seeded).
pub fn dropout_mask(shape: &candle_core::Shape, p: f32, seed: u64, device: &candle_core::Device, dtype: DType) -> Result<Tensor> {
    let n = shape.elem_count();
    let idx = Tensor::arange(0u32, n as u32, device)?.to_dtype(DType::F32)?;
    let offset = (seed % 100_003) as f64 * 0.618_033_988_7 + 0.5;
    let x = (((idx * 12.9898)? + offset)?.sin()? * 43_758.545_3)?;
    let frac = (&x - x.floor()?)?;
    let keep = frac.ge(p as f64)?.to_dtype(dtype)?;
    (keep / (1.0 - p as f64))?.reshape(shape)
}

/// A low-rank adapter: `y += scale * (x A^T) B^T`, with A [r, in] and B [out, r].
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
}

/// A linear layer `y = x W^T + b`, with an optional LoRA adapter merged on the fly, and, when its
/// weight is being trained, optionally its original weight for the base-model passes.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
    lora: Option<Arc<Lora>>,
    frozen: Option<candle_nn::Linear>,
    /// Dropout on the adapter's input during training, and this layer's share of the seed.
    lora_dropout: f32,
    lora_id: u64,
}

impl Linear {
    /// Loads `weight` `[out, in]` (and `bias` `[out]` when `bias` is true) under `vb`.
    pub fn load(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Self::from_weights(weight, bias))
    }

    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { inner: candle_nn::Linear::new(weight, bias), lora: None, frozen: None, lora_dropout: 0.0, lora_id: 0 }
    }

    /// Dropout probability on the adapter's input while training; `id` tells layers apart.
    pub fn set_lora_dropout(&mut self, p: f32, id: u64) {
        self.lora_dropout = p;
        self.lora_id = id;
    }

    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// (out, in) sizes.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.inner.weight().dims();
        (d[0], d[1])
    }

    /// Makes the weight itself trainable (full fine-tuning) and returns it as a variable (a copy
    /// of the weight). With `keep_frozen` the original weight stays for passes without adapters
    /// (the frozen base model). The weight must be f32 or f64.
    pub fn make_trainable(&mut self, keep_frozen: bool) -> Result<Var> {
        let w = self.inner.weight();
        if !matches!(w.dtype(), DType::F32 | DType::F64) {
            candle_core::bail!("full fine-tuning needs f32 (or f64) weights, not {:?}; load the model with --dtype f32", w.dtype());
        }
        let var = Var::from_tensor(&w.copy()?)?;
        if keep_frozen {
            self.frozen = Some(self.inner.clone());
        }
        self.inner = candle_nn::Linear::new(var.as_tensor().clone(), self.inner.bias().cloned());
        Ok(var)
    }

    pub fn set_lora(&mut self, lora: Option<Arc<Lora>>) {
        self.lora = lora;
    }

    pub fn lora(&self) -> Option<&Arc<Lora>> {
        self.lora.as_ref()
    }

    /// The layer under `pass` (with the adapter when it has one and the pass wants it; a pass
    /// without adapters uses the frozen original weight when one is kept).
    pub fn apply(&self, xs: &Tensor, pass: Pass) -> Result<Tensor> {
        if let (Some(frozen), false) = (&self.frozen, pass.adapters) {
            return linear_forward(frozen, xs);
        }
        let y = linear_forward(&self.inner, xs)?;
        match (&self.lora, pass.adapters) {
            (Some(l), true) => {
                let a = l.a.as_tensor().to_dtype(xs.dtype())?;
                let b = l.b.as_tensor().to_dtype(xs.dtype())?;
                let input = match pass.dropout_seed {
                    Some(seed) if self.lora_dropout > 0.0 => {
                        let mask = dropout_mask(xs.shape(), self.lora_dropout, seed.wrapping_mul(1_000_003).wrapping_add(self.lora_id), xs.device(), xs.dtype())?;
                        (xs * mask)?
                    }
                    _ => xs.clone(),
                };
                let low = input.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
                y + (low * l.scale)?
            }
            _ => Ok(y),
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        linear_forward(&self.inner, xs)
    }
}

/// `xs @ w^T (+ b)`. When `xs` carries a gradient but the weight is frozen (not a variable), the
/// backward computes only the input's gradient: candle's matmul backward also computes a
/// gradient for its right-hand side whether or not anything trains it, and keeps it until the
/// backward pass ends, which would cost one weight-sized tensor per frozen projection (the whole
/// model's size, for LoRA) and a second matmul per projection.
fn linear_forward(linear: &candle_nn::Linear, xs: &Tensor) -> Result<Tensor> {
    let weight = linear.weight();
    if !xs.track_op() || weight.is_variable() {
        return linear.forward(xs);
    }
    let value = linear.forward(&xs.detach())?;
    let route = xs.apply_op1(InputGradient { weight: weight.clone() })?;
    value + route
}

/// The gradient path of a frozen linear layer: its value is zeros of the output's shape (the
/// layer's value is added to it, computed without a graph); its backward is `grad @ w`.
struct InputGradient {
    /// `[out, in]`.
    weight: Tensor,
}

impl InputGradient {
    fn output_shape(&self, layout: &candle_core::Layout) -> candle_core::Shape {
        let mut dims = layout.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0).unwrap_or(0);
        }
        candle_core::Shape::from(dims)
    }

    fn zeros<S>(&self, storage: &S, layout: &candle_core::Layout) -> Result<(S, candle_core::Shape)>
    where
        S: candle_core::backend::BackendStorage,
        S::Device: candle_core::backend::BackendDevice<Storage = S>,
    {
        use candle_core::backend::BackendDevice;
        let shape = self.output_shape(layout);
        Ok((storage.device().zeros_impl(&shape, storage.dtype())?, shape))
    }
}

impl candle_core::CustomOp1 for InputGradient {
    fn name(&self) -> &'static str {
        "frozen-linear-input-gradient"
    }

    fn cpu_fwd(&self, storage: &candle_core::CpuStorage, layout: &candle_core::Layout) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        self.zeros(storage, layout)
    }

    fn cuda_fwd(&self, storage: &candle_core::CudaStorage, layout: &candle_core::Layout) -> Result<(candle_core::CudaStorage, candle_core::Shape)> {
        self.zeros(storage, layout)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.weight.to_dtype(grad.dtype())?)?))
    }
}

/// Root-mean-square normalisation with a learned scale, computed in f32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get(dim, "weight")?, eps })
    }

    /// The fused kernel, or the differentiable ops when `differentiable`.
    pub fn apply(&self, xs: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            self.forward_diff(xs)
        } else {
            self.forward(xs)
        }
    }

    /// Fast fused kernel (no gradient).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        if dtype == DType::F64 {
            // The fused kernel has no f64 version.
            return self.forward_diff(xs);
        }
        let xs32 = xs.to_dtype(DType::F32)?.contiguous()?;
        let normed = candle_nn::ops::rms_norm(&xs32, &self.weight.to_dtype(DType::F32)?, self.eps as f32)?;
        normed.to_dtype(dtype)
    }

    /// Composed ops, differentiable; same result as `forward` (as transformers computes it:
    /// normalise in f32, cast back, then scale).
    pub fn forward_diff(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let x = xs.to_dtype(accumulation_dtype(dtype))?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// Layer normalisation with a learned scale and shift (the towers' pre-norms), computed in f32.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get(dim, "weight")?, bias: vb.get(dim, "bias")?, eps })
    }

    /// The fused kernel, or composed (differentiable) ops when `differentiable`.
    pub fn apply(&self, xs: &Tensor, differentiable: bool) -> Result<Tensor> {
        let dtype = xs.dtype();
        if !differentiable && dtype != DType::F64 {
            let x = xs.to_dtype(DType::F32)?.contiguous()?;
            let (w, b) = (self.weight.to_dtype(DType::F32)?, self.bias.to_dtype(DType::F32)?);
            return candle_nn::ops::layer_norm(&x, &w, &b, self.eps as f32)?.to_dtype(dtype);
        }
        let x = xs.to_dtype(accumulation_dtype(dtype))?;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// A 1-D convolution `[B, C_in, L] -> [B, C_out, L_out]` with bias (the audio tower's front end).
/// The differentiable path is an explicit unfold and matmul: Candle 0.11's `conv1d` backward
/// gives wrong kernel gradients for batches of more than one sequence.
#[derive(Debug, Clone)]
pub struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
}

impl Conv1d {
    /// Loads `weight` `[out, in, kernel]` and `bias` `[out]`.
    pub fn load(in_dim: usize, out_dim: usize, kernel: usize, padding: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get((out_dim, in_dim, kernel), "weight")?, bias: vb.get(out_dim, "bias")?, padding, stride })
    }

    /// Candle's kernel, or the unfold-and-matmul path when `differentiable`.
    pub fn apply(&self, xs: &Tensor, differentiable: bool) -> Result<Tensor> {
        let bias = self.bias.reshape((1, (), 1))?;
        if !differentiable {
            return xs.conv1d(&self.weight, self.padding, self.stride, 1, 1)?.broadcast_add(&bias);
        }
        let (b, c, l) = xs.dims3()?;
        let (out, _, k) = self.weight.dims3()?;
        let padded = xs.pad_with_zeros(2, self.padding, self.padding)?;
        let l_out = (l + 2 * self.padding - k) / self.stride + 1;
        let starts = Tensor::arange_step(0u32, (l_out * self.stride) as u32, self.stride as u32, xs.device())?;
        // cols[b, c, j, t] = padded[b, c, t * stride + j]
        let cols = (0..k)
            .map(|j| padded.narrow(2, j, l + 2 * self.padding - j)?.contiguous()?.index_select(&starts, 2))
            .collect::<Result<Vec<_>>>()?;
        let cols = Tensor::stack(&cols, 2)?.permute((0, 3, 1, 2))?.reshape((b, l_out, c * k))?;
        let w = self.weight.reshape((out, c * k))?;
        cols.broadcast_matmul(&w.t()?)?.transpose(1, 2)?.broadcast_add(&bias)
    }
}

/// Rotates pairs `(x[i], x[i + d/2])` by the angles whose cosines and sines are given
/// (`cos`, `sin`: [B, L, d/2]); `xs`: [B, heads, L, d]. The fused kernel; no gradient.
pub fn apply_rotary(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin)
}

/// [`apply_rotary`] or [`apply_rotary_diff`].
pub fn rotary(xs: &Tensor, cos: &Tensor, sin: &Tensor, differentiable: bool) -> Result<Tensor> {
    if differentiable {
        apply_rotary_diff(xs, cos, sin)
    } else {
        apply_rotary(xs, cos, sin)
    }
}

/// Softmax over the last dimension: fused, or composed (differentiable).
pub fn softmax_last(xs: &Tensor, differentiable: bool) -> Result<Tensor> {
    if differentiable {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

/// The same rotation as [`apply_rotary`] from differentiable ops (`x*cos + rotate_half(x)*sin`).
pub fn apply_rotary_diff(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let half = xs.dim(D::Minus1)? / 2;
    let x1 = xs.narrow(D::Minus1, 0, half)?;
    let x2 = xs.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    xs.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

/// Repeats each key/value head `n_rep` times along the head axis (grouped-query attention):
/// [B, kv, L, d] -> [B, kv * n_rep, L, d].
pub fn repeat_kv(xs: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(xs.clone());
    }
    let (b, kv, l, d) = xs.dims4()?;
    xs.unsqueeze(2)?.expand((b, kv, n_rep, l, d))?.reshape((b, kv * n_rep, l, d))
}

/// Elements of one query block's `[B, heads, block, Lk]` scores in [`blockwise_attention`]
/// (64 Mi: 256 MB in f32).
const ATTENTION_BLOCK_ELEMENTS: usize = 1 << 26;

/// Differentiable softmax attention `softmax(q k^T * scale + mask) v` (`q`: `[B, h, Lq, d]`,
/// `k`, `v`: `[B, h, Lk, d]`, `mask`: additive `[B, 1, Lq, Lk]`; scores and softmax in the
/// accumulation dtype, the result in `v`'s) that never holds the `[B, h, Lq, Lk]` scores: the
/// value is computed a block of query rows at a time without a graph, and the gradient goes
/// through a custom op (`AttentionGradient`), whose backward recomputes each block's probabilities (the
/// standard attention backward, as in FlashAttention: `dV = P^T dO`, `dS = P * (dO V^T -
/// rowsum(dO * O))`, `dQ = dS K scale`, `dK = dS^T Q scale`). `block` is the number of query rows
/// per block (0: as many as fit in 64 Mi score elements).
pub fn blockwise_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64, block: usize) -> Result<Tensor> {
    let (b, h, lq, _) = q.dims4()?;
    let lk = k.dim(2)?;
    let block = if block == 0 { (ATTENTION_BLOCK_ELEMENTS / (b * h * lk).max(1)).clamp(1, lq) } else { block.min(lq) };
    let op = AttentionGradient { mask: mask.map(|m| m.detach()), scale, block, out: None };
    let (qd, kd, vd) = (q.detach(), k.detach(), v.detach());
    let mut blocks = Vec::new();
    for q0 in (0..lq).step_by(block) {
        let c = block.min(lq - q0);
        let p = op.probabilities(&qd.narrow(2, q0, c)?, &kd, q0)?;
        blocks.push(p.to_dtype(v.dtype())?.matmul(&vd)?);
    }
    let value = Tensor::cat(&blocks, 2)?;
    if !(q.track_op() || k.track_op() || v.track_op()) {
        return Ok(value);
    }
    let route = q.apply_op3(k, v, AttentionGradient { out: Some(value.clone()), ..op })?;
    value + route
}

/// The gradient path of [`blockwise_attention`]: zeros forward (the value is added to it
/// without a graph), the attention's backward a query block at a time.
struct AttentionGradient {
    mask: Option<Tensor>,
    scale: f64,
    block: usize,
    /// The attention's value `[B, h, Lq, d]` (for `rowsum(dO * O)`).
    out: Option<Tensor>,
}

impl AttentionGradient {
    /// `softmax(q k^T * scale + mask)` for the query rows `q0..q0 + c` (`q`: those rows), in the
    /// accumulation dtype.
    fn probabilities(&self, q: &Tensor, k: &Tensor, q0: usize) -> Result<Tensor> {
        let acc = accumulation_dtype(q.dtype());
        let s = (q.matmul(&k.t()?)? * self.scale)?.to_dtype(acc)?;
        let s = match &self.mask {
            Some(m) => s.broadcast_add(&m.narrow(2, q0, q.dim(2)?)?.to_dtype(acc)?)?,
            None => s,
        };
        candle_nn::ops::softmax_last_dim(&s).or_else(|_| candle_nn::ops::softmax(&s, D::Minus1))
    }

    fn zeros<S>(&self, storage: &S, shape: candle_core::Shape) -> Result<(S, candle_core::Shape)>
    where
        S: candle_core::backend::BackendStorage,
        S::Device: candle_core::backend::BackendDevice<Storage = S>,
    {
        use candle_core::backend::BackendDevice;
        Ok((storage.device().zeros_impl(&shape, storage.dtype())?, shape))
    }

    /// `[B, h, Lq, d_v]` from the queries' and values' layouts.
    fn output_shape(q: &candle_core::Layout, v: &candle_core::Layout) -> candle_core::Shape {
        let mut dims = q.shape().dims().to_vec();
        if let (Some(last), Some(&dv)) = (dims.last_mut(), v.shape().dims().last()) {
            *last = dv;
        }
        candle_core::Shape::from(dims)
    }
}

impl candle_core::CustomOp3 for AttentionGradient {
    fn name(&self) -> &'static str {
        "blockwise-attention-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        _s2: &candle_core::CpuStorage,
        _l2: &candle_core::Layout,
        _s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        self.zeros(s1, Self::output_shape(l1, l3))
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &candle_core::Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &candle_core::Layout,
        _s3: &candle_core::CudaStorage,
        l3: &candle_core::Layout,
    ) -> Result<(candle_core::CudaStorage, candle_core::Shape)> {
        self.zeros(s1, Self::output_shape(l1, l3))
    }

    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let out = self.out.as_ref().ok_or_else(|| candle_core::Error::Msg("the attention's value was not kept".into()))?;
        // No graph: the gradients must not keep the blocks' probabilities alive.
        let (q, k, v, grad) = (q.detach(), k.detach(), v.detach(), grad.detach());
        let acc = accumulation_dtype(q.dtype());
        let (ka, va) = (k.to_dtype(acc)?, v.to_dtype(acc)?);
        let lq = q.dim(2)?;
        let (mut dk, mut dv) = (ka.zeros_like()?, va.zeros_like()?);
        let mut dq = Vec::new();
        for q0 in (0..lq).step_by(self.block) {
            let c = self.block.min(lq - q0);
            let qb = q.narrow(2, q0, c)?;
            let p = self.probabilities(&qb, &k, q0)?;
            let go = grad.narrow(2, q0, c)?.to_dtype(acc)?;
            let ob = out.narrow(2, q0, c)?.to_dtype(acc)?;
            dv = (dv + p.t()?.matmul(&go)?)?;
            let dp = go.matmul(&va.t()?)?;
            let rowsum = (&go * &ob)?.sum_keepdim(D::Minus1)?;
            let ds = (p * dp.broadcast_sub(&rowsum)?)?;
            dq.push((ds.matmul(&ka)? * self.scale)?.to_dtype(q.dtype())?);
            dk = (dk + (ds.t()?.matmul(&qb.to_dtype(acc)?)? * self.scale)?)?;
        }
        Ok((Some(Tensor::cat(&dq, 2)?), Some(dk.to_dtype(k.dtype())?), Some(dv.to_dtype(v.dtype())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Blockwise attention (blocks of 3 query rows, and one block) equals the composed softmax
    /// attention in value and in the gradients of q, k and v, with a causal mask over cached keys
    /// and a padded key, f64.
    #[test]
    fn blockwise_attention_equals_the_plain_attention() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, lq, lk, d) = (2, 3, 7, 9, 4);
        let q = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, h, lq, d), &dev)?)?;
        let k = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, h, lk, d), &dev)?)?;
        let v = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, h, lk, d), &dev)?)?;
        let upstream = Tensor::randn(0f64, 1.0, (b, h, lq, d), &dev)?;
        let mut m = Vec::new();
        for row in 0..b {
            for i in 0..lq {
                for j in 0..lk {
                    let masked = j > lk - lq + i || (row == 1 && j == 0);
                    m.push(if masked { -1e30 } else { 0.0 });
                }
            }
        }
        let mask = Tensor::from_vec(m, (b, 1, lq, lk), &dev)?;
        let scale = 0.5;
        let plain = {
            let s = (q.as_tensor().matmul(&k.as_tensor().t()?)? * scale)?.broadcast_add(&mask)?;
            candle_nn::ops::softmax(&s, D::Minus1)?.matmul(v.as_tensor())?
        };
        let gp = (&plain * &upstream)?.sum_all()?.backward()?;
        for block in [3, 0] {
            let ours = blockwise_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), Some(&mask), scale, block)?;
            let diff = (&ours - &plain)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(diff < 1e-12, "block {block}: values differ by {diff}");
            let go = (&ours * &upstream)?.sum_all()?.backward()?;
            for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, e) = (go.get(var.as_tensor()).unwrap(), gp.get(var.as_tensor()).unwrap());
                let diff = (a - e)?.abs()?.max_all()?.to_scalar::<f64>()?;
                assert!(diff < 1e-10, "block {block}: d{name} differs by {diff}");
            }
        }
        Ok(())
    }

    /// A frozen layer on a tracked input: the same value and input gradient as the plain matmul,
    /// and no gradient computed (or kept) for the weight; a trainable weight still gets one.
    #[test]
    fn frozen_linear_keeps_no_weight_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f64, 1.0, (5, 3), &dev)?;
        let b = Tensor::randn(0f64, 1.0, 5, &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 4, 3), &dev)?)?;
        let upstream = Tensor::randn(0f64, 1.0, (2, 4, 5), &dev)?;
        let frozen = Linear::from_weights(w.clone(), Some(b.clone()));
        let y = frozen.apply(x.as_tensor(), Pass::TRAIN)?;
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?.broadcast_add(&b)?;
        assert!((&y - &plain)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
        let grads = (y * &upstream)?.sum_all()?.backward()?;
        let plain_grads = (plain * &upstream)?.sum_all()?.backward()?;
        let (gx, want) = (grads.get(x.as_tensor()).unwrap(), plain_grads.get(x.as_tensor()).unwrap());
        assert!((gx - want)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-12);
        // Every gradient kept, by shape: candle's own matmul keeps one of the (transposed) weight's.
        let shapes = |g: &candle_core::backprop::GradStore| -> Vec<Vec<usize>> {
            g.get_ids().map(|id| g.get_id(*id).unwrap().dims().to_vec()).filter(|d| d.len() == 2).collect()
        };
        assert_eq!(shapes(&grads), Vec::<Vec<usize>>::new(), "a gradient was kept for the frozen weight");
        assert_eq!(shapes(&plain_grads), vec![vec![3, 5]], "candle's matmul keeps the weight's gradient");
        let mut trained = Linear::from_weights(w.clone(), None);
        let var = trained.make_trainable(false)?;
        let grads = trained.apply(x.as_tensor(), Pass::TRAIN)?.sum_all()?.backward()?;
        assert!(grads.get(var.as_tensor()).is_some(), "a trainable weight gets its gradient");
        Ok(())
    }

    #[test]
    fn rotary_fast_and_diff_agree() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev)?;
        let angles = Tensor::randn(0f32, 3.0, (2, 5, 4), &dev)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let a = apply_rotary(&xs, &cos, &sin)?;
        let b = apply_rotary_diff(&xs, &cos, &sin)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn conv1d_fast_and_diff_agree_and_the_diff_gradient_is_right() -> Result<()> {
        let dev = Device::Cpu;
        for stride in [1, 2] {
            let conv = Conv1d { weight: Tensor::randn(0f64, 1.0, (5, 4, 3), &dev)?, bias: Tensor::randn(0f64, 1.0, 5, &dev)?, padding: 1, stride };
            let xs = Tensor::randn(0f64, 1.0, (3, 4, 11), &dev)?;
            let diff = (conv.apply(&xs, false)? - conv.apply(&xs, true)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(diff < 1e-10, "stride {stride}: {diff}");
            // The kernel gradient against finite differences, for a batch of 3.
            let w = Var::from_tensor(&conv.weight)?;
            let g = Tensor::randn(0f64, 1.0, conv.apply(&xs, false)?.shape(), &dev)?;
            let f = |weight: &Tensor| -> Result<f64> {
                let c = Conv1d { weight: weight.clone(), ..conv.clone() };
                (c.apply(&xs, true)? * &g)?.sum_all()?.to_scalar::<f64>()
            };
            let grads = (Conv1d { weight: w.as_tensor().clone(), ..conv.clone() }.apply(&xs, true)? * &g)?.sum_all()?.backward()?;
            let an: Vec<f64> = grads.get(w.as_tensor()).expect("a kernel gradient").flatten_all()?.to_vec1()?;
            let orig: Vec<f64> = conv.weight.flatten_all()?.to_vec1()?;
            for k in [0, 7, 31, 59] {
                let at = |d: f64| -> Result<f64> {
                    let mut v = orig.clone();
                    v[k] += d;
                    f(&Tensor::from_vec(v, (5, 4, 3), &dev)?)
                };
                let numeric = (at(1e-6)? - at(-1e-6)?) / 2e-6;
                assert!((numeric - an[k]).abs() < 1e-6, "stride {stride}, weight {k}: {} vs {numeric}", an[k]);
            }
        }
        Ok(())
    }

    #[test]
    fn layer_norm_fast_and_diff_agree() -> Result<()> {
        let dev = Device::Cpu;
        let norm = LayerNorm { weight: Tensor::randn(1f32, 0.5, 16, &dev)?, bias: Tensor::randn(0f32, 0.5, 16, &dev)?, eps: 1e-5 };
        let xs = (Tensor::randn(0f32, 2.0, (3, 7, 16), &dev)? + 3.0)?;
        let diff = (norm.apply(&xs, false)? - norm.apply(&xs, true)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn rms_norm_fast_and_diff_agree() -> Result<()> {
        let dev = Device::Cpu;
        let norm = RmsNorm { weight: Tensor::randn(1f32, 0.5, 16, &dev)?, eps: 1e-6 };
        let xs = Tensor::randn(0f32, 2.0, (3, 7, 16), &dev)?;
        let diff = (norm.forward(&xs)? - norm.forward_diff(&xs)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
