//! Win rates and the length-controlled win rate against AlpacaEval's own code (goldens written by
//! `scripts/make_lc_golden.py` from synthetic annotations), and on cases the tests make whose
//! answers are known: equal lengths give the raw win rate back, a judge's taste for long answers
//! is taken out.

use std::path::{Path, PathBuf};
use ttrav::winrate::glm::{length_controlled, Glm, LcData, LcItem};
use ttrav::winrate::{load_annotations, summarize, win_rate};

fn golden(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrate").join(case)
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tolerance {tol})");
}

#[test]
fn length_controlled_win_rates_match_alpaca_evals_code() {
    for case in ["length_bias", "mixed"] {
        let dir = golden(case);
        let annotations = load_annotations(&dir.join("annotations.json")).expect("annotations");
        let data = LcData::load(&dir.join("df_gamed.csv")).expect("df_gamed");
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        for glm in [Glm::V1, Glm::NoReg, Glm::Minimal] {
            let e = &expected[glm.as_str()];
            let s = summarize(&annotations, glm, Some(&data));
            let what = |k: &str| format!("{case} {glm} {k}");
            let w = &s.win_rate;
            close(w.win_rate, e["win_rate"].as_f64().unwrap(), 1e-9, &what("win_rate"));
            close(w.standard_error.unwrap(), e["standard_error"].as_f64().unwrap(), 1e-9, &what("standard_error"));
            close(w.discrete_win_rate, e["discrete_win_rate"].as_f64().unwrap(), 1e-9, &what("discrete_win_rate"));
            for (k, v) in [("n_wins", w.n_wins), ("n_wins_base", w.n_wins_base), ("n_draws", w.n_draws), ("n_total", w.n_total)] {
                assert_eq!(v as f64, e[k].as_f64().unwrap(), "{}", what(k));
            }
            let lc = s.lc.as_ref().unwrap_or_else(|| panic!("{}: {:?}", what("lc"), s.lc_note));
            // The same C, except where the cross-validation scores of the two largest C differ by
            // less than liblinear's tolerance (the penalty is negligible there either way).
            let c = e["C"].as_f64().unwrap();
            assert!(lc.c == c || (lc.c >= 1e3 && c >= 1e3), "{}: {} vs {c}", what("C"), lc.c);
            // liblinear stops at its tolerance; the fit here is exact: about 1e-3 points apart.
            close(lc.length_controlled_winrate, e["length_controlled_winrate"].as_f64().unwrap(), 5e-3, &what("LC"));
            close(lc.lc_standard_error.unwrap(), e["lc_standard_error"].as_f64().unwrap(), 1e-3, &what("LC standard error"));
            for (term, value) in &lc.weights {
                close(*value, e["weights"][term].as_f64().unwrap(), 2e-3, &what(term));
            }
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Items whose reference and output lengths differ by `deltas`, with preferences `prefs`.
fn items(deltas: &[i64], prefs: &[f64]) -> Vec<LcItem> {
    deltas
        .iter()
        .zip(prefs)
        .enumerate()
        .map(|(i, (&d, &p))| LcItem { index: i, preference: Some(p), reference_chars: (500 + d.max(0)) as usize, output_chars: (500 - d.min(0)) as usize })
        .collect()
}

#[test]
fn equal_lengths_give_the_raw_win_rate() {
    let n = 200;
    let prefs: Vec<f64> = (0..n).map(|i| 1.0 + (((i * 37) % 100) as f64 / 99.0).powi(2)).collect();
    let raw = win_rate(&prefs.iter().map(|&p| Some(p)).collect::<Vec<_>>());
    let lc = length_controlled(&items(&vec![0; n], &prefs), Glm::Minimal, None).expect("fit");
    // No length difference to control for: the length weight is 0 and the prediction is the mean.
    assert_eq!(lc.weights[0], ("np.tanh(std_delta_len)".to_string(), 0.0));
    close(lc.length_controlled_winrate, raw.win_rate, 0.05, "LC with equal lengths");
    assert!(raw.win_rate > 30.0 && raw.win_rate < 40.0, "{}", raw.win_rate);
}

#[test]
fn a_taste_for_long_answers_is_taken_out() {
    // The judge's preference: sigmoid(alpha + beta * tanh(delta / sd)), delta = reference length
    // minus output length; beta < 0 favours long outputs, and the model's outputs are mostly longer.
    let (alpha, beta) = (-0.4, -1.5);
    let n = 400;
    let deltas: Vec<i64> = (0..n).map(|i| (((i * 7919) % 400) as i64) - 300).collect();
    let mean = deltas.iter().sum::<i64>() as f64 / n as f64;
    let sd = (deltas.iter().map(|&d| (d as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let prefs: Vec<f64> = deltas.iter().map(|&d| 1.0 + sigmoid(alpha + beta * (d as f64 / sd).tanh())).collect();
    let raw = win_rate(&prefs.iter().map(|&p| Some(p)).collect::<Vec<_>>()).win_rate;
    let lc = length_controlled(&items(&deltas, &prefs), Glm::Minimal, None).expect("fit");
    // The length-neutral win rate is sigmoid(alpha); the raw one is inflated by the length taste.
    close(lc.length_controlled_winrate, 100.0 * sigmoid(alpha), 0.05, "LC");
    close(lc.weights[0].1, beta, 0.01, "length weight");
    close(lc.weights[1].1, alpha, 0.01, "bias");
    assert!(raw - lc.length_controlled_winrate > 10.0, "raw {raw} LC {}", lc.length_controlled_winrate);
    // The minimal GLM predicts the same for every item: no spread.
    assert!(lc.lc_standard_error.unwrap() < 1e-9);
}

#[test]
fn glms_that_need_alpaca_evals_data_say_so() {
    let it = items(&[1, -2, 3, -4, 5, -6], &[1.2, 1.8, 1.5, 1.1, 1.9, 1.3]);
    for glm in [Glm::V1, Glm::NoReg] {
        let err = length_controlled(&it, glm, None).unwrap_err().to_string();
        assert!(err.contains("df_gamed.csv"), "{err}");
    }
    let err = length_controlled(&it[..4], Glm::Minimal, None).unwrap_err().to_string();
    assert!(err.contains("at least 5 judged items, got 4"), "{err}");
    // An index the gamed file does not cover.
    let dir = tempfile::tempdir().unwrap();
    let gamed = dir.path().join("df_gamed.csv");
    std::fs::write(&gamed, "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline,model\n0,0.5,0.1,0.2,False,v\n1,0.6,-0.1,0.3,False,v\n").unwrap();
    let data = LcData::load(&gamed).expect("load");
    let err = length_controlled(&it, Glm::V1, Some(&data)).unwrap_err().to_string();
    assert!(err.contains("no instruction difficulty for index 2"), "{err}");
    // Bad files name the file, line and field.
    std::fs::write(&gamed, "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,0.5,0.1,0.2,maybe\n").unwrap();
    let err = format!("{:#}", LcData::load(&gamed).unwrap_err());
    assert!(err.contains("df_gamed.csv:2: field not_gamed_baseline") && err.contains("\"maybe\""), "{err}");
    std::fs::write(&gamed, "index,preference,std_delta_len\n0,0.5,0.1\n").unwrap();
    let err = format!("{:#}", LcData::load(&gamed).unwrap_err());
    assert!(err.contains("no column \"instruction_difficulty\""), "{err}");
    std::fs::write(&gamed, "index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,1.5,0.1,0.2,False\n").unwrap();
    let err = format!("{:#}", LcData::load(&gamed).unwrap_err());
    assert!(err.contains("field preference") && err.contains("outside [0, 1]"), "{err}");
}
