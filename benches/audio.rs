//! Audio front end and tower on CPU: log-mel extraction (seconds of audio per second), and one
//! audio-tower layer at the Qwen2.5-Omni-3B sizes (d_model 1280, 20 heads, ffn 5120) on 30 s
//! of audio (3000 frames, 15 chunks of 200).
//!
//! Run: `cargo bench --bench audio`; `scripts/bench_mel_vs_transformers.py` runs the mel bench
//! beside transformers' WhisperFeatureExtractor and prints the ratio.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use ttrav::media::mel::MelExtractor;
use ttrav::omni::audio::AudioTower;
use ttrav::omni::config::AudioConfig;

/// A deterministic test clip: two tones and noise from a simple LCG, at 16 kHz.
pub fn clip(seconds: usize) -> Vec<f32> {
    let mut state = 12345u32;
    (0..seconds * 16000)
        .map(|i| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f32 / 16000.0;
            0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + 0.2 * (2.0 * std::f32::consts::PI * 1250.0 * t).sin() + 0.05 * noise
        })
        .collect()
}

fn bench_mel(c: &mut Criterion) {
    let ex = MelExtractor::new();
    let mut g = c.benchmark_group("log_mel");
    g.sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    for secs in [10usize, 30] {
        let x = clip(secs);
        // Throughput in seconds of audio (reported by criterion as "elements").
        g.throughput(Throughput::Elements(secs as u64));
        g.bench_function(format!("{secs}s"), |b| b.iter(|| ex.extract(&x)));
    }
    g.finish();
}

fn bench_tower_layer(c: &mut Criterion) {
    let cfg = AudioConfig {
        num_mel_bins: 128,
        d_model: 1280,
        encoder_layers: 1,
        encoder_attention_heads: 20,
        encoder_ffn_dim: 5120,
        n_window: 100,
        max_source_positions: 1500,
        output_dim: 2048,
    };
    // Weights from a VarMap (initialised in memory): timing does not depend on their values.
    let varmap = VarMap::new();
    let tower = AudioTower::load(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let (mel, frames) = MelExtractor::new().extract(&clip(30));
    let mel = Tensor::from_vec(mel, (128, frames), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("audio_tower_3b");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(30));
    g.bench_function("one_layer_30s", |b| b.iter(|| tower.forward(std::slice::from_ref(&mel), false).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_mel, bench_tower_layer);
criterion_main!(benches);
