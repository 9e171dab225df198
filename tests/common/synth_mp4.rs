//! Synthetic MP4 files for the video tests and bench: H.264 video from OpenH264's encoder and AAC
//! sound from fdk-aac (both built from the source their crates bundle), muxed by the `mp4` crate's
//! writer (an implementation independent of the demuxer ttrav reads with).
#![allow(dead_code)]

use image::RgbImage;
use std::io::Cursor;

/// An H.264 track: SPS, PPS, and one AVCC sample (4-byte length-prefixed NAL units) per frame
/// with its keyframe flag.
pub struct H264Track {
    pub width: u16,
    pub height: u16,
    pub fps: u32,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub samples: Vec<(Vec<u8>, bool)>,
}

/// An AAC-LC track: raw access units of 1024 samples each.
pub struct AacTrack {
    pub rate: u32,
    pub channels: u16,
    pub frames: Vec<Vec<u8>>,
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

/// Encodes frames (even width and height) as H.264 at `fps`, one IDR frame then P frames.
pub fn encode_h264(frames: &[RgbImage], fps: u32) -> H264Track {
    use openh264::encoder::{BitRate, Encoder, EncoderConfig, FrameRate, FrameType, QpRange, RateControlMode};
    use openh264::formats::{RgbSliceU8, YUVBuffer};
    let (w, h) = frames[0].dimensions();
    let config = EncoderConfig::new()
        .bitrate(BitRate::from_bps(4_000_000))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .rate_control_mode(RateControlMode::Off)
        .qp(QpRange::new(12, 20))
        .background_detection(false)
        .adaptive_quantization(false)
        .skip_frames(false);
    let mut encoder = Encoder::with_api_config(openh264::OpenH264API::from_source(), config).unwrap();
    let (mut sps, mut pps, mut samples) = (Vec::new(), Vec::new(), Vec::new());
    for frame in frames {
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(frame.as_raw(), (w as usize, h as usize)));
        let stream = encoder.encode(&yuv).unwrap();
        assert!(!matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid), "the encoder skipped a frame");
        let mut sample = Vec::new();
        for l in 0..stream.num_layers() {
            let layer = stream.layer(l).unwrap();
            for n in 0..layer.nal_count() {
                let nal = strip_start_code(layer.nal_unit(n).unwrap());
                match nal[0] & 0x1f {
                    7 => sps = nal.to_vec(),
                    8 => pps = nal.to_vec(),
                    _ => {
                        sample.extend((nal.len() as u32).to_be_bytes());
                        sample.extend(nal);
                    }
                }
            }
        }
        samples.push((sample, stream.frame_type() == FrameType::IDR));
    }
    H264Track { width: w as u16, height: h as u16, fps, sps, pps, samples }
}

/// Encodes mono or interleaved stereo samples in [-1, 1] as AAC-LC (raw access units).
pub fn encode_aac(samples: &[f32], rate: u32, channels: u16) -> AacTrack {
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
    let enc = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(64_000 * channels as u32),
        sample_rate: rate,
        transport: Transport::Raw,
        channels: if channels == 2 { ChannelMode::Stereo } else { ChannelMode::Mono },
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .unwrap();
    // Trailing silence pushes the encoder's look-ahead out.
    let mut pcm: Vec<i16> = samples.iter().map(|v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16).collect();
    pcm.extend(std::iter::repeat(0).take(4096 * channels as usize));
    let mut out = vec![0u8; 8192];
    let (mut pos, mut frames) = (0, Vec::new());
    while pos < pcm.len() {
        let end = (pos + 1024 * channels as usize).min(pcm.len());
        let info = enc.encode(&pcm[pos..end], &mut out).unwrap();
        if info.output_size > 0 {
            frames.push(out[..info.output_size].to_vec());
        }
        if info.input_consumed == 0 && info.output_size == 0 {
            break;
        }
        pos += info.input_consumed;
    }
    AacTrack { rate, channels, frames }
}

