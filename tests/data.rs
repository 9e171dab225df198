//! Dataset readers on small files in each real schema, committed under `tests/fixtures/data/`
//! (MMAU test-mini, OP-TTRAV's MMAU, OmniVideo, MATH, AIME and UltraFeedback lists, AlpacaEval's
//! outputs, UltraFeedback's openbmb and binarized records; written
//! by hand for ttrav, see the README there), and on files the tests write: MMAU answer texts to
//! letters, OP-TTRAV options parsed and re-appended exactly, the two MMAU layouts agreeing,
//! media-root rewriting, skipped items and lines with their locations, and whole-file errors that
//! name the file. The same checks on the real published files are in `tests/real_data.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use ttrav::data::{
    detect_format, load_dataset, resolve_media_path, Dataset, Format, Item, PromptStyle, TaskKind, MATH_INSTRUCTION,
    MC_INSTRUCTION, OPEN_ENDED_MEDIA_INSTRUCTION,
};

/// A committed schema fixture under `tests/fixtures/data/`.
fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data").join(rel)
}

fn load(rel: &str) -> Dataset {
    let path = fixture(rel);
    load_dataset(&path, None, None).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

/// The raw JSON list of a fixture, for comparing with what was loaded.
fn raw(rel: &str) -> Vec<serde_json::Value> {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn groups(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ids(ds: &Dataset) -> Vec<&str> {
    ds.items.iter().map(|i| i.id.as_str()).collect()
}

/// The skipped entries as (location relative to the file, reason), checked against `want`:
/// (list index, a substring of the reason).
fn assert_skipped(ds: &Dataset, want: &[(usize, &str)]) {
    let file = ds.path.display().to_string();
    assert_eq!(ds.skipped.len(), want.len(), "{:?}", ds.skipped);
    for (s, (index, reason)) in ds.skipped.iter().zip(want) {
        assert_eq!(s.location, format!("{file} item {index}"));
        assert!(s.reason.contains(reason), "item {index}: {:?} lacks {reason:?}", s.reason);
    }
}

const MMAU_ID: [&str; 6] = [
    "7c0a1e52-0001-4f00-9000-00000000a001",
    "7c0a1e52-0002-4f00-9000-00000000a002",
    "7c0a1e52-0003-4f00-9000-00000000a003",
    "7c0a1e52-0004-4f00-9000-00000000a004",
    "7c0a1e52-0005-4f00-9000-00000000a005",
    "7c0a1e52-0006-4f00-9000-00000000a006",
];

#[test]
fn op_ttrav_mmau_loads_and_round_trips() {
    let ds = load("op-ttrav/mmau_test_mini_test.json");
    assert_eq!(ids(&ds), MMAU_ID);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);

    let first = &ds.items[0];
    assert_eq!(first.question, "Which instrument carries the melody in this clip?");
    assert_eq!(first.choices, Some(strings(&["Piano", "Violin", "Flute", "Drums"])));
    assert_eq!(first.answer.as_deref(), Some("B"));
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    // A foreign absolute path is kept as it is without a media root.
    assert_eq!(first.audio, [PathBuf::from(format!("/home/annotator/corpora/Audio/MMAU/{}.wav", MMAU_ID[0]))]);
    assert!(first.images.is_empty() && first.video.is_none());
    assert_eq!(
        first.groups,
        groups(&[
            ("source", "mmau"),
            ("dataset", "MusicCaps"),
            ("category", "Perception"),
            ("sub_category", "Instrument Identification"),
            ("difficulty", "easy"),
            ("task", "music"),
        ])
    );
    assert_eq!(
        first.prompt_text(),
        "Which instrument carries the melody in this clip?\nA. Piano\nB. Violin\nC. Flute\nD. Drums\nExplain your \
         reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \
         \\boxed{C}, or \\boxed{D}."
    );

    // Every prompt is the file's question (options included) plus the instruction, byte for byte.
    for (item, r) in ds.items.iter().zip(raw("op-ttrav/mmau_test_mini_test.json")) {
        let q = r["question"].as_str().expect("question");
        assert_eq!(item.prompt_text(), format!("{q}{MC_INSTRUCTION}"), "item {}", item.id);
        assert!(!item.question.contains("\nA. "), "options left in the question of {}", item.id);
    }
    let counts: Vec<usize> = ds.items.iter().map(|i| i.choices.as_ref().map_or(0, Vec::len)).collect();
    assert_eq!(counts, [4, 2, 4, 5, 8, 2]);
    let answers: Vec<Option<&str>> = ds.items.iter().map(|i| i.answer.as_deref()).collect();
    assert_eq!(answers, [Some("B"), Some("B"), Some("A"), Some("E"), Some("G"), None], "an empty answer is no answer");

    // The question keeps its trailing space; the options start after it.
    assert_eq!(ds.items[1].question, "Is the second speaker asking a question? ");
    // Five options and more: the fifth on are written "(E) ..." by OP-TTRAV's conversion.
    let five = &ds.items[3];
    assert_eq!(five.choices.as_ref().expect("choices")[4], "it cannot be told");
    assert!(five.prompt_text().contains("\nD. first calm, second angry\n(E) it cannot be told\nExplain"));
    let eight = &ds.items[4];
    assert_eq!(eight.choices.as_ref().expect("choices")[6..], strings(&["B", "none of them"]));
}

#[test]
fn op_ttrav_omnivideo_loads_with_video_and_audio() {
    let ds = load("op-ttrav/OmniVideo_test_sanity.json");
    assert_eq!(ids(&ds), ["vidA0001-Action-3", "vidB0002-Causal-7", "vidC0003-Perception-1"]);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let first = &ds.items[0];
    assert_eq!(first.question, "What is the cyclist doing in the first five seconds?");
    assert_eq!(first.choices, Some(strings(&["Fixing a tyre", "Riding uphill", "Waiting at a light", "Carrying the bike"])));
    assert_eq!(first.answer.as_deref(), Some("C"));
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    assert_eq!(first.audio, [PathBuf::from("/home/annotator/corpora/Videos/vidA0001/vidA0001_audio.wav")]);
    assert_eq!(first.video, Some(PathBuf::from("/home/annotator/corpora/Videos/vidA0001/vidA0001_video.mp4")));
    assert_eq!(
        first.groups,
        groups(&[
            ("source", "Action"),
            ("video_id", "vidA0001"),
            ("question_type", "Action"),
            ("content_parent_category", "Sports"),
            ("content_fine_category", "Cycling"),
        ])
    );
    for (item, r) in ds.items.iter().zip(raw("op-ttrav/OmniVideo_test_sanity.json")) {
        assert_eq!(item.prompt_text(), format!("{}{MC_INSTRUCTION}", r["question"].as_str().expect("question")));
        assert_eq!(item.choices.as_ref().map(Vec::len), Some(4));
    }
    // A lower-case letter answer is upper-cased; an empty audio path means no audio.
    assert_eq!(ds.items[1].answer.as_deref(), Some("A"));
    assert!(ds.items[2].audio.is_empty());
    assert_eq!(ds.items[2].video, Some(PathBuf::from("/home/annotator/corpora/Videos/vidC0003/vidC0003_video.mp4")));
}

#[test]
fn op_ttrav_math_and_aime_are_math() {
    let ds = load("op-ttrav/MATH-TTT_test.json");
    assert_eq!(ids(&ds), ["test/prealgebra/101.json", "test/algebra/202.json", "test/number_theory/303.json"]);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert!(ds.items.iter().all(|i| i.kind == TaskKind::Math && i.choices.is_none() && !i.has_media()));
    let first = &ds.items[0];
    assert_eq!(first.answer.as_deref(), Some(r"\frac{5}{6}"));
    assert_eq!(first.question, r"What is the value of $\frac{1}{2} + \frac{1}{3}$?");
    assert_eq!(first.groups, groups(&[("source", "math")]));
    assert_eq!(first.prompt_text(), format!("{}{MATH_INSTRUCTION}", first.question));
    assert!(first.prompt_text().ends_with("\nPlease reason step by step, and put your final answer within \\boxed{}."));
    assert_eq!(ds.items[1].answer.as_deref(), Some("-2, 2"));
    // A math source without an answer stays math, unlabelled.
    assert_eq!(ds.items[2].answer, None);

    let aime = load("op-ttrav/AIME-TTT_test.json");
    assert_eq!(ids(&aime), ["0", "1"]);
    assert!(aime.skipped.is_empty(), "{:?}", aime.skipped);
    assert!(aime.items.iter().all(|i| i.kind == TaskKind::Math));
    assert_eq!(aime.items[0].answer.as_deref(), Some("90"));
    assert!(aime.items[0].question.starts_with("A walk of $6$ kilometers"));
    assert_eq!(aime.items[0].groups, groups(&[("source", "aime")]));
}

#[test]
fn mmau_original_answers_become_letters() {
    let path = fixture("mmau/mmau-test-mini.json");
    let ds = load("mmau/mmau-test-mini.json");
    assert_eq!(ids(&ds), MMAU_ID);
    assert_skipped(
        &ds,
        &[
            (6, "answer \"a trumpet\" is neither a letter A-B nor the text of one of the 2 choices"),
            (7, &format!("duplicate id \"{}\" (first at {} item 0)", MMAU_ID[0], path.display())),
            (8, "1 choices (expected 2 to 26)"),
            (9, "field \"choices\" has an entry that is not a string"),
            (10, "no \"question\""),
        ],
    );
    let first = &ds.items[0];
    assert_eq!(first.question, "Which instrument carries the melody in this clip?");
    assert_eq!(first.choices, Some(strings(&["Piano", "Violin", "Flute", "Drums"])));
    assert_eq!(first.answer.as_deref(), Some("B"), "answer text \"Violin\" is choice B");
    assert_eq!(first.kind, TaskKind::MultipleChoice);
    // "./test-mini-audios/..." is relative to the dataset file's folder.
    let dir = path.parent().expect("parent");
    assert_eq!(first.audio, [dir.join(format!("test-mini-audios/{}.wav", MMAU_ID[0]))]);
    assert_eq!(
        first.groups,
        groups(&[
            ("dataset", "MusicCaps"),
            ("task", "music"),
            ("split", "test-mini"),
            ("category", "Perception"),
            ("sub-category", "Instrument Identification"),
            ("difficulty", "easy"),
        ])
    );
    let answers: Vec<Option<&str>> = ds.items.iter().map(|i| i.answer.as_deref()).collect();
    assert_eq!(answers, [Some("B"), Some("B"), Some("A"), Some("E"), Some("G"), None]);
    // Every answer is the text of the choice its letter names.
    let raw: BTreeMap<String, serde_json::Value> = raw("mmau/mmau-test-mini.json")
        .into_iter()
        .rev() // the first of a duplicated id wins
        .map(|r| (r["id"].as_str().expect("id").to_string(), r))
        .collect();
    for item in ds.items.iter().filter(|i| i.answer.is_some()) {
        let letter = item.answer.as_deref().expect("answer").as_bytes()[0];
        let choice = &item.choices.as_ref().expect("choices")[(letter - b'A') as usize];
        assert_eq!(choice.as_str(), raw[&item.id]["answer"].as_str().expect("answer").trim(), "item {}", item.id);
    }
    // Option texts are trimmed (questions are not), and an answer matches them trimmed.
    assert_eq!(ds.items[1].choices, Some(strings(&["yes", "no"])));
    assert_eq!(ds.items[1].question, "Is the second speaker asking a question? ");
    // Repeated choices: the first one wins (as in OP-TTRAV's conversion).
    let c = ds.items[2].choices.as_ref().expect("choices");
    assert_eq!(c[0], c[2]);
    assert_eq!(ds.items[2].answer.as_deref(), Some("A"));
    // A category given as a one-element list becomes its string.
    assert_eq!(ds.items[2].groups["category"], "Reasoning");
    // MMAU answers are texts first: the answer "B" is the option whose text is "B", letter G.
    assert_eq!(ds.items[4].answer.as_deref(), Some("G"));
}

/// The original MMAU file and OP-TTRAV's conversion give the same prompts and labels.
#[test]
fn mmau_original_matches_op_ttrav_prompts() {
    let original = load("mmau/mmau-test-mini.json");
    let by_id: BTreeMap<&str, &Item> = original.items.iter().map(|i| (i.id.as_str(), i)).collect();
    let converted = load("op-ttrav/mmau_test_mini_test.json");
    assert_eq!(converted.items.len(), 6);
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
    // No id field: the position in the list is the id.
    assert_eq!(ids(&ds), ["0", "1", "3"]);
    assert_skipped(&ds, &[(2, "no \"instruction\"")]);
    let first = &ds.items[0];
    assert_eq!(first.question, "Name three plays that opened on Broadway before 1950.");
    assert!(first.answer.as_deref().expect("reference").starts_with("Three plays that opened on Broadway before 1950:\n\n1."));
    assert_eq!(first.kind, TaskKind::OpenEnded);
    assert_eq!(first.groups, groups(&[("dataset", "helpful_base"), ("generator", "gpt4_1106_preview")]));
    // Text-only open-ended prompts get no instruction (OP-TTRAV's UltraFeedback / Arena-Hard runs).
    assert_eq!(first.prompt_text(), first.question);
    assert_eq!(ds.items[1].prompt_text(), "Write a haiku about autumn rain.\nKeep it to three lines.");
    // An empty output is no reference.
    assert_eq!(ds.items[2].answer, None);
    assert_eq!(ds.items[2].groups["dataset"], "vicuna");
}

/// The skipped entries of a JSONL fixture, checked against `want`: (1-based line, a substring of
/// the reason).
fn assert_skipped_lines(ds: &Dataset, want: &[(usize, &str)]) {
    let file = ds.path.display().to_string();
    assert_eq!(ds.skipped.len(), want.len(), "{:?}", ds.skipped);
    for (s, (line, reason)) in ds.skipped.iter().zip(want) {
        assert_eq!(s.location, format!("{file}:{line}"));
        assert!(s.reason.contains(reason), "line {line}: {:?} lacks {reason:?}", s.reason);
    }
}

#[test]
fn ultrafeedback_openbmb_records_take_the_best_rated_completion() {
    let ds = load("ultrafeedback/openbmb_ultrafeedback.jsonl");
    // No id field: the line number is the id.
    assert_eq!(ids(&ds), ["1", "2", "3"]);
    assert_skipped_lines(&ds, &[(4, "field \"completions\" is not a list"), (5, "no \"instruction\" or \"prompt\""), (6, "malformed JSON")]);
    let first = &ds.items[0];
    assert_eq!(first.question, "Suggest two names for a bakery that sells only bread.");
    // gpt-4 and wizardlm-13b both score 8.5: the first wins; the 9.0 completion has no response.
    assert_eq!(first.answer.as_deref(), Some("1. The Daily Loaf\n2. Crumb & Crust"));
    assert_eq!((first.kind, first.choices.as_ref(), first.has_media()), (TaskKind::OpenEnded, None, false));
    assert_eq!(first.groups, groups(&[("source", "evol_instruct"), ("models", "alpaca-7b, gpt-4, wizardlm-13b, llama-2-7b-chat")]));
    // Text-only open-ended prompts get no instruction.
    assert_eq!(first.prompt_text(), first.question);
    // Scores written as text count as numbers; an entry that is not an object is passed over.
    assert_eq!(ds.items[1].answer.as_deref(), Some("Fish have no legs; they swim with fins."));
    assert_eq!(ds.items[1].groups["source"], "false_qa");
    // No completions: no reference.
    assert_eq!((ds.items[2].question.as_str(), ds.items[2].answer.as_deref()), ("Write one sentence about the sea.", None));
}

#[test]
fn ultrafeedback_binarized_records_take_the_chosen_answer() {
    let ds = load("ultrafeedback/ultrafeedback_binarized_test_prefs.jsonl");
    assert_eq!(
        ids(&ds),
        [
            "4f5a1c0d9b0c2e7a1f3d5b6c7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
            "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
        ]
    );
    assert_skipped_lines(&ds, &[(4, "duplicate id"), (5, "field \"chosen\" is neither a list of messages nor a string")]);
    let a = &ds.items[0];
    assert_eq!((a.question.as_str(), a.answer.as_deref(), a.kind), ("Give me a synonym for 'happy'.", Some("Joyful."), TaskKind::OpenEnded));
    assert_eq!(a.groups, groups(&[("score_chosen", "8.0"), ("score_rejected", "2.0")]));
    // The chosen chat's last assistant message, whatever precedes it.
    assert_eq!(ds.items[1].answer.as_deref(), Some("Red, yellow and blue (in painting)."));
    // An empty chosen chat: the reference comes from messages (the SFT splits).
    assert_eq!(ds.items[2].answer.as_deref(), Some("Saturn."));
    assert_eq!(ds.items[2].prompt_text(), "Name a planet with rings.");
    // The same records as a JSON list (the parquet files exported with orient="records").
    let dir = temp_dir();
    let list = dir.path().join("test_prefs.json");
    let lines = std::fs::read_to_string(&ds.path).expect("read");
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("line")).collect();
    std::fs::write(&list, serde_json::to_vec(&records).expect("json")).expect("write");
    assert_eq!(detect_format(&list).expect("format"), Format::UltraFeedback);
    let again = load_dataset(&list, None, None).expect("load");
    assert_eq!(again.items, ds.items);
    assert_eq!(again.skipped.len(), 2);
}

#[test]
fn op_ttrav_ultrafeedback_is_open_ended_even_when_short() {
    let ds = load("op-ttrav/UltraFeedback-TTRL_test.json");
    assert_eq!(ids(&ds), ["31", "7", "12"]);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert!(ds.items.iter().all(|i| i.kind == TaskKind::OpenEnded), "{:?}", ds.items.iter().map(|i| i.kind).collect::<Vec<_>>());
    // "Yes." is short enough to read as a math answer; the source says otherwise.
    assert_eq!(ds.items[1].answer.as_deref(), Some("Yes."));
    assert_eq!(ds.items[1].prompt_text(), "Is the Pacific the largest ocean? Answer yes or no.");
    assert_eq!(ds.items[2].answer, None);
    assert_eq!(ds.items[0].groups, groups(&[("source", "ultrafeedback")]));
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
        ("op-ttrav/UltraFeedback-TTRL_test.json", Format::OpTtrav),
        ("ultrafeedback/openbmb_ultrafeedback.jsonl", Format::UltraFeedback),
        ("ultrafeedback/ultrafeedback_binarized_test_prefs.jsonl", Format::UltraFeedback),
    ] {
        assert_eq!(detect_format(&fixture(rel)).expect("format"), format, "{rel}");
    }
    assert_eq!("op-ttrav".parse::<Format>(), Ok(Format::OpTtrav));
    assert_eq!("alpaca_eval".parse::<Format>(), Ok(Format::AlpacaEval));
    assert_eq!("MMAU".parse::<Format>(), Ok(Format::Mmau));
    assert_eq!("ultrafeedback".parse::<Format>(), Ok(Format::UltraFeedback));
    assert!("csv".parse::<Format>().is_err());
    // Naming the format overrides detection: the OP-TTRAV MMAU list read as MMAU has no choices.
    let forced = load_dataset(&fixture("op-ttrav/mmau_test_mini_test.json"), Some(Format::Mmau), None).expect("load");
    assert!(forced.items.is_empty());
    assert_eq!(forced.skipped.len(), 6);
    assert!(forced.skipped.iter().all(|s| s.reason == "no \"choices\""), "{:?}", forced.skipped);
}

