//! `ttrav sft` and the demo's pieces: gradients through the towers match finite differences,
//! every tensor gets trained, the loss falls, a killed run resumes exactly, bad items are
//! reported and counted, and the demo data and untrained model are reproducible.

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;
use ttrav::demo::data::{write_demo_data, DemoSplits};
use ttrav::nn::Pass;
use ttrav::{ModelSource, Processor, PromptBatch, Thinker};

fn ttrav() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttrav"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

/// Demo data (a few items of each split) and the untrained demo model, in `dir`.
fn demo(dir: &Path, train: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    write_demo_data(&data, 3, &DemoSplits { train, test: 7, heldout: 0 }, false).unwrap();
    let model = dir.join("model");
    ttrav::demo::model::write_untrained_model(&data, &model, 5, 1.0).unwrap();
    (data, model)
}

/// The negated summed log-probability of the completions of `items` (prompt + completion).
fn loss_of(t: &Thinker, p: &Processor, items: &[ttrav::data::Item]) -> Tensor {
    let mut prompts = Vec::new();
    let mut lens = Vec::new();
    for item in items {
        let mut e = p.encode_chat(&ttrav::rl::adapt::item_messages(item, None)).unwrap();
        let mut answer = p.tokenizer.encode(&ttrav::rl::sft::completion_text(item).unwrap()).unwrap();
        answer.push(p.tokenizer.im_end);
        lens.push(answer.len());
        e.input_ids.extend(answer);
        prompts.push(e);
    }
    let batch = PromptBatch::from_prompts(&prompts, p.tokenizer.end_of_text).unwrap();
    let out = t.completion_logprobs(&batch, &lens, Pass::TRAIN).unwrap();
    (out.logp * out.mask).unwrap().sum_all().unwrap().neg().unwrap()
}

#[test]
fn gradients_through_both_towers_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = demo(dir.path(), 7);
    let source = ModelSource::resolve(model.to_str().unwrap()).unwrap();
    let (t, params) = Thinker::load_trainable(&source, &Device::Cpu, DType::F64).unwrap();
    let p = Processor::load(&source).unwrap();
    // A `match` item (audio and image) and a `beeps` item (audio), in one left-padded batch.
    let ds = ttrav::data::load_dataset(&data.join("test.jsonl"), None, None).unwrap();
    let items = vec![ds.items[6].clone(), ds.items[0].clone()];
    assert_eq!(items[0].id, "test-match-0006");
    let l0 = loss_of(&t, &p, &items);
    let grads = l0.backward().unwrap();
    // Every tensor of the checkpoint is trained and gets a gradient.
    let missing: Vec<&String> = params.iter().filter(|(_, v)| grads.get(v.as_tensor()).is_none()).map(|(n, _)| n).collect();
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    let h = 1e-6;
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for name in ["audio_tower.conv1.weight", "audio_tower.layers.0.fc1.weight", "audio_tower.ln_post.weight", "visual.patch_embed.proj.weight", "visual.blocks.0.mlp.up_proj.weight", "visual.merger.ln_q.weight", "model.embed_tokens.weight"] {
        let var = &params.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} is trained")).1;
        let g: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let k = (0..g.len()).fold(0, |b, i| if g[i].abs() > g[b].abs() { i } else { b });
        let orig: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let shape = var.as_tensor().shape().clone();
        let at = |delta: f64| {
            let mut w = orig.clone();
            w[k] += delta;
            var.set(&Tensor::from_vec(w, shape.clone(), &Device::Cpu).unwrap()).unwrap();
            loss_of(&t, &p, &items).to_scalar::<f64>().unwrap()
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        var.set(&Tensor::from_vec(orig.clone(), shape, &Device::Cpu).unwrap()).unwrap();
        let rel = (numeric - g[k]).abs() / g[k].abs().max(1e-9);
        if !(g[k].abs() > 1e-9 && rel < 1e-4) {
            wrong.push(format!("{name}: analytic {} vs numeric {numeric} (relative error {rel:e})", g[k]));
        }
        checked.push(name);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(checked.len(), 7);
}

