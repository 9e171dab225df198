//! Images to the vision tower's input, as Qwen2.5-Omni's (Pillow-based) image processor makes it.
//!
//! Decode (PNG, JPEG, WebP, GIF first frame) -> EXIF orientation -> RGB (alpha composited on
//! white, greyscale expanded) -> `smart_resize` to multiples of 28 within [min, max] pixels ->
//! Pillow's antialiased bicubic resampling (two separable passes, 8-bit between them, in Pillow
//! 13's order) -> rescale by
//! 1/255 -> normalise with the CLIP mean and std (in the processor's own floating-point order, so
//! that pixel values match transformers' bit for bit) -> patches of 2x14x14 per channel, in
//! merge-block order: `[grid_h * grid_w, 1176]` with `grid_thw = [1, grid_h, grid_w]`.

use super::MediaError;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::path::Path;

pub const PATCH: usize = 14;
pub const MERGE: usize = 2;
pub const TEMPORAL_PATCH: usize = 2;
/// Side multiple of a resized image (patch * merge).
pub const FACTOR: usize = PATCH * MERGE;
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// Defaults of Qwen2.5-Omni's preprocessor_config.json.
pub const DEFAULT_MIN_PIXELS: usize = 56 * 56;
pub const DEFAULT_MAX_PIXELS: usize = 28 * 28 * 16384;

/// Python's `round` (halves to even), as smart_resize uses it.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// The (height, width) an image is resized to: multiples of 28, the pixel count within
/// [`min_pixels`, `max_pixels`], the aspect ratio kept as far as possible.
pub fn smart_resize(height: usize, width: usize, min_pixels: usize, max_pixels: usize) -> Result<(usize, usize), String> {
    if height == 0 || width == 0 {
        return Err("the image has no pixels".into());
    }
    let (h, w) = (height as f64, width as f64);
    if h.max(w) / h.min(w) > 200.0 {
        return Err(format!("aspect ratio {:.0} is over 200 ({width}x{height})", h.max(w) / h.min(w)));
    }
    let f = FACTOR as f64;
    let mut h_bar = (round_half_even(h / f) * f).max(f);
    let mut w_bar = (round_half_even(w / f) * f).max(f);
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

/// Pillow's `ImagingAlphaComposite` of `rgba` over opaque white, with its integer rounding.
fn over_white(c: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    let (c, a) = (c as u32, a as u32);
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = c * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS);
    let div255 = ((tmp >> 8) + tmp) >> 8;
    (div255 >> PRECISION_BITS) as u8
}

/// RGB, with any alpha composited on white (as transformers' `convert_to_rgb` does).
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        let [r, g, b, a] = src.0;
        dst.0 = [over_white(r, a), over_white(g, a), over_white(b, a)];
    }
    out
}

/// The largest image accepted: 64 megapixels (8192 x 8192; the processor resizes anything above
/// its `max_pixels`, 12.8 megapixels by default, down). A corrupt header can state any size, and
/// decoders allocate the stated image before reading its data.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;
/// The most the decoded image may take (64 megapixels in 8-bit RGBA).
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// Decodes an image file, applies its EXIF orientation and converts it to RGB.
pub fn load_image(path: &Path) -> Result<RgbImage, MediaError> {
    super::guarded(path, || decode_image(path))
}

fn decode_image(path: &Path) -> Result<RgbImage, MediaError> {
    let err = |r: String| MediaError::new(path, r);
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot open image file: {e}")))?;
    if meta.len() == 0 {
        return Err(err("the file is empty".into()));
    }
    let mut reader = ImageReader::open(path)
        .map_err(|e| err(format!("cannot open image file: {e}")))?
        .with_guessed_format()
        .map_err(|e| err(format!("cannot read image file: {e}")))?;
    if reader.format().is_none() {
        return Err(err("not an image in a supported format (PNG, JPEG, WebP, GIF)".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| err(format!("corrupt or unsupported image: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(err(format!("the image is {w}x{h}, over the limit of {} megapixels", MAX_IMAGE_PIXELS >> 20)));
    }
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(err(format!(
            "the image is {w}x{h} of {:?}: {} MiB decoded, over the limit of {} MiB",
            decoder.color_type(),
            decoder.total_bytes() >> 20,
            MAX_DECODE_BYTES >> 20
        )));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| err(format!("corrupt or truncated image: {e}")))?;
    img.apply_orientation(orientation);
    Ok(to_rgb(img))
}

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// The fixed-point arithmetic of a resampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// Pillow: weights with 22 fraction bits.
    Pillow,
    /// torchvision's uint8 antialiased kernels: int16 weights with as many fraction bits as the
    /// largest weight of the pass allows.
    Torch,
}

/// Per output pixel: first input index and the weights (Pillow's `precompute_coeffs`; the same
/// in torch's antialiased interpolation).
fn float_coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = w.iter().sum();
            (xmin, w.iter().map(|&v| if total != 0.0 { v / total } else { v }).collect())
        })
        .collect()
}

