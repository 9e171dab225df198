//! Dataset readers on the REAL published files (MMAU test-mini, OP-TTRAV's MMAU, OmniVideo, MATH
//! and AIME lists, AlpacaEval's GPT-4 Turbo outputs and its length-controlled leaderboard): counts,
//! spot values, prompts that round-trip byte for byte, the two MMAU layouts agreeing, and the
//! committed schema fixtures (`tests/fixtures/data/`) using exactly the real files' fields.
//!
//! Not part of the default `cargo test` (`test = false` in Cargo.toml): the files come from
//! `scripts/fetch-test-data.sh` (downloads, or copies from `TTRAV_DATA_DIR`, sha256-pinned), into
//! `target/test-data` or the folder named by `TTRAV_TEST_DATA`. Run with
//! `scripts/fetch-test-data.sh && cargo test --test real_data`. A missing file fails the test with
//! the path it looked at and the command that fetches it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use ttrav::data::{detect_format, load_dataset, Dataset, Format, Item, PromptStyle, TaskKind, MATH_INSTRUCTION, MC_INSTRUCTION};

/// The folder the fetch script filled: `TTRAV_TEST_DATA`, else `target/test-data`.
fn data_dir() -> PathBuf {
    match std::env::var_os("TTRAV_TEST_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data"),
    }
}

/// A fetched real file; panics (fails the test) when it is missing.
fn real(rel: &str) -> PathBuf {
    let dir = data_dir();
    let path = dir.join(rel);
    assert!(
        path.is_file(),
        "real test data missing: {} does not exist. Fetch it with `scripts/fetch-test-data.sh {}` (downloads; \
         TTRAV_DATA_DIR=DIR copies from a local copy instead), or point TTRAV_TEST_DATA at a folder it filled",
        path.display(),
        dir.display()
    );
    path
}

