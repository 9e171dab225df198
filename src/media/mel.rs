//! Log-mel features exactly as Qwen2.5-Omni's WhisperFeatureExtractor computes them.
//!
//! 400-point periodic Hann window, hop 160, reflect padding of 200 samples at the start (the
//! extractor pads the clip with zeros to 300 s first, so the end meets zeros, not a reflection),
//! power spectrum, 128 Slaney-normalised mel filters on the Slaney mel scale from 0 to 8 kHz,
//! `log10(max(mel, 1e-10))`, floored at the clip's maximum minus 8, then `(x + 4) / 4`.
//! Only the valid frames, `ceil(samples / 160)`, are returned: the model never sees the others.

use realfft::RealFftPlanner;

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 128;
/// Samples in the extractor's fixed 300 s window.
pub const N_SAMPLES: usize = 4_800_000;

fn hertz_to_mel(f: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 27.0 / 6.4f64.ln());
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() * logstep
    } else {
        3.0 * f / 200.0
    }
}

fn mel_to_hertz(m: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// The mel filter bank, `[n_mels][n_freqs]`: triangles on the Slaney mel scale between 0 Hz and
/// `sample_rate / 2`, each scaled by 2 / (its width in Hz) (Slaney normalisation).
pub fn mel_filters(n_freqs: usize, n_mels: usize, sample_rate: f64, f_max: f64) -> Vec<Vec<f64>> {
    let fft_freqs: Vec<f64> = (0..n_freqs).map(|i| i as f64 * (sample_rate / 2.0) / (n_freqs - 1) as f64).collect();
    let (mel_min, mel_max) = (hertz_to_mel(0.0), hertz_to_mel(f_max));
    let filter_freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hertz(mel_min + i as f64 * (mel_max - mel_min) / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (lo, center, hi) = (filter_freqs[m], filter_freqs[m + 1], filter_freqs[m + 2]);
            let enorm = 2.0 / (hi - lo);
            fft_freqs
                .iter()
                .map(|&f| {
                    let down = (f - lo) / (center - lo);
                    let up = (hi - f) / (hi - center);
                    down.min(up).max(0.0) * enorm
                })
                .collect()
        })
        .collect()
}

/// Precomputed window, FFT plan and filters; reuse one for many clips.
pub struct MelExtractor {
    window: Vec<f32>,
    filters: Vec<Vec<f32>>,
    /// For each mel filter, the range of FFT bins where it is non-zero.
    support: Vec<(usize, usize)>,
    fft: std::sync::Arc<dyn realfft::RealToComplex<f32>>,
}

impl Default for MelExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl MelExtractor {
    pub fn new() -> Self {
        let window = (0..N_FFT)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        let filters64 = mel_filters(N_FFT / 2 + 1, N_MELS, 16000.0, 8000.0);
        let support = filters64
            .iter()
            .map(|f| {
                let first = f.iter().position(|&v| v != 0.0).unwrap_or(0);
                let last = f.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
                (first, last.max(first))
            })
            .collect();
        let filters = filters64.iter().map(|f| f.iter().map(|&v| v as f32).collect()).collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Self { window, filters, support, fft }
    }

    /// Number of valid frames for a clip of `n` samples.
    pub fn valid_frames(n: usize) -> usize {
        n.div_ceil(HOP)
    }

    /// The log-mel features of a 16 kHz clip (cut to 300 s), `[128][valid frames]` row-major as
    /// one `Vec` of `128 * frames` values.
    pub fn extract(&self, samples: &[f32]) -> (Vec<f32>, usize) {
        let samples = &samples[..samples.len().min(N_SAMPLES)];
        let n = samples.len();
        let valid = Self::valid_frames(n);
        // The extractor's padded signal: reflect(200) + clip + zeros to 300 s (+ reflect at the
        // very end, which only a full 300 s clip reaches).
        let half = N_FFT / 2;
        let padded_len = N_SAMPLES.max(n);
        let at = |i: isize| -> f32 {
            // Index into the 300 s signal, with reflect padding on both ends.
            let len = padded_len as isize;
            let j = if i < 0 { -i } else if i >= len { 2 * (len - 1) - i } else { i };
            let j = j as usize;
            if j < n { samples[j] } else { 0.0 }
        };
        // Frames that overlap the clip also count for the maximum (the extractor takes it over
        // the whole padded spectrogram; frames of pure padding give -10, never the maximum of
        // audible audio).
        let total_frames = N_SAMPLES / HOP; // after dropping the last frame
        let frames_touching = ((n + half) / HOP + 1).min(total_frames).max(valid);
        let mut log_mel = vec![0f32; N_MELS * frames_touching];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; N_FFT / 2 + 1];
        for t in 0..frames_touching {
            let start = (t * HOP) as isize - half as isize;
            for (k, v) in frame.iter_mut().enumerate() {
                *v = at(start + k as isize) * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("FFT buffers are sized by the plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (m, filt) in self.filters.iter().enumerate() {
                let (a, b) = self.support[m];
                let mut acc = 0f32;
                for k in a..b {
                    acc += filt[k] * power[k];
                }
                log_mel[m * frames_touching + t] = acc.max(1e-10).log10();
            }
        }
        let max = log_mel.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        // Frames of pure zero padding hold log10(1e-10) = -10.
        let max = if frames_touching < total_frames { max.max(-10.0) } else { max };
        let floor = max - 8.0;
        let mut out = vec![0f32; N_MELS * valid];
        for m in 0..N_MELS {
            for t in 0..valid {
                out[m * valid + t] = (log_mel[m * frames_touching + t].max(floor) + 4.0) / 4.0;
            }
        }
        (out, valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        assert!((hertz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for f in [0.0, 300.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hertz(hertz_to_mel(f)) - f).abs() < 1e-9);
        }
    }

    #[test]
    fn filters_are_slaney_normalised_triangles() {
        let f = mel_filters(201, 128, 16000.0, 8000.0);
        assert_eq!((f.len(), f[0].len()), (128, 201));
        // Each triangle's area in Hz is 1 with Slaney normalisation (2 / width * width / 2);
        // on the 40 Hz FFT grid the sum times 40 approximates it for the wide filters.
        let area: f64 = f[100].iter().sum::<f64>() * 40.0;
        assert!((area - 1.0).abs() < 0.05, "{area}");
        assert!(f.iter().all(|row| row.iter().all(|&v| v >= 0.0)));
    }

    #[test]
    fn silence_and_frame_count() {
        let ex = MelExtractor::new();
        let (feat, frames) = ex.extract(&vec![0.0; 1601]);
        assert_eq!(frames, 11);
        // All -10 floored at -18: (-10 + 4) / 4.
        assert!(feat.iter().all(|&v| (v + 1.5).abs() < 1e-6));
    }
}
