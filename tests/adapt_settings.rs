//! `ttrav adapt`'s settings: presets and config files (and their precedence), resume checks
//! (changed settings or data refused unless allowed, `--resume DIR`), skipped items counted,
//! reward options reachable, and the errors bad settings and broken models give.

mod common;

use common::{copy_fixture, fixture};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ttrav() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttrav"));
    for k in ["TTRL_TASK_TYPE", "TTRL_OE_ENCODER", "TTRL_DEDUP_SAMPLES", "TTRL_CLUSTER_KDE", "TTRL_CLUSTER_CONTINUOUS"] {
        c.env_remove(k);
    }
    c.env("HF_HUB_OFFLINE", "1");
    c
}

fn questions(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("q.jsonl");
    let lines: String = (0..n)
        .map(|i| format!("{{\"id\": \"q{i}\", \"question\": \"Which is number {i}?\", \"choices\": [\"a\", \"b\", \"c\", \"d\"], \"answer\": \"B\"}}\n"))
        .collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn adapt(data: &Path, out: &Path, extra: &[&str]) -> Output {
    ttrav()
        .arg("adapt")
        .arg("--model")
        .arg(fixture("text_basic"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--n-votes", "4", "--n-samples", "2", "--questions-per-step", "2", "--max-response-tokens", "4", "--lr", "0.01", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn failed(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure; stdout: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn config_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap()
}

#[test]
fn a_preset_sets_its_scripts_values_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 4);
    let out = dir.path().join("run");
    // mmau_omni.sh: lr 2e-6, temperature 0.6, 4 PPO epochs, 50 epochs, warm-up ratio 0.005 ...
    // (the flags after it override its step count, votes and full fine-tuning).
    let text = ok(&adapt(&data, &out, &["--preset", "mmau", "--steps", "2", "--full-finetune", "false", "--mini-batch-size", "0"]));
    assert!(text.contains("items skipped: 0"), "{text}");
    let c = config_json(&out);
    assert_eq!(c["lr"], 0.01, "the flag after the preset wins");
    assert_eq!(c["ppo_epochs"], 4);
    assert_eq!(c["epochs"], 50.0);
    assert_eq!(c["warmup_ratio"], 0.005);
    assert_eq!(c["max_prompt_tokens"], 4096);
    assert_eq!(c["dedup"], true);
    assert_eq!(c["keep_equal_reward_groups"], true);
    assert_eq!(c["full_finetune"], false);
    assert_eq!(c["n_votes"], 4);
    let m: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|x| x["optimizer_steps"] == 4 || x["update_skipped"].is_string()), "4 PPO epochs, one optimizer step each: {m:?}");
    let err = failed(&adapt(&data, &out, &["--preset", "nope"]));
    assert!(err.contains("unknown preset `nope`") && err.contains("mmau (slurm/mmau_omni.sh)"), "{err}");
}

