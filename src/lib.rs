//! ttrav: open test-time reinforcement learning for audio-visual language models, in Rust on
//! Candle.
//!
//! The library holds a Qwen2.5-Omni thinker that matches transformers numerically, its prompt
//! processing and generation. The usual path is: resolve a model ([`ModelSource`]), load the
//! [`Thinker`] and its [`Processor`], encode a conversation, and [`generate`] samples; N samples
//! of one prompt share that prompt's prefill.
//!
//! ```no_run
//! use ttrav::{generate, GenerationConfig, Message, ModelSource, Processor, PromptBatch, Rng, Sampling, Thinker};
//!
//! # fn main() -> anyhow::Result<()> {
//! let model = ModelSource::resolve("Qwen/Qwen2.5-Omni-3B")?;
//! let device = candle_core::Device::Cpu;
//! let thinker = Thinker::load(&model, &device, candle_core::DType::F32)?;
//! let processor = Processor::load(&model)?;
//! let prompt = processor.encode_chat(&[Message::user_text("Name a prime number.")])?;
//! let batch = PromptBatch::from_prompts(&[prompt], processor.tokenizer.end_of_text)?;
//! let cfg = GenerationConfig {
//!     max_new_tokens: 64,
//!     sampling: Sampling::new(1.0, 0.95, 50)?,
//!     stop_tokens: vec![processor.tokenizer.im_end, processor.tokenizer.end_of_text],
//! };
//! let samples = generate(&thinker, &batch, 8, &cfg, &mut Rng::seed(0))?;
//! for s in &samples[0] {
//!     println!("{}", processor.tokenizer.decode(&s.token_ids)?);
//! }
//! # Ok(())
//! # }
//! ```

pub mod data;
pub mod demo;
pub mod embed;
pub mod hub;
pub mod media;
pub mod nn;
pub mod omni;
pub mod reward;
pub mod rl;
pub mod sampling;
pub mod weights;
pub mod winrate;

pub use embed::Encoder;
pub use hub::ModelSource;
pub use omni::config::ThinkerConfig;
pub use omni::generate::{generate, FinishReason, GenerationConfig, Sample};
pub use omni::prompt::{ChatTemplate, ContentItem, MediaInput, Message, Processor, TextTokenizer, VideoInput};
pub use media::MediaError;
pub use omni::thinker::{AudioFeatures, EncodedPrompt, VisualFeatures, PrefillOptions, PrefillOutput, PromptBatch, PromptState, Thinker};
pub use sampling::{Rng, Sampling};

/// Picks a device by name: `cpu`, `cuda` or `cuda:N`.
pub fn device_from_name(name: &str) -> anyhow::Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let ordinal: usize = match n.strip_prefix("cuda:") {
                Some(i) => i.parse().map_err(|_| anyhow::anyhow!("bad device `{name}`: expected cuda:N"))?,
                None => 0,
            };
            candle_core::Device::new_cuda(ordinal).map_err(|e| {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                let hint = if cfg!(feature = "cuda") {
                    "is there an NVIDIA GPU with its driver on this machine?"
                } else {
                    "this ttrav was built without CUDA: build it with `cargo build --release --features cuda`"
                };
                anyhow::anyhow!("cannot open CUDA device {ordinal}: {first} ({hint})")
            })
        }
        other => anyhow::bail!("unknown device `{other}`: use cpu, cuda or cuda:N"),
    }
}

/// Picks a dtype by name (`f32`, `bf16`, `f16`), or the device's default (f32 on CPU, bf16 on CUDA).
pub fn dtype_from_name(name: Option<&str>, device: &candle_core::Device) -> anyhow::Result<candle_core::DType> {
    use candle_core::DType;
    match name {
        None => Ok(if device.is_cuda() { DType::BF16 } else { DType::F32 }),
        Some("f32") | Some("float32") => Ok(DType::F32),
        Some("bf16") | Some("bfloat16") => Ok(DType::BF16),
        Some("f16") | Some("float16") => Ok(DType::F16),
        Some(other) => anyhow::bail!("unknown dtype `{other}`: use f32, bf16 or f16"),
    }
}
