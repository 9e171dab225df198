//! Dataset readers: questions, their media and their (optional) reference answers, read from four
//! file formats into one [`Item`] type, with the prompt text the model sees.
//!
//! Formats ([`Format`]): ttrav's own JSONL (one object per line), OP-TTRAV's JSON lists (MMAU,
//! OmniVideo, MATH/AIME/AMC, UltraFeedback/Arena-Hard), the original MMAU JSON, AlpacaEval's
//! output JSON and UltraFeedback's prompt files (`openbmb/UltraFeedback`'s records and
//! `HuggingFaceH4/ultrafeedback_binarized`'s, as JSONL or a JSON list). [`load_dataset`] detects
//! the format when none is given: a JSON list, or a JSONL file whose first object has
//! UltraFeedback's keys, is told by the keys of its first object; any other `.jsonl` file is ttrav. Item-level problems (a malformed line, a
//! missing question, an answer that is not one of the choices, a duplicate id) do not stop a
//! load: the item goes to [`Dataset::skipped`] with its location and the reason. Whole-file
//! problems (unreadable, not JSON, unknown format) are errors that name the file. Media files are
//! not opened here; a missing file is reported by whoever loads the media.
//!
//! Media paths: a relative path is relative to the dataset file's folder. An absolute path is kept
//! as it is, unless a media root is given: then absolute paths (written on another machine) are
//! rewritten to `media_root/TAIL`, where TAIL is the part of the path after its last component
//! named `media`, `audio`, `audios`, `video`, `videos`, `image` or `images` (ASCII
//! case-insensitive), or the file name alone when there is no such component. For example
//! `/data/x/Audio/MMAU/a.wav` becomes `ROOT/MMAU/a.wav`, `/data/x/Videos/v1/v1_video.mp4` becomes
//! `ROOT/v1/v1_video.mp4` and `/data/x/clips/a.wav` becomes `ROOT/a.wav`. Relative paths are not
//! affected by the media root.
//!
//! Prompts ([`Item::prompt_text`]) follow OP-TTRAV: the question, the options one per line
//! (`A. text` for the first four, `(E) text` from the fifth on, as OP-TTRAV's MMAU conversion wrote
//! them), then an instruction that depends on the task kind ([`MC_INSTRUCTION`],
//! [`MATH_INSTRUCTION`], [`OPEN_ENDED_MEDIA_INSTRUCTION`]; text-only open-ended questions get no
//! instruction). OP-TTRAV's training scripts pass these instructions through Hydra, which keeps
//! `\n` and `\\` literally; [`PromptStyle::HydraLiteral`] reproduces those training prompts.

mod formats;

pub use formats::split_options;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// The instruction appended to a multiple-choice question (after its options): OP-TTRAV's
/// `suffix_prompt` for MMAU, OmniVideo and OmniBench, with a real newline and single backslashes
/// (as its offline evaluation script `eval_mmau_offline.py` uses it).
pub const MC_INSTRUCTION: &str = "\nExplain your reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \\boxed{C}, or \\boxed{D}.";

/// The instruction appended to a math question (OP-TTRAV's AIME / AMC / MATH `suffix_prompt`).
pub const MATH_INSTRUCTION: &str = "\nPlease reason step by step, and put your final answer within \\boxed{}.";

/// The instruction appended to an open-ended question about audio, images or video (OP-TTRAV's
/// `mmau_open.sh` / `daily_omni_open.sh` `suffix_prompt`). Text-only open-ended prompts
/// (UltraFeedback, Arena-Hard, AlpacaEval) get no instruction in OP-TTRAV.
pub const OPEN_ENDED_MEDIA_INSTRUCTION: &str =
    "\nExplain your reasoning step by step, then give a concise answer to the question in 1-3 complete sentences.";

