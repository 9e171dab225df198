//! Model loading: hub cache resolution, sharded checkpoints, and bad input (each error names
//! the file and the field or tensor at fault).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{copy_fixture, err_text, fixture};
use std::collections::HashMap;
use ttrav::{ModelSource, PrefillOptions, Processor, PromptBatch, Thinker, ThinkerConfig};

fn load_tensors(path: &std::path::Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn last_logits(thinker: &Thinker) -> Vec<f32> {
    let batch = PromptBatch::left_padded(&[vec![401, 301, 198, 328, 316]], 400).unwrap();
    let out = thinker.prefill(&batch, PrefillOptions::default()).unwrap();
    out.state.next_logits.flatten_all().unwrap().to_vec1().unwrap()
}

fn load_dir(dir: &std::path::Path) -> anyhow::Result<Thinker> {
    Thinker::load(&ModelSource::Local(dir.to_path_buf()), &Device::Cpu, DType::F32)
}

#[test]
fn sharded_checkpoint_equals_single_file() {
    let dir = copy_fixture("text_basic");
    let tensors = load_tensors(&dir.path().join("model.safetensors"));
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let file = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        weight_map.insert(name.clone(), file.into());
        if i % 2 == 0 { a.insert(name, t) } else { b.insert(name, t) };
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = load_dir(dir.path()).unwrap();
    let single = load_dir(&fixture("text_basic")).unwrap();
    assert_eq!(last_logits(&sharded), last_logits(&single));
}

/// Lays a model out as the Hugging Face hub cache does.
fn fake_hub_cache(id: &str) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join(format!("models--{}", id.replace('/', "--")));
    common::copy_dir(&fixture("text_basic"), &repo.join("snapshots/0123abcd"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    cache
}

#[test]
fn hub_id_resolves_from_the_cache_offline() {
    let cache = fake_hub_cache("ttrav-test/tiny-omni");
    let source = ModelSource::Hub { id: "ttrav-test/tiny-omni".into(), cache_dir: cache.path().into(), offline: true };
    let thinker = Thinker::load(&source, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(last_logits(&thinker), last_logits(&load_dir(&fixture("text_basic")).unwrap()));
    let processor = Processor::load(&source).unwrap();
    assert_eq!(processor.tokenizer.im_end, 402);
}

#[test]
fn missing_hub_model_says_where_it_looked() {
    let cache = tempfile::tempdir().unwrap();
    let source = ModelSource::Hub { id: "Qwen/Qwen2.5-Omni-3B".into(), cache_dir: cache.path().into(), offline: true };
    let e = err_text(Thinker::load(&source, &Device::Cpu, DType::F32));
    assert!(e.contains(&cache.path().display().to_string()), "{e}");
    assert!(e.contains("models--Qwen--Qwen2.5-Omni-3B") && e.contains("HF_HUB_OFFLINE"), "{e}");
}

#[test]
fn missing_local_directory_is_named() {
    let e = err_text(ModelSource::resolve("./no/such/model-dir"));
    assert!(e.contains("./no/such/model-dir") && e.contains("does not exist"), "{e}");
}

#[test]
fn malformed_and_truncated_config() {
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("config.json") && e.contains("line"), "{e}");
    std::fs::write(&path, "not json at all").unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("config.json") && e.contains("not valid JSON"), "{e}");
}

#[test]
fn config_field_of_the_wrong_type_is_named() {
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["text_config"]["num_hidden_layers"] = serde_json::json!("two");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("config.json") && e.contains("text_config.num_hidden_layers"), "{e}");
    v["text_config"].as_object_mut().unwrap().remove("num_hidden_layers");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("num_hidden_layers"), "{e}");
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("model.safetensors");
    let mut tensors = load_tensors(&fixture("text_basic").join("model.safetensors"));
    tensors.remove("thinker.model.layers.1.mlp.up_proj.weight");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("thinker.model.layers.1.mlp.up_proj.weight") && e.contains("model.safetensors"), "{e}");

    let mut tensors = load_tensors(&fixture("text_basic").join("model.safetensors"));
    tensors.insert("thinker.model.norm.weight".into(), Tensor::zeros(31, DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("thinker.model.norm.weight") && e.contains("31"), "{e}");
}

#[test]
fn untied_model_without_lm_head_is_an_error() {
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("model.safetensors");
    let mut tensors = load_tensors(&path);
    tensors.remove("thinker.lm_head.weight");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("lm_head.weight") && e.contains("tie_word_embeddings"), "{e}");
}

/// A tied checkpoint (no lm_head tensor) gives the logits of the same model untied with the
/// embedding matrix written out as its lm_head; a head of twice the embeddings gives twice them.
#[test]
fn tied_model_uses_the_embeddings() {
    let cfg = ThinkerConfig::from_file(&fixture("text_full_config_tied").join("config.json")).unwrap();
    assert!(cfg.tie_word_embeddings, "only the thinker-level flag counts");
    let tied = last_logits(&load_dir(&fixture("text_full_config_tied")).unwrap());

    let dir = copy_fixture("text_full_config_tied");
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["thinker_config"]["tie_word_embeddings"] = serde_json::json!(false);
    std::fs::write(&config_path, config.to_string()).unwrap();
    assert!(!ThinkerConfig::from_file(&config_path).unwrap().tie_word_embeddings);
    let weights = dir.path().join("model.safetensors");
    let mut tensors = load_tensors(&weights);
    assert!(!tensors.contains_key("thinker.lm_head.weight"), "the fixture is tied");
    let embeddings = tensors["thinker.model.embed_tokens.weight"].clone();
    tensors.insert("thinker.lm_head.weight".into(), embeddings.clone());
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    assert_eq!(last_logits(&load_dir(dir.path()).unwrap()), tied);

    tensors.insert("thinker.lm_head.weight".into(), (embeddings * 2.0).unwrap());
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let doubled: Vec<f32> = tied.iter().map(|x| 2.0 * x).collect();
    assert_eq!(last_logits(&load_dir(dir.path()).unwrap()), doubled);
}

#[test]
fn truncated_and_corrupt_weights_name_the_file() {
    let dir = copy_fixture("text_basic");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");
    std::fs::write(&path, b"garbage").unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = err_text(load_dir(dir.path()));
    assert!(e.contains("model.safetensors not found"), "{e}");
}

#[test]
fn missing_or_broken_tokenizer() {
    let dir = copy_fixture("text_basic");
    let source = ModelSource::Local(dir.path().to_path_buf());
    let path = dir.path().join("tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("<|im_end|>", "<|im_stop|>")).unwrap();
    let e = err_text(Processor::load(&source));
    assert!(e.contains("<|im_end|>") && e.contains("tokenizer.json"), "{e}");
    std::fs::write(&path, &text[..text.len() / 3]).unwrap();
    let e = err_text(Processor::load(&source));
    assert!(e.contains("tokenizer.json"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = err_text(Processor::load(&source));
    assert!(e.contains("tokenizer.json not found"), "{e}");
}

#[test]
fn out_of_vocabulary_prompt_ids_are_an_error() {
    let thinker = load_dir(&fixture("text_basic")).unwrap();
    let batch = PromptBatch::left_padded(&[vec![1, 2, 5000]], 400).unwrap();
    let e = err_text(thinker.prefill(&batch, PrefillOptions::default()));
    assert!(e.contains("5000"), "{e}");
}
