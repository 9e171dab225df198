//! MP4 video files: the H.264 video track decoded to RGB frames, sampled at a requested rate.
//!
//! The container is read with symphonia's ISO-MP4 demuxer (the one that also reads the file's AAC
//! sound for audio input). Each H.264 sample (AVCC: length-prefixed NAL units) is rewritten as an
//! Annex B access unit, the avcC box's SPS and PPS going first, and decoded by OpenH264 (built
//! from the source the `openh264` crate bundles, no system library); frames become RGB with
//! OpenH264's BT.601 limited-range conversion. Frames are sampled as qwen-omni-utils samples them:
//! `n = frames / source_fps * fps`, clamped to `[min_frames, max_frames]` and to the frame count,
//! rounded down to an even number, spread evenly over the source frames; the rate the video
//! processor is then given is `n / frames * source_fps`. Only the chosen frames are converted to
//! RGB, each is handed to a caller's function as it is decoded (the processor resizes it there, so
//! that no more than one full-size frame is kept at a time), and decoding stops after the last one.
//!
//! Before demuxing, the top-level boxes are walked, so that a file that is not an MP4, or one cut
//! short, is named as such rather than as a decoding failure.

use super::MediaError;
use image::RgbImage;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use symphonia::core::codecs::video::well_known::extra_data::VIDEO_EXTRA_DATA_ID_AVC_DECODER_CONFIG;
use symphonia::core::codecs::video::well_known::*;
use symphonia::core::codecs::video::{VideoCodecId, VideoCodecParameters};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Track};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::formats::IsoMp4Reader;

/// How frames are taken from a video file (qwen-omni-utils' defaults: 2 fps, 4 to 768 frames).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSampling {
    /// Frames per second to sample.
    pub fps: f32,
    /// Fewest frames to take (when the video has that many).
    pub min_frames: usize,
    /// Most frames to take.
    pub max_frames: usize,
}

impl Default for FrameSampling {
    fn default() -> Self {
        Self { fps: 2.0, min_frames: 4, max_frames: 768 }
    }
}

/// What an MP4's video track holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp4VideoInfo {
    /// Coded size (as the sample description states it; decoded frames may be cropped).
    pub width: u32,
    pub height: u32,
    /// Coded frames (samples) in the video track.
    pub frames: usize,
    /// Source frame rate: frames / duration.
    pub fps: f64,
    /// Duration of the video track in seconds.
    pub duration: f64,
    /// Whether the file also has an audio track.
    pub has_audio: bool,
}

/// Frames sampled from an MP4's video track.
#[derive(Debug, Clone)]
pub struct Mp4Video {
    pub frames: Vec<RgbImage>,
    /// Source frame numbers of `frames` (presentation order).
    pub indices: Vec<usize>,
    /// The rate of the sampled frames (`frames.len() / info.frames * info.fps`): the fps the
    /// video processor is given.
    pub sample_fps: f32,
    pub info: Mp4VideoInfo,
    /// Samples the decoder rejected as corrupt (they are skipped).
    pub decode_errors: usize,
}

/// The source frames to take: qwen-omni-utils' `smart_nframes` and `linspace(...).round()`.
/// A video of one frame gives that frame, and `max_frames` 1 gives the first frame.
pub fn plan_frames(total: usize, src_fps: f64, s: &FrameSampling) -> Vec<usize> {
    if total == 0 {
        return Vec::new();
    }
    let min = s.min_frames.max(1).div_ceil(2) * 2;
    let max = s.max_frames.max(1);
    let wanted = total as f64 / src_fps.max(1e-9) * s.fps as f64;
    let n = wanted.max(min as f64).min(max as f64).min(total as f64);
    let n = if n >= 2.0 { ((n / 2.0).floor() * 2.0) as usize } else { 1 };
    if n == 1 {
        return vec![0];
    }
    let step = (total - 1) as f64 / (n - 1) as f64;
    (0..n).map(|i| ((i as f64 * step).round_ties_even() as usize).min(total - 1)).collect()
}

