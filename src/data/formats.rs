//! Per-format conversion of one JSON object into an [`Item`], and the parsing of options that
//! OP-TTRAV appends to its questions.
//!
//! Each converter returns the reason as a `String` when the object cannot become an item; the
//! caller records it with the item's location. Answers to multiple-choice questions become a
//! letter: a letter within the options is kept (upper-cased); otherwise an answer equal to an
//! option's text (exactly, then ignoring surrounding whitespace) becomes that option's letter, the
//! first one when options repeat (as OP-TTRAV's MMAU conversion did). MMAU answers are option
//! texts, so for MMAU the text match comes first; MMAU option texts are trimmed of surrounding
//! whitespace (its questions are not), which is what OP-TTRAV's conversion of MMAU wrote.

use super::{choice_letter, resolve_media_path, Format, Item, TaskKind};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where media paths are resolved from.
pub(crate) struct Ctx<'a> {
    pub base_dir: &'a Path,
    pub media_root: Option<&'a Path>,
}

impl Ctx<'_> {
    fn media(&self, raw: &str) -> PathBuf {
        resolve_media_path(raw, self.base_dir, self.media_root)
    }
}

/// Math answers longer than this (or spanning lines) make an unlabelled OP-TTRAV text record
/// open-ended rather than math.
const MATH_ANSWER_MAX_CHARS: usize = 64;

/// OP-TTRAV `source` values of math datasets.
const MATH_SOURCES: [&str; 8] = ["aime", "amc", "math", "gsm8k", "math500", "minerva", "olympiadbench", "omni-math"];

/// Whether an OP-TTRAV `source` is an instruction-following set (its `build_ultrafeedback_ttrl.py`
/// and `build_arena_hard_ttrl.py` write `ultrafeedback` and `arena-hard-v2.0`): open-ended, even
/// when the reference answer is short.
fn is_open_ended_source(source: &str) -> bool {
    source == "ultrafeedback" || source.starts_with("arena-hard")
}

/// Converts one object of a file in `format`; `position` gives the default id.
pub(crate) fn convert(format: Format, obj: &Map<String, Value>, position: usize, ctx: &Ctx) -> Result<Item, String> {
    match format {
        Format::Ttrav => ttrav(obj, position, ctx),
        Format::OpTtrav => op_ttrav(obj, position, ctx),
        Format::Mmau => mmau(obj, position, ctx),
        Format::AlpacaEval => alpaca_eval(obj, position),
        Format::UltraFeedback => ultrafeedback(obj, position),
    }
}

/// Splits OP-TTRAV's options off a question: the question's last lines must be `A. text`,
/// `B. text`, ... (`(E) text` from the fifth option on), at least two, after at least one line of
/// question. Returns the question without them and the option texts; appending
/// [`super::options_block`] of those texts to that question gives the input back exactly.
pub fn split_options(text: &str) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let parse_tail = |start: usize| -> Option<Vec<String>> {
        let tail = &lines[start..];
        if tail.len() < 2 || tail.len() > 26 {
            return None;
        }
        tail.iter()
            .enumerate()
            .map(|(i, line)| {
                let letter = choice_letter(i)?;
                let prefix = if i < 4 { format!("{letter}. ") } else { format!("({letter}) ") };
                line.strip_prefix(prefix.as_str()).map(str::to_string)
            })
            .collect()
    };
    (1..lines.len())
        .rev()
        .filter(|&k| lines[k].starts_with("A. "))
        .find_map(|k| parse_tail(k).map(|choices| (lines[..k].join("\n"), choices)))
}

/// The letter for a multiple-choice answer, or why there is none. `text_first` tries option texts
/// before letters (MMAU, whose answers are texts).
fn answer_letter(answer: &str, choices: &[String], text_first: bool) -> Result<String, String> {
    let by_letter = || {
        let t = answer.trim();
        let mut chars = t.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => {
                let index = (c.to_ascii_uppercase() as u8 - b'A') as usize;
                (index < choices.len()).then(|| c.to_ascii_uppercase().to_string())
            }
            _ => None,
        }
    };
    let by_text = || {
        let exact = choices.iter().position(|c| c == answer);
        let index = exact.or_else(|| choices.iter().position(|c| c.trim() == answer.trim()))?;
        choice_letter(index).map(String::from)
    };
    let found = if text_first { by_text().or_else(by_letter) } else { by_letter().or_else(by_text) };
    found.ok_or_else(|| {
        let last = choice_letter(choices.len().saturating_sub(1)).unwrap_or('Z');
        format!("answer {answer:?} is neither a letter A-{last} nor the text of one of the {} choices", choices.len())
    })
}

