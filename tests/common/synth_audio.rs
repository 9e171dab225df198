//! Audio files made by the tests themselves: WAV written by hand, FLAC (flacenc), MP3 (LAME) and
//! Ogg Vorbis (libvorbis/aoTuV, via vorbis_rs), all encoders built from the source their crates
//! bundle.
#![allow(dead_code)]

/// A RIFF/WAVE file with one `fmt ` and one `data` chunk.
pub fn wav_bytes(format_tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut out = Vec::new();
    out.extend(b"RIFF");
    out.extend(&(36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(&16u32.to_le_bytes());
    out.extend(&format_tag.to_le_bytes());
    out.extend(&channels.to_le_bytes());
    out.extend(&rate.to_le_bytes());
    out.extend(&(rate * block as u32).to_le_bytes());
    out.extend(&block.to_le_bytes());
    out.extend(&bits.to_le_bytes());
    out.extend(b"data");
    out.extend(&(data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

pub fn wav_f32(samples: &[f32], channels: u16, rate: u32) -> Vec<u8> {
    wav_bytes(3, channels, rate, 32, &samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())
}

pub fn wav_i16(samples: &[i16], channels: u16, rate: u32) -> Vec<u8> {
    wav_bytes(1, channels, rate, 16, &samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>())
}

/// A sine tone in [-amp, amp].
pub fn tone(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|v| (v * 32767.0).round() as i16).collect()
}

/// Mono 16-bit FLAC in blocks of 1000 samples (the clip must be whole blocks).
pub fn flac_bytes(samples: &[i16], rate: usize) -> Vec<u8> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    assert_eq!(samples.len() % 1000, 0, "whole blocks only (see below)");
    let ints: Vec<i32> = samples.iter().map(|&s| s as i32).collect();
    // A block size that divides the clip: symphonia rejects streams whose STREAMINFO gives a
    // smaller minimum block size than the fixed one (as flacenc writes for a short last block).
    let mut config = flacenc::config::Encoder::default();
    config.block_size = 1000;
    let config = config.into_verified().unwrap();
    let source = flacenc::source::MemSource::from_samples(&ints, 1, 16, rate);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size).unwrap();
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).unwrap();
    sink.as_slice().to_vec()
}

/// Mono MP3 at 128 kbit/s.
pub fn mp3_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    use mp3lame_encoder::{Builder, FlushNoGap, MonoPcm};
    let mut enc = Builder::new()
        .unwrap()
        .with_num_channels(1)
        .unwrap()
        .with_sample_rate(rate)
        .unwrap()
        .with_brate(mp3lame_encoder::Bitrate::Kbps128)
        .unwrap()
        .with_quality(mp3lame_encoder::Quality::Best)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    out.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
    enc.encode_to_vec(MonoPcm(samples), &mut out).unwrap();
    enc.flush_to_vec::<FlushNoGap>(&mut out).unwrap();
    out
}

/// Mono Ogg Vorbis (quality-based VBR, the encoder's default), with a fixed stream serial so
/// that the bytes are the same on every run.
pub fn vorbis_bytes(samples: &[f32], rate: u32) -> Vec<u8> {
    use std::num::{NonZeroU32, NonZeroU8};
    use vorbis_rs::VorbisEncoderBuilder;
    let mut out = Vec::new();
    let mut enc = VorbisEncoderBuilder::new_with_serial(NonZeroU32::new(rate).unwrap(), NonZeroU8::new(1).unwrap(), &mut out, 7)
        .build()
        .unwrap();
    for block in samples.chunks(1024) {
        enc.encode_audio_block([block]).unwrap();
    }
    enc.finish().unwrap();
    out
}