/// Reads an MP4's video track description and counts its frames (no decoding).
pub fn probe_mp4(path: &Path) -> Result<Mp4VideoInfo, MediaError> {
    super::guarded(path, || Ok(Demuxed::open(path)?.info))
}

/// What is done to each chosen frame as it is decoded (a resize, say); an error stops decoding.
pub type FrameFit<'a> = &'a mut dyn FnMut(RgbImage) -> Result<RgbImage, String>;

/// Decodes the frames `sampling` picks from an MP4's H.264 video track, at full size.
pub fn load_mp4(path: &Path, sampling: &FrameSampling) -> Result<Mp4Video, MediaError> {
    load_mp4_with(path, sampling, &mut |frame| Ok(frame))
}

/// Decodes the frames `sampling` picks from an MP4's H.264 video track, passing each through
/// `fit` as it is decoded: only what `fit` returns is kept.
pub fn load_mp4_with(path: &Path, sampling: &FrameSampling, fit: FrameFit) -> Result<Mp4Video, MediaError> {
    super::guarded(path, || {
        let demux = Demuxed::open(path)?;
        let info = demux.info.clone();
        let indices = plan_frames(info.frames, info.fps, sampling);
        let (frames, decode_errors) = demux.decode(&indices, fit)?;
        let sample_fps = (indices.len() as f64 / info.frames as f64 * info.fps) as f32;
        Ok(Mp4Video { frames, indices, sample_fps, info, decode_errors })
    })
}

/// Decodes every frame of an MP4's H.264 video track.
pub fn load_mp4_all_frames(path: &Path) -> Result<Mp4Video, MediaError> {
    super::guarded(path, || {
        let demux = Demuxed::open(path)?;
        let info = demux.info.clone();
        let indices: Vec<usize> = (0..info.frames).collect();
        let (frames, decode_errors) = demux.decode(&indices, &mut |frame| Ok(frame))?;
        Ok(Mp4Video { frames, indices, sample_fps: info.fps as f32, info, decode_errors })
    })
}

/// An MP4 whose boxes were checked and whose H.264 track was found and timed.
struct Demuxed<'a> {
    path: &'a Path,
    track_id: u32,
    avc: AvcConfig,
    info: Mp4VideoInfo,
}

impl<'a> Demuxed<'a> {
    fn open(path: &'a Path) -> Result<Self, MediaError> {
        let err = |reason: String| MediaError::new(path, reason);
        let mut reader = open_reader(path)?;
        let tracks = reader.tracks();
        let has_audio = tracks.iter().any(|t| matches!(t.codec_params, Some(CodecParameters::Audio(_))));
        let video: Vec<(&Track, &VideoCodecParameters)> = tracks
            .iter()
            .filter_map(|t| match &t.codec_params {
                Some(CodecParameters::Video(v)) => Some((t, v)),
                _ => None,
            })
            .collect();
        let Some(&(track, params)) = video.iter().find(|(_, v)| v.codec == CODEC_ID_H264) else {
            // Name the codec from the file's sample description: symphonia leaves VP8/VP9/AV1
            // and unknown entries unnamed.
            let entries = video_sample_entries(path).unwrap_or_default();
            return Err(err(match (entries.first(), video.first()) {
                (Some(kind), _) => format!("the video track is {}; only H.264 (`avc1`) video is supported", entry_name(kind)),
                (None, Some((_, v))) => {
                    format!("the video track is {}; only H.264 (AVC) video is supported", codec_name(v.codec))
                }
                (None, None) if has_audio => {
                    "the file has no video track (it holds only sound; pass it with --audio)".into()
                }
                (None, None) if tracks.is_empty() => "the file has no tracks".into(),
                (None, None) => "the file has no video track".into(),
            }));
        };
        let params = params.clone();
        let track_id = track.id;
        let time_base = track.time_base;
        let avcc = params
            .extra_data
            .iter()
            .find(|d| d.id == VIDEO_EXTRA_DATA_ID_AVC_DECODER_CONFIG)
            .ok_or_else(|| err("the H.264 track has no avcC box (decoder configuration)".into()))?;
        let avc = parse_avcc(&avcc.data).map_err(|r| err(format!("the H.264 track's avcC box is malformed: {r}")))?;

        // Count the samples and find the track's time span.
        let (mut frames, mut start, mut end) = (0usize, i64::MAX, i64::MIN);
        while let Some(packet) = next_packet(&mut *reader, path)? {
            if packet.track_id != track_id {
                continue;
            }
            frames += 1;
            let ts = packet.pts.get();
            start = start.min(ts);
            end = end.max(ts.saturating_add(packet.dur.get().min(i64::MAX as u64) as i64));
        }
        if frames == 0 {
            return Err(err("the video track holds no frames".into()));
        }
        let seconds = |ticks: i64| match time_base {
            Some(tb) => ticks as f64 * tb.numer.get() as f64 / tb.denom.get() as f64,
            None => 0.0,
        };
        let duration = seconds(end - start);
        if !(duration > 0.0 && duration.is_finite()) {
            return Err(err("the video track states no duration (its frame times are missing)".into()));
        }
        let info = Mp4VideoInfo {
            width: params.width.unwrap_or(0) as u32,
            height: params.height.unwrap_or(0) as u32,
            frames,
            fps: frames as f64 / duration,
            duration,
            has_audio,
        };
        Ok(Self { path, track_id, avc, info })
    }

