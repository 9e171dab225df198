//! `ttrav adapt --preset NAME` and `--config FILE`: settings put on the command line before the
//! user's own flags, so that flags override a config file, which overrides a preset.
//!
//! Each preset is one of OP-TTRAV's launch scripts (mvideet/OP-TTRAV at commit 06cef1c, the
//! `slurm/` wrapper with the launcher it calls, if any), every hyper-parameter ttrav has a flag for
//! set to the value that script runs with. What ttrav cannot or does not reproduce is listed in the
//! README's preset table.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::Path;

/// Settings as (flag, value) pairs.
type Settings = &'static [(&'static str, &'static str)];

/// A preset: its name, the OP-TTRAV script it reproduces, the shared settings it builds on and its
/// own settings (later ones win).
pub struct Preset {
    pub name: &'static str,
    pub script: &'static str,
    pub bases: &'static [Settings],
    pub settings: Settings,
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

/// OP-TTRAV's UltraFeedback scripts (text only, Qwen2.5-3B base, no launcher: the wrapper runs
/// verl itself): 8 questions x 16 votes, 4 distinct trained answers, lr 5e-7 with a cosine
/// schedule and 3 % warm-up over 300 steps (at most 20 epochs), temperature 1.0 and verl's top-p 1,
/// 2048-token prompts and 1024-token answers, one PPO epoch in mini-batches of 16 answers (verl's
/// `ppo_mini_batch_size` 1 prompt x `rollout.n` 16, so two optimizer steps per step), bge-large,
/// full fine-tuning, groups with equal rewards kept. Its `kl_coef` 0.02 is inert (no
/// `use_kl_in_reward`), so no KL.
const ULTRAFEEDBACK: &[(&str, &str)] = &[
    ("questions-per-step", "8"),
    ("n-votes", "16"),
    ("n-samples", "4"),
    ("dedup", "true"),
    ("lr", "5e-7"),
    ("warmup-ratio", "0.03"),
    ("weight-decay", "0.01"),
    ("grad-clip", "1.0"),
    ("temperature", "1.0"),
    ("top-p", "1.0"),
    ("top-k", "0"),
    ("max-prompt-tokens", "2048"),
    ("max-response-tokens", "1024"),
    ("clip-low", "0.2"),
    ("clip-high", "0.2"),
    ("clip-ratio-c", "3.0"),
    ("loss-agg", "token-mean"),
    ("advantage", "grpo"),
    ("kl-coef", "0"),
    ("entropy-coef", "0"),
    ("ppo-epochs", "1"),
    ("mini-batch-size", "16"),
    ("full-finetune", "true"),
    ("keep-equal-reward-groups", "true"),
    ("confidence-weighting", "false"),
    ("steps", "300"),
    ("epochs", "20"),
    ("encoder", "bge-large"),
];

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mmau",
        script: "slurm/mmau_omni.sh",
        bases: &[OMNI, MMAU],
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50")],
    },
    Preset {
        name: "mmau-open",
        script: "slurm/mmau_open.sh",
        bases: &[OMNI, MMAU],
        settings: &[("reward", "medoid"), ("encoder", "bge"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50")],
    },
    Preset {
        name: "mmau-judge",
        script: "slurm/mmau_judge_v2.sh",
        bases: &[OMNI, MMAU],
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
        bases: &[OMNI, MMAU],
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "50"), ("max-pixels", "1000000")],
    },
    Preset {
        name: "daily-omni",
        script: "slurm/daily_omni.sh",
        bases: &[OMNI, DAILY_OMNI],
        settings: &[("reward", "vote"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "10")],
    },
    Preset {
        name: "daily-omni-cwa",
        script: "slurm/daily_omni_cwa.sh",
        bases: &[OMNI, DAILY_OMNI],
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
        bases: &[OMNI, DAILY_OMNI],
        settings: &[("reward", "medoid"), ("encoder", "bge"), ("temperature", "0.6"), ("max-response-tokens", "512"), ("epochs", "10")],
    },
    Preset {
        name: "daily-omni-judge",
        script: "slurm/daily_omni_judge_v2.sh",
        bases: &[OMNI, DAILY_OMNI],
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
        bases: &[OMNI, DAILY_OMNI],
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
        bases: &[OMNI, DAILY_OMNI],
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
        bases: &[OMNI, DAILY_OMNI],
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
    Preset {
        name: "ultrafeedback",
        script: "slurm/ultrafeedback_simple_cluster.sh",
        bases: &[ULTRAFEEDBACK],
        settings: &[("reward", "cluster"), ("variant", "continuous"), ("k-min", "2"), ("k-max", "4")],
    },
    Preset {
        name: "ultrafeedback-medoid",
        script: "slurm/ultrafeedback_open_ended_medoid.sh",
        bases: &[ULTRAFEEDBACK],
        settings: &[("reward", "medoid"), ("anchor", "medoid"), ("min-words", "0")],
    },
];