/// Muxes tracks into an MP4 (moov after mdat, as the writer lays it out); either may be absent.
pub fn mux(video: Option<&H264Track>, audio: Option<&AacTrack>) -> Vec<u8> {
    use mp4::{
        AacConfig, AudioObjectType, AvcConfig, ChannelConfig, MediaConfig, Mp4Config, Mp4Sample, Mp4Writer,
        SampleFreqIndex, TrackConfig, TrackType,
    };
    let config = Mp4Config {
        major_brand: "isom".parse().unwrap(),
        minor_version: 512,
        compatible_brands: ["isom", "iso2", "avc1", "mp41"].iter().map(|b| b.parse().unwrap()).collect(),
        timescale: 1000,
    };
    let mut w = Mp4Writer::write_start(Cursor::new(Vec::new()), &config).unwrap();
    let mut id = 0;
    if let Some(v) = video {
        w.add_track(&TrackConfig {
            track_type: TrackType::Video,
            timescale: 90_000,
            language: "und".into(),
            media_conf: MediaConfig::AvcConfig(AvcConfig {
                width: v.width,
                height: v.height,
                seq_param_set: v.sps.clone(),
                pic_param_set: v.pps.clone(),
            }),
        })
        .unwrap();
        id += 1;
        let dur = 90_000 / v.fps;
        for (i, (bytes, sync)) in v.samples.iter().enumerate() {
            let sample = Mp4Sample {
                start_time: i as u64 * dur as u64,
                duration: dur,
                rendering_offset: 0,
                is_sync: *sync,
                bytes: bytes::Bytes::from(bytes.clone()),
            };
            w.write_sample(id, &sample).unwrap();
        }
    }
    if let Some(a) = audio {
        let freq_index = match a.rate {
            16000 => SampleFreqIndex::Freq16000,
            22050 => SampleFreqIndex::Freq22050,
            44100 => SampleFreqIndex::Freq44100,
            48000 => SampleFreqIndex::Freq48000,
            r => panic!("no AAC frequency index for {r} Hz in this helper"),
        };
        w.add_track(&TrackConfig {
            track_type: TrackType::Audio,
            timescale: a.rate,
            language: "und".into(),
            media_conf: MediaConfig::AacConfig(AacConfig {
                bitrate: 64_000,
                profile: AudioObjectType::AacLowComplexity,
                freq_index,
                chan_conf: if a.channels == 2 { ChannelConfig::Stereo } else { ChannelConfig::Mono },
            }),
        })
        .unwrap();
        id += 1;
        for (i, bytes) in a.frames.iter().enumerate() {
            let sample = Mp4Sample {
                start_time: i as u64 * 1024,
                duration: 1024,
                rendering_offset: 0,
                is_sync: true,
                bytes: bytes::Bytes::from(bytes.clone()),
            };
            w.write_sample(id, &sample).unwrap();
        }
    }
    w.write_end().unwrap();
    let mut bytes = w.into_writer().into_inner();
    fix_sl_config(&mut bytes);
    bytes
}

/// The `mp4` writer (0.14) ends the esds box with an SLConfigDescriptor of length 0 followed by
/// its one-byte body (`06 00 00`), which readers reject; it should be `06 01 02` (length 1,
/// predefined = 2 for MP4), the same size.
fn fix_sl_config(bytes: &mut [u8]) {
    let mut i = 4;
    while i + 4 <= bytes.len() {
        if &bytes[i..i + 4] == b"esds" {
            let size = u32::from_be_bytes([bytes[i - 4], bytes[i - 3], bytes[i - 2], bytes[i - 1]]) as usize;
            let end = i - 4 + size;
            if end <= bytes.len() && bytes[end - 3..end] == [6, 0, 0] {
                bytes[end - 3..end].copy_from_slice(&[6, 1, 2]);
            }
        }
        i += 1;
    }
}

/// A clip of `n` frames whose colour changes with the frame number (see [`frame_colour`]).
pub fn colour_frames(n: usize, w: u32, h: u32) -> Vec<RgbImage> {
    (0..n).map(|i| RgbImage::from_pixel(w, h, image::Rgb(frame_colour(i)))).collect()
}

/// The colour of frame `i` of [`colour_frames`] (kept away from 0 and 255).
pub fn frame_colour(i: usize) -> [u8; 3] {
    let i = (i % 16) as u8;
    [40 + 10 * i, 200 - 8 * i, 60 + 5 * i]
}

/// Frames with moving detail (stripes and a gradient), a fair load for a decoder.
pub fn busy_frames(n: usize, w: u32, h: u32) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(w, h, |x, y| {
                let s = ((x + y + 3 * t as u32) / 8 % 2) as u8;
                image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 60 + 120 * s])
            })
        })
        .collect()
}

/// A sine tone in [-1, 1].
pub fn tone(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}
