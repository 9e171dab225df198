//! Auxiliary metrics against a gold answer (monitoring only, never a reward): sentence BLEU as
//! sacrebleu computes it (13a tokens, exponential smoothing, effective order), ROUGE-L F1 with
//! NLTK's Porter stemmer as Google's rouge-score computes it, normalised exact match, contains
//! match, and length in words.

use serde::Serialize;

/// The 13a tokenizer of sacrebleu (mteval-v13a).
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut s = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if s.contains('&') {
        s = s.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let s = format!(" {s} ");
    // 1. Punctuation and symbols (not ' , - .) get spaces around them.
    let mut a = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        let punct = matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/');
        if punct {
            a.push(' ');
            a.push(c);
            a.push(' ');
        } else {
            a.push(c);
        }
    }
    // 2. A period or comma after a non-digit: `\1 \2 `.
    let chars: Vec<char> = a.chars().collect();
    let mut b = String::with_capacity(a.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && !chars[i].is_ascii_digit() && matches!(chars[i + 1], '.' | ',') {
            b.push(chars[i]);
            b.push(' ');
            b.push(chars[i + 1]);
            b.push(' ');
            i += 2;
        } else {
            b.push(chars[i]);
            i += 1;
        }
    }
    // 3. A period or comma before a non-digit: ` \1 \2`.
    let chars: Vec<char> = b.chars().collect();
    let mut c3 = String::with_capacity(b.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches!(chars[i], '.' | ',') && !chars[i + 1].is_ascii_digit() {
            c3.push(' ');
            c3.push(chars[i]);
            c3.push(' ');
            c3.push(chars[i + 1]);
            i += 2;
        } else {
            c3.push(chars[i]);
            i += 1;
        }
    }
    // 4. A dash after a digit: `\1 \2 `.
    let chars: Vec<char> = c3.chars().collect();
    let mut d = String::with_capacity(c3.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && chars[i].is_ascii_digit() && chars[i + 1] == '-' {
            d.push(chars[i]);
            d.push(' ');
            d.push('-');
            d.push(' ');
            i += 2;
        } else {
            d.push(chars[i]);
            i += 1;
        }
    }
    d.split_whitespace().map(str::to_string).collect()
}

/// The parts of a sentence BLEU score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bleu {
    /// 0..100, as sacrebleu reports it.
    pub score: f64,
    pub counts: [usize; 4],
    pub totals: [usize; 4],
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
}

