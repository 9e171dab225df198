//! `ttrav adapt --preset NAME` and `--config FILE`: settings put on the command line before the
//! user's own flags, so that flags override a config file, which overrides a preset.
//!
//! Each preset is one of OP-TTRAV's launch scripts (mvideet/OP-TTRAV at commit 06cef1c, the
//! `slurm/` wrapper with the launcher it calls), every hyper-parameter ttrav has a flag for set to
//! the value that script runs with. What ttrav cannot or does not reproduce is listed in the
//! README's preset table.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::Path;

/// A preset: its name, the OP-TTRAV script it reproduces, and its settings (flag, value).
pub struct Preset {
    pub name: &'static str,
    pub script: &'static str,
    pub settings: &'static [(&'static str, &'static str)],
}

/// What every Omni script shares: 4 questions x 16 votes, 4 trained answers (distinct:
/// TTRL_DEDUP_SAMPLES defaults to 1), lr 2e-6 with a cosine schedule and 0.5 % warm-up, full
/// fine-tuning, verl's clip 0.2 / dual clip 3, token-mean, GRPO, groups with equal rewards kept,
/// one optimizer step per PPO epoch (the step's 16 answers).
const OMNI: &[(&str, &str)] = &[
    ("questions-per-step", "4"),
    ("n-votes", "16"),
    ("n-samples", "4"),
    ("dedup", "true"),
    ("lr", "2e-6"),
    ("warmup-ratio", "0.005"),
    ("weight-decay", "0.01"),
    ("grad-clip", "1.0"),
    ("top-p", "0.95"),
    ("top-k", "0"),
    ("clip-low", "0.2"),
    ("clip-high", "0.2"),
    ("clip-ratio-c", "3.0"),
    ("loss-agg", "token-mean"),
    ("advantage", "grpo"),
    ("kl-coef", "0"),
    ("entropy-coef", "0"),
    ("mini-batch-size", "16"),
    ("full-finetune", "true"),
    ("keep-equal-reward-groups", "true"),
    ("confidence-weighting", "false"),
];

/// MMAU (audio, 4096-token prompts, 512-token answers, 4 PPO epochs).
const MMAU: &[(&str, &str)] = &[("max-prompt-tokens", "4096"), ("ppo-epochs", "4"), ("use-audio-in-video", "false")];

/// daily-omni (video at 0.5 fps, at most 32 frames, with its sound; 10000-token prompts).
const DAILY_OMNI: &[(&str, &str)] = &[
    ("max-prompt-tokens", "10000"),
    ("ppo-epochs", "1"),
    ("fps", "0.5"),
    ("max-frames", "32"),
    ("use-audio-in-video", "true"),
];

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mmau",
        script: "slurm/mmau_omni.sh",
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50")],
    },
    Preset {
        name: "mmau-open",
        script: "slurm/mmau_open.sh",
        settings: &[("reward", "medoid"), ("encoder", "bge"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50")],
    },
    Preset {
        name: "mmau-judge",
        script: "slurm/mmau_judge_v2.sh",
        settings: &[
            ("reward", "judge"),
            ("judge", "policy"),
            ("encoder", "bge"),
            ("temperature", "1.0"),
            ("max-response-tokens", "1024"),
            ("epochs", "1"),
            ("steps", "500"),
        ],
    },
    Preset {
        name: "omnibench",
        script: "slurm/omnibench.sh",
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50"), ("max-pixels", "1000000")],
    },
    Preset {
        name: "daily-omni",
        script: "slurm/daily_omni.sh",
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "10")],
    },
    Preset {
        name: "daily-omni-cwa",
        script: "slurm/daily_omni_cwa.sh",
        settings: &[
            ("reward", "vote"),
            ("temperature", "0.6"),
            ("max-response-tokens", "512"),
            ("epochs", "1"),
            ("steps", "300"),
            ("confidence-weighting", "true"),
        ],
    },
    Preset {
        name: "daily-omni-open",
        script: "slurm/daily_omni_open.sh",
        settings: &[("reward", "medoid"), ("encoder", "bge"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "10")],
    },
    Preset {
        name: "daily-omni-judge",
        script: "slurm/daily_omni_judge_v2.sh",
        settings: &[
            ("reward", "judge"),
            ("judge", "policy"),
            ("encoder", "bge"),
            ("temperature", "1.0"),
            ("max-response-tokens", "1024"),
            ("epochs", "1"),
            ("steps", "200"),
        ],
    },
    Preset {
        name: "daily-omni-cluster",
        script: "slurm/daily_omni_simple_cluster.sh",
        settings: &[
            ("reward", "cluster"),
            ("variant", "continuous"),
            ("encoder", "mpnet"),
            ("encoder-device", "cpu"),
            ("temperature", "1.0"),
            ("max-response-tokens", "1024"),
            ("epochs", "2"),
            ("steps", "300"),
        ],
    },
    Preset {
        name: "daily-omni-evolrl",
        script: "slurm/daily_omni_evolrl_cluster.sh",
        settings: &[
            ("reward", "evolrl"),
            ("encoder", "qwen3"),
            ("temperature", "1.0"),
            ("max-response-tokens", "1024"),
            ("epochs", "2"),
            ("steps", "500"),
            ("clip-high", "0.28"),
            ("clip-ratio-c", "10.0"),
            ("kl-coef", "0.001"),
            ("kl", "k3"),
            ("entropy-coef", "0.001"),
        ],
    },
    Preset {
        name: "egosound",
        script: "slurm/egosound_kde_novelty.sh",
        settings: &[
            ("reward", "cluster"),
            ("variant", "kde"),
            ("kde-tau", "0.2"),
            ("novelty-beta", "0.1"),
            ("encoder", "bge-large"),
            ("temperature", "1.0"),
            ("max-prompt-tokens", "20000"),
            ("max-response-tokens", "1024"),
            ("epochs", "3"),
            ("steps", "200"),
            ("fps", "0.25"),
            ("max-frames", "16"),
        ],
    },
];