/// The weights in fixed point, and the number of fraction bits.
fn coefficients(in_size: usize, out_size: usize, arithmetic: Arithmetic) -> (Vec<(usize, Vec<i32>)>, u32) {
    let float = float_coefficients(in_size, out_size);
    let bits = match arithmetic {
        Arithmetic::Pillow => 32 - 8 - 2,
        Arithmetic::Torch => {
            let w_max = float.iter().flat_map(|(_, w)| w.iter()).cloned().fold(0.0f64, f64::max);
            let mut p = 0u32;
            while p < 22 && ((0.5 + w_max * (1u64 << (p + 1)) as f64) as i64) < (1 << 15) {
                p += 1;
            }
            p
        }
    };
    let fixed = float
        .into_iter()
        .map(|(first, w)| {
            let k = w
                .iter()
                .map(|&v| {
                    let scaled = v * (1u64 << bits) as f64;
                    (if scaled < 0.0 { (scaled - 0.5).trunc() } else { (scaled + 0.5).trunc() }) as i32
                })
                .collect();
            (first, k)
        })
        .collect();
    (fixed, bits)
}

/// One resampling pass along the width (`horizontal`) or the height, 8-bit in and out. Sums are
/// 32-bit, taps in order, as Pillow's `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc` add them
/// (the weights bound every partial sum well inside i32). The vertical pass accumulates whole rows
/// at once, so that its inner loop runs over contiguous bytes.
fn resample_pass(src: &RgbImage, out_len: usize, horizontal: bool, arithmetic: Arithmetic) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = if horizontal { (out_len, h) } else { (w, out_len) };
    let (coeffs, bits) = coefficients(if horizontal { w } else { h }, out_len, arithmetic);
    let mut out = RgbImage::new(out_w as u32, out_h as u32);
    if out_w == 0 || out_h == 0 || w == 0 || h == 0 {
        return out;
    }
    let raw = src.as_raw();
    let dst: &mut [u8] = out.as_mut();
    let round: i32 = if bits > 0 { 1 << (bits - 1) } else { 0 };
    let clip = |v: i32| (v >> bits).clamp(0, 255) as u8;
    if horizontal {
        for (src_row, dst_row) in raw.chunks_exact(w * 3).zip(dst.chunks_exact_mut(out_w * 3)) {
            for ((first, k), px) in coeffs.iter().zip(dst_row.chunks_exact_mut(3)) {
                let taps = &src_row[first * 3..(first + k.len()) * 3];
                let (mut r, mut g, mut b) = (round, round, round);
                for (p, &kv) in taps.chunks_exact(3).zip(k) {
                    r += p[0] as i32 * kv;
                    g += p[1] as i32 * kv;
                    b += p[2] as i32 * kv;
                }
                px[0] = clip(r);
                px[1] = clip(g);
                px[2] = clip(b);
            }
        }
    } else {
        let row_len = w * 3;
        let mut acc = vec![0i32; row_len];
        for ((first, k), dst_row) in coeffs.iter().zip(dst.chunks_exact_mut(row_len)) {
            acc.fill(round);
            for (i, &kv) in k.iter().enumerate() {
                let src_row = &raw[(first + i) * row_len..(first + i + 1) * row_len];
                for (a, &v) in acc.iter_mut().zip(src_row) {
                    *a += v as i32 * kv;
                }
            }
            for (d, &a) in dst_row.iter_mut().zip(&acc) {
                *d = clip(a);
            }
        }
    }
    out
}