#[test]
fn a_config_file_is_read_and_config_json_repeats_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 4);
    let toml = dir.path().join("run.toml");
    std::fs::write(&toml, "lr = 0.02\nn_votes = 6\ntemperature = 0.9\nlora-targets = [\"q_proj\", \"v_proj\"]\ndedup = true\n").unwrap();
    let first = dir.path().join("first");
    ok(&adapt(&data, &first, &["--config", toml.to_str().unwrap(), "--steps", "2", "--temperature", "0.7"]));
    let c = config_json(&first);
    assert_eq!(c["lr"], 0.01, "a flag overrides the file");
    assert_eq!(c["n_votes"], 4, "a flag overrides the file");
    assert!((c["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert_eq!(c["lora_targets"], serde_json::json!(["q_proj", "v_proj"]));
    assert_eq!(c["dedup"], true);
    // The run's config.json, given back, repeats it exactly.
    let again = dir.path().join("again");
    let o = ttrav().args(["adapt", "--quiet", "--config"]).arg(first.join("config.json")).arg("--out").arg(&again).output().unwrap();
    ok(&o);
    let mut a = config_json(&first);
    let mut b = config_json(&again);
    a.as_object_mut().unwrap().remove("out");
    b.as_object_mut().unwrap().remove("out");
    assert_eq!(a, b);
    let strip = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["tokens_per_s", "rollout_s", "reward_s", "update_s", "step_s"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&first), strip(&again));
    std::fs::write(&toml, "learning_rate = 0.1\n").unwrap();
    let err = failed(&adapt(&data, &dir.path().join("bad"), &["--config", toml.to_str().unwrap()]));
    assert!(err.contains("unknown setting `learning_rate`") && err.contains("run.toml"), "{err}");
}

#[test]
fn resume_refuses_changed_settings_or_data_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 6);
    let out = dir.path().join("run");
    ok(&adapt(&data, &out, &["--steps", "2"]));
    let err = failed(&adapt(&data, &out, &["--steps", "2", "--lr", "0.5", "--resume"]));
    assert!(err.contains("lr: 0.01 -> 0.5") && err.contains("--allow-changes"), "{err}");
    // The data file shrank: refused, then accepted on request (and it does not panic).
    questions(dir.path(), 3);
    let err = failed(&adapt(&data, &out, &["--steps", "4", "--resume"]));
    assert!(err.contains("data file") && err.contains("steps: 2 -> 4"), "{err}");
    let text = ok(&adapt(&data, &out, &["--steps", "4", "--resume", "--allow-changes"]));
    assert!(text.contains("items skipped: 0"), "{text}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 4);
}

#[test]
fn resume_takes_a_checkpoint_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 4);
    let a = dir.path().join("a");
    ok(&adapt(&data, &a, &["--steps", "2", "--save-every", "1"]));
    let saved = dir.path().join("saved-checkpoint");
    common::copy_dir(&a.join("checkpoint"), &saved);
    // Continue the saved checkpoint into a new folder, with one more step.
    let b = dir.path().join("b");
    let err = failed(&adapt(&data, &b, &["--steps", "3", "--resume", saved.to_str().unwrap()]));
    assert!(err.contains("steps: 2 -> 3"), "{err}");
    ok(&adapt(&data, &b, &["--steps", "3", "--resume", saved.to_str().unwrap(), "--allow-changes"]));
    let st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(b.join("checkpoint/state.json")).unwrap()).unwrap();
    assert_eq!(st["step"], 3);
    let err = failed(&adapt(&data, &b, &["--resume", dir.path().join("nothing").to_str().unwrap()]));
    assert!(err.contains("no checkpoint to resume from"), "{err}");
}

#[test]
fn lines_skipped_when_reading_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("q.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"question\": \"Which?\", \"choices\": [\"x\", \"y\"], \"answer\": \"A\"}\nnot json\n{\"id\": \"b\", \"question\": \"Which?\", \"choices\": [\"x\", \"y\"], \"answer\": \"B\"}\n[1]\n",
    )
    .unwrap();
    let o = adapt(&data, &dir.path().join("run"), &["--steps", "1"]);
    let text = ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("q.jsonl:2"), "the line is reported");
    assert!(text.contains("items skipped: 2 (2 when the data was read)"), "{text}");
    // eval reports and counts them too.
    let o = ttrav().arg("eval").arg("--model").arg(fixture("text_basic")).arg("--data").arg(&data).args(["--max-response-tokens", "3"]).output().unwrap();
    let text = ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("q.jsonl:2: malformed JSON") && err.contains("q.jsonl:4: not a JSON object"), "{err}");
    assert!(text.contains("items skipped: 2"), "{text}");
}