/// A string field, or a number / boolean written as text; `Ok(None)` when absent or null.
fn text_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(format!("field {key:?} is not a string")),
    }
}

/// A string field that must be a string when present; an empty string counts as absent.
fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field {key:?} is not a string")),
    }
}

/// A list of strings, or one string standing for a list of one; empty strings are dropped.
fn string_list(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(if s.is_empty() { Vec::new() } else { vec![s.clone()] }),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("field {key:?} has an entry that is not a string")),
            })
            .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
            .collect(),
        Some(_) => Err(format!("field {key:?} is neither a string nor a list of strings")),
    }
}

/// The item's id: the `id` field (string or number), else the record's position.
fn id_field(obj: &Map<String, Value>, position: usize) -> Result<String, String> {
    Ok(text_field(obj, "id")?.filter(|s| !s.is_empty()).unwrap_or_else(|| position.to_string()))
}

/// Every other field whose value is a string, number, boolean or list of strings (joined with
/// `", "`), as grouping fields.
fn groups(obj: &Map<String, Value>, known: &[&str]) -> BTreeMap<String, String> {
    obj.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
                    a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
                }
                _ => return None,
            };
            Some((k.clone(), value))
        })
        .collect()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

const TTRAV_KNOWN: [&str; 9] = ["id", "question", "choices", "audio", "images", "video", "answer", "kind", "response"];

fn ttrav(obj: &Map<String, Value>, position: usize, ctx: &Ctx) -> Result<Item, String> {
    let question = match obj.get("question") {
        None | Some(Value::Null) => return Err("no \"question\"".into()),
        Some(Value::String(s)) if s.trim().is_empty() => return Err("empty \"question\"".into()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("field \"question\" is not a string".into()),
    };
    let choices = match obj.get("choices") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string).ok_or("field \"choices\" has an entry that is not a string"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("field \"choices\" is not a list".into()),
    };
    if choices.as_ref().is_some_and(|c| c.len() > 26) {
        return Err("more than 26 choices".into());
    }
    let kind = match string_field(obj, "kind")? {
        Some(k) => k.parse::<TaskKind>()?,
        None if choices.is_some() => TaskKind::MultipleChoice,
        None => TaskKind::OpenEnded,
    };
    let answer = non_empty(text_field(obj, "answer")?);
    let answer = match (kind, answer, &choices) {
        (TaskKind::MultipleChoice, Some(a), Some(c)) => Some(answer_letter(&a, c, false)?),
        (TaskKind::MultipleChoice, Some(a), None) => {
            let t = a.trim();
            if t.len() == 1 && t.chars().all(|c| c.is_ascii_alphabetic()) {
                Some(t.to_ascii_uppercase())
            } else {
                return Err(format!("answer {a:?} of a multiple-choice question without choices is not a letter"));
            }
        }
        (_, a, _) => a,
    };
    let choices = if kind == TaskKind::MultipleChoice { choices } else { None };
    let audio = string_list(obj, "audio")?.iter().map(|p| ctx.media(p)).collect();
    let images = string_list(obj, "images")?.iter().map(|p| ctx.media(p)).collect();
    let video = string_field(obj, "video")?.map(|p| ctx.media(&p));
    Ok(Item {
        id: id_field(obj, position)?,
        question,
        choices,
        audio,
        images,
        video,
        answer,
        response: non_empty(text_field(obj, "response")?),
        kind,
        groups: groups(obj, &TTRAV_KNOWN),
    })
}

const OP_TTRAV_KNOWN: [&str; 13] = [
    "id",
    "question",
    "prompt",
    "answer",
    "answer_text",
    "options",
    "audio_file",
    "video_file",
    "image_file",
    "images",
    "videos",
    "audios",
    "reward_model",
];

/// OP-TTRAV's question text: `question`, else `prompt` (a string, or a chat whose last user
/// message's content is a string).
fn op_ttrav_question(obj: &Map<String, Value>) -> Result<String, String> {
    let text = match obj.get("question").filter(|v| !v.is_null()).or_else(|| obj.get("prompt")) {
        None | Some(Value::Null) => return Err("no \"question\" or \"prompt\"".into()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(messages)) => messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or("\"prompt\" is a list without a user message whose content is text")?,
        Some(_) => return Err("the question is not a string".into()),
    };
    if text.trim().is_empty() {
        return Err("empty question".into());
    }
    Ok(text)
}

