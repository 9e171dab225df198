//! Parity with transformers: every fixture directory under `tests/fixtures/omni/` and under each
//! root in `TTRAV_OMNI_FIXTURES` (colon-separated) is loaded, run on the CPU in f32, and compared
//! with every expected tensor it holds (see `ttrav::omni::parity`). A fixture that needs a
//! capability ttrav lacks fails with a message naming it; nothing passes by being skipped. A
//! fixture with a missing or mis-shaped tensor is an error naming the file and the tensor.

mod common;

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use ttrav::omni::parity::{check_fixture, fixture_dirs, ParityOptions};

#[test]
fn omni_fixtures_match_transformers() {
    let mut roots = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/omni")];
    if let Ok(extra) = std::env::var("TTRAV_OMNI_FIXTURES") {
        roots.extend(extra.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    let dirs = fixture_dirs(&roots).unwrap();
    assert!(!dirs.is_empty(), "no fixtures found under tests/fixtures/omni");
    let opts = ParityOptions::default();
    let mut failures = Vec::new();
    for dir in &dirs {
        match check_fixture(dir, &opts) {
            Ok(keys) => eprintln!("ok   {} ({})", dir.display(), keys.join(", ")),
            Err(e) => {
                eprintln!("FAIL {}: {e:#}", dir.display());
                failures.push(format!("{}: {e:#}", dir.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}

/// Runs `fixture` with one tensor of `file` replaced (`Some`) or removed (`None`); returns the error.
fn mis_shaped(fixture: &str, file: &str, key: &str, replacement: Option<Tensor>) -> String {
    let dir = common::copy_fixture(fixture);
    let path = dir.path().join(file);
    let mut tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    assert!(tensors.contains_key(key), "{fixture}/{file} has no `{key}` to mutate");
    match replacement {
        Some(t) => tensors.insert(key.to_string(), t),
        None => tensors.remove(key),
    };
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let outcome = std::panic::catch_unwind(|| check_fixture(dir.path(), &ParityOptions::default()));
    let result = outcome.unwrap_or_else(|_| panic!("{fixture}/{file} `{key}`: the harness panicked"));
    format!("{:#}", result.expect_err(&format!("{fixture}/{file} `{key}` mutated, yet the fixture passed")))
}

fn original(fixture: &str, file: &str, key: &str) -> Tensor {
    candle_core::safetensors::load(common::fixture(fixture).join(file), &Device::Cpu).unwrap().remove(key).unwrap()
}

#[test]
fn mis_shaped_fixtures_are_errors_naming_file_and_tensor() {
    let (inputs, expected) = ("inputs.safetensors", "expected.safetensors");
    let ids = original("image_basic", inputs, "input_ids");
    let len = ids.dim(1).unwrap();
    let i64s = |v: Vec<i64>, shape: &[usize]| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    let cases: Vec<(&str, &str, &str, Option<Tensor>, &str)> = vec![
        ("image_basic", inputs, "input_ids", None, "missing"),
        ("image_basic", inputs, "attention_mask", Some(i64s(vec![1; len - 1], &[1, len - 1])), "expected [1,"),
        ("image_basic", inputs, "input_ids", Some(ids.to_dtype(DType::F32).unwrap()), "expected an integer type"),
        ("image_basic", inputs, "input_ids", Some((ids.clone() + 1e6).unwrap()), "outside the vocabulary"),
        ("image_basic", inputs, "image_grid_thw", Some(i64s(vec![1, 2], &[1, 2])), "expected [*, 3]"),
        ("image_basic", inputs, "image_grid_thw", Some(i64s(vec![1, 2, 2], &[1, 3])), "covers 4 patch rows"),
        ("image_basic", inputs, "image_grid_thw", Some(i64s(vec![1, -4, 2], &[1, 3])), "entries must lie in"),
        ("image_basic", inputs, "image_grid_thw", Some(i64s(vec![1, 3, 4], &[1, 3])), "multiples of the merge size"),
        ("image_basic", inputs, "image_grid_thw", None, "missing"),
        ("image_basic", inputs, "pixel_values", Some(original("image_basic", inputs, "pixel_values").to_dtype(DType::I64).unwrap()), "expected a float type"),
        ("image_basic", inputs, "raw_image", Some(original("image_basic", inputs, "raw_image").flatten_from(1).unwrap()), "`raw_image` has shape"),
        ("image_basic", expected, "position_ids", Some(i64s(vec![0; 3 * (len - 2)], &[3, 1, len - 2])), "`position_ids` has shape"),
        ("image_basic", expected, "logits", Some(Tensor::zeros((len, 7), DType::F32, &Device::Cpu).unwrap()), "`logits` has shape"),
        ("image_basic", expected, "greedy_token_ids", Some(i64s(vec![1, 2, 3, 4], &[2, 2])), "`greedy_token_ids` has shape"),
        ("image_basic", expected, "greedy_step_logits", Some(Tensor::zeros((1, 7), DType::F32, &Device::Cpu).unwrap()), "`greedy_step_logits` has shape"),
        ("image_basic", expected, "rope_deltas", Some(i64s(vec![0, 0], &[2])), "`rope_deltas` must hold 1"),
        ("audio_basic", inputs, "feature_attention_mask", None, "missing"),
        ("audio_basic", expected, "mel_features", Some(Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap()), "`mel_features` has shape"),
        ("audio_basic", inputs, "raw_waveform", None, "raw_waveform"),
        ("video_basic", inputs, "video_second_per_grid", Some(Tensor::new(&[1f32, 1.0, 1.0], &Device::Cpu).unwrap()), "`video_second_per_grid` has shape"),
        ("video_basic", inputs, "video_second_per_grid", Some(Tensor::new(&[f32::NAN], &Device::Cpu).unwrap()), "positive finite"),
        ("video_basic", inputs, "raw_video", Some(Tensor::zeros((2, 4, 4), DType::U8, &Device::Cpu).unwrap()), "`raw_video` has shape"),
    ];
    for (fixture, file, key, replacement, want) in cases {
        let what = if replacement.is_some() { "mis-shaped" } else { "missing" };
        let e = mis_shaped(fixture, file, key, replacement);
        let names_file = e.contains(file) || (key == "raw_waveform" && e.contains("inputs.safetensors"));
        assert!(names_file && e.contains(key) && e.contains(want), "{fixture}/{file} {what} `{key}`: {e}");
    }
}
