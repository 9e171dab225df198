//! Rewards against the reference: every case of tests/fixtures/rewards/reward_golden.json (made by
//! running OP-TTRAV's own reward code on hand-made answers and embeddings) and the metric goldens
//! from sacrebleu, rouge-score and NLTK (metric_golden.json).

use std::collections::HashMap;
use ttrav::reward::cluster::{ClusterConfig, Variant};
use ttrav::reward::medoid::{Anchor, MedoidConfig};
use ttrav::reward::vote::{AnswerKind, VoteConfig};
use ttrav::reward::{metrics, score, Embedder, Group, Judge, Mode, RewardState};

fn golden(name: &str) -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// The reference's stand-in encoder: each text maps to the case's fixed vector.
struct Lookup(HashMap<String, Vec<f32>>);

impl Lookup {
    fn of(case: &serde_json::Value) -> Self {
        let mut m = HashMap::new();
        for e in case["embeddings"].as_array().unwrap() {
            m.insert(e["text"].as_str().unwrap().to_string(), floats(&e["vector"]));
        }
        Self(m)
    }
}

impl Embedder for Lookup {
    fn embed_texts(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.0.get(t).cloned().ok_or_else(|| anyhow::anyhow!("no vector for {t:?}"))).collect()
    }
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap_or("").to_string()).collect()
}