fn op_ttrav(obj: &Map<String, Value>, position: usize, ctx: &Ctx) -> Result<Item, String> {
    let text = op_ttrav_question(obj)?;
    let answer = non_empty(text_field(obj, "answer")?);
    let answer_text = text_field(obj, "answer_text")?;
    let audio: Vec<PathBuf> = string_field(obj, "audio_file")?.iter().map(|p| ctx.media(p)).collect();
    let images: Vec<PathBuf> = string_field(obj, "image_file")?.iter().map(|p| ctx.media(p)).collect();
    let video = string_field(obj, "video_file")?.map(|p| ctx.media(&p));
    let has_media = !audio.is_empty() || !images.is_empty() || video.is_some();
    let source = text_field(obj, "source")?.unwrap_or_default().to_ascii_lowercase();

    let mut question = text.clone();
    let mut choices = None;
    let mut final_answer = answer.clone();
    let kind = 'kind: {
        if answer_text.is_none() {
            if let Some((stem, opts)) = split_options(&text) {
                let letter = match &answer {
                    None => Some(None),
                    Some(a) => answer_letter(a, &opts, false).ok().map(Some),
                };
                if let Some(letter) = letter {
                    question = stem;
                    choices = Some(opts);
                    final_answer = letter;
                    break 'kind TaskKind::MultipleChoice;
                }
            }
            // Options that did not parse (other layouts): a single capital letter still marks
            // a multiple-choice question whose options stay in the question text.
            if let Some(a) = &answer {
                if a.trim().len() == 1 && a.trim().chars().all(|c| c.is_ascii_uppercase()) {
                    final_answer = Some(a.trim().to_string());
                    break 'kind TaskKind::MultipleChoice;
                }
            }
        } else {
            // strip_mcq.py's open-ended variant: the reference answer is the correct option's text.
            final_answer = non_empty(answer_text);
            break 'kind TaskKind::OpenEnded;
        }
        if has_media {
            break 'kind TaskKind::OpenEnded;
        }
        let short = answer.as_ref().is_some_and(|a| a.chars().count() <= MATH_ANSWER_MAX_CHARS && !a.contains('\n'));
        if is_open_ended_source(&source) {
            TaskKind::OpenEnded
        } else if MATH_SOURCES.contains(&source.as_str()) || short {
            TaskKind::Math
        } else {
            TaskKind::OpenEnded
        }
    };
    Ok(Item {
        id: id_field(obj, position)?,
        question,
        choices,
        audio,
        images,
        video,
        answer: final_answer,
        response: None,
        kind,
        groups: groups(obj, &OP_TTRAV_KNOWN),
    })
}

const MMAU_KNOWN: [&str; 5] = ["id", "audio_id", "question", "choices", "answer"];

fn mmau(obj: &Map<String, Value>, position: usize, ctx: &Ctx) -> Result<Item, String> {
    let question = match obj.get("question") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("empty \"question\"".into()),
        None | Some(Value::Null) => return Err("no \"question\"".into()),
        Some(_) => return Err("field \"question\" is not a string".into()),
    };
    // OP-TTRAV's conversion strips the option texts; questions are kept as they are.
    let choices: Vec<String> = match obj.get("choices") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(|s| s.trim().to_string()).ok_or("field \"choices\" has an entry that is not a string")
            })
            .collect::<Result<_, _>>()?,
        None | Some(Value::Null) => return Err("no \"choices\"".into()),
        Some(_) => return Err("field \"choices\" is not a list".into()),
    };
    if choices.len() < 2 || choices.len() > 26 {
        return Err(format!("{} choices (expected 2 to 26)", choices.len()));
    }
    let answer = match non_empty(text_field(obj, "answer")?) {
        Some(a) => Some(answer_letter(&a, &choices, true)?),
        None => None,
    };
    let audio = string_field(obj, "audio_id")?.iter().map(|p| ctx.media(p)).collect();
    Ok(Item {
        id: id_field(obj, position)?,
        question,
        choices: Some(choices),
        audio,
        images: Vec::new(),
        video: None,
        answer,
        response: None,
        kind: TaskKind::MultipleChoice,
        groups: groups(obj, &MMAU_KNOWN),
    })
}

const ALPACA_KNOWN: [&str; 3] = ["id", "instruction", "output"];

fn alpaca_eval(obj: &Map<String, Value>, position: usize) -> Result<Item, String> {
    let question = match obj.get("instruction") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("empty \"instruction\"".into()),
        None | Some(Value::Null) => return Err("no \"instruction\"".into()),
        Some(_) => return Err("field \"instruction\" is not a string".into()),
    };
    Ok(Item {
        id: id_field(obj, position)?,
        question,
        choices: None,
        audio: Vec::new(),
        images: Vec::new(),
        video: None,
        answer: non_empty(string_field(obj, "output")?),
        response: None,
        kind: TaskKind::OpenEnded,
        groups: groups(obj, &ALPACA_KNOWN),
    })
}