#[test]
fn media_root_rewrites_foreign_absolute_paths() {
    let root = Path::new("/mnt/media");
    let ds = load_dataset(&fixture("op-ttrav/OmniVideo_test_sanity.json"), None, Some(root)).expect("load");
    let first = &ds.items[0];
    assert_eq!(first.audio, [root.join("vidA0001/vidA0001_audio.wav")], "tail after the Videos/ component");
    assert_eq!(first.video, Some(root.join("vidA0001/vidA0001_video.mp4")));

    let ds = load_dataset(&fixture("op-ttrav/mmau_test_mini_test.json"), None, Some(root)).expect("load");
    assert_eq!(ds.items[0].audio, [root.join(format!("MMAU/{}.wav", MMAU_ID[0]))], "tail after Audio/");

    // Relative paths stay relative to the dataset file, media root or not.
    let path = fixture("mmau/mmau-test-mini.json");
    let ds = load_dataset(&path, None, Some(root)).expect("load");
    let dir = path.parent().expect("parent");
    assert_eq!(ds.items[0].audio, [dir.join(format!("test-mini-audios/{}.wav", MMAU_ID[0]))]);

    let base = Path::new("/data/sets");
    assert_eq!(resolve_media_path("/a/b/clips/x.wav", base, Some(root)), root.join("x.wav"), "no marker: file name");
    assert_eq!(resolve_media_path("/a/media/sub/x.png", base, Some(root)), root.join("sub/x.png"));
    assert_eq!(resolve_media_path("/a/AUDIO/x/y/z.flac", base, Some(root)), root.join("x/y/z.flac"));
    assert_eq!(resolve_media_path("/a/audio/x/images/z.jpg", base, Some(root)), root.join("z.jpg"), "last marker");
    assert_eq!(resolve_media_path("/a/b/x.wav", base, None), PathBuf::from("/a/b/x.wav"));
    assert_eq!(resolve_media_path(r"C:\data\audio\x.wav", base, Some(root)), root.join("x.wav"), "Windows path");
    assert_eq!(resolve_media_path("./clips/x.wav", base, Some(root)), base.join("clips/x.wav"));
    assert_eq!(resolve_media_path("../other/x.wav", base, None), base.join("../other/x.wav"));
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn ttrav_jsonl_skips_bad_lines_with_their_numbers() {
    let dir = temp_dir();
    let path = dir.path().join("set.jsonl");
    let mut bytes = Vec::new();
    let lines: [&[u8]; 12] = [
        // 1: multiple choice, answer given as option text, relative and absolute media.
        br#"{"id": "q1", "question": "Which animal?", "choices": ["cat", "dog", "cow", "owl"], "answer": "dog", "audio": ["clips/a.wav"], "images": "pics/b.png", "video": "/elsewhere/v.mp4", "source": "demo", "level": 3}"#,
        // 2: malformed JSON.
        br#"{"id": "q2", "question": "#,
        // 3: no question.
        br#"{"id": "q3", "answer": "A"}"#,
        // 4: invalid UTF-8.
        b"{\"id\": \"q4\", \"question\": \"caf\xe9\"}",
        // 5: blank (ignored).
        b"   ",
        // 6: open-ended (no choices, no kind).
        br#"{"id": "q6", "question": "Describe the sound.", "answer": "A dog barks.", "audio": "./s.wav"}"#,
        // 7: math.
        br#"{"id": "q7", "question": "1+1?", "answer": 2, "kind": "math"}"#,
        // 8: an answer that is neither a letter in range nor a choice.
        br#"{"id": "q8", "question": "Pick", "choices": ["x", "y"], "answer": "C"}"#,
        // 9: duplicate id.
        br#"{"id": "q1", "question": "Again?"}"#,
        // 10: not an object.
        b"[1, 2]",
        // 11: unknown kind.
        br#"{"question": "Q", "kind": "essay"}"#,
        // 12: no id (the line number is the id), letter answer in lower case, CRLF line end.
        b"{\"question\": \"Two options\", \"choices\": [\"yes\", \"no\"], \"answer\": \"b\"}\r",
    ];
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    std::fs::write(&path, &bytes).expect("write");

    let ds = load_dataset(&path, None, None).expect("load");
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["q1", "q6", "q7", "12"]);
    let file = path.display().to_string();
    let skipped: Vec<(String, String)> = ds.skipped.iter().map(|s| (s.location.clone(), s.reason.clone())).collect();
    let expect = [
        (2, "malformed JSON"),
        (3, "no \"question\""),
        (4, "invalid UTF-8"),
        (8, "neither a letter"),
        (9, "duplicate id \"q1\""),
        (10, "not a JSON object"),
        (11, "unknown kind"),
    ];
    assert_eq!(skipped.len(), expect.len(), "{skipped:?}");
    for ((loc, reason), (line, want)) in skipped.iter().zip(expect) {
        assert_eq!(loc, &format!("{file}:{line}"));
        assert!(reason.contains(want), "line {line}: {reason:?} lacks {want:?}");
    }
    assert_eq!(ds.skipped[0].to_string(), format!("{file}:2: {}", ds.skipped[0].reason));

    let q1 = &ds.items[0];
    assert_eq!(q1.kind, TaskKind::MultipleChoice);
    assert_eq!(q1.answer.as_deref(), Some("B"));
    assert_eq!(q1.audio, [dir.path().join("clips/a.wav")]);
    assert_eq!(q1.images, [dir.path().join("pics/b.png")]);
    assert_eq!(q1.video, Some(PathBuf::from("/elsewhere/v.mp4")));
    assert_eq!(q1.groups, groups(&[("source", "demo"), ("level", "3")]));
    assert_eq!(q1.prompt_text(), format!("Which animal?\nA. cat\nB. dog\nC. cow\nD. owl{MC_INSTRUCTION}"));

    let q6 = &ds.items[1];
    assert_eq!(q6.kind, TaskKind::OpenEnded);
    assert_eq!(q6.audio, [dir.path().join("s.wav")]);
    assert_eq!(q6.prompt_text(), format!("Describe the sound.{OPEN_ENDED_MEDIA_INSTRUCTION}"));

    let q7 = &ds.items[2];
    assert_eq!((q7.kind, q7.answer.as_deref()), (TaskKind::Math, Some("2")));
    assert_eq!(q7.prompt_text(), format!("1+1?{MATH_INSTRUCTION}"));

    let last = &ds.items[3];
    assert_eq!(last.answer.as_deref(), Some("B"));
    assert_eq!(last.choices, Some(strings(&["yes", "no"])));

    // Media root: the absolute video is rewritten, relative audio is not.
    let root = Path::new("/mnt/m");
    let ds = load_dataset(&path, None, Some(root)).expect("load");
    assert_eq!(ds.items[0].video, Some(root.join("v.mp4")));
    assert_eq!(ds.items[0].audio, [dir.path().join("clips/a.wav")]);
}