    /// Decodes the track, keeping the frames at `indices` (ascending source frame numbers), each
    /// passed through `fit`.
    fn decode(&self, indices: &[usize], fit: FrameFit) -> Result<(Vec<RgbImage>, usize), MediaError> {
        let path = self.path;
        let err = |reason: String| MediaError::new(path, reason);
        let mut reader = open_reader(path)?;
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| err(format!("cannot start the H.264 decoder: {e}")))?;
        let mut picker =
            FramePicker { indices, next: 0, produced: 0, frames: Vec::with_capacity(indices.len()), fit, fit_error: None };
        let mut unit = Vec::new();
        for nal in self.avc.sps.iter().chain(&self.avc.pps) {
            unit.extend_from_slice(&[0, 0, 0, 1]);
            unit.extend_from_slice(nal);
        }
        let (mut errors, mut first_error, mut samples) = (0usize, None::<String>, 0usize);
        while !picker.done() {
            let Some(packet) = next_packet(&mut *reader, path)? else { break };
            if packet.track_id != self.track_id {
                continue;
            }
            samples += 1;
            if let Err(reason) = avcc_to_annex_b(&packet.data, self.avc.nal_length_size, &mut unit) {
                errors += 1;
                first_error.get_or_insert(format!("sample {}: {reason}", samples - 1));
                unit.clear();
                continue;
            }
            match decoder.decode(&unit) {
                Ok(Some(yuv)) => picker.take(&yuv),
                Ok(None) => {}
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("sample {}: {}", samples - 1, h264_error(&e)));
                }
            }
            unit.clear();
        }
        if !picker.done() {
            match decoder.flush_remaining() {
                Ok(rest) => {
                    for yuv in &rest {
                        picker.take(yuv);
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("flushing the decoder: {}", h264_error(&e)));
                }
            }
        }
        let FramePicker { mut frames, produced, fit_error, .. } = picker;
        if let Some(reason) = fit_error {
            return Err(err(reason));
        }
        let Some(last) = frames.last().cloned() else {
            let why = match first_error {
                Some(e) => format!("no frame of the H.264 track could be decoded ({errors} samples rejected; {e})"),
                None => "no frame of the H.264 track could be decoded".to_string(),
            };
            return Err(err(why));
        };
        if frames.len() < indices.len() {
            // The decoder gave fewer frames than the track has samples: repeat the last one so
            // that the frame times stay as planned.
            eprintln!(
                "warning: {}: the decoder produced {produced} of {} frames; the last decoded frame stands in for {} missing ones",
                path.display(),
                self.info.frames,
                indices.len() - frames.len()
            );
            frames.resize(indices.len(), last);
        }
        Ok((frames, errors))
    }
}

/// OpenH264's error text without its empty parts.
fn h264_error(e: &openh264::Error) -> String {
    e.to_string().replace(" User Message:None.", "").replace(" Backtraces enabled.", "").trim().to_string()
}