const ULTRAFEEDBACK_KNOWN: [&str; 10] =
    ["id", "instruction", "prompt", "prompt_id", "completions", "chosen", "rejected", "messages", "correct_answers", "incorrect_answers"];

/// The content of the last `assistant` message of a chat (a list of `{role, content}`), or the
/// field itself when it is a string.
fn last_assistant(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(Some(s.clone()))),
        Some(Value::Array(messages)) => Ok(messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .and_then(|s| non_empty(Some(s)))),
        Some(_) => Err(format!("field {key:?} is neither a list of messages nor a string")),
    }
}

/// The content of the first `user` message of the chat in `key`.
fn first_user(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key)?
        .as_array()?
        .iter()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The best-rated of `openbmb/UltraFeedback`'s completions: the first with the highest
/// `overall_score` (a number or a numeric string; missing or unreadable counts as 0) among those
/// with a non-empty `response`, as OP-TTRAV's `build_ultrafeedback_ttrl.py` picks its reference.
fn best_completion(obj: &Map<String, Value>) -> Result<Option<String>, String> {
    let completions = match obj.get("completions") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("field \"completions\" is not a list".into()),
    };
    let score = |c: &Map<String, Value>| match c.get("overall_score") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let mut best: Option<(f64, String)> = None;
    for c in completions.iter().filter_map(Value::as_object) {
        let Some(response) = c.get("response").and_then(Value::as_str).filter(|r| !r.is_empty()) else { continue };
        let s = score(c);
        if best.as_ref().is_none_or(|(b, _)| s > *b) {
            best = Some((s, response.to_string()));
        }
    }
    Ok(best.map(|(_, r)| r))
}

/// UltraFeedback: the question is `instruction` (openbmb) or `prompt` (binarized; else the first
/// user message of `messages`); the reference is the best-rated completion (openbmb) or the last
/// assistant message of `chosen`, else of `messages` (binarized); the id is `prompt_id`, else
/// `id`, else the position.
fn ultrafeedback(obj: &Map<String, Value>, position: usize) -> Result<Item, String> {
    let question = match string_field(obj, "instruction")?.or(string_field(obj, "prompt")?).or_else(|| first_user(obj, "messages")) {
        Some(q) if !q.trim().is_empty() => q,
        Some(_) => return Err("empty question".into()),
        None => return Err("no \"instruction\" or \"prompt\"".into()),
    };
    let answer = match best_completion(obj)? {
        Some(a) => Some(a),
        None => last_assistant(obj, "chosen")?.or(last_assistant(obj, "messages")?),
    };
    let id = match non_empty(string_field(obj, "prompt_id")?) {
        Some(id) => id,
        None => id_field(obj, position)?,
    };
    Ok(Item {
        id,
        question,
        choices: None,
        audio: Vec::new(),
        images: Vec::new(),
        video: None,
        answer: non_empty(answer),
        response: None,
        kind: TaskKind::OpenEnded,
        groups: groups(obj, &ULTRAFEEDBACK_KNOWN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::options_block;

    #[test]
    fn options_round_trip() {
        let q = "Stem line\nsecond line\nA. x\nB.  y \nC. z\nD. w\n(E) v";
        let (stem, opts) = split_options(q).expect("options");
        assert_eq!(stem, "Stem line\nsecond line");
        assert_eq!(opts, ["x", " y ", "z", "w", "v"]);
        assert_eq!(format!("{stem}{}", options_block(&opts)), q);
    }

    #[test]
    fn options_need_a_stem_and_a_full_tail() {
        assert_eq!(split_options("A. x\nB. y"), None);
        assert_eq!(split_options("Q\nA. x"), None);
        assert_eq!(split_options("Q\nA. x\nB. y\nextra"), None);
        assert_eq!(split_options("Q\nA. x\nB. y\nC. z\nD. w\nE. v"), None);
        // An earlier "A. " inside the stem does not confuse the split.
        let (stem, opts) = split_options("Q\nA. not an option\nmore\nA. x\nB. y").expect("options");
        assert_eq!(stem, "Q\nA. not an option\nmore");
        assert_eq!(opts, ["x", "y"]);
    }

    #[test]
    fn answer_letters() {
        let c: Vec<String> = ["red", "blue", "red"].iter().map(|s| s.to_string()).collect();
        assert_eq!(answer_letter("b", &c, false).as_deref(), Ok("B"));
        assert_eq!(answer_letter("red", &c, false).as_deref(), Ok("A"));
        assert_eq!(answer_letter(" blue ", &c, true).as_deref(), Ok("B"));
        assert!(answer_letter("D", &c, false).is_err());
        assert!(answer_letter("green", &c, true).is_err());
    }
}
