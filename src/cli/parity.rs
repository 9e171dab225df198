//! `ttrav parity`: run transformers parity fixtures from the binary (for a GPU machine, which has
//! no Rust toolchain to run `cargo test`).

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use ttrav::omni::parity::{check_fixture, fixture_dirs, ParityOptions};

#[derive(Args)]
pub struct ParityArgs {
    /// Fixture directories, or folders of them.
    #[arg(default_value = "tests/fixtures/omni")]
    roots: Vec<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32, bf16 or f16 (bf16/f16 need a looser --tolerance, and greedy tokens may then differ).
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value_t = 2e-4)]
    tolerance: f32,
    /// Max |diff| of pixel values (0: bit for bit, which ttrav's preprocessing achieves).
    #[arg(long, default_value_t = 0.0)]
    pixel_tolerance: f32,
}

pub fn run(args: ParityArgs) -> Result<()> {
    let device = ttrav::device_from_name(&args.device)?;
    let dtype = ttrav::dtype_from_name(Some(&args.dtype), &device)?;
    let opts = ParityOptions { device, dtype, tolerance: args.tolerance, pixel_tolerance: args.pixel_tolerance };
    let dirs = fixture_dirs(&args.roots)?;
    if dirs.is_empty() {
        bail!("no fixture directories (with a config.json) under {:?}", args.roots);
    }
    let mut failed = 0;
    for dir in &dirs {
        let t0 = std::time::Instant::now();
        match check_fixture(dir, &opts) {
            Ok(keys) => println!("ok   {} ({} tensors, {:.2}s)", dir.display(), keys.len(), t0.elapsed().as_secs_f64()),
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e:#}", dir.display());
            }
        }
    }
    println!("{} passed, {} failed", dirs.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} of {} fixtures failed", dirs.len());
    }
    Ok(())
}
