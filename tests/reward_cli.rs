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
    let rewards = |out: &serde_json::Value| -> Vec<f64> { out["rewards"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let candidates = |g: usize| -> Vec<String> { groups[g]["candidates"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect() };
    let mut medoid_labels = Vec::new();
    for mode in ["medoid", "cluster", "evolrl"] {
        let out = lines(&run(&["--mode", mode, "--encoder", bge, "--json"], &input));
        assert_eq!(out.len(), 2, "{mode}");
        for (g, o) in out.iter().enumerate() {
            let r = rewards(o);
            assert_eq!(r.len(), candidates(g).len(), "{mode}");
            // The label is the anchor answer's text.
            let anchor = o["anchor"].as_u64().unwrap_or_else(|| panic!("{mode}: no anchor: {o}")) as usize;
            assert_eq!(o["label"].as_str(), Some(candidates(g)[anchor].as_str()), "{mode}: {o}");
            match mode {
                // clamp(cos(answer, medoid), 0, 1): the medoid itself gets 1.
                "medoid" => {
                    assert!(r.iter().all(|x| (0.0..=1.0).contains(x)), "{mode}: {r:?}");
                    assert!((r[anchor] - 1.0).abs() < 1e-6, "{mode}: {r:?}");
                    medoid_labels.push(o["label"].clone());
                }
                // The modal cluster's members get 1, the others 0.
                "cluster" => {
                    assert!(r.iter().all(|&x| x == 0.0 || x == 1.0), "{mode}: {r:?}");
                    assert_eq!(r[anchor], 1.0, "{mode}: {r:?}");
                }
                _ => assert!(r.iter().all(|x| (-1.0..=1.0).contains(x)), "{mode}: {r:?}"),
            }
        }
        let r = rewards(&out[1]);
        // The empty answer: 0 (medoid, cluster) or -1 (evolrl).
        assert_eq!(r[3], if mode == "evolrl" { -1.0 } else { 0.0 }, "{mode}");
        // Two identical answers get identical rewards.
        assert!((r[0] - r[4]).abs() < 1e-6, "{mode}: {r:?}");
    }
    let kde = lines(&run(&["--mode", "cluster", "--variant", "kde", "--encoder", bge, "--json"], &input));
    let r = rewards(&kde[1]);
    assert!(r.iter().any(|&x| (x - 1.0).abs() < 1e-6), "KDE: the densest answer gets 1: {r:?}");

    let model = root().join("tests/fixtures/omni/text_basic");
    let judge = lines(&run(&["--mode", "judge", "--encoder", bge, "--judge-model", model.to_str().unwrap(), "--json"], &input));
    for (g, o) in judge.iter().enumerate() {
        // The judge compares each answer with the medoid answer: the same reference as medoid's.
        assert_eq!(o["label"], medoid_labels[g], "judge reference of group {g}");
        // The tiny random judge writes no number, so every answer gets the neutral 0.5.
        assert_eq!(rewards(o), vec![0.5; candidates(g).len()], "{o}");
    }

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

/// A megabyte answer is cut to the encoder's 32 tokens: it gets exactly the rewards of its first
/// 40 words (also past the limit), and not those of its first 20 words.
#[test]
fn megabyte_candidates_are_truncated_by_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let words = ["the", "cat", "is", "on", "the", "mat", "and", "a", "dog", "was", "in", "the", "house", "with", "it"];
    let text = |n: usize| (0..n).map(|i| words[i % words.len()]).collect::<Vec<_>>().join(" ");
    let bge = root().join("tests/fixtures/encoders/bge-tiny");
    let score = |first: String| {
        let input = dir.path().join("group.json");
        std::fs::write(&input, serde_json::json!({"candidates": [first, "a man eats food", "the quick brown fox"]}).to_string()).unwrap();
        let out = lines(&run(&["--mode", "medoid", "--encoder", bge.to_str().unwrap(), "--json"], &input));
        out[0]["rewards"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<f64>>()
    };
    let big = text(300_000);
    assert!(big.len() > 1_000_000);
    let r = score(big);
    assert_eq!(r.len(), 3);
    assert_eq!(r, score(text(40)));
    let short = score(text(20));
    assert!((r[0] - short[0]).abs() > 1e-4, "{r:?} vs {short:?}");
}