/// Keeps the decoder's output frames whose numbers are wanted, converting only those to RGB and
/// passing them through `fit`.
struct FramePicker<'i, 'f> {
    indices: &'i [usize],
    next: usize,
    produced: usize,
    frames: Vec<RgbImage>,
    fit: FrameFit<'f>,
    /// Why `fit` refused a frame (decoding stops there).
    fit_error: Option<String>,
}

impl FramePicker<'_, '_> {
    fn done(&self) -> bool {
        self.next >= self.indices.len() || self.fit_error.is_some()
    }

    fn take(&mut self, yuv: &DecodedYUV<'_>) {
        let n = self.produced;
        self.produced += 1;
        if self.done() || self.indices.get(self.next) != Some(&n) {
            return;
        }
        let (w, h) = yuv.dimensions();
        let mut rgb = vec![0u8; w * h * 3];
        yuv.write_rgb8(&mut rgb);
        let Some(img) = RgbImage::from_raw(w as u32, h as u32, rgb) else { return };
        let img = match (self.fit)(img) {
            Ok(img) => img,
            Err(reason) => {
                self.fit_error = Some(format!("frame {n}: {reason}"));
                return;
            }
        };
        while self.indices.get(self.next) == Some(&n) {
            self.frames.push(img.clone());
            self.next += 1;
        }
    }
}

/// The avcC box's content: NAL unit length size and parameter sets.
#[derive(Debug, Clone, PartialEq)]
struct AvcConfig {
    nal_length_size: usize,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

/// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.3.3.1).
fn parse_avcc(d: &[u8]) -> Result<AvcConfig, String> {
    let byte = |i: usize| d.get(i).copied().ok_or_else(|| format!("it ends after {} bytes", d.len()));
    if byte(0)? != 1 {
        return Err(format!("configuration version {} (expected 1)", byte(0)?));
    }
    let nal_length_size = (byte(4)? & 3) as usize + 1;
    if nal_length_size == 3 {
        return Err("NAL unit lengths of 3 bytes are not allowed".into());
    }
    let mut pos = 5;
    let sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let len = ((byte(*pos)? as usize) << 8) | byte(*pos + 1)? as usize;
            let set = d.get(*pos + 2..*pos + 2 + len).ok_or("a parameter set runs past its end")?;
            out.push(set.to_vec());
            *pos += 2 + len;
        }
        Ok(out)
    };
    let n_sps = (byte(pos)? & 0x1f) as usize;
    pos += 1;
    let sps = sets(n_sps, &mut pos)?;
    let n_pps = byte(pos)? as usize;
    pos += 1;
    let pps = sets(n_pps, &mut pos)?;
    if sps.is_empty() || pps.is_empty() {
        return Err(format!("it holds {} SPS and {} PPS; the decoder needs at least one of each", sps.len(), pps.len()));
    }
    Ok(AvcConfig { nal_length_size, sps, pps })
}

/// Appends a sample's length-prefixed NAL units to `out` as Annex B (start code + NAL unit).
fn avcc_to_annex_b(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while i < sample.len() {
        let Some(len_bytes) = sample.get(i..i + length_size) else {
            return Err(format!("a NAL unit length at byte {i} runs past the sample ({} bytes)", sample.len()));
        };
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        i += length_size;
        let Some(nal) = sample.get(i..i + len) else {
            return Err(format!("a NAL unit of {len} bytes at byte {i} runs past the sample ({} bytes)", sample.len()));
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        i += len;
    }
    Ok(())
}

/// The next packet; a truncated or corrupt stream becomes an error naming the file.
fn next_packet(
    reader: &mut dyn FormatReader,
    path: &Path,
) -> Result<Option<symphonia::core::packet::Packet>, MediaError> {
    match reader.next_packet() {
        Ok(p) => Ok(p),
        Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(MediaError::new(path, "the file is truncated (a video sample lies past its end)"))
        }
        Err(e) => Err(MediaError::new(path, format!("corrupt MP4 stream ({e})"))),
    }
}

