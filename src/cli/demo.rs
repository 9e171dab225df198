//! `ttrav demo` (the TTRL result in miniature), `ttrav demo-data` and `ttrav demo-init` (the
//! bundled demo's data and its untrained model).

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use ttrav::demo::data::{write_demo_data, DemoSplits};
use ttrav::demo::run::DemoConfig;

#[derive(Args)]
pub struct DemoDataArgs {
    /// Output folder ({train,test,heldout}{,_open}.jsonl and media/).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Items per split (0 leaves the split out).
    #[arg(long, default_value_t = DemoSplits::default().train)]
    train: usize,
    #[arg(long, default_value_t = DemoSplits::default().test)]
    test: usize,
    #[arg(long, default_value_t = DemoSplits::default().heldout)]
    heldout: usize,
    /// Write into a folder that is not empty.
    #[arg(long)]
    force: bool,
}

pub fn run_demo_data(args: DemoDataArgs) -> Result<()> {
    let splits = DemoSplits { train: args.train, test: args.test, heldout: args.heldout };
    for (split, n) in write_demo_data(&args.out, args.seed, &splits, args.force)? {
        println!("{split}: {n} items");
    }
    println!("demo data in {}", args.out.display());
    Ok(())
}

#[derive(Args)]
pub struct DemoInitArgs {
    /// The demo data (its train split's texts train the tokenizer).
    #[arg(long)]
    data: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature written to generation_config.json.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
}

pub fn run_demo_init(args: DemoInitArgs) -> Result<()> {
    ttrav::demo::model::write_untrained_model(&args.data, &args.out, args.seed, args.temperature)?;
    println!("untrained demo model in {}", args.out.display());
    Ok(())
}

#[derive(Args)]
pub struct DemoArgs {
    /// The demo model.
    #[arg(long, default_value = "models/ttrav-demo")]
    model: PathBuf,
    /// The demo data (test, heldout and their open-ended forms).
    #[arg(long, default_value = "data/demo")]
    data: PathBuf,
    /// Output folder: summary.json, and each run's metrics, checkpoint and plots.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also run the open-ended variant (cluster reward with all-MiniLM-L6-v2; needs the encoder
    /// in the Hugging Face cache, e.g. from scripts/fetch-test-encoders.sh).
    #[arg(long)]
    open_ended: bool,
    /// Adaptation steps (each of --questions-per-step questions).
    #[arg(long, default_value_t = DemoConfig::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = DemoConfig::default().questions_per_step)]
    questions_per_step: usize,
    /// Answers trained per question (of the 16 votes).
    #[arg(long, default_value_t = DemoConfig::default().n_samples)]
    n_samples: usize,
    /// Answers per optimizer step (0 = all of a step's).
    #[arg(long, default_value_t = DemoConfig::default().mini_batch_size)]
    mini_batch_size: usize,
    #[arg(long, default_value_t = DemoConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = DemoConfig::default().lora_rank)]
    lora_rank: usize,
    #[arg(long, default_value_t = DemoConfig::default().temperature)]
    temperature: f32,
    /// Only the first N questions of each split (a shortened run).
    #[arg(long)]
    limit: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run_demo(args: DemoArgs) -> Result<()> {
    let cfg = DemoConfig {
        model: args.model,
        data: args.data,
        out: args.out.clone(),
        seed: args.seed,
        temperature: args.temperature,
        steps: args.steps,
        questions_per_step: args.questions_per_step,
        n_samples: args.n_samples,
        mini_batch_size: args.mini_batch_size,
        lr: args.lr,
        lora_rank: args.lora_rank,
        open_ended: args.open_ended,
        limit: args.limit,
        quiet: args.quiet,
        ..Default::default()
    };
    let summary = ttrav::demo::run::run(&cfg)?;
    print!("{}", ttrav::demo::run::table(&summary));
    println!("summary in {}", args.out.join("summary.json").display());
    Ok(())
}
