//! Peak memory and time of one GRPO update (differentiable forward, backward, AdamW) at a
//! Qwen2.5-Omni-3B-shaped decoder cut to 2 layers (hidden 2048, 16 heads, 2 KV heads,
//! intermediate 11008, the checkpoint's vocabulary 151 936), LoRA rank 16 on all seven projections, f32 on
//! the CPU, random weights: one prompt of PROMPT tokens and ANSWERS answers of TOKENS tokens each
//! (defaults 2048, 4, 256: the bench shape), in micro-batches of MICRO answers (0 = all),
//! with gradient checkpointing when CKPT is 1 (the default; each decoder layer recomputed in the
//! backward pass, the logits made `--logits-chunk` 512 tokens at a time) or the whole graph kept
//! when it is 0.
//! The peak is the process's resident high-water mark during the update alone (reset with
//! `/proc/self/clear_refs` after loading and prefilling; Linux), printed with the time as one JSON
//! line. One measurement per process.
//!
//!   cargo run --release --example update_memory [-- PROMPT ANSWERS TOKENS MICRO CKPT]

use candle_core::{DType, Device};
use std::path::Path;
use std::time::Instant;
use ttrav::rl::grpo::AdvantageKind;
use ttrav::rl::optim::{AdamW, AdamWConfig};
use ttrav::rl::trainer::{update, Rollout, TrainGroup, UpdateConfig};
use ttrav::{PrefillOptions, PromptBatch, Rng, Thinker, ThinkerConfig};

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status.lines().find(|l| l.starts_with(field)).expect("the field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("sizes are integers")).collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (prompt_len, n, tokens, micro, ckpt) = (arg(0, 2048), arg(1, 4), arg(2, 256), arg(3, 0), arg(4, 1) == 1);
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
    let ids: Vec<u32> = (0..prompt_len as u32).map(|i| (i * 7919 + 13) % (vocab - 1000)).collect();
    let context = t.prefill(&PromptBatch::left_padded(&[ids], 0).unwrap(), PrefillOptions::default()).unwrap().context(0).unwrap();
    let answers: Vec<Vec<u32>> = (0..n).map(|a| (0..tokens as u32).map(|k| (k * 104_729 + a as u32 * 31) % (vocab - 1000)).collect()).collect();
    // Old log-probabilities a little off the current ones, so that the ratio is not 1.
    let logprobs = answers.iter().map(|a| vec![-12.0f32; a.len()]).collect();
    let rollout = Rollout { context, answers, logprobs, finish: vec![ttrav::omni::generate::FinishReason::Length; n] };
    let rewards: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let ucfg = UpdateConfig {
        advantage: AdvantageKind::Grpo,
        filter_equal_rewards: false,
        micro_batch: micro,
        gradient_checkpointing: ckpt,
        ..Default::default()
    };
    let before_kb = rss_kb("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak (Linux)");
    let start = Instant::now();
    let group = TrainGroup { rollout: &rollout, chosen: (0..n).collect(), rewards, weight: 1.0 };
    let stats = update(&t, &mut opt, &[group], &ucfg).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let peak_kb = rss_kb("VmHWM:");
    assert!(stats.skipped.is_none() && stats.grad_norm > 0.0, "{stats:?}");
    println!(
        "{{\"prompt\": {prompt_len}, \"answers\": {n}, \"tokens\": {tokens}, \"micro_batch\": {micro}, \"checkpointing\": {ckpt}, \"seconds\": {seconds:.2}, \
         \"rss_before_gb\": {:.2}, \"peak_gb\": {:.2}, \"update_peak_over_before_gb\": {:.2}}}",
        before_kb as f64 / 1048576.0,
        peak_kb as f64 / 1048576.0,
        (peak_kb.saturating_sub(before_kb)) as f64 / 1048576.0
    );
}
