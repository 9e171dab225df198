//! Command-line parsing and printing; the work is done by the library.

mod adapt;
mod embed;
mod eval;
mod generate;
mod parity;
mod reward;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ttrav", version, args_override_self = true, about = "Test-time reinforcement learning for audio-visual language models (Qwen2.5-Omni) on Candle")]
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
    /// Score groups of answers with a label-free reward (vote, medoid, judge, cluster).
    Reward(reward::RewardArgs),
    /// Test-time RL: sample, score without labels, update with GRPO + LoRA.
    Adapt(Box<adapt::AdaptArgs>),
    /// pass@1 / maj@K / BLEU / ROUGE-L of a model (and adapter) on a dataset.
    Eval(eval::EvalArgs),
    /// Check the thinker against transformers parity fixtures (e.g. on a GPU).
    Parity(parity::ParityArgs),
}

pub fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    match cli.command {
        Command::Generate(args) => generate::run(args, &sub),
        Command::Embed(args) => embed::run(args),
        Command::Reward(args) => reward::run(args),
        Command::Adapt(args) => adapt::run_adapt(*args),
        Command::Eval(args) => eval::run_eval(args),
        Command::Parity(args) => parity::run(args),
    }
}