fn load(rel: &str) -> Dataset {
    let path = real(rel);
    load_dataset(&path, None, None).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

fn json_list(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The raw JSON list of a real file, for comparing with what was loaded.
fn raw(rel: &str) -> Vec<serde_json::Value> {
    json_list(&real(rel))
}

fn groups(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn count_by<F: Fn(&Item) -> String>(items: &[Item], f: F) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for it in items {
        *m.entry(f(it)).or_insert(0) += 1;
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn op_ttrav_mmau_loads_and_round_trips() {
    let ds = load("op-ttrav/mmau_test_mini_test.json");
    assert_eq!(ds.items.len(), 200);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);

    let first = &ds.items[0];
    assert_eq!(first.id, "a8c17404-365a-4ee8-831c-23d911c80bbf");
    assert_eq!(first.question, "How many participants are engaged in the discussion?");
    assert_eq!(first.choices, Some(strings(&["four", "one", "two", "six"])));
    assert_eq!(first.answer.as_deref(), Some("C"));
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    assert_eq!(
        first.audio,
        [PathBuf::from("/data/sls/scratch/mvideet/Audio/MMAU/a8c17404-365a-4ee8-831c-23d911c80bbf.wav")]
    );
    assert!(first.images.is_empty() && first.video.is_none());
    assert_eq!(
        first.groups,
        groups(&[
            ("source", "mmau"),
            ("dataset", "meld"),
            ("category", "Reasoning"),
            ("sub_category", "Counting"),
            ("difficulty", "medium"),
            ("task", "speech"),
        ])
    );
    assert_eq!(
        first.prompt_text(),
        "How many participants are engaged in the discussion?\nA. four\nB. one\nC. two\nD. six\nExplain your \
         reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \
         \\boxed{C}, or \\boxed{D}."
    );

    // Every prompt is the file's question (options included) plus the instruction, byte for byte.
    let raw = raw("op-ttrav/mmau_test_mini_test.json");
    for (item, r) in ds.items.iter().zip(&raw) {
        let q = r["question"].as_str().expect("question");
        assert_eq!(item.prompt_text(), format!("{q}{MC_INSTRUCTION}"), "item {}", item.id);
        assert!(!item.question.contains("\nA. "), "options left in the question of {}", item.id);
    }
    assert_eq!(
        count_by(&ds.items, |i| i.choices.as_ref().map_or(0, Vec::len).to_string()),
        counts(&[("2", 6), ("4", 190), ("5", 4)])
    );
    assert_eq!(
        count_by(&ds.items, |i| i.answer.clone().unwrap_or_default()),
        counts(&[("A", 83), ("B", 47), ("C", 44), ("D", 26)])
    );
    assert_eq!(
        count_by(&ds.items, |i| i.groups["task"].clone()),
        counts(&[("music", 59), ("sound", 71), ("speech", 70)])
    );

    // Five options: the fifth is written "(E) ..." by OP-TTRAV's conversion.
    let five = &ds.items[14];
    assert_eq!(five.id, "af7e9a6f-654a-4869-a781-245a103ce773");
    let choices = five.choices.as_ref().expect("choices");
    assert_eq!(choices.len(), 5);
    assert_eq!(choices[4], "first speaker shows sadness and second speaker shows happiness.");
    assert!(five
        .prompt_text()
        .contains("\nD. both speakers show neutral emotions throughout the conversation.\n(E) first"));
    assert_eq!(five.answer.as_deref(), Some("A"));
}

#[test]
fn op_ttrav_omnivideo_loads_with_video_and_audio() {
    let ds = load("op-ttrav/OmniVideo_test_sanity.json");
    assert_eq!(ds.items.len(), 40);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let first = &ds.items[0];
    assert_eq!(first.id, "cHHghW4Pg5k-Inference-78");
    assert_eq!(first.question, "What can be inferred about the airplane's activity during the first 10 seconds?");
    assert_eq!(
        first.choices,
        Some(strings(&["It was taking off", "It was landing", "It was taxiing", "It was retracting its landing gear"]))
    );
    assert_eq!(first.answer.as_deref(), Some("C"));
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    assert_eq!(first.audio, [PathBuf::from("/data/sls/scratch/mvideet/Videos/cHHghW4Pg5k/cHHghW4Pg5k_audio.wav")]);
    assert_eq!(first.video, Some(PathBuf::from("/data/sls/scratch/mvideet/Videos/cHHghW4Pg5k/cHHghW4Pg5k_video.mp4")));
    assert_eq!(
        first.groups,
        groups(&[
            ("source", "Inference"),
            ("video_id", "cHHghW4Pg5k"),
            ("question_type", "Inference"),
            ("content_parent_category", "News & Politics"),
            ("content_fine_category", "Social Commentary"),
        ])
    );
    let raw = raw("op-ttrav/OmniVideo_test_sanity.json");
    for (item, r) in ds.items.iter().zip(&raw) {
        assert_eq!(item.prompt_text(), format!("{}{MC_INSTRUCTION}", r["question"].as_str().expect("question")));
        assert_eq!(item.choices.as_ref().map(Vec::len), Some(4));
    }
    assert_eq!(
        count_by(&ds.items, |i| i.answer.clone().unwrap_or_default()),
        counts(&[("A", 8), ("B", 16), ("C", 14), ("D", 2)])
    );
    // With a media root, the part after Videos/ is kept.
    let root = Path::new("/mnt/media");
    let ds = load_dataset(&real("op-ttrav/OmniVideo_test_sanity.json"), None, Some(root)).expect("load");
    assert_eq!(ds.items[0].audio, [root.join("cHHghW4Pg5k/cHHghW4Pg5k_audio.wav")]);
    assert_eq!(ds.items[0].video, Some(root.join("cHHghW4Pg5k/cHHghW4Pg5k_video.mp4")));
}

#[test]
fn op_ttrav_math_and_aime_are_math() {
    let ds = load("op-ttrav/MATH-TTT_test.json");
    assert_eq!(ds.items.len(), 500);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert!(ds.items.iter().all(|i| i.kind == TaskKind::Math && i.choices.is_none() && !i.has_media()));
    let first = &ds.items[0];
    assert_eq!(first.id, "test/precalculus/807.json");
    assert_eq!(first.answer.as_deref(), Some(r"\left( 3, \frac{\pi}{2} \right)"));
    assert!(first.question.starts_with("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates."));
    assert_eq!(first.groups, groups(&[("source", "math")]));
    assert_eq!(first.prompt_text(), format!("{}{MATH_INSTRUCTION}", first.question));
    assert!(first.prompt_text().ends_with("\nPlease reason step by step, and put your final answer within \\boxed{}."));

    let aime = load("op-ttrav/AIME-TTT_test.json");
    assert_eq!(aime.items.len(), 30);
    assert!(aime.skipped.is_empty(), "{:?}", aime.skipped);
    assert!(aime.items.iter().all(|i| i.kind == TaskKind::Math));
    assert_eq!(aime.items[0].id, "0");
    assert_eq!(aime.items[0].answer.as_deref(), Some("204"));
    assert!(aime.items[0].question.starts_with("Every morning Aya goes for a $9$-kilometer-long walk"));
    assert_eq!(aime.items[0].groups, groups(&[("source", "aime")]));
    assert!(aime.items[0].prompt_text_as(PromptStyle::HydraLiteral).ends_with(
        r"spent in the coffee shop.\nPlease reason step by step, and put your final answer within \boxed{}."
    ));
}

#[test]
fn mmau_original_answers_become_letters() {
    let path = real("mmau/mmau-test-mini.json");
    let ds = load("mmau/mmau-test-mini.json");
    assert_eq!(ds.items.len(), 1000);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let first = &ds.items[0];
    assert_eq!(first.id, "3fe64f3d-282c-4bc8-a753-68f8f6c35652");
    assert_eq!(first.question, "Based on the given audio, identify the source of the speaking voice.");
    assert_eq!(first.choices, Some(strings(&["Man", "Woman", "Child", "Robot"])));
    assert_eq!(first.answer.as_deref(), Some("A"), "answer text \"Man\" is choice A");
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    // "./test-mini-audios/..." is relative to the dataset file's folder.
    let dir = path.parent().expect("parent");
    assert_eq!(first.audio, [dir.join("test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav")]);
    assert_eq!(
        first.groups,
        groups(&[
            ("dataset", "AudioSet"),
            ("task", "sound"),
            ("split", "test-mini"),
            ("category", "Reasoning"),
            ("sub-category", "Acoustic Source Inference"),
            ("difficulty", "medium"),
        ])
    );
    assert_eq!(
        count_by(&ds.items, |i| i.answer.clone().unwrap_or_default()),
        counts(&[("A", 395), ("B", 271), ("C", 208), ("D", 126)])
    );
    assert_eq!(
        count_by(&ds.items, |i| i.choices.as_ref().map_or(0, Vec::len).to_string()),
        counts(&[("2", 27), ("4", 948), ("5", 24), ("8", 1)])
    );
    // Every answer is the text of the choice its letter names.
    for (item, r) in ds.items.iter().zip(raw("mmau/mmau-test-mini.json")) {
        let letter = item.answer.as_deref().expect("answer").as_bytes()[0];
        let choice = &item.choices.as_ref().expect("choices")[(letter - b'A') as usize];
        assert_eq!(choice.as_str(), r["answer"].as_str().expect("answer").trim(), "item {}", item.id);
    }
    // Repeated choices: the first one wins (as in OP-TTRAV's conversion).
    let dup = ds.items.iter().find(|i| i.id == "af7e9a6f-654a-4869-a781-245a103ce773").expect("item");
    let c = dup.choices.as_ref().expect("choices");
    assert_eq!(c[0], c[2]);
    assert_eq!(dup.answer.as_deref(), Some("A"));
    // A category given as a one-element list becomes its string.
    let listed = ds.items.iter().find(|i| i.id == "43df3159-5981-4a39-9de2-437fc9f16f70").expect("item");
    assert_eq!(listed.groups["category"], "Reasoning");
}

/// The original MMAU file and OP-TTRAV's conversion give the same prompts and labels.
#[test]
fn mmau_original_matches_op_ttrav_prompts() {
    let original = load("mmau/mmau-test-mini.json");
    let by_id: BTreeMap<&str, &Item> = original.items.iter().map(|i| (i.id.as_str(), i)).collect();
    let converted = load("op-ttrav/mmau_test_mini_test.json");
    for item in &converted.items {
        let o = by_id.get(item.id.as_str()).unwrap_or_else(|| panic!("{} not in the original", item.id));
        assert_eq!(o.prompt_text(), item.prompt_text(), "item {}", item.id);
        assert_eq!(o.answer, item.answer, "item {}", item.id);
        assert_eq!(o.choices, item.choices, "item {}", item.id);
        for key in ["task", "category", "difficulty", "dataset"] {
            assert_eq!(o.groups[key], item.groups[key], "{key} of {}", item.id);
        }
        assert_eq!(o.groups["sub-category"], item.groups["sub_category"]);
    }
}

#[test]
fn alpaca_eval_is_open_ended_with_reference() {
    let ds = load("alpaca_eval/gpt4_1106_preview_outputs.json");
    assert_eq!(ds.items.len(), 805);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let first = &ds.items[0];
    assert_eq!(first.id, "0");
    assert_eq!(first.question, "What are the names of some famous actors that started their careers on Broadway?");
    assert!(first.answer.as_deref().expect("reference").starts_with("Several famous actors started their careers"));
    assert_eq!(first.kind, TaskKind::OpenEnded);
    assert_eq!(first.groups, groups(&[("dataset", "helpful_base"), ("generator", "gpt4_1106_preview")]));
    // Text-only open-ended prompts get no instruction (OP-TTRAV's UltraFeedback / Arena-Hard runs).
    assert_eq!(first.prompt_text(), first.question);
    assert_eq!(
        count_by(&ds.items, |i| i.groups["dataset"].clone()),
        counts(&[("helpful_base", 129), ("koala", 156), ("oasst", 188), ("selfinstruct", 252), ("vicuna", 80)])
    );
    assert_eq!(ds.items[804].id, "804");
}

/// AlpacaEval's leaderboard row for the reference model agrees with the outputs the reader
/// loaded: as many items, and its `avg_length` (mean characters per output, truncated) equal to
/// the mean length of the loaded reference answers.
#[test]
fn alpaca_eval_leaderboard_agrees_with_the_loaded_outputs() {
    let path = real("alpaca_eval/leaderboard_lc.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let row: Vec<&str> = lines.find(|l| l.starts_with("gpt4_1106_preview,")).expect("reference model row").split(',').collect();
    let field = |name: &str| row[column(name)].parse::<f64>().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(field("win_rate"), 50.0, "the reference model against itself");
    assert_eq!(field("length_controlled_winrate"), 50.0);

    let ds = load("alpaca_eval/gpt4_1106_preview_outputs.json");
    assert_eq!(field("n_total") as usize, ds.items.len());
    let chars: usize = ds.items.iter().map(|i| i.answer.as_deref().expect("reference").chars().count()).sum();
    assert_eq!(field("avg_length"), (chars / ds.items.len()) as f64);
}

#[test]
fn formats_are_detected() {
    for (rel, format) in [
        ("op-ttrav/mmau_test_mini_test.json", Format::OpTtrav),
        ("op-ttrav/OmniVideo_test_sanity.json", Format::OpTtrav),
        ("op-ttrav/MATH-TTT_test.json", Format::OpTtrav),
        ("op-ttrav/AIME-TTT_test.json", Format::OpTtrav),
        ("mmau/mmau-test-mini.json", Format::Mmau),
        ("alpaca_eval/gpt4_1106_preview_outputs.json", Format::AlpacaEval),
    ] {
        assert_eq!(detect_format(&real(rel)).expect("format"), format, "{rel}");
    }
    let forced = load_dataset(&real("op-ttrav/mmau_test_mini_test.json"), Some(Format::Mmau), None).expect("load");
    assert!(forced.items.is_empty());
    assert_eq!(forced.skipped.len(), 200);
    assert!(forced.skipped[0].reason.contains("choices"), "{}", forced.skipped[0]);
}

/// The committed fixtures of `tests/data.rs` use exactly the fields of the real files they stand
/// for (every item's keys are among the real file's, and together they cover all of them).
#[test]
fn schema_fixtures_have_the_real_fields() {
    let keys = |list: &[serde_json::Value]| -> BTreeSet<String> {
        list.iter().flat_map(|v| v.as_object().expect("object").keys().cloned()).collect()
    };
    for rel in [
        "mmau/mmau-test-mini.json",
        "op-ttrav/mmau_test_mini_test.json",
        "op-ttrav/OmniVideo_test_sanity.json",
        "op-ttrav/MATH-TTT_test.json",
        "op-ttrav/AIME-TTT_test.json",
        "alpaca_eval/gpt4_1106_preview_outputs.json",
    ] {
        let real_keys = keys(&raw(rel));
        let fixture = json_list(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data").join(rel));
        assert_eq!(keys(&fixture), real_keys, "{rel}: the fixture's fields");
    }
}
