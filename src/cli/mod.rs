//! Command-line parsing and printing; the work is done by the library.

mod adapt;
mod bench_model;
mod demo;
mod embed;
mod eval;
mod generate;
mod parity;
mod presets;
mod reward;
mod sft;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ttrav", version, args_override_self = true, about = "Test-time reinforcement learning for audio-visual language models (Qwen2.5-Omni) on Candle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The TTRL result in miniature: adapt the bundled demo model on its test questions without
    /// labels, with a random-reward control, and print before/after accuracies.
    Demo(demo::DemoArgs),
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
    /// Supervised fine-tuning on labelled items (cross-entropy on the answer tokens).
    Sft(Box<sft::SftArgs>),
    /// Check the thinker against transformers parity fixtures (e.g. on a GPU).
    Parity(parity::ParityArgs),
    /// Prefill and decode throughput of a random-weight thinker at a config's sizes.
    BenchModel(bench_model::BenchModelArgs),
    /// Write the demo dataset (media synthesised from a seed).
    DemoData(demo::DemoDataArgs),
    /// Write the untrained demo model (tokenizer learned from the demo data, random weights).
    DemoInit(demo::DemoInitArgs),
}

pub fn run() -> anyhow::Result<()> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "adapt") {
        args = adapt::with_preset_and_config(args)?;
    }
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let sub = matches.subcommand().map(|(_, m)| m.clone()).unwrap_or_default();
    match cli.command {
        Command::Demo(args) => demo::run_demo(args),
        Command::Generate(args) => generate::run(args, &sub),
        Command::Embed(args) => embed::run(args),
        Command::Reward(args) => reward::run(args),
        Command::Adapt(args) => adapt::run_adapt(*args),
        Command::Eval(args) => eval::run_eval(args),
        Command::Sft(args) => sft::run_sft(*args),
        Command::Parity(args) => parity::run(args),
        Command::BenchModel(args) => bench_model::run(args),
        Command::DemoData(args) => demo::run_demo_data(args),
        Command::DemoInit(args) => demo::run_demo_init(args),
    }
}
