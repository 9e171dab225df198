//! AlpacaEval 2's published length-controlled win rates (its leaderboard's
//! `length_controlled_winrate`, GLM `length_controlled_v1`), recomputed by ttrav from the published
//! annotations and AlpacaEval's `df_gamed.csv`.
//!
//! `df_gamed.csv` (the gamed baselines' annotations and every instruction's difficulty) is not in
//! AlpacaEval's GitHub repository: `get_length_controlled_winrate` downloads it from the Hugging
//! Face dataset `tatsu-lab/alpaca_eval` (`huggingface-cli download tatsu-lab/alpaca_eval
//! df_gamed.csv --repo-type dataset`). Not part of the default `cargo test` (`test = false`): run
//! `scripts/fetch-test-data.sh --alpaca-annotations && TTRAV_ALPACA_GAMED=PATH/df_gamed.csv cargo
//! test --test alpaca_lc_published`. Without the file the test fails saying so.

use std::path::{Path, PathBuf};
use ttrav::winrate::glm::{Glm, LcData};
use ttrav::winrate::{load_annotations, summarize};

const MODELS: [&str; 8] = ["claude-2.1", "gpt-3.5-turbo-1106", "OpenHermes-2.5-Mistral-7B", "Qwen-14B-Chat", "vicuna-13b-v1.5", "alpaca-7b", "gpt4_gamed", "NullModel"];

fn data_dir() -> PathBuf {
    match std::env::var_os("TTRAV_TEST_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data"),
    }
}

fn real(rel: &str) -> PathBuf {
    let path = data_dir().join(rel);
    assert!(path.is_file(), "real test data missing: {}. Fetch it with `scripts/fetch-test-data.sh --alpaca-annotations`", path.display());
    path
}

#[test]
fn lc_win_rates_equal_the_leaderboards() {
    let gamed = std::env::var_os("TTRAV_ALPACA_GAMED").map(PathBuf::from).filter(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "set TTRAV_ALPACA_GAMED to AlpacaEval's df_gamed.csv (from the Hugging Face dataset tatsu-lab/alpaca_eval: \
             `huggingface-cli download tatsu-lab/alpaca_eval df_gamed.csv --repo-type dataset`)"
        )
    });
    let data = LcData::load(&gamed).unwrap_or_else(|e| panic!("{}: {e:#}", gamed.display()));
    let text = std::fs::read_to_string(real("alpaca_eval/leaderboard_lc.csv")).expect("leaderboard");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "length_controlled_winrate").expect("column");
    for model in MODELS {
        let row: Vec<&str> = text.lines().find(|l| l.split(',').next() == Some(model)).expect("row").split(',').collect();
        let published: f64 = row[col].parse().expect("number");
        let annotations = load_annotations(&real(&format!("alpaca_eval/annotations/{model}.json"))).expect("annotations");
        let s = summarize(&annotations, Glm::V1, Some(&data));
        let lc = s.length_controlled_winrate.unwrap_or_else(|| panic!("{model}: {:?}", s.lc_note));
        eprintln!("{model}: length-controlled win rate {lc:.3}, published {published:.3}");
        assert!((lc - published).abs() < 0.05, "{model}: {lc} vs the published {published}");
    }
}
