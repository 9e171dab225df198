//! Sentence encoders on CPU: sentences per second for all-MiniLM-L6-v2 and all-mpnet-base-v2
//! (real weights from the hub cache; run `scripts/fetch-test-encoders.sh` first) at batch sizes
//! 1, 16 and 64, with the embedding cache off.
//!
//! Run: `cargo bench --bench embed`; `scripts/bench_encoders_vs_sentence_transformers.py` runs
//! it beside sentence-transformers on the same sentences and threads and prints the ratios.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use ttrav::Encoder;

/// 64 deterministic sentences of 6 to 40 words (the comparison script builds the same list).
pub fn sentences() -> Vec<String> {
    const WORDS: &[&str] = &[
        "the", "model", "listens", "to", "a", "short", "clip", "of", "rain", "and", "answers", "with", "one",
        "word", "while", "music", "plays", "in", "background", "speaker", "says", "that", "dog", "barks", "loudly",
        "near", "river", "bank", "under", "bright", "morning", "sky",
    ];
    let mut state = 7u32;
    (0..64)
        .map(|_| {
            state = state.wrapping_mul(1103515245).wrapping_add(12345);
            let n = 6 + (state >> 16) as usize % 35;
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(1103515245).wrapping_add(12345);
                    WORDS[(state >> 16) as usize % WORDS.len()]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn bench_encoder(c: &mut Criterion, short: &str, id: &str) {
    let enc = match Encoder::load(id, &candle_core::Device::Cpu) {
        Ok(e) => e,
        Err(e) => panic!("{id}: {e:#}\nrun scripts/fetch-test-encoders.sh first"),
    };
    enc.set_cache_capacity(0);
    let texts = sentences();
    let mut g = c.benchmark_group(format!("embed_{short}"));
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(texts.len() as u64));
    for batch in [1usize, 16, 64] {
        let mut enc_b = Encoder::load(id, &candle_core::Device::Cpu).unwrap();
        enc_b.set_cache_capacity(0);
        enc_b.batch_size = batch;
        g.bench_function(format!("batch_{batch}"), |b| b.iter(|| enc_b.embed(&texts).unwrap()));
    }
    g.finish();
}

fn bench_minilm(c: &mut Criterion) {
    bench_encoder(c, "minilm", "sentence-transformers/all-MiniLM-L6-v2");
}

fn bench_mpnet(c: &mut Criterion) {
    bench_encoder(c, "mpnet", "sentence-transformers/all-mpnet-base-v2");
}

criterion_group!(benches, bench_minilm, bench_mpnet);
criterion_main!(benches);
