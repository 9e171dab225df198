//! The bundled demo: its data is what `ttrav demo-data` writes for seed 0, and `ttrav demo` shows
//! the TTRL result with the margins the README states.

use std::path::{Path, PathBuf};
use std::process::Command;
use ttrav::demo::data::{write_demo_data, DemoSplits};

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn the_bundled_demo_data_is_what_demo_data_writes_for_seed_0() {
    let dir = tempfile::tempdir().unwrap();
    let splits = DemoSplits { train: 0, ..Default::default() };
    write_demo_data(dir.path(), 0, &splits, false).unwrap();
    let committed = repo("data/demo");
    let made = files(dir.path());
    let bundled: Vec<PathBuf> = files(&committed).into_iter().filter(|p| !p.ends_with("README.md")).collect();
    assert_eq!(made.len(), bundled.len(), "the same files");
    for (a, b) in made.iter().zip(&bundled) {
        assert_eq!(a.strip_prefix(dir.path()).unwrap(), b.strip_prefix(&committed).unwrap());
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs", b.display());
    }
    let total: u64 = bundled.iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(total < 5_000_000, "data/demo holds {total} bytes");
}

/// The README's main job, and the margins it states at seed 0: adaptation without labels raises
/// pass@1 on `test` by at least 10 points and on `heldout` by at least 5, and the random-reward
/// control does not raise it by 3 or more; the open-ended variant raises ROUGE-L on `test` and its
/// random-reward control does not. (Issue 11 also asks for adapted pass@1 within 3 points of the
/// base model's maj@16; the bundled model and settings do not reach that yet, see the README's
/// demo section.)
#[test]
fn the_demo_raises_pass_at_1_without_labels_and_the_control_does_not() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ttrav"))
        .current_dir(repo(""))
        .args(["demo", "--open-ended", "--quiet", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap()).unwrap();
    let get = |split: &str, model: &str, key: &str| s[split][model][key].as_f64().unwrap_or_else(|| panic!("{split}.{model}.{key} in {s}"));
    for split in ["test", "heldout"] {
        for model in ["base", "adapted", "control"] {
            for key in ["pass_at_1", "greedy", "maj_at_16"] {
                assert!((0.0..=1.0).contains(&get(split, model, key)), "{split}.{model}.{key}");
            }
        }
    }
    let label = get("test", "adapted", "label_accuracy");
    assert!((0.0..=1.0).contains(&label));
    let table = String::from_utf8_lossy(&o.stdout);
    let (base, adapted, control) = (get("test", "base", "pass_at_1"), get("test", "adapted", "pass_at_1"), get("test", "control", "pass_at_1"));
    assert!(adapted - base >= 0.10, "test pass@1 {base} -> {adapted}\n{table}");
    assert!(get("heldout", "adapted", "pass_at_1") - get("heldout", "base", "pass_at_1") >= 0.05, "heldout\n{table}");
    assert!(label >= 0.9, "the vote's labels are right on {label} of the questions\n{table}");
    assert!(control - base < 0.03, "the random-reward control raised test pass@1 {base} -> {control}\n{table}");
    let rouge = |model: &str| s["open_ended"]["test"][model]["rouge_l"].as_f64().unwrap_or_else(|| panic!("open_ended.test.{model}.rouge_l in {s}"));
    assert!(rouge("adapted") - rouge("base") >= 0.01, "open-ended ROUGE-L {} -> {}\n{table}", rouge("base"), rouge("adapted"));
    assert!(rouge("control") < rouge("base"), "the open-ended control raised ROUGE-L\n{table}");
    assert!(s["seconds"].as_f64().unwrap() > 0.0);
    assert!(out.path().join("adapted/plot.png").is_file() && out.path().join("control/metrics.jsonl").is_file());
}
