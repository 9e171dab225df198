//! Answer extraction: the letter of a multiple-choice answer and the final expression of a math
//! answer, and their comparison.
//!
//! Multiple choice follows the reference's strict rule by default: only `\boxed{X}` with one letter
//! A-D (either case, no spaces), the first such box. The lenient rule (`--answer-format lenient`)
//! also accepts "The answer is B", a reply that is just "B" / "(B)" / "B.", or the text of exactly
//! one of the choices. Math takes the last `\boxed{...}` (nested braces allowed), normalises it,
//! and compares numerically when both sides are numbers or simple fractions.

/// How multiple-choice letters are read from a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerFormat {
    /// Only `\boxed{X}` (the reference's rule).
    #[default]
    Strict,
    /// `\boxed{X}`, then "answer is X", a bare letter, or a choice's text.
    Lenient,
}

impl std::str::FromStr for AnswerFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Self::Strict),
            "lenient" => Ok(Self::Lenient),
            other => Err(format!("unknown answer format `{other}`: use strict or lenient")),
        }
    }
}

const LETTERS: &[char] = &['A', 'B', 'C', 'D'];

/// The first `\boxed{X}` with X one letter A-D (either case), upper-cased.
pub fn boxed_letter(reply: &str) -> Option<char> {
    let mut rest = reply;
    while let Some(i) = rest.find("\\boxed{") {
        let after = &rest[i + 7..];
        let mut chars = after.chars();
        if let (Some(c), Some('}')) = (chars.next(), chars.next()) {
            let up = c.to_ascii_uppercase();
            if LETTERS.contains(&up) {
                return Some(up);
            }
        }
        rest = &rest[i + 7..];
    }
    None
}

fn normalise_words(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A letter A-D standing alone: "B", "(B)", "B.", "B)", "**B**".
fn bare_letter(s: &str) -> Option<char> {
    let t: String = s.trim().chars().filter(|c| !matches!(c, '(' | ')' | '.' | '*' | ':' | '[' | ']')).collect();
    let mut chars = t.trim().chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if LETTERS.contains(&c.to_ascii_uppercase()) => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

/// The multiple-choice letter of a reply, or `None` when it gives none.
pub fn choice_letter(reply: &str, format: AnswerFormat, choices: Option<&[String]>) -> Option<char> {
    if let Some(c) = boxed_letter(reply) {
        return Some(c);
    }
    if format == AnswerFormat::Strict {
        return None;
    }
    // "The answer is B" / "answer: (C)" / "Answer is **D**."
    let lower = reply.to_lowercase();
    for key in ["answer is", "answer:", "option", "choice is"] {
        if let Some(i) = lower.rfind(key) {
            let tail = &reply[i + key.len()..];
            let word: String = tail.trim_start().chars().take_while(|c| !c.is_whitespace() || *c == ' ').take(6).collect();
            if let Some(first) = word.split_whitespace().next() {
                if let Some(c) = bare_letter(first) {
                    return Some(c);
                }
            }
        }
    }
    if let Some(c) = bare_letter(reply) {
        return Some(c);
    }
    if let Some(first_line) = reply.trim().lines().next() {
        if let Some(c) = first_line.split_whitespace().next().and_then(bare_letter) {
            if first_line.trim().len() <= 3 || first_line.trim_start()[1..].starts_with(['.', ')', ':']) {
                return Some(c);
            }
        }
    }
    // The text of exactly one choice appears in the reply.
    if let Some(choices) = choices {
        let r = format!(" {} ", normalise_words(reply));
        let hits: Vec<usize> = choices
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let n = normalise_words(c);
                !n.is_empty() && r.contains(&format!(" {n} "))
            })
            .map(|(i, _)| i)
            .collect();
        if hits.len() == 1 && hits[0] < LETTERS.len() {
            return Some(LETTERS[hits[0]]);
        }
    }
    None
}

