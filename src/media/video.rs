//! Video frames to the vision tower's input, as Qwen2.5-Omni's video processor makes them.
//!
//! Frames (already sampled at `fps`) are resized like the video processor does (antialiased
//! bicubic on 8-bit frames, width pass then height pass) to a `smart_resize` size within the
//! video pixel limits; rescaling and normalisation are fused as in its torchvision back-end; an
//! odd frame count repeats the last frame; pairs of frames make one temporal patch.
//! `second_per_grid = 2 / fps`. A folder of frame images is read in name order. Frames can be
//! resized one by one as they are loaded ([`resize_frame`], [`patchify_resized_frames`]), so that
//! a long video never holds more than one full-size frame.

use super::image::{load_image, patchify, resize_bicubic, smart_resize, Arithmetic, PassOrder, FACTOR, TEMPORAL_PATCH};
use super::mp4::FrameFit;
use super::MediaError;
use crate::omni::thinker::VisualFeatures;
use image::RgbImage;
use std::path::{Path, PathBuf};

/// Pixel limits of the video processor (`shortest_edge` / `longest_edge` in
/// preprocessor_config.json; defaults 128*28*28 and 768*28*28).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoProcessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl Default for VideoProcessorConfig {
    fn default() -> Self {
        Self { min_pixels: 128 * 28 * 28, max_pixels: 768 * 28 * 28 }
    }
}

/// Reads the video limits from a (video_)preprocessor_config.json: `video_min_pixels` /
/// `video_max_pixels`, else `size.shortest_edge` / `size.longest_edge` (transformers 5's
/// video processor fields); defaults where the file or the fields are missing. A field that is
/// there must be an integer, and the limits must satisfy `min <= max <=` 64 megapixels.
pub fn video_config_from_file(path: &Path) -> anyhow::Result<VideoProcessorConfig> {
    use super::image::{check_pixel_limits, pixel_field, read_config_json};
    let mut cfg = VideoProcessorConfig::default();
    let Some(v) = read_config_json(path)? else { return Ok(cfg) };
    let field = |own: &str, size: &str| -> anyhow::Result<Option<usize>> {
        Ok(match pixel_field(&v, &[own], path)? {
            Some(m) => Some(m),
            None => pixel_field(&v, &["size", size], path)?,
        })
    };
    if let Some(m) = field("video_min_pixels", "shortest_edge")? {
        cfg.min_pixels = m;
    }
    if let Some(m) = field("video_max_pixels", "longest_edge")? {
        cfg.max_pixels = m;
    }
    check_pixel_limits(cfg.min_pixels, cfg.max_pixels, path)?;
    Ok(cfg)
}

/// One frame resized as the video processor resizes it (to the `smart_resize` size of its own
/// dimensions within the video pixel limits).
pub fn resize_frame(frame: &RgbImage, cfg: &VideoProcessorConfig) -> Result<RgbImage, String> {
    let (w0, h0) = frame.dimensions();
    let (h, w) = smart_resize(h0 as usize, w0 as usize, cfg.min_pixels, cfg.max_pixels)?;
    Ok(resize_bicubic(frame, w, h, PassOrder::WidthFirst, Arithmetic::Torch))
}

/// Patches of sampled frames (all of one size) at `fps`.
pub fn preprocess_frames(frames: &[RgbImage], cfg: &VideoProcessorConfig, fps: f32) -> Result<VisualFeatures, String> {
    check_frames(frames, fps)?;
    let resized = frames.iter().map(|f| resize_frame(f, cfg)).collect::<Result<Vec<_>, _>>()?;
    patchify_resized_frames(&resized, fps)
}

/// Patches of sampled frames already resized by [`resize_frame`] (all of one size) at `fps`.
pub fn patchify_resized_frames(frames: &[RgbImage], fps: f32) -> Result<VisualFeatures, String> {
    check_frames(frames, fps)?;
    let (w, h) = frames[0].dimensions();
    if w as usize % FACTOR != 0 || h as usize % FACTOR != 0 {
        return Err(format!("the frames are {w}x{h}, not resized to multiples of {FACTOR}"));
    }
    // An odd count repeats the last frame.
    let mut refs: Vec<&RgbImage> = frames.iter().collect();
    while refs.len() % TEMPORAL_PATCH != 0 {
        refs.push(&frames[frames.len() - 1]);
    }
    let (pixel_values, grid) = patchify(&refs, Arithmetic::Torch);
    Ok(VisualFeatures { pixel_values, grid, second_per_grid: TEMPORAL_PATCH as f32 / fps })
}