fn ngrams(tokens: &[String], n: usize) -> std::collections::HashMap<&[String], usize> {
    let mut m = std::collections::HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// sacrebleu's `BLEU(effective_order=True).sentence_score(hypothesis, [reference])`.
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> Bleu {
    let hyp = tokenize_13a(hypothesis.trim_end());
    let rf = tokenize_13a(reference.trim_end());
    let (sys_len, ref_len) = (hyp.len(), rf.len());
    let mut counts = [0usize; 4];
    let mut totals = [0usize; 4];
    for n in 1..=4 {
        let h = ngrams(&hyp, n);
        let r = ngrams(&rf, n);
        totals[n - 1] = hyp.len().saturating_sub(n - 1);
        counts[n - 1] = h.iter().map(|(g, c)| (*c).min(*r.get(g).unwrap_or(&0))).sum();
    }
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    };
    if counts.iter().all(|&c| c == 0) {
        return Bleu { score: 0.0, counts, totals, bp, sys_len, ref_len };
    }
    let mut log_sum = 0.0;
    let mut order = 0;
    let mut smooth = 1.0f64;
    for n in 0..4 {
        if totals[n] == 0 {
            break;
        }
        order = n + 1;
        let p = if counts[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
        log_sum += p.ln();
    }
    let score = bp * (log_sum / order as f64).exp();
    Bleu { score, counts, totals, bp, sys_len, ref_len }
}

/// NLTK's Porter stemmer (mode NLTK_EXTENSIONS), for lower-case ASCII words.
pub fn porter_stem(word: &str) -> String {
    const IRREGULAR: &[(&str, &str)] = &[
        ("sky", "sky"),
        ("skies", "sky"),
        ("dying", "die"),
        ("lying", "lie"),
        ("tying", "tie"),
        ("news", "news"),
        ("innings", "inning"),
        ("inning", "inning"),
        ("outings", "outing"),
        ("outing", "outing"),
        ("cannings", "canning"),
        ("canning", "canning"),
        ("howe", "howe"),
        ("proceed", "proceed"),
        ("exceed", "exceed"),
        ("succeed", "succeed"),
    ];
    let w = word.to_lowercase();
    if let Some((_, s)) = IRREGULAR.iter().find(|(k, _)| *k == w) {
        return s.to_string();
    }
    if w.chars().count() <= 2 {
        return w;
    }
    let mut s: Vec<u8> = w.into_bytes();
    s = step1a(s);
    s = step1b(s);
    s = step1c(s);
    s = step2(s);
    s = step3(s);
    s = step4(s);
    s = step5a(s);
    s = step5b(s);
    String::from_utf8_lossy(&s).into_owned()
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// NLTK's `_is_consonant` (y counts by walking back over runs of y).
fn is_consonant(w: &[u8], i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] == b'y' {
        let mut negate = false;
        let mut j = i;
        while j > 0 && w[j] == b'y' {
            negate = !negate;
            j -= 1;
        }
        return (!is_vowel(w[j])) != negate;
    }
    true
}

/// NLTK's `_consonant_flags` (y: consonant at the start, else the opposite of its predecessor).
fn consonant_flags(w: &[u8]) -> Vec<bool> {
    let mut f: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let v = if is_vowel(c) {
            false
        } else if c == b'y' {
            if i == 0 { true } else { !f[i - 1] }
        } else {
            true
        };
        f.push(v);
    }
    f
}

fn measure(stem: &[u8]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[u8]) -> bool {
    !consonant_flags(stem).iter().all(|&c| c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    w.len() >= 2 && w[w.len() - 1] == w[w.len() - 2] && is_consonant(w, w.len() - 1)
}

fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Cond<'a> = Option<&'a dyn Fn(&[u8]) -> bool>;

/// The first rule whose suffix matches decides: its replacement if the condition holds on the
/// stem, else the word unchanged. `*d` stands for a double consonant.
fn apply_rules(w: Vec<u8>, rules: &[(&str, &str, Cond)]) -> Vec<u8> {
    for (suffix, rep, cond) in rules {
        if *suffix == "*d" {
            if ends_double_consonant(&w) {
                let stem = &w[..w.len() - 2];
                return if cond.is_none_or(|c| c(stem)) { [stem, rep.as_bytes()].concat() } else { w };
            }
            continue;
        }
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if cond.is_none_or(|c| c(stem)) { [stem, rep.as_bytes()].concat() } else { w };
        }
    }
    w
}

fn replace_suffix(w: &[u8], suffix: &str, rep: &str) -> Vec<u8> {
    [&w[..w.len() - suffix.len()], rep.as_bytes()].concat()
}

fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_suffix(&w, "ies", "ie");
    }
    apply_rules(w, &[("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)])
}

fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return if w.len() == 4 { replace_suffix(&w, "ied", "ie") } else { replace_suffix(&w, "ied", "i") };
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 { [stem, b"ee"].concat() } else { w };
    }
    let mut inter: Option<Vec<u8>> = None;
    for suffix in ["ed", "ing"] {
        if w.ends_with(suffix.as_bytes()) {
            let stem = w[..w.len() - suffix.len()].to_vec();
            if contains_vowel(&stem) {
                inter = Some(stem);
                break;
            }
        }
    }
    let Some(stem) = inter else { return w };
    let last = *stem.last().unwrap_or(&b' ');
    let last_s = (last as char).to_string();
    let double_ok = move |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let add_e = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        stem,
        &[
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", &last_s, Some(&double_ok)),
            ("", "e", Some(&add_e)),
        ],
    )
}

fn step1c(w: Vec<u8>) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[("y", "i", Some(&cond))])
}