fn sft(model: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    ttrav()
        .arg("sft")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--batch-size", "4", "--lr", "3e-3", "--quiet"])
        .args(extra)
        .output()
        .unwrap()
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn without_timings(m: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    m.into_iter()
        .map(|mut x| {
            x.as_object_mut().unwrap().remove("step_s");
            x
        })
        .collect()
}

#[test]
fn sft_lowers_the_loss_exports_a_model_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = demo(dir.path(), 14);
    let train = data.join("train.jsonl");
    let whole = dir.path().join("whole");
    let o = sft(&model, &train, &whole, &["--steps", "12", "--save-every", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&whole);
    assert_eq!(m.len(), 12);
    let first = m[..3].iter().map(|x| x["loss"].as_f64().unwrap()).sum::<f64>();
    let last = m[9..].iter().map(|x| x["loss"].as_f64().unwrap()).sum::<f64>();
    assert!(last < 0.7 * first, "the loss falls: {first} -> {last}");
    // The exported model is complete and differs from the untrained one.
    let exported = whole.join("model");
    for f in ["config.json", "tokenizer.json", "chat_template.json", "preprocessor_config.json", "model.safetensors"] {
        assert!(exported.join(f).is_file(), "{f}");
    }
    let a = candle_core::safetensors::load(model.join("model.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(exported.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    let moved = |k: &str| (&a[k] - &b[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(moved("audio_tower.conv1.weight") > 0.0 && moved("visual.patch_embed.proj.weight") > 0.0 && moved("model.norm.weight") > 0.0);

    // Killed after its first checkpoint, resumed: the same metrics and weights.
    let cut = dir.path().join("cut");
    let mut child = ttrav()
        .arg("sft")
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&train)
        .arg("--out")
        .arg(&cut)
        .args(["--batch-size", "4", "--lr", "3e-3", "--quiet", "--steps", "12", "--save-every", "2"])
        .spawn()
        .unwrap();
    let state = cut.join("checkpoint/state.json");
    let t0 = std::time::Instant::now();
    while !state.is_file() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = sft(&model, &train, &cut, &["--steps", "12", "--save-every", "2", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(without_timings(metrics(&cut)), without_timings(metrics(&whole)));
    let c = std::fs::read(cut.join("model/model.safetensors")).unwrap();
    assert_eq!(c, std::fs::read(whole.join("model/model.safetensors")).unwrap());
}

#[test]
fn sft_with_lora_trains_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = demo(dir.path(), 8);
    let out = dir.path().join("lora");
    let o = sft(&model, &data.join("train.jsonl"), &out, &["--steps", "3", "--lora-rank", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("checkpoint/adapter_model.safetensors").is_file());
    assert!(!out.join("model").exists(), "LoRA writes an adapter, not a model");
    let m = metrics(&out);
    assert!(m.iter().all(|x| x["grad_norm"].as_f64().unwrap() > 0.0 && x["update_skipped"].is_null()), "{m:?}");
}

#[test]
fn bad_items_are_reported_counted_and_an_unusable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = demo(dir.path(), 4);
    let file = data.join("mixed.jsonl");
    let good = std::fs::read_to_string(data.join("train.jsonl")).unwrap();
    std::fs::write(
        &file,
        format!(
            "{}this is not JSON\n{{\"id\": \"noanswer\", \"question\": \"How many?\", \"choices\": [\"one\", \"two\"]}}\n{{\"id\": \"nomedia\", \"question\": \"How many?\", \"audio\": [\"media/none.wav\"], \"choices\": [\"one\", \"two\"], \"answer\": \"A\"}}\n",
            good
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = sft(&model, &file, &out, &["--steps", "2", "--batch-size", "6"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mixed.jsonl:5") && err.contains("noanswer: no answer to learn"), "{err}");
    let m = metrics(&out);
    let reasons: Vec<String> = m.iter().flat_map(|x| x["skip_reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string())).collect();
    assert!(reasons.iter().any(|r| r.contains("nomedia") && r.contains("none.wav")), "{reasons:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    let skipped = 2 + reasons.len();
    assert!(text.contains(&format!("items skipped: {skipped};")), "{text}");
    // Nothing usable: an error naming the file.
    let none = data.join("none.jsonl");
    std::fs::write(&none, "{\"id\": \"x\", \"question\": \"How many?\"}\n").unwrap();
    let o = sft(&model, &none, &dir.path().join("none"), &["--steps", "1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("none.jsonl holds no item with an answer"));
}

#[test]
fn demo_data_refuses_a_non_empty_folder_and_the_model_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = ttrav().args(["demo-data", "--train", "0", "--test", "3", "--heldout", "0", "--out"]).arg(&out).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = ttrav().args(["demo-data", "--train", "7", "--test", "3", "--heldout", "0", "--force", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("keep.txt").is_file());
    let (m1, m2) = (dir.path().join("m1"), dir.path().join("m2"));
    for m in [&m1, &m2] {
        ttrav::demo::model::write_untrained_model(&out, m, 9, 1.0).unwrap();
    }
    for f in ["tokenizer.json", "config.json", "model.safetensors"] {
        assert_eq!(std::fs::read(m1.join(f)).unwrap(), std::fs::read(m2.join(f)).unwrap(), "{f}");
    }
}

#[test]
fn a_left_padded_batch_scores_each_item_as_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = demo(dir.path(), 7);
    let source = ModelSource::resolve(model.to_str().unwrap()).unwrap();
    let t = Thinker::load(&source, &Device::Cpu, DType::F32).unwrap();
    let p = Processor::load(&source).unwrap();
    let ds = ttrav::data::load_dataset(&data.join("test.jsonl"), None, None).unwrap();
    let encode = |item: &ttrav::data::Item| {
        let mut e = p.encode_chat(&ttrav::rl::adapt::item_messages(item, None)).unwrap();
        let mut answer = p.tokenizer.encode(&ttrav::rl::sft::completion_text(item).unwrap()).unwrap();
        answer.push(p.tokenizer.im_end);
        let n = answer.len();
        e.input_ids.extend(answer);
        (e, n)
    };
    let items: Vec<_> = [6, 0, 3, 5].iter().map(|&i| encode(&ds.items[i])).collect();
    let lens: Vec<usize> = items.iter().map(|(e, _)| e.input_ids.len()).collect();
    assert!(lens.iter().any(|&l| l != lens[0]), "the batch needs padding: {lens:?}");
    for pass in [Pass::INFER, Pass::TRAIN] {
        let prompts: Vec<_> = items.iter().map(|(e, _)| e.clone()).collect();
        let n: Vec<usize> = items.iter().map(|(_, n)| *n).collect();
        let batch = PromptBatch::from_prompts(&prompts, p.tokenizer.end_of_text).unwrap();
        let all = t.completion_logprobs(&batch, &n, pass).unwrap();
        let (b, width) = all.logp.dims2().unwrap();
        for (row, (e, k)) in items.iter().enumerate() {
            let alone = t.completion_logprobs(&PromptBatch::from_prompts(std::slice::from_ref(e), p.tokenizer.end_of_text).unwrap(), &[*k], pass).unwrap();
            let want: Vec<f32> = alone.logp.flatten_all().unwrap().to_vec1().unwrap();
            let got: Vec<f32> = all.logp.get(row).unwrap().narrow(0, width - k, *k).unwrap().to_vec1().unwrap();
            let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "{pass:?} row {row} of {b}: {want:?} vs {got:?}");
        }
    }
}
