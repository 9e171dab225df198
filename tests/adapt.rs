//! `ttrav adapt` and `ttrav eval` end to end on the fixture models: every reward mode runs, bad
//! items are reported and skipped, a run killed mid-way resumes to exactly the result of an
//! uninterrupted run, and eval reports before/after.

mod common;

use common::fixture;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ttrav() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttrav"));
    c.env("HF_HUB_OFFLINE", "1").env_remove("TTRL_TASK_TYPE").env_remove("TTRL_OE_ENCODER").env_remove("TTRL_DEDUP_SAMPLES");
    c
}

fn bge() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoders/bge-tiny")
}

fn questions(dir: &Path) -> PathBuf {
    let p = dir.join("q.jsonl");
    std::fs::write(
        &p,
        r#"{"id": "q1", "question": "Which is a colour?", "choices": ["red", "dog", "run", "ten"], "answer": "A", "task": "words"}
{"id": "q2", "question": "Which is an animal?", "choices": ["blue", "cat", "sing", "two"], "answer": "B", "task": "words"}
{"id": "q3", "question": "Describe a sunny day.", "answer": "It is warm and bright.", "task": "open"}
{"id": "q4", "question": "Which is a verb?", "choices": ["pink", "cow", "one", "walk"], "answer": "D", "task": "words"}
"#,
    )
    .unwrap();
    p
}

fn adapt(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    ttrav()
        .arg("adapt")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--n-votes", "4", "--n-samples", "2", "--questions-per-step", "2", "--max-response-tokens", "6", "--lr", "0.01", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_reward_mode_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = fixture("text_basic");
    let bge = bge();
    for (i, args) in [
        vec!["--reward", "vote"],
        vec!["--reward", "medoid", "--encoder", bge.to_str().unwrap()],
        vec!["--reward", "judge", "--encoder", bge.to_str().unwrap()],
        vec!["--reward", "cluster", "--variant", "continuous", "--encoder", bge.to_str().unwrap()],
        vec!["--reward", "evolrl", "--encoder", bge.to_str().unwrap(), "--kl-coef", "0.1", "--entropy-coef", "0.01"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("run{i}"));
        let mut a = args.clone();
        a.extend(["--steps", "2"]);
        let o = adapt(&model, &data, &out, &a);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let m = metrics(&out);
        assert_eq!(m.len(), 2, "{args:?}");
        assert_eq!(m[0]["questions"], 2);
        assert!(m[1]["reward_mean"].as_f64().unwrap().is_finite());
        for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "state.json"] {
            assert!(out.join("checkpoint").join(f).is_file(), "{args:?}: {f}");
        }
        assert!(out.join("plot.png").is_file() && out.join("plot.svg").is_file(), "{args:?}: the plots");
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/adapter_config.json")).unwrap()).unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["r"], 16);
    }
}

