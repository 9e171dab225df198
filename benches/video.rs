//! MP4 video decoding on CPU: frames per second for a synthetic H.264 clip (320x240, 60 frames
//! at 30 fps, moving stripes over a gradient, made by OpenH264's encoder), decoding every frame
//! to RGB, and sampling it at 2 fps (4 frames kept: every sample decoded, 4 converted).
//!
//! Run: `cargo bench --bench video`. OpenH264 uses its x86 assembly only when `nasm` was found at
//! build time; without it (the default here) the decoder is plain C++.

#[path = "../tests/common/synth_mp4.rs"]
mod synth_mp4;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use ttrav::media::mp4::{load_mp4, load_mp4_all_frames, FrameSampling};

fn bench_mp4(c: &mut Criterion) {
    let (w, h, n) = (320, 240, 60);
    let frames = synth_mp4::busy_frames(n, w, h);
    let bytes = synth_mp4::mux(Some(&synth_mp4::encode_h264(&frames, 30)), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, bytes).unwrap();

    let mut g = c.benchmark_group("mp4_decode");
    g.sample_size(20).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    // Throughput in source frames (reported by criterion as "elements").
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("{w}x{h}_{n}_frames_all_to_rgb"), |b| {
        b.iter(|| {
            let v = load_mp4_all_frames(&path).unwrap();
            assert_eq!(v.frames.len(), n);
        })
    });
    g.bench_function(format!("{w}x{h}_{n}_frames_sampled_2fps"), |b| {
        b.iter(|| {
            let v = load_mp4(&path, &FrameSampling::default()).unwrap();
            assert_eq!(v.frames.len(), 4);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_mp4);
criterion_main!(benches);
