//! The `ttrav` binary end to end on the bundled fixture model.

mod common;

use common::fixture;
use std::process::Command;

fn ttrav() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttrav"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn generate_greedy_json_matches_transformers() {
    let out = ttrav()
        .args(["generate", "--model"])
        .arg(fixture("text_basic"))
        .args(["--system", "Be brief.", "--prompt", "Tell me a story.", "--greedy", "--max-new-tokens", "6", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1);
    // transformers' greedy continuation of this exact prompt (tests/fixtures/omni/text_basic).
    let ids: Vec<u64> = lines[0]["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, vec![331, 357, 165, 55, 364, 120]);
    assert!(lines[0]["text"].as_str().unwrap().starts_with("system"));
    assert_eq!(lines[0]["finish_reason"], "length");
}

#[test]
fn generate_n_samples_is_reproducible() {
    let run = |seed: &str| {
        let out = ttrav()
            .args(["generate", "--model"])
            .arg(fixture("text_basic"))
            .args(["--prompt", "Hello", "--n", "4", "--temperature", "1.2", "--top-p", "0.9", "--top-k", "50"])
            .args(["--max-new-tokens", "10", "--seed", seed, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    };
    let a = run("3");
    assert_eq!(a.len(), 4);
    for (i, s) in a.iter().enumerate() {
        assert_eq!(s["index"], i);
        let n = s["token_ids"].as_array().unwrap().len();
        assert!(n >= 1 && n <= 10);
        assert_eq!(s["logprobs"].as_array().unwrap().len(), n);
    }
    assert_eq!(a, run("3"));
    assert_ne!(a, run("4"));
}

#[test]
fn generate_plain_output_and_hub_id_from_cache() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--ttrav-test--tiny");
    common::copy_dir(&fixture("text_basic"), &repo.join("snapshots/abc"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    let out = ttrav()
        .env("HF_HUB_CACHE", cache.path())
        .args(["generate", "--model", "ttrav-test/tiny", "--prompt", "Hi", "--greedy", "--max-new-tokens", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("--- sample 0 (3 tokens, Length)"), "{stdout}");
}

#[test]
fn errors_are_messages_not_panics() {
    let out = ttrav().args(["generate", "--model", "./missing-model-dir", "--prompt", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("./missing-model-dir") && !err.contains("panicked"), "{err}");

    let cache = tempfile::tempdir().unwrap();
    let out = ttrav()
        .env("HF_HUB_CACHE", cache.path())
        .args(["generate", "--model", "Qwen/Qwen2.5-Omni-3B", "--prompt", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&cache.path().display().to_string()) && err.contains("HF_HUB_OFFLINE"), "{err}");

    let out = ttrav()
        .args(["generate", "--model"])
        .arg(fixture("text_basic"))
        .args(["--prompt", "x", "--top-p", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("top-p"));
}