/// The family defaults a preset builds on.
fn base_of(p: &Preset) -> &'static [(&'static str, &'static str)] {
    if p.name.starts_with("mmau") || p.name == "omnibench" {
        MMAU
    } else {
        DAILY_OMNI
    }
}

/// Every setting of a preset, as `--flag=value` tokens (later ones win).
pub fn preset_tokens(name: &str) -> Result<Vec<OsString>> {
    let Some(p) = PRESETS.iter().find(|p| p.name == name) else {
        let names: Vec<String> = PRESETS.iter().map(|p| format!("{} ({})", p.name, p.script)).collect();
        bail!("unknown preset `{name}`: use one of {}", names.join(", "));
    };
    Ok(OMNI.iter().chain(base_of(p)).chain(p.settings).map(|(k, v)| OsString::from(format!("--{k}={v}"))).collect())
}

/// A config file's settings (TOML, or JSON such as a run's config.json) as `--flag=value`
/// tokens. Keys are flag names (`n_votes` or `n-votes`); `known` lists the flags there are.
pub fn config_tokens(path: &Path, known: &[String]) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("config {} is not valid JSON (line {}, column {}): {e}", path.display(), e.line(), e.column()))?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {} is not valid TOML: {e}", path.display()))?;
        serde_json::to_value(table)?
    };
    let Some(map) = value.as_object() else { bail!("config {} is not a table of settings", path.display()) };
    let mut tokens = Vec::new();
    for (key, v) in map {
        let flag = key.replace('_', "-");
        if !known.contains(&flag) {
            bail!("config {}: unknown setting `{key}` (ttrav adapt has no --{flag})", path.display());
        }
        let value = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(list) => list
                .iter()
                .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            serde_json::Value::Object(_) => bail!("config {}: setting `{key}` is a table, not a value", path.display()),
            other => other.to_string(),
        };
        tokens.push(OsString::from(format!("--{flag}={value}")));
    }
    Ok(tokens)
}

/// The value of `--name VALUE` / `--name=VALUE` among `args`, if given.
pub fn flag_value(args: &[OsString], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let with_eq = format!("{long}=");
    let mut it = args.iter().map(|a| a.to_string_lossy().to_string());
    while let Some(a) = it.next() {
        if a == long {
            return it.next();
        }
        if let Some(v) = a.strip_prefix(&with_eq) {
            return Some(v.to_string());
        }
    }
    None
}
