//! Position ids and the multimodal rotary embedding (mRoPE) of the text decoder.
//!
//! Every token carries three position ids (temporal, height, width). For text (and audio-only)
//! prompts the three rows are equal and count the valid tokens; image and video tokens get 3-D
//! positions (TMRoPE). The decoder's `head_dim / 2` frequency slots are split by `mrope_section`:
//! slot chunk `i` is driven by position row `i % 3`.

use candle_core::{DType, Device, Result, Tensor};

/// Position ids of a batch, `[3, B, L]` row-major, with one rope delta per sequence
/// (`max(position) + 1 - valid tokens`), which continues the positions while decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionIds {
    pub batch: usize,
    pub len: usize,
    /// `3 * batch * len` values: row (t, h, w), then sequence, then token.
    pub ids: Vec<i64>,
    pub rope_deltas: Vec<i64>,
}

impl PositionIds {
    /// Sequential positions for text (and audio-only) prompts: the count of valid tokens before
    /// each token on all three rows, as transformers computes them; padded slots hold 1.
    pub fn sequential(attention_mask: &[Vec<u32>]) -> Self {
        let batch = attention_mask.len();
        let len = attention_mask.first().map_or(0, |r| r.len());
        let mut ids = vec![1i64; 3 * batch * len];
        let mut rope_deltas = Vec::with_capacity(batch);
        for (b, mask) in attention_mask.iter().enumerate() {
            let mut next = 0i64;
            for (l, &m) in mask.iter().enumerate() {
                if m != 0 {
                    for row in 0..3 {
                        ids[(row * batch + b) * len + l] = next;
                    }
                    next += 1;
                }
            }
            // max(position) + 1 - n_valid = 0 for sequential positions.
            rope_deltas.push(0);
        }
        Self { batch, len, ids, rope_deltas }
    }

    /// The value at (row, sequence, token).
    pub fn get(&self, row: usize, b: usize, l: usize) -> i64 {
        self.ids[(row * self.batch + b) * self.len + l]
    }
}

/// The multimodal rotary embedding: inverse frequencies and the section split.
#[derive(Debug, Clone)]
pub struct MultimodalRotary {
    inv_freq: Vec<f32>,
    /// For each frequency slot, the position row (0, 1, 2) that drives it.
    slot_row: Vec<usize>,
}

impl MultimodalRotary {
    pub fn new(head_dim: usize, theta: f64, mrope_section: &[usize]) -> Self {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / (theta as f32).powf(i as f32 / head_dim as f32))
            .collect();
        let mut slot_row = Vec::with_capacity(head_dim / 2);
        for (chunk, &n) in mrope_section.iter().enumerate() {
            slot_row.extend(std::iter::repeat(chunk % 3).take(n));
        }
        Self { inv_freq, slot_row }
    }

    /// Cosines and sines, each `[B, L, head_dim / 2]`, for the given position ids.
    pub fn cos_sin(&self, pos: &PositionIds, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let n = pos.batch * pos.len * half;
        let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for b in 0..pos.batch {
            for l in 0..pos.len {
                for k in 0..half {
                    let p = pos.get(self.slot_row[k], b, l) as f32;
                    let angle = p * self.inv_freq[k];
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = (pos.batch, pos.len, half);
        let cos = Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_positions_skip_left_padding() {
        let p = PositionIds::sequential(&[vec![0, 0, 1, 1, 1], vec![1, 1, 1, 1, 1]]);
        let row0: Vec<i64> = (0..5).map(|l| p.get(0, 0, l)).collect();
        assert_eq!(row0, vec![1, 1, 0, 1, 2]);
        let row2: Vec<i64> = (0..5).map(|l| p.get(2, 1, l)).collect();
        assert_eq!(row2, vec![0, 1, 2, 3, 4]);
        assert_eq!(p.rope_deltas, vec![0, 0]);
    }

    #[test]
    fn sections_pick_rows() {
        let r = MultimodalRotary::new(16, 10000.0, &[2, 3, 3]);
        assert_eq!(r.slot_row, vec![0, 0, 1, 1, 1, 2, 2, 2]);
        // Row 1 drives slot 2: with a height position of 3 and others 0, only slots 2-4 rotate.
        let pos = PositionIds { batch: 1, len: 1, ids: vec![0, 3, 0], rope_deltas: vec![0] };
        let (cos, _) = r.cos_sin(&pos, DType::F32, &Device::Cpu).unwrap();
        let cos: Vec<f32> = cos.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(cos[0], 1.0);
        assert!((cos[2] - (3.0 * r.inv_freq[2]).cos()).abs() < 1e-6 && cos[2] < 1.0);
        assert_eq!(cos[5], 1.0);
    }
}
