//! `ttrav embed`: sentence vectors, or their cosine similarity matrix.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use ttrav::embed::{cosine, default_encoder_name, Encoder};

#[derive(Args)]
pub struct EmbedArgs {
    /// Encoder: a short name (bge, bge-large, minilm, mpnet, qwen3), a hub id or a directory
    /// [default: $TTRL_OE_ENCODER, else bge].
    #[arg(long)]
    encoder: Option<String>,
    /// Texts to embed: one per line, or one {"text": ...} object per line for a .jsonl file.
    #[arg(long, conflicts_with = "texts")]
    input: Option<PathBuf>,
    /// Texts to embed (when no --input is given).
    texts: Vec<String>,
    /// Print one JSON object per text and line (text, embedding).
    #[arg(long)]
    json: bool,
    /// Print the cosine similarity matrix of the texts instead of the vectors.
    #[arg(long)]
    similarity: bool,
    /// Device for the encoder: cpu, cuda or cuda:N (it can differ from the policy's).
    #[arg(long, default_value = "cpu")]
    encoder_device: String,
    /// Texts per forward pass (texts are sorted by length first).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// Reads the texts of an input file, naming the line of any problem.
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read input file {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut texts = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("{}:{line_no}: not valid UTF-8 ({e})", path.display()))?;
        if jsonl {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}:{line_no}: invalid JSON (column {}): {e}", path.display(), e.column()))?;
            match v.get("text") {
                Some(serde_json::Value::String(s)) => texts.push(s.clone()),
                _ => bail!("{}:{line_no}: expected an object with a string field `text`", path.display()),
            }
        } else {
            texts.push(line.to_string());
        }
    }
    // A trailing newline does not make an extra empty text.
    if !jsonl && bytes.ends_with(b"\n") {
        texts.pop();
    }
    Ok(texts)
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let texts = match &args.input {
        Some(path) => read_texts(path)?,
        None => args.texts.clone(),
    };
    if texts.is_empty() {
        bail!("no texts to embed: pass texts as arguments or --input FILE");
    }
    let device = ttrav::device_from_name(&args.encoder_device)?;
    let name = args.encoder.clone().unwrap_or_else(default_encoder_name);
    let mut encoder = Encoder::load(&name, &device)?;
    encoder.batch_size = args.batch_size.max(1);
    let vectors = encoder.embed(&texts)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.similarity {
        let matrix: Vec<Vec<f32>> = vectors.iter().map(|a| vectors.iter().map(|b| cosine(a, b)).collect()).collect();
        if args.json {
            writeln!(out, "{}", serde_json::json!({ "similarity": matrix }))?;
        } else {
            for row in &matrix {
                writeln!(out, "{}", row.iter().map(|v| format!("{v:7.4}")).collect::<Vec<_>>().join(" "))?;
            }
        }
        return Ok(());
    }
    for (text, v) in texts.iter().zip(&vectors) {
        if args.json {
            writeln!(out, "{}", serde_json::json!({ "text": text, "embedding": v }))?;
        } else {
            let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.4}")).collect();
            writeln!(out, "dim {} [{} ...] {:?}", v.len(), head.join(", "), text)?;
        }
    }
    Ok(())
}
