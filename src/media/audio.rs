//! Audio files to the model's input waveform: mono f32 at 16 kHz, at most 300 s.
//!
//! Decoding is symphonia's (WAV in 8/16/24/32-bit integer and float, FLAC, MP3, Ogg Vorbis, AAC
//! in MP4/M4A), with gapless trimming; channels are averaged to mono; other sample rates are
//! resampled with rubato's band-limited FFT resampler. Audio beyond the model's 300 s window is
//! cut, with a warning: decoding stops a second past the window (what the resampler needs to
//! give the window's samples exactly as from the whole file), so a long file costs no more memory
//! than a 300 s one.

use super::MediaError;
use std::path::Path;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// The model's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// The longest audio the feature extractor keeps (seconds).
pub const MAX_SECONDS: usize = 300;
/// Source audio decoded past [`MAX_SECONDS`]: the resampler's output up to the window's end
/// depends on a few thousand samples after it (its filter and one FFT chunk), far less than this.
const RESAMPLER_MARGIN_SECONDS: f64 = 1.0;
/// The largest sample magnitude accepted: 60 dB over full scale. Float files may exceed [-1, 1]
/// a little; values far beyond are corrupt data (and overflow the resampler's FFT).
pub const MAX_AMPLITUDE: f32 = 1024.0;
/// The highest sample rate accepted (a file stating more is corrupt or not audio ttrav can use).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// A decoded waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Mono samples at `sample_rate`.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file before downmixing.
    pub channels: usize,
    /// Whether decoding stopped at a time limit before the end of the file.
    pub cut: bool,
}

/// Decodes a file to mono at its own sample rate.
pub fn decode_file(path: &Path) -> Result<Waveform, MediaError> {
    decode(path, None)
}

/// Decodes the start of a file to mono at its own sample rate, stopping after the packet that
/// reaches `max_seconds` (the rest of the file is not read).
pub fn decode_file_prefix(path: &Path, max_seconds: f64) -> Result<Waveform, MediaError> {
    decode(path, Some(max_seconds))
}

fn decode(path: &Path, max_seconds: Option<f64>) -> Result<Waveform, MediaError> {
    super::guarded(path, || decode_unguarded(path, max_seconds))
}

fn decode_unguarded(path: &Path, max_seconds: Option<f64>) -> Result<Waveform, MediaError> {
    let err = |reason: String| MediaError::new(path, reason);
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open audio file: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Err(err("the file is empty".into()));
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| err(format!("not a readable audio file ({})", describe(&e))))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| err("the file has no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| err("the audio track has no codec parameters".into()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| err(format!("unsupported audio codec ({})", describe(&e))))?;
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
    let mut mono: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut decode_errors = 0usize;
    let mut cut = false;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated file ends early: keep what was decoded, but say so if nothing was.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(err(format!("corrupt audio stream ({})", describe(&e)))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            Err(SymphoniaError::DecodeError(_)) => {
                decode_errors += 1;
                continue;
            }
            Err(e) => return Err(err(format!("corrupt audio stream ({})", describe(&e)))),
        };
        let spec = buf.spec();
        rate = spec.rate();
        channels = spec.channels().count().max(1);
        if rate > MAX_SAMPLE_RATE {
            return Err(err(format!("the stream states a sample rate of {rate} Hz (at most {MAX_SAMPLE_RATE} Hz is audio)")));
        }
        interleaved.resize(buf.samples_interleaved(), 0.0);
        buf.copy_to_slice_interleaved(&mut interleaved);
        for frame in interleaved.chunks_exact(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
        if max_seconds.is_some_and(|limit| mono.len() as f64 >= limit * rate as f64) {
            cut = true;
            break;
        }
    }
    if mono.is_empty() {
        let why = if decode_errors > 0 {
            format!("no audio could be decoded ({decode_errors} corrupt packets)")
        } else {
            "the file holds no audio samples".to_string()
        };
        return Err(err(why));
    }
    if rate == 0 {
        return Err(err("the file does not state its sample rate".into()));
    }
    if let Some(i) = mono.iter().position(|x| !x.is_finite()) {
        return Err(err(format!("sample {i} is not a finite number (NaN or infinity)")));
    }
    if let Some(i) = mono.iter().position(|x| x.abs() > MAX_AMPLITUDE) {
        return Err(err(format!(
            "sample {i} is {:e}, far outside the [-1, 1] of audio (more than {MAX_AMPLITUDE} times full scale)",
            mono[i]
        )));
    }
    Ok(Waveform { samples: mono, sample_rate: rate, channels, cut })
}

