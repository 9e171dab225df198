//! Sampling as tensor ops, for logits on an accelerator: the same draw as the host path (see the
//! parent module), computed where the logits are, so that only the sampled ids and their
//! log-probabilities (and one flag per row for the finiteness check) cross to the host.
//!
//! Top-k and top-p thresholds are found by bisection on the value of `z` (each step one
//! comparison and one row sum over `[B, V]`; it stops when no value lies strictly inside any
//! row's bracket, so the threshold is exact); the inverse CDF runs over chunk sums (`[B, V/512]`),
//! then inside the chosen chunk, with prefix sums as small triangular matmuls. Nothing here
//! sorts the vocabulary (Candle's CUDA sort holds a whole row in shared memory, which a 151 646-id
//! row does not fit).

use super::{Choice, NonFiniteLogits, Sampling};
use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

/// Ids per chunk of the two-level inverse CDF.
const CHUNK: usize = 512;
/// Bisection steps before the first convergence check, and between checks.
const FIRST_CHECK: usize = 24;
const CHECK_EVERY: usize = 8;
/// More steps than any f32 bracket needs to close (the bracket halves, or stops moving once its
/// ends are neighbouring floats).
const MAX_STEPS: usize = 320;

/// Samples one token per row of `logits` `[B, V]` with the given uniforms (one per row; unused
/// for greedy), by tensor ops on the logits' device.
pub fn sample(logits: &Tensor, sampling: Sampling, uniforms: &[f64]) -> Result<Vec<Choice>> {
    let logits = logits.to_dtype(DType::F32)?;
    let (b, _) = logits.dims2()?;
    if uniforms.len() != b {
        bail!("{} uniforms for {b} rows of logits", uniforms.len());
    }
    check_finite(&logits)?;
    let (tokens, logprobs) = match sampling {
        Sampling::Greedy => {
            let tokens = logits.argmax_keepdim(D::Minus1)?;
            let logprobs = logits.gather(&tokens, D::Minus1)?.sub(&log_sum_exp(&logits)?)?;
            (tokens, logprobs)
        }
        Sampling::Random { temperature, top_p, top_k } => {
            let z = (&logits / temperature as f64)?;
            let m = z.max_keepdim(D::Minus1)?;
            let e = z.broadcast_sub(&m)?.exp()?;
            let lse = (&m + e.sum_keepdim(D::Minus1)?.log()?)?;
            let weights = match threshold(&z, &e, top_k, top_p)? {
                Some(t) => (&e * z.broadcast_ge(&t)?.to_dtype(DType::F32)?)?,
                None => e,
            };
            // f32 uniforms strictly below 1.
            let u: Vec<f32> = uniforms.iter().map(|&u| (u as f32).min(1.0 - f32::EPSILON / 2.0)).collect();
            let u = Tensor::from_vec(u, (b, 1), logits.device())?;
            let tokens = inverse_cdf(&weights, &u)?;
            let logprobs = z.gather(&tokens, D::Minus1)?.sub(&lse)?;
            (tokens, logprobs)
        }
    };
    let tokens: Vec<u32> = tokens.squeeze(1)?.to_vec1()?;
    let logprobs: Vec<f32> = logprobs.squeeze(1)?.to_vec1()?;
    Ok(tokens.into_iter().zip(logprobs).map(|(token, logprob)| Choice { token, logprob }).collect())
}

/// Errors on the first row holding NaN or an infinity (`x - x` is NaN exactly there); only that
/// row is copied to the host, to name the id.
fn check_finite(logits: &Tensor) -> Result<()> {
    let flags: Vec<f32> = logits.sub(logits)?.sum(D::Minus1)?.to_vec1()?;
    let Some(row) = flags.iter().position(|f| !f.is_finite()) else { return Ok(()) };
    let values: Vec<f32> = logits.get(row)?.to_vec1()?;
    let token = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Err(NonFiniteLogits { row, token, value: values[token] }.into())
}

/// `log(sum(exp(x)))` per row, `[B, 1]`.
fn log_sum_exp(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?;
    Ok((&m + x.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()?)?)
}

/// Per row, the smallest kept value of `z` under top-k then top-p (`[B, 1]`), or None when
/// nothing is truncated; `e = exp(z - max z)`.
fn threshold(z: &Tensor, e: &Tensor, top_k: usize, top_p: f32) -> Result<Option<Tensor>> {
    let v = z.dim(D::Minus1)?;
    let lowest = z.min_keepdim(D::Minus1)?;
    let highest = z.max_keepdim(D::Minus1)?;
    let floor = if top_k > 0 && top_k < v {
        // The largest t with at least k values >= t: the k-th largest value.
        let k = top_k as f64;
        Some(bisect(z, &lowest, &highest, |t| count_at_least(z, t)?.ge(k).map_err(Into::into))?)
    } else {
        None
    };
    if top_p >= 1.0 {
        return Ok(floor);
    }
    // The largest t whose mass at or above it reaches top_p of the mass above the floor.
    let start = floor.clone().unwrap_or(lowest);
    let need = (mass_at_least(z, e, &start)? * top_p as f64)?;
    Ok(Some(bisect(z, &start, &highest, |t| mass_at_least(z, e, t)?.ge(&need).map_err(Into::into))?))
}

