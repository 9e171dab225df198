//! Command-line parsing and printing; the work is done by the library.

mod embed;
mod generate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ttrav", version, about = "Test-time reinforcement learning for audio-visual language models (Qwen2.5-Omni) on Candle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample answers to one prompt (N samples share one prefill).
    Generate(generate::GenerateArgs),
    /// Sentence vectors from an in-process encoder (BGE, MiniLM, MPNet, Qwen3-Embedding).
    Embed(embed::EmbedArgs),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
        Command::Embed(args) => embed::run(args),
    }
}