/// [`MC_INSTRUCTION`] as OP-TTRAV's training runs saw it: `mmau_omni.sh` passes it to Hydra as
/// `"\nExplain ... \\boxed{A} ..."`, and Hydra keeps both escapes literally (a backslash and `n`,
/// two backslashes before `boxed`).
pub const MC_INSTRUCTION_HYDRA: &str = r"\nExplain your reasoning step by step in detail, then give your final answer as exactly one of: \\boxed{A}, \\boxed{B}, \\boxed{C}, or \\boxed{D}.";

/// [`MATH_INSTRUCTION`] as OP-TTRAV's `aime.sh` / `math.sh` training runs saw it (a literal
/// backslash and `n`; these scripts write a single backslash before `boxed`).
pub const MATH_INSTRUCTION_HYDRA: &str = r"\nPlease reason step by step, and put your final answer within \boxed{}.";

/// [`OPEN_ENDED_MEDIA_INSTRUCTION`] as OP-TTRAV's training runs saw it (a literal backslash and `n`).
pub const OPEN_ENDED_MEDIA_INSTRUCTION_HYDRA: &str =
    r"\nExplain your reasoning step by step, then give a concise answer to the question in 1-3 complete sentences.";

/// What kind of answer a question expects; it picks the prompt's instruction and the reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One letter among the options, in `\boxed{}`.
    MultipleChoice,
    /// A closed-form answer in `\boxed{}`.
    Math,
    /// Free text.
    OpenEnded,
}

impl TaskKind {
    /// The name used in ttrav JSONL files: `multiple_choice`, `math` or `open_ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::MultipleChoice => "multiple_choice",
            TaskKind::Math => "math",
            TaskKind::OpenEnded => "open_ended",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskKind {
    type Err = String;

    /// Accepts `multiple_choice` (or `multiple-choice`, `mc`), `math`, `open_ended` (or
    /// `open-ended`, `open`), in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "multiple_choice" | "mc" => Ok(TaskKind::MultipleChoice),
            "math" => Ok(TaskKind::Math),
            "open_ended" | "open" => Ok(TaskKind::OpenEnded),
            _ => Err(format!("unknown kind {s:?} (expected multiple_choice, math or open_ended)")),
        }
    }
}

/// Which instruction strings [`Item::prompt_text_as`] appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PromptStyle {
    /// Real newlines and single backslashes ([`MC_INSTRUCTION`] and friends): what OP-TTRAV's
    /// scripts mean, and what its offline evaluation uses.
    #[default]
    Clean,
    /// The literal escapes OP-TTRAV's Hydra-configured training runs put in the prompt
    /// ([`MC_INSTRUCTION_HYDRA`] and friends).
    HydraLiteral,
}

/// One question.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    /// The question as given, without the options appended.
    pub question: String,
    /// Option texts, in A, B, C, D order.
    pub choices: Option<Vec<String>>,
    /// Audio files: absolute, or relative to the dataset file (media root applied).
    pub audio: Vec<PathBuf>,
    pub images: Vec<PathBuf>,
    pub video: Option<PathBuf>,
    /// Multiple choice: the letter; math: the answer; open-ended: the reference text.
    pub answer: Option<String>,
    /// The whole reply `ttrav sft` teaches, when the data gives one (ttrav JSONL's `response`);
    /// otherwise sft derives it from the answer.
    pub response: Option<String>,
    pub kind: TaskKind,
    /// Grouping fields for evaluation breakdowns (MMAU task, category, sub-category, difficulty;
    /// OP-TTRAV and UltraFeedback source; AlpacaEval dataset; any extra string field of a ttrav
    /// line).
    pub groups: BTreeMap<String, String>,
}

impl Item {
    /// The user prompt text the model sees: the question, the options (if any) and the
    /// answer-format instruction, as OP-TTRAV builds it ([`PromptStyle::Clean`]).
    pub fn prompt_text(&self) -> String {
        self.prompt_text_as(PromptStyle::Clean)
    }

