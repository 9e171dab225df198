//! Image input: every supported format made by the test, EXIF orientation, alpha and greyscale,
//! the sizes the processor must handle (tiny, huge, extreme aspect ratios), corrupt files, and
//! `ttrav generate --image` on a fixture model.

mod common;

use common::fixture;
use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use std::path::{Path, PathBuf};
use ttrav::media::image::{load_image, preprocess_image, ImageProcessorConfig};

fn save(dir: &Path, name: &str, img: &image::DynamicImage, format: ImageFormat) -> PathBuf {
    let p = dir.join(name);
    img.save_with_format(&p, format).unwrap();
    p
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 90]))
}

#[test]
fn formats_decode_to_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::DynamicImage::ImageRgb8(gradient(64, 48));
    let png = load_image(&save(dir.path(), "a.png", &img, ImageFormat::Png)).unwrap();
    assert_eq!(png, gradient(64, 48));
    let gif = load_image(&save(dir.path(), "a.gif", &img, ImageFormat::Gif)).unwrap();
    assert_eq!(gif.dimensions(), (64, 48));
    let jpg = load_image(&save(dir.path(), "a.jpg", &img, ImageFormat::Jpeg)).unwrap();
    let diff = jpg.pixels().zip(png.pixels()).map(|(a, b)| (a.0[0] as i32 - b.0[0] as i32).abs()).max().unwrap();
    assert!(diff < 24, "JPEG is lossy but close: {diff}");
    let webp = load_image(&save(dir.path(), "a.webp", &img, ImageFormat::WebP)).unwrap();
    assert_eq!(webp, png, "lossless WebP");
}

#[test]
fn alpha_is_composited_on_white_and_grey_is_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = RgbaImage::from_fn(4, 4, |x, _| if x < 2 { Rgba([0, 0, 0, 0]) } else { Rgba([10, 20, 30, 255]) });
    let p = save(dir.path(), "alpha.png", &image::DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    let img = load_image(&p).unwrap();
    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(3, 0).0, [10, 20, 30]);
    let grey = image::GrayImage::from_pixel(3, 3, image::Luma([77]));
    let p = save(dir.path(), "grey.png", &image::DynamicImage::ImageLuma8(grey), ImageFormat::Png);
    assert_eq!(load_image(&p).unwrap().get_pixel(1, 1).0, [77, 77, 77]);
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::DynamicImage::ImageRgb8(gradient(40, 20));
    let mut jpeg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
    let p = dir.path().join("rotated.jpg");
    std::fs::write(&p, common::with_exif_orientation(&jpeg, 6)).unwrap();
    assert_eq!(load_image(&p).unwrap().dimensions(), (20, 40), "rotated by 90 degrees");
}

#[test]
fn sizes_the_processor_must_handle() {
    let cfg = ImageProcessorConfig::default();
    // 1x1: scaled up to the minimum (56x56 -> 2x2 patches... 4x4 patches of 14).
    let (px, grid) = preprocess_image(&RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])), &cfg).unwrap();
    assert_eq!(grid, [1, 4, 4]);
    assert_eq!(px.len(), 16 * 1176);
    // An aspect ratio over 200 is refused with a clear reason.
    let e = preprocess_image(&RgbImage::new(402, 2), &cfg).unwrap_err();
    assert!(e.contains("aspect ratio"), "{e}");
    // Beyond max_pixels: resized, not rejected.
    let small = ImageProcessorConfig { max_pixels: 200_000, ..cfg };
    let (_, grid) = preprocess_image(&gradient(1600, 1200), &small).unwrap();
    assert!(grid[1] * grid[2] * 196 <= 200_000 && grid[1] % 2 == 0 && grid[2] % 2 == 0, "{grid:?}");
}

#[test]
fn bad_image_files_name_the_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::DynamicImage::ImageRgb8(gradient(64, 48));
    let png = std::fs::read(save(dir.path(), "ok.png", &img, ImageFormat::Png)).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.png", vec![], "empty"),
        ("notes.png", b"not an image at all".to_vec(), "corrupt"),
        ("notes.txt", b"not an image at all".to_vec(), "not an image"),
        ("truncated.png", png[..png.len() / 2].to_vec(), "corrupt"),
        ("garbage.jpg", [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7u8; 64][..]].concat(), "corrupt"),
    ];
    for (name, bytes, reason) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        let e = load_image(&p).expect_err(name);
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.to_lowercase().contains(reason), "{name}: {msg}");
    }
    assert!(load_image(&dir.path().join("missing.png")).unwrap_err().to_string().contains("cannot open"));
}

#[test]
fn cli_generate_with_images() {
    let dir = tempfile::tempdir().unwrap();
    let a = save(dir.path(), "a.png", &image::DynamicImage::ImageRgb8(gradient(90, 60)), ImageFormat::Png);
    let b = save(dir.path(), "b.jpg", &image::DynamicImage::ImageRgb8(gradient(40, 120)), ImageFormat::Jpeg);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["generate", "--model"])
        .arg(fixture("text_basic"))
        .arg("--image")
        .arg(&a)
        .arg("--audio")
        .arg(dir.path().join("missing.wav"))
        .args(["--prompt", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wav"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["generate", "--model"])
        .arg(fixture("text_basic"))
        .arg("--image")
        .arg(&a)
        .arg("--image")
        .arg(&b)
        .args(["--prompt", "Compare them.", "--greedy", "--max-new-tokens", "3", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 3);
}