/// The content of the last `\boxed{...}`, with nested braces.
pub fn last_boxed(reply: &str) -> Option<String> {
    let start = reply.rfind("\\boxed")?;
    let after = &reply[start + 6..];
    let open = after.find('{')?;
    if !after[..open].trim().is_empty() {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in after[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(after[open + 1..open + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The content of the first `\boxed{...}` (nested braces), and the reply with that box replaced
/// by its content.
pub fn strip_first_boxed(reply: &str) -> String {
    let Some(start) = reply.find("\\boxed{") else { return reply.to_string() };
    let open = start + 6;
    let mut depth = 0usize;
    for (i, c) in reply[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let inner = &reply[open + 1..open + i];
                    return format!("{}{}{}", &reply[..start], inner, &reply[open + i + 1..]);
                }
            }
            _ => {}
        }
    }
    reply.to_string()
}

/// Replaces `\text{X}` (and `\textbf`, `\mathrm`) with X.
fn unwrap_text_commands(s: &str) -> String {
    let mut out = s.to_string();
    for cmd in ["\\text{", "\\textbf{", "\\mathrm{", "\\mbox{"] {
        while let Some(i) = out.find(cmd) {
            let open = i + cmd.len() - 1;
            let mut depth = 0usize;
            let mut close = None;
            for (j, c) in out[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(open + j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(close) = close else { break };
            out = format!("{}{}{}", &out[..i], &out[open + 1..close], &out[close + 1..]);
        }
    }
    out
}

/// Normalises a math answer: spacing, `\left`/`\right`, `\dfrac`/`\tfrac`, `\text{}`, a trailing
/// period, degree signs, dollar signs.
pub fn normalise_math(s: &str) -> String {
    let mut t = unwrap_text_commands(s);
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("°", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("$", ""),
    ] {
        t = t.replace(from, to);
    }
    let mut t: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    while t.ends_with('.') {
        t.pop();
    }
    t
}

/// The value of a number or simple fraction: `3`, `-2.5`, `1,000`, `3/4`, `\frac{3}{4}`, `-\frac34`.
pub fn numeric_value(s: &str) -> Option<f64> {
    let t = normalise_math(s);
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, t),
    };
    let v = if let Some(rest) = t.strip_prefix("\\frac") {
        let (a, b) = if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}')?;
            let num = &r[..close];
            let r2 = r[close + 1..].strip_prefix('{')?;
            let close2 = r2.find('}')?;
            if close2 + 1 != r2.len() {
                return None;
            }
            (num.to_string(), r2[..close2].to_string())
        } else {
            let mut cs = rest.chars();
            let (a, b) = (cs.next()?, cs.next()?);
            if cs.next().is_some() {
                return None;
            }
            (a.to_string(), b.to_string())
        };
        plain_number(&a)? / plain_number(&b)?
    } else if let Some((a, b)) = t.split_once('/') {
        plain_number(a)? / plain_number(b)?
    } else {
        plain_number(&t)?
    };
    v.is_finite().then_some(if neg { -v } else { v })
}

fn plain_number(s: &str) -> Option<f64> {
    let s = s.replace(',', "");
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+') {
        return None;
    }
    s.parse().ok()
}

/// Whether two math answers are the same: equal after normalisation, or equal as numbers.
pub fn math_equal(a: &str, b: &str) -> bool {
    let (na, nb) = (normalise_math(a), normalise_math(b));
    if na == nb {
        return true;
    }
    match (numeric_value(a), numeric_value(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_multiple_choice() {
        assert_eq!(boxed_letter("so \\boxed{b}."), Some('B'));
        assert_eq!(boxed_letter("\\boxed{ A } then \\boxed{AB} then \\boxed{E}"), None);
        assert_eq!(boxed_letter("\\boxed{C} or maybe \\boxed{D}"), Some('C'));
        assert_eq!(boxed_letter("\\boxed{E} no, \\boxed{D}"), Some('D'));
        assert_eq!(choice_letter("The answer is B", AnswerFormat::Strict, None), None);
    }

    #[test]
    fn lenient_multiple_choice() {
        let l = AnswerFormat::Lenient;
        assert_eq!(choice_letter("The answer is B.", l, None), Some('B'));
        assert_eq!(choice_letter("answer: (c)", l, None), Some('C'));
        assert_eq!(choice_letter("D", l, None), Some('D'));
        assert_eq!(choice_letter("(A)", l, None), Some('A'));
        assert_eq!(choice_letter("B. a dog barking", l, None), Some('B'));
        let choices: Vec<String> = ["a dog barking", "rain falling", "a car horn", "music"].map(String::from).to_vec();
        assert_eq!(choice_letter("I hear rain falling on a roof", l, Some(&choices)), Some('B'));
        // Two choices mentioned: no answer.
        assert_eq!(choice_letter("rain falling and music", l, Some(&choices)), None);
        assert_eq!(choice_letter("A lovely day", l, None), None);
    }

    #[test]
    fn math_boxes_and_equivalence() {
        assert_eq!(last_boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}}").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(last_boxed("\\boxed{x^{2} + {y}}").as_deref(), Some("x^{2} + {y}"));
        assert_eq!(last_boxed("no box"), None);
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
        assert!(math_equal("\\dfrac{1}{2}", "0.5"));
        assert!(math_equal("\\left( 3, 4 \\right)", "(3,4)"));
        assert!(math_equal("90^\\circ", "90"));
        assert!(math_equal("\\text{5 apples}", "5apples"));
        assert!(math_equal("1,000.", "1000"));
        assert!(math_equal("-\\frac34", "-0.75"));
        assert!(math_equal("3/4", "\\tfrac{3}{4}"));
        assert!(!math_equal("3/4", "4/3"));
        assert!(!math_equal("x+1", "x+2"));
        assert_eq!(strip_first_boxed("The answer is \\boxed{a {b}} ok"), "The answer is a {b} ok");
    }
}