    /// [`Item::prompt_text`] with a chosen instruction style.
    pub fn prompt_text_as(&self, style: PromptStyle) -> String {
        let mut text = self.question.clone();
        if let Some(choices) = &self.choices {
            text.push_str(&options_block(choices));
        }
        let clean = style == PromptStyle::Clean;
        let instruction = match self.kind {
            TaskKind::MultipleChoice if clean => MC_INSTRUCTION,
            TaskKind::MultipleChoice => MC_INSTRUCTION_HYDRA,
            TaskKind::Math if clean => MATH_INSTRUCTION,
            TaskKind::Math => MATH_INSTRUCTION_HYDRA,
            TaskKind::OpenEnded if !self.has_media() => "",
            TaskKind::OpenEnded if clean => OPEN_ENDED_MEDIA_INSTRUCTION,
            TaskKind::OpenEnded => OPEN_ENDED_MEDIA_INSTRUCTION_HYDRA,
        };
        text.push_str(instruction);
        text
    }

    /// Whether the item has any audio, image or video.
    pub fn has_media(&self) -> bool {
        !self.audio.is_empty() || !self.images.is_empty() || self.video.is_some()
    }
}

/// The letter of the option at `index` (0 -> `A`); `None` past `Z`.
pub fn choice_letter(index: usize) -> Option<char> {
    (index < 26).then(|| (b'A' + index as u8) as char)
}

/// The options as OP-TTRAV appends them to a question: each on its own line after a newline,
/// `A. text` .. `D. text`, then `(E) text`, `(F) text`, ...
pub fn options_block(choices: &[String]) -> String {
    let mut out = String::new();
    for (i, choice) in choices.iter().enumerate() {
        let letter = choice_letter(i).unwrap_or('?');
        out.push('\n');
        if i < 4 {
            out.push(letter);
            out.push_str(". ");
        } else {
            out.push('(');
            out.push(letter);
            out.push_str(") ");
        }
        out.push_str(choice);
    }
    out
}

/// An item that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `FILE:LINE` (1-based line of a JSONL file) or `FILE item N` (0-based index in a JSON list).
    pub location: String,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

/// The items of one file, and the ones that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub path: PathBuf,
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
}

/// A dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    /// ttrav JSONL: `{"id", "question", "choices"?, "audio"?, "images"?, "video"?, "answer"?,
    /// "kind"?, "response"?}` per line (a JSON list of such objects is read too).
    #[value(alias = "jsonl")]
    Ttrav,
    /// OP-TTRAV JSON list: `{id, question (options appended), audio_file?, video_file?,
    /// image_file?, answer (letter), ...}` or `{prompt, answer, source, id}`.
    #[value(alias = "op_ttrav", alias = "opttrav")]
    OpTtrav,
    /// The original MMAU JSON: `{id, audio_id, question, choices, answer (text), task, ...}`.
    Mmau,
    /// AlpacaEval outputs: `[{instruction, output, generator, dataset}]`.
    #[value(alias = "alpaca_eval", alias = "alpacaeval", alias = "alpaca")]
    AlpacaEval,
    /// UltraFeedback prompts: `openbmb/UltraFeedback` (`{source, instruction, models, completions:
    /// [{model, response, overall_score, ...}], ...}`) or `HuggingFaceH4/ultrafeedback_binarized`
    /// (`{prompt, prompt_id, chosen: [messages], rejected, messages, score_chosen, ...}`).
    #[value(name = "ultrafeedback", alias = "ultra-feedback", alias = "ultra_feedback")]
    UltraFeedback,
}

impl Format {
    /// The name used on the command line: `ttrav`, `op-ttrav`, `mmau`, `alpaca-eval`,
    /// `ultrafeedback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ttrav => "ttrav",
            Format::OpTtrav => "op-ttrav",
            Format::Mmau => "mmau",
            Format::AlpacaEval => "alpaca-eval",
            Format::UltraFeedback => "ultrafeedback",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("unknown dataset format {s:?} (expected ttrav, op-ttrav, mmau, alpaca-eval or ultrafeedback)"))
    }
}

