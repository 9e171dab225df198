//! One GRPO update on CPU (old log-probs from the rollout, the differentiable forward, backward,
//! AdamW) with LoRA rank 16 on all seven projections of a Qwen2.5-Omni-3B-shaped decoder (hidden
//! 2048, 16 heads, 2 KV heads, intermediate 11008), random weights, f32:
//! - `grpo_update_3b_one_layer_lora16`: one decoder layer, vocabulary cut to 4096, 4 answers of 32
//!   tokens after a 128-token prompt, with and without gradient checkpointing;
//! - `grpo_update_3b_two_layers_lora16`: two layers, the checkpoint's vocabulary (151 936), 4
//!   answers of 256 tokens after a 2048-token prompt, gradient checkpointing on (the default);
//!   about 60 s an iteration on 2 cores, so 10 samples take about 13 minutes. Its peak memory
//!   comes from a separate run of `examples/update_memory` (same shape).
//!
//! Run: `cargo bench --bench grpo` (`-- one_layer` or `-- two_layers` for one group).

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::path::Path;
use std::time::Duration;
use ttrav::omni::generate::{FinishReason, GenerationConfig};
use ttrav::rl::grpo::AdvantageKind;
use ttrav::rl::optim::{AdamW, AdamWConfig};
use ttrav::rl::trainer::{rollout, update, Rollout, TrainGroup, UpdateConfig};
use ttrav::{EncodedPrompt, PrefillOptions, PromptBatch, Rng, Sampling, Thinker, ThinkerConfig};

fn bench_update(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-omni-3b-thinker.json");
    let mut cfg = ThinkerConfig::from_file(&path).unwrap();
    cfg.text.num_hidden_layers = 1;
    cfg.text.vocab_size = 4096;
    let mut t = Thinker::random(cfg, 0, &Device::Cpu, DType::F32).unwrap().0;
    let targets: Vec<String> = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].iter().map(|s| s.to_string()).collect();
    let adapters = ttrav::rl::lora::attach_lora(&mut t, 16, 32.0, &targets, 0.01, &mut Rng::seed(0)).unwrap();
    let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.A"), l.a.clone()), (format!("{n}.B"), l.b.clone())]).collect();
    let mut opt = AdamW::new(AdamWConfig { lr: 1e-4, ..Default::default() }, params).unwrap();
    let prompt = EncodedPrompt { input_ids: (0..128u32).map(|i| (i * 31 + 7) % 4000).collect(), ..Default::default() };
    let gen = GenerationConfig { max_new_tokens: 32, sampling: Sampling::new(1.0, 1.0, 0).unwrap(), stop_tokens: vec![] };
    let r = rollout(&t, &prompt, 0, 4, &gen, &mut Rng::seed(1)).unwrap();
    let mut g = c.benchmark_group("grpo_update_3b_one_layer_lora16");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    for checkpointing in [false, true] {
        let ucfg = UpdateConfig { advantage: AdvantageKind::Grpo, filter_equal_rewards: false, gradient_checkpointing: checkpointing, ..Default::default() };
        let name = if checkpointing { "4x32_after_128_checkpointed" } else { "4x32_after_128_whole_graph" };
        g.bench_function(name, |b| {
            b.iter(|| {
                let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2, 3], rewards: vec![1.0, 0.0, 0.5, 0.0], weight: 1.0 };
                update(&t, &mut opt, &[group], &ucfg).unwrap()
            })
        });
    }
    g.finish();
}

fn bench_update_two_layers(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-omni-3b-thinker.json");
    let mut cfg = ThinkerConfig::from_file(&path).unwrap();
    (cfg.audio, cfg.vision) = (None, None);
    cfg.text.num_hidden_layers = 2;
    let vocab = cfg.text.vocab_size as u32;
    let mut t = Thinker::random(cfg, 0, &Device::Cpu, DType::F32).unwrap().0;
    let targets: Vec<String> = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].iter().map(|s| s.to_string()).collect();
    let adapters = ttrav::rl::lora::attach_lora(&mut t, 16, 32.0, &targets, 0.0, &mut Rng::seed(0)).unwrap();
    let params = adapters.iter().flat_map(|(n, l)| [(format!("{n}.A"), l.a.clone()), (format!("{n}.B"), l.b.clone())]).collect();
    let mut opt = AdamW::new(AdamWConfig { lr: 1e-4, ..Default::default() }, params).unwrap();
    let ids: Vec<u32> = (0..2048u32).map(|i| (i * 7919 + 13) % (vocab - 1000)).collect();
    let context = t.prefill(&PromptBatch::left_padded(&[ids], 0).unwrap(), PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers: Vec<Vec<u32>> = (0..4u32).map(|a| (0..256u32).map(|k| (k * 104_729 + a * 31) % (vocab - 1000)).collect()).collect();
    let logprobs = answers.iter().map(|a| vec![-12.0f32; a.len()]).collect();
    let r = Rollout { context, answers, logprobs, finish: vec![FinishReason::Length; 4] };
    let ucfg = UpdateConfig { advantage: AdvantageKind::Grpo, filter_equal_rewards: false, gradient_checkpointing: true, ..Default::default() };
    let mut g = c.benchmark_group("grpo_update_3b_two_layers_lora16");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(600));
    g.bench_function("4x256_after_2048_full_vocab", |b| {
        b.iter(|| {
            let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2, 3], rewards: vec![1.0, 0.0, 1.0, 0.0], weight: 1.0 };
            update(&t, &mut opt, &[group], &ucfg).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_update, bench_update_two_layers);
criterion_main!(benches);