#[test]
fn op_ttrav_prompts_and_kinds_from_written_lists() {
    let dir = temp_dir();
    let path = dir.path().join("mixed.json");
    let list = serde_json::json!([
        // Options that do not follow "A. " lines: kept in the question, still multiple choice.
        {"id": "g", "prompt": "Which?\n\n(A) one\n(B) two", "answer": "B", "source": "gpqa"},
        // strip_mcq.py's open-ended variant with a video: the reference is answer_text.
        {"id": "o", "question": "What happens?", "answer": "C", "answer_text": "A plane taxis.",
         "options": {"A": "x"}, "video_file": "v/o.mp4", "source": "Inference"},
        // Text-only open-ended (Arena-Hard): empty answer, no instruction.
        {"id": "h", "prompt": "Write a poem.", "answer": "", "source": "arena-hard-v2.0"},
        // Chat-style prompt.
        {"id": "c", "prompt": [{"role": "user", "content": "What is 2+3?"}], "answer": "5", "source": "amc"},
        // No question at all.
        {"id": "n", "answer": "A"},
        "not an object",
    ]);
    std::fs::write(&path, serde_json::to_vec(&list).expect("json")).expect("write");
    let ds = load_dataset(&path, None, None).expect("load");
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["g", "o", "h", "c"]);
    let file = path.display().to_string();
    assert_eq!(ds.skipped.len(), 2);
    assert_eq!(ds.skipped[0].location, format!("{file} item 4"));
    assert!(ds.skipped[0].reason.contains("no \"question\" or \"prompt\""));
    assert_eq!(ds.skipped[1].location, format!("{file} item 5"));

    let g = &ds.items[0];
    assert_eq!((g.kind, g.choices.as_ref(), g.answer.as_deref()), (TaskKind::MultipleChoice, None, Some("B")));
    assert_eq!(g.prompt_text(), format!("Which?\n\n(A) one\n(B) two{MC_INSTRUCTION}"));
    let o = &ds.items[1];
    assert_eq!((o.kind, o.answer.as_deref()), (TaskKind::OpenEnded, Some("A plane taxis.")));
    assert_eq!(o.video, Some(dir.path().join("v/o.mp4")));
    assert_eq!(o.prompt_text(), format!("What happens?{OPEN_ENDED_MEDIA_INSTRUCTION}"));
    assert_eq!(o.groups, groups(&[("source", "Inference")]));
    let h = &ds.items[2];
    assert_eq!((h.kind, h.answer.as_deref(), h.prompt_text().as_str()), (TaskKind::OpenEnded, None, "Write a poem."));
    let c = &ds.items[3];
    assert_eq!((c.kind, c.question.as_str(), c.answer.as_deref()), (TaskKind::Math, "What is 2+3?", Some("5")));
}