#[test]
fn reward_options_reach_adapt_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 4);
    let err = failed(&adapt(&data, &dir.path().join("a"), &["--answer-format", "loose"]));
    assert!(err.contains("unknown answer format `loose`"), "{err}");
    let bge = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoders/bge-tiny");
    let err = failed(&adapt(&data, &dir.path().join("b"), &["--reward", "cluster", "--encoder", bge.to_str().unwrap(), "--k-min", "4", "--k-max", "3"]));
    assert!(err.contains("--k-min") && err.contains("4 and 3"), "{err}");
    let out = dir.path().join("c");
    ok(&adapt(&data, &out, &["--reward", "cluster", "--encoder", bge.to_str().unwrap(), "--n-init", "2", "--novelty-beta", "0.3", "--steps", "1", "--dtype", "f32", "--encoder-device", "cpu"]));
    let c = config_json(&out);
    assert_eq!(c["n_init"], 2);
    assert!((c["novelty_beta"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let err = failed(&adapt(&data, &dir.path().join("d"), &["--mini-batch-size", "9"]));
    assert!(err.contains("--mini-batch-size 9"), "{err}");
    let err = failed(&adapt(&data, &dir.path().join("e"), &["--micro-batch", "0"]));
    assert!(err.contains("--micro-batch must be at least 1"), "{err}");
    let err = failed(&adapt(&data, &dir.path().join("f"), &["--micro-batch", "3"]));
    assert!(err.contains("--micro-batch 3 is larger than a question's 2 trained answers"), "{err}");
    let out = dir.path().join("g");
    ok(&adapt(&data, &out, &["--micro-batch", "1", "--steps", "1"]));
    assert_eq!(config_json(&out)["micro_batch"], 1);
    assert_eq!(config_json(&out)["gradient_checkpointing"], true, "on by default");
    assert_eq!(config_json(&out)["logits_chunk"], 512);
    let err = failed(&adapt(&data, &dir.path().join("h"), &["--logits-chunk", "0"]));
    assert!(err.contains("--logits-chunk must be at least 1"), "{err}");
    let out = dir.path().join("i");
    ok(&adapt(&data, &out, &["--gradient-checkpointing", "false", "--logits-chunk", "7", "--steps", "1"]));
    assert_eq!(config_json(&out)["gradient_checkpointing"], false);
    assert_eq!(config_json(&out)["logits_chunk"], 7);
}

#[test]
fn non_finite_logits_stop_generation_with_an_error() {
    // A model whose final norm is NaN gives NaN logits.
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let w = t["thinker.model.norm.weight"].clone();
    t.insert("thinker.model.norm.weight".into(), (w * f64::NAN).unwrap());
    candle_core::safetensors::save(&t, &path).unwrap();
    for mode in [vec!["--greedy"], vec!["--temperature", "0.8", "--top-p", "0.9"]] {
        let o = ttrav().arg("generate").arg("--model").arg(dir.path()).args(["--prompt", "hi", "--max-new-tokens", "3"]).args(&mode).output().unwrap();
        let err = failed(&o);
        assert!(err.contains("sampling new token 1 of sequence 0") && err.contains("not finite"), "{err}");
    }
}

#[test]
fn eval_data_honours_the_media_root_and_prompt_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path(), 2);
    // An image written here but named by a path from another machine, and an over-long question.
    let img = image::RgbImage::from_fn(56, 56, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
    img.save(dir.path().join("pic.png")).unwrap();
    let eval = dir.path().join("eval.jsonl");
    std::fs::write(
        &eval,
        format!(
            "{}\n{}\n",
            r#"{"id": "img", "question": "Which colour?", "images": ["/data/other/images/pic.png"], "choices": ["red", "blue"], "answer": "A"}"#,
            format!(r#"{{"id": "long", "question": "{}", "choices": ["x", "y"], "answer": "A"}}"#, "word ".repeat(1000)),
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let text = ok(&adapt(&data, &out, &["--steps", "1", "--eval-data", eval.to_str().unwrap(), "--media-root", dir.path().to_str().unwrap(), "--max-prompt-tokens", "800"]));
    // The image item is scored (found under the media root); the long one is skipped.
    let before = text.lines().find(|l| l.starts_with("eval before")).unwrap_or_default().to_string();
    assert!(before.contains("(1 closed-form)") && before.contains("1 items skipped"), "{text}");
}
