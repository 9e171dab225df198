//! `ttrav generate`: one prompt, N samples.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::time::Instant;
use ttrav::{
    device_from_name, dtype_from_name, generate, ContentItem, GenerationConfig, ModelSource, Processor, PromptBatch,
    Rng, Sampling, Thinker,
};

#[derive(Args)]
pub struct GenerateArgs {
    /// Model directory, or hub id such as Qwen/Qwen2.5-Omni-3B (read from the HF cache).
    #[arg(long)]
    model: String,
    /// The user's message (it follows the media items in the prompt).
    #[arg(long)]
    prompt: String,
    /// An audio file (WAV, FLAC, MP3, Ogg Vorbis, AAC in MP4/M4A); repeatable. Media flags
    /// keep their command-line order in the prompt, before the text.
    #[arg(long, value_name = "PATH")]
    audio: Vec<std::path::PathBuf>,
    /// An image file (PNG, JPEG, WebP, GIF); repeatable.
    #[arg(long, value_name = "PATH")]
    image: Vec<std::path::PathBuf>,
    /// A video: an MP4 file (H.264) or a folder of frame images (in name order); repeatable.
    #[arg(long, value_name = "PATH")]
    video: Vec<std::path::PathBuf>,
    /// Frames per second of video input: MP4 files are sampled at this rate (at least 4 frames),
    /// and a frame folder counts as sampled at it.
    #[arg(long, default_value_t = 2.0)]
    fps: f32,
    /// Most frames kept per video (evenly spaced); OP-TTRAV used 32 at 1 fps.
    #[arg(long, default_value_t = 768)]
    max_frames: usize,
    /// A LoRA adapter directory (PEFT layout, e.g. an adapt run's checkpoint/).
    #[arg(long)]
    adapter: Option<std::path::PathBuf>,
    /// Also use each MP4's sound track: it is interleaved with the video's frames in 2-second
    /// chunks, as Qwen2.5-Omni's processor does. Every video must then be an MP4 with sound.
    #[arg(long)]
    use_audio_in_video: bool,
    /// Smallest and largest image size in pixels after resizing [default: preprocessor_config.json's].
    #[arg(long)]
    min_pixels: Option<usize>,
    #[arg(long)]
    max_pixels: Option<usize>,
    /// System prompt (none by default; the checkpoint's chat template may add its own).
    #[arg(long)]
    system: Option<String>,
    /// Largest number of tokens to generate per sample.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Always take the most likely token (same as --temperature 0).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    /// Sampling temperature [default: generation_config.json's, else 1.0].
    #[arg(long)]
    temperature: Option<f32>,
    /// Nucleus sampling mass [default: generation_config.json's, else 1.0].
    #[arg(long)]
    top_p: Option<f32>,
    /// Sample among the K most likely tokens; 0 = all [default: generation_config.json's, else 0].
    #[arg(long)]
    top_k: Option<usize>,
    /// Random seed (samples are reproducible for a given seed, model and device).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples; they share one prefill of the prompt.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Print one JSON object per sample and line (text, token_ids, logprobs, finish_reason).
    #[arg(long)]
    json: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Weight dtype: f32, bf16 or f16 [default: f32 on CPU, bf16 on CUDA].
    #[arg(long)]
    dtype: Option<String>,
}

/// Sampling defaults a checkpoint may ship in generation_config.json.
#[derive(Default, serde::Deserialize)]
struct GenerationDefaults {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
}

fn generation_defaults(model: &ModelSource) -> Result<GenerationDefaults> {
    let Some(path) = model.get_optional("generation_config.json")? else { return Ok(Default::default()) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid generation config", path.display()))
}

/// The media flags as prompt items, in their command-line order.
fn media_in_order(args: &GenerateArgs, matches: &clap::ArgMatches) -> Vec<ContentItem> {
    let mut items: Vec<(usize, ContentItem)> = Vec::new();
    let mut take = |id: &str, paths: &[std::path::PathBuf], make: fn(std::path::PathBuf) -> ContentItem| {
        let indices: Vec<usize> = matches.indices_of(id).map(|i| i.collect()).unwrap_or_default();
        for (k, p) in paths.iter().enumerate() {
            items.push((indices.get(k).copied().unwrap_or(usize::MAX), make(p.clone())));
        }
    };
    take("audio", &args.audio, ContentItem::Audio);
    take("image", &args.image, ContentItem::Image);
    take("video", &args.video, ContentItem::Video);
    items.sort_by_key(|(i, _)| *i);
    items.into_iter().map(|(_, c)| c).collect()
}

pub fn run(args: GenerateArgs, matches: &clap::ArgMatches) -> Result<()> {
    let device = device_from_name(&args.device)?;
    let dtype = dtype_from_name(args.dtype.as_deref(), &device)?;
    let model = ModelSource::resolve(&args.model)?;
    let defaults = generation_defaults(&model)?;
    let sampling = if args.greedy {
        Sampling::Greedy
    } else {
        Sampling::new(
            args.temperature.or(defaults.temperature).unwrap_or(1.0),
            args.top_p.or(defaults.top_p).unwrap_or(1.0),
            args.top_k.or(defaults.top_k).unwrap_or(0),
        )?
    };
    let t0 = Instant::now();
    let mut thinker = Thinker::load(&model, &device, dtype)?;
    if let Some(dir) = &args.adapter {
        ttrav::rl::checkpoint::load_trained(&mut thinker, dir)
            .with_context(|| format!("cannot load adapter {}", dir.display()))?;
    }
    let mut processor = Processor::load(&model)?;
    processor.fps = args.fps;
    processor.max_frames = args.max_frames.max(1);
    processor.use_audio_in_video = args.use_audio_in_video;
    if let Some(m) = args.min_pixels {
        processor.image.min_pixels = m;
    }
    if let Some(m) = args.max_pixels {
        processor.image.max_pixels = m;
    }
    eprintln!("loaded {} in {:.2}s ({:?}, {:?})", model.describe(), t0.elapsed().as_secs_f64(), device, dtype);

    let mut content = media_in_order(&args, matches);
    content.push(ContentItem::Text(args.prompt.clone()));
    let messages = Processor::conversation(args.system.as_deref(), content);
    let prompt = processor.encode_chat(&messages)?;
    let prompt_len = prompt.input_ids.len();
    let batch = PromptBatch::from_prompts(&[prompt], processor.tokenizer.end_of_text)?;
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
    };
    let t1 = Instant::now();
    let mut rng = Rng::seed(args.seed);
    let samples = generate(&thinker, &batch, args.n, &cfg, &mut rng)?.remove(0);
    let secs = t1.elapsed().as_secs_f64();
    let generated: usize = samples.iter().map(|s| s.token_ids.len()).sum();
    eprintln!(
        "prompt {} tokens, {} samples, {} tokens generated in {:.2}s ({:.1} tokens/s)",
        prompt_len,
        samples.len(),
        generated,
        secs,
        generated as f64 / secs.max(1e-9)
    );

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, s) in samples.iter().enumerate() {
        let text = processor.tokenizer.decode(&s.token_ids)?;
        if args.json {
            let obj = serde_json::json!({
                "index": i,
                "text": text,
                "token_ids": s.token_ids,
                "logprobs": s.logprobs,
                "finish_reason": s.finish_reason,
            });
            writeln!(out, "{obj}")?;
        } else {
            writeln!(out, "--- sample {} ({} tokens, {:?})", i, s.token_ids.len(), s.finish_reason)?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}