/// The sample entry types of the video tracks of a file that passed [`check_boxes`].
fn video_sample_entries(path: &Path) -> Option<Vec<[u8; 4]>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let moov = check_boxes(&mut file, len).ok()?;
    let mut data = vec![0u8; usize::try_from(moov.end - moov.start).ok()?];
    file.seek(SeekFrom::Start(moov.start)).ok()?;
    file.read_exact(&mut data).ok()?;
    Some(video_entry_types(&data))
}

/// Checks the file's top-level boxes, then opens symphonia's MP4 demuxer on it.
fn open_reader(path: &Path) -> Result<Box<dyn FormatReader + 'static>, MediaError> {
    let err = |reason: String| MediaError::new(path, reason);
    let mut file = std::fs::File::open(path).map_err(|e| err(format!("cannot open video file: {e}")))?;
    let len = file.metadata().map(|m| m.len()).map_err(|e| err(format!("cannot read video file: {e}")))?;
    if len == 0 {
        return Err(err("the file is empty".into()));
    }
    check_boxes(&mut file, len).map_err(err)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| err(format!("cannot read video file: {e}")))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let reader = IsoMp4Reader::try_new(mss, FormatOptions::default())
        .map_err(|e| err(format!("not a readable MP4 file ({e})")))?;
    Ok(Box::new(reader))
}

/// Top-level box types of ISO base media files (MP4, M4A, MOV).
const TOP_LEVEL: [&[u8; 4]; 16] = [
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"moof", b"mfra", b"meta", b"uuid",
    b"sidx", b"ssix", b"prft", b"emsg",
];

fn fourcc(t: &[u8; 4]) -> String {
    if t.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        String::from_utf8_lossy(t).into_owned()
    } else {
        format!("0x{}", t.iter().map(|c| format!("{c:02x}")).collect::<String>())
    }
}

/// The first bytes of a file: its first four as text when they are printable, else in hex.
fn describe_start(head: &[u8]) -> String {
    if head[..4].iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("`{}`", String::from_utf8_lossy(&head[..4]))
    } else {
        format!("bytes {}", head.iter().map(|c| format!("{c:02x}")).collect::<Vec<_>>().join(" "))
    }
}

/// Walks the top-level boxes: the file must start like an MP4, hold `ftyp` and `moov`, and no
/// box may run past its end. Gives the byte range of `moov`'s content.
fn check_boxes<R: Read + Seek>(r: &mut R, len: u64) -> Result<std::ops::Range<u64>, String> {
    let (mut pos, mut ftyp, mut moov) = (0u64, false, None);
    while pos < len {
        let mut head = [0u8; 8];
        r.seek(SeekFrom::Start(pos)).map_err(|e| format!("cannot read video file: {e}"))?;
        if len - pos < 8 || r.read_exact(&mut head).is_err() {
            if pos == 0 {
                return Err(format!("not an MP4 file (it is only {len} bytes long)"));
            }
            return Err(format!("the file is truncated (it ends inside a box header at byte {pos})"));
        }
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        if pos == 0 && !TOP_LEVEL.contains(&&kind) {
            return Err(format!("not an MP4 file (it starts with {}, not with an MP4 box such as `ftyp`)", describe_start(&head)));
        }
        let small = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let (size, header) = match small {
            0 => (len - pos, 8),
            1 => {
                let mut large = [0u8; 8];
                r.read_exact(&mut large).map_err(|_| format!("the file is truncated (inside the header of box `{}` at byte {pos})", fourcc(&kind)))?;
                (u64::from_be_bytes(large), 16)
            }
            s => (s, 8),
        };
        if size < header {
            return Err(format!("corrupt MP4: box `{}` at byte {pos} states a size of {size} bytes", fourcc(&kind)));
        }
        if size > len - pos {
            return Err(format!(
                "the file is truncated: box `{}` at byte {pos} needs {size} bytes but only {} remain",
                fourcc(&kind),
                len - pos
            ));
        }
        ftyp |= &kind == b"ftyp";
        if &kind == b"moov" && moov.is_none() {
            moov = Some(pos + header..pos + size);
        }
        pos += size;
    }
    if !ftyp {
        return Err("not an MP4 file (it has no `ftyp` box)".into());
    }
    moov.ok_or_else(|| "the file has no `moov` box (its index of frames): it is truncated or was never finished".into())
}

