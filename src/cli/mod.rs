//! Command-line parsing and printing; the work is done by the library.

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
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
    }
}
