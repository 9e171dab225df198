//! `ttrav reward` end to end: every mode on a small input (the embedding modes with the tiny
//! BGE-layout encoder, the judge with the fixture thinker), and bad input files.

use std::process::{Command, Output};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], input: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .arg("reward")
        .args(args)
        .arg("--input")
        .arg(input)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("TTRL_TASK_TYPE")
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_mode_scores_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("groups.json");
    let groups = serde_json::json!([
        {"question": "Which?", "candidates": ["\\boxed{B}", "so \\boxed{B}", "\\boxed{A}", "no idea"], "gold": "B"},
        {"question": "What happens?", "candidates": ["a man is eating food", "a man eats food", "the quick brown fox", "", "a man is eating food"]}
    ]);
    std::fs::write(&input, groups.to_string()).unwrap();
    let vote = lines(&run(&["--mode", "video_qa", "--json"], &input));
    assert_eq!(vote[0]["rewards"], serde_json::json!([1.0, 1.0, 0.0, 0.0]));
    assert_eq!(vote[0]["label"], "B");
    assert_eq!(vote[0]["diagnostics"]["label_accuracy"], 1.0);
    assert_eq!(vote[1]["label"], serde_json::Value::Null);

    let bge = root().join("tests/fixtures/encoders/bge-tiny");
    let bge = bge.to_str().unwrap();
    for mode in ["medoid", "cluster", "evolrl"] {
        let out = lines(&run(&["--mode", mode, "--encoder", bge, "--json"], &input));
        let r: Vec<f64> = out[1]["rewards"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(r.len(), 5, "{mode}");
        // The empty answer: 0 (medoid, cluster) or -1 (evolrl).
        assert_eq!(r[3], if mode == "evolrl" { -1.0 } else { 0.0 }, "{mode}");
        // Two identical answers get identical rewards.
        assert!((r[0] - r[4]).abs() < 1e-6, "{mode}: {r:?}");
    }
    let kde = lines(&run(&["--mode", "cluster", "--variant", "kde", "--encoder", bge, "--json"], &input));
    let r: Vec<f64> = kde[1]["rewards"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(r.iter().any(|&x| (x - 1.0).abs() < 1e-6), "KDE: the densest answer gets 1: {r:?}");

    let model = root().join("tests/fixtures/omni/text_basic");
    let judge = lines(&run(&["--mode", "judge", "--encoder", bge, "--judge-model", model.to_str().unwrap(), "--json"], &input));
    let r: Vec<f64> = judge[1]["rewards"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // The tiny random judge rarely writes a number: every reward is a score in [0, 1].
    assert!(r.iter().all(|x| (0.0..=1.0).contains(x)), "{r:?}");

    // The readable table.
    let out = run(&["--mode", "vote"], &input);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() == 3 && text.contains("1.000 1.000 0.000 0.000"), "{text}");
}

#[test]
fn jsonl_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("groups.jsonl");
    std::fs::write(&jsonl, "{\"candidates\": [\"\\\\boxed{A}\"]}\n\n{\"candidates\": [\"\\\\boxed{C}\", \"\\\\boxed{c}\"]}\n").unwrap();
    let out = lines(&run(&["--json"], &jsonl));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["rewards"], serde_json::json!([1.0, 1.0]));

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"candidates\": [\"a\"]}\n{\"candidates\": [\"b\"\n").unwrap();
    let out = run(&[], &bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2") && err.contains("column"), "{err}");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "[{\"candidates\": [\"a\"]},\n {\"candidates\": oops}]").unwrap();
    let err = String::from_utf8_lossy(&run(&[], &broken).stderr).to_string();
    assert!(err.contains("line 2") && err.contains("column"), "{err}");

    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{\"question\": \"q\", \"candidates\": []}").unwrap();
    let err = String::from_utf8_lossy(&run(&[], &empty).stderr).to_string();
    assert!(err.contains("no candidate"), "{err}");

    let missing = dir.path().join("missing.json");
    std::fs::write(&missing, "{\"question\": \"q\"}").unwrap();
    let err = String::from_utf8_lossy(&run(&[], &missing).stderr).to_string();
    assert!(err.contains("candidates"), "{err}");
}

#[test]
fn megabyte_candidates_are_truncated_by_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.json");
    let big = "word ".repeat(250_000);
    std::fs::write(&input, serde_json::json!({"candidates": [big, "word word", "other"]}).to_string()).unwrap();
    let bge = root().join("tests/fixtures/encoders/bge-tiny");
    let out = lines(&run(&["--mode", "medoid", "--encoder", bge.to_str().unwrap(), "--json"], &input));
    assert_eq!(out[0]["rewards"].as_array().unwrap().len(), 3);
}