/// Every setting of a preset, as `--flag=value` tokens (later ones win).
pub fn preset_tokens(name: &str) -> Result<Vec<OsString>> {
    let Some(p) = PRESETS.iter().find(|p| p.name == name) else {
        let names: Vec<String> = PRESETS.iter().map(|p| format!("{} ({})", p.name, p.script)).collect();
        bail!("unknown preset `{name}`: use one of {}", names.join(", "));
    };
    Ok(p.bases.iter().flat_map(|b| b.iter()).chain(p.settings).map(|(k, v)| OsString::from(format!("--{k}={v}"))).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ttrav::rl::adapt::AdaptConfig;

    /// The settings `ttrav adapt --preset NAME --model m --data d.json --out o` runs with, parsed
    /// by the command line itself.
    fn config_of(name: &str) -> AdaptConfig {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<OsString> = ["ttrav", "adapt", "--preset", name, "--model", "m", "--data", "d.json", "--out", "o"].iter().map(OsString::from).collect();
        let args = super::super::adapt::with_preset_and_config(args).unwrap();
        let matches = super::super::Cli::command().try_get_matches_from(args).unwrap_or_else(|e| panic!("preset {name}: {e}"));
        let sub = matches.subcommand_matches("adapt").unwrap();
        AdaptConfig::from_arg_matches(sub).unwrap_or_else(|e| panic!("preset {name}: {e}"))
    }

    #[test]
    fn every_preset_parses_as_adapt_flags() {
        for p in PRESETS {
            let c = config_of(p.name);
            assert_eq!(c.model, "m", "{}", p.name);
        }
        let err = preset_tokens("nope").unwrap_err().to_string();
        assert!(err.contains("ultrafeedback (slurm/ultrafeedback_simple_cluster.sh)"), "{err}");
    }

    #[test]
    fn ultrafeedback_sets_its_scripts_values() {
        let c = config_of("ultrafeedback");
        let d = AdaptConfig::from_flags(&["--model", "m", "--data", "d.json", "--out", "o"]).unwrap();
        assert_eq!((c.questions_per_step, c.n_votes, c.n_samples, c.dedup), (8, 16, 4, true));
        assert_eq!((c.lr, c.warmup_ratio, c.weight_decay, c.grad_clip), (5e-7, 0.03, 0.01, 1.0));
        assert_eq!((c.temperature, c.top_p, c.top_k), (1.0, 1.0, 0));
        assert_eq!((c.max_prompt_tokens, c.max_response_tokens), (2048, 1024));
        assert_eq!((c.clip_low, c.clip_high, c.clip_ratio_c), (0.2, 0.2, 3.0));
        assert_eq!((c.loss_agg.as_str(), c.advantage.as_str(), c.kl_coef, c.entropy_coef), ("token-mean", "grpo", 0.0, 0.0));
        assert_eq!((c.ppo_epochs, c.mini_batch_size, c.full_finetune, c.keep_equal_reward_groups), (1, 16, true, true));
        assert_eq!((c.steps, c.epochs), (Some(300), Some(20.0)));
        assert_eq!((c.reward.as_str(), c.encoder.as_str()), ("cluster", "bge-large"));
        assert_eq!(c.reward_options.variant.as_deref(), Some("continuous"));
        assert_eq!((c.reward_options.k_min, c.reward_options.k_max), (2, 4));
        assert!(!c.confidence_weighting);
        // Nothing about media: the text recipe leaves those settings at ttrav's defaults.
        assert_eq!((c.fps, c.max_frames, c.use_audio_in_video, c.max_pixels), (d.fps, d.max_frames, d.use_audio_in_video, d.max_pixels));
        // The schedule: 300 steps, warm-up int(0.03 x 300) = 9 (verl's arithmetic), with 4000 questions.
        let s = ttrav::rl::adapt::Schedule::of(&c, 4000);
        assert_eq!((s.questions, s.steps, s.horizon, s.warmup), (8, 300, 300, 9));

        let m = config_of("ultrafeedback-medoid");
        assert_eq!((m.reward.as_str(), m.reward_options.anchor.as_str(), m.reward_options.min_words), ("medoid", "medoid", 0));
        assert_eq!(m.reward_options.variant, None);
        assert_eq!((m.lr, m.questions_per_step, m.encoder.as_str(), m.steps), (5e-7, 8, "bge-large", Some(300)));
    }
}
