//! Video input end to end, with media the tests make themselves: MP4 files (H.264 from OpenH264's
//! encoder, AAC from fdk-aac, muxed by the `mp4` crate) and frame folders; frame counts, sizes and
//! colours after decoding; the sound track of an MP4; the audio-in-video prompt against the
//! transformers fixture; `ttrav generate --video`; and bad input.

mod common;
#[path = "common/synth_mp4.rs"]
mod synth_mp4;

use candle_core::{DType, Device, Tensor};
use common::{copy_fixture, fixture};
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use synth_mp4::{colour_frames, encode_aac, encode_h264, frame_colour, mux, tone};
use ttrav::media::audio::{decode_file, load_audio};
use ttrav::media::mel::MelExtractor;
use ttrav::media::mp4::{load_mp4, load_mp4_all_frames, probe_mp4, FrameSampling};
use ttrav::{
    AudioFeatures, ContentItem, GenerationConfig, MediaInput, ModelSource, PrefillOptions, Processor, PromptBatch, Rng, Sampling,
    Thinker, VideoInput,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// 16 frames of 64x48 at 8 fps (2 s), each of one colour; optionally with a 440 Hz AAC tone.
fn clip(sound_rate: Option<u32>) -> Vec<u8> {
    let video = encode_h264(&colour_frames(16, 64, 48), 8);
    let audio = sound_rate.map(|rate| encode_aac(&tone(440.0, rate, 2.0, 0.5), rate, 1));
    mux(Some(&video), audio.as_ref())
}

fn close(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter().zip(&b).all(|(&x, &y)| (x as i32 - y as i32).abs() <= tol)
}

#[test]
fn mp4_frames_decode_with_their_size_count_and_colours() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "clip.mp4", &clip(None));
    let info = probe_mp4(&path).unwrap();
    assert_eq!((info.width, info.height, info.frames), (64, 48, 16));
    assert!((info.fps - 8.0).abs() < 1e-6 && (info.duration - 2.0).abs() < 1e-6, "{info:?}");
    assert!(!info.has_audio);

    let all = load_mp4_all_frames(&path).unwrap();
    assert_eq!(all.frames.len(), 16);
    assert_eq!(all.decode_errors, 0);
    for (i, f) in all.frames.iter().enumerate() {
        assert_eq!(f.dimensions(), (64, 48));
        for (x, y) in [(2, 2), (32, 24), (61, 45)] {
            let got = f.get_pixel(x, y).0;
            // Lossy coding and 8-bit BT.601 conversion both ways: a few levels off.
            assert!(close(got, frame_colour(i), 8), "frame {i} ({x},{y}): {got:?} vs {:?}", frame_colour(i));
        }
    }

    // 2 fps over 2 s: 4 frames spread over the 16 (qwen-omni-utils' linspace).
    let v = load_mp4(&path, &FrameSampling::default()).unwrap();
    assert_eq!(v.indices, vec![0, 5, 10, 15]);
    assert!((v.sample_fps - 2.0).abs() < 1e-6);
    for (f, &i) in v.frames.iter().zip(&v.indices) {
        assert_eq!(f, &all.frames[i]);
    }
    // 4 fps gives 8 frames; max_frames caps them (rounded down to even); min_frames lifts them.
    let at = |fps: f32, min_frames: usize, max_frames: usize| {
        load_mp4(&path, &FrameSampling { fps, min_frames, max_frames }).unwrap().indices.len()
    };
    assert_eq!(at(4.0, 4, 768), 8);
    assert_eq!(at(4.0, 4, 5), 4);
    assert_eq!(at(0.5, 6, 768), 6);
    assert_eq!(at(100.0, 4, 768), 16);
}

/// Frequency of the strongest bin (naive DFT over a window in the middle).
fn peak_hz(x: &[f32], rate: u32) -> f32 {
    let n = 2000.min(x.len());
    let x = &x[x.len() / 2 - n / 2..x.len() / 2 + n / 2];
    let mut best = (0.0f32, 0usize);
    for k in 1..n / 2 {
        let (mut re, mut im) = (0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let a = 2.0 * std::f32::consts::PI * (k * i) as f32 / n as f32;
            re += v * a.cos();
            im -= v * a.sin();
        }
        if re * re + im * im > best.0 {
            best = (re * re + im * im, k);
        }
    }
    best.1 as f32 * rate as f32 / n as f32
}

