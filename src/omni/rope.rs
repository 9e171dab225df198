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

/// What the 3-D positions need to know about a batch's media, in prompt order across the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaLayout {
    /// `[t, h, w]` patch grids of the images.
    pub image_grids: Vec<[usize; 3]>,
    /// `[t, h, w]` patch grids of the videos.
    pub video_grids: Vec<[usize; 3]>,
    /// Seconds per temporal grid step of each video (2 / fps).
    pub video_second_per_grid: Vec<f32>,
    /// Valid mel frames of each audio clip (audio-in-video clips included, in order).
    pub audio_frames: Vec<usize>,
    /// Each video is followed by its own audio track, interleaved in 2-second chunks.
    pub use_audio_in_video: bool,
}

/// Token ids and constants the position walk needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionTokens {
    pub image: u32,
    pub video: u32,
    pub audio: u32,
    pub vision_start: u32,
    pub audio_start: u32,
    pub spatial_merge: usize,
    pub position_id_per_seconds: f64,
    pub seconds_per_chunk: f64,
}

/// transformers' `get_chunked_index`: slices of `values` (ascending) cut where a value reaches
/// the next multiple of `per_chunk` above `base` (at most one cut per element).
pub(crate) fn chunked_index(values: &[i64], per_chunk: i64, base: i64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut chunk) = (0usize, 1i64);
    for (i, &v) in values.iter().enumerate() {
        if v - base >= chunk * per_chunk {
            out.push((start, i));
            start = i;
            chunk += 1;
        }
    }
    out.push((start, values.len()));
    out
}

/// Positions of one vision span: `(st + t_index[t], st + row, st + col)` per merged token.
fn vision_positions(st: i64, grid: [usize; 3], merge: usize, t_index: &[i64]) -> [Vec<i64>; 3] {
    let (lh, lw) = (grid[1] / merge, grid[2] / merge);
    let mut rows: [Vec<i64>; 3] = Default::default();
    for &t in t_index {
        for i in 0..lh {
            for j in 0..lw {
                rows[0].push(st + t);
                rows[1].push(st + i as i64);
                rows[2].push(st + j as i64);
            }
        }
    }
    rows
}