/// The child boxes `(type, content)` of a box's content; stops at the first malformed one.
fn children(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(head) = data.get(pos..pos + 8) {
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header) = match size {
            0 => (data.len() - pos, 8),
            1 => match data.get(pos + 8..pos + 16) {
                Some(b) => (u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as usize, 16),
                None => break,
            },
            s => (s, 8),
        };
        let Some(body) = data.get(pos + header..pos.saturating_add(size)) else { break };
        if size < header {
            break;
        }
        out.push((kind, body));
        pos += size;
    }
    out
}

/// The sample entry type (`avc1`, `hvc1`, `vp09`, ...) of each video (`vide` handler) track in a
/// `moov` box's content.
fn video_entry_types(moov: &[u8]) -> Vec<[u8; 4]> {
    let child = |data: &'_ [u8], kind: &[u8; 4]| -> Option<Vec<u8>> {
        children(data).into_iter().find(|(k, _)| k == kind).map(|(_, b)| b.to_vec())
    };
    let mut out = Vec::new();
    for (kind, trak) in children(moov) {
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia") else { continue };
        let handler = child(&mdia, b"hdlr").and_then(|h| h.get(8..12).map(|t| [t[0], t[1], t[2], t[3]]));
        if handler != Some(*b"vide") {
            continue;
        }
        let stsd = child(&mdia, b"minf").and_then(|m| child(&m, b"stbl")).and_then(|s| child(&s, b"stsd"));
        if let Some(entry) = stsd.as_deref().and_then(|s| s.get(8..)).and_then(|e| children(e).first().map(|(k, _)| *k)) {
            out.push(entry);
        }
    }
    out
}

/// What a video sample entry type is, for error messages.
fn entry_name(kind: &[u8; 4]) -> String {
    let name = match kind {
        b"hvc1" | b"hev1" => "HEVC (H.265)",
        b"vp08" => "VP8",
        b"vp09" => "VP9",
        b"av01" => "AV1",
        b"mp4v" => "MPEG-4 Part 2",
        b"avc3" | b"avc4" => "H.264 with in-band parameter sets, which is not supported",
        b"mjpa" | b"mjpb" | b"jpeg" => "Motion JPEG",
        b"ap4h" | b"apch" | b"apcn" | b"apcs" | b"apco" => "ProRes",
        _ => return format!("`{}`", fourcc(kind)),
    };
    format!("`{}` ({name})", fourcc(kind))
}

