//! Vision input on CPU: image preprocessing (decode + resize + patchify) of a 1280x720 JPEG, and
//! the vision tower at the Qwen2.5-Omni-3B sizes (hidden 1280, 16 heads, intermediate 3420) with
//! one full-attention and one window-attention block on a 448x448 image (1024 patches).
//!
//! Run: `cargo bench --bench vision`; `scripts/bench_image_vs_transformers.py` times the
//! transformers image processor on the same JPEG and prints the ratio.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::time::Duration;
use ttrav::media::image::{load_image, preprocess_image, ImageProcessorConfig};
use ttrav::omni::config::VisionConfig;
use ttrav::omni::vision::VisionTower;

/// A deterministic 1280x720 JPEG (gradients and stripes), written once under target/.
pub fn jpeg() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-1280x720.jpg");
    if !path.exists() {
        let img = image::RgbImage::from_fn(1280, 720, |x, y| {
            image::Rgb([(x / 5) as u8, (y / 3) as u8, if (x / 16 + y / 16) % 2 == 0 { 200 } else { 40 }])
        });
        img.save(&path).unwrap();
    }
    path
}

fn bench_preprocess(c: &mut Criterion) {
    let path = jpeg();
    let cfg = ImageProcessorConfig::default();
    let mut g = c.benchmark_group("image_preprocess");
    g.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    g.bench_function("jpeg_1280x720", |b| b.iter(|| preprocess_image(&load_image(&path).unwrap(), &cfg).unwrap()));
    g.finish();
}

fn bench_tower(c: &mut Criterion) {
    let cfg = VisionConfig {
        depth: 2,
        hidden_size: 1280,
        num_heads: 16,
        intermediate_size: 3420,
        patch_size: 14,
        temporal_patch_size: 2,
        spatial_merge_size: 2,
        window_size: 112,
        fullatt_block_indexes: vec![1],
        out_hidden_size: 2048,
        in_channels: 3,
    };
    let varmap = VarMap::new();
    let tower = VisionTower::load(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let pixels = Tensor::randn(0f32, 1.0, (1024, 1176), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("vision_tower_3b");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    g.bench_function("window_and_full_block_448px", |b| b.iter(|| tower.forward(&pixels, &[[1, 32, 32]], false).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_preprocess, bench_tower);
criterion_main!(benches);