/// One record of a file before conversion: where it is, and its JSON object (or why not).
struct Record {
    location: String,
    /// The record's position (1-based line, or 0-based list index): the default id.
    position: usize,
    object: std::result::Result<Map<String, Value>, String>,
}

/// The records of a file, and whether it was JSONL.
struct Records {
    records: Vec<Record>,
    jsonl: bool,
}

/// Reads a dataset. `format` None detects it (a JSON list, or a JSONL file whose first object
/// has UltraFeedback's keys, is told by the keys of its first object; any other `.jsonl` file is
/// [`Format::Ttrav`]). `media_root` rewrites absolute media paths (see the
/// module documentation); relative media paths are relative to the dataset file's folder.
pub fn load_dataset(path: &Path, format: Option<Format>, media_root: Option<&Path>) -> Result<Dataset> {
    let Records { records, jsonl } = read_records(path)?;
    let format = match format {
        Some(f) => f,
        None if jsonl => jsonl_format(&records),
        None => match records.iter().find_map(|r| r.object.as_ref().ok()) {
            Some(first) => detect_from_keys(first).with_context(|| {
                format!("cannot tell the format of {}; name it (ttrav, op-ttrav, mmau, alpaca-eval, ultrafeedback)", path.display())
            })?,
            // An empty list: nothing to convert, any format gives the same result.
            None => Format::OpTtrav,
        },
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let ctx = formats::Ctx { base_dir: &base_dir, media_root };

    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for record in records {
        let converted = record.object.and_then(|obj| formats::convert(format, &obj, record.position, &ctx));
        match converted {
            Ok(item) => {
                if let Some(first) = seen.get(&item.id) {
                    skipped.push(Skipped {
                        location: record.location,
                        reason: format!("duplicate id {:?} (first at {first})", item.id),
                    });
                    continue;
                }
                seen.insert(item.id.clone(), record.location);
                items.push(item);
            }
            Err(reason) => skipped.push(Skipped { location: record.location, reason }),
        }
    }
    Ok(Dataset { path: path.to_path_buf(), items, skipped })
}

/// The format [`load_dataset`] would detect for a file.
pub fn detect_format(path: &Path) -> Result<Format> {
    let Records { records, jsonl } = read_records(path)?;
    if jsonl {
        return Ok(jsonl_format(&records));
    }
    match records.iter().find_map(|r| r.object.as_ref().ok()) {
        Some(first) => detect_from_keys(first).with_context(|| format!("cannot tell the format of {}", path.display())),
        None => bail!("cannot tell the format of {}: it has no items", path.display()),
    }
}

/// The format of a JSONL file: UltraFeedback when its first object has UltraFeedback's keys,
/// else ttrav.
fn jsonl_format(records: &[Record]) -> Format {
    match records.iter().find_map(|r| r.object.as_ref().ok()) {
        Some(first) if is_ultrafeedback(first) => Format::UltraFeedback,
        _ => Format::Ttrav,
    }
}

/// Whether an object has the keys of `openbmb/UltraFeedback` (`instruction` and `completions`) or
/// of `ultrafeedback_binarized` (`prompt` with `chosen`, `rejected`, `messages` or `prompt_id`).
fn is_ultrafeedback(obj: &Map<String, Value>) -> bool {
    let has = |k: &str| obj.contains_key(k);
    (has("instruction") && has("completions")) || (has("prompt") && ["chosen", "rejected", "messages", "prompt_id"].iter().any(|k| has(k)))
}

/// The format of a JSON list, from the keys of its first object.
fn detect_from_keys(first: &Map<String, Value>) -> Result<Format> {
    let has = |k: &str| first.contains_key(k);
    if has("audio_id") {
        Ok(Format::Mmau)
    } else if is_ultrafeedback(first) {
        Ok(Format::UltraFeedback)
    } else if has("instruction") && has("output") {
        Ok(Format::AlpacaEval)
    } else if has("question") && first.get("choices").is_some_and(Value::is_array) {
        Ok(Format::Ttrav)
    } else if has("question") || has("prompt") {
        Ok(Format::OpTtrav)
    } else {
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        bail!("its first item has keys [{}], which match no known format", keys.join(", "))
    }
}

/// Reads a file into records: a `.jsonl` file (or one that is not a JSON document but whose first
/// non-blank line is a JSON object) line by line, anything else as a JSON list.
fn read_records(path: &Path) -> Result<Records> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read dataset {}", path.display()))?;
    let is_jsonl_ext = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    if is_jsonl_ext {
        return jsonl_records(path, &bytes);
    }
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(doc) => doc,
        Err(e) => {
            if first_line_is_object(&bytes) {
                return jsonl_records(path, &bytes);
            }
            bail!("dataset {} is not JSON: {e}", path.display());
        }
    };
    let Value::Array(list) = doc else {
        bail!("dataset {} is JSON but not a list of items (its top level is {})", path.display(), json_kind(&doc));
    };
    let records = list
        .into_iter()
        .enumerate()
        .map(|(i, v)| Record {
            location: format!("{} item {i}", path.display()),
            position: i,
            object: match v {
                Value::Object(m) => Ok(m),
                other => Err(format!("not a JSON object but {}", json_kind(&other))),
            },
        })
        .collect();
    Ok(Records { records, jsonl: false })
}