fn group(case: &serde_json::Value) -> Group {
    Group {
        question: case["question"].as_str().unwrap_or("").to_string(),
        candidates: strings(&case["candidates"]),
        gold: case.get("gold").and_then(|g| g.as_str()).map(str::to_string),
        choices: None,
    }
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn vote_matches_the_reference() {
    let g = golden("reward_golden.json");
    for case in g["vote_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let kind = if case["mode"] == "math" { AnswerKind::Math } else { AnswerKind::Choice };
        let mode = Mode::Vote(VoteConfig { kind, ..Default::default() });
        let out = score(&mode, &group(case), None, None, &mut RewardState::default()).unwrap();
        // ttrav's rewards: the reference's, with 0 (not a random draw) for unparseable answers.
        assert_eq!(out.rewards, floats(&case["ttrav_rewards"]), "{name}");
        assert_eq!(out.label.as_deref(), case["ttrav_label"].as_str(), "{name}: label");
        let stats = &case["vote_stats"];
        assert!((out.diagnostics.majority_ratio as f64 - case["majority_ratio"].as_f64().unwrap()).abs() < 1e-6, "{name}");
        assert!(
            (out.diagnostics.vote_entropy.unwrap() as f64 - stats["vote_entropy"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: entropy"
        );
        assert_eq!(out.diagnostics.unique_answers as u64, stats["n_unique_answers"].as_u64().unwrap(), "{name}");
        if let Some(m) = case.get("ttrav_metrics") {
            assert_eq!(out.diagnostics.label_accuracy.map(|x| x as f64), m["label_accuracy"].as_f64(), "{name}");
            assert!((out.diagnostics.reward_accuracy.unwrap() as f64 - m["reward_accuracy"].as_f64().unwrap()).abs() < 1e-6, "{name}");
        }
    }
}

#[test]
fn medoid_matches_the_reference() {
    let g = golden("reward_golden.json");
    for case in g["medoid_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let knobs = &case["knobs"];
        let knob = |k: &str| knobs.get(k).and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        let min_words = knob("TTRL_OE_MIN_LEN_TOKENS").unwrap_or(0.0) as usize;
        let cfg = MedoidConfig { min_words, ..Default::default() };
        let emb = Lookup::of(case);
        let near_tie = case["medoid_scores_recomputed"].get("near_tie").and_then(|v| v.as_bool()).unwrap_or(false);
        let out = score(&Mode::Medoid(cfg), &group(case), Some(&emb), None, &mut RewardState::default()).unwrap();
        if !near_tie {
            assert_eq!(out.anchor.map(|a| a as i64), case["medoid_index"].as_i64().or(Some(-1)).filter(|&i| i >= 0), "{name}");
            assert!(close(&out.rewards, &floats(&case["rewards"]), 1e-5), "{name}: {:?} vs {}", out.rewards, case["rewards"]);
            assert!((out.diagnostics.majority_ratio as f64 - case["majority_ratio"].as_f64().unwrap()).abs() < 1e-5, "{name}");
        } else {
            // Candidates whose medoid scores tie within rounding: which one is the anchor is a
            // matter of float order, but it must be one of the tied best, the medoid's score is
            // the best score, and every reward is the answer's cosine with that anchor.
            assert_eq!(min_words, 0, "{name}: the near-tie check assumes no length penalty");
            let scores: Vec<f64> = case["medoid_scores_recomputed"]["f64"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let best = scores.iter().copied().fold(f64::MIN, f64::max);
            let anchor = out.anchor.unwrap_or_else(|| panic!("{name}: no anchor"));
            assert!(best - scores[anchor] < 1e-6, "{name}: anchor {anchor} scores {} but the best is {best}", scores[anchor]);
            assert!((out.diagnostics.majority_ratio as f64 - best).abs() < 1e-5, "{name}: {} vs {best}", out.diagnostics.majority_ratio);
            let texts = strings(&case["texts_encoded"]["vote"]);
            let vectors = emb.embed_texts(&texts).unwrap();
            let cosine = |a: &[f32], b: &[f32]| {
                let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
                dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
            };
            let want: Vec<f32> = vectors.iter().map(|v| cosine(v, &vectors[anchor]).clamp(0.0, 1.0)).collect();
            assert!(close(&out.rewards, &want, 1e-5), "{name}: {:?} vs {want:?}", out.rewards);
            assert!((out.rewards[anchor] - 1.0).abs() < 1e-5, "{name}: the anchor's own reward");
        }
        let stats = &case["vote_stats"];
        assert!(
            (out.diagnostics.mean_pairwise_similarity.unwrap() as f64 - stats["mean_pairwise_sim"].as_f64().unwrap()).abs() < 1e-5,
            "{name}: mean pairwise"
        );
        assert!((out.diagnostics.high_similarity_pairs.unwrap() as f64 - stats["frac_high_sim"].as_f64().unwrap()).abs() < 1e-6, "{name}");
        // The centroid anchor (ttrav-defined; the golden values are without the length penalty).
        let centroid = &case["ttrav_centroid"];
        if !centroid["anchor"].is_null() {
            let cfg = MedoidConfig { anchor: Anchor::Centroid, ..Default::default() };
            let out = score(&Mode::Medoid(cfg), &group(case), Some(&emb), None, &mut RewardState::default()).unwrap();
            assert!(close(&out.rewards, &floats(&centroid["rewards"]), 1e-5), "{name} centroid: {:?} vs {}", out.rewards, centroid["rewards"]);
        }
    }
}

fn cluster_config(case: &serde_json::Value) -> ClusterConfig {
    let knobs = &case["knobs"];
    let get = |k: &str| knobs.get(k).and_then(|v| v.as_str().map(str::to_string).or_else(|| Some(v.to_string())));
    let variant = match case["mode"].as_str().unwrap() {
        "evolrl_cluster" => Variant::Evolrl,
        _ if get("TTRL_CLUSTER_KDE").as_deref() == Some("1") => Variant::Kde,
        _ if get("TTRL_CLUSTER_CONTINUOUS").as_deref() == Some("1") => Variant::Continuous,
        _ => Variant::Simple,
    };
    ClusterConfig {
        variant,
        kde_tau: get("TTRL_CLUSTER_KDE_TAU").and_then(|s| s.parse().ok()).unwrap_or(0.2),
        novelty_beta: get("TTRL_NOVELTY_BETA").and_then(|s| s.parse().ok()).unwrap_or(0.0),
        ..Default::default()
    }
}

/// Partitions equal up to renaming.
fn same_partition(a: &[usize], b: &[i64]) -> bool {
    a.len() == b.len()
        && (0..a.len()).all(|i| (0..a.len()).all(|j| (a[i] == a[j]) == (b[i] == b[j])))
}

#[test]
fn cluster_vote_matches_the_reference() {
    let g = golden("reward_golden.json");
    let cases: Vec<&serde_json::Value> =
        g["cluster_cases"].as_array().unwrap().iter().chain(g["evolrl_cases"].as_array().unwrap()).collect();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg = cluster_config(case);
        let emb = Lookup::of(case);
        let mut state = RewardState::default();
        if let Some(h) = case.get("novelty_history_in").and_then(|h| h.as_array()) {
            state.novelty_buffer = h.iter().map(floats).collect();
        }
        let out = score(&Mode::Cluster(cfg.clone()), &group(case), Some(&emb), None, &mut state).unwrap();
        let mut want = floats(&case["rewards"]);
        if cfg.variant == Variant::Evolrl {
            // ttrav keeps the vote's -1 for empty answers (the reference's trainer turns it into 0).
            let valid: Vec<i64> = case["valid_indices"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            for (i, w) in want.iter_mut().enumerate() {
                if !valid.contains(&(i as i64)) {
                    *w = -1.0;
                }
            }
        }
        assert!(close(&out.rewards, &want, 1e-5), "{name}: {:?} vs {:?}", out.rewards, want);
        let anchor = case["anchor_index"].as_i64();
        assert_eq!(out.anchor.map(|a| a as i64), anchor.filter(|&a| a >= 0), "{name}: anchor");
        assert_eq!(out.diagnostics.clusters.map(|k| k as u64), case["n_clusters"].as_u64(), "{name}: K");
        assert!((out.diagnostics.majority_ratio as f64 - case["majority_ratio"].as_f64().unwrap()).abs() < 1e-6, "{name}");
        if let Some(after) = case.get("novelty_buffer_len_after").and_then(|v| v.as_u64()) {
            assert_eq!(state.novelty_buffer.len() as u64, after, "{name}: novelty buffer");
        }
    }
}

#[test]
fn kmeans_and_silhouette_match_scikit_learn() {
    let g = golden("reward_golden.json");
    for case in g["kmeans_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let points: Vec<Vec<f32>> = case["points"].as_array().unwrap().iter().map(floats).collect();
        let c = ttrav::reward::cluster::cluster_auto_k(&points, &ClusterConfig::default());
        assert_eq!(c.centroids.len() as u64, case["chosen_k"].as_u64().unwrap(), "{name}: chosen k");
        let want: Vec<i64> = case["chosen_labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert!(same_partition(&c.labels, &want), "{name}: labels {:?} vs {want:?}", c.labels);
        for per_k in case["per_k"].as_array().unwrap() {
            let labels: Vec<usize> = per_k["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            if let Some(s) = per_k["silhouette_f64"].as_f64() {
                let ours = ttrav::reward::cluster::silhouette_cosine(&points, &labels);
                assert!((ours - s).abs() < 1e-5, "{name} k={}: silhouette {ours} vs {s}", per_k["k"]);
            }
        }
    }
}

struct Replies(Vec<String>, std::cell::RefCell<usize>, std::cell::RefCell<Vec<String>>);

impl Judge for Replies {
    fn complete(&self, prompt: &str, _max: usize) -> anyhow::Result<String> {
        self.2.borrow_mut().push(prompt.to_string());
        let i = *self.1.borrow();
        *self.1.borrow_mut() += 1;
        Ok(self.0[i % self.0.len()].clone())
    }
}

#[test]
fn judge_prompts_and_parsing_match_the_reference() {
    let g = golden("reward_golden.json");
    let j = &g["judge"];
    for case in j["prompt_cases"].as_array().unwrap() {
        let p = ttrav::reward::judge::judge_prompt(
            case["question"].as_str().unwrap_or(""),
            case["reference"].as_str().unwrap_or(""),
            case["candidate"].as_str().unwrap_or(""),
            4000,
        );
        assert_eq!(p, case["prompt"].as_str().unwrap(), "{}", case["name"]);
    }
    for case in j["parse_cases"].as_array().unwrap() {
        let reply = case["reply"].as_str().unwrap();
        let want = if case["parsed"].as_bool().unwrap() { Some(case["score"].as_f64().unwrap() as f32) } else { None };
        assert_eq!(ttrav::reward::judge::parse_score(reply), want, "{reply:?}");
    }
    for case in j["pipeline_cases"].as_array().unwrap() {
        let emb = Lookup::of(case);
        let replies = Replies(strings(&case["judge_replies"]), Default::default(), Default::default());
        let out = score(&Mode::Judge(Default::default()), &group(case), Some(&emb), Some(&replies), &mut RewardState::default()).unwrap();
        assert_eq!(out.label.as_deref(), case["medoid_text"].as_str(), "{}", case["name"]);
        assert_eq!(*replies.2.borrow(), strings(&case["judge_prompts"]), "{}: prompts", case["name"]);
        assert!(close(&out.rewards, &floats(&case["judge_scores"]), 1e-6), "{}: {:?}", case["name"], out.rewards);
    }
}

#[test]
fn metrics_match_sacrebleu_rouge_score_and_nltk() {
    let g = golden("metric_golden.json");
    for case in g["tokenizer_13a_cases"].as_array().unwrap() {
        assert_eq!(metrics::tokenize_13a(case["input"].as_str().unwrap()), strings(&case["tokens_13a"]), "{}", case["input"]);
    }
    for case in g["stem_cases"].as_array().unwrap() {
        let word = case["word"].as_str().unwrap();
        assert_eq!(metrics::porter_stem(word), case["porter_nltk_extensions"].as_str().unwrap(), "{word}");
    }
    for case in g["pairs"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (h, r) = (case["hypothesis"].as_str().unwrap(), case["reference"].as_str().unwrap());
        let bleu = metrics::sentence_bleu(h, r);
        let want = case["bleu"]["score_0_100"].as_f64().unwrap();
        assert!((bleu.score - want).abs() < 1e-6 * want.max(1.0), "{name}: BLEU {} vs {want}", bleu.score);
        let (_, _, f) = metrics::rouge_l(r, h);
        let want = case["rouge_l"]["fmeasure"].as_f64().unwrap();
        assert!((f - want).abs() < 1e-6, "{name}: ROUGE-L {f} vs {want}");
        let m = metrics::answer_metrics(h, r);
        let rm = &case["reference_metrics"];
        assert_eq!(m.exact_match, rm["exact_match"].as_f64().unwrap(), "{name}");
        assert_eq!(m.contains_match, rm["contains_em"].as_f64().unwrap(), "{name}");
        assert_eq!(m.length_words as f64, rm["resp_len_tokens"].as_f64().unwrap(), "{name}");
        assert!((m.bleu - rm["bleu_sentence"].as_f64().unwrap()).abs() < 1e-6, "{name}");
    }
}

#[test]
fn bad_input_is_reported() {
    let mut state = RewardState::default();
    let empty = Group { candidates: vec![], ..Default::default() };
    assert!(score(&Mode::from_name("vote").unwrap(), &empty, None, None, &mut state).is_err());
    struct NanEmbedder;
    impl Embedder for NanEmbedder {
        fn embed_texts(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|_| vec![f32::NAN, 0.0]).collect())
        }
    }
    let g = Group { candidates: vec!["a".into(), "b".into(), "c".into()], ..Default::default() };
    for m in ["medoid", "cluster", "evolrl"] {
        let e = score(&Mode::from_name(m).unwrap(), &g, Some(&NanEmbedder), None, &mut state).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{m}: {e}");
    }
    assert!(Mode::from_name("nonsense").unwrap_err().to_string().contains("simple_cluster"));
}
