//! Reward kernels on CPU: the cluster vote (K-means for K in 2..4 with the cosine silhouette) on
//! 16, 64 and 256 candidates of 384-d vectors, and sentence BLEU / ROUGE-L on 1000 pairs.
//!
//! Run: `cargo bench --bench rewards`; `scripts/bench_rewards_vs_python.py` runs the same work
//! with scikit-learn, sacrebleu and rouge-score and prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use ttrav::reward::cluster::{cluster_auto_k, modal_cluster, ClusterConfig};
use ttrav::reward::metrics::{rouge_l, sentence_bleu};

/// `n` unit vectors of 384 dimensions around 3 centres (deterministic; the Python script builds
/// the same points).
pub fn points(n: usize) -> Vec<Vec<f32>> {
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    let centres: Vec<Vec<f32>> = (0..3).map(|_| (0..384).map(|_| next()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % 3];
            let v: Vec<f32> = c.iter().map(|&x| x + 0.3 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// 1000 (hypothesis, reference) pairs of 8-30 words.
pub fn pairs() -> Vec<(String, String)> {
    const WORDS: &[&str] = &["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "were", "running", "in", "parks", "and", "birds", "sang", "songs", "loudly", "near", "rivers", "today"];
    let mut state = 99u64;
    let mut next = |m: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) % m as u64) as usize
    };
    (0..1000)
        .map(|_| {
            let sentence = |next: &mut dyn FnMut(usize) -> usize| {
                let n = 8 + next(23);
                (0..n).map(|_| WORDS[next(WORDS.len())]).collect::<Vec<_>>().join(" ")
            };
            (sentence(&mut next), sentence(&mut next))
        })
        .collect()
}

fn bench_cluster(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster_vote");
    g.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    let cfg = ClusterConfig::default();
    for n in [16usize, 64, 256] {
        let p = points(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                let c = cluster_auto_k(&p, &cfg);
                modal_cluster(&p, &c)
            })
        });
    }
    g.finish();
}

fn bench_metrics(c: &mut Criterion) {
    let p = pairs();
    let mut g = c.benchmark_group("metrics_1k_pairs");
    g.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(p.len() as u64));
    g.bench_function("bleu", |b| b.iter(|| p.iter().map(|(h, r)| sentence_bleu(h, r).score).sum::<f64>()));
    g.bench_function("rouge_l", |b| b.iter(|| p.iter().map(|(h, r)| rouge_l(r, h).2).sum::<f64>()));
    g.finish();
}

criterion_group!(benches, bench_cluster, bench_metrics);
criterion_main!(benches);