#[test]
fn hydra_literal_prompts_keep_the_escapes() {
    let ds = load("op-ttrav/mmau_test_mini_test.json");
    let p = ds.items[0].prompt_text_as(PromptStyle::HydraLiteral);
    // Real newlines between the options, the instruction's escapes literal.
    assert_eq!(
        p,
        "Which instrument carries the melody in this clip?\nA. Piano\nB. Violin\nC. Flute\nD. Drums".to_string()
            + r"\nExplain your reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \\boxed{C}, or \\boxed{D}."
    );
    assert_eq!(ds.items[0].prompt_text_as(PromptStyle::Clean), ds.items[0].prompt_text());
    let aime = load("op-ttrav/AIME-TTT_test.json");
    assert_eq!(
        aime.items[0].prompt_text_as(PromptStyle::HydraLiteral),
        "A walk of $6$ kilometers takes $t$ minutes at $4$ kilometers per hour. Find $t$.".to_string()
            + r"\nPlease reason step by step, and put your final answer within \boxed{}."
    );
}

#[test]
fn whole_file_problems_are_errors_naming_the_file() {
    let dir = temp_dir();
    let not_json = dir.path().join("notes.json");
    std::fs::write(&not_json, "this is not JSON at all\n").expect("write");
    let err = format!("{:#}", load_dataset(&not_json, None, None).expect_err("not JSON"));
    assert!(err.contains(&not_json.display().to_string()) && err.contains("not JSON"), "{err}");

    let binary = dir.path().join("bytes.jsonl");
    std::fs::write(&binary, b"\xff\xfe\x00garbage\nstill not json\n").expect("write");
    let err = format!("{:#}", load_dataset(&binary, None, None).expect_err("not JSONL"));
    assert!(err.contains(&binary.display().to_string()) && err.contains("not JSONL"), "{err}");

    let object = dir.path().join("object.json");
    std::fs::write(&object, r#"{"question": "a single object"}"#).expect("write");
    let err = format!("{:#}", load_dataset(&object, None, None).expect_err("not a list"));
    assert!(err.contains(&object.display().to_string()) && err.contains("not a list"), "{err}");

    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"[{"text": "x", "label": 1}]"#).expect("write");
    let err = format!("{:#}", load_dataset(&unknown, None, None).expect_err("unknown format"));
    assert!(err.contains(&unknown.display().to_string()) && err.contains("text") && err.contains("label"), "{err}");

    let missing = dir.path().join("missing.jsonl");
    let err = format!("{:#}", load_dataset(&missing, None, None).expect_err("missing"));
    assert!(err.contains(&missing.display().to_string()), "{err}");

    // An empty list is an empty dataset, not an error.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").expect("write");
    let ds = load_dataset(&empty, None, None).expect("empty");
    assert!(ds.items.is_empty() && ds.skipped.is_empty());
}

#[test]
fn json_lists_of_ttrav_objects_and_jsonl_without_extension() {
    let dir = temp_dir();
    let list = dir.path().join("list.json");
    std::fs::write(&list, r#"[{"id": "a", "question": "Q?", "choices": ["x", "y"], "answer": "y"}]"#).expect("write");
    assert_eq!(detect_format(&list).expect("format"), Format::Ttrav);
    let ds = load_dataset(&list, None, None).expect("load");
    assert_eq!(ds.items[0].answer.as_deref(), Some("B"));

    // A .json file holding JSONL is read line by line.
    let lines = dir.path().join("lines.json");
    std::fs::write(&lines, "{\"question\": \"one\"}\n{\"question\": \"two\"}\n").expect("write");
    let ds = load_dataset(&lines, None, None).expect("load");
    assert_eq!(ds.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert!(ds.items.iter().all(|i| i.kind == TaskKind::OpenEnded));
}
