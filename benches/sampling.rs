//! Sampling the next token at the real vocabulary (151 646 ids): B = 1 and 64 rows of logits
//! on the CPU, greedy, plain temperature, top-k 50, top-p 0.9, and both. The logits are normal
//! with standard deviation 5 (entropy about 3.8 nats, the top 121 ids hold 90 % of the mass: a
//! language model's spread, not a flat random-weight one). `sample_rows` reads the rows in place,
//! one per thread.
//!
//! Run: `cargo bench --bench sampling` (figures go in BENCHMARKS.md).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use ttrav::{Rng, Sampling};

const VOCAB: usize = 151_646;

fn logits(rows: usize) -> Tensor {
    let data = Rng::seed(1).normal_vec(rows * VOCAB, 5.0);
    Tensor::from_vec(data, (rows, VOCAB), &Device::Cpu).unwrap()
}

/// One step's draws: every row's token and log-probability.
fn sample(logits: &Tensor, sampling: Sampling, rng: &mut Rng) -> Vec<ttrav::sampling::Choice> {
    ttrav::sampling::sample_rows(logits, sampling, rng).unwrap()
}

fn bench_sampling(c: &mut Criterion) {
    let settings = [
        ("greedy", Sampling::Greedy),
        ("temperature", Sampling::Random { temperature: 1.0, top_p: 1.0, top_k: 0 }),
        ("top_k_50", Sampling::Random { temperature: 1.0, top_p: 1.0, top_k: 50 }),
        ("top_p_0.9", Sampling::Random { temperature: 1.0, top_p: 0.9, top_k: 0 }),
        ("top_k_50_top_p_0.9", Sampling::Random { temperature: 1.0, top_p: 0.9, top_k: 50 }),
    ];
    for rows in [1, 64] {
        let t = logits(rows);
        let mut g = c.benchmark_group(format!("sampling_v151646_b{rows}"));
        g.sample_size(10).measurement_time(Duration::from_secs(if rows == 1 { 2 } else { 10 })).warm_up_time(Duration::from_secs(1));
        g.throughput(Throughput::Elements(rows as u64));
        for (name, sampling) in settings {
            let mut rng = Rng::seed(0);
            g.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| sample(&t, sampling, &mut rng)));
        }
        g.finish();
    }
}

criterion_group!(benches, bench_sampling);
criterion_main!(benches);
