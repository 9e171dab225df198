//! `ttrav bench-model`: prefill and decode throughput of a thinker with random weights at a
//! config's sizes (the real 3B sizes by default), for machines without real weights or a Rust
//! toolchain (the GPU check). Text decoder only; the towers are not built.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use ttrav::omni::config::ThinkerConfig;
use ttrav::omni::generate::{decode, GenerationConfig};
use ttrav::{PrefillOptions, PromptBatch, Rng, Sampling, Thinker};

#[derive(Args)]
pub struct BenchModelArgs {
    /// A thinker config (sizes only).
    #[arg(long, default_value = "models/qwen2.5-omni-3b-thinker.json")]
    config: PathBuf,
    /// Keep only the first N decoder layers (0 = all).
    #[arg(long, default_value_t = 0)]
    layers: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, bf16 or f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    dtype: Option<String>,
    #[arg(long, default_value_t = 2048)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Samples sharing one prompt in the last measurement.
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// One JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Peak resident memory of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

pub fn run(args: BenchModelArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let dtype = ttrav::dtype_from_name(args.dtype.as_deref(), &device)?;
    let mut cfg = ThinkerConfig::from_file(&args.config).with_context(|| format!("cannot read {}", args.config.display()))?;
    (cfg.audio, cfg.vision) = (None, None);
    if args.layers > 0 {
        cfg.text.num_hidden_layers = cfg.text.num_hidden_layers.min(args.layers);
    }
    let t0 = Instant::now();
    let (thinker, tensors) = Thinker::random(cfg.clone(), 0, &device, dtype)?;
    let weight_bytes: usize = tensors.iter().map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes()).sum();
    drop(tensors);
    let build_s = t0.elapsed().as_secs_f64();
    let vocab = cfg.text.vocab_size as u32;
    let prompt: Vec<u32> = (0..args.prompt_tokens as u32).map(|i| (i * 7919 + 13) % vocab.min(150_000)).collect();
    let batch = PromptBatch::left_padded(&[prompt], 0)?;
    let gen = GenerationConfig { max_new_tokens: args.new_tokens, sampling: Sampling::new(1.0, 1.0, 0)?, stop_tokens: vec![] };
    let sync = || device.synchronize();

    // Warm-up (kernel compilation, caches), then prefill.
    let _ = thinker.prefill(&PromptBatch::left_padded(&[vec![1, 2, 3, 4]], 0)?, PrefillOptions::default())?;
    sync()?;
    let t = Instant::now();
    let prefill = thinker.prefill(&batch, PrefillOptions::default())?;
    sync()?;
    let prefill_s = t.elapsed().as_secs_f64();
    // Batch-1 decode.
    let t = Instant::now();
    let one = decode(&thinker, prefill.state.clone(), &gen, &mut Rng::seed(1))?;
    sync()?;
    let decode1_s = t.elapsed().as_secs_f64();
    let tokens1: usize = one.iter().map(|s| s.token_ids.len()).sum();
    // N samples sharing the prompt.
    let t = Instant::now();
    let many = decode(&thinker, prefill.state.fork(args.samples)?, &gen, &mut Rng::seed(2))?;
    sync()?;
    let decode_n_s = t.elapsed().as_secs_f64();
    let tokens_n: usize = many.iter().map(|s| s.token_ids.len()).sum();

    let report = serde_json::json!({
        "config": args.config.display().to_string(),
        "layers": cfg.text.num_hidden_layers,
        "device": args.device,
        "dtype": format!("{dtype:?}"),
        "weight_bytes": weight_bytes,
        "build_s": build_s,
        "prompt_tokens": args.prompt_tokens,
        "prefill_tokens_per_s": args.prompt_tokens as f64 / prefill_s,
        "decode_batch1_tokens_per_s": tokens1 as f64 / decode1_s,
        "samples": args.samples,
        "decode_shared_tokens_per_s": tokens_n as f64 / decode_n_s,
        "peak_rss_bytes": peak_rss(),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!("model         {} layers, {:.2} GB of {dtype:?} weights (random, built in {build_s:.1} s)", cfg.text.num_hidden_layers, weight_bytes as f64 / 1e9);
    println!("prefill       {} tokens: {:.0} tokens/s", args.prompt_tokens, report["prefill_tokens_per_s"].as_f64().unwrap_or(0.0));
    println!("decode        batch 1: {:.1} tokens/s", report["decode_batch1_tokens_per_s"].as_f64().unwrap_or(0.0));
    println!("decode        {} samples sharing the prompt: {:.1} tokens/s", args.samples, report["decode_shared_tokens_per_s"].as_f64().unwrap_or(0.0));
    if let Some(p) = peak_rss() {
        println!("peak RSS      {:.2} GB (host memory)", p as f64 / 1e9);
    }
    Ok(())
}
