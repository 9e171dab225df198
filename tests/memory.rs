//! Memory bounded by what is used, measured with a counting allocator: audio longer than the
//! 300 s window stops decoding at the window, and a video's frames (MP4 or a frame folder) are
//! resized one by one as they are decoded instead of all being kept at full size.

mod common;
#[path = "common/alloc.rs"]
mod alloc;
#[path = "common/synth_audio.rs"]
mod synth_audio;
#[path = "common/synth_mp4.rs"]
mod synth_mp4;

use alloc::{measure, serial, MIB};
use image::RgbImage;
use std::path::Path;
use ttrav::media::audio::{load_audio, MAX_SECONDS, SAMPLE_RATE};
use ttrav::media::video::VideoProcessorConfig;
use ttrav::{ChatTemplate, ContentItem, MediaInput, Processor, TextTokenizer};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[test]
fn audio_beyond_the_window_is_not_decoded() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 15 minutes at 16 kHz: 14.4 M samples, 57.6 MB as f32 if decoded whole.
    let secs = 900;
    let samples: Vec<i16> = (0..secs * SAMPLE_RATE as usize).map(|i| ((i % 400) as i16 - 200) * 50).collect();
    let path = dir.path().join("long.wav");
    std::fs::write(&path, synth_audio::wav_i16(&samples, 1, SAMPLE_RATE)).unwrap();
    drop(samples);
    let (audio, used) = measure(|| load_audio(&path).unwrap());
    assert_eq!(audio.len(), MAX_SECONDS * SAMPLE_RATE as usize);
    assert_eq!(audio[12345], ((12345 % 400) as f32 - 200.0) * 50.0 / 32768.0);
    // Decoding stops one second past the window: 301 s are 19.3 MB of f32, in a buffer whose
    // growth by doubling leaves it at most twice that (38.5 MB), plus the decoder's packets:
    // 44 MiB (measured: 32 MiB). Decoding all 900 s peaked at 64 MiB, and grows with the file.
    eprintln!("load_audio of {secs} s: peak {:.1} MiB", used.peak as f64 / MIB as f64);
    assert!(used.peak < 44 * MIB, "load_audio of a {secs} s file peaked at {} bytes", used.peak);
}

fn processor(video: VideoProcessorConfig, fps: f32) -> Processor {
    let tokenizer = TextTokenizer::from_file(&common::fixture("text_basic").join("tokenizer.json")).unwrap();
    let mut p = Processor::new(tokenizer, ChatTemplate::BuiltIn);
    p.video = video;
    p.fps = fps;
    p
}

/// 640x360 frames resized within 4 to 16 merged patches (at most 12 544 pixels): 140x84.
const SMALL: VideoProcessorConfig = VideoProcessorConfig { min_pixels: 4 * 784, max_pixels: 16 * 784 };
const FRAMES: usize = 48;
const FULL_FRAME: usize = 640 * 360 * 3;

fn video_frames(media: MediaInput) -> Vec<RgbImage> {
    match media {
        MediaInput::Video(v) => {
            assert!(v.resized);
            v.frames
        }
        other => panic!("not a video: {other:?}"),
    }
}

fn load(p: &Processor, path: &Path) -> Vec<RgbImage> {
    video_frames(p.load_media(&ContentItem::Video(path.to_path_buf())).unwrap().unwrap())
}

#[test]
fn mp4_frames_are_resized_as_they_are_decoded() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let track = synth_mp4::encode_h264(&synth_mp4::colour_frames(FRAMES, 640, 360), 24);
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, synth_mp4::mux(Some(&track), None)).unwrap();
    drop(track);
    // 24 fps sampling keeps all 48 frames: 33 MB at full size.
    let p = processor(SMALL, 24.0);
    let (frames, used) = measure(|| load(&p, &path));
    assert_eq!(frames.len(), FRAMES);
    assert!(frames.iter().all(|f| f.dimensions() == (140, 84)), "{:?}", frames[0].dimensions());
    eprintln!("MP4, {FRAMES} frames of 640x360: peak {:.1} MiB", used.peak as f64 / MIB as f64);
    // The decoder's own buffers (a few reference frames in YUV) plus one RGB frame at a time
    // (measured: 2.5 MiB): below a quarter of the 33 MB the 48 full-size frames take.
    assert!(used.peak < FRAMES * FULL_FRAME / 4, "decoding peaked at {} bytes", used.peak);
    // The same frames as decoding at full size and resizing afterwards.
    let full = ttrav::media::mp4::load_mp4(&path, &ttrav::media::mp4::FrameSampling { fps: 24.0, ..Default::default() }).unwrap();
    for (small, big) in frames.iter().zip(&full.frames) {
        assert_eq!(small, &ttrav::media::video::resize_frame(big, &SMALL).unwrap());
    }
}

#[test]
fn frame_folders_are_resized_as_they_are_loaded() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("frames");
    std::fs::create_dir(&folder).unwrap();
    for (i, f) in synth_mp4::colour_frames(FRAMES, 640, 360).iter().enumerate() {
        f.save(folder.join(format!("{i:03}.png"))).unwrap();
    }
    let p = processor(SMALL, 2.0);
    let (frames, used) = measure(|| load(&p, &folder));
    assert_eq!(frames.len(), FRAMES);
    assert!(frames.iter().all(|f| f.dimensions() == (140, 84)));
    // One decoded PNG and its resized copy at a time (measured: 2.9 MiB).
    eprintln!("frame folder, {FRAMES} frames of 640x360: peak {:.1} MiB", used.peak as f64 / MIB as f64);
    assert!(used.peak < FRAMES * FULL_FRAME / 4, "loading peaked at {} bytes", used.peak);
}