fn describe(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::Unsupported(what) => format!("unsupported: {what}"),
        other => other.to_string(),
    }
}

/// Resamples mono audio with a band-limited (windowed-sinc FFT) resampler.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    use audioadapter_buffers::direct::SequentialSliceOfVecs;
    use rubato::{Fft, FixedSync, Resampler};
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, 1, FixedSync::Input)
        .map_err(|e| format!("cannot resample from {from} Hz to {to} Hz: {e}"))?;
    let input = vec![samples.to_vec()];
    let out_len = resampler.process_all_needed_output_len(samples.len());
    let mut output = vec![vec![0f32; out_len]];
    let input_adapter = SequentialSliceOfVecs::new(&input, 1, samples.len()).map_err(|e| e.to_string())?;
    let mut output_adapter = SequentialSliceOfVecs::new_mut(&mut output, 1, out_len).map_err(|e| e.to_string())?;
    let (_, written) = resampler
        .process_all_into_buffer(&input_adapter, &mut output_adapter, samples.len(), None)
        .map_err(|e| format!("resampling from {from} Hz to {to} Hz failed: {e}"))?;
    let mut out = output.remove(0);
    out.truncate(written);
    Ok(out)
}

/// Loads an audio file as the model's input: mono, 16 kHz, cut to 300 s (with a warning). Only
/// the first 301 s of the file are decoded.
pub fn load_audio(path: &Path) -> Result<Vec<f32>, MediaError> {
    let wave = decode_file_prefix(path, MAX_SECONDS as f64 + RESAMPLER_MARGIN_SECONDS)?;
    let mut samples = if wave.sample_rate == SAMPLE_RATE {
        wave.samples
    } else {
        resample(&wave.samples, wave.sample_rate, SAMPLE_RATE).map_err(|reason| MediaError::new(path, reason))?
    };
    let max = MAX_SECONDS * SAMPLE_RATE as usize;
    if samples.len() > max {
        eprintln!(
            "warning: {} is longer than {MAX_SECONDS} s; only its first {MAX_SECONDS} s are used (the model's audio window)",
            path.display(),
        );
        samples.truncate(max);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize).map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin()).collect()
    }

    /// Frequency of the strongest bin of a real signal (naive DFT on a window).
    fn peak_hz(x: &[f32], rate: u32) -> f32 {
        let n = 4000.min(x.len());
        let x = &x[x.len() / 2 - n / 2..x.len() / 2 + n / 2];
        let mut best = (0.0f32, 0usize);
        for k in 1..n / 2 {
            let (mut re, mut im) = (0f32, 0f32);
            for (i, &v) in x.iter().enumerate() {
                let a = 2.0 * std::f32::consts::PI * (k * i) as f32 / n as f32;
                re += v * a.cos();
                im -= v * a.sin();
            }
            let p = re * re + im * im;
            if p > best.0 {
                best = (p, k);
            }
        }
        best.1 as f32 * rate as f32 / n as f32
    }

    #[test]
    fn resampling_keeps_length_and_pitch() {
        for rate in [8000u32, 22050, 44100, 48000] {
            let x = sine(440.0, rate, 1.0);
            let y = resample(&x, rate, 16000).unwrap();
            assert!((y.len() as i64 - 16000).abs() <= 2, "{rate}: {} samples", y.len());
            let f = peak_hz(&y, 16000);
            assert!((f - 440.0).abs() <= 4.0, "{rate}: peak at {f} Hz");
        }
    }

    #[test]
    fn downsampling_removes_content_above_nyquist() {
        // 10 kHz cannot exist at 16 kHz: a band-limited resampler removes it instead of aliasing
        // it to 6 kHz.
        let x = sine(10_000.0, 48000, 1.0);
        let y = resample(&x, 48000, 16000).unwrap();
        let rms = (y[2000..14000].iter().map(|v| v * v).sum::<f32>() / 12000.0).sqrt();
        assert!(rms < 0.01, "alias energy {rms}");
    }
}
