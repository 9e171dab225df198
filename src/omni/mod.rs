//! The Qwen2.5-Omni thinker: configuration, text decoder, audio and vision towers, positions,
//! prompts and generation. The Qwen2 / Qwen3 text causal LMs run on the same decoder, without
//! towers.

pub mod audio;
pub mod config;
pub mod generate;
pub mod parity;
pub mod prompt;
pub mod rope;
pub mod text;
pub mod vision;
pub mod thinker;