#[test]
fn bad_items_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        format!(
            "{}\nthis line is not JSON\n{}\n{}\n",
            r#"{"id": "ok", "question": "Which is a colour?", "choices": ["red", "dog", "run", "ten"], "answer": "A"}"#,
            r#"{"id": "noaudio", "question": "What is this sound?", "audio": ["missing.wav"]}"#,
            format!(r#"{{"id": "long", "question": "{}"}}"#, "word ".repeat(300)),
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = adapt(&fixture("text_basic"), &data, &out, &["--steps", "3", "--questions-per-step", "3", "--max-prompt-tokens", "200"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:2"), "{err}");
    let m = metrics(&out);
    assert_eq!(m.len(), 3);
    let reasons: Vec<String> = m.iter().flat_map(|x| x["skip_reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string())).collect();
    assert!(reasons.iter().any(|r| r.contains("noaudio") && r.contains("missing.wav")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("long") && r.contains("max-prompt-tokens")), "{reasons:?}");
    assert!(m.iter().all(|x| x["questions"].as_u64().unwrap() >= 1), "the good item is used every step");
}

fn without_timings(m: &[serde_json::Value]) -> Vec<serde_json::Value> {
    m.iter()
        .map(|x| {
            let mut x = x.clone();
            for k in ["tokens_per_s", "rollout_s", "reward_s", "update_s", "step_s"] {
                x.as_object_mut().unwrap().remove(k);
            }
            x
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = fixture("text_basic");
    let args = ["--steps", "16", "--save-every", "3", "--reward", "vote", "--n-votes", "8", "--max-response-tokens", "12", "--lora-dropout", "0.1"];
    let whole = dir.path().join("whole");
    let o = adapt(&model, &data, &whole, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let cut = dir.path().join("cut");
    let mut child = ttrav()
        .arg("adapt")
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&cut)
        .args(["--n-samples", "2", "--questions-per-step", "2", "--lr", "0.01", "--quiet"])
        .args(args)
        .spawn()
        .unwrap();
    // Kill (SIGKILL) as soon as the first checkpoint is there.
    let state = cut.join("checkpoint/state.json");
    let t0 = std::time::Instant::now();
    while !state.is_file() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let st: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let saved_step = st["step"].as_u64().unwrap();
    assert!(saved_step < 16, "the run was interrupted (checkpoint at step {saved_step})");

    let o = ttrav()
        .arg("adapt")
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&cut)
        .args(["--n-samples", "2", "--questions-per-step", "2", "--lr", "0.01", "--quiet", "--resume"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(without_timings(&metrics(&cut)), without_timings(&metrics(&whole)));
    for f in ["adapter_model.safetensors", "optimizer.safetensors"] {
        assert_eq!(std::fs::read(cut.join("checkpoint").join(f)).unwrap(), std::fs::read(whole.join("checkpoint").join(f)).unwrap(), "{f}");
    }
}

#[test]
fn eval_reports_scores_and_loads_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = fixture("text_basic");
    let out = dir.path().join("run");
    assert!(adapt(&model, &data, &out, &["--steps", "2"]).status.success());
    let eval = |adapter: Option<&Path>| {
        let mut c = ttrav();
        c.arg("eval").arg("--model").arg(&model).arg("--data").arg(&data).args(["--json", "--max-response-tokens", "6", "--n", "3"]);
        if let Some(a) = adapter {
            c.arg("--adapter").arg(a);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let before = eval(None);
    let after = eval(Some(&out.join("checkpoint")));
    assert_eq!(before["overall"]["items"], 4);
    assert_eq!(before["overall"]["closed_items"], 3);
    assert_eq!(before["overall"]["open_items"], 1);
    assert!(before["by_group"]["task=words"]["items"] == 3);
    // The adapter changes the model's answers.
    assert_ne!(before["overall"]["response_words"], serde_json::Value::Null);
    assert!(after["overall"]["items"] == 4);
    let o = ttrav().arg("eval").arg("--model").arg(&model).arg("--data").arg(&data).arg("--adapter").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("adapter_config.json"));
}

#[test]
fn audio_and_image_questions_train() {
    let dir = tempfile::tempdir().unwrap();
    // A 0.5 s tone as 16-bit WAV, and a 60x40 PNG, made here.
    let samples: Vec<i16> = (0..8000).map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16).collect();
    let mut wav = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    wav.extend(b"RIFF");
    wav.extend(&(36 + data_len).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(&16u32.to_le_bytes());
    wav.extend(&1u16.to_le_bytes());
    wav.extend(&1u16.to_le_bytes());
    wav.extend(&16000u32.to_le_bytes());
    wav.extend(&32000u32.to_le_bytes());
    wav.extend(&2u16.to_le_bytes());
    wav.extend(&16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(&data_len.to_le_bytes());
    wav.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    std::fs::write(dir.path().join("tone.wav"), wav).unwrap();
    let img = image::RgbImage::from_fn(60, 40, |x, y| image::Rgb([(x * 4) as u8, (y * 6) as u8, 128]));
    img.save(dir.path().join("pic.png")).unwrap();
    let data = dir.path().join("mm.jsonl");
    std::fs::write(
        &data,
        r#"{"id": "a1", "question": "What do you hear?", "audio": ["tone.wav"], "choices": ["a tone", "speech", "music", "silence"], "answer": "A"}
{"id": "i1", "question": "What colour dominates?", "images": ["pic.png"], "choices": ["red", "green", "blue", "grey"], "answer": "C"}
"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = adapt(&fixture("text_basic"), &data, &out, &["--steps", "2", "--reward", "medoid", "--encoder", bge().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&out);
    assert!(m.iter().all(|x| x["questions"] == 2 && x["skipped_items"] == 0), "{m:?}");
}

#[test]
fn full_fine_tuning_trains_saves_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = fixture("text_basic");
    let out = dir.path().join("full");
    let o = adapt(&model, &data, &out, &["--steps", "2", "--reward", "medoid", "--encoder", bge().to_str().unwrap(), "--full-finetune"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("checkpoint/trainable.safetensors").is_file());
    let t = candle_core::safetensors::load(out.join("checkpoint/trainable.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.len(), 14, "7 projections x 2 layers");
    let trained = &t["thinker.model.layers.0.mlp.up_proj.weight"];
    let base = &candle_core::safetensors::load(model.join("model.safetensors"), &candle_core::Device::Cpu).unwrap()["thinker.model.layers.0.mlp.up_proj.weight"];
    let moved = (trained - base).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(moved > 0.0, "the weights were updated");
    let o = ttrav().arg("generate").arg("--model").arg(&model).arg("--adapter").arg(out.join("checkpoint")).args(["--prompt", "hi", "--greedy", "--max-new-tokens", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
