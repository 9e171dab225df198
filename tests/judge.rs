//! Judges for win rates: the OpenAI-compatible HTTP judge against a stub server on the loopback
//! address whose replies the tests script (retries on 429, 5xx, garbage and timeouts, the item
//! reported and skipped when they run out, a refused key stopping the run, the cache making a
//! rerun send nothing and surviving a line cut short, the request AlpacaEval 2 sends), the win-rate
//! arithmetic on replies the stub decides, a local fixture checkpoint as the judge (its
//! preferences checked against `m`'s and `M`'s probabilities from another forward), and
//! `ttrav eval --judge-model` end to end with both (counts, win rates, skip reasons).

mod common;

use common::fixture;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ttrav::winrate::http::{HttpConfig, HttpJudge};
use ttrav::winrate::{judge_pairs, load_annotations, summarize, Pair, ReferenceOutput, References};

/// What the stub does with one request.
#[derive(Clone)]
enum Action {
    /// Reply with this status, body and extra header lines.
    Status(u16, String, &'static str),
    /// Wait, then judge.
    Slow(Duration),
    /// Judge (see [`judge_reply`]).
    Judge,
}

/// Each request the stub received: its header lines and JSON body.
type Requests = Arc<Mutex<Vec<(Vec<String>, Value)>>>;

/// A scripted OpenAI-compatible server on 127.0.0.1: each request takes the next scripted action
/// (then [`Action::Judge`] once the script is used up) and is recorded.
struct Stub {
    url: String,
    requests: Requests,
}

impl Stub {
    fn start(script: Vec<Action>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (script, requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, r) = (s.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &s, &r));
            }
        });
        Stub { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn serve(stream: TcpStream, script: &Mutex<VecDeque<Action>>, requests: &Mutex<Vec<(Vec<String>, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        headers.push(line.trim_end().to_string());
    }
    let len = headers.iter().find_map(|h| h.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))).unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push((headers, request.clone()));
    let action = script.lock().unwrap().pop_front().unwrap_or(Action::Judge);
    let (status, body, extra) = match action {
        Action::Status(code, body, extra) => (code, body, extra),
        Action::Slow(wait) => {
            std::thread::sleep(wait);
            (200, judge_reply(&request), "")
        }
        Action::Judge => (200, judge_reply(&request), ""),
    };
    let mut stream = stream;
    let _ = write!(stream, "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}", body.len());
}

/// The two outputs shown in a judge prompt (m's, M's).
fn shown_outputs(user: &str) -> (String, String) {
    let after = |marker: &str, end: &str| -> String {
        let start = user.find(marker).expect("marker") + marker.len();
        user[start..].split(end).next().unwrap_or_default().to_string()
    };
    (after("\"model_identifier\": \"m\",\n        \"output\": \"\"\"", "\"\"\"\n    },"), after("\"model_identifier\": \"M\",\n        \"output\": \"\"\"", "\"\"\"\n    }\n}"))
}

/// The stub judge: the output marked `[better]` wins, or the other one when an output is marked
/// `[worse]`; `[soft-worse]` loses with probability 0.75, given as log-probabilities; no marker:
/// a reply that names neither.
fn judge_reply(request: &Value) -> String {
    let user = request["messages"][1]["content"].as_str().unwrap_or_default();
    let (m, big) = shown_outputs(user);
    let completion = |content: &str, logprobs: Value| json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": logprobs, "finish_reason": "length"}]}).to_string();
    let soft = |winner: &str, loser: &str| json!({"content": [{"token": winner, "logprob": 0.75f64.ln(), "top_logprobs": [{"token": winner, "logprob": 0.75f64.ln()}, {"token": loser, "logprob": 0.25f64.ln()}]}]});
    if m.contains("[soft-worse]") {
        completion("M", soft("M", "m"))
    } else if big.contains("[soft-worse]") {
        completion("m", soft("m", "M"))
    } else if m.contains("[better]") || big.contains("[worse]") {
        completion("m", Value::Null)
    } else if big.contains("[better]") || m.contains("[worse]") {
        completion("M", Value::Null)
    } else {
        completion("Both are fine.", Value::Null)
    }
}

