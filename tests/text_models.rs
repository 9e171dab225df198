//! Text causal LMs (Qwen2 / Qwen2.5, Qwen3) through the thinker's paths: the transformers
//! fixtures under `tests/fixtures/text/` match (logits, hidden states, positions, greedy tokens,
//! tied and untied heads, left-padded batches; f32 at 2e-4 and bf16 at 1.0); a Qwen3 checkpoint without its head norms is an
//! error naming the tensor; `ttrav adapt --preset ultrafeedback` trains a tiny Qwen2 end to end
//! with a fixture encoder, and the trained weights change what it writes; media in a text
//! model's prompt is an error that says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use ttrav::omni::parity::{check_fixture, ParityOptions};

fn text_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text").join(name)
}

fn ttrav() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttrav"));
    c.env("HF_HUB_OFFLINE", "1").env_remove("TTRL_TASK_TYPE").env_remove("TTRL_OE_ENCODER").env_remove("TTRL_DEDUP_SAMPLES");
    c
}

const FIXTURES: [(&str, &str); 4] =
    [("qwen2_basic", "qwen2"), ("qwen2_tied_leftpad", "qwen2"), ("qwen3_basic", "qwen3"), ("qwen3_tied_leftpad", "qwen3")];

#[test]
fn qwen2_and_qwen3_fixtures_match_transformers() {
    for (name, model_type) in FIXTURES {
        let dir = text_fixture(name);
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["model_type"], model_type, "{name}");
        let checked = check_fixture(&dir, &ParityOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        for key in ["logits", "hidden_states.0", "hidden_states.2", "position_ids", "greedy_token_ids"] {
            assert!(checked.iter().any(|k| k == key), "{name}: `{key}` was not compared ({checked:?})");
        }
        let bf16 = ParityOptions { dtype: candle_core::DType::BF16, tolerance: 1.0, ..Default::default() };
        check_fixture(&dir, &bf16).unwrap_or_else(|e| panic!("{name} in bf16: {e:#}"));
    }
}

/// A copy of a fixture with `tensor` removed from its weights.
fn without_tensor(fixture: &str, tensor: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(text_fixture(fixture)).unwrap().flatten() {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("model.safetensors");
    let mut weights = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    assert!(weights.remove(tensor).is_some(), "{fixture} has no `{tensor}`");
    candle_core::safetensors::save(&weights, &path).unwrap();
    dir
}

#[test]
fn a_text_checkpoint_missing_a_tensor_names_it() {
    let qk = without_tensor("qwen3_basic", "model.layers.1.self_attn.k_norm.weight");
    let e = format!("{:#}", check_fixture(qk.path(), &ParityOptions::default()).unwrap_err());
    assert!(e.contains("k_norm"), "{e}");
    let bias = without_tensor("qwen2_basic", "model.layers.0.self_attn.q_proj.bias");
    let e = format!("{:#}", check_fixture(bias.path(), &ParityOptions::default()).unwrap_err());
    assert!(e.contains("q_proj.bias"), "{e}");
    let head = without_tensor("qwen2_basic", "lm_head.weight");
    let e = format!("{:#}", check_fixture(head.path(), &ParityOptions::default()).unwrap_err());
    assert!(e.contains("lm_head.weight") && e.contains("tie_word_embeddings"), "{e}");
}

#[test]
fn a_text_model_refuses_media() {
    let wav = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/demo/media/heldout/heldout-beeps-0000.wav");
    assert!(wav.is_file(), "the demo data's audio clip");
    let o = ttrav()
        .arg("generate")
        .arg("--model")
        .arg(text_fixture("qwen2_basic"))
        .args(["--prompt", "How many beeps?", "--max-new-tokens", "4", "--audio"])
        .arg(&wav)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("text model (model_type `qwen2`)") && err.contains("heldout-beeps-0000.wav"), "{err}");
}

fn greedy_ids(model: &Path, weights: Option<&Path>) -> serde_json::Value {
    let mut c = ttrav();
    c.arg("generate").arg("--model").arg(model).args(["--prompt", "Suggest a name for a bakery.", "--greedy", "--max-new-tokens", "10", "--json"]);
    if let Some(w) = weights {
        c.arg("--adapter").arg(w);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["token_ids"].clone()
}

#[test]
fn ultrafeedback_preset_trains_a_qwen2_checkpoint_end_to_end() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = text_fixture("qwen2_basic");
    let data = root.join("tests/fixtures/data/ultrafeedback/openbmb_ultrafeedback.jsonl");
    let bge = root.join("tests/fixtures/encoders/bge-tiny");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The preset's settings, with sizes cut to the fixture: 2 prompts x 4 votes, 2 trained answers
    // each, mini-batches of 2 answers, 12-token answers, a rate the tiny model moves at.
    let o = ttrav()
        .arg("adapt")
        .args(["--preset", "ultrafeedback", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--encoder")
        .arg(&bge)
        .arg("--out")
        .arg(&out)
        .args(["--steps", "2", "--questions-per-step", "2", "--n-votes", "4", "--n-samples", "2", "--mini-batch-size", "2"])
        .args(["--max-response-tokens", "12", "--lr", "1e-2", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let text = settings.to_string();
    assert!(text.contains("cluster") && text.contains("continuous"), "the preset's reward: {text}");
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 2);
    for m in &metrics {
        assert_eq!(m["questions"], 2, "{m}");
        assert!(m["reward_mean"].as_f64().unwrap().is_finite(), "{m}");
        assert!(m["grad_norm"].as_f64().unwrap() > 0.0, "a gradient flowed: {m}");
        assert_eq!(m["update_skipped"], serde_json::Value::Null, "{m}");
    }
    // Full fine-tuning (the preset's): the projections are saved under the checkpoint's own
    // names (no `thinker.` prefix), moved from the base weights.
    let trained = candle_core::safetensors::load(out.join("checkpoint/trainable.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(trained.len(), 14, "7 projections x 2 layers: {:?}", trained.keys().collect::<Vec<_>>());
    let name = "model.layers.1.self_attn.v_proj.weight";
    let base = candle_core::safetensors::load(model.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let moved = (&trained[name] - &base[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(moved > 0.0, "{name} was not updated");
    assert_ne!(greedy_ids(&model, None), greedy_ids(&model, Some(&out.join("checkpoint"))), "the trained weights change the answer");
}