/// A video codec's name for error messages.
fn codec_name(id: VideoCodecId) -> String {
    let known = [
        (CODEC_ID_HEVC, "HEVC (H.265)"),
        (CODEC_ID_AV1, "AV1"),
        (CODEC_ID_VP8, "VP8"),
        (CODEC_ID_VP9, "VP9"),
        (CODEC_ID_MPEG4, "MPEG-4 Part 2"),
        (CODEC_ID_MPEG2, "MPEG-2"),
        (CODEC_ID_H263, "H.263"),
        (CODEC_ID_VVC, "VVC (H.266)"),
    ];
    match known.iter().find(|(k, _)| *k == id) {
        Some((_, name)) => name.to_string(),
        None => format!("codec {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_plans_follow_qwen_omni_utils() {
        let s = FrameSampling::default();
        // 10 s at 25 fps, sampled at 2 fps: 20 frames over 250.
        let idx = plan_frames(250, 25.0, &s);
        assert_eq!(idx.len(), 20);
        assert_eq!((idx[0], idx[19]), (0, 249));
        // Short clips take at least 4 frames; odd counts round down to even.
        assert_eq!(plan_frames(10, 10.0, &s), vec![0, 3, 6, 9]);
        assert_eq!(plan_frames(3, 30.0, &s), vec![0, 2]);
        assert_eq!(plan_frames(1, 30.0, &s), vec![0]);
        assert_eq!(plan_frames(100, 10.0, &FrameSampling { fps: 1.0, min_frames: 4, max_frames: 7 }).len(), 6);
        assert_eq!(plan_frames(100, 10.0, &FrameSampling { fps: 1.0, min_frames: 4, max_frames: 1 }), vec![0]);
        // min_frames rounds up to even (4), then the count is capped by max_frames and rounded down.
        assert_eq!(plan_frames(6, 1.0, &FrameSampling { fps: 0.5, min_frames: 3, max_frames: 3 }), vec![0, 5]);
        assert!(plan_frames(0, 25.0, &s).is_empty());
    }

    #[test]
    fn avcc_samples_become_annex_b() {
        let mut out = Vec::new();
        avcc_to_annex_b(&[0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x06], 4, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x06]);
        out.clear();
        avcc_to_annex_b(&[0, 3, 0x41, 9, 9], 2, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 0x41, 9, 9]);
        assert!(avcc_to_annex_b(&[0, 0, 0, 9, 0x65], 4, &mut Vec::new()).unwrap_err().contains("runs past"));
        assert!(avcc_to_annex_b(&[0, 0], 4, &mut Vec::new()).unwrap_err().contains("runs past"));
    }

    #[test]
    fn avcc_records_parse_and_fail_cleanly() {
        let rec = [1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3];
        let c = parse_avcc(&rec).unwrap();
        assert_eq!(c, AvcConfig { nal_length_size: 4, sps: vec![vec![0x67, 1, 2]], pps: vec![vec![0x68, 3]] });
        for cut in 0..rec.len() {
            assert!(parse_avcc(&rec[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_avcc(&[0, 0x42, 0, 0x1e, 0xff, 0xe0, 0]).unwrap_err().contains("version"));
    }

    #[test]
    fn box_walk_names_the_problem() {
        let boxed = |kind: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend(kind);
            b.extend(body);
            b
        };
        let mut good = boxed(b"ftyp", b"isom\0\0\0\0");
        good.extend(boxed(b"moov", &[0; 8]));
        let mut c = std::io::Cursor::new(good.clone());
        assert_eq!(check_boxes(&mut c, good.len() as u64), Ok(24..32));
        let cut = &good[..good.len() - 3];
        let e = check_boxes(&mut std::io::Cursor::new(cut), cut.len() as u64).unwrap_err();
        assert!(e.contains("truncated") && e.contains("moov"), "{e}");
        let riff = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
        let e = check_boxes(&mut std::io::Cursor::new(&riff), riff.len() as u64).unwrap_err();
        assert!(e.contains("not an MP4"), "{e}");
        let only_ftyp = boxed(b"ftyp", b"isom\0\0\0\0");
        let e = check_boxes(&mut std::io::Cursor::new(&only_ftyp), only_ftyp.len() as u64).unwrap_err();
        assert!(e.contains("moov"), "{e}");
    }

    #[test]
    fn video_entry_types_are_found_in_moov() {
        let boxed = |kind: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend(kind);
            b.extend(body);
            b
        };
        let trak = |handler: &[u8; 4], entry: &[u8; 4]| {
            let hdlr = boxed(b"hdlr", &[&[0u8; 8][..], handler, &[0; 12]].concat());
            let stsd = boxed(b"stsd", &[&[0u8, 0, 0, 0, 0, 0, 0, 1][..], &boxed(entry, &[0; 16])].concat());
            let minf = boxed(b"minf", &boxed(b"stbl", &stsd));
            boxed(b"trak", &boxed(b"mdia", &[hdlr, minf].concat()))
        };
        let moov = [boxed(b"mvhd", &[0; 100]), trak(b"soun", b"mp4a"), trak(b"vide", b"vp09")].concat();
        assert_eq!(video_entry_types(&moov), vec![*b"vp09"]);
        assert_eq!(entry_name(b"vp09"), "`vp09` (VP9)");
        // Malformed content gives nothing rather than a panic.
        for cut in 0..moov.len() {
            let _ = video_entry_types(&moov[..cut]);
        }
    }
}