/// How many values of each row are >= `t` (`[B, 1]`, f32).
fn count_at_least(z: &Tensor, t: &Tensor) -> Result<Tensor> {
    Ok(z.broadcast_ge(t)?.to_dtype(DType::F32)?.sum_keepdim(D::Minus1)?)
}

/// The mass `e` of the values >= `t`, per row (`[B, 1]`).
fn mass_at_least(z: &Tensor, e: &Tensor, t: &Tensor) -> Result<Tensor> {
    Ok((e * z.broadcast_ge(t)?.to_dtype(DType::F32)?)?.sum_keepdim(D::Minus1)?)
}

/// The largest `t` among the values of `z` (per row) for which `holds(t)` (a `[B, 1]` u8 mask),
/// given that `holds` is monotone (true below some value, false above), true at `lo`.
fn bisect(z: &Tensor, lo: &Tensor, hi: &Tensor, holds: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    // Rows where even the largest value holds are done at once.
    let mut lo = holds(hi)?.where_cond(hi, lo)?;
    let mut hi = hi.clone();
    for step in 1..=MAX_STEPS {
        let mid = ((&lo + &hi)? * 0.5)?;
        let ok = holds(&mid)?;
        lo = ok.where_cond(&mid, &lo)?;
        hi = ok.where_cond(&hi, &mid)?;
        if step >= FIRST_CHECK && (step - FIRST_CHECK) % CHECK_EVERY == 0 && !any_inside(z, &lo, &hi)? {
            // No value strictly inside (lo, hi): holds(lo) and not holds(hi), so lo is a value of z
            // and the answer.
            return Ok(lo);
        }
    }
    bail!("the sampling threshold did not converge in {MAX_STEPS} bisection steps")
}

/// Whether some row has a value strictly between its `lo` and `hi`.
fn any_inside(z: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<bool> {
    let inside = (z.broadcast_gt(lo)?.to_dtype(DType::F32)? * z.broadcast_lt(hi)?.to_dtype(DType::F32)?)?;
    Ok(inside.sum_all()?.to_scalar::<f32>()? > 0.0)
}

/// Per row, the first id whose running weight exceeds `u` times the row's total weight (`[B, 1]`
/// u32): chunk sums pick the chunk, prefix sums inside it the id. A target that rounding puts at
/// or past the end lands on the last id with weight, never on one without.
fn inverse_cdf(w: &Tensor, u: &Tensor) -> Result<Tensor> {
    let (b, v) = w.dims2()?;
    let k = CHUNK.min(v);
    let c = v.div_ceil(k);
    let w = if c * k > v { Tensor::cat(&[w, &Tensor::zeros((b, c * k - v), DType::F32, w.device())?], 1)? } else { w.clone() };
    let chunks = w.reshape((b, c, k))?;
    let sums = chunks.sum(2)?;
    let running = sums.cumsum(1)?;
    let target = u.mul(&running.narrow(1, c - 1, 1)?)?;
    let chunk = first_past(&running, &sums, &target)?;
    let before = (&running - &sums)?.gather(&chunk.to_dtype(DType::U32)?, 1)?;
    let rest = (&target - before)?;
    let rows = (Tensor::arange(0u32, b as u32, w.device())?.to_dtype(DType::F32)? * c as f64)?.unsqueeze(1)?;
    let picked = chunks.reshape((b * c, k))?.index_select(&(rows + &chunk)?.squeeze(1)?.to_dtype(DType::U32)?, 0)?;
    let offset = first_past(&picked.cumsum(1)?, &picked, &rest)?;
    Ok(((chunk * k as f64)? + offset)?.to_dtype(DType::U32)?)
}

/// Per row, the number of running sums `<= target`, capped at the last position with positive
/// weight (`[B, 1]`, f32 holding whole numbers).
fn first_past(running: &Tensor, weights: &Tensor, target: &Tensor) -> Result<Tensor> {
    let n = running.dim(1)?;
    let count = running.broadcast_le(target)?.to_dtype(DType::F32)?.sum_keepdim(1)?;
    let positions = Tensor::arange(0u32, n as u32, running.device())?.to_dtype(DType::F32)?.unsqueeze(0)?;
    let last = weights.gt(0.0)?.to_dtype(DType::F32)?.broadcast_mul(&positions)?.max_keepdim(1)?;
    Ok(count.minimum(&last)?)
}