fn config(url: &str, cache: Option<PathBuf>) -> HttpConfig {
    HttpConfig {
        url: url.to_string(),
        model: "stub-judge".into(),
        key: Some("sk-test".into()),
        timeout: Duration::from_millis(500),
        retries: 3,
        backoff: Duration::from_millis(5),
        max_tokens: 1,
        logprobs: true,
        concurrency: 1,
        cache,
    }
}

fn pair(i: usize, instruction: &str, reference: &str, output: &str) -> Pair {
    Pair {
        id: format!("q{i}"),
        instruction: instruction.into(),
        output: output.into(),
        generator: "model".into(),
        reference: ReferenceOutput { index: i, instruction: instruction.into(), output: reference.into(), generator: "reference".into() },
    }
}

/// Pairs whose winners the stub decides: the model wins 0, 2, 4 (hard), 5 (with 0.75); the
/// reference wins 1, 3; 6 has no preference.
fn known_pairs() -> Vec<Pair> {
    vec![
        pair(0, "Name a colour.", "Blue. [worse]", "Green, like grass."),
        pair(1, "Name a fruit.", "An apple. [better]", "Fruit."),
        pair(2, "Count to three.", "One, two, three. [worse]", "1, 2, 3."),
        pair(3, "Say hello in French.", "Bonjour ! [better]", "Hello."),
        pair(4, "Name a planet.", "Mars. [worse]", "Jupiter, the largest."),
        pair(5, "Name a river.", "The Nile. [soft-worse]", "The Amazon."),
        pair(6, "Name a tree.", "An oak.", "A birch."),
    ]
}

fn no_progress() {}