/// Frames that can make a video: at least one, all of one size, at a positive rate.
fn check_frames(frames: &[RgbImage], fps: f32) -> Result<(), String> {
    let first = frames.first().ok_or("the video has no frames")?;
    let (w0, h0) = first.dimensions();
    if let Some(i) = frames.iter().position(|f| f.dimensions() != (w0, h0)) {
        let (w, h) = frames[i].dimensions();
        return Err(format!("frame {i} is {w}x{h} but frame 0 is {w0}x{h0}; all frames must have one size"));
    }
    if !(fps > 0.0 && fps.is_finite()) {
        return Err(format!("fps must be positive (got {fps})"));
    }
    Ok(())
}

/// The frames of a folder of images (PNG, JPEG, WebP, GIF), in file-name order, at full size.
pub fn load_frame_folder(dir: &Path) -> Result<Vec<RgbImage>, MediaError> {
    load_frames(&frame_folder_paths(dir)?, &mut |frame| Ok(frame))
}

/// The frame images of a folder (PNG, JPEG, WebP, GIF), in file-name order.
pub fn frame_folder_paths(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MediaError::new(dir, format!("cannot read frame folder: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg" | "webp" | "gif"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(MediaError::new(dir, "the frame folder holds no images (png, jpg, webp, gif)"));
    }
    Ok(paths)
}

/// Loads frame images (which must all have one size), passing each through `fit` as it is
/// loaded: only what `fit` returns is kept.
pub fn load_frames(paths: &[PathBuf], fit: FrameFit) -> Result<Vec<RgbImage>, MediaError> {
    let mut frames = Vec::with_capacity(paths.len());
    let mut first_size = None;
    for path in paths {
        let frame = load_image(path)?;
        let (w, h) = frame.dimensions();
        let (w0, h0) = *first_size.get_or_insert((w, h));
        if (w, h) != (w0, h0) {
            return Err(MediaError::new(
                path,
                format!("this frame is {w}x{h} but {} is {w0}x{h0}; all frames must have one size", paths[0].display()),
            ));
        }
        frames.push(fit(frame).map_err(|reason| MediaError::new(path, reason))?);
    }
    Ok(frames)
}

/// Picks frame indices to sample `n_frames` source frames at `src_fps` down to `fps`, with at
/// least `min_frames` and at most `max_frames` (evenly spaced, as qwen-omni-utils does).
pub fn sample_indices(n_frames: usize, src_fps: f32, fps: f32, min_frames: usize, max_frames: usize) -> Vec<usize> {
    if n_frames == 0 {
        return Vec::new();
    }
    let duration = n_frames as f32 / src_fps.max(1e-6);
    let wanted = ((duration * fps).round() as usize).clamp(min_frames.max(1), max_frames.max(1)).min(n_frames);
    if wanted == 1 {
        return vec![0];
    }
    (0..wanted).map(|i| ((i as f64) * (n_frames - 1) as f64 / (wanted - 1) as f64).round() as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_frame_counts_repeat_the_last_frame() {
        let frames: Vec<RgbImage> = (0..5).map(|i| RgbImage::from_pixel(56, 56, image::Rgb([i * 40, 0, 0]))).collect();
        let cfg = VideoProcessorConfig { min_pixels: 56 * 56, max_pixels: 56 * 56 };
        let v = preprocess_frames(&frames, &cfg, 1.0).unwrap();
        assert_eq!(v.grid, [3, 4, 4]);
        assert_eq!(v.second_per_grid, 2.0);
        assert_eq!(v.pixel_values.len(), 3 * 16 * 1176);
        let mut different = frames.clone();
        different[1] = RgbImage::new(28, 28);
        assert!(preprocess_frames(&different, &cfg, 1.0).unwrap_err().contains("frame 1"));
    }

    #[test]
    fn sampling_spreads_frames() {
        assert_eq!(sample_indices(100, 25.0, 1.0, 4, 32), vec![0, 33, 66, 99]);
        assert_eq!(sample_indices(1000, 25.0, 1.0, 4, 32).len(), 32);
        assert_eq!(sample_indices(3, 25.0, 2.0, 4, 32), vec![0, 1, 2]);
    }
}