fn positive(s: &[u8]) -> bool {
    measure(s) > 0
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(replace_suffix(&w, "alli", "al"));
    }
    let word = w.clone();
    let logi = move |_: &[u8]| positive(&word[..word.len().saturating_sub(3)]);
    let p: Cond = Some(&positive);
    apply_rules(
        w,
        &[
            ("ational", "ate", p),
            ("tional", "tion", p),
            ("enci", "ence", p),
            ("anci", "ance", p),
            ("izer", "ize", p),
            ("bli", "ble", p),
            ("alli", "al", p),
            ("entli", "ent", p),
            ("eli", "e", p),
            ("ousli", "ous", p),
            ("ization", "ize", p),
            ("ation", "ate", p),
            ("ator", "ate", p),
            ("alism", "al", p),
            ("iveness", "ive", p),
            ("fulness", "ful", p),
            ("ousness", "ous", p),
            ("aliti", "al", p),
            ("iviti", "ive", p),
            ("biliti", "ble", p),
            ("fulli", "ful", p),
            ("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let p: Cond = Some(&positive);
    apply_rules(
        w,
        &[
            ("icate", "ic", p),
            ("ative", "", p),
            ("alize", "al", p),
            ("iciti", "ic", p),
            ("ical", "ic", p),
            ("ful", "", p),
            ("ness", "", p),
        ],
    )
}

fn step4(w: Vec<u8>) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's') | Some(b't'));
    let g: Cond = Some(&gt1);
    apply_rules(
        w,
        &[
            ("al", "", g),
            ("ance", "", g),
            ("ence", "", g),
            ("er", "", g),
            ("ic", "", g),
            ("able", "", g),
            ("ible", "", g),
            ("ant", "", g),
            ("ement", "", g),
            ("ment", "", g),
            ("ent", "", g),
            ("ion", "", Some(&ion)),
            ("ou", "", g),
            ("ism", "", g),
            ("ate", "", g),
            ("iti", "", g),
            ("ous", "", g),
            ("ive", "", g),
            ("ize", "", g),
        ],
    )
}

fn step5a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<u8>) -> Vec<u8> {
    let word = w.clone();
    let cond = move |_: &[u8]| measure(&word[..word.len() - 1]) > 1;
    apply_rules(w, &[("ll", "l", Some(&cond))])
}

/// rouge-score's tokens: lower-case, runs outside [a-z0-9] split, words over 3 letters stemmed.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let spaced: String = lower.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { ' ' }).collect();
    spaced
        .split_whitespace()
        .map(|t| if t.len() > 3 { porter_stem(t) } else { t.to_string() })
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        .collect()
}

/// ROUGE-L precision, recall and F1 of `prediction` against `target` (rouge-score's `score(target, prediction)`).
pub fn rouge_l(target: &str, prediction: &str) -> (f64, f64, f64) {
    let t = rouge_tokens(target);
    let p = rouge_tokens(prediction);
    if t.is_empty() || p.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut prev = vec![0usize; p.len() + 1];
    for ti in &t {
        let mut cur = vec![0usize; p.len() + 1];
        for (j, pj) in p.iter().enumerate() {
            cur[j + 1] = if ti == pj { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        prev = cur;
    }
    let lcs = prev[p.len()] as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / t.len() as f64;
    let f = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    (precision, recall, f)
}

/// Strip, lower-case, and collapse whitespace.
pub fn normalise(text: &str) -> String {
    text.trim().to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// All auxiliary metrics of one answer against a gold answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerMetrics {
    /// Sentence BLEU in 0..1.
    pub bleu: f64,
    pub rouge_l: f64,
    pub exact_match: f64,
    pub contains_match: f64,
    pub length_words: usize,
}

pub fn answer_metrics(response: &str, gold: &str) -> AnswerMetrics {
    let (nr, ng) = (normalise(response), normalise(gold));
    AnswerMetrics {
        bleu: sentence_bleu(response, gold).score / 100.0,
        rouge_l: rouge_l(gold, response).2,
        exact_match: (!ng.is_empty() && nr == ng) as u8 as f64,
        contains_match: (!ng.is_empty() && nr.contains(&ng)) as u8 as f64,
        length_words: response.split_whitespace().count(),
    }
}
