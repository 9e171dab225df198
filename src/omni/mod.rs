//! The Qwen2.5-Omni thinker: configuration, text decoder, positions, prompts and generation.
//! (The audio and vision towers join here.)

pub mod audio;
pub mod config;
pub mod generate;
pub mod parity;
pub mod prompt;
pub mod rope;
pub mod text;
pub mod vision;
pub mod thinker;