impl PositionIds {
    /// The 3-D positions of a (left-padded) batch, as transformers' `get_rope_index` computes
    /// them: text sequential, images and videos (t, h, w), audio sequential, audio-in-video
    /// interleaved in chunks; padding holds 1. Text and audio-only batches are sequential.
    pub fn multimodal(
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<u32>],
        media: &MediaLayout,
        tok: &PositionTokens,
    ) -> std::result::Result<Self, String> {
        if media.image_grids.is_empty() && media.video_grids.is_empty() {
            return Ok(Self::sequential(attention_mask));
        }
        let batch = input_ids.len();
        let len = input_ids.first().map_or(0, |r| r.len());
        let mut ids = vec![1i64; 3 * batch * len];
        let mut rope_deltas = Vec::with_capacity(batch);
        let (mut image_idx, mut video_idx, mut audio_idx) = (0usize, 0usize, 0usize);
        let merge = tok.spatial_merge;
        let per_s = tok.position_id_per_seconds;
        let audio_tokens = |frames: usize| crate::omni::audio::audio_token_count(frames) as i64;
        for b in 0..batch {
            let valid: Vec<usize> = (0..len).filter(|&l| attention_mask[b][l] != 0).collect();
            let tokens: Vec<u32> = valid.iter().map(|&l| input_ids[b][l]).collect();
            let mut rows: [Vec<i64>; 3] = Default::default();
            let next = |rows: &[Vec<i64>; 3]| rows.iter().flat_map(|r| r.iter()).max().map_or(0, |m| m + 1);
            let push_seq = |rows: &mut [Vec<i64>; 3], n: usize, st: i64| {
                for r in rows.iter_mut() {
                    r.extend((0..n as i64).map(|k| st + k));
                }
            };
            let append_seq = |rows: &mut [Vec<i64>; 3], n: usize| {
                let st = next(rows);
                push_seq(rows, n, st);
            };
            let push = |rows: &mut [Vec<i64>; 3], part: &[Vec<i64>; 3], from: usize, to: usize| {
                for (r, p) in rows.iter_mut().zip(part) {
                    r.extend_from_slice(&p[from..to]);
                }
            };
            let mut st = 0usize;
            loop {
                let find = |id: u32| tokens[st.min(tokens.len())..].iter().position(|&t| t == id).map(|p| p + st);
                let ed_image = find(tok.image);
                let ed_video = find(tok.video);
                let ed_audio = find(tok.audio);
                let candidates = [ed_image, ed_video, ed_audio];
                let Some(min_ed) = candidates.iter().flatten().min().copied() else { break };
                if Some(min_ed) == ed_video && media.use_audio_in_video {
                    // <|vision_bos|><|audio_bos|> interleaved video and audio <|audio_eos|><|vision_eos|>
                    let text_len = min_ed.checked_sub(st + 2).ok_or("a video placeholder lacks its two start tokens")?;
                    append_seq(&mut rows, text_len);
                    let s = next(&rows);
                    push_seq(&mut rows, 1, s);
                    push_seq(&mut rows, 1, s);
                    let s = next(&rows);
                    let frames = *media.audio_frames.get(audio_idx).ok_or("more audio-in-video spans than audio clips")?;
                    let alen = audio_tokens(frames);
                    let audio: [Vec<i64>; 3] = std::array::from_fn(|_| (0..alen).map(|k| s + k).collect());
                    let grid = *media.video_grids.get(video_idx).ok_or("more video spans than video grids")?;
                    let spg = *media.video_second_per_grid.get(video_idx).unwrap_or(&1.0);
                    let t_index: Vec<i64> = (0..grid[0]).map(|t| (t as f32 * spg * per_s as f32) as i64).collect();
                    let video = vision_positions(s, grid, merge, &t_index);
                    let per_chunk = (per_s * tok.seconds_per_chunk) as i64;
                    let vchunks = chunked_index(&video[0], per_chunk, s);
                    let achunks = chunked_index(&audio[0], per_chunk, s);
                    for j in 0..vchunks.len().max(achunks.len()) {
                        if let Some(&(a, z)) = vchunks.get(j) {
                            push(&mut rows, &video, a, z);
                        }
                        if let Some(&(a, z)) = achunks.get(j) {
                            push(&mut rows, &audio, a, z);
                        }
                    }
                    let s = next(&rows);
                    push_seq(&mut rows, 1, s);
                    push_seq(&mut rows, 1, s);
                    let vlen = grid.iter().product::<usize>() / (merge * merge);
                    st += text_len + 4 + alen as usize + vlen;
                    audio_idx += 1;
                    video_idx += 1;
                } else if Some(min_ed) == ed_audio {
                    let text_len = min_ed.checked_sub(st + 1).ok_or("an audio placeholder lacks its start token")?;
                    append_seq(&mut rows, text_len);
                    append_seq(&mut rows, 1);
                    let frames = *media.audio_frames.get(audio_idx).ok_or("more audio spans than audio clips")?;
                    let alen = audio_tokens(frames) as usize;
                    append_seq(&mut rows, alen);
                    append_seq(&mut rows, 1);
                    st += text_len + 2 + alen;
                    audio_idx += 1;
                } else {
                    let is_image = Some(min_ed) == ed_image;
                    let text_len = min_ed.checked_sub(st + 1).ok_or("a vision placeholder lacks its start token")?;
                    append_seq(&mut rows, text_len);
                    append_seq(&mut rows, 1);
                    let s = next(&rows);
                    let (grid, t_index): ([usize; 3], Vec<i64>) = if is_image {
                        let g = *media.image_grids.get(image_idx).ok_or("more image spans than image grids")?;
                        (g, (0..g[0]).map(|t| (t as f64 * per_s) as i64).collect())
                    } else {
                        let g = *media.video_grids.get(video_idx).ok_or("more video spans than video grids")?;
                        let spg = *media.video_second_per_grid.get(video_idx).unwrap_or(&1.0);
                        (g, (0..g[0]).map(|t| (t as f32 * spg * per_s as f32) as i64).collect())
                    };
                    let part = vision_positions(s, grid, merge, &t_index);
                    let n = part[0].len();
                    push(&mut rows, &part, 0, n);
                    append_seq(&mut rows, 1);
                    st += text_len + 2 + n;
                    if is_image {
                        image_idx += 1;
                    } else {
                        video_idx += 1;
                    }
                }
            }
            if st < tokens.len() {
                append_seq(&mut rows, tokens.len() - st);
            }
            if rows[0].len() != tokens.len() {
                return Err(format!(
                    "sequence {b}: the placeholders give {} positions for {} tokens (media token counts do not match their features)",
                    rows[0].len(),
                    tokens.len()
                ));
            }
            for (k, &l) in valid.iter().enumerate() {
                for r in 0..3 {
                    ids[(r * batch + b) * len + l] = rows[r][k];
                }
            }
            let max = rows.iter().flat_map(|r| r.iter()).max().copied().unwrap_or(-1);
            rope_deltas.push(max + 1 - tokens.len() as i64);
        }
        Ok(Self { batch, len, ids, rope_deltas })
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

    fn tokens() -> PositionTokens {
        PositionTokens {
            image: 8,
            video: 9,
            audio: 3,
            vision_start: 6,
            audio_start: 4,
            spatial_merge: 2,
            position_id_per_seconds: 25.0,
            seconds_per_chunk: 2.0,
        }
    }

    #[test]
    fn image_positions_are_3d_and_text_continues_after_the_max() {
        // text text <vision_bos> 4 image tokens (2x2 merged) <vision_eos> text
        let ids = vec![vec![1, 1, 6, 8, 8, 8, 8, 7, 1]];
        let media = MediaLayout { image_grids: vec![[1, 4, 4]], ..Default::default() };
        let p = PositionIds::multimodal(&ids, &[vec![1; 9]], &media, &tokens()).unwrap();
        let row = |r: usize| (0..9).map(|l| p.get(r, 0, l)).collect::<Vec<_>>();
        assert_eq!(row(0), vec![0, 1, 2, 3, 3, 3, 3, 5, 6]);
        assert_eq!(row(1), vec![0, 1, 2, 3, 3, 4, 4, 5, 6]);
        assert_eq!(row(2), vec![0, 1, 2, 3, 4, 3, 4, 5, 6]);
        assert_eq!(p.rope_deltas, vec![7 - 9]);
    }

    #[test]
    fn chunks_cut_at_multiples() {
        assert_eq!(chunked_index(&[10, 10, 35, 60, 60, 85], 50, 10), vec![(0, 3), (3, 6)]);
        assert_eq!(chunked_index(&[0, 1, 2], 50, 0), vec![(0, 3)]);
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
