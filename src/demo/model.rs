//! The untrained demo model: a small thinker of the real Qwen2.5-Omni architecture (audio tower,
//! vision tower, text decoder) in the real checkpoint layout, with a byte-level BPE tokenizer
//! trained on the demo texts and the Omni special tokens after its vocabulary (as Qwen's sit
//! after theirs), the Qwen chat template, processor settings for the demo's media, and seeded
//! random weights. `ttrav sft` then trains it into `models/ttrav-demo/`.

use crate::data::load_dataset;
use crate::omni::config::ThinkerConfig;
use crate::omni::thinker::Thinker;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;
use tokenizers::models::bpe::BpeTrainerBuilder;
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The Omni special tokens, in Qwen's order; they take the ids after the learned vocabulary.
pub const SPECIAL_TOKENS: [&str; 10] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
];

/// Learned byte-level BPE tokens (256 bytes and the merges).
pub const BPE_VOCAB: usize = 448;

/// The system prompt Qwen's template inserts when a conversation has none.
pub const SYSTEM_PROMPT: &str = "You are a helpful assistant.";

/// Qwen2.5-Omni's chat template (media placeholders per content item, the default system prompt).
pub const CHAT_TEMPLATE: &str = "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Qwen2's pre-tokenizer split (the same regex Qwen2.5-Omni's tokenizer uses).
const SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Trains the demo tokenizer on `texts`: Qwen's normaliser, pre-tokenizer and decoder, a BPE
/// of [`BPE_VOCAB`] tokens, then the special tokens.
pub fn train_tokenizer(texts: &[String]) -> Result<Tokenizer> {
    let skeleton = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {}, "merges": []}
    });
    let mut tokenizer: Tokenizer = skeleton.to_string().parse().map_err(|e| anyhow::anyhow!("demo tokenizer skeleton: {e}"))?;
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(BPE_VOCAB)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer.train(&mut trainer, texts.iter()).map_err(|e| anyhow::anyhow!("training the demo tokenizer: {e}"))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    tokenizer.add_special_tokens(specials).map_err(|e| anyhow::anyhow!("adding the special tokens: {e}"))?;
    Ok(tokenizer)
}

/// Writes the untrained demo model into `out`, its tokenizer learned from the texts of the
/// demo data in `data_dir` (train split, both forms).
pub fn write_untrained_model(data_dir: &Path, out: &Path, seed: u64, temperature: f32) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut texts = vec![SYSTEM_PROMPT.to_string(), "system\nuser\nassistant\n".to_string()];
    for file in ["train.jsonl", "train_open.jsonl"] {
        let ds = load_dataset(&data_dir.join(file), None, None)?;
        for item in &ds.items {
            texts.push(item.prompt_text());
            texts.extend(crate::rl::sft::completion_text(item));
        }
    }
    let tokenizer = train_tokenizer(&texts)?;
    let id = |t: &str| tokenizer.token_to_id(t).with_context(|| format!("the demo tokenizer lacks {t}"));
    let vocab = tokenizer.get_vocab_size(true);
    let tokenizer_path = out.join("tokenizer.json");
    tokenizer.save(&tokenizer_path, false).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tokenizer_path.display()))?;

    let config = json!({
        "architectures": ["Qwen2_5OmniThinkerForConditionalGeneration"],
        "model_type": "qwen2_5_omni_thinker",
        "text_config": {
            "model_type": "qwen2_5_omni_text", "vocab_size": vocab.div_ceil(64) * 64, "hidden_size": 128,
            "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            "use_sliding_window": false, "tie_word_embeddings": true
        },
        "audio_config": {
            "model_type": "qwen2_5_omni_audio_encoder", "num_mel_bins": 128, "d_model": 64, "encoder_layers": 2,
            "encoder_attention_heads": 4, "encoder_ffn_dim": 128, "n_window": 100, "max_source_positions": 1500,
            "output_dim": 128, "activation_function": "gelu"
        },
        "vision_config": {
            "model_type": "qwen2_5_omni_vision_encoder", "depth": 2, "hidden_size": 64, "num_heads": 4,
            "intermediate_size": 128, "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
            "window_size": 112, "fullatt_block_indexes": [1], "out_hidden_size": 128, "in_channels": 3, "hidden_act": "silu"
        },
        "audio_token_index": id("<|AUDIO|>")?, "image_token_index": id("<|IMAGE|>")?, "video_token_index": id("<|VIDEO|>")?,
        "audio_start_token_id": id("<|audio_bos|>")?, "audio_end_token_id": id("<|audio_eos|>")?,
        "vision_start_token_id": id("<|vision_bos|>")?, "vision_end_token_id": id("<|vision_eos|>")?,
        "position_id_per_seconds": 25, "seconds_per_chunk": 2, "tie_word_embeddings": true
    });
    let write = |name: &str, value: serde_json::Value| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n").with_context(|| format!("cannot write {}", path.display()))
    };
    write("config.json", config.clone())?;
    write("chat_template.json", json!({ "chat_template": CHAT_TEMPLATE }))?;
    write("tokenizer_config.json", json!({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": null, "clean_up_tokenization_spaces": false, "model_max_length": 4096
    }))?;
    write("generation_config.json", json!({
        "do_sample": true, "temperature": temperature, "top_p": 1.0, "eos_token_id": [id("<|im_end|>")?, id("<|endoftext|>")?],
        "pad_token_id": id("<|endoftext|>")?
    }))?;
    let side = (crate::demo::data::IMAGE_SIZE * crate::demo::data::IMAGE_SIZE) as usize;
    write("preprocessor_config.json", json!({
        "processor_class": "Qwen2_5OmniProcessor", "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128,
        "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 300, "n_samples": 4800000, "nb_max_frames": 30000,
        "padding_value": 0.0, "dither": 0.0, "return_attention_mask": true,
        "image_processor_type": "Qwen2VLImageProcessor", "do_convert_rgb": true, "do_normalize": true, "do_rescale": true,
        "do_resize": true, "resample": 3, "rescale_factor": 1.0 / 255.0,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": 3136, "max_pixels": side, "size": {"shortest_edge": 3136, "longest_edge": side},
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2
    }))?;
    let cfg = ThinkerConfig::from_json_str(&config.to_string())?;
    let (_, tensors) = Thinker::random(cfg, seed, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = tensors.into_iter().collect();
    let weights = out.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).with_context(|| format!("cannot write {}", weights.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokenizer_is_reproducible_and_puts_specials_after_the_vocabulary() -> Result<()> {
        let texts: Vec<String> = (0..50).map(|i| format!("How many beeps are in the recording? {} \\boxed{{B}}", i % 4)).collect();
        let a = train_tokenizer(&texts)?.to_string(false).map_err(|e| anyhow::anyhow!("{e}"))?;
        let b = train_tokenizer(&texts)?.to_string(false).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(a, b);
        let t = train_tokenizer(&texts)?;
        let base = t.get_vocab_size(false) as u32;
        assert_eq!(t.token_to_id("<|endoftext|>"), Some(base));
        assert_eq!(t.token_to_id("<|VIDEO|>"), Some(base + 9));
        let enc = t.encode("How many beeps<|im_end|>", false).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(*enc.get_ids().last().unwrap_or(&0), base + 2);
        assert_eq!(t.decode(enc.get_ids(), true).map_err(|e| anyhow::anyhow!("{e}"))?, "How many beeps");
        Ok(())
    }
}