/// Which pass runs first when both sides change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOrder {
    WidthFirst,
    HeightFirst,
}

impl PassOrder {
    /// Pillow 13's choice: the height pass first when the height shrinks by more than twice
    /// what the width shrinks by, else the width pass first.
    pub fn pillow(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Self {
        let (dw, dh) = (in_w as i64 - out_w as i64, in_h as i64 - out_h as i64);
        if out_h < in_h && dh > 2 * dw {
            Self::HeightFirst
        } else {
            Self::WidthFirst
        }
    }
}

/// Antialiased bicubic resize in two 8-bit passes, with Pillow's or torchvision's arithmetic.
pub fn resize_bicubic(img: &RgbImage, width: usize, height: usize, order: PassOrder, arithmetic: Arithmetic) -> RgbImage {
    let need_w = width != img.width() as usize;
    let need_h = height != img.height() as usize;
    let pass = |i: &RgbImage, len, horizontal| resample_pass(i, len, horizontal, arithmetic);
    match (need_w, need_h, order) {
        (false, false, _) => img.clone(),
        (true, false, _) => pass(img, width, true),
        (false, true, _) => pass(img, height, false),
        (true, true, PassOrder::WidthFirst) => pass(&pass(img, width, true), height, false),
        (true, true, PassOrder::HeightFirst) => pass(&pass(img, height, false), width, true),
    }
}

/// The normalised value of every 8-bit level, per channel, computed as the processor computes it
/// (so that pixel values match bit for bit). Pillow back-end (numpy): rescale in f64
/// (`v * (1/255)`), cast to f32, then `(x - mean) / std` in f32. torchvision back-end: rescale and
/// normalise fused, `(v - mean * 255) / (std * 255)` in f32.
fn normalised_levels(arithmetic: Arithmetic) -> [[f32; 256]; 3] {
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = match arithmetic {
                Arithmetic::Pillow => ((v as f64 * (1.0 / 255.0)) as f32 - CLIP_MEAN[c]) / CLIP_STD[c],
                Arithmetic::Torch => (v as f32 - CLIP_MEAN[c] * 255.0) / (CLIP_STD[c] * 255.0),
            };
        }
    }
    table
}

