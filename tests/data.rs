//! Dataset readers on the real files in `../shared/data/` (OP-TTRAV's MMAU, OmniVideo, MATH and
//! AIME lists, the original MMAU test-mini, AlpacaEval's GPT-4 outputs) and on files the tests
//! write: counts and spot values, MMAU answer texts to letters, OP-TTRAV options parsed and
//! re-appended exactly, media-root rewriting, skipped lines with their numbers, and whole-file
//! errors that name the file. A missing shared file fails the test with the path it looked at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use ttrav::data::{
    detect_format, load_dataset, resolve_media_path, Dataset, Format, Item, PromptStyle, TaskKind, MATH_INSTRUCTION,
    MC_INSTRUCTION, OPEN_ENDED_MEDIA_INSTRUCTION,
};

/// A file under `CARGO_MANIFEST_DIR/../shared/data`; panics (fails the test) when it is missing.
fn shared(rel: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel);
    assert!(
        path.is_file(),
        "test data missing: looked for {} (the shared/ folder must sit beside the crate, at CARGO_MANIFEST_DIR/../shared)",
        path.display()
    );
    path
}

fn load(rel: &str) -> Dataset {
    let path = shared(rel);
    load_dataset(&path, None, None).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

/// The raw JSON list of a shared file, for comparing with what was loaded.
fn raw(rel: &str) -> Vec<serde_json::Value> {
    let path = shared(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
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
}

#[test]
fn mmau_original_answers_become_letters() {
    let path = shared("mmau/mmau-test-mini.json");
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
        assert_eq!(detect_format(&shared(rel)).expect("format"), format, "{rel}");
    }
    assert_eq!("op-ttrav".parse::<Format>(), Ok(Format::OpTtrav));
    assert_eq!("alpaca_eval".parse::<Format>(), Ok(Format::AlpacaEval));
    assert_eq!("MMAU".parse::<Format>(), Ok(Format::Mmau));
    assert!("csv".parse::<Format>().is_err());
    // Naming the format overrides detection: the OP-TTRAV MMAU list read as MMAU has no choices.
    let forced = load_dataset(&shared("op-ttrav/mmau_test_mini_test.json"), Some(Format::Mmau), None).expect("load");
    assert!(forced.items.is_empty());
    assert_eq!(forced.skipped.len(), 200);
    assert!(forced.skipped[0].reason.contains("choices"), "{}", forced.skipped[0]);
}

#[test]
fn media_root_rewrites_foreign_absolute_paths() {
    let root = Path::new("/mnt/media");
    let ds = load_dataset(&shared("op-ttrav/OmniVideo_test_sanity.json"), None, Some(root)).expect("load");
    let first = &ds.items[0];
    assert_eq!(first.audio, [root.join("cHHghW4Pg5k/cHHghW4Pg5k_audio.wav")], "tail after the Videos/ component");
    assert_eq!(first.video, Some(root.join("cHHghW4Pg5k/cHHghW4Pg5k_video.mp4")));

    let ds = load_dataset(&shared("op-ttrav/mmau_test_mini_test.json"), None, Some(root)).expect("load");
    assert_eq!(ds.items[0].audio, [root.join("MMAU/a8c17404-365a-4ee8-831c-23d911c80bbf.wav")], "tail after Audio/");

    // Relative paths stay relative to the dataset file, media root or not.
    let path = shared("mmau/mmau-test-mini.json");
    let ds = load_dataset(&path, None, Some(root)).expect("load");
    let dir = path.parent().expect("parent");
    assert_eq!(ds.items[0].audio, [dir.join("test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav")]);

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
    assert!(p.ends_with(r"D. six\nExplain your reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \\boxed{C}, or \\boxed{D}."));
    assert_eq!(ds.items[0].prompt_text_as(PromptStyle::Clean), ds.items[0].prompt_text());
    let aime = load("op-ttrav/AIME-TTT_test.json");
    assert!(aime.items[0].prompt_text_as(PromptStyle::HydraLiteral).ends_with(
        r"spent in the coffee shop.\nPlease reason step by step, and put your final answer within \boxed{}."
    ));
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