#[test]
fn mp4_sound_track_decodes_beside_the_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "clip.mp4", &clip(Some(44100)));
    assert!(probe_mp4(&path).unwrap().has_audio);
    // The audio track is picked although the video track comes first.
    let w = decode_file(&path).unwrap();
    assert_eq!((w.sample_rate, w.channels), (44100, 1));
    let secs = w.samples.len() as f32 / 44100.0;
    // 2 s of tone plus the encoder's priming and the flushed tail (no edit list is written).
    assert!(secs > 1.9 && secs < 2.3, "{secs} s");
    let y = load_audio(&path).unwrap();
    let f = peak_hz(&y, 16000);
    assert!((f - 440.0).abs() < 10.0, "peak at {f} Hz");
    let rms = (y[8000..24000].iter().map(|v| v * v).sum::<f32>() / 16000.0).sqrt();
    assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.05, "rms {rms}");
    // The frames are unaffected by the sound track.
    assert_eq!(load_mp4_all_frames(&path).unwrap().frames.len(), 16);
}

/// A fixture's model with text_basic's tokenizer, chat template and generation config.
fn model_dir(name: &str) -> tempfile::TempDir {
    let dir = copy_fixture(name);
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.json", "generation_config.json"] {
        std::fs::copy(fixture("text_basic").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn tensors(name: &str, file: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join(file), &Device::Cpu).unwrap()
}

fn frames_of(raw: &Tensor) -> Vec<RgbImage> {
    let (t, h, w, _) = raw.dims4().unwrap();
    (0..t)
        .map(|i| RgbImage::from_raw(w as u32, h as u32, raw.get(i).unwrap().flatten_all().unwrap().to_vec1().unwrap()).unwrap())
        .collect()
}

#[test]
fn audio_in_video_prompt_matches_transformers() {
    let model = model_dir("video_audio");
    let source = ModelSource::Local(model.path().to_path_buf());
    let mut processor = Processor::load(&source).unwrap();
    processor.use_audio_in_video = true;
    let inputs = tensors("video_audio", "inputs.safetensors");
    let expected = tensors("video_audio", "expected.safetensors");
    let frames = frames_of(&inputs["raw_video"]);
    let wave: Vec<f32> = inputs["raw_waveform"].to_vec1().unwrap();
    let spg: Vec<f32> = inputs["video_second_per_grid"].to_vec1().unwrap();
    let messages = Processor::conversation(
        Some("You are a helpful assistant."),
        vec![ContentItem::Text("What happens in this video?".into()), ContentItem::Video("clip.mp4".into())],
    );
    let media = vec![MediaInput::Video(VideoInput { frames, fps: 2.0 / spg[0], audio: Some(wave), resized: false })];
    let prompt = processor.encode_chat_with_media(&messages, media).unwrap();

    let want: Vec<u32> =
        inputs["input_ids"].flatten_all().unwrap().to_vec1::<i64>().unwrap().iter().map(|&x| x as u32).collect();
    assert_eq!(prompt.input_ids, want, "the interleaved <|VIDEO|>/<|AUDIO|> layout of Qwen2_5OmniProcessor");
    assert!(prompt.use_audio_in_video);
    assert_eq!(prompt.videos[0].grid, [3, 4, 6]);
    assert_eq!(prompt.videos[0].second_per_grid, 1.0);
    assert_eq!((prompt.audio.len(), prompt.audio[0].frames), (1, 330));
    let px: Vec<f32> = expected["pixel_values_videos"].flatten_all().unwrap().to_vec1().unwrap();
    let d = prompt.videos[0].pixel_values.iter().zip(&px).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert_eq!(d, 0.0, "pixel values differ by {d}: they must match transformers bit for bit");

    // The model on this prompt: positions exact, logits close, greedy tokens equal.
    let thinker = Thinker::load(&source, &Device::Cpu, DType::F32).unwrap();
    let batch = PromptBatch::from_prompts(&[prompt], processor.tokenizer.end_of_text).unwrap();
    let out = thinker.prefill(&batch, PrefillOptions { all_logits: true, hidden_states: false, base_model: false }).unwrap();
    let pos: Vec<Vec<Vec<i64>>> = expected["position_ids"].to_vec3().unwrap();
    for (row, rows) in pos.iter().enumerate() {
        for (l, &p) in rows[0].iter().enumerate() {
            assert_eq!(out.position_ids.get(row, 0, l), p, "position_ids[{row}, 0, {l}]");
        }
    }
    assert_eq!(out.state.rope_deltas, expected["rope_deltas"].to_vec1::<i64>().unwrap());
    let logits: Vec<f32> = out.logits.unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let want_logits: Vec<f32> = expected["logits"].flatten_all().unwrap().to_vec1().unwrap();
    let d = logits.iter().zip(&want_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("audio-in-video logits from raw frames and waveform: max |diff| = {d:e}");
    assert!(d < 2e-4, "logits differ by {d}");
    let cfg = GenerationConfig { max_new_tokens: 6, sampling: Sampling::Greedy, stop_tokens: vec![] };
    let got = ttrav::generate(&thinker, &batch, 1, &cfg, &mut Rng::seed(0)).unwrap();
    let want: Vec<u32> =
        expected["greedy_token_ids"].to_vec1::<i64>().unwrap().iter().map(|&x| x as u32).collect();
    assert_eq!(got[0][0].token_ids, want);
}

#[test]
fn mp4_sound_joins_the_prompt_in_order() {
    let model = model_dir("video_audio");
    let dir = tempfile::tempdir().unwrap();
    let mp4 = write(dir.path(), "clip.mp4", &clip(Some(16000)));
    let wav1 = write(dir.path(), "a.wav", &wav_f32(&tone(300.0, 16000, 0.5, 0.3), 16000));
    let wav2 = write(dir.path(), "b.wav", &wav_f32(&tone(300.0, 16000, 1.0, 0.3), 16000));
    let mut processor = Processor::load(&ModelSource::Local(model.path().to_path_buf())).unwrap();
    processor.use_audio_in_video = true;
    let messages = Processor::conversation(
        None,
        vec![
            ContentItem::Audio(wav1.clone()),
            ContentItem::Video(mp4.clone()),
            ContentItem::Audio(wav2.clone()),
            ContentItem::Text("What happens?".into()),
        ],
    );
    let prompt = processor.encode_chat(&messages).unwrap();
    assert!(prompt.use_audio_in_video);
    // The video's sound is the second clip (prompt order), between the two WAVs.
    let frames: Vec<usize> = prompt.audio.iter().map(|a| a.frames).collect();
    let sound = load_audio(&mp4).unwrap();
    let sound_frames = AudioFeatures::from_waveform(&sound, &MelExtractor::new()).frames;
    assert!(sound_frames > 190, "{sound_frames} frames of sound");
    assert_eq!(frames, vec![50, sound_frames, 100]);
    let tok = &processor.tokenizer;
    let id = |t: &str| tok.special_id(t).unwrap();
    let ids = &prompt.input_ids;
    let count = |t: u32| ids.iter().filter(|&&x| x == t).count();
    let audio_tokens: usize = prompt.audio.iter().map(|a| a.token_count()).sum();
    assert_eq!(count(id("<|AUDIO|>")), audio_tokens);
    assert_eq!(count(id("<|VIDEO|>")), prompt.videos[0].token_count());
    // <|vision_bos|><|audio_bos|> video-first interleave <|audio_eos|><|vision_eos|>
    let vb = ids.iter().position(|&x| x == id("<|vision_bos|>")).unwrap();
    assert_eq!(ids[vb + 1], id("<|audio_bos|>"));
    assert_eq!(ids[vb + 2], id("<|VIDEO|>"));
    let ve = ids.iter().position(|&x| x == id("<|vision_eos|>")).unwrap();
    assert_eq!(ids[ve - 1], id("<|audio_eos|>"));
    let span = &ids[vb + 2..ve - 1];
    assert_eq!(span.len(), prompt.videos[0].token_count() + prompt.audio[1].token_count());
    // The same prompt from the decoded media through the shared path.
    let v = load_mp4(&mp4, &FrameSampling::default()).unwrap();
    let media = vec![
        MediaInput::Audio(load_audio(&wav1).unwrap()),
        MediaInput::Video(VideoInput { frames: v.frames, fps: v.sample_fps, audio: Some(sound), resized: false }),
        MediaInput::Audio(load_audio(&wav2).unwrap()),
    ];
    assert_eq!(processor.encode_chat_with_media(&messages, media).unwrap(), prompt);
    // The model runs on it.
    let thinker = Thinker::load(&ModelSource::Local(model.path().to_path_buf()), &Device::Cpu, DType::F32).unwrap();
    let batch = PromptBatch::from_prompts(&[prompt], tok.end_of_text).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 2, sampling: Sampling::Greedy, stop_tokens: vec![] };
    assert_eq!(ttrav::generate(&thinker, &batch, 1, &cfg, &mut Rng::seed(0)).unwrap()[0][0].token_ids.len(), 2);
}

fn wav_f32(samples: &[f32], rate: u32) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut out = Vec::new();
    out.extend(b"RIFF");
    out.extend(&(36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(&16u32.to_le_bytes());
    out.extend(&3u16.to_le_bytes());
    out.extend(&1u16.to_le_bytes());
    out.extend(&rate.to_le_bytes());
    out.extend(&(rate * 4).to_le_bytes());
    out.extend(&4u16.to_le_bytes());
    out.extend(&32u16.to_le_bytes());
    out.extend(b"data");
    out.extend(&(data.len() as u32).to_le_bytes());
    out.extend(&data);
    out
}

fn run_cli(model: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["generate", "--model"])
        .arg(model)
        .args(args)
        .args(["--prompt", "What happens in this video?", "--greedy", "--max-new-tokens", "3", "--json"])
        .output()
        .unwrap()
}

fn token_ids(out: &std::process::Output) -> Vec<u64> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    v["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn cli_generate_with_an_mp4_and_a_frame_folder() {
    let model = model_dir("video_basic");
    let dir = tempfile::tempdir().unwrap();
    let mp4 = write(dir.path(), "clip.mp4", &clip(None));
    let from_mp4 = token_ids(&run_cli(model.path(), &["--video".as_ref(), mp4.as_os_str()]));
    assert_eq!(from_mp4.len(), 3);
    // The frames the MP4 path samples, as a PNG folder at their rate: the same prompt and tokens.
    let v = load_mp4(&mp4, &FrameSampling::default()).unwrap();
    let folder = dir.path().join("frames");
    std::fs::create_dir(&folder).unwrap();
    for (i, f) in v.frames.iter().enumerate() {
        f.save(folder.join(format!("{i:03}.png"))).unwrap();
    }
    let fps = v.sample_fps.to_string();
    let from_folder =
        token_ids(&run_cli(model.path(), &["--video".as_ref(), folder.as_os_str(), "--fps".as_ref(), fps.as_ref()]));
    assert_eq!(from_folder, from_mp4);

    // With its sound track, on the audio-in-video fixture's model.
    let model = model_dir("video_audio");
    let mp4 = write(dir.path(), "sound.mp4", &clip(Some(44100)));
    let args = ["--video".as_ref(), mp4.as_os_str(), "--use-audio-in-video".as_ref()];
    assert_eq!(token_ids(&run_cli(model.path(), &args)).len(), 3);
}

/// The reason a video item is refused, with the processor's settings.
fn refusal(processor: &Processor, path: &Path) -> String {
    let messages = Processor::conversation(None, vec![ContentItem::Video(path.to_path_buf()), ContentItem::Text("x".into())]);
    format!("{:#}", processor.encode_chat(&messages).expect_err(&path.display().to_string()))
}

#[test]
fn bad_video_input_names_the_file_and_reason() {
    let model = model_dir("video_basic");
    let mut processor = Processor::load(&ModelSource::Local(model.path().to_path_buf())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = clip(None);
    let video = encode_h264(&colour_frames(4, 32, 32), 4);
    let aac = encode_aac(&tone(440.0, 16000, 0.5, 0.5), 16000, 1);
    let mut garbage = encode_h264(&colour_frames(2, 32, 32), 4);
    for (s, _) in garbage.samples.iter_mut() {
        let n = s.len();
        s.splice(4..n, std::iter::repeat(0xff).take(n - 4));
    }
    let vp9 = {
        // A `vp09` track from the mp4 writer (with H.264 bytes in it: it is refused by codec).
        use mp4::{MediaConfig, Mp4Config, Mp4Sample, Mp4Writer, TrackConfig, TrackType, Vp9Config};
        let config = Mp4Config {
            major_brand: "isom".parse().unwrap(),
            minor_version: 0,
            compatible_brands: vec!["isom".parse().unwrap()],
            timescale: 1000,
        };
        let mut w = Mp4Writer::write_start(std::io::Cursor::new(Vec::new()), &config).unwrap();
        w.add_track(&TrackConfig {
            track_type: TrackType::Video,
            timescale: 1000,
            language: "und".into(),
            media_conf: MediaConfig::Vp9Config(Vp9Config { width: 32, height: 32 }),
        })
        .unwrap();
        for (i, (s, sync)) in video.samples.iter().enumerate() {
            let sample = Mp4Sample {
                start_time: i as u64 * 250,
                duration: 250,
                rendering_offset: 0,
                is_sync: *sync,
                bytes: bytes::Bytes::from(s.clone()),
            };
            w.write_sample(1, &sample).unwrap();
        }
        w.write_end().unwrap();
        w.into_writer().into_inner()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.mp4", vec![], "empty"),
        ("notes.mp4", b"these are my notes, not a video\n".repeat(10), "not an MP4 file"),
        ("sound.wav.mp4", wav_f32(&tone(440.0, 16000, 0.2, 0.5), 16000), "not an MP4 file (it starts with `RIFF"),
        ("cut.mp4", good[..good.len() / 2].to_vec(), "truncated"),
        ("cut_mdat.mp4", good[..100].to_vec(), "truncated: box `mdat` at byte 32"),
        ("cut_header.mp4", good[..good.len() - 5].to_vec(), "truncated"),
        ("ftyp_only.mp4", good[..32].to_vec(), "no `moov` box"),
        ("song.m4a", mux(None, Some(&aac)), "no video track (it holds only sound"),
        ("no_tracks.mp4", mux(None, None), "no tracks"),
        ("vp9.mp4", vp9, "the video track is `vp09` (VP9); only H.264"),
        ("garbage.mp4", mux(Some(&garbage), None), "no frame of the H.264 track could be decoded"),
    ];
    for (name, bytes, reason) in &cases {
        let path = write(dir.path(), name, bytes);
        let e = load_mp4(&path, &FrameSampling::default()).expect_err(name);
        assert_eq!(e.path, path);
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.contains(reason), "{name}: {msg}");
        // The processor passes the same error on.
        let msg = refusal(&processor, &path);
        assert!(msg.contains(name) && msg.contains(reason), "{name} through the processor: {msg}");
    }
    let e = refusal(&processor, &dir.path().join("missing.mp4"));
    assert!(e.contains("missing.mp4") && e.contains("cannot open"), "{e}");

    // Frame folders: empty, frames of different sizes.
    let empty = dir.path().join("empty_frames");
    std::fs::create_dir(&empty).unwrap();
    let e = refusal(&processor, &empty);
    assert!(e.contains("empty_frames") && e.contains("holds no images"), "{e}");
    let mixed = dir.path().join("mixed_frames");
    std::fs::create_dir(&mixed).unwrap();
    RgbImage::new(64, 48).save(mixed.join("000.png")).unwrap();
    RgbImage::new(64, 48).save(mixed.join("001.png")).unwrap();
    RgbImage::new(48, 64).save(mixed.join("002.png")).unwrap();
    let e = refusal(&processor, &mixed);
    assert!(e.contains("002.png") && e.contains("48x64") && e.contains("one size"), "{e}");

    // Audio in video needs a sound track: none in a frame folder or a silent MP4.
    processor.use_audio_in_video = true;
    let silent = write(dir.path(), "silent.mp4", &good);
    let e = refusal(&processor, &silent);
    assert!(e.contains("silent.mp4") && e.contains("no sound track"), "{e}");
    let folder = dir.path().join("frames");
    std::fs::create_dir(&folder).unwrap();
    RgbImage::new(64, 48).save(folder.join("000.png")).unwrap();
    let e = refusal(&processor, &folder);
    assert!(e.contains("frames") && e.contains("frame folder has none"), "{e}");
}

#[test]
fn cli_reports_a_bad_video_file() {
    let model = model_dir("video_basic");
    let dir = tempfile::tempdir().unwrap();
    let good = clip(None);
    let bad = write(dir.path(), "cut.mp4", &good[..good.len() / 3]);
    let out = run_cli(model.path(), &["--video".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.mp4") && err.contains("truncated") && !err.contains("panicked"), "{err}");
}
