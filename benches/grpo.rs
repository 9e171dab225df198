//! One GRPO update on CPU at a Qwen2.5-Omni-3B-shaped single decoder layer (hidden 2048, 16 heads,
//! 2 KV heads, intermediate 11008; vocabulary cut to 4096) with LoRA rank 16 on all seven
//! projections: 4 answers of 32 tokens after a 128-token prompt (old log-probs, the
//! differentiable forward, backward, AdamW).
//!
//! Run: `cargo bench --bench grpo`.

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::time::Duration;
use ttrav::omni::generate::GenerationConfig;
use ttrav::rl::grpo::AdvantageKind;
use ttrav::rl::optim::{AdamW, AdamWConfig};
use ttrav::rl::trainer::{rollout, update, TrainGroup, UpdateConfig};
use ttrav::{EncodedPrompt, Rng, Sampling, Thinker, ThinkerConfig};

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
    let ucfg = UpdateConfig { advantage: AdvantageKind::Grpo, filter_equal_rewards: false, ..Default::default() };
    let mut g = c.benchmark_group("grpo_update_3b_one_layer_lora16");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    g.bench_function("4x32_after_128", |b| {
        b.iter(|| {
            let group = TrainGroup { rollout: &r, chosen: vec![0, 1, 2, 3], rewards: vec![1.0, 0.0, 0.5, 0.0], weight: 1.0 };
            update(&t, &mut opt, &[group], &ucfg).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_update);
criterion_main!(benches);
