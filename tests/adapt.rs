//! `ttrav adapt` and `ttrav eval` end to end on the fixture models: every reward mode runs and
//! updates the model at every step, bad items are reported and skipped, a run killed mid-way
//! resumes to exactly the result of an uninterrupted run, and eval reports scores and loads
//! adapters that change the model's answers.

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

/// A copy of the fixture model whose answers the vote and the judge can read. The random-weight
/// fixture never writes `\boxed{X}` nor a judge score, so every vote group would earn all zeros
/// and every judge group the neutral 0.5, and DAPO's filter would leave nothing to train on. The
/// copy's tokenizer gains ten tokens in the model's unused vocabulary rows 410-419:
/// `\boxed{A}`..`\boxed{D}` (output rows: 1.5 x the row of token 331, the fixture's most frequent
/// token, the same for all four, so that the letter is drawn at random) and the scores ` 1 `,
/// ` 3 `, ` 5 `, ` 7 `, ` 9 `, ` 10 ` (1.25 x the rows of tokens 20, 60, .., 220), so that sampled
/// answers carry letters and the judge's greedy replies carry a score that depends on the answer.
fn readable_model(dir: &Path) -> PathBuf {
    let out = dir.join("readable_model");
    common::copy_dir(&fixture("text_basic"), &out);
    let tokens = [r"\boxed{A}", r"\boxed{B}", r"\boxed{C}", r"\boxed{D}", " 1 ", " 3 ", " 5 ", " 7 ", " 9 ", " 10 "];
    let tok_path = out.join("tokenizer.json");
    let mut tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    let added = tok["added_tokens"].as_array_mut().unwrap();
    for (i, content) in tokens.iter().enumerate() {
        added.push(serde_json::json!({"id": 410 + i, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": false}));
    }
    std::fs::write(&tok_path, tok.to_string()).unwrap();
    let weights_path = out.join("model.safetensors");
    let mut weights = candle_core::safetensors::load(&weights_path, &candle_core::Device::Cpu).unwrap();
    let head = &weights["thinker.lm_head.weight"];
    assert_eq!(head.dims()[0], 420, "rows 410-419 exist and are unused by the fixture's tokenizer");
    let mut rows: Vec<Vec<f32>> = head.to_vec2().unwrap();
    for i in 0..tokens.len() {
        let (source, scale) = if i < 4 { (331, 1.5) } else { (20 + 40 * (i - 4), 1.25) };
        rows[410 + i] = rows[source].iter().map(|x| x * scale).collect();
    }
    weights.insert("thinker.lm_head.weight".into(), candle_core::Tensor::new(rows, &candle_core::Device::Cpu).unwrap());
    candle_core::safetensors::save(&weights, &weights_path).unwrap();
    out
}

/// Every step of a run trained: a gradient flowed and no update was skipped.
fn assert_every_step_updated(m: &[serde_json::Value], what: &str) {
    for (i, x) in m.iter().enumerate() {
        assert_eq!(x["update_skipped"], serde_json::Value::Null, "{what}: step {}: {x}", i + 1);
        assert!(x["grad_norm"].as_f64().unwrap() > 0.0, "{what}: step {}: no gradient: {x}", i + 1);
        assert!(x["groups_filtered"].as_u64().unwrap() < x["questions"].as_u64().unwrap(), "{what}: step {}: {x}", i + 1);
    }
}

#[test]
fn every_reward_mode_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = readable_model(dir.path());
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
        a.extend(["--steps", "2", "--questions-per-step", "4", "--max-response-tokens", "12"]);
        let o = adapt(&model, &data, &out, &a);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let m = metrics(&out);
        assert_eq!(m.len(), 2, "{args:?}");
        assert!(m.iter().all(|x| x["questions"] == 4), "{args:?}");
        assert!(m.iter().all(|x| x["reward_mean"].as_f64().unwrap().is_finite()), "{args:?}");
        assert_every_step_updated(&m, &format!("{args:?}"));
        for f in ["adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "state.json"] {
            assert!(out.join("checkpoint").join(f).is_file(), "{args:?}: {f}");
        }
        // The update reached the saved adapter: LoRA B starts at zero and is not zero any more.
        let adapter = candle_core::safetensors::load(out.join("checkpoint/adapter_model.safetensors"), &candle_core::Device::Cpu).unwrap();
        let moved = adapter
            .iter()
            .filter(|(name, _)| name.contains("lora_B"))
            .map(|(_, t)| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap())
            .fold(0.0f32, f32::max);
        assert!(moved > 0.0, "{args:?}: LoRA B is still zero");
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

/// Greedy answers of the model (with an adapter or not) to two of the questions, as token ids.
fn greedy_answers(model: &Path, adapter: Option<&Path>) -> Vec<serde_json::Value> {
    ["Which is a colour?", "Describe a sunny day."]
        .iter()
        .map(|prompt| {
            let mut c = ttrav();
            c.arg("generate").arg("--model").arg(model).args(["--prompt", prompt, "--greedy", "--max-new-tokens", "12", "--json"]);
            if let Some(a) = adapter {
                c.arg("--adapter").arg(a);
            }
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["token_ids"].clone()
        })
        .collect()
}

#[test]
fn eval_reports_scores_and_loads_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let model = fixture("text_basic");
    let out = dir.path().join("run");
    // The medoid reward gives the random fixture a learning signal at every step (the vote would not).
    let o = adapt(&model, &data, &out, &["--steps", "2", "--reward", "medoid", "--encoder", bge().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_every_step_updated(&metrics(&out), "medoid");
    let adapter = out.join("checkpoint");
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
    let after = eval(Some(&adapter));
    for report in [&before, &after] {
        assert_eq!(report["overall"]["items"], 4);
        assert_eq!(report["overall"]["closed_items"], 3);
        assert_eq!(report["overall"]["open_items"], 1);
        assert_eq!(report["by_group"]["task=words"]["items"], 3);
        assert_eq!(report["by_group"]["task=open"]["items"], 1);
        // The overall mean answer length is the item-weighted mean of the groups'.
        let words = |g: &serde_json::Value| g["response_words"].as_f64().unwrap();
        let mixed = (3.0 * words(&report["by_group"]["task=words"]) + words(&report["by_group"]["task=open"])) / 4.0;
        assert!((words(&report["overall"]) - mixed).abs() < 1e-9, "{report}");
    }
    // The adapter changes the model's answers: the same seeded samples score differently...
    assert_ne!(before["by_group"], after["by_group"], "eval with the adapter gave the same scores as without");
    // ... and the greedy answers differ.
    let base = greedy_answers(&model, None);
    assert_eq!(base, greedy_answers(&model, None), "greedy answers are reproducible");
    assert_ne!(base, greedy_answers(&model, Some(&adapter)), "the adapter left the greedy answers as they were");
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
    assert_every_step_updated(&m, "audio and image questions");
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
    assert_every_step_updated(&metrics(&out), "full fine-tuning");
    // Loading the trained weights changes what the model writes.
    let base = greedy_answers(&model, None);
    let tuned = greedy_answers(&model, Some(&out.join("checkpoint")));
    assert_eq!(tuned.len(), 2);
    assert_ne!(base, tuned, "generate --adapter with trainable.safetensors gave the base model's answers");
}