#[test]
fn win_rates_follow_the_judges_replies() {
    let stub = Stub::start(vec![]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let judged = judge_pairs(&known_pairs(), &judge, &no_progress);
    assert_eq!(stub.count(), 7);
    let prefs: Vec<Option<f64>> = judged.annotations.iter().map(|a| a.preference).collect();
    assert_eq!(prefs, [Some(2.0), Some(1.0), Some(2.0), Some(1.0), Some(2.0), Some(1.75), None]);
    assert_eq!(judged.skipped.len(), 1);
    assert!(judged.skipped[0].starts_with("q6: the judge's reply \"Both are fine.\" names neither m nor M"), "{:?}", judged.skipped);
    // The stub judged by content, whatever the order shown: some pairs were switched.
    assert!(judged.annotations.iter().any(|a| a.is_switched_outputs) && judged.annotations.iter().any(|a| !a.is_switched_outputs));
    let s = summarize(&judged.annotations, ttrav::winrate::glm::Glm::Minimal, None);
    let w = &s.win_rate;
    assert!((w.win_rate - 100.0 * 3.75 / 6.0).abs() < 1e-12, "{}", w.win_rate);
    assert_eq!((w.n_total, w.n_wins, w.n_wins_base, w.n_draws), (6, 4, 2, 0));
    assert!((w.discrete_win_rate - 100.0 * 4.0 / 6.0).abs() < 1e-12);
    let lc = s.lc.expect("six judged items are enough for the GLM");
    assert!(lc.length_controlled_winrate > 0.0 && lc.length_controlled_winrate < 100.0);
    // The request is AlpacaEval 2's (weighted_alpaca_eval_gpt4_turbo): system + user messages,
    // one token, temperature 1, the 5 top log-probabilities.
    let (headers, req) = stub.requests.lock().unwrap()[0].clone();
    assert!(headers.iter().any(|h| h == "Authorization: Bearer sk-test"), "{headers:?}");
    assert!(headers[0].starts_with("POST /v1/chat/completions "), "{headers:?}");
    assert_eq!((req["model"].as_str(), req["temperature"].as_f64(), req["max_tokens"].as_u64()), (Some("stub-judge"), Some(1.0), Some(1)));
    assert_eq!((req["logprobs"].as_bool(), req["top_logprobs"].as_u64()), (Some(true), Some(5)));
    assert_eq!(req["messages"][0]["role"], "system");
    assert!(req["messages"][0]["content"].as_str().unwrap().starts_with("You are a highly efficient assistant"));
    assert!(req["messages"][1]["content"].as_str().unwrap().ends_with("m or M.\n\n## Best Model Identifier"));
    // Without log-probabilities the reply's text is the verdict: greedy, nothing else asked.
    let stub = Stub::start(vec![]);
    let mut text_only = config(&stub.url, None);
    text_only.logprobs = false;
    let (judge, _) = HttpJudge::new(text_only).expect("judge");
    let judged = judge_pairs(&known_pairs()[..2], &judge, &no_progress);
    assert_eq!(judged.annotations.iter().map(|a| a.preference).collect::<Vec<_>>(), [Some(2.0), Some(1.0)]);
    let (_, req) = stub.requests.lock().unwrap()[0].clone();
    assert_eq!(req["temperature"].as_f64(), Some(0.0));
    assert!(req.get("logprobs").is_none() && req.get("top_logprobs").is_none(), "{req}");
}

#[test]
fn rate_limits_server_errors_and_garbage_are_retried() {
    let stub = Stub::start(vec![
        Action::Status(429, r#"{"error": {"message": "Rate limit reached"}}"#.into(), "Retry-After: 0\r\n"),
        Action::Status(503, "upstream overloaded".into(), ""),
        Action::Status(200, "<html>not a completion</html>".into(), ""),
        Action::Status(200, r#"{"choices": []}"#.into(), ""),
    ]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let pairs = &known_pairs()[..2];
    let judged = judge_pairs(pairs, &judge, &no_progress);
    // Four failed attempts on the first pair (three retries were allowed, so it fails), then
    // the second pair in one request.
    assert_eq!(stub.count(), 5);
    assert_eq!(judged.annotations.len(), 1);
    assert_eq!(judged.annotations[0].instruction, "Name a fruit.");
    assert_eq!(judged.skipped.len(), 1);
    let why = &judged.skipped[0];
    assert!(why.starts_with("q0: judge failed: 4 attempts failed, the last with: not a chat completion (no choices[0])"), "{why}");
    // With one more retry allowed the same script ends in a success.
    let stub = Stub::start(vec![
        Action::Status(429, "{}".into(), "Retry-After: 0\r\n"),
        Action::Status(500, "".into(), ""),
        Action::Status(200, "garbage".into(), ""),
    ]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let judged = judge_pairs(&known_pairs()[..1], &judge, &no_progress);
    assert_eq!(stub.count(), 4);
    assert!(judged.skipped.is_empty(), "{:?}", judged.skipped);
    assert_eq!(judged.annotations[0].preference, Some(2.0));
}

#[test]
fn slow_replies_time_out_are_retried_then_skipped_with_the_reason() {
    let slow = Duration::from_millis(1500);
    let stub = Stub::start(vec![Action::Slow(slow), Action::Slow(slow)]);
    let mut cfg = config(&stub.url, None);
    (cfg.timeout, cfg.retries) = (Duration::from_millis(300), 1);
    let (judge, _) = HttpJudge::new(cfg).expect("judge");
    let judged = judge_pairs(&known_pairs()[..3], &judge, &no_progress);
    assert_eq!(stub.count(), 4);
    assert_eq!(judged.annotations.iter().map(|a| a.instruction.as_str()).collect::<Vec<_>>(), ["Name a fruit.", "Count to three."]);
    assert_eq!(judged.skipped.len(), 1);
    let why = judged.skipped[0].to_ascii_lowercase();
    assert!(why.starts_with("q0: judge failed: 2 attempts failed") && why.contains("timed out"), "{why}");
}

#[test]
fn a_bad_request_fails_at_once_and_a_refused_key_stops_the_run() {
    let stub = Stub::start(vec![Action::Status(400, r#"{"error": "context too long"}"#.into(), "")]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let judged = judge_pairs(&known_pairs()[..2], &judge, &no_progress);
    assert_eq!(stub.count(), 2, "a 400 is not retried");
    assert!(judged.skipped[0].starts_with("q0: judge failed: HTTP 400: {\"error\": \"context too long\"}"), "{:?}", judged.skipped);
    assert_eq!(judged.annotations.len(), 1);
    assert!(judged.stopped.is_none());

    let stub = Stub::start(vec![Action::Status(401, r#"{"error": "invalid api key"}"#.into(), "")]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let judged = judge_pairs(&known_pairs(), &judge, &no_progress);
    assert_eq!(stub.count(), 1, "nothing is sent after the key is refused");
    let stopped = judged.stopped.expect("stopped");
    assert!(stopped.contains("refused the request (HTTP 401") && stopped.contains("check the key"), "{stopped}");
    assert!(judged.annotations.is_empty());
    assert_eq!(judged.skipped.len(), 7);
    assert!(judged.skipped[1..].iter().all(|s| s.ends_with(": not judged")), "{:?}", judged.skipped);
}

#[test]
fn the_cache_makes_a_rerun_free_and_survives_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache/judge.jsonl");
    let stub = Stub::start(vec![]);
    let (judge, _) = HttpJudge::new(config(&stub.url, Some(cache.clone()))).expect("judge");
    let first = judge_pairs(&known_pairs()[..4], &judge, &no_progress);
    assert_eq!(stub.count(), 4);
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 4, "one line per judgement");
    // A rerun (a new judge on the same cache) sends nothing and judges the same.
    let (judge, unreadable) = HttpJudge::new(config(&stub.url, Some(cache.clone()))).expect("judge");
    assert_eq!(unreadable, 0);
    let again = judge_pairs(&known_pairs()[..4], &judge, &no_progress);
    assert_eq!(stub.count(), 4);
    assert_eq!(again.annotations, first.annotations);
    // A run killed while writing leaves half a line: it is ignored, and the next lines are whole.
    let mut f = std::fs::OpenOptions::new().append(true).open(&cache).unwrap();
    f.write_all(br#"{"key": "abc", "reply": {"te"#).unwrap();
    drop(f);
    let (judge, unreadable) = HttpJudge::new(config(&stub.url, Some(cache.clone()))).expect("judge");
    assert_eq!(unreadable, 1);
    let more = judge_pairs(&known_pairs(), &judge, &no_progress);
    assert_eq!(stub.count(), 7, "only the three new pairs are sent");
    assert_eq!(more.annotations[..4], first.annotations[..]);
    let (_, unreadable) = HttpJudge::new(config(&stub.url, Some(cache.clone()))).expect("judge");
    assert_eq!(unreadable, 1, "the new lines after the cut one are readable");
    // Another judge model is another request: not answered from the cache.
    let mut other = config(&stub.url, Some(cache));
    other.model = "other-judge".into();
    let (judge, _) = HttpJudge::new(other).expect("judge");
    judge_pairs(&known_pairs()[..1], &judge, &no_progress);
    assert_eq!(stub.count(), 8);
}

#[test]
fn identical_outputs_are_a_draw_without_asking() {
    let stub = Stub::start(vec![]);
    let (judge, _) = HttpJudge::new(config(&stub.url, None)).expect("judge");
    let judged = judge_pairs(&[pair(0, "Say yes.", "Yes.", "Yes.")], &judge, &no_progress);
    assert_eq!(stub.count(), 0);
    assert_eq!(judged.annotations[0].preference, Some(1.5));
}

#[test]
fn reference_files_are_read_with_their_problems_reported() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrate/reference_outputs.json");
    let refs = References::load(&path).expect("load");
    assert_eq!(refs.outputs.len(), 7);
    let file = path.display().to_string();
    assert_eq!(refs.skipped, [format!("{file} item 7: the instruction is given again"), format!("{file} item 8: no \"instruction\" and \"output\" strings")]);
    let r = refs.find("  Name a river. ").expect("trimmed match");
    assert_eq!((r.index, r.output.as_str(), r.generator.as_str()), (5, "The Nile. [soft-worse]", "gpt4_1106_preview"));
    assert!(refs.find("Name a mountain.").is_none());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("refs.json");
    std::fs::write(&bad, "{\"instruction\": \"x\"}").unwrap();
    let err = format!("{:#}", References::load(&bad).unwrap_err());
    assert!(err.contains("refs.json are not a JSON list"), "{err}");
}

fn load_fixture_judge() -> (ttrav::Thinker, ttrav::TextTokenizer) {
    let source = ttrav::ModelSource::resolve(fixture("text_basic").to_str().unwrap()).expect("fixture");
    let thinker = ttrav::Thinker::load(&source, &candle_core::Device::Cpu, candle_core::DType::F32).expect("thinker");
    (thinker, ttrav::TextTokenizer::load(&source).expect("tokenizer"))
}

/// `P(m) / (P(m) + P(M))` after the judge prompt of this order, from the training forward (the
/// differentiable ops, not the prefill the judge runs): each identifier scored as a one-token
/// completion.
fn first_shown_probability(thinker: &ttrav::Thinker, tok: &ttrav::TextTokenizer, instruction: &str, first: &str, second: &str) -> f64 {
    let (system, user) = ttrav::winrate::judge_messages(instruction, first, second);
    let prompt = tok.encode(&ttrav::winrate::chatml(&system, &user)).unwrap();
    let logp = |identifier: &str| -> f64 {
        let id = tok.encode(identifier).unwrap();
        assert_eq!(id.len(), 1, "{identifier} is one token");
        let ids = [prompt.clone(), id].concat();
        let batch = ttrav::PromptBatch::left_padded(&[ids], tok.end_of_text).unwrap();
        let pass = ttrav::nn::Pass { differentiable: true, adapters: false, dropout_seed: None };
        let lp = thinker.completion_logprobs(&batch, &[1], pass).unwrap().logp;
        lp.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64
    };
    let (m, big) = (logp("m").exp(), logp("M").exp());
    m / (m + big)
}

#[test]
fn a_local_judge_weighs_the_identifiers_next_token_probabilities() {
    let (thinker, tok) = load_fixture_judge();
    let judge = ttrav::winrate::LocalJudge { name: "local:text_basic".into(), thinker: &thinker, tokenizer: &tok, max_prompt_tokens: 100_000, max_new_tokens: 2 };
    let pairs = known_pairs();
    let judged = judge_pairs(&pairs, &judge, &no_progress);
    assert!(judged.skipped.is_empty(), "{:?}", judged.skipped);
    assert_eq!(judged.annotations.len(), pairs.len());
    for (a, pair) in judged.annotations.iter().zip(&pairs) {
        let switched = a.is_switched_outputs;
        let (first, second) = if switched { (&pair.output, &pair.reference.output) } else { (&pair.reference.output, &pair.output) };
        let p = first_shown_probability(&thinker, &tok, &pair.instruction, first, second);
        // AlpacaEval: 2 - P(first shown is better), mirrored when the model's output came first.
        let expected = if switched { 1.0 + p } else { 2.0 - p };
        let got = a.preference.expect("a preference for every pair");
        assert!((got - expected).abs() < 1e-4, "{}: {got} vs {expected}", a.instruction);
        assert!(got > 1.0 && got < 2.0, "{got}: the fixture's weights favour neither identifier outright");
        // The stored reply is the greedy text (at most two tokens).
        assert!(tok.encode(&a.raw_completion).unwrap().len() <= 2, "{:?}", a.raw_completion);
    }
    // Over the prompt limit: skipped with the count, not cut.
    let judge = ttrav::winrate::LocalJudge { max_prompt_tokens: 50, ..judge };
    let judged = judge_pairs(&pairs[..1], &judge, &no_progress);
    assert!(judged.annotations.is_empty());
    assert!(judged.skipped[0].starts_with("q0: judge failed: the judge prompt has ") && judged.skipped[0].ends_with("tokens, over --judge-max-prompt-tokens 50"), "{:?}", judged.skipped);
}

// ---- ttrav eval --judge-model, end to end ----------------------------------------------------

fn ttrav() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ttrav"));
    c.env("HF_HUB_OFFLINE", "1").env_remove("OPENAI_API_KEY").env_remove("XDG_CACHE_HOME");
    c
}

fn reference_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/winrate/reference_outputs.json")
}

/// A question list: the reference file's first seven instructions and one it does not have.
fn questions(dir: &Path) -> PathBuf {
    let p = dir.join("questions.jsonl");
    let qs = ["Name a colour.", "Name a fruit.", "Count to three.", "Say hello in French.", "Name a planet.", "Name a river.", "Name a tree.", "Name a mountain."];
    let lines: String = qs.iter().enumerate().map(|(i, q)| format!("{{\"id\": \"q{i}\", \"question\": \"{q}\"}}\n")).collect();
    std::fs::write(&p, lines).unwrap();
    p
}

fn eval_json(args: &[&str], extra_env: &[(&str, &str)]) -> (Value, String) {
    let mut c = ttrav();
    c.args(["eval", "--model"]).arg(fixture("text_basic")).args(["--max-response-tokens", "6", "--json"]).args(args);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "stderr: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout))), stderr)
}

#[test]
fn eval_reports_win_rates_with_an_http_judge() {
    let dir = tempfile::tempdir().unwrap();
    let data = questions(dir.path());
    let stub = Stub::start(vec![Action::Status(429, "{}".into(), "Retry-After: 0\r\n")]);
    let cache = dir.path().join("judge.jsonl");
    let annotations = dir.path().join("annotations.json");
    let refs = reference_file();
    let args = [
        "--data", data.to_str().unwrap(), "--reference", refs.to_str().unwrap(), "--judge-url", &stub.url,
        "--judge-model", "stub-judge", "--judge-cache", cache.to_str().unwrap(), "--judge-backoff", "0.01",
        "--judge-concurrency", "3", "--annotations-out", annotations.to_str().unwrap(), "--generator", "tiny",
    ];
    let (r, stderr) = eval_json(&args, &[("OPENAI_API_KEY", "sk-test")]);
    // Seven pairs, one of them retried after the 429.
    assert_eq!(stub.count(), 8);
    assert!(stub.requests.lock().unwrap().iter().all(|(h, _)| h.iter().any(|l| l == "Authorization: Bearer sk-test")));
    assert!((r["win_rate"].as_f64().unwrap() - 62.5).abs() < 1e-9, "{r}");
    assert_eq!((r["n_total"].as_u64(), r["n_wins"].as_u64(), r["n_wins_base"].as_u64(), r["n_draws"].as_u64()), (Some(6), Some(4), Some(2), Some(0)));
    assert!((r["discrete_win_rate"].as_f64().unwrap() - 400.0 / 6.0).abs() < 1e-9);
    assert_eq!((r["judged"].as_u64(), r["glm"].as_str()), (Some(7), Some("length_controlled_minimal")));
    let skipped: Vec<&str> = r["skipped"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(skipped[0].ends_with("item 7: the instruction is given again") && skipped[1].ends_with("item 8: no \"instruction\" and \"output\" strings"));
    assert!(skipped[2].starts_with("q7: no reference output for this instruction"), "{skipped:?}");
    assert!(skipped[3].starts_with("q6: the judge's reply \"Both are fine.\" names neither m nor M"), "{skipped:?}");
    assert!(stderr.contains("skipped q7: no reference output"), "{stderr}");
    // The annotations file holds every judgement, and gives the same numbers back.
    let written = load_annotations(&annotations).expect("annotations");
    assert_eq!(written.len(), 7);
    assert!(written.iter().all(|a| a.generator_2 == "tiny" && a.generator_1 == "gpt4_1106_preview" && a.annotator == "stub-judge"));
    let again = summarize(&written, ttrav::winrate::glm::Glm::Minimal, None);
    assert_eq!(r["length_controlled_winrate"].as_f64(), again.length_controlled_winrate);
    assert_eq!(r["avg_length"].as_u64(), Some(again.avg_length as u64));
    // A rerun is answered from the cache: nothing is sent.
    let (r2, _) = eval_json(&args, &[("OPENAI_API_KEY", "sk-test")]);
    assert_eq!(stub.count(), 8);
    assert_eq!(r2, r);
    // Bad combinations are errors that say what is missing.
    let out = ttrav().args(["eval", "--model"]).arg(fixture("text_basic")).args(["--judge-model", "x"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--judge-model needs --reference"));
    let out = ttrav().args(["eval", "--model"]).arg(fixture("text_basic")).args(["--reference"]).arg(reference_file()).args(["--judge-model", "x", "--lc-glm", "v1"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("needs --lc-data"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn eval_with_a_local_fixture_judge() {
    let dir = tempfile::tempdir().unwrap();
    let annotations = dir.path().join("annotations.json");
    let text_basic = fixture("text_basic");
    let refs = reference_file();
    // The reference file is the data too (its instructions are the questions).
    let args = [
        "--reference", refs.to_str().unwrap(), "--judge-model", text_basic.to_str().unwrap(), "--judge-max-tokens", "3",
        "--annotations-out", annotations.to_str().unwrap(),
    ];
    let (r, _) = eval_json(&args, &[]);
    let written = load_annotations(&annotations).expect("annotations");
    // Seven instructions with a reference (the reader keeps the repeated one as an item of its own:
    // it is judged against the first reference with that instruction), the last entry unreadable.
    assert_eq!(written.len(), 8);
    assert_eq!(r["judged"].as_u64(), Some(8));
    assert!(written.iter().all(|a| a.annotator == format!("local:{}", text_basic.display())));
    // Each preference is the judge's weighing of m and M, computed here by another forward.
    let (thinker, tok) = load_fixture_judge();
    for a in &written {
        let (first, second) = if a.is_switched_outputs { (&a.output_2, &a.output_1) } else { (&a.output_1, &a.output_2) };
        let p = first_shown_probability(&thinker, &tok, &a.instruction, first, second);
        let expected = if a.is_switched_outputs { 1.0 + p } else { 2.0 - p };
        assert!((a.preference.expect("preference") - expected).abs() < 1e-4, "{a:?} vs {expected}");
    }
    // The win rate is AlpacaEval's mean of preference - 1 over the eight; the LC win rate is fitted.
    let mean = written.iter().map(|a| a.preference.unwrap() - 1.0).sum::<f64>() / 8.0;
    assert!((r["win_rate"].as_f64().unwrap() - 100.0 * mean).abs() < 1e-9, "{r}");
    assert_eq!(r["n_total"].as_u64(), Some(8));
    let lc = r["length_controlled_winrate"].as_f64().expect("LC win rate");
    assert!(lc > 0.0 && lc < 100.0, "{lc}");
    assert_eq!(r["glm"].as_str(), Some("length_controlled_minimal"));
    let skipped: Vec<&str> = r["skipped"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    // Reference-file problems, and the data reader's own skip (the entry without an instruction).
    assert!(skipped.iter().any(|s| s.ends_with("item 7: the instruction is given again")));
    assert!(skipped.iter().any(|s| s.ends_with("item 8: no \"instruction\"")), "{skipped:?}");
    // A judge prompt over the local judge's limit is skipped with the reason, not cut.
    let (r, _) = eval_json(&[&args[..], &["--judge-max-prompt-tokens", "20"]].concat(), &[]);
    assert_eq!((r["judged"].as_u64(), r["n_total"].as_u64()), (Some(0), Some(0)));
    let skipped: Vec<&str> = r["skipped"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(skipped.iter().filter(|s| s.contains("tokens, over --judge-max-prompt-tokens 20")).count(), 8, "{skipped:?}");
    assert!(r["length_controlled_winrate"].is_null());
}