fn first_line_is_object(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        .is_some_and(|v| v.is_object())
}

fn jsonl_records(path: &Path, bytes: &[u8]) -> Result<Records> {
    let mut records = Vec::new();
    let mut any_object = false;
    let mut first_problem: Option<String> = None;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let object = match std::str::from_utf8(raw) {
            Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Err(e) => Err(format!("malformed JSON: {e}")),
                Ok(Value::Object(m)) => Ok(m),
                Ok(other) => Err(format!("not a JSON object but {}", json_kind(&other))),
            },
        };
        match &object {
            Ok(_) => any_object = true,
            Err(reason) if first_problem.is_none() => first_problem = Some(format!("line {line_no}: {reason}")),
            Err(_) => {}
        }
        records.push(Record { location: format!("{}:{line_no}", path.display()), position: line_no, object });
    }
    if !any_object {
        if let Some(problem) = first_problem {
            bail!("dataset {} is not JSONL: no line is a JSON object ({problem})", path.display());
        }
    }
    Ok(Records { records, jsonl: true })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Components that mark where the dataset-relative part of a foreign absolute path begins.
const MEDIA_MARKERS: [&str; 7] = ["media", "audio", "audios", "video", "videos", "image", "images"];

/// Resolves a media path from a dataset file (see the module documentation): relative paths
/// against `base_dir`, absolute ones rewritten under `media_root` when one is given.
pub fn resolve_media_path(raw: &str, base_dir: &Path, media_root: Option<&Path>) -> PathBuf {
    let path = Path::new(raw);
    let b = raw.as_bytes();
    let windows_drive = b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/');
    let foreign_absolute = path.is_absolute() || raw.starts_with('/') || raw.starts_with('\\') || windows_drive;
    if foreign_absolute {
        let Some(root) = media_root else { return path.to_path_buf() };
        let parts: Vec<&str> = raw.split(['/', '\\']).filter(|p| !p.is_empty() && *p != ".").collect();
        let file_index = parts.len().saturating_sub(1);
        let marker = parts[..file_index].iter().rposition(|p| MEDIA_MARKERS.iter().any(|m| p.eq_ignore_ascii_case(m)));
        let tail = match marker {
            Some(m) => &parts[m + 1..],
            None => &parts[file_index.min(parts.len())..],
        };
        let mut out = root.to_path_buf();
        for p in tail {
            if *p != ".." {
                out.push(p);
            }
        }
        return out;
    }
    let mut out = base_dir.to_path_buf();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}
