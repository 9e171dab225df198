//! Text decoder throughput on CPU: prefill and decode tokens/s for a tiny config and for one
//! decoder layer at the Qwen2.5-Omni-3B sizes (hidden 2048, 16 heads, 2 KV heads, intermediate
//! 11008; vocabulary cut to 4096 so that the layer, not the lm_head, is measured), and N = 8
//! samples sharing one prefill against 8 separate generations; and a rollout at the real
//! vocabulary (151 646): 16 samples of a 4 096-token prompt, 64 new tokens each, through one
//! 3B-sized layer, reading one shared copy of the prompt's cache or a copy each; and 16 samples of
//! 64 tokens from a 512-token prompt on a small thinker (for the comparison with transformers);
//! and, side by side with transformers (`scripts/bench_decoder_vs_transformers.py`), prefill and an
//! 8-sample decode on the bundled demo model and on the 3B thinker cut to 2 layers with the real
//! vocabulary.
//!
//! Run: `cargo bench --bench decoder` (figures go in BENCHMARKS.md).

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::Path;
use std::time::Duration;
use ttrav::omni::generate::decode;
use ttrav::{GenerationConfig, PrefillOptions, PromptBatch, PromptState, Rng, Sampling, Thinker, ThinkerConfig};

fn tiny() -> Thinker {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/omni/text_basic");
    Thinker::load(&ttrav::ModelSource::Local(dir), &Device::Cpu, DType::F32).unwrap()
}

/// The 3B thinker's text decoder cut to `layers` layers (and to `vocab` rows when given), random
/// weights.
fn cut_3b(layers: usize, vocab: Option<usize>) -> Thinker {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-omni-3b-thinker.json");
    let mut cfg = ThinkerConfig::from_file(&path).unwrap();
    cfg.text.num_hidden_layers = layers;
    if let Some(v) = vocab {
        cfg.text.vocab_size = v;
    }
    Thinker::random(cfg, 0, &Device::Cpu, DType::F32).unwrap().0
}

fn one_3b_layer() -> Thinker {
    cut_3b(1, Some(4096))
}

fn prompt(len: usize, vocab: usize) -> PromptBatch {
    let ids: Vec<u32> = (0..len).map(|i| ((i * 7919 + 13) % vocab) as u32).collect();
    PromptBatch::left_padded(&[ids], 0).unwrap()
}

fn greedy(n: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens: n, sampling: Sampling::Greedy, stop_tokens: vec![] }
}

/// `n` tokens sampled at temperature 1 from the whole distribution, no stop token.
fn sampled(n: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens: n, sampling: Sampling::Random { temperature: 1.0, top_p: 1.0, top_k: 0 }, stop_tokens: vec![] }
}

fn prefill_and_decode(c: &mut Criterion, name: &str, model: &Thinker, prompt_len: usize, new_tokens: usize) {
    let vocab = model.config().text.vocab_size;
    let batch = prompt(prompt_len, vocab.min(400));
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(prompt_len as u64));
    g.bench_function(BenchmarkId::new("prefill", prompt_len), |b| {
        b.iter(|| model.prefill(&batch, PrefillOptions::default()).unwrap())
    });
    let state = model.prefill(&batch, PrefillOptions::default()).unwrap().state;
    g.throughput(Throughput::Elements(new_tokens as u64));
    g.bench_function(BenchmarkId::new("decode", new_tokens), |b| {
        b.iter(|| decode(model, state.clone(), &greedy(new_tokens), &mut Rng::seed(0)).unwrap())
    });
    g.finish();
}

fn bench_tiny(c: &mut Criterion) {
    prefill_and_decode(c, "tiny", &tiny(), 64, 32);
}

fn bench_3b_layer(c: &mut Criterion) {
    prefill_and_decode(c, "3b_one_layer", &one_3b_layer(), 128, 16);
}

/// 8 samples of a 128-token prompt, 16 new tokens each: one shared prefill (forked cache, one
/// batch of 8) against 8 separate prefill + decode runs.
fn bench_shared_prefill(c: &mut Criterion) {
    let model = one_3b_layer();
    let batch = prompt(128, 400);
    let cfg = sampled(16);
    let mut g = c.benchmark_group("3b_one_layer_8_samples");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(8 * 16));
    g.bench_function("shared_prefill", |b| {
        b.iter(|| ttrav::generate(&model, &batch, 8, &cfg, &mut Rng::seed(0)).unwrap())
    });
    g.bench_function("separate_generations", |b| {
        b.iter(|| {
            let mut rng = Rng::seed(0);
            (0..8).map(|_| ttrav::generate(&model, &batch, 1, &cfg, &mut rng).unwrap()).count()
        })
    });
    g.finish();
}

/// One 3B-sized layer with the real vocabulary (the lm_head and the sampler at full size).
fn one_3b_layer_full_vocab() -> Thinker {
    cut_3b(1, Some(151_646))
}