/// Patches of one or more frames of equal size: `frames` holds `temporal_patch_size` x t frames
/// (already resized), output rows in merge-block order, each row (C, t, 14, 14) flattened.
/// `arithmetic` names the back-end whose rescale-and-normalise arithmetic is followed.
pub fn patchify(frames: &[&RgbImage], arithmetic: Arithmetic) -> (Vec<f32>, [usize; 3]) {
    let (w, h) = (frames[0].width() as usize, frames[0].height() as usize);
    let (gh, gw) = (h / PATCH, w / PATCH);
    let gt = frames.len() / TEMPORAL_PATCH;
    let row_len = 3 * TEMPORAL_PATCH * PATCH * PATCH;
    let mut out = Vec::with_capacity(gt * gh * gw * row_len);
    let levels = normalised_levels(arithmetic);
    // Straight from the 8-bit frames: each patch row is 14 pixels of one channel, looked up.
    for t in 0..gt {
        for bh in 0..gh / MERGE {
            for bw in 0..gw / MERGE {
                for mh in 0..MERGE {
                    for mw in 0..MERGE {
                        let (py0, px0) = ((bh * MERGE + mh) * PATCH, (bw * MERGE + mw) * PATCH);
                        for (c, level) in levels.iter().enumerate() {
                            for frame in &frames[t * TEMPORAL_PATCH..(t + 1) * TEMPORAL_PATCH] {
                                let raw = frame.as_raw();
                                for py in 0..PATCH {
                                    let start = ((py0 + py) * w + px0) * 3 + c;
                                    let row = &raw[start..start + (PATCH - 1) * 3 + 1];
                                    out.extend(row.iter().step_by(3).map(|&v| level[v as usize]));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (out, [gt, gh, gw])
}

/// Settings of the image processor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageProcessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl Default for ImageProcessorConfig {
    fn default() -> Self {
        Self { min_pixels: DEFAULT_MIN_PIXELS, max_pixels: DEFAULT_MAX_PIXELS }
    }
}

impl ImageProcessorConfig {
    /// The pixel limits of a preprocessor_config.json (`min_pixels`, `max_pixels`); defaults where
    /// the file or a field is missing. A field that is there must be an integer, and the limits
    /// must satisfy `min_pixels <= max_pixels <=` [`MAX_IMAGE_PIXELS`].
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let mut cfg = Self::default();
        let Some(v) = read_config_json(path)? else { return Ok(cfg) };
        if let Some(m) = pixel_field(&v, &["min_pixels"], path)? {
            cfg.min_pixels = m;
        }
        if let Some(m) = pixel_field(&v, &["max_pixels"], path)? {
            cfg.max_pixels = m;
        }
        check_pixel_limits(cfg.min_pixels, cfg.max_pixels, path)?;
        Ok(cfg)
    }
}

/// A processor config file's JSON; None when there is no such file.
pub(crate) fn read_config_json(path: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        anyhow::anyhow!("{} is not valid JSON (line {}, column {}): {e}", path.display(), e.line(), e.column())
    })
}

/// An integer field at `keys` (nested); None when absent, an error naming the file and the field
/// when it is there but not a non-negative integer.
pub(crate) fn pixel_field(v: &serde_json::Value, keys: &[&str], path: &Path) -> anyhow::Result<Option<usize>> {
    let mut cur = v;
    for k in keys {
        match cur.get(k) {
            Some(next) => cur = next,
            None => return Ok(None),
        }
    }
    match cur.as_u64().and_then(|x| usize::try_from(x).ok()) {
        Some(x) => Ok(Some(x)),
        None if cur.is_null() => Ok(None),
        None => anyhow::bail!("{}: field `{}` is {cur}, not a pixel count", path.display(), keys.join(".")),
    }
}

/// Pixel limits that resizing can meet: `min <= max`, and `max` at most [`MAX_IMAGE_PIXELS`]
/// (they size the resized image, so a corrupt value must not size an allocation).
pub(crate) fn check_pixel_limits(min: usize, max: usize, path: &Path) -> anyhow::Result<()> {
    if min > max {
        anyhow::bail!("{}: the minimum pixel count {min} is above the maximum {max}", path.display());
    }
    if max as u64 > MAX_IMAGE_PIXELS {
        anyhow::bail!("{}: the maximum pixel count {max} is over the limit of {} megapixels", path.display(), MAX_IMAGE_PIXELS >> 20);
    }
    Ok(())
}

/// The vision tower's input for one RGB image: patches `[N, 1176]` and `[1, grid_h, grid_w]`.
pub fn preprocess_image(img: &RgbImage, cfg: &ImageProcessorConfig) -> Result<(Vec<f32>, [usize; 3]), String> {
    let (h, w) = smart_resize(img.height() as usize, img.width() as usize, cfg.min_pixels, cfg.max_pixels)?;
    let order = PassOrder::pillow(img.width() as usize, img.height() as usize, w, h);
    let resized = resize_bicubic(img, w, h, order, Arithmetic::Pillow);
    // One image is one temporal slice, repeated over the temporal patch.
    Ok(patchify(&[&resized, &resized], Arithmetic::Pillow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_follows_the_processor() {
        // Banker's rounding: 70 / 28 = 2.5 rounds to 2.
        assert_eq!(smart_resize(70, 70, 56 * 56, 28 * 28 * 16384).unwrap(), (56, 56));
        assert_eq!(smart_resize(123, 171, 3136, 12845056).unwrap(), (112, 168));
        // Too many pixels: scaled down, floored to multiples of 28.
        let (h, w) = smart_resize(1000, 2000, 3136, 200_000).unwrap();
        assert!(h * w <= 200_000 && h % 28 == 0 && w % 28 == 0, "{h}x{w}");
        // Too few: scaled up, ceiled.
        let (h, w) = smart_resize(10, 10, 3136, 12845056).unwrap();
        assert_eq!((h, w), (56, 56));
        assert!(smart_resize(1, 300, 3136, 12845056).is_err());
    }

    #[test]
    fn pillow_pass_order() {
        // Pillow 13 went height first on 250x150 -> 252x140 (a colleague's observation) and on
        // 100x60 -> 112x56 (the batch fixture), width first otherwise.
        assert_eq!(PassOrder::pillow(250, 150, 252, 140), PassOrder::HeightFirst);
        assert_eq!(PassOrder::pillow(100, 60, 112, 56), PassOrder::HeightFirst);
        assert_eq!(PassOrder::pillow(203, 137, 196, 140), PassOrder::WidthFirst);
        assert_eq!(PassOrder::pillow(220, 150, 168, 112), PassOrder::WidthFirst);
    }

    #[test]
    fn alpha_composites_on_white() {
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(10, 255), 10);
        assert_eq!(over_white(0, 128), 127);
    }

    #[test]
    fn resize_keeps_flat_colours_and_sizes() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 100, 50]));
        let r = resize_bicubic(&img, 56, 28, PassOrder::WidthFirst, Arithmetic::Pillow);
        assert_eq!((r.width(), r.height()), (56, 28));
        assert!(r.pixels().all(|p| p.0 == [200, 100, 50]));
    }

    /// The resampling pass written per output pixel with 64-bit sums, the plain form of
    /// Pillow's loops.
    fn plain_pass(src: &RgbImage, out_len: usize, horizontal: bool, arithmetic: Arithmetic) -> RgbImage {
        let (w, h) = (src.width() as usize, src.height() as usize);
        let (out_w, out_h) = if horizontal { (out_len, h) } else { (w, out_len) };
        let (coeffs, bits) = coefficients(if horizontal { w } else { h }, out_len, arithmetic);
        RgbImage::from_fn(out_w as u32, out_h as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let (first, k) = if horizontal { &coeffs[x] } else { &coeffs[y] };
            let mut px = [0u8; 3];
            for (c, out) in px.iter_mut().enumerate() {
                let mut sum: i64 = if bits > 0 { 1 << (bits - 1) } else { 0 };
                for (i, &kv) in k.iter().enumerate() {
                    let (sx, sy) = if horizontal { (first + i, y) } else { (x, first + i) };
                    sum += src.get_pixel(sx as u32, sy as u32).0[c] as i64 * kv as i64;
                }
                *out = (sum >> bits).clamp(0, 255) as u8;
            }
            image::Rgb(px)
        })
    }

    #[test]
    fn resampling_passes_equal_the_plain_per_pixel_sums() {
        // Noise with hard edges, so that the negative lobes push sums past 0 and 255.
        let mut state = 12345u32;
        let img = RgbImage::from_fn(203, 137, |_, _| {
            let mut v = [0u8; 3];
            for c in &mut v {
                state = state.wrapping_mul(1103515245).wrapping_add(12345);
                *c = if (state >> 16) % 3 == 0 { 255 } else { (state >> 24) as u8 / 8 };
            }
            image::Rgb(v)
        });
        for arithmetic in [Arithmetic::Pillow, Arithmetic::Torch] {
            for (len, horizontal) in [(196, true), (28, true), (412, true), (140, false), (56, false), (300, false)] {
                let fast = resample_pass(&img, len, horizontal, arithmetic);
                assert!(fast == plain_pass(&img, len, horizontal, arithmetic), "{arithmetic:?} {len} horizontal={horizontal}");
            }
        }
        assert_eq!(resample_pass(&img, 0, true, Arithmetic::Pillow).width(), 0);
    }

    #[test]
    fn patches_in_merge_block_order() {
        // A 28x56 image whose pixel value encodes its column: patch rows come 2x2 block by block.
        let mut img = RgbImage::new(56, 28);
        for (x, _, p) in img.enumerate_pixels_mut() {
            p.0 = [(x * 4) as u8, 0, 0];
        }
        let (px, grid) = patchify(&[&img, &img], Arithmetic::Pillow);
        assert_eq!(grid, [1, 2, 4]);
        assert_eq!(px.len(), 8 * 1176);
        // Row 1 is the second patch of the first 2x2 block: columns 14..28.
        let first_red = px[1176] * CLIP_STD[0] + CLIP_MEAN[0];
        assert!((first_red - (14.0 * 4.0 / 255.0)).abs() < 1e-5);
        // Row 2 is the block's lower-left patch (rows 14..28 of columns 0..14): column 0.
        let red = px[2 * 1176] * CLIP_STD[0] + CLIP_MEAN[0];
        assert!(red.abs() < 1e-5);
    }
}