/// Key/value bytes a rollout holds once its buffers are allocated: `state` after one decode
/// step with room reserved for `new_tokens`.
fn rollout_cache_bytes(model: &Thinker, mut state: PromptState, new_tokens: usize) -> usize {
    state.reserve(new_tokens - 1);
    let next = vec![1; state.batch_size()];
    model.decode_step(&mut state, &next).unwrap();
    state.cache_bytes()
}

/// 16 samples x 64 new tokens from one 4 096-token prompt (prefilled once, outside the timing):
/// the samples reading one copy of the prompt's cache, against each holding its own copy.
fn bench_rollout_4096(c: &mut Criterion) {
    let (n, prompt_len, new_tokens) = (16, 4096, 64);
    let model = one_3b_layer_full_vocab();
    let batch = prompt(prompt_len, 151_000);
    let state = model.prefill(&batch, PrefillOptions::default()).unwrap().state;
    let cfg = sampled(new_tokens);
    let shared = state.fork(n).unwrap();
    let copied = shared.unshared().unwrap();
    eprintln!(
        "rollout_4096: key/value cache bytes with room for {new_tokens} tokens: shared prompt {:.1} MB, copied {:.1} MB",
        rollout_cache_bytes(&model, shared.clone(), new_tokens) as f64 / 1e6,
        rollout_cache_bytes(&model, copied.clone(), new_tokens) as f64 / 1e6,
    );
    let mut g = c.benchmark_group("3b_one_layer_v151646_16_samples_of_4096");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements((n * new_tokens) as u64));
    g.bench_function("shared_prompt_cache", |b| b.iter(|| decode(&model, shared.clone(), &cfg, &mut Rng::seed(0)).unwrap()));
    g.bench_function("copied_prompt_cache", |b| b.iter(|| decode(&model, copied.clone(), &cfg, &mut Rng::seed(0)).unwrap()));
    g.finish();
}

/// 16 samples x 64 new tokens (temperature 1, no stop token) from a 512-token prompt on a small
/// thinker (4 layers, hidden 512, the real vocabulary): one `generate` call, prefill included.
/// `scripts/bench_rollout_vs_transformers.py` times transformers on the same work.
fn bench_small_thinker(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-omni-small-4x512.json");
    let model = Thinker::random(ThinkerConfig::from_file(&path).unwrap(), 0, &Device::Cpu, DType::F32).unwrap().0;
    let batch = prompt(512, 151_000);
    let cfg = sampled(64);
    let mut g = c.benchmark_group("small_thinker_4x512");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(16 * 64));
    g.bench_function("16_samples_of_64_from_512", |b| b.iter(|| ttrav::generate(&model, &batch, 16, &cfg, &mut Rng::seed(0)).unwrap()));
    g.finish();
}

/// Prefill of one prompt (its last position's logits), then 8 samples of `new_tokens` (temperature
/// 1, no stop token) decoded from the prefilled prompt, shared: the two halves of a rollout, each
/// timed alone. `scripts/bench_decoder_vs_transformers.py` times transformers on the same work.
fn side_by_side(c: &mut Criterion, name: &str, model: &Thinker, prompt_len: usize, text_ids: usize, new_tokens: usize) {
    let batch = prompt(prompt_len, text_ids);
    let cfg = sampled(new_tokens);
    let state = model.prefill(&batch, PrefillOptions::default()).unwrap().state.fork(8).unwrap();
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(prompt_len as u64));
    g.bench_function(format!("prefill_{prompt_len}"), |b| b.iter(|| model.prefill(&batch, PrefillOptions::default()).unwrap()));
    g.throughput(Throughput::Elements(8 * new_tokens as u64));
    g.bench_function(format!("decode_8x{new_tokens}"), |b| b.iter(|| decode(model, state.clone(), &cfg, &mut Rng::seed(0)).unwrap()));
    g.finish();
}

/// The bundled demo model (`models/ttrav-demo`: 4 layers, hidden 128, vocabulary 512), a text
/// prompt of its BPE tokens.
fn bench_demo_model(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ttrav-demo");
    let model = Thinker::load(&ttrav::ModelSource::Local(dir), &Device::Cpu, DType::F32).unwrap();
    side_by_side(c, "demo_model", &model, 256, 400, 64);
}

/// The 3B thinker's text decoder cut to 2 layers, with its real vocabulary (151 936 rows).
fn bench_3b_two_layers(c: &mut Criterion) {
    let model = cut_3b(2, None);
    side_by_side(c, "3b_two_layers_v151936", &model, 512, 151_000, 32);
}

criterion_group!(benches, bench_tiny, bench_3b_layer, bench_shared_prefill);
criterion_group!(rollout, bench_rollout_4096, bench_small_thinker);
criterion_group!(versus_transformers, bench_demo_model, bench_3b_two_layers);
criterion_main!(benches, rollout, versus_transformers);
